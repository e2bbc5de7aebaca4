//! The memory budget (`--memory.limit`): a process over it refuses new queries, reads and
//! writes (503 with the API's error envelope, or plain text for remote write; on gRPC the
//! StoreAPI's Series, LabelNames and LabelValues and forwarded writes get `ResourceExhausted`)
//! and keeps answering `/metrics`, `/-/healthy`, its web UI and the Info services; under it,
//! everything is served. A querier takes a store's refusal as a store failure (a partial
//! response warning, or 503 without partial responses); a receiver whose hashring peer
//! refuses a forwarded write answers its client 503, and the retry, once the peer has room,
//! lands every series. Work admitted counts what it holds as it grows: a query that would
//! take the process past its budget ends with 503 naming the limit while small ones are
//! answered, before and after.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::*;
use gauntlet_proto::thanos;
use serde_json::Value;
use tonic::transport::Channel;

#[test]
fn over_its_budget_a_process_refuses_new_work_and_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    // Any process holds more than a mebibyte: every request is over budget.
    let tight = GauntletServer::start(&["all", &data, "--memory.limit=1MiB"], "/-/ready");
    let (status, body) = tight.get("/api/v1/query?query=1");
    assert_eq!(status, 503);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["errorType"], "unavailable");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("--memory.limit of 1 MiB"), "{msg}");
    for path in [
        "/api/v1/query_range?query=1&start=0&end=60&step=15",
        "/api/v1/series?match[]=up",
        "/api/v1/labels",
        "/api/v1/label/job/values",
    ] {
        assert_eq!(tight.get(path).0, 503, "{path}");
    }
    let t = now_ms();
    let (code, _, text) = post(
        tight.http_port,
        "/api/v1/receive",
        &[V1],
        &write_body(vec![series(&[("__name__", "m")], &[(t, 1.0)])]),
    )
    .unwrap();
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("remote write refused"), "{text}");
    for path in ["/-/healthy", "/-/ready", "/", "/api/v1/status/flags"] {
        assert_eq!(tight.get(path).0, 200, "{path}");
    }
    let (refusals, metrics) = refusals(&tight);
    assert!(refusals >= 6.0, "{metrics}");
    let limit: Option<f64> = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gauntlet_memory_limit_bytes ")?.parse().ok());
    assert_eq!(limit, Some(1_048_576.0), "{metrics}");
    drop(tight);

    // With room, the same requests are served.
    let roomy = GauntletServer::start(&["all", &data, "--memory.limit=8GiB"], "/-/ready");
    let (code, _, text) = post(
        roomy.http_port,
        "/api/v1/receive",
        &[V1],
        &write_body(vec![series(&[("__name__", "m")], &[(t, 1.0)])]),
    )
    .unwrap();
    assert_eq!(code, 200, "{text}");
    let (status, body) = roomy.get(&format!("/api/v1/query?query=m&time={}", t / 1000 + 1));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "1", "{v}");
}

/// A write of an hour of one-minute samples ending at `t` (ms) for the series named `big`
/// numbered `ids`.
fn hour_of_series(ids: std::ops::Range<usize>, t: i64) -> Vec<u8> {
    let samples: Vec<(i64, f64)> = (0..60).map(|k| (t - (59 - k) * 60_000, k as f64)).collect();
    write_body(
        ids.map(|i| series(&[("__name__", "big"), ("i", &format!("{i:05}"))], &samples))
            .collect(),
    )
}

#[test]
fn a_query_that_would_grow_past_the_budget_ends_with_503_and_small_ones_are_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    // 4000 series; a range query over their hour at a one-second step holds 4000 x 3600
    // step values (230 MB at 16 bytes each), far past the budget; a count at one instant
    // holds 4000.
    let server = GauntletServer::start(&["all", &data, "--memory.limit=192MiB"], "/-/ready");
    let t = now_ms() / 60_000 * 60_000;
    for part in 0..4 {
        let body = hour_of_series(part * 1000..(part + 1) * 1000, t);
        let (code, _, text) = post(server.http_port, "/api/v1/receive", &[V1], &body).unwrap();
        assert_eq!(code, 200, "{text}");
    }
    let small = format!("/api/v1/query?query=count(big)&time={}", t / 1000);
    let answered = |server: &GauntletServer| {
        let (status, body) = server.get(&small);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["data"]["result"][0]["value"][1].clone()
    };
    assert_eq!(answered(&server), "4000");

    let (status, body) = server.get(&format!(
        "/api/v1/query_range?query=big&start={}&end={}&step=1",
        t / 1000 - 3599,
        t / 1000
    ));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["errorType"], "unavailable", "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("ended: it needs"), "{msg}");
    assert!(msg.contains("--memory.limit of 192 MiB"), "{msg}");

    // The process lives on and answers small queries, and counted the query it ended.
    assert_eq!(answered(&server), "4000");
    let (refusals, metrics) = refusals(&server);
    assert!(refusals >= 1.0, "{metrics}");
    assert!(
        metrics.contains("gauntlet_memory_reserved_bytes "),
        "{metrics}"
    );
}

/// `gauntlet_memory_refusals_total` of `server`, with the whole `/metrics` text.
fn refusals(server: &GauntletServer) -> (f64, String) {
    let (_, metrics) = server.get("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    let refusals = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gauntlet_memory_refusals_total "))
        .expect("gauntlet_memory_refusals_total on /metrics")
        .parse()
        .unwrap();
    (refusals, metrics)
}

/// Runs `f` on a current-thread runtime, at most 60 s.
fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            tokio::time::timeout(Duration::from_secs(60), f)
                .await
                .expect("gRPC call answered within 60 s")
        })
}

async fn store_client(grpc_port: u16) -> thanos::store_client::StoreClient<Channel> {
    thanos::store_client::StoreClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .unwrap()
        .max_decoding_message_size(usize::MAX)
}

/// The metric names a StoreAPI Series call over all time returns for names matching `re`;
/// the call's status when it fails, at its start or in its stream.
fn series_names(grpc_port: u16, re: &str) -> Result<BTreeSet<String>, tonic::Status> {
    block_on(async move {
        let req = thanos::SeriesRequest {
            min_time: i64::MIN,
            max_time: i64::MAX,
            matchers: vec![thanos::LabelMatcher {
                r#type: thanos::label_matcher::Type::Re as i32,
                name: "__name__".into(),
                value: re.into(),
            }],
            ..Default::default()
        };
        let mut stream = store_client(grpc_port)
            .await
            .series(req)
            .await?
            .into_inner();
        let mut names = BTreeSet::new();
        while let Some(msg) = stream.message().await? {
            if let Some(thanos::series_response::Result::Series(s)) = msg.result {
                let name = s.labels.iter().find(|l| l.name == "__name__").unwrap();
                names.insert(name.value.clone());
            }
        }
        Ok(names)
    })
}

/// Asserts `status` is the budget's refusal: `ResourceExhausted`, naming the limit, marked
/// for Gauntlet clients.
fn assert_budget_refusal(what: &str, status: &tonic::Status) {
    assert_eq!(
        status.code(),
        tonic::Code::ResourceExhausted,
        "{what}: {status:?}"
    );
    assert!(
        status.message().contains("--memory.limit of 1 MiB"),
        "{what}: {status:?}"
    );
    assert_eq!(
        status.metadata().get("gauntlet-refused").unwrap(),
        "memory-budget",
        "{what}"
    );
}

/// Asserts every StoreAPI read of the server on `grpc_port` is refused by its budget while
/// its Info services answer.
fn assert_storeapi_refused(grpc_port: u16) {
    let status = series_names(grpc_port, ".+").unwrap_err();
    assert_budget_refusal("Series", &status);
    let (names, values) = block_on(async move {
        let mut c = store_client(grpc_port).await;
        let names = c
            .label_names(thanos::LabelNamesRequest {
                start: i64::MIN,
                end: i64::MAX,
                ..Default::default()
            })
            .await;
        let values = c
            .label_values(thanos::LabelValuesRequest {
                label: "__name__".into(),
                start: i64::MIN,
                end: i64::MAX,
                ..Default::default()
            })
            .await;
        (names, values)
    });
    assert_budget_refusal("LabelNames", &names.unwrap_err());
    assert_budget_refusal("LabelValues", &values.unwrap_err());
    block_on(async move {
        let mut c = store_client(grpc_port).await;
        c.info(thanos::InfoRequest {}).await.expect("Store/Info");
        let mut info =
            thanos::info::info_client::InfoClient::connect(format!("http://127.0.0.1:{grpc_port}"))
                .await
                .unwrap();
        info.info(thanos::info::InfoRequest {})
            .await
            .expect("info.Info/Info");
    });
}

#[test]
fn over_its_budget_a_store_refuses_storeapi_reads_and_a_querier_takes_it_as_a_store_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("data").display());
    let t = now_ms();
    let names: Vec<String> = (0..20).map(|i| format!("budget_m{i}")).collect();
    {
        let roomy = GauntletServer::start(&["all", &data, "--memory.limit=8GiB"], "/-/ready");
        let ts = names
            .iter()
            .map(|n| series(&[("__name__", n), ("job", "j")], &[(t, 1.0)]))
            .collect();
        let (code, _, text) =
            post(roomy.http_port, "/api/v1/receive", &[V1], &write_body(ts)).unwrap();
        assert_eq!(code, 200, "{text}");
        let served = series_names(roomy.grpc_port, "budget_.+").unwrap();
        assert_eq!(served, names.iter().cloned().collect(), "under budget");
    }

    // The same data, served by a process over its budget: its StoreAPI refuses reads.
    let tight = GauntletServer::start(&["all", &data, "--memory.limit=1MiB"], "/-/ready");
    assert_storeapi_refused(tight.grpc_port);

    // A querier in front of it warns (partial responses) or fails with 503 (without them),
    // as for any store that cannot answer, and says why.
    let querier = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", tight.grpc_port),
        ],
        "/-/ready",
    );
    let path = format!(
        "/api/v1/query?query=count(%7B__name__%3D~%22budget_.%2B%22%7D)&time={}",
        t / 1000 + 1
    );
    let (status, body) = querier.get(&path);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let warnings = v["warnings"].as_array().expect("a warning");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("--memory.limit")),
        "{v}"
    );
    let (status, body) = querier.get(&format!("{path}&partial_response=false"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["errorType"], "unavailable", "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--memory.limit"),
        "{v}"
    );

    // The tight process counts its refusals; its gRPC metrics name the code.
    let (_, metrics) = tight.get("/metrics");
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("grpc_server_handled_total{")
                && l.contains("grpc_code=\"ResourceExhausted\"")
                && l.contains("grpc_method=\"Series\"")),
        "{metrics}"
    );
    drop(querier);
    drop(tight);

    // A querier over its own budget refuses its proxy StoreAPI too.
    let tight_querier = GauntletServer::start(
        &["query", "--memory.limit=1MiB", "--endpoint=127.0.0.1:1"],
        "/-/ready",
    );
    assert_storeapi_refused(tight_querier.grpc_port);
    drop(tight_querier);

    // With room again, the same data is served.
    let roomy = GauntletServer::start(&["all", &data, "--memory.limit=8GiB"], "/-/ready");
    let served = series_names(roomy.grpc_port, "budget_.+").unwrap();
    assert_eq!(
        served,
        names.iter().cloned().collect(),
        "under budget again"
    );
}

#[test]
fn a_forwarded_write_to_a_receiver_over_its_budget_is_retried_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: [[u16; 3]; 2] = [free_ports(), free_ports()];
    let addresses: Vec<String> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p[1]))
        .collect();
    let ring = tmp.path().join("hashrings.json");
    std::fs::write(
        &ring,
        serde_json::json!([{"hashring": "default", "endpoints": addresses}]).to_string(),
    )
    .unwrap();
    let start = |i: usize, limit: &str| {
        let args = [
            format!("--label=receive_replica=\"r{i}\""),
            format!("--receive.hashrings-file={}", ring.display()),
            format!("--receive.local-endpoint={}", addresses[i]),
            "--receive.replication-factor=1".to_string(),
            "--receive-forward-timeout=5s".to_string(),
            format!("--memory.limit={limit}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Receiver::start_bare(&tmp.path().join(format!("r{i}")), &args, ports[i])
    };
    let front = start(0, "8GiB");
    let mut peer = start(1, "1MiB");
    assert_storeapi_refused(peer.grpc);

    // Enough series that both receivers own some.
    let t = now_ms();
    let names: BTreeSet<String> = (0..40).map(|i| format!("fwd_m{i}")).collect();
    let body = write_body(
        names
            .iter()
            .map(|n| series(&[("__name__", n)], &[(t, 2.0)]))
            .collect(),
    );
    let (code, _, text) = post(front.rw, "/api/v1/receive", &[V1], &body).unwrap();
    assert_eq!(code, 503, "a retried 5xx, not a 429: {text}");
    assert!(text.contains("--memory.limit"), "{text}");
    let (_, metrics) = http_get(front.http, "/metrics").unwrap();
    let metrics = String::from_utf8(metrics).unwrap();
    let failed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("thanos_receive_forward_requests_total{result=\"error\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failed >= 1.0, "{metrics}");

    // The peer comes back with room (same ports, same WAL); the client's retry lands.
    peer.kill();
    drop(peer);
    let peer = start(1, "8GiB");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, text) = post(front.rw, "/api/v1/receive", &[V1], &body).unwrap();
        if code == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retry was not taken in 30 s: {code} {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let on_front = series_names(front.grpc, "fwd_.+").unwrap();
    let on_peer = series_names(peer.grpc, "fwd_.+").unwrap();
    assert!(!on_front.is_empty() && !on_peer.is_empty());
    assert!(on_front.is_disjoint(&on_peer), "replication factor 1");
    let all: BTreeSet<String> = on_front.union(&on_peer).cloned().collect();
    assert_eq!(all, names, "every acknowledged series is served");
}
