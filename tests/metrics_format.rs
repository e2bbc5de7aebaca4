//! `/metrics` answers in the format the scrape asks for: OpenMetrics 1.0.0 (ending in
//! `# EOF`) when the `Accept` header names `application/openmetrics-text`, else the
//! Prometheus text format 0.0.4; both carry the same families, named by their samples. A real
//! Prometheus 3 scraping Gauntlet in either format finds the target up and ingests its
//! metrics.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// GET `/metrics` with `accept` (no `Accept` header for `None`): (status, content type, body).
fn scrape(port: u16, accept: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        s,
        "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, content_type, body.to_string())
}

/// The families of an exposition as `(name, type)`, named and typed as the text format 0.0.4
/// names them: an OpenMetrics counter `x` is `x_total`, an info `x` is the gauge `x_info`.
fn families(exposition: &str) -> BTreeSet<(String, String)> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|rest| {
            let (name, typ) = rest.split_once(' ').expect("a TYPE line has a type");
            match typ {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), typ.into()),
                "info" => (format!("{name}_info"), "gauge".into()),
                _ => (name.to_string(), typ.to_string()),
            }
        })
        .collect()
}

/// The metric names the samples of an exposition carry.
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

#[test]
fn openmetrics_when_asked_for_the_text_format_otherwise() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let all = GauntletServer::start(&["all", &data, "--compact.interval=0s"], "/-/ready");
    // A first scrape, so that the scrapes below both see its request counted.
    let (status, _, _) = scrape(all.http_port, None);
    assert_eq!(status, 200);

    let (status, om_type, om) = scrape(
        all.http_port,
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert_eq!(status, 200);
    assert_eq!(om_type, OPENMETRICS);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(om.matches("# EOF").count(), 1, "{om}");
    // OpenMetrics names a counter's family without `_total`; its samples carry it.
    assert!(om.contains("\n# TYPE http_requests counter\n"), "{om}");
    assert!(
        om.contains("http_requests_total{code=\"200\",handler=\"metrics\",method=\"get\"} "),
        "{om}"
    );
    assert!(om.contains("\n# TYPE gauntlet_build info\n"), "{om}");

    // What Prometheus 2 and 3 send by default prefers OpenMetrics too.
    let (_, prom3_type, _) = scrape(
        all.http_port,
        Some(
            "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
             application/openmetrics-text;version=0.0.1;q=0.5,\
             text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
             text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
        ),
    );
    assert_eq!(prom3_type, OPENMETRICS);

    let (status, text_type, text) = scrape(all.http_port, None);
    assert_eq!(status, 200);
    assert_eq!(text_type, TEXT);
    assert!(!text.contains("# EOF"), "{text}");
    assert!(!text.contains("# UNIT"), "{text}");
    assert!(
        text.contains("\n# TYPE http_requests_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("\n# TYPE gauntlet_build_info gauge\ngauntlet_build_info{version=\""),
        "{text}"
    );
    let (_, plain_type, _) = scrape(all.http_port, Some("text/plain;version=0.0.4"));
    assert_eq!(plain_type, TEXT);

    // The same families and samples in both, every role's among them.
    let (om_families, text_families) = (families(&om), families(&text));
    assert_eq!(om_families, text_families);
    assert_eq!(sample_names(&om), sample_names(&text));
    for (name, typ) in [
        ("process_cpu_seconds_total", "counter"),
        ("gauntlet_build_info", "gauge"),
        ("gauntlet_memory_limit_bytes", "gauge"),
        ("http_requests_total", "counter"),
        ("http_request_duration_seconds", "histogram"),
        ("grpc_server_handled_total", "counter"),
        ("gauntlet_http_connections_open", "gauge"),
        ("thanos_bucket_store_blocks_loaded", "gauge"),
        ("thanos_receive_write_requests_total", "counter"),
        ("prometheus_tsdb_head_series", "gauge"),
        ("thanos_compact_iterations_total", "counter"),
        ("prometheus_engine_queries", "gauge"),
    ] {
        assert!(
            text_families.contains(&(name.to_string(), typ.to_string())),
            "{name} {typ} missing from:\n{text}"
        );
    }
    // Each family is declared once, in the one registry every role of `all` registers into.
    let declared: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .collect();
    assert_eq!(declared.len(), text_families.len(), "{text}");
}

/// The value of the single sample `query` returns on Prometheus at `port`, if any.
fn prometheus_value(port: u16, query: &str) -> Option<f64> {
    let (status, body) = http_get(port, &api_path("/api/v1/query", &[("query", query)])).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let result = v["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_both_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let all = GauntletServer::start(&["all", &data, "--compact.interval=0s"], "/-/ready");
    let target = format!("127.0.0.1:{}", all.http_port);
    // One job negotiates (Prometheus 3 prefers OpenMetrics), one takes the text format only.
    let job = |name: &str, extra: &str| {
        format!("  - job_name: {name}\n{extra}    static_configs:\n      - targets: ['{target}']\n")
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}",
        job("negotiated", ""),
        job("text", "    scrape_protocols: [PrometheusText0.0.4]\n"),
    );
    let prom = Prometheus::start_with_config(&prometheus3(), |_| config, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let queries = [
        "up{job=\"negotiated\"}",
        "up{job=\"text\"}",
        "gauntlet_build_info{job=\"negotiated\"}",
        "gauntlet_build_info{job=\"text\"}",
        "count(process_cpu_seconds_total{job=\"negotiated\"})",
        "count(process_cpu_seconds_total{job=\"text\"})",
        "count(http_requests_total{job=\"negotiated\",handler=\"metrics\"} > 0)",
        "count(http_requests_total{job=\"text\",handler=\"metrics\"} > 0)",
    ];
    loop {
        let values: Vec<Option<f64>> = queries
            .iter()
            .map(|q| prometheus_value(prom.port, q))
            .collect();
        if values.iter().all(|v| *v == Some(1.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not ingest both formats: {:?}",
            queries.iter().zip(&values).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Both scrapes brought the same series.
    let negotiated = prometheus_value(prom.port, "scrape_samples_scraped{job=\"negotiated\"}");
    let text = prometheus_value(prom.port, "scrape_samples_scraped{job=\"text\"}");
    assert!(negotiated.is_some_and(|n| n > 50.0), "{negotiated:?}");
    let (n, t) = (negotiated.unwrap(), text.unwrap_or(0.0));
    assert!((n - t).abs() <= 20.0, "negotiated {n} samples, text {t}");
}
