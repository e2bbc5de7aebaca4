//! Serving one HTTP connection under deadlines, so that a client can hold a connection only
//! while it is sending a request in time, waiting for its answer, or idle for a bounded time:
//!
//! - a connection must finish its first request's headers within the header timeout of being
//!   accepted (the TLS handshake counts), and a keep-alive HTTP/1 connection within the header
//!   timeout of the next request's first byte;
//! - a request body must arrive within `--web.read-timeout` of its headers;
//! - a connection with no request in flight is closed after `--web.read-timeout` idle, or
//!   after the header timeout idle when its listener is at `--web.max-connections` and needs
//!   the room (a keep-alive connection in use keeps its place through a flood of new ones).
//!
//! A handler may take as long as it needs (queries have their own timeout), and is not cut
//! while the client waits for its answer. When the server stops, requests in flight finish,
//! but one still arriving (headers or body) is given at most the header timeout more.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::Frame;

use crate::metrics::ServerMetrics;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};

use crate::tls::listener::{Accepted, Conn};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long HTTP clients may take and how many connections a listener holds
/// (`--web.read-timeout`, `--web.max-connections`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest a request may take to be read, headers and body; a connection idle this long is
    /// closed too. Zero for none (as in Prometheus).
    pub read_timeout: Duration,
    /// Longest from a connection's accept (or a keep-alive connection's next first byte) to
    /// the end of a request's headers; never more than `read_timeout`. Zero for none.
    pub header_timeout: Duration,
    /// Most connections one listener holds open at once; 0 for no cap.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            read_timeout: Duration::from_secs(5 * 60),
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

impl Limits {
    /// The read timeout in force; `None` for none.
    fn read(&self) -> Option<Duration> {
        Some(self.read_timeout).filter(|d| !d.is_zero())
    }

    /// The header timeout in force: never more than the read timeout; `None` for none.
    pub(crate) fn header(&self) -> Option<Duration> {
        let header = Some(self.header_timeout).filter(|d| !d.is_zero());
        match (header, self.read()) {
            (Some(h), Some(r)) => Some(h.min(r)),
            (h, r) => h.or(r),
        }
    }
}

/// The HTTP protocols a server speaks: HTTP/1.1, and HTTP/2 unless the web configuration
/// turns it off.
pub(super) fn builder(http2: bool) -> auto::Builder<TokioExecutor> {
    let builder = auto::Builder::new(TokioExecutor::new());
    if http2 { builder } else { builder.http1_only() }
}

/// Serves `accepted` with `app` until the client is done, a deadline passes, the listener
/// needs the room of a connection idle for the header timeout (`full`), or `stop` turns true
/// (then gracefully: requests in flight finish, those still arriving within the header
/// timeout).
pub(super) async fn serve(
    accepted: Accepted,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: Limits,
    full: &Notify,
    metrics: &Arc<ServerMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let Accepted {
        conn,
        peer,
        at,
        slot,
    } = accepted;
    let clock = Arc::new(Clock::new(limits.header().map(|h| at + h), limits));
    let io = TokioIo::new(Watched {
        inner: conn,
        clock: clock.clone(),
    });
    let service = TowerToHyperService::new(PerRequest {
        app,
        clock: clock.clone(),
        peer,
        read_timeout: limits.read(),
        metrics: metrics.clone(),
    });
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    // When a request still arriving at shutdown is given up.
    let mut drain_by: Option<Instant> = None;
    let mut stopping = false;
    loop {
        // Registered before the state is read, so no change in between is missed.
        let changed = clock.changed.notified();
        let room_wanted = full.notified();
        let mut deadline = clock.deadline();
        if let Some(by) = drain_by
            && clock.arriving()
        {
            deadline = Some(deadline.map_or(by, |d| d.min(by)));
        }
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %peer, error = %e, "HTTP connection ended with an error");
                }
                break;
            }
            () = sleep_until(deadline) => {
                let now = Instant::now();
                let reason = clock.expired(now).or_else(|| {
                    drain_by
                        .filter(|by| *by <= now && clock.arriving())
                        .map(|_| "shutdown")
                });
                if let Some(reason) = reason {
                    metrics.connection_closed(reason);
                    tracing::debug!(peer = %peer, reason, "closing an HTTP connection");
                    break;
                }
            }
            () = changed => {}
            () = room_wanted => {
                if clock.idle_for(Instant::now()) >= Some(limits.header().unwrap_or_default()) {
                    metrics.connection_closed("idle_at_limit");
                    break;
                }
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                drain_by = limits.header().map(|h| Instant::now() + h);
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(slot);
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Where a connection is in its life, which says which deadline holds.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's headers until the deadline, if any.
    Head(Option<Instant>),
    /// Requests in flight: their bodies have deadlines of their own.
    Busy,
    /// No request in flight since then; closed `--web.read-timeout` later.
    Idle(Instant),
}

#[derive(Debug)]
struct ClockState {
    phase: Phase,
    /// Requests whose answer is not yet sent.
    in_flight: usize,
    /// Whether the connection speaks HTTP/2: its bytes while idle (pings, window updates) are
    /// not a request's start.
    h2: bool,
    /// Request bodies still arriving.
    bodies: usize,
}

/// A connection's phase and deadline, moved on by its reads and requests.
#[derive(Debug)]
struct Clock {
    state: Mutex<ClockState>,
    /// Wakes the connection's task when the deadline moved.
    changed: Notify,
    /// Whether the next byte read starts a request's headers (an idle HTTP/1 connection);
    /// read on every read without the lock.
    await_head: AtomicBool,
    limits: Limits,
}

impl Clock {
    fn new(head_deadline: Option<Instant>, limits: Limits) -> Clock {
        Clock {
            state: Mutex::new(ClockState {
                phase: Phase::Head(head_deadline),
                in_flight: 0,
                h2: false,
                bodies: 0,
            }),
            changed: Notify::new(),
            await_head: AtomicBool::new(false),
            limits,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deadline(&self) -> Option<Instant> {
        match self.state().phase {
            Phase::Head(d) => d,
            Phase::Idle(since) => self.limits.read().map(|r| since + r),
            Phase::Busy => None,
        }
    }

    /// Why the connection is to be closed at `now`, as `gauntlet_http_connections_closed_total`
    /// names it; `None` while its deadline is ahead.
    fn expired(&self, now: Instant) -> Option<&'static str> {
        match self.state().phase {
            Phase::Head(Some(d)) if d <= now => Some("header_timeout"),
            Phase::Idle(since) if self.limits.read().is_some_and(|r| since + r <= now) => {
                Some("idle_timeout")
            }
            _ => None,
        }
    }

    /// Whether a request is still arriving: its headers, or a body.
    fn arriving(&self) -> bool {
        let s = self.state();
        matches!(s.phase, Phase::Head(_)) || s.bodies > 0
    }

    /// How long the connection has had no request in flight at `now`; `None` when it has one
    /// or is reading one's headers.
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        match self.state().phase {
            Phase::Idle(since) => Some(now.saturating_duration_since(since)),
            _ => None,
        }
    }

    /// Bytes arrived on an idle HTTP/1 connection: the next request's headers have begun.
    fn head_started(&self) {
        let mut s = self.state();
        if let Phase::Idle(_) = s.phase
            && !s.h2
        {
            s.phase = Phase::Head(self.limits.header().map(|h| Instant::now() + h));
            self.await_head.store(false, Relaxed);
            drop(s);
            self.changed.notify_one();
        }
    }

    fn request_started(&self, version: Version) {
        let mut s = self.state();
        s.in_flight += 1;
        s.h2 |= version == Version::HTTP_2;
        s.phase = Phase::Busy;
        self.await_head.store(false, Relaxed);
        drop(s);
        self.changed.notify_one();
    }

    fn body_started(&self) {
        self.state().bodies += 1;
    }

    fn body_finished(&self) {
        let mut s = self.state();
        s.bodies = s.bodies.saturating_sub(1);
        drop(s);
        self.changed.notify_one();
    }

    fn request_finished(&self) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        if s.in_flight == 0 {
            s.phase = Phase::Idle(Instant::now());
            self.await_head.store(!s.h2, Relaxed);
        }
        drop(s);
        self.changed.notify_one();
    }
}

/// A connection that tells its clock when bytes arrive while it is idle.
#[derive(Debug)]
struct Watched {
    inner: Conn,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before && this.clock.await_head.load(Relaxed) {
            this.clock.head_started();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The service of one connection: each request's body under its deadline, the client's
/// address in its extensions (`ConnectInfo<SocketAddr>`), and the clock told when its answer
/// is sent.
#[derive(Debug, Clone)]
struct PerRequest {
    app: Router,
    clock: Arc<Clock>,
    peer: SocketAddr,
    /// `None` for no read timeout.
    read_timeout: Option<Duration>,
    /// Where a body cut by the read timeout is counted.
    metrics: Arc<ServerMetrics>,
}

impl<B> tower::Service<Request<B>> for PerRequest
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.clock.request_started(req.version());
        let in_flight = InFlight(self.clock.clone());
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(self.peer));
        let body = if body.is_end_stream() {
            Body::new(body)
        } else {
            self.clock.body_started();
            Body::new(Deadlined {
                inner: body,
                deadline: self
                    .read_timeout
                    .map(|t| (Box::pin(tokio::time::sleep(t)), t)),
                arriving: Some(Arriving(self.clock.clone())),
                metrics: self.metrics.clone(),
            })
        };
        // A router is always ready (axum's `Router::poll_ready`).
        let answer = tower::Service::call(&mut self.app.clone(), Request::from_parts(parts, body));
        Box::pin(async move {
            let res = answer.await?;
            Ok(res.map(|inner| {
                Body::new(Answer {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A request whose answer is not yet sent; dropping it (with the answer's body, or with the
/// request when the connection goes first) tells the clock.
#[derive(Debug)]
struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A request body still arriving; dropping it (at the body's end, or with the body) tells
/// the clock.
#[derive(Debug)]
struct Arriving(Arc<Clock>);

impl Drop for Arriving {
    fn drop(&mut self) {
        self.0.body_finished();
    }
}

/// Why a request body was cut.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within --web.read-timeout ({0:?})")]
struct ReadTimeout(Duration);

pin_project_lite::pin_project! {
    /// A request body that fails once its deadline (if any) passes unfinished.
    struct Deadlined<B> {
        #[pin]
        inner: B,
        // The read timeout's timer and length.
        deadline: Option<(Pin<Box<tokio::time::Sleep>>, Duration)>,
        // `None` once the body ended or was cut.
        arriving: Option<Arriving>,
        metrics: Arc<ServerMetrics>,
    }
}

impl<B> http_body::Body for Deadlined<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if this.arriving.is_none() {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(None) => {
                *this.arriving = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => {
                let Some((sleep, timeout)) = this.deadline else {
                    return Poll::Pending;
                };
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                *this.arriving = None;
                this.metrics.body_timed_out();
                Poll::Ready(Some(Err(ReadTimeout(*timeout).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.arriving.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// An answer's body, carrying its request's [`InFlight`] until it is sent.
    struct Answer {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl http_body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            read_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_connections: 1,
        }
    }

    #[test]
    fn a_connection_moves_from_headers_to_busy_to_idle() {
        let start = Instant::now();
        let clock = Clock::new(Some(start + Duration::from_secs(10)), limits());
        assert_eq!(clock.deadline(), Some(start + Duration::from_secs(10)));
        assert_eq!(clock.expired(start), None);
        assert_eq!(
            clock.expired(start + Duration::from_secs(10)),
            Some("header_timeout")
        );
        clock.request_started(Version::HTTP_11);
        assert_eq!(clock.deadline(), None);
        assert_eq!(clock.expired(start + Duration::from_secs(3600)), None);
        clock.request_finished();
        let idle_deadline = clock.deadline().unwrap();
        assert!(idle_deadline >= start + Duration::from_secs(60));
        assert_eq!(clock.expired(idle_deadline), Some("idle_timeout"));
        assert!(clock.idle_for(Instant::now()).is_some());
    }

    #[test]
    fn bytes_on_an_idle_http1_connection_start_the_header_timeout() {
        let clock = Clock::new(Some(Instant::now()), limits());
        clock.request_started(Version::HTTP_11);
        clock.request_finished();
        assert!(clock.await_head.load(Relaxed));
        let before = Instant::now();
        clock.head_started();
        let d = clock.deadline().unwrap();
        assert!(d >= before + Duration::from_secs(10) && d < before + Duration::from_secs(60));
        assert_eq!(clock.idle_for(Instant::now()), None);
        assert!(!clock.await_head.load(Relaxed));
    }

    #[test]
    fn an_idle_http2_connection_stays_idle_on_pings() {
        let clock = Clock::new(Some(Instant::now()), limits());
        clock.request_started(Version::HTTP_2);
        clock.request_started(Version::HTTP_2);
        clock.request_finished();
        // One stream still in flight.
        assert_eq!(clock.deadline(), None);
        clock.request_finished();
        assert!(!clock.await_head.load(Relaxed));
        clock.head_started();
        assert!(clock.idle_for(Instant::now()).is_some());
    }

    #[test]
    fn the_header_timeout_never_exceeds_the_read_timeout_and_zero_is_none() {
        let l = Limits {
            read_timeout: Duration::from_secs(2),
            ..limits()
        };
        assert_eq!(l.header(), Some(Duration::from_secs(2)));
        let l = Limits {
            read_timeout: Duration::ZERO,
            ..limits()
        };
        assert_eq!(l.header(), Some(Duration::from_secs(10)));
        assert_eq!(l.read(), None);
        let l = Limits {
            header_timeout: Duration::ZERO,
            ..l
        };
        assert_eq!(l.header(), None);
        let clock = Clock::new(None, l);
        assert_eq!(clock.deadline(), None);
        clock.request_started(Version::HTTP_11);
        clock.request_finished();
        assert_eq!(clock.deadline(), None);
    }
}
