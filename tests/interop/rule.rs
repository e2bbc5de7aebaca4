//! `gauntlet rule` beside `thanos rule`: both evaluate the same rule file through the same
//! querier over the same data, and must fire the same alerts, describe the same rules on
//! `/api/v1/rules` and record the same series, read back through Thanos's querier over each
//! ruler's StoreAPI. Their `thanos.Rules` services answer Thanos's querier alike, and as an
//! HA pair `gauntlet query` lists their rules and alerts deduplicated as `thanos query` does.
//! Then Gauntlet's ruler alone: a bad reload keeps the last good rules, and a SIGKILL while
//! an alert is pending does not restart its `for` clock.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fixture::{assert_same_ports, wait_for_stores_on};
use super::frontend_rule::{RULES, alert_key, firing_on, gauges};
use crate::common::peers::{thanos, thanos_query};
use crate::common::receive::{Receiver, V1, now_ms, post};
use crate::common::{GauntletServer, api_path, free_ports, http_get, http_post_form};

/// `/api/v1/rules` without what depends on when and how fast each ruler ran, and without the
/// `replica` external label that tells the rulers apart.
pub(crate) fn rules_shape(v: &Value) -> Value {
    let mut v = v["data"]["groups"].clone();
    for g in v.as_array_mut().into_iter().flatten() {
        let g = g.as_object_mut().unwrap();
        g.remove("evaluationTime");
        g.remove("lastEvaluation");
        for r in g["rules"].as_array_mut().into_iter().flatten() {
            let r = r.as_object_mut().unwrap();
            r.remove("evaluationTime");
            r.remove("lastEvaluation");
            if let Some(l) = r.get_mut("labels").and_then(|l| l.as_object_mut()) {
                l.remove("replica");
            }
            for a in r
                .get_mut("alerts")
                .and_then(|a| a.as_array_mut())
                .into_iter()
                .flatten()
            {
                a.as_object_mut().unwrap().remove("activeAt");
            }
            if let Some(a) = r.get_mut("alerts").and_then(|a| a.as_array_mut()) {
                a.sort_by_key(|x| x.to_string());
            }
        }
    }
    v
}

/// A `gauntlet receive` written ten minutes of the rule gauges up to now, and a `gauntlet
/// query` over it that has found it: what the rulers evaluate through.
pub(super) fn gauges_behind_query(tmp: &std::path::Path) -> (Receiver, GauntletServer) {
    let rx = Receiver::start_bare(&tmp.join("receive"), &[], free_ports());
    let now = now_ms() / 1000 * 1000;
    let (code, _, msg) =
        post(rx.rw, "/api/v1/receive", &[V1], &gauges(now - 600_000, now)).unwrap();
    assert!((200..300).contains(&code), "{code} {msg}");
    let query = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", rx.grpc)],
        "/-/ready",
    );
    wait_for_stores_on(query.http_port, 1);
    (rx, query)
}

/// `/api/v1/alerts`'s alerts without when each became active, in a fixed order.
pub(super) fn alerts_shape(v: &Value) -> Vec<String> {
    let mut list: Vec<String> = v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let mut a = a.clone();
            a.as_object_mut().unwrap().remove("activeAt");
            a.to_string()
        })
        .collect();
    list.sort();
    list
}

/// The rules requests the queriers are compared on.
pub(super) const RULES_PATHS: &[&str] = &[
    "/api/v1/rules",
    "/api/v1/rules?type=alert",
    "/api/v1/rules?type=record",
    "/api/v1/rules?rule_name[]=GaugeHigh&rule_name[]=job:rule_gauge:sum",
    "/api/v1/rules?rule_group[]=interop",
    "/api/v1/rules?rule_group[]=elsewhere",
    // match[]={severity="page"}
    "/api/v1/rules?match[]=%7Bseverity%3D%22page%22%7D",
];

/// The querier on `want` and the one on `got` list the same rules and alerts.
fn assert_same_rules(what: &str, want: u16, got: u16) {
    for path in RULES_PATHS {
        assert_eq!(
            rules_shape(&json_on(want, path)),
            rules_shape(&json_on(got, path)),
            "{what}: {path}"
        );
    }
    assert_eq!(
        alerts_shape(&json_on(want, "/api/v1/alerts")),
        alerts_shape(&json_on(got, "/api/v1/alerts")),
        "{what}: /api/v1/alerts"
    );
}

pub(super) fn json_on(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The same rules through the same `gauntlet query` give the same alerts, the same
/// `/api/v1/rules` and the same recorded series from `thanos rule` and `gauntlet rule`;
/// Thanos's querier lists the same rules and alerts from each, and with the two rulers as
/// replicas `gauntlet query` lists them deduplicated as `thanos query` does.
#[test]
fn gauntlet_rule_fires_describes_and_records_as_thanos_rule_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rx, query) = gauges_behind_query(tmp.path());
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let common = [
        format!("--rule-file={}", rules.display()),
        format!("--query=127.0.0.1:{}", query.http_port),
        "--eval-interval=1s".to_string(),
        "--label=ruler=\"r\"".to_string(),
    ];
    let mut upstream_args = common.to_vec();
    upstream_args.push(format!(
        "--data-dir={}",
        tmp.path().join("thanos-rule").display()
    ));
    upstream_args.push("--label=replica=\"t\"".to_string());
    let want = thanos("rule", &upstream_args);
    let ours_dir = format!("--data-dir={}", tmp.path().join("gauntlet-rule").display());
    let mut ours_args: Vec<&str> = vec!["rule", &ours_dir, "--label=replica=\"g\""];
    ours_args.extend(common.iter().map(String::as_str));
    let got = GauntletServer::start(&ours_args, "/-/ready");

    let alerts =
        |port: u16| -> BTreeSet<String> { firing_on(port, 2).iter().map(alert_key).collect() };
    let (wa, ga) = (alerts(want.http), alerts(got.http_port));
    assert_eq!(wa.len(), 2, "{wa:?}");
    assert_eq!(
        wa, ga,
        "alerts of thanos rule (left) and gauntlet rule (right)"
    );

    let (wr, gr) = (
        rules_shape(&json_on(want.http, "/api/v1/rules")),
        rules_shape(&json_on(got.http_port, "/api/v1/rules")),
    );
    assert_eq!(
        wr, gr,
        "/api/v1/rules of thanos rule (left) and gauntlet rule (right)"
    );
    for q in ["type=record", "type=alert", "rule_name[]=GaugeHigh"] {
        let path = format!("/api/v1/rules?{q}");
        assert_eq!(
            rules_shape(&json_on(want.http, &path)),
            rules_shape(&json_on(got.http_port, &path)),
            "{path}"
        );
    }

    // (Each reader drops its ruler's replica label, so the two read back alike.)
    let readers = [
        thanos_query(&[want.grpc_addr()], &["--query.replica-label=replica"]),
        thanos_query(
            &[format!("127.0.0.1:{}", got.grpc_port)],
            &["--query.replica-label=replica"],
        ),
    ];
    for r in &readers {
        wait_for_stores_on(r.http, 1);
    }
    // Thanos's querier finds each ruler's Rules service through Info and lists the same.
    assert_same_rules(
        "thanos query over thanos rule (left) and over gauntlet rule (right)",
        readers[0].http,
        readers[1].http,
    );
    let ours_grpc = format!("127.0.0.1:{}", got.grpc_port);
    let ha_upstream = thanos_query(
        &[want.grpc_addr(), ours_grpc.clone()],
        &["--query.replica-label=replica"],
    );
    let ha_ours = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint={}", want.grpc_addr()),
            &format!("--endpoint={ours_grpc}"),
            "--query.replica-label=replica",
        ],
        "/-/ready",
    );
    wait_for_stores_on(ha_upstream.http, 2);
    wait_for_stores_on(ha_ours.http_port, 2);
    assert_same_rules(
        "the HA pair through thanos query (left) and gauntlet query (right)",
        ha_upstream.http,
        ha_ours.http_port,
    );
    // Deduplicated: one group of three rules, each alert once.
    let listed = json_on(ha_ours.http_port, "/api/v1/rules");
    let groups = listed["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{listed}");
    assert_eq!(groups[0]["rules"].as_array().unwrap().len(), 3, "{listed}");
    assert!(
        groups[0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["labels"].get("replica").is_none()),
        "{listed}"
    );
    let alerts = alerts_shape(&json_on(ha_ours.http_port, "/api/v1/alerts"));
    assert_eq!(alerts.len(), 2, "{alerts:?}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let paths = loop {
        let at = (now_ms() / 1000).to_string();
        let paths: Vec<String> = ["job:rule_gauge:sum", "instance:rule_gauge:share"]
            .iter()
            .map(|q| api_path("/api/v1/query", &[("query", q), ("time", &at)]))
            .collect();
        let recorded = |port: u16| {
            json_on(port, &paths[0])["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        };
        if readers.iter().all(|r| recorded(r.http)) {
            break paths;
        }
        assert!(Instant::now() < deadline, "nothing recorded in 30 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    let answered = assert_same_ports("recorded", readers[0].http, readers[1].http, &paths);
    assert_eq!(answered, paths.len(), "a recorded series is missing");
    // Gauntlet's ruler keeps the ALERTS series in its TSDB too (from its second round, once
    // the alerts' state is restored), with its external label.
    let deadline = Instant::now() + Duration::from_secs(30);
    let firing_series = loop {
        let at = (now_ms() / 1000).to_string();
        let v = json_on(
            readers[1].http,
            &api_path(
                "/api/v1/query",
                &[("query", "ALERTS{alertstate=\"firing\"}"), ("time", &at)],
            ),
        );
        if v["data"]["result"].as_array().is_some_and(|a| a.len() >= 2) {
            break v;
        }
        assert!(Instant::now() < deadline, "no ALERTS recorded in 30 s: {v}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let result = firing_series["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 2, "{firing_series}");
    assert!(
        result.iter().all(|s| s["metric"]["ruler"] == "r"),
        "{firing_series}"
    );
}

/// A rule file that stops parsing keeps the running rules (the reload answers 500 and the
/// reload metric says 0); fixed, a reload (by the API or SIGHUP) loads the new rules.
#[test]
fn a_bad_reload_keeps_the_last_good_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rx, query) = gauges_behind_query(tmp.path());
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let dir = format!("--data-dir={}", tmp.path().join("rule").display());
    let rule_file = format!("--rule-file={}", rules.display());
    let q = format!("--query=127.0.0.1:{}", query.http_port);
    let ruler = GauntletServer::start(
        &["rule", &dir, &rule_file, &q, "--eval-interval=1s"],
        "/-/ready",
    );
    let names = |port: u16| -> Vec<String> {
        json_on(port, "/api/v1/rules")["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(ruler.http_port), ["interop"]);

    std::fs::write(
        &rules,
        "groups:\n  - name: broken\n    rules:\n      - record: x\n        expr: sum(\n",
    )
    .unwrap();
    let (status, body) = http_post_form(ruler.http_port, "/-/reload", "").unwrap();
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("could not parse expression"), "{body}");
    assert_eq!(
        names(ruler.http_port),
        ["interop"],
        "the last good rules stay"
    );
    let metrics = String::from_utf8_lossy(&ruler.get("/metrics").1).into_owned();
    assert!(
        metrics.contains("thanos_rule_config_last_reload_successful 0"),
        "{metrics}"
    );
    // The running rules still evaluate.
    assert_eq!(firing_on(ruler.http_port, 2).len(), 2);

    std::fs::write(&rules, RULES.replace("name: interop", "name: renamed")).unwrap();
    ruler.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(ruler.http_port) != ["renamed"] {
        assert!(Instant::now() < deadline, "SIGHUP did not reload the rules");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = String::from_utf8_lossy(&ruler.get("/metrics").1).into_owned();
    assert!(
        metrics.contains("thanos_rule_config_last_reload_successful 1"),
        "{metrics}"
    );
}

/// A subquery without a step (`max_over_time(rate(x[1m])[5m:])`) records the same value from
/// `thanos rule` (`--query`, `--query.default-step` at its default) and from `gauntlet rule`
/// (the same querier named in `--query.config`): neither sends a step, so both get the
/// querier's default subquery resolution. Read back through Thanos's querier over each
/// ruler's StoreAPI.
#[test]
fn a_subquery_without_a_step_records_what_thanos_rule_records() {
    use crate::rule_query_config::{SUBQUERY_RULES, counter_behind_query, one_value, wait_for};

    let tmp = tempfile::tempdir().unwrap();
    let (_rx, query) = counter_behind_query(tmp.path());
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, SUBQUERY_RULES).unwrap();
    let want = thanos(
        "rule",
        &[
            format!("--rule-file={}", rules.display()),
            format!("--query=127.0.0.1:{}", query.http_port),
            "--eval-interval=1s".to_string(),
            "--label=ruler=\"thanos\"".to_string(),
            format!("--data-dir={}", tmp.path().join("thanos-rule").display()),
        ],
    );
    let config = format!(
        "--query.config=- static_configs: [\"127.0.0.1:{}\"]",
        query.http_port
    );
    let data = format!("--data-dir={}", tmp.path().join("gauntlet-rule").display());
    let rule_file = format!("--rule-file={}", rules.display());
    let got = GauntletServer::start(
        &[
            "rule",
            &data,
            &rule_file,
            &config,
            "--eval-interval=1s",
            "--label=ruler=\"gauntlet\"",
        ],
        "/-/ready",
    );
    let readers = [
        thanos_query(&[want.grpc_addr()], &[]),
        thanos_query(&[format!("127.0.0.1:{}", got.grpc_port)], &[]),
    ];
    for r in &readers {
        wait_for_stores_on(r.http, 1);
    }
    for expr in ["qcfg:rate:max{job=\"j\"}", "qcfg:points{job=\"j\"}"] {
        let values: Vec<String> = readers
            .iter()
            .map(|r| wait_for(60, expr, || one_value(r.http, expr)))
            .collect();
        assert_eq!(
            values[0], values[1],
            "{expr} of thanos rule (left) and gauntlet rule (right)"
        );
    }
    assert_eq!(
        one_value(readers[1].http, "qcfg:points{job=\"j\"}").as_deref(),
        Some("5")
    );
}
