//! XOR chunk codec throughput on the real chunks of `testdata/tsdb/promtool-200series-2h`
//! (800 chunks, 96 000 samples), reported per sample.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gauntlet_engine::chunk::{SampleBatch, XorIterator, decode_xor_into, encode_xor};
use gauntlet_engine::encoding::Decbuf;

/// Payloads of the XOR chunks in a chunk segment file (spec §3.5).
fn segment_chunks(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut d = Decbuf::new(&bytes, 0);
    d.skip(8).expect("segment header");
    let mut out = Vec::new();
    while d.remaining() > 0 {
        let len = d.uvarint().expect("record length") as usize;
        let encoding = d.u8().expect("encoding byte");
        let data = d.bytes(len).expect("record data");
        d.be32().expect("record CRC");
        if encoding == 1 {
            out.push(data.to_vec());
        }
    }
    out
}

fn fixture_chunks() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/tsdb/promtool-200series-2h/01M80EDTXX3TS2DC5H3CJBESG9/chunks/000001");
    segment_chunks(&dir)
}

fn xor(c: &mut Criterion) {
    let chunks = fixture_chunks();
    let decoded: Vec<SampleBatch> = chunks
        .iter()
        .map(|data| {
            let mut b = SampleBatch::new();
            decode_xor_into(data, &mut b).expect("fixture chunk decodes");
            b
        })
        .collect();
    let samples: usize = decoded.iter().map(SampleBatch::len).sum();

    let mut g = c.benchmark_group("xor");
    g.throughput(Throughput::Elements(samples as u64));

    // One batch reused for all chunks, as a query reuses it across series.
    let mut batch = SampleBatch::with_capacity(256);
    g.bench_function("decode_into_batch", |b| {
        b.iter(|| {
            let mut n = 0;
            for data in &chunks {
                batch.clear();
                n += decode_xor_into(black_box(data), &mut batch).unwrap();
                black_box(&batch);
            }
            n
        })
    });

    g.bench_function("decode_iterator", |b| {
        b.iter(|| {
            let mut acc = 0i64;
            for data in &chunks {
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
