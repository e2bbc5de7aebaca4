use super::*;
use crate::block::{Block, BlockWriter, CutOptions};
use crate::compact::overlap;
use crate::labels::Labels;
use crate::query::dedup_replicas;

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

/// An integer counter histogram at `t`: four buckets of schema 0 counting `k` up.
fn counter_hist(k: u64) -> crate::histogram::Histogram {
    use crate::histogram::{CounterResetHint, Histogram, Span};
    let counts = [k, k + 1, 2 * k, k / 2];
    let mut prev = 0i64;
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 0,
        zero_threshold: 1e-3,
        zero_count: 1,
        count: 1 + counts.iter().sum::<u64>(),
        sum: k as f64 * 2.5,
        positive_spans: vec![Span::new(0, 4)],
        negative_spans: Vec::new(),
        positive_buckets: counts
            .iter()
            .map(|&c| {
                let d = c as i64 - prev;
                prev = c as i64;
                d
            })
            .collect(),
        negative_buckets: Vec::new(),
        custom_values: Default::default(),
    }
}

/// A chunk as a test block holds it: encoding, min time, max time, payload.
type RawChunk = (u8, i64, i64, Vec<u8>);

/// One integer histogram chunk of `counter_hist(t / 1000)` at each of `ts`.
fn hist_chunk(ts: &[i64]) -> RawChunk {
    let mut app = crate::chunk::HistogramAppender::new();
    for &t in ts {
        let out = app.append(None, t, &counter_hist(t as u64 / 1000)).unwrap();
        assert!(matches!(out, crate::chunk::HistogramAppend::Appended));
    }
    (
        Encoding::Histogram as u8,
        ts[0],
        *ts.last().unwrap(),
        app.bytes().to_vec(),
    )
}

/// Writes a block of series `name` → chunks (encoding, min, max, payload) under `parent`,
/// exactly as given; returns its directory.
fn chunk_block(parent: &Path, series: &[(&str, Vec<RawChunk>)]) -> PathBuf {
    let ulid = Ulid::new();
    let dir = parent.join(ulid.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let mut seg = SegmentWriter::create(&dir.join("chunks")).unwrap();
    let mut series: Vec<_> = series.to_vec();
    series.sort_by(|a, b| a.0.cmp(b.0));
    let mut metas = Vec::new();
    let (mut mint, mut maxt, mut samples) = (i64::MAX, i64::MIN, 0);
    for (_, chunks) in &series {
        let mut m = Vec::new();
        for (enc, min, max, data) in chunks {
            let chunk_ref = seg.write_chunk(*enc, data).unwrap();
            m.push(ChunkMeta {
                min_time: *min,
                max_time: *max,
                chunk_ref,
            });
            mint = mint.min(*min);
            maxt = maxt.max(*max);
            samples += u64::from(u16::from_be_bytes([data[0], data[1]]));
        }
        metas.push(m);
    }
    seg.finish().unwrap();
    let mut symbols: Vec<&str> = vec!["__name__", "m", "s"];
    symbols.extend(series.iter().map(|s| s.0));
    symbols.sort_unstable();
    symbols.dedup();
    let mut ix = IndexWriter::create(&dir.join("index")).unwrap();
    ix.add_symbols(symbols).unwrap();
    for ((name, _), m) in series.iter().zip(&metas) {
        ix.add_series(&Labels::from_pairs([("__name__", "m"), ("s", *name)]), m)
            .unwrap();
    }
    ix.finish().unwrap();
    Tombstones::default()
        .write(&dir.join("tombstones"))
        .unwrap();
    BlockMeta {
        ulid,
        min_time: mint,
        max_time: maxt + 1,
        stats: BlockStats {
            num_samples: samples,
            num_series: series.len() as u64,
            ..Default::default()
        },
        compaction: Compaction {
            level: 1,
            sources: vec![ulid],
            ..Default::default()
        },
        version: 1,
        thanos: None,
    }
    .write(&dir)
    .unwrap();
    dir
}

/// Every chunk of the block in `dir`, by series: (encoding, min, max, payload).
fn block_chunks(dir: &Path) -> Vec<(String, Vec<RawChunk>)> {
    let b = Block::open(dir).unwrap();
    let mut refs = Vec::new();
    b.index().all_postings(&mut refs).unwrap();
    let (mut labels, mut metas) = (Vec::new(), Vec::new());
    refs.iter()
        .map(|&r| {
            b.series(r, &mut labels, &mut metas).unwrap();
            let chunks = metas
                .iter()
                .map(|m| {
                    let (enc, data) = b.chunks().chunk(m.chunk_ref).unwrap();
                    (enc, m.min_time, m.max_time, data.to_vec())
                })
                .collect();
            (Labels::from_sorted(labels.clone()).to_string(), chunks)
        })
        .collect()
}

fn steps(from: i64, n: i64, step: i64) -> Vec<i64> {
    (0..n).map(|i| from + i * step).collect()
}

#[test]
fn histogram_chunks_side_by_side_are_copied_byte_for_byte_and_counted_as_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let c1 = hist_chunk(&steps(0, 50, 1000));
    let c2 = hist_chunk(&steps(60_000, 50, 1000));
    let a = chunk_block(dir.path(), &[("h", vec![c1.clone()])]);
    let b = chunk_block(
        dir.path(),
        &[
            ("h", vec![c2.clone()]),
            ("x", vec![hist_chunk(&[5000, 6000])]),
        ],
    );
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (meta, stats) = merge_blocks(&[b, a], &out, &MergeOptions::default()).unwrap();
    let meta = meta.unwrap();
    assert_eq!(stats.chunks_copied, 3);
    assert_eq!(stats.series_rewritten, 0);
    assert_eq!(meta.stats.num_samples, 102);
    assert_eq!(meta.stats.num_histogram_samples, 102);
    assert_eq!(meta.stats.num_float_samples, 0);
    let got = block_chunks(&out.join(meta.ulid.to_string()));
    assert_eq!(got[0].1, vec![c1, c2]);
}

#[test]
fn overlapping_histogram_chunks_are_chained_and_encoded_again() {
    let dir = tempfile::tempdir().unwrap();
    // Input a: samples every 2 s over [0, 200 s); b: every 2 s over [1 s, 101 s) and a chunk
    // after a's end that overlaps nothing.
    let a = chunk_block(dir.path(), &[("h", vec![hist_chunk(&steps(0, 100, 2000))])]);
    let late = hist_chunk(&steps(300_000, 10, 1000));
    let b = chunk_block(
        dir.path(),
        &[("h", vec![hist_chunk(&steps(1000, 50, 2000)), late.clone()])],
    );
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (meta, stats) = merge_blocks(&[a, b], &out, &MergeOptions::default()).unwrap();
    let meta = meta.unwrap();
    assert_eq!(stats.series_rewritten, 1);
    assert_eq!(meta.stats.num_histogram_samples, 160);
    let got = &block_chunks(&out.join(meta.ulid.to_string()))[0].1;
    // 150 chained samples: one chunk of 120, one of 30, then the late chunk untouched.
    let ts: Vec<i64> = {
        let mut v = steps(0, 100, 2000);
        v.extend(steps(1000, 50, 2000));
        v.sort_unstable();
        v
    };
    assert_eq!(got.len(), 3);
    assert_eq!((got[0].1, got[0].2), (ts[0], ts[119]));
    assert_eq!((got[1].1, got[1].2), (ts[120], ts[149]));
    assert_eq!(got[2], late);
    let mut read = Vec::new();
    for (enc, _, _, data) in &got[..2] {
        assert_eq!(*enc, Encoding::Histogram as u8);
        for (t, v) in overlap::decode_chunk(*enc, data).unwrap() {
            let overlap::Value::Int(h) = v else {
                panic!("an integer histogram")
            };
            let mut want = counter_hist(t as u64 / 1000);
            want.counter_reset_hint = h.counter_reset_hint;
            assert_eq!(h, want, "sample at {t}");
            read.push(t);
        }
        // Chunks written by the merge start with an unknown counter-reset header.
        assert_eq!(data[2] & 0xc0, 0);
    }
    assert_eq!(read, ts);
}

#[test]
fn penalty_dedup_follows_one_histogram_replica_and_fills_its_gaps_from_the_other() {
    let dir = tempfile::tempdir().unwrap();
    // Replica A every 10 s from 0, missing [200 s, 260 s); B every 10 s from 5 s. Both count
    // the same observations, so each sample is `counter_hist(t / 1000)` of its own time.
    let a_ts: Vec<i64> = steps(0, 60, 10_000)
        .into_iter()
        .filter(|t| !(200_000..260_000).contains(t))
        .collect();
    let b_ts = steps(5_000, 60, 10_000);
    let chunks = |ts: &[i64]| ts.chunks(25).map(hist_chunk).collect::<Vec<_>>();
    let a = chunk_block(dir.path(), &[("h", chunks(&a_ts))]);
    let b = chunk_block(dir.path(), &[("h", chunks(&b_ts))]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let opts = MergeOptions {
        dedup: Dedup::Penalty,
        ..Default::default()
    };
    let (meta, stats) = merge_blocks(&[a, b], &out, &opts).unwrap();
    let meta = meta.unwrap();
    assert_eq!(stats.series_rewritten, 1);
    let got = &block_chunks(&out.join(meta.ulid.to_string()))[0].1;
    let mut read = Vec::new();
    for (enc, _, _, data) in got {
        assert_eq!(*enc, Encoding::Histogram as u8);
        for (t, v) in overlap::decode_chunk(*enc, data).unwrap() {
            let overlap::Value::Int(h) = v else {
                panic!("an integer histogram")
            };
            assert_eq!(h.sum, (t / 1000) as f64 * 2.5, "sample at {t}");
            read.push(t);
        }
    }
    // Thanos's merger takes chunks by (min time, max time) and joins a chunk with every one
    // that starts before the group's end: A's first chunk spans [0 s, 300 s], so all six
    // chunks form one group, folded chunk by chunk from A's first with the penalty algorithm
    // (not replica by replica).
    let (a_chunks, b_chunks): (Vec<&[i64]>, Vec<&[i64]>) =
        (a_ts.chunks(25).collect(), b_ts.chunks(25).collect());
    let order = [
        a_chunks[0],
        b_chunks[0],
        b_chunks[1],
        a_chunks[1],
        b_chunks[2],
        a_chunks[2],
    ];
    let lists: Vec<Vec<(i64, ())>> = order
        .iter()
        .map(|c| c.iter().map(|&t| (t, ())).collect())
        .collect();
    let want: Vec<i64> = crate::query::penalty_merge_lists(&lists, |_| {})
        .into_iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(read, want);
    assert!(read.iter().any(|t| (200_000..260_000).contains(t)));
    assert!(read.len() < a_ts.len() + b_ts.len());
    assert_eq!(meta.stats.num_histogram_samples, want.len() as u64);
}

#[test]
fn penalty_dedup_fills_a_float_replicas_gap_from_a_histogram_replica() {
    let dir = tempfile::tempdir().unwrap();
    // Replica A holds floats every 10 s from 0, missing [200 s, 260 s); B native histograms
    // every 10 s from 5 s, in one chunk each: one group of overlapping chunks.
    let a: Vec<(i64, f64)> = samples(0, 600_000, 10_000, |t| t as f64)
        .into_iter()
        .filter(|&(t, _)| !(200_000..260_000).contains(&t))
        .collect();
    let b_ts = steps(5_000, 60, 10_000);
    let ra = block(dir.path(), &[("h", a.clone())]);
    let rb = chunk_block(dir.path(), &[("h", vec![hist_chunk(&b_ts)])]);
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let opts = MergeOptions {
        dedup: Dedup::Penalty,
        ..Default::default()
    };
    let (meta, _) = merge_blocks(&[ra, rb], &out, &opts).unwrap();
    let got = &block_chunks(&out.join(meta.unwrap().ulid.to_string()))[0].1;
    let mut read = Vec::new();
    for (enc, _, _, data) in got {
        for (t, v) in overlap::decode_chunk(*enc, data).unwrap() {
            read.push((t, matches!(v, overlap::Value::Int(_))));
        }
    }
    // One time line: A's floats, then from A's gap on B's histograms (not A's kind alone,
    // which would leave the gap empty).
    let want: Vec<(i64, bool)> = crate::query::penalty_merge_lists(
        &[
            a.iter().map(|&(t, _)| (t, false)).collect::<Vec<_>>(),
            b_ts.iter().map(|&t| (t, true)).collect(),
        ],
        |_| {},
    );
    assert_eq!(read, want);
    assert!(
        read.iter()
            .any(|&(t, h)| h && (200_000..260_000).contains(&t))
    );
    assert!(read.iter().any(|&(t, h)| !h && t < 200_000));
}

/// A chunk that decodes but holds a histogram that does not validate (its count and buckets
/// disagree, say): the first bit flip of `good` that gives one.
fn decodable_but_invalid(good: &[u8]) -> Vec<u8> {
    for bit in 24..good.len() * 8 {
        let mut b = good.to_vec();
        b[bit / 8] ^= 0x80 >> (bit % 8);
        let Ok(samples) = overlap::decode_chunk(Encoding::Histogram as u8, &b) else {
            continue;
        };
        if samples.iter().any(
            |(_, v)| matches!(v, overlap::Value::Int(h) if !h.is_stale() && h.validate().is_err()),
        ) {
            return b;
        }
    }
    panic!("no bit flip gives a decodable but invalid histogram");
}

#[test]
fn corrupt_histogram_chunks_fail_the_merge_naming_block_and_series() {
    let dir = tempfile::tempdir().unwrap();
    let good = hist_chunk(&steps(0, 30, 1000));
    // Cut short, with a CRC that matches: only decoding finds it.
    let mut cut = good.clone();
    cut.3.truncate(cut.3.len() / 2);
    let mut invalid = good.clone();
    invalid.3 = decodable_but_invalid(&good.3);
    for (name, chunk, overlapping) in [
        ("copied", cut.clone(), false),
        ("merged", cut, true),
        ("invalid", invalid, true),
    ] {
        let case = dir.path().join(name);
        std::fs::create_dir_all(&case).unwrap();
        let a = chunk_block(
            &case,
            &[("ok", vec![good.clone()]), ("victim", vec![chunk])],
        );
        let other = if overlapping {
            hist_chunk(&steps(500, 10, 1000))
        } else {
            hist_chunk(&steps(100_000, 10, 1000))
        };
        let b = chunk_block(&case, &[("victim", vec![other])]);
        let out = case.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let Err(e) = merge_blocks(&[a.clone(), b], &out, &MergeOptions::default()) else {
            panic!("{name}: the merge took a corrupt chunk");
        };
        let msg = e.to_string();
        let ulid = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(msg.contains(&ulid), "{name}: names the block: {msg}");
        assert!(
            msg.contains(r#"s="victim""#),
            "{name}: names the series: {msg}"
        );
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "{name}: nothing left in the output directory"
        );
    }
}

#[test]
fn tombstones_in_histogram_chunks_rewrite_only_the_chunks_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let first = hist_chunk(&steps(0, 40, 1000));
    let second = hist_chunk(&steps(50_000, 40, 1000));
    let a = chunk_block(
        dir.path(),
        &[
            ("h", vec![first.clone(), second]),
            ("gone", vec![hist_chunk(&[0, 1000])]),
        ],
    );
    let blk = Block::open(&a).unwrap();
    let mut refs = Vec::new();
    blk.index().all_postings(&mut refs).unwrap();
    drop(blk);
    let mut t = Tombstones::new();
    // refs[0] is s="gone", refs[1] s="h": [60 s, 70 s] of h's second chunk.
    t.add(u64::from(refs[0]), Interval::new(i64::MIN, i64::MAX));
    t.add(u64::from(refs[1]), Interval::new(60_000, 70_000));
    t.write(&a.join("tombstones")).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (meta, _) = merge_blocks(&[a], &out, &MergeOptions::default()).unwrap();
    let meta = meta.unwrap();
    let got = block_chunks(&out.join(meta.ulid.to_string()));
    assert_eq!(got.len(), 1, "s=\"gone\" was deleted whole");
    let chunks = &got[0].1;
    assert_eq!(
        chunks[0], first,
        "the chunk no deletion touches is kept as it is"
    );
    let kept: Vec<i64> = overlap::decode_chunk(chunks[1].0, &chunks[1].3)
        .unwrap()
        .into_iter()
        .map(|s| s.0)
        .collect();
    let want: Vec<i64> = steps(50_000, 40, 1000)
        .into_iter()
        .filter(|t| !(60_000..=70_000).contains(t))
        .collect();
    assert_eq!(kept, want);
    assert_eq!((chunks[1].1, chunks[1].2), (50_000, 89_000));
    assert_eq!(meta.stats.num_histogram_samples, 40 + 29);
}
