//! Out-of-order samples cross between Gauntlet and a real Prometheus (2.42 from Debian stable,
//! 3.x from Debian's current build), both with `out_of_order_time_window: 1h`, through the
//! write-behind log `wbl/`:
//!
//! - Prometheus takes in-order and then out-of-order samples over its remote-write receiver
//!   and is killed with SIGKILL; its `wal/` holds every sample (the out-of-order ones too, as
//!   its appender logs them), its `wbl/` the out-of-order ones. Gauntlet's head opening the
//!   directory must hold exactly the samples written, each once.
//! - Gauntlet's head writes in-order and out-of-order samples and stops without closing its
//!   logs; Prometheus started over that directory must answer every sample through its query
//!   API, and `promtool tsdb dump` must print every one.
//!
//! Peers listen on 127.0.0.1 only; each start waits at most 60 s, each HTTP read 60 s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::common::Prometheus;
use crate::common::receive::{now_ms, post, series, write_body};
use gauntlet_engine::head::{AppendBatch, Head, HeadOptions, HeadRuntime};
use gauntlet_engine::labels::{MatchType, Matcher, hash_pairs};
use gauntlet_engine::query::{Queryable, SelectHints};
use gauntlet_engine::shard::{IoChoice, RuntimeConfig};
use gauntlet_engine::wal::WalReader;
use gauntlet_engine::wal::record::{self, Record};

const METRIC: &str = "gauntlet_ooo";
const SERIES: usize = 5;
const MINUTE: i64 = 60_000;

/// Out-of-order samples kept for an hour, no scraping.
fn config(_port: u16) -> String {
    "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n".into()
}

/// The samples of one run: in order, a sample a minute over the last half hour (ending on a
/// minute); out of order, one 30 s after each of the first ten of those.
struct Plan {
    in_order: Vec<i64>,
    ooo: Vec<i64>,
}

impl Plan {
    fn new() -> Plan {
        let end = now_ms() / MINUTE * MINUTE;
        let in_order: Vec<i64> = (0..=30).map(|k| end - (30 - k) * MINUTE).collect();
        let ooo = in_order[..10].iter().map(|t| t + 30_000).collect();
        Plan { in_order, ooo }
    }

    /// Every timestamp, sorted.
    fn all(&self) -> Vec<i64> {
        let mut all: Vec<i64> = self.in_order.iter().chain(&self.ooo).copied().collect();
        all.sort_unstable();
        all
    }
}

fn value(i: usize, t: i64) -> f64 {
    i as f64 * 1e6 + (t / 1000 % 1_000_000) as f64 + 0.25
}

fn label_value(i: usize) -> String {
    format!("{i}")
}

/// Remote-writes `ts` of every series to Prometheus; panics unless it answers 204.
fn remote_write(p: &Prometheus, ts: &[i64]) {
    let body = write_body(
        (0..SERIES)
            .map(|i| {
                let v = label_value(i);
                let samples: Vec<(i64, f64)> = ts.iter().map(|&t| (t, value(i, t))).collect();
                series(&[("__name__", METRIC), ("i", &v)], &samples)
            })
            .collect(),
    );
    let (status, _, text) = post(
        p.port,
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &body,
    )
    .expect("remote write to prometheus");
    assert_eq!(status, 204, "remote write answered {status}: {text}");
}

/// Timestamps of the samples records of the log in `dir`, and the count of each other record
/// type.
fn log_samples(dir: &Path) -> (Vec<i64>, BTreeMap<String, usize>) {
    let mut r = WalReader::open(dir).unwrap();
    let mut ts = Vec::new();
    let mut other = BTreeMap::new();
    while let Some(rec) = r.next().unwrap() {
        match record::decode(rec).unwrap() {
            Record::Samples(s) => ts.extend(s.iter().map(|s| s.t)),
            Record::Series(_) => *other.entry("series".into()).or_default() += 1,
            Record::Other(t) => *other.entry(format!("type {t}")).or_default() += 1,
            o => *other.entry(format!("{o:?}")).or_default() += 1,
        }
    }
    (ts, other)
}

fn runtime() -> Arc<HeadRuntime> {
    HeadRuntime::start(&RuntimeConfig {
        cores: 2,
        io: IoChoice::Pread,
        pin: false,
        name: "wbl-test".into(),
    })
    .unwrap()
}

fn head_options() -> HeadOptions {
    HeadOptions {
        ooo_window_ms: 3_600_000,
        ..HeadOptions::default()
    }
}

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(MatchType::Equal, name, value).unwrap()
}

/// Every series' samples from `q`, as (t, v) by series number.
fn samples_of(q: &dyn Queryable) -> Vec<Vec<(i64, f64)>> {
    (0..SERIES)
        .map(|i| {
            let got = q
                .select(
                    &[eq("__name__", METRIC), eq("i", &label_value(i))],
                    0,
                    i64::MAX,
                    &SelectHints::default(),
                )
                .unwrap();
            assert_eq!(got.len(), 1, "series {i}");
            got[0].samples.iter().collect()
        })
        .collect()
}

fn want(plan: &Plan) -> Vec<Vec<(i64, f64)>> {
    (0..SERIES)
        .map(|i| plan.all().into_iter().map(|t| (t, value(i, t))).collect())
        .collect()
}

/// Prometheus writes a WAL and a WBL with out-of-order samples; Gauntlet's head replays them.
fn gauntlet_replays_the_wbl_of(binary: &Path, what: &str) {
    let plan = Plan::new();
    let mut p =
        Prometheus::start_with_config(binary, config, &["--web.enable-remote-write-receiver"]);
    remote_write(&p, &plan.in_order);
    remote_write(&p, &plan.ooo);
    p.kill();
    let data = p.data_dir();

    // Prometheus logs every sample to its WAL and the out-of-order ones to its WBL too.
    let (wal_ts, _) = log_samples(&data.join("wal"));
    let (mut wbl_ts, wbl_other) = log_samples(&data.join("wbl"));
    eprintln!(
        "{what}: wal/ {} samples, wbl/ {} samples, other wbl/ records {wbl_other:?}",
        wal_ts.len(),
        wbl_ts.len()
    );
    assert_eq!(
        wal_ts.len(),
        SERIES * (plan.in_order.len() + plan.ooo.len()),
        "{what}"
    );
    assert!(!wbl_other.contains_key("series"), "{what}: {wbl_other:?}");
    wbl_ts.sort_unstable();
    let mut ooo: Vec<i64> = plan.ooo.iter().flat_map(|&t| [t; SERIES]).collect();
    ooo.sort_unstable();
    assert_eq!(wbl_ts, ooo, "{what}");

    let (head, rep) = Head::open(runtime(), &data, head_options()).unwrap();
    eprintln!("{what}: {rep:?}");
    assert_eq!(
        rep.wbl_samples,
        (SERIES * plan.ooo.len()) as u64,
        "{what}: {rep:?}"
    );
    // The WAL's copies of the out-of-order samples are dropped, as Prometheus drops them.
    assert_eq!(
        rep.dropped,
        (SERIES * plan.ooo.len()) as u64,
        "{what}: {rep:?}"
    );
    assert!(
        rep.repaired.is_none() && rep.wbl_repaired.is_none(),
        "{what}: {rep:?}"
    );
    assert_eq!(samples_of(&head), want(&plan), "{what}");
}

#[test]
fn gauntlet_replays_the_wbl_of_prometheus_2() {
    let Some(prometheus) = crate::common::require_or_skip("prometheus", "wbl_prometheus") else {
        return;
    };
    gauntlet_replays_the_wbl_of(&prometheus, "Prometheus 2.42");
}

#[test]
fn gauntlet_replays_the_wbl_of_prometheus_3() {
    gauntlet_replays_the_wbl_of(&crate::common::prometheus3(), "Prometheus 3");
}

/// A tenant directory Gauntlet's head wrote: in-order samples, then out-of-order ones, logged
/// and fsynced, the head dropped without closing its logs (as a kill leaves them).
fn gauntlet_dir(plan: &Plan) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(), dir.path(), head_options()).unwrap();
    for ts in [&plan.in_order, &plan.ooo] {
        let mut batches = vec![AppendBatch::new(); head.cores()];
        for i in 0..SERIES {
            let v = label_value(i);
            let pairs = [("__name__", METRIC), ("i", v.as_str())];
            let hash = hash_pairs(pairs);
            batches[head.route(hash)].push_series(
                hash,
                pairs,
                ts.iter().map(|&t| (t, value(i, t))),
            );
        }
        futures::executor::block_on(head.append(batches)).unwrap();
    }
    head.sync_wal().unwrap();
    assert_eq!(head.stats().appended_ooo, (SERIES * plan.ooo.len()) as u64);
    drop(head);
    assert!(dir.path().join("wbl").is_dir());
    dir
}

/// Prometheus started over a directory Gauntlet wrote answers every sample.
fn prometheus_answers_the_wbl_gauntlet_wrote(binary: &Path, what: &str) {
    let plan = Plan::new();
    let dir = gauntlet_dir(&plan);
    let p = Prometheus::start_over(binary, dir.path(), config, &[]);
    let time = (plan.in_order.last().unwrap() / 1000 + 1).to_string();
    for i in 0..SERIES {
        let q = crate::common::urlencode(&format!("{METRIC}{{i=\"{}\"}}[1h]", label_value(i)));
        let v = p.get(&format!("/api/v1/query?query={q}&time={time}"));
        let result = v["data"]["result"].as_array().unwrap();
        assert_eq!(result.len(), 1, "{what}: series {i}: {v}");
        let got: Vec<(i64, f64)> = result[0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse().unwrap())
            })
            .collect();
        assert_eq!(got, want(&plan)[i], "{what}: series {i}");
    }
}

#[test]
fn prometheus_2_answers_the_wbl_gauntlet_wrote() {
    let Some(prometheus) = crate::common::require_or_skip("prometheus", "wbl_prometheus") else {
        return;
    };
    prometheus_answers_the_wbl_gauntlet_wrote(&prometheus, "Prometheus 2.42");
}

#[test]
fn prometheus_3_answers_the_wbl_gauntlet_wrote() {
    prometheus_answers_the_wbl_gauntlet_wrote(&crate::common::prometheus3(), "Prometheus 3");
}

/// `promtool tsdb dump` of a directory Gauntlet wrote, as (series number, t, v).
fn promtool_dump(promtool: &Path, dir: &Path) -> Vec<(usize, i64, f64)> {
    // promtool writes into the directory it reads: a copy.
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("db");
    crate::common::copy_dir(dir, &db);
    let out = crate::common::run_ok(Command::new(promtool).args(["tsdb", "dump"]).arg(&db));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut got = Vec::new();
    for line in text.lines().filter(|l| l.contains(METRIC)) {
        // {__name__="gauntlet_ooo", i="3"} 3000123.25 1700000000000
        let (labels, rest) = line.rsplit_once('}').unwrap();
        let i: usize = labels
            .split("i=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        let mut f = rest.split_whitespace();
        let v: f64 = f.next().unwrap().parse().unwrap();
        let t: i64 = f.next().unwrap().parse().unwrap();
        got.push((i, t, v));
    }
    got.sort_by_key(|s| (s.0, s.1));
    got
}

fn promtool_dumps_the_wbl_gauntlet_wrote(promtool: &Path, what: &str) {
    let plan = Plan::new();
    let dir = gauntlet_dir(&plan);
    let got = promtool_dump(promtool, dir.path());
    let want: Vec<(usize, i64, f64)> = want(&plan)
        .into_iter()
        .enumerate()
        .flat_map(|(i, s)| s.into_iter().map(move |(t, v)| (i, t, v)))
        .collect();
    assert_eq!(got, want, "{what}");
}

#[test]
fn promtool_2_dumps_the_wbl_gauntlet_wrote() {
    let Some(promtool) = crate::common::require_or_skip("promtool", "wbl_prometheus") else {
        return;
    };
    promtool_dumps_the_wbl_gauntlet_wrote(&promtool, "promtool 2.42");
}

#[test]
fn promtool_3_dumps_the_wbl_gauntlet_wrote() {
    let promtool: PathBuf = crate::common::prometheus3().with_file_name("promtool");
    promtool_dumps_the_wbl_gauntlet_wrote(&promtool, "promtool 3");
}
