//! `gauntlet rule --query` over a real Prometheus 3 holding native histograms (remote-written
//! into it: exponential ones with negative and zero buckets, and custom-bucket ones): recording
//! rules over them (`sum(rate(…))`, `rate(…)`) record native histogram samples, and each
//! recorded histogram, read back through `gauntlet query` over the ruler's StoreAPI, is the one
//! Prometheus answers for the same expression at the same time.

use serde_json::Value;

use crate::common::native_histograms::{body_v1, hist};
use crate::common::receive::{now_ms, post};
use crate::common::*;
use crate::rule_query_config::{json, wait_for};
use gauntlet_proto::prometheus as pb;

const RULES: &str = "groups:
- name: histograms
  interval: 1s
  rules:
  - record: rbh:exp:rate
    expr: sum(rate(rbh_exp[1m]))
  - record: rbh:custom:rate
    expr: rate(rbh_custom[1m])
";

/// Series `name{i=…}` of histogram kind `kind`, a sample every 15 s over `[from, to]` (ms).
fn histograms(name: &str, i: usize, kind: usize, from: i64, to: i64) -> pb::TimeSeries {
    let label = |n: &str, v: &str| pb::Label {
        name: n.into(),
        value: v.into(),
    };
    pb::TimeSeries {
        labels: vec![label("__name__", name), label("i", &i.to_string())],
        histograms: (0..)
            .map(|j| (j, from + j as i64 * 15_000))
            .take_while(|(_, t)| *t <= to)
            .map(|(j, t)| hist(kind, i, j, t))
            .collect(),
        ..Default::default()
    }
}

/// Every (time ms, histogram JSON, labels) of `expr`'s series on `port` over the last `secs`.
fn recorded(port: u16, expr: &str, secs: u64) -> Vec<(i64, Value, Value)> {
    let at = format!("{:.3}", now_ms() as f64 / 1000.0);
    let sel = format!("{expr}[{secs}s]");
    let v = json(
        port,
        &api_path("/api/v1/query", &[("query", &sel), ("time", &at)]),
    );
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        for p in s["histograms"].as_array().into_iter().flatten() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            out.push((t, p[1].clone(), s["metric"].clone()));
        }
    }
    out
}

#[test]
fn native_histogram_answers_are_recorded_as_prometheus_gave_them() {
    let tmp = tempfile::tempdir().unwrap();
    let prom = Prometheus::start_with_config(
        &prometheus3(),
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    );
    let now = now_ms() / 15_000 * 15_000;
    let (from, to) = (now - 600_000, now + 120_000);
    let series = vec![
        histograms("rbh_exp", 0, 0, from, to),
        histograms("rbh_exp", 1, 0, from, to),
        histograms("rbh_custom", 2, 2, from, to),
    ];
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    let (status, _, text) = post(prom.port, "/api/v1/write", &headers, &body_v1(&series)).unwrap();
    assert!((200..300).contains(&status), "{status} {text}");

    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let ruler = GauntletServer::start(
        &[
            "rule",
            &format!("--data-dir={}", tmp.path().join("rule").display()),
            &format!("--rule-file={}", rules.display()),
            &format!("--query=127.0.0.1:{}", prom.port),
        ],
        "/-/ready",
    );
    let reader = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", ruler.grpc_port),
        ],
        "/-/ready",
    );
    let (exp, custom) = wait_for(60, "recorded histograms of both rules", || {
        let exp = recorded(reader.http_port, "rbh:exp:rate", 30);
        let custom = recorded(reader.http_port, "rbh:custom:rate", 30);
        (exp.len() >= 3 && !custom.is_empty()).then_some((exp, custom))
    });
    let health = json(ruler.http_port, "/api/v1/rules");
    for r in health["data"]["groups"][0]["rules"].as_array().unwrap() {
        assert_eq!(r["health"], "ok", "{r}");
    }
    let mut compared = 0;
    for (expr, points) in [
        ("sum(rate(rbh_exp[1m]))", &exp),
        ("rate(rbh_custom[1m])", &custom),
    ] {
        for (t, h, labels) in points.iter().take(5) {
            let at = format!("{}.{:03}", t / 1000, t % 1000);
            let want = json(
                prom.port,
                &api_path("/api/v1/query", &[("query", expr), ("time", &at)]),
            );
            let result = want["data"]["result"].as_array().unwrap();
            assert_eq!(result.len(), 1, "{expr} at {at}: {want}");
            assert_eq!(
                &result[0]["histogram"][1], h,
                "{expr} at {at}: Prometheus (left), recorded (right)"
            );
            // The recorded series: the rule's name over the answer's labels.
            let mut name = result[0]["metric"].clone();
            name["__name__"] = Value::String(
                if expr.starts_with("sum") {
                    "rbh:exp:rate"
                } else {
                    "rbh:custom:rate"
                }
                .into(),
            );
            assert_eq!(labels, &name);
            assert!(h["buckets"].as_array().is_some_and(|b| b.len() > 1), "{h}");
            compared += 1;
        }
    }
    assert!(compared >= 4, "{compared}");
    // The exponential histograms kept negative and zero buckets: bounds below zero, and a
    // bucket with both bounds inclusive around zero.
    let buckets: Vec<&Value> = exp
        .iter()
        .flat_map(|p| p.1["buckets"].as_array().unwrap())
        .collect();
    assert!(buckets.iter().any(|b| b[0] == 3), "{buckets:?}");
    assert!(
        buckets
            .iter()
            .any(|b| b[2].as_str().unwrap().starts_with('-')),
        "{buckets:?}"
    );
}
