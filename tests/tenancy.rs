//! Tenant isolation through every endpoint that takes a tenant: a receiver holds tenants `a`
//! and `b` (and nothing of the default tenant); a `gauntlet query --query.enforce-tenancy` in
//! front of it answers each request with the series of the tenant its `THANOS-TENANT` header
//! (gRPC metadata `thanos-tenant` on the StoreAPI) names, the default tenant without one, and
//! never another tenant's, whatever the request's own matchers ask for.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::*;
use gauntlet_proto::thanos;
use gauntlet_proto::thanos::store_client::StoreClient;
use serde_json::Value;

/// GET with a tenant header; (status, JSON body).
fn get(port: u16, path: &str, tenant: Option<&str>) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
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
    // Chunked bodies: the JSON is the one line that parses.
    let json = body
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or_else(|| panic!("no JSON in {body:?}"));
    (status, json)
}

/// The values of `label` over the series of a vector or matrix answer.
fn label_of(answer: &Value, label: &str) -> BTreeSet<String> {
    answer["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|s| s["metric"][label].as_str().unwrap_or("").to_string())
        .collect()
}

/// A StoreAPI request naming `tenant` in its metadata.
fn with_tenant<T>(tenant: Option<&str>, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = tenant {
        r.metadata_mut().insert("thanos-tenant", t.parse().unwrap());
    }
    r
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_tenant_never_sees_another_tenants_series() {
    let tmp = tempfile::tempdir().unwrap();
    let recv = Receiver::start(&tmp.path().join("receive"), &[]);
    let t = now_ms() / 1000 * 1000 - 60_000;
    for (tenant, names) in [
        ("a", ["shared_metric", "only_a"]),
        ("b", ["shared_metric", "only_b"]),
    ] {
        let ts = names
            .iter()
            .map(|n| {
                series(
                    &[("__name__", n), ("job", "j"), ("owner", tenant)],
                    &[(t, 1.0), (t + 15_000, 2.0)],
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
    }
    let querier = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", recv.grpc),
            "--query.enforce-tenancy",
        ],
        "/-/ready",
    );
    let port = querier.http_port;
    let at = (t + 15_000) / 1000;
    let (start, end) = (t / 1000 - 60, at + 60);

    // Wait until the querier reads the receiver.
    let deadline = Instant::now() + Duration::from_secs(30);
    while label_of(
        &get(
            port,
            &format!("/api/v1/query?query=shared_metric&time={at}"),
            Some("a"),
        )
        .1,
        "owner",
    )
    .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the querier never read the receiver"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let q = |expr: &str| urlencode(expr);
    for (tenant, own, other) in [(Some("a"), "a", "b"), (Some("b"), "b", "a")] {
        let what = format!("tenant {own}");
        // PromQL, instant and range: even a selector naming the other tenant finds nothing.
        let (code, v) = get(
            port,
            &format!("/api/v1/query?query={}&time={at}", q("{job=\"j\"}")),
            tenant,
        );
        assert_eq!(code, 200, "{what}: {v}");
        assert_eq!(label_of(&v, "owner"), set(&[own]), "{what}: {v}");
        assert_eq!(label_of(&v, "tenant_id"), set(&[own]), "{what}: {v}");
        let (_, v) = get(
            port,
            &format!(
                "/api/v1/query?query={}&time={at}",
                q(&format!("{{tenant_id=\"{other}\"}}"))
            ),
            tenant,
        );
        assert_eq!(v["data"]["result"], serde_json::json!([]), "{what}: {v}");
        let (_, v) = get(
            port,
            &format!(
                "/api/v1/query?query={}&time={at}",
                q("count({__name__=~\".+\"})")
            ),
            tenant,
        );
        assert_eq!(v["data"]["result"][0]["value"][1], "2", "{what}: {v}");
        let (code, v) = get(
            port,
            &format!(
                "/api/v1/query_range?query={}&start={start}&end={end}&step=15",
                q("sum by (tenant_id, owner) (shared_metric)")
            ),
            tenant,
        );
        assert_eq!(code, 200, "{what}: {v}");
        assert_eq!(label_of(&v, "owner"), set(&[own]), "{what}: {v}");
        // Series, label names and label values.
        let (_, v) = get(
            port,
            &format!(
                "/api/v1/series?match[]={}&start={start}&end={end}",
                q("{job=\"j\"}")
            ),
            tenant,
        );
        let owners: BTreeSet<String> = v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["owner"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(owners, set(&[own]), "{what}: {v}");
        let (_, v) = get(
            port,
            &format!("/api/v1/label/__name__/values?start={start}&end={end}"),
            tenant,
        );
        assert_eq!(
            strings(&v["data"]),
            set(&["shared_metric", &format!("only_{own}")]),
            "{what}: {v}"
        );
        let (_, v) = get(
            port,
            &format!("/api/v1/label/tenant_id/values?start={start}&end={end}"),
            tenant,
        );
        assert_eq!(strings(&v["data"]), set(&[own]), "{what}: {v}");
        let (_, v) = get(
            port,
            &format!(
                "/api/v1/label/owner/values?start={start}&end={end}&match[]={}",
                q(&format!("{{owner=\"{other}\"}}"))
            ),
            tenant,
        );
        assert_eq!(strings(&v["data"]), BTreeSet::new(), "{what}: {v}");
        let (_, v) = get(
            port,
            &format!("/api/v1/labels?start={start}&end={end}"),
            tenant,
        );
        assert!(strings(&v["data"]).contains("owner"), "{what}: {v}");
        let (_, v) = get(
            port,
            &format!(
                "/api/v1/labels?start={start}&end={end}&match[]={}",
                q(&format!("{{tenant_id=\"{other}\"}}"))
            ),
            tenant,
        );
        assert_eq!(strings(&v["data"]), BTreeSet::new(), "{what}: {v}");
    }
    // No header: the default tenant, which wrote nothing.
    let (code, v) = get(
        port,
        &format!("/api/v1/query?query={}&time={at}", q("{job=\"j\"}")),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["data"]["result"], serde_json::json!([]), "{v}");
    let (_, v) = get(
        port,
        &format!("/api/v1/label/__name__/values?start={start}&end={end}"),
        None,
    );
    assert_eq!(strings(&v["data"]), BTreeSet::new(), "{v}");
    // Two tenants in one header are refused.
    let (code, v) = get(
        port,
        &format!("/api/v1/query?query=up&time={at}"),
        Some("a,b"),
    );
    assert_eq!(code, 400, "{v}");

    // The querier's own StoreAPI, tenant in the call's metadata.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = StoreClient::connect(format!("http://127.0.0.1:{}", querier.grpc_port))
            .await
            .unwrap();
        let job = thanos::LabelMatcher {
            r#type: thanos::label_matcher::Type::Eq as i32,
            name: "job".into(),
            value: "j".into(),
        };
        for (tenant, own) in [(Some("a"), "a"), (Some("b"), "b"), (None, "")] {
            let mut stream = client
                .series(with_tenant(
                    tenant,
                    thanos::SeriesRequest {
                        min_time: t - 60_000,
                        max_time: t + 60_000,
                        matchers: vec![job.clone()],
                        skip_chunks: true,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            let mut owners = BTreeSet::new();
            while let Some(frame) = stream.message().await.unwrap() {
                if let Some(thanos::series_response::Result::Series(s)) = frame.result {
                    for l in s.labels {
                        if l.name == "owner" {
                            owners.insert(l.value);
                        }
                    }
                }
            }
            let want = if own.is_empty() {
                set(&[])
            } else {
                set(&[own])
            };
            assert_eq!(owners, want, "Series for {tenant:?}");
            let values = client
                .label_values(with_tenant(
                    tenant,
                    thanos::LabelValuesRequest {
                        label: "__name__".into(),
                        start: t - 60_000,
                        end: t + 60_000,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .values;
            let want = if own.is_empty() {
                set(&[])
            } else {
                set(&["shared_metric", &format!("only_{own}")])
            };
            assert_eq!(
                values.into_iter().collect::<BTreeSet<_>>(),
                want,
                "LabelValues for {tenant:?}"
            );
            let names = client
                .label_names(with_tenant(
                    tenant,
                    thanos::LabelNamesRequest {
                        start: t - 60_000,
                        end: t + 60_000,
                        ..Default::default()
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .names;
            assert_eq!(
                names.contains(&"owner".to_string()),
                !own.is_empty(),
                "LabelNames for {tenant:?}: {names:?}"
            );
        }
    });
}
