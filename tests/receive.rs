//! `gauntlet receive` against real peers: a real Prometheus remote-writes what it scrapes and
//! `promtool tsdb dump` over Gauntlet's tenant directory (its blocks and WAL, in Prometheus's
//! format) prints every sample that Prometheus stored itself; the StoreAPI serves the same
//! through a Python grpcio client; a WAL written by Prometheus is taken over as it is; bad
//! requests get their status codes while the rest of a request is kept; and a receiver killed
//! with SIGKILL twenty times under load keeps every acknowledged sample, once (out-of-order
//! ones too, through its write-behind log).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post, series, snappy, write_body};
use crate::common::storeapi::{
    Dump, assert_same_series, decoded, matrix, parse_dump, python_calls, series_call,
};
use crate::common::*;
use gauntlet_proto::prometheus as pb;
use prost::Message;

/// `promtool tsdb dump` over a TSDB directory (blocks and WAL), as a [`Dump`].
fn dump_dir(dir: &Path) -> Dump {
    let out = run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "dump"])
            .arg(dir),
    );
    parse_dump(&out.stdout, &[])
}

fn window(d: &Dump, mint: i64, maxt: i64) -> Dump {
    d.iter()
        .map(|(l, s)| {
            (
                l.clone(),
                s.iter()
                    .copied()
                    .filter(|&(t, _)| t >= mint && t <= maxt)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

#[test]
fn prometheus_remote_writes_and_gauntlet_serves_what_it_stored() {
    remote_write_from(&require("prometheus"), "", &[]);
}

#[test]
fn prometheus3_remote_writes_1_0_and_gauntlet_serves_what_it_stored() {
    let metrics = remote_write_from(&prometheus3(), "", &[]);
    assert!(
        metrics.contains("gauntlet_receive_write_v2_requests_total 0\n"),
        "{metrics}"
    );
}

#[test]
fn prometheus3_remote_writes_2_0_with_metadata_and_gauntlet_serves_what_it_stored() {
    let metrics = remote_write_from(
        &prometheus3(),
        "    protobuf_message: io.prometheus.write.v2.Request\n    metadata_config:\n      send: true\n",
        &["--enable-feature=metadata-wal-records"],
    );
    // Every request was 2.0: none fell back to 1.0.
    let v2 = metric(&metrics, "gauntlet_receive_write_v2_requests_total");
    let all = metric(
        &metrics,
        "thanos_receive_write_requests_total{code=\"200\"}",
    );
    assert!(v2 > 0.0 && v2 == all, "{v2} of {all} requests were 2.0");
}

/// The value of the metric line starting with `name ` in exposition text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

/// `prometheus` scrapes itself every second and remote-writes into a receiver (with
/// `rw_config` added to its remote_write entry and `flags` on its command line); what the
/// receiver keeps (promtool over its tenant directory, and its StoreAPI) must equal what that
/// Prometheus holds.
/// Returns the receiver's `/metrics` at the end.
fn remote_write_from(prometheus: &Path, rw_config: &str, flags: &[&str]) -> String {
    require("promtool");
    let tmp = tempfile::tempdir().unwrap();
    let recv = Receiver::start(&tmp.path().join("receive"), &[]);
    let rw = recv.rw;
    let prom = Prometheus::start_with_config(
        prometheus,
        |port| {
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: http://127.0.0.1:{rw}/api/v1/receive\n    queue_config:\n      batch_send_deadline: 500ms\n      max_samples_per_send: 500\n{rw_config}"
            )
        },
        flags,
    );
    // Wait for a few scrapes, then compare up to a moment a few seconds back: Prometheus has
    // stored and sent everything scraped before it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = prom.get("/api/v1/query?query=count_over_time(up%5B1m%5D)");
        let n: f64 = v["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap();
        if n >= 6.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus scraped {n} times in 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let cutoff = now_ms() - 2000;
    std::thread::sleep(Duration::from_secs(4));
    let want = prometheus_samples(&prom, cutoff);
    let samples: usize = want.values().map(Vec::len).sum();
    assert!(
        want.len() > 100 && samples > 500,
        "Prometheus stored {} series, {samples} samples",
        want.len()
    );

    // The tenant directory reads back with promtool while the receiver runs.
    let tenant = tmp.path().join("receive/default-tenant");
    let got = without_stale(window(&dump_dir(&tenant), 0, cutoff));
    assert_same_series(
        "promtool dump of the receiver's tenant directory",
        &got,
        &want,
    );

    // The StoreAPI serves the same, with the external labels added.
    let res = python_calls(
        recv.grpc,
        &serde_json::json!([series_call(
            &serde_json::json!([[2, "__name__", ".+"]]),
            0,
            cutoff
        )]),
    );
    let served = decoded(&res[0], 0, cutoff);
    let mut want_ext = Dump::new();
    for (l, s) in &want {
        let mut l = l.clone();
        l.insert("replica".into(), "r1".into());
        l.insert("tenant_id".into(), "default-tenant".into());
        want_ext.insert(l, s.clone());
    }
    let served = without_stale(served);
    assert_same_series("StoreAPI Series", &served, &want_ext);
    let info = python_calls(recv.grpc, &serde_json::json!([{"method": "Info"}]));
    assert_eq!(info[0]["component_type"], "receive");
    assert_eq!(
        info[0]["label_sets"],
        serde_json::json!([{"replica": "r1", "tenant_id": "default-tenant"}])
    );
    let (code, metrics) = http_get(recv.http, "/metrics").unwrap();
    assert_eq!(code, 200);
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("prometheus_tsdb_head_series{tenant=\"default-tenant\"}"),
        "{metrics}"
    );
    metrics
}

/// Every raw sample Prometheus holds in the hour up to `at` (ms), from its HTTP API.
fn prometheus_samples(p: &Prometheus, at: i64) -> Dump {
    let q = urlencode("{__name__=~\".+\"}[1h]");
    let path = format!("/api/v1/query?query={q}&time={}", at as f64 / 1000.0);
    let (status, body) = http_get(p.port, &path).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    matrix(&body)
}

/// `d` without stale markers (Prometheus's API leaves them out), and without series left
/// empty.
fn without_stale(d: Dump) -> Dump {
    d.into_iter()
        .map(|(l, s)| {
            let s: Vec<(i64, f64)> = s
                .into_iter()
                .filter(|x| x.1.to_bits() != 0x7ff0_0000_0000_0002)
                .collect();
            (l, s)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

#[test]
fn a_wal_written_by_prometheus_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let mut prom = Prometheus::start_with_config(
        &require("prometheus"),
        |port| {
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
            )
        },
        &[],
    );
    std::thread::sleep(Duration::from_secs(6));
    prom.kill();
    let want = dump_dir(&prom.data_dir());
    assert!(want.len() > 100, "{} series", want.len());
    // The Prometheus directory becomes a tenant's, as it is.
    let tenant = tmp.path().join("receive/default-tenant");
    copy_dir(&prom.data_dir(), &tenant);
    let recv = Receiver::start(&tmp.path().join("receive"), &[]);
    let res = python_calls(
        recv.grpc,
        &serde_json::json!([series_call(
            &serde_json::json!([[2, "__name__", ".+"]]),
            0,
            i64::MAX
        )]),
    );
    let served: Dump = decoded(&res[0], 0, i64::MAX)
        .into_iter()
        .map(|(mut l, s)| {
            l.remove("replica");
            l.remove("tenant_id");
            (l, s)
        })
        .collect();
    assert_same_series("a Prometheus WAL replayed by Gauntlet", &served, &want);
}

#[test]
fn bad_requests_get_their_codes_and_the_rest_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = Receiver::start(
        &tmp.path().join("receive"),
        &[
            "--receive.limits.request-size=64KiB",
            "--receive.limits.label-value-length=1024",
            "--tsdb.too-far-in-future.time-window=1h",
            "--receive.limits.max-series=1000",
        ],
    );
    let t = now_ms();
    let ok = series(&[("__name__", "good"), ("job", "a")], &[(t, 1.0)]);
    let check = |what: &str, headers: &[(&str, &str)], body: Vec<u8>, want: u16, mentions: &str| {
        let (code, _, msg) = post(recv.rw, "/api/v1/receive", headers, &body).unwrap();
        assert_eq!(code, want, "{what}: {msg}");
        assert!(
            msg.contains(mentions),
            "{what}: {msg:?} should mention {mentions:?}"
        );
        assert!(msg.len() < 1200, "{what}: message of {} bytes", msg.len());
    };
    check("good", &[V1], write_body(vec![ok.clone()]), 200, "");
    let good = write_body(vec![ok.clone()]);
    check(
        "truncated snappy",
        &[V1],
        good[..good.len() - 3].to_vec(),
        400,
        "snappy",
    );
    check(
        "garbage protobuf",
        &[V1],
        snappy(&[0xff; 64]),
        400,
        "malformed",
    );
    check(
        "content type",
        &[("Content-Type", "text/plain")],
        good.clone(),
        415,
        "content type",
    );
    // Any UTF-8 name up to 1024 bytes is a tenant, `../etc` too (tests/security/tenant_names.rs).
    let long_tenant = "t".repeat(1025);
    check(
        "tenant name over 1024 bytes",
        &[V1, ("THANOS-TENANT", long_tenant.as_str())],
        good.clone(),
        400,
        "tenant name is 1025 bytes",
    );
    check(
        "body over the limit",
        &[V1],
        vec![0u8; 100 << 10],
        413,
        "request-size",
    );
    let bad_series = [
        (
            "unsorted",
            series(&[("job", "a"), ("__name__", "x1")], &[(t, 1.0)]),
            "order",
        ),
        (
            "duplicate name",
            series(&[("__name__", "x2"), ("a", "1"), ("a", "2")], &[(t, 1.0)]),
            "duplicate",
        ),
        (
            "empty name",
            series(&[("", "v"), ("__name__", "x3")], &[(t, 1.0)]),
            "empty name",
        ),
        (
            "no metric name",
            series(&[("job", "a")], &[(t, 1.0)]),
            "__name__",
        ),
        (
            "huge value",
            series(&[("__name__", "x4"), ("v", &"x".repeat(5000))], &[(t, 1.0)]),
            "5000",
        ),
    ];
    for (what, s, mentions) in bad_series {
        let kept = series(&[("__name__", "kept"), ("case", what)], &[(t, 2.0)]);
        check(what, &[V1], write_body(vec![s, kept]), 400, mentions);
    }
    // Invalid UTF-8 in a label refuses the request: labels are read in place as text.
    let mut raw = pb::WriteRequest {
        timeseries: vec![series(&[("__name__", "utf8"), ("v", "ab")], &[(t, 1.0)])],
        ..Default::default()
    }
    .encode_to_vec();
    let at = raw.windows(2).position(|w| w == b"ab").unwrap();
    raw[at] = 0xff;
    check("invalid UTF-8", &[V1], snappy(&raw), 400, "UTF-8");
    // Special values are stored bit for bit; old and future samples get 409, the rest stays.
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let special = series(
        &[("__name__", "special")],
        &[
            (t - 3000, f64::NAN),
            (t - 2000, f64::INFINITY),
            (t - 1000, f64::NEG_INFINITY),
            (t, stale),
        ],
    );
    check("special values", &[V1], write_body(vec![special]), 200, "");
    let old = series(&[("__name__", "old")], &[(t - 86_400_000 * 30, 1.0)]);
    let future = series(&[("__name__", "future")], &[(t + 86_400_000, 1.0)]);
    let kept = series(&[("__name__", "kept"), ("case", "timestamps")], &[(t, 3.0)]);
    check(
        "far past and future",
        &[V1],
        write_body(vec![old, future, kept]),
        409,
        "too far in the future",
    );
    // Out of order and duplicate timestamps.
    let again = series(&[("__name__", "good"), ("job", "a")], &[(t - 1000, 5.0)]);
    check(
        "out of order",
        &[V1],
        write_body(vec![again]),
        409,
        "out of order",
    );
    let conflict = series(&[("__name__", "good"), ("job", "a")], &[(t, 9.0)]);
    check(
        "duplicate timestamp",
        &[V1],
        write_body(vec![conflict]),
        409,
        "duplicate sample",
    );
    // The series limit.
    let many: Vec<pb::TimeSeries> = (0..1200)
        .map(|i| series(&[("__name__", "many"), ("i", &i.to_string())], &[(t, 1.0)]))
        .collect();
    check("series limit", &[V1], write_body(many), 429, "max-series");

    // Everything that could be written was, and nothing else.
    let res = python_calls(
        recv.grpc,
        &serde_json::json!([
            series_call(&serde_json::json!([[0, "__name__", "kept"]]), 0, i64::MAX),
            series_call(
                &serde_json::json!([[0, "__name__", "special"]]),
                0,
                i64::MAX
            ),
            series_call(
                &serde_json::json!([[2, "__name__", "x.*|old|future|utf8"]]),
                0,
                i64::MAX
            )
        ]),
    );
    let kept = decoded(&res[0], 0, i64::MAX);
    assert_eq!(kept.len(), 6, "{kept:?}");
    let special = decoded(&res[1], 0, i64::MAX);
    let vals: Vec<u64> = special
        .values()
        .next()
        .unwrap()
        .iter()
        .map(|s| s.1.to_bits())
        .collect();
    assert!(f64::from_bits(vals[0]).is_nan());
    assert_eq!(
        vals[1..],
        [
            f64::INFINITY.to_bits(),
            f64::NEG_INFINITY.to_bits(),
            0x7ff0_0000_0000_0002
        ]
    );
    assert!(decoded(&res[2], 0, i64::MAX).is_empty());
    // Remote write 2.0 is answered with the written-samples headers.
    // (An existing series: the tenant is at its series limit now.)
    let v2 = gauntlet_proto::io::prometheus::write::v2::Request {
        symbols: vec![
            "".into(),
            "__name__".into(),
            "kept".into(),
            "case".into(),
            "timestamps".into(),
        ],
        timeseries: vec![gauntlet_proto::io::prometheus::write::v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![gauntlet_proto::io::prometheus::write::v2::Sample {
                value: 1.5,
                timestamp: t + 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (code, head, msg) = post(
        recv.rw,
        "/api/v1/write",
        &[(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )],
        &snappy(&v2.encode_to_vec()),
    )
    .unwrap();
    assert_eq!(code, 200, "{msg}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-prometheus-remote-write-samples-written: 1"),
        "{head}"
    );
    assert_eq!(http_get(recv.http, "/-/healthy").unwrap().0, 200);
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("receive");
    let ports = free_ports();
    let series_n = 50;
    let mut acked: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut t = now_ms() - 600_000;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..20 {
        let mut r = Receiver::start_on(&dir, &[], ports);
        let stop = Instant::now() + Duration::from_millis(150 + (rng % 400));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut sent = 0;
        // Bounded: at most 2000 requests a round, and the round's time.
        while Instant::now() < stop && sent < 2000 {
            t += 1000;
            let ts: Vec<pb::TimeSeries> = (0..series_n)
                .map(|i| {
                    series(
                        &[("__name__", "crash"), ("i", &i.to_string())],
                        &[(t, (t + i) as f64)],
                    )
                })
                .collect();
            sent += 1;
            match post(r.rw, "/api/v1/receive", &[V1], &write_body(ts)) {
                Ok((200, _, _)) => {
                    for i in 0..series_n {
                        acked.entry(i.to_string()).or_default().insert(t);
                    }
                }
                Ok((code, _, msg)) => panic!("round {round}: {code} {msg}"),
                Err(_) => break,
            }
        }
        r.kill();
    }
    let total: usize = acked.values().map(BTreeSet::len).sum();
    assert!(total > 1000, "only {total} samples acknowledged");
    // Replayed by Gauntlet, served over the StoreAPI: every acknowledged sample, once.
    let r = Receiver::start_on(&dir, &[], ports);
    let res = python_calls(
        r.grpc,
        &serde_json::json!([series_call(
            &serde_json::json!([[0, "__name__", "crash"]]),
            0,
            i64::MAX
        )]),
    );
    let got = decoded(&res[0], 0, i64::MAX);
    check_acked("StoreAPI after 20 kills", &got, &acked);
    drop(r);
    // And promtool reads the same from the directory.
    let dumped = dump_dir(&dir.join("default-tenant"));
    check_acked("promtool dump after 20 kills", &dumped, &acked);
}

#[test]
fn sigkill_loses_no_acknowledged_out_of_order_sample() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("receive");
    let ports = free_ports();
    let series_n = 20;
    let flags = [
        "--tsdb.out-of-order.time-window=1h",
        "--tsdb.wal-fsync=batch",
    ];
    let mut acked: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    let mut t = now_ms() - 600_000;
    let mut ooo = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..8 {
        let mut r = Receiver::start_on(&dir, &flags, ports);
        let stop = Instant::now() + Duration::from_millis(150 + (rng % 400));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let mut sent = 0;
        // Each request: every series' next sample, and one half a minute behind it (out of
        // order: the series has samples after it). Bounded by the round's time and count.
        while Instant::now() < stop && sent < 1000 {
            t += 1000;
            let behind = t - 29_500;
            let ts: Vec<pb::TimeSeries> = (0..series_n)
                .map(|i| {
                    series(
                        &[("__name__", "crash_ooo"), ("i", &i.to_string())],
                        &[(behind, (behind + i) as f64), (t, (t + i) as f64)],
                    )
                })
                .collect();
            sent += 1;
            match post(r.rw, "/api/v1/receive", &[V1], &write_body(ts)) {
                Ok((200, _, _)) => {
                    for i in 0..series_n {
                        acked.entry(i.to_string()).or_default().extend([behind, t]);
                    }
                    ooo += 1;
                }
                Ok((code, _, msg)) => panic!("round {round}: {code} {msg}"),
                Err(_) => break,
            }
        }
        r.kill();
    }
    assert!(ooo > 100, "only {ooo} requests acknowledged");
    let tenant = dir.join("default-tenant");
    assert!(tenant.join("wbl").is_dir());
    // Replayed by Gauntlet, served over the StoreAPI: every acknowledged sample, once.
    let r = Receiver::start_on(&dir, &flags, ports);
    let res = python_calls(
        r.grpc,
        &serde_json::json!([series_call(
            &serde_json::json!([[0, "__name__", "crash_ooo"]]),
            0,
            i64::MAX
        )]),
    );
    let got = decoded(&res[0], 0, i64::MAX);
    check_acked("StoreAPI after 8 kills", &got, &acked);
    drop(r);
    // And promtool, which replays wbl/ too, reads the same from the directory.
    let dumped = dump_dir(&tenant);
    check_acked("promtool dump after 8 kills", &dumped, &acked);
}

fn check_acked(what: &str, got: &Dump, acked: &BTreeMap<String, BTreeSet<i64>>) {
    let by_i: BTreeMap<String, &Vec<(i64, f64)>> =
        got.iter().map(|(l, s)| (l["i"].clone(), s)).collect();
    for (i, ts) in acked {
        let s = by_i
            .get(i)
            .unwrap_or_else(|| panic!("{what}: series i={i} missing"));
        let have: Vec<i64> = s.iter().map(|x| x.0).collect();
        let mut sorted = have.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), have.len(), "{what}: i={i} has a sample twice");
        let have: BTreeSet<i64> = have.into_iter().collect();
        let lost: Vec<&i64> = ts.difference(&have).collect();
        assert!(
            lost.is_empty(),
            "{what}: i={i} lost {} acknowledged samples, first {:?}",
            lost.len(),
            lost.first()
        );
        for &(t, v) in s.iter() {
            assert_eq!(
                v,
                (t + i.parse::<i64>().unwrap()) as f64,
                "{what}: i={i} t={t}"
            );
        }
    }
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_serves_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("receive");
    let mut r = Receiver::start(&dir, &["--tsdb.wal-fsync=batch"]);
    let t = now_ms();
    let body = write_body(vec![series(&[("__name__", "term")], &[(t, 1.0)])]);
    assert_eq!(post(r.rw, "/api/v1/receive", &[V1], &body).unwrap().0, 200);
    r.terminate();
    let r = Receiver::start(&dir, &[]);
    let res = python_calls(
        r.grpc,
        &serde_json::json!([series_call(
            &serde_json::json!([[0, "__name__", "term"]]),
            0,
            i64::MAX
        )]),
    );
    assert_eq!(decoded(&res[0], 0, i64::MAX).len(), 1);
}

#[test]
fn blocks_are_cut_shipped_and_still_served() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let cfg = filesystem_objstore(tmp.path().join("bucket.yml"), &bucket);
    let dir = tmp.path().join("receive");
    let recv = Receiver::start(
        &dir,
        &[
            &format!("--objstore.config-file={}", cfg.display()),
            "--tsdb.min-block-duration=2m",
            "--tsdb.max-block-duration=2m",
            "--receive.cut-check-interval=100ms",
        ],
    );
    // Seven minutes of samples every 10 s for 20 series, sent in time order.
    let minute = 60_000;
    let start = (now_ms() - 20 * minute) / (2 * minute) * (2 * minute);
    let mut sent = 0usize;
    for k in 0..42 {
        let t = start + k * 10_000;
        let ts: Vec<pb::TimeSeries> = (0..20)
            .map(|i| {
                series(
                    &[("__name__", "cut"), ("i", &i.to_string())],
                    &[(t, (k * 100 + i) as f64)],
                )
            })
            .collect();
        let (code, _, msg) = post(recv.rw, "/api/v1/receive", &[V1], &write_body(ts)).unwrap();
        assert_eq!(code, 200, "{msg}");
        sent += 20;
    }
    // Two blocks are due (the head spans more than 1.5 ranges twice over); wait for them in
    // the bucket, meta.json last.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metas = loop {
        let metas: Vec<serde_json::Value> = std::fs::read_dir(&bucket)
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path().join("meta.json")).ok())
            .map(|b| serde_json::from_slice(&b).unwrap())
            .collect();
        if metas.len() >= 2 {
            break metas;
        }
        assert!(
            Instant::now() < deadline,
            "{} blocks shipped in 30 s",
            metas.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for m in &metas {
        assert_eq!(m["thanos"]["source"], "receive", "{m}");
        assert_eq!(m["thanos"]["labels"]["tenant_id"], "default-tenant", "{m}");
        assert_eq!(m["thanos"]["labels"]["replica"], "r1", "{m}");
        assert_eq!(m["maxTime"].as_i64().unwrap() % (2 * minute), 0, "{m}");
    }
    let shipped = std::fs::read_to_string(dir.join("default-tenant/thanos.shipper.json")).unwrap();
    for m in &metas {
        assert!(shipped.contains(m["ulid"].as_str().unwrap()), "{shipped}");
    }
    // promtool reads the shipped blocks; with the head, every sample is served once.
    let in_bucket = parse_dump(&promtool_dump(&bucket, &[]), &[]);
    let bucket_samples: usize = in_bucket.values().map(Vec::len).sum();
    assert_eq!(
        bucket_samples,
        20 * 24,
        "two 2-minute blocks of 12 samples per series"
    );
    let res = python_calls(
        recv.grpc,
        &serde_json::json!([series_call(
            &serde_json::json!([[0, "__name__", "cut"]]),
            0,
            i64::MAX
        )]),
    );
    let served = decoded(&res[0], 0, i64::MAX);
    assert_eq!(served.values().map(Vec::len).sum::<usize>(), sent);
    for (l, s) in &served {
        let i: i64 = l["i"].parse().unwrap();
        for (k, &(t, v)) in s.iter().enumerate() {
            assert_eq!(t, start + k as i64 * 10_000);
            assert_eq!(v, (k as i64 * 100 + i) as f64);
        }
    }

    // The head's memory by part, measured by the maintenance pass, is on /metrics: the 20
    // series it still holds have labels, records and chunks.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, page) = http_get(recv.http, "/metrics").unwrap();
        let page = String::from_utf8(page).unwrap();
        let value = |name: &str| -> f64 {
            let key = format!("{name}{{tenant=\"default-tenant\"}} ");
            page.lines()
                .find_map(|l| l.strip_prefix(key.as_str()))
                .map_or(0.0, |v| v.parse().unwrap())
        };
        let parts = [
            value("gauntlet_tsdb_head_chunk_bytes"),
            value("gauntlet_tsdb_head_label_bytes"),
            value("gauntlet_tsdb_head_index_bytes"),
        ];
        if parts.iter().all(|&b| b > 0.0) {
            // 20 series of two short labels: well under a kilobyte of label bytes.
            assert!(parts[1] < 1000.0, "{parts:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "head memory on /metrics: {parts:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn all_takes_remote_write_and_answers_promql_over_it() {
    let tmp = tempfile::tempdir().unwrap();
    let rw = free_port();
    let all = GauntletServer::start(
        &[
            "all",
            &format!("--data-dir={}", tmp.path().display()),
            &format!("--remote-write.address=127.0.0.1:{rw}"),
            "--engine.cores=2",
            "--tsdb.wal-fsync=batch",
            "--tsdb.out-of-order.time-window=1h",
        ],
        "/-/ready",
    );
    let t = now_ms() / 1000 * 1000;
    let body = write_body(vec![
        series(
            &[("__name__", "pushed"), ("job", "a")],
            &[(t - 2000, 1.0), (t - 1000, 2.0)],
        ),
        series(&[("__name__", "pushed"), ("job", "b")], &[(t - 1000, 40.0)]),
    ]);
    // Both the remote-write address and the HTTP address take writes.
    assert_eq!(post(rw, "/api/v1/receive", &[V1], &body).unwrap().0, 200);
    let later = write_body(vec![series(
        &[("__name__", "pushed"), ("job", "a")],
        &[(t, 3.0)],
    )]);
    assert_eq!(
        post(all.http_port, "/api/v1/write", &[V1], &later)
            .unwrap()
            .0,
        200
    );
    // The receiver's flags `all` passes on: an out-of-order sample inside the window is kept.
    let late = write_body(vec![series(
        &[("__name__", "pushed"), ("job", "b")],
        &[(t - 600_000, 5.0)],
    )]);
    assert_eq!(post(rw, "/api/v1/receive", &[V1], &late).unwrap().0, 200);
    let q = urlencode("count_over_time(pushed{job=\"b\"}[11m])");
    let (code, body) = all.get(&format!(
        "/api/v1/query?query={q}&time={}",
        t as f64 / 1000.0
    ));
    assert_eq!(code, 200);
    assert!(
        String::from_utf8_lossy(&body).contains("\"2\"]"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let q = urlencode("sum by (job) (pushed)");
    let (code, body) = all.get(&format!(
        "/api/v1/query?query={q}&time={}",
        t as f64 / 1000.0
    ));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut got: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["job"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("a".to_string(), "3".to_string()),
            ("b".to_string(), "40".to_string())
        ]
    );
    let (code, body) = all.get(&format!(
        "/api/v1/label/tenant_id/values?match[]={}",
        urlencode("pushed")
    ));
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&body).contains("default-tenant"));
}

#[test]
fn all_ships_the_blocks_its_receiver_cuts_into_its_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let all = GauntletServer::start(
        &[
            "all",
            &format!("--data-dir={}", tmp.path().display()),
            "--engine.cores=2",
            "--sync-block-duration=1s",
        ],
        "/-/ready",
    );
    // Six hours of hourly samples: the head spans more than 1.5 block ranges, so the
    // receiver's next pass (every 15 s) cuts a block and ships it into the bucket.
    let hour = 3_600_000;
    let t = now_ms() / 1000 * 1000;
    let samples: Vec<(i64, f64)> = (0..=6).map(|k| (t - (6 - k) * hour, k as f64)).collect();
    let body = write_body(vec![series(&[("__name__", "shipped")], &samples)]);
    let (code, _, msg) = post(all.http_port, "/api/v1/receive", &[V1], &body).unwrap();
    assert_eq!(code, 200, "{msg}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let meta = loop {
        let meta = std::fs::read_dir(tmp.path())
            .unwrap()
            .find_map(|e| std::fs::read(e.unwrap().path().join("meta.json")).ok());
        if let Some(m) = meta {
            break serde_json::from_slice::<serde_json::Value>(&m).unwrap();
        }
        assert!(Instant::now() < deadline, "no block shipped in 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(meta["thanos"]["source"], "receive", "{meta}");
    assert_eq!(
        meta["thanos"]["labels"]["tenant_id"], "default-tenant",
        "{meta}"
    );
    // Every sample is still answered, from the shipped block and the head.
    let q = urlencode("count_over_time(shipped[7h])");
    let (code, body) = all.get(&format!("/api/v1/query?query={q}&time={}", t / 1000));
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"7\"]"), "{body}");
}

#[test]
fn the_tenants_page_lists_each_tenant_with_its_series_and_ingest_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = Receiver::start(&tmp.path().join("receive"), &[]);
    let tenants = |port: u16| -> serde_json::Value {
        let (code, body) = http_get(port, "/api/v1/status/tenants").unwrap();
        assert_eq!(code, 200);
        serde_json::from_slice(&body).unwrap()
    };
    assert_eq!(tenants(recv.http)["data"]["tenants"], serde_json::json!([]));
    // Two tenants: `a` with three series, `b` with one; `a` writes again a second later.
    let t = now_ms();
    let write = |tenant: &str, n: usize, at: i64| {
        let ts = (0..n)
            .map(|i| {
                series(
                    &[("__name__", "page_test"), ("i", &i.to_string())],
                    &[(at, 1.0), (at + 1000, 2.0)],
                )
            })
            .collect();
        let (code, _, msg) = post(
            recv.rw,
            "/api/v1/receive",
            &[V1, ("THANOS-TENANT", tenant)],
            &write_body(ts),
        )
        .unwrap();
        assert_eq!(code, 200, "{msg}");
    };
    write("a", 3, t - 10_000);
    write("b", 1, t - 10_000);
    let first = tenants(recv.http);
    std::thread::sleep(Duration::from_millis(1100));
    write("a", 3, t - 5_000);
    let v = tenants(recv.http);
    let list = v["data"]["tenants"].as_array().unwrap();
    let by_name = |n: &str| {
        list.iter()
            .find(|t| t["name"] == n)
            .unwrap_or_else(|| panic!("{v}"))
    };
    let a = by_name("a");
    assert_eq!(a["series"], 3, "{a}");
    assert_eq!(a["samplesAppended"], 12, "{a}");
    assert_eq!(a["minTime"], t - 10_000, "{a}");
    assert_eq!(a["maxTime"], t - 4_000, "{a}");
    assert_eq!(a["externalLabels"]["tenant_id"], "a", "{a}");
    // Six samples came in over the second or so between the two looks.
    let rate = a["ingestRate"]
        .as_f64()
        .unwrap_or_else(|| panic!("{first}\n{v}"));
    assert!(rate > 2.0 && rate <= 6.0, "{rate}");
    assert_eq!(by_name("b")["series"], 1, "{v}");
}
