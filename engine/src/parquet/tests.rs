use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::read::{ParquetShard, label_names_matching};
use super::write::{ConvertOptions, convert_block};
use super::*;
use crate::block::reader::{Block, BlockSample};
use crate::bucket::{Bucket, BucketConfig};
use crate::chunk::{FloatHistogramIterator, HistogramIterator, XorIterator};
use crate::labels::{MatchType, Matcher};

fn fixture(name: &str) -> Vec<PathBuf> {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/tsdb")).join(name);
    crate::block::reader::block_dirs(&root).unwrap()
}

/// A sample as text that tells every value apart (NaN payloads included).
fn key(s: &BlockSample) -> String {
    match s {
        BlockSample::Float(v) => format!("f{:016x}", v.to_bits()),
        other => format!("{other:?}"),
    }
}

fn decode(chunks: &[RawChunk], mint: i64, maxt: i64) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for c in chunks {
        match c.encoding {
            1 => {
                let mut it = XorIterator::new(&c.data).unwrap();
                while let Some((t, v)) = it.next().unwrap() {
                    out.push((t, key(&BlockSample::Float(v))));
                }
            }
            2 => {
                let mut it = HistogramIterator::new(&c.data).unwrap();
                while let Some((t, h)) = it.next().unwrap() {
                    out.push((t, key(&BlockSample::Histogram(h))));
                }
            }
            3 => {
                let mut it = FloatHistogramIterator::new(&c.data).unwrap();
                while let Some((t, h)) = it.next().unwrap() {
                    out.push((t, key(&BlockSample::FloatHistogram(h))));
                }
            }
            e => panic!("encoding {e}"),
        }
    }
    out.retain(|&(t, _)| t >= mint && t <= maxt);
    out.sort();
    out
}

/// Every series of `block` matching `matchers`, with its samples in `[mint, maxt]`, as the
/// TSDB reader gives them (series without samples there left out).
fn tsdb_answer(
    block: &Block,
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(String, Vec<(i64, String)>)> {
    let mut out = Vec::new();
    let (mut labels, mut metas) = (Vec::new(), Vec::new());
    for r in block.select(matchers).unwrap() {
        labels.clear();
        metas.clear();
        block.series(r, &mut labels, &mut metas).unwrap();
        let mut samples = Vec::new();
        block
            .read_typed(r, &metas, mint, maxt, &mut samples)
            .unwrap();
        let mut s: Vec<(i64, String)> = samples.iter().map(|(t, v)| (*t, key(v))).collect();
        s.sort();
        if !s.is_empty() {
            out.push((format!("{labels:?}"), s));
        }
    }
    out.sort();
    out
}

fn bucket(dir: &Path) -> Bucket {
    Bucket::open(&BucketConfig::filesystem(dir).unwrap()).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn m(typ: MatchType, name: &str, value: &str) -> Matcher {
    Matcher::new(typ, name, value).unwrap()
}

/// Converts `block` with `opts` into a bucket and opens every shard written.
fn convert(block: &Block, opts: &ConvertOptions) -> (tempfile::TempDir, Bucket, Vec<ParquetShard>) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("blk");
    let report = convert_block(block, &out, opts).unwrap();
    assert!(report.shards >= 1);
    let b = bucket(dir.path());
    let shards = rt().block_on(async {
        let mut v = Vec::new();
        for s in 0..report.shards {
            v.push(ParquetShard::open(&b, "blk", s).await.unwrap());
        }
        v
    });
    (dir, b, shards)
}

fn parquet_answer(
    b: &Bucket,
    shards: &[ParquetShard],
    matchers: &[Matcher],
    mint: i64,
    maxt: i64,
) -> Vec<(String, Vec<(i64, String)>)> {
    let mut out = Vec::new();
    rt().block_on(async {
        for s in shards {
            for series in s.select(b, matchers, mint, maxt, false).await.unwrap() {
                let samples = decode(&series.chunks, mint, maxt);
                if !samples.is_empty() {
                    let labels: Vec<_> = series.labels.iter().cloned().collect();
                    out.push((format!("{labels:?}"), samples));
                }
            }
        }
    });
    out.sort();
    out
}

fn selections() -> Vec<Vec<Matcher>> {
    vec![
        vec![m(MatchType::Regexp, "__name__", ".+")],
        vec![m(MatchType::Equal, "__name__", "up")],
        vec![
            m(MatchType::Regexp, "__name__", "node_.*"),
            m(MatchType::NotEqual, "instance", ""),
        ],
        vec![
            m(MatchType::Regexp, "job", ".+"),
            m(MatchType::NotRegexp, "__name__", "go_.*|up"),
        ],
        vec![m(MatchType::Equal, "__name__", "no_such_metric")],
        vec![
            m(MatchType::Equal, "no_such_label", ""),
            m(MatchType::Regexp, "__name__", "p.*"),
        ],
        // Matchers taking rows without the label (null codes), and an equality matcher on a
        // label after a regex on the name.
        vec![
            m(MatchType::Regexp, "__name__", ".+"),
            m(MatchType::NotEqual, "le", "+Inf"),
        ],
        vec![m(MatchType::Equal, "le", "")],
        vec![
            m(MatchType::NotRegexp, "__name__", "go_.*"),
            m(MatchType::Equal, "job", "prometheus"),
            m(MatchType::NotRegexp, "instance", "nope.*"),
        ],
    ]
}

#[test]
fn chunk_values_are_read_without_copies_as_the_column_reader_reads_them() {
    let dir = &fixture("prometheus-compacted-200series-10h")[0];
    let block = Block::open(dir).unwrap();
    let (lo, hi) = (block.meta().min_time, block.meta().max_time);
    for opts in [
        ConvertOptions::default(),
        ConvertOptions {
            row_group_rows: 37,
            page_rows: Some(3),
            col_duration_ms: 3_600_000,
            ..ConvertOptions::default()
        },
    ] {
        let (_dir, b, shards) = convert(&block, &opts);
        rt().block_on(async {
            for s in &shards {
                for rg in 0..s.num_row_groups() {
                    let n = s.row_group_rows(rg) as u32;
                    // Every row, every third row, and a few rows far apart.
                    let every: Vec<u32> = (0..n).collect();
                    let third: Vec<u32> = every.iter().copied().step_by(3).collect();
                    let few: Vec<u32> = every.iter().copied().filter(|r| r % 11 == 5).collect();
                    for rows in [every, third, few] {
                        for col in s.chunk_columns(lo, hi) {
                            let pages = s.fetch_chunk_pages(&b, rg, col, &rows).await.unwrap();
                            let direct = s.chunk_values_direct(rg, col, &pages, &rows).unwrap();
                            let copied = s.chunk_values_copied(rg, col, &pages, &rows).unwrap();
                            assert_eq!(
                                direct.as_ref(),
                                Some(&copied),
                                "{opts:?} rg {rg} col {col}"
                            );
                        }
                    }
                }
            }
        });
    }
}

#[test]
fn converted_blocks_answer_as_the_tsdb_blocks() {
    for name in [
        "promtool-200series-2h",
        "prometheus-head-compacted-remote-write",
        "prometheus-compacted-200series-10h",
    ] {
        for dir in fixture(name) {
            let block = Block::open(&dir).unwrap();
            let (lo, hi) = (block.meta().min_time, block.meta().max_time);
            // Small row groups and shards: several of each, and page reads across them.
            for opts in [
                ConvertOptions::default(),
                ConvertOptions {
                    row_group_rows: 37,
                    shard_rows: 150,
                    col_duration_ms: 3_600_000,
                    ..ConvertOptions::default()
                },
                // Pages of a few rows: selections read only some pages of each column.
                ConvertOptions {
                    row_group_rows: 100,
                    page_rows: Some(4),
                    ..ConvertOptions::default()
                },
            ] {
                let (_dir, b, shards) = convert(&block, &opts);
                for sel in selections() {
                    for (mint, maxt) in [
                        (lo, hi),
                        (lo + 1_800_000, lo + 2_700_000),
                        (hi - 1, hi + 10),
                    ] {
                        assert_eq!(
                            parquet_answer(&b, &shards, &sel, mint, maxt),
                            tsdb_answer(&block, &sel, mint, maxt),
                            "{name} {dir:?} {sel:?} {mint}..{maxt} {opts:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn label_names_and_values_follow_the_matchers() {
    let dir = &fixture("promtool-200series-2h")[0];
    let block = Block::open(dir).unwrap();
    let (_dir, b, shards) = convert(
        &block,
        &ConvertOptions {
            row_group_rows: 50,
            ..ConvertOptions::default()
        },
    );
    let shard = &shards[0];
    let mut names = block.index().label_names();
    names.sort();
    let all: Vec<String> = shard.label_names().map(str::to_string).collect();
    assert_eq!(all, names);
    rt().block_on(async {
        let sel = [m(MatchType::Equal, "__name__", "up")];
        let refs = block.select(&sel).unwrap();
        let mut want_names = Vec::new();
        let mut want_jobs = Vec::new();
        let (mut labels, mut metas) = (Vec::new(), Vec::new());
        for r in refs {
            labels.clear();
            block.series(r, &mut labels, &mut metas).unwrap();
            for l in &labels {
                want_names.push(l.name.to_string());
                if l.name == "job" {
                    want_jobs.push(l.value.to_string());
                }
            }
        }
        want_names.sort();
        want_names.dedup();
        want_jobs.sort();
        want_jobs.dedup();
        assert_eq!(
            label_names_matching(shard, &b, &sel).await.unwrap(),
            want_names
        );
        assert_eq!(
            shard.label_values(&b, "job", &sel).await.unwrap(),
            want_jobs
        );
        assert!(
            shard
                .label_values(&b, "no_such_label", &sel)
                .await
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn chunk_column_values_round_trip_and_refuse_garbage() {
    let mut v = Vec::new();
    put_chunk(&mut v, 1, -5, 7, b"\x00\x01abc");
    put_chunk(&mut v, 2, 100, 200, b"xyz");
    let b = Bytes::from(v.clone());
    let all = decode_chunks(&b, i64::MIN, i64::MAX).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].min_time, all[0].max_time, &all[0].data[..]),
        (-5, 7, &b"\x00\x01abc"[..])
    );
    assert_eq!(decode_chunks(&b, 8, 99).unwrap().len(), 0);
    for cut in 1..v.len() {
        let _ = decode_chunks(&Bytes::copy_from_slice(&v[..cut]), i64::MIN, i64::MAX);
    }
    assert!(
        decode_chunks(
            &Bytes::copy_from_slice(&v[..v.len() - 1]),
            i64::MIN,
            i64::MAX
        )
        .is_err()
    );
    let mut bad = Vec::new();
    put_chunk(&mut bad, 9, 0, 1, b"");
    assert!(decode_chunks(&Bytes::from(bad), 0, 1).is_err());

    let cols = [0u32, 3, 17, 300];
    let enc = encode_col_indexes(&cols);
    let mut out = Vec::new();
    decode_col_indexes(&enc, &mut out).unwrap();
    assert_eq!(out, cols);
    assert!(decode_col_indexes(&enc[..enc.len() - 1], &mut out).is_err());
    assert!(decode_col_indexes(&[0x7f], &mut out).is_err());
}

#[test]
fn corrupt_and_foreign_files_give_typed_errors() {
    let dir = &fixture("promtool-200series-2h")[0];
    let block = Block::open(dir).unwrap();
    let (tmp, b, _) = convert(
        &block,
        &ConvertOptions {
            row_group_rows: 40,
            ..ConvertOptions::default()
        },
    );
    let labels = tmp.path().join("blk").join(labels_file(0));
    let chunks = tmp.path().join("blk").join(chunks_file(0));
    let good_labels = std::fs::read(&labels).unwrap();
    let good_chunks = std::fs::read(&chunks).unwrap();
    let sel = [m(MatchType::Regexp, "__name__", ".+")];
    let attempt = |b: &Bucket| {
        rt().block_on(async {
            let s = ParquetShard::open(b, "blk", 0).await?;
            s.select(b, &sel, i64::MIN, i64::MAX, false).await
        })
    };
    // Truncations of the footer and of the pages, and flipped bytes: errors, never panics.
    let lens = [8usize, 100, good_labels.len() / 2, good_labels.len() - 1];
    for cut in lens {
        std::fs::write(&labels, &good_labels[..cut.min(good_labels.len())]).unwrap();
        assert!(attempt(&b).is_err(), "labels cut at {cut}");
    }
    std::fs::write(&labels, &good_labels).unwrap();
    for at in (0..good_chunks.len()).step_by(good_chunks.len() / 50 + 1) {
        let mut c = good_chunks.clone();
        c[at] ^= 0x5a;
        std::fs::write(&chunks, &c).unwrap();
        let _ = attempt(&b);
    }
    for at in (0..good_labels.len()).step_by(good_labels.len() / 50 + 1) {
        let mut c = good_labels.clone();
        c[at] ^= 0x5a;
        std::fs::write(&labels, &c).unwrap();
        let _ = attempt(&b);
    }
    // A chunks file from another block: row groups differ.
    std::fs::write(&labels, &good_labels).unwrap();
    let other = Block::open(&fixture("prometheus-head-compacted-remote-write")[0]).unwrap();
    let (tmp2, _, _) = convert(&other, &ConvertOptions::default());
    std::fs::copy(tmp2.path().join("blk").join(chunks_file(0)), &chunks).unwrap();
    let err = attempt(&b).unwrap_err();
    assert!(matches!(err, ParquetError::Layout { .. }), "{err}");
    // A labels file without the column list: not a Prometheus block.
    std::fs::write(&chunks, &good_chunks).unwrap();
    std::fs::copy(tmp2.path().join("blk").join(chunks_file(0)), &labels).unwrap();
    let err = attempt(&b).unwrap_err();
    assert!(matches!(err, ParquetError::Layout { .. }), "{err}");
}

#[test]
fn column_indexes_say_false_as_zero() {
    let dir = &fixture("promtool-200series-2h")[0];
    let block = Block::open(dir).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let report = convert_block(
        &block,
        tmp.path(),
        &ConvertOptions {
            row_group_rows: 30,
            ..ConvertOptions::default()
        },
    )
    .unwrap();
    let mut seen = 0;
    for f in &report.files {
        let raw = std::fs::read(f).unwrap();
        let n = raw.len();
        let meta_len = u32::from_le_bytes(raw[n - 8..n - 4].try_into().unwrap()) as usize;
        let meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(
            &raw[n - 8 - meta_len..n - 8],
        )
        .unwrap();
        for rg in meta.row_groups() {
            for c in rg.columns() {
                let r = c
                    .column_index_range()
                    .expect("every column has a column index");
                let mut idx = raw[r.start as usize..r.end as usize].to_vec();
                assert!(!super::write::patch_null_pages(&mut idx).unwrap(), "{f:?}");
                seen += 1;
            }
        }
    }
    assert!(seen > 10);
    // The rewrite itself, on a list of three booleans: true, false as 2, false as 0.
    let mut idx = vec![0x19, 0x31, 1, 2, 0, 0x00];
    assert!(super::write::patch_null_pages(&mut idx).unwrap());
    assert_eq!(idx, [0x19, 0x31, 1, 0, 0, 0]);
    assert!(super::write::patch_null_pages(&mut [0x15, 0x00]).is_err());
    assert!(super::write::patch_null_pages(&mut [0x19, 0x51, 1]).is_err());
}

#[test]
fn a_panic_inside_the_parquet_decoders_is_an_error_naming_the_file() {
    assert!(!in_guarded_decode());
    let r: Result<(), ParquetError> = guarded("blk/0.chunks.parquet", || {
        assert!(in_guarded_decode());
        // What the library's DELTA_LENGTH_BYTE_ARRAY decoder does with a negative length.
        let data = Bytes::from_static(b"abc");
        let len = -300i32 as usize;
        let _ = data.slice(0..len);
        Ok(())
    });
    let e = r.expect_err("the panic is an error").to_string();
    assert!(e.contains("blk/0.chunks.parquet"), "{e}");
    assert!(e.contains("range end out of bounds"), "{e}");
    // Outside the guard again, also after a nested guard and an ordinary error.
    assert!(!in_guarded_decode());
    let nested: Result<u8, ParquetError> = guarded("a", || {
        let inner = guarded("b", || Err::<u8, _>(ParquetError::layout("b", "bad")));
        assert!(in_guarded_decode());
        inner
    });
    assert!(nested.unwrap_err().to_string().contains("bad"));
    assert!(!in_guarded_decode());
    assert_eq!(guarded("c", || Ok(7)).unwrap(), 7);
}
