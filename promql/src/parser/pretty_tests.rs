//! The multi-line form of [`Expr::pretty`], on the kinds of expression Prometheus's prettier
//! tests cover (most with a line limit of 10 bytes, so short queries exercise the breaking),
//! and on long queries at the real limit of 100 bytes.

use super::{Expr, Options, parse};

fn parsed(q: &str) -> Expr {
    parse(q, &Options::all_features()).unwrap_or_else(|e| panic!("{q:?}: {e}"))
}

/// `q` written with a line limit of `max`; the text must parse back to the tree the one-line
/// form parses to (the printer sorts matchers, so the tree of `q` itself may differ in order).
fn pretty(q: &str, max: usize) -> String {
    let e = parsed(q);
    let text = e.pretty_with_max_line(max);
    let mut again = parse(&text, &Options::all_features())
        .unwrap_or_else(|err| panic!("{q:?} is written {text:?}, which does not parse: {err}"));
    let mut want = parsed(&e.to_string());
    again.clear_spans();
    want.clear_spans();
    assert_eq!(
        format!("{again:?}"),
        format!("{want:?}"),
        "{q:?} is written {text:?}"
    );
    text
}

fn check(max: usize, cases: &[(&str, &str)]) {
    for (q, want) in cases {
        assert_eq!(pretty(q, max), *want, "{q:?}");
    }
}

#[test]
fn aggregations() {
    check(
        10,
        &[
            ("sum(foo)", "sum(foo)"),
            (
                r#"sum by() (task:errors:rate10s{job="s"})"#,
                "sum(\n  task:errors:rate10s{job=\"s\"}\n)",
            ),
            (
                r#"sum without(job,foo) (task:errors:rate10s{job="s"})"#,
                "sum without (job, foo) (\n  task:errors:rate10s{job=\"s\"}\n)",
            ),
            (
                r#"sum(task:errors:rate10s{job="s"}) by(job,foo)"#,
                "sum by (job, foo) (\n  task:errors:rate10s{job=\"s\"}\n)",
            ),
            (
                r#"topk(10, ask:errors:rate10s{job="s"})"#,
                "topk(\n  10,\n  ask:errors:rate10s{job=\"s\"}\n)",
            ),
            (
                r#"count_values without ("a.b") ("value", x)"#,
                "count_values without (\"a.b\") (\n  \"value\",\n  x\n)",
            ),
            (
                r#"sum by(job,foo) (sum(task:errors:rate10s{job="s"}) without(job,foo))"#,
                "sum by (job, foo) (\n  sum without (job, foo) (\n    task:errors:rate10s{job=\"s\"}\n  )\n)",
            ),
            (
                "quantile(0.9, sum by (le) (rate(foo[1m])))",
                "quantile(\n  0.9,\n  sum by (le) (\n    rate(\n      foo[1m]\n    )\n  )\n)",
            ),
        ],
    );
}

#[test]
fn binary_operations() {
    check(
        10,
        &[
            ("a+b", "a + b"),
            ("a == bool 1", "  a\n== bool\n  1"),
            ("a + ignoring(job) b", "  a\n+ ignoring (job)\n  b"),
            ("foo_1 + foo_2", "  foo_1\n+\n  foo_2"),
            (
                "foo_1 + foo_2 + foo_3",
                "    foo_1\n  +\n    foo_2\n+\n  foo_3",
            ),
            // `foo + baar` is exactly 10 bytes: it stays on its line.
            ("foo + baar + foo_3", "  foo + baar\n+\n  foo_3"),
            (
                "foo_1 + foo_2 + foo_3 + foo_4",
                "      foo_1\n    +\n      foo_2\n  +\n    foo_3\n+\n  foo_4",
            ),
            (
                "foo_1 + ignoring(foo) foo_2 + ignoring(job) group_left foo_3 + on(instance) group_right foo_4",
                "      foo_1\n    + ignoring (foo)\n      foo_2\n  + ignoring (job) group_left ()\n    foo_3\n+ on (instance) group_right ()\n  foo_4",
            ),
            // `^` associates to the right: the chain steps the other way.
            ("aa_1 ^ bb_1 ^ cc_1", "  aa_1\n^\n    bb_1\n  ^\n    cc_1"),
            (
                "foo_1 > bool on(\"a.b\") group_left(code) foo_2",
                "  foo_1\n> bool on (\"a.b\") group_left (code)\n  foo_2",
            ),
            // Prometheus 3.14's fill modifiers stay with the operator.
            ("foo_1 + fill(0) foo_2", "  foo_1\n+ fill(0)\n  foo_2"),
            (
                "foo_1 / on(job) fill_left(1) fill_right(2) foo_2",
                "  foo_1\n/ on (job) fill_left(1) fill_right(2)\n  foo_2",
            ),
            (
                "foo_1 and foo_2 or foo_3",
                "    foo_1\n  and\n    foo_2\nor\n  foo_3",
            ),
            // A `+Inf` base of `^` is written `Inf`, which reads back as the same tree.
            ("+Inf ^ foo_1", "+Inf\n^\n  foo_1"),
            ("Inf ^ foo_1", "  Inf\n^\n  foo_1"),
        ],
    );
}

#[test]
fn calls() {
    check(
        10,
        &[
            ("time()", "time()"),
            ("rate(foo[1m])", "rate(\n  foo[1m]\n)"),
            (
                "rate(long_vector_selector[10m:1m] @ start() offset 1m)",
                "rate(\n  long_vector_selector[10m:1m] @ start() offset 1m\n)",
            ),
            (
                "histogram_quantile(0.9, rate(foo[1m]))",
                "histogram_quantile(\n  0.9,\n  rate(\n    foo[1m]\n  )\n)",
            ),
            (
                "max_over_time(rate(demo_api_request_duration_seconds_count[1m])[1m:] @ start() offset 1m)",
                "max_over_time(\n  rate(\n    demo_api_request_duration_seconds_count[1m]\n  )[1m:] @ start() offset 1m\n)",
            ),
            (
                r#"label_replace(label_replace(up{job="api-server",service="a:c"}, "foo", "$1", "service", "(.*):.*"), "foo", "$1", "service", "(.*):.*")"#,
                concat!(
                    "label_replace(\n",
                    "  label_replace(\n",
                    "    up{job=\"api-server\",service=\"a:c\"},\n",
                    "    \"foo\",\n",
                    "    \"$1\",\n",
                    "    \"service\",\n",
                    "    \"(.*):.*\"\n",
                    "  ),\n",
                    "  \"foo\",\n",
                    "  \"$1\",\n",
                    "  \"service\",\n",
                    "  \"(.*):.*\"\n",
                    ")"
                ),
            ),
            ("rate(foo[2*1h])", "rate(\n  foo[2 * 1h]\n)"),
            ("rate(foo[-5m+35m])", "rate(\n  foo[-5m + 35m]\n)"),
        ],
    );
}

#[test]
fn parentheses() {
    check(
        10,
        &[
            ("(foo)", "(foo)"),
            ("(_foo_long_)", "(\n  _foo_long_\n)"),
            ("((foo_long))", "(\n  (foo_long)\n)"),
            ("((_foo_long_))", "(\n  (\n    _foo_long_\n  )\n)"),
            ("(((foo_long)))", "(\n  (\n    (foo_long)\n  )\n)"),
            ("(1 + 2)", "(1 + 2)"),
            ("(foo + bar)", "(\n  foo + bar\n)"),
            (
                "(foo_long + bar_long)",
                "(\n    foo_long\n  +\n    bar_long\n)",
            ),
            (
                "((foo_long + bar_long) + bar_2_long)",
                "(\n    (\n        foo_long\n      +\n        bar_long\n    )\n  +\n    bar_2_long\n)",
            ),
            (
                "(sum_over_time(foo[1m]))",
                "(\n  sum_over_time(\n    foo[1m]\n  )\n)",
            ),
        ],
    );
}

#[test]
fn unary_operations() {
    check(
        10,
        &[
            ("-1", "-1"),
            ("-vector_selector", "-vector_selector"),
            ("(-vector_selector)", "(\n  -vector_selector\n)"),
            (
                "-histogram_quantile(0.9,rate(foo[1m]))",
                "-histogram_quantile(\n  0.9,\n  rate(\n    foo[1m]\n  )\n)",
            ),
            (
                "(-histogram_quantile(0.9, -rate(foo[1m] @ start())))",
                "(\n  -histogram_quantile(\n    0.9,\n    -rate(\n      foo[1m] @ start()\n    )\n  )\n)",
            ),
            // The sign takes the place of its operand's first indentation.
            ("-foo_1 ^ foo_2", "-foo_1\n^\n  foo_2"),
            ("-(foo_1 + foo_2)", "-(\n    foo_1\n  +\n    foo_2\n)"),
            ("- -foo_long_1", "--foo_long_1"),
        ],
    );
}

#[test]
fn selectors_and_literals_are_never_broken() {
    check(
        10,
        &[
            ("a @ 1", "a @ 1.000"),
            ("vector_selector @ start()", "vector_selector @ start()"),
            (
                r#"{"metric.name", "a.b"="c", job!~"x|y"}[5m] offset -1h"#,
                r#"{"a.b"="c",__name__="metric.name",job!~"x|y"}[5m] offset -1h"#,
            ),
            (r#""a long string literal""#, r#""a long string literal""#),
            ("123456789012", "123456789012"),
            ("foo_bar_baz[5m] anchored", "foo_bar_baz[5m] anchored"),
        ],
    );
}

#[test]
fn subqueries() {
    check(
        10,
        &[
            ("metric_one[5m:1m]", "metric_one[5m:1m]"),
            (
                "(foo_1 + foo_2)[5m:]",
                "(\n    foo_1\n  +\n    foo_2\n)[5m:]",
            ),
            (
                "max_over_time((foo_1 + foo_2)[5m:1m] offset 1m)",
                "max_over_time(\n  (\n      foo_1\n    +\n      foo_2\n  )[5m:1m] offset 1m\n)",
            ),
            // A subquery that fits on a line is written without indentation, as Prometheus
            // writes it.
            (
                "predict_linear(x[1m:], 30 + 4 * 50)",
                "predict_linear(\nx[1m:],\n    30\n  +\n    4 * 50\n)",
            ),
            (
                "max_over_time(rate(foo_1[1m])[5m:])",
                "max_over_time(\n  rate(\n    foo_1[1m]\n  )[5m:]\n)",
            ),
        ],
    );
}

/// Long queries at Prometheus's real limit, 100 bytes; the answers are those of Prometheus
/// 3.5.3's `/api/v1/format_query`.
#[test]
fn long_queries_at_100_bytes() {
    let long = "a".repeat(110);
    let cases: Vec<(String, String)> = vec![
        (
            r#"sum by (job, instance) (rate(http_requests_total{job="api-server",handler=~"/api/.*"}[5m])) / on(job) group_left sum by (job) (rate(http_requests_total{job="api-server"}[5m])) > 0.5"#.into(),
            concat!(
                "    sum by (job, instance) (rate(http_requests_total{handler=~\"/api/.*\",job=\"api-server\"}[5m]))\n",
                "  / on (job) group_left ()\n",
                "    sum by (job) (rate(http_requests_total{job=\"api-server\"}[5m]))\n",
                ">\n",
                "  0.5"
            )
            .into(),
        ),
        (
            format!("predict_linear(x[5m:1m], scalar(sum({long})))"),
            format!("predict_linear(\nx[5m:1m],\n  scalar(\n    sum(\n      {long}\n    )\n  )\n)"),
        ),
        (
            format!("max_over_time((rate({long}[5m]) + rate({long}[5m]))[1h:5m] offset 5m)"),
            format!(
                "max_over_time(\n  (\n      rate(\n        {long}[5m]\n      )\n    +\n      rate(\n        {long}[5m]\n      )\n  )[1h:5m] offset 5m\n)"
            ),
        ),
        (
            format!("-sum(rate({long}[5m]) + rate({long}[5m]))"),
            format!(
                "-sum(\n    rate(\n      {long}[5m]\n    )\n  +\n    rate(\n      {long}[5m]\n    )\n)"
            ),
        ),
        (
            format!("topk by (job) (5, rate({long}[5m]))"),
            format!("topk by (job) (\n  5,\n  rate(\n    {long}[5m]\n  )\n)"),
        ),
        (
            format!("1 + 2 * {long}"),
            format!("  1\n+\n    2\n  *\n    {long}"),
        ),
        (
            format!("x > bool on() 1 + {long}"),
            format!("  x\n> bool on ()\n    1\n  +\n    {long}"),
        ),
        (
            format!("{{\"{long}.x\", a=\"b\"}} + 1"),
            format!("  {{__name__=\"{long}.x\",a=\"b\"}}\n+\n  1"),
        ),
        (
            format!("(((({long}))))"),
            format!("(\n  (\n    (\n      (\n        {long}\n      )\n    )\n  )\n)"),
        ),
    ];
    for (q, want) in &cases {
        assert_eq!(pretty(q, 100), *want, "{q:?}");
        assert_eq!(parsed(q).pretty(), *want, "{q:?}");
    }
}

/// Queries that fit in 100 bytes come back as the one-line form; one byte more and they
/// break.
#[test]
fn the_limit_is_100_bytes() {
    let fits = format!("{} + b", "a".repeat(96));
    assert_eq!(fits.len(), 100);
    assert_eq!(parsed(&fits).pretty(), fits);
    let over = format!("{} + b", "a".repeat(97));
    assert_eq!(
        parsed(&over).pretty(),
        format!("  {}\n+\n  b", "a".repeat(97))
    );
    // Bytes, not characters: a two-byte character counts twice.
    let wide = format!("x{{a=\"{}\"}} + b", "é".repeat(45));
    assert_eq!(wide.len(), 101);
    assert_eq!(
        parsed(&wide).pretty(),
        format!("  x{{a=\"{}\"}}\n+\n  b", "é".repeat(45))
    );
}

/// The lengths the writer decides by are those of the one-line form, for every node.
#[test]
fn measured_lengths_are_the_one_line_lengths() {
    fn walk(e: &Expr, lengths: &std::collections::HashMap<*const Expr, usize>) {
        let key: *const Expr = e;
        assert_eq!(lengths[&key], e.to_string().len(), "{e}");
        match e {
            Expr::Subquery(s) => walk(&s.expr, lengths),
            Expr::Paren(p) => walk(&p.expr, lengths),
            Expr::Unary(u) => walk(&u.expr, lengths),
            Expr::Binary(b) => {
                walk(&b.lhs, lengths);
                walk(&b.rhs, lengths);
            }
            Expr::Call(c) => c.args.iter().for_each(|a| walk(a, lengths)),
            Expr::Aggregate(a) => {
                walk(&a.expr, lengths);
                if let Some(p) = &a.param {
                    walk(p, lengths);
                }
            }
            _ => {}
        }
    }
    for q in [
        r#"sum by (job, "a.b") (rate(x{a="b",c=~"d"}[5m] offset 1m @ 100)) / on(job) group_left(c) -y > bool 0.5"#,
        "topk without () (5, count_values(\"v\", x)) + ignoring() group_right y ^ +Inf ^ 2",
        "+Inf ^ x - (-Inf ^ 2) * sum_over_time(x[5m:1m] offset (1m + step()))",
        "label_replace(x, \"a\", \"$1\", \"b\", \"(.*)\") + fill(NaN) y * fill_left(-1) z",
        "quantile_over_time(0.5, (x + y)[1h:step()] @ end()) </ 3 >/ 2",
        "{\"a.b\"} + rate(x[5m] anchored) + rate(y[5m] smoothed) + 5m + -1h30m + 0x1F + time()",
    ] {
        let e = parsed(q);
        let mut lengths = std::collections::HashMap::new();
        super::pretty::measure(&e, &mut lengths);
        walk(&e, &lengths);
    }
}
