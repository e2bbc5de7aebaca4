//! Instruction counts (Callgrind) of the XOR chunk codec on fixed sets of chunks: the first 100
//! chunks (12 000 samples) of `testdata/tsdb/promtool-200series-2h`, and for decoding also the
//! first 100 chunks the block writer cuts from generated data (see `xor_common`). Unlike wall
//! time, these counts are stable on a shared machine. Needs `iai-callgrind-runner` 0.16.1.

#![allow(
    missing_docs,
    reason = "iai-callgrind's benchmark macros generate public items without doc comments"
)]

use std::hint::black_box;

use gauntlet_engine::chunk::{
    SampleBatch, XorIterator, decode_xor_into, decode_xor_many_flat, encode_xor,
};
use iai_callgrind::{library_benchmark, library_benchmark_group, main};

mod xor_common;

/// Chunks measured: enough to amortise per-call overhead, few enough for a quick Callgrind run.
const CHUNKS: usize = 100;

fn fixture_chunks() -> Vec<Vec<u8>> {
    gauntlet_bench::fixture_xor_chunks(CHUNKS)
}

fn generated_chunks() -> Vec<Vec<u8>> {
    let mut chunks = xor_common::generated_chunks();
    chunks.truncate(CHUNKS);
    chunks
}

fn fixture_samples() -> Vec<SampleBatch> {
    fixture_chunks()
        .iter()
        .map(|data| {
            let mut b = SampleBatch::new();
            decode_xor_into(data, &mut b).expect("fixture chunk decodes");
            b
        })
        .collect()
}

#[library_benchmark]
#[bench::fixture(setup = fixture_chunks)]
#[bench::generated(setup = generated_chunks)]
fn decode_into_batch(chunks: Vec<Vec<u8>>) -> usize {
    let mut batch = SampleBatch::with_capacity(256);
    let mut n = 0;
    for data in &chunks {
        batch.clear();
        n += decode_xor_into(black_box(data), &mut batch).expect("fixture chunk decodes");
        black_box(&batch);
    }
    n
}

#[library_benchmark]
#[bench::fixture(setup = fixture_chunks)]
#[bench::generated(setup = generated_chunks)]
fn decode_many_flat(chunks: Vec<Vec<u8>>) -> usize {
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut flat = SampleBatch::with_capacity(256 * slices.len());
    let mut ends = Vec::with_capacity(slices.len());
    decode_xor_many_flat(black_box(&slices), &mut flat, &mut ends).expect("chunks decode")
}

#[library_benchmark]
#[bench::fixture(setup = fixture_chunks)]
fn decode_iterator(chunks: Vec<Vec<u8>>) -> i64 {
    let mut acc = 0i64;
    for data in &chunks {
        let mut it = XorIterator::new(black_box(data)).expect("fixture chunk has a header");
        while let Some((t, v)) = it.next().expect("fixture chunk decodes") {
            acc = acc.wrapping_add(t ^ v.to_bits() as i64);
        }
    }
    acc
}

#[library_benchmark]
#[bench::fixture(setup = fixture_samples)]
fn encode(samples: Vec<SampleBatch>) -> usize {
    samples
        .iter()
        .map(|s| encode_xor(black_box(&s.ts), black_box(&s.val)).len())
        .sum()
}

library_benchmark_group!(
    name = xor;
    benchmarks = decode_into_batch, decode_many_flat, decode_iterator, encode
);

main!(library_benchmark_groups = xor);
