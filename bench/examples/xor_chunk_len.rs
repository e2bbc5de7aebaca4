//! Decode cost per sample as a function of chunk length, to separate per-chunk from per-sample cost.
use gauntlet_engine::chunk::{SampleBatch, decode_xor_into, encode_xor};
use std::time::Instant;

fn main() {
    let chunks = gauntlet_bench::fixture_xor_chunks(usize::MAX);
    let mut all = SampleBatch::new();
    for c in &chunks {
        decode_xor_into(c, &mut all).unwrap();
    }
    // Re-encode the fixture samples (concatenated, with increasing timestamps) in chunks of n.
    let n_total = all.len();
    let ts: Vec<i64> = (0..n_total as i64).map(|i| i * 15_000).collect();
    for n in [120usize, 480, 4000, 65535] {
        let enc: Vec<Vec<u8>> = ts
            .chunks(n)
            .zip(all.val.chunks(n))
            .map(|(t, v)| encode_xor(t, v))
            .collect();
        let mut out = SampleBatch::with_capacity(n_total);
        let mut best = f64::MAX;
        for _ in 0..30 {
            out.clear();
            let s = Instant::now();
            for c in &enc {
                decode_xor_into(c, &mut out).unwrap();
            }
            best = best.min(s.elapsed().as_secs_f64());
        }
        println!(
            "chunk len {n:>6}: {:.2} ns/sample",
            best * 1e9 / n_total as f64
        );
    }
}
