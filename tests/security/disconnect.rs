//! Abandoned requests end: a client that closes its connection mid-query stops the work it
//! asked for (the process's CPU falls back to idle within a second), requests past
//! `--query.max-concurrent` wait in a bounded queue and past `--query.max-queued` are refused
//! with 503, and a metadata request carrying more `match[]` selectors than
//! `--query.max-match-selectors` is refused before any is read.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::receive::{V1, now_ms, post, series, write_body};
use crate::common::*;

/// Writes an hour of one-minute samples ending at `t` (ms) for `n` series named `big`.
pub(crate) fn write_hour(server: &GauntletServer, n: usize, t: i64) {
    let samples: Vec<(i64, f64)> = (0..60)
        .map(|k| (t - (59 - k) * 60_000, (k * 7 % 13) as f64))
        .collect();
    for part in (0..n).step_by(500) {
        let body = write_body(
            (part..(part + 500).min(n))
                .map(|i| series(&[("__name__", "big"), ("i", &format!("{i:05}"))], &samples))
                .collect(),
        );
        let (code, _, text) = post(server.http_port, "/api/v1/receive", &[V1], &body).unwrap();
        assert_eq!(code, 200, "{text}");
    }
}

/// A range query that keeps a core busy for far longer than the test waits: each of its 361
/// steps takes the median of an hour of one-second subquery points of every series.
fn heavy_query(t_ms: i64) -> String {
    let end = t_ms / 1000;
    api_path(
        "/api/v1/query_range",
        &[
            ("query", "sum(quantile_over_time(0.5, big[1h:1s]))"),
            ("start", &(end - 3600).to_string()),
            ("end", &end.to_string()),
            ("step", "10"),
        ],
    )
}

/// Sends a GET and returns the open connection without reading the answer.
pub(crate) fn send_get(port: u16, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s
}

/// The process's CPU use over `window`, in cores.
pub(crate) fn cpu_over(pid: u32, window: Duration) -> f64 {
    let before = process_cpu_seconds(pid);
    std::thread::sleep(window);
    (process_cpu_seconds(pid) - before) / window.as_secs_f64()
}

/// The value of an unlabelled sample in a `/metrics` page.
pub(crate) fn metric(server: &GauntletServer, name: &str) -> f64 {
    let (_, body) = server.get("/metrics");
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

#[test]
fn a_client_that_leaves_ends_the_work_it_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let server = GauntletServer::start(&["all", &data, "--compact.interval=0s"], "/-/ready");
    let t = now_ms() / 60_000 * 60_000;
    write_hour(&server, 1000, t);
    let pid = server.pid();

    // Four heavy queries whose clients leave after a second.
    let clients: Vec<TcpStream> = (0..4)
        .map(|_| send_get(server.http_port, &heavy_query(t)))
        .collect();
    let busy = cpu_over(pid, Duration::from_secs(1));
    assert!(
        busy > 0.5,
        "the queries should keep the process busy: {busy:.2} cores"
    );
    assert_eq!(metric(&server, "gauntlet_query_running"), 4.0);
    for c in &clients {
        c.shutdown(std::net::Shutdown::Both).unwrap();
    }
    drop(clients);
    let left = Instant::now();
    // Within a second of the last client leaving, the work is gone.
    std::thread::sleep(Duration::from_secs(1));
    let after = cpu_over(pid, Duration::from_secs(1));
    assert!(
        after < 0.05,
        "{after:.3} cores busy {:?} after the clients left",
        left.elapsed()
    );
    assert_eq!(metric(&server, "gauntlet_query_running"), 0.0);

    // The same with a metadata read of many selectors.
    let sets: Vec<String> = (0..999)
        .map(|i| {
            format!(
                "match[]={}",
                urlencode(&format!("{{__name__=~\"b.*\",i!=\"{i}\"}}"))
            )
        })
        .collect();
    let body = sets.join("&");
    let mut c = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    write!(
        c,
        "POST /api/v1/series HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(c);
    std::thread::sleep(Duration::from_secs(1));
    let after = cpu_over(pid, Duration::from_secs(1));
    assert!(
        after < 0.05,
        "{after:.3} cores busy after the series client left"
    );
}

#[test]
fn past_its_slots_and_queue_a_query_is_refused_and_too_many_selectors_are_refused_first() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let server = GauntletServer::start(
        &[
            "all",
            &data,
            "--compact.interval=0s",
            "--query.max-concurrent=1",
            "--query.max-queued=1",
        ],
        "/-/ready",
    );
    let t = now_ms() / 60_000 * 60_000;
    write_hour(&server, 500, t);

    let running = send_get(server.http_port, &heavy_query(t));
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&server, "gauntlet_query_running") < 1.0 {
        assert!(Instant::now() < deadline, "the first query never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let queued = send_get(server.http_port, &heavy_query(t));
    while metric(&server, "gauntlet_query_queued") < 1.0 {
        assert!(Instant::now() < deadline, "the second query never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Slots and queue are full: the next is refused at once.
    let began = Instant::now();
    let (status, body) = server.get("/api/v1/query?query=1");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert!(began.elapsed() < Duration::from_secs(1));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("--query.max-concurrent"), "{text}");
    // Settings-only endpoints are not gated.
    assert_eq!(server.get("/api/v1/status/buildinfo").0, 200);

    // The queued client leaves first: its place is given back, then the running one's.
    drop(queued);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&server, "gauntlet_query_queued") > 0.0 {
        assert!(Instant::now() < deadline, "the queued query kept its place");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(running);
    while metric(&server, "gauntlet_query_running") > 0.0 {
        assert!(Instant::now() < deadline, "the running query kept its slot");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = server.get(&format!("/api/v1/query?query=count(big)&time={}", t / 1000));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(metric(&server, "gauntlet_query_refused_total") >= 1.0);

    // Too many selectors: refused before any is parsed or read.
    let sets: Vec<String> = (0..10_000)
        .map(|i| format!("match[]=big{{i=\"{i}\"}}"))
        .collect();
    let form = sets.join("&");
    let began = Instant::now();
    let (status, body) = http_post_form(server.http_port, "/api/v1/series", &form).unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(began.elapsed() < Duration::from_secs(2));
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("--query.max-match-selectors"), "{text}");
}

#[test]
fn queries_running_at_a_crash_are_logged_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let data_flag = format!("--data-dir={}", data.display());
    let server = GauntletServer::start(&["all", &data_flag, "--compact.interval=0s"], "/-/ready");
    let t = now_ms() / 60_000 * 60_000;
    write_hour(&server, 500, t);
    let _client = send_get(server.http_port, &heavy_query(t));
    let log = data.join(".gauntlet/queries.active");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("quantile_over_time")
    {
        assert!(
            Instant::now() < deadline,
            "the query never showed in {log:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.signal("KILL");
    drop(server);

    let stderr = tmp.path().join("restart.log");
    let [http, grpc] = free_ports();
    let mut child = gauntlet()
        .args(["all", &data_flag, "--compact.interval=0s"])
        .arg("--remote-write.address=127.0.0.1:0")
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(http, "/-/ready").map(|r| r.0).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "no restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&stderr).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("unfinished query"))
        .unwrap_or_else(|| panic!("no unfinished query logged:\n{text}"));
    assert!(
        line.contains("sum(quantile_over_time(0.5, big[1h:1s]))"),
        "{line}"
    );
    // The restart found the file and started it afresh.
    assert!(!std::fs::read_to_string(&log).unwrap().contains("quantile"));
}
