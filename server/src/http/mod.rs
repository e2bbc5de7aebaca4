//! HTTP servers: Prometheus's query API and the operational endpoints.

pub mod api;
mod json;
pub mod ops;
pub(crate) mod params;
mod promql;
pub mod status;
pub mod ui;

use std::net::SocketAddr;

use anyhow::Context as _;

/// Binds `addr` and serves `router` until `shutdown` resolves.
pub async fn serve(
    addr: &str,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP address {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(address = %local, "HTTP API listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server")
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
