//! The operational endpoints every role serves on `--http-address`: `/metrics` (Prometheus
//! text format: the role's own metrics, then those every role has, see [`crate::metrics`]),
//! `/-/ready` and `/-/healthy`.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use gauntlet_engine::go_format::{FloatFormat, push_float};

/// Whether the component is ready to serve (e.g. its first block sync is done).
pub type ReadyFn = Arc<dyn Fn() -> bool + Send + Sync>;
/// Renders the component's metrics in the Prometheus text format.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// The router for `/metrics`, `/-/ready` (503 until `ready` says yes) and `/-/healthy`.
pub fn router(ready: ReadyFn, metrics: MetricsFn) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    let mut text = m();
                    text.push_str(&crate::metrics::render_common());
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                }
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

/// Appends one metric (HELP, TYPE and a sample without labels) to `out`, the value spelled as
/// Prometheus's exposition writer spells it: Go's shortest `'g'` (`1.7e+09`), zero as `0`.
pub fn metric(out: &mut String, name: &str, typ: &str, help: &str, value: f64) {
    use std::fmt::Write;
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {typ}\n{name} ");
    if value == 0.0 {
        out.push('0');
    } else {
        push_float(out, value, FloatFormat::G);
    }
    out.push('\n');
}
