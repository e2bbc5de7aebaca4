//! Three `gauntlet receive` processes on loopback sharing one hashrings file, as Thanos
//! receivers do. With replication factor 3, a write to any of them lands on all three, a
//! querier deduplicating on `receive_replica` answers every sample once, and with one receiver
//! killed writes still succeed (quorum 2) and nothing acknowledged is lost; with two down they
//! are refused with 503. With replication factor 1, each series lands on exactly the receiver
//! Thanos's hashmod (and, once the file says so, ketama) names, and rewrites of the file (a new
//! endpoint order, another algorithm, a broken file, a receiver left out) are picked up.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::storeapi::{Dump, decoded, matrix, python_calls, series_call};
use crate::common::*;
use gauntlet_proto::prometheus as pb;

const TENANT: &str = "default-tenant";

/// Receivers sharing a hashrings file; `None` for one that was killed.
struct Cluster {
    receivers: Vec<Option<Receiver>>,
    /// `127.0.0.1:<grpc port>` of each receiver, as the file lists them.
    addresses: Vec<String>,
    ring_file: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// `n` receivers with replication factor `rf`, all in one default hashmod ring.
    fn start(n: usize, rf: u64) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let ports: Vec<[u16; 3]> = free_port_sets(n);
        let addresses: Vec<String> = ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p[1]))
            .collect();
        let ring_file = tmp.path().join("hashrings.json");
        let c = Cluster {
            receivers: Vec::new(),
            addresses,
            ring_file,
            _tmp: tmp,
        };
        c.write_ring(&serde_json::json!([{"hashring": "default", "endpoints": c.addresses}]));
        let mut receivers = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let dir = c._tmp.path().join(format!("r{i}"));
            let args = [
                format!("--label=receive_replica=\"r{i}\""),
                format!("--receive.hashrings-file={}", c.ring_file.display()),
                format!("--receive.local-endpoint={}", c.addresses[i]),
                format!("--receive.replication-factor={rf}"),
                "--receive-forward-timeout=3s".to_string(),
            ];
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            receivers.push(Some(Receiver::start_bare(&dir, &args, *p)));
        }
        Cluster { receivers, ..c }
    }

    fn get(&self, i: usize) -> &Receiver {
        self.receivers[i].as_ref().expect("receiver is running")
    }

    /// Replaces the hashrings file at once (a rename), as a config reloader would.
    fn write_ring(&self, json: &serde_json::Value) {
        let tmp = self.ring_file.with_extension("tmp");
        std::fs::write(&tmp, json.to_string()).unwrap();
        std::fs::rename(&tmp, &self.ring_file).unwrap();
    }

    /// Writes `ts` through receiver `i`; returns (status, message).
    fn write(&self, i: usize, ts: Vec<pb::TimeSeries>) -> (u16, String) {
        let (code, _, msg) =
            post(self.get(i).rw, "/api/v1/receive", &[V1], &write_body(ts)).unwrap();
        (code, msg)
    }

    /// What receiver `i` serves over the StoreAPI for metric names matching `re`.
    fn served(&self, i: usize, re: &str) -> Dump {
        let res = python_calls(
            self.get(i).grpc,
            &serde_json::json!([series_call(
                &serde_json::json!([[2, "__name__", re]]),
                0,
                i64::MAX
            )]),
        );
        decoded(&res[0], 0, i64::MAX)
    }

    /// Waits (at most 15 s) until receiver `i` serves `want` for metric names matching `re`:
    /// a write is acknowledged once a quorum of its replicas took it, so the last replica may
    /// still be writing when the answer arrives.
    fn await_served(&self, i: usize, re: &str, want: &Dump, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.served(i, re);
            if &got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "r{i} {what}: served {} series, want {}",
                got.len(),
                want.len()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits (at most 15 s) until every running receiver has loaded the file `changes`
    /// times.
    fn await_changes(&self, changes: u64) {
        let want = format!("thanos_receive_hashrings_file_changes_total {changes}\n");
        let deadline = Instant::now() + Duration::from_secs(15);
        for r in self.receivers.iter().flatten() {
            loop {
                if metrics(r).contains(&want) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the hashrings file was not loaded {changes} times in 15 s:\n{}",
                    metrics(r)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn metrics(r: &Receiver) -> String {
    let (code, body) = http_get(r.http, "/metrics").unwrap();
    assert_eq!(code, 200);
    String::from_utf8(body).unwrap()
}

/// The value of the sample line `line` (name and labels) in a metrics page.
fn metric_value(page: &str, line: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{line} missing:\n{page}"))
        .parse()
        .unwrap()
}

/// `n` series `name{i="0".."n"}`, each with samples at `times` (value i * 1000 + t / 1000).
fn batch(name: &str, n: usize, times: &[i64]) -> Vec<pb::TimeSeries> {
    (0..n)
        .map(|i| {
            let samples: Vec<(i64, f64)> = times
                .iter()
                .map(|&t| (t, (i * 1000) as f64 + (t / 1000 % 1000) as f64))
                .collect();
            series(&[("__name__", name), ("i", &i.to_string())], &samples)
        })
        .collect()
}

/// What `ts` look like when a receiver labelled `replica` serves them.
fn expected(ts: &[pb::TimeSeries], replica: Option<&str>) -> Dump {
    let mut out = Dump::new();
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
        let samples = out.entry(labels).or_default();
        samples.extend(s.samples.iter().map(|x| (x.timestamp, x.value)));
        samples.sort_by_key(|x| x.0);
    }
    out
}

/// `d` with every series' samples merged into `more`'s.
fn merged(mut d: Dump, more: Dump) -> Dump {
    for (l, s) in more {
        let e = d.entry(l).or_default();
        e.extend(s);
        e.sort_by_key(|x| x.0);
    }
    d
}

#[test]
fn replication_factor_3_keeps_every_series_on_every_receiver_and_survives_one_down() {
    let mut c = Cluster::start(3, 3);
    let t0 = now_ms() - 120_000;
    let times: Vec<i64> = (0..5).map(|j| t0 + j * 1000).collect();
    // A write to any receiver is accepted and spread.
    let mut sent = Vec::new();
    for (i, name) in ["hr_a", "hr_b", "hr_c"].iter().enumerate() {
        let ts = batch(name, 20, &times);
        assert_eq!(c.write(i, ts.clone()), (200, String::new()), "through r{i}");
        sent.extend(ts);
    }
    for i in 0..3 {
        let want = expected(&sent, Some(&format!("r{i}")));
        c.await_served(i, "hr_.*", &want, "holds every series");
    }
    let page = metrics(c.get(0));
    assert!(
        metric_value(
            &page,
            "thanos_receive_forward_requests_total{result=\"success\"}"
        ) >= 2.0
    );
    assert_eq!(
        metric_value(
            &page,
            "thanos_receive_replications_total{result=\"success\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(&page, "thanos_receive_hashring_nodes{name=\"default\"}"),
        3.0
    );
    assert_eq!(
        metric_value(&page, "thanos_receive_hashrings_file_changes_total"),
        1.0
    );

    // A querier over the three, deduplicating on receive_replica, answers every sample once.
    let endpoints: Vec<String> = c
        .addresses
        .iter()
        .map(|a| format!("--endpoint={a}"))
        .collect();
    let mut args = vec!["query", "--query.replica-label=receive_replica"];
    args.extend(endpoints.iter().map(String::as_str));
    let querier = GauntletServer::start(&args, "/-/ready");
    let until = t0 + 60_000;
    check_query(&querier, until, &expected(&sent, None));

    // One receiver down: quorum 2 of 3 still holds through either survivor.
    c.receivers[2].take().unwrap().kill();
    let later: Vec<i64> = (5..10).map(|j| t0 + j * 1000).collect();
    let mut more = Vec::new();
    for (i, name) in [(0, "hr_a"), (1, "hr_b"), (0, "hr_c")] {
        let ts = batch(name, 20, &later);
        let (code, msg) = c.write(i, ts.clone());
        assert_eq!(code, 200, "with r2 down, through r{i}: {msg}");
        more.extend(ts);
    }
    for i in 0..2 {
        let want = merged(
            expected(&sent, Some(&format!("r{i}"))),
            expected(&more, Some(&format!("r{i}"))),
        );
        c.await_served(i, "hr_.*", &want, "after r2 went down");
    }
    let all = merged(expected(&sent, None), expected(&more, None));
    check_query(&querier, until, &all);
    let page = metrics(c.get(0));
    assert!(
        metric_value(
            &page,
            "thanos_receive_forward_requests_total{result=\"error\"}"
        ) >= 1.0
    );

    // Two down: no series reaches its quorum; the write is refused with 503 so the sender
    // retries, and what the survivor stored does not change what was acknowledged.
    c.receivers[1].take().unwrap().kill();
    let (code, msg) = c.write(0, batch("hr_a", 20, &[t0 + 20_000]));
    assert_eq!(code, 503, "{msg}");
    assert!(
        msg.contains("not written to a quorum of 2 of 3 replicas"),
        "{msg}"
    );
    let page = metrics(c.get(0));
    assert!(metric_value(&page, "thanos_receive_replications_total{result=\"error\"}") >= 1.0);
}

/// Asks `querier` for every `hr_*` sample up to `at` (ms) until it answers `want` (at most
/// 30 s: endpoints are polled every few seconds).
fn check_query(querier: &GauntletServer, at: i64, want: &Dump) {
    let q = urlencode("{__name__=~\"hr_.*\"}[10m]");
    let path = format!("/api/v1/query?query={q}&time={}", at as f64 / 1000.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = querier.get(&path);
        let got = (code == 200).then(|| matrix(&body));
        if got.as_ref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "querier answered {code} with {} series, want {}: {}",
            got.map_or(0, |g| g.len()),
            want.len(),
            String::from_utf8_lossy(&body)
                .chars()
                .take(2000)
                .collect::<String>()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Thanos's hashmod owner of `hr{i}` for tenant `default-tenant` among `addresses`, computed
/// here from the rule itself: xxhash64 of the tenant and labels with 0xFF after each, modulo
/// the endpoints sorted by address.
fn hashmod_owner(name: &str, i: usize, addresses: &[&str]) -> String {
    let mut key = Vec::new();
    for part in [TENANT, "__name__", name, "i", &i.to_string()] {
        key.extend_from_slice(part.as_bytes());
        key.push(0xFF);
    }
    let h = xxhash_rust::xxh64::xxh64(&key, 0);
    let mut sorted = addresses.to_vec();
    sorted.sort();
    sorted[(h % sorted.len() as u64) as usize].to_string()
}

/// Which `i` of metric `name` each receiver serves.
fn placement(c: &Cluster, name: &str) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out = BTreeMap::new();
    for (k, r) in c.receivers.iter().enumerate() {
        if r.is_none() {
            continue;
        }
        let got: BTreeSet<usize> = c
            .served(k, name)
            .keys()
            .map(|l| {
                assert_eq!(l["receive_replica"], format!("r{k}"));
                l["i"].parse().unwrap()
            })
            .collect();
        out.insert(c.addresses[k].clone(), got);
    }
    out
}

/// The placement `owner` gives `n` series of `name`, for every receiver of `c`.
fn want_placement(
    c: &Cluster,
    n: usize,
    owner: impl Fn(usize) -> String,
) -> BTreeMap<String, BTreeSet<usize>> {
    let mut out: BTreeMap<String, BTreeSet<usize>> = c
        .addresses
        .iter()
        .map(|a| (a.clone(), BTreeSet::new()))
        .collect();
    for i in 0..n {
        out.get_mut(&owner(i)).unwrap().insert(i);
    }
    out
}

#[test]
fn replication_factor_1_places_each_series_on_its_owner_and_follows_the_file() {
    let c = Cluster::start(3, 1);
    let t = now_ms() - 60_000;
    let n = 60;
    let addrs: Vec<&str> = c.addresses.iter().map(String::as_str).collect();

    // Hashmod over the three.
    assert_eq!(c.write(0, batch("hr_one", n, &[t])).0, 200);
    let want = want_placement(&c, n, |i| hashmod_owner("hr_one", i, &addrs));
    assert!(want.values().all(|s| !s.is_empty()), "{want:?}");
    assert_eq!(placement(&c, "hr_one"), want);

    // The same endpoints in another order: picked up, and hashmod sorts them, so nothing
    // moves.
    let reversed: Vec<&str> = addrs.iter().rev().copied().collect();
    c.write_ring(&serde_json::json!([{"hashring": "default", "endpoints": reversed}]));
    c.await_changes(2);
    assert_eq!(c.write(1, batch("hr_two", n, &[t])).0, 200);
    assert_eq!(
        placement(&c, "hr_two"),
        want_placement(&c, n, |i| hashmod_owner("hr_two", i, &addrs))
    );

    // Ketama, named by the ring: series go where Thanos's ketama puts them.
    let ketama =
        serde_json::json!([{"hashring": "default", "algorithm": "ketama", "endpoints": addrs}]);
    c.write_ring(&ketama);
    c.await_changes(3);
    assert_eq!(c.write(2, batch("hr_three", n, &[t])).0, 200);
    let rings = gauntlet::receive::hashring::Hashrings::new(
        &gauntlet::receive::hashring::parse(&ketama.to_string()).unwrap(),
        gauntlet::receive::hashring::Algorithm::Hashmod,
        1,
    )
    .unwrap();
    let ring = rings.ring_for(TENANT).unwrap();
    let ketama_owner = |i: usize| {
        let h = gauntlet::receive::hashring::series_hash(
            TENANT,
            &[("__name__", "hr_three"), ("i", &i.to_string())],
        );
        ring.get_n(h, 0).unwrap().address.clone()
    };
    let want = want_placement(&c, n, ketama_owner);
    assert_ne!(
        want,
        want_placement(&c, n, |i| hashmod_owner("hr_three", i, &addrs)),
        "ketama and hashmod place these series differently"
    );
    assert_eq!(placement(&c, "hr_three"), want);

    // A broken file is reported and the last good ring stays.
    std::fs::write(&c.ring_file, "[{\"endpoints\": ").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    for r in c.receivers.iter().flatten() {
        while metric_value(&metrics(r), "thanos_receive_config_last_reload_successful") != 0.0 {
            assert!(Instant::now() < deadline, "the broken file went unnoticed");
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(metric_value(&metrics(r), "thanos_receive_hashrings_file_errors_total") >= 1.0);
    }
    assert_eq!(c.write(0, batch("hr_three", n, &[t + 1000])).0, 200);
    let placed = placement(&c, "hr_three");
    assert_eq!(placed, want, "still ketama");

    // Receiver 2 left out of the ring: it keeps nothing of a write sent to it, and the two
    // others split the series by hashmod.
    let two = [addrs[0], addrs[1]];
    c.write_ring(&serde_json::json!([{"hashring": "default", "endpoints": two}]));
    c.await_changes(4);
    assert_eq!(c.write(2, batch("hr_four", n, &[t])).0, 200);
    let want = want_placement(&c, n, |i| hashmod_owner("hr_four", i, &two));
    assert!(want[addrs[2]].is_empty());
    assert_eq!(placement(&c, "hr_four"), want);
    let page = metrics(c.get(2));
    assert_eq!(
        metric_value(&page, "thanos_receive_hashring_nodes{name=\"default\"}"),
        2.0
    );
}

#[test]
fn a_replicated_write_is_stored_where_it_arrives_and_a_bad_replica_is_refused() {
    // THANOS-REPLICA (counted from 1) marks a write another receiver already spread: it is
    // kept here whatever the ring says; above the replication factor it is a 400.
    let c = Cluster::start(2, 2);
    let t = now_ms() - 60_000;
    let ts = batch("hr_rep", 10, &[t]);
    let (code, _, msg) = post(
        c.get(1).rw,
        "/api/v1/receive",
        &[V1, ("THANOS-REPLICA", "2")],
        &write_body(ts.clone()),
    )
    .unwrap();
    assert_eq!(code, 200, "{msg}");
    assert_eq!(c.served(1, "hr_rep"), expected(&ts, Some("r1")));
    assert!(c.served(0, "hr_rep").is_empty());
    let (code, _, msg) = post(
        c.get(0).rw,
        "/api/v1/receive",
        &[V1, ("THANOS-REPLICA", "3")],
        &write_body(ts),
    )
    .unwrap();
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("exceeds receiver replication factor"), "{msg}");
}
