//! Helpers shared by the end-to-end tests: the binary under test, real peers, scratch dirs.
//! The engine's tests that need a real peer include this file too (`#[path]`); there the
//! `gauntlet` binary is not built.

#![allow(dead_code)]

pub mod bucket;
pub mod emulators;
pub mod head_histograms;
pub mod histograms;
pub mod native_histograms;
pub mod peers;
pub mod receive;
pub mod storeapi;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The fixture blocks written by real Prometheus and promtool.
pub fn fixtures() -> PathBuf {
    repo_root().join("testdata/tsdb")
}

/// The `gauntlet` binary built for this test run (the server package's tests only).
pub fn gauntlet() -> Command {
    match option_env!("CARGO_BIN_EXE_gauntlet") {
        Some(bin) => Command::new(bin),
        None => panic!("the gauntlet binary is built for the server package's tests only"),
    }
}

/// Path of an external program on PATH, if it is installed.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Path of a required external program; panics with install advice when missing.
pub fn require(program: &str) -> PathBuf {
    which(program).unwrap_or_else(|| {
        panic!("{program} is not installed; run the README's test command, which installs it")
    })
}

/// Path of an external program a test needs, or `None` (after saying so on stderr) when it
/// is missing outside CI, so the caller can skip; under `CI` a missing program fails the test.
pub fn require_or_skip(program: &str, test: &str) -> Option<PathBuf> {
    let found = which(program);
    if found.is_none() && std::env::var_os("CI").is_none() {
        eprintln!(
            "SKIPPED {test}: {program} is not installed (bash tests/tools/prometheus.sh stable \
             installs it; under CI=true this is a failure)"
        );
        return None;
    }
    Some(found.unwrap_or_else(|| require(program)))
}

/// Runs a command to completion, panicking with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `tests/tools/gen_openmetrics.py` input to `dir/input.om`: `instances` × 200 series
/// from `start_s` (Unix seconds) over `secs` seconds, a sample every `step_s` seconds.
pub fn gen_openmetrics(
    dir: &Path,
    start_s: i64,
    secs: u32,
    step_s: u32,
    instances: u32,
) -> PathBuf {
    let om = dir.join("input.om");
    run_ok(
        Command::new(require("python3"))
            .arg(repo_root().join("tests/tools/gen_openmetrics.py"))
            .arg(&om)
            .args([
                start_s.to_string(),
                secs.to_string(),
                step_s.to_string(),
                instances.to_string(),
            ]),
    );
    om
}

/// Writes a Thanos objstore file for a FILESYSTEM bucket over `bucket` at `cfg`; returns `cfg`.
pub fn filesystem_objstore(cfg: PathBuf, bucket: &Path) -> PathBuf {
    std::fs::write(
        &cfg,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )
    .unwrap();
    cfg
}

/// Copies a directory tree.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
            let mut perm = std::fs::metadata(&to).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(&to, perm).unwrap();
        }
    }
}

/// `promtool tsdb dump` of the blocks in `blocks` (a block dir or a dir of blocks), run on a
/// scratch copy because promtool needs a `wal/` dir and writes into the data dir.
pub fn promtool_dump(blocks: &Path, extra: &[&str]) -> Vec<u8> {
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("db");
    if blocks.join("meta.json").is_file() {
        copy_dir(blocks, &db.join(blocks.file_name().unwrap()));
    } else {
        copy_dir(blocks, &db);
    }
    std::fs::create_dir_all(db.join("wal")).unwrap();
    let out = run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "dump"])
            .args(extra)
            .arg(&db),
    );
    out.stdout
}

/// `gauntlet tools block dump` of `dir`.
pub fn gauntlet_dump(dir: &Path, extra: &[&str]) -> Vec<u8> {
    run_ok(
        gauntlet()
            .args(["tools", "block", "dump"])
            .arg(dir)
            .args(extra),
    )
    .stdout
}

/// Asserts two dumps are identical, reporting the first differing line.
pub fn assert_same_dump(what: &str, want: &[u8], got: &[u8]) {
    if want == got {
        return;
    }
    let w: Vec<&[u8]> = want.split(|&b| b == b'\n').collect();
    let g: Vec<&[u8]> = got.split(|&b| b == b'\n').collect();
    for (i, (a, b)) in w.iter().zip(&g).enumerate() {
        if a != b {
            panic!(
                "{what}: line {} differs\n want: {}\n  got: {}",
                i + 1,
                String::from_utf8_lossy(a),
                String::from_utf8_lossy(b)
            );
        }
    }
    panic!("{what}: {} lines wanted, {} lines got", w.len(), g.len());
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `n` sets of `N` free loopback ports, all distinct: held open together while chosen, so
/// no two sets share a port (separate [`free_ports`] calls may be handed the same one).
pub fn free_port_sets<const N: usize>(n: usize) -> Vec<[u16; N]> {
    let held: Vec<TcpListener> = (0..n * N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    held.chunks(N)
        .map(|set| std::array::from_fn(|i| set[i].local_addr().unwrap().port()))
        .collect()
}

/// `N` distinct free loopback ports: each listener is held until all are picked, so two picks
/// cannot hand back the same port.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

/// A plain HTTP/1.0 GET on loopback; returns (status, body).
pub fn http_get(port: u16, path_and_query: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, buf[head_end + 4..].to_vec()))
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A real Prometheus server on loopback over a data dir, killed on drop.
pub struct Prometheus {
    child: Child,
    /// Its HTTP port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `binary` over a copy of the blocks in `blocks` with retention far enough back to
    /// keep them, and waits until it is ready (at most 60 s).
    pub fn start(binary: &Path, blocks: &Path) -> Prometheus {
        Self::start_with_args(binary, blocks, &[])
    }

    /// As [`Prometheus::start`], with extra command-line flags (e.g. feature flags).
    pub fn start_with_args(binary: &Path, blocks: &Path, extra: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(blocks, &dir.path().join("data"));
        let mut args = vec![
            "--storage.tsdb.retention.time=100y",
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
        ];
        args.extend_from_slice(extra);
        Self::launch(
            binary,
            dir,
            |_| "global:\n  scrape_interval: 1h\n".into(),
            &args,
        )
    }

    /// Starts `binary` over an empty data dir ([`Prometheus::data_dir`]) with the
    /// configuration `config` returns for its HTTP port (to scrape itself, say), and waits
    /// until it is ready (at most 60 s).
    pub fn start_with_config(
        binary: &Path,
        config: impl FnOnce(u16) -> String,
        extra: &[&str],
    ) -> Prometheus {
        Self::launch(binary, tempfile::tempdir().unwrap(), config, extra)
    }

    /// Starts `binary` over a copy of the TSDB directory `data` (blocks, `wal/`, `wbl/`) with
    /// the configuration `config` returns for its HTTP port, and waits until it is ready (at
    /// most 60 s).
    pub fn start_over(
        binary: &Path,
        data: &Path,
        config: impl FnOnce(u16) -> String,
        extra: &[&str],
    ) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(data, &dir.path().join("data"));
        Self::launch(binary, dir, config, extra)
    }

    fn launch(
        binary: &Path,
        dir: tempfile::TempDir,
        config: impl FnOnce(u16) -> String,
        extra: &[&str],
    ) -> Prometheus {
        let data = dir.path().join("data");
        let cfg = dir.path().join("prometheus.yml");
        let port = free_port();
        std::fs::write(&cfg, config(port)).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        let p = Prometheus { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(port, "/-/ready") {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its `--storage.tsdb.path`.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills it with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// GET on the API; panics on a non-200 answer.
    pub fn get(&self, path_and_query: &str) -> serde_json::Value {
        let (status, body) = http_get(self.port, path_and_query).expect("query prometheus");
        assert_eq!(
            status,
            200,
            "{path_and_query}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("prometheus JSON")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `gauntlet` server process (`all`, `query`, `store`) on loopback, killed on drop.
pub struct GauntletServer {
    child: Child,
    /// Its HTTP port.
    pub http_port: u16,
    /// Its gRPC port.
    pub grpc_port: u16,
}

impl GauntletServer {
    /// Starts `gauntlet <args> --http-address=… --grpc-address=…` on free loopback ports and
    /// waits (at most 60 s) until `ready_path` answers 200 over HTTP.
    pub fn start(args: &[&str], ready_path: &str) -> GauntletServer {
        Self::start_with_env(args, ready_path, &[])
    }

    /// As [`GauntletServer::start`], with environment variables `env` set for the process.
    pub fn start_with_env(args: &[&str], ready_path: &str, env: &[(&str, &str)]) -> GauntletServer {
        let [http_port, grpc_port] = free_ports();
        // `all` takes remote write too: on loopback, on a port of its own choosing, unless the
        // test names one.
        let rw = (args.first() == Some(&"all")
            && !args.iter().any(|a| a.starts_with("--remote-write.address")))
        .then_some("--remote-write.address=127.0.0.1:0");
        let child = gauntlet()
            .args(args)
            .args(rw)
            .envs(env.iter().copied())
            .arg(format!("--http-address=127.0.0.1:{http_port}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting gauntlet");
        let mut s = GauntletServer {
            child,
            http_port,
            grpc_port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(http_port, ready_path) {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("gauntlet {args:?} exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "gauntlet {args:?} did not become ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`, …) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill -{signal} {}", self.child.id());
    }

    /// GET on the HTTP API: (status, body).
    pub fn get(&self, path_and_query: &str) -> (u16, Vec<u8>) {
        http_get(self.http_port, path_and_query).expect("query gauntlet")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// CPU time process `pid` has used so far (user and system), in seconds.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/PID/stat");
    // The command name may hold spaces; the fields after it are fixed.
    let rest = &stat[stat.rfind(')').expect("stat has a command") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // Linux reports in clock ticks of USER_HZ, 100 a second on every architecture Gauntlet
    // runs on.
    ticks / 100.0
}

impl Drop for GauntletServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 form-encoded POST on loopback; returns (status, body).
pub fn http_post_form(port: u16, path: &str, form: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, buf[head_end + 4..].to_vec()))
}

/// Prometheus 3 (Debian's current build, `tests/tools/prometheus.sh current`), fetched once
/// into the target directory; test binaries running at once take turns through a lock.
pub fn prometheus3() -> PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prometheus3");
    let lock = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prometheus3.lock");
    let out = run_ok(
        Command::new(require("flock"))
            .arg(&lock)
            .arg("bash")
            .arg(repo_root().join("tests/tools/prometheus.sh"))
            .arg("current")
            .arg(&cache),
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `path?k=v&…` with the values URL-encoded.
pub fn api_path(path: &str, params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

/// Asks Prometheus (on `prom_port`) and Gauntlet the same `paths`, fails listing every answer
/// that differs in status or body (Gauntlet's body passed through `adjust` first), and returns
/// how many of Prometheus's answers hold native histograms. Errors are compared
/// as answers are. Prometheus keeps a query's annotations in a map, so their order changes
/// from one run to the next: both sides' `warnings` and `infos` are put in order first.
pub fn assert_same_answers(
    prom_port: u16,
    ours: &GauntletServer,
    paths: &[String],
    adjust: impl Fn(String) -> String,
) -> usize {
    let mut failures = Vec::new();
    let mut with_histograms = 0;
    for path in paths {
        let (ps, pb) = http_get(prom_port, path).expect("query prometheus");
        let (gs, gb) = ours.get(path);
        let want = sorted_annotations(&String::from_utf8_lossy(&pb));
        let got = sorted_annotations(&adjust(String::from_utf8_lossy(&gb).into_owned()));
        if want.contains("\"histogram") {
            with_histograms += 1;
        }
        if (gs, &got) != (ps, &want) {
            failures.push(format!(
                "{path}\n  gauntlet   {gs} {got}\n  prometheus {ps} {want}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} answers differ:\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n")
    );
    with_histograms
}

/// `body` with the items of its `"warnings"` and `"infos"` arrays sorted (as raw JSON text).
pub fn sorted_annotations(body: &str) -> String {
    let mut out = body.to_string();
    for key in ["\"warnings\":[", "\"infos\":["] {
        let Some(start) = out.find(key).map(|i| i + key.len()) else {
            continue;
        };
        // The array's items: JSON strings, split at the commas outside them.
        let bytes = out.as_bytes();
        let (mut items, mut item_start, mut i, mut in_str) = (Vec::new(), start, start, false);
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_str => i += 1,
                b'"' => in_str = !in_str,
                b',' if !in_str => {
                    items.push(out[item_start..i].to_string());
                    item_start = i + 1;
                }
                b']' if !in_str => break,
                _ => {}
            }
            i += 1;
        }
        items.push(out[item_start..i].to_string());
        items.sort();
        out.replace_range(start..i, &items.join(","));
    }
    out
}
