//! Thanos's querier in front of Gauntlet: `thanos query --endpoint=<gauntlet store>` answers
//! as `thanos query --endpoint=<thanos store>` does over the same bucket, with and without
//! deduplication of an HA pair, and with Gauntlet's and Thanos's stores mixed behind one
//! querier. The same holds with Gauntlet's receiver, `all` and querier as the endpoint (each
//! against its Thanos counterpart fed the same), with a store killed under a query (partial
//! response on and off), over downsampled blocks at every `max_source_resolution`, with
//! stores sharded by time and by label, and with vertical sharding (`shard_info`, as Thanos's
//! query frontend asks for it).

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use gauntlet_bench::datagen::{self, GenConfig, Generator};
use gauntlet_proto::{prometheus as pb, thanos};
use prost::Message;
use serde_json::{Value, json};

use super::fixture::{
    assert_same, gen_config, ha_bucket, normalized, query_paths, wait_for_stores_on, write_replicas,
};
use crate::common::bucket::block_dirs;
use crate::common::histograms::int_pb;
use crate::common::peers::{
    PeerProcess, objstore_file, thanos, thanos_query, thanos_receive, thanos_store,
};
use crate::common::{
    GauntletServer, api_path, filesystem_objstore, free_ports, gauntlet, http_get, receive, run_ok,
};

#[test]
fn thanos_query_over_a_gauntlet_store_answers_as_over_thanos_store() {
    let tmp = tempfile::tempdir().unwrap();
    let b = ha_bucket(tmp.path());
    assert!(b.dir.join("").is_dir());
    let upstream = thanos_store(&b.objstore, &tmp.path().join("thanos-store"), &[]);
    let ours = GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", b.objstore.display()),
            &format!("--data-dir={}", tmp.path().join("gauntlet-store").display()),
        ],
        "/-/ready",
    );
    let ours_addr = format!("127.0.0.1:{}", ours.grpc_port);
    let paths = query_paths(b.start_ms, b.end_ms);

    // Deduplicated along `replica`, and each replica apart.
    let dedup = ["--query.replica-label=replica"];
    let want = thanos_query(&[upstream.grpc_addr()], &dedup);
    let got = thanos_query(std::slice::from_ref(&ours_addr), &dedup);
    let answered = assert_same("dedup", &want, &got, &paths);
    assert!(
        answered >= paths.len() - 2,
        "too few answers held data: {answered}"
    );
    let raw: Vec<String> = paths.iter().map(|p| format!("{p}&dedup=false")).collect();
    assert_same("no dedup", &want, &got, &raw);

    // Gauntlet's store and Thanos's, each serving the whole bucket: one querier deduplicates
    // the two stores' series as it does two of its own.
    let mixed = thanos_query(&[upstream.grpc_addr(), ours_addr], &dedup);
    assert_same("mixed stores", &want, &mixed, &paths);
}

/// `cfg`'s floats and native histograms as remote-write 1.0 bodies, ten minutes of samples per
/// request, in time order (each series' samples increase from one request to the next, as a
/// Prometheus sending its WAL writes them).
pub(crate) fn remote_write_bodies(cfg: &GenConfig) -> Vec<Vec<u8>> {
    const WINDOW_MS: i64 = 10 * 60_000;
    let windows = ((cfg.duration_ms + WINDOW_MS - 1) / WINDOW_MS) as usize;
    let window = |t: i64| (((t - cfg.start_ms) / WINDOW_MS) as usize).min(windows - 1);
    let mut g = Generator::new(cfg).unwrap();
    let mut samples = Vec::new();
    while g.next_scrape(&mut samples) {}
    // Per window, the series in order of first appearance and their samples.
    let mut floats: Vec<BTreeMap<u32, Vec<pb::Sample>>> = vec![BTreeMap::new(); windows];
    for s in &samples {
        floats[window(s.ts_ms)]
            .entry(s.series)
            .or_default()
            .push(pb::Sample {
                value: s.value,
                timestamp: s.ts_ms,
            });
    }
    let pb_labels = |l: &gauntlet_engine::labels::Labels| -> Vec<pb::Label> {
        l.iter()
            .map(|l| pb::Label {
                name: l.name.to_string(),
                value: l.value.to_string(),
            })
            .collect()
    };
    let hists = datagen::native_series(cfg).unwrap();
    (0..windows)
        .map(|w| {
            let mut ts: Vec<pb::TimeSeries> = floats[w]
                .iter()
                .map(|(&i, s)| pb::TimeSeries {
                    labels: pb_labels(&g.series()[i as usize].labels),
                    samples: s.clone(),
                    ..Default::default()
                })
                .collect();
            for h in &hists {
                let histograms: Vec<pb::Histogram> =
                    h.ts.iter()
                        .zip(&h.h)
                        .filter(|(t, _)| window(**t) == w)
                        .map(|(&t, h)| int_pb(t, h))
                        .collect();
                if !histograms.is_empty() {
                    ts.push(pb::TimeSeries {
                        labels: pb_labels(&h.labels),
                        histograms,
                        ..Default::default()
                    });
                }
            }
            receive::snappy(
                &pb::WriteRequest {
                    timeseries: ts,
                    ..Default::default()
                }
                .encode_to_vec(),
            )
        })
        .collect()
}

/// Posts every body to the remote-write handler on each port in `to` as tenant `tenant`;
/// each must be taken (2xx).
pub(crate) fn post_all(bodies: &[Vec<u8>], to: &[u16], tenant: &str) {
    for body in bodies {
        for &port in to {
            let (code, _, msg) = receive::post(
                port,
                "/api/v1/receive",
                &[receive::V1, ("THANOS-TENANT", tenant)],
                body,
            )
            .unwrap();
            assert!((200..300).contains(&code), "write to :{port}: {code} {msg}");
        }
    }
}

/// The last 2 h of the interop data (4 targets at 30 s, floats and native histograms), ending a
/// minute ago: receivers take it as a live writer's.
pub(crate) fn recent_config() -> GenConfig {
    let now = receive::now_ms();
    let duration_ms = 2 * 3_600_000;
    GenConfig {
        start_ms: (now - duration_ms - 60_000) / 60_000 * 60_000,
        duration_ms,
        ..gen_config()
    }
}

/// A `gauntlet receive` and a `thanos receive`, both labelled alike and written the same
/// requests for one tenant, answer alike through Thanos's querier; so does `gauntlet all` fed
/// the same, its querier told to drop the receivers' own labels as replica labels.
#[test]
fn thanos_query_over_gauntlet_receive_and_all_answers_as_over_thanos_receive() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = ["--label=cluster=\"eu1\"", "--label=receive_replica=\"0\""];
    // Thanos's receivers ship what they cut into a scratch bucket; nothing is cut in 2 h.
    let scratch = tmp.path().join("shipped");
    std::fs::create_dir_all(&scratch).unwrap();
    let objstore = objstore_file(tmp.path(), &scratch);
    let (upstream, upstream_rw) =
        thanos_receive(&tmp.path().join("thanos-receive"), &objstore, &labels);
    let ours =
        receive::Receiver::start_bare(&tmp.path().join("gauntlet-receive"), &labels, free_ports());
    let all = GauntletServer::start(
        &[
            "all",
            &format!("--data-dir={}", tmp.path().join("all").display()),
        ],
        "/-/ready",
    );
    let cfg = recent_config();
    let bodies = remote_write_bodies(&cfg);
    post_all(&bodies, &[upstream_rw, ours.rw, all.http_port], "team-a");

    let paths = query_paths(cfg.start_ms, cfg.start_ms + cfg.duration_ms);
    let want = thanos_query(&[upstream.grpc_addr()], &[]);
    let got = thanos_query(&[format!("127.0.0.1:{}", ours.grpc)], &[]);
    wait_for_stores_on(want.http, 1);
    wait_for_stores_on(got.http, 1);
    let answered = assert_same("receive", &want, &got, &paths);
    assert!(
        answered >= paths.len() / 2,
        "too few answers held data: {answered}"
    );

    // `all` labels its heads by tenant only; Thanos's receiver insists on labels of its own.
    // Taken as replica labels, the querier drops them from its answers, so both answer alike.
    let drop = [
        "--query.replica-label=cluster",
        "--query.replica-label=receive_replica",
    ];
    let want = thanos_query(&[upstream.grpc_addr()], &drop);
    let got = thanos_query(&[format!("127.0.0.1:{}", all.grpc_port)], &drop);
    wait_for_stores_on(want.http, 1);
    wait_for_stores_on(got.http, 1);
    // The label names API lists replica labels still: there, the receiver's own two are
    // taken out before comparing.
    let (names, rest): (Vec<String>, Vec<String>) = paths
        .into_iter()
        .partition(|p| p.starts_with("/api/v1/labels?"));
    assert_same("all", &want, &got, &rest);
    for p in &names {
        let mut w = want.get_json(p);
        if let Some(a) = w["data"].as_array_mut() {
            a.retain(|n| n != "cluster" && n != "receive_replica");
        }
        assert_eq!(w, got.get_json(p), "all: {p}");
    }

    // `all` serves the gRPC Query API (a ruler's `--grpc-query-endpoint`, a distributed
    // querier's remote engine) and says so in Info; it answers as Thanos's querier does over
    // its receiver, whole and shard by shard.
    let range = (cfg.start_ms / 1000, (cfg.start_ms + cfg.duration_ms) / 1000);
    for q in [
        "sum by (job) (rate(node_cpu_seconds_total[5m]))",
        "node_memory_MemAvailable_bytes",
        "sum by (handler) (rate(http_request_duration_seconds[5m]))",
    ] {
        let theirs = grpc_range_series(want.grpc, q, range, &[], None);
        assert!(!theirs.is_empty(), "{q}: no series");
        assert_eq!(
            grpc_range_series(all.grpc_port, q, range, &[], None),
            theirs,
            "{q}"
        );
    }
    let selector = "node_cpu_seconds_total";
    let whole = grpc_range_series(all.grpc_port, selector, range, &[], None);
    let mut union = Vec::new();
    for index in 0..3 {
        let shard = thanos::ShardInfo {
            shard_index: index,
            total_shards: 3,
            ..Default::default()
        };
        let part = grpc_range_series(all.grpc_port, selector, range, &[], Some(shard.clone()));
        assert_eq!(
            part,
            grpc_range_series(want.grpc, selector, range, &[], Some(shard)),
            "all, shard {index} of 3"
        );
        union.extend(part);
    }
    union.sort();
    assert_eq!(union, whole, "the shards of `all` partition the series");
    let info = crate::common::storeapi::python_calls(all.grpc_port, &json!([{"method": "Info"}]));
    assert_eq!(info[0]["has_query"], true, "{}", info[0]);
}

/// `gauntlet query` over a Gauntlet store, itself an endpoint of Thanos's querier, answers as
/// Thanos's store does behind the same querier (the querier-of-queriers layout).
#[test]
fn thanos_query_over_gauntlet_query_answers_as_over_thanos_store() {
    let tmp = tempfile::tempdir().unwrap();
    let b = ha_bucket(tmp.path());
    let upstream = thanos_store(&b.objstore, &tmp.path().join("thanos-store"), &[]);
    let store = GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", b.objstore.display()),
            &format!("--data-dir={}", tmp.path().join("gauntlet-store").display()),
        ],
        "/-/ready",
    );
    let query = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", store.grpc_port),
        ],
        "/-/ready",
    );
    let paths = query_paths(b.start_ms, b.end_ms);
    let dedup = ["--query.replica-label=replica"];
    let want = thanos_query(&[upstream.grpc_addr()], &dedup);
    let got = thanos_query(&[format!("127.0.0.1:{}", query.grpc_port)], &dedup);
    wait_for_stores_on(got.http, 1);
    let answered = assert_same("dedup", &want, &got, &paths);
    assert!(
        answered >= paths.len() - 2,
        "too few answers held data: {answered}"
    );
    let raw: Vec<String> = paths.iter().map(|p| format!("{p}&dedup=false")).collect();
    assert_same("no dedup", &want, &got, &raw);

    // The gRPC Query API (`thanos.Query`) with `shard_info`: each shard of a range query holds
    // the series Thanos's querier puts in it over the same data, and the shards partition them.
    let selector = "{__name__=~\"node_cpu_seconds_total|kube_pod_status_phase\"}";
    let range = (b.start_ms / 1000, b.end_ms / 1000);
    let replica = ["replica"];
    let whole = grpc_range_series(query.grpc_port, selector, range, &replica, None);
    assert!(whole.len() > 50, "too few series: {}", whole.len());
    assert_eq!(
        whole,
        grpc_range_series(want.grpc, selector, range, &replica, None),
        "unsharded"
    );
    for (by, labels) in [(false, &[][..]), (true, &["job"][..])] {
        for total in [2, 3] {
            let mut union = Vec::new();
            for index in 0..total {
                let shard = thanos::ShardInfo {
                    shard_index: index,
                    total_shards: total,
                    by,
                    labels: labels.iter().map(|l| l.to_string()).collect(),
                };
                let ours = grpc_range_series(
                    query.grpc_port,
                    selector,
                    range,
                    &replica,
                    Some(shard.clone()),
                );
                let theirs = grpc_range_series(want.grpc, selector, range, &replica, Some(shard));
                assert_eq!(ours, theirs, "shard {index} of {total}, by={by} {labels:?}");
                union.extend(ours);
            }
            union.sort();
            assert_eq!(union, whole, "the {total} shards partition the series");
        }
    }
}

/// A range query (step 300 s) over the gRPC Query API of the querier at `port`, deduplicated
/// by `replica_labels` (empty: the querier's own), asked with `shard`: each series as text,
/// its sorted labels then its points (float values exact, histograms by count and sum), the
/// series sorted.
fn grpc_range_series(
    port: u16,
    query: &str,
    (start_s, end_s): (i64, i64),
    replica_labels: &[&str],
    shard: Option<thanos::ShardInfo>,
) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut client =
            thanos::query_client::QueryClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .unwrap()
                .max_decoding_message_size(usize::MAX);
        let req = thanos::QueryRangeRequest {
            query: query.to_string(),
            start_time_seconds: start_s,
            end_time_seconds: end_s,
            interval_seconds: 300,
            timeout_seconds: 60,
            replica_labels: replica_labels.iter().map(|l| l.to_string()).collect(),
            enable_dedup: true,
            shard_info: shard,
            ..Default::default()
        };
        let call = async {
            let mut stream = client.query_range(req).await?.into_inner();
            let mut out = Vec::new();
            while let Some(msg) = stream.message().await? {
                use thanos::query_range_response::Result as R;
                let series = match msg.result {
                    Some(R::Timeseries(s)) => vec![s],
                    Some(R::TimeseriesBatch(b)) => b.series,
                    Some(R::Warnings(w)) => panic!("warning from port {port}: {w}"),
                    Some(R::Stats(_)) | None => Vec::new(),
                };
                for s in series {
                    let mut labels: Vec<String> = s
                        .labels
                        .iter()
                        .map(|l| format!("{}={:?}", l.name, l.value))
                        .collect();
                    labels.sort();
                    let mut text = labels.join(",");
                    for p in &s.samples {
                        text.push_str(&format!(" {}:{:?}", p.timestamp, p.value));
                    }
                    for h in &s.histograms {
                        text.push_str(&format!(" {}:h{:?}/{:?}", h.timestamp, h.count, h.sum));
                    }
                    out.push(text);
                }
            }
            Ok::<_, tonic::Status>(out)
        };
        let mut out = tokio::time::timeout(Duration::from_secs(90), call)
            .await
            .expect("QueryRange answered in 90 s")
            .unwrap_or_else(|e| panic!("QueryRange at port {port}: {e}"));
        out.sort();
        out
    })
}

/// Which project's store a scenario runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Make {
    Thanos,
    Gauntlet,
}

/// A store gateway of either make over a bucket, killed on drop.
enum Store {
    Thanos(PeerProcess),
    Gauntlet(GauntletServer),
}

impl Store {
    /// `thanos store` or `gauntlet store` over the bucket `objstore` names, with its scratch
    /// directory `data_dir` and `extra` flags (both take the same sharding flags).
    fn start(make: Make, objstore: &Path, data_dir: &Path, extra: &[&str]) -> Store {
        match make {
            Make::Thanos => Store::Thanos(thanos_store(objstore, data_dir, extra)),
            Make::Gauntlet => {
                let mut args = vec![
                    "store".to_string(),
                    format!("--objstore.config-file={}", objstore.display()),
                    format!("--data-dir={}", data_dir.display()),
                ];
                args.extend(extra.iter().map(|s| s.to_string()));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Store::Gauntlet(GauntletServer::start(&args, "/-/ready"))
            }
        }
    }

    /// `host:port` of its StoreAPI.
    fn addr(&self) -> String {
        match self {
            Store::Thanos(p) => p.grpc_addr(),
            Store::Gauntlet(g) => format!("127.0.0.1:{}", g.grpc_port),
        }
    }

    fn http_port(&self) -> u16 {
        match self {
            Store::Thanos(p) => p.http,
            Store::Gauntlet(g) => g.http_port,
        }
    }

    /// Sends `signal` (`STOP`, `KILL`) to the process.
    fn signal(&self, signal: &str) {
        match self {
            Store::Thanos(p) => p.signal(signal),
            Store::Gauntlet(g) => g.signal(signal),
        }
    }

    /// SIGKILL, then waits (at most 10 s) until its gRPC port refuses connections.
    fn kill(&self) {
        self.signal("KILL");
        let addr = self.addr();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_ok() {
            assert!(
                Instant::now() < deadline,
                "{addr} still listens after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How many Series calls its StoreAPI has started, from its `/metrics`.
    fn series_calls(&self) -> u64 {
        let (status, body) = http_get(self.http_port(), "/metrics").unwrap();
        assert_eq!(status, 200);
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| {
                l.starts_with("grpc_server_started_total{") && l.contains("grpc_method=\"Series\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

/// A bucket under `tmp/name` holding `cfg`'s data as the HA replica `replica` writes it.
fn replica_bucket(tmp: &Path, name: &str, replica: &str, cfg: &GenConfig) -> PathBuf {
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    write_replicas(cfg, &dir, &[replica]);
    filesystem_objstore(tmp.join(format!("{name}.yml")), &dir)
}

/// `text` with every loopback `host:port` replaced by `ADDR`: ports differ from one run to
/// the next, and error texts name them.
fn without_ports(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..i]);
        out.push_str("ADDR");
        rest = rest[i + "127.0.0.1:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// Asks `q` every path in `paths`, the first `in_flight` of them at once and, while those are
/// outstanding, kills `victim` (stopped first, so the calls wait on it: the kill lands while
/// they are in flight); then the rest, with the victim dead. Answers by path, ports blanked.
fn answers_as_a_store_dies(
    q: &PeerProcess,
    victim: &Store,
    paths: &[String],
    in_flight: usize,
) -> Vec<(String, u16, Value)> {
    let port = q.http;
    let mut answers = Vec::new();
    if in_flight > 0 {
        victim.signal("STOP");
        let calls: Vec<_> = paths[..in_flight]
            .iter()
            .map(|p| {
                let p = p.clone();
                std::thread::spawn(move || http_get(port, &p).unwrap())
            })
            .collect();
        // The querier has sent its Series calls by now; the store reads none of them.
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            calls.iter().all(|c| !c.is_finished()),
            "an answer came while a store was stopped"
        );
        victim.kill();
        for (p, c) in paths.iter().zip(calls) {
            let (s, b) = c.join().unwrap();
            answers.push((p.clone(), s, b));
        }
    } else {
        victim.kill();
        // Dead before the query: once its port refuses connections, the querier is given a
        // moment to see its connection closed, so its first call dials (as it does when
        // Thanos's store is the one killed) rather than racing the closed connection.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(victim.addr()).is_ok()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    for p in &paths[in_flight..] {
        let (s, b) = http_get(port, p).unwrap();
        answers.push((p.clone(), s, b));
    }
    answers
        .into_iter()
        .map(|(p, s, b)| {
            let body = without_ports(&String::from_utf8_lossy(&b));
            let v = normalized(&p, &body);
            (p, s, v)
        })
        .collect()
}

/// One of two stores behind Thanos's querier is killed: with `partial_response=true` the
/// querier answers from the other with a warning, without it the query fails, and each answer
/// (status, data, warning and error text, `errorType`) is the one Thanos's querier gives when
/// Thanos's own store dies so. The dying store is a strict endpoint (`--endpoint-strict`), as
/// otherwise the querier's health check (every 5 s) may drop it before the query and the
/// answer would depend on that race.
///
/// Covered: a store killed before the query (the querier's connection is gone), and a store
/// killed while Series calls wait on it (stopped with SIGSTOP, the calls sent, then SIGKILL:
/// the connection resets under them). Not covered: a kill between two frames of a Series
/// stream that already delivered some: the data is too small for a stream that long.
#[test]
fn a_killed_gauntlet_store_gives_the_partial_response_thanos_store_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = GenConfig {
        duration_ms: 2 * 3_600_000,
        ..gen_config()
    };
    let healthy_bucket = replica_bucket(tmp.path(), "a", "a", &cfg);
    let victim_bucket = replica_bucket(tmp.path(), "b", "b", &cfg);
    let (start, end) = (cfg.start_ms / 1000, (cfg.start_ms + cfg.duration_ms) / 1000);
    let q = "sum by (replica) (rate(node_cpu_seconds_total[5m]))";
    let mut paths = Vec::new();
    for partial in ["true", "false"] {
        let p = [("partial_response", partial)];
        let range = [
            ("query", q),
            ("start", &start.to_string()),
            ("end", &end.to_string()),
            ("step", "300"),
        ];
        paths.push(api_path("/api/v1/query_range", &[&range[..], &p].concat()));
    }
    for partial in ["true", "false"] {
        let p = ("partial_response", partial);
        let (s, e) = (start.to_string(), end.to_string());
        paths.push(api_path("/api/v1/query", &[("query", q), ("time", &e), p]));
        paths.push(api_path(
            "/api/v1/series",
            &[
                ("match[]", "node_memory_MemAvailable_bytes"),
                ("start", &s),
                ("end", &e),
                p,
            ],
        ));
        paths.push(api_path("/api/v1/labels", &[("start", &s), ("end", &e), p]));
        paths.push(api_path(
            "/api/v1/label/replica/values",
            &[("start", &s), ("end", &e), p],
        ));
    }

    for (mode, in_flight) in [("killed before the query", 0), ("killed mid-query", 2)] {
        let mut runs = Vec::new();
        for make in [Make::Thanos, Make::Gauntlet] {
            let dir = tmp.path().join(format!("{make:?}-{in_flight}"));
            let healthy = Store::start(make, &healthy_bucket, &dir.join("healthy"), &[]);
            let victim = Store::start(make, &victim_bucket, &dir.join("victim"), &[]);
            let q = thanos_query(
                &[healthy.addr()],
                &[&format!("--endpoint-strict={}", victim.addr())],
            );
            wait_for_stores_on(q.http, 2);
            runs.push(answers_as_a_store_dies(&q, &victim, &paths, in_flight));
        }
        let (want, got) = (&runs[0], &runs[1]);
        for ((p, ws, wv), (_, gs, gv)) in want.iter().zip(got) {
            assert_eq!(
                (ws, wv),
                (gs, gv),
                "{mode}: {p}: Thanos's store (left) and Gauntlet's (right) die differently"
            );
        }
        // The answers say what was asked: without partial response every call fails (422,
        // `execution`); with it, queries hold replica "a" only, with a warning. (Thanos's
        // metadata APIs then answer from the living store without a warning; Gauntlet's store
        // is held to the same above.)
        for (p, s, v) in want {
            if p.contains("partial_response=false") {
                assert_eq!(
                    (*s, &v["errorType"]),
                    (422, &json!("execution")),
                    "{mode}: {p}"
                );
            } else if p.starts_with("/api/v1/query") {
                assert_eq!(*s, 200, "{mode}: {p}: {v}");
                assert!(
                    v["warnings"].as_array().is_some_and(|w| !w.is_empty()),
                    "{mode}: {p}: no warning: {v}"
                );
                assert!(!v.to_string().contains("\"b\""), "{mode}: {p}: {v}");
            }
        }
    }
}

/// Every block of the bucket `dir` downsampled with `gauntlet tools block downsample`: each
/// raw block to 5m, each of those to 1h, next to the raw ones, as Thanos's compactor leaves a
/// bucket. Returns how many blocks were written.
fn downsample_bucket(dir: &Path) -> usize {
    let mut written = 0;
    for (from, to) in [(0, "5m"), (300_000, "1h")] {
        for block in block_dirs(dir) {
            let meta = gauntlet_engine::block::BlockMeta::read(&block).unwrap();
            let res = meta.thanos.as_ref().map_or(0, |t| t.downsample.resolution);
            if res != from {
                continue;
            }
            run_ok(
                gauntlet()
                    .args(["tools", "block", "downsample", "--resolution", to])
                    .arg(&block)
                    .arg(dir),
            );
            written += 1;
        }
    }
    written
}

/// Thanos's querier over a bucket holding raw, 5m and 1h blocks of the same 6 h answers alike
/// through Gauntlet's store and Thanos's at every `max_source_resolution` (raw, 5m, 1h, and
/// `auto`, a fifth of the step), for rate, averages, maxima and counts over floats and for
/// rates and increases of native histograms: both stores pick the same blocks and serve the
/// same aggregates.
#[test]
fn max_source_resolution_over_downsampled_blocks_answers_as_thanos_store() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = gen_config();
    let objstore = replica_bucket(tmp.path(), "bucket", "a", &cfg);
    let written = downsample_bucket(&tmp.path().join("bucket"));
    assert!(written >= 6, "only {written} downsampled blocks");
    let upstream = Store::start(Make::Thanos, &objstore, &tmp.path().join("thanos"), &[]);
    let ours = Store::start(Make::Gauntlet, &objstore, &tmp.path().join("gauntlet"), &[]);
    let want = thanos_query(&[upstream.addr()], &[]);
    let got = thanos_query(&[ours.addr()], &[]);

    let (start, end) = (cfg.start_ms / 1000, (cfg.start_ms + cfg.duration_ms) / 1000);
    let queries = [
        "sum by (job) (rate(node_cpu_seconds_total[2h]))",
        "avg by (instance) (avg_over_time(node_memory_MemAvailable_bytes[2h]))",
        "max by (instance) (max_over_time(node_memory_MemAvailable_bytes[2h]))",
        "count by (job) (count_over_time(up[2h]))",
        "sum by (job) (increase(node_network_receive_bytes_total[3h]))",
        "count(up)",
        "avg(node_memory_MemAvailable_bytes)",
        "histogram_count(sum(rate(http_request_duration_seconds[2h])))",
        "histogram_sum(sum by (handler) (increase(http_request_duration_seconds[2h])))",
    ];
    let mut by_res: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for res in ["0s", "5m", "1h", "auto"] {
        let mut paths = Vec::new();
        for q in queries {
            for step in ["3600", "1800"] {
                paths.push(api_path(
                    "/api/v1/query_range",
                    &[
                        ("query", q),
                        ("start", &start.to_string()),
                        ("end", &end.to_string()),
                        ("step", step),
                        ("max_source_resolution", res),
                    ],
                ));
            }
            for t in [end, end - 3 * 3600] {
                paths.push(api_path(
                    "/api/v1/query",
                    &[
                        ("query", q),
                        ("time", &t.to_string()),
                        ("max_source_resolution", res),
                    ],
                ));
            }
        }
        let answered = assert_same(&format!("max_source_resolution={res}"), &want, &got, &paths);
        assert!(
            answered >= paths.len() / 2,
            "{res}: too few answers held data: {answered}"
        );
        by_res.insert(res, paths);
    }
    // The downsampled blocks were read: the 1h answers are not the raw ones.
    let differ = |a: &str, b: &str| {
        by_res[a]
            .iter()
            .zip(&by_res[b])
            .filter(|(x, y)| normalized(x, &want.get(x).1) != normalized(y, &want.get(y).1))
            .count()
    };
    assert!(differ("0s", "1h") > 0, "1h answers equal raw ones");
    assert!(differ("0s", "5m") > 0, "5m answers equal raw ones");
}

/// The `/api/v1/stores` entry of the store at `addr`.
fn store_entry(q: &PeerProcess, addr: &str) -> Value {
    let v = q.get_json("/api/v1/stores");
    v["data"]
        .as_object()
        .into_iter()
        .flat_map(|o| o.values())
        .flat_map(|l| l.as_array().cloned().unwrap_or_default())
        .find(|s| s["name"] == addr)
        .unwrap_or_else(|| panic!("{addr} is not among the stores: {v}"))
}

/// A bucket served by two Gauntlet stores split by time (`--min-time`/`--max-time`, cut inside a
/// block), by external label and by `hashmod` over `__block_id` (`--selector.relabel-config`)
/// answers through Thanos's querier as one Thanos store over the whole bucket; each store
/// advertises the range and label sets it serves, and the querier asks only the stores a query
/// can concern.
#[test]
fn time_and_label_sharded_gauntlet_stores_answer_as_one_thanos_store() {
    let tmp = tempfile::tempdir().unwrap();
    let b = ha_bucket(tmp.path());
    let paths = query_paths(b.start_ms, b.end_ms);
    let raw: Vec<String> = paths.iter().map(|p| format!("{p}&dedup=false")).collect();
    let dedup = ["--query.replica-label=replica"];
    let upstream = Store::start(Make::Thanos, &b.objstore, &tmp.path().join("thanos"), &[]);
    let want = thanos_query(&[upstream.addr()], &dedup);
    let whole = store_entry(&want, &upstream.addr());
    let pair = |name: &str, flags: [&[&str]; 2]| {
        let dir = tmp.path().join(name);
        [0, 1].map(|i| {
            Store::start(
                Make::Gauntlet,
                &b.objstore,
                &dir.join(i.to_string()),
                flags[i],
            )
        })
    };

    // By time, the cut 15.001 s past a sample round inside the middle block.
    let cut = b.start_ms + 3 * 3_600_000 + 15_001;
    let cut_text = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(cut as u64))
        .to_string();
    let stores = pair(
        "time",
        [
            &[&format!("--max-time={cut_text}")],
            &[&format!("--min-time={cut_text}")],
        ],
    );
    let got = thanos_query(&[stores[0].addr(), stores[1].addr()], &dedup);
    wait_for_stores_on(got.http, 2);
    assert_same("time shards", &want, &got, &paths);
    assert_same("time shards, no dedup", &want, &got, &raw);
    let (early, late) = (
        store_entry(&got, &stores[0].addr()),
        store_entry(&got, &stores[1].addr()),
    );
    assert_eq!(
        (&early["minTime"], early["maxTime"].as_i64()),
        (&whole["minTime"], Some(cut)),
        "{early}"
    );
    assert_eq!(
        (late["minTime"].as_i64(), &late["maxTime"]),
        (Some(cut), &whole["maxTime"]),
        "{late}"
    );
    // An instant an hour in is the early store's alone.
    let before = stores.each_ref().map(Store::series_calls);
    let at = (b.start_ms / 1000 + 3600).to_string();
    got.get_json(&api_path(
        "/api/v1/query",
        &[("query", "count(up)"), ("time", &at)],
    ));
    let after = stores.each_ref().map(Store::series_calls);
    assert!(after[0] > before[0], "the early store was not asked");
    assert_eq!(after[1], before[1], "the late store was asked for its past");

    // By external label: one replica each.
    let keep = |r: &str| {
        format!(
            "--selector.relabel-config=- action: keep\n  source_labels: [replica]\n  regex: {r}\n"
        )
    };
    let (ka, kb) = (keep("a"), keep("b"));
    let stores = pair("label", [&[&ka], &[&kb]]);
    let got = thanos_query(&[stores[0].addr(), stores[1].addr()], &dedup);
    wait_for_stores_on(got.http, 2);
    assert_same("label shards", &want, &got, &paths);
    assert_same("label shards, no dedup", &want, &got, &raw);
    for (s, r) in stores.iter().zip(["a", "b"]) {
        let e = store_entry(&got, &s.addr());
        assert_eq!(
            e["labelSets"],
            json!([{"cluster": "eu1", "replica": r}]),
            "{e}"
        );
    }
    let before = stores.each_ref().map(Store::series_calls);
    got.get_json(&api_path(
        "/api/v1/query",
        &[
            ("query", "count(up{replica=\"a\"})"),
            ("time", &at),
            ("dedup", "false"),
        ],
    ));
    let after = stores.each_ref().map(Store::series_calls);
    assert!(after[0] > before[0], "replica a's store was not asked");
    assert_eq!(
        after[1], before[1],
        "replica b's store was asked for replica a"
    );

    // By hashmod over the block ids: an even split of the blocks (which half a block lands in
    // depends on its random ULID; the union is the bucket either way).
    let hashmod = |n: u32| {
        format!(
            "--selector.relabel-config=- action: hashmod\n  source_labels: [__block_id]\n  modulus: 2\n  target_label: shard\n- action: keep\n  source_labels: [shard]\n  regex: {n}\n"
        )
    };
    let (h0, h1) = (hashmod(0), hashmod(1));
    let stores = pair("hashmod", [&[&h0], &[&h1]]);
    let got = thanos_query(&[stores[0].addr(), stores[1].addr()], &dedup);
    wait_for_stores_on(got.http, 1);
    assert_same("hashmod shards", &want, &got, &paths);
    assert_same("hashmod shards, no dedup", &want, &got, &raw);
}

/// The `shard_info` parameter of Thanos's query API, as its query frontend writes it.
fn shard_info(index: usize, total: usize, by: bool, labels: &[&str]) -> String {
    json!({
        "shard_index": index,
        "total_shards": total,
        "by": by,
        "labels": labels,
    })
    .to_string()
}

/// The series of an instant vector answer, as their label sets' JSON.
fn result_series(v: &Value) -> Vec<String> {
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("not a vector: {v}"))
        .iter()
        .map(|s| s["metric"].to_string())
        .collect()
}

/// Vertical sharding (`thanos.ShardInfo`) over a Gauntlet store: each shard Thanos's querier
/// asks for holds exactly the series Thanos's store puts in it (the same xxhash of the labels
/// without the replica labels, `by` or `without` the grouping labels), the shards partition the
/// series, and `thanos query-frontend --query-frontend.vertical-shards=2` (and 4) in front of
/// the querier answers as without sharding.
#[test]
fn vertical_shards_over_a_gauntlet_store_answer_as_without_sharding() {
    let tmp = tempfile::tempdir().unwrap();
    let b = ha_bucket(tmp.path());
    let dedup = ["--query.replica-label=replica"];
    let upstream = Store::start(Make::Thanos, &b.objstore, &tmp.path().join("thanos"), &[]);
    let ours = Store::start(
        Make::Gauntlet,
        &b.objstore,
        &tmp.path().join("gauntlet"),
        &[],
    );
    let want = thanos_query(&[upstream.addr()], &dedup);
    let got = thanos_query(&[ours.addr()], &dedup);
    let (start, end) = (b.start_ms / 1000, b.end_ms / 1000);
    let at = end.to_string();

    // Shard by shard, through the querier's `shard_info` parameter.
    let selector = "{__name__=~\"node_cpu_seconds_total|http_request_duration_seconds|kube_pod_status_phase\"}";
    for dedup in ["true", "false"] {
        let whole = got.get_json(&api_path(
            "/api/v1/query",
            &[("query", selector), ("time", &at), ("dedup", dedup)],
        ));
        let mut all = result_series(&whole);
        all.sort();
        assert!(all.len() > 100, "too few series: {}", all.len());
        for (by, labels) in [
            (false, &[][..]),
            (true, &["job"][..]),
            (false, &["instance", "cpu"][..]),
        ] {
            for total in [2, 4] {
                let paths: Vec<String> = (0..total)
                    .map(|i| {
                        api_path(
                            "/api/v1/query",
                            &[
                                ("query", selector),
                                ("time", &at),
                                ("dedup", dedup),
                                ("shard_info", &shard_info(i, total, by, labels)),
                            ],
                        )
                    })
                    .collect();
                assert_same(
                    &format!("shards by={by} {labels:?} of {total}"),
                    &want,
                    &got,
                    &paths,
                );
                let mut union: Vec<String> = paths
                    .iter()
                    .flat_map(|p| result_series(&got.get_json(p)))
                    .collect();
                union.sort();
                assert_eq!(union, all, "the {total} shards do not partition the series");
            }
        }
    }

    // Through the query frontend, sharding `sum by`, `max by`, `count by` and histogram sums.
    let queries = [
        "sum by (job) (rate(node_cpu_seconds_total[5m]))",
        "sum by (job, mode) (rate(node_cpu_seconds_total[5m]))",
        "max by (instance) (node_memory_MemAvailable_bytes)",
        "count by (phase) (kube_pod_status_phase == 1)",
        "sum by (handler) (rate(http_request_duration_seconds[5m]))",
        "histogram_quantile(0.9, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        "sum without (instance, cpu) (rate(node_cpu_seconds_total[5m]))",
    ];
    let mut paths = Vec::new();
    for q in queries {
        paths.push(api_path(
            "/api/v1/query_range",
            &[
                ("query", q),
                ("start", &start.to_string()),
                ("end", &end.to_string()),
                ("step", "300"),
            ],
        ));
        paths.push(api_path("/api/v1/query", &[("query", q), ("time", &at)]));
    }
    let frontend = |shards: usize| {
        thanos(
            "query-frontend",
            &[
                format!(
                    "--query-frontend.downstream-url=http://127.0.0.1:{}",
                    got.http
                ),
                format!("--query-frontend.vertical-shards={shards}"),
            ],
        )
    };
    let unsharded = frontend(0);
    let answered = assert_same("frontend without shards, querier", &got, &unsharded, &paths);
    assert!(
        answered >= paths.len() - 1,
        "too few answers held data: {answered}"
    );
    for shards in [2, 4] {
        let sharded = frontend(shards);
        assert_same(
            &format!("{shards} vertical shards"),
            &unsharded,
            &sharded,
            &paths,
        );
        let metrics = sharded.get("/metrics").1;
        let count = metrics
            .lines()
            .filter(|l| {
                l.starts_with("thanos_frontend_sharding_middleware_queries_total")
                    && l.contains("shardable=\"true\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        assert!(
            count >= queries.len() as f64,
            "the frontend sharded {count} queries:\n{metrics}"
        );
    }
}
