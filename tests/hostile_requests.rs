//! Requests a hostile user would send, to every HTTP and gRPC endpoint of every role that parses
//! PromQL or selectors (`all`, `query`, `store`): expressions nested thousands of levels deep,
//! long operator chains, megabyte regexes, huge matcher lists, long label names and values.
//! Each must get a clean answer — a success, or an error whose message stays short — and the
//! process must be alive and serving afterwards.

mod common;

use std::path::{Path, PathBuf};

use common::storeapi::python_calls;
use common::*;
use serde_json::{Value, json};

/// The fixture's data starts here (ms): 2025-01-01T00:00:00Z, two hours.
const START_MS: i64 = 1_735_689_600_000;
const END_MS: i64 = START_MS + 2 * 3_600_000;

/// Most bytes of a selector sent in a URL: the HTTP server reads about 400 KB of request
/// head.
const GET_BYTES: usize = 300_000;

/// Longest error message a client may get back, bytes: the servers cut longer ones.
const MESSAGE_BYTES: usize = 1200;

/// A bucket holding the promtool fixture block.
fn bucket(dir: &Path) -> PathBuf {
    let bucket = dir.join("bucket");
    copy_dir(&fixtures().join("promtool-200series-2h"), &bucket);
    bucket
}

/// `n` copies of `item` joined by `sep`.
fn join(item: &str, sep: &str, n: usize) -> String {
    vec![item; n].join(sep)
}

/// 50 000 matchers, `l0="v",l1="v",…`.
fn many_matchers() -> String {
    (0..50_000)
        .map(|i| format!("l{i}=\"v\""))
        .collect::<Vec<_>>()
        .join(",")
}

/// Queries no server may fall over on, named.
fn hostile_queries() -> Vec<(&'static str, String)> {
    let alternatives: Vec<String> = (0..80_000).map(|i| format!("value{i}")).collect();
    vec![
        ("20000-term chain", join("1", " + ", 20_000)),
        (
            "5000 parentheses",
            format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000)),
        ),
        ("600 KB of parentheses", "(".repeat(600_000)),
        (
            "1000 parentheses",
            format!("{}up{}", "(".repeat(999), ")".repeat(999)),
        ),
        (
            "nested calls",
            format!(
                "{}http_requests_total{}",
                "abs(".repeat(999),
                ")".repeat(999)
            ),
        ),
        ("vector chain", join("http_requests_total", " + ", 999)),
        (
            "megabyte regex",
            format!("{{__name__=~\"{}\"}}", alternatives.join("|")),
        ),
        (
            "nested regex",
            format!(
                "{{__name__=~\"{}a{}\"}}",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
        ),
        (
            "long label value",
            format!("up{{job=\"{}\"}}", "x".repeat(1 << 20)),
        ),
        ("long metric name", "m".repeat(1 << 20)),
        ("many matchers", format!("up{{{}}}", many_matchers())),
        ("long number", "9".repeat(1 << 20)),
        (
            "unclosed string",
            format!("up{{job=\"{}", "\\\"".repeat(100_000)),
        ),
    ]
}

/// Selectors for `match[]`.
fn hostile_selectors() -> Vec<(&'static str, String)> {
    let alternatives: Vec<String> = (0..80_000).map(|i| format!("value{i}")).collect();
    vec![
        (
            "megabyte regex",
            format!("{{__name__=~\"{}\"}}", alternatives.join("|")),
        ),
        (
            "nested regex",
            format!(
                "{{job=~\"{}a{}\"}}",
                "(".repeat(100_000),
                ")".repeat(100_000)
            ),
        ),
        (
            "long label value",
            format!("{{job=\"{}\"}}", "x".repeat(1 << 20)),
        ),
        (
            "many matchers",
            format!("{{__name__=\"up\",{}}}", many_matchers()),
        ),
        (
            "a PromQL expression",
            format!("{}up{}", "(".repeat(5_000), ")".repeat(5_000)),
        ),
        ("long name", "n".repeat(1 << 20)),
    ]
}

/// Sends every hostile request to the HTTP API on `port` and checks each answer. With
/// `remote`, the server reads through StoreAPI calls, and the deep queries that select a
/// thousand times may run out of time instead of being answered.
fn attack_http(port: u16, remote: bool) {
    let range = format!("start={}&end={}", START_MS / 1000, END_MS / 1000);
    let mut requests: Vec<(String, &str, String)> = Vec::new();
    for (name, q) in hostile_queries() {
        let q = urlencode(&q);
        requests.push((
            format!("query: {name}"),
            "/api/v1/query",
            format!("query={q}&time={}", END_MS / 1000),
        ));
        requests.push((
            format!("query_range: {name}"),
            "/api/v1/query_range",
            format!("query={q}&{range}&step=60"),
        ));
        requests.push((
            format!("format_query: {name}"),
            "/api/v1/format_query",
            format!("query={q}"),
        ));
        requests.push((
            format!("query_exemplars: {name}"),
            "/api/v1/query_exemplars",
            format!("query={q}&{range}"),
        ));
    }
    for (name, sel) in hostile_selectors() {
        let m = urlencode(&sel);
        for path in ["/api/v1/series", "/api/v1/labels"] {
            requests.push((
                format!("{path}: {name}"),
                path,
                format!("match[]={m}&{range}"),
            ));
        }
        // Label values are GET only, as in Prometheus, and a URL has a size limit of its own
        // (below): the selectors are cut to fit in one.
        let m: String = m.chars().take(GET_BYTES).collect();
        let path = "/api/v1/label/job/values";
        requests.push((
            format!("{path}: {name}"),
            path,
            format!("match[]={m}&{range}"),
        ));
    }
    // Thousands of distinct selectors, each one selection (one fan-out through a querier);
    // label values take fewer, to fit in a URL.
    let many = |n: usize| {
        (0..n)
            .map(|i| {
                format!(
                    "match[]={}",
                    urlencode(&format!("{{job=\"api\",n!=\"{i}\"}}"))
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    };
    for (path, n) in [
        ("/api/v1/series", 10_000),
        ("/api/v1/labels", 10_000),
        ("/api/v1/label/job/values", 5_000),
    ] {
        requests.push((
            format!("{path}: {n} match[]"),
            path,
            format!("{}&{range}", many(n)),
        ));
    }
    let long_name = "n".repeat(100_000);
    requests.push((
        "label values of a long name".into(),
        "/api/v1/label/LONG/values",
        range.clone(),
    ));
    requests.push((
        "bad escapes".into(),
        "/api/v1/query",
        "query=%ff%fe%zz&time=abc".into(),
    ));
    requests.push((
        "absurd numbers".into(),
        "/api/v1/query_range",
        format!(
            "query=up&start=-1e300&end=1e300&step=1e-300&limit=-{}",
            "9".repeat(100)
        ),
    ));
    for (what, path, form) in &requests {
        let path = path.replace("LONG", &long_name);
        let answer = if path.starts_with("/api/v1/label/") {
            http_get(port, &format!("{path}?{form}"))
        } else {
            http_post_form(port, &path, form)
        };
        let (status, body) = answer.unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        assert!(
            matches!(status, 200 | 400 | 413 | 414 | 422 | 431 | 503),
            "{what}: status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
        if matches!(status, 400 | 422 | 503) {
            let v: Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{what}: {status} without a JSON error ({e})"));
            let msg = v["error"].as_str().unwrap_or_default();
            assert_eq!(v["status"], "error", "{what}");
            assert!(!msg.is_empty(), "{what}: empty error");
            assert!(
                msg.len() <= MESSAGE_BYTES,
                "{what}: {} byte message",
                msg.len()
            );
        }
        assert_alive_http(port, what);
    }
    // A body longer than the server reads (2 MB): refused, or the connection closed.
    let body = format!("query={}", "(".repeat(3 << 20));
    if let Ok((status, _)) = http_post_form(port, "/api/v1/query", &body) {
        assert_eq!(status, 413, "over-long body");
    }
    assert_alive_http(port, "an over-long body");
    // A URL longer than the server reads: refused, or the connection closed, and nothing
    // else happens.
    let url = format!("/api/v1/label/job/values?match[]={}", "x".repeat(4 << 20));
    if let Ok((status, _)) = http_get(port, &url) {
        assert!(matches!(status, 414 | 431), "over-long URL: {status}");
    }
    assert_alive_http(port, "an over-long URL");
    // The deep queries under the limit are answered, not refused.
    for q in ["1000 parentheses", "nested calls", "vector chain"] {
        let (status, body) = instant_query(port, q);
        let timed_out = status == 503 && body.contains("\"timeout\"");
        assert!(status == 200 || (remote && timed_out), "{q}: {body}");
    }
    // Over the limits: a 400 naming the flag.
    for q in ["20000-term chain", "5000 parentheses"] {
        let (status, body) = instant_query(port, q);
        assert_eq!(status, 400, "{q}");
        assert!(body.contains("--query.max-depth"), "{q}: {body}");
    }
}

/// The hostile query named `name` as an instant query at the data's end: status and body.
fn instant_query(port: u16, name: &str) -> (u16, String) {
    let (_, text) = hostile_queries()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap();
    let form = format!("query={}&time={}", urlencode(&text), END_MS / 1000);
    let (status, body) = http_post_form(port, "/api/v1/query", &form).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The process on `port` still answers its health check and a real query.
fn assert_alive_http(port: u16, after: &str) {
    let (status, _) = http_get(port, "/-/healthy")
        .unwrap_or_else(|e| panic!("after {after}: the server is gone: {e}"));
    assert_eq!(status, 200, "after {after}");
    let (status, body) = http_get(
        port,
        &format!(
            "/api/v1/query?query=count(up%20or%20http_requests_total)&time={}",
            END_MS / 1000
        ),
    )
    .unwrap_or_else(|e| panic!("after {after}: no answer to a query: {e}"));
    assert_eq!(
        status,
        200,
        "after {after}: {}",
        String::from_utf8_lossy(&body)
    );
}

/// Sends every hostile StoreAPI call to the gRPC port and checks each answer, then that the
/// server still answers Info and a plain Series call.
fn attack_grpc(port: u16) {
    let alternatives: Vec<String> = (0..80_000).map(|i| format!("value{i}")).collect();
    let big_re = alternatives.join("|");
    let nested = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
    let long = "x".repeat(1 << 20);
    let many: Vec<Value> = (0..50_000)
        .map(|i| json!([0, format!("l{i}"), "v"]))
        .collect();
    let matcher_sets: Vec<(&str, Value)> = vec![
        ("megabyte regex", json!([[2, "__name__", big_re]])),
        (
            "megabyte negated regex",
            json!([[0, "__name__", "up"], [3, "job", big_re]]),
        ),
        ("nested regex", json!([[2, "job", nested]])),
        ("bad regex", json!([[2, "job", format!("{long}(")]])),
        ("long value", json!([[0, "job", long]])),
        ("long name", json!([[0, long, "v"]])),
        ("many matchers", Value::Array(many)),
        ("unknown matcher type", json!([[9, "job", "api"]])),
    ];
    let mut calls = Vec::new();
    for (_, ms) in &matcher_sets {
        calls.push(
            json!({"method": "Series", "min_time": START_MS, "max_time": END_MS, "matchers": ms}),
        );
        calls.push(
            json!({"method": "LabelNames", "start": START_MS, "end": END_MS, "matchers": ms}),
        );
        calls.push(json!({"method": "LabelValues", "label": "job", "start": START_MS, "end": END_MS, "matchers": ms}));
    }
    calls.push(json!({"method": "Info"}));
    calls.push(
        json!({"method": "Series", "min_time": START_MS, "max_time": END_MS,
                      "matchers": [[0, "__name__", "http_requests_total"]]}),
    );
    let results = python_calls(port, &Value::Array(calls.clone()));
    for (c, r) in calls.iter().zip(&results) {
        let what = format!(
            "{} {}",
            c["method"],
            c["matchers"]
                .to_string()
                .chars()
                .take(60)
                .collect::<String>()
        );
        if r["ok"] == true {
            continue;
        }
        let code = r["code"].as_str().unwrap_or_default();
        assert!(
            matches!(code, "INVALID_ARGUMENT" | "RESOURCE_EXHAUSTED"),
            "{what}: {code}: {}",
            r["details"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        );
        let details = r["details"].as_str().unwrap_or_default();
        assert!(!details.is_empty(), "{what}: empty message");
        assert!(
            details.len() <= MESSAGE_BYTES,
            "{what}: {} byte message",
            details.len()
        );
    }
    let n = results.len();
    assert_eq!(
        results[n - 2]["ok"],
        true,
        "Info after the attack: {}",
        results[n - 2]
    );
    assert_eq!(
        results[n - 1]["ok"],
        true,
        "Series after the attack: {}",
        results[n - 1]
    );
    assert!(
        !results[n - 1]["series"].as_array().unwrap().is_empty(),
        "Series after the attack found nothing"
    );
    // The calls that must be refused are.
    for (k, (name, _)) in matcher_sets.iter().enumerate() {
        if ["nested regex", "bad regex", "unknown matcher type"].contains(name) {
            for j in 0..3 {
                assert_eq!(
                    results[3 * k + j]["code"],
                    "INVALID_ARGUMENT",
                    "{name}: {}",
                    results[3 * k + j]
                );
            }
        }
    }
}

#[test]
fn all_in_one_answers_hostile_requests_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = bucket(tmp.path());
    let data_dir = format!("--data-dir={}", bucket.display());
    let all = GauntletServer::start(&["all", &data_dir, "--io-backend=pread"], "/-/ready");
    attack_http(all.http_port, false);
    attack_grpc(all.grpc_port);
    assert_alive_http(all.http_port, "everything");
}

#[test]
fn querier_and_store_answer_hostile_requests_and_keep_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = bucket(tmp.path());
    let cfg = filesystem_objstore(tmp.path().join("bucket.yaml"), &bucket);
    let store = GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", cfg.display()),
            &format!("--data-dir={}", tmp.path().join("store").display()),
        ],
        "/-/ready",
    );
    attack_grpc(store.grpc_port);
    let endpoint = format!("--endpoint=127.0.0.1:{}", store.grpc_port);
    // Ten thousand selections through the querier take longer than this: such a request ends
    // with a timeout instead of holding a thread for minutes.
    let query = GauntletServer::start(&["query", &endpoint, "--query.timeout=10s"], "/-/ready");
    // The querier learns its endpoint's time range before it sends it anything.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !String::from_utf8_lossy(&query.get("/api/v1/labels").1).contains("__name__") {
        assert!(
            std::time::Instant::now() < deadline,
            "querier never saw its store"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    attack_http(query.http_port, true);
    attack_grpc(query.grpc_port);
    let (status, _) = http_get(store.http_port, "/metrics").unwrap();
    assert_eq!(status, 200, "the store after everything");
}
