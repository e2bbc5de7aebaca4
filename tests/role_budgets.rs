//! `gauntlet all` splits its `--memory.limit` among its roles: the query role admits work
//! from half of it, the receiver from 5/16, the StoreAPI from 3/16, each counting its part of
//! the resident size. Queries that fill the query role's part are refused with 503 while
//! remote writes are still taken: one role's refusal does not stop another.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::receive::{V1, now_ms, post, series, write_body};
use crate::common::*;
use serde_json::Value;

/// A query request whose body never finishes arriving: admitted, it holds its start's
/// reservation (1 MiB) in the query role's budget for as long as the connection waits.
fn stalled_query(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(
        b"POST /api/v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 64\r\n\r\nquery=",
    )
    .unwrap();
    s
}

/// Whether a query is refused by the memory budget now (503 naming the limit); any other
/// answer than 200 or that refusal fails the test.
fn query_refused(server: &GauntletServer) -> bool {
    let (status, body) = server.get("/api/v1/query?query=1");
    let text = String::from_utf8_lossy(&body);
    match status {
        200 => false,
        503 => {
            assert!(text.contains("--memory.limit of 512 MiB"), "{text}");
            true
        }
        _ => panic!("{status}: {text}"),
    }
}

#[test]
fn queries_refused_for_the_query_roles_part_leave_remote_write_working() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let server = GauntletServer::start(
        &[
            "all",
            &data,
            "--memory.limit=512MiB",
            "--query.max-concurrent=2000",
            "--query.max-queued=2000",
            "--compact.interval=0s",
        ],
        "/-/ready",
    );
    // Stalled queries fill the query role's part (256 MiB less half the resident size), a
    // mebibyte each, until a query is refused. With one budget for the whole process, the
    // reservations that fill 15/16 of it for reads would have left no room for writes,
    // which stop at 12/16.
    let mut stalled = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !query_refused(&server) {
        assert!(
            stalled.len() < 400 && Instant::now() < deadline,
            "{} stalled queries and no refusal",
            stalled.len()
        );
        for _ in 0..8 {
            stalled.push(stalled_query(server.http_port));
        }
        // Let the server take their headers and reserve.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(stalled.len() >= 8, "refused before any query was held");

    // The receiver's part still has room: the write is taken.
    let t = now_ms();
    let (code, _, text) = post(
        server.http_port,
        "/api/v1/receive",
        &[V1],
        &write_body(vec![series(&[("__name__", "m")], &[(t, 1.0)])]),
    )
    .unwrap();
    assert_eq!(code, 200, "{text}");
    assert!(
        query_refused(&server),
        "the query role's part emptied by itself"
    );

    // The stalled queries gone, their reservations are given back and queries answer again,
    // the write among what they see.
    for mut s in stalled.drain(..) {
        let _ = s.shutdown(std::net::Shutdown::Both);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while query_refused(&server) {
        assert!(Instant::now() < deadline, "queries still refused");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, body) = server.get(&format!("/api/v1/query?query=m&time={}", t / 1000 + 1));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");

    // The process's metrics read the whole budget: the limit given, the refusals of its parts.
    let (_, metrics) = server.get("/metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    assert_eq!(
        value("gauntlet_memory_limit_bytes"),
        512.0 * 1024.0 * 1024.0
    );
    assert!(value("gauntlet_memory_refusals_total") >= 2.0, "{metrics}");
}
