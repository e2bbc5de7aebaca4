//! Gauntlet's querier in front of Thanos: `gauntlet query --endpoint=…` over Thanos's store
//! (an HA pair's bucket), over Thanos's receiver (fed by remote write) and over Thanos's
//! sidecar beside a real Prometheus 3 answers the query set as `thanos query` does over the
//! same endpoints, deduplicated and not.

use std::path::Path;

use crate::common::peers::{PeerProcess, objstore_file, thanos, thanos_query, thanos_receive};
use serde_json::Value;

use super::fixture::{
    assert_same_ports, gen_config, ha_bucket, query_paths, wait_for_stores_on, write_replicas,
};
use super::querier_front::{post_all, recent_config, remote_write_bodies};
use crate::common::{GauntletServer, Prometheus, http_get, prometheus3, urlencode};

/// Selections of the query set that Thanos's querier answers apart from Prometheus: `rate` over
/// float counters that reset within a chunk. Thanos reads them through its counter-reset
/// adjusting iterator from the chunk's start, so a window whose first sample follows a reset
/// starts above zero and is extrapolated past the counter's zero point, where Prometheus (and
/// Gauntlet) stop (README, "Known differences from Thanos"). These are held to Prometheus's own
/// answers where a Prometheus is at hand, and left out of the comparison with Thanos.
const RESET_ADJUSTED: [&str; 1] = ["rate(http_requests_total"];

/// `paths` split into those Thanos answers as Prometheus does and those of [`RESET_ADJUSTED`].
fn set_aside_reset_adjusted(paths: &[String]) -> (Vec<String>, Vec<String>) {
    let marks: Vec<String> = RESET_ADJUSTED.iter().map(|s| urlencode(s)).collect();
    paths
        .iter()
        .cloned()
        .partition(|p| !marks.iter().any(|m| p.contains(m.as_str())))
}

/// `paths` split into the others and the label names calls (`/api/v1/labels`).
fn set_aside_label_names(paths: &[String]) -> (Vec<String>, Vec<String>) {
    paths
        .iter()
        .cloned()
        .partition(|p| !p.starts_with("/api/v1/labels?"))
}

/// Holds the label names Gauntlet's querier (on `got`) lists for each of `paths` to those
/// Thanos's (on `want`) lists but `replica_labels`: deduplicating, Thanos's querier still lists
/// the replica labels its series and queries drop (README, "Known differences from Thanos").
fn assert_label_names_agree(
    what: &str,
    want: u16,
    got: u16,
    paths: &[String],
    replica_labels: &[String],
) {
    let names = |port: u16, p: &str| {
        let (status, body) = http_get(port, p).unwrap();
        assert_eq!(status, 200, "{what}: :{port}{p}");
        let v: Value = serde_json::from_slice(&body).unwrap();
        let names: Vec<String> = v["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {p}: {v}"))
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect();
        names
    };
    for p in paths {
        let mut want_names = names(want, p);
        assert!(
            replica_labels.iter().all(|r| want_names.contains(r)),
            "{what}: {p}: Thanos no longer lists the replica labels {replica_labels:?} ({want_names:?}); \
             README's difference is gone"
        );
        want_names.retain(|n| !replica_labels.contains(n));
        assert_eq!(names(got, p), want_names, "{what}: {p}");
    }
}

/// Thanos's querier and Gauntlet's over the same endpoints with the same flags.
struct Queriers {
    thanos: PeerProcess,
    gauntlet: GauntletServer,
    /// The `--query.replica-label`s among the flags.
    replica_labels: Vec<String>,
}

impl Queriers {
    /// Starts both over `endpoints` with `flags` and waits until both see every endpoint.
    fn start(endpoints: &[String], flags: &[&str]) -> Queriers {
        let thanos = thanos_query(endpoints, flags);
        let mut args = vec!["query".to_string()];
        args.extend(endpoints.iter().map(|e| format!("--endpoint={e}")));
        args.extend(flags.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let gauntlet = GauntletServer::start(&args, "/-/ready");
        wait_for_stores_on(thanos.http, endpoints.len());
        wait_for_stores_on(gauntlet.http_port, endpoints.len());
        let replica_labels = flags
            .iter()
            .filter_map(|f| f.strip_prefix("--query.replica-label="))
            .map(str::to_string)
            .collect();
        Queriers {
            thanos,
            gauntlet,
            replica_labels,
        }
    }

    /// Holds Gauntlet's answers to Thanos's for `paths` (but [`RESET_ADJUSTED`]'s), then for
    /// them with `dedup=false` when `also_raw`. Returns how many answers held data, and the
    /// paths set aside.
    fn assert_agree(&self, what: &str, paths: &[String], also_raw: bool) -> (usize, Vec<String>) {
        let (paths, aside) = set_aside_reset_adjusted(paths);
        let (want, got) = (self.thanos.http, self.gauntlet.http_port);
        let (mut same, names) = set_aside_label_names(&paths);
        if self.replica_labels.is_empty() {
            same.extend(names);
        } else {
            assert_label_names_agree(what, want, got, &names, &self.replica_labels);
        }
        let answered = assert_same_ports(what, want, got, &same);
        if also_raw {
            let raw: Vec<String> = paths.iter().map(|p| format!("{p}&dedup=false")).collect();
            assert_same_ports(&format!("{what}, dedup=false"), want, got, &raw);
        }
        (answered, aside)
    }
}

#[test]
fn gauntlet_query_over_thanos_store_answers_as_thanos_query() {
    let tmp = tempfile::tempdir().unwrap();
    let b = ha_bucket(tmp.path());
    let store = crate::common::peers::thanos_store(&b.objstore, &tmp.path().join("store"), &[]);
    let paths = query_paths(b.start_ms, b.end_ms);
    let q = Queriers::start(&[store.grpc_addr()], &["--query.replica-label=replica"]);
    let (answered, _) = q.assert_agree("over thanos store", &paths, true);
    assert!(
        answered >= paths.len() - 4,
        "too few answers held data: {answered} of {}",
        paths.len()
    );
}

#[test]
fn gauntlet_query_over_thanos_receive_answers_as_thanos_query() {
    let tmp = tempfile::tempdir().unwrap();
    let scratch = tmp.path().join("shipped");
    std::fs::create_dir_all(&scratch).unwrap();
    let objstore = objstore_file(tmp.path(), &scratch);
    let (receive, rw) = thanos_receive(
        &tmp.path().join("receive"),
        &objstore,
        &["--label=cluster=\"eu1\"", "--label=receive_replica=\"0\""],
    );
    let cfg = recent_config();
    post_all(&remote_write_bodies(&cfg), &[rw], "team-a");
    let paths = query_paths(cfg.start_ms, cfg.start_ms + cfg.duration_ms);
    let endpoints = [receive.grpc_addr()];
    let (answered, _) =
        Queriers::start(&endpoints, &[]).assert_agree("over thanos receive", &paths, false);
    assert!(
        answered >= paths.len() / 2,
        "too few answers held data: {answered} of {}",
        paths.len()
    );
    // The receiver's own label taken as the replica label: dropped, and kept with dedup=false.
    Queriers::start(&endpoints, &["--query.replica-label=receive_replica"]).assert_agree(
        "over thanos receive, receive_replica dropped",
        &paths,
        true,
    );
}

/// A Prometheus 3 over a copy of `blocks` with the external labels `cluster="eu1"` and
/// `replica="a"`, its blocks never compacted (as a sidecar requires).
fn prometheus_with_external_labels(blocks: &Path) -> Prometheus {
    Prometheus::start_over(
        &prometheus3(),
        blocks,
        |_| {
            "global:\n  scrape_interval: 1h\n  external_labels:\n    cluster: eu1\n    replica: a\n"
                .into()
        },
        &[
            "--storage.tsdb.retention.time=100y",
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=2h",
        ],
    )
}

/// `thanos sidecar` beside `prom`, serving its data over the StoreAPI.
fn sidecar(prom: &Prometheus) -> PeerProcess {
    thanos(
        "sidecar",
        &[
            format!("--prometheus.url=http://127.0.0.1:{}", prom.port),
            format!("--tsdb.path={}", prom.data_dir().display()),
        ],
    )
}

#[test]
fn gauntlet_query_over_thanos_sidecar_answers_as_thanos_query() {
    let tmp = tempfile::tempdir().unwrap();
    let blocks = tmp.path().join("blocks-a");
    std::fs::create_dir_all(&blocks).unwrap();
    let cfg = gen_config();
    // One replica of the HA pair, as its Prometheus wrote it (the Thanos section of meta.json
    // is left in; Prometheus does not read it).
    write_replicas(&cfg, &blocks, &["a"]);
    let prom = prometheus_with_external_labels(&blocks);
    let side = sidecar(&prom);
    let paths = query_paths(
        cfg.start_ms,
        cfg.start_ms + cfg.duration_ms - cfg.scrape_interval_ms,
    );
    let q = Queriers::start(&[side.grpc_addr()], &["--query.replica-label=replica"]);
    let (answered, aside) = q.assert_agree("over thanos sidecar", &paths, true);
    assert!(
        answered >= paths.len() - 4,
        "too few answers held data: {answered} of {}",
        paths.len()
    );
    // What Thanos answers apart, Gauntlet answers as the Prometheus behind the sidecar does
    // (these queries aggregate the external labels away).
    assert!(!aside.is_empty());
    assert_same_ports(
        "over thanos sidecar, as Prometheus answers",
        prom.port,
        q.gauntlet.http_port,
        &aside,
    );
}
