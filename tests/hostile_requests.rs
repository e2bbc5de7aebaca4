//! Requests a hostile user would send, to every HTTP and gRPC endpoint of every role
//! (`all`, `query`, `store`, `receive`): expressions nested thousands of levels deep, long
//! operator chains, megabyte regexes, huge matcher lists, long label names and values; and to
//! the write endpoints (remote write over HTTP, `thanos.WriteableStore/RemoteWrite` over gRPC)
//! truncated and garbage bodies, snappy bombs, deeply nested protobuf, 2.0 symbol references
//! past the table, megabyte labels and a hundred thousand labels. Each must get a clean answer
//! — a success, or an error whose message stays short — and the process must be alive and
//! serving afterwards: a normal write, then a normal query, still succeed.

use std::path::{Path, PathBuf};

use crate::common::receive::{Receiver, V1, now_ms, post, series, snappy, write_body};
use crate::common::storeapi::{decoded, python_calls, series_call};
use crate::common::*;
use gauntlet_engine::encoding::{put_uvarint, uvarint_len};
use gauntlet_proto::io::prometheus::write::v2;
use gauntlet_proto::{prometheus as pb, thanos};
use prost::Message;
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

/// Sends every hostile StoreAPI call over `[mint, maxt]` (ms) to the gRPC port and checks each
/// answer, then that the server still answers Info and a plain Series call for
/// `http_requests_total`.
fn attack_grpc(port: u16, (mint, maxt): (i64, i64)) {
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
        calls.push(json!({"method": "Series", "min_time": mint, "max_time": maxt, "matchers": ms}));
        calls.push(json!({"method": "LabelNames", "start": mint, "end": maxt, "matchers": ms}));
        calls.push(json!({"method": "LabelValues", "label": "job", "start": mint, "end": maxt, "matchers": ms}));
    }
    calls.push(json!({"method": "Info"}));
    calls.push(
        json!({"method": "Series", "min_time": mint, "max_time": maxt,
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

/// The Content-Type of remote write 2.0.
const V2: (&str, &str) = (
    "Content-Type",
    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
);

/// A snappy block declaring `declared` decoded bytes: the two bytes `pattern` as a literal,
/// then `copies` copies of 64 bytes at offset 2 (3 bytes each), which repeat the pattern; the
/// true decoded length is `2 + 64 * copies`.
fn snappy_bomb(pattern: [u8; 2], copies: usize, declared: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * copies + 16);
    put_uvarint(&mut out, declared);
    out.extend_from_slice(&[0x04, pattern[0], pattern[1]]);
    for _ in 0..copies {
        out.extend_from_slice(&[0xFE, 0x02, 0x00]);
    }
    out
}

/// `depth` messages each inside the one before, as unknown field 15 (length-delimited).
fn nested_messages(depth: usize) -> Vec<u8> {
    // Lengths from the innermost (empty) message out, then written outermost first.
    let mut lens = vec![0u64];
    while lens.len() < depth {
        let inner = *lens.last().unwrap();
        lens.push(1 + uvarint_len(inner) as u64 + inner);
    }
    let mut out = Vec::new();
    for &len in lens.iter().rev() {
        out.push(0x7A);
        put_uvarint(&mut out, len);
    }
    out
}

/// A series with `n` labels `l000000`, `l000001`, … after its name.
fn many_labels(name: &str, n: usize, t: i64) -> pb::TimeSeries {
    let names: Vec<String> = (0..n).map(|i| format!("l{i:06}")).collect();
    let mut labels = vec![("__name__", name)];
    labels.extend(names.iter().map(|l| (l.as_str(), "v")));
    series(&labels, &[(t, 1.0)])
}

/// A remote-write request no receiver may fall over on.
struct HostileWrite {
    name: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// The status the answer must have, when only one is right.
    want: Option<u16>,
}

/// The hostile remote-write requests, with samples at `t` (ms).
fn hostile_writes(t: i64) -> Vec<HostileWrite> {
    let v1 = || vec![(V1.0, V1.1.to_string())];
    let v2 = || vec![(V2.0, V2.1.to_string())];
    let good = write_body(vec![series(&[("__name__", "hostile_good")], &[(t, 1.0)])]);
    let v2_refs = |refs: Vec<u32>| {
        snappy(
            &v2::Request {
                symbols: vec!["".into(), "__name__".into(), "hostile_v2".into()],
                timeseries: vec![v2::TimeSeries {
                    labels_refs: refs,
                    samples: vec![v2::Sample {
                        value: 1.0,
                        timestamp: t,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }
            .encode_to_vec(),
        )
    };
    // About 1 MiB of copies: 21 MiB of empty series, ten million of them.
    let copies = (1 << 20) / 3;
    let bomb_len = 2 + 64 * copies as u64;
    // 1.5 MiB of copies: 32 MiB of empty series, the most a body may decode to.
    let full_copies = ((32 << 20) - 2) / 64;
    let full_len = 2 + 64 * full_copies as u64;
    vec![
        (
            "truncated snappy",
            v1(),
            good[..good.len() - 3].to_vec(),
            Some(400),
        ),
        (
            "not snappy",
            v1(),
            b"hello, this is not snappy at all".to_vec(),
            Some(400),
        ),
        ("garbage protobuf", v1(), snappy(&[0xFF; 64]), Some(400)),
        (
            "garbage protobuf, 2.0",
            v2(),
            snappy(&[0xFF; 64]),
            Some(400),
        ),
        ("empty body", v1(), Vec::new(), Some(400)),
        (
            "snappy declaring 4 GiB",
            v1(),
            vec![0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0],
            Some(413),
        ),
        (
            "snappy bomb past the decoded limit",
            v1(),
            snappy_bomb([0x0A, 0x00], copies, 1 << 30),
            Some(413),
        ),
        (
            "snappy bomb of ten million empty series",
            v1(),
            snappy_bomb([0x0A, 0x00], copies, bomb_len),
            Some(413),
        ),
        (
            "snappy bomb of ten million empty series, 2.0",
            v2(),
            snappy_bomb([0x2A, 0x00], copies, bomb_len),
            Some(413),
        ),
        (
            "snappy bomb of empty series up to the decoded limit",
            v1(),
            snappy_bomb([0x0A, 0x00], full_copies, full_len),
            Some(413),
        ),
        (
            "snappy bomb of empty series up to the decoded limit, 2.0",
            v2(),
            snappy_bomb([0x2A, 0x00], full_copies, full_len),
            Some(413),
        ),
        (
            "100000 nested groups",
            v1(),
            snappy(&[0x7B; 100_000]),
            Some(400),
        ),
        (
            "10000 nested messages",
            v1(),
            snappy(&nested_messages(10_000)),
            None,
        ),
        (
            "2.0 symbol reference past the table",
            v2(),
            v2_refs(vec![1, 2, 3, 99_999]),
            Some(400),
        ),
        (
            "2.0 symbol reference u32::MAX",
            v2(),
            v2_refs(vec![1, u32::MAX]),
            Some(400),
        ),
        (
            "2.0 odd label references",
            v2(),
            v2_refs(vec![1, 2, 1]),
            Some(400),
        ),
        (
            "megabyte label value",
            v1(),
            write_body(vec![series(
                &[("__name__", "hostile_long"), ("v", &"x".repeat(1 << 20))],
                &[(t, 1.0)],
            )]),
            None,
        ),
        (
            "megabyte label name",
            v1(),
            write_body(vec![series(
                &[("__name__", "hostile_long"), (&"n".repeat(1 << 20), "v")],
                &[(t, 1.0)],
            )]),
            None,
        ),
        (
            "100000 labels",
            v1(),
            write_body(vec![many_labels("hostile_many", 100_000, t)]),
            None,
        ),
        ("over the body limit", v1(), vec![0; 5 << 20], None),
        (
            "unknown content type",
            vec![("Content-Type", "text/plain".into())],
            good.clone(),
            Some(415),
        ),
        (
            "unknown content encoding",
            vec![(V1.0, V1.1.into()), ("Content-Encoding", "gzip".into())],
            good.clone(),
            Some(415),
        ),
        (
            "10 KB tenant",
            vec![(V1.0, V1.1.into()), ("THANOS-TENANT", "t".repeat(10_000))],
            good.clone(),
            Some(400),
        ),
        // A tenant, kept in an escaped directory inside the receiver's root.
        (
            "tenant with a path",
            vec![(V1.0, V1.1.into()), ("THANOS-TENANT", "../../etc".into())],
            good,
            Some(200),
        ),
    ]
    .into_iter()
    .map(|(name, headers, body, want)| HostileWrite {
        name,
        headers,
        body,
        want,
    })
    .collect()
}

/// A normal remote write of one sample of `hostile_alive{at="after"}` at `t` (ms) on `port`
/// must be answered 200.
fn assert_write_ok(port: u16, t: i64, after: &str) {
    let body = write_body(vec![series(
        &[("__name__", "hostile_alive"), ("at", "after")],
        &[(t, 1.0)],
    )]);
    let (status, _, msg) = post(port, "/api/v1/receive", &[V1], &body)
        .unwrap_or_else(|e| panic!("after {after}: the receiver is gone: {e}"));
    assert_eq!(status, 200, "after {after}: a normal write: {msg}");
}

/// Sends every hostile remote write to both write paths on each of `ports` and checks each
/// answer; after each, a normal write on the first port must succeed. With `body_limit`, the
/// server refuses bodies over 4 MiB. Returns the last timestamp written (ms).
fn attack_writes(ports: &[u16], body_limit: bool) -> i64 {
    let mut t = now_ms();
    for &port in ports {
        for path in ["/api/v1/receive", "/api/v1/write"] {
            for HostileWrite {
                name,
                headers,
                body,
                want,
            } in hostile_writes(t)
            {
                let what = format!("{name} to {path} on :{port}");
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let (status, _, msg) = post(port, path, &headers, &body)
                    .unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
                let want = if name == "over the body limit" && body_limit {
                    Some(413)
                } else {
                    want
                };
                if let Some(want) = want {
                    assert_eq!(status, want, "{what}: {msg}");
                }
                assert!(
                    matches!(status, 200 | 400 | 409 | 413 | 415 | 429),
                    "{what}: status {status}: {}",
                    msg.chars().take(300).collect::<String>()
                );
                if status != 200 {
                    assert!(!msg.trim().is_empty(), "{what}: {status} without a message");
                }
                assert!(
                    msg.len() <= MESSAGE_BYTES,
                    "{what}: {} byte message",
                    msg.len()
                );
                t += 1;
                assert_write_ok(ports[0], t, &what);
            }
        }
    }
    t
}

/// Sends hostile `thanos.WriteableStore/RemoteWrite` calls to the gRPC port and checks each
/// answer: a success, or a refusal with a short message (`INTERNAL` only for bytes that are
/// not a `WriteRequest`, as gRPC servers answer them); then a normal forwarded write.
fn attack_remote_write(port: u16) {
    let t = now_ms();
    let request = |timeseries: Vec<pb::TimeSeries>, tenant: &str, replica: i64| {
        thanos::WriteRequest {
            timeseries,
            tenant: tenant.into(),
            replica,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let one = |name: &str, value: &str| {
        series(&[("__name__", "hostile_grpc"), (name, value)], &[(t, 1.0)])
    };
    let long = "x".repeat(1 << 20);
    let empty: Vec<pb::TimeSeries> = (0..100_000).map(|_| pb::TimeSeries::default()).collect();
    let calls: Vec<(&str, Vec<u8>)> = vec![
        (
            "megabyte label value",
            request(vec![one("v", &long)], "", 0),
        ),
        ("megabyte label name", request(vec![one(&long, "v")], "", 0)),
        (
            "100000 labels",
            request(vec![many_labels("hostile_grpc_many", 100_000, t)], "", 0),
        ),
        ("100000 empty series", request(empty, "", 0)),
        ("garbage", vec![0xFF; 64]),
        ("100000 nested groups", vec![0x7B; 100_000]),
        ("10000 nested messages", nested_messages(10_000)),
        ("negative replica", request(vec![one("job", "a")], "", -1)),
        (
            "tenant with a path",
            request(vec![one("job", "a")], "../../etc", 0),
        ),
        (
            "10 KB tenant",
            request(vec![one("job", "a")], &"t".repeat(10_000), 0),
        ),
    ];
    let mut json_calls: Vec<Value> = calls
        .iter()
        .map(|(_, body)| json!({"method": "RemoteWrite", "body": hex(body)}))
        .collect();
    let normal = request(
        vec![series(&[("__name__", "hostile_grpc_alive")], &[(t, 2.0)])],
        "",
        0,
    );
    json_calls.push(json!({"method": "RemoteWrite", "body": hex(&normal)}));
    let results = python_calls(port, &Value::Array(json_calls));
    for ((what, _), r) in calls.iter().zip(&results) {
        if r["ok"] == true {
            continue;
        }
        let code = r["code"].as_str().unwrap_or_default();
        let details = r["details"].as_str().unwrap_or_default();
        let undecodable = ["garbage", "100000 nested groups"].contains(what);
        assert!(
            matches!(
                code,
                "INVALID_ARGUMENT" | "ALREADY_EXISTS" | "RESOURCE_EXHAUSTED"
            ) || (undecodable && code == "INTERNAL"),
            "{what}: {code}: {}",
            details.chars().take(300).collect::<String>()
        );
        assert!(!details.is_empty(), "{what}: {code} without a message");
        assert!(
            details.len() <= MESSAGE_BYTES,
            "{what}: {} byte message",
            details.len()
        );
    }
    for (k, (what, _)) in calls.iter().enumerate() {
        // "tenant with a path" is a tenant like any other, kept inside the receiver's root.
        if what == &"tenant with a path" {
            assert_eq!(results[k]["ok"], true, "{what}: {}", results[k]);
        }
        if ["negative replica", "10 KB tenant"].contains(what) {
            assert_eq!(
                results[k]["code"], "INVALID_ARGUMENT",
                "{what}: {}",
                results[k]
            );
        }
    }
    assert_eq!(
        results[calls.len()]["ok"],
        true,
        "a normal forwarded write after the attack: {}",
        results[calls.len()]
    );
}

/// Bytes as lower-case hex.
fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn all_in_one_answers_hostile_requests_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = bucket(tmp.path());
    let data_dir = format!("--data-dir={}", bucket.display());
    let rw = free_port();
    let rw_address = format!("--remote-write.address=127.0.0.1:{rw}");
    let all = GauntletServer::start(
        &["all", &data_dir, "--io-backend=pread", &rw_address],
        "/-/ready",
    );
    attack_http(all.http_port, false);
    attack_grpc(all.grpc_port, (START_MS, END_MS));
    // Remote write on its own port and on the HTTP address; then PromQL finds every normal
    // write made between the hostile ones.
    let last = attack_writes(&[rw, all.http_port], false);
    let q = urlencode("count_over_time(hostile_alive[5m])");
    let (status, body) = all.get(&format!("/api/v1/query?query={q}&time={}", last / 1000 + 1));
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["result"][0]["value"][1],
        (4 * hostile_writes(0).len()).to_string(),
        "{body}"
    );
    assert_alive_http(all.http_port, "everything");
}

#[test]
fn receiver_answers_hostile_requests_and_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = Receiver::start(
        &tmp.path().join("receive"),
        &["--receive.limits.request-size=4MiB"],
    );
    // The series the StoreAPI attack reads, as the bucket fixture names them.
    let t = now_ms();
    let body = write_body(vec![
        series(
            &[("__name__", "http_requests_total"), ("job", "api")],
            &[(t, 1.0)],
        ),
        series(&[("__name__", "up"), ("job", "api")], &[(t, 1.0)]),
    ]);
    let (status, _, msg) = post(recv.rw, "/api/v1/receive", &[V1], &body).unwrap();
    assert_eq!(status, 200, "{msg}");
    let window = (t - 3_600_000, t + 3_600_000);
    attack_grpc(recv.grpc, window);
    let last = attack_writes(&[recv.rw, recv.http], true);
    attack_remote_write(recv.grpc);
    // A normal query after everything: every normal write made between the hostile ones, and
    // the normal forwarded one.
    let res = python_calls(
        recv.grpc,
        &json!([
            series_call(&json!([[0, "__name__", "hostile_alive"]]), window.0, last),
            series_call(
                &json!([[0, "__name__", "hostile_grpc_alive"]]),
                window.0,
                window.1
            ),
        ]),
    );
    let alive = decoded(&res[0], window.0, last);
    let samples: usize = alive.values().map(Vec::len).sum();
    assert_eq!(samples, 4 * hostile_writes(0).len(), "{alive:?}");
    assert_eq!(decoded(&res[1], window.0, window.1).len(), 1);
    assert_eq!(http_get(recv.http, "/-/healthy").unwrap().0, 200);
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
    attack_grpc(store.grpc_port, (START_MS, END_MS));
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
    attack_grpc(query.grpc_port, (START_MS, END_MS));
    let (status, _) = http_get(store.http_port, "/metrics").unwrap();
    assert_eq!(status, 200, "the store after everything");
}
