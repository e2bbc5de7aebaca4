//! Writes fuzz seeds for `fuzz/fuzz_targets/remote_write_v1.rs` and `remote_write_v2.rs`:
//! small requests cut by the bench encoder, and one with histograms, exemplars and metadata,
//! each as the targets read them (a mode byte, then the raw protobuf or, with bit 0 set, the
//! snappy body). Used by `fuzz/run.sh`.
//!
//! `cargo run -p gauntlet-bench --example remote_write_seed -- V1_DIR V2_DIR`

use std::path::{Path, PathBuf};

use gauntlet_bench::datagen::GenConfig;
use gauntlet_bench::remote_write::{BatchConfig, encode_stream, v2};
use gauntlet_proto::io::prometheus::write::v2 as pb2;
use gauntlet_proto::prometheus as pb1;
use prost::Message;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [v1_dir, v2_dir] = args.as_slice() else {
        anyhow::bail!("usage: remote_write_seed V1_DIR V2_DIR");
    };
    std::fs::create_dir_all(v1_dir)?;
    std::fs::create_dir_all(v2_dir)?;
    let cfg = GenConfig {
        targets: 1,
        duration_ms: 60_000,
        pods_per_target: 1,
        ..GenConfig::default()
    };
    let batch = BatchConfig {
        max_samples_per_send: 12,
        external_labels: vec![("cluster".into(), "eu-1".into())],
        ..BatchConfig::default()
    };
    let stream = encode_stream(&cfg, &batch)?;
    let mut reqs: Vec<pb1::WriteRequest> = Vec::new();
    for r in stream.requests.iter().take(4) {
        let raw = snap::raw::Decoder::new().decompress_vec(&r.body)?;
        reqs.push(pb1::WriteRequest::decode(raw.as_slice())?);
    }
    reqs.push(rich());
    for (i, req) in reqs.iter().enumerate() {
        write(v1_dir, i, &req.encode_to_vec())?;
        let mut v2 = v2::from_v1(req);
        for (k, ts) in v2.timeseries.iter_mut().enumerate() {
            // Metadata and start timestamps, which 1.0 requests cannot carry.
            ts.metadata = Some(pb2::Metadata {
                r#type: (k % 8) as i32,
                help_ref: 0,
                unit_ref: 0,
            });
            if let Some(s) = ts.samples.first_mut() {
                s.start_timestamp = s.timestamp - 60_000;
            }
        }
        write(v2_dir, i, &v2.encode_to_vec())?;
    }
    Ok(())
}

/// Writes `raw` as two seeds: mode 0 (raw protobuf) and mode 0x1f (snappy, every label
/// limit on).
fn write(dir: &Path, i: usize, raw: &[u8]) -> anyhow::Result<()> {
    let mut seed = vec![0u8];
    seed.extend_from_slice(raw);
    std::fs::write(dir.join(format!("seed{i}-raw")), seed)?;
    let mut seed = vec![0x1fu8];
    seed.extend_from_slice(&snap::raw::Encoder::new().compress_vec(raw)?);
    std::fs::write(dir.join(format!("seed{i}-snappy")), seed)?;
    Ok(())
}

/// A request with what the encoder never writes: histograms, exemplars, metadata, non-ASCII.
fn rich() -> pb1::WriteRequest {
    let label = |n: &str, v: &str| pb1::Label {
        name: n.into(),
        value: v.into(),
    };
    pb1::WriteRequest {
        timeseries: vec![
            pb1::TimeSeries {
                labels: vec![label("__name__", "rpc_seconds"), label("zone", "zürich")],
                samples: vec![pb1::Sample {
                    value: 0.5,
                    timestamp: 1_700_000_000_000,
                }],
                exemplars: vec![pb1::Exemplar {
                    labels: vec![label("trace_id", "4bf92f3577b34da6")],
                    value: 0.42,
                    timestamp: 1_700_000_000_000,
                }],
                histograms: vec![],
            },
            pb1::TimeSeries {
                labels: vec![label("__name__", "rpc_duration")],
                histograms: vec![pb1::Histogram {
                    count: Some(pb1::histogram::Count::CountInt(7)),
                    sum: 1.5,
                    schema: 3,
                    zero_threshold: 1e-128,
                    zero_count: Some(pb1::histogram::ZeroCount::ZeroCountInt(1)),
                    positive_spans: vec![pb1::BucketSpan {
                        offset: 0,
                        length: 2,
                    }],
                    positive_deltas: vec![3, -1],
                    timestamp: 1_700_000_000_000,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        metadata: vec![pb1::MetricMetadata {
            r#type: 3,
            metric_family_name: "rpc_duration".into(),
            help: "RPC latency.".into(),
            unit: "seconds".into(),
        }],
    }
}
