//! The query worker pool under load, against a real `gauntlet all`: abandoned heavy queries
//! leave neither CPU nor memory behind, a cheap query is answered promptly while heavy ones
//! run (the pool serves the query with the least CPU so far first), and a StoreAPI client
//! that cancels a large Series stream ends the server's work on it.
//!
//! The data: an hour of one-minute samples for 20 000 series `big`. The heavy query,
//! `sum(rate(big[5m]))` over that hour at a one-second step, computes 3 600 steps of a window
//! over every series: about forty pool tasks of 512 series each, seconds of CPU apiece in a
//! test build, nearly all of it in the pool's tasks (each folds its series into a partial sum).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use gauntlet_proto::thanos;

use crate::common::receive::now_ms;
use crate::common::*;
use crate::security::disconnect::{cpu_over, metric, send_get, write_hour};

/// Series written: enough for forty pool tasks per heavy query.
const SERIES: usize = 20_000;

/// The heavy range query: a rate window at each of an hour's 3 600 one-second steps, summed.
fn heavy_query(t_ms: i64) -> String {
    let end = t_ms / 1000;
    api_path(
        "/api/v1/query_range",
        &[
            ("query", "sum(rate(big[5m]))"),
            ("start", &(end - 3600).to_string()),
            ("end", &end.to_string()),
            ("step", "1"),
        ],
    )
}

/// Resident memory of process `pid`, bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
}

/// Starts `all` with `flags`, writes the data and runs one heavy query to its end, so pools,
/// caches and allocator arenas are warm before anything is measured.
fn loaded_server(flags: &[&str]) -> (tempfile::TempDir, GauntletServer, i64) {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let mut args = vec!["all", data.as_str(), "--compact.interval=0s"];
    args.extend_from_slice(flags);
    let server = GauntletServer::start(&args, "/-/ready");
    let t = now_ms() / 60_000 * 60_000;
    write_hour(&server, SERIES, t);
    let (code, body) = server.get(&heavy_query(t));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    (tmp, server, t)
}

/// Waits at most `limit` for `gauntlet_query_running` to reach `want`; returns its last value.
fn wait_running(server: &GauntletServer, want: f64, limit: Duration) -> f64 {
    let began = Instant::now();
    loop {
        let now = metric(server, "gauntlet_query_running");
        if now >= want || began.elapsed() >= limit {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two hundred heavy range queries at once, all admitted (`--query.max-concurrent=200`), whose
/// clients leave after a second: within a second of the last one leaving the process is idle
/// (under 5% of a core), holds no running query, and its resident memory is back within 10%
/// (at least 64 MiB) of what it held before the load.
#[test]
fn two_hundred_abandoned_heavy_queries_leave_nothing_behind() {
    let (_tmp, server, t) =
        loaded_server(&["--query.max-concurrent=200", "--query.max-queued=200"]);
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_bytes(pid);
    let idle = cpu_over(pid, Duration::from_millis(500));

    let clients: Vec<TcpStream> = (0..200)
        .map(|_| send_get(server.http_port, &heavy_query(t)))
        .collect();
    let running = wait_running(&server, 200.0, Duration::from_secs(5));
    let busy = cpu_over(pid, Duration::from_secs(1));
    let rss_loaded = rss_bytes(pid);
    assert!(running >= 150.0, "{running} queries running of 200");
    assert!(
        busy > 1.0,
        "the queries should keep both cores busy: {busy:.2}"
    );
    for c in &clients {
        c.shutdown(std::net::Shutdown::Both).unwrap();
    }
    drop(clients);
    let left = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let after = cpu_over(pid, Duration::from_secs(1));
    let rss_after = rss_bytes(pid);
    let running_after = metric(&server, "gauntlet_query_running");
    eprintln!(
        "idle {idle:.3} cores, loaded {busy:.2} cores ({running} running); {:?} after the \
         clients left: {after:.3} cores, {running_after} running; RSS before {} MiB, loaded {} \
         MiB, after {} MiB",
        left.elapsed(),
        rss_before >> 20,
        rss_loaded >> 20,
        rss_after >> 20
    );
    assert!(after < 0.05, "{after:.3} cores busy after the clients left");
    assert_eq!(running_after, 0.0);
    let margin = (rss_before / 10).max(64 << 20);
    assert!(
        rss_after <= rss_before + margin,
        "RSS {} MiB after, {} MiB before",
        rss_after >> 20,
        rss_before >> 20
    );
}

/// A cheap instant query is answered in at most 50 ms at the 99th percentile (100 samples)
/// while 50 heavy range queries run. The server admits all 51 at once
/// (`--query.max-concurrent=64`): at the default of 20 the cheap query would wait in the
/// admission queue behind the 30 heavy ones queued before it, which measures the queue, not
/// the pool. Admitted, the heavy queries' tasks all wait in the worker pool, and the pool and
/// the cheap query's own thread share the cores: nothing else runs query work. The cheap
/// query's reads go ahead of the heavy ones' on the head's cores (their big selections wait
/// in the cores' back lane), and no thread spends its time zeroing huge pages.
#[test]
fn a_cheap_query_is_answered_promptly_while_fifty_heavy_ones_run() {
    let (_tmp, server, t) = loaded_server(&["--query.max-concurrent=64"]);
    let pid = server.pid();
    let heavy: Vec<TcpStream> = (0..50)
        .map(|_| send_get(server.http_port, &heavy_query(t)))
        .collect();
    let running = wait_running(&server, 50.0, Duration::from_secs(5));
    assert_eq!(running, 50.0, "the heavy queries are all admitted");
    let cheap = api_path(
        "/api/v1/query",
        &[
            ("query", "big{i=\"00042\"}"),
            ("time", &(t / 1000).to_string()),
        ],
    );
    let mut took = Vec::new();
    let began = Instant::now();
    while took.len() < 100 && began.elapsed() < Duration::from_secs(60) {
        let at = Instant::now();
        let (code, body) = server.get(&cheap);
        took.push(at.elapsed());
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(1));
        std::thread::sleep(Duration::from_millis(10));
    }
    let still = metric(&server, "gauntlet_query_running");
    let busy = cpu_over(pid, Duration::from_millis(500));
    took.sort();
    let p99 = took[(took.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "{} cheap queries in {:?}: median {:?}, p99 {p99:?}, max {:?}; {still} queries \
         running after, {busy:.2} cores busy",
        took.len(),
        began.elapsed(),
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(
        took.len() >= 100,
        "only {} cheap queries in 60 s",
        took.len()
    );
    // The heavy queries were running the whole time, so the cheap ones were measured under
    // load.
    assert!(still >= 50.0, "{still} queries running at the end");
    assert!(busy > 1.0, "{busy:.2} cores busy at the end");
    assert!(p99 <= Duration::from_millis(50), "p99 {p99:?}");
    drop(heavy);
    assert_eq!(
        wait_running_down(&server, Duration::from_secs(5)),
        0.0,
        "the abandoned heavy queries end"
    );
}

/// Waits at most `limit` for no query to be running; returns the last count.
fn wait_running_down(server: &GauntletServer, limit: Duration) -> f64 {
    let began = Instant::now();
    loop {
        let now = metric(server, "gauntlet_query_running");
        if now == 0.0 || began.elapsed() >= limit {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A StoreAPI client streams Series of all 20 000 series and cancels after the first message:
/// the server's CPU is idle within a second, and it answers the next call.
#[test]
fn a_store_client_that_cancels_a_series_stream_ends_its_work() {
    let (_tmp, server, _t) = loaded_server(&[]);
    let pid = server.pid();
    let grpc = server.grpc_port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let request = || thanos::SeriesRequest {
        min_time: i64::MIN,
        max_time: i64::MAX,
        matchers: vec![thanos::LabelMatcher {
            r#type: thanos::label_matcher::Type::Eq as i32,
            name: "__name__".into(),
            value: "big".into(),
        }],
        ..Default::default()
    };
    let mut cancelled_at = None;
    for _ in 0..5 {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), async {
                let mut client =
                    thanos::store_client::StoreClient::connect(format!("http://127.0.0.1:{grpc}"))
                        .await
                        .unwrap()
                        .max_decoding_message_size(usize::MAX);
                let mut stream = client.series(request()).await.unwrap().into_inner();
                let first = stream.message().await.unwrap();
                assert!(first.is_some(), "the stream has a first message");
                // Dropping the stream and the channel cancels the call (an HTTP/2 reset).
                drop(stream);
                drop(client);
            })
            .await
            .expect("the first message within 30 s")
        });
        cancelled_at = Some(Instant::now());
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = cpu_over(pid, Duration::from_secs(1));
    eprintln!(
        "{after:.3} cores busy {:?} after the last cancel",
        cancelled_at.map(|t| t.elapsed())
    );
    assert!(
        after < 0.05,
        "{after:.3} cores busy after the clients cancelled"
    );
    // The server still answers a whole stream.
    let count = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut client =
                thanos::store_client::StoreClient::connect(format!("http://127.0.0.1:{grpc}"))
                    .await
                    .unwrap()
                    .max_decoding_message_size(usize::MAX);
            let mut stream = client.series(request()).await.unwrap().into_inner();
            let mut n = 0;
            while let Some(m) = stream.message().await.unwrap() {
                if let Some(thanos::series_response::Result::Series(_)) = m.result {
                    n += 1;
                }
            }
            n
        })
        .await
        .expect("a whole stream within 60 s")
    });
    assert_eq!(count, SERIES);
}
