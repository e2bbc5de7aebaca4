//! Tenant names that must survive a restart. A receiver (`gauntlet receive`, and the one inside
//! `gauntlet all`) takes any UTF-8 tenant name of 1 to 1024 bytes, hidden, relative, with
//! slashes, percents, spaces or unicode, answers 200, and after a SIGKILL and a restart on the
//! same data directory serves every sample it acknowledged, under the name it was written as;
//! an empty header is the default tenant; longer names and names not in UTF-8 are refused
//! with 400 (gRPC `InvalidArgument` for forwarded writes) naming why. No tenant's directory
//! lands outside the receiver's root, and directories an earlier layout named by the tenant
//! itself (`.*` included) are opened and served.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gauntlet_engine::chunk::{SampleBatch, decode_xor_into};
use gauntlet_proto::thanos;
use gauntlet_proto::thanos::store_client::StoreClient;
use gauntlet_proto::thanos::writeable_store_client::WriteableStoreClient;

use crate::common::receive::{Receiver, now_ms, series, write_body};
use crate::common::{GauntletServer, free_port, urlencode};

const TENANT_LABEL: &str = "tenant_id";
const DEFAULT_TENANT: &str = "default-tenant";

/// Samples each tenant holds: `(case, timestamp ms, value)`.
type Held = BTreeMap<String, BTreeSet<(String, i64, u64)>>;

/// The names written, each answered 200 and read back after a restart.
fn odd_names() -> Vec<String> {
    let mut names: Vec<String> = [
        ".*",
        ".",
        "..",
        ".hidden",
        "a b",
        "a|b",
        "a/b",
        "a\\b",
        "../../etc",
        "/abs",
        "%2E",
        "%",
        "Ünïcode ☃",
    ]
    .map(String::from)
    .to_vec();
    // Past a directory name's 255 bytes, plain and with escapes.
    names.push("n".repeat(300));
    names.push("ü/".repeat(100));
    names
}

/// POSTs a remote-write body carrying the tenant header's raw bytes `tenant` (no header when
/// `None`) to `/api/v1/receive`; returns (status, body).
fn post_as(port: u16, tenant: Option<&[u8]>, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "POST /api/v1/receive HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(t) = tenant {
        req.extend_from_slice(b"THANOS-TENANT: ");
        req.extend_from_slice(t);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Writes one series `probe{case=<case>}` of three samples for `tenant` (raw header bytes),
/// expecting 200, and notes them in `held` under `owner`.
fn write_case(port: u16, tenant: Option<&[u8]>, owner: &str, case: &str, t0: i64, held: &mut Held) {
    let samples: Vec<(i64, f64)> = (0..3)
        .map(|k| (t0 + k * 1000, (case.len() * 10 + k as usize) as f64))
        .collect();
    let body = write_body(vec![series(
        &[("__name__", "probe"), ("case", case)],
        &samples,
    )]);
    let (code, msg) = post_as(port, tenant, &body);
    assert_eq!(code, 200, "tenant {owner:?}: {msg}");
    let mine = held.entry(owner.to_string()).or_default();
    mine.extend(
        samples
            .iter()
            .map(|&(t, v)| (case.to_string(), t, v.to_bits())),
    );
}

/// Writes every odd name, the empty header and no header; checks the refusals.
fn write_all_names(port: u16, round: &str, t0: i64, held: &mut Held) {
    for (i, name) in odd_names().iter().enumerate() {
        let case = format!("{round}-{i}");
        write_case(port, Some(name.as_bytes()), name, &case, t0, held);
    }
    write_case(
        port,
        Some(b""),
        DEFAULT_TENANT,
        &format!("{round}-empty"),
        t0,
        held,
    );
    write_case(
        port,
        None,
        DEFAULT_TENANT,
        &format!("{round}-none"),
        t0,
        held,
    );
    // The refused: nothing of theirs is stored, and the answer says why.
    let body = write_body(vec![series(
        &[("__name__", "probe"), ("case", "refused")],
        &[(t0, 1.0)],
    )]);
    let (code, msg) = post_as(port, Some("x".repeat(1025).as_bytes()), &body);
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("1025 bytes") && msg.contains("1024"), "{msg}");
    let (code, msg) = post_as(port, Some(b"caf\xe9"), &body);
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("UTF-8"), "{msg}");
}

/// Every tenant's samples of `probe` a receiver's StoreAPI serves, one Series call per tenant
/// of `names` with the tenant label's matcher.
fn read_store(grpc: u16, names: &BTreeSet<String>, mint: i64, maxt: i64) -> Held {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = StoreClient::connect(format!("http://127.0.0.1:{grpc}"))
            .await
            .unwrap()
            .max_decoding_message_size(64 << 20);
        let mut out = Held::new();
        for name in names {
            let eq = |n: &str, v: &str| thanos::LabelMatcher {
                r#type: thanos::label_matcher::Type::Eq as i32,
                name: n.into(),
                value: v.into(),
            };
            let mut stream = client
                .series(thanos::SeriesRequest {
                    min_time: mint,
                    max_time: maxt,
                    matchers: vec![eq("__name__", "probe"), eq(TENANT_LABEL, name)],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            while let Some(frame) = stream.message().await.unwrap() {
                let Some(thanos::series_response::Result::Series(s)) = frame.result else {
                    continue;
                };
                let label = |n: &str| {
                    s.labels
                        .iter()
                        .find(|l| l.name == n)
                        .map(|l| l.value.clone())
                        .unwrap_or_default()
                };
                assert_eq!(&label(TENANT_LABEL), name, "a series of another tenant");
                let mut b = SampleBatch::new();
                for c in &s.chunks {
                    let raw = c.raw.as_ref().expect("a raw chunk");
                    decode_xor_into(&raw.data, &mut b).unwrap();
                }
                let case = label("case");
                out.entry(name.clone()).or_default().extend(
                    b.iter()
                        .map(|(t, v): (i64, f64)| (case.clone(), t, v.to_bits())),
                );
            }
        }
        out
    })
}

/// Every tenant's samples of `probe` in the hour before `at_ms`, through `all`'s PromQL.
fn read_promql(all: &GauntletServer, at_ms: i64) -> Held {
    let q = urlencode("probe[1h]");
    let (code, body) = all.get(&format!(
        "/api/v1/query?query={q}&time={}",
        at_ms as f64 / 1000.0
    ));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut out = Held::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let tenant = s["metric"][TENANT_LABEL].as_str().unwrap().to_string();
        let case = s["metric"]["case"].as_str().unwrap().to_string();
        for p in s["values"].as_array().unwrap() {
            let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
            let v: f64 = p[1].as_str().unwrap().parse().unwrap();
            out.entry(tenant.clone())
                .or_default()
                .insert((case.clone(), t, v.to_bits()));
        }
    }
    out
}

/// Every path under `dir`, recursively.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Every WAL under `top` sits in a tenant directory directly under `root`, and there are
/// `tenants` of them: no name put a directory beside the root, above it, or deeper in it.
fn assert_tenants_inside(top: &Path, root: &Path, tenants: usize) {
    let wals: Vec<PathBuf> = walk(top)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "wal"))
        .collect();
    for w in &wals {
        assert_eq!(
            w.parent().and_then(Path::parent),
            Some(root),
            "a WAL outside the root's tenant directories: {}",
            w.display()
        );
    }
    assert_eq!(wals.len(), tenants, "{wals:#?}");
}

/// The data directory, nested so that a name climbing out of the root lands inside `tmp`.
fn nested(tmp: &Path) -> PathBuf {
    tmp.join("up").join("down").join("data")
}

#[test]
fn receive_keeps_every_acknowledged_sample_of_every_tenant_name_across_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let root = nested(tmp.path());
    let t0 = now_ms() / 1000 * 1000 - 60_000;
    let mut held = Held::new();

    let mut r = Receiver::start(&root, &[]);
    write_all_names(r.rw, "first", t0, &mut held);
    // Forwarded writes name their tenant in the request: the same rule.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = WriteableStoreClient::connect(format!("http://127.0.0.1:{}", r.grpc))
            .await
            .unwrap();
        let request = |tenant: String, case: &str| thanos::WriteRequest {
            tenant,
            timeseries: vec![series(
                &[("__name__", "probe"), ("case", case)],
                &[(t0 + 5000, 7.0)],
            )],
            ..Default::default()
        };
        for (tenant, owner) in [("../grpc", "../grpc"), ("", DEFAULT_TENANT)] {
            let case = format!("grpc {owner}");
            client
                .remote_write(request(tenant.into(), &case))
                .await
                .unwrap_or_else(|e| panic!("forwarded write for {tenant:?}: {e}"));
            held.entry(owner.into())
                .or_default()
                .insert((case, t0 + 5000, 7.0f64.to_bits()));
        }
        let refused = client
            .remote_write(request("y".repeat(1025), "refused"))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused}");
        assert!(refused.message().contains("1024"), "{refused}");
    });
    let names: BTreeSet<String> = held.keys().cloned().collect();
    assert_eq!(
        read_store(r.grpc, &names, t0, t0 + 60_000),
        held,
        "before the kill"
    );

    r.kill();
    let mut r = Receiver::start(&root, &[]);
    assert_eq!(
        read_store(r.grpc, &names, t0, t0 + 60_000),
        held,
        "after a SIGKILL"
    );
    // The reopened tenants write on into the directories they were read from.
    write_all_names(r.rw, "second", t0 + 10_000, &mut held);
    r.kill();
    let r = Receiver::start(&root, &[]);
    assert_eq!(
        read_store(r.grpc, &names, t0, t0 + 60_000),
        held,
        "after a second SIGKILL"
    );
    assert_tenants_inside(tmp.path(), &root, names.len());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("up"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        ["down"],
        "nothing beside the data directory"
    );
}

#[test]
fn all_keeps_every_acknowledged_sample_of_every_tenant_name_across_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let data = nested(tmp.path());
    let data_arg = format!("--data-dir={}", data.display());
    let start = || {
        let rw = free_port();
        let all = GauntletServer::start(
            &[
                "all",
                &data_arg,
                &format!("--remote-write.address=127.0.0.1:{rw}"),
                "--engine.cores=2",
            ],
            "/-/ready",
        );
        (all, rw)
    };
    let t0 = now_ms() / 1000 * 1000 - 60_000;
    let mut held = Held::new();

    let (all, rw) = start();
    write_all_names(rw, "first", t0, &mut held);
    assert_eq!(read_promql(&all, t0 + 60_000), held, "before the kill");
    drop(all);
    let (all, rw) = start();
    assert_eq!(read_promql(&all, t0 + 60_000), held, "after a SIGKILL");
    write_all_names(rw, "second", t0 + 10_000, &mut held);
    drop(all);
    let (all, _) = start();
    assert_eq!(
        read_promql(&all, t0 + 60_000),
        held,
        "after a second SIGKILL"
    );
    assert_tenants_inside(tmp.path(), &data.join(".gauntlet/receive"), held.len());
}

#[test]
fn directories_named_by_their_tenant_are_served_after_an_upgrade() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let t0 = now_ms() / 1000 * 1000 - 60_000;
    let mut written = Held::new();
    let mut r = Receiver::start(&root, &[]);
    write_case(r.rw, Some(b"one"), "one", "old one", t0, &mut written);
    write_case(r.rw, Some(b"two"), "two", "old two", t0, &mut written);
    r.kill();
    // As a Thanos receiver or an earlier Gauntlet left them: each tenant in a directory named
    // by it, without a name file; `.*` was skipped at start before.
    let mut held = Held::new();
    for (from, to) in [("one", ".*"), ("two", "%2E")] {
        std::fs::rename(root.join(from), root.join(to)).unwrap();
        std::fs::remove_file(root.join(to).join("tenant-name")).unwrap();
        held.insert(to.to_string(), written.remove(from).unwrap());
    }

    let mut r = Receiver::start(&root, &[]);
    let names: BTreeSet<String> = [".*", "%2E", "."].map(String::from).into();
    assert_eq!(
        read_store(r.grpc, &names, t0, t0 + 60_000),
        held,
        "the old directories"
    );
    // `.*` writes on into its old directory; `.` escapes to `%2E`, which tenant "%2E" holds,
    // so it gets a directory of its own.
    write_case(r.rw, Some(b".*"), ".*", "new", t0 + 10_000, &mut held);
    write_case(r.rw, Some(b"."), ".", "new", t0 + 10_000, &mut held);
    r.kill();
    let r = Receiver::start(&root, &[]);
    assert_eq!(
        read_store(r.grpc, &names, t0, t0 + 60_000),
        held,
        "after a SIGKILL"
    );
    assert_tenants_inside(tmp.path(), &root, 3);
    let dirs: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(dirs, [".*", "%2E", "%2E%c1"].map(String::from).into());
}
