//! The remote-write stream decodes (snappy, then protobuf) to exactly the generated samples,
//! with external labels and stale markers, batched as configured, and stays valid when its
//! timestamps are moved in place.

use std::collections::{BTreeMap, HashSet};

use gauntlet_bench::datagen::{GenConfig, Generator, Sample};
use gauntlet_bench::remote_write::{
    BatchConfig, RemoteWriteStream, encode_stream, read_frames, write_frames,
};
use gauntlet_engine::chunk::STALE_NAN_BITS;
use gauntlet_proto::prometheus::WriteRequest;
use prost::Message;

fn small() -> GenConfig {
    GenConfig {
        targets: 4,
        duration_ms: 3_600_000,
        churn_every_ms: 10 * 60_000,
        pods_per_target: 3,
        ..GenConfig::default()
    }
}

fn batch() -> BatchConfig {
    BatchConfig {
        max_samples_per_send: 500,
        shards: 3,
        external_labels: vec![
            ("cluster".into(), "eu-1".into()),
            ("replica".into(), "a".into()),
        ],
        ..BatchConfig::default()
    }
}

type LabelPairs = Vec<(String, String)>;
type Point = (LabelPairs, i64, u64);

/// Every sample of the stream as (labels, ts, value bits), in request order.
fn decode(stream: &RemoteWriteStream, max_per_req: usize) -> Vec<Point> {
    let mut out = Vec::new();
    for r in &stream.requests {
        let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
        let req = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(req.timeseries.len(), r.samples as usize);
        assert!(req.timeseries.len() <= max_per_req);
        for ts in req.timeseries {
            assert_eq!(
                ts.samples.len(),
                1,
                "one sample per TimeSeries, as Prometheus sends"
            );
            let labels: Vec<(String, String)> =
                ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
            assert!(
                labels.windows(2).all(|w| w[0].0 < w[1].0),
                "labels sorted by name"
            );
            out.push((
                labels,
                ts.samples[0].timestamp,
                ts.samples[0].value.to_bits(),
            ));
        }
    }
    out
}

#[test]
fn stream_decodes_to_the_generated_samples() {
    let cfg = small();
    let b = batch();
    let stream = encode_stream(&cfg, &b).unwrap();

    let mut g = Generator::new(&cfg).unwrap();
    let mut want: Vec<Point> = Vec::new();
    let mut buf: Vec<Sample> = Vec::new();
    while {
        buf.clear();
        g.next_scrape(&mut buf)
    } {
        for s in &buf {
            let mut labels: Vec<(String, String)> = g.series()[s.series as usize]
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            labels.extend(b.external_labels.iter().cloned());
            labels.sort();
            want.push((labels, s.ts_ms, s.value.to_bits()));
        }
    }
    let got = decode(&stream, b.max_samples_per_send);
    assert_eq!(got.len() as u64, stream.samples);
    assert_eq!(got.len(), want.len());
    let stale = got.iter().filter(|p| p.2 == STALE_NAN_BITS).count();
    assert!(stale > 0, "churn must end some series with stale markers");
    assert_eq!(stale as u64, stream.stale_markers);

    // Sharding reorders samples across series but keeps each series' samples in time order,
    // and every series stays on one shard.
    let per_series = |pts: &[Point]| {
        let mut m: BTreeMap<LabelPairs, Vec<(i64, u64)>> = BTreeMap::new();
        for (l, t, v) in pts {
            m.entry(l.clone()).or_default().push((*t, *v));
        }
        m
    };
    assert_eq!(per_series(&got), per_series(&want));
    let mut shard_of: BTreeMap<String, u32> = BTreeMap::new();
    for r in &stream.requests {
        let raw = snap::raw::Decoder::new().decompress_vec(&r.body).unwrap();
        for ts in WriteRequest::decode(raw.as_slice()).unwrap().timeseries {
            let key = format!("{:?}", ts.labels);
            assert_eq!(*shard_of.entry(key).or_insert(r.shard), r.shard);
        }
    }
    let shards: HashSet<u32> = stream.requests.iter().map(|r| r.shard).collect();
    assert_eq!(shards.len(), 3);
}

#[test]
fn timestamps_move_in_place_and_frames_round_trip() {
    let cfg = small();
    let mut stream = encode_stream(&cfg, &batch()).unwrap();
    let before = decode(&stream, 500);
    for r in &mut stream.requests {
        r.shift_timestamps(stream.span_ms).unwrap();
    }
    let after = decode(&stream, 500);
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!((&a.0, a.1 + 3_600_000, a.2), (&b.0, b.1, b.2));
    }
    // A shift that changes the varint width is refused instead of corrupting the body.
    let mut r = stream.requests[0].clone();
    assert!(r.shift_timestamps(-1_690_000_000_000).is_err());

    let mut file = Vec::new();
    let n = write_frames(&stream, &mut file).unwrap();
    assert_eq!(n as usize, file.len());
    let frames = read_frames(file.as_slice()).unwrap();
    assert_eq!(frames.len(), stream.requests.len());
    assert!(
        frames
            .iter()
            .zip(&stream.requests)
            .all(|(f, r)| *f == r.body)
    );
    // A truncated file is an error, not a short read.
    assert!(read_frames(&file[..file.len() - 3]).is_err());
}

#[test]
fn bad_batch_config_is_rejected() {
    let cfg = small();
    for b in [
        BatchConfig {
            max_samples_per_send: 0,
            ..batch()
        },
        BatchConfig {
            shards: 0,
            ..batch()
        },
    ] {
        assert!(encode_stream(&cfg, &b).is_err());
    }
}

#[test]
fn pods_per_target_sets_series_per_target() {
    for pods in [0, 3, 20] {
        let cfg = GenConfig {
            targets: 2,
            duration_ms: 60_000,
            churn_every_ms: 0,
            pods_per_target: pods,
            ..GenConfig::default()
        };
        let stream = encode_stream(&cfg, &BatchConfig::default()).unwrap();
        assert_eq!(stream.series, 2 * (99 + 6 * pods), "{pods} pods");
    }
}
