//! Index tests against Prometheus-written fixtures: reading them, rewriting them byte for byte,
//! surviving corruption, and resolving matchers exactly like a brute-force filter.

use super::*;
use crate::labels::{Label, Labels, MatchType, Matcher};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/tsdb");

/// Every fixture block directory (holding `index` and `meta.json`).
fn fixture_blocks() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for set in std::fs::read_dir(FIXTURES).unwrap() {
        let set = set.unwrap().path();
        if !set.is_dir() {
            continue;
        }
        for block in std::fs::read_dir(&set).unwrap() {
            let block = block.unwrap().path();
            if block.join("index").is_file() {
                out.push(block);
            }
        }
    }
    out.sort();
    assert_eq!(out.len(), 5, "fixture blocks missing");
    out
}

fn small_fixture() -> (Vec<u8>, PathBuf) {
    let block = Path::new(FIXTURES).join("promtool-200series-2h/01M80EDTXX3TS2DC5H3CJBESG9");
    let path = block.join("index");
    (std::fs::read(&path).unwrap(), path)
}

fn meta_stat(block: &Path, key: &str) -> u64 {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(block.join("meta.json")).unwrap()).unwrap();
    meta["stats"][key].as_u64().unwrap()
}

/// A decoded series: its ref, labels and chunk metas.
type Series = (u32, Labels, Vec<ChunkMeta>);

fn all_series<B: AsRef<[u8]>>(ix: &IndexReader<B>) -> Vec<Series> {
    let mut refs = Vec::new();
    ix.all_postings(&mut refs).unwrap();
    let (mut ls, mut cs) = (Vec::new(), Vec::new());
    refs.iter()
        .map(|&r| {
            ix.series(r, &mut ls, &mut cs).unwrap();
            (r, Labels::from_sorted(ls.clone()), cs.clone())
        })
        .collect()
}

/// label name -> value -> refs, computed from the series entries alone.
fn postings_from_series(series: &[Series]) -> BTreeMap<String, BTreeMap<String, Vec<u32>>> {
    let mut m: BTreeMap<String, BTreeMap<String, Vec<u32>>> = BTreeMap::new();
    for (r, ls, _) in series {
        for l in ls {
            m.entry(l.name.to_string())
                .or_default()
                .entry(l.value.to_string())
                .or_default()
                .push(*r);
        }
    }
    m
}

#[test]
fn fixtures_read_consistently_with_meta_and_their_own_series() {
    for block in fixture_blocks() {
        let ix = IndexReader::open(&block.join("index")).unwrap();
        assert_eq!(ix.version(), 2);
        assert_eq!(
            ix.num_series() as u64,
            meta_stat(&block, "numSeries"),
            "{block:?}"
        );
        let series = all_series(&ix);
        assert_eq!(series.len(), ix.num_series());
        let chunks: usize = series.iter().map(|s| s.2.len()).sum();
        assert_eq!(chunks as u64, meta_stat(&block, "numChunks"), "{block:?}");
        let mut last_chunk_ref = 0;
        for w in series.windows(2) {
            assert!(w[0].0 < w[1].0, "refs ascend");
            assert!(w[0].1 < w[1].1, "label sets ascend");
        }
        for (_, ls, cs) in &series {
            assert!(ls.as_slice().windows(2).all(|w| w[0].name < w[1].name));
            for (i, c) in cs.iter().enumerate() {
                assert!(c.min_time <= c.max_time);
                assert!(i == 0 || c.min_time > cs[i - 1].max_time);
                assert!(c.chunk_ref >= last_chunk_ref);
                last_chunk_ref = c.chunk_ref;
            }
        }
        // 2.42 writes the legacy sections; we read past them either way.
        assert_ne!(ix.toc().label_indices, ix.toc().postings);

        let want = postings_from_series(&series);
        assert_eq!(ix.label_names(), want.keys().cloned().collect::<Vec<_>>());
        let mut got = Vec::new();
        for (name, values) in &want {
            let vals: Vec<String> = values.keys().cloned().collect();
            assert_eq!(ix.label_values(name).unwrap(), vals);
            for (value, refs) in values {
                ix.postings(name, value, &mut got).unwrap();
                assert_eq!(&got, refs, "{name}={value}");
            }
        }
        ix.postings("no_such_label", "x", &mut got).unwrap();
        assert!(got.is_empty());
        assert!(ix.label_values("no_such_label").unwrap().is_empty());

        let syms: Vec<&str> = ix.symbols().map(Result::unwrap).collect();
        assert!(syms.windows(2).all(|w| w[0] < w[1]), "symbols sorted");
        assert_eq!(syms.len() as u32, ix.num_symbols());
        for (i, s) in syms.iter().enumerate() {
            assert_eq!(ix.symbol(i as u32).unwrap(), *s);
        }
    }
}

/// Distinct label sets of a `promtool tsdb dump` file.
fn dump_series(gz: &Path) -> BTreeSet<String> {
    let f = std::fs::File::open(gz).unwrap();
    let r = std::io::BufReader::new(flate2::read::GzDecoder::new(f));
    let mut out = BTreeSet::new();
    for line in r.lines() {
        let line = line.unwrap();
        // `{labels} value timestamp`: the labels may hold spaces, the last two fields do not.
        let mut parts = line.rsplitn(3, ' ');
        let (_ts, _v, labels) = (parts.next(), parts.next(), parts.next().unwrap());
        if out.last().is_none_or(|l: &String| l != labels) {
            out.insert(labels.to_string());
        }
    }
    out
}

#[test]
fn fixture_series_equal_the_series_of_promtool_dump() {
    for (set, dump) in [
        ("promtool-200series-2h", "promtool-200series-2h.dump.txt.gz"),
        (
            "prometheus-head-compacted-remote-write",
            "prometheus-head-compacted-remote-write.dump.txt.gz",
        ),
    ] {
        let dir = Path::new(FIXTURES).join(set);
        let block = std::fs::read_dir(&dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let ix = IndexReader::open(&block.join("index")).unwrap();
        let ours: BTreeSet<String> = all_series(&ix).iter().map(|s| s.1.to_string()).collect();
        assert_eq!(ours.len(), ix.num_series());
        assert_eq!(ours, dump_series(&Path::new(FIXTURES).join(dump)), "{set}");
    }
}

/// Rewrites `ix` with our writer from its symbols and series.
fn rewrite<B: AsRef<[u8]>>(ix: &IndexReader<B>, mut w: IndexWriter) -> IndexWriter {
    let syms: Vec<&str> = ix.symbols().map(Result::unwrap).collect();
    w.add_symbols(syms.iter().copied()).unwrap();
    for (r, ls, cs) in all_series(ix) {
        assert_eq!(w.add_series(&ls, &cs).unwrap(), r, "refs are reproduced");
    }
    w
}

#[test]
fn rewritten_fixtures_are_byte_identical_and_read_back_the_same() {
    for block in fixture_blocks() {
        let original = std::fs::read(block.join("index")).unwrap();
        let ix = IndexReader::from_bytes(&original[..], block.join("index")).unwrap();
        let ours = rewrite(&ix, IndexWriter::in_memory())
            .finish_to_vec()
            .unwrap();
        let back = IndexReader::from_bytes(&ours[..], PathBuf::from("rewritten")).unwrap();
        assert_eq!(back.toc(), ix.toc(), "{block:?}");
        assert_eq!(all_series(&back), all_series(&ix));
        assert_eq!(back.label_names(), ix.label_names());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for name in ix.label_names() {
            let values = ix.label_values(&name).unwrap();
            assert_eq!(back.label_values(&name).unwrap(), values);
            for v in values {
                ix.postings(&name, &v, &mut a).unwrap();
                back.postings(&name, &v, &mut b).unwrap();
                assert_eq!(a, b);
            }
        }
        let first_diff = original.iter().zip(&ours).position(|(x, y)| x != y);
        assert_eq!(first_diff, None, "{block:?} differs at byte {first_diff:?}");
        assert_eq!(original.len(), ours.len());
    }
}

#[test]
fn postings_spilled_to_disk_give_the_same_bytes() {
    // A spool of 7 entries spills every few series: the runs are merged back into exactly
    // the index Prometheus wrote, and the run files are gone afterwards.
    for block in fixture_blocks() {
        let original = std::fs::read(block.join("index")).unwrap();
        let ix = IndexReader::from_bytes(&original[..], block.join("index")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index");
        rewrite(&ix, IndexWriter::create_with_spool(&path, 7).unwrap())
            .finish()
            .unwrap();
        let ours = std::fs::read(&path).unwrap();
        let first_diff = original.iter().zip(&ours).position(|(x, y)| x != y);
        assert_eq!(first_diff, None, "{block:?} differs at byte {first_diff:?}");
        assert_eq!(original.len(), ours.len());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("index")]);
    }
}

#[test]
fn promtool_analyzes_a_block_with_our_index() {
    let promtool = Path::new("/usr/bin/promtool");
    if !promtool.exists() {
        eprintln!("skipped: /usr/bin/promtool not installed");
        return;
    }
    let block =
        Path::new(FIXTURES).join("prometheus-compacted-200series-10h/01M80EJD593276B0WSCA6NM0B3");
    let ulid = block.file_name().unwrap().to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dst = data.join(ulid);
    std::fs::create_dir_all(dst.join("chunks")).unwrap();
    std::fs::create_dir_all(data.join("wal")).unwrap();
    for f in ["meta.json", "tombstones", "chunks/000001"] {
        std::fs::copy(block.join(f), dst.join(f)).unwrap();
    }
    let ix = IndexReader::open(&block.join("index")).unwrap();
    rewrite(&ix, IndexWriter::create(&dst.join("index")).unwrap())
        .finish()
        .unwrap();
    let analyze = |dir: &Path| {
        let out = std::process::Command::new(promtool)
            .args(["tsdb", "analyze"])
            .arg(dir)
            .arg(ulid)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // The statistics head the report; the rankings below them break ties in Go map order.
    let head = |report: String| report.lines().take(6).collect::<Vec<_>>().join("\n");
    let ours = head(analyze(&data));
    assert!(ours.contains("Series: 200"), "{ours}");

    // The same report as for Prometheus's own index.
    let data2 = tmp.path().join("orig");
    std::fs::create_dir_all(data2.join(ulid).join("chunks")).unwrap();
    std::fs::create_dir_all(data2.join("wal")).unwrap();
    for f in ["meta.json", "tombstones", "chunks/000001", "index"] {
        std::fs::copy(block.join(f), data2.join(ulid).join(f)).unwrap();
    }
    assert_eq!(ours, head(analyze(&data2)));
}

// ---- Hostile input ----

/// Reads everything reachable; errors are fine, panics are not.
fn walk<B: AsRef<[u8]>>(ix: &IndexReader<B>) -> Result<(), IndexError> {
    for s in ix.symbols() {
        s?;
    }
    let mut refs = Vec::new();
    for name in ix.label_names() {
        for v in ix.label_values(&name)? {
            ix.postings(&name, &v, &mut refs)?;
        }
    }
    ix.all_postings(&mut refs)?;
    let (mut ls, mut cs) = (Vec::new(), Vec::new());
    for &r in &refs {
        ix.series(r, &mut ls, &mut cs)?;
    }
    Ok(())
}

#[test]
fn truncated_files_are_typed_errors() {
    let (data, path) = small_fixture();
    let mut cuts: Vec<usize> = (0..data.len()).step_by(13).collect();
    cuts.extend(data.len() - 200..data.len());
    for cut in cuts {
        let r = IndexReader::from_bytes(&data[..cut], path.clone());
        assert!(r.is_err(), "truncated at {cut} opened");
    }
    assert!(matches!(
        IndexReader::from_bytes(&data[..20], path.clone()),
        Err(IndexError::TooSmall { size: 20, .. })
    ));
}

#[test]
fn flipped_bytes_never_panic() {
    let (data, path) = small_fixture();
    let mut opened = 0;
    for i in (0..data.len()).step_by(3) {
        let mut bad = data.clone();
        bad[i] ^= 0x5A;
        if let Ok(ix) = IndexReader::from_bytes(&bad[..], path.clone()) {
            opened += 1;
            let _ = walk(&ix);
        }
    }
    // Bytes in series, postings, padding and legacy sections are checked only when read.
    assert!(opened > 0);
}

fn flipped(data: &[u8], at: u64) -> Vec<u8> {
    let mut bad = data.to_vec();
    bad[at as usize] ^= 0x01;
    bad
}

fn crc_err(e: IndexError) -> (&'static str, u64) {
    let msg = e.to_string();
    match e {
        IndexError::Crc {
            section, offset, ..
        } => {
            assert!(msg.contains("01M80EDTXX3TS2DC5H3CJBESG9/index"), "{msg}");
            assert!(msg.contains(&format!("offset {offset}")), "{msg}");
            (section, offset)
        }
        other => panic!("want a CRC error, got {other}"),
    }
}

#[test]
fn crc_errors_name_section_and_offset() {
    let (data, path) = small_fixture();
    let ix = IndexReader::from_bytes(&data[..], path.clone()).unwrap();
    let toc = *ix.toc();
    let open = |b: Vec<u8>| IndexReader::from_bytes(b, path.clone());

    let e = open(flipped(&data, toc.symbols + 20)).unwrap_err();
    assert_eq!(crc_err(e), ("symbol table", toc.symbols));

    let e = open(flipped(&data, toc.postings_offset_table + 30)).unwrap_err();
    assert_eq!(
        crc_err(e),
        ("postings offset table", toc.postings_offset_table)
    );

    let e = open(flipped(&data, data.len() as u64 - 20)).unwrap_err();
    assert_eq!(crc_err(e), ("TOC", data.len() as u64 - 52));

    // Series and postings lists are checked when read.
    let mut refs = Vec::new();
    ix.all_postings(&mut refs).unwrap();
    let first = u64::from(refs[3]) * 16;
    let bad = open(flipped(&data, first + 3)).unwrap();
    let e = bad
        .series(refs[3], &mut Vec::new(), &mut Vec::new())
        .unwrap_err();
    assert_eq!(crc_err(e), ("series", first));
    bad.series(refs[4], &mut Vec::new(), &mut Vec::new())
        .unwrap();

    // The all-postings list is read when opening, the others on request.
    let all_at = toc.postings.next_multiple_of(4);
    let e = open(flipped(&data, all_at + 12)).unwrap_err();
    assert_eq!(crc_err(e), ("postings", all_at));
    let next_at = all_at + 12 + 4 * refs.len() as u64;
    let bad = open(flipped(&data, next_at + 9)).unwrap();
    let name = &ix.label_names()[0];
    let value = &ix.label_values(name).unwrap()[0];
    let e = bad.postings(name, value, &mut refs).unwrap_err();
    assert_eq!(crc_err(e), ("postings", next_at));
}

#[test]
fn bad_headers_and_absurd_lengths_are_typed_errors() {
    let (data, path) = small_fixture();
    let open = |b: Vec<u8>| IndexReader::from_bytes(b, path.clone()).unwrap_err();

    let mut bad = data.clone();
    bad[0] = 0;
    assert!(matches!(
        open(bad),
        IndexError::BadMagic {
            found: 0x00AA_D700,
            ..
        }
    ));
    let mut bad = data.clone();
    bad[4] = 3;
    assert!(matches!(
        open(bad),
        IndexError::UnsupportedVersion { version: 3, .. }
    ));

    let ix = IndexReader::from_bytes(&data[..], path.clone()).unwrap();
    let toc = *ix.toc();
    for (at, section) in [
        (toc.symbols, "symbol table"),
        (toc.postings_offset_table, "postings offset table"),
    ] {
        let mut bad = data.clone();
        bad[at as usize..at as usize + 4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        match open(bad) {
            IndexError::PastEnd {
                section: s,
                offset,
                len,
                ..
            } => assert_eq!((s, offset, len), (section, at, 0xFFFF_FFF0 + 8)),
            other => panic!("want PastEnd, got {other}"),
        }
    }
    // A TOC pointing past the end, with a valid CRC.
    let mut bad = data.clone();
    let t = bad.len() - 52;
    bad[t + 40..t + 48].copy_from_slice(&u64::MAX.to_be_bytes());
    let crc = crate::encoding::crc32c(&bad[t..t + 48]);
    bad[t + 48..].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        open(bad),
        IndexError::PastEnd {
            section: "postings offset table",
            ..
        }
    ));

    // Series refs outside the series section.
    let (mut ls, mut cs) = (Vec::new(), Vec::new());
    for r in [0, 1, u32::MAX, (toc.label_indices / 16) as u32] {
        match ix.series(r, &mut ls, &mut cs) {
            Err(e @ IndexError::SeriesRefOutOfRange { .. }) => {
                assert_eq!(e.offset(), Some(u64::from(r) * 16));
            }
            other => panic!("ref {r}: want SeriesRefOutOfRange, got {other:?}"),
        }
    }
    // A ref inside the section but between series entries lands on padding or mid-entry.
    let mut refs = Vec::new();
    ix.all_postings(&mut refs).unwrap();
    assert!(ix.series(refs[0] + 1, &mut ls, &mut cs).is_err());
    assert!(matches!(
        ix.symbol(72),
        Err(IndexError::SymbolOutOfRange { .. })
    ));
}

// ---- Writer rules ----

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn chunk(min_time: i64, max_time: i64, chunk_ref: u64) -> ChunkMeta {
    ChunkMeta {
        min_time,
        max_time,
        chunk_ref,
    }
}

#[test]
fn writer_rejects_disorder() {
    let mut w = IndexWriter::in_memory();
    assert!(matches!(
        w.add_series(&labels(&[("a", "1")]), &[]),
        Err(IndexError::WrongStage { .. })
    ));
    assert!(matches!(
        w.add_symbols(["b", "a"]),
        Err(IndexError::UnorderedSymbols { .. })
    ));
    let mut w = IndexWriter::in_memory();
    w.add_symbols(["1", "2", "a", "b"]).unwrap();
    assert!(matches!(
        w.add_symbols(["x"]),
        Err(IndexError::WrongStage { .. })
    ));
    assert!(matches!(
        w.add_series(&Labels::empty(), &[]),
        Err(IndexError::UnorderedSeries { .. })
    ));
    assert!(matches!(
        w.add_series(&labels(&[("a", "3")]), &[]),
        Err(IndexError::UnknownSymbol { .. })
    ));
    // Four one-byte symbols end the table at byte 25; the first series is aligned to 32.
    assert_eq!(
        w.add_series(&labels(&[("a", "2")]), &[chunk(0, 10, 8)])
            .unwrap(),
        2
    );
    let e = w.add_series(&labels(&[("a", "1")]), &[]).unwrap_err();
    assert!(e.to_string().contains(r#"previous series {a="2"}"#), "{e}");
    assert!(matches!(
        w.add_series(&labels(&[("a", "2")]), &[]),
        Err(IndexError::UnorderedSeries { .. })
    ));
    for bad in [
        vec![chunk(0, 10, 7)],
        vec![chunk(0, 10, 9), chunk(10, 20, 10)],
        vec![chunk(5, 4, 9)],
    ] {
        assert!(matches!(
            w.add_series(&labels(&[("a", "2"), ("b", "1")]), &bad),
            Err(IndexError::UnorderedChunks { .. })
        ));
    }
    let r = w
        .add_series(
            &labels(&[("a", "2"), ("b", "1")]),
            &[chunk(0, 10, 9), chunk(11, 20, 10)],
        )
        .unwrap();
    assert_eq!(r, 3);
    let bytes = w.finish_to_vec().unwrap();
    let ix = IndexReader::from_bytes(bytes, PathBuf::from("m")).unwrap();
    assert_eq!(ix.num_series(), 2);
    let (mut ls, mut cs) = (Vec::new(), Vec::new());
    ix.series(r, &mut ls, &mut cs).unwrap();
    assert_eq!(ls, vec![Label::new("a", "2"), Label::new("b", "1")]);
    assert_eq!(cs, vec![chunk(0, 10, 9), chunk(11, 20, 10)]);
}

#[test]
fn empty_index_round_trips() {
    let bytes = IndexWriter::in_memory().finish_to_vec().unwrap();
    let ix = IndexReader::from_bytes(bytes, PathBuf::from("m")).unwrap();
    assert_eq!(ix.num_series(), 0);
    assert!(ix.label_names().is_empty());
    let m = [Matcher::new(MatchType::NotEqual, "a", "b").unwrap()];
    assert!(postings_for_matchers(&ix, &m).unwrap().is_empty());
}

#[test]
fn chunk_metas_with_extreme_times_round_trip() {
    let mut w = IndexWriter::in_memory();
    w.add_symbols(["a", "x"]).unwrap();
    let cs = [
        chunk(i64::MIN, -5, 8),
        chunk(-4, 3, 8),
        chunk(4, i64::MAX - 1, u64::MAX),
    ];
    let r = w.add_series(&labels(&[("a", "x")]), &cs).unwrap();
    let ix = IndexReader::from_bytes(w.finish_to_vec().unwrap(), PathBuf::from("m")).unwrap();
    let (mut ls, mut got) = (Vec::new(), Vec::new());
    ix.series(r, &mut ls, &mut got).unwrap();
    assert_eq!(got, cs);
}

// ---- Format v1 ----

/// A hand-built index. Version 1: symbol refs are file offsets, series refs are unaligned file
/// offsets and the postings offset table is in write order. Version 2: laid out as Prometheus
/// writes it since Aug 2025, without legacy label indices or label offset table.
fn hand_built_index(version: u8) -> Vec<u8> {
    use crate::encoding::{Encbuf, crc32c};
    let v1 = version == 1;
    let mut f = Encbuf::new();
    f.put_be32(0xBAAA_D700);
    f.put_u8(version);
    let syms = ["a", "b", "x", "y"];
    let mut sym_ref = Vec::new();
    let mut body = Encbuf::new();
    body.put_be32(syms.len() as u32);
    for (i, s) in syms.iter().enumerate() {
        sym_ref.push(if v1 {
            (5 + 4 + body.len()) as u64
        } else {
            i as u64
        });
        body.put_uvarint_bytes(s.as_bytes());
    }
    f.put_be32(body.len() as u32);
    f.put_bytes(body.get());
    f.put_be32(crc32c(body.get()));
    let series_start = f.len() as u64;
    // {a="x"}, {a="y", b="x"}
    let mut series_refs = Vec::new();
    for (ls, mint) in [(vec![(0, 2)], 100i64), (vec![(0, 3), (1, 2)], 200)] {
        if v1 {
            series_refs.push(f.len() as u32);
        } else {
            while !f.len().is_multiple_of(16) {
                f.put_u8(0);
            }
            series_refs.push((f.len() / 16) as u32);
        }
        let mut b = Encbuf::new();
        b.put_uvarint(ls.len() as u64);
        for (n, v) in ls {
            b.put_uvarint(sym_ref[n]);
            b.put_uvarint(sym_ref[v]);
        }
        b.put_uvarint(1);
        b.put_varint(mint);
        b.put_uvarint(10);
        b.put_uvarint(8);
        f.put_uvarint(b.len() as u64);
        f.put_bytes(b.get());
        f.put_be32(crc32c(b.get()));
    }
    let postings_start = f.len() as u64;
    let mut pot = Encbuf::new();
    let mut n = 0;
    let mut lists = vec![
        ("", "", series_refs.clone()),
        ("a", "x", vec![series_refs[0]]),
        ("a", "y", vec![series_refs[1]]),
        ("b", "x", vec![series_refs[1]]),
    ];
    if v1 {
        // v1 writers did not sort the table.
        lists.swap(0, 2);
    }
    for (name, value, refs) in lists {
        while !f.len().is_multiple_of(4) {
            f.put_u8(0);
        }
        pot.put_uvarint(2);
        pot.put_uvarint_bytes(name.as_bytes());
        pot.put_uvarint_bytes(value.as_bytes());
        pot.put_uvarint(f.len() as u64);
        n += 1;
        let mut b = Encbuf::new();
        b.put_be32(refs.len() as u32);
        for r in refs {
            b.put_be32(r);
        }
        f.put_be32(b.len() as u32);
        f.put_bytes(b.get());
        f.put_be32(crc32c(b.get()));
    }
    let pot_start = f.len() as u64;
    let mut b = Encbuf::new();
    b.put_be32(n);
    b.put_bytes(pot.get());
    f.put_be32(b.len() as u32);
    f.put_bytes(b.get());
    f.put_be32(crc32c(b.get()));
    Toc {
        symbols: 5,
        series: series_start,
        label_indices: if v1 { 0 } else { postings_start },
        label_offset_table: if v1 { 0 } else { pot_start },
        postings: postings_start,
        postings_offset_table: pot_start,
    }
    .encode(&mut f);
    f.buf
}

#[test]
fn hand_built_v1_and_legacy_free_v2_indexes_read_alike() {
    for version in [1, 2] {
        let ix = IndexReader::from_bytes(hand_built_index(version), PathBuf::from("hand")).unwrap();
        assert_eq!(ix.version(), version);
        assert_eq!(ix.num_series(), 2);
        assert_eq!(ix.label_names(), ["a", "b"]);
        assert_eq!(ix.label_values("a").unwrap(), ["x", "y"]);
        let series = all_series(&ix);
        assert_eq!(series[0].1, labels(&[("a", "x")]));
        assert_eq!(series[1].1, labels(&[("a", "y"), ("b", "x")]));
        assert_eq!(series[1].2, vec![chunk(200, 210, 8)]);
        let m = [Matcher::new(MatchType::NotEqual, "b", "x").unwrap()];
        assert_eq!(postings_for_matchers(&ix, &m).unwrap(), vec![series[0].0]);
    }
}

// ---- Matchers against brute force ----

mod select_prop {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 4] = ["__name__", "a", "b", "c"];
    const VALUES: [&str; 8] = ["", "x", "y", "xy", "yx", "foo", "foobar", "z\n"];
    const PATTERNS: [&str; 20] = [
        ".*",
        ".+",
        "x|y",
        "x",
        "",
        "|x",
        "foo.*",
        "f.*",
        "x.*y",
        "[xy]+",
        "(foo|x)",
        "y?",
        ".*o.*",
        "nope|x",
        "x|",
        "(?i)X",
        "z.",
        "foo(bar)?",
        "fo(o|x)b.*",
        "y(x|z\n)",
    ];

    fn series_strategy() -> impl Strategy<Value = Vec<Labels>> {
        let label = (0..NAMES.len(), 0..VALUES.len());
        let set = prop::collection::vec(label, 1..4)
            .prop_map(|ls| Labels::from_pairs(ls.into_iter().map(|(n, v)| (NAMES[n], VALUES[v]))));
        prop::collection::vec(set, 0..40).prop_map(|mut v| {
            v.sort();
            v.dedup();
            v
        })
    }

    fn matcher_strategy() -> impl Strategy<Value = Matcher> {
        let name = prop_oneof![
            (0..NAMES.len()).prop_map(|i| NAMES[i].to_string()),
            Just("missing".to_string())
        ];
        let eq_value = prop_oneof![
            (0..VALUES.len()).prop_map(|i| VALUES[i].to_string()),
            Just("nope".to_string())
        ];
        let pattern = (0..PATTERNS.len()).prop_map(|i| PATTERNS[i].to_string());
        prop_oneof![
            (name.clone(), eq_value.clone()).prop_map(|(n, v)| Matcher::new(
                MatchType::Equal,
                n,
                v
            )
            .unwrap()),
            (name.clone(), eq_value)
                .prop_map(|(n, v)| Matcher::new(MatchType::NotEqual, n, v).unwrap()),
            (name.clone(), pattern.clone()).prop_map(|(n, v)| Matcher::new(
                MatchType::Regexp,
                n,
                v
            )
            .unwrap()),
            (name, pattern).prop_map(|(n, v)| Matcher::new(MatchType::NotRegexp, n, v).unwrap()),
        ]
    }

    fn build(series: &[Labels]) -> IndexReader<Vec<u8>> {
        let mut syms = BTreeSet::new();
        for s in series {
            for l in s {
                syms.insert(l.name.as_str());
                syms.insert(l.value.as_str());
            }
        }
        let mut w = IndexWriter::in_memory();
        w.add_symbols(syms.iter().copied()).unwrap();
        for (i, s) in series.iter().enumerate() {
            let c = chunk(i as i64, i as i64 + 5, 8 + i as u64);
            w.add_series(s, &[c]).unwrap();
        }
        IndexReader::from_bytes(w.finish_to_vec().unwrap(), PathBuf::from("prop")).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn postings_for_matchers_equals_brute_force(
            series in series_strategy(),
            matchers in prop::collection::vec(matcher_strategy(), 1..4),
        ) {
            let ix = build(&series);
            let all = all_series(&ix);
            prop_assert_eq!(all.len(), series.len());
            let want: Vec<u32> = all
                .iter()
                .filter(|(_, ls, _)| matchers.iter().all(|m| m.matches(ls.get(&m.name).unwrap_or(""))))
                .map(|s| s.0)
                .collect();
            let got = postings_for_matchers(&ix, &matchers).unwrap();
            prop_assert_eq!(got, want, "matchers {:?}", matchers);
        }
    }

    #[test]
    fn selector_cases_prometheus_documents() {
        let series: Vec<Labels> = {
            let mut v = vec![
                labels(&[("n", "1")]),
                labels(&[("n", "1"), ("i", "a")]),
                labels(&[("n", "1"), ("i", "b")]),
                labels(&[("n", "2")]),
                labels(&[("n", "2.5")]),
            ];
            v.sort();
            v
        };
        let ix = build(&series);
        let select = |ms: &[(&str, MatchType, &str)]| -> BTreeSet<String> {
            let ms: Vec<Matcher> = ms
                .iter()
                .map(|&(n, t, v)| Matcher::new(t, n, v).unwrap())
                .collect();
            let refs = postings_for_matchers(&ix, &ms).unwrap();
            let (mut ls, mut cs) = (Vec::new(), Vec::new());
            refs.iter()
                .map(|&r| {
                    ix.series(r, &mut ls, &mut cs).unwrap();
                    Labels::from_sorted(ls.clone()).to_string()
                })
                .collect()
        };
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        use MatchType::*;
        assert_eq!(
            select(&[("n", Equal, "1"), ("i", Equal, "")]),
            set(&[r#"{n="1"}"#])
        );
        assert_eq!(
            select(&[("n", Equal, "1"), ("i", NotEqual, "a")]),
            set(&[r#"{n="1"}"#, r#"{i="b", n="1"}"#])
        );
        assert_eq!(
            select(&[("i", NotRegexp, ".+")]),
            set(&[r#"{n="1"}"#, r#"{n="2"}"#, r#"{n="2.5"}"#])
        );
        assert_eq!(
            select(&[("i", Regexp, ".+"), ("i", NotEqual, "a")]),
            set(&[r#"{i="b", n="1"}"#])
        );
        assert_eq!(
            select(&[("n", Regexp, "2.*")]),
            set(&[r#"{n="2"}"#, r#"{n="2.5"}"#])
        );
        assert_eq!(select(&[("missing", Equal, "x")]), set(&[]));
        assert_eq!(select(&[("i", NotRegexp, ".*")]), set(&[]));
        assert_eq!(select(&[("n", Regexp, ".*")]).len(), 5);
        assert_eq!(select(&[]).len(), 0);
    }
}
