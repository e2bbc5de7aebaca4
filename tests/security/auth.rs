//! Basic auth gives nothing away and cannot be used to take the cores: an unknown user name
//! takes as long as a wrong password (the decoy hash has the users' cost), a flood of bad
//! logins runs its bcrypt checks a few at a time while remembered good credentials skip the
//! queue, and every refusal is counted in `http_requests_total{code="401"}` and logged (at
//! most once a second) with the client's address.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::common::*;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse";

/// A `gauntlet receive` whose HTTP endpoints need basic auth (two users, bcrypt cost 10),
/// its log written to a file; killed on drop.
struct Guarded {
    child: Child,
    http: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Guarded {
    fn start() -> Guarded {
        let dir = tempfile::tempdir().unwrap();
        let alice = bcrypt::hash(PASSWORD, 10).unwrap();
        let bob = bcrypt::hash("another one", 10).unwrap();
        let web = dir.path().join("web.yml");
        std::fs::write(
            &web,
            format!("basic_auth_users:\n  {USER}: '{alice}'\n  bob: '{bob}'\n"),
        )
        .unwrap();
        let log = dir.path().join("stderr.log");
        let [http, grpc, rw] = free_ports();
        let child = gauntlet()
            .arg("receive")
            .arg(format!("--tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .arg(format!("--remote-write.address=127.0.0.1:{rw}"))
            .arg("--label=replica=\"r1\"")
            .arg(format!("--http.config={}", web.display()))
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("starting gauntlet receive");
        let mut g = Guarded {
            child,
            http,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = get(http, "/-/ready", Some((USER, PASSWORD))) {
                return g;
            }
            if let Ok(Some(status)) = g.child.try_wait() {
                panic!(
                    "gauntlet receive exited early with {status}:\n{}",
                    g.log_text()
                );
            }
            assert!(Instant::now() < deadline, "receive not ready in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server process's threads now.
    fn threads(&self) -> usize {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A sample of the server's `/metrics` (fetched with good credentials): the sum of the
    /// lines starting with `prefix`.
    fn metric_sum(&self, prefix: &str) -> f64 {
        let (code, body) = get(self.http, "/metrics", Some((USER, PASSWORD))).unwrap();
        assert_eq!(code, 200);
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET with `credentials` on a new connection; returns (status, body). Also gives the
/// client's own address.
fn get_from(
    port: u16,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> std::io::Result<(u16, Vec<u8>, SocketAddr)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    let local = s.local_addr()?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let auth = credentials.map_or_else(String::new, |(u, p)| {
        format!(
            "Authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
    let status = String::from_utf8_lossy(&buf[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, buf[head_end + 4..].to_vec(), local))
}

fn get(
    port: u16,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> std::io::Result<(u16, Vec<u8>)> {
    get_from(port, path, credentials).map(|(s, b, _)| (s, b))
}

/// Time of a refused login.
fn refused_in(port: u16, user: &str, password: &str) -> Duration {
    let t = Instant::now();
    let (code, _) = get(port, "/-/healthy", Some((user, password))).unwrap();
    assert_eq!(code, 401, "{user}:{password}");
    t.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn an_unknown_user_takes_as_long_as_a_wrong_password() {
    let g = Guarded::start();
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    // Interleaved, so that a slower moment of the machine weighs on both alike.
    for i in 0..20 {
        unknown.push(refused_in(g.http, &format!("mallory{i}"), PASSWORD));
        wrong.push(refused_in(g.http, USER, &format!("guess {i}")));
    }
    let (unknown, wrong) = (median(unknown), median(wrong));
    eprintln!("median refusal: unknown user {unknown:?}, wrong password {wrong:?}");
    let (lo, hi) = if unknown < wrong {
        (unknown, wrong)
    } else {
        (wrong, unknown)
    };
    assert!(
        hi.as_secs_f64() <= lo.as_secs_f64() * 1.2,
        "unknown user {unknown:?} against wrong password {wrong:?}: the difference tells which names exist"
    );
}

#[test]
fn remembered_logins_stay_fast_while_bad_logins_flood_in() {
    let g = Guarded::start();
    // Remembered from here on.
    assert_eq!(
        get(g.http, "/-/healthy", Some((USER, PASSWORD))).unwrap().0,
        200
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads_before = g.threads();
    let cpu_before = g.metric_sum("process_cpu_seconds_total");
    let flood_start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..32)
        .map(|t| {
            let (stop, refused, port) = (stop.clone(), refused.clone(), g.http);
            std::thread::spawn(move || {
                let end = Instant::now() + Duration::from_secs(20);
                let mut i = 0;
                while !stop.load(Relaxed) && Instant::now() < end {
                    if let Ok((401, _)) = get(port, "/-/healthy", Some((USER, &format!("{t}-{i}"))))
                    {
                        refused.fetch_add(1, Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut times = Vec::new();
    let mut threads = threads_before;
    while times.len() < 60 {
        threads = threads.max(g.threads());
        let t = Instant::now();
        let (code, _) = get(g.http, "/-/healthy", Some((USER, PASSWORD))).unwrap();
        assert_eq!(code, 200);
        times.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu = (g.metric_sum("process_cpu_seconds_total") - cpu_before)
        / flood_start.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    times.sort();
    let (p50, p99) = (times[times.len() / 2], times[times.len() * 99 / 100]);
    eprintln!(
        "32 threads of bad logins ({} refused): remembered login p50 {p50:?}, p99 {p99:?}, max {:?}; \
         server CPU {cpu:.2} cores of {cores}, threads {threads_before} before, {threads} at most during",
        refused.load(Relaxed),
        times[times.len() - 1]
    );
    assert!(p99 < Duration::from_millis(200), "p99 {p99:?}");
    // The checks run a few at a time (half the cores, at least one), not one a client: the
    // flood adds no more blocking threads than that (one a check when unbounded), and the
    // server keeps within that many cores (on a machine busy with other work it gets less).
    let checks = (cores / 2).max(1);
    assert!(
        threads <= threads_before + checks + 2,
        "the flood took the server from {threads_before} to {threads} threads: bcrypt checks are not bounded"
    );
    assert!(
        cpu < checks as f64 + 0.5,
        "the server used {cpu:.2} cores under the flood: bcrypt checks are not bounded"
    );
}

#[test]
fn refusals_are_counted_and_logged_with_the_remote_address() {
    let g = Guarded::start();
    let counted = |g: &Guarded| g.metric_sum("http_requests_total{code=\"401\"");
    let before = counted(&g);
    let (code, _, first) = get_from(g.http, "/-/healthy", Some((USER, "nope"))).unwrap();
    assert_eq!(code, 401);
    // Twenty more within a second, without credentials (no bcrypt: fast).
    let burst = Instant::now();
    for _ in 0..20 {
        assert_eq!(get(g.http, "/api/v1/status/tsdb", None).unwrap().0, 401);
    }
    assert!(
        burst.elapsed() < Duration::from_millis(900),
        "{:?}",
        burst.elapsed()
    );
    std::thread::sleep(Duration::from_millis(1100));
    let (code, _, last) = get_from(g.http, "/-/healthy", None).unwrap();
    assert_eq!(code, 401);
    let after = counted(&g);
    assert_eq!(after - before, 22.0, "http_requests_total{{code=\"401\"}}");

    // Give the log a moment to reach the file.
    std::thread::sleep(Duration::from_millis(200));
    let log = g.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("level=warn") && l.contains("401"))
        .collect();
    let first_line = warnings
        .iter()
        .find(|l| l.contains(&format!("remote={first}")))
        .unwrap_or_else(|| panic!("no warning with remote={first}:\n{log}"));
    assert!(first_line.contains("/-/healthy"), "{first_line}");
    // The burst was logged at most once more; the refusal after it says how many were not.
    assert!(warnings.len() <= 3, "{} warnings:\n{log}", warnings.len());
    let last_line = warnings
        .iter()
        .find(|l| l.contains(&format!("remote={last}")))
        .unwrap_or_else(|| panic!("no warning with remote={last}:\n{log}"));
    let suppressed: u64 = last_line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("suppressed="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no suppressed count: {last_line}"));
    assert!(suppressed >= 19, "{last_line}");
    eprintln!("{first_line}\n{last_line}");
}
