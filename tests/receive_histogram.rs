//! Native histograms end to end: Prometheus 3 scrapes itself with native histograms on and
//! remote-writes them (and its floats) into `gauntlet receive`; the receiver is then killed
//! with SIGKILL, and the head replayed from its tenant directory holds every histogram
//! Prometheus holds, with the same counts and sums. Invalid histograms are refused with 400
//! and the rest of the request is written.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post, snappy};
use crate::common::*;
use gauntlet_engine::head::{Head, HeadOptions, HeadRuntime};
use gauntlet_engine::labels::{MatchType, Matcher};
use gauntlet_engine::query::{Queryable, SelectHints};
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_proto::prometheus as pb;
use prost::Message;

/// Series (labels as text) → (timestamp ms, count, sum) per histogram sample.
type Hists = BTreeMap<String, Vec<(i64, f64, f64)>>;

fn key(labels: impl IntoIterator<Item = (String, String)>) -> String {
    let mut l: Vec<(String, String)> = labels.into_iter().collect();
    l.sort();
    l.iter()
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every histogram sample Prometheus holds in the hour up to `at` (ms).
fn prometheus_histograms(p: &Prometheus, at: i64) -> Hists {
    let q = urlencode("{__name__=~\".+\"}[1h]");
    let v = p.get(&format!(
        "/api/v1/query?query={q}&time={}",
        at as f64 / 1000.0
    ));
    let mut out = Hists::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let Some(hs) = s["histograms"].as_array() else {
            continue;
        };
        let labels = s["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()));
        let samples = hs
            .iter()
            .map(|x| {
                let t = (x[0].as_f64().unwrap() * 1000.0).round() as i64;
                let f = |k: &str| x[1][k].as_str().unwrap().parse::<f64>().unwrap();
                (t, f("count"), f("sum"))
            })
            .collect();
        out.insert(key(labels), samples);
    }
    out
}

/// Every histogram sample (stale markers left out, as Prometheus's API leaves them out) the
/// head replayed from `dir` holds up to `at` (ms).
fn head_histograms(dir: &std::path::Path, at: i64) -> Hists {
    let rt = HeadRuntime::start(&RuntimeConfig {
        cores: 2,
        io: IoChoice::Pread,
        pin: false,
        name: "receive-hist-test".into(),
    })
    .unwrap();
    let (head, rep) = Head::open(rt, dir, HeadOptions::default()).unwrap();
    assert_eq!(rep.skipped_records, 0, "{rep:?}");
    let m = Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap();
    let mut out = Hists::new();
    for s in head.select(&[m], 0, at, &SelectHints::default()).unwrap() {
        let samples: Vec<(i64, f64, f64)> = s
            .histograms
            .ts
            .iter()
            .zip(&s.histograms.h)
            .filter(|(_, h)| !h.is_stale())
            .map(|(t, h)| (*t, h.count, h.sum))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let labels = s
            .labels
            .iter()
            .map(|l| (l.name.to_string(), l.value.to_string()));
        out.insert(key(labels), samples);
    }
    out
}

#[test]
fn prometheus3_remote_writes_native_histograms_and_the_head_holds_them() {
    let binary = prometheus3();
    let tmp = tempfile::tempdir().unwrap();
    let mut recv = Receiver::start(&tmp.path().join("receive"), &[]);
    let rw = recv.rw;
    let prom = Prometheus::start_with_config(
        &binary,
        |port| {
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: http://127.0.0.1:{rw}/api/v1/receive\n    send_native_histograms: true\n    queue_config:\n      batch_send_deadline: 500ms\n      max_samples_per_send: 500\n"
            )
        },
        &["--enable-feature=native-histograms"],
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n = prometheus_histograms(&prom, now_ms() - 2000)
            .values()
            .map(Vec::len)
            .sum::<usize>();
        if n >= 40 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus holds {n} native histogram samples after 90 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let cutoff = now_ms() - 2000;
    std::thread::sleep(Duration::from_secs(4));
    let want = prometheus_histograms(&prom, cutoff);
    assert!(want.len() >= 3, "{} histogram series", want.len());
    let failed = prom.get(&format!(
        "/api/v1/query?query={}",
        urlencode("sum(prometheus_remote_storage_histograms_failed_total)")
    ));
    assert_eq!(
        failed["data"]["result"][0]["value"][1].as_str(),
        Some("0"),
        "{failed}"
    );
    recv.kill();
    let got = head_histograms(&tmp.path().join("receive/default-tenant"), cutoff);
    assert_eq!(got.len(), want.len(), "series: {:?}", got.keys());
    for (k, w) in &want {
        assert_eq!(got.get(k), Some(w), "{k}");
    }
}

#[test]
fn invalid_histograms_are_refused_with_400_and_the_rest_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = Receiver::start(&tmp.path().join("receive"), &[]);
    let t = now_ms() - 60_000;
    let good = pb::Histogram {
        count: Some(pb::histogram::Count::CountInt(3)),
        zero_count: Some(pb::histogram::ZeroCount::ZeroCountInt(1)),
        sum: 2.5,
        schema: 0,
        zero_threshold: 0.001,
        positive_spans: vec![pb::BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_deltas: vec![1, 0],
        timestamp: t,
        ..Default::default()
    };
    // Its buckets hold 2 observations and its zero bucket 1, not 7.
    let bad = pb::Histogram {
        count: Some(pb::histogram::Count::CountInt(7)),
        timestamp: t + 15_000,
        ..good.clone()
    };
    let series = |name: &str, hs: Vec<pb::Histogram>| pb::TimeSeries {
        labels: vec![pb::Label {
            name: "__name__".into(),
            value: name.into(),
        }],
        histograms: hs,
        ..Default::default()
    };
    let body = snappy(
        &pb::WriteRequest {
            timeseries: vec![
                series("ok_hist", vec![good.clone()]),
                series("bad_hist", vec![good, bad]),
            ],
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let (status, _, text) = post(
        recv.rw,
        "/api/v1/receive",
        &[V1, ("Content-Encoding", "snappy")],
        &body,
    )
    .unwrap();
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("invalid native histograms")
            && text.contains("__name__=\"bad_hist\"")
            && text.contains(&(t + 15_000).to_string()),
        "{text}"
    );
    drop(recv);
    let got = head_histograms(&tmp.path().join("receive/default-tenant"), i64::MAX);
    let want: Hists = [
        (
            key([("__name__".into(), "bad_hist".into())]),
            vec![(t, 3.0, 2.5)],
        ),
        (
            key([("__name__".into(), "ok_hist".into())]),
            vec![(t, 3.0, 2.5)],
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}
