//! The memory budget (`--memory.limit`): a process over it refuses new queries, reads and
//! writes (503 with the API's error envelope, or plain text for remote write) and keeps
//! answering `/metrics`, `/-/healthy` and its web UI; under it, everything is served.

mod common;

use common::receive::{V1, now_ms, post, series, write_body};
use common::*;
use serde_json::Value;

#[test]
fn over_its_budget_a_process_refuses_new_work_and_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    // Any process holds more than a mebibyte: every request is over budget.
    let tight = GauntletServer::start(&["all", &data, "--memory.limit=1MiB"], "/-/ready");
    let (status, body) = tight.get("/api/v1/query?query=1");
    assert_eq!(status, 503);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "unavailable");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("--memory.limit of 1 MiB"), "{msg}");
    for path in [
        "/api/v1/query_range?query=1&start=0&end=60&step=15",
        "/api/v1/series?match[]=up",
        "/api/v1/labels",
        "/api/v1/label/job/values",
    ] {
        assert_eq!(tight.get(path).0, 503, "{path}");
    }
    let t = now_ms();
    let (code, _, text) = post(
        tight.http_port,
        "/api/v1/receive",
        &[V1],
        &write_body(vec![series(&[("__name__", "m")], &[(t, 1.0)])]),
    )
    .unwrap();
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("remote write refused"), "{text}");
    for path in ["/-/healthy", "/-/ready", "/", "/api/v1/status/flags"] {
        assert_eq!(tight.get(path).0, 200, "{path}");
    }
    let (_, metrics) = tight.get("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    let refusals: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gauntlet_memory_refusals_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refusals >= 6.0, "{metrics}");
    assert!(
        metrics.contains("gauntlet_memory_limit_bytes 1.048576e+06"),
        "{metrics}"
    );
    drop(tight);

    // With room, the same requests are served.
    let roomy = GauntletServer::start(&["all", &data, "--memory.limit=8GiB"], "/-/ready");
    let (code, _, text) = post(
        roomy.http_port,
        "/api/v1/receive",
        &[V1],
        &write_body(vec![series(&[("__name__", "m")], &[(t, 1.0)])]),
    )
    .unwrap();
    assert_eq!(code, 200, "{text}");
    let (status, body) = roomy.get(&format!("/api/v1/query?query=m&time={}", t / 1000 + 1));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
}
