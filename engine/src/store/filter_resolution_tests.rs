//! The bucket store's label filter (blocks without a requested pair are never read; damaged
//! filter files are rebuilt) and its serving of downsampled blocks (resolution choice with
//! fallback to raw, only the requested aggregates, PromQL reads close to raw).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::block::label_filter::LABEL_FILTER_FILENAME;
use crate::block::{BlockWriter, CutOptions, ThanosMeta};
use crate::bucket::{Bucket, BucketConfig};
use crate::chunk::{AggrChunk, AggrType, Encoding};
use crate::downsample::{RES_5M, downsample_block};
use crate::labels::{MatchType, Matcher};
use crate::query::{Queryable, SelectHints};

const H: i64 = 3_600_000;
const STEP: i64 = 15_000;

/// A block of 20 series `m{i="0".."19", team=TEAM}` over `[from, to)` every 15 s; values are a
/// counter rising by `i + 1` per sample.
fn write_block(dir: &Path, team: &str, from: i64, to: i64) -> Ulid {
    let mut w = BlockWriter::create(dir, CutOptions::default()).unwrap();
    let id = w.ulid();
    let mut names: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    names.sort();
    for i in names {
        let k: f64 = i.parse::<f64>().unwrap() + 1.0;
        let ts: Vec<i64> = (from / STEP..to / STEP).map(|n| n * STEP).collect();
        let val: Vec<f64> = ts.iter().map(|t| (*t / STEP) as f64 * k).collect();
        let labels = Labels::from_pairs([("__name__", "m"), ("i", i.as_str()), ("team", team)]);
        w.add_series(&labels, &ts, &val).unwrap();
    }
    let thanos = ThanosMeta {
        version: 1,
        labels: [("cluster".to_string(), "eu1".to_string())].into(),
        source: "test".into(),
        ..ThanosMeta::default()
    };
    w.finish(Some(thanos)).unwrap().unwrap();
    id
}

fn open(dir: &Path, data: &Path) -> Arc<BucketStore> {
    let cfg = BucketConfig::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    ))
    .unwrap();
    Arc::new(BucketStore::open(Bucket::open(&cfg).unwrap(), data, StoreOptions::default()).unwrap())
}

fn query(matchers: Vec<Matcher>, min_time: i64, max_time: i64) -> SeriesQuery {
    SeriesQuery {
        min_time,
        max_time,
        matchers,
        ..SeriesQuery::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_without_the_pair_are_never_read() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let a = write_block(&bucket, "alpha", 0, 2 * H);
    let b = write_block(&bucket, "beta", 0, 2 * H);
    let store = open(&bucket, &tmp.path().join("data"));
    store.sync().await.unwrap();
    assert_eq!(store.metrics().label_filter_builds.load(Relaxed), 2);
    assert!(store.blocks().iter().all(|b| b.label_filter().is_some()));

    // Block b's index and chunks vanish: any postings, series or chunk read of it would fail.
    for f in ["index", "chunks/000001"] {
        std::fs::remove_file(bucket.join(b.to_string()).join(f)).unwrap();
    }
    let q = query(
        vec![
            Matcher::equal("team", "alpha"),
            Matcher::new(MatchType::Regexp, "i", "1|2|3").unwrap(),
        ],
        0,
        2 * H,
    );
    let res = store.series(&q).await.unwrap();
    assert!(res.warnings.is_empty(), "{:?}", res.warnings);
    assert_eq!(res.series.len(), 3);
    assert_eq!(res.queried_blocks, vec![a.to_string()]);
    assert_eq!(store.metrics().label_filter_excluded.load(Relaxed), 1);
    // The same with a set regex naming only absent teams rules out both blocks, so no bucket
    // request at all is made; a matcher on the external label is not checked against the
    // filter (it is not in the index).
    let before = store.bucket().stats().requests.load(Relaxed);
    let q = query(
        vec![
            Matcher::new(MatchType::Regexp, "team", "gamma|delta").unwrap(),
            Matcher::equal("cluster", "eu1"),
        ],
        0,
        2 * H,
    );
    let res = store.series(&q).await.unwrap();
    assert!(res.series.is_empty() && res.warnings.is_empty());
    assert_eq!(store.bucket().stats().requests.load(Relaxed), before);
    assert_eq!(store.metrics().label_filter_excluded.load(Relaxed), 3);
    // Label values with a matcher go through the same selection.
    let names = store
        .label_values(
            "i",
            &LabelsQuery {
                min_time: 0,
                max_time: 2 * H,
                matchers: vec![Matcher::equal("team", "alpha"), Matcher::equal("i", "7")],
                ..LabelsQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(names, vec!["7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_filter_files_are_rebuilt_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let a = write_block(&bucket, "alpha", 0, 2 * H);
    let data = tmp.path().join("data");
    let path = data.join(a.to_string()).join(LABEL_FILTER_FILENAME);
    open(&bucket, &data).sync().await.unwrap();
    let good = std::fs::read(&path).unwrap();

    // Reopening reads the file; it is not rebuilt.
    let s = open(&bucket, &data);
    s.sync().await.unwrap();
    assert_eq!(s.metrics().label_filter_builds.load(Relaxed), 0);

    let flipped = {
        let mut b = good.clone();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        b
    };
    // A filter of an empty label set: valid file, but for another index size.
    let foreign = crate::block::LabelFilter::from_pairs([], 1)
        .unwrap()
        .encode();
    for damaged in [
        good[..good.len() / 3].to_vec(),
        flipped,
        Vec::new(),
        foreign,
    ] {
        std::fs::write(&path, &damaged).unwrap();
        let s = open(&bucket, &data);
        s.sync().await.unwrap();
        assert_eq!(s.metrics().label_filter_builds.load(Relaxed), 1);
        assert_eq!(std::fs::read(&path).unwrap(), good);
        let res = s
            .series(&query(vec![Matcher::equal("team", "alpha")], 0, 2 * H))
            .await
            .unwrap();
        assert_eq!(res.series.len(), 20);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downsampled_blocks_serve_requested_aggregates_with_raw_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let src = tmp.path().join("src");
    // Raw data 0-4h in the bucket; a 5m block made from a raw 0-2h block.
    write_block(&bucket, "alpha", 2 * H, 4 * H);
    let early = write_block(&src, "alpha", 0, 2 * H);
    let ds = downsample_block(&src.join(early.to_string()), &bucket, RES_5M).unwrap();
    let store = open(&bucket, &tmp.path().join("data"));
    store.sync().await.unwrap();
    assert_eq!(store.blocks().len(), 2);
    let one = vec![Matcher::equal("i", "3")];

    // Raw only: the early hours are not there.
    let res = store.series(&query(one.clone(), 0, 4 * H)).await.unwrap();
    let raw_chunks = &res.series[0].chunks;
    assert!(raw_chunks.iter().all(|c| c.encoding == Encoding::Xor as u8));
    assert!(raw_chunks[0].min_time >= 2 * H);

    // Up to 5m: the 5m block for 0-2h, raw after it; only count and sum are served.
    let mut q = query(one.clone(), 0, 4 * H);
    q.max_resolution_window = RES_5M;
    q.aggregates = vec![AggrType::Count, AggrType::Sum];
    let res = store.series(&q).await.unwrap();
    assert_eq!(res.queried_blocks.len(), 2);
    assert_eq!(res.queried_blocks[0], ds.meta.ulid.to_string());
    let chunks = &res.series[0].chunks;
    let (aggr, raw): (Vec<_>, Vec<_>) = chunks
        .iter()
        .partition(|c| c.encoding == Encoding::Aggr as u8);
    assert!(!aggr.is_empty() && !raw.is_empty());
    for c in &aggr {
        let ac = AggrChunk::new(&c.data);
        assert!(ac.get_xor(AggrType::Count).is_ok() && ac.get_xor(AggrType::Sum).is_ok());
        assert!(ac.get(AggrType::Min).is_err() && ac.get(AggrType::Max).is_err());
        assert!(c.max_time < 2 * H);
    }
    // Downsampled blocks hold all five aggregates, so any may be asked for.
    q.aggregates = vec![AggrType::Counter, AggrType::Max];
    assert!(store.series(&q).await.is_ok());

    // PromQL through the store: a 5m average of the counter, and rate over 30m, close to raw.
    let s = store.clone();
    let m = one.clone();
    let (avg5, raw_avg, rate5, raw_rate) = tokio::task::spawn_blocking(move || {
        let plain = SelectHints::default();
        let rate = SelectHints {
            func: Some("rate".into()),
            range_ms: 30 * 60_000,
            ..SelectHints::default()
        };
        (
            s.select_at_resolution(&m, 0, 2 * H - 1, &plain, RES_5M)
                .unwrap(),
            s.select_at_resolution(&m, 0, 2 * H - 1, &plain, 0).unwrap(),
            s.select_at_resolution(&m, 0, 2 * H - 1, &rate, H).unwrap(),
            Queryable::select(&*s, &m, 0, 2 * H - 1, &rate).unwrap(),
        )
    })
    .await
    .unwrap();
    assert!(raw_avg.is_empty(), "no raw data before 2h in the bucket");
    let avg = &avg5[0].samples;
    assert_eq!(avg.len(), 24);
    // Series i=3 rises by 4 per 15 s sample: window k holds samples 20k..20k+19, average
    // 4 * (20k + 9.5).
    for (k, (&t, &v)) in avg.ts.iter().zip(&avg.val).enumerate() {
        assert_eq!(t, ((k as i64 + 1) * RES_5M - 1).min(2 * H - STEP));
        assert_eq!(v, 4.0 * (20.0 * k as f64 + 9.5));
    }
    // rate caps the resolution at range/2 = 15m, so 5m counter samples answer: monotonic,
    // ending at the true last raw value.
    let counter = &rate5[0].samples;
    assert!(counter.val.windows(2).all(|w| w[1] >= w[0]));
    assert_eq!(
        *counter.val.last().unwrap(),
        (2 * H / STEP - 1) as f64 * 4.0
    );
    assert!(raw_rate.is_empty());
}
