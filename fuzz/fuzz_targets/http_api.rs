//! Arbitrary requests to the Prometheus HTTP API, sent to the server's own router in-process
//! over a small in-memory store: every endpoint that reads query parameters (PromQL, `match[]`
//! selectors, times, durations, limits, Thanos's extra parameters), as a URL query or a form
//! body. Whatever the input, the answer is a success or one of the API's errors, as JSON with
//! a short message: never a panic (which the router turns into a 500), never a crash.
//!
//! Input: one byte picks the endpoint, one the method; the rest is the URL query, then
//! (after a 0 byte) the form body; for label values the name is the query's first segment.

#![no_main]

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use gauntlet::http::api::{ApiConfig, ApiState, router};
use gauntlet::query::{ReadOptions, ReadView, Source};
use gauntlet_engine::labels::Matcher;
use gauntlet_engine::query::{MemSeries, Queryable, SelectHints, Series, SeriesStream};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// Longest error message the API may answer with, bytes (the server cuts at 1 KiB).
const MESSAGE_BYTES: usize = 1100;

const ENDPOINTS: [&str; 9] = [
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/format_query",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/label/",
    "/api/v1/query_exemplars",
    "/api/v1/metadata",
    "/api/v1/status/buildinfo",
];

/// The in-memory store as the API's source.
#[derive(Debug)]
struct Mem(MemSeries);

impl Queryable for Mem {
    fn select(
        &self,
        m: &[Matcher],
        mint: i64,
        maxt: i64,
        h: &SelectHints,
    ) -> gauntlet_engine::Result<Vec<Series>> {
        self.0.select(m, mint, maxt, h)
    }

    fn select_stream<'a>(
        &'a self,
        m: &[Matcher],
        mint: i64,
        maxt: i64,
        h: &SelectHints,
    ) -> gauntlet_engine::Result<Box<dyn SeriesStream + 'a>> {
        self.0.select_stream(m, mint, maxt, h)
    }

    fn label_names(
        &self,
        m: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        self.0.label_names(m, mint, maxt)
    }

    fn label_values(
        &self,
        name: &str,
        m: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        self.0.label_values(name, m, mint, maxt)
    }
}

impl ReadView for Mem {
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

#[derive(Debug)]
struct MemSource(Arc<Mem>);

impl Source for MemSource {
    fn view(&self, _opts: &ReadOptions) -> gauntlet_engine::Result<Arc<dyn ReadView>> {
        Ok(self.0.clone())
    }
}

/// The runtime and the router, made once.
fn server() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let state = Arc::new(ApiState {
            source: Arc::new(MemSource(Arc::new(Mem(common::small_store())))),
            config: ApiConfig {
                max_samples: 200_000,
                timeout: Duration::from_secs(2),
                ..ApiConfig::default()
            },
        });
        (rt, router(state))
    })
}

/// `s` with every byte outside the unreserved set percent-encoded, for a path segment.
fn escape(s: &[u8]) -> String {
    s.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let [pick, method, rest @ ..] = data else {
        return;
    };
    let (query, body) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut path = ENDPOINTS[usize::from(*pick) % ENDPOINTS.len()].to_string();
    let mut query = query;
    if path.ends_with('/') {
        // Label values: the name is the query's first segment.
        let cut = query.iter().position(|&b| b == b'&').unwrap_or(query.len());
        path.push_str(&escape(&query[..cut]));
        path.push_str("/values");
        query = query.get(cut + 1..).unwrap_or_default();
    }
    // A query string must be valid in a URI: bytes that are not are escaped, the rest kept
    // as they are so the fuzzer's `%`, `&`, `=` and `+` reach the parameter decoder.
    let query: String = query
        .iter()
        .map(|&b| {
            if b.is_ascii_graphic() && b != b'#' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let uri = format!("{path}?{query}");
    let post = method % 2 == 1;
    let mut req = http::Request::builder()
        .method(if post { "POST" } else { "GET" })
        .uri(&uri);
    if post {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let Ok(req) = req.body(Body::from(body.to_vec())) else {
        return;
    };
    let (rt, app) = server();
    let (status, bytes) = rt.block_on(async {
        let resp = app
            .clone()
            .oneshot(req)
            .await
            .expect("the router always answers");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, bytes)
    });
    match status {
        200 => {
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("200 answers JSON");
            assert_eq!(v["status"], "success", "{uri}");
        }
        400 | 422 | 503 => {
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("errors are JSON");
            assert_eq!(v["status"], "error", "{uri}");
            let msg = v["error"].as_str().expect("an error message");
            assert!(
                !msg.is_empty() && msg.len() <= MESSAGE_BYTES,
                "{uri}: {msg}"
            );
        }
        // Routing answers: an unknown path or a method an endpoint does not take.
        404 | 405 => {}
        other => panic!("{uri}: status {other}: {}", String::from_utf8_lossy(&bytes)),
    }
});
