//! Every request limit of `gauntlet store` refuses a Series call with gRPC `ResourceExhausted`
//! and a message naming the flag that sets it, seen by a Python grpcio client: series,
//! samples (chunks × 120), chunk bytes and concurrent Series calls. Calls within the limits
//! pass, and the refusals are counted on /metrics.

use std::path::Path;

use crate::common::storeapi::python_calls;
use crate::common::*;
use serde_json::{Value, json};

const START_MS: i64 = 1_735_689_600_000;
const END_MS: i64 = START_MS + 2 * 3600 * 1000;

/// The promtool fixture block (200 series, 2 h of 15 s samples, 4 chunks per series) in a
/// FILESYSTEM bucket; returns the objstore file.
fn bucket(root: &Path) -> std::path::PathBuf {
    let dir = root.join("bucket");
    copy_dir(&fixtures().join("promtool-200series-2h"), &dir);
    filesystem_objstore(root.join("bucket.yml"), &dir)
}

fn store(root: &Path, cfg: &Path, name: &str, flags: &[&str]) -> GauntletServer {
    let mut args = vec![
        "store".to_string(),
        format!("--objstore.config-file={}", cfg.display()),
        format!("--data-dir={}", root.join(name).display()),
        "--sync-block-duration=1h".to_string(),
    ];
    args.extend(flags.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    GauntletServer::start(&args, "/-/ready")
}

fn series(matchers: Value) -> Value {
    json!({"method": "Series", "min_time": START_MS, "max_time": END_MS, "matchers": matchers})
}

/// All 200 series: 200 series, 800 chunks (96 000 samples counted as chunks × 120).
fn all() -> Value {
    series(json!([[2, "__name__", ".+"]]))
}

/// The 10 `temperature_celsius` series.
fn few() -> Value {
    series(json!([[0, "__name__", "temperature_celsius"]]))
}

fn assert_refused(r: &Value, flag: &str) {
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["code"], "RESOURCE_EXHAUSTED", "{r}");
    assert!(r["details"].as_str().unwrap().contains(flag), "{r}");
}

#[test]
fn each_limit_refuses_with_resource_exhausted_naming_its_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = bucket(tmp.path());
    let few_series = python_calls(
        store(tmp.path(), &cfg, "probe", &[]).grpc_port,
        &json!([few()]),
    )[0]["series"]
        .as_array()
        .unwrap()
        .len();
    assert!(few_series > 0 && few_series < 200);

    for (flag, value) in [
        ("--store.limits.request-series", "100"),
        ("--store.limits.request-samples", "50000"),
        ("--store.limits.request-bytes", "200KB"),
    ] {
        let s = store(tmp.path(), &cfg, flag, &[&format!("{flag}={value}")]);
        let r = python_calls(s.grpc_port, &json!([all(), few()]));
        assert_refused(&r[0], flag);
        assert_eq!(r[1]["ok"], true, "{flag}: a small call passes: {}", r[1]);
        assert_eq!(r[1]["series"].as_array().unwrap().len(), few_series);
        let (_, body) = s.get("/metrics");
        let m = String::from_utf8_lossy(&body);
        assert!(
            m.contains("thanos_bucket_store_series_limit_refusals_total 1"),
            "{flag}: {m}"
        );
    }
}

#[test]
fn concurrent_series_calls_beyond_the_limit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = bucket(tmp.path());
    let s = store(
        tmp.path(),
        &cfg,
        "data",
        &["--store.grpc.series-max-concurrency=1"],
    );
    // Eight whole-block calls at once on one permit: some must be refused. A call holds its
    // permit for tens of milliseconds, so overlap is near certain; rounds are bounded.
    let mut refused = 0;
    let mut served = 0;
    for _ in 0..10 {
        let calls: Vec<Value> = (0..8).map(|_| all()).collect();
        let r = python_calls(
            s.grpc_port,
            &json!([{"method": "Parallel", "calls": calls}]),
        );
        for c in r[0]["results"].as_array().unwrap() {
            if c["ok"] == true {
                assert_eq!(c["series"].as_array().unwrap().len(), 200);
                served += 1;
            } else {
                assert_refused(c, "--store.grpc.series-max-concurrency");
                refused += 1;
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(
        refused > 0 && served > 0,
        "refused {refused}, served {served}"
    );
    // One at a time, every call passes.
    let r = python_calls(s.grpc_port, &json!([all(), all(), all()]));
    assert!(r.iter().all(|c| c["ok"] == true), "{r:?}");
}
