//! The operational endpoints every role serves on `--http-address`: `/metrics` (the process's
//! registry, see [`crate::metrics`], in OpenMetrics when the scrape asks for it, else the
//! Prometheus text format 0.0.4), `/-/ready` and `/-/healthy`.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics::{Format, Registry};

/// Whether the component is ready to serve (e.g. its first block sync is done).
pub type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// The router for `/metrics` (rendering `registry`), `/-/ready` (503 until `ready` says yes)
/// and `/-/healthy`.
pub fn router(ready: ReadyFn, registry: Arc<Registry>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move |headers: HeaderMap| {
                let registry = registry.clone();
                async move { scrape(&registry, &headers) }
            }),
        )
        .route(
            "/-/ready",
            get(move || {
                let r = ready.clone();
                async move {
                    if r() {
                        (StatusCode::OK, "ready\n").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
                    }
                }
            }),
        )
        .route("/-/healthy", get(|| async { "healthy\n" }))
}

/// `/metrics`: `registry` in the format the request's `Accept` header asks for.
fn scrape(registry: &Registry, headers: &HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::negotiate(accept);
    match crate::metrics::encode(registry, format) {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "encoding the metrics failed\n",
        )
            .into_response(),
    }
}
