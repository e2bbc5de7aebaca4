//! The writer and reader against each other and against Prometheus's byte layout; torn tails,
//! flipped bytes and their repair; checkpoints.

use std::path::Path;

use proptest::prelude::*;

use super::record::{self, Record, RefSample, Tombstone};
use super::*;

/// Deterministic bytes: xorshift from `seed`; `compressible` repeats a short pattern instead.
fn bytes(seed: u64, len: usize, compressible: bool) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(if compressible {
            (i % 7) as u8 * 3
        } else {
            x as u8
        });
    }
    out
}

fn read_all(dir: &Path) -> Result<Vec<Vec<u8>>, WalError> {
    let mut r = WalReader::open(dir)?;
    let mut out = Vec::new();
    while let Some(rec) = r.next()? {
        out.push(rec.to_vec());
    }
    Ok(out)
}

/// Reads one segment's bytes: the records, then the error that stopped it, if any.
fn read_segment(seg: &[u8]) -> (Vec<Vec<u8>>, Option<WalError>) {
    let mut r = SegmentReader::new(seg, "seg");
    let mut out = Vec::new();
    loop {
        match r.next() {
            Ok(Some(rec)) => out.push(rec.to_vec()),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Where each record of an intact segment starts and ends, found by walking its fragments.
fn record_spans(seg: &[u8]) -> Vec<(usize, usize)> {
    walk(seg).0
}

/// The record spans of an intact segment, and where each fragment starts.
fn walk(seg: &[u8]) -> (Vec<(usize, usize)>, Vec<usize>) {
    let (mut spans, mut frags) = (Vec::new(), Vec::new());
    let (mut pos, mut start) = (0, 0);
    while pos < seg.len() {
        let t = seg[pos] & 7;
        if t == 0 {
            pos = (pos / PAGE_SIZE + 1) * PAGE_SIZE;
            continue;
        }
        frags.push(pos);
        let len = usize::from(u16::from_be_bytes([seg[pos + 1], seg[pos + 2]]));
        if t == 1 || t == 2 {
            start = pos;
        }
        pos += HEADER_SIZE + len;
        if t == 1 || t == 4 {
            spans.push((start, pos));
        }
    }
    (spans, frags)
}

fn opts(pages: usize, compress: bool) -> WalOptions {
    WalOptions {
        segment_size: pages * PAGE_SIZE,
        compress,
    }
}

fn segment_bytes(dir: &Path, n: u32) -> Vec<u8> {
    std::fs::read(segment_name(dir, n)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Records of any size, compressible or not, come back in order across pages, segment
    /// cuts the writer makes and segment changes asked for; closed segments end on a page
    /// boundary and stay within their size unless one record alone is larger.
    #[test]
    fn writer_reader_round_trip(
        recs in proptest::collection::vec(
            (0usize..70_000, any::<bool>(), any::<u64>(), 0u8..12),
            1..40,
        ),
        compress in any::<bool>(),
        pages in 2usize..6,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = WalWriter::open(&dir, opts(pages, compress)).unwrap();
        let mut want = Vec::new();
        let mut batch: Vec<Vec<u8>> = Vec::new();
        for (len, compressible, seed, action) in recs {
            batch.push(bytes(seed, len, compressible));
            // Batches of one to three records; now and then a segment change.
            if action % 3 == 0 {
                let refs: Vec<&[u8]> = batch.iter().map(|r| &r[..]).collect();
                w.log(&refs).unwrap();
                want.append(&mut batch);
            }
            if action == 1 {
                w.next_segment().unwrap();
            }
        }
        let refs: Vec<&[u8]> = batch.iter().map(|r| &r[..]).collect();
        w.log(&refs).unwrap();
        want.append(&mut batch);
        let last = w.segment();
        prop_assert_eq!(read_all(&dir).unwrap(), want);
        for n in 0..last {
            let seg = segment_bytes(&dir, n);
            prop_assert_eq!(seg.len() % PAGE_SIZE, 0, "segment {} not padded", n);
            let spans = record_spans(&seg);
            prop_assert!(seg.len() <= pages * PAGE_SIZE || spans.len() == 1);
        }
        w.close().unwrap();
        prop_assert_eq!(segment_bytes(&dir, last).len() % PAGE_SIZE, 0);
        // Reopening starts a new segment after the last.
        let w = WalWriter::open(&dir, opts(pages, compress)).unwrap();
        prop_assert_eq!(w.segment(), last + 1);
    }
}

/// Prometheus's page rules, byte for byte: a record fills a page to its end; with exactly a
/// header's room left the next record starts with an empty first fragment; with less the
/// rest of the page is zeros; a record that does not fit the rest of the segment starts the
/// next, and the closed segment's last page is padded.
#[test]
fn pages_are_cut_as_prometheus_cuts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = WalWriter::open(&dir, opts(2, false)).unwrap();
    // Leaves exactly 7 bytes in page 0.
    let a = bytes(1, PAGE_SIZE - 2 * HEADER_SIZE, false);
    w.log(&[&a]).unwrap();
    // Starts with an empty first fragment in page 0; its last fragment ends 3 bytes before
    // the end of page 1, which are then zeros.
    let b = bytes(2, PAGE_SIZE - HEADER_SIZE - 3, false);
    w.log(&[&b]).unwrap();
    let seg = segment_bytes(&dir, 0);
    assert_eq!(seg.len(), 2 * PAGE_SIZE);
    let at = PAGE_SIZE - HEADER_SIZE;
    assert_eq!(seg[0], 1);
    assert_eq!(&seg[at..PAGE_SIZE], &[2, 0, 0, 0, 0, 0, 0]);
    assert_eq!(seg[PAGE_SIZE], 4);
    assert!(seg[2 * PAGE_SIZE - 3..].iter().all(|&b| b == 0));
    // The segment is full: the next record goes to segment 1.
    w.log(&[b"x"]).unwrap();
    assert_eq!(w.segment(), 1);
    let mut want = vec![1, 0, 1];
    want.extend_from_slice(&crate::encoding::crc32c(b"x").to_be_bytes());
    want.push(b'x');
    assert_eq!(segment_bytes(&dir, 1), want);
    // Closing pads the page: the segment is one whole page.
    assert_eq!(w.next_segment().unwrap(), 1);
    let seg1 = segment_bytes(&dir, 1);
    assert_eq!(seg1.len(), PAGE_SIZE);
    assert!(seg1[8..].iter().all(|&b| b == 0));
    assert_eq!(read_all(&dir).unwrap(), vec![a, b, b"x".to_vec()]);
}

/// A record larger than a segment gets a segment of its own, longer than the others.
#[test]
fn a_record_larger_than_a_segment_gets_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = WalWriter::open(&dir, opts(2, false)).unwrap();
    let big = bytes(3, 3 * PAGE_SIZE, false);
    w.log(&[b"a", &big, b"b"]).unwrap();
    assert_eq!(w.segment(), 2);
    assert_eq!(segment_bytes(&dir, 0).len(), PAGE_SIZE);
    assert_eq!(record_spans(&segment_bytes(&dir, 1)).len(), 1);
    assert_eq!(
        read_all(&dir).unwrap(),
        vec![b"a".to_vec(), big, b"b".to_vec()]
    );
}

#[test]
fn compression_is_used_only_when_smaller() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = WalWriter::open(&dir, opts(4, true)).unwrap();
    let small = b"abc".to_vec();
    let repetitive = bytes(0, 50_000, true);
    w.log(&[&small, &repetitive]).unwrap();
    let seg = segment_bytes(&dir, 0);
    assert_eq!(seg[0], 1, "a record snappy would grow is written plain");
    assert_eq!(seg[10], 1 | 0x08, "a repetitive record is compressed");
    assert!(seg.len() < 5_000);
    assert_eq!(read_all(&dir).unwrap(), vec![small, repetitive]);
}

/// A segment of a few records, its last page part filled, for the torn-tail tests.
/// Records are added until the last page holds 20-30 KB, so most cuts fall inside records.
fn torn_tail_fixture(dir: &Path, compress: bool) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut w = WalWriter::open(dir, opts(8, compress)).unwrap();
    let mut recs = Vec::new();
    let sizes = [900usize, 31_000, 5_000, 1, 12_000, 300, 7_000, 40, 3_000];
    for i in 0..200 {
        let rec = bytes(i as u64 + 10, sizes[i % sizes.len()], i % 3 == 0);
        w.log(&[&rec]).unwrap();
        recs.push(rec);
        let len = std::fs::metadata(segment_name(dir, 0)).unwrap().len() as usize;
        if recs.len() >= 6 && len > PAGE_SIZE && (20_000..30_000).contains(&(len % PAGE_SIZE)) {
            return (recs, segment_bytes(dir, 0));
        }
    }
    panic!("no fixture shape found");
}

/// The log cut at every byte of its last page: the records wholly before the cut come back;
/// a cut inside a record is reported at the record's start; repair at that offset leaves a
/// log that reads back every record before it, and takes new records after them.
#[test]
fn a_torn_tail_is_found_at_every_byte_and_repaired() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let (recs, seg) = torn_tail_fixture(&dir, compress);
        let spans = record_spans(&seg);
        assert_eq!(spans.len(), recs.len());
        let last_page = (seg.len() - 1) / PAGE_SIZE * PAGE_SIZE;
        assert!(last_page > 0 && seg.len() - last_page > 20_000);
        for cut in last_page..=seg.len() {
            let whole = spans.iter().filter(|s| s.1 <= cut).count();
            let torn = spans.iter().find(|s| s.0 < cut && cut < s.1);
            let (got, err) = read_segment(&seg[..cut]);
            assert_eq!(got, recs[..whole], "cut at {cut}");
            match (torn, err) {
                (None, None) => {}
                (Some(s), Some(WalError::Corrupt { offset, .. })) => {
                    assert_eq!(offset, s.0 as u64, "cut at {cut}")
                }
                (t, e) => panic!("cut at {cut}: torn record {t:?}, error {e:?}"),
            }
            // Repair on disk, every few cuts (and every cut near a record's ends).
            let near = spans
                .iter()
                .any(|s| cut.abs_diff(s.0) < 3 || cut.abs_diff(s.1) < 3);
            if torn.is_none() || !(near || cut % 61 == 0) {
                continue;
            }
            let path = segment_name(&dir, 0);
            std::fs::write(&path, &seg[..cut]).unwrap();
            let err = read_all(&dir).unwrap_err();
            repair(&dir, &err).unwrap();
            assert_eq!(
                std::fs::metadata(&path).unwrap().len() % PAGE_SIZE as u64,
                0
            );
            assert_eq!(read_all(&dir).unwrap(), recs[..whole], "repaired at {cut}");
        }
        let mut w = WalWriter::open(&dir, opts(8, compress)).unwrap();
        w.log(&[b"after"]).unwrap();
        let mut got = read_all(&dir).unwrap();
        assert_eq!(got.pop().unwrap(), b"after");
    }
}

/// Corruption in an earlier segment: repair cuts it there and deletes every later segment.
#[test]
fn repair_drops_the_segments_after_the_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = WalWriter::open(&dir, opts(2, false)).unwrap();
    let recs: Vec<Vec<u8>> = (0..12).map(|i| bytes(i, 15_000, false)).collect();
    for r in &recs {
        w.log(&[r]).unwrap();
    }
    assert_eq!(w.segment(), 2);
    let path = segment_name(&dir, 1);
    let mut seg = std::fs::read(&path).unwrap();
    let spans = record_spans(&seg);
    seg[spans[1].0 + 100] ^= 0x40;
    std::fs::write(&path, &seg).unwrap();
    let err = read_all(&dir).unwrap_err();
    let WalError::Corrupt {
        segment, offset, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!((segment, *offset), (&path, spans[1].0 as u64));
    let before = record_spans(&segment_bytes(&dir, 0)).len() + 1;
    repair(&dir, &err).unwrap();
    assert_eq!(segment_range(&dir).unwrap(), Some((0, 1)));
    assert_eq!(read_all(&dir).unwrap(), recs[..before]);
    // Only a Corrupt error of this log's own segments is repaired.
    let io = WalError::InvalidArgument("x".into());
    assert!(matches!(
        repair(&dir, &io),
        Err(WalError::InvalidArgument(_))
    ));
    let elsewhere = WalError::Corrupt {
        segment: dir.join("checkpoint.00000001").join("00000000"),
        offset: 0,
        reason: String::new(),
    };
    assert!(matches!(
        repair(&dir, &elsewhere),
        Err(WalError::InvalidArgument(_))
    ));
}

/// Any byte of any fragment flipped: the records before its record come back intact, then
/// an error; never a wrong record. Two spots the format leaves unguarded, in Prometheus as
/// here: the snappy bit of a type byte (the CRC covers the data only), which may turn the
/// record into another without an error, and padding, where a flipped byte may form a valid
/// empty record (a header of zeros but the type); neither may touch the records before.
#[test]
fn a_flipped_byte_is_detected() {
    for compress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let mut w = WalWriter::open(&dir, opts(4, compress)).unwrap();
        let recs: Vec<Vec<u8>> = (0..9)
            .map(|i| bytes(i, [10, 2_000, 20_000, 300][i as usize % 4], i % 3 == 0))
            .collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| &r[..]).collect();
        w.log(&refs).unwrap();
        w.close().unwrap();
        let seg = segment_bytes(&dir, 0);
        let (spans, frags) = walk(&seg);
        let owner = |i: usize| spans.iter().position(|s| s.0 <= i && i < s.1);
        let header = |i: usize| frags.iter().any(|&f| (f..f + HEADER_SIZE).contains(&i));
        let mut damaged = seg.clone();
        for i in 0..seg.len() {
            // Every byte once; headers, where the flags are, and a sample of the rest with
            // every mask.
            let masks: &[u8] = if header(i) || i % 17 == 0 {
                &[0x01, 0x02, 0x08, 0x10, 0x80, 0xFF]
            } else {
                &[0x01]
            };
            for &mask in masks {
                damaged[i] ^= mask;
                let (got, err) = read_segment(&damaged);
                match owner(i) {
                    Some(k) if mask == 0x08 && frags.contains(&i) => {
                        assert_eq!(got[..k], recs[..k], "byte {i} ^ {mask:#x}");
                        assert!(err.is_some() || got[k] != recs[k]);
                    }
                    Some(k) => {
                        assert!(err.is_some(), "byte {i} ^ {mask:#x} went unnoticed");
                        assert_eq!(got, recs[..k], "byte {i} ^ {mask:#x}");
                    }
                    None => {
                        let nonempty: Vec<&Vec<u8>> =
                            got.iter().filter(|r| !r.is_empty()).collect();
                        let want: Vec<&Vec<u8>> = recs.iter().take(nonempty.len()).collect();
                        assert_eq!(nonempty, want, "padding byte {i} ^ {mask:#x}");
                        assert!(err.is_some() || nonempty.len() == recs.len());
                    }
                }
                damaged[i] ^= mask;
            }
        }
    }
}

#[test]
fn gaps_between_segments_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = WalWriter::open(&dir, opts(2, false)).unwrap();
    for _ in 0..3 {
        w.log(&[b"r"]).unwrap();
        w.next_segment().unwrap();
    }
    std::fs::remove_file(segment_name(&dir, 1)).unwrap();
    assert!(matches!(
        WalReader::open(&dir),
        Err(WalError::Layout { .. })
    ));
    assert!(matches!(
        WalWriter::open(&dir, WalOptions::default()),
        Err(WalError::Layout { .. })
    ));
    assert!(matches!(
        WalWriter::open(&dir, opts(0, false)),
        Err(WalError::InvalidArgument(_))
    ));
}

fn series_rec(refs: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    record::begin_series(&mut out);
    for r in refs {
        let v = r.to_string();
        record::encode_series_pairs(&mut out, r, [("__name__", "m"), ("id", v.as_str())]);
    }
    out
}

fn samples_rec(refs: std::ops::Range<u64>, t: i64) -> Vec<u8> {
    let s: Vec<RefSample> = refs.map(|r| RefSample { r, t, v: r as f64 }).collect();
    let mut out = Vec::new();
    record::encode_samples(&mut out, &s);
    out
}

/// What a replay holds.
#[derive(Debug, Default)]
struct Replayed {
    series: Vec<u64>,
    /// (ref, t) of every sample.
    samples: Vec<(u64, i64)>,
    tombstones: Vec<u64>,
    other: usize,
}

fn replay(dir: &Path) -> Replayed {
    let mut r = WalReader::open(dir).unwrap();
    let mut out = Replayed::default();
    while let Some(rec) = r.next().unwrap() {
        match record::decode(rec).unwrap() {
            Record::Series(s) => out.series.extend(s.iter().map(|s| s.r)),
            Record::Samples(s) => out.samples.extend(s.iter().map(|s| (s.r, s.t))),
            Record::Tombstones(t) => out.tombstones.extend(t.iter().map(|t| t.r)),
            _ => out.other += 1,
        }
    }
    out
}

/// A checkpoint holds the kept series, their samples from mint on and their live
/// tombstones; a replay reads it and then only the segments after it; a second checkpoint
/// builds on the first.
#[test]
fn checkpoints_keep_what_is_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = WalWriter::open(&dir, opts(2, true)).unwrap();
    let mut stones = Vec::new();
    record::encode_tombstones(
        &mut stones,
        &[
            Tombstone {
                r: 2,
                mint: 0,
                maxt: 50,
            },
            Tombstone {
                r: 4,
                mint: 0,
                maxt: 500,
            },
            Tombstone {
                r: 3,
                mint: 0,
                maxt: 500,
            },
        ],
    );
    for seg in 0..4i64 {
        let t = seg * 100;
        w.log(&[
            &series_rec(seg as u64 * 2..seg as u64 * 2 + 2),
            &samples_rec(0..8, t),
        ])
        .unwrap();
        if seg == 1 {
            w.log(&[&stones, &[6, 1, 2]]).unwrap();
        }
        w.next_segment().unwrap();
    }
    let keep = |r: u64| r.is_multiple_of(2);
    let stats = checkpoint(&dir, 0, 2, &keep, 100).unwrap();
    assert_eq!(stats.total_series, 6);
    assert_eq!(stats.dropped_series, 3);
    assert_eq!(stats.total_samples, 24);
    // t=0 all dropped, then the odd refs of t=100 and t=200.
    assert_eq!(stats.dropped_samples, 8 + 4 + 4);
    assert_eq!((stats.total_tombstones, stats.dropped_tombstones), (3, 2));
    assert_eq!(stats.dropped_other_records, 1);
    let (cp, n) = last_checkpoint(&dir).unwrap().unwrap();
    assert_eq!(
        (cp.file_name().unwrap().to_str().unwrap(), n),
        ("checkpoint.00000002", 2)
    );
    let got = replay(&dir);
    let mut want_samples: Vec<(u64, i64)> = [100, 200]
        .iter()
        .flat_map(|&t| [0, 2, 4, 6].map(|r| (r, t)))
        .collect();
    want_samples.extend((0..8).map(|r| (r, 300)));
    assert_eq!(got.series, [0, 2, 4, 6, 7]);
    assert_eq!(got.samples, want_samples);
    assert_eq!(got.tombstones, [4]);
    assert_eq!(got.other, 0);

    // Truncation as the head does it, then a checkpoint over the first.
    delete_segments_before(&dir, 3).unwrap();
    assert_eq!(segment_range(&dir).unwrap(), Some((3, 4)));
    assert!(matches!(
        checkpoint(&dir, 5, 4, &keep, 0),
        Err(WalError::InvalidArgument(_))
    ));
    std::fs::create_dir(dir.join("checkpoint.00000003.tmp")).unwrap();
    let stats = checkpoint(&dir, 3, 3, &|r| r < 5, 250).unwrap();
    assert_eq!(stats.total_series, 3 + 2);
    assert!(!dir.join("checkpoint.00000003.tmp").exists());
    delete_checkpoints_before(&dir, 3).unwrap();
    delete_segments_before(&dir, 4).unwrap();
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let got = replay(&dir);
    assert_eq!(got.series, [0, 2, 4]);
    assert_eq!(got.samples, (0..5).map(|r| (r, 300)).collect::<Vec<_>>());
    assert_eq!(got.tombstones, [4]);
}

/// A replay after a checkpoint needs the segment right after it.
#[test]
fn a_missing_segment_after_the_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut w = WalWriter::open(&dir, opts(2, false)).unwrap();
    for _ in 0..4 {
        w.log(&[&series_rec(0..1)]).unwrap();
        w.next_segment().unwrap();
    }
    checkpoint(&dir, 0, 1, &|_| true, 0).unwrap();
    delete_segments_before(&dir, 3).unwrap();
    assert!(matches!(
        WalReader::open(&dir),
        Err(WalError::Layout { .. })
    ));
}

/// Sets each fragment's CRC to its data's, so damaged input reaches the checks behind it.
fn fix_crcs(seg: &mut [u8]) {
    let mut pos = 0;
    while pos + HEADER_SIZE <= seg.len() {
        let page_end = (pos / PAGE_SIZE + 1) * PAGE_SIZE;
        if page_end - pos < HEADER_SIZE || seg[pos] & 7 == 0 {
            pos = page_end;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([seg[pos + 1], seg[pos + 2]]));
        let end = (pos + HEADER_SIZE + len).min(page_end).min(seg.len());
        let crc = crate::encoding::crc32c(&seg[pos + HEADER_SIZE..end]);
        seg[pos + 3..pos + HEADER_SIZE].copy_from_slice(&crc.to_be_bytes());
        pos += HEADER_SIZE + len;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Arbitrary bytes, and a real segment with bytes overwritten and its CRCs set right, read
    /// as a segment: records or an error, never a panic; every record decodes or fails cleanly.
    #[test]
    fn any_segment_bytes_read_or_fail_cleanly(
        noise in proptest::collection::vec(any::<u8>(), 0..3000),
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 0..8),
        compress in any::<bool>(),
    ) {
        for seg in [noise.clone(), {
            let tmp = tempfile::tempdir().unwrap();
            let mut w = WalWriter::open(tmp.path(), opts(2, compress)).unwrap();
            let a = bytes(1, 40_000, true);
            let b = bytes(2, 300, false);
            let mut c = Vec::new();
            record::encode_samples(&mut c, &[RefSample { r: 1, t: 2, v: 3.0 }]);
            w.log(&[&a, &b, &c, &noise]).unwrap();
            let mut seg = segment_bytes(tmp.path(), 0);
            for (at, v) in &edits {
                let i = usize::from(*at) % seg.len();
                seg[i] = *v;
            }
            fix_crcs(&mut seg);
            seg
        }] {
            let mut r = SegmentReader::new(&seg[..], "seg");
            while let Ok(Some(rec)) = r.next() {
                let _ = record::decode(rec);
            }
        }
    }
}
