//! Wall time per sample of the XOR decoders on the fixture and generated chunk sets, best of
//! many short runs (robust on a loaded machine, where the best run is the one that kept its
//! core): one chunk at a time, `decode_xor_many` (one batch per chunk) and
//! `decode_xor_many_flat` (one batch for all), and the many-chunk calls on windows of `w`
//! chunks, as a query decodes a few series at a time.
//!
//! `cargo run --release -p gauntlet-bench --example xor_lanes [runs]`

use std::hint::black_box;
use std::time::Instant;

use gauntlet_engine::chunk::{
    SampleBatch, decode_xor_into, decode_xor_many, decode_xor_many_flat, xor_many_kernel_name,
};

#[path = "../benches/xor_common/mod.rs"]
mod xor_common;

/// Best wall time of `runs` calls of `f`, in seconds.
fn best_of(runs: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let s = Instant::now();
        black_box(f());
        best = best.min(s.elapsed().as_secs_f64());
    }
    best
}

fn report(set: &str, chunks: &[Vec<u8>], runs: usize) {
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut outs = vec![SampleBatch::with_capacity(256); slices.len()];
    let samples = decode_xor_many(&slices, &mut outs).expect("chunk set decodes");
    let per = |secs: f64| secs * 1e9 / samples as f64;

    let mut batch = SampleBatch::with_capacity(65_536);
    let one = best_of(runs, || {
        let mut n = 0;
        for c in &slices {
            batch.clear();
            n += decode_xor_into(c, &mut batch).unwrap();
        }
        n
    });
    let many = best_of(runs, || {
        outs.iter_mut().for_each(SampleBatch::clear);
        decode_xor_many(&slices, &mut outs).unwrap()
    });
    let mut flat = SampleBatch::with_capacity(samples);
    let mut ends = Vec::with_capacity(slices.len());
    let flat_t = best_of(runs, || {
        flat.clear();
        ends.clear();
        decode_xor_many_flat(&slices, &mut flat, &mut ends).unwrap()
    });
    // The floor set by memory: filling the flat batch's columns with zeros, no decoding.
    let fill = best_of(runs, || {
        flat.clear();
        flat.ts.resize(samples, 0);
        flat.val.resize(samples, 0.0);
        flat.len()
    });
    println!(
        "{set:>9}: {} chunks, {samples} samples; ns/sample: one by one {:.2}, many {:.2}, flat {:.2} (zero-filling the columns alone {:.2})",
        slices.len(),
        per(one),
        per(many),
        per(flat_t),
        per(fill)
    );
    for w in [4, 8, 16, 32, 64] {
        let t = best_of(runs, || {
            let mut n = 0;
            for win in slices.chunks(w) {
                flat.clear();
                ends.clear();
                n += decode_xor_many_flat(win, &mut flat, &mut ends).unwrap();
            }
            n
        });
        println!("{set:>9}:   flat in windows of {w:>2} chunks {:.2}", per(t));
    }
}

fn main() {
    let runs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    println!("many-chunk kernel: {}", xor_many_kernel_name());
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average: {}", l.trim());
    }
    report(
        "fixture",
        &gauntlet_bench::fixture_xor_chunks(usize::MAX),
        runs,
    );
    report("generated", &xor_common::generated_chunks(), runs);
}
