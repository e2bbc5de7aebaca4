//! Server processes the runner starts on loopback (Prometheus 3.x, Gauntlet) or finds already
//! running (external mode), and the figures read about them from `/proc`.

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
    /// Where its stderr goes (started servers only).
    pub log: Option<PathBuf>,
}

impl Server {
    /// A server started elsewhere; `pid` gives process figures when it is local.
    pub fn external(name: &str, url: &str, pid: Option<u32>) -> Server {
        Server {
            name: name.to_string(),
            url: url.trim_end_matches('/').to_string(),
            pid,
            child: None,
            log: None,
        }
    }

    /// Starts `cmd` (stdout and stderr to `log`) and waits up to `wait` until `url` answers
    /// `/-/ready` (or, for servers without it, `/api/v1/labels`) with 200.
    pub fn start(
        name: &str,
        mut cmd: Command,
        url: String,
        log: &Path,
        wait: Duration,
    ) -> Result<Server, RunError> {
        let out = std::fs::File::create(log)?;
        let child = cmd
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| RunError::Start(format!("{cmd:?}: {e}")))?;
        let mut s = Server {
            name: name.to_string(),
            url,
            pid: Some(child.id()),
            child: Some(child),
            log: Some(log.to_path_buf()),
        };
        let deadline = Instant::now() + wait;
        loop {
            if let Some(c) = &mut s.child
                && let Ok(Some(status)) = c.try_wait()
            {
                return Err(RunError::Start(format!(
                    "{name} exited with {status} before becoming ready; see {}",
                    log.display()
                )));
            }
            if s.get("/-/ready").is_ok_and(|(st, _)| st == 200)
                || s.get("/api/v1/labels").is_ok_and(|(st, _)| st == 200)
            {
                return Ok(s);
            }
            if Instant::now() > deadline {
                return Err(RunError::Start(format!(
                    "{name} not ready after {wait:?}; see {}",
                    log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
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
    let cfg = dir.join("prometheus.yml");
    std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n")?;
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
