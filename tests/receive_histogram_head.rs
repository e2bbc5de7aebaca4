//! Native histograms in the head of `gauntlet receive`, read through its StoreAPI by the Python
//! grpcio client (chunks decoded here):
//!
//! - the head's chunks are served as they are, integer histograms as `HISTOGRAM` chunks and
//!   float ones as `FLOAT_HISTOGRAM`, byte for byte what the head's cut rule writes;
//! - with `--tsdb.out-of-order.time-window`, histograms of three kinds (integer, float, custom
//!   buckets) written late over remote write 1.0 and 2.0 are acknowledged and counted as
//!   written, kept in the write-behind log, served exactly after a SIGKILL and a restart, and
//!   cut with the in-order ones into blocks that are shipped to the bucket, which promtool 3
//!   analyzes and Prometheus 3 answers from.

use crate::common::native_histograms;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post};
use crate::common::storeapi::{hex, python_calls, series_call};
use crate::common::*;
use gauntlet_engine::block::histogram_cut::cut_histogram_chunks;
use gauntlet_engine::histogram::{Histogram, Span};
use gauntlet_proto::prometheus as pb;
use native_histograms::*;

const MINUTE: i64 = 60_000;
const SERIES: usize = 30;
const SAMPLES: usize = 24;

/// `ts` with only the samples `keep` picks (by index), in the order `order` gives.
fn pick(
    ts: &[pb::TimeSeries],
    keep: impl Fn(usize) -> bool,
    newest_first: bool,
) -> Vec<pb::TimeSeries> {
    ts.iter()
        .map(|s| {
            let mut hs: Vec<pb::Histogram> = s
                .histograms
                .iter()
                .enumerate()
                .filter(|(j, _)| keep(*j))
                .map(|(_, h)| h.clone())
                .collect();
            if newest_first {
                hs.reverse();
            }
            pb::TimeSeries {
                histograms: hs,
                ..s.clone()
            }
        })
        .collect()
}

fn send(recv: &Receiver, v2: bool, ts: &[pb::TimeSeries]) -> (u16, String, String) {
    let (ct, body) = if v2 {
        (V2, body_v2(ts))
    } else {
        (V1, body_v1(ts))
    };
    post(
        recv.rw,
        "/api/v1/receive",
        &[ct, ("Content-Encoding", "snappy")],
        &body,
    )
    .unwrap()
}

fn served(recv: &Receiver, re: &str) -> Hists {
    let res = python_calls(
        recv.grpc,
        &serde_json::json!([series_call(
            &serde_json::json!([[2, "__name__", re]]),
            0,
            i64::MAX
        )]),
    );
    served_histograms(&res[0])
}

fn start(dir: &Path, cfg: &Path) -> Receiver {
    Receiver::start(
        dir,
        &[
            "--tsdb.out-of-order.time-window=1h",
            &format!("--objstore.config-file={}", cfg.display()),
            "--tsdb.min-block-duration=2m",
            "--tsdb.max-block-duration=2m",
            "--receive.cut-check-interval=100ms",
        ],
    )
}

#[test]
fn out_of_order_histograms_are_kept_through_a_kill_and_cut_into_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let cfg = filesystem_objstore(tmp.path().join("bucket.yml"), &bucket);
    let dir = tmp.path().join("receive");
    let mut recv = start(&dir, &cfg);

    // Samples 5 s apart over two minutes, inside one 2-minute block range: the even ones in
    // order, then the odd ones newest first (all but the newest late); 1.0 for one metric,
    // 2.0 for the other.
    let t0 = (now_ms() - 30 * MINUTE) / (2 * MINUTE) * (2 * MINUTE);
    let mut sent = Vec::new();
    for (name, v2) in [("ooo_v1", false), ("ooo_v2", true)] {
        let all: Vec<pb::TimeSeries> = batch(name, SERIES, t0, SAMPLES)
            .into_iter()
            .map(|mut s| {
                for h in &mut s.histograms {
                    h.timestamp = t0 + (h.timestamp - t0) * 5;
                }
                s
            })
            .collect();
        let (code, head, msg) = send(&recv, v2, &pick(&all, |j| j % 2 == 0, false));
        assert_eq!(code, 200, "{name} in order: {msg}");
        let (code, head2, msg) = send(&recv, v2, &pick(&all, |j| j % 2 == 1, true));
        assert_eq!(code, 200, "{name} out of order: {msg}");
        if v2 {
            for h in [head, head2] {
                let h = h.to_ascii_lowercase();
                let want = format!(
                    "x-prometheus-remote-write-histograms-written: {}",
                    SERIES * SAMPLES / 2
                );
                assert!(h.contains(&want), "{h}");
            }
        }
        sent.extend(all);
    }
    let want = expected(&sent, &[("replica", "r1")]);
    assert_eq!(served(&recv, "ooo_.*"), want, "before the kill");
    let wbl = dir.join("default-tenant/wbl");
    assert!(
        std::fs::read_dir(&wbl).unwrap().count() > 0,
        "nothing in {}",
        wbl.display()
    );

    // SIGKILL: the WAL and WBL bring every acknowledged histogram back.
    recv.kill();
    let recv = start(&dir, &cfg);
    assert_eq!(served(&recv, "ooo_.*"), want, "after the kill");

    // A write 5 minutes on makes the head span more than 1.5 ranges: the range of the
    // histograms is cut into a block, shipped, and still served.
    let later = batch("ooo_later", 1, t0 + 5 * MINUTE, 1);
    assert_eq!(send(&recv, false, &later).0, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    let meta = loop {
        let metas: Vec<serde_json::Value> = std::fs::read_dir(&bucket)
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path().join("meta.json")).ok())
            .map(|b| serde_json::from_slice(&b).unwrap())
            .collect();
        if let Some(m) = metas
            .into_iter()
            .find(|m| m["minTime"].as_i64() == Some(t0))
        {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no block of the histograms shipped in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        meta["stats"]["numHistogramSamples"].as_u64(),
        Some((2 * SERIES * SAMPLES) as u64),
        "{meta}"
    );
    let mut all = sent.clone();
    all.extend(later);
    assert_eq!(
        served(&recv, "ooo_.*"),
        expected(&all, &[("replica", "r1")]),
        "after the cut"
    );
    drop(recv);

    // promtool 3 reads the shipped block and Prometheus 3 answers every histogram of it.
    let ulid = meta["ulid"].as_str().unwrap();
    let binary = prometheus3();
    let out = run_ok(
        std::process::Command::new(binary.with_file_name("promtool"))
            .args(["tsdb", "analyze"])
            .arg(&bucket)
            .arg(ulid),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("Series: {}", 2 * SERIES)), "{text}");
    let only = tempfile::tempdir().unwrap();
    copy_dir(&bucket.join(ulid), &only.path().join(ulid));
    let p = Prometheus::start(&binary, only.path());
    let q = urlencode("{__name__=~\"ooo_v.*\"}[10m]");
    let v = p.get(&format!(
        "/api/v1/query?query={q}&time={}",
        (t0 + 3 * MINUTE) as f64 / 1000.0
    ));
    let mut got = CountSums::new();
    for r in v["data"]["result"].as_array().unwrap() {
        let labels = r["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let hs = r["histograms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let t = (x[0].as_f64().unwrap() * 1000.0).round() as i64;
                let f = |k: &str| x[1][k].as_str().unwrap().parse().unwrap();
                (t, f("count"), f("sum"))
            })
            .collect();
        got.insert(labels, hs);
    }
    // The block's series carry no external labels (those are in its meta.json).
    let want: CountSums = expected(&sent, &[])
        .into_iter()
        .map(|(mut l, s)| {
            l.remove("tenant_id");
            (l, s.into_iter().map(|(t, h)| (t, h.count, h.sum)).collect())
        })
        .collect();
    assert_eq!(got, want);
}

/// The integer histogram `h` carries (a `count_int` message).
fn int_model(h: &pb::Histogram) -> Histogram {
    let sp = |s: &[pb::BucketSpan]| -> Vec<Span> {
        s.iter()
            .map(|s| Span {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    };
    let (
        Some(pb::histogram::Count::CountInt(count)),
        Some(pb::histogram::ZeroCount::ZeroCountInt(zero)),
    ) = (h.count, h.zero_count)
    else {
        panic!("not an integer histogram: {h:?}");
    };
    Histogram {
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: zero,
        count,
        sum: h.sum,
        positive_spans: sp(&h.positive_spans),
        negative_spans: sp(&h.negative_spans),
        positive_buckets: h.positive_deltas.clone(),
        negative_buckets: h.negative_deltas.clone(),
        ..Histogram::default()
    }
}

#[test]
fn the_storeapi_serves_head_histograms_in_the_encodings_they_were_stored_in() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = Receiver::start(
        &tmp.path().join("receive"),
        &["--tsdb.out-of-order.time-window=1h"],
    );
    // Nine series of each kind in turn (integer, float, float with custom buckets), 30
    // samples 1 s apart, in order; nine more whose odd samples come late.
    let t0 = (now_ms() - 10 * MINUTE) / 1000 * 1000;
    let sent = batch("enc", 9, t0, 30);
    assert_eq!(send(&recv, false, &sent).0, 200);
    let late = batch("enc_late", 9, t0, 30);
    assert_eq!(
        send(&recv, true, &pick(&late, |j| j % 2 == 0, false)).0,
        200
    );
    assert_eq!(send(&recv, true, &pick(&late, |j| j % 2 == 1, true)).0, 200);

    let res = python_calls(
        recv.grpc,
        &serde_json::json!([series_call(
            &serde_json::json!([[2, "__name__", "enc.*"]]),
            0,
            i64::MAX
        )]),
    );
    let series = res[0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 18, "{}", res[0]);
    for s in series {
        let name = s["labels"]["__name__"].as_str().unwrap();
        let i: usize = s["labels"]["i"].as_str().unwrap().parse().unwrap();
        // Thanos's chunk types: 1 HISTOGRAM, 2 FLOAT_HISTOGRAM.
        let want_type = if i.is_multiple_of(3) { 1 } else { 2 };
        let chunks = s["chunks"].as_array().unwrap();
        assert!(!chunks.is_empty());
        for c in chunks {
            assert_eq!(c["type"], want_type, "{name}{{i={i}}}: {c}");
        }
        if name == "enc" && i.is_multiple_of(3) {
            // In order: the head's own chunks, the bytes its cut rule writes.
            let samples: Vec<(i64, Histogram)> = sent[i]
                .histograms
                .iter()
                .map(|h| (h.timestamp, int_model(h)))
                .collect();
            let want = cut_histogram_chunks(&samples, 2 * 3_600_000).unwrap();
            let got: Vec<(i64, i64, Vec<u8>)> = chunks
                .iter()
                .map(|c| {
                    (
                        c["min_time"].as_i64().unwrap(),
                        c["max_time"].as_i64().unwrap(),
                        hex(c["data"].as_str().unwrap()),
                    )
                })
                .collect();
            let want: Vec<(i64, i64, Vec<u8>)> = want
                .into_iter()
                .map(|c| (c.min_time, c.max_time, c.data))
                .collect();
            assert_eq!(got, want, "enc{{i={i}}}");
        }
    }
    let mut all = sent;
    all.extend(late);
    assert_eq!(
        served_histograms(&res[0]),
        expected(&all, &[("replica", "r1")])
    );
}
