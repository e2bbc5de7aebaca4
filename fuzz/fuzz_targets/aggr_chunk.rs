//! Arbitrary bytes as a Thanos aggregate chunk (encoding 0xFF): reading any aggregate, keeping
//! a subset, and decoding the chunk for every kind of query read must never panic; a kept
//! subset must read back the same sub-chunks. The input split at every `0xA5` byte is also read
//! as one series of several chunks (counter chaining across chunks).

#![no_main]

use gauntlet_engine::chunk::{AggrChunk, AggrType, SampleBatch, retain_aggregates};
use gauntlet_engine::downsample::{AggrRead, ServedChunk, decode_chunks};
use libfuzzer_sys::fuzz_target;

const READS: [AggrRead; 6] = [
    AggrRead::Count,
    AggrRead::Sum,
    AggrRead::Min,
    AggrRead::Max,
    AggrRead::Counter,
    AggrRead::Average,
];

fuzz_target!(|data: &[u8]| {
    let c = AggrChunk::new(data);
    let _ = c.num_samples();
    let present = c.present();
    let want: Vec<AggrType> = AggrType::ALL
        .into_iter()
        .filter(|t| present[*t as usize].is_some())
        .collect();
    let kept = retain_aggregates(data, &want).expect("present aggregates can be kept");
    let k = AggrChunk::new(&kept);
    for t in &want {
        assert_eq!(
            k.get(*t).ok(),
            present[*t as usize],
            "{t} changed when kept"
        );
    }

    let served: Vec<ServedChunk<'_>> = data
        .split(|&b| b == 0xA5)
        .enumerate()
        .map(|(i, part)| {
            let ac = AggrChunk::new(part);
            ServedChunk {
                min_time: i as i64,
                max_time: i as i64,
                // Every third part also stands in for a raw chunk.
                raw: (i % 3 == 2).then_some(part),
                aggr: AggrType::ALL.map(|t| ac.get_xor(t).ok()),
            }
        })
        .collect();
    for read in READS {
        // Arbitrary values may be negative, so chained "counters" may fall here as they would
        // in Thanos; what must hold is that no input panics.
        let mut out = SampleBatch::new();
        let _ = decode_chunks(&served, read, &mut out);
    }
});
