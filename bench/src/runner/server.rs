//! Server processes the runner starts on loopback (Prometheus 3.x, Gauntlet, Thanos's
//! components, VictoriaMetrics) or finds already running (external mode), and the figures read
//! about them from `/proc`.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::load::http::{Conn, Endpoint};
use crate::load::stats::ProcStats;

use super::RunError;

/// One side of a comparison: a base URL and, when local, the process behind it.
#[derive(Debug)]
pub struct Server {
    /// Name for the results table, e.g. `prometheus 3.5.3`.
    pub name: String,
    /// Base URL of its HTTP API, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The process, when it runs on this machine.
    pub pid: Option<u32>,
    child: Option<Child>,
    /// Program and arguments it was started with, to start it again (started servers only).
    command: Option<(OsString, Vec<OsString>)>,
    /// Where its stderr goes (started servers only).
    pub log: Option<PathBuf>,
    /// Time from the spawn to `/-/ready` answering 200 (started servers only).
    pub started_in: Option<Duration>,
}

impl Server {
    /// A server started elsewhere; `pid` gives process figures when it is local.
    pub fn external(name: &str, url: &str, pid: Option<u32>) -> Server {
        Server {
            name: name.to_string(),
            url: url.trim_end_matches('/').to_string(),
            pid,
            child: None,
            command: None,
            log: None,
            started_in: None,
        }
    }

    /// Starts `cmd` (stdout and stderr to `log`) and waits up to `wait` until `url` answers
    /// `/-/ready` (or, for servers without it, `/api/v1/labels`) with 200, polled every 20 ms;
    /// [`Server::started_in`] holds how long that took.
    pub fn start(
        name: &str,
        cmd: Command,
        url: String,
        log: &Path,
        wait: Duration,
    ) -> Result<Server, RunError> {
        let mut s = Server {
            name: name.to_string(),
            url,
            pid: None,
            child: None,
            command: Some((
                cmd.get_program().to_os_string(),
                cmd.get_args().map(|a| a.to_os_string()).collect(),
            )),
            log: Some(log.to_path_buf()),
            started_in: None,
        };
        let t = Instant::now();
        s.spawn(cmd, std::fs::File::create(log)?)?;
        s.wait_ready(wait, Duration::from_millis(20), true)?;
        s.started_in = Some(t.elapsed());
        Ok(s)
    }

    /// Kills the process with SIGKILL, as a crash would, and starts the same command again over
    /// the same data (its log appended to); returns the time from the spawn until `/-/ready`
    /// answers 200, polled every 10 ms.
    pub fn restart(&mut self, wait: Duration) -> Result<Duration, RunError> {
        let (Some((program, args)), Some(log)) = (self.command.clone(), self.log.clone()) else {
            return Err(RunError::Other(format!(
                "{} was not started here; it cannot be restarted",
                self.name
            )));
        };
        self.stop();
        let mut out = std::fs::OpenOptions::new().append(true).open(&log)?;
        writeln!(out, "\n--- gauntlet-bench: restarted after SIGKILL ---\n")?;
        let mut cmd = Command::new(program);
        cmd.args(args);
        let t = Instant::now();
        self.spawn(cmd, out)?;
        self.wait_ready(wait, Duration::from_millis(10), false)?;
        Ok(t.elapsed())
    }

    fn spawn(&mut self, mut cmd: Command, out: std::fs::File) -> Result<(), RunError> {
        let child = cmd
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| RunError::Start(format!("{cmd:?}: {e}")))?;
        self.pid = Some(child.id());
        self.child = Some(child);
        Ok(())
    }

    /// Polls every `poll` until `/-/ready` (or with `labels_too`, `/api/v1/labels`) answers
    /// 200, the process exits, or `wait` passes.
    fn wait_ready(
        &mut self,
        wait: Duration,
        poll: Duration,
        labels_too: bool,
    ) -> Result<(), RunError> {
        let log = self
            .log
            .as_ref()
            .map_or(String::new(), |l| l.display().to_string());
        let deadline = Instant::now() + wait;
        loop {
            if let Some(c) = &mut self.child
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(RunError::Start(format!(
                    "{} exited with {status} before becoming ready; see {log}",
                    self.name
                )));
            }
            if self.get("/-/ready").is_ok_and(|(st, _)| st == 200)
                || (labels_too && self.get("/api/v1/labels").is_ok_and(|(st, _)| st == 200))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(RunError::Start(format!(
                    "{} not ready after {wait:?}; see {log}",
                    self.name
                )));
            }
            std::thread::sleep(poll);
        }
    }

    /// A GET on this server; (status, body).
    pub fn get(&self, path_and_query: &str) -> Result<(u16, bytes::Bytes), RunError> {
        let ep = Endpoint::parse(&self.url)?;
        let rt = crate::load::http::runtime()?;
        let a = rt.block_on(async {
            Conn::new(&ep, Duration::from_secs(600))
                .send(
                    hyper::Method::GET,
                    Some(path_and_query),
                    &[],
                    bytes::Bytes::new(),
                )
                .await
        })?;
        Ok((a.status, a.body))
    }

    /// The sum of metric `name`'s samples on `/metrics` (over all its label sets, e.g. one per
    /// tenant); `None` when the server does not answer or has no such metric.
    pub fn metric_sum(&self, name: &str) -> Option<f64> {
        let (status, body) = self.get("/metrics").ok()?;
        (status == 200)
            .then(|| sum_of_metric(&String::from_utf8_lossy(&body), name))
            .flatten()
    }

    /// CPU and memory figures of the process, when local.
    pub fn stats(&self) -> Option<ProcStats> {
        self.pid.and_then(|p| ProcStats::read(&p.to_string()).ok())
    }

    /// Stops a started server (SIGKILL; the runner does not need its data afterwards).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sum of every sample of metric `name` in Prometheus's text exposition format `text`;
/// `None` when it has none.
pub fn sum_of_metric(text: &str, name: &str) -> Option<f64> {
    let mut sum = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // After the labels (whose values may hold spaces), the value is the next field.
        let value = match rest.chars().next() {
            Some('{') => rest.rsplit_once('}').map(|(_, v)| v),
            Some(' ' | '\t') => Some(rest),
            _ => None,
        };
        if let Some(v) = value
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
        {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}

/// A Gauntlet command: `bin` with `args` split on whitespace, then each of `extra`, every
/// `{key}` of `fill` replaced by its value.
pub fn gauntlet_cmd(bin: &Path, args: &str, extra: &[String], fill: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(bin);
    for a in args
        .split_whitespace()
        .chain(extra.iter().map(String::as_str))
    {
        let mut a = a.to_string();
        for (k, v) in fill {
            a = a.replace(&format!("{{{k}}}"), v);
        }
        cmd.arg(a);
    }
    cmd
}

/// A free loopback port.
pub fn free_port() -> Result<u16, RunError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A Prometheus command over `data` listening on `port`, with an empty scrape config and the
/// given extra flags.
pub fn prometheus_cmd(
    bin: &Path,
    dir: &Path,
    data: &Path,
    port: u16,
    extra: &[String],
) -> Result<Command, RunError> {
    prometheus_cmd_labelled(bin, dir, data, port, extra, &[])
}

/// [`prometheus_cmd`] with these external labels in the configuration's `global` section.
pub fn prometheus_cmd_labelled(
    bin: &Path,
    dir: &Path,
    data: &Path,
    port: u16,
    extra: &[String],
    external: &[(&str, &str)],
) -> Result<Command, RunError> {
    let cfg = dir.join("prometheus.yml");
    let mut text = String::from("global:\n  scrape_interval: 1h\n");
    if !external.is_empty() {
        text.push_str("  external_labels:\n");
        for (name, value) in external {
            text.push_str(&format!("    {name}: {value:?}\n"));
        }
    }
    std::fs::write(&cfg, text)?;
    let mut c = Command::new(bin);
    c.arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra);
    Ok(c)
}

/// First line of `bin --version`, or `unknown`.
pub fn version_of(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let t = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8(t).ok()
        })
        .and_then(|t| t.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Whether the Gauntlet binary has `subcommand` (it rejects unknown ones).
pub fn gauntlet_has(bin: &Path, subcommand: &str) -> bool {
    Command::new(bin)
        .args([subcommand, "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_samples_are_summed_over_label_sets() {
        let text = "# HELP prometheus_tsdb_head_series Series in the head.\n\
                    # TYPE prometheus_tsdb_head_series gauge\n\
                    prometheus_tsdb_head_series{tenant=\"default-tenant\"} 116280\n\
                    prometheus_tsdb_head_series{tenant=\"a } b\"} 20 1700000000000\n\
                    prometheus_tsdb_head_series_created 5\n\
                    prometheus_tsdb_head_samples_appended_total 9\n";
        assert_eq!(
            sum_of_metric(text, "prometheus_tsdb_head_series"),
            Some(116300.0)
        );
        assert_eq!(
            sum_of_metric(
                "prometheus_tsdb_head_series 1.16e+06\n",
                "prometheus_tsdb_head_series"
            ),
            Some(1_160_000.0)
        );
        assert_eq!(sum_of_metric(text, "prometheus_tsdb_head_chunks"), None);
    }

    #[test]
    fn gauntlet_commands_take_the_extra_arguments_last() {
        let cmd = gauntlet_cmd(
            Path::new("gauntlet"),
            "all --http-address=127.0.0.1:{http}  --data-dir={data}",
            &["--tsdb.wal-fsync=batch".into(), "--x={data}/y".into()],
            &[("http", "9090".into()), ("data", "/d".into())],
        );
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "all",
                "--http-address=127.0.0.1:9090",
                "--data-dir=/d",
                "--tsdb.wal-fsync=batch",
                "--x=/d/y"
            ]
        );
    }
}
