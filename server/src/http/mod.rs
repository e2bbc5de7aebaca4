//! HTTP servers: Prometheus's query API and the operational endpoints.

pub mod active;
pub mod admission;
pub mod api;
pub mod connection;
pub(crate) mod json;
pub mod ops;
pub(crate) mod params;
pub(crate) mod promql;
pub mod status;
pub mod ui;
pub mod webconfig;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;

use self::webconfig::WebConfig;
use crate::metrics::ServerMetrics;

/// Binds `addr` and serves `router` under `web` (TLS, basic auth) until `shutdown` resolves,
/// its requests and connections counted in `metrics`.
pub async fn serve(
    addr: &str,
    router: axum::Router,
    web: &WebConfig,
    metrics: &Arc<ServerMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the HTTP address {addr}"))?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(address = %local, tls = web.tls().is_some(), basic_auth = web.has_basic_auth(), "HTTP API listening");
    serve_on(listener, router, web, metrics, shutdown)
        .await
        .context("HTTP server")
}

/// Serves `router` on a bound `listener` under `web`: TLS when the web configuration has a
/// certificate, the basic-auth check when it has users, each connection under the deadlines
/// and the listener under the connection cap of [`connection::Limits`]; its requests
/// ([`crate::metrics::track_http`]) and connections are counted in `metrics`. When `shutdown`
/// resolves, the listener closes and the requests in flight finish.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    web: &WebConfig,
    metrics: &Arc<ServerMetrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = web.limits();
    let cap = crate::tls::listener::ConnectionCap::new(limits.max_connections, metrics);
    let mut incoming =
        crate::tls::Incoming::capped(listener, web.tls(), cap.clone(), limits.header())?;
    let app = web.apply(crate::metrics::track_http(router, metrics), metrics);
    let builder = Arc::new(connection::builder(web.http2()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = incoming.accept() => a,
            () = &mut shutdown => None,
        };
        let Some(accepted) = accepted else { break };
        let (app, builder, cap, stop, metrics) = (
            app.clone(),
            builder.clone(),
            cap.clone(),
            stop_rx.clone(),
            metrics.clone(),
        );
        tokio::spawn(async move {
            connection::serve(accepted, app, &builder, limits, cap.full(), &metrics, stop).await;
        });
    }
    // No new connections; the open ones finish what they have in flight.
    drop(incoming);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
    Ok(())
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
