//! Chunks written by real Prometheus: every one decodes, and re-encoding its samples gives back
//! the exact bytes Prometheus wrote.

use std::io::{BufRead, BufReader};

use flate2::read::GzDecoder;

use std::path::{Path, PathBuf};

use super::{read_segment, segment_files, testdata};
use crate::chunk::{Encoding, SampleBatch, XorIterator, decode_xor_into, encode_xor};

/// Prometheus-written edge cases kept beside this module (see `testdata/README.md`).
fn edge_cases() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/chunk/testdata/xor-edge-cases")
}

/// Decodes every chunk of every fixture block, re-encodes it and compares bytes.
#[test]
fn every_fixture_chunk_reencodes_to_prometheus_bytes() {
    let mut files = segment_files(&testdata());
    files.extend(segment_files(&edge_cases()));
    assert!(files.len() >= 5, "fixture segment files missing: {files:?}");
    let mut chunks = 0;
    let mut samples = 0;
    let mut batch = SampleBatch::new();
    for file in &files {
        for c in read_segment(file) {
            assert_eq!(Encoding::try_from(c.encoding), Ok(Encoding::Xor));
            batch.clear();
            let n = decode_xor_into(&c.data, &mut batch)
                .unwrap_or_else(|e| panic!("{file:?} @ {}: {e}", c.offset));
            assert_eq!(n, batch.len());
            let again = encode_xor(&batch.ts, &batch.val);
            assert!(
                again == c.data,
                "{file:?} @ {}: re-encoded chunk differs",
                c.offset
            );
            chunks += 1;
            samples += n;
        }
    }
    // 800 + 800 + 2400 + 800 chunks of 200-series blocks, one of 10053 series, 57 edge cases.
    assert_eq!(chunks, 800 + 800 + 2400 + 800 + 10053 + 57);
    assert!(samples > 96_000);
}

/// The iterator yields the same samples as the batch decoder on every fixture chunk.
#[test]
fn iterator_agrees_with_batch_decoder_on_fixtures() {
    let mut batch = SampleBatch::new();
    let mut files = segment_files(&testdata());
    files.extend(segment_files(&edge_cases()));
    for file in files {
        for c in read_segment(&file) {
            batch.clear();
            decode_xor_into(&c.data, &mut batch).unwrap();
            let mut it = XorIterator::new(&c.data).unwrap();
            assert_eq!(it.num_samples(), batch.len());
            for (t, v) in batch.iter() {
                let (it_t, it_v) = it.next().unwrap().unwrap();
                assert_eq!((it_t, it_v.to_bits()), (t, v.to_bits()));
            }
            assert_eq!(it.next(), Ok(None));
        }
    }
}

/// Parses a `promtool tsdb dump` value, printed with Go's `%g`.
fn parse_go_float(s: &str) -> f64 {
    match s {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s.parse().unwrap_or_else(|e| panic!("bad value {s:?}: {e}")),
    }
}

/// Reads `(t, v)` of every line of a dump, in file order.
fn read_dump(path: &Path) -> Vec<(i64, f64)> {
    let f = std::fs::File::open(path).unwrap();
    let mut out = Vec::new();
    for line in BufReader::new(GzDecoder::new(f)).lines() {
        let line = line.unwrap();
        let mut parts = line.rsplitn(3, ' ');
        let t = parts.next().unwrap().parse::<i64>().unwrap();
        let v = parse_go_float(parts.next().unwrap());
        out.push((t, v));
    }
    out
}

/// Decodes all chunks of a block in segment order (which is series order, like the dump).
fn decode_block(dir: &Path) -> SampleBatch {
    let mut batch = SampleBatch::new();
    for file in segment_files(dir) {
        for c in read_segment(&file) {
            decode_xor_into(&c.data, &mut batch).unwrap();
        }
    }
    batch
}

fn assert_matches_dump(batch: &SampleBatch, dump: &[(i64, f64)]) {
    assert_eq!(batch.len(), dump.len());
    for (i, ((t, v), &(dt, dv))) in batch.iter().zip(dump).enumerate() {
        assert_eq!(t, dt, "sample {i}: timestamp");
        // %g prints the shortest decimal that reads back as the same float, so this is exact.
        assert!(
            v.to_bits() == dv.to_bits() || (v.is_nan() && dv.is_nan()),
            "sample {i}: {v} vs dump {dv}"
        );
    }
}

/// The promtool block holds 96000 samples, equal to `promtool tsdb dump` line by line.
#[test]
fn promtool_block_decodes_to_its_dump() {
    let batch = decode_block(&testdata().join("promtool-200series-2h"));
    assert_eq!(batch.len(), 96_000);
    assert_matches_dump(
        &batch,
        &read_dump(&testdata().join("promtool-200series-2h.dump.txt.gz")),
    );
}

/// The remote-write block (irregular timestamps, one chunk per series) equals its dump too.
#[test]
fn remote_write_block_decodes_to_its_dump() {
    let batch = decode_block(&testdata().join("prometheus-head-compacted-remote-write"));
    assert_eq!(batch.len(), 80_524);
    assert_matches_dump(
        &batch,
        &read_dump(&testdata().join("prometheus-head-compacted-remote-write.dump.txt.gz")),
    );
}

/// The edge-case block (NaN, ±Inf, -0, every dod bucket, 1-sample chunks) equals its dump.
#[test]
fn edge_case_block_decodes_to_its_dump() {
    let batch = decode_block(&edge_cases());
    assert_eq!(batch.len(), 2785);
    let dump = read_dump(&edge_cases().join("dump.txt.gz"));
    assert_matches_dump(&batch, &dump);
    // -0 survives with its sign, and Go's NaN keeps its payload.
    assert_eq!(batch.val[1].to_bits(), (-0.0f64).to_bits());
    assert!(
        batch
            .val
            .iter()
            .any(|v| v.to_bits() == 0x7ff8_0000_0000_0001)
    );
}
