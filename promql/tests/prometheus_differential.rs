//! The parser against a running Prometheus 3.5: for every query of
//! `testdata/promql/invalid_queries.txt` and a few hundred queries from the grammar-driven
//! generator (valid ones and malformed ones, seeded), the parser's outcome equals Prometheus's
//! `/api/v1/parse_query` answer: both parse, or both refuse with the same message at the same
//! position.
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

mod common;

use common::generate::{malformed_queries, valid_queries};
use common::prometheus::Prometheus;
use gauntlet_promql::parser::{Options, parse};

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

#[test]
fn parser_agrees_with_prometheus_3_5() {
    let prom = Prometheus::start("promql-experimental-functions,promql-duration-expr");

    let list =
        std::fs::read_to_string(common::repo_root().join("testdata/promql/invalid_queries.txt"))
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

    // GAUNTLET_PROMQL_DIFF_SEED picks other queries (the count stays bounded).
    let seed = std::env::var("GAUNTLET_PROMQL_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let count = std::env::var("GAUNTLET_PROMQL_DIFF_COUNT")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(300)
        .min(20_000);
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
