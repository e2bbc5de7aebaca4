//! Decoding remote-write requests as the receiver does: requests of 2 000 samples cut by the
//! bench's encoder the way a Prometheus queue manager cuts them (one sample per series, the
//! external labels merged in), as 1.0 bodies and converted to 2.0; prost decoding the same
//! bytes into owned messages for scale. Throughput is samples, so criterion's time over
//! 2 000 is the cost per sample.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gauntlet_bench::datagen::GenConfig;
use gauntlet_bench::remote_write::{BatchConfig, encode_stream, v2};
use gauntlet_engine::remote_write::{Version, WriteBatch, decode, decompress};
use gauntlet_proto::prometheus::WriteRequest;
use prost::Message;

/// The first full request of ten minutes of 40 targets (7 400 series, so that 5 s of
/// scrapes fill a request before the send deadline cuts it), compressed and not.
fn request() -> (Vec<u8>, Vec<u8>, u64) {
    let cfg = GenConfig {
        targets: 40,
        duration_ms: 600_000,
        ..GenConfig::default()
    };
    let batch = BatchConfig {
        external_labels: vec![
            ("cluster".into(), "eu-west-1".into()),
            ("replica".into(), "a".into()),
        ],
        ..BatchConfig::default()
    };
    let stream = encode_stream(&cfg, &batch).expect("generate");
    let r = stream
        .requests
        .iter()
        .find(|r| r.samples as usize == batch.max_samples_per_send)
        .expect("a full request");
    let mut raw = Vec::new();
    decompress(&r.body, 64 << 20, &mut raw).expect("decompress");
    (r.body.clone(), raw, u64::from(r.samples))
}

fn remote_write(c: &mut Criterion) {
    let (body, raw, samples) = request();
    let raw2 = v2::from_v1(&WriteRequest::decode(raw.as_slice()).unwrap()).encode_to_vec();
    eprintln!(
        "request: {samples} samples, {} bytes snappy, {} bytes 1.0 protobuf, {} bytes 2.0",
        body.len(),
        raw.len(),
        raw2.len()
    );
    let mut g = c.benchmark_group("remote_write");
    g.throughput(Throughput::Elements(samples));
    let mut batch = WriteBatch::new();
    g.bench_function("decode 1.0", |b| {
        b.iter(|| {
            decode(Version::V1, black_box(&raw), &mut batch).unwrap();
            black_box(batch.samples.len())
        })
    });
    let mut batch = batch.recycle();
    g.bench_function("decode 2.0", |b| {
        b.iter(|| {
            decode(Version::V2, black_box(&raw2), &mut batch).unwrap();
            black_box(batch.samples.len())
        })
    });
    // As a receiver reuses both buffers: the batch is recycled before the body buffer is.
    let (mut buf, mut kept) = (Vec::new(), WriteBatch::new());
    g.bench_function("decompress and decode 1.0", |b| {
        b.iter(|| {
            decompress(black_box(&body), 64 << 20, &mut buf).unwrap();
            let mut batch = std::mem::take(&mut kept).recycle();
            decode(Version::V1, &buf, &mut batch).unwrap();
            let n = batch.samples.len();
            kept = batch.recycle();
            black_box(n)
        })
    });
    g.bench_function("prost decode 1.0", |b| {
        b.iter(|| WriteRequest::decode(black_box(raw.as_slice())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, remote_write);
criterion_main!(benches);
