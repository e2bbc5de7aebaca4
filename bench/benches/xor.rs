//! XOR chunk codec throughput, reported per sample (`decode_many*` run the AVX-512 lanes where
//! the CPU has them, see `xor_many_kernel_name`): group `xor` on the real chunks of
//! `testdata/tsdb/promtool-200series-2h` (800 chunks, 96 000 samples), group `xor_gen` on the
//! chunks Gauntlet's block writer cuts from the data generator's output (node, kube and app
//! families of 2 targets over 2 h, seed 1), written to a temporary directory at setup.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gauntlet_engine::chunk::{
    SampleBatch, XorIterator, decode_xor_into, decode_xor_many, decode_xor_many_flat, encode_xor,
};

mod xor_common;

use xor_common::generated_chunks;

fn fixture_chunks() -> Vec<Vec<u8>> {
    gauntlet_bench::fixture_xor_chunks(usize::MAX)
}

fn xor(c: &mut Criterion) {
    bench_chunks(c, "xor", &fixture_chunks());
    bench_chunks(c, "xor_gen", &generated_chunks());
}

fn bench_chunks(c: &mut Criterion, group: &str, chunks: &[Vec<u8>]) {
    let decoded: Vec<SampleBatch> = chunks
        .iter()
        .map(|data| {
            let mut b = SampleBatch::new();
            decode_xor_into(data, &mut b).expect("fixture chunk decodes");
            b
        })
        .collect();
    let samples: usize = decoded.iter().map(SampleBatch::len).sum();

    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(samples as u64));

    // One batch reused for all chunks, as a query reuses it across series.
    let mut batch = SampleBatch::with_capacity(256);
    g.bench_function("decode_into_batch", |b| {
        b.iter(|| {
            let mut n = 0;
            for data in chunks {
                batch.clear();
                n += decode_xor_into(black_box(data), &mut batch).unwrap();
                black_box(&batch);
            }
            n
        })
    });

    // All chunks in one call, each into its own batch, as the store reads a query's series.
    let slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let mut outs: Vec<SampleBatch> = decoded
        .iter()
        .map(|s| SampleBatch::with_capacity(s.len()))
        .collect();
    g.bench_function("decode_many", |b| {
        b.iter(|| {
            outs.iter_mut().for_each(SampleBatch::clear);
            let n = decode_xor_many(black_box(&slices), &mut outs).unwrap();
            black_box(&outs);
            n
        })
    });

    // The scalar twin of `decode_many`: the same batches, one `decode_xor_into` per chunk.
    g.bench_function("decode_many_one_by_one", |b| {
        b.iter(|| {
            outs.iter_mut().for_each(SampleBatch::clear);
            let mut n = 0;
            for (data, out) in slices.iter().zip(outs.iter_mut()) {
                n += decode_xor_into(black_box(data), out).unwrap();
            }
            black_box(&outs);
            n
        })
    });

    // All chunks into one flat batch with per-chunk ends, as a query gathers its series.
    let mut flat = SampleBatch::with_capacity(samples);
    let mut ends = Vec::with_capacity(slices.len());
    g.bench_function("decode_many_flat", |b| {
        b.iter(|| {
            flat.clear();
            ends.clear();
            let n = decode_xor_many_flat(black_box(&slices), &mut flat, &mut ends).unwrap();
            black_box(&flat);
            n
        })
    });

    g.bench_function("decode_iterator", |b| {
        b.iter(|| {
            let mut acc = 0i64;
            for data in chunks {
                let mut it = XorIterator::new(black_box(data)).unwrap();
                while let Some((t, v)) = it.next().unwrap() {
                    acc = acc.wrapping_add(t ^ v.to_bits() as i64);
                }
            }
            acc
        })
    });

    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for s in &decoded {
                bytes += encode_xor(black_box(&s.ts), black_box(&s.val)).len();
            }
            bytes
        })
    });
    g.finish();
}

criterion_group!(benches, xor);
criterion_main!(benches);
