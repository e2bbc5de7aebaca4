//! Thanos's query frontend and ruler over Gauntlet's querier: `thanos query-frontend` splits
//! and caches range queries to `gauntlet query` and answers as the querier does directly, on a
//! cache miss, a hit and a partial hit; `thanos rule` evaluates recording and alerting rules
//! through `gauntlet query` and records and fires what it does through `thanos query` over the
//! same data.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fixture::{assert_same_ports, ha_bucket, query_paths, wait_for_stores_on};
use crate::common::peers::{PeerProcess, objstore_file, thanos, thanos_query, thanos_receive};
use crate::common::receive::{self, Receiver, V1, now_ms, post, write_body};
use crate::common::{GauntletServer, api_path, free_ports};

/// A Gauntlet store over the fixture bucket and `gauntlet query` over it deduplicating the HA
/// pair, as the fixture's querier tests run them.
fn gauntlet_querier(tmp: &Path, objstore: &Path) -> (GauntletServer, GauntletServer) {
    let store = GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", objstore.display()),
            &format!("--data-dir={}", tmp.join("gauntlet-store").display()),
        ],
        "/-/ready",
    );
    let query = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", store.grpc_port),
            "--query.replica-label=replica",
        ],
        "/-/ready",
    );
    wait_for_stores_on(query.http_port, 1);
    (store, query)
}

/// The sum of the samples of `family` on the process's `/metrics` whose lines hold every part
/// of `with` (0 when there is none).
fn metric(p: &PeerProcess, family: &str, with: &[&str]) -> f64 {
    let (_, text) = p.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with(family) && with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `thanos query-frontend` in front of `gauntlet query`, splitting range queries by the hour
/// and caching the parts in memory, answers every range query of the fixture as the querier
/// does directly: on the first request (every part a miss), on the second (every part a hit),
/// and with the window moved by 30 minutes (some parts cached, the rest asked for).
#[test]
fn query_frontend_over_gauntlet_query_answers_as_the_querier() {
    let tmp = tempfile::tempdir().unwrap();
    let b = ha_bucket(tmp.path());
    let (_store, query) = gauntlet_querier(tmp.path(), &b.objstore);
    let cache = tmp.path().join("cache.yml");
    std::fs::write(
        &cache,
        "type: IN-MEMORY\nconfig:\n  max_size: 64MB\n  max_size_items: 0\n  validity: 0s\n",
    )
    .unwrap();
    let frontend = thanos(
        "query-frontend",
        &[
            format!(
                "--query-frontend.downstream-url=http://127.0.0.1:{}",
                query.http_port
            ),
            "--query-range.split-interval=1h".into(),
            format!(
                "--query-range.response-cache-config-file={}",
                cache.display()
            ),
        ],
    );
    // The frontend aligns each range to its step; so do these, so the querier's direct answer
    // is for the same steps. The data's start is a multiple of the step already.
    let (start, end) = (b.start_ms, b.start_ms + 6 * 3_600_000);
    let range = |from: i64, to: i64| -> Vec<String> {
        query_paths(from, to)
            .into_iter()
            .filter(|p| p.starts_with("/api/v1/query_range?"))
            .collect()
    };
    let paths = range(start, end);
    assert!(paths.len() >= 6);
    let hits = || metric(&frontend, "cortex_cache_hits_total", &[]);

    let answered = assert_same_ports("miss", query.http_port, frontend.http, &paths);
    assert_eq!(answered, paths.len(), "every range query holds data");
    let after_miss = hits();
    assert_same_ports("hit", query.http_port, frontend.http, &paths);
    let after_hit = hits();
    assert!(
        after_hit > after_miss,
        "the second round hit no cache ({after_miss} then {after_hit})"
    );
    let shifted = range(start + 1_800_000, end + 1_800_000);
    assert_same_ports("partial hit", query.http_port, frontend.http, &shifted);
    assert!(hits() > after_hit, "the moved window hit no cache");
}

/// The rule file both rulers evaluate: two recording rules and an alert that fires at once.
pub(crate) const RULES: &str = r#"groups:
  - name: interop
    interval: 1s
    rules:
      - record: job:rule_gauge:sum
        expr: sum by (job) (rule_gauge)
      - record: instance:rule_gauge:share
        expr: rule_gauge / on (job) group_left sum by (job) (rule_gauge)
      - alert: GaugeHigh
        expr: rule_gauge > 5
        for: 0s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} is at {{ $value }}"
"#;

/// Gauges whose values stay put, so what a rule records does not depend on when it runs:
/// two jobs, three instances each; two of them (7 and 10) above the alert's 5.
pub(crate) fn gauges(from_ms: i64, to_ms: i64) -> Vec<u8> {
    let mut ts = Vec::new();
    for (i, (job, inst)) in [
        ("api", "a1"),
        ("api", "a2"),
        ("api", "a3"),
        ("db", "d1"),
        ("db", "d2"),
        ("db", "d3"),
    ]
    .into_iter()
    .enumerate()
    {
        let v = [1.0, 2.0, 3.0, 4.0, 7.0, 10.0][i];
        let samples: Vec<(i64, f64)> = (from_ms..=to_ms).step_by(15_000).map(|t| (t, v)).collect();
        ts.push(receive::series(
            &[("__name__", "rule_gauge"), ("instance", inst), ("job", job)],
            &samples,
        ));
    }
    write_body(ts)
}

/// Waits (at most 60 s) until the ruler's `/api/v1/alerts` lists `GaugeHigh` firing for `n`
/// series and every rule evaluated without error; returns the alerts.
fn firing(ruler: &PeerProcess, n: usize) -> Vec<Value> {
    firing_on(ruler.http, n)
}

/// [`firing`] for the ruler whose HTTP API is on `port`.
pub(crate) fn firing_on(port: u16, n: usize) -> Vec<Value> {
    let get_json = |path: &str| -> Value {
        let (status, body) = crate::common::http_get(port, path).expect("ruler API");
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).expect("ruler API JSON")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rules = get_json("/api/v1/rules");
        let errors: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .filter(|r| r["health"] != "ok")
            .collect();
        let alerts = get_json("/api/v1/alerts");
        // Thanos's ruler names the list `Alerts` (its API struct has no JSON tag there).
        let list: Vec<Value> = alerts["data"]["alerts"]
            .as_array()
            .or(alerts["data"]["Alerts"].as_array())
            .cloned()
            .unwrap_or_default();
        let fired = list.iter().filter(|a| a["state"] == "firing").count();
        let evaluated = rules["data"]["groups"][0]["rules"]
            .as_array()
            .is_some_and(|r| {
                r.iter()
                    .all(|r| r["lastEvaluation"] != "0001-01-01T00:00:00Z")
            });
        if errors.is_empty() && evaluated && fired >= n {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} firing alerts with healthy rules in 60 s: rules {rules}\nalerts {alerts}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An alert as compared: labels, annotations, state and value (the time it became active is
/// the ruler's own).
pub(super) fn alert_key(a: &Value) -> String {
    serde_json::json!([a["labels"], a["annotations"], a["state"], a["value"]]).to_string()
}

/// `thanos rule` evaluating through `gauntlet query` (over a `gauntlet receive` written fresh
/// samples) records the series and fires the alert that it records and fires through
/// `thanos query` over a `thanos receive` written the same: the recorded series read back
/// through Thanos's querier over each ruler's StoreAPI are equal, and so are the firing alerts
/// on `/api/v1/alerts`.
#[test]
fn thanos_rule_through_gauntlet_query_records_and_fires_as_through_thanos_query() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = ["--label=receive_replica=\"0\""];
    let scratch = tmp.path().join("shipped");
    std::fs::create_dir_all(&scratch).unwrap();
    let objstore = objstore_file(tmp.path(), &scratch);
    let (upstream_rx, upstream_rw) =
        thanos_receive(&tmp.path().join("thanos-receive"), &objstore, &labels);
    let ours_rx = Receiver::start_bare(&tmp.path().join("gauntlet-receive"), &labels, free_ports());
    // Ten minutes up to now: inside the 5 m lookback for the whole test.
    let now = now_ms() / 1000 * 1000;
    let body = gauges(now - 600_000, now);
    for port in [upstream_rw, ours_rx.rw] {
        let (code, _, msg) = post(port, "/api/v1/receive", &[V1], &body).unwrap();
        assert!((200..300).contains(&code), "write to :{port}: {code} {msg}");
    }
    let upstream_q = thanos_query(&[upstream_rx.grpc_addr()], &[]);
    wait_for_stores_on(upstream_q.http, 1);
    let ours_q = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", ours_rx.grpc)],
        "/-/ready",
    );
    wait_for_stores_on(ours_q.http_port, 1);

    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let ruler = |name: &str, query_port: u16| {
        thanos(
            "rule",
            &[
                format!("--data-dir={}", tmp.path().join(name).display()),
                format!("--rule-file={}", rules.display()),
                format!("--query=127.0.0.1:{query_port}"),
                "--eval-interval=1s".into(),
                "--label=ruler=\"r\"".into(),
            ],
        )
    };
    let want = ruler("thanos-rule", upstream_q.http);
    let got = ruler("gauntlet-rule", ours_q.http_port);

    let alerts =
        |r: &PeerProcess| -> BTreeSet<String> { firing(r, 2).iter().map(alert_key).collect() };
    let (wa, ga) = (alerts(&want), alerts(&got));
    assert_eq!(wa.len(), 2, "{wa:?}");
    assert_eq!(
        wa, ga,
        "alerts through Thanos's querier (left) and Gauntlet's (right)"
    );

    // What each ruler recorded, read back through Thanos's querier over its StoreAPI at one
    // instant (the values do not change with the evaluation time).
    let readers = [
        thanos_query(&[want.grpc_addr()], &[]),
        thanos_query(&[got.grpc_addr()], &[]),
    ];
    for r in &readers {
        wait_for_stores_on(r.http, 1);
    }
    // An instant (whole seconds, as the API takes it) after both rulers recorded a first time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let paths = loop {
        let at = (now_ms() / 1000).to_string();
        // (Thanos's ruler keeps no `ALERTS` series in its TSDB: the alerts are compared on
        // `/api/v1/alerts` above.)
        let paths: Vec<String> = ["job:rule_gauge:sum", "instance:rule_gauge:share"]
            .iter()
            .map(|q| api_path("/api/v1/query", &[("query", q), ("time", &at)]))
            .collect();
        let recorded = |r: &PeerProcess| {
            r.get_json(&paths[0])["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        };
        if readers.iter().all(recorded) {
            break paths;
        }
        assert!(Instant::now() < deadline, "nothing recorded in 30 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    let answered = assert_same_ports("recorded", readers[0].http, readers[1].http, &paths);
    assert_eq!(answered, paths.len(), "a recorded series is missing");
    let sums = readers[1].get_json(&paths[0]);
    let values: BTreeSet<String> = sums["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| format!("{}={}", s["metric"]["job"], s["value"][1]))
        .collect();
    assert_eq!(
        values,
        ["\"api\"=\"6\"", "\"db\"=\"21\""]
            .into_iter()
            .map(String::from)
            .collect(),
        "{sums}"
    );
}
