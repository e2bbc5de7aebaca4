//! Queriers stacked over a ruler: `gauntlet query` serves `thanos.Rules` itself (and says so in
//! its Info), so a querier above it, `gauntlet query` or `thanos query`, lists the same rules
//! and alerts as the querier below, filters and replica-label dedup included.

use super::fixture::wait_for_stores_on;
use super::frontend_rule::{RULES, firing_on};
use super::rule::{RULES_PATHS, alerts_shape, gauges_behind_query, json_on, rules_shape};
use crate::common::GauntletServer;
use crate::common::peers::thanos_query;

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
