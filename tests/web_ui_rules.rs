//! The web UI's rules and alerts pages in a real browser: a `gauntlet all` evaluating a
//! recording rule, a rule that fails at every evaluation and an alert that fires, a `gauntlet
//! rule` evaluating the same file through it, and a `gauntlet query` over that ruler. In
//! Debian's headless Chromium each page shows what `/api/v1/rules` and `/api/v1/alerts`
//! answer: the groups, the failing rule's `err` with its message, the firing alert with its
//! labels and expanded annotations; label values and annotations that hold HTML stay text.
//! The ruler's navigation offers the rules and alerts pages but no query page, and its `/`
//! shows the alerts.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::receive::now_ms;
use crate::common::*;
use crate::web_ui::{api, chromium, drive, write_data};

/// A recording rule, a rule whose evaluation fails (many-to-many matching), and an alert that
/// fires at once; the alert's labels and annotations hold markup that must stay text.
const RULES: &str = r#"groups:
  - name: web-ui-rules
    interval: 1s
    rules:
      - record: job:web_ui_requests:sum
        expr: sum by (job) (web_ui_requests_total)
      - record: web_ui:broken
        expr: web_ui_requests_total + on () web_ui_requests_total
      - alert: WebUiHot
        expr: label_replace(web_ui_temperature, "room", "lab", "", "") > 40
        for: 0s
        keep_firing_for: 1m
        labels:
          severity: page
          note: '<b class="injected">bold</b>'
        annotations:
          summary: 'Temperature is {{ $value }}'
          description: '<img class="injected" src="x"> in {{ $labels.room }}'
"#;

/// Waits (30 s at most) until the server on `port` lists the alert firing and the broken rule
/// failing; returns its `/api/v1/rules` then.
fn evaluated(server: &GauntletServer) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rules = api(server, "/api/v1/rules");
        let all: Vec<&Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let health = |name: &str| {
            all.iter()
                .find(|r| r["name"] == name)
                .map(|r| r["health"].clone())
        };
        let firing = all
            .iter()
            .any(|r| r["name"] == "WebUiHot" && r["state"] == "firing");
        if firing
            && health("web_ui:broken") == Some(json!("err"))
            && health("job:web_ui_requests:sum") == Some(json!("ok"))
        {
            return rules;
        }
        assert!(
            Instant::now() < deadline,
            "the rules did not settle in 30 s: {rules}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `k="v"` for each label of `labels`, in name order, as the pages print them.
fn label_texts(labels: &Value) -> Vec<String> {
    let mut out: Vec<String> = labels
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap()))
        .collect();
    out.sort();
    out
}

/// `[name, value]` for each annotation, in name order.
fn annotation_rows(annotations: &Value) -> Value {
    let mut rows: Vec<(String, String)> = annotations
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    rows.sort();
    json!(
        rows.into_iter()
            .map(|(k, v)| vec![k, v])
            .collect::<Vec<_>>()
    )
}

/// The rule named `name` on a rules page as the driver read it.
fn page_rule<'a>(page: &'a Value, name: &str) -> &'a Value {
    page["ruleGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name} on the page: {page}"))
}

/// The API's rule named `name`.
fn api_rule<'a>(rules: &'a Value, name: &str) -> &'a Value {
    rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {rules}"))
}

/// A rules page shows the API's group and rules: the failing rule's `err` and message, the
/// others `ok`, the alert's labels and annotation templates; no markup from the rule file.
fn assert_rules_page(what: &str, page: &Value, rules: &Value) {
    assert_eq!(page["injected"], 0, "{what}: user data became markup");
    let groups = page["ruleGroups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{what}: {page}");
    assert_eq!(groups[0]["name"], "web-ui-rules", "{what}");
    assert_eq!(
        groups[0]["facts"]["File"], rules["data"]["groups"][0]["file"],
        "{what}"
    );
    assert_eq!(groups[0]["facts"]["Interval"], "1s", "{what}");
    assert_ne!(groups[0]["facts"]["Last evaluation"], "never", "{what}");
    let broken = page_rule(page, "web_ui:broken");
    assert_eq!(broken["health"], "err", "{what}");
    let message = api_rule(rules, "web_ui:broken")["lastError"]
        .as_str()
        .unwrap();
    assert!(message.contains("many-to-many"), "{what}: {message}");
    assert_eq!(broken["lastError"], message, "{what}");
    let recording = page_rule(page, "job:web_ui_requests:sum");
    assert_eq!(recording["health"], "ok", "{what}");
    assert_eq!(recording["lastError"], "", "{what}");
    assert_eq!(
        recording["expr"], "sum by (job) (web_ui_requests_total)",
        "{what}"
    );
    let alert = page_rule(page, "WebUiHot");
    assert_eq!(alert["health"], "ok", "{what}");
    let api_alert = api_rule(rules, "WebUiHot");
    assert_eq!(
        alert["labels"],
        json!(label_texts(&api_alert["labels"])),
        "{what}"
    );
    assert_eq!(
        alert["annotations"],
        annotation_rows(&api_alert["annotations"]),
        "{what}"
    );
    assert!(
        alert["labels"]
            .as_array()
            .unwrap()
            .contains(&json!("note=\"<b class=\\\"injected\\\">bold</b>\"")),
        "{what}: {alert}"
    );
}

/// An alerts page shows the firing alert as the API lists it: state, labels, the annotations
/// expanded, its value; the counts of rules by state.
fn assert_alerts_page(what: &str, page: &Value, alerts: &Value) {
    assert_eq!(page["injected"], 0, "{what}: user data became markup");
    assert_eq!(
        page["alertFilters"],
        json!([" Inactive (0)", " Pending (0)", " Firing (1)"]),
        "{what}"
    );
    let rules = page["alertRules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{what}: {page}");
    let rule = &rules[0];
    assert_eq!(rule["name"], "WebUiHot", "{what}");
    assert_eq!(rule["state"], "firing", "{what}");
    assert_eq!(rule["open"], true, "{what}");
    assert!(
        rule["facts"][0]
            .as_str()
            .unwrap()
            .contains("keep_firing_for: 1m"),
        "{what}: {rule}"
    );
    let listed = alerts["data"]["alerts"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{what}: {alerts}");
    let want = &listed[0];
    let shown = &rule["alerts"][0];
    assert_eq!(rule["alerts"].as_array().unwrap().len(), 1, "{what}");
    assert_eq!(shown["state"], "firing", "{what}");
    assert_eq!(
        shown["labels"],
        json!(label_texts(&want["labels"])),
        "{what}"
    );
    assert_eq!(
        shown["annotations"],
        annotation_rows(&want["annotations"]),
        "{what}"
    );
    assert_eq!(
        shown["annotations"],
        json!([
            ["description", "<img class=\"injected\" src=\"x\"> in lab"],
            ["summary", "Temperature is 42.5"]
        ]),
        "{what}: the annotations expanded"
    );
    assert_eq!(shown["value"], want["value"], "{what}");
    assert!(
        shown["activeSince"].as_str().unwrap().ends_with("ago)"),
        "{what}: {shown}"
    );
}

#[test]
fn rules_and_alerts_pages_show_groups_health_errors_and_firing_alerts() {
    let Some(browser) = chromium() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let rule_file = tmp.path().join("rules.yml");
    std::fs::write(&rule_file, RULES).unwrap();
    let rule_arg = format!("--rule-file={}", rule_file.display());
    let data = format!("--data-dir={}", tmp.path().join("all").display());
    let all = GauntletServer::start(
        &["all", &data, "--compact.interval=0s", &rule_arg],
        "/-/ready",
    );
    write_data(all.http_port, now_ms() / 1000 * 1000 - 30_000);
    for path in ["/rules", "/alerts"] {
        assert_eq!(all.get(path).0, 200, "{path}");
    }
    let ruler_dir = format!("--data-dir={}", tmp.path().join("rule").display());
    let ruler = GauntletServer::start(
        &[
            "rule",
            &ruler_dir,
            &rule_arg,
            &format!("--query=127.0.0.1:{}", all.http_port),
            "--eval-interval=1s",
        ],
        "/-/ready",
    );
    let querier = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", ruler.grpc_port),
        ],
        "/-/ready",
    );
    let rules_all = evaluated(&all);
    evaluated(&ruler);
    let rules_querier = evaluated(&querier);
    let alerts_all = api(&all, "/api/v1/alerts");
    let alerts_ruler = api(&ruler, "/api/v1/alerts");

    let on = |s: &GauntletServer, path: &str| format!("http://127.0.0.1:{}{path}", s.http_port);
    let steps = json!([
        {"name": "rules_all", "path": "/rules", "wait": "section.rule-group"},
        {"name": "alerts_all", "path": "/alerts", "wait": "details.alert-rule"},
        {"name": "rules_err_only", "path": "/rules", "wait": "section.rule-group",
         "click": [".health-filter input[value=ok]"], "waitAfter": "section.rule-group"},
        {"name": "rules_ruler", "path": on(&ruler, "/rules"), "wait": "section.rule-group"},
        {"name": "ruler_home", "path": on(&ruler, "/"), "wait": "details.alert-rule"},
        {"name": "rules_querier", "path": on(&querier, "/rules"), "wait": "section.rule-group"},
        {"name": "alerts_querier", "path": on(&querier, "/alerts"), "wait": "details.alert-rule"},
    ]);
    let pages = drive(&browser, all.http_port, &steps);

    assert_eq!(
        pages["rules_all"]["nav"],
        json!(["Query", "Alerts", "Rules", "Status"]),
        "gauntlet all links every page"
    );
    assert_eq!(pages["rules_all"]["title"], "Gauntlet · Rules");
    assert_rules_page("gauntlet all", &pages["rules_all"], &rules_all);
    assert_alerts_page("gauntlet all", &pages["alerts_all"], &alerts_all);

    // Unticking `ok` leaves the failing rule alone.
    let err_only = &pages["rules_err_only"]["ruleGroups"];
    assert_eq!(
        err_only[0]["rules"].as_array().unwrap().len(),
        1,
        "{err_only}"
    );
    assert_eq!(err_only[0]["rules"][0]["name"], "web_ui:broken");

    let rules_ruler = api(&ruler, "/api/v1/rules");
    assert_rules_page("gauntlet rule", &pages["rules_ruler"], &rules_ruler);
    let home = &pages["ruler_home"];
    assert_eq!(
        home["nav"],
        json!(["Alerts", "Rules"]),
        "the ruler has no query page"
    );
    assert_eq!(home["title"], "Gauntlet · Alerts");
    assert_alerts_page("gauntlet rule", home, &alerts_ruler);

    assert_rules_page("gauntlet query", &pages["rules_querier"], &rules_querier);
    let alerts_querier = api(&querier, "/api/v1/alerts");
    assert_alerts_page("gauntlet query", &pages["alerts_querier"], &alerts_querier);
}
