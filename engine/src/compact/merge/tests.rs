use super::*;
use crate::block::{Block, BlockWriter, CutOptions};
use crate::labels::Labels;

type Dump = Vec<(String, Vec<(i64, u64)>)>;

/// Every series of the block in `dir` with its samples (values as bits, so NaNs compare).
fn dump(dir: &Path) -> Dump {
    let b = Block::open(dir).unwrap();
    let mut refs = Vec::new();
    b.index().all_postings(&mut refs).unwrap();
    let (mut labels, mut chunks) = (Vec::new(), Vec::new());
    refs.iter()
        .map(|&r| {
            b.series(r, &mut labels, &mut chunks).unwrap();
            let mut out = SampleBatch::default();
            b.read_samples(r, &chunks, i64::MIN, i64::MAX, &mut out)
                .unwrap();
            let l = Labels::from_sorted(labels.clone()).to_string();
            (
                l,
                out.ts
                    .iter()
                    .zip(&out.val)
                    .map(|(&t, v)| (t, v.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

/// Writes a block of `series` (name, [(t, v)]) under `parent`; returns its directory.
fn block(parent: &Path, series: &[(&str, Vec<(i64, f64)>)]) -> PathBuf {
    let mut series: Vec<_> = series.to_vec();
    series.sort_by(|a, b| a.0.cmp(b.0));
    let mut w = BlockWriter::create(parent, CutOptions::default()).unwrap();
    for (name, samples) in &series {
        let l = Labels::from_pairs([("__name__", "m"), ("s", *name)]);
        let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
        let val: Vec<f64> = samples.iter().map(|s| s.1).collect();
        w.add_series(&l, &ts, &val).unwrap();
    }
    let meta = w.finish(None).unwrap().unwrap();
    parent.join(meta.ulid.to_string())
}

fn samples(from: i64, to: i64, step: i64, v: impl Fn(i64) -> f64) -> Vec<(i64, f64)> {
    (from..to)
        .step_by(step as usize)
        .map(|t| (t, v(t)))
        .collect()
}

/// The expected merge of dumps: per series, samples by time with the first dump's sample
/// kept at a shared timestamp.
fn union(dumps: &[Dump]) -> Dump {
    let mut all: std::collections::BTreeMap<String, std::collections::BTreeMap<i64, u64>> =
        Default::default();
    for d in dumps {
        for (l, s) in d {
            let e = all.entry(l.clone()).or_default();
            for &(t, v) in s {
                e.entry(t).or_insert(v);
            }
        }
    }
    all.into_iter()
        .map(|(l, s)| (l, s.into_iter().collect()))
        .collect()
}

const H: i64 = 3_600_000;

#[test]
fn blocks_side_by_side_merge_by_copying_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let a = block(
        &src,
        &[
            ("a", samples(0, 2 * H, 15_000, |t| t as f64)),
            ("b", samples(0, 2 * H, 60_000, |_| 1.0)),
        ],
    );
    let b = block(
        &src,
        &[
            ("b", samples(2 * H, 4 * H, 60_000, |_| 2.0)),
            ("c", samples(2 * H, 4 * H, 30_000, |t| -(t as f64))),
        ],
    );
    let c = block(&src, &[("a", samples(4 * H, 6 * H, 15_000, |_| f64::NAN))]);
    let want = union(&[dump(&a), dump(&b), dump(&c)]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A small window: chunk records are read again across window ends.
    let opts = MergeOptions {
        read_window: 4096,
        ..Default::default()
    };
    let (meta, stats) = merge_blocks(&[c.clone(), a.clone(), b.clone()], &out, &opts).unwrap();
    let meta = meta.unwrap();
    let got_dir = out.join(meta.ulid.to_string());
    assert_eq!(dump(&got_dir), want);
    assert_eq!(stats.series_rewritten, 0);
    assert_eq!(stats.series, 3);
    let n: usize = want.iter().map(|s| s.1.len()).sum();
    assert_eq!(meta.stats.num_samples, n as u64);
    assert_eq!(meta.stats.num_series, 3);
    assert_eq!((meta.min_time, meta.max_time), (0, 6 * H - 15_000 + 1));
    assert_eq!(meta.compaction.level, 2);
    assert_eq!(meta.compaction.sources.len(), 3);
    assert_eq!(meta.compaction.parents.len(), 3);
    assert_eq!(meta.compaction.parents[0].min_time, 0);
    // The result is a block like any other: its own meta reads back, no temporary dir left.
    assert_eq!(BlockMeta::read(&got_dir).unwrap(), meta);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

#[test]
fn overlapping_copies_merge_each_sample_once() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let s = samples(0, 2 * H, 15_000, |t| (t / 1000) as f64);
    let a = block(
        &src,
        &[("x", s.clone()), ("y", samples(0, H, 60_000, |_| 5.0))],
    );
    let b = block(&src, &[("x", s.clone())]);
    // The later block overlaps half of the earlier one and goes on after it.
    let c = block(
        &src,
        &[("x", samples(H, 3 * H, 15_000, |t| (t / 1000) as f64))],
    );
    let want = union(&[dump(&a), dump(&b), dump(&c)]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (meta, stats) = merge_blocks(&[a, b, c], &out, &MergeOptions::default()).unwrap();
    let got = dump(&out.join(meta.unwrap().ulid.to_string()));
    assert_eq!(got, want);
    assert_eq!(stats.series_rewritten, 1, "{stats:?}");
    // Rewritten chunks hold at most 120 samples.
    let b = Block::open(
        &out.join(
            std::fs::read_dir(&out)
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .file_name(),
        ),
    )
    .unwrap();
    let mut refs = Vec::new();
    b.index().all_postings(&mut refs).unwrap();
    let (mut l, mut ch) = (Vec::new(), Vec::new());
    b.series(refs[0], &mut l, &mut ch).unwrap();
    assert_eq!(ch.len(), ((3 * H / 15_000) as usize).div_ceil(120));
}

#[test]
fn penalty_dedup_follows_one_replica_and_fills_its_gaps_from_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    // Replica A scrapes at :00, B at :05 of each 10 s; A misses a minute.
    let a: Vec<(i64, f64)> = samples(0, 600_000, 10_000, |_| 1.0)
        .into_iter()
        .filter(|&(t, _)| !(200_000..260_000).contains(&t))
        .collect();
    let b = samples(5_000, 600_000, 10_000, |_| 2.0);
    let ra = block(&src, &[("x", a.clone())]);
    let rb = block(&src, &[("x", b.clone())]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let opts = MergeOptions {
        dedup: Dedup::Penalty,
        ..Default::default()
    };
    let (meta, _) = merge_blocks(&[ra, rb], &out, &opts).unwrap();
    let got = dump(&out.join(meta.unwrap().ulid.to_string()));
    let sa = SampleBatch {
        ts: a.iter().map(|s| s.0).collect(),
        val: a.iter().map(|s| s.1).collect(),
    };
    let sb = SampleBatch {
        ts: b.iter().map(|s| s.0).collect(),
        val: b.iter().map(|s| s.1).collect(),
    };
    let want = dedup_replicas(&[&sa, &sb], false);
    let want: Vec<(i64, u64)> = want
        .ts
        .iter()
        .zip(&want.val)
        .map(|(&t, v)| (t, v.to_bits()))
        .collect();
    assert_eq!(got[0].1, want);
    // Mostly A, with B inside A's gap.
    assert!(
        got[0]
            .1
            .iter()
            .any(|&(t, v)| (200_000..260_000).contains(&t) && v == 2f64.to_bits())
    );
    assert!(got[0].1.len() < a.len() + b.len());
}

#[test]
fn tombstones_are_applied_and_not_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let a = block(
        &src,
        &[
            ("x", samples(0, 2 * H, 15_000, |_| 1.0)),
            ("y", samples(0, 2 * H, 15_000, |_| 2.0)),
        ],
    );
    let b = block(&src, &[("x", samples(2 * H, 4 * H, 15_000, |_| 3.0))]);
    // Delete [30m, 1h] of x in a, and all of y.
    let blk = Block::open(&a).unwrap();
    let mut refs = Vec::new();
    blk.index().all_postings(&mut refs).unwrap();
    drop(blk);
    let mut t = Tombstones::new();
    t.add(u64::from(refs[0]), Interval::new(H / 2, H));
    t.add(u64::from(refs[1]), Interval::new(i64::MIN, i64::MAX));
    t.write(&a.join("tombstones")).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (meta, stats) = merge_blocks(&[a, b], &out, &MergeOptions::default()).unwrap();
    let meta = meta.unwrap();
    let got = dump(&out.join(meta.ulid.to_string()));
    assert_eq!(got.len(), 1, "y was deleted whole");
    let want: Vec<i64> = (0..4 * H)
        .step_by(15_000)
        .filter(|t| !(H / 2..=H).contains(t))
        .collect();
    assert_eq!(got[0].1.iter().map(|s| s.0).collect::<Vec<_>>(), want);
    assert_eq!(stats.series_rewritten, 2);
    assert_eq!(meta.stats.num_series, 1);
    let ts = Tombstones::read(&out.join(meta.ulid.to_string()).join("tombstones")).unwrap();
    assert!(ts.is_empty());
}

#[test]
fn bad_inputs_are_refused_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let a = block(&src, &[("x", samples(0, 2 * H, 15_000, |_| 1.0))]);
    let b = block(&src, &[("x", samples(2 * H, 4 * H, 15_000, |_| 1.0))]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    // A truncated chunk segment.
    let seg = b.join("chunks").join("000001");
    let bytes = std::fs::read(&seg).unwrap();
    std::fs::write(&seg, &bytes[..bytes.len() - 40]).unwrap();
    let err = merge_blocks(&[a.clone(), b.clone()], &out, &MergeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("000001"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    // A corrupt byte inside a chunk: its CRC fails.
    let mut bad = bytes.clone();
    bad[20] ^= 0x55;
    std::fs::write(&seg, &bad).unwrap();
    let err = merge_blocks(&[a.clone(), b.clone()], &out, &MergeOptions::default()).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("crc") || err.to_string().contains("checksum"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    std::fs::write(&seg, &bytes).unwrap();
    // Blocks of two resolutions.
    let mut m = BlockMeta::read(&b).unwrap();
    m.thanos = Some(ThanosMeta {
        downsample: crate::block::meta::ThanosDownsample {
            resolution: 300_000,
        },
        ..Default::default()
    });
    m.write(&b).unwrap();
    let err = merge_blocks(&[a, b], &out, &MergeOptions::default()).unwrap_err();
    assert!(err.to_string().contains("resolution"), "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
}

#[test]
fn series_a_deletion_selects_are_left_out_of_every_input() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let a = block(
        &src,
        &[
            ("a", samples(0, 2 * H, 15_000, |t| t as f64)),
            ("b", samples(0, 2 * H, 60_000, |_| 1.0)),
        ],
    );
    let b = block(
        &src,
        &[
            ("a", samples(2 * H, 4 * H, 15_000, |_| 3.0)),
            ("c", samples(2 * H, 4 * H, 30_000, |_| 2.0)),
        ],
    );
    let mut want = union(&[dump(&a), dump(&b)]);
    want.retain(|(l, _)| !l.contains("s=\"a\""));
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let opts = MergeOptions {
        delete_series: vec![vec![Matcher::equal("s", "a")]],
        ..Default::default()
    };
    let (meta, stats) = merge_blocks(&[a, b], &out, &opts).unwrap();
    let meta = meta.unwrap();
    assert_eq!(dump(&out.join(meta.ulid.to_string())), want);
    assert_eq!(stats.series_deleted, 2);
    assert_eq!(stats.series, 2);
    assert_eq!(meta.stats.num_samples, 120 + 240);
}
