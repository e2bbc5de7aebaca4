//! HTTP listeners cannot be held open by clients that stall: hundreds of connections stalled
//! mid-headers are closed by the header timeout, connections stalled mid-body by
//! `--web.read-timeout`, on `gauntlet all`'s HTTP port and on `gauntlet receive`'s
//! remote-write port; past `--web.max-connections` new connections wait unserved in the
//! backlog while a keep-alive connection in use keeps answering, and once the stalled ones
//! are cut the waiting connection and new ones are served at once. SIGTERM finishes a request
//! in flight and gives up on stalled clients within the header timeout.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, now_ms, series, write_body};
use crate::common::*;

/// Extra time a close may take past its deadline on a loaded two-core machine.
const SLACK: Duration = Duration::from_secs(2);

/// Raises this process's open-file limit to the hard limit (the servers started afterwards
/// inherit it): the floods hold over a thousand sockets.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(soft >= 2048, "open-file limit {soft}: the test needs 2048");
}

/// A client connection and when it was opened.
struct Client {
    stream: TcpStream,
    opened: Instant,
    /// Bytes the server sent.
    got: Vec<u8>,
    /// When the server closed it.
    closed: Option<Instant>,
}

/// Opens a connection and sends `bytes`, then goes quiet.
fn stall(port: u16, bytes: &[u8]) -> Client {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let opened = Instant::now();
    stream.write_all(bytes).unwrap();
    Client {
        stream,
        opened,
        got: Vec::new(),
        closed: None,
    }
}

/// A request stopped mid-headers.
const STALLED_HEADERS: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";

/// A remote-write request whose headers are whole and whose body stops after three bytes of a
/// million.
const STALLED_BODY: &[u8] = b"POST /api/v1/receive HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n\
    X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: 1000000\r\n\r\nabc";

/// Reads every client without blocking until the server has closed them all or `until`
/// passes, noting when each was closed.
fn watch_closes(clients: &mut [Client], until: Instant) {
    for c in clients.iter() {
        c.stream.set_nonblocking(true).unwrap();
    }
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        let mut open = 0;
        for c in clients.iter_mut().filter(|c| c.closed.is_none()) {
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.closed = Some(Instant::now());
                        break;
                    }
                    Ok(n) => c.got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        open += 1;
                        break;
                    }
                    Err(_) => {
                        c.closed = Some(Instant::now());
                        break;
                    }
                }
            }
        }
        if open == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// How long after its opening each client was closed; panics on one still open.
fn lifetimes(what: &str, clients: &[Client]) -> Vec<Duration> {
    let open = clients.iter().filter(|c| c.closed.is_none()).count();
    assert_eq!(open, 0, "{what}: {open} of {} still open", clients.len());
    let mut l: Vec<Duration> = clients
        .iter()
        .map(|c| c.closed.unwrap_or_else(Instant::now) - c.opened)
        .collect();
    l.sort();
    l
}

/// One value of the server's `/metrics`: the line starting `series ` (0 when absent).
fn metric(port: u16, series: &str) -> f64 {
    let (code, body) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Time for a GET /-/healthy on a new connection, which must answer 200.
fn healthy_on_new_connection(port: u16) -> Duration {
    let t = Instant::now();
    let (code, _) = http_get(port, "/-/healthy").unwrap();
    assert_eq!(code, 200);
    t.elapsed()
}

/// Floods `flood_port` with `headers` connections stalled mid-headers and `bodies` stalled
/// mid-body; asserts each is closed by its deadline (header timeout 2 s, read timeout 5 s)
/// while `/-/healthy` on `health_port` answers within a second throughout.
fn stalled_clients_are_cut(flood_port: u16, health_port: u16, headers: usize, bodies: usize) {
    let header_timeout = Duration::from_secs(2);
    let read_timeout = Duration::from_secs(5);
    let mut stalled_bodies: Vec<Client> = (0..bodies)
        .map(|_| stall(flood_port, STALLED_BODY))
        .collect();
    let mut stalled_headers: Vec<Client> = (0..headers)
        .map(|_| stall(flood_port, STALLED_HEADERS))
        .collect();
    // During the flood (well under the connection cap) a new connection is served at once.
    let during = healthy_on_new_connection(health_port);
    assert!(
        during < Duration::from_secs(1),
        "/-/healthy took {during:?} during the flood"
    );
    watch_closes(
        &mut stalled_headers,
        Instant::now() + header_timeout + SLACK * 2,
    );
    let l = lifetimes("stalled mid-headers", &stalled_headers);
    eprintln!(
        "{headers} connections stalled mid-headers closed after {:?} (first) to {:?} (last)",
        l[0],
        l[l.len() - 1]
    );
    assert!(
        l[l.len() - 1] <= header_timeout + SLACK,
        "a connection stalled mid-headers lived {:?}",
        l[l.len() - 1]
    );
    watch_closes(
        &mut stalled_bodies,
        Instant::now() + read_timeout + SLACK * 2,
    );
    let l = lifetimes("stalled mid-body", &stalled_bodies);
    eprintln!(
        "{bodies} connections stalled mid-body closed after {:?} to {:?}",
        l[0],
        l[l.len() - 1]
    );
    // Cut by the read timeout, not the header timeout: their headers were whole.
    assert!(
        l[0] >= read_timeout - Duration::from_millis(500),
        "a connection stalled mid-body was closed after {:?}, before --web.read-timeout",
        l[0]
    );
    assert!(
        l[l.len() - 1] <= read_timeout + SLACK,
        "a connection stalled mid-body lived {:?}",
        l[l.len() - 1]
    );
    let after = healthy_on_new_connection(health_port);
    assert!(after < Duration::from_secs(1), "/-/healthy took {after:?}");
}

#[test]
fn all_cuts_connections_stalled_mid_headers_and_mid_body() {
    raise_fd_limit();
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let all = GauntletServer::start(
        &[
            "all",
            &data,
            "--web.header-timeout=2s",
            "--web.read-timeout=5s",
            "--web.max-connections=2000",
        ],
        "/-/ready",
    );
    let port = all.http_port;
    stalled_clients_are_cut(port, port, 600, 20);
    assert!(
        metric(
            port,
            "gauntlet_http_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 600.0
    );
    assert!(metric(port, "gauntlet_http_request_body_timeouts_total") >= 20.0);
    // The scrape's own connection is the only one left, once the last cut connection's
    // task has finished closing (it may still be on its way out on a loaded machine).
    let began = std::time::Instant::now();
    let mut open = metric(port, "gauntlet_http_connections_open");
    while open != 1.0 && began.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        open = metric(port, "gauntlet_http_connections_open");
    }
    assert_eq!(open, 1.0, "connections open besides the scrape's");
}

#[test]
fn receive_remote_write_port_cuts_stalled_connections() {
    raise_fd_limit();
    let tmp = tempfile::tempdir().unwrap();
    let r = Receiver::start(
        tmp.path(),
        &[
            "--web.header-timeout=2s",
            "--web.read-timeout=5s",
            "--web.max-connections=2000",
        ],
    );
    stalled_clients_are_cut(r.rw, r.http, 600, 10);
    assert!(
        metric(
            r.http,
            "gauntlet_http_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 600.0
    );
}

/// Sends GET /-/healthy on a keep-alive connection and reads the answer; returns the time it
/// took.
fn healthy_on(stream: &mut TcpStream) -> Duration {
    let t = Instant::now();
    stream
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // The answer is a short head and "Gauntlet is Healthy.\n"-like body with a length.
    while !answer_complete(&got) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "keep-alive connection closed: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    t.elapsed()
}

/// Whether `got` holds a whole HTTP/1.1 answer with a content-length.
fn answer_complete(got: &[u8]) -> bool {
    let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    got.len() >= end + 4 + len
}

#[test]
fn past_max_connections_new_connections_wait_until_stalled_ones_are_cut() {
    raise_fd_limit();
    // The default: long enough to open the flood on a busy machine before any of it is cut.
    let header_timeout = Duration::from_secs(10);
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let all = GauntletServer::start(&["all", &data, "--web.max-connections=512"], "/-/ready");
    let port = all.http_port;
    // A client in the middle of using a keep-alive connection when the flood comes.
    let mut kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    healthy_on(&mut kept);
    let flood_start = Instant::now();
    let mut stalled: Vec<Client> = (0..511).map(|_| stall(port, STALLED_HEADERS)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // The 513th connection: the kernel takes it, the server does not serve it while the
    // others are open.
    let mut waiting = TcpStream::connect(("127.0.0.1", port)).unwrap();
    waiting
        .write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 1024];
    match waiting.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the 513th connection was answered at the cap: {other:?}"),
    }
    assert!(
        flood_start.elapsed() < header_timeout - Duration::from_secs(1),
        "the flood took {:?} to open: it may have been cut before the check",
        flood_start.elapsed()
    );
    // The keep-alive connection in use keeps its place and answers at once during the flood.
    let mut worst = Duration::ZERO;
    while flood_start.elapsed() < header_timeout - Duration::from_millis(500) {
        worst = worst.max(healthy_on(&mut kept));
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("during the flood: /-/healthy on a kept connection at worst {worst:?}");
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    // Once the stalled connections are cut, the waiting one is served.
    waiting
        .set_read_timeout(Some(header_timeout + SLACK * 2))
        .unwrap();
    let mut answer = Vec::new();
    waiting.read_to_end(&mut answer).unwrap();
    let served_after = flood_start.elapsed();
    eprintln!("the 513th connection was served {served_after:?} after the flood began");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    assert!(
        served_after <= header_timeout + SLACK,
        "served {served_after:?} after the flood began"
    );
    watch_closes(&mut stalled, flood_start + header_timeout + SLACK * 2);
    let l = lifetimes("stalled mid-headers", &stalled);
    assert!(
        l[l.len() - 1] <= header_timeout + SLACK,
        "{:?}",
        l[l.len() - 1]
    );
    let fresh = healthy_on_new_connection(port);
    let again = healthy_on(&mut kept);
    eprintln!(
        "after the flood: /-/healthy {fresh:?} on a new connection, {again:?} on the kept one"
    );
    assert!(fresh < Duration::from_secs(1) && again < Duration::from_secs(1));
    assert!(metric(port, "gauntlet_http_connections_limited_total") >= 1.0);
    assert!(
        metric(
            port,
            "gauntlet_http_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 511.0
    );
}

#[test]
fn sigterm_finishes_requests_in_flight_and_gives_up_on_stalled_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let mut r = Receiver::start(tmp.path(), &["--web.header-timeout=2s"]);
    let body = write_body(vec![series(
        &[("__name__", "drained"), ("i", "1")],
        &[(now_ms(), 1.0)],
    )]);
    // A write whose body is half sent when the server is told to stop, and finished after.
    let mut in_flight = TcpStream::connect(("127.0.0.1", r.rw)).unwrap();
    write!(
        in_flight,
        "POST /api/v1/receive HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    in_flight.write_all(&body[..body.len() / 2]).unwrap();
    let mut idle = TcpStream::connect(("127.0.0.1", r.http)).unwrap();
    healthy_on(&mut idle);
    let mut stalled = vec![stall(r.http, STALLED_HEADERS), stall(r.rw, STALLED_BODY)];
    std::thread::sleep(Duration::from_millis(300));
    let stop = Instant::now();
    let terminate = std::thread::spawn(move || {
        r.terminate();
        stop.elapsed()
    });
    std::thread::sleep(Duration::from_millis(300));
    in_flight.write_all(&body[body.len() / 2..]).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    in_flight.read_to_end(&mut answer).unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "the write in flight: {}",
        String::from_utf8_lossy(&answer)
    );
    // The idle keep-alive connection is closed at once.
    idle.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert_eq!(idle.read(&mut [0u8; 16]).unwrap(), 0);
    watch_closes(&mut stalled, stop + Duration::from_secs(2) + SLACK * 2);
    lifetimes("stalled at shutdown", &stalled);
    // `terminate` asserts a clean exit within 30 s; the stalled clients held it 2 s at most.
    let took = terminate.join().unwrap();
    eprintln!("SIGTERM with clients stalled mid-headers and mid-body: exited after {took:?}");
    assert!(took <= Duration::from_secs(2) + SLACK, "{took:?}");
}
