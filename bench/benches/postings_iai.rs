//! Instruction counts of the postings kernels: intersect and union of half-shared pairs of 1k and
//! 100k entries per list, scalar against the dispatched SIMD kernels.
//!
//! Needs `cargo install iai-callgrind-runner --version 0.16.1` and valgrind to run.

#![allow(
    missing_docs,
    reason = "iai-callgrind's benchmark macros generate public items without doc comments"
)]

use std::hint::black_box;

use gauntlet_engine::index::postings::{self, scalar};
use iai_callgrind::{library_benchmark, library_benchmark_group, main};

/// Two lists of about `n` entries each, half of each list shared with the other (the same
/// generator as the criterion bench, so the figures compare).
fn half_shared(n: usize) -> (Vec<u32>, Vec<u32>) {
    let mut state = 7u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut v = 0u32;
    for _ in 0..n * 3 / 2 {
        let r = next();
        v += 1 + (r & 3) as u32;
        match (r >> 8) % 3 {
            0 => {
                a.push(v);
                b.push(v);
            }
            1 => a.push(v),
            _ => b.push(v),
        }
    }
    (a, b)
}

#[library_benchmark]
#[benches::sizes(args = [1_000, 100_000], setup = half_shared)]
fn intersect_scalar((a, b): (Vec<u32>, Vec<u32>)) -> Vec<u32> {
    let mut out = Vec::new();
    scalar::intersect(&a, &b, &mut out);
    black_box(out)
}

#[library_benchmark]
#[benches::sizes(args = [1_000, 100_000], setup = half_shared)]
fn intersect_simd((a, b): (Vec<u32>, Vec<u32>)) -> Vec<u32> {
    let mut out = Vec::new();
    postings::intersect(&a, &b, &mut out);
    black_box(out)
}

#[library_benchmark]
#[benches::sizes(args = [1_000, 100_000], setup = half_shared)]
fn union_scalar((a, b): (Vec<u32>, Vec<u32>)) -> Vec<u32> {
    let mut out = Vec::new();
    scalar::union(&a, &b, &mut out);
    black_box(out)
}

#[library_benchmark]
#[benches::sizes(args = [1_000, 100_000], setup = half_shared)]
fn union_simd((a, b): (Vec<u32>, Vec<u32>)) -> Vec<u32> {
    let mut out = Vec::new();
    postings::union(&a, &b, &mut out);
    black_box(out)
}

library_benchmark_group!(
    name = postings_kernels;
    benchmarks = intersect_scalar, intersect_simd, union_scalar, union_simd
);

main!(library_benchmark_groups = postings_kernels);
