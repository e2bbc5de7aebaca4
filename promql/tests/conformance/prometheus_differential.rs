//! The parser against a running Prometheus 3.5: for every query of
//! `testdata/promql/invalid_queries.txt` and a few hundred queries from the grammar-driven
//! generator (valid ones and malformed ones, seeded), the parser's outcome equals Prometheus's
//! `/api/v1/parse_query` answer: both parse, or both refuse with the same message at the same
//! position. And the multi-line form ([`Expr::pretty`]) against Prometheus's
//! `/api/v1/format_query`, byte for byte, on a few hundred generated queries (most of them
//! longer than the 100 bytes of a line) and on long queries as dashboards write them.
//!
//! Prometheus runs with `promql-experimental-functions,promql-duration-expr`, and the parser
//! with the same features. Where Prometheus 3.14's syntax, which the parser reads, differs from
//! 3.5's, a query is left out, for the reason [`differs_from_3_5`] gives:
//! - `step`, `range`, `start`, `end`, `min_of`, `max_of` calls: functions and duration
//!   expressions added after 3.5;
//! - `,` inside brackets (`min_of(a, b)` in a range): 3.5's lexer refuses it there;
//! - `</` and `>/`: 3.14's histogram trim operators;
//! - `anchored`, `smoothed`, `fill(`, `fill_left(`, `fill_right(`: 3.14's modifiers;
//! - functions added after 3.5 (`first_over_time`, `ts_of_first_over_time`,
//!   `histogram_quantiles`, `start_timestamp`).

use crate::common::generate::{long_queries, malformed_queries, valid_queries};
use crate::common::prometheus::Prometheus;
use gauntlet_promql::parser::{BinaryOp, Cardinality, Expr, Options, parse};

/// Why Prometheus 3.5 and this parser (which reads 3.14's syntax) may answer `q` differently,
/// or `None` when they must agree.
fn differs_from_3_5(q: &str) -> Option<&'static str> {
    let lower = q.to_ascii_lowercase();
    let words = |w: &str| {
        lower.match_indices(w).any(|(i, _)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + w.len()..].trim_start().chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && after == Some('(')
        })
    };
    if ["step", "range", "start", "end", "min_of", "max_of"]
        .iter()
        .any(|w| words(w))
    {
        return Some("step()/range()/start()/end()/min_of()/max_of() are newer than 3.5");
    }
    let mut depth = 0i32;
    for c in q.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth > 0 => return Some("3.5's lexer refuses ',' inside brackets"),
            _ => {}
        }
    }
    if q.contains("</") || q.contains(">/") {
        return Some("</ and >/ are 3.14's histogram trim operators");
    }
    if ["anchored", "smoothed"].iter().any(|w| lower.contains(w))
        || ["fill", "fill_left", "fill_right"].iter().any(|w| words(w))
    {
        return Some("anchored, smoothed and fill() are 3.14's modifiers");
    }
    if [
        "first_over_time",
        "ts_of_first_over_time",
        "histogram_quantiles",
        "start_timestamp",
    ]
    .iter()
    .any(|w| words(w))
    {
        return Some("a function newer than 3.5");
    }
    None
}

/// Why Prometheus 3.5's answer `want` and the parser's `got` may differ for `q` although both
/// read the same syntax: quirks of 3.5 that 3.14 does not have or that are not worth copying.
fn known_difference(want: &Result<(), String>, got: &Result<(), String>) -> Option<&'static str> {
    const AT_35: &str = "\"<Item 57400>\" <op:@>";
    match (want, got) {
        (Err(w), Err(g)) if w.contains(AT_35) && w.replace(AT_35, "<op:@>") == *g => {
            Some("3.5 names `@` by its token number in messages")
        }
        (Err(w), _) if w == "invalid parameter \"query\": unexpected error" => {
            Some("3.5's parser panics on this input and answers \"unexpected error\"")
        }
        (Err(w), Err(g))
            if w.ends_with("bool modifier can only be used on comparison operators")
                && g.ends_with("bool modifier can only be used on comparison operators") =>
        {
            Some("3.5 places a misplaced bool at a stale position after a grouping clause")
        }
        (Err(w), Err(g))
            if (w.contains("parse error: unexpected colon '") && !w.ends_with("':'"))
                || g.ends_with(", expected ':'") =>
        {
            Some("3.5's lexer reads a letter after a duration in brackets as a colon")
        }
        (Ok(()), Err(g)) if g.contains("error parsing regexp") => {
            Some("the engine's RE2 check refuses braces Go's regexp takes as literals")
        }
        (Err(w), Ok(())) if w.contains("error parsing regexp") => {
            Some("the engine's RE2 check takes an escape Go's regexp refuses")
        }
        _ => None,
    }
}

fn regex_check(pattern: &str) -> Option<String> {
    use gauntlet_engine::labels::{MatchType, Matcher};
    Matcher::new(MatchType::Regexp, "x", pattern)
        .err()
        .map(|e| format!("error parsing regexp: {}", e.reason))
}

fn options() -> Options {
    Options {
        experimental_functions: true,
        duration_expr: true,
        regex_check: Some(regex_check),
        ..Options::default()
    }
}

/// Compares every query; returns how many were compared and the differences.
fn compare(prom: &Prometheus, queries: &[String]) -> (usize, usize, Vec<String>) {
    let opts = options();
    let (mut compared, mut refused, mut failures) = (0, 0, Vec::new());
    for q in queries {
        if differs_from_3_5(q).is_some() {
            continue;
        }
        compared += 1;
        let want = prom.parse_query(q);
        let got = parse(q, &opts)
            .map(|_| ())
            .map_err(|e| format!("invalid parameter \"query\": {e}"));
        if want.is_err() {
            refused += 1;
        }
        if want != got {
            if let Some(why) = known_difference(&want, &got) {
                eprintln!("known difference ({why}): {q:?}");
                continue;
            }
            failures.push(format!("{q:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    (compared, refused, failures)
}

/// The generator's seed and query count: `GAUNTLET_PROMQL_DIFF_SEED` (25 unless set) picks
/// other queries, `GAUNTLET_PROMQL_DIFF_COUNT` (300 unless set) how many, at most 20,000.
fn seed_and_count() -> (u64, usize) {
    let seed = std::env::var("GAUNTLET_PROMQL_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let count = std::env::var("GAUNTLET_PROMQL_DIFF_COUNT")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(300)
        .min(20_000);
    (seed, count)
}

#[test]
fn parser_agrees_with_prometheus_3_5() {
    let prom = Prometheus::start("promql-experimental-functions,promql-duration-expr");

    let list = std::fs::read_to_string(
        crate::common::repo_root().join("testdata/promql/invalid_queries.txt"),
    )
    .unwrap();
    let listed: Vec<String> = list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("# "))
        .map(str::to_string)
        .collect();
    assert!(listed.len() >= 300, "only {} queries", listed.len());
    let (n, refused, mut failures) = compare(&prom, &listed);
    eprintln!("invalid_queries.txt: {n} compared, {refused} refused by Prometheus");
    assert!(refused >= 240, "only {refused} refused");

    let (seed, count) = seed_and_count();
    let valid = valid_queries(seed, count);
    let (n, refused, f) = compare(&prom, &valid);
    eprintln!("generated: {n} compared, {refused} refused by Prometheus");
    assert!(n >= 250 && refused < n, "{n} compared, {refused} refused");
    failures.extend(f);

    let malformed = malformed_queries(seed, count);
    let (n, refused, f) = compare(&prom, &malformed);
    eprintln!("generated malformed: {n} compared, {refused} refused by Prometheus");
    assert!(
        n >= 250 && refused >= n / 2,
        "{n} compared, {refused} refused"
    );
    failures.extend(f);

    assert!(
        failures.is_empty(),
        "{} answers differ from Prometheus 3.5:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Where Gauntlet's printer writes a tree differently from Prometheus 3.5 on purpose, so that
/// the text parses back to the same tree (as Prometheus 3.14 does for the first two):
/// - `ignoring () group_left (...)` and `group_right`: 3.5 drops the whole clause, and the
///   text then reads back as one-to-one matching;
/// - label names outside the legacy character set in `on`, `ignoring`, `group_left` and
///   `group_right`: 3.5 writes them unquoted (`on (a.b)`), which does not parse;
/// - a `+Inf` base of `^`: 3.5 writes `+Inf ^ x`, which reads back as `+(Inf ^ x)`; Gauntlet
///   writes `Inf ^ x`.
///
/// These change the length of a line, and so where lines break. To compare the rest of such a
/// query all the same, the tree is rewritten so that Gauntlet writes the bytes 3.5 writes, or
/// bytes of the same length that [`as_3_5_text`] puts back: the `ignoring () group_x` clause
/// dropped, the ASCII characters of such labels that are not letters, digits or `_` made `_`
/// (in 3.5's text too, by [`legacy_clause_labels`]), and the `+Inf` base made `9999`, a number
/// the queries here never hold. Returns whether the tree was changed.
fn as_3_5_tree(e: &mut Expr) -> bool {
    fn legacy(l: &mut String) -> bool {
        let mapped: String = l
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let keep = c == '_' || !c.is_ascii() || c.is_ascii_alphabetic();
                if keep || (i > 0 && c.is_ascii_digit()) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let changed = mapped != *l;
        *l = mapped;
        changed
    }
    match e {
        Expr::Binary(b) => {
            let mut changed = as_3_5_tree(&mut b.lhs) | as_3_5_tree(&mut b.rhs);
            if let Some(m) = &mut b.matching {
                let grouped = matches!(m.card, Cardinality::ManyToOne | Cardinality::OneToMany);
                if grouped && !m.on && m.labels.is_empty() {
                    b.matching = None;
                    changed = true;
                } else {
                    for l in m.labels.iter_mut().chain(m.include.iter_mut()) {
                        changed |= legacy(l);
                    }
                }
            }
            if let Expr::Number(n) = &mut *b.lhs
                && b.op == BinaryOp::Pow
                && n.value == f64::INFINITY
                && !n.duration
            {
                n.value = 9999.0;
                changed = true;
            }
            changed
        }
        Expr::Paren(p) => as_3_5_tree(&mut p.expr),
        Expr::Unary(u) => as_3_5_tree(&mut u.expr),
        Expr::Subquery(s) => as_3_5_tree(&mut s.expr),
        Expr::Call(c) => c.args.iter_mut().fold(false, |ch, a| as_3_5_tree(a) | ch),
        Expr::Aggregate(a) => {
            let p = a.param.as_mut().is_some_and(|p| as_3_5_tree(p));
            as_3_5_tree(&mut a.expr) | p
        }
        _ => false,
    }
}

/// Gauntlet's text of a tree [`as_3_5_tree`] rewrote, with the `+Inf` bases put back.
fn as_3_5_text(ours: &str) -> String {
    ours.replace("9999", "+Inf")
}

/// Prometheus 3.5's text with the labels of `on`, `ignoring`, `group_left` and `group_right`
/// made as [`as_3_5_tree`] makes them.
fn legacy_clause_labels(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some((at, clause)) = [" on (", " ignoring (", " group_left (", " group_right ("]
        .iter()
        .filter_map(|c| rest.find(c).map(|at| (at, c)))
        .min()
    {
        let open = at + clause.len();
        let close = open + rest[open..].find(')').unwrap();
        out.push_str(&rest[..open]);
        for label in rest[open..close].split(", ").enumerate() {
            if label.0 > 0 {
                out.push_str(", ");
            }
            out.extend(label.1.chars().enumerate().map(|(i, c)| {
                let keep = c == '_' || !c.is_ascii() || c.is_ascii_alphabetic();
                if keep || (i > 0 && c.is_ascii_digit()) {
                    c
                } else {
                    '_'
                }
            }));
        }
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

/// Long queries as dashboards and alerting rules write them.
const LONG_QUERIES: &[&str] = &[
    r#"sum by (job, instance) (rate(http_requests_total{job="api-server",handler=~"/api/.*"}[5m])) / on(job) group_left sum by (job) (rate(http_requests_total{job="api-server"}[5m])) > 0.5"#,
    r#"(node_filesystem_avail_bytes{job="node",fstype!=""} / node_filesystem_size_bytes{job="node",fstype!=""} * 100 < 40 and predict_linear(node_filesystem_avail_bytes{job="node",fstype!=""}[6h], 24*60*60) < 0 and node_filesystem_readonly{job="node",fstype!=""} == 0)"#,
    r#"(node_timex_offset_seconds > 0.05 and deriv(node_timex_offset_seconds[5m]) >= 0) or (node_timex_offset_seconds < -0.05 and deriv(node_timex_offset_seconds[5m]) <= 0)"#,
    r#"1 - ((node_memory_MemAvailable_bytes{job="node"} or (node_memory_Buffers_bytes{job="node"} + node_memory_Cached_bytes{job="node"} + node_memory_MemFree_bytes{job="node"} + node_memory_Slab_bytes{job="node"}) ) / node_memory_MemTotal_bytes{job="node"})"#,
    r#"min by (job, integration) (rate(alertmanager_notifications_failed_total{job="alertmanager", integration=~".*"}[5m]) / rate(alertmanager_notifications_total{job="alertmanager", integration="~.*"}[5m])) > 0.01"#,
    r#"(count by (job) (changes(process_start_time_seconds{job="alertmanager"}[10m]) > 4) / count by (job) (up{job="alertmanager"})) >= 0.5"#,
    r#"histogram_quantile(0.99, sum by (le, verb, resource) (rate(apiserver_request_duration_seconds_bucket{job="apiserver",verb=~"LIST|GET",subresource!~"log|exec|portforward|attach|proxy"}[5m]))) > 1"#,
    r#"label_replace(label_replace(up{job="api-server",service="a:c"}, "foo", "$1", "service", "(.*):.*"), "foo", "$1", "service", "(.*):.*")"#,
    r#"max_over_time(rate(demo_api_request_duration_seconds_count{instance="demo-service-0:10000",method="POST"}[1m])[1h:5m] @ start() offset 1m)"#,
    r#"topk(5, sum without (pod, container) (rate(container_cpu_usage_seconds_total{namespace="monitoring", image!=""}[5m])) * on (namespace) group_left (team) kube_namespace_labels)"#,
    r#"-sum(rate(http_requests_total{code=~"5.."}[5m] offset 1d)) / ignoring (code) sum(rate(http_requests_total[5m] offset 1d)) unless absent(up{job="very-long-job-name-here"})"#,
    r#"quantile_over_time(0.9, (sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m])) / count by (instance) (node_cpu_seconds_total{mode="idle"}))[1d:5m])"#,
    r#"count_values without (instance) ("version", build_info{job="some-rather-long-job-name", environment="production", region="eu-west-1"})"#,
    r#"sum(kube_pod_container_resource_requests{resource="cpu", namespace="kube-system"}) by (node) / sum(kube_node_status_allocatable{resource="cpu"}) by (node) > bool 0.8"#,
    r#"{"http.server.request.duration", "service.name"="checkout", "http.route"=~"/api/v1/.*"}[5m] offset 10m"#,
    r#"rate({"http.server.request.duration_count", "service.name"="checkout", "http.route"=~"/api/v1/.*"}[5m])"#,
    r#"sum by ("service.name", "http.route") (rate({"http.server.request.duration_count", "deployment.environment"="production"}[5m]))"#,
    r#"avg(rate(http_requests_total{job="api"}[5m] @ end())) + avg(rate(http_requests_total{job="api"}[5m] @ 1700000000)) - 2 ^ 3 ^ 2"#,
    r#"-(rate(http_requests_total{job="api-server-with-a-long-name"}[5m]) + rate(http_requests_total{job="another-long-job-name"}[5m]))"#,
    r#"(((sum(rate(http_requests_total{job="api-server-with-a-long-name", handler="/api/v1/query_range"}[5m])))))"#,
    r#"clamp_min(sum by (job) (rate(http_requests_total[5m])), 1) / clamp_max(sum by (job) (rate(http_requests_total{code=~"5.."}[5m])), 100)"#,
    r#"absent_over_time(up{job="prometheus", instance="localhost:9090", environment="production", cluster="eu-1"}[10m])"#,
];

#[test]
fn pretty_printing_agrees_with_prometheus_3_5() {
    let began = std::time::Instant::now();
    let prom = Prometheus::start("promql-experimental-functions,promql-duration-expr");
    let opts = options();
    let (seed, count) = seed_and_count();
    let count = count.max(300);
    let generated = valid_queries(seed, count);
    // Long queries the parser takes (deep generated ones are often of the wrong type).
    let long: Vec<String> = long_queries(seed, 10 * count, 100)
        .into_iter()
        .filter(|q| differs_from_3_5(q).is_none() && parse(q, &opts).is_ok())
        .take(count)
        .collect();
    assert_eq!(
        long.len(),
        count,
        "the generator found too few long queries"
    );

    let (mut compared, mut long_compared, mut multi_line, mut refused) = (0, 0, 0, 0);
    let mut known = 0;
    let mut failures = Vec::new();
    let all = generated
        .iter()
        .map(|q| (q.as_str(), false))
        .chain(long.iter().map(|q| (q.as_str(), false)))
        .chain(LONG_QUERIES.iter().map(|q| (*q, true)));
    for (q, hand_written) in all {
        if differs_from_3_5(q).is_some() {
            continue;
        }
        let want = prom.format_query(q);
        let tree = parse(q, &opts);
        let got = tree.as_ref().map(Expr::pretty);
        let (want, got, mut tree) = match (want, got) {
            (Ok(w), Ok(g)) => (w, g, tree.unwrap()),
            (Err(_), Err(_)) => {
                refused += 1;
                assert!(!hand_written, "{q:?} does not parse");
                continue;
            }
            (w, g) => {
                failures.push(format!(
                    "{q:?}: one side refuses\n    prometheus: {w:?}\n    gauntlet:   {:?}",
                    g.map_err(|e| e.to_string())
                ));
                continue;
            }
        };
        compared += 1;
        if q.len() > 100 {
            long_compared += 1;
        }
        if want.contains('\n') {
            multi_line += 1;
        }
        if want == got {
            continue;
        }
        if as_3_5_tree(&mut tree) {
            let ours = as_3_5_text(&tree.pretty());
            if ours == legacy_clause_labels(&want) {
                known += 1;
                continue;
            }
            failures.push(format!(
                "{q:?}\n--- prometheus:\n{want}\n--- gauntlet:\n{got}\n--- gauntlet, \
                 written as 3.5 writes:\n{ours}\n---"
            ));
            continue;
        }
        failures.push(format!(
            "{q:?}\n--- prometheus:\n{want}\n--- gauntlet:\n{got}\n---"
        ));
    }
    eprintln!(
        "format_query: {compared} compared ({long_compared} longer than 100 bytes, {multi_line} \
         written over several lines), {refused} refused by both, {known} of them the same \
         once written as 3.5 writes what Gauntlet writes as 3.14 does, {} mismatches, in {:?}",
        failures.len(),
        began.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} answers differ from Prometheus 3.5's /api/v1/format_query:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        compared >= 450 && long_compared >= 300 && multi_line >= 250,
        "{compared} compared, {long_compared} longer than 100 bytes, {multi_line} over \
         several lines"
    );
}
