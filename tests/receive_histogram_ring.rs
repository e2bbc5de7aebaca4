//! Native histograms across a hashring: three `gauntlet receive` processes on loopback share
//! one ring, and writes of many native histogram series (integer, float and custom-bucket;
//! remote write 1.0 and 2.0; bucket layouts that change from sample to sample) sent to one of
//! them reach the receivers the ring names. With replication factor 1 each receiver's head
//! holds exactly the series Thanos's hashmod gives it; with replication factor 3 each holds all
//! of them, and a deduplicating `gauntlet query` over the three answers every histogram once.
//! What each receiver serves over the StoreAPI (read by the Python grpcio client, chunks
//! decoded here) must be every histogram sent, exactly; 2.0 answers count the histograms
//! written to a quorum.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::receive::{Receiver, V1, now_ms, post, snappy};
use common::storeapi::{hex, python_calls, series_call};
use common::*;
use gauntlet_engine::chunk::{decode_float_histogram_chunk, decode_histogram_chunk};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use gauntlet_proto::io::prometheus::write::v2 as pb2;
use gauntlet_proto::prometheus as pb;
use prost::Message;

const TENANT: &str = "default-tenant";
const V2: (&str, &str) = (
    "Content-Type",
    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
);

/// Series (label name → value) → histogram samples, each as (timestamp ms, normal form).
type Hists = BTreeMap<BTreeMap<String, String>, Vec<(i64, FloatHistogram)>>;

/// Series → (timestamp ms, count, sum) per histogram sample, as the HTTP API answers.
type CountSums = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64, f64)>>;

/// A histogram in a form two encodings of it share: float counts, empty buckets dropped,
/// spans joined, no counter-reset hint (chunks carry their own).
fn normal(h: FloatHistogram) -> FloatHistogram {
    let mut h = FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        ..h
    };
    h.compact(0).unwrap();
    h
}

fn spans(s: &[(i32, u32)]) -> Vec<pb::BucketSpan> {
    s.iter()
        .map(|&(offset, length)| pb::BucketSpan { offset, length })
        .collect()
}

/// Deltas of absolute counts, as integer histograms carry them.
fn deltas(counts: &[u64]) -> Vec<i64> {
    let mut prev = 0i64;
    counts
        .iter()
        .map(|&c| {
            let d = c as i64 - prev;
            prev = c as i64;
            d
        })
        .collect()
}

/// Histogram `j` of series `i` of kind `kind` at `t`: integer ones gain a bucket every other
/// sample (the head recodes its chunk), float ones switch schema 1 → 1, custom ones have
/// custom bounds.
fn hist(kind: usize, i: usize, j: usize, t: i64) -> pb::Histogram {
    use pb::histogram::{Count, ZeroCount};
    let (i, j) = (i as u64, j as u64);
    match kind {
        0 => {
            let mut pos = vec![i + j + 1, 2 * j + 3, 5];
            let mut pos_spans = vec![(-1, 2), (1, 1)];
            if j % 2 == 1 {
                pos.push(j + 2);
                pos_spans[1].1 = 2;
            }
            let neg = [j + 1, i % 5];
            let zero = (i + j) % 3;
            pb::Histogram {
                count: Some(Count::CountInt(
                    pos.iter().sum::<u64>() + neg.iter().sum::<u64>() + zero,
                )),
                zero_count: Some(ZeroCount::ZeroCountInt(zero)),
                sum: 1.5 * (i * 10 + j) as f64 - 3.25,
                schema: 2,
                zero_threshold: 0.001,
                positive_spans: spans(&pos_spans),
                positive_deltas: deltas(&pos),
                negative_spans: spans(&[(2, 2)]),
                negative_deltas: deltas(&neg),
                timestamp: t,
                ..Default::default()
            }
        }
        1 => {
            let pos: Vec<f64> = (0..4).map(|k| 0.25 * (i + j + k) as f64 + 0.5).collect();
            let zero = 0.5 * (j % 4) as f64;
            pb::Histogram {
                count: Some(Count::CountFloat(pos.iter().sum::<f64>() + zero)),
                zero_count: Some(ZeroCount::ZeroCountFloat(zero)),
                sum: 1e6 + 0.1 * (i * 10 + j) as f64,
                schema: 1,
                zero_threshold: 0.0,
                positive_spans: spans(&[(0, 1), (2, 3)]),
                positive_counts: pos,
                reset_hint: 3,
                timestamp: t,
                ..Default::default()
            }
        }
        _ => {
            let pos = vec![(i + j) as f64, 0.0, 2.5, 1e-7 * j as f64];
            pb::Histogram {
                count: Some(Count::CountFloat(pos.iter().sum())),
                zero_count: Some(ZeroCount::ZeroCountFloat(0.0)),
                sum: 3.0 * j as f64,
                schema: -53,
                positive_spans: spans(&[(0, 2), (1, 2)]),
                positive_counts: pos,
                custom_values: vec![0.1, 0.5, 1.0, 5.0],
                timestamp: t,
                ..Default::default()
            }
        }
    }
}

/// The histogram a message carries, in normal form.
fn model(h: &pb::Histogram) -> FloatHistogram {
    use pb::histogram::{Count, ZeroCount};
    let sp = |s: &[pb::BucketSpan]| -> Vec<Span> {
        s.iter()
            .map(|s| Span {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let f = match h.count {
        Some(Count::CountFloat(count)) => FloatHistogram {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: match h.zero_count {
                Some(ZeroCount::ZeroCountFloat(z)) => z,
                _ => unreachable!(),
            },
            count,
            sum: h.sum,
            positive_spans: sp(&h.positive_spans),
            negative_spans: sp(&h.negative_spans),
            positive_buckets: h.positive_counts.clone(),
            negative_buckets: h.negative_counts.clone(),
            custom_values: h.custom_values.as_slice().into(),
            ..FloatHistogram::default()
        },
        _ => Histogram {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: match h.zero_count {
                Some(ZeroCount::ZeroCountInt(z)) => z,
                _ => unreachable!(),
            },
            count: match h.count {
                Some(Count::CountInt(n)) => n,
                _ => unreachable!(),
            },
            sum: h.sum,
            positive_spans: sp(&h.positive_spans),
            negative_spans: sp(&h.negative_spans),
            positive_buckets: h.positive_deltas.clone(),
            negative_buckets: h.negative_deltas.clone(),
            ..Histogram::default()
        }
        .to_float(),
    };
    normal(f)
}

/// `n` series `name{i="0".."n"}` of histograms of kinds 0, 1, 2 in turn, `samples` each,
/// 1 s apart from `t0`.
fn batch(name: &str, n: usize, t0: i64, samples: usize) -> Vec<pb::TimeSeries> {
    (0..n)
        .map(|i| pb::TimeSeries {
            labels: vec![
                pb::Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                pb::Label {
                    name: "i".into(),
                    value: i.to_string(),
                },
            ],
            histograms: (0..samples)
                .map(|j| hist(i % 3, i, j, t0 + j as i64 * 1000))
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// A remote write 1.0 body of `ts`.
fn body_v1(ts: &[pb::TimeSeries]) -> Vec<u8> {
    snappy(
        &pb::WriteRequest {
            timeseries: ts.to_vec(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// A remote write 2.0 body of `ts` (its histograms re-read as 2.0 messages: fields 1-16 are
/// the same).
fn body_v2(ts: &[pb::TimeSeries]) -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut index = BTreeMap::new();
    let mut sym = |s: &str| -> u32 {
        *index.entry(s.to_string()).or_insert_with(|| {
            symbols.push(s.to_string());
            symbols.len() as u32 - 1
        })
    };
    let timeseries: Vec<pb2::TimeSeries> = ts
        .iter()
        .map(|s| pb2::TimeSeries {
            labels_refs: s
                .labels
                .iter()
                .flat_map(|l| [sym(&l.name), sym(&l.value)])
                .collect(),
            histograms: s
                .histograms
                .iter()
                .map(|h| pb2::Histogram::decode(h.encode_to_vec().as_slice()).unwrap())
                .collect(),
            ..Default::default()
        })
        .collect();
    snappy(
        &pb2::Request {
            symbols,
            timeseries,
        }
        .encode_to_vec(),
    )
}

/// What `ts` look like served by a receiver labelled `replica` (`None`: through the querier).
fn expected(ts: &[pb::TimeSeries], replica: Option<&str>) -> Hists {
    let mut out = Hists::new();
    for s in ts {
        let mut labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        labels.insert("tenant_id".into(), TENANT.into());
        if let Some(r) = replica {
            labels.insert("receive_replica".into(), r.into());
        }
        let e = out.entry(labels).or_default();
        e.extend(s.histograms.iter().map(|h| (h.timestamp, model(h))));
        e.sort_by_key(|x| x.0);
    }
    out
}

/// Thanos's hashmod owner of a series with `labels` (sorted) among `addresses`: xxhash64 of
/// the tenant and labels with 0xFF after each, modulo the endpoints sorted by address.
fn hashmod_owner(labels: &BTreeMap<String, String>, addresses: &[String]) -> usize {
    let mut key = Vec::new();
    key.extend_from_slice(TENANT.as_bytes());
    key.push(0xFF);
    for (n, v) in labels {
        for part in [n, v] {
            key.extend_from_slice(part.as_bytes());
            key.push(0xFF);
        }
    }
    let h = xxhash_rust::xxh64::xxh64(&key, 0);
    let mut sorted = addresses.to_vec();
    sorted.sort();
    let owner = &sorted[(h % sorted.len() as u64) as usize];
    addresses.iter().position(|a| a == owner).unwrap()
}

/// Receivers sharing a hashrings file.
struct Ring {
    receivers: Vec<Receiver>,
    addresses: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl Ring {
    fn start(n: usize, rf: u64) -> Ring {
        let tmp = tempfile::tempdir().unwrap();
        let ports: Vec<[u16; 3]> = (0..n).map(|_| free_ports()).collect();
        let addresses: Vec<String> = ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p[1]))
            .collect();
        let ring_file: PathBuf = tmp.path().join("hashrings.json");
        std::fs::write(
            &ring_file,
            serde_json::json!([{"hashring": "default", "endpoints": addresses}]).to_string(),
        )
        .unwrap();
        let receivers = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let args = [
                    format!("--label=receive_replica=\"r{i}\""),
                    format!("--receive.hashrings-file={}", ring_file.display()),
                    format!("--receive.local-endpoint={}", addresses[i]),
                    format!("--receive.replication-factor={rf}"),
                    "--receive-forward-timeout=5s".to_string(),
                ];
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Receiver::start_bare(&tmp.path().join(format!("r{i}")), &args, *p)
            })
            .collect();
        Ring {
            receivers,
            addresses,
            _tmp: tmp,
        }
    }

    /// Sends `ts` to receiver `i` as remote write 1.0 or 2.0; returns (status, headers, body).
    fn write(&self, i: usize, v2: bool, ts: &[pb::TimeSeries]) -> (u16, String, String) {
        let (ct, body) = if v2 {
            (V2, body_v2(ts))
        } else {
            (V1, body_v1(ts))
        };
        post(
            self.receivers[i].rw,
            "/api/v1/receive",
            &[ct, ("Content-Encoding", "snappy")],
            &body,
        )
        .unwrap()
    }

    /// Every histogram receiver `i` serves over the StoreAPI for metric names matching `re`.
    fn served(&self, i: usize, re: &str) -> Hists {
        let res = python_calls(
            self.receivers[i].grpc,
            &serde_json::json!([series_call(
                &serde_json::json!([[2, "__name__", re]]),
                0,
                i64::MAX
            )]),
        );
        served_histograms(&res[0])
    }

    /// Waits (at most 20 s) until receiver `i` serves `want`: a write is answered once a
    /// quorum took it, so the last replica may still be writing.
    fn await_served(&self, i: usize, re: &str, want: &Hists) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.served(i, re);
            if &got == want {
                return;
            }
            if Instant::now() >= deadline {
                for (l, w) in want {
                    assert_eq!(got.get(l), Some(w), "r{i}: {l:?}");
                }
                let extra: Vec<_> = got.keys().filter(|l| !want.contains_key(*l)).collect();
                panic!("r{i} serves series it does not own: {extra:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The histograms of a Series result, every chunk decoded by its type (1 `HISTOGRAM`, 2
/// `FLOAT_HISTOGRAM`); float chunks are an error here, none was written.
fn served_histograms(res: &serde_json::Value) -> Hists {
    assert_eq!(res["ok"], true, "{res}");
    let mut out = Hists::new();
    for s in res["series"].as_array().unwrap() {
        let labels: BTreeMap<String, String> = s["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let mut samples = Vec::new();
        for c in s["chunks"].as_array().unwrap() {
            let data = hex(c["data"].as_str().unwrap());
            let decoded: Vec<(i64, FloatHistogram)> = match c["type"].as_i64().unwrap() {
                1 => decode_histogram_chunk(&data)
                    .unwrap()
                    .into_iter()
                    .map(|(t, h)| (t, h.to_float()))
                    .collect(),
                2 => decode_float_histogram_chunk(&data).unwrap(),
                other => panic!("chunk type {other} in {labels:?}"),
            };
            assert_eq!(c["min_time"].as_i64(), decoded.first().map(|x| x.0));
            assert_eq!(c["max_time"].as_i64(), decoded.last().map(|x| x.0));
            samples.extend(decoded.into_iter().map(|(t, h)| (t, normal(h))));
        }
        out.insert(labels, samples);
    }
    out
}

/// Writes 1.0 through r0 and 2.0 through r1: the 2.0 answer counts every histogram.
fn write_both(ring: &Ring, prefix: &str, n: usize, samples: usize) -> Vec<pb::TimeSeries> {
    let t0 = now_ms() - 120_000;
    let one = batch(&format!("{prefix}_v1"), n, t0, samples);
    let (code, _, msg) = ring.write(0, false, &one);
    assert_eq!(code, 200, "1.0 through r0: {msg}");
    let two = batch(&format!("{prefix}_v2"), n, t0, samples);
    let (code, head, msg) = ring.write(1, true, &two);
    assert_eq!(code, 200, "2.0 through r1: {msg}");
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains(&format!(
            "x-prometheus-remote-write-histograms-written: {}",
            n * samples
        )),
        "{head}"
    );
    assert!(
        head.contains("x-prometheus-remote-write-samples-written: 0"),
        "{head}"
    );
    let mut all = one;
    all.extend(two);
    all
}

#[test]
fn replication_factor_1_puts_each_histogram_series_on_its_owner_only() {
    let ring = Ring::start(3, 1);
    let sent = write_both(&ring, "rh1", 90, 6);
    let mut owned: Vec<Vec<pb::TimeSeries>> = vec![Vec::new(); 3];
    for s in &sent {
        let labels = s
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        owned[hashmod_owner(&labels, &ring.addresses)].push(s.clone());
    }
    for (i, mine) in owned.iter().enumerate() {
        assert!(mine.len() > 20, "r{i} owns {} series", mine.len());
        ring.await_served(i, "rh1_.*", &expected(mine, Some(&format!("r{i}"))));
    }
    let page = String::from_utf8(http_get(ring.receivers[0].http, "/metrics").unwrap().1).unwrap();
    assert!(
        !page.contains("histograms_dropped"),
        "nothing is dropped any more"
    );
}

#[test]
fn replication_factor_3_puts_every_histogram_everywhere_and_the_querier_dedups_them() {
    let ring = Ring::start(3, 3);
    let sent = write_both(&ring, "rh3", 60, 5);
    for i in 0..3 {
        ring.await_served(i, "rh3_.*", &expected(&sent, Some(&format!("r{i}"))));
    }
    // A querier over the three, deduplicating on receive_replica, answers each histogram once.
    let endpoints: Vec<String> = ring
        .addresses
        .iter()
        .map(|a| format!("--endpoint={a}"))
        .collect();
    let mut args = vec!["query", "--query.replica-label=receive_replica"];
    args.extend(endpoints.iter().map(String::as_str));
    let querier = GauntletServer::start(&args, "/-/ready");
    let want: CountSums = expected(&sent, None)
        .into_iter()
        .map(|(l, s)| (l, s.into_iter().map(|(t, h)| (t, h.count, h.sum)).collect()))
        .collect();
    let q = urlencode("{__name__=~\"rh3_.*\"}[10m]");
    let path = format!("/api/v1/query?query={q}&time={}", now_ms() as f64 / 1000.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = querier.get(&path);
        let got = (code == 200).then(|| {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let mut out = CountSums::new();
            for r in v["data"]["result"].as_array().unwrap() {
                let labels: BTreeMap<String, String> = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                let hs: Vec<(i64, f64, f64)> = r["histograms"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                let t = (x[0].as_f64().unwrap() * 1000.0).round() as i64;
                                let f = |k: &str| x[1][k].as_str().unwrap().parse().unwrap();
                                (t, f("count"), f("sum"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(labels, hs);
            }
            out
        });
        if got.as_ref() == Some(&want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "querier answered {code} with {} series, want {}",
            got.map_or(0, |g| g.len()),
            want.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
