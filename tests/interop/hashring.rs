//! Receive in a mixed hashring: Gauntlet's and Thanos's receivers in one ring with replication
//! factor 3. A Thanos router and a Gauntlet router, each writing into the same two Gauntlet and
//! two Thanos ingesters, put every series on the same three members (hashmod and ketama rings
//! alike), every acknowledged sample is found exactly once through a deduplicating querier
//! (Thanos's and Gauntlet's, which answer alike), and both routers answer writes as Thanos's
//! router does over an all-Thanos ring: 409 for samples every replica refuses as conflicting,
//! and with members killed, 200 while a quorum (2 of 3) of every series' replicas lives, 503
//! once it does not. Receivers that route and ingest at once share a ring across both kinds
//! the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::fixture::{assert_same_ports, wait_for_stores_on};
use crate::common::peers::{PeerProcess, objstore_file, thanos_query, thanos_receive_on};
use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::{GauntletServer, api_path, free_port_sets, free_ports, http_get};

/// Copies of each series.
const RF: u64 = 3;
/// Series written per tenant.
const SERIES: usize = 24;
/// Samples per series in one write, 1 s apart.
const PER_WRITE: i64 = 5;
/// The metric every written series has.
const METRIC: &str = "interop_ring";
/// The label Thanos's and Gauntlet's receivers put the tenant in (both default to it).
const TENANT_LABEL: &str = "tenant_id";

/// Which receiver a ring member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Thanos,
    Gauntlet,
}

/// A receiver process of either kind; dropping it kills it.
enum Process {
    Thanos(PeerProcess),
    Gauntlet(Receiver),
}

impl Process {
    /// Starts a `kind` receiver over `dir` on `ports` (`[http, grpc, rw]`) with `args`.
    fn start(kind: Kind, dir: &Path, ports: [u16; 3], args: &[String]) -> Process {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match kind {
            Kind::Thanos => {
                // Nothing is cut in a test's minutes, so nothing is shipped; the flag is needed.
                let bucket = dir.join("bucket");
                std::fs::create_dir_all(&bucket).unwrap();
                let objstore = objstore_file(dir, &bucket);
                let (p, _) = thanos_receive_on(ports, &dir.join("tsdb"), &objstore, &args);
                Process::Thanos(p)
            }
            Kind::Gauntlet => {
                Process::Gauntlet(Receiver::start_bare(&dir.join("tsdb"), &args, ports))
            }
        }
    }

    /// Kills it with SIGKILL, as a crash would, and waits for it to exit.
    fn kill(&mut self) {
        match self {
            Process::Thanos(p) => p.kill(),
            Process::Gauntlet(r) => r.kill(),
        }
    }
}

/// A receiver in a ring (or routing into it).
struct Member {
    kind: Kind,
    /// Its `receive_replica` label (`g0`, `t1`, `router-Thanos`).
    name: String,
    /// `127.0.0.1:<grpc port>`, as the hashrings file lists it.
    grpc: String,
    /// Its remote-write port.
    rw: u16,
    /// `None` once killed.
    process: Option<Process>,
}

impl Member {
    fn start(kind: Kind, name: &str, dir: &Path, ports: [u16; 3], args: &[String]) -> Member {
        Member {
            kind,
            name: name.to_string(),
            grpc: format!("127.0.0.1:{}", ports[1]),
            rw: ports[2],
            process: Some(Process::start(kind, dir, ports, args)),
        }
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }
}

/// How the members take writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// The members only ingest (no hashring of their own); a Thanos router and a Gauntlet
    /// router, both routing only, spread the writes over them.
    Routers,
    /// Every member routes and ingests (the hashrings file and `--receive.local-endpoint`);
    /// writes go to the first member of each kind.
    RouterIngesters,
}

/// Ring members with the routers that write into them.
struct Ring {
    members: Vec<Member>,
    /// A Thanos and a Gauntlet receiver taking the writes, in that order.
    routers: Vec<Member>,
    /// Tenants written, each with the algorithm of its ring.
    tenants: Vec<(&'static str, &'static str)>,
    _tmp: tempfile::TempDir,
}

impl Ring {
    /// Starts members of `kinds` (named `g<i>`/`t<i>` by kind and position among their kind)
    /// in one hashrings file holding a ring per tenant of `tenants` (each with its algorithm),
    /// all over the same members.
    fn start(kinds: &[Kind], layout: Layout, tenants: &[(&'static str, &'static str)]) -> Ring {
        let tmp = tempfile::tempdir().unwrap();
        let ports: Vec<[u16; 3]> = free_port_sets(kinds.len());
        let addresses: Vec<String> = ports
            .iter()
            .map(|p| format!("127.0.0.1:{}", p[1]))
            .collect();
        let rings: Vec<Value> = tenants
            .iter()
            .map(|(tenant, algorithm)| {
                json!({
                    "hashring": tenant,
                    "tenants": [tenant],
                    "algorithm": algorithm,
                    "endpoints": addresses,
                })
            })
            .collect();
        let ring_file = tmp.path().join("hashrings.json");
        std::fs::write(&ring_file, Value::Array(rings).to_string()).unwrap();
        let ring_flags = |local: Option<&str>| {
            let mut f = vec![
                format!("--receive.hashrings-file={}", ring_file.display()),
                format!("--receive.replication-factor={RF}"),
                "--receive-forward-timeout=5s".to_string(),
            ];
            f.extend(local.map(|l| format!("--receive.local-endpoint={l}")));
            f
        };
        let mut seen = BTreeMap::new();
        let mut members = Vec::new();
        for (i, &kind) in kinds.iter().enumerate() {
            let n = seen.entry(kind).or_insert(0);
            let name = format!("{}{n}", if kind == Kind::Thanos { 't' } else { 'g' });
            *n += 1;
            let mut args = vec![format!("--label=receive_replica=\"{name}\"")];
            match layout {
                // An ingester of Thanos's learns nothing from its address; Gauntlet's is told
                // it all the same, as a deployment would.
                Layout::Routers if kind == Kind::Gauntlet => {
                    args.push(format!("--receive.local-endpoint={}", addresses[i]));
                }
                Layout::Routers => {}
                Layout::RouterIngesters => args.extend(ring_flags(Some(&addresses[i]))),
            }
            let dir = tmp.path().join(&name);
            members.push(Member::start(kind, &name, &dir, ports[i], &args));
        }
        let routers = match layout {
            Layout::Routers => [Kind::Thanos, Kind::Gauntlet]
                .into_iter()
                .map(|kind| {
                    let name = format!("router-{kind:?}");
                    let dir = tmp.path().join(&name);
                    // Thanos's receivers insist on an external label, routers too.
                    let mut args = ring_flags(None);
                    args.push(format!("--label=receive_replica=\"{name}\""));
                    Member::start(kind, &name, &dir, free_ports(), &args)
                })
                .collect(),
            Layout::RouterIngesters => Vec::new(),
        };
        Ring {
            members,
            routers,
            tenants: tenants.to_vec(),
            _tmp: tmp,
        }
    }

    /// The receivers writes go to: the routers, or the first member of each kind.
    fn entries(&self) -> Vec<&Member> {
        if !self.routers.is_empty() {
            return self.routers.iter().collect();
        }
        [Kind::Thanos, Kind::Gauntlet]
            .into_iter()
            .filter_map(|k| self.members.iter().find(|m| m.kind == k))
            .collect()
    }

    /// `host:port` of every member's StoreAPI.
    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.grpc.clone()).collect()
    }
}

/// Sample `j` (from 0) of series `i` written at `base_ms`: 1 s apart, values that tell the
/// series and the sample apart.
fn sample(base_ms: i64, i: usize, j: i64) -> (i64, f64) {
    (base_ms + j * 1000, i as f64 * 1000.0 + j as f64)
}

/// Write number `w` (from 0): samples `w*PER_WRITE..(w+1)*PER_WRITE` of every series, their
/// values raised by `shift` (0 for the samples [`sample`] gives), one request per tenant
/// through `entry`; the answers' statuses, by tenant.
fn write(ring: &Ring, entry: &Member, base_ms: i64, w: i64, shift: f64) -> Vec<u16> {
    let ts: Vec<_> = (0..SERIES)
        .map(|i| {
            let samples: Vec<(i64, f64)> = (w * PER_WRITE..(w + 1) * PER_WRITE)
                .map(|j| {
                    let (t, v) = sample(base_ms, i, j);
                    (t, v + shift)
                })
                .collect();
            series(&[("__name__", METRIC), ("i", &format!("{i:02}"))], &samples)
        })
        .collect();
    let body = write_body(ts);
    ring.tenants
        .iter()
        .map(|(tenant, _)| {
            let (code, _, msg) = post(
                entry.rw,
                "/api/v1/receive",
                &[V1, ("THANOS-TENANT", tenant)],
                &body,
            )
            .unwrap_or_else(|e| panic!("write {w} through {}: {e}", entry.name));
            eprintln!(
                "write {w} through {} ({tenant}): {code} {}",
                entry.name,
                msg.trim()
            );
            code
        })
        .collect()
}

/// The instant query `METRIC[1h]` at the time of the last sample of write `last` (so later,
/// unacknowledged writes are left out), raw (`dedup=false`) or deduplicated.
fn samples_path(base_ms: i64, last: i64, dedup: bool) -> String {
    let (t, _) = sample(base_ms, 0, (last + 1) * PER_WRITE - 1);
    api_path(
        "/api/v1/query",
        &[
            ("query", &format!("{METRIC}[1h]")),
            ("time", &format!("{}.{:03}", t / 1000, t % 1000)),
            ("dedup", if dedup { "true" } else { "false" }),
        ],
    )
}

/// Samples by (tenant, series index, replica label or "" when deduplicated), as the querier on
/// `port` answers `path`.
type Held = BTreeMap<(String, String, String), Vec<(i64, f64)>>;

fn held(port: u16, path: &str) -> Held {
    let (status, body) = http_get(port, path).unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "{path}: {v}");
    let mut out = Held::new();
    for s in v["data"]["result"].as_array().expect("a matrix") {
        let label = |n: &str| s["metric"][n].as_str().unwrap_or("").to_string();
        let values = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        let key = (label(TENANT_LABEL), label("i"), label("receive_replica"));
        assert!(
            out.insert(key.clone(), values).is_none(),
            "{path}: {key:?} answered twice"
        );
    }
    out
}

/// What every series holds once writes `0..=last` were acknowledged.
fn expected(base_ms: i64, last: i64) -> Vec<(i64, f64)> {
    (0..(last + 1) * PER_WRITE)
        .map(|j| sample(base_ms, 0, j))
        .collect()
}

/// Holds the deduplicated answer of the querier on `port` to every acknowledged sample of
/// writes `0..=last`, each exactly once with its value.
fn assert_found_once(what: &str, ring: &Ring, port: u16, base_ms: i64, last: i64) {
    let got = held(port, &samples_path(base_ms, last, true));
    let mut want = Held::new();
    for (tenant, _) in &ring.tenants {
        for i in 0..SERIES {
            let samples = expected(base_ms, last)
                .into_iter()
                .map(|(t, v)| (t, v + i as f64 * 1000.0))
                .collect();
            want.insert(
                (tenant.to_string(), format!("{i:02}"), String::new()),
                samples,
            );
        }
    }
    if got != want {
        let differ: Vec<String> = want
            .keys()
            .chain(got.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|k| want.get(*k) != got.get(*k))
            .take(5)
            .map(|k| format!("{k:?}: want {:?}\n  got {:?}", want.get(k), got.get(k)))
            .collect();
        panic!(
            "{what}: acknowledged samples not found exactly once:\n{}",
            differ.join("\n")
        );
    }
}

/// The members (their `receive_replica`) holding each series (tenant, index).
type Placement = BTreeMap<(String, String), BTreeSet<String>>;

/// The raw answer on `port` once every series' copies are whole (writes `0..=last`), waited
/// for at most 15 s: a router answers once a quorum of a series' replicas took it, and the
/// rest arrive after. With `placement` (from before members were killed), a series is whole
/// once every living member of its placement holds it; without, once `RF` members do.
fn settled(ring: &Ring, port: u16, base_ms: i64, last: i64, placement: Option<&Placement>) -> Held {
    let whole = expected(base_ms, last);
    let living: BTreeSet<&str> = ring
        .members
        .iter()
        .filter(|m| m.process.is_some())
        .map(|m| m.name.as_str())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = held(port, &samples_path(base_ms, last, false));
        let mut on: Placement = BTreeMap::new();
        for ((tenant, i, replica), samples) in &got {
            let base_value = i.parse::<f64>().unwrap() * 1000.0;
            if samples
                .iter()
                .map(|&(t, v)| (t, v - base_value))
                .eq(whole.iter().copied())
            {
                on.entry((tenant.clone(), i.clone()))
                    .or_default()
                    .insert(replica.clone());
            }
        }
        let done = ring.tenants.iter().all(|(tenant, _)| {
            (0..SERIES).all(|i| {
                let key = (tenant.to_string(), format!("{i:02}"));
                let have = on.get(&key);
                match placement {
                    None => have.is_some_and(|h| h.len() == RF as usize),
                    Some(p) => p[&key]
                        .iter()
                        .filter(|m| living.contains(m.as_str()))
                        .all(|m| have.is_some_and(|h| h.contains(m))),
                }
            })
        });
        if done || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Holds `got` (a raw answer, writes `0..=last`) to: every series on exactly `RF` distinct
/// members, each copy whole, so writes sent through different routers all went to the same
/// members. Returns where each series is.
fn assert_placed_alike(what: &str, ring: &Ring, got: &Held, base_ms: i64, last: i64) -> Placement {
    let whole = expected(base_ms, last);
    let mut placement = Placement::new();
    for ((tenant, i, replica), samples) in got {
        let base_value = i.parse::<f64>().unwrap() * 1000.0;
        let want: Vec<(i64, f64)> = whole.iter().map(|&(t, v)| (t, v + base_value)).collect();
        assert_eq!(
            samples, &want,
            "{what}: {replica} holds part of {tenant}/{i}: the routers placed it apart"
        );
        placement
            .entry((tenant.clone(), i.clone()))
            .or_default()
            .insert(replica.clone());
    }
    assert_eq!(
        placement.len(),
        ring.tenants.len() * SERIES,
        "{what}: series missing: {placement:?}"
    );
    for (s, on) in &placement {
        assert_eq!(on.len(), RF as usize, "{what}: {s:?} is on {on:?}");
    }
    placement
}

/// Thanos's and Gauntlet's queriers over every member, deduplicating `receive_replica`, each
/// waited for until it sees them all.
fn queriers(ring: &Ring) -> (PeerProcess, GauntletServer) {
    let endpoints = ring.endpoints();
    let flags = ["--query.replica-label=receive_replica"];
    let thanos = thanos_query(&endpoints, &flags);
    let mut args = vec!["query".to_string()];
    args.extend(endpoints.iter().map(|e| format!("--endpoint={e}")));
    args.extend(flags.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let gauntlet = GauntletServer::start(&args, "/-/ready");
    wait_for_stores_on(thanos.http, endpoints.len());
    wait_for_stores_on(gauntlet.http_port, endpoints.len());
    (thanos, gauntlet)
}

/// The start of the samples: a few minutes back, on a whole second.
fn base_ms() -> i64 {
    (now_ms() - 10 * 60_000) / 1000 * 1000
}

/// A ring under test with its queriers and where its series went.
struct Checked {
    thanos: PeerProcess,
    gauntlet: GauntletServer,
    placement: Placement,
}

/// Writes 0 and 1 through each entry in turn, all acknowledged, each let to reach all its
/// replicas before the next (a copy arriving after a later write would be out of order);
/// then checks placement and exactly-once through both queriers, which answer alike.
fn write_and_check(what: &str, ring: &Ring, base: i64) -> Checked {
    let mut queriers_started = None;
    for (w, entry) in ring.entries().into_iter().enumerate() {
        let codes = write(ring, entry, base, w as i64, 0.0);
        assert!(
            codes.iter().all(|&c| c == 200),
            "{what}: write {w} through {}: {codes:?}",
            entry.name
        );
        // The first write opens the members' tenants, which the queriers need to see them.
        let (thanos, _) = queriers_started.get_or_insert_with(|| queriers(ring));
        settled(ring, thanos.http, base, w as i64, None);
    }
    let (thanos, gauntlet) = queriers_started.expect("a write went out");
    let raw = held(thanos.http, &samples_path(base, 1, false));
    let placement = assert_placed_alike(what, ring, &raw, base, 1);
    // Every member takes a share.
    let holders: BTreeSet<&String> = placement.values().flatten().collect();
    assert_eq!(holders.len(), ring.members.len(), "{what}: {holders:?}");
    assert_found_once(what, ring, thanos.http, base, 1);
    assert_found_once(what, ring, gauntlet.http_port, base, 1);
    let paths = [samples_path(base, 1, true), samples_path(base, 1, false)];
    assert_same_ports(what, thanos.http, gauntlet.http_port, &paths);
    Checked {
        thanos,
        gauntlet,
        placement,
    }
}

/// Rewrites write 0 with other values through every entry (every replica refuses the
/// samples: a conflict), then kills member 1, then member 3, writing through every entry after
/// each kill (an acknowledged write let reach its living replicas); returns the answers: per
/// situation (conflict, one down, two down), per entry, per tenant.
fn kill_and_write(ring: &mut Ring, checked: &Checked, base: i64) -> Vec<Vec<Vec<u16>>> {
    let conflicts = ring
        .entries()
        .into_iter()
        .map(|e| write(ring, e, base, 0, 0.5))
        .collect();
    let mut answers = vec![conflicts];
    let mut w = 2;
    for victim in [1, 3] {
        ring.members[victim].kill();
        let mut situation = Vec::new();
        for entry in ring.entries() {
            let codes = write(ring, entry, base, w, 0.0);
            if codes.iter().all(|&c| c == 200) {
                settled(ring, checked.thanos.http, base, w, Some(&checked.placement));
            }
            situation.push(codes);
            w += 1;
        }
        answers.push(situation);
    }
    answers
}

#[test]
fn hashring_mixed_members_behind_thanos_and_gauntlet_routers() {
    let kinds = [Kind::Gauntlet, Kind::Gauntlet, Kind::Thanos, Kind::Thanos];
    let tenants = [("hm", "hashmod"), ("kt", "ketama")];
    let mut ring = Ring::start(&kinds, Layout::Routers, &tenants);
    let base = base_ms();
    let checked = write_and_check("mixed ring", &ring, base);

    let answers = kill_and_write(&mut ring, &checked, base);
    // Samples at taken timestamps with other values: a conflict on every replica, not to be
    // retried. One member of four down: every series keeps 2 of its 3 replicas. Two down: some
    // series keep only one, and the write is to be retried.
    let want = vec![
        vec![vec![409; 2]; 2],
        vec![vec![200; 2]; 2],
        vec![vec![503; 2]; 2],
    ];
    assert_eq!(
        answers, want,
        "mixed ring: answers after kills (Thanos router, Gauntlet router)"
    );
    // Writes 2 and 3 went out with one member down, and were acknowledged: found once.
    let what = "mixed ring, g1 killed";
    assert_found_once(what, &ring, checked.thanos.http, base, 3);
    assert_found_once(what, &ring, checked.gauntlet.http_port, base, 3);
}

#[test]
fn hashring_all_thanos_members_answer_kills_as_the_mixed_ring() {
    // The reference for the mixed ring's answers: Thanos's router over Thanos's receivers
    // only, with Gauntlet's router beside it.
    let kinds = [Kind::Thanos; 4];
    let mut ring = Ring::start(&kinds, Layout::Routers, &[("hm", "hashmod")]);
    let base = base_ms();
    let checked = write_and_check("all-Thanos ring", &ring, base);
    let answers = kill_and_write(&mut ring, &checked, base);
    let want = vec![vec![vec![409]; 2], vec![vec![200]; 2], vec![vec![503]; 2]];
    assert_eq!(
        answers, want,
        "all-Thanos ring: answers after kills (Thanos router, Gauntlet router)"
    );
    assert_found_once(
        "all-Thanos ring, t1 killed",
        &ring,
        checked.thanos.http,
        base,
        3,
    );
}

#[test]
fn hashring_router_ingesters_of_both_kinds_share_a_ketama_ring() {
    let kinds = [Kind::Gauntlet, Kind::Thanos, Kind::Gauntlet, Kind::Thanos];
    let ring = Ring::start(&kinds, Layout::RouterIngesters, &[("kt", "ketama")]);
    write_and_check("router-ingesters", &ring, base_ms());
}
