//! The PromQL engine's public API as the HTTP layer uses it: result shapes and order, error
//! types, limits, and query formatting.

use std::time::Duration;

use gauntlet_engine::ErrorClass;
use gauntlet_engine::chunk::SampleBatch;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};
use gauntlet_promql::{Engine, EngineOptions, Features, PromqlError, Value};

/// Two counters, `job="b"` and `job="a"`, sampled every 15 s for 10 minutes.
fn store() -> MemSeries {
    let series = [("b", 2.0), ("a", 1.0)]
        .into_iter()
        .map(|(job, slope)| {
            let ts: Vec<i64> = (0..=40).map(|k| k * 15_000).collect();
            let val = ts.iter().map(|&t| t as f64 / 1000.0 * slope).collect();
            Series {
                histograms: Default::default(),
                labels: Labels::from_pairs([("__name__", "reqs_total"), ("job", job)]),
                samples: SampleBatch { ts, val },
            }
        })
        .collect();
    MemSeries::new(series)
}

#[test]
fn range_query_gives_a_matrix_sorted_by_labels_with_one_point_per_step() {
    let r = Engine::default()
        .range_query(&store(), "rate(reqs_total[1m])", 60_000, 600_000, 60_000)
        .expect("query");
    let Value::Matrix(m) = r.value else {
        panic!("expected a matrix, got {:?}", r.value)
    };
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].labels, Labels::from_pairs([("job", "a")]));
    assert_eq!(m[1].labels, Labels::from_pairs([("job", "b")]));
    assert_eq!(m[0].samples.ts.len(), 10);
    for (v1, v2) in m[0].samples.val.iter().zip(&m[1].samples.val) {
        assert!((v1 - 1.0).abs() < 1e-9, "{v1}");
        assert!((v2 - 2.0).abs() < 1e-9, "{v2}");
    }
}

#[test]
fn instant_query_keeps_the_order_of_sort_desc() {
    let r = Engine::default()
        .instant_query(&store(), "sort_desc(reqs_total)", 300_000)
        .expect("query");
    let Value::Vector(v) = r.value else {
        panic!("expected a vector")
    };
    let jobs: Vec<_> = v.iter().map(|s| s.labels.get("job").unwrap()).collect();
    assert_eq!(jobs, ["b", "a"]);
    assert_eq!(v[0].v, 600.0);
    assert_eq!(v[0].t_ms, 300_000);
}

#[test]
fn scalar_and_range_vector_results() {
    let e = Engine::default();
    let r = e
        .instant_query(&store(), "1 + 2 * 3", 1_000)
        .expect("query");
    assert_eq!(
        r.value,
        Value::Scalar {
            t_ms: 1_000,
            v: 7.0
        }
    );
    let r = e
        .instant_query(&store(), "reqs_total{job=\"a\"}[1m]", 60_000)
        .expect("query");
    let Value::Matrix(m) = r.value else {
        panic!("expected a matrix")
    };
    // Left-open window: (0, 60s] holds 15s, 30s, 45s, 60s.
    assert_eq!(m[0].samples.ts, vec![15_000, 30_000, 45_000, 60_000]);
}

#[test]
fn errors_carry_prometheus_error_types() {
    let e = Engine::default();
    let err = e.instant_query(&store(), "sum(", 0).unwrap_err();
    assert!(matches!(err, PromqlError::Parse(_)));
    assert_eq!(err.class(), ErrorClass::BadData);

    let err = e
        .range_query(&store(), "reqs_total[5m]", 0, 60_000, 15_000)
        .unwrap_err();
    // Prometheus 3 checks the type while building the query: a bad `query` parameter.
    assert_eq!(err.class(), ErrorClass::BadData);
    assert!(err.to_string().contains("range vector"), "{err}");

    let err = e
        .range_query(&store(), "reqs_total", 0, 60_000, 0)
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Execution);
}

#[test]
fn sample_limit_and_timeout_stop_a_query() {
    let small = Engine::new(EngineOptions {
        max_samples: 10,
        ..EngineOptions::default()
    });
    let err = small
        .range_query(&store(), "reqs_total", 0, 600_000, 15_000)
        .unwrap_err();
    assert!(matches!(err, PromqlError::TooManySamples(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );

    let hasty = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    let err = hasty.instant_query(&store(), "reqs_total", 0).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout);
}

#[test]
fn format_query_prettifies() {
    assert_eq!(
        Engine::default()
            .format_query("sum by(job)(rate(reqs_total[5m]))")
            .expect("format"),
        "sum by (job) (rate(reqs_total[5m]))"
    );
    assert!(matches!(
        Engine::default().format_query("sum("),
        Err(PromqlError::Parse(_))
    ));
}

#[test]
fn pretty_query_breaks_long_queries_as_prometheus_does() {
    let engine = Engine::default();
    assert_eq!(
        engine
            .pretty_query("sum by(job)(rate(reqs_total[5m]))")
            .expect("format"),
        "sum by (job) (rate(reqs_total[5m]))"
    );
    // 102 bytes on one line; its left side, 98, fits.
    let name = format!("reqs_total_{}", "x".repeat(62));
    let long = format!("sum by (job) (rate({name}[5m])) > 1");
    assert_eq!(long.len(), 102);
    assert_eq!(
        engine.pretty_query(&long).expect("format"),
        format!("  sum by (job) (rate({name}[5m]))\n>\n  1")
    );
    // The one-line form stays available.
    assert_eq!(engine.format_query(&long).expect("format"), long);
    assert!(matches!(
        engine.pretty_query("sum("),
        Err(PromqlError::Parse(_))
    ));
    // The query limits hold as for any query.
    let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
    assert!(matches!(
        engine.pretty_query(&deep),
        Err(PromqlError::Parse(e)) if e.contains("--query.max-depth")
    ));
}

#[test]
fn duration_expressions_take_each_querys_step_and_range() {
    let engine = Engine::default();
    let range = |q: &str, step: i64| {
        let r = engine
            .range_query(&store(), q, 120_000, 600_000, step)
            .expect(q);
        match r.value {
            Value::Matrix(m) => m,
            other => panic!("{q}: {other:?}"),
        }
    };
    // One parsed tree serves both steps: `step() * 2` is 1m at a 30 s step, 2m at 60 s.
    for (step, literal) in [(30_000, "1m"), (60_000, "2m")] {
        let want = range(&format!("max_over_time(reqs_total[{literal}])"), step);
        let got = range("max_over_time(reqs_total[step() * 2])", step);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((&g.labels, &g.samples.val), (&w.labels, &w.samples.val));
        }
    }
    let shifted = range("reqs_total offset (range() / 8)", 60_000);
    let want = range("reqs_total offset 1m", 60_000);
    assert_eq!(shifted[0].samples.val, want[0].samples.val);
    // An instant query's step is 0: a range of `step()` is a range of nothing.
    let err = engine
        .instant_query(&store(), "rate(reqs_total[step()])", 300_000)
        .unwrap_err();
    assert!(matches!(err, PromqlError::Parse(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "1:17: parse error: duration must be greater than 0"
    );
}

#[test]
fn newer_syntax_is_read_only_when_asked_and_refused_clearly() {
    let plain = Engine::default();
    let newer = Engine::new(EngineOptions {
        features: Features::all(),
        ..EngineOptions::default()
    });
    for q in [
        "rate(reqs_total[5m] anchored)",
        "rate(reqs_total[5m] smoothed)",
        "reqs_total smoothed",
    ] {
        let err = plain.instant_query(&store(), q, 300_000).unwrap_err();
        assert!(matches!(err, PromqlError::Parse(_)), "{q}: {err}");
    }
    // The extended range selectors evaluate once asked for.
    for (q, want) in [
        ("rate(reqs_total[5m] anchored)", [1.0, 2.0]),
        ("rate(reqs_total[5m] smoothed)", [1.0, 2.0]),
        ("reqs_total offset 10s smoothed", [290.0, 580.0]),
    ] {
        let r = newer.instant_query(&store(), q, 300_000).expect(q);
        let Value::Vector(v) = r.value else {
            panic!("{q}: {:?}", r.value)
        };
        let got: Vec<f64> = v.iter().map(|s| s.v).collect();
        assert_eq!(got, want, "{q}");
    }
    let err = newer
        .instant_query(&store(), "max_over_time(reqs_total[5m] anchored)", 300_000)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "anchored modifier can only be used with: changes, delta, increase, rate, resets - not with max_over_time"
    );
    // Without info series `info()` answers its argument, as Prometheus does; series that are
    // info series themselves are answered as they are.
    for q in [
        "info(reqs_total)",
        r#"info(reqs_total, {__name__="reqs_total"})"#,
    ] {
        let r = plain.instant_query(&store(), q, 300_000).expect(q);
        assert!(
            matches!(&r.value, Value::Vector(v) if v.len() == 2),
            "{q}: {:?}",
            r.value
        );
    }
}

/// `fill()`, `fill_left()` and `fill_right()` are refused while parsing, in Prometheus's words,
/// unless `promql-binop-fill-modifiers` is enabled; then they fill in the missing side.
#[test]
fn fill_modifiers_need_their_feature_flag() {
    let plain = Engine::default();
    let fill = Engine::new(EngineOptions {
        features: Features {
            binop_fill_modifiers: true,
            ..Features::default()
        },
        ..EngineOptions::default()
    });
    for q in [
        "reqs_total + fill(0) reqs_total",
        "reqs_total + fill_left(0) reqs_total",
        r#"reqs_total{job="a"} + on() fill_right(1) vector(1)"#,
    ] {
        let err = plain.instant_query(&store(), q, 300_000).unwrap_err();
        assert!(matches!(err, PromqlError::Parse(_)), "{q}: {err}");
        assert!(
            err.to_string()
                .contains("binop fill modifiers are experimental and not enabled"),
            "{q}: {err}"
        );
    }
    // `job="a"` meets a missing right side, filled with 1000.
    let r = fill
        .instant_query(
            &store(),
            r#"reqs_total{job="a"} + on(job) fill_right(1000) reqs_total{job="b"}"#,
            300_000,
        )
        .expect("fill");
    let Value::Vector(v) = r.value else {
        panic!("expected a vector, got {:?}", r.value)
    };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].labels, Labels::from_pairs([("job", "a")]));
    assert_eq!(v[0].v, 1300.0);
}
