//! Queriers stacked: `gauntlet query` serves `thanos.Rules`, `thanos.Metadata`,
//! `thanos.Targets` and `thanos.Exemplars` itself (and says so in its Info), so a querier above
//! it, `gauntlet query` or `thanos query`, lists the same rules and alerts as the querier below
//! (filters and replica-label dedup included) and answers metadata, targets and exemplars as
//! it does.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::fixture::wait_for_stores_on;
use super::frontend_rule::{RULES, firing_on};
use super::rule::{RULES_PATHS, alerts_shape, gauges_behind_query, json_on, rules_shape};
use crate::common::peers::thanos_query;
use crate::common::receive::now_ms;
use crate::common::{GauntletServer, Prometheus, prometheus3};
use crate::exemplars::{Target, exemplars_path, reduce};

/// `gauntlet query` (top) over `gauntlet query` (middle, deduplicating the ruler's replica
/// label) over `gauntlet rule`, and `thanos query` over the same middle: each top lists what
/// the middle lists on every rules request and on `/api/v1/alerts`, apart from timings.
#[test]
fn a_querier_above_a_querier_lists_the_rules_below() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rx, query) = gauges_behind_query(tmp.path());
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let data = format!("--data-dir={}", tmp.path().join("rule").display());
    let rule_file = format!("--rule-file={}", rules.display());
    let q = format!("--query=127.0.0.1:{}", query.http_port);
    let ruler = GauntletServer::start(
        &[
            "rule",
            &data,
            &rule_file,
            &q,
            "--eval-interval=1s",
            "--label=ruler=\"r\"",
            "--label=replica=\"a\"",
        ],
        "/-/ready",
    );
    assert_eq!(firing_on(ruler.http_port, 2).len(), 2);

    let middle = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", ruler.grpc_port),
            "--query.replica-label=replica",
        ],
        "/-/ready",
    );
    wait_for_stores_on(middle.http_port, 1);
    let middle_grpc = format!("127.0.0.1:{}", middle.grpc_port);
    let top = GauntletServer::start(&["query", &format!("--endpoint={middle_grpc}")], "/-/ready");
    let upstream_top = thanos_query(std::slice::from_ref(&middle_grpc), &[]);
    wait_for_stores_on(top.http_port, 1);
    wait_for_stores_on(upstream_top.http, 1);

    // The middle lists the ruler's group without its replica label: one group, three rules,
    // two firing alerts.
    let listed = json_on(middle.http_port, "/api/v1/rules");
    let groups = listed["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{listed}");
    assert_eq!(groups[0]["rules"].as_array().unwrap().len(), 3, "{listed}");
    assert!(
        groups[0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["labels"].get("replica").is_none()),
        "the middle deduplicates along replica: {listed}"
    );
    assert_eq!(
        alerts_shape(&json_on(middle.http_port, "/api/v1/alerts")).len(),
        2
    );

    for (what, port) in [
        ("gauntlet query", top.http_port),
        ("thanos query", upstream_top.http),
    ] {
        for path in RULES_PATHS {
            let want = json_on(middle.http_port, path);
            let got = json_on(port, path);
            assert_eq!(
                rules_shape(&want),
                rules_shape(&got),
                "{what} over gauntlet query (right) and the middle (left): {path}"
            );
            assert!(
                got["warnings"].as_array().is_none_or(|w| w.is_empty()),
                "{what}: {path}: {got}"
            );
        }
        assert_eq!(
            alerts_shape(&json_on(middle.http_port, "/api/v1/alerts")),
            alerts_shape(&json_on(port, "/api/v1/alerts")),
            "{what} over gauntlet query (right) and the middle (left): /api/v1/alerts"
        );
    }
    // The top saw the rules themselves, not an empty list equal to an empty one.
    let top_rules = json_on(top.http_port, "/api/v1/rules?type=alert");
    assert_eq!(
        top_rules["data"]["groups"][0]["rules"][0]["name"], "GaugeHigh",
        "{top_rules}"
    );
}

/// Polls for at most 30 s until `get` answers alike on the ports `want` and `got` (both read
/// again each time); fails showing the last answers.
fn wait_alike(what: &str, want: u16, got: u16, get: impl Fn(u16) -> Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (w, g) = (get(want), get(got));
        if w == g {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: differs after 30 s\n  got  {g}\n  want {w}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `thanos query` over `gauntlet query` over `gauntlet sidecar` beside a Prometheus 3 that
/// scrapes a target serving exemplars (and drops one by relabelling): Thanos's querier
/// answers `/api/v1/metadata` (whole, `metric=`, `limit=`), `/api/v1/targets` (every state)
/// and `/api/v1/query_exemplars` as the `gauntlet query` below answers them, without
/// warnings, through that querier's own `thanos.Metadata`, `thanos.Targets` and
/// `thanos.Exemplars`.
#[test]
fn a_querier_above_a_querier_reads_metadata_targets_and_exemplars_below() {
    let target = Target::start();
    let tport = target.port;
    let prom = Prometheus::start_with_config(
        &prometheus3(),
        |_| {
            format!(
                "global:\n  scrape_interval: 1s\n  external_labels:\n    cluster: eu1\n    replica: a\n\
                 scrape_configs:\n- job_name: demo\n  static_configs:\n  - targets: ['127.0.0.1:{tport}', '127.0.0.1:1']\n\
                 \x20 relabel_configs:\n  - source_labels: [__address__]\n    regex: '127.0.0.1:1'\n    action: drop\n"
            )
        },
        &["--enable-feature=exemplar-storage"],
    );
    let sidecar = GauntletServer::start(
        &[
            "sidecar",
            &format!("--prometheus.url=http://127.0.0.1:{}", prom.port),
            &format!("--tsdb.path={}", prom.data_dir().display()),
            "--prometheus.get_config_interval=500ms",
        ],
        "/-/ready",
    );
    let middle = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", sidecar.grpc_port),
            "--query.replica-label=replica",
        ],
        "/-/ready",
    );
    wait_for_stores_on(middle.http_port, 1);
    let top = thanos_query(
        &[format!("127.0.0.1:{}", middle.grpc_port)],
        &["--query.replica-label=replica"],
    );
    wait_for_stores_on(top.http, 1);

    let deadline = Instant::now() + Duration::from_secs(60);
    while target.scrapes.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "three scrapes in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The exemplars stop moving; the target is down from the next scrape on.
    target.stop();

    // What the middle answers is worth comparing: the target's exemplars and metadata, one
    // active and one dropped target with the sidecar's external label, no replica label.
    let ex_path = exemplars_path(now_ms() + 60_000);
    let exemplars = |port: u16| {
        let v = json_on(port, &ex_path);
        assert!(
            v["warnings"].as_array().is_none_or(|w| w.is_empty()),
            ":{port}: {v}"
        );
        serde_json::to_value(reduce(&v).into_iter().collect::<Vec<_>>()).unwrap()
    };
    assert!(
        exemplars(middle.http_port).as_array().unwrap().len() >= 3,
        "the middle's exemplars: {}",
        exemplars(middle.http_port)
    );
    let targets = |state: &'static str| {
        move |port: u16| {
            let v = json_on(port, &format!("/api/v1/targets?state={state}"));
            assert!(
                v["warnings"].as_array().is_none_or(|w| w.is_empty()),
                ":{port}: {v}"
            );
            crate::sidecar::reduce_targets(&v, &[])
        }
    };
    let all = targets("")(middle.http_port);
    assert_eq!(all["active"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all["dropped"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all["active"][0]["labels"]["cluster"], "eu1", "{all}");
    assert!(all["active"][0]["labels"].get("replica").is_none(), "{all}");
    let metadata = |path: &'static str| {
        move |port: u16| {
            let v = json_on(port, path);
            assert!(
                v["warnings"].as_array().is_none_or(|w| w.is_empty()),
                ":{port}: {v}"
            );
            v["data"].clone()
        }
    };
    let whole = metadata("/api/v1/metadata")(middle.http_port);
    assert!(whole["demo_requests"].is_array(), "{whole}");

    wait_alike("exemplars", middle.http_port, top.http, exemplars);
    for path in [
        "/api/v1/metadata",
        "/api/v1/metadata?metric=demo_requests",
        "/api/v1/metadata?metric=absent",
    ] {
        wait_alike(path, middle.http_port, top.http, metadata(path));
    }
    // Which metric a limit keeps is the endpoints' choice: only the count is held.
    let limited = metadata("/api/v1/metadata?limit=1")(top.http);
    assert_eq!(limited.as_object().unwrap().len(), 1, "{limited}");
    for state in ["", "active", "dropped"] {
        wait_alike(
            &format!("targets?state={state}"),
            middle.http_port,
            top.http,
            targets(state),
        );
    }
}
