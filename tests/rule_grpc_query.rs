//! Rules evaluated over Thanos's gRPC Query API (`thanos.Query`), both ways round:
//! `gauntlet rule --grpc-query-endpoint` at a real `thanos query` records what it records
//! through the same querier's HTTP API with `--query`, and a real `thanos rule
//! --grpc-query-endpoint` at `gauntlet query` records what it records with `--query`. A
//! gRPC endpoint that does not answer passes the query to the next one; when none answers,
//! the rules' health turns to `err` with a message, and the ruler keeps running.

use std::time::Duration;

use crate::common::peers::{PeerProcess, thanos, thanos_query};
use crate::common::{GauntletServer, free_port, http_get};
use crate::rule_query_config::{counter_behind_query, json, one_value, wait_for};

/// Rules whose answers do not depend on the evaluation's instant: a rate that is 10 a second
/// throughout, a vector of per-job sums of a constant, and a scalar (recorded as one series
/// without labels but its name).
const RULES: &str = "groups:
- name: grpc
  interval: 1s
  rules:
  - record: grpcq:rate:max
    expr: max by (job) (max_over_time(rate(qcfg_counter[1m])[2m:15s]))
  - record: grpcq:jobs
    expr: count by (job) (qcfg_counter)
  - record: grpcq:scalar
    expr: 1 + 1
";

/// The recorded series compared and the value each must have.
const RECORDED: [(&str, f64); 3] = [
    ("grpcq:rate:max{job=\"j\"}", 10.0),
    ("grpcq:jobs{job=\"j\"}", 1.0),
    ("grpcq:scalar", 2.0),
];

/// Waits until `thanos query` on `port` answers `qcfg_counter` (its endpoint is up).
fn wait_for_counter(port: u16) {
    wait_for(30, "thanos query to answer qcfg_counter", || {
        one_value(port, "qcfg_counter").map(|_| ())
    });
}

/// Waits until `reader` (a querier over the rulers) answers every [`RECORDED`] series for the
/// ruler labelled `ruler`, and checks the values.
fn assert_recorded(reader: u16, ruler: &str) {
    for (expr, want) in RECORDED {
        let selector = match expr.split_once('{') {
            Some((name, rest)) => format!("{name}{{ruler=\"{ruler}\",{rest}"),
            None => format!("{expr}{{ruler=\"{ruler}\"}}"),
        };
        let got = wait_for(40, &format!("{selector} recorded"), || {
            one_value(reader, &selector)
        });
        let got: f64 = got.parse().unwrap();
        assert!((got - want).abs() < 1e-9, "{selector}: {got}, want {want}");
    }
}

/// Every rule's health on the ruler at `port`'s `/api/v1/rules`: (health, lastError).
fn health(port: u16) -> Vec<(String, String)> {
    let v = json(port, "/api/v1/rules");
    v["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["health"].as_str().unwrap_or_default().to_string(),
                r["lastError"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn gauntlet_rule_over_grpc_at_thanos_query_records_as_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let (rx, _query) = counter_behind_query(tmp.path());
    let tq = thanos_query(&[format!("127.0.0.1:{}", rx.grpc)], &[]);
    wait_for_counter(tq.http);
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let ruler = |name: &str, query_flags: &[String]| {
        let mut args = vec![
            "rule".to_string(),
            format!("--data-dir={}", tmp.path().join(name).display()),
            format!("--rule-file={}", rules.display()),
            format!("--label=ruler=\"{name}\""),
            "--query.timeout=5s".into(),
        ];
        args.extend(query_flags.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        GauntletServer::start(&args, "/-/ready")
    };
    let grpc = format!("--grpc-query-endpoint=127.0.0.1:{}", tq.grpc);
    let over_grpc = ruler("grpc", std::slice::from_ref(&grpc));
    let over_http = ruler("http", &[format!("--query=127.0.0.1:{}", tq.http)]);
    // A first gRPC endpoint where nothing listens: the queries sent to it first pass to the
    // next, and the rules stay `ok`.
    let dead = format!("--grpc-query-endpoint=127.0.0.1:{}", free_port());
    let failover = ruler("failover", &[dead, grpc]);
    let reader = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", over_grpc.grpc_port),
            &format!("--endpoint=127.0.0.1:{}", over_http.grpc_port),
            &format!("--endpoint=127.0.0.1:{}", failover.grpc_port),
        ],
        "/-/ready",
    );
    assert_recorded(reader.http_port, "http");
    assert_recorded(reader.http_port, "grpc");
    assert_recorded(reader.http_port, "failover");
    for port in [over_grpc.http_port, over_http.http_port, failover.http_port] {
        for (h, e) in health(port) {
            assert_eq!((h.as_str(), e.as_str()), ("ok", ""), "ruler on :{port}");
        }
    }
}

#[test]
fn a_grpc_query_endpoint_that_does_not_answer_is_a_rule_error_not_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let closed = free_port();
    let ruler = GauntletServer::start(
        &[
            "rule",
            &format!("--data-dir={}", tmp.path().join("rule").display()),
            &format!("--rule-file={}", rules.display()),
            &format!("--grpc-query-endpoint=127.0.0.1:{closed}"),
            "--query.timeout=2s",
        ],
        "/-/ready",
    );
    let errors = wait_for(30, "the rules to fail", || {
        let h = health(ruler.http_port);
        (h.len() == 3 && h.iter().all(|(health, _)| health == "err")).then_some(h)
    });
    for (_, e) in &errors {
        assert!(e.contains(&format!("127.0.0.1:{closed}")), "{e}");
    }
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = http_get(ruler.http_port, "/-/healthy").unwrap();
    assert_eq!(status, 200, "the ruler is still up");
}

#[test]
fn thanos_rule_over_grpc_at_gauntlet_query_records_as_over_http() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rx, query) = counter_behind_query(tmp.path());
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let ruler = |name: &str, query_flag: String| -> PeerProcess {
        thanos(
            "rule",
            &[
                format!("--data-dir={}", tmp.path().join(name).display()),
                format!("--rule-file={}", rules.display()),
                query_flag,
                "--eval-interval=1s".into(),
                format!("--label=ruler=\"{name}\""),
            ],
        )
    };
    let over_grpc = ruler(
        "grpc",
        format!("--grpc-query-endpoint=127.0.0.1:{}", query.grpc_port),
    );
    let over_http = ruler("http", format!("--query=127.0.0.1:{}", query.http_port));
    let reader = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint={}", over_grpc.grpc_addr()),
            &format!("--endpoint={}", over_http.grpc_addr()),
        ],
        "/-/ready",
    );
    assert_recorded(reader.http_port, "http");
    assert_recorded(reader.http_port, "grpc");
    for r in [&over_grpc, &over_http] {
        for (h, e) in health(r.http) {
            assert_eq!((h.as_str(), e.as_str()), ("ok", ""), "{}", r.log_tail(30));
        }
    }
}
