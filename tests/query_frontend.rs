//! `gauntlet query-frontend` in front of a querier: range queries split by interval (15 min
//! over a 2 h block, so each crosses several boundaries), answered again from the results
//! cache, and over windows shifted across what the cache holds, all equal the querier's own
//! answers byte for byte; with the cache off and unaligned windows too. A query the querier
//! refuses comes back as it refused it; instant queries pass through; label and series calls
//! are split, cached and equal the querier's own; SIGTERM stops it cleanly. Interop: `thanos query-frontend` in front of `gauntlet all`, and
//! `gauntlet query-frontend` in front of `thanos query` over a `gauntlet store`, both agree
//! with the direct answers. A real memcached and a real Redis (plain, over mutual TLS,
//! behind a Redis Sentinel, and a Redis Cluster of three) hold the cache: two frontends share it, and with the cache killed
//! answers still come, uncached. Vertical sharding at 2
//! and 4 shards, Gauntlet's frontend and Thanos's, in front of `gauntlet query` over a store
//! and a receiver (whose own `shard_info` answers partition the series), and Gauntlet's in
//! front of `thanos query`, equal the direct answers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::common::peers::{PeerProcess, thanos, thanos_query};
use crate::common::*;

const BLOCK: &str = "promtool-200series-2h";
const T0: i64 = 1_735_689_600;
const IN_MEMORY: &str = "type: IN-MEMORY\nconfig:\n  max_size: 64MB\n  max_size_items: 1000\n";

const QUERIES: &[&str] = &[
    r#"http_requests_total{code="500",handler="/api/a"}"#,
    "sum by (code) (rate(http_requests_total[5m]))",
    "max_over_time(temperature_celsius[10m])",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
];

/// `gauntlet query-frontend` in front of `downstream_port` with `extra` flags.
fn frontend(downstream_port: u16, extra: &[&str]) -> PeerProcess {
    let http = free_port();
    let mut cmd = gauntlet();
    cmd.arg("query-frontend")
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!(
            "--query-frontend.downstream-url=http://127.0.0.1:{downstream_port}"
        ))
        .args(extra);
    PeerProcess::spawn(
        cmd,
        "gauntlet query-frontend",
        http,
        0,
        "/-/ready",
        Duration::from_secs(60),
    )
}

/// `gauntlet all` over a copy of the fixture block.
fn querier(root: &Path) -> GauntletServer {
    let data = root.join("data");
    copy_dir(&fixtures().join(BLOCK), &data);
    GauntletServer::start(
        &["all", &format!("--data-dir={}", data.display())],
        "/-/ready",
    )
}

/// `gauntlet store` over a bucket holding the fixture block, under `root`.
fn fixture_store(root: &Path) -> GauntletServer {
    let bucket = root.join("bucket");
    copy_dir(&fixtures().join(BLOCK), &bucket);
    let cfg = filesystem_objstore(root.join("bucket.yml"), &bucket);
    GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", cfg.display()),
            &format!("--data-dir={}", root.join("cache").display()),
            // Sharded and split, one query is many Series calls at once.
            "--store.grpc.series-max-concurrency=100",
        ],
        "/-/ready",
    )
}

fn range(query: &str, start: i64, end: i64, step: &str) -> String {
    api_path(
        "/api/v1/query_range",
        &[
            ("query", query),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("step", step),
        ],
    )
}

/// The value of the sample of `name` with `labels` in `/metrics` of port `port`, 0 if absent.
fn metric(port: u16, name_and_labels: &str) -> f64 {
    let (_, body) = http_get(port, "/metrics").unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Asks `fe` and `direct` `path`: both 200 with the same body (as JSON), and some data.
#[track_caller]
fn assert_same(fe: u16, direct: u16, path: &str) {
    let (ws, want) = http_get(direct, path).unwrap();
    let (gs, got) = http_get(fe, path).unwrap();
    let want: serde_json::Value = serde_json::from_slice(&want).unwrap();
    let got: serde_json::Value = serde_json::from_slice(&got)
        .unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&got)));
    assert_eq!(ws, 200, "{path}: querier {want}");
    assert_eq!((gs, &got), (200, &want), "{path}");
}

#[test]
fn split_and_cached_answers_equal_the_querier_s() {
    let root = tempfile::tempdir().unwrap();
    let q = querier(root.path());
    let fe = frontend(
        q.http_port,
        &[
            "--query-range.split-interval=15m",
            &format!("--query-range.response-cache-config={IN_MEMORY}"),
        ],
    );
    let hits = |fe: &PeerProcess| {
        metric(
            fe.http,
            r#"cortex_cache_hits_total{name="frontend.query-range"}"#,
        )
    };
    for query in QUERIES {
        // Across eight 15 min boundaries; then again, answered from the cache.
        let whole = range(query, T0, T0 + 7200, "60");
        assert_same(fe.http, q.http_port, &whole);
        let before = hits(&fe);
        assert_same(fe.http, q.http_port, &whole);
        assert!(
            hits(&fe) > before,
            "{query}: the second ask was not a cache hit"
        );
        // Windows shifted across what the cache holds: parts of them come from it.
        for (s, e, step) in [
            (T0 + 1800, T0 + 5400, "60"),
            (T0 - 1800, T0 + 3600, "60"),
            (T0 + 3000, T0 + 9000, "60"),
            (T0 + 600, T0 + 7200, "30"),
        ] {
            assert_same(fe.http, q.http_port, &range(query, s, e, step));
        }
    }
    let data = serde_json::from_slice::<serde_json::Value>(
        &http_get(fe.http, &range(QUERIES[1], T0, T0 + 7200, "60"))
            .unwrap()
            .1,
    )
    .unwrap();
    assert!(
        !data["data"]["result"].as_array().unwrap().is_empty(),
        "no data: {data}"
    );
    assert!(
        metric(fe.http, "thanos_frontend_split_queries_total") >= 8.0,
        "the queries were not split"
    );
    assert!(
        metric(
            fe.http,
            r#"thanos_query_frontend_queries_total{op="query_range"}"#
        ) > 0.0
    );

    // dedup=false is not looked up in the cache.
    let keys = |fe: &PeerProcess| {
        metric(
            fe.http,
            r#"cortex_cache_fetched_keys_total{name="frontend.query-range"}"#,
        )
    };
    let before = keys(&fe);
    let path = range(QUERIES[0], T0, T0 + 7200, "60") + "&dedup=false";
    assert_same(fe.http, q.http_port, &path);
    assert_eq!(keys(&fe), before, "dedup=false went through the cache");
    // Nor is a request with `Cache-Control: no-store`.
    let path = range(QUERIES[2], T0, T0 + 7200, "60");
    let (head, body) = get_with(fe.http, &path, "Cache-Control: no-store");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let want: serde_json::Value = serde_json::from_slice(&q.get(&path).1).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        want
    );
    assert_eq!(
        keys(&fe),
        before,
        "Cache-Control: no-store went through the cache"
    );
}

/// A cache server on a free loopback port (memcached; Redis; Redis over TLS with
/// certificates made here; Redis behind a Sentinel; a Redis Cluster of three masters), the
/// frontend's cache YAML for it, and what must live as long as it (certificates, the
/// sentinel, the other nodes).
fn cache_server(kind: &str) -> (PeerProcess, String, Vec<Box<dyn std::any::Any>>) {
    let port = free_port();
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let redis = || {
        let mut cmd = std::process::Command::new(require("redis-server"));
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        cmd
    };
    let redis_yaml = |addr: &str, extra: &str| {
        format!(
            "type: REDIS\nconfig:\n  addr: {addr}\n  prefix: gauntlet-\n  db: 1\n  read_timeout: 500ms\n  write_timeout: 500ms\n{extra}"
        )
    };
    let (cmd, yaml) = match kind {
        "MEMCACHED" => {
            let mut cmd = std::process::Command::new(require("memcached"));
            // `-u` names the user to run as when started as root (ignored otherwise).
            cmd.args(["-l", "127.0.0.1", "-U", "0", "-m", "64", "-u", "root"])
                .arg(format!("-p{port}"));
            let yaml = format!(
                "type: MEMCACHED\nconfig:\n  addresses: [\"127.0.0.1:{port}\"]\n  timeout: 500ms\n  expiration: 1h\n"
            );
            (cmd, yaml)
        }
        "REDIS" => {
            let mut cmd = redis();
            cmd.args(["--port", &port.to_string()]);
            (cmd, redis_yaml(&format!("127.0.0.1:{port}"), ""))
        }
        "REDIS over TLS" => {
            // TLS only (no plain port), client certificates asked for.
            let pki = crate::tls::Pki::new();
            let mut cmd = redis();
            cmd.args(["--port", "0", "--tls-port", &port.to_string()])
                .arg("--tls-cert-file")
                .arg(pki.path("server.pem"))
                .arg("--tls-key-file")
                .arg(pki.path("server-key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(pki.path("ca.pem"))
                .args(["--tls-auth-clients", "yes"]);
            let tls = format!(
                "  tls_enabled: true\n  tls_config:\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
                pki.path("ca.pem").display(),
                pki.path("client.pem").display(),
                pki.path("client-key.pem").display()
            );
            keep.push(Box::new(pki));
            (cmd, redis_yaml(&format!("127.0.0.1:{port}"), &tls))
        }
        "REDIS Cluster" => {
            // Three masters sharing the slots; the frontend is given all three.
            let dir = tempfile::tempdir().unwrap();
            let node = |port: u16| {
                let mut cmd = redis();
                cmd.args(["--port", &port.to_string()])
                    .args(["--cluster-enabled", "yes"])
                    .args(["--cluster-port", &free_port().to_string()])
                    .arg("--cluster-config-file")
                    .arg(dir.path().join(format!("nodes-{port}.conf")))
                    .arg("--dir")
                    .arg(dir.path());
                cmd
            };
            let others = [free_port(), free_port()];
            for p in others {
                keep.push(Box::new(PeerProcess::spawn_tcp(
                    node(p),
                    "redis cluster node",
                    p,
                    Duration::from_secs(20),
                )));
            }
            let first = node(port);
            let nodes: Vec<String> = std::iter::once(port)
                .chain(others)
                .map(|p| format!("127.0.0.1:{p}"))
                .collect();
            keep.push(Box::new(dir));
            let yaml = format!(
                "type: REDIS\nconfig:\n  addr: {}\n  prefix: gauntlet-\n  read_timeout: 500ms\n  write_timeout: 500ms\n",
                nodes.join(",")
            );
            let server = PeerProcess::spawn_tcp(first, kind, port, Duration::from_secs(20));
            let cli = require("redis-cli");
            let made = std::process::Command::new(&cli)
                .args(["--cluster", "create"])
                .args(&nodes)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .output()
                .unwrap();
            assert!(made.status.success(), "{made:?}");
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            loop {
                let info = std::process::Command::new(&cli)
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .unwrap();
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster is not up"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            return (server, yaml, keep);
        }
        _ => {
            // The master, and a sentinel that monitors it; the frontend is given a sentinel
            // that is down first, then the live one.
            let mut cmd = redis();
            cmd.args(["--port", &port.to_string()]);
            let dir = tempfile::tempdir().unwrap();
            let sentinel_port = free_port();
            let conf = dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {sentinel_port}\nbind 127.0.0.1\nsentinel monitor gauntlet-main 127.0.0.1 {port} 1\n"
                ),
            )
            .unwrap();
            let mut sentinel = std::process::Command::new(require("redis-server"));
            sentinel.arg(&conf).arg("--sentinel");
            keep.push(Box::new(PeerProcess::spawn_tcp(
                sentinel,
                "redis sentinel",
                sentinel_port,
                Duration::from_secs(20),
            )));
            keep.push(Box::new(dir));
            let sentinels = format!("127.0.0.1:{},127.0.0.1:{sentinel_port}", free_port());
            (
                cmd,
                redis_yaml(&sentinels, "  master_name: gauntlet-main\n"),
            )
        }
    };
    let server = PeerProcess::spawn_tcp(cmd, kind, port, Duration::from_secs(20));
    (server, yaml, keep)
}

#[test]
fn memcached_and_redis_hold_the_cache_for_every_frontend_and_going_down_costs_no_answer() {
    let root = tempfile::tempdir().unwrap();
    let q = querier(root.path());
    for kind in [
        "MEMCACHED",
        "REDIS",
        "REDIS over TLS",
        "REDIS behind a Sentinel",
        "REDIS Cluster",
    ] {
        let (mut server, yaml, keep) = cache_server(kind);
        let flags = [
            "--query-range.split-interval=15m".to_string(),
            format!("--query-range.response-cache-config={yaml}"),
        ];
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let fe = frontend(q.http_port, &flags);
        let hits = |fe: &PeerProcess| {
            metric(
                fe.http,
                r#"cortex_cache_hits_total{name="frontend.query-range"}"#,
            )
        };
        let stored = |fe: &PeerProcess| {
            metric(
                fe.http,
                r#"querier_cache_added_total{cache="frontend.query-range"}"#,
            )
        };
        for query in &QUERIES[..2] {
            let whole = range(query, T0, T0 + 7200, "60");
            let before = stored(&fe);
            assert_same(fe.http, q.http_port, &whole);
            // Stores go on in the background: wait (boundedly) for the eight parts.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while stored(&fe) < before + 8.0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{kind}: {query}: the parts were not stored\n{}",
                    fe.log_tail(20)
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            let before = hits(&fe);
            assert_same(fe.http, q.http_port, &whole);
            assert!(
                hits(&fe) >= before + 8.0,
                "{kind}: {query}: the second ask was not answered from the cache"
            );
            for (s, e, step) in [(T0 + 1800, T0 + 5400, "60"), (T0 - 1800, T0 + 3600, "60")] {
                assert_same(fe.http, q.http_port, &range(query, s, e, step));
            }
        }
        // A second frontend finds what the first stored.
        let other = frontend(q.http_port, &flags);
        assert_same(
            other.http,
            q.http_port,
            &range(QUERIES[0], T0, T0 + 7200, "60"),
        );
        assert!(
            hits(&other) >= 8.0,
            "{kind}: a second frontend did not share the cache"
        );
        // The cache goes down (with the sentinel or the other cluster nodes): answers still
        // come, each lookup a counted failure.
        server.kill();
        drop(keep);
        let failures = |fe: &PeerProcess| {
            metric(
                fe.http,
                r#"gauntlet_frontend_cache_failures_total{name="frontend.query-range"}"#,
            )
        };
        let began = std::time::Instant::now();
        for query in QUERIES {
            assert_same(fe.http, q.http_port, &range(query, T0, T0 + 7200, "60"));
        }
        assert!(failures(&fe) >= 8.0, "{kind}: no lookup failed");
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "{kind}: a cache that is down slowed the answers to {:?}",
            began.elapsed()
        );
    }
}

#[test]
fn without_a_cache_unaligned_windows_keep_their_step_grid() {
    let root = tempfile::tempdir().unwrap();
    let q = querier(root.path());
    let fe = frontend(
        q.http_port,
        &[
            "--query-range.split-interval=20m",
            "--query-range.align-range-with-step=false",
            "--query-range.max-query-parallelism=2",
            "--query-frontend.compress-responses",
        ],
    );
    for query in QUERIES {
        for (s, e, step) in [
            (T0 + 7, T0 + 7200, "60"),
            (T0 + 601, T0 + 5000, "45"),
            (T0 + 100, T0 + 7300, "7m"),
        ] {
            assert_same(fe.http, q.http_port, &range(query, s, e, step));
        }
    }
    assert_eq!(
        metric(
            fe.http,
            r#"cortex_cache_fetched_keys_total{name="frontend.query-range"}"#
        ),
        0.0,
        "a cache was used though none is configured"
    );
    // --query-frontend.compress-responses: gzip for a client that takes it, the same answer.
    let path = range(QUERIES[1], T0, T0 + 7200, "60");
    let (head, zipped) = get_with(fe.http, &path, "Accept-Encoding: gzip");
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "not compressed: {head}"
    );
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut text).unwrap();
    let want: serde_json::Value = serde_json::from_slice(&q.get(&path).1).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&text).unwrap(),
        want
    );
}

/// A GET with the header line `header`: the response's head and its body as sent.
fn get_with(port: u16, path: &str, header: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{header}\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    (
        String::from_utf8_lossy(&buf[..end]).into_owned(),
        buf[end + 4..].to_vec(),
    )
}

#[test]
fn refusals_and_other_calls_pass_through() {
    let root = tempfile::tempdir().unwrap();
    let q = querier(root.path());
    let mut fe = frontend(
        q.http_port,
        &[
            "--query-range.split-interval=30m",
            "--query-range.max-query-length=3h",
        ],
    );
    // The querier's refusal of a bad expression comes back as it is.
    let bad = range("sum(", T0, T0 + 7200, "60");
    let (ws, want) = http_get(q.http_port, &bad).unwrap();
    let (gs, got) = http_get(fe.http, &bad).unwrap();
    assert_eq!(ws, 400);
    assert_eq!((gs, got), (ws, want), "a 4xx was not passed through");
    // The frontend's own checks answer as Prometheus does.
    for (path, needle) in [
        (
            range("up", T0, T0 - 60, "60"),
            "end timestamp must not be before start time",
        ),
        (
            range("up", T0, T0 + 60, "0"),
            "zero or negative query resolution",
        ),
        (range("up", T0, T0 + 4 * 3600, "60"), "exceeds the limit"),
    ] {
        let (status, body) = http_get(fe.http, &path).unwrap();
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(needle), "{path}: {body}");
    }
    // Instant queries, labels and series are the querier's answers.
    let at = (T0 + 3600).to_string();
    let (start, end) = (T0.to_string(), (T0 + 7200).to_string());
    for path in [
        api_path("/api/v1/query", &[("query", QUERIES[1]), ("time", &at)]),
        api_path("/api/v1/labels", &[("start", &start), ("end", &end)]),
        api_path(
            "/api/v1/label/code/values",
            &[("start", &start), ("end", &end)],
        ),
        api_path(
            "/api/v1/series",
            &[
                ("match[]", r#"{__name__=~"temp.*"}"#),
                ("start", &start),
                ("end", &end),
            ],
        ),
    ] {
        assert_same(fe.http, q.http_port, &path);
    }
    assert!(
        metric(
            fe.http,
            r#"thanos_query_frontend_queries_total{op="series"}"#
        ) >= 1.0
    );
    assert_eq!(http_get(fe.http, "/-/healthy").unwrap().0, 200);
    // SIGTERM: a clean stop.
    let status = fe.terminate();
    assert!(status.success(), "stopped with {status}");
}

/// Label names, label values and series calls over `[start, end]` (s).
fn label_paths(start: i64, end: i64) -> Vec<String> {
    let (s, e) = (start.to_string(), end.to_string());
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut p: Vec<(&str, &str)> = vec![("start", &s), ("end", &e)];
        p.extend_from_slice(extra);
        p
    };
    vec![
        api_path("/api/v1/labels", &with(&[])),
        api_path(
            "/api/v1/labels",
            &with(&[("match[]", r#"{__name__=~"temp.*"}"#)]),
        ),
        api_path("/api/v1/label/code/values", &with(&[])),
        api_path(
            "/api/v1/label/__name__/values",
            &with(&[("match[]", r#"{code="500"}"#)]),
        ),
        api_path(
            "/api/v1/series",
            &with(&[
                ("match[]", r#"{__name__=~"temp.*"}"#),
                ("match[]", r#"http_requests_total{code="500"}"#),
            ]),
        ),
    ]
}

#[test]
fn label_and_series_calls_are_split_cached_and_equal_the_querier_s() {
    let root = tempfile::tempdir().unwrap();
    let q = querier(root.path());
    let labels_cache = format!("--labels.response-cache-config={IN_MEMORY}");
    let fe = frontend(
        q.http_port,
        &[
            "--labels.split-interval=15m",
            "--labels.max-query-parallelism=3",
            &labels_cache,
        ],
    );
    let windows = [
        (T0, T0 + 7200),
        (T0 + 601, T0 + 5000),
        (T0 - 3600, T0 + 900),
    ];
    let split = r#"thanos_frontend_split_queries_total"#;
    let hits = r#"cortex_cache_hits_total{name="frontend.labels"}"#;
    let before = metric(fe.http, split);
    // The first window, 2 h from a multiple of 15 min: 8 parts for each of the 5 calls.
    for path in label_paths(windows[0].0, windows[0].1) {
        assert_same(fe.http, q.http_port, &path);
    }
    assert_eq!(metric(fe.http, split) - before, 40.0, "not split as asked");
    assert_eq!(metric(fe.http, hits), 0.0);
    // Every window twice: the second time whole parts come from the cache, the same answers.
    for _ in 0..2 {
        for (s, e) in windows {
            for path in label_paths(s, e) {
                assert_same(fe.http, q.http_port, &path);
            }
        }
    }
    assert!(
        metric(fe.http, hits) >= 40.0,
        "parts were not answered from the labels cache"
    );
    assert_eq!(
        metric(
            fe.http,
            r#"cortex_cache_fetched_keys_total{name="frontend.query-range"}"#
        ),
        0.0,
        "label calls went to the range-query cache"
    );
    // A POSTed form is read as the querier reads it.
    let body = format!(
        "match[]={}&start={T0}&end={}",
        urlencode(r#"{__name__=~"temp.*"}"#),
        T0 + 7200
    );
    let (ws, want) = http_post_form(q.http_port, "/api/v1/series", &body).unwrap();
    let (gs, got) = http_post_form(fe.http, "/api/v1/series", &body).unwrap();
    assert_eq!((ws, gs), (200, 200));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&got).unwrap(),
        serde_json::from_slice::<serde_json::Value>(&want).unwrap()
    );
    // Without start and end, the last --labels.default-time-range (24 h): the fixture's data is
    // older, so nothing, where the querier itself answers for all time.
    let (status, all_time) = http_get(q.http_port, "/api/v1/labels").unwrap();
    assert_eq!(status, 200);
    assert_ne!(
        serde_json::from_slice::<serde_json::Value>(&all_time).unwrap()["data"],
        serde_json::json!([])
    );
    let (status, recent) = http_get(fe.http, "/api/v1/labels").unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&recent).unwrap()["data"],
        serde_json::json!([])
    );
    // A bad window is refused as Thanos's frontend refuses it.
    let (status, body) = http_get(
        fe.http,
        &api_path(
            "/api/v1/labels",
            &[("start", &(T0 + 60).to_string()), ("end", &T0.to_string())],
        ),
    )
    .unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("end timestamp must not be before start"));
}

#[test]
fn all_runs_the_frontend_in_front_of_its_own_query_api() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    copy_dir(&fixtures().join(BLOCK), &data);
    let [http, grpc, fe_port] = free_ports();
    let mut cmd = gauntlet();
    cmd.arg("all")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .arg("--remote-write.address=127.0.0.1:0")
        .arg(format!("--query-frontend.http-address=127.0.0.1:{fe_port}"))
        .arg("--query-range.split-interval=15m")
        .arg(format!("--query-range.response-cache-config={IN_MEMORY}"))
        .arg("--labels.split-interval=30m");
    let mut all = PeerProcess::spawn(
        cmd,
        "gauntlet all with its query frontend",
        http,
        grpc,
        "/-/ready",
        Duration::from_secs(60),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !matches!(http_get(fe_port, "/-/ready"), Ok((200, _))) {
        assert!(
            std::time::Instant::now() < deadline,
            "the frontend did not come up:\n{}",
            all.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..2 {
        for query in QUERIES {
            assert_same(fe_port, http, &range(query, T0, T0 + 7200, "60"));
        }
    }
    assert!(
        metric(
            fe_port,
            r#"cortex_cache_hits_total{name="frontend.query-range"}"#
        ) >= QUERIES.len() as f64,
        "the second round was not answered from the cache"
    );
    for path in label_paths(T0, T0 + 7200) {
        assert_same(fe_port, http, &path);
    }
    assert!(metric(fe_port, "thanos_frontend_split_queries_total") > 0.0);
    // --query-range.request-downsampled (on by default): an `auto` answer that starts after
    // its window's start is asked again for the front at 5m, then 1h (the bucket has no
    // downsampled blocks, so the answer stays the raw one); one that starts at its start is
    // not.
    let extra = "thanos_frontend_downsampled_extra_queries_total";
    let auto = |start: i64| {
        api_path(
            "/api/v1/query_range",
            &[
                ("query", QUERIES[1]),
                ("start", &start.to_string()),
                ("end", &(T0 + 7200).to_string()),
                ("step", "60"),
                ("max_source_resolution", "auto"),
            ],
        )
    };
    assert_same(fe_port, http, &auto(T0 + 600));
    assert_eq!(metric(fe_port, extra), 0.0);
    assert_same(fe_port, http, &auto(T0 - 3600));
    assert_eq!(metric(fe_port, extra), 2.0);
    // SIGTERM stops the frontend with the rest of the process.
    let status = all.terminate();
    assert!(status.success(), "stopped with {status}");
}

/// A matrix answer as labels → points (ms, value text), for comparing answers written by
/// different programs (whose number formatting may differ).
fn points(body: &serde_json::Value) -> BTreeMap<String, Vec<(i64, String)>> {
    assert_eq!(body["status"], "success", "{body}");
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let pts = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (s["metric"].to_string(), pts)
        })
        .collect()
}

#[test]
fn thanos_query_frontend_in_front_of_gauntlet_agrees() {
    let root = tempfile::tempdir().unwrap();
    let q = querier(root.path());
    let fe = thanos(
        "query-frontend",
        &[
            format!(
                "--query-frontend.downstream-url=http://127.0.0.1:{}",
                q.http_port
            ),
            "--query-range.split-interval=15m".into(),
            format!("--query-range.response-cache-config={IN_MEMORY}"),
        ],
    );
    for query in QUERIES {
        for (s, e) in [(T0, T0 + 7200), (T0 + 1800, T0 + 5400)] {
            let path = range(query, s, e, "60");
            let want = points(&serde_json::from_slice(&q.get(&path).1).unwrap());
            assert!(!want.is_empty(), "{path}: no data");
            for round in 0..2 {
                let got = points(&fe.get_json(&path));
                assert_eq!(got, want, "{path} (round {round})");
            }
        }
    }
}

#[test]
fn gauntlet_query_frontend_in_front_of_thanos_query_agrees() {
    let root = tempfile::tempdir().unwrap();
    let store = fixture_store(root.path());
    let tq = thanos_query(&[format!("127.0.0.1:{}", store.grpc_port)], &[]);
    // Thanos's querier is ready before it has asked the store what it holds.
    let probe = range(QUERIES[1], T0, T0 + 7200, "60");
    let mut tries = 0;
    while points(&tq.get_json(&probe)).is_empty() {
        tries += 1;
        assert!(tries < 100, "thanos query never saw the store's data");
        std::thread::sleep(Duration::from_millis(200));
    }
    let fe = frontend(
        tq.http,
        &[
            "--query-range.split-interval=15m",
            &format!("--query-range.response-cache-config={IN_MEMORY}"),
        ],
    );
    for query in QUERIES {
        for (s, e) in [
            (T0, T0 + 7200),
            (T0 + 1800, T0 + 5400),
            (T0 - 600, T0 + 3000),
        ] {
            let path = range(query, s, e, "60");
            let want = points(&tq.get_json(&path));
            for round in 0..2 {
                let (status, body) = http_get(fe.http, &path).unwrap();
                assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
                let got = points(&serde_json::from_slice(&body).unwrap());
                assert_eq!(got, want, "{path} (round {round})");
            }
        }
    }
    // Sharded: Thanos's querier reads the frontend's `shard_info` and passes it to the store.
    let sharded = frontend(
        tq.http,
        &[
            "--query-frontend.vertical-shards=2",
            "--query-range.split-interval=15m",
            &format!("--query-range.response-cache-config={IN_MEMORY}"),
        ],
    );
    for query in SHARD_QUERIES {
        let path = range(query, T0, T0 + 7200, "60");
        let want = points(&tq.get_json(&path));
        assert!(!want.is_empty(), "{path}: no data");
        for round in 0..2 {
            let (status, body) = http_get(sharded.http, &path).unwrap();
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(body.get("warnings").is_none(), "{path}: {body}");
            let got = points(&body);
            assert_eq!(got, want, "{path} (sharded, round {round})");
        }
    }
    assert!(
        metric(
            sharded.http,
            r#"thanos_frontend_sharding_middleware_queries_total{shardable="true",tripperware="query_range"}"#
        ) >= SHARDABLE as f64 * 2.0,
        "the queries were not sharded"
    );
}

/// Range queries for vertical sharding: `sum by` over `rate`, `count without`, `avg by`, a
/// histogram quantile, a binary operation of two aggregations by the same labels, and one
/// that cannot be sharded (`sum` without grouping).
const SHARD_QUERIES: &[&str] = &[
    "sum by (code) (rate(http_requests_total[5m]))",
    "count without (instance) (node_cpu_seconds_total)",
    "avg by (mode) (rate(node_cpu_seconds_total[5m]))",
    "histogram_quantile(0.9, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
    "sum by (handler) (rate(http_requests_total[5m])) / on (handler) count by (handler) (http_requests_total)",
    "sum(rate(http_requests_total[5m]))",
];

/// Shardable queries among [`SHARD_QUERIES`].
const SHARDABLE: usize = 5;

/// `query` at `time` asked of `port` as shard `index` of `total` (hashing every label but
/// `x`): the answer's label sets.
fn shard_answer(port: u16, query: &str, time: i64, index: usize, total: usize) -> Vec<String> {
    let shard = format!(r#"{{"shard_index":{index},"total_shards":{total},"labels":["x"]}}"#);
    let path = api_path(
        "/api/v1/query",
        &[
            ("query", query),
            ("time", &time.to_string()),
            ("shard_info", &shard),
        ],
    );
    let (status, body) = http_get(port, &path).unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"].to_string())
        .collect();
    out.sort();
    out
}

/// Asks `port` for `query` at `time` whole and as each of 2 shards: every series is in
/// exactly one shard, and each shard holds some (so the querier did filter).
#[track_caller]
fn assert_partitioned(port: u16, query: &str, time: i64) {
    let whole = shard_answer(port, query, time, 0, 0);
    assert!(whole.len() >= 10, "{query}: too few series: {whole:?}");
    let parts: Vec<Vec<String>> = (0..2)
        .map(|i| shard_answer(port, query, time, i, 2))
        .collect();
    for p in &parts {
        assert!(
            !p.is_empty() && p.len() < whole.len(),
            "{query}: a shard holds {} of {} series",
            p.len(),
            whole.len()
        );
    }
    let mut joined: Vec<String> = parts.concat();
    joined.sort();
    assert_eq!(joined, whole, "{query}: the shards are not a partition");
}

#[test]
fn vertical_shards_answer_as_gauntlet_query_and_thanos_s_frontend_agrees() {
    let root = tempfile::tempdir().unwrap();
    let store = fixture_store(root.path());
    let recv = crate::common::receive::Receiver::start(&root.path().join("receive"), &[]);
    let now = crate::common::receive::now_ms();
    // Instant queries at the first whole second after the samples.
    let at = now / 1000 + 1;
    let written: Vec<_> = (0..20)
        .map(|i| {
            crate::common::receive::series(
                &[("__name__", "vshard_probe"), ("i", &i.to_string())],
                &[(now, i as f64)],
            )
        })
        .collect();
    let (code, _, msg) = crate::common::receive::post(
        recv.rw,
        "/api/v1/receive",
        &[crate::common::receive::V1],
        &crate::common::receive::write_body(written),
    )
    .unwrap();
    assert_eq!(code, 200, "remote write: {msg}");
    let q = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", store.grpc_port),
            &format!("--endpoint=127.0.0.1:{}", recv.grpc),
        ],
        "/-/ready",
    );
    // The querier is ready before it has asked its endpoints what they hold.
    let mut tries = 0;
    while shard_answer(q.http_port, "vshard_probe", at, 0, 0).len() < 20
        || shard_answer(q.http_port, "http_requests_total", T0 + 3600, 0, 0).is_empty()
    {
        tries += 1;
        assert!(
            tries < 100,
            "gauntlet query never saw its endpoints' data: {:?}",
            shard_answer(q.http_port, "vshard_probe", at, 0, 0)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The querier honours `shard_info` itself, over the store's blocks and the receiver's
    // head alike (both say in Info that they shard).
    assert_partitioned(q.http_port, "http_requests_total", T0 + 3600);
    assert_partitioned(q.http_port, "vshard_probe", at);

    let plain = frontend(q.http_port, &["--query-frontend.vertical-shards=2"]);
    let cached = frontend(
        q.http_port,
        &[
            "--query-frontend.vertical-shards=4",
            "--query-range.split-interval=15m",
            &format!("--query-range.response-cache-config={IN_MEMORY}"),
        ],
    );
    let thanos_fe = thanos(
        "query-frontend",
        &[
            format!(
                "--query-frontend.downstream-url=http://127.0.0.1:{}",
                q.http_port
            ),
            "--query-frontend.vertical-shards=2".into(),
            "--query-range.split-interval=15m".into(),
        ],
    );
    for query in SHARD_QUERIES {
        for (s, e) in [(T0, T0 + 7200), (T0 + 1800, T0 + 5400)] {
            let path = range(query, s, e, "60");
            let want = points(&serde_json::from_slice(&q.get(&path).1).unwrap());
            assert!(!want.is_empty(), "{path}: no data");
            for fe in [&plain, &cached, &cached] {
                assert_same(fe.http, q.http_port, &path);
            }
            assert_eq!(points(&thanos_fe.get_json(&path)), want, "{path} (thanos)");
        }
    }
    // Instant queries are sharded too (over the store's blocks, and the receiver's head),
    // their series put back together; `sort` and `topk` at the top keep their order by going
    // through whole.
    let instant_queries = SHARD_QUERIES
        .iter()
        .map(|q| (q.to_string(), T0 + 3600))
        .chain([
            ("sum by (i) (vshard_probe)".to_string(), at),
            (
                "sort_desc(sum by (code) (http_requests_total))".to_string(),
                T0 + 3600,
            ),
            (
                "topk(2, sum by (code) (http_requests_total))".to_string(),
                T0 + 3600,
            ),
        ]);
    for (query, time) in instant_queries {
        let path = api_path(
            "/api/v1/query",
            &[("query", &query), ("time", &time.to_string())],
        );
        let want = instant_series(http_get(q.http_port, &path).unwrap(), &path);
        assert!(!want.is_empty(), "{path}: no data");
        for fe in [plain.http, cached.http, thanos_fe.http] {
            let got = instant_series(http_get(fe, &path).unwrap(), &path);
            if query.starts_with("sort") || query.starts_with("topk") {
                assert_eq!(got, want, "{path}: order kept");
            } else {
                assert_eq!(sorted(got), sorted(want.clone()), "{path}");
            }
        }
    }
    let shardable = |port: u16, yes: &str, tripperware: &str| {
        metric(
            port,
            &format!(
                r#"thanos_frontend_sharding_middleware_queries_total{{shardable="{yes}",tripperware="{tripperware}"}}"#
            ),
        )
    };
    let rounds = 2.0;
    for (what, fe) in [("gauntlet", &plain), ("thanos", &thanos_fe)] {
        assert!(
            shardable(fe.http, "true", "query_range") >= SHARDABLE as f64 * rounds,
            "{what}: the queries were not sharded"
        );
        assert!(
            shardable(fe.http, "false", "query_range") >= rounds,
            "{what}"
        );
        assert!(
            shardable(fe.http, "true", "query_instant") >= SHARDABLE as f64 + 1.0,
            "{what}: the instant queries were not sharded"
        );
    }
    assert!(shardable(plain.http, "false", "query_instant") >= 3.0);
}

/// An instant query's answer (status 200): each series' labels and value, in answer order.
#[track_caller]
fn instant_series((status, body): (u16, Vec<u8>), path: &str) -> Vec<(String, String)> {
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "vector", "{path}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"].to_string(), s["value"][1].to_string()))
        .collect()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}
