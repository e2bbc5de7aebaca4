//! Parquet blocks served by the bucket store: a bucket where some blocks are Parquet answers
//! as the same bucket all in TSDB form, through Series (decoded and framed), label names and
//! values, with external labels, replica labels dropped, limits and the three modes.

use std::path::Path;

use super::*;
use crate::block::reader::Block;
use crate::chunk::XorIterator;
use crate::parquet::write::{ConvertOptions, convert_block};

const H: i64 = 3_600_000;

/// Copies a bucket directory.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}

/// Converts block `id` of `bucket` to Parquet shards in its directory; without `keep_tsdb`
/// its index and chunks are removed.
fn convert_in_place(bucket: &Path, id: &str, keep_tsdb: bool) {
    let dir = bucket.join(id);
    let block = Block::open(&dir).unwrap();
    let opts = ConvertOptions {
        row_group_rows: 64,
        ..ConvertOptions::default()
    };
    convert_block(&block, &dir, &opts).unwrap();
    drop(block);
    if !keep_tsdb {
        std::fs::remove_file(dir.join("index")).unwrap();
        std::fs::remove_dir_all(dir.join("chunks")).unwrap();
    }
}

fn block_ids(bucket: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(bucket)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| Ulid::from_string(n).is_ok())
        .collect();
    ids.sort();
    ids
}

/// Labels and decoded samples (value bits) of an answer.
type Decoded = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;

fn decode(flat: Flat) -> Decoded {
    flat.into_iter()
        .map(|(labels, chunks)| {
            let mut samples = Vec::new();
            for (_, _, data) in chunks {
                let mut it = XorIterator::new(&data).unwrap();
                while let Some((t, v)) = it.next().unwrap() {
                    samples.push((t, v.to_bits()));
                }
            }
            (labels, samples)
        })
        .collect()
}

async fn wire(store: &BucketStore, q: &SeriesQuery) -> Decoded {
    let mut s = store
        .series_wire(q, WireFraming::for_request(0))
        .await
        .unwrap();
    let mut frames = Vec::new();
    while let Some(b) = s.next_batch().await.unwrap() {
        frames.extend_from_slice(&b.into_frames());
    }
    decode(flat_frames(&frames))
}

async fn decoded(store: &BucketStore, q: &SeriesQuery) -> Decoded {
    decode(flat_decoded(&store.series(q).await.unwrap().series))
}

fn queries() -> Vec<SeriesQuery> {
    let m = |t, n: &str, v: &str| Matcher::new(t, n, v).unwrap();
    let q = |matchers: Vec<Matcher>, min_time, max_time| SeriesQuery {
        min_time,
        max_time,
        matchers,
        ..SeriesQuery::default()
    };
    vec![
        q(vec![Matcher::equal("__name__", "m")], 0, 3 * H),
        q(vec![m(MatchType::Regexp, "i", "1.*")], H / 2, 2 * H + 7),
        q(
            vec![
                m(MatchType::NotEqual, "i", "3"),
                m(MatchType::Equal, "cluster", "own"),
            ],
            0,
            3 * H,
        ),
        q(vec![m(MatchType::Equal, "replica", "2")], 0, 3 * H),
        q(vec![m(MatchType::Regexp, "i", "2.")], 2 * H, 2 * H),
        SeriesQuery {
            without_replica_labels: vec!["replica".into()],
            ..q(vec![m(MatchType::Regexp, "__name__", ".+")], 0, 3 * H)
        },
        SeriesQuery {
            skip_chunks: true,
            ..q(vec![m(MatchType::Regexp, "i", "4.")], 0, 3 * H)
        },
    ]
}

/// A bucket of a plain pair of overlapping blocks and two labelled replicas.
fn write_bucket(dir: &Path) {
    write_block(dir, 0, 2 * H, 120);
    write_block(dir, H, 3 * H, 120);
    write_labelled_block(
        dir,
        (0, 2 * H),
        120,
        &[("replica", "1"), ("cluster", "own")],
    );
    write_labelled_block(dir, (H / 2, 3 * H), 120, &[("replica", "2")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_blocks_answer_as_their_tsdb_form() {
    let tmp = tempfile::tempdir().unwrap();
    let tsdb = tmp.path().join("tsdb");
    write_bucket(&tsdb);
    let ids = block_ids(&tsdb);
    let mixed = tmp.path().join("mixed");
    copy_dir(&tsdb, &mixed);
    // Every other block becomes Parquet only; the rest stay TSDB.
    for id in ids.iter().step_by(2) {
        convert_in_place(&mixed, id, false);
    }
    let reference = open(&tsdb, &tmp.path().join("d1"), StoreOptions::default());
    let store = open(&mixed, &tmp.path().join("d2"), StoreOptions::default());
    reference.sync().await.unwrap();
    let rep = store.sync().await.unwrap();
    assert_eq!((rep.loaded, rep.failed.len()), (4, 0), "{rep:?}");
    assert_eq!(store.parquet_blocks().len(), 2);
    assert_eq!(store.blocks().len(), 2);
    assert_eq!(store.label_sets().unwrap(), reference.label_sets().unwrap());
    for q in queries() {
        let want = decoded(&reference, &q).await;
        assert!(!want.is_empty(), "{q:?}");
        assert_eq!(decoded(&store, &q).await, want, "{q:?}");
        assert_eq!(wire(&store, &q).await, want, "wire {q:?}");
    }
    for matchers in [
        vec![],
        vec![Matcher::new(MatchType::Regexp, "i", "1.").unwrap()],
    ] {
        let lq = LabelsQuery {
            min_time: 0,
            max_time: 3 * H,
            matchers,
            ..LabelsQuery::default()
        };
        assert_eq!(
            store.label_names(&lq).await.unwrap(),
            reference.label_names(&lq).await.unwrap()
        );
        for name in ["i", "cluster", "replica", "__name__", "nope"] {
            assert_eq!(
                store.label_values(name, &lq).await.unwrap(),
                reference.label_values(name, &lq).await.unwrap(),
                "{name} {lq:?}"
            );
        }
    }
}

/// External labels that land at different places in different series (a label column with
/// gaps sorts before them) stream when the served order still holds, and are read whole
/// when setting one moves series (the other blocks of `write_bucket`): either way the answer
/// is the TSDB form's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_labels_landing_apart_keep_answers_equal_to_the_tsdb_form() {
    let tmp = tempfile::tempdir().unwrap();
    let tsdb = tmp.path().join("tsdb");
    write_labelled_block(&tsdb, (0, 2 * H), 120, &[("replica", "1"), ("tenant", "t")]);
    write_labelled_block(&tsdb, (H, 3 * H), 120, &[("replica", "2"), ("a", "first")]);
    let parquet = tmp.path().join("parquet");
    copy_dir(&tsdb, &parquet);
    for id in block_ids(&parquet) {
        convert_in_place(&parquet, &id, false);
    }
    let reference = open(&tsdb, &tmp.path().join("d1"), StoreOptions::default());
    let store = open(&parquet, &tmp.path().join("d2"), StoreOptions::default());
    reference.sync().await.unwrap();
    store.sync().await.unwrap();
    assert_eq!(store.parquet_blocks().len(), 2);
    // Vertical shards hash the served label set, external labels included.
    let sharded = (0..3).flat_map(|index| {
        [true, false].map(|by| SeriesQuery {
            shard: Some(ShardInfo {
                index,
                total: 3,
                by,
                labels: vec!["i".into(), "tenant".into()],
            }),
            ..queries()[0].clone()
        })
    });
    for q in queries().into_iter().chain(sharded) {
        let want = decoded(&reference, &q).await;
        assert_eq!(decoded(&store, &q).await, want, "{q:?}");
        assert_eq!(wire(&store, &q).await, want, "wire {q:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_choose_the_form_and_limits_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("b");
    write_bucket(&bucket);
    let ids = block_ids(&bucket);
    convert_in_place(&bucket, &ids[0], true);
    convert_in_place(&bucket, &ids[1], false);
    let with = |mode, data: &str| {
        open(
            &bucket,
            &tmp.path().join(data),
            StoreOptions {
                parquet: mode,
                limits: Limits {
                    series: 250,
                    ..Limits::default()
                },
                ..StoreOptions::default()
            },
        )
    };
    let auto = with(ParquetMode::Auto, "a");
    let rep = auto.sync().await.unwrap();
    assert_eq!((rep.loaded, auto.parquet_blocks().len()), (4, 1));
    let prefer = with(ParquetMode::Prefer, "p");
    let rep = prefer.sync().await.unwrap();
    assert_eq!((rep.loaded, prefer.parquet_blocks().len()), (4, 2));
    let off = with(ParquetMode::Off, "o");
    let rep = off.sync().await.unwrap();
    assert_eq!(
        (rep.loaded, rep.failed.len(), off.parquet_blocks().len()),
        (3, 1, 0)
    );
    // A second sync keeps what it has.
    let rep = prefer.sync().await.unwrap();
    assert_eq!((rep.loaded, rep.added, rep.dropped), (4, 0, 0));

    let q = SeriesQuery {
        min_time: 0,
        max_time: 3 * H,
        matchers: vec![
            Matcher::equal("__name__", "m"),
            Matcher::new(MatchType::Regexp, "i", "1.*").unwrap(),
        ],
        ..SeriesQuery::default()
    };
    let want = decoded(&auto, &q).await;
    assert!(!want.is_empty());
    assert_eq!(decoded(&prefer, &q).await, want);
    // Without the Parquet-only block (the second of the overlapping pair), the same series
    // lack its last hour.
    let partial = decoded(&off, &q).await;
    assert_eq!(partial.len(), want.len());
    assert_ne!(partial, want);
    // 300 series in a labelled block: over the limit of 250 in either form.
    let q = SeriesQuery {
        matchers: vec![Matcher::equal("zone", "z")],
        ..q
    };
    for s in [&auto, &prefer] {
        let err = s.series(&q).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::LimitExceeded {
                    limit: "series",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_parquet_block_is_skipped_and_the_rest_served() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("b");
    write_bucket(&bucket);
    let ids = block_ids(&bucket);
    convert_in_place(&bucket, &ids[0], false);
    convert_in_place(&bucket, &ids[1], false);
    let labels = bucket.join(&ids[1]).join(crate::parquet::labels_file(0));
    let raw = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &raw[..raw.len() - 3]).unwrap();
    let store = open(&bucket, &tmp.path().join("d"), StoreOptions::default());
    let rep = store.sync().await.unwrap();
    assert_eq!((rep.loaded, rep.failed.len()), (3, 1), "{rep:?}");
    assert!(rep.failed[0].1.contains("parquet"), "{:?}", rep.failed);
}
