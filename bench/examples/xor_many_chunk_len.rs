//! Per-sample cost of the many-chunk decoder as a function of chunk length: the fixture's
//! samples re-encoded in chunks of n, decoded in one `decode_xor_many_flat` call (best of 50),
//! to separate per-chunk from per-sample cost.
//!
//! `cargo run --release -p gauntlet-bench --example xor_many_chunk_len`
use gauntlet_engine::chunk::{SampleBatch, decode_xor_into, decode_xor_many_flat, encode_xor};
use std::time::Instant;

fn main() {
    let chunks = gauntlet_bench::fixture_xor_chunks(usize::MAX);
    let mut all = SampleBatch::new();
    for c in &chunks {
        decode_xor_into(c, &mut all).unwrap();
    }
    let n_total = all.len();
    let ts: Vec<i64> = (0..n_total as i64).map(|i| i * 15_000).collect();
    for n in [30usize, 60, 120, 240, 480, 960] {
        let enc: Vec<Vec<u8>> = ts
            .chunks(n)
            .zip(all.val.chunks(n))
            .map(|(t, v)| encode_xor(t, v))
            .collect();
        let slices: Vec<&[u8]> = enc.iter().map(Vec::as_slice).collect();
        let mut out = SampleBatch::with_capacity(n_total);
        let mut ends = Vec::new();
        let (mut best_many, mut best_one) = (f64::MAX, f64::MAX);
        for _ in 0..50 {
            out.clear();
            ends.clear();
            let s = Instant::now();
            decode_xor_many_flat(&slices, &mut out, &mut ends).unwrap();
            best_many = best_many.min(s.elapsed().as_secs_f64());
            out.clear();
            let s = Instant::now();
            for c in &slices {
                decode_xor_into(c, &mut out).unwrap();
            }
            best_one = best_one.min(s.elapsed().as_secs_f64());
        }
        println!(
            "chunk len {n:>4}: many {:.2} ns/sample, one by one {:.2} ns/sample",
            best_many * 1e9 / n_total as f64,
            best_one * 1e9 / n_total as f64
        );
    }
}
