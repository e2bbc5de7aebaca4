//! Tenancy on every StoreAPI and on the status pages. Tenants `A` and `B` and the default
//! tenant write by remote write (`THANOS-TENANT` header, none for the default); then
//! `gauntlet all`, `gauntlet receive` and `gauntlet store` (over blocks a receiver shipped,
//! each carrying its tenant as the external label `tenant_id`), each with
//! `--query.enforce-tenancy`, are read through the Python grpcio client and a Rust tonic
//! client: a call with `thanos-tenant: A` metadata gets A's series, label names and values
//! only, even when its matchers name B's tenant label, and a call without metadata gets the
//! default tenant's only. `all`'s HTTP API is held the same way. `/api/v1/status/tenants`
//! shows a tenant its own row and the default tenant (or a request without a header) every
//! row; `/api/v1/blocks` and `/api/v1/stores` list a tenant's blocks and label sets only, and
//! the compactor's page is the default tenant's. Without the flag the tenants page is as it
//! was.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::storeapi::python_calls;
use crate::common::{GauntletServer, filesystem_objstore, urlencode};
use gauntlet_proto::thanos;
use gauntlet_proto::thanos::store_client::StoreClient;
use serde_json::{Value, json};

/// A tenant of the tests: the header it writes and reads with (none for the default tenant),
/// its name (the value of its `tenant_id` label and of its series' `owner` label), the metric
/// only it writes, and another tenant its matchers name to try to read.
struct Tenant {
    header: Option<&'static str>,
    name: &'static str,
    only: &'static str,
    other: &'static str,
}

const TENANTS: [Tenant; 3] = [
    Tenant {
        header: Some("A"),
        name: "A",
        only: "only_a",
        other: "B",
    },
    Tenant {
        header: Some("B"),
        name: "B",
        only: "only_b",
        other: "A",
    },
    Tenant {
        header: None,
        name: "default-tenant",
        only: "only_default",
        other: "A",
    },
];

/// Writes, for every tenant, `metric{job="j", owner=<tenant>}` and `<only>{job="j", …}` with
/// one sample at each of `times` (ms), one request per tenant and time, to remote write on
/// `port`.
fn write_tenants(port: u16, metric: &str, times: &[i64]) {
    for t in &TENANTS {
        let mut headers = vec![V1];
        if let Some(h) = t.header {
            headers.push(("THANOS-TENANT", h));
        }
        for (k, &ts) in times.iter().enumerate() {
            let body = write_body(
                [metric, t.only]
                    .iter()
                    .map(|name| {
                        series(
                            &[("__name__", name), ("job", "j"), ("owner", t.name)],
                            &[(ts, k as f64)],
                        )
                    })
                    .collect(),
            );
            let (code, _, msg) = post(port, "/api/v1/receive", &headers, &body).unwrap();
            assert_eq!(code, 200, "writing {metric} for {}: {msg}", t.name);
        }
    }
}

/// A filesystem bucket of blocks a receiver cut and shipped for every tenant (2-minute
/// ranges, `shipped_probe` and each tenant's own metric over seven minutes twenty minutes
/// ago), each block labelled with its tenant; the receiver is stopped before this returns.
fn tenant_bucket(tmp: &Path) -> PathBuf {
    let bucket = tmp.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let cfg = filesystem_objstore(tmp.join("bucket.yml"), &bucket);
    let mut recv = Receiver::start(
        &tmp.join("shipper"),
        &[
            &format!("--objstore.config-file={}", cfg.display()),
            "--tsdb.min-block-duration=2m",
            "--tsdb.max-block-duration=2m",
            "--receive.cut-check-interval=100ms",
        ],
    );
    let minute = 60_000;
    let start = (now_ms() - 20 * minute) / (2 * minute) * (2 * minute);
    let times: Vec<i64> = (0..42).map(|k| start + k * 10_000).collect();
    write_tenants(recv.rw, "shipped_probe", &times);
    // Without --query.enforce-tenancy the tenants page is as it always was: every tenant,
    // whatever the request's header says.
    for header in [Some("A"), None] {
        let (code, v) = get(recv.http, "/api/v1/status/tenants", header);
        assert_eq!(code, 200, "{v}");
        assert_eq!(
            tenant_rows(&v),
            set(&["A", "B", "default-tenant"]),
            "no enforcement, header {header:?}"
        );
    }
    // Two blocks are due for each tenant (its head spans more than 1.5 ranges twice over);
    // wait for them in the bucket, meta.json last.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shipped: Vec<String> = std::fs::read_dir(&bucket)
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path().join("meta.json")).ok())
            .map(|b| {
                let meta: Value = serde_json::from_slice(&b).unwrap();
                meta["thanos"]["labels"]["tenant_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        let per_tenant = |name: &str| shipped.iter().filter(|t| *t == name).count();
        if TENANTS.iter().all(|t| per_tenant(t.name) >= 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "blocks shipped in 60 s, by tenant: {shipped:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    recv.terminate();
    bucket
}

/// GET on loopback with the tenant header `tenant` (none: no header); (status, JSON body).
fn get(port: u16, path: &str, tenant: Option<&str>) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let header = tenant.map_or(String::new(), |t| format!("THANOS-TENANT: {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{header}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    // A chunked body: the JSON is the one line that parses.
    let json = body
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON in {body:?}"));
    (status, json)
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// The tenant names of a `/api/v1/status/tenants` answer.
fn tenant_rows(v: &Value) -> BTreeSet<String> {
    v["data"]["tenants"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// The values of `label` over label sets (objects of name → value).
fn values_of<'a>(sets: impl IntoIterator<Item = &'a Value>, label: &str) -> BTreeSet<String> {
    sets.into_iter()
        .map(|s| s[label].as_str().unwrap_or("").to_string())
        .collect()
}

/// A matcher in the Python client's form.
fn m(typ: i32, name: &str, value: &str) -> Value {
    json!([typ, name, value])
}

/// Holds the StoreAPI on `grpc_port` to each tenant through the Python grpcio client: the
/// series, label names and values a call with the tenant's metadata gets are the tenant's
/// own, whatever its matchers ask. Every tenant's metric names are `metrics` and its own.
fn python_held_to_tenants(grpc_port: u16, metrics: &[&str]) {
    for t in &TENANTS {
        let md = match t.header {
            Some(h) => json!([["thanos-tenant", h]]),
            None => json!([]),
        };
        let whole = |mut call: Value| {
            call["metadata"] = md.clone();
            call
        };
        let calls = json!([
            whole(
                json!({"method": "Series", "min_time": 0, "max_time": i64::MAX,
                "matchers": [m(0, "job", "j")]})
            ),
            whole(
                json!({"method": "Series", "min_time": 0, "max_time": i64::MAX,
                "matchers": [m(0, "job", "j"), m(0, "tenant_id", t.other)]})
            ),
            whole(
                json!({"method": "Series", "min_time": 0, "max_time": i64::MAX,
                "matchers": [m(2, "__name__", ".+"), m(2, "tenant_id", ".+")], "skip_chunks": true})
            ),
            whole(json!({"method": "LabelNames", "start": 0, "end": i64::MAX})),
            whole(json!({"method": "LabelNames", "start": 0, "end": i64::MAX,
                "matchers": [m(0, "tenant_id", t.other)]})),
            whole(
                json!({"method": "LabelValues", "label": "__name__", "start": 0, "end": i64::MAX})
            ),
            whole(
                json!({"method": "LabelValues", "label": "tenant_id", "start": 0, "end": i64::MAX})
            ),
            whole(
                json!({"method": "LabelValues", "label": "owner", "start": 0, "end": i64::MAX,
                "matchers": [m(0, "tenant_id", t.other)]})
            ),
            whole(json!({"method": "LabelValues", "label": "owner", "start": 0, "end": i64::MAX})),
        ]);
        let res = python_calls(grpc_port, &calls);
        let what = format!("python client as {:?}", t.header);
        for r in &res {
            assert_eq!(r["ok"], true, "{what}: {r}");
        }
        let labels = |r: &Value| -> Vec<Value> {
            r["series"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["labels"].clone())
                .collect()
        };
        let own = set(&[t.name]);
        let selected = labels(&res[0]);
        let mut names = set(metrics);
        names.insert(t.only.to_string());
        assert_eq!(
            values_of(&selected, "__name__"),
            names,
            "{what}: Series {{job=\"j\"}}: {}",
            res[0]
        );
        assert_eq!(values_of(&selected, "owner"), own, "{what}: {}", res[0]);
        assert_eq!(values_of(&selected, "tenant_id"), own, "{what}: {}", res[0]);
        assert!(
            res[0]["series"][0]["chunks"]
                .as_array()
                .is_some_and(|c| !c.is_empty()),
            "{what}: series come with their chunks: {}",
            res[0]
        );
        assert_eq!(
            labels(&res[1]),
            Vec::<Value>::new(),
            "{what}: Series naming tenant {}",
            t.other
        );
        assert_eq!(
            values_of(&labels(&res[2]), "owner"),
            own,
            "{what}: {}",
            res[2]
        );
        let label_names = strings(&res[3]["names"]);
        assert!(
            label_names.contains("owner") && label_names.contains("tenant_id"),
            "{what}: LabelNames {label_names:?}"
        );
        assert_eq!(
            strings(&res[4]["names"]),
            BTreeSet::new(),
            "{what}: LabelNames naming tenant {}",
            t.other
        );
        assert_eq!(strings(&res[5]["values"]), names, "{what}: __name__ values");
        assert_eq!(strings(&res[6]["values"]), own, "{what}: tenant_id values");
        assert_eq!(
            strings(&res[7]["values"]),
            BTreeSet::new(),
            "{what}: owner values naming tenant {}",
            t.other
        );
        assert_eq!(strings(&res[8]["values"]), own, "{what}: owner values");
    }
}

/// A StoreAPI request naming `tenant` in its metadata (none: no metadata).
fn with_tenant<T>(tenant: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = tenant {
        r.metadata_mut().insert("thanos-tenant", t.parse().unwrap());
    }
    r
}

fn eq(name: &str, value: &str) -> thanos::LabelMatcher {
    thanos::LabelMatcher {
        r#type: thanos::label_matcher::Type::Eq as i32,
        name: name.into(),
        value: value.into(),
    }
}

/// Values of `label` over the series of a Series call.
async fn series_label(
    client: &mut StoreClient<tonic::transport::Channel>,
    tenant: Option<&str>,
    matchers: Vec<thanos::LabelMatcher>,
    label: &str,
) -> BTreeSet<String> {
    let mut stream = client
        .series(with_tenant(
            tenant,
            thanos::SeriesRequest {
                min_time: 0,
                max_time: i64::MAX,
                matchers,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let mut out = BTreeSet::new();
    while let Some(frame) = stream.message().await.unwrap() {
        let series = match frame.result {
            Some(thanos::series_response::Result::Series(s)) => vec![s],
            Some(thanos::series_response::Result::Batch(b)) => b.series,
            _ => Vec::new(),
        };
        for s in series {
            out.extend(
                s.labels
                    .into_iter()
                    .filter(|l| l.name == label)
                    .map(|l| l.value),
            );
        }
    }
    out
}

/// As [`python_held_to_tenants`], through tonic.
fn tonic_held_to_tenants(grpc_port: u16, metrics: &[&str]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = StoreClient::connect(format!("http://127.0.0.1:{grpc_port}"))
            .await
            .unwrap();
        for t in &TENANTS {
            let what = format!("tonic client as {:?}", t.header);
            let own = set(&[t.name]);
            assert_eq!(
                series_label(&mut client, t.header, vec![eq("job", "j")], "owner").await,
                own,
                "{what}: Series"
            );
            assert_eq!(
                series_label(
                    &mut client,
                    t.header,
                    vec![eq("job", "j"), eq("tenant_id", t.other)],
                    "owner"
                )
                .await,
                BTreeSet::new(),
                "{what}: Series naming tenant {}",
                t.other
            );
            let names = client
                .label_names(with_tenant(
                    t.header,
                    thanos::LabelNamesRequest {
                        start: 0,
                        end: i64::MAX,
                        matchers: vec![eq("tenant_id", t.other)],
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .names;
            assert_eq!(names, Vec::<String>::new(), "{what}: LabelNames");
            let values = |label: &str, matchers: Vec<thanos::LabelMatcher>| {
                let req = with_tenant(
                    t.header,
                    thanos::LabelValuesRequest {
                        label: label.into(),
                        start: 0,
                        end: i64::MAX,
                        matchers,
                        ..Default::default()
                    },
                );
                let mut c = client.clone();
                async move {
                    c.label_values(req)
                        .await
                        .unwrap()
                        .into_inner()
                        .values
                        .into_iter()
                        .collect::<BTreeSet<String>>()
                }
            };
            let mut want = set(metrics);
            want.insert(t.only.to_string());
            assert_eq!(values("__name__", vec![]).await, want, "{what}");
            assert_eq!(values("tenant_id", vec![]).await, own, "{what}");
            assert_eq!(
                values("owner", vec![eq("tenant_id", t.other)]).await,
                BTreeSet::new(),
                "{what}: owner values naming tenant {}",
                t.other
            );
        }
        // Two tenants in one call are refused, not read as either.
        let err = client
            .label_values(with_tenant(
                Some("A,B"),
                thanos::LabelValuesRequest {
                    label: "owner".into(),
                    start: 0,
                    end: i64::MAX,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    });
}

/// `/api/v1/status/tenants` on `port` under enforcement: a tenant's own row, every row for the
/// default tenant (named, or no header), 400 for two tenants.
fn tenants_page_held_to_tenants(port: u16) {
    let every = set(&["A", "B", "default-tenant"]);
    for (header, want) in [
        (Some("A"), set(&["A"])),
        (Some("B"), set(&["B"])),
        (Some("default-tenant"), every.clone()),
        (None, every),
    ] {
        let (code, v) = get(port, "/api/v1/status/tenants", header);
        assert_eq!(code, 200, "{v}");
        assert_eq!(tenant_rows(&v), want, "tenants page as {header:?}: {v}");
    }
    let (code, v) = get(port, "/api/v1/status/tenants", Some("A,B"));
    assert_eq!(code, 400, "{v}");
}

/// `/api/v1/blocks` on `port` under enforcement: a tenant sees the blocks labelled with it,
/// the default tenant every block.
fn blocks_page_held_to_tenants(port: u16) {
    let tenants_of = |header: Option<&str>| {
        let (code, v) = get(port, "/api/v1/blocks", header);
        assert_eq!(code, 200, "{v}");
        let blocks = v["data"]["blocks"].as_array().unwrap().clone();
        assert!(!blocks.is_empty(), "blocks as {header:?}: {v}");
        values_of(blocks.iter().map(|b| &b["thanos"]["labels"]), "tenant_id")
    };
    assert_eq!(tenants_of(Some("A")), set(&["A"]));
    assert_eq!(tenants_of(Some("B")), set(&["B"]));
    assert_eq!(tenants_of(None), set(&["A", "B", "default-tenant"]));
}

#[test]
fn all_holds_its_storeapi_http_api_and_status_pages_to_the_callers_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    // The bucket holds every tenant's shipped blocks; the heads get fresh samples.
    let bucket = tenant_bucket(tmp.path());
    let all = GauntletServer::start(
        &[
            "all",
            &format!("--data-dir={}", bucket.display()),
            "--engine.cores=2",
            "--query.enforce-tenancy",
        ],
        "/-/ready",
    );
    let now = now_ms() / 1000 * 1000;
    let times: Vec<i64> = (0..4).map(|k| now - 60_000 + k * 15_000).collect();
    // `all` takes remote write on its HTTP address too.
    write_tenants(all.http_port, "tenancy_probe", &times);

    let metrics = ["shipped_probe", "tenancy_probe"];
    python_held_to_tenants(all.grpc_port, &metrics);
    tonic_held_to_tenants(all.grpc_port, &metrics);

    // The HTTP API: PromQL, series, label names and values, metadata and exemplars.
    let at = times[3] / 1000;
    let (start, end) = (times[0] / 1000 - 3600, at + 60);
    let port = all.http_port;
    for t in &TENANTS {
        let what = format!("HTTP API as {:?}", t.header);
        let own = set(&[t.name]);
        let api = |path: String| {
            let (code, v) = get(port, &path, t.header);
            assert_eq!(code, 200, "{what}: {path}: {v}");
            v
        };
        let metric_owners = |v: &Value| {
            values_of(
                v["data"]["result"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{v}"))
                    .iter()
                    .map(|r| &r["metric"]),
                "owner",
            )
        };
        let v = api(format!(
            "/api/v1/query?query={}&time={at}",
            urlencode("{job=\"j\"}")
        ));
        assert_eq!(metric_owners(&v), own, "{what}: {v}");
        let v = api(format!(
            "/api/v1/query?query={}&time={at}",
            urlencode(&format!("{{tenant_id=\"{}\"}}", t.other))
        ));
        assert_eq!(v["data"]["result"], json!([]), "{what}: {v}");
        let v = api(format!(
            "/api/v1/query_range?query={}&start={start}&end={end}&step=60",
            urlencode("sum by (owner, tenant_id) ({__name__=~\".+_probe\"})")
        ));
        assert_eq!(metric_owners(&v), own, "{what}: {v}");
        let v = api(format!(
            "/api/v1/series?match[]={}&start={start}&end={end}",
            urlencode("{job=\"j\"}")
        ));
        assert_eq!(
            values_of(v["data"].as_array().unwrap(), "owner"),
            own,
            "{what}: {v}"
        );
        let v = api(format!(
            "/api/v1/labels?start={start}&end={end}&match[]={}",
            urlencode(&format!("{{tenant_id=\"{}\"}}", t.other))
        ));
        assert_eq!(strings(&v["data"]), BTreeSet::new(), "{what}: {v}");
        let v = api(format!(
            "/api/v1/label/owner/values?start={start}&end={end}"
        ));
        assert_eq!(strings(&v["data"]), own, "{what}: {v}");
        let v = api(format!(
            "/api/v1/label/__name__/values?start={start}&end={end}"
        ));
        assert_eq!(
            strings(&v["data"]),
            set(&["shipped_probe", "tenancy_probe", t.only]),
            "{what}: {v}"
        );
        // Gauntlet keeps no metadata or exemplars: nothing of any tenant.
        let v = api("/api/v1/metadata".to_string());
        assert_eq!(v["data"], json!({}), "{what}: {v}");
        let v = api(format!(
            "/api/v1/query_exemplars?query={}&start={start}&end={end}",
            urlencode("{job=\"j\"}")
        ));
        assert_eq!(v["data"], json!([]), "{what}: {v}");
    }

    tenants_page_held_to_tenants(port);
    blocks_page_held_to_tenants(port);
    // The stores page: a tenant sees the label sets of its own data.
    for (header, want) in [
        (Some("A"), set(&["A"])),
        (None, set(&["A", "B", "default-tenant"])),
    ] {
        let (code, v) = get(port, "/api/v1/stores", header);
        assert_eq!(code, 200, "{v}");
        let sets: Vec<Value> = v["data"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|stores| stores.as_array().unwrap().clone())
            .flat_map(|s| s["labelSets"].as_array().unwrap().clone())
            .collect();
        assert_eq!(
            values_of(&sets, "tenant_id"),
            want,
            "stores as {header:?}: {v}"
        );
    }
    // The compactor's page cannot be cut per tenant: the default tenant's only.
    let (code, v) = get(port, "/api/v1/status/compactor", Some("A"));
    assert_eq!(code, 403, "{v}");
    let (code, v) = get(port, "/api/v1/status/compactor", None);
    assert_eq!(code, 200, "{v}");
}

#[test]
fn receive_holds_its_storeapi_and_tenants_page_to_the_callers_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = Receiver::start(&tmp.path().join("receive"), &["--query.enforce-tenancy"]);
    let now = now_ms() / 1000 * 1000;
    let times: Vec<i64> = (0..4).map(|k| now - 60_000 + k * 15_000).collect();
    write_tenants(recv.rw, "tenancy_probe", &times);
    python_held_to_tenants(recv.grpc, &["tenancy_probe"]);
    tonic_held_to_tenants(recv.grpc, &["tenancy_probe"]);
    tenants_page_held_to_tenants(recv.http);
}

#[test]
fn store_holds_its_storeapi_and_blocks_page_to_the_callers_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tenant_bucket(tmp.path());
    let cfg = filesystem_objstore(tmp.path().join("store-bucket.yml"), &bucket);
    let store = GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", cfg.display()),
            &format!("--data-dir={}", tmp.path().join("store").display()),
            "--engine.cores=2",
            "--query.enforce-tenancy",
        ],
        "/-/ready",
    );
    python_held_to_tenants(store.grpc_port, &["shipped_probe"]);
    tonic_held_to_tenants(store.grpc_port, &["shipped_probe"]);
    blocks_page_held_to_tenants(store.http_port);
}
