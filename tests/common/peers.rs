//! Upstream peers built with Go by `tests/peers/build.sh`: Thanos (every component runs from
//! the one `thanos` binary) and VictoriaMetrics single-node. The interop tests start them on
//! loopback beside Gauntlet's processes. A missing peer fails the test: the README's test
//! command builds them.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_ports, http_get, repo_root};

/// Path of the peer binary `name` (`thanos`, `victoria-metrics`): under `$GAUNTLET_PEERS_BIN`
/// when set, else `.tools/peers/bin/` of the repository. Panics when it is missing.
pub fn peer_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("GAUNTLET_PEERS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/peers/bin"));
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build the upstream peers with `bash tests/peers/build.sh` (the README's test command does)",
        bin.display()
    );
    bin
}

/// The Thanos version the peers module pins, as `thanos --version` prints it (`0.42.4`).
pub fn thanos_version() -> String {
    let out = Command::new(peer_bin("thanos"))
        .arg("--version")
        .output()
        .expect("running thanos --version");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.split_whitespace()
        .skip_while(|w| *w != "version")
        .nth(1)
        .unwrap_or("unknown")
        .to_string()
}

/// Runs `thanos ARGS…` to completion (the `tools` commands); its output.
pub fn thanos_tool(args: &[&str]) -> Output {
    Command::new(peer_bin("thanos"))
        .args(args)
        .output()
        .expect("running thanos")
}

/// A running upstream process on loopback, its log kept in a file and shown when a test fails
/// while it runs; killed on drop.
pub struct PeerProcess {
    child: Child,
    what: String,
    log: tempfile::NamedTempFile,
    /// Its HTTP port.
    pub http: u16,
    /// Its gRPC port (0 when it has none).
    pub grpc: u16,
}

impl PeerProcess {
    /// Starts `cmd` (its own flags given), logging into a file, and waits at most `within`
    /// until `ready_path` on `http` answers 200.
    pub fn spawn(
        cmd: Command,
        what: &str,
        http: u16,
        grpc: u16,
        ready_path: &str,
        within: Duration,
    ) -> PeerProcess {
        PeerProcess::spawn_until(cmd, what, http, grpc, within, || {
            matches!(http_get(http, ready_path), Ok((200, _)))
        })
    }

    /// Starts `cmd`, a server that speaks no HTTP (memcached, Redis), and waits at most
    /// `within` until `port` on loopback takes a connection; `http` holds that port.
    pub fn spawn_tcp(cmd: Command, what: &str, port: u16, within: Duration) -> PeerProcess {
        PeerProcess::spawn_until(cmd, what, port, 0, within, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    fn spawn_until(
        mut cmd: Command,
        what: &str,
        http: u16,
        grpc: u16,
        within: Duration,
        ready: impl Fn() -> bool,
    ) -> PeerProcess {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        let mut p = PeerProcess {
            child,
            what: what.to_string(),
            log,
            http,
            grpc,
        };
        let deadline = Instant::now() + within;
        loop {
            if ready() {
                return p;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("{what} exited early with {status}:\n{}", p.log_tail(60));
            }
            assert!(
                Instant::now() < deadline,
                "{what} was not ready in {within:?}:\n{}",
                p.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let mut f = self.log.reopen().unwrap();
        let _ = f.seek(SeekFrom::Start(0));
        let mut text = String::new();
        let _ = f.read_to_string(&mut text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Its whole log so far.
    pub fn log(&self) -> String {
        self.log_tail(usize::MAX)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` of its gRPC server, as an `--endpoint` names it.
    pub fn grpc_addr(&self) -> String {
        format!("127.0.0.1:{}", self.grpc)
    }

    /// Kills it with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {} ({})", self.child.id(), self.what);
    }

    /// Sends SIGTERM and waits (at most 30 s) for it to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!("{} did not stop within 30 s of SIGTERM", self.what);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET on its HTTP API: (status, body as text).
    pub fn get(&self, path_and_query: &str) -> (u16, String) {
        let (status, body) = http_get(self.http, path_and_query)
            .unwrap_or_else(|e| panic!("{} {path_and_query}: {e}", self.what));
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// GET on its HTTP API, which must answer 200 with JSON.
    pub fn get_json(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = self.get(path_and_query);
        assert_eq!(
            status,
            200,
            "{} {path_and_query}: {body}\n{}",
            self.what,
            self.log_tail(20)
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{}: {e}: {body}", self.what))
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- log of {} (last 80 lines) ----\n{}",
                self.what,
                self.log_tail(80)
            );
        }
        self.kill();
    }
}

/// Starts `thanos COMPONENT ARGS… --http-address=… [--grpc-address=…]` on free loopback ports
/// and waits (at most 120 s) until `/-/ready` answers. Components without a gRPC server
/// (`query-frontend`, `compact`, `tools …`) get no `--grpc-address`.
pub fn thanos(component: &str, args: &[String]) -> PeerProcess {
    let [http, grpc] = free_ports();
    let has_grpc = !matches!(component, "query-frontend" | "compact");
    let mut cmd = Command::new(peer_bin("thanos"));
    cmd.arg(component)
        .args(args)
        .arg(format!("--http-address=127.0.0.1:{http}"));
    if has_grpc {
        cmd.arg(format!("--grpc-address=127.0.0.1:{grpc}"));
    }
    PeerProcess::spawn(
        cmd,
        &format!("thanos {component}"),
        http,
        if has_grpc { grpc } else { 0 },
        "/-/ready",
        Duration::from_secs(120),
    )
}

/// `thanos query` over `endpoints` (`host:port` of StoreAPI servers) with `extra` flags.
pub fn thanos_query(endpoints: &[String], extra: &[&str]) -> PeerProcess {
    let mut args: Vec<String> = endpoints
        .iter()
        .map(|e| format!("--endpoint={e}"))
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    thanos("query", &args)
}

/// `thanos store` over the bucket `objstore` describes, with its scratch directory under
/// `data_dir`.
pub fn thanos_store(objstore: &Path, data_dir: &Path, extra: &[&str]) -> PeerProcess {
    let mut args = vec![
        format!("--objstore.config-file={}", objstore.display()),
        format!("--data-dir={}", data_dir.display()),
        // Every block at once: the tests write blocks and read them right away.
        "--consistency-delay=0s".into(),
        "--ignore-deletion-marks-delay=0s".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    thanos("store", &args)
}

/// Writes a `thanos` objstore file for a FILESYSTEM bucket over `bucket` into `dir`; its path.
pub fn objstore_file(dir: &Path, bucket: &Path) -> PathBuf {
    super::filesystem_objstore(dir.join("objstore.yml"), bucket)
}

/// A VictoriaMetrics single-node server on loopback over `data_dir`, with fresh samples
/// visible at once (`-search.latencyOffset=0s`).
pub fn victoria_metrics(data_dir: &Path, extra: &[&str]) -> PeerProcess {
    let [http] = free_ports();
    let mut cmd = Command::new(peer_bin("victoria-metrics"));
    cmd.arg(format!("-httpListenAddr=127.0.0.1:{http}"))
        .arg(format!("-storageDataPath={}", data_dir.display()))
        .arg("-search.latencyOffset=0s")
        .args(extra);
    PeerProcess::spawn(
        cmd,
        "victoria-metrics",
        http,
        0,
        "/health",
        Duration::from_secs(60),
    )
}

/// Runs `thanos ARGS…` to completion like [`thanos_tool`], but gives up after `within` (see
/// [`run_bounded`]): a compactor that halts or hangs must not hold the test up.
pub fn thanos_bounded(args: &[&str], within: Duration) -> Output {
    let mut cmd = Command::new(peer_bin("thanos"));
    cmd.args(args);
    run_bounded(cmd, within)
}

/// Runs `cmd` to completion and returns its output; when it runs past `within` it is killed
/// and the test fails with its standard error.
pub fn run_bounded(mut cmd: Command, within: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {what}: {e}"));
    // Drain both pipes while waiting, or a chatty process blocks on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            b
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let text = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
            panic!("{what} ran past {within:?}:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// `thanos receive` over `tsdb` on free loopback ports, shipping to the bucket `objstore`
/// names, with `extra` flags; returns it and its remote-write port.
pub fn thanos_receive(tsdb: &Path, objstore: &Path, extra: &[&str]) -> (PeerProcess, u16) {
    thanos_receive_on(free_ports(), tsdb, objstore, extra)
}

/// As [`thanos_receive`], on the loopback ports `[http, grpc, rw]` (a hashring lists its
/// members' gRPC addresses before they start).
pub fn thanos_receive_on(
    [http, grpc, rw]: [u16; 3],
    tsdb: &Path,
    objstore: &Path,
    extra: &[&str],
) -> (PeerProcess, u16) {
    let mut cmd = Command::new(peer_bin("thanos"));
    cmd.arg("receive")
        .arg(format!("--tsdb.path={}", tsdb.display()))
        .arg(format!("--objstore.config-file={}", objstore.display()))
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .arg(format!("--remote-write.address=127.0.0.1:{rw}"))
        // Its Cap'n Proto replication server is unused here; on a port of its own choosing,
        // receivers started side by side do not collide on the default one.
        .arg("--receive.capnproto-address=127.0.0.1:0")
        .args(extra);
    let p = PeerProcess::spawn(
        cmd,
        "thanos receive",
        http,
        grpc,
        "/-/ready",
        Duration::from_secs(60),
    );
    (p, rw)
}
