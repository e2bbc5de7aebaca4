//! The WAL segment reader and record decoder on arbitrary bytes: the input read as a segment
//! (raw, and again with every fragment's CRC set right so the fuzzer reaches the fragment
//! sequencing, snappy and the record decoders) and as one record. Never a panic; a record
//! that decodes re-encodes to one that decodes to the same.
#![no_main]
use gauntlet_engine::encoding::crc32c;
use gauntlet_engine::wal::record::{self, Record};
use gauntlet_engine::wal::{PAGE_SIZE, SegmentReader};
use libfuzzer_sys::fuzz_target;

const HEADER: usize = 7;

fn read_segment(seg: &[u8]) {
    let mut r = SegmentReader::new(seg, "fuzz/segment");
    while let Ok(Some(rec)) = r.next() {
        check_record(rec);
    }
}

fn check_record(rec: &[u8]) {
    let Ok(decoded) = record::decode(rec) else {
        return;
    };
    let mut again = Vec::new();
    match &decoded {
        Record::Series(series) => {
            record::begin_series(&mut again);
            for s in series {
                record::encode_series_pairs(&mut again, s.r, s.labels.iter().copied());
            }
            assert_eq!(record::decode(&again).expect("own series"), decoded);
        }
        Record::Samples(samples) => {
            record::encode_samples(&mut again, samples);
            let Ok(Record::Samples(back)) = record::decode(&again) else {
                panic!("own samples do not decode");
            };
            let bits = |s: &[record::RefSample]| -> Vec<(u64, i64, u64)> {
                s.iter().map(|s| (s.r, s.t, s.v.to_bits())).collect()
            };
            assert_eq!(bits(&back), bits(samples));
        }
        Record::Tombstones(t) => {
            record::encode_tombstones(&mut again, t);
            assert_eq!(record::decode(&again).expect("own tombstones"), decoded);
        }
        Record::Exemplars(exemplars) => {
            record::encode_exemplars(&mut again, exemplars);
            let Ok(Record::Exemplars(back)) = record::decode(&again) else {
                panic!("own exemplars do not decode");
            };
            // Values compared as bits: a NaN exemplar comes back as the same NaN.
            let key = |e: &[record::RefExemplar]| -> Vec<(u64, i64, u64, String)> {
                e.iter()
                    .map(|e| (e.r, e.t, e.v.to_bits(), e.labels.to_string()))
                    .collect()
            };
            assert_eq!(key(&back), key(exemplars));
        }
        _ => {}
    }
}

/// Sets each fragment's CRC to its data's, walking the input as the reader walks a segment.
fn fix_crcs(seg: &mut [u8]) {
    let mut pos = 0;
    while pos + HEADER <= seg.len() {
        let page_end = (pos / PAGE_SIZE + 1) * PAGE_SIZE;
        if page_end - pos < HEADER || seg[pos] & 7 == 0 {
            pos = page_end;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([seg[pos + 1], seg[pos + 2]]));
        let end = (pos + HEADER + len).min(page_end).min(seg.len());
        let crc = crc32c(&seg[pos + HEADER..end]);
        seg[pos + 3..pos + HEADER].copy_from_slice(&crc.to_be_bytes());
        pos += HEADER + len;
    }
}

fuzz_target!(|data: &[u8]| {
    read_segment(data);
    let mut fixed = data.to_vec();
    fix_crcs(&mut fixed);
    read_segment(&fixed);
    check_record(data);
});
