//! The Grafana dashboard in `deploy/grafana/gauntlet.json` reads only metrics Gauntlet
//! exports: a `gauntlet all` (store, receive and compactor) and a `gauntlet query` in front of
//! it run on loopback, take a remote write and a query through the querier's StoreAPI fan-out,
//! and every metric each panel's queries name must be a family one of them exports on
//! `/metrics`. Every query must also be PromQL that Gauntlet's own API runs, with Grafana's
//! variables filled in as Grafana fills them.

use std::collections::BTreeSet;

use crate::common::receive::{V1, now_ms, post, series, snappy};
use crate::common::*;
use gauntlet_proto::prometheus as pb;
use prost::Message;
use serde_json::Value;

/// The families `/metrics` declares (`# TYPE name kind`), with the series names a histogram
/// family adds.
fn families(server: &GauntletServer) -> BTreeSet<String> {
    let (status, body) = server.get("/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            panic!("bad TYPE line {line:?}");
        };
        out.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                out.insert(format!("{name}{suffix}"));
            }
        }
    }
    out
}

/// The metric names a query uses: every identifier with the prefix of a family Gauntlet
/// exports (its own, Thanos's, Prometheus's TSDB and process, HTTP and gRPC servers') that is
/// not a label name (inside `{…}` or a `by`/`without`/`on`/`ignoring`/`group_*` list) nor in
/// a quoted string.
fn metric_names(expr: &str) -> Vec<String> {
    const PREFIXES: [&str; 6] = [
        "gauntlet_",
        "thanos_",
        "prometheus_",
        "process_",
        "http_",
        "grpc_",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let mut out = Vec::new();
    let mut chars = expr.char_indices().peekable();
    let (mut braces, mut in_list, mut quoted) = (0usize, false, false);
    let mut last_word = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                chars.next();
            }
            _ if quoted => {}
            '{' => braces += 1,
            '}' => braces = braces.saturating_sub(1),
            '(' if LABEL_LISTS.contains(&last_word.as_str()) => in_list = true,
            ')' if in_list => in_list = false,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' || d == ':' {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let word = &expr[i..end];
                if braces == 0 && !in_list && PREFIXES.iter().any(|p| word.starts_with(p)) {
                    out.push(word.to_string());
                }
                last_word = word.to_string();
                continue;
            }
            c if c.is_whitespace() => continue,
            _ => {}
        }
        last_word.clear();
    }
    out
}

#[test]
fn every_metric_the_dashboard_reads_is_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let all = GauntletServer::start(&["all", &data, "--compact.interval=0s"], "/-/ready");
    let querier = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", all.grpc_port)],
        "/-/ready",
    );

    // Traffic on every path the dashboard watches: a remote write, a query through the
    // querier (its HTTP API, then `all`'s StoreAPI).
    let end = now_ms() / 1000 * 1000;
    let samples: Vec<(i64, f64)> = (0..20)
        .map(|i| (end - (19 - i) * 15_000, i as f64))
        .collect();
    let body = pb::WriteRequest {
        timeseries: vec![series(
            &[("__name__", "dashboard_test_total"), ("job", "t")],
            &samples,
        )],
        ..Default::default()
    }
    .encode_to_vec();
    let (status, _, text) = post(
        all.http_port,
        "/api/v1/receive",
        &[V1, ("Content-Encoding", "snappy")],
        &snappy(&body),
    )
    .expect("remote write");
    assert_eq!(status, 200, "{text}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (status, body) = querier.get(&format!(
            "/api/v1/query?query=dashboard_test_total&time={}",
            end / 1000
        ));
        let v: Value = serde_json::from_slice(&body).unwrap();
        if status == 200 && v["data"]["result"].as_array().is_some_and(|r| r.len() == 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the querier never saw the written series: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let mut exported = families(&all);
    exported.extend(families(&querier));
    // The request metrics have series now, not only their declarations.
    let (_, all_metrics) = all.get("/metrics");
    let all_metrics = String::from_utf8(all_metrics).unwrap();
    assert!(
        all_metrics.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Series\",grpc_service=\"thanos.Store\",grpc_type=\"server_stream\"}"),
        "{all_metrics}"
    );
    assert!(
        all_metrics
            .contains("http_requests_total{code=\"200\",handler=\"receive\",method=\"post\"} 1"),
        "{all_metrics}"
    );
    let (_, q_metrics) = querier.get("/metrics");
    assert!(
        String::from_utf8(q_metrics)
            .unwrap()
            .contains("http_requests_total{code=\"200\",handler=\"query\",method=\"get\"}"),
    );

    let text = std::fs::read_to_string(repo_root().join("deploy/grafana/gauntlet.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut queries = Vec::new();
    for p in panels {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?").to_string();
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title:?} has no queries");
        for t in targets {
            queries.push((title.clone(), t["expr"].as_str().unwrap().to_string()));
        }
    }
    for v in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["query"]["query"].as_str() {
            // `label_values(metric, label)` reads the metric's series.
            let metric = q
                .trim_start_matches("label_values(")
                .split(',')
                .next()
                .unwrap()
                .trim();
            queries.push((format!("variable {}", v["name"]), metric.to_string()));
        }
    }
    assert!(queries.len() >= 30, "{}", queries.len());

    let mut missing = Vec::new();
    for (title, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: no Gauntlet metric in {expr}");
        for n in names {
            if !exported.contains(&n) {
                missing.push(format!("{title}: {n}"));
            }
        }
        // Grafana's variables as Grafana fills them: every job, a rate interval.
        let filled = expr.replace("$__rate_interval", "1m").replace("$job", ".+");
        let (status, body) = all.get(&format!(
            "/api/v1/query?query={}&time={}",
            urlencode(&filled),
            end / 1000
        ));
        assert_eq!(
            status,
            200,
            "{title}: {filled}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    assert!(
        missing.is_empty(),
        "metrics the dashboard reads that no role exports:\n{}",
        missing.join("\n")
    );
}

#[test]
fn metric_names_are_found_outside_label_values_only() {
    assert_eq!(
        metric_names(
            "sum by (code) (rate(thanos_receive_write_requests_total{handler=\"http_requests_total\"}[1m])) / process_open_fds"
        ),
        vec!["thanos_receive_write_requests_total", "process_open_fds"]
    );
    assert_eq!(
        metric_names(
            "histogram_quantile(0.9, sum by (grpc_method, le) (rate(grpc_server_handling_seconds_bucket{grpc_service=\"thanos.Store\"}[5m])))"
        ),
        vec!["grpc_server_handling_seconds_bucket"]
    );
}
