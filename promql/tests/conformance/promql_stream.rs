//! Streaming selection and the memory it saves: every source's batches carry exactly what its
//! `select` answers (label order, each series once, merged across blocks, bounded batches), and
//! PromQL over thousands of series holds a bounded number of samples, failing past
//! `max_samples` the way Prometheus does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gauntlet_engine::ErrorClass;
use gauntlet_engine::block::{BlockWriter, CutOptions, Interval, ThanosMeta, Tombstones};
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::chunk::{STALE_NAN_BITS, SampleBatch};
use gauntlet_engine::labels::{CompactString, Labels, MatchType, Matcher};
use gauntlet_engine::query::{
    BATCH_SERIES, LocalBlocks, MemSeries, Queryable, SelectHints, Series, collect_stream,
};
use gauntlet_engine::store::{BucketStore, StoreOptions};
use gauntlet_promql::{Engine, EngineOptions, Features, PromqlError, Value};

const STEP: i64 = 15_000;
const H: i64 = 3_600_000;

/// The value of series `i` at `t`: a counter that resets every 40 minutes, or a stale marker
/// for every 13th series between 50 and 60 minutes past each hour. Overlapping blocks agree.
fn value(i: usize, t: i64) -> f64 {
    if i.is_multiple_of(13) && (50 * 60_000..60 * 60_000).contains(&(t % H)) {
        return f64::from_bits(STALE_NAN_BITS);
    }
    ((t % (40 * 60_000)) / STEP) as f64 * (1 + i % 5) as f64
}

fn labels(i: usize) -> Labels {
    Labels::from_pairs([
        ("__name__", "m_total".to_string()),
        ("g", (i % 7).to_string()),
        ("i", format!("{i:05}")),
    ])
}

/// A block with series `lo..hi` sampled every 15 s over `[from, to)`.
fn write_block(dir: &Path, from: i64, to: i64, lo: usize, hi: usize, ext: &[(&str, &str)]) {
    let mut w = BlockWriter::create(dir, CutOptions::default()).unwrap();
    let mut idx: Vec<usize> = (lo..hi).collect();
    idx.sort_by_key(|&i| labels(i));
    for i in idx {
        let ts: Vec<i64> = (from / STEP..to / STEP).map(|k| k * STEP).collect();
        let val: Vec<f64> = ts.iter().map(|&t| value(i, t)).collect();
        w.add_series(&labels(i), &ts, &val).unwrap();
    }
    let thanos = (!ext.is_empty()).then(|| ThanosMeta {
        labels: ext
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..ThanosMeta::default()
    });
    w.finish(thanos).unwrap().unwrap();
}

/// Three blocks: 0–2 h (series 0..3000), 2–4 h (1000..4000), and 1–3 h overlapping both
/// (0..500); series 1000's first ten minutes in the second block are deleted.
fn write_blocks(dir: &Path, ext: &[(&str, &str)]) {
    write_block(dir, 0, 2 * H, 0, 3000, ext);
    write_block(dir, 2 * H, 4 * H, 1000, 4000, ext);
    write_block(dir, H, 3 * H, 0, 500, ext);
    let local = LocalBlocks::open(dir).unwrap();
    let second = local
        .blocks()
        .iter()
        .find(|b| b.meta().min_time == 2 * H)
        .unwrap();
    let refs = second
        .select(&[Matcher::new(MatchType::Equal, "i", "01000").unwrap()])
        .unwrap();
    let mut t = Tombstones::new();
    t.add(
        u64::from(refs[0]),
        Interval {
            mint: 2 * H,
            maxt: 2 * H + 600_000,
        },
    );
    t.write(&second.dir().join("tombstones")).unwrap();
}

fn matcher_sets() -> Vec<Vec<Matcher>> {
    let m = |t, n: &str, v: &str| Matcher::new(t, n, v).unwrap();
    vec![
        vec![m(MatchType::Equal, "__name__", "m_total")],
        vec![m(MatchType::Equal, "g", "3")],
        vec![m(MatchType::Regexp, "i", "0(1|3).*")],
        vec![m(MatchType::Regexp, "__name__", ".+")],
        vec![
            m(MatchType::NotEqual, "i", "01000"),
            m(MatchType::Equal, "g", "0"),
        ],
        vec![m(MatchType::Equal, "i", "99999")],
    ]
}

/// Holds `src`'s stream to its `select` over several selections and ranges.
fn stream_equals_select(src: &dyn Queryable) {
    for ms in matcher_sets() {
        for (mint, maxt) in [
            (0, 4 * H),
            (H / 2, 5 * H / 2),
            (2 * H + 1, 2 * H + 900_000),
            (-H, -1),
        ] {
            let hints = SelectHints::default();
            let want = src.select(&ms, mint, maxt, &hints).unwrap();
            let mut stream = src.select_stream(&ms, mint, maxt, &hints).unwrap();
            let mut sizes = Vec::new();
            let mut labels_seen: Vec<Labels> = Vec::new();
            while let Some(b) = stream.next_batch().unwrap() {
                assert!(!b.is_empty() && b.len() <= BATCH_SERIES);
                sizes.push(b.len());
                labels_seen.extend(b.into_iter().map(|s| s.labels));
            }
            assert!(
                labels_seen.windows(2).all(|w| w[0] < w[1]),
                "{ms:?}: series out of label order or repeated"
            );
            let got = collect_stream(
                src.select_stream(&ms, mint, maxt, &hints).unwrap(),
                mint,
                maxt,
            )
            .unwrap();
            assert_eq!(got.len(), want.len(), "{ms:?} [{mint}, {maxt}]");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.labels, w.labels);
                assert_eq!(g.samples.ts, w.samples.ts, "{}", g.labels);
                let bits = |b: &SampleBatch| b.val.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&g.samples), bits(&w.samples), "{}", g.labels);
            }
            if want.len() > BATCH_SERIES {
                assert!(sizes.len() > 1, "{} series in one batch", want.len());
            }
        }
    }
}

#[test]
fn local_blocks_stream_equals_select() {
    let tmp = tempfile::tempdir().unwrap();
    write_blocks(tmp.path(), &[]);
    stream_equals_select(&LocalBlocks::open(tmp.path()).unwrap());
}

#[test]
fn mem_series_stream_equals_select() {
    let series = (0..2500)
        .map(|i| {
            let ts: Vec<i64> = (0..480).map(|k| k * STEP).collect();
            let val = ts.iter().map(|&t| value(i, t)).collect();
            Series {
                histograms: Default::default(),
                labels: labels(i),
                samples: SampleBatch { ts, val },
            }
        })
        .collect();
    stream_equals_select(&MemSeries::new(series));
}

fn bucket_store(rt: &tokio::runtime::Runtime, bucket: &Path, data: &Path) -> Arc<BucketStore> {
    let cfg = BucketConfig::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        bucket.display()
    ))
    .unwrap();
    rt.block_on(async {
        let s = Arc::new(
            BucketStore::open(Bucket::open(&cfg).unwrap(), data, StoreOptions::default()).unwrap(),
        );
        s.sync().await.unwrap();
        s
    })
}

#[test]
fn bucket_store_stream_equals_select() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Blocks with the same external labels merge series across blocks; mixed external labels
    // keep them apart. Either way the stream comes in label order and equals `select`.
    for (name, exts) in [
        ("same", vec![vec![("replica", "a")]; 2]),
        (
            "mixed",
            vec![vec![("replica", "a")], vec![("replica", "b")]],
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let bucket = tmp.path().join("bucket");
        let parts = [
            (0, 2 * H, 0, 1500, &exts[0]),
            (2 * H, 4 * H, 1000, 2600, &exts[1]),
            (H, 3 * H, 0, 300, &exts[0]),
        ];
        for &(from, to, lo, hi, ext) in &parts {
            write_block(&bucket, from, to, lo, hi, ext);
        }
        let store = bucket_store(&rt, &bucket, &tmp.path().join("data"));
        eprintln!("{name}");
        stream_equals_select(store.as_ref());
        // The store's answer (its `select` drains the same stream) against the series as
        // written, external labels attached.
        let written = written_series(&parts);
        for ms in matcher_sets() {
            for (mint, maxt) in [(0, 4 * H), (H / 2, 5 * H / 2), (-H, -1)] {
                let hints = SelectHints::default();
                let got = store.select(&ms, mint, maxt, &hints).unwrap();
                let want = written.select(&ms, mint, maxt, &hints).unwrap();
                assert_eq!(got.len(), want.len(), "{name} {ms:?} [{mint}, {maxt}]");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.labels, w.labels);
                    assert_eq!(g.samples.ts, w.samples.ts, "{}", g.labels);
                    let bits =
                        |b: &SampleBatch| b.val.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&g.samples), bits(&w.samples), "{}", g.labels);
                }
            }
        }
    }
}

/// Blocks of a store test: `[from, to)`, series `lo..hi`, external labels.
type Part<'a> = (i64, i64, usize, usize, &'a Vec<(&'a str, &'a str)>);

/// Every series of `parts` as written, external labels attached (overlapping parts agree).
fn written_series(parts: &[Part<'_>]) -> MemSeries {
    MemSeries::new(
        parts
            .iter()
            .flat_map(|&(from, to, lo, hi, ext)| {
                (lo..hi).map(move |i| {
                    let mut ls: Vec<(CompactString, CompactString)> = labels(i)
                        .iter()
                        .map(|l| (l.name.clone(), l.value.clone()))
                        .collect();
                    ls.extend(ext.iter().map(|&(k, v)| (k.into(), v.into())));
                    let ts: Vec<i64> = (from / STEP..to / STEP).map(|k| k * STEP).collect();
                    let val = ts.iter().map(|&t| value(i, t)).collect();
                    Series {
                        histograms: Default::default(),
                        labels: Labels::from_pairs(ls),
                        samples: SampleBatch { ts, val },
                    }
                })
            })
            .collect(),
    )
}

/// Aggregations that read only their groups' labels (which the store then hands over alone)
/// answer as over the series as written: series merged across overlapping blocks count once,
/// series of different external label sets stay apart, whatever the grouping.
#[test]
fn bucket_store_aggregations_read_grouped_labels_only() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let (a, b) = (vec![("replica", "a")], vec![("replica", "b")]);
    let parts: [Part<'_>; 4] = [
        (0, 2 * H, 0, 1500, &a),
        (H, 3 * H, 1000, 2000, &a),
        (2 * H, 4 * H, 1000, 2600, &b),
        (0, 2 * H, 2500, 2600, &b),
    ];
    for &(from, to, lo, hi, ext) in &parts {
        write_block(&bucket, from, to, lo, hi, ext);
    }
    let store = bucket_store(&rt, &bucket, &tmp.path().join("data"));
    let written = written_series(&parts);
    let e = Engine::default();
    for q in [
        "count(m_total)",
        "count({__name__=~\".+\"})",
        "sum by (g) (rate(m_total[5m]))",
        "count by (replica) (m_total)",
        "max without (i) (m_total)",
        "sum without (g, i) (m_total > 10)",
        "count by (__name__, replica) (m_total)",
        "avg by (i) (m_total{g=\"3\"})",
    ] {
        let got = e.range_query(store.as_ref(), q, 0, 4 * H, 60_000).unwrap();
        let want = e.range_query(&written, q, 0, 4 * H, 60_000).unwrap();
        assert_eq!(got.value, want.value, "{q}");
    }
}

/// `n` counters over 2 h in a block directory: PromQL reads their chunks in batches.
fn many_series(dir: &Path, n: usize) -> LocalBlocks {
    write_block(dir, 0, 2 * H, 0, n, &[]);
    LocalBlocks::open(dir).unwrap()
}

fn range(e: &Engine, src: &dyn Queryable, q: &str) -> Result<(Value, usize), PromqlError> {
    let r = e.range_query(src, q, 10 * 60_000, 2 * H, 60_000)?;
    Ok((r.value, r.peak_samples))
}

#[test]
fn aggregations_over_many_series_hold_few_samples() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (small, large) = (many_series(a.path(), 1500), many_series(b.path(), 6000));
    let steps = 111;
    let all = Engine::default();
    // What Prometheus holds for the rate alone: one point per series and step.
    let prometheus_holds = 6000 * steps;
    for q in [
        "sum(rate(m_total[5m]))",
        "sum by (g) (rate(m_total[5m]))",
        "count({__name__=~\".+\"})",
        "topk(3, rate(m_total[5m]))",
        "max without (i) (m_total > 10)",
        "avg(abs(-increase(m_total[10m])))",
    ] {
        let (_, peak_small) = range(&all, &small, q).unwrap();
        let (_, peak) = range(&all, &large, q).unwrap();
        // Bounded by batch and decode-group sizes, not by the number of series.
        assert!(
            peak <= peak_small + 2 * steps && peak * 10 < prometheus_holds,
            "{q}: held {peak} samples at once over 6000 series, {peak_small} over 1500"
        );
        // The limit applies to what is held: just above the peak passes.
        let tight = Engine::new(EngineOptions {
            max_samples: peak + 1,
            ..EngineOptions::default()
        });
        range(&tight, &large, q).unwrap();
    }
    // An unaggregated result is held in full and refused past the limit.
    let limited = Engine::new(EngineOptions {
        max_samples: 100_000,
        ..EngineOptions::default()
    });
    let err = range(&limited, &large, "rate(m_total[5m])").unwrap_err();
    assert_eq!(err.class(), ErrorClass::Execution);
    assert_eq!(
        err.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
}

/// A matrix answer's series: labels, timestamps and value bits.
fn matrix_bits(q: &str, v: &Value) -> Vec<(Labels, Vec<i64>, Vec<u64>)> {
    match v {
        Value::Matrix(m) => m
            .iter()
            .map(|s| {
                (
                    s.labels.clone(),
                    s.samples.ts.clone(),
                    s.samples.val.iter().map(|x| x.to_bits()).collect(),
                )
            })
            .collect(),
        other => panic!("{q}: {other:?}"),
    }
}

/// The series of a block directory and the same series in memory.
fn blocks_and_memory(dir: &Path, n: usize) -> (LocalBlocks, MemSeries) {
    let blocks = many_series(dir, n);
    let mem = MemSeries::new(
        blocks
            .select(
                &[Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()],
                i64::MIN,
                i64::MAX,
                &SelectHints::default(),
            )
            .unwrap(),
    );
    (blocks, mem)
}

#[test]
fn streamed_and_in_memory_sources_agree_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (blocks, mem) = blocks_and_memory(tmp.path(), 4000);
    let e = Engine::default();
    for q in [
        "sum(rate(m_total[5m]))",
        "sum by (g) (rate(m_total[5m]) * 2)",
        "stddev(m_total)",
        "bottomk(2, m_total)",
        "quantile(0.9, rate(m_total[5m]))",
    ] {
        let (a, _) = range(&e, &blocks, q).unwrap();
        let (b, _) = range(&e, &mem, q).unwrap();
        let (c, _) = range(&e, &blocks, q).unwrap();
        assert_eq!(matrix_bits(q, &a), matrix_bits(q, &b), "{q}");
        assert_eq!(
            matrix_bits(q, &a),
            matrix_bits(q, &c),
            "{q}: not repeatable"
        );
    }
}

/// `anchored` and `smoothed` selectors read past their windows: the wider selection streamed
/// from blocks (counter resets, stale markers, a deleted stretch) gives the answers of the
/// same series in memory, over thousands of series and across worker tasks.
#[test]
fn anchored_and_smoothed_agree_across_sources_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let (blocks, mem) = blocks_and_memory(tmp.path(), 1500);
    let e = Engine::new(EngineOptions {
        features: Features::all(),
        ..EngineOptions::default()
    });
    for q in [
        "sum(rate(m_total[5m] anchored))",
        "sum by (g) (increase(m_total[10m] smoothed))",
        "max by (g) (delta(m_total[2m] smoothed offset 1m))",
        "sum(changes(m_total[5m] anchored))",
        "sum by (g) (resets(m_total[20m] anchored))",
        "avg(m_total smoothed)",
        "rate(m_total{g=\"3\"}[1m] anchored)",
        "m_total{i=~\"0001.\"} smoothed",
    ] {
        let (a, _) = range(&e, &blocks, q).unwrap();
        let (b, _) = range(&e, &mem, q).unwrap();
        let (a, b) = (matrix_bits(q, &a), matrix_bits(q, &b));
        assert!(!a.is_empty(), "{q}: no series");
        assert_eq!(a, b, "{q}");
    }
}

/// Aggregations folded in parallel tasks and merged agree with the same aggregation over a
/// materialized input (a no-op `label_replace` keeps it from streaming), for coarse groups
/// every task shares and fine groups each task starts.
#[test]
fn merged_task_groups_agree_with_one_fold() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = many_series(tmp.path(), 3000);
    let e = Engine::default();
    let same = |x: f64, y: f64| x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs());
    for (agg, inner) in [
        ("sum by (g)", "rate(m_total[5m])"),
        ("min by (g)", "m_total"),
        ("max without (i)", "rate(m_total[5m])"),
        ("count by (i)", "m_total"),
        ("group by (g, i)", "m_total > 20"),
        ("sum by (i)", "increase(m_total[10m])"),
        ("count", "m_total"),
    ] {
        let streamed = format!("{agg} ({inner})");
        let folded = format!(r#"{agg} (label_replace({inner}, "nope", "", "nope", ""))"#);
        let (Value::Matrix(a), _) = range(&e, &blocks, &streamed).unwrap() else {
            panic!("{streamed}: not a matrix")
        };
        let (Value::Matrix(b), _) = range(&e, &blocks, &folded).unwrap() else {
            panic!("{folded}: not a matrix")
        };
        assert_eq!(a.len(), b.len(), "{streamed}");
        assert!(!a.is_empty(), "{streamed}");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.labels, y.labels, "{streamed}");
            assert_eq!(x.samples.ts, y.samples.ts, "{streamed}: {}", x.labels);
            let agree = x
                .samples
                .val
                .iter()
                .zip(&y.samples.val)
                .all(|(&p, &q)| same(p, q));
            assert!(agree, "{streamed}: {}", x.labels);
        }
    }
}

/// A warning owed once any series was selected comes out however many worker tasks the
/// selection is cut into (one task for a few series, several in parallel for thousands), as
/// Prometheus gives it for any input with samples.
#[test]
fn warnings_survive_parallel_streams() {
    let dir = tempfile::tempdir().unwrap();
    let src = many_series(dir.path(), 3000);
    let e = Engine::default();
    for q in [
        "quantile_over_time(NaN, m_total{i=\"00001\"}[5m])",
        "quantile_over_time(NaN, m_total[5m])",
        "sum(quantile_over_time(2, m_total[5m]))",
    ] {
        let r = e.range_query(&src, q, 10 * 60_000, 2 * H, 60_000).unwrap();
        assert_eq!(r.warnings.len(), 1, "{q}: {:?}", r.warnings);
        assert!(
            r.warnings[0].starts_with("PromQL warning: quantile value should be between 0 and 1"),
            "{q}: {:?}",
            r.warnings
        );
    }
}

/// Storage that fails once `good` batches of a selection are handed over, as a bucket that
/// disappears mid-query does.
struct FailingAfter {
    inner: LocalBlocks,
    good: usize,
}

struct FailingStream<'a> {
    inner: Box<dyn gauntlet_engine::query::SeriesStream + 'a>,
    left: usize,
}

impl gauntlet_engine::query::SeriesStream for FailingStream<'_> {
    fn next_batch(
        &mut self,
    ) -> gauntlet_engine::Result<Option<Vec<gauntlet_engine::query::StreamSeries>>> {
        if self.left == 0 {
            return Err(gauntlet_engine::Error::InvalidInput(
                "bucket went away".to_string(),
            ));
        }
        self.left -= 1;
        self.inner.next_batch()
    }
}

impl Queryable for FailingAfter {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Vec<Series>> {
        collect_stream(self.select_stream(matchers, mint, maxt, hints)?, mint, maxt)
    }

    fn select_stream<'a>(
        &'a self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> gauntlet_engine::Result<Box<dyn gauntlet_engine::query::SeriesStream + 'a>> {
        Ok(Box::new(FailingStream {
            inner: self.inner.select_stream(matchers, mint, maxt, hints)?,
            left: self.good,
        }))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        self.inner.label_names(matchers, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        self.inner.label_values(name, matchers, mint, maxt)
    }
}

/// A storage error in the middle of a selection read by parallel workers fails the query
/// with that error, whichever batch it comes at (the first, while tasks are in flight, or
/// after the last series), and never answers with the series read before it.
#[test]
fn storage_errors_mid_stream_fail_the_query() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::default();
    let batches = 5000usize.div_ceil(BATCH_SERIES);
    for good in [0, 1, 2, batches] {
        let src = FailingAfter {
            inner: many_series(dir.path().join(good.to_string()).as_path(), 5000),
            good,
        };
        for q in [
            "count(m_total)",
            "sum by (g) (rate(m_total[5m]))",
            "rate(m_total[5m])",
        ] {
            let err = range(&e, &src, q).unwrap_err();
            assert!(
                err.to_string().contains("bucket went away"),
                "{q} after {good} batches: {err}"
            );
        }
    }
}
