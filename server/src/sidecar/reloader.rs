//! The sidecar's reloader, as Thanos's: every `--reloader.watch-interval`, and at once when
//! inotify reports a change in the configuration file's directory or a rule directory, it
//! hashes the configuration file (`--reloader.config-file`) and every file under the rule
//! directories (`--reloader.rule-dir`); when a hash changed since the last successful reload
//! (and once at start) it asks Prometheus to reload, retrying every `--reloader.retry-interval` until it
//! succeeds or the sidecar stops. It asks by `POST /-/reload`, or (`--reloader.method=signal`)
//! by SIGHUP to the process named `--reloader.process-name`, followed through
//! `/api/v1/status/runtimeinfo` until Prometheus says the new configuration loaded. With
//! `--reloader.config-envsubst-file`, the configuration file is first written there with
//! every `$(VAR)` replaced by the environment variable's value (an unset variable is an
//! error, and the file is left as it was).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::prometheus::PromClient;

/// What the reloader watches and how often.
#[derive(Debug, Clone)]
pub struct ReloaderConfig {
    /// The Prometheus configuration file; `None` watches none.
    pub config_file: Option<PathBuf>,
    /// Where the configuration with environment variables substituted is written.
    pub envsubst_file: Option<PathBuf>,
    /// Directories whose files (at any depth) are watched.
    pub rule_dirs: Vec<PathBuf>,
    /// How often the files are hashed.
    pub watch_interval: Duration,
    /// How long apart failed reloads are retried.
    pub retry_interval: Duration,
    /// How Prometheus is told to reload.
    pub method: ReloadMethod,
}

/// How Prometheus is told to reload (`--reloader.method`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadMethod {
    /// `POST /-/reload` (needs Prometheus's `--web.enable-lifecycle`).
    Http,
    /// SIGHUP to the process whose executable is named `process_name` (the lowest PID of
    /// those), in the sidecar's process namespace (a pod sharing it).
    Signal {
        /// The executable's name (`--reloader.process-name`).
        process_name: String,
    },
}

/// Longest process name the kernel keeps (`/proc/<pid>/stat`'s name), bytes.
const COMM_LEN: usize = 15;

/// The lowest PID whose executable name is `name` (as the kernel keeps it, cut to
/// [`COMM_LEN`] bytes), as Thanos's reloader finds the process to signal.
fn find_process(name: &str) -> anyhow::Result<i32> {
    let want = &name.as_bytes()[..name.len().min(COMM_LEN)];
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        // A process may end while the list is read.
        let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let open = stat.iter().position(|&b| b == b'(');
        let close = stat.iter().rposition(|&b| b == b')');
        if let (Some(a), Some(b)) = (open, close)
            && a < b
            && &stat[a + 1..b] == want
        {
            return Ok(pid);
        }
    }
    anyhow::bail!("no process named {name:?} (--reloader.process-name) in this process namespace")
}

impl ReloaderConfig {
    /// Whether there is anything to watch.
    pub fn is_on(&self) -> bool {
        self.config_file.is_some() || !self.rule_dirs.is_empty()
    }
}

/// The reloader's counters, exported as `thanos_sidecar_reloader_*`.
#[derive(Debug, Default)]
pub struct ReloaderStats {
    /// Reload requests sent.
    pub reloads: AtomicU64,
    /// Reload requests that failed.
    pub reloads_failed: AtomicU64,
    /// Whether the last reload succeeded (1) or not (0).
    pub last_reload_successful: AtomicU64,
    /// When the last reload succeeded, ms since the epoch (0: never).
    pub last_reload_success_ms: AtomicI64,
    /// Passes over the files (hashing, substituting).
    pub config_applies: AtomicU64,
    /// Passes that failed (a file unreadable, a variable unset).
    pub config_applies_failed: AtomicU64,
    /// Unset variables met in the last substitution.
    pub envsubst_errors: AtomicU64,
    /// Directories watched by inotify.
    pub watches: AtomicU64,
    /// Events inotify reported.
    pub watch_events: AtomicU64,
    /// Errors reading inotify's events.
    pub watch_errors: AtomicU64,
}

/// An inotify instance as tokio waits on it.
struct InotifyFd(nix::sys::inotify::Inotify);

impl std::os::fd::AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd as _;
        self.0.as_fd().as_raw_fd()
    }
}

/// Watches `dirs` (each directory itself, not below it, as Thanos's watcher) and wakes
/// `wake` after every batch of events, until the task is dropped.
fn start_watch(
    dirs: &[PathBuf],
    stats: Arc<ReloaderStats>,
    wake: Arc<tokio::sync::Notify>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context as _;
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .context("starting inotify")?;
    let mask = AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_ATTRIB;
    for d in dirs {
        ino.add_watch(d.as_path(), mask)
            .with_context(|| format!("watching {}", d.display()))?;
    }
    stats.watches.store(dirs.len() as u64, Relaxed);
    // SAFETY: the `Inotify` owns its descriptor, which nothing else holds, replaces or closes:
    // it is closed when the `AsyncFd` drops it, after taking it out of the runtime.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            InotifyFd(ino),
            tokio::io::Interest::READABLE,
        )
    }
    .context("registering inotify with the runtime")?;
    Ok(tokio::spawn(async move {
        loop {
            let mut ready = match fd.readable().await {
                Ok(r) => r,
                Err(e) => {
                    stats.watch_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "reloader: inotify failed; polling only");
                    return;
                }
            };
            match ready.try_io(|f| f.get_ref().0.read_events().map_err(std::io::Error::from)) {
                Ok(Ok(events)) => {
                    stats.watch_events.fetch_add(events.len() as u64, Relaxed);
                    wake.notify_one();
                }
                Ok(Err(e)) => {
                    stats.watch_errors.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "reloader: reading inotify's events");
                }
                // Not readable after all: wait again.
                Err(_) => {}
            }
        }
    }))
}

/// `text` with every `$(NAME)` (NAME of ASCII letters, digits and `_`) replaced by `env(NAME)`;
/// the names that `env` does not know are an error, listed.
pub fn expand_env(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("$(") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        if name_len == 0 || after.as_bytes().get(name_len) != Some(&b')') {
            // Not a reference: kept as written.
            out.push_str("$(");
            rest = after;
            continue;
        }
        let name = &after[..name_len];
        match env(name) {
            Some(v) => out.push_str(&v),
            None => unset.push(name.to_string()),
        }
        rest = &after[name_len + 1..];
    }
    out.push_str(rest);
    if unset.is_empty() {
        Ok(out)
    } else {
        Err(unset)
    }
}

/// Feeds `path` into `h`: a file's bytes, a directory's files in name order at any depth.
fn hash_path(h: &mut Sha256, path: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        h.update(std::fs::read(path)?);
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for e in entries {
        hash_path(h, &e)?;
    }
    Ok(())
}

/// The reloader of one Prometheus.
#[derive(Debug)]
pub struct Reloader {
    config: ReloaderConfig,
    client: PromClient,
    /// Bound on each reload request.
    timeout: Duration,
    /// Its counters.
    pub stats: Arc<ReloaderStats>,
}

impl Reloader {
    /// A reloader of the Prometheus `client` talks to, each request bounded by `timeout`.
    pub fn new(config: ReloaderConfig, client: PromClient, timeout: Duration) -> Self {
        Reloader {
            config,
            client,
            timeout,
            stats: Arc::default(),
        }
    }

    /// Writes the configuration with its variables substituted, when asked to and when it
    /// differs from what the output file holds.
    fn substitute(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let (Some(input), Some(output)) = (&self.config.config_file, &self.config.envsubst_file)
        else {
            return Ok(());
        };
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading --reloader.config-file {}", input.display()))?;
        let expanded = expand_env(&text, |n| std::env::var(n).ok());
        let unset = expanded.as_ref().err().map_or(0, Vec::len);
        self.stats.envsubst_errors.store(unset as u64, Relaxed);
        let expanded = expanded.map_err(|names| {
            anyhow::anyhow!(
                "{}: unset environment variables referenced: {}",
                input.display(),
                names.join(", ")
            )
        })?;
        if std::fs::read_to_string(output).ok().as_deref() == Some(expanded.as_str()) {
            return Ok(());
        }
        let tmp = output.with_extension("tmp");
        std::fs::write(&tmp, &expanded).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, output)
            .with_context(|| format!("renaming {} to {}", tmp.display(), output.display()))
    }

    /// One pass: substitutes, then hashes everything watched.
    fn apply(&self) -> anyhow::Result<Vec<u8>> {
        use anyhow::Context as _;
        self.stats.config_applies.fetch_add(1, Relaxed);
        let res = (|| {
            self.substitute()?;
            let mut h = Sha256::new();
            for p in self.config.config_file.iter().chain(&self.config.rule_dirs) {
                hash_path(&mut h, p).with_context(|| format!("reading {}", p.display()))?;
                // A separator so that moving bytes between files changes the hash.
                h.update([0xff]);
            }
            Ok(h.finalize().to_vec())
        })();
        if res.is_err() {
            self.stats.config_applies_failed.fetch_add(1, Relaxed);
        }
        res
    }

    /// Tells Prometheus to reload, by the configured method, and waits until it has.
    async fn trigger(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let ReloadMethod::Signal { process_name } = &self.config.method else {
            return Ok(self.client.reload(self.timeout).await?);
        };
        let before = self
            .client
            .reload_status(self.timeout)
            .await
            .context("reading Prometheus's configuration status before the reload")?;
        // Prometheus keeps its last load time to the second: a second later, the reload's
        // time differs from any load before this point.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = find_process(process_name)?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .with_context(|| format!("sending SIGHUP to {process_name} (pid {pid})"))?;
        tracing::debug!(process = %process_name, pid, "SIGHUP sent");
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self
                .client
                .reload_status(self.timeout)
                .await
                .context("reading Prometheus's configuration status after the reload")?;
            if now.reload_config_success && now.last_config_time != before.last_config_time {
                return Ok(());
            }
            if before.reload_config_success && !now.reload_config_success {
                anyhow::bail!(
                    "Prometheus (pid {pid}) could not load the new configuration (see its log)"
                );
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!(
                    "Prometheus (pid {pid}) did not say it reloaded within {:?} of SIGHUP",
                    self.timeout
                );
            }
        }
    }

    /// Asks Prometheus to reload until it does or `stop` fires; whether it did.
    async fn reload(&self, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        loop {
            self.stats.reloads.fetch_add(1, Relaxed);
            match self.trigger().await {
                Ok(()) => {
                    self.stats.last_reload_successful.store(1, Relaxed);
                    self.stats
                        .last_reload_success_ms
                        .store(crate::now_ms(), Relaxed);
                    tracing::info!("Prometheus reloaded its configuration and rules");
                    return true;
                }
                Err(e) => {
                    self.stats.reloads_failed.fetch_add(1, Relaxed);
                    self.stats.last_reload_successful.store(0, Relaxed);
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?self.config.retry_interval, "reloading Prometheus failed; retrying");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_interval) => {}
                _ = stop.changed() => return false,
            }
        }
    }

    /// The directories inotify watches: the configuration file's and the rule directories.
    fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .config
            .config_file
            .iter()
            .map(|f| match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            })
            .chain(self.config.rule_dirs.iter().cloned())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Watches until `stop` fires: a reload at start, then one after every change, seen by
    /// inotify at once or by the pass every `--reloader.watch-interval`.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let wake = Arc::new(tokio::sync::Notify::new());
        let watch = match start_watch(&self.watched_dirs(), self.stats.clone(), wake.clone()) {
            Ok(task) => Some(task),
            Err(e) => {
                // A directory missing at start, say: the passes still see changes.
                tracing::warn!(error = %format!("{e:#}"), every = ?self.config.watch_interval, "reloader: no inotify watch; reading the files on each pass only");
                None
            }
        };
        self.watch_loop(&mut stop, &wake).await;
        if let Some(task) = watch {
            task.abort();
        }
    }

    async fn watch_loop(
        &self,
        stop: &mut tokio::sync::watch::Receiver<bool>,
        wake: &tokio::sync::Notify,
    ) {
        let mut last: Option<Vec<u8>> = None;
        loop {
            // Checked before each pass and wait: a stop seen while retrying a reload is
            // not seen again by `changed`.
            if *stop.borrow() {
                tracing::debug!("reloader stopped");
                return;
            }
            match self.apply() {
                Ok(hash) if last.as_ref() != Some(&hash) => {
                    if self.reload(stop).await {
                        last = Some(hash);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "reloader: reading the watched files failed")
                }
            }
            if *stop.borrow() {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.watch_interval) => {}
                () = wake.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        match n {
            "CLUSTER" => Some("eu1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn variables_in_parentheses_are_substituted() {
        assert_eq!(
            expand_env("cluster: $(CLUSTER)-$(EMPTY)x", env).unwrap(),
            "cluster: eu1-x"
        );
        // Not references: `$VAR`, `${VAR}`, `$(` without a name or a closing parenthesis.
        let kept = "a: $CLUSTER ${CLUSTER} $( $(CLUSTER $(a-b) $";
        assert_eq!(expand_env(kept, env).unwrap(), kept);
        assert_eq!(
            expand_env("$(NOPE) $(CLUSTER) $(ALSO_NOPE)", env).unwrap_err(),
            vec!["NOPE".to_string(), "ALSO_NOPE".to_string()]
        );
    }

    #[test]
    fn a_change_in_a_watched_file_changes_the_hash_and_substitution_writes_the_output() {
        // The binary installs it at start; a test builds the client without main.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("prometheus.yml.in");
        let out = d.path().join("prometheus.yml");
        let rules = d.path().join("rules");
        std::fs::create_dir_all(rules.join("nested")).unwrap();
        std::fs::write(&cfg, "global:\n  external_labels:\n    home: $(HOME)\n").unwrap();
        std::fs::write(rules.join("nested/a.yml"), "groups: []\n").unwrap();
        let r = Reloader::new(
            ReloaderConfig {
                config_file: Some(cfg.clone()),
                envsubst_file: Some(out.clone()),
                rule_dirs: vec![rules.clone()],
                watch_interval: Duration::from_secs(1),
                retry_interval: Duration::from_secs(1),
                method: ReloadMethod::Http,
            },
            PromClient::new("http://127.0.0.1:1", Duration::from_secs(1)).unwrap(),
            Duration::from_secs(1),
        );
        let first = r.apply().unwrap();
        assert_eq!(r.apply().unwrap(), first, "nothing changed");
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("global:\n  external_labels:\n    home: {home}\n")
        );
        std::fs::write(rules.join("nested/a.yml"), "groups: [] # changed\n").unwrap();
        assert_ne!(r.apply().unwrap(), first, "a rule file changed");
        std::fs::write(&cfg, "x: $(GAUNTLET_SURELY_UNSET_VARIABLE)\n").unwrap();
        assert!(r.apply().is_err());
        assert_eq!(r.stats.envsubst_errors.load(Relaxed), 1);
        assert_eq!(r.stats.config_applies_failed.load(Relaxed), 1);
    }

    #[test]
    fn a_process_is_found_by_its_executable_name() {
        // This test's own process, under the name the kernel keeps for it.
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let comm = comm.trim_end();
        let me = std::process::id() as i32;
        let found = find_process(comm).unwrap();
        assert!(
            found <= me,
            "{found} is not the lowest of the processes named {comm:?}"
        );
        assert!(find_process("gauntlet-surely-no-such-process").is_err());
    }
}
