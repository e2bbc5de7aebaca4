//! Native histograms across a hashring: three `gauntlet receive` processes on loopback share
//! one ring, and writes of many native histogram series (integer, float and custom-bucket;
//! remote write 1.0 and 2.0; bucket layouts that change from sample to sample) sent to one of
//! them reach the receivers the ring names. With replication factor 1 each receiver's head
//! holds exactly the series Thanos's hashmod gives it; with replication factor 3 each holds all
//! of them, and a deduplicating `gauntlet query` over the three answers every histogram once.
//! What each receiver serves over the StoreAPI (read by the Python grpcio client, chunks
//! decoded here) must be every histogram sent, exactly; 2.0 answers count the histograms
//! written to a quorum.

use crate::common::native_histograms;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post};
use crate::common::storeapi::{python_calls, series_call};
use crate::common::*;
use gauntlet_proto::prometheus as pb;
use native_histograms::*;

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
        let ports: Vec<[u16; 3]> = free_port_sets(n);
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
        ring.await_served(
            i,
            "rh1_.*",
            &expected(mine, &[("receive_replica", &format!("r{i}"))]),
        );
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
        ring.await_served(
            i,
            "rh3_.*",
            &expected(&sent, &[("receive_replica", &format!("r{i}"))]),
        );
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
    let want: CountSums = expected(&sent, &[])
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
