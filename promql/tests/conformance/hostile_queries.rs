//! Queries a hostile user would send: nested as deep as the limit allows and past it, chains of
//! operators, and megabytes of names, strings, regexes, matchers and arguments. Every one must
//! be answered or refused with an error, and written in `/api/v1/format_query`'s multi-line
//! form or refused, on a 2 MiB thread like a server's: no stack overflow, no panic. How long each took is printed (`--nocapture`), and a generous bound catches a
//! query that stalls.

use std::time::{Duration, Instant};

use gauntlet_engine::chunk::SampleBatch;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};
use gauntlet_promql::{DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, Engine, PromqlError};

/// Longer than any of these queries takes in a test build; a query past it is stuck.
const STALLED: Duration = Duration::from_secs(60);

fn store() -> MemSeries {
    let series = ["a", "b"]
        .into_iter()
        .map(|job| Series {
            histograms: Default::default(),
            labels: Labels::from_pairs([("__name__", "up"), ("job", job)]),
            samples: SampleBatch {
                ts: (0..40).map(|i| i * 15_000).collect(),
                val: (0..40).map(|i| i as f64).collect(),
            },
        })
        .collect();
    MemSeries::new(series)
}

/// `n` copies of `item` joined by `sep`.
fn join(item: &str, sep: &str, n: usize) -> String {
    vec![item; n].join(sep)
}

/// `open` n times, `inner`, `close` n times.
fn nest(open: &str, inner: &str, close: &str, n: usize) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

/// A balanced tree of `leaf` joined by `op`, `leaves` of them: many nodes, little depth.
fn balanced(leaf: &str, op: &str, leaves: usize) -> String {
    if leaves <= 1 {
        return leaf.to_string();
    }
    let mut level: Vec<String> = vec![leaf.to_string(); leaves];
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|p| match p {
                [a, b] => format!("({a}{op}{b})"),
                [a] => a.clone(),
                _ => unreachable!(),
            })
            .collect();
    }
    level.pop().unwrap()
}

/// The queries, named: deep ones at the default depth limit, and wide ones near the length
/// limit.
fn hostile() -> Vec<(&'static str, String)> {
    let d = DEFAULT_MAX_DEPTH;
    let mb = DEFAULT_MAX_BYTES;
    let values: Vec<String> = (0..mb / 16).map(|i| format!("v{i}")).collect();
    let matchers: Vec<String> = (0..mb / 16).map(|i| format!("l{i}=\"v\"")).collect();
    vec![
        ("scalar chain", join("1", "+", d)),
        ("vector chain", join("up", " + ", d)),
        (
            "right-nested chain",
            format!("{}1{}", "1+(".repeat(d / 2 - 1), ")".repeat(d / 2 - 1)),
        ),
        (
            "set operators",
            join("up", " or ", d / 2) + &join("", " and up", d / 2),
        ),
        ("comparisons", format!("up{}", " > bool 1".repeat(d - 1))),
        ("matching", join("up", " + on(job) group_left ", d)),
        ("parentheses", nest("(", "up", ")", d - 1)),
        ("unary minus", nest("-(", "up", ")", d / 2 - 1)),
        ("calls", nest("abs(", "up", ")", d - 1)),
        ("aggregations", nest("sum by (job) (", "up", ")", d - 1)),
        (
            "subqueries",
            nest("max_over_time((", "up", ")[5m:1m])", d / 3 - 1),
        ),
        (
            "string functions",
            nest(
                "label_replace(",
                "up",
                ", \"a\", \"$1\", \"job\", \"(.*)\")",
                d - 1,
            ),
        ),
        ("unclosed", "(".repeat(d - 1)),
        ("dangling operator", nest("(", "up", ")", d - 2) + " +"),
        ("over the depth limit: chain", join("1", "+", 20_000)),
        (
            "over the depth limit: parentheses",
            nest("(", "1", ")", 5_000),
        ),
        ("over the depth limit: a megabyte of them", "(".repeat(mb)),
        ("over the length limit", join("up", "+", mb)),
        ("long name", "u".repeat(mb - 10)),
        (
            "long string value",
            format!("up{{job=\"{}\"}}", "x".repeat(mb - 20)),
        ),
        ("long regex", format!("up{{job=~\"{}\"}}", values.join("|"))),
        (
            "nested regex groups",
            format!("up{{job=~\"{}\"}}", nest("(", "a", ")", 200)),
        ),
        (
            "too deeply nested regex",
            format!("up{{job=~\"{}\"}}", nest("(", "a", ")", 100_000)),
        ),
        (
            "regex repetitions",
            format!("up{{job=~\"{}\"}}", "(a{1000}){1000}".repeat(10)),
        ),
        ("many matchers", format!("up{{{}}}", matchers.join(","))),
        (
            "many or-matchers",
            format!("{{{}}}", join("job=\"a\"", " or ", mb / 12)),
        ),
        ("balanced calls", balanced("abs(up)", "+", mb / 12)),
        ("balanced selectors", balanced("up", "+", mb / 8)),
        (
            "many arguments",
            format!(
                "label_join(up, \"d\", \",\"{})",
                ", \"job\"".repeat(mb / 10)
            ),
        ),
        (
            "many grouping labels",
            format!("sum by ({}) (up)", values.join(",")),
        ),
        ("colons", format!("a{}", ":a".repeat(mb / 2 - 1))),
        ("comment", format!("# {}\nup", "x".repeat(mb - 10))),
        ("whitespace", format!("{}up", " ".repeat(mb - 10))),
        ("long number", "1".repeat(mb)),
        ("long duration", format!("up[{}s]", "9".repeat(mb - 10))),
        (
            "escapes",
            format!("up{{job=\"{}\"}}", "\\x41\\u0042".repeat(mb / 12)),
        ),
        (
            "duration arithmetic",
            format!("up offset ({})", join("1m", "+", d - 2)),
        ),
        (
            "offsets and ats",
            balanced("up offset 1m @ 100", " + ", mb / 24),
        ),
    ]
}

#[test]
fn hostile_queries_are_answered_or_refused() {
    // A thread as small as a server's request threads.
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(|| {
            let store = store();
            let engine = Engine::default();
            // `HOSTILE_ONLY=name` runs the queries whose name contains `name`, for profiling.
            let only = std::env::var("HOSTILE_ONLY").unwrap_or_default();
            for (name, q) in hostile().into_iter().filter(|(n, _)| n.contains(&*only)) {
                for range in [false, true] {
                    let started = Instant::now();
                    let res = if range {
                        engine.range_query(&store, &q, 0, 600_000, 60_000)
                    } else {
                        engine.instant_query(&store, &q, 600_000)
                    };
                    let took = started.elapsed();
                    let outcome = match &res {
                        Ok(_) => "answered".to_string(),
                        Err(e) => format!("{:?}: {}", e.class(), clip(&e.to_string())),
                    };
                    println!(
                        "{name} ({} bytes, {}): {took:?}: {outcome}",
                        q.len(),
                        if range { "range" } else { "instant" }
                    );
                    assert!(took < STALLED, "{name}: stalled for {took:?}");
                    if name.starts_with("over the") {
                        let e = res.expect_err(name);
                        assert!(matches!(e, PromqlError::Parse(_)), "{name}: {e}");
                        let text = e.to_string();
                        assert!(text.contains("--query.max-"), "{name}: {text}");
                        assert!(text.len() < 200, "{name}: {text}");
                    }
                }
                // `/api/v1/format_query`'s multi-line form, as deep as the query nests.
                let started = Instant::now();
                let res = engine.pretty_query(&q);
                let took = started.elapsed();
                let outcome = match &res {
                    Ok(text) => format!("written in {} bytes", text.len()),
                    Err(e) => format!("{:?}: {}", e.class(), clip(&e.to_string())),
                };
                println!("{name} ({} bytes, pretty): {took:?}: {outcome}", q.len());
                assert!(took < STALLED, "{name}: stalled for {took:?}");
            }
        })
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn queries_at_the_depth_limit_are_answered() {
    let store = store();
    let engine = Engine::default();
    let d = DEFAULT_MAX_DEPTH;
    for (q, want) in [
        (join("1", "+", d), d as f64),
        (nest("(", "1", ")", d - 1), 1.0),
        (nest("-(", "1", ")", d / 2 - 1), -1.0),
    ] {
        let res = engine.instant_query(&store, &q, 0).expect("answered");
        match res.value {
            gauntlet_promql::Value::Scalar { v, .. } => assert_eq!(v, want),
            other => panic!("{other:?}"),
        }
    }
}

/// The first 120 characters of `s`.
fn clip(s: &str) -> String {
    s.chars().take(120).collect()
}
