//! `gauntlet all --demo` end to end on loopback: the generated history is there, a live feed
//! keeps the same series moving through the process's own remote write (newest samples
//! seconds old, counters' newest timestamps advancing scrape after scrape, history and live
//! data one series each), the feed counts on /metrics, a `gauntlet query` in front of `all`'s
//! StoreAPI sees a series remote-written to `all` seconds ago, and SIGTERM stops it all
//! cleanly.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::receive::{V1, now_ms, post, series, write_body};
use crate::common::*;

/// The live feed's scrape interval in this test.
const STEP_S: f64 = 1.0;

/// Hosts × CPUs × modes of the demo's `node_cpu_seconds_total`.
const CPU_SERIES: f64 = 10.0 * 4.0 * 8.0;

/// The one-element vector or scalar answer of an instant query, or None when empty.
fn value(port: u16, query: &str, at: Option<f64>) -> Option<f64> {
    let mut path = format!("/api/v1/query?query={}", urlencode(query));
    if let Some(t) = at {
        path.push_str(&format!("&time={t}"));
    }
    let (code, body) = http_get(port, &path).expect("query");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
    assert_eq!(code, 200, "{query}: {v}");
    let data = &v["data"];
    let raw = match data["resultType"].as_str() {
        Some("scalar") => data["result"][1].as_str(),
        _ => {
            let r = data["result"].as_array().expect("result");
            assert!(r.len() <= 1, "{query}: more than one element: {v}");
            r.first().and_then(|e| e["value"][1].as_str())
        }
    };
    raw.map(|s| s.parse().expect("number"))
}

/// Polls `f` every 200 ms until it returns Some, for at most `limit`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_feed_flows_and_the_store_api_serves_the_heads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log = tmp.path().join("all.log");
    let [http, grpc, rw] = free_ports();
    let child = gauntlet()
        .args([
            "all",
            "--demo",
            "--demo.history=10m",
            "--demo.scrape-interval=1s",
            "--engine.cores=1",
            "--compact.interval=0s",
        ])
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .arg(format!("--remote-write.address=127.0.0.1:{rw}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting gauntlet all --demo");
    let mut all = Killed(child);
    let started = Instant::now();
    wait_for("all ready", Duration::from_secs(60), || {
        if let Ok(Some(status)) = all.0.try_wait() {
            panic!(
                "gauntlet all exited early with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        matches!(http_get(http, "/-/ready"), Ok((200, _))).then_some(())
    });

    // The history: every CPU series five minutes ago, from the blocks alone.
    let past = (now_ms() - 300_000) as f64 / 1000.0;
    assert_eq!(
        value(http, "count(node_cpu_seconds_total)", Some(past)),
        Some(CPU_SERIES)
    );

    // The live feed: a sample of a generated series within the last 30 s.
    let one = r#"node_cpu_seconds_total{instance="host-0000:9100",cpu="0",mode="idle"}"#;
    let age = wait_for("a fresh demo sample", Duration::from_secs(30), || {
        value(http, &format!("time() - timestamp({one})"), None).filter(|a| *a < 30.0)
    });
    assert!(age >= 0.0, "sample from the future: {age}");

    // History and live samples are one series each, aggregations included.
    assert_eq!(
        value(http, "count(node_cpu_seconds_total)", None),
        Some(CPU_SERIES)
    );
    assert_eq!(
        value(
            http,
            "max(count by (instance, cpu, mode) (node_cpu_seconds_total))",
            None
        ),
        Some(1.0)
    );
    // The counter runs on from the history: no reset where the live feed takes over.
    assert_eq!(value(http, &format!("resets({one}[10m])"), None), Some(0.0));

    // The counter's newest timestamp advances over two scrape intervals.
    let ts = || value(http, &format!("timestamp({one})"), None).expect("a sample");
    let mut last = ts();
    let mut last_value = value(http, one, None).expect("a value");
    for _ in 0..2 {
        let (t, v) = wait_for(
            "the next scrape",
            Duration::from_secs_f64(STEP_S * 10.0),
            || {
                let t = ts();
                (t > last).then(|| (t, value(http, one, None).expect("a value")))
            },
        );
        assert!(v >= last_value, "counter went back: {last_value} -> {v}");
        (last, last_value) = (t, v);
    }

    // The feed counts on /metrics.
    let (code, body) = http_get(http, "/metrics").unwrap();
    assert_eq!(code, 200);
    let metrics = String::from_utf8_lossy(&body).into_owned();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    assert!(metric("gauntlet_demo_feed_samples_total") > 0.0);
    assert_eq!(metric("gauntlet_demo_feed_errors_total"), 0.0);

    // A series remote-written to `all` now is seen through its StoreAPI by a querier.
    let t = now_ms();
    let body = write_body(vec![series(
        &[("__name__", "probe_written"), ("job", "probe")],
        &[(t, 42.0)],
    )]);
    let (code, _, msg) = post(rw, "/api/v1/receive", &[V1], &body).unwrap();
    assert_eq!(code, 200, "{msg}");
    let query = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{grpc}")],
        "/-/ready",
    );
    let got = wait_for(
        "the querier sees the write",
        Duration::from_secs(30),
        || value(query.http_port, "probe_written", None),
    );
    assert_eq!(got, 42.0);
    let (code, body) = query.get("/api/v1/label/job/values");
    assert_eq!(code, 200);
    let jobs = String::from_utf8_lossy(&body).into_owned();
    assert!(
        jobs.contains("\"probe\"") && jobs.contains("\"node\""),
        "{jobs}"
    );
    // The demo's history and live samples through the querier too, as one series each.
    assert_eq!(
        value(query.http_port, "count(node_cpu_seconds_total)", None),
        Some(CPU_SERIES)
    );
    assert_eq!(
        value(query.http_port, "count(node_cpu_seconds_total)", Some(past)),
        Some(CPU_SERIES)
    );
    drop(query);

    // SIGTERM stops the feed with the rest, exiting 0.
    let pid = all.0.id().to_string();
    run_ok(std::process::Command::new("kill").args(["-TERM", &pid]));
    let status = wait_for("exit after SIGTERM", Duration::from_secs(20), || {
        all.0.try_wait().unwrap()
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "exit {status}: {text}");
    assert!(text.contains("demo feed writing"), "{text}");
    assert!(text.contains("demo feed stopped"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}",
        started.elapsed()
    );
}

/// `gauntlet all --rule-file` evaluates rules in-process over what it was written: the
/// recorded series and ALERTS are read back through its own query API, and
/// `/api/v1/rules` and `/api/v1/alerts` list the rules and the firing alerts, on its own API
/// and through a `gauntlet query` calling its `thanos.Rules`.
#[test]
fn all_evaluates_rules_in_process() {
    use crate::interop::frontend_rule::{RULES, firing_on, gauges};
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let [rw] = free_ports();
    let all = GauntletServer::start(
        &[
            "all",
            &format!("--data-dir={}", tmp.path().join("data").display()),
            &format!("--remote-write.address=127.0.0.1:{rw}"),
            &format!("--rule-file={}", rules.display()),
            "--eval-interval=1s",
            "--engine.cores=1",
            "--compact.interval=0s",
        ],
        "/-/ready",
    );
    let now = now_ms() / 1000 * 1000;
    let (code, _, msg) = post(rw, "/api/v1/receive", &[V1], &gauges(now - 600_000, now)).unwrap();
    assert!((200..300).contains(&code), "{code} {msg}");
    assert_eq!(firing_on(all.http_port, 2).len(), 2);
    let sums = wait_for("recorded sums", Duration::from_secs(30), || {
        let v = (now_ms() / 1000).to_string();
        let (status, body) = http_get(
            all.http_port,
            &api_path(
                "/api/v1/query",
                &[("query", "sort(job:rule_gauge:sum)"), ("time", &v)],
            ),
        )
        .ok()?;
        let j: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let r = j["data"]["result"].as_array()?.clone();
        (status == 200 && r.len() == 2).then_some(r)
    });
    let values: Vec<(String, String)> = sums
        .iter()
        .map(|s| {
            (
                s["metric"]["job"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            ("api".to_string(), "6".to_string()),
            ("db".to_string(), "21".to_string())
        ]
    );
    wait_for("ALERTS series", Duration::from_secs(30), || {
        let v = (now_ms() / 1000).to_string();
        let (_, body) = http_get(
            all.http_port,
            &api_path(
                "/api/v1/query",
                &[
                    ("query", "count(ALERTS{alertstate=\"firing\"})"),
                    ("time", &v),
                ],
            ),
        )
        .ok()?;
        let j: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (j["data"]["result"][0]["value"][1] == "2").then_some(())
    });
    // Its gRPC port serves the rules as thanos.Rules: a querier over it lists them.
    let query = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", all.grpc_port)],
        "/-/ready",
    );
    let rules = wait_for("rules through the querier", Duration::from_secs(30), || {
        let (_, body) = http_get(query.http_port, "/api/v1/rules").ok()?;
        let j: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let groups = j["data"]["groups"].as_array()?.clone();
        (!groups.is_empty()).then_some(groups)
    });
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["name"], "interop");
    assert_eq!(rules[0]["rules"].as_array().unwrap().len(), 3, "{rules:?}");
    assert_eq!(firing_on(query.http_port, 2).len(), 2);
    let (status, _) = http_post_form(all.http_port, "/-/reload", "").unwrap();
    assert_eq!(status, 200);
}
