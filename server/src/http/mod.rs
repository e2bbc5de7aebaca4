//! HTTP servers: Prometheus's query API and the operational endpoints.

pub mod admission;
pub mod api;
pub(crate) mod json;
pub mod ops;
pub(crate) mod params;
mod promql;
pub mod status;
pub mod ui;
pub mod webconfig;

use std::net::SocketAddr;

use anyhow::Context as _;

use self::webconfig::WebConfig;

/// Binds `addr` and serves `router` under `web` (TLS, basic auth) until `shutdown` resolves.
pub async fn serve(
    addr: &str,
    router: axum::Router,
    web: &WebConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP address {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(address = %local, tls = web.tls().is_some(), basic_auth = web.has_basic_auth(), "HTTP API listening");
    serve_on(listener, router, web, shutdown)
        .await
        .context("HTTP server")
}

/// Serves `router` on a bound `listener` under `web`: TLS when the web configuration has a
/// certificate, the basic-auth check when it has users.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    web: &WebConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let incoming = crate::tls::Incoming::new(listener, web.tls())?;
    axum::serve(incoming, web.apply(router))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
