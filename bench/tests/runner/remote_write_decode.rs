//! The engine's remote-write decoder reads the bench encoder's requests (1.0, and 2.0 made
//! from them) to the same series and samples prost reads, and every series passes Thanos's
//! label checks.

use gauntlet_bench::datagen::GenConfig;
use gauntlet_bench::remote_write::{BatchConfig, encode_stream, v2};
use gauntlet_engine::remote_write::{
    LabelLimits, Version, WriteBatch, decode, decompress, validate_labels,
};
use gauntlet_proto::prometheus::WriteRequest;
use prost::Message;

type Series = (Vec<(String, String)>, Vec<(i64, u64)>);

fn ours(batch: &WriteBatch) -> Vec<Series> {
    (0..batch.len())
        .map(|i| {
            let labels = batch
                .series_labels(i)
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let samples = batch
                .series_samples(i)
                .iter()
                .map(|s| (s.t, s.v.to_bits()))
                .collect();
            (labels, samples)
        })
        .collect()
}

#[test]
fn encoder_output_decodes_as_prost_decodes_it() {
    let cfg = GenConfig {
        targets: 3,
        duration_ms: 30 * 60_000,
        churn_every_ms: 10 * 60_000,
        pods_per_target: 3,
        ..GenConfig::default()
    };
    let b = BatchConfig {
        max_samples_per_send: 700,
        shards: 2,
        external_labels: vec![("cluster".into(), "eu-1".into())],
        ..BatchConfig::default()
    };
    let stream = encode_stream(&cfg, &b).unwrap();
    let (mut raw, mut kept) = (Vec::new(), WriteBatch::new());
    let mut samples = 0u64;
    for r in &stream.requests {
        decompress(&r.body, 16 << 20, &mut raw).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        let want: Vec<Series> = req
            .timeseries
            .iter()
            .map(|t| {
                let labels = t
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                let samples = t
                    .samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect();
                (labels, samples)
            })
            .collect();
        let raw2 = v2::from_v1(&req).encode_to_vec();
        let mut batch = kept.recycle();
        decode(Version::V1, &raw, &mut batch).unwrap();
        assert_eq!(ours(&batch), want);
        for i in 0..batch.len() {
            validate_labels(batch.series_labels(i), &LabelLimits::default()).unwrap();
        }
        samples += batch.samples.len() as u64;
        decode(Version::V2, &raw2, &mut batch).unwrap();
        assert_eq!(ours(&batch), want);
        kept = batch.recycle();
    }
    assert_eq!(samples, stream.samples);
}
