//! The bucket store over a FILESYSTEM bucket of blocks the engine writes: it answers like
//! [`LocalBlocks`] over the same directory (overlapping blocks merged, long chunks re-cut), and
//! sync honours deletion marks, partial uploads and corrupt blocks.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::block::{BlockWriter, CutOptions, DeletionMark};
use crate::bucket::{Bucket, BucketConfig};
use crate::chunk::xor::xor_num_samples;
use crate::labels::{MatchType, Matcher};
use crate::query::{LocalBlocks, Queryable, SelectHints};

const STEP: i64 = 15_000;

mod parquet;

/// A block of 20 series `m{i="0".."19"}` with samples at `[from, to)` every 15 s; values
/// depend on time only, so overlapping blocks agree.
fn write_block(dir: &Path, from: i64, to: i64, samples_per_chunk: usize) -> Ulid {
    let opts = CutOptions {
        samples_per_chunk,
        max_bytes_before_append: None,
        ..CutOptions::default()
    };
    let mut w = BlockWriter::create(dir, opts).unwrap();
    let id = w.ulid();
    let mut names: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    names.sort();
    for i in names {
        let ts: Vec<i64> = (from / STEP..to / STEP).map(|k| k * STEP).collect();
        let val: Vec<f64> = ts.iter().map(|t| (*t / STEP) as f64 * 0.5).collect();
        let labels = Labels::from_pairs([("__name__", "m"), ("i", i.as_str())]);
        w.add_series(&labels, &ts, &val).unwrap();
    }
    w.finish(None).unwrap().unwrap();
    id
}

/// Two blocks of the same 20 series overlapping by an hour, `[0, 2 h)` and `[1 h, 3 h)`: each
/// series and each value is in both.
fn write_overlapping_pair(dir: &Path) {
    let h = 3_600_000;
    write_block(dir, 0, 2 * h, 120);
    write_block(dir, h, 3 * h, 120);
}

fn open(dir: &Path, data: &Path, opts: StoreOptions) -> Arc<BucketStore> {
    let cfg = BucketConfig::parse(&format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.display()
    ))
    .unwrap();
    Arc::new(BucketStore::open(Bucket::open(&cfg).unwrap(), data, opts).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_like_local_blocks_with_overlaps_merged_and_chunks_recut() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let h = 3_600_000;
    // One block with 480-sample chunks, one overlapping it by an hour.
    write_block(&bucket, 0, 2 * h, 1000);
    write_block(&bucket, h, 3 * h, 120);
    let store = open(&bucket, &tmp.path().join("data"), StoreOptions::default());
    assert!(matches!(store.label_sets(), Err(StoreError::NotReady)));
    let rep = store.sync().await.unwrap();
    assert_eq!((rep.loaded, rep.added), (2, 2));

    let q = SeriesQuery {
        min_time: 0,
        max_time: 3 * h,
        matchers: vec![Matcher::new(MatchType::Regexp, "i", "1.*").unwrap()],
        ..SeriesQuery::default()
    };
    let res = store.series(&q).await.unwrap();
    assert_eq!(res.series.len(), 11);
    for s in &res.series {
        assert!(
            s.chunks
                .iter()
                .all(|c| xor_num_samples(&c.data).unwrap() <= 120)
        );
        assert!(s.chunks.windows(2).all(|w| w[0].max_time < w[1].min_time));
    }

    let local = LocalBlocks::open(&bucket).unwrap();
    let cases = [
        (vec![Matcher::equal("__name__", "m")], 0, 3 * h),
        (
            vec![Matcher::new(MatchType::NotEqual, "i", "3").unwrap()],
            h / 2 + 7,
            2 * h + 11,
        ),
        (
            vec![Matcher::new(MatchType::NotRegexp, "i", "1.*").unwrap()],
            2 * h,
            2 * h,
        ),
    ];
    for (ms, mint, maxt) in cases {
        let s = store.clone();
        let m2 = ms.clone();
        let got = tokio::task::spawn_blocking(move || {
            s.select(&m2, mint, maxt, &SelectHints::default()).unwrap()
        })
        .await
        .unwrap();
        let want = local
            .select(&ms, mint, maxt, &SelectHints::default())
            .unwrap();
        assert_eq!(got, want, "{ms:?} {mint} {maxt}");
        assert!(!got.is_empty());
    }
    let s = store.clone();
    let names =
        tokio::task::spawn_blocking(move || Queryable::label_names(&*s, &[], 0, 3 * h).unwrap())
            .await
            .unwrap();
    assert_eq!(names, vec!["__name__", "i"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_honours_deletion_marks_partial_uploads_and_corrupt_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let h = 3_600_000;
    let a = write_block(&bucket, 0, 2 * h, 120);
    let b = write_block(&bucket, 2 * h, 4 * h, 120);
    let data = tmp.path().join("data");
    let store = open(&bucket, &data, StoreOptions::default());
    assert_eq!(store.sync().await.unwrap().loaded, 2);
    assert!(
        data.join(a.to_string())
            .join(header::HEADER_FILENAME)
            .is_file()
    );

    // A fresh mark is within the 24 h delay: still served. An old one: dropped.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    DeletionMark::new(a, now, "")
        .write(&bucket.join(a.to_string()))
        .unwrap();
    assert_eq!(store.sync().await.unwrap().loaded, 2);
    DeletionMark::new(a, now - 25 * 3600, "")
        .write(&bucket.join(a.to_string()))
        .unwrap();
    let rep = store.sync().await.unwrap();
    assert_eq!((rep.loaded, rep.dropped), (1, 1));
    assert!(
        !data.join(a.to_string()).exists(),
        "header of a dropped block removed"
    );

    // A partial upload and a block with a corrupt meta.json and a truncated index.
    let partial = Ulid::new().to_string();
    std::fs::create_dir_all(bucket.join(&partial).join("chunks")).unwrap();
    std::fs::write(bucket.join(&partial).join("chunks/000001"), b"x").unwrap();
    let c = write_block(&bucket, 4 * h, 5 * h, 120);
    std::fs::write(bucket.join(c.to_string()).join("meta.json"), b"{not json").unwrap();
    let d = write_block(&bucket, 5 * h, 6 * h, 120);
    let idx = bucket.join(d.to_string()).join("index");
    let bytes = std::fs::read(&idx).unwrap();
    std::fs::write(&idx, &bytes[..bytes.len() - 10]).unwrap();
    let rep = store.sync().await.unwrap();
    assert_eq!(
        (rep.loaded, rep.partial, rep.failed.len()),
        (1, 1, 2),
        "{rep:?}"
    );
    assert!(
        rep.failed
            .iter()
            .any(|(id, why)| *id == c.to_string() && why.contains("JSON")),
        "{rep:?}"
    );
    assert!(
        rep.failed
            .iter()
            .any(|(id, why)| *id == d.to_string() && why.contains("TOC")),
        "{rep:?}"
    );

    // A deleted block disappears; a new one appears.
    std::fs::remove_dir_all(bucket.join(b.to_string())).unwrap();
    std::fs::remove_dir_all(bucket.join(c.to_string())).unwrap();
    std::fs::remove_dir_all(bucket.join(d.to_string())).unwrap();
    let e = write_block(&bucket, 6 * h, 7 * h, 120);
    let rep = store.sync().await.unwrap();
    assert_eq!((rep.loaded, rep.added, rep.dropped), (1, 1, 1), "{rep:?}");
    assert_eq!(store.blocks()[0].meta.ulid, e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_requests_naming_the_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    write_block(&bucket, 0, 7_200_000, 120);
    let q = SeriesQuery {
        min_time: 0,
        max_time: 7_200_000,
        matchers: vec![Matcher::equal("__name__", "m")],
        ..SeriesQuery::default()
    };
    for (limits, name) in [
        (
            Limits {
                series: 19,
                ..Limits::default()
            },
            "series",
        ),
        (
            Limits {
                samples: 20 * 4 * 120 - 1,
                ..Limits::default()
            },
            "samples",
        ),
        (
            Limits {
                bytes: 1000,
                ..Limits::default()
            },
            "bytes",
        ),
    ] {
        let opts = StoreOptions {
            limits,
            ..StoreOptions::default()
        };
        let store = open(&bucket, &tmp.path().join(name), opts);
        store.sync().await.unwrap();
        match store.series(&q).await {
            Err(e @ StoreError::LimitExceeded { limit, .. }) => {
                assert_eq!(limit, name);
                assert!(e.to_string().contains(&format!("{name} limit")), "{e}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // At the limit exactly, the request passes.
    let opts = StoreOptions {
        limits: Limits {
            series: 20,
            samples: 20 * 4 * 120,
            bytes: 0,
        },
        ..StoreOptions::default()
    };
    let store = open(&bucket, &tmp.path().join("ok"), opts);
    store.sync().await.unwrap();
    assert_eq!(store.series(&q).await.unwrap().series.len(), 20);
}

/// A block of `n` series `big{i="00000".."n"}`, two hours at 15 s (two chunks each).
fn write_wide_block(dir: &Path, n: usize) {
    let mut w = BlockWriter::create(dir, CutOptions::default()).unwrap();
    let ts: Vec<i64> = (0..480).map(|k| k * STEP).collect();
    for i in 0..n {
        let val: Vec<f64> = ts.iter().map(|t| (*t / STEP + i as i64) as f64).collect();
        let name = format!("{i:05}");
        let labels = Labels::from_pairs([("__name__", "big"), ("i", name.as_str())]);
        w.add_series(&labels, &ts, &val).unwrap();
    }
    w.finish(None).unwrap().unwrap();
}

async fn streams_everything_within_its_budgets(io: crate::shard::IoChoice) {
    use std::sync::atomic::Ordering::Relaxed;
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let n = 40_000;
    write_wide_block(&bucket, n);
    let opts = StoreOptions {
        index_cache_bytes: 256 * 1024,
        stream_buffer_bytes: 256 * 1024,
        runtime: crate::shard::RuntimeConfig {
            cores: 2,
            io,
            ..Default::default()
        },
        ..StoreOptions::default()
    };
    let store = open(&bucket, &tmp.path().join("data"), opts);
    store.sync().await.unwrap();
    let chunk_bytes: u64 = std::fs::read_dir(
        bucket
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("chunks"),
    )
    .unwrap()
    .map(|e| e.unwrap().metadata().unwrap().len())
    .sum();
    let q = SeriesQuery {
        min_time: 0,
        max_time: i64::MAX,
        matchers: vec![Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()],
        ..SeriesQuery::default()
    };
    let mut stream = store.series_stream(&q).await.unwrap();
    let first = stream.next_batch().await.unwrap().unwrap();
    // The cores stop once their bounded channels are full: little has been read yet.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let read_early = store.bucket().stats().bytes.load(Relaxed);
    assert!(
        read_early < chunk_bytes / 4,
        "read {read_early} of {chunk_bytes} chunk bytes before the reader asked for more"
    );
    let mut total = first.len();
    let mut prev = first.series(first.len() - 1).labels;
    let mut max_batch = first.bytes();
    while let Some(b) = stream.next_batch().await.unwrap() {
        let s0 = b.series(0).labels;
        assert!(prev < s0, "batches are sorted");
        prev = b.series(b.len() - 1).labels;
        total += b.len();
        max_batch = max_batch.max(b.bytes());
        let c = store.cache_stats();
        assert!(
            c.bytes <= c.budget,
            "cache {} over budget {}",
            c.bytes,
            c.budget
        );
    }
    assert_eq!(total, n);
    assert!(max_batch <= 512 * 1024, "a batch weighed {max_batch} bytes");
    assert!(store.bucket().stats().bytes.load(Relaxed) >= chunk_bytes / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_everything_within_its_budgets_io_uring() {
    streams_everything_within_its_budgets(crate::shard::IoChoice::IoUring).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_everything_within_its_budgets_pread() {
    streams_everything_within_its_budgets(crate::shard::IoChoice::Pread).await;
}

/// Chunks read through the page cache are the chunks read straight from the segment files,
/// whether the pages come from the bucket, from the cache, or were evicted in between; records
/// cut by a page boundary are joined from the two pages.
async fn chunk_pages_serve_what_direct_reads_serve(io: crate::shard::IoChoice) {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    write_wide_block(&bucket, 3_000);
    let with_cache = |name: &str, bytes: u64| {
        let opts = StoreOptions {
            chunk_cache_bytes: bytes,
            runtime: crate::shard::RuntimeConfig {
                cores: 2,
                io,
                ..Default::default()
            },
            ..StoreOptions::default()
        };
        open(&bucket, &tmp.path().join(name), opts)
    };
    let (direct, tiny, ample) = (
        with_cache("direct", 0),
        with_cache("tiny", 64 * 1024),
        with_cache("ample", 64 << 20),
    );
    for s in [&direct, &tiny, &ample] {
        s.sync().await.unwrap();
    }
    let selections = [
        (".+", 0, i64::MAX),
        ("001.*", 0, i64::MAX),
        ("0[0-2]1[0-4].*", 3_600_000, 3_600_000),
        ("02.*5", 1_000_000, 6_000_000),
    ];
    let select = |re: &str, min_time, max_time| SeriesQuery {
        min_time,
        max_time,
        matchers: vec![Matcher::new(MatchType::Regexp, "i", re).unwrap()],
        ..SeriesQuery::default()
    };
    for round in 0..2 {
        for (re, min_time, max_time) in selections {
            let q = select(re, min_time, max_time);
            let want = direct.series(&q).await.unwrap().series;
            assert!(!want.is_empty(), "{re}");
            for s in [&tiny, &ample] {
                let got = s.series(&q).await.unwrap().series;
                assert!(got == want, "round {round}, i=~{re:?}: answers differ");
            }
        }
    }
    assert_eq!(
        direct.chunk_cache_stats().hits + direct.chunk_cache_stats().misses,
        0
    );
    let t = tiny.chunk_cache_stats();
    assert!(t.bytes <= t.budget && t.evictions > 0, "{t:?}");
    let a = ample.chunk_cache_stats();
    assert!(a.hits > a.misses && a.evictions == 0, "{a:?}");
    // The second round read no chunk page from the bucket.
    let read_before = ample
        .bucket()
        .stats()
        .bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    ample.series(&select("001.*", 0, i64::MAX)).await.unwrap();
    let read = ample
        .bucket()
        .stats()
        .bytes
        .load(std::sync::atomic::Ordering::Relaxed)
        - read_before;
    let chunk_pages = ample.chunk_cache_stats().bytes;
    assert!(
        read < chunk_pages / 4,
        "read {read} bytes again with {chunk_pages} cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_pages_serve_what_direct_reads_serve_io_uring() {
    chunk_pages_serve_what_direct_reads_serve(crate::shard::IoChoice::IoUring).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_pages_serve_what_direct_reads_serve_pread() {
    chunk_pages_serve_what_direct_reads_serve(crate::shard::IoChoice::Pread).await;
}

/// A block of series `m{i, zone}` (with a `cluster` label on some, which an external label of
/// the same name overrides) at `[from, to)` every 15 s, with external labels `ext`.
fn write_labelled_block(
    dir: &Path,
    (from, to): (i64, i64),
    samples_per_chunk: usize,
    ext: &[(&str, &str)],
) {
    let opts = CutOptions {
        samples_per_chunk,
        max_bytes_before_append: None,
        ..CutOptions::default()
    };
    let mut w = BlockWriter::create(dir, opts).unwrap();
    let mut all: Vec<Labels> = (0..300)
        .map(|i| {
            let i = i.to_string();
            let mut l = vec![("__name__", "m"), ("i", i.as_str()), ("zone", "z")];
            if i.ends_with('7') {
                l.push(("cluster", "own"));
            }
            Labels::from_pairs(l)
        })
        .collect();
    all.sort();
    for labels in all {
        let ts: Vec<i64> = (from / STEP..to / STEP).map(|k| k * STEP).collect();
        let val: Vec<f64> = ts.iter().map(|t| (*t / STEP) as f64 * 0.25).collect();
        w.add_series(&labels, &ts, &val).unwrap();
    }
    let thanos = crate::block::ThanosMeta {
        labels: ext
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        source: "test".into(),
        ..Default::default()
    };
    w.finish(Some(thanos)).unwrap().unwrap();
}

/// A decoded answer in wire terms: labels, and per chunk its time range and payload.
type Flat = Vec<(Vec<(String, String)>, Vec<(i64, i64, Vec<u8>)>)>;

fn flat_decoded(series: &[StoreSeries]) -> Flat {
    series
        .iter()
        .map(|s| {
            (
                s.labels
                    .iter()
                    .map(|l| (l.name.to_string(), l.value.to_string()))
                    .collect(),
                s.chunks
                    .iter()
                    .map(|c| (c.min_time, c.max_time, c.data.to_vec()))
                    .collect(),
            )
        })
        .collect()
}

/// The series of StoreAPI frames, decoded with prost; chunk hashes are checked on the way.
fn flat_frames(mut b: &[u8]) -> Flat {
    use gauntlet_proto::thanos::{self, series_response::Result as R};
    use prost::Message;
    let mut out = Vec::new();
    let mut add = |s: thanos::Series| {
        let chunks = s
            .chunks
            .iter()
            .map(|c| {
                let raw = c.raw.as_ref().expect("raw chunk");
                assert_eq!(raw.hash, xxhash_rust::xxh64::xxh64(&raw.data, 0));
                (c.min_time, c.max_time, raw.data.to_vec())
            })
            .collect();
        let labels = s.labels.into_iter().map(|l| (l.name, l.value)).collect();
        out.push((labels, chunks));
    };
    while !b.is_empty() {
        assert_eq!(b[0], 0);
        let n = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
        match thanos::SeriesResponse::decode(&b[5..5 + n]).unwrap().result {
            Some(R::Series(s)) => add(s),
            Some(R::Batch(batch)) => batch.series.into_iter().for_each(&mut add),
            other => panic!("unexpected {other:?}"),
        }
        b = &b[5 + n..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_answers_are_the_decoded_answers_framed() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let h = 3_600_000;
    // Two replicas of one cluster (the same series, overlapping in time, one with long
    // chunks), a later block of the same replica, and a block of another cluster.
    write_labelled_block(
        &bucket,
        (0, 2 * h),
        120,
        &[("cluster", "c1"), ("replica", "a")],
    );
    write_labelled_block(
        &bucket,
        (h, 3 * h),
        500,
        &[("cluster", "c1"), ("replica", "b")],
    );
    write_labelled_block(
        &bucket,
        (2 * h, 4 * h),
        120,
        &[("cluster", "c1"), ("replica", "a")],
    );
    write_labelled_block(
        &bucket,
        (0, 4 * h),
        120,
        &[("cluster", "c2"), ("replica", "a")],
    );
    let opts = StoreOptions {
        // Small batches: answers cross many batch boundaries.
        stream_buffer_bytes: 1 << 20,
        ..StoreOptions::default()
    };
    let store = open(&bucket, &tmp.path().join("data"), opts);
    store.sync().await.unwrap();
    let all = vec![Matcher::equal("__name__", "m")];
    let base = SeriesQuery {
        min_time: 0,
        max_time: 4 * h,
        matchers: all.clone(),
        ..SeriesQuery::default()
    };
    let queries = [
        base.clone(),
        SeriesQuery {
            without_replica_labels: vec!["replica".into()],
            ..base.clone()
        },
        SeriesQuery {
            min_time: h + 7,
            max_time: 2 * h - 11,
            matchers: vec![Matcher::new(MatchType::Regexp, "i", "1.*").unwrap()],
            ..base.clone()
        },
        SeriesQuery {
            shard: Some(ShardInfo {
                index: 1,
                total: 3,
                by: true,
                labels: vec!["i".into()],
            }),
            ..base.clone()
        },
        SeriesQuery {
            limit: 250,
            ..base.clone()
        },
        SeriesQuery {
            skip_chunks: true,
            without_replica_labels: vec!["replica".into(), "cluster".into()],
            ..base.clone()
        },
    ];
    for q in &queries {
        let want = flat_decoded(&store.series(q).await.unwrap().series);
        assert!(!want.is_empty(), "{q:?}");
        for per in [1, 7, 64] {
            let mut s = store
                .series_wire(q, WireFraming::for_request(per))
                .await
                .unwrap();
            let mut frames = Vec::new();
            let mut n = 0;
            while let Some(b) = s.next_batch().await.unwrap() {
                n += b.len();
                frames.extend(b.into_frames());
            }
            let got = flat_frames(&frames);
            assert_eq!(n, got.len());
            assert_eq!(got, want, "{q:?}, {per} per frame");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_series_of_every_size_are_framed_whole() {
    // Series whose length takes one, two and three bytes, with and without chunks, in
    // batches that close frames of every size.
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let mut w = BlockWriter::create(&bucket, CutOptions::default()).unwrap();
    let mut all: Vec<(Labels, usize)> = Vec::new();
    for (k, len) in [1usize, 40, 90, 127, 128, 300, 16_250, 16_400, 40_000, 5, 2]
        .into_iter()
        .enumerate()
    {
        for samples in [1usize, 500] {
            let v = format!("{k:02}{}", "x".repeat(len));
            let labels = Labels::from_pairs([
                ("__name__", "m"),
                ("s", samples.to_string().as_str()),
                ("v", v.as_str()),
            ]);
            all.push((labels, samples));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (labels, samples) in &all {
        let ts: Vec<i64> = (0..*samples as i64).map(|k| k * STEP).collect();
        let val: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
        w.add_series(labels, &ts, &val).unwrap();
    }
    w.finish(None).unwrap().unwrap();
    let store = open(&bucket, &tmp.path().join("data"), StoreOptions::default());
    store.sync().await.unwrap();
    for skip_chunks in [false, true] {
        let q = SeriesQuery {
            min_time: 0,
            max_time: 500 * STEP,
            matchers: vec![Matcher::equal("__name__", "m")],
            skip_chunks,
            ..SeriesQuery::default()
        };
        let want = flat_decoded(&store.series(&q).await.unwrap().series);
        assert_eq!(want.len(), all.len());
        for per in [1, 3, 64] {
            let mut s = store
                .series_wire(&q, WireFraming::for_request(per))
                .await
                .unwrap();
            let mut frames = Vec::new();
            while let Some(b) = s.next_batch().await.unwrap() {
                frames.extend_from_slice(&b.into_frames());
            }
            assert_eq!(flat_frames(&frames), want, "{per} per frame");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_another_block_holds_whole_are_not_served() {
    // A compaction uploaded its block and stopped before marking the sources: serving both
    // would answer every sample twice.
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let h = 3_600_000;
    let a = write_block(&bucket, 0, 2 * h, 120);
    let b = write_block(&bucket, 2 * h, 4 * h, 120);
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let dirs = [bucket.join(a.to_string()), bucket.join(b.to_string())];
    let (meta, _) =
        crate::compact::merge_blocks(&dirs, &bucket, &crate::compact::MergeOptions::default())
            .unwrap();
    let merged = meta.unwrap().ulid;
    let store = open(&bucket, &tmp.path().join("data"), StoreOptions::default());
    let rep = store.sync().await.unwrap();
    assert_eq!(rep.loaded, 1, "{rep:?}");
    let served: Vec<Ulid> = store.blocks().iter().map(|b| b.meta.ulid).collect();
    assert_eq!(served, vec![merged]);
}

/// An object store that answers like the directory it wraps, each request after `delay`, and
/// counts the most requests it had in flight at once: object storage's latency, on loopback.
#[derive(Debug)]
struct Slow {
    inner: object_store::local::LocalFileSystem,
    delay: std::time::Duration,
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Display for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slow({})", self.inner)
    }
}

impl Slow {
    async fn wait(&self) -> impl Drop + '_ {
        use std::sync::atomic::Ordering::SeqCst;
        struct Leave<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, SeqCst);
            }
        }
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(self.delay).await;
        Leave(&self.in_flight)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Slow {
    async fn put_opts(
        &self,
        location: &object_store::path::Path,
        payload: object_store::PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &object_store::path::Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &object_store::path::Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        let _g = self.wait().await;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: futures::stream::BoxStream<
            'static,
            object_store::Result<object_store::path::Path>,
        >,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&object_store::path::Path>,
    ) -> object_store::Result<object_store::ListResult> {
        let _g = self.wait().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &object_store::path::Path,
        to: &object_store::path::Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_loads_blocks_concurrently_and_as_one_at_a_time_does() {
    use std::sync::atomic::Ordering::SeqCst;
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let h = 3_600_000;
    for k in 0..12 {
        write_block(&bucket, k * 2 * h, (k * 2 + 2) * h, 120);
    }
    // One partial upload and one block marked for deletion long ago, as a sync meets them.
    std::fs::create_dir_all(bucket.join("01J00000000000000000000000")).unwrap();
    let marked = write_block(&bucket, 30 * h, 32 * h, 120);
    DeletionMark::new(marked, 1_000, "")
        .write(&bucket.join(marked.to_string()))
        .unwrap();
    let q = SeriesQuery {
        min_time: 0,
        max_time: i64::MAX,
        matchers: vec![Matcher::new(MatchType::Equal, "__name__", "m").unwrap()],
        ..SeriesQuery::default()
    };
    let mut answers = Vec::new();
    for concurrency in [1, 8] {
        let slow = Arc::new(Slow {
            inner: object_store::local::LocalFileSystem::new_with_prefix(&bucket).unwrap(),
            delay: std::time::Duration::from_millis(5),
            in_flight: Default::default(),
            most: Default::default(),
        });
        let opts = StoreOptions {
            block_sync_concurrency: concurrency,
            ..StoreOptions::default()
        };
        let data = tmp.path().join(format!("data-{concurrency}"));
        let store = Arc::new(
            BucketStore::open(Bucket::from_store(slow.clone(), "slow".into()), &data, opts)
                .unwrap(),
        );
        let rep = store.sync().await.unwrap();
        assert_eq!((rep.loaded, rep.added, rep.partial), (12, 12, 1), "{rep:?}");
        assert!(rep.failed.is_empty(), "{rep:?}");
        let most = slow.most.load(SeqCst);
        if concurrency == 1 {
            // One block at a time: only a block's own ranged reads overlap.
            assert!(most <= 2, "{most} requests at once");
        } else {
            assert!(most >= 4, "{most} requests at once");
        }
        // A second sync keeps what it has.
        let rep = store.sync().await.unwrap();
        assert_eq!((rep.loaded, rep.added, rep.dropped), (12, 0, 0), "{rep:?}");
        let r = store.series(&q).await.unwrap();
        answers.push(
            r.series
                .iter()
                .map(|s| (s.labels.clone(), s.chunks.len()))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(answers[0].len(), 20);
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_are_checked_when_read_and_served_from_the_cache_after() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let id = write_block(&bucket, 0, 2 * 3_600_000, 120);
    let data = tmp.path().join("data");
    let store = open(&bucket, &data, StoreOptions::default());
    store.sync().await.unwrap();
    let q = SeriesQuery {
        min_time: 0,
        max_time: i64::MAX,
        matchers: vec![Matcher::new(MatchType::Regexp, "i", "1.*").unwrap()],
        ..SeriesQuery::default()
    };
    let first = store.series(&q).await.unwrap().series.len();
    // "1" and "10".."19".
    assert_eq!(first, 11);
    // The same answer again, the windows now taken from the cache.
    assert_eq!(store.series(&q).await.unwrap().series.len(), first);
    // The index object changes under the header: a value in the postings offset table.
    let index = bucket.join(id.to_string()).join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    let toc = *crate::index::IndexReader::from_bytes(bytes.clone(), index.clone())
        .unwrap()
        .toc();
    // The entry of `i="15"`: 2 keys, "i", "15"; "15" becomes "14".
    let table = &bytes[toc.postings_offset_table as usize..];
    let entry = table
        .windows(6)
        .position(|w| w == b"\x02\x01i\x0215")
        .unwrap();
    bytes[toc.postings_offset_table as usize + entry + 5] = b'4';
    std::fs::write(&index, &bytes).unwrap();
    // A store that reads the window again (the header kept from before) refuses it: the
    // block is left out of the answer with a warning that names the mismatch.
    let fresh = open(&bucket, &data, StoreOptions::default());
    fresh.sync().await.unwrap();
    let r = fresh.series(&q).await.unwrap();
    assert!(r.series.is_empty());
    assert!(
        r.warnings.iter().any(|w| w.contains("CRC mismatch")),
        "{:?}",
        r.warnings
    );
    // The store that read it before the change keeps answering from what it checked.
    assert_eq!(store.series(&q).await.unwrap().series.len(), first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_values_and_names_with_matchers_count_each_value_once() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let h = 3_600_000;
    // Every value comes twice.
    write_overlapping_pair(&bucket);
    let store = open(&bucket, &tmp.path().join("data"), StoreOptions::default());
    store.sync().await.unwrap();
    let q = |m: Matcher| LabelsQuery {
        min_time: 0,
        max_time: 3 * h,
        matchers: vec![m],
        ..LabelsQuery::default()
    };
    let mut want: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    want.sort();
    let all = Matcher::new(MatchType::Equal, "__name__", "m").unwrap();
    assert_eq!(
        store.label_values("i", &q(all.clone())).await.unwrap(),
        want
    );
    let some = Matcher::new(MatchType::Regexp, "i", "1.?").unwrap();
    let ones: Vec<String> = want
        .iter()
        .filter(|v| v.starts_with('1'))
        .cloned()
        .collect();
    assert_eq!(
        store.label_values("i", &q(some.clone())).await.unwrap(),
        ones
    );
    assert_eq!(
        store.label_values("__name__", &q(some)).await.unwrap(),
        vec!["m".to_string()]
    );
    assert!(
        store
            .label_values("absent", &q(all.clone()))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.label_names(&q(all.clone())).await.unwrap(),
        vec!["__name__".to_string(), "i".to_string()]
    );
    let limited = LabelsQuery { limit: 3, ..q(all) };
    assert_eq!(store.label_values("i", &limited).await.unwrap(), want[..3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_over_the_series_limit_is_refused_before_any_series_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let h = 3_600_000;
    write_overlapping_pair(&bucket);
    let q = SeriesQuery {
        min_time: 0,
        max_time: 3 * h,
        matchers: vec![Matcher::new(MatchType::Equal, "__name__", "m").unwrap()],
        ..SeriesQuery::default()
    };
    let with_limit = |series: u64, name: &str| {
        let opts = StoreOptions {
            limits: Limits {
                series,
                ..Limits::default()
            },
            ..StoreOptions::default()
        };
        open(&bucket, &tmp.path().join(name), opts)
    };
    // One block alone holds 20 > 19: refused when the stream is opened, no batch read.
    let store = with_limit(19, "tight");
    store.sync().await.unwrap();
    match store.series_stream(&q).await {
        Err(StoreError::LimitExceeded { limit, value, max }) => {
            assert_eq!((limit, value, max), ("series", 20, 19));
            let refusals = &store.metrics().limit_refusals;
            assert_eq!(refusals.load(std::sync::atomic::Ordering::Relaxed), 1);
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a stream over the limit was opened"),
    }
    // The limit counts each block's series as it serves them, 40 here, as Thanos's store
    // counts each block's postings: at 40 the request passes (20 series after the merge), at
    // 39 it is refused while streaming, as no block alone is over it.
    let store = with_limit(40, "exact");
    store.sync().await.unwrap();
    assert_eq!(store.series(&q).await.unwrap().series.len(), 20);
    let store = with_limit(39, "streamed");
    store.sync().await.unwrap();
    let mut stream = store.series_stream(&q).await.unwrap();
    let mut refused = false;
    loop {
        match stream.next_batch().await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(StoreError::LimitExceeded { limit, .. }) => {
                assert_eq!(limit, "series");
                refused = true;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(refused);
}

/// A sidecar's view: blocks without a Thanos section served with the external labels given,
/// and series held in memory (Prometheus's head) merged into the answer by labels, decoded
/// and as frames alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_external_labels_and_series_in_memory_join_the_blocks_answer() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let h = 3_600_000;
    write_block(&bucket, 0, 2 * h, 120);
    let ext = Labels::from_pairs([("replica", "r")]);
    let opts = StoreOptions {
        external_labels: Some(ext.clone()),
        stream_buffer_bytes: 1 << 20,
        ..StoreOptions::default()
    };
    let store = open(&bucket, &tmp.path().join("data"), opts);
    store.sync().await.unwrap();

    // The head: series "1" (also in the block) and "100" (only here), after the block.
    let head_chunk = |from: i64| {
        let ts: Vec<i64> = (0..10).map(|k| from + k * STEP).collect();
        let val: Vec<f64> = ts.iter().map(|t| (*t / STEP) as f64 * 0.5).collect();
        RawChunk {
            min_time: ts[0],
            max_time: ts[9],
            encoding: crate::chunk::Encoding::Xor as u8,
            data: crate::chunk::encode_xor(&ts, &val).into(),
        }
    };
    let head = |skip_chunks: bool| -> Vec<StoreSeries> {
        ["1", "100"]
            .iter()
            .map(|i| StoreSeries {
                labels: Labels::from_pairs([("__name__", "m"), ("i", i), ("replica", "r")]),
                chunks: if skip_chunks {
                    Vec::new()
                } else {
                    vec![head_chunk(2 * h)]
                },
            })
            .collect()
    };
    let q = SeriesQuery {
        min_time: 0,
        max_time: 3 * h,
        matchers: vec![Matcher::equal("__name__", "m")],
        ..SeriesQuery::default()
    };
    for skip_chunks in [false, true] {
        let q = SeriesQuery {
            skip_chunks,
            ..q.clone()
        };
        let mut decoded = store.series_stream(&q).await.unwrap();
        decoded.add_sorted(head(skip_chunks));
        let mut series = Vec::new();
        while let Some(b) = decoded.next_batch().await.unwrap() {
            series.extend((0..b.len()).map(|i| b.series(i)));
        }
        // 20 series of the block, one more from the head, in label order.
        assert_eq!(series.len(), 21);
        assert!(series.windows(2).all(|w| w[0].labels < w[1].labels));
        assert!(series.iter().all(|s| s.labels.get("replica") == Some("r")));
        let one = series
            .iter()
            .find(|s| s.labels.get("i") == Some("1"))
            .unwrap();
        let hundred = series
            .iter()
            .find(|s| s.labels.get("i") == Some("100"))
            .unwrap();
        if skip_chunks {
            assert!(one.chunks.is_empty() && hundred.chunks.is_empty());
        } else {
            // The block's chunks, then the head's.
            assert_eq!(one.chunks.len(), 2 * h as usize / STEP as usize / 120 + 1);
            assert_eq!(one.chunks.last().unwrap(), &head_chunk(2 * h));
            assert!(one.chunks.windows(2).all(|w| w[0].max_time < w[1].min_time));
            assert_eq!(hundred.chunks, vec![head_chunk(2 * h)]);
        }

        let mut wire = store
            .series_wire(&q, WireFraming::for_request(7))
            .await
            .unwrap();
        wire.add_sorted(head(skip_chunks));
        let mut frames = Vec::new();
        while let Some(b) = wire.next_batch().await.unwrap() {
            frames.extend(b.into_frames());
        }
        assert_eq!(flat_frames(&frames), flat_decoded(&series));
    }

    // A matcher on the given external label is decided against it.
    let other = SeriesQuery {
        matchers: vec![
            Matcher::equal("__name__", "m"),
            Matcher::equal("replica", "other"),
        ],
        ..q.clone()
    };
    assert!(store.series(&other).await.unwrap().series.is_empty());
}
