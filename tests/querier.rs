//! The querier over real `gauntlet store` processes holding the same blocks as two HA
//! replicas (`replica` external label "a" and "b"): with dedup the answers equal one copy of
//! the data served by `gauntlet all`; without, both replicas' series come back. A second
//! querier stacked on the first through its StoreAPI answers the same.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

const BLOCK: &str = "promtool-200series-2h";
const T0: i64 = 1_735_689_600;

/// A filesystem bucket holding the fixture block with external labels `labels`.
fn bucket(root: &Path, name: &str, labels: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = root.join(name);
    let src = fixtures().join(BLOCK);
    copy_dir(&src, &dir);
    for b in std::fs::read_dir(&dir).unwrap() {
        let meta_path = b.unwrap().path().join("meta.json");
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        let ext: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        meta["thanos"] = serde_json::json!({
            "labels": ext,
            "downsample": {"resolution": 0},
            "source": "sidecar",
        });
        std::fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
    }
    filesystem_objstore(root.join(format!("{name}.yml")), &dir)
}

fn store(root: &Path, cfg: &Path, name: &str) -> GauntletServer {
    let cache = root.join(format!("{name}-cache"));
    GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", cfg.display()),
            &format!("--data-dir={}", cache.display()),
            "--sync-block-duration=1h",
        ],
        "/-/ready",
    )
}

/// Two stores over copies of the fixture block, labelled `replica="a"` and `replica="b"`.
fn replica_stores(root: &Path) -> [GauntletServer; 2] {
    ["a", "b"].map(|r| store(root, &bucket(root, r, &[("replica", r)]), r))
}

fn querier(endpoints: &[&GauntletServer], extra: &[&str]) -> GauntletServer {
    let mut args: Vec<String> = vec!["query".into(), "--query.replica-label=replica".into()];
    for e in endpoints {
        args.push(format!("--endpoint=127.0.0.1:{}", e.grpc_port));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    GauntletServer::start(&args, "/-/ready")
}

fn q(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn get_json(s: &GauntletServer, path: &str) -> serde_json::Value {
    let (status, body) = s.get(path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

fn paths() -> Vec<String> {
    let at = (T0 + 3600).to_string();
    let (start, end) = ((T0 + 600).to_string(), (T0 + 7200).to_string());
    let mut out = Vec::new();
    for query in [
        r#"http_requests_total{code="500",handler="/api/a"}"#,
        "sum by (code) (rate(http_requests_total[5m]))",
        "max_over_time(temperature_celsius[10m])",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ] {
        out.push(format!(
            "/api/v1/query?{}",
            q(&[("query", query), ("time", &at)])
        ));
        out.push(format!(
            "/api/v1/query_range?{}",
            q(&[
                ("query", query),
                ("start", &start),
                ("end", &end),
                ("step", "60")
            ])
        ));
    }
    out.push(format!(
        "/api/v1/series?{}",
        q(&[("match[]", r#"{__name__=~"temp.*",sensor="s1"}"#)])
    ));
    out.push(format!("/api/v1/labels?{}", q(&[("start", &start)])));
    out.push("/api/v1/label/code/values".to_string());
    out
}

#[test]
fn dedup_over_two_replica_stores_equals_one_copy() {
    let root = tempfile::tempdir().unwrap();
    let [a, b] = replica_stores(root.path());
    let plain = root.path().join("plain");
    copy_dir(&fixtures().join(BLOCK), &plain);
    let single = GauntletServer::start(
        &["all", &format!("--data-dir={}", plain.display())],
        "/-/ready",
    );
    let q1 = querier(&[&a, &b], &[]);
    let q2 = querier(&[&q1], &[]);
    for path in paths() {
        let want = get_json(&single, &path);
        assert!(
            want["data"]
                .as_array()
                .map(|a| !a.is_empty())
                .unwrap_or_else(|| !want["data"]["result"].as_array().unwrap().is_empty()),
            "{path}: no data"
        );
        assert_eq!(get_json(&q1, &path), want, "{path}: querier with dedup");
        assert_eq!(get_json(&q2, &path), want, "{path}: stacked querier");
    }

    // Without dedup every series comes back twice, once per replica.
    let at = (T0 + 3600).to_string();
    let sel = r#"http_requests_total{code="500",handler="/api/a"}"#;
    let one = get_json(
        &single,
        &format!("/api/v1/query?{}", q(&[("query", sel), ("time", &at)])),
    );
    let both = get_json(
        &q1,
        &format!(
            "/api/v1/query?{}",
            q(&[("query", sel), ("time", &at), ("dedup", "false")])
        ),
    );
    let one = one["data"]["result"].as_array().unwrap();
    let both = both["data"]["result"].as_array().unwrap();
    assert_eq!(both.len(), 2 * one.len());
    for replica in ["a", "b"] {
        let n = both
            .iter()
            .filter(|s| s["metric"]["replica"] == replica)
            .count();
        assert_eq!(n, one.len(), "replica {replica}");
    }
    let values = get_json(&q1, "/api/v1/label/replica/values?dedup=false");
    assert_eq!(values["data"], serde_json::json!(["a", "b"]));
}

#[test]
fn a_failing_store_is_a_warning_or_an_error_as_asked() {
    let root = tempfile::tempdir().unwrap();
    let [a, b] = replica_stores(root.path());
    // Info is polled once an hour, so the querier still counts `b` as healthy after it dies.
    let q1 = querier(&[&a, &b], &["--endpoint.info-timeout=1h"]);
    let at = (T0 + 3600).to_string();
    let path = format!(
        "/api/v1/query?{}",
        q(&[("query", "count(up or http_requests_total)"), ("time", &at)])
    );
    let before = get_json(&q1, &path);
    assert!(before.get("warnings").is_none(), "{before}");
    let b_addr = format!("127.0.0.1:{}", b.grpc_port);
    drop(b);
    let partial = get_json(&q1, &path);
    assert_eq!(partial["data"], before["data"]);
    let w = partial["warnings"].as_array().expect("warnings");
    assert!(
        w.iter().any(|w| w.as_str().unwrap().contains(&b_addr)),
        "{partial}"
    );
    let (status, body) = q1.get(&format!("{path}&partial_response=false"));
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(status >= 500, "{status} {err}");
    assert_eq!(err["status"], "error");
}

#[test]
fn a_store_that_hangs_costs_a_query_its_response_timeout_and_no_more() {
    let root = tempfile::tempdir().unwrap();
    let [a, b] = replica_stores(root.path());
    let q1 = querier(
        &[&a, &b],
        &["--endpoint.info-timeout=1h", "--store.response-timeout=2s"],
    );
    let at = (T0 + 3600).to_string();
    let path = format!(
        "/api/v1/query?{}",
        q(&[("query", "count(up or http_requests_total)"), ("time", &at)])
    );
    let before = get_json(&q1, &path);
    // Frozen, `b` still takes connections (the kernel accepts them) and never answers.
    b.signal("STOP");
    let b_addr = format!("127.0.0.1:{}", b.grpc_port);
    for _ in 0..2 {
        let started = Instant::now();
        let partial = get_json(&q1, &path);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "answered after {took:?}");
        assert_eq!(partial["data"], before["data"], "`a` holds a full copy");
        let w = partial["warnings"].as_array().expect("warnings");
        assert!(
            w.iter().any(|w| w.as_str().unwrap().contains(&b_addr)),
            "{partial}"
        );
    }
    let started = Instant::now();
    let (status, body) = q1.get(&format!("{path}&partial_response=false"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let err: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(status >= 500, "{status} {err}");
    assert_eq!(err["status"], "error");
    // Label requests go to every store too, and end as queries do.
    let started = Instant::now();
    let labels = get_json(&q1, "/api/v1/labels");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(labels["warnings"].is_array(), "{labels}");
    // Thawed, `b` answers again and the warnings go.
    b.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_json(&q1, &path);
        if v.get("warnings").is_none() {
            assert_eq!(v["data"], before["data"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still warned after b resumed: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn endpoint_files_are_re_read_when_they_change() {
    let root = tempfile::tempdir().unwrap();
    let [a, b] = replica_stores(root.path());
    let sd = root.path().join("endpoints.yml");
    std::fs::write(&sd, format!("- targets: ['127.0.0.1:{}']\n", a.grpc_port)).unwrap();
    let q1 = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint.sd-files={}", sd.display()),
            "--endpoint.info-timeout=1s",
        ],
        "/api/v1/status/buildinfo",
    );
    let (status, metrics) = q1.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&metrics).contains("gauntlet_query_endpoints_healthy 1"),
        "{}",
        String::from_utf8_lossy(&metrics)
    );
    let replicas = || get_json(&q1, "/api/v1/label/replica/values")["data"].clone();
    assert_eq!(replicas(), serde_json::json!(["a"]));
    std::fs::write(
        &sd,
        format!(
            "[{{\"targets\": [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]}}]",
            a.grpc_port, b.grpc_port
        ),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while replicas() != serde_json::json!(["a", "b"]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new endpoint was not picked up in 30 s: {}",
            replicas()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `tests/tools/dns_server.py` answering from a zone, killed on drop.
struct DnsServer {
    child: std::process::Child,
    port: u16,
}

impl DnsServer {
    /// Starts the server over `zone`; `None` (the test is skipped) when Python's `dnslib` is
    /// missing, unless `GAUNTLET_REQUIRE_PEERS=1`.
    fn start(dir: &Path, zone: &str) -> Option<DnsServer> {
        use std::io::BufRead as _;
        let python = require("python3");
        let has_dnslib = std::process::Command::new(&python)
            .args(["-c", "import dnslib"])
            .status()
            .is_ok_and(|s| s.success());
        if !has_dnslib {
            let required = std::env::var("GAUNTLET_REQUIRE_PEERS").is_ok_and(|v| v == "1")
                || std::env::var_os("CI").is_some();
            assert!(!required, "Python's dnslib is missing (pip install dnslib)");
            eprintln!("skipped: Python's dnslib is missing (pip install dnslib)");
            return None;
        }
        let zone_file = dir.join("zone");
        std::fs::write(&zone_file, zone).unwrap();
        let [port, _] = free_ports();
        let mut child = std::process::Command::new(python)
            .arg(repo_root().join("tests/tools/dns_server.py"))
            .arg(port.to_string())
            .arg(&zone_file)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the DNS server did not start");
        Some(DnsServer { child, port })
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn endpoints_are_found_through_dns_a_and_srv_records() {
    let root = tempfile::tempdir().unwrap();
    let [a, b] = replica_stores(root.path());
    let (pa, pb) = (a.grpc_port, b.grpc_port);
    let zone = format!(
        "$ORIGIN gauntlet.test.\n$TTL 1\n\
         _grpc._tcp.stores IN SRV 0 0 {pa} store-a.gauntlet.test.\n\
         _grpc._tcp.stores IN SRV 0 0 {pb} store-b.gauntlet.test.\n\
         store-a IN A 127.0.0.1\n\
         store-b IN A 127.0.0.1\n\
         _grpc._tcp.noa IN SRV 0 0 {pb} 127.0.0.1.\n"
    );
    let Some(dns) = DnsServer::start(root.path(), &zone) else {
        return;
    };
    let nameserver = format!("127.0.0.1:{}", dns.port);
    let env = [("GAUNTLET_DNS_NAMESERVER", nameserver.as_str())];
    let querier = |endpoints: &[&str]| {
        let mut args = vec!["query", "--endpoint.info-timeout=1s"];
        let flags: Vec<String> = endpoints
            .iter()
            .map(|e| format!("--endpoint={e}"))
            .collect();
        args.extend(flags.iter().map(String::as_str));
        GauntletServer::start_with_env(&args, "/api/v1/status/buildinfo", &env)
    };
    let replicas = |q: &GauntletServer| get_json(q, "/api/v1/label/replica/values")["data"].clone();
    let wait_for = |q: &GauntletServer, want: serde_json::Value| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = replicas(q);
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "want {want}, have {got}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    // SRV records, then each target's A record: both stores.
    let srv = querier(&["dnssrv+_grpc._tcp.stores.gauntlet.test"]);
    wait_for(&srv, serde_json::json!(["a", "b"]));
    let stores = get_json(&srv, "/api/v1/stores").to_string();
    for p in [pa, pb] {
        assert!(stores.contains(&format!("127.0.0.1:{p}")), "{stores}");
    }
    // An A record at the address's port; SRV targets taken as they are; a name that does not
    // exist adds nothing and breaks nothing.
    let a_only = querier(&[
        &format!("dns+store-a.gauntlet.test:{pa}"),
        "dnssrv+_grpc._tcp.missing.gauntlet.test",
    ]);
    wait_for(&a_only, serde_json::json!(["a"]));
    let noa = querier(&["dnssrvnoa+_grpc._tcp.noa.gauntlet.test"]);
    wait_for(&noa, serde_json::json!(["b"]));

    // The DNS server goes away: the endpoints last resolved stay.
    drop(dns);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(replicas(&srv), serde_json::json!(["a", "b"]));
}
