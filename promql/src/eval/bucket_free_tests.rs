//! Selectors read without buckets (`histogram_count`, `histogram_sum` and `histogram_avg`
//! over `rate`, `sum`, …) give the answers of whole reads: each query below runs as written
//! (bucket-free) and with `* 1` above its selector's reader (which reads whole), over chunked
//! series with counter resets that only the buckets show, stale markers at chunk ends, schema
//! changes, custom buckets, float histogram chunks and a gauge, under both compatibilities.

use super::histogram_stats::BucketFreeSelectors;
use super::run_mode;
use crate::parser::Expr;
use crate::{Compat, EngineOptions, parse};
use gauntlet_engine::chunk::{
    Encoding, FloatHistogramAppender, HistogramAppend, HistogramAppender, HistogramBatch,
    SampleBatch,
};
use gauntlet_engine::histogram::{CounterResetHint, Histogram, Span};
use gauntlet_engine::labels::{Labels, Matcher};
use gauntlet_engine::query::{
    Queryable, SelectHints, Series, SeriesChunk, SeriesData, SeriesStream, StreamSeries,
    decode_histograms,
};

/// Scrape interval of the test data, ms.
const SCRAPE: i64 = 15_000;
/// Samples per series (2 h).
const SAMPLES: i64 = 480;
/// Samples a chunk takes before a new one is cut.
const CHUNK: usize = 120;

/// A schema-`schema` integer histogram of absolute bucket `counts` from index `offset`, with
/// `zero` observations in the zero bucket.
fn int(schema: i32, offset: i32, counts: &[i64], zero: u64) -> Histogram {
    let mut prev = 0;
    let deltas = counts
        .iter()
        .map(|&c| {
            let d = c - prev;
            prev = c;
            d
        })
        .collect();
    let count = counts.iter().sum::<i64>() as u64 + zero;
    Histogram {
        schema,
        zero_threshold: 0.001,
        zero_count: zero,
        count,
        sum: count as f64 * 0.37,
        positive_spans: vec![Span::new(offset, counts.len() as u32)],
        positive_buckets: deltas,
        ..Histogram::default()
    }
}

fn stale() -> Histogram {
    Histogram::stale_marker()
}

/// A series' samples, `None` for no sample at that scrape.
type Samples = Vec<(i64, Histogram)>;

/// Integer (or, with `float`, float) histogram chunks of `samples`, cut as the head cuts them
/// and every [`CHUNK`] samples.
fn chunks(samples: &Samples, float: bool) -> Vec<SeriesChunk> {
    let mut out = Vec::new();
    let mut push = |encoding: Encoding, ts: &[i64], data: Vec<u8>| {
        out.push(SeriesChunk {
            min_time: ts[0],
            max_time: ts[ts.len() - 1],
            encoding: encoding as u8,
            data: data.into(),
        });
    };
    if float {
        let mut a = FloatHistogramAppender::new();
        let mut ts: Vec<i64> = Vec::new();
        for (t, h) in samples {
            let h = h.to_float();
            if ts.len() == CHUNK {
                let mut next = FloatHistogramAppender::new();
                next.append(Some(&a), *t, &h).unwrap();
                push(
                    Encoding::FloatHistogram,
                    &ts,
                    std::mem::replace(&mut a, next).into_bytes(),
                );
                ts.clear();
            } else if let HistogramAppend::NewChunk(next) = a.append(None, *t, &h).unwrap() {
                push(
                    Encoding::FloatHistogram,
                    &ts,
                    std::mem::replace(&mut a, next).into_bytes(),
                );
                ts.clear();
            }
            ts.push(*t);
        }
        push(Encoding::FloatHistogram, &ts, a.into_bytes());
    } else {
        let mut a = HistogramAppender::new();
        let mut ts: Vec<i64> = Vec::new();
        for (t, h) in samples {
            if ts.len() == CHUNK {
                let mut next = HistogramAppender::new();
                next.append(Some(&a), *t, h).unwrap();
                push(
                    Encoding::Histogram,
                    &ts,
                    std::mem::replace(&mut a, next).into_bytes(),
                );
                ts.clear();
            } else if let HistogramAppend::NewChunk(next) = a.append(None, *t, h).unwrap() {
                push(
                    Encoding::Histogram,
                    &ts,
                    std::mem::replace(&mut a, next).into_bytes(),
                );
                ts.clear();
            }
            ts.push(*t);
        }
        push(Encoding::Histogram, &ts, a.into_bytes());
    }
    out
}

/// The test series: `(kind, samples, float chunks)`.
fn series() -> Vec<(&'static str, Samples, bool)> {
    let times = || (0..SAMPLES).map(|k| (k, k * SCRAPE));
    let grow = |k: i64| [k, 2 * k, k / 2 + 1];
    let mut out = Vec::new();
    // Buckets appear as the series goes on (chunks recoded to wider layouts).
    out.push((
        "growing",
        times()
            .map(|(k, t)| {
                let mut counts = grow(k).to_vec();
                counts.extend((0..k / 100).map(|j| j + k / 50));
                (t, int(3, -2, &counts, k as u64 / 4))
            })
            .collect(),
        false,
    ));
    // Resets that only a bucket shows (the count grows), at and between chunk boundaries.
    out.push((
        "bucket_reset",
        times()
            .map(|(k, t)| {
                let [a, b, c] = grow(k);
                let h = if k >= 240 {
                    int(3, -2, &[a - 200, b + 1000, c], 0)
                } else if k >= 170 {
                    int(3, -2, &[a - 150, b + 500, c], 0)
                } else {
                    int(3, -2, &[a, b, c], 0)
                };
                (t, h)
            })
            .collect(),
        false,
    ));
    // A plain reset, as float histogram chunks.
    out.push((
        "float_reset",
        times()
            .map(|(k, t)| {
                let k = if k >= 300 { k - 300 } else { k };
                (t, int(1, 0, &grow(k), 2))
            })
            .collect(),
        true,
    ));
    // A stale marker ending a chunk, another in the middle of one, and a gap.
    out.push((
        "stale",
        times()
            .filter(|(k, _)| !(300..330).contains(k))
            .map(|(k, t)| {
                let h = if k == CHUNK as i64 - 1 || k == 200 || k == SAMPLES - 1 {
                    stale()
                } else {
                    int(3, -2, &grow(k), 0)
                };
                (t, h)
            })
            .collect(),
        false,
    ));
    // The schema drops half-way.
    out.push((
        "schema",
        times()
            .map(|(k, t)| (t, int(if k < 250 { 3 } else { 1 }, -2, &grow(k), 0)))
            .collect(),
        false,
    ));
    // Custom buckets.
    out.push((
        "custom",
        times()
            .map(|(k, t)| {
                let mut h = int(-53, 0, &grow(k), 0);
                h.zero_threshold = 0.0;
                h.custom_values = vec![0.1, 1.0].into();
                (t, h)
            })
            .collect(),
        false,
    ));
    // A gauge.
    out.push((
        "gauge",
        times()
            .map(|(k, t)| {
                let mut h = int(3, -2, &grow((k * 7) % 50), 0);
                h.counter_reset_hint = CounterResetHint::Gauge;
                (t, h)
            })
            .collect(),
        false,
    ));
    out
}

/// A source that hands its series over as chunks, as the head and blocks do.
struct Chunked {
    series: Vec<(Labels, Vec<SeriesChunk>)>,
}

impl Chunked {
    fn new() -> Chunked {
        let mut series: Vec<(Labels, Vec<SeriesChunk>)> = series()
            .into_iter()
            .enumerate()
            .map(|(i, (kind, samples, float))| {
                let labels = Labels::from_pairs([
                    ("__name__", "m".to_string()),
                    ("g", if i % 2 == 0 { "a" } else { "b" }.to_string()),
                    ("kind", kind.to_string()),
                ]);
                (labels, chunks(&samples, float))
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        Chunked { series }
    }

    fn matching(&self, matchers: &[Matcher]) -> Vec<StreamSeries> {
        self.series
            .iter()
            .filter(|(l, _)| {
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(&m.name).unwrap_or("")))
            })
            .map(|(labels, chunks)| StreamSeries {
                labels: labels.clone(),
                data: SeriesData::Chunks(chunks.clone()),
            })
            .collect()
    }
}

struct OneBatch(Option<Vec<StreamSeries>>);

impl SeriesStream for OneBatch {
    fn next_batch(&mut self) -> gauntlet_engine::Result<Option<Vec<StreamSeries>>> {
        Ok(self.0.take().filter(|b| !b.is_empty()))
    }
}

impl Queryable for Chunked {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> gauntlet_engine::Result<Vec<Series>> {
        let mut out = Vec::new();
        for s in self.matching(matchers) {
            let mut histograms = HistogramBatch::new();
            decode_histograms(&s, mint, maxt, &mut histograms)?;
            if !histograms.is_empty() {
                out.push(Series {
                    labels: s.labels,
                    samples: SampleBatch::new(),
                    histograms,
                });
            }
        }
        Ok(out)
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
        _hints: &SelectHints,
    ) -> gauntlet_engine::Result<Box<dyn SeriesStream + 'a>> {
        Ok(Box::new(OneBatch(Some(self.matching(matchers)))))
    }

    fn label_names(
        &self,
        _matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn label_values(
        &self,
        _name: &str,
        _matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// `(bucket-free query, the same read whole)`.
const QUERIES: &[(&str, &str)] = &[
    ("histogram_count(m)", "histogram_count(m * 1)"),
    ("histogram_sum(m)", "histogram_sum(m * 1)"),
    ("histogram_avg(m)", "histogram_avg(m * 1)"),
    (
        "histogram_count(rate(m[5m]))",
        "histogram_count(rate(m[5m]) * 1)",
    ),
    (
        "histogram_sum(increase(m[1h]))",
        "histogram_sum(increase(m[1h]) * 1)",
    ),
    (
        "histogram_avg(irate(m[5m]))",
        "histogram_avg(irate(m[5m]) * 1)",
    ),
    (
        "histogram_count(last_over_time(m[5m]))",
        "histogram_count(last_over_time(m[5m]) * 1)",
    ),
    (
        "histogram_count(sum by (g) (rate(m[5m])))",
        "histogram_count(sum by (g) (rate(m[5m]) * 1))",
    ),
    (
        "histogram_sum(sum(increase(m{kind!=\"gauge\"}[30m])))",
        "histogram_sum(sum(increase(m{kind!=\"gauge\"}[30m]) * 1))",
    ),
    (
        "histogram_avg(avg by (g) (rate(m[10m])))",
        "histogram_avg(avg by (g) (rate(m[10m]) * 1))",
    ),
];

/// The selectors of `expr` read without buckets.
fn bucket_free_count(expr: &Expr) -> usize {
    let found = BucketFreeSelectors::find(expr);
    let mut n = 0;
    let mut pending = vec![expr];
    while let Some(e) = pending.pop() {
        match e {
            Expr::Vector(vs) => n += usize::from(found.contains(vs)),
            Expr::Matrix(ms) => n += usize::from(found.contains(&ms.selector)),
            Expr::Call(c) => pending.extend(c.args.iter()),
            Expr::Aggregate(a) => pending.push(&a.expr),
            Expr::Binary(b) => pending.extend([&b.lhs, &b.rhs].map(|x| &**x)),
            Expr::Paren(p) => pending.push(&p.expr),
            _ => {}
        }
    }
    n
}

#[test]
fn bucket_free_reads_answer_as_whole_reads() {
    let store = Chunked::new();
    let end = (SAMPLES - 1) * SCRAPE;
    let spans = [
        (end, end, 0),
        (31 * 60_000, 31 * 60_000, 0),
        (0, end, 60_000),
        (10 * 60_000, end, 7 * 60_000 + 1_000),
    ];
    for compat in [Compat::Prometheus3_5, Compat::Prometheus3_14] {
        let opts = EngineOptions {
            compat,
            ..EngineOptions::default()
        };
        for &(free, whole) in QUERIES {
            let (free_expr, whole_expr) = (parse(free).unwrap(), parse(whole).unwrap());
            assert_eq!(bucket_free_count(&free_expr), 1, "{free}");
            assert_eq!(bucket_free_count(&whole_expr), 0, "{whole}");
            for (start, end, step) in spans {
                for materialize in [false, true] {
                    let run = |expr: &Expr, q: &str| {
                        let args = (
                            &opts,
                            &store as &dyn Queryable,
                            expr,
                            q,
                            start,
                            end,
                            step.max(1),
                            step == 0,
                        );
                        run_mode(args, materialize).unwrap()
                    };
                    let (a, b) = (run(&free_expr, free), run(&whole_expr, whole));
                    let at = format!("{free} {compat:?} {start}..{end}/{step} m={materialize}");
                    assert_eq!(format!("{:?}", a.value), format!("{:?}", b.value), "{at}");
                    assert_eq!((&a.warnings, &a.info), (&b.warnings, &b.info), "{at}");
                }
            }
        }
    }
}

#[test]
fn resets_only_the_buckets_show_count_in_bucket_free_increases() {
    // The series' count keeps rising; two of its chunks start with a bucket lower than before,
    // each a reset. Read on the count alone, its increase would be about the count's own rise.
    let store = Chunked::new();
    let end = (SAMPLES - 1) * SCRAPE;
    let q = "histogram_count(increase(m{kind=\"bucket_reset\"}[2h]))";
    let expr = parse(q).unwrap();
    let opts = EngineOptions::default();
    let args = (&opts, &store as &dyn Queryable, &expr, q, end, end, 1, true);
    let got = run_mode(args, false).unwrap();
    let crate::value::Value::Vector(v) = &got.value else {
        panic!("not a vector: {:?}", got.value);
    };
    let count = |k: i64| -> f64 {
        let (a, b, c) = (k, 2 * k, k / 2 + 1);
        let (a, b) = if k >= 240 {
            (a - 200, b + 1000)
        } else if k >= 170 {
            (a - 150, b + 500)
        } else {
            (a, b)
        };
        (a + b + c) as f64
    };
    let rise = count(SAMPLES - 1) - count(0);
    let with_resets = rise + count(169) + count(239);
    assert_eq!(v.len(), 1);
    // Extrapolation to the window's edges adds well under 1%.
    assert!(
        (v[0].v / with_resets - 1.0).abs() < 0.01,
        "increase {} against {with_resets} with the resets, {rise} without",
        v[0].v
    );
}
