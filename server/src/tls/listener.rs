//! Accepting connections for the gRPC and HTTP servers, TLS or plain: one accept loop per
//! listener, each TLS handshake on a task of its own (bounded in time), so a slow or hostile
//! client holds up nobody else. Only finished handshakes reach the server, which is how a
//! plain-text client, a client without the required certificate or one that trusts another
//! CA is refused before any request is read.
//!
//! An HTTP listener also holds a cap on its open connections (`--web.max-connections`): at the
//! cap the loop stops accepting, so new connections wait in the kernel's backlog until one
//! closes, and connections that have sat idle for a while are told to close to make room.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics::ServerMetrics;

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a listener at its cap tells its idle connections again to close, in case one
/// went idle after the last call.
const FULL_REMINDER: Duration = Duration::from_secs(1);

/// A connection a server accepted: plain TCP, or TLS once its handshake finished.
#[derive(Debug)]
pub enum Conn {
    /// Plain text.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp().connect_info()
    }
}

/// The cap on an HTTP listener's open connections, TLS handshakes included.
#[derive(Debug, Clone)]
pub struct ConnectionCap {
    /// One permit per connection that may be open; `None` for no cap.
    slots: Option<Arc<Semaphore>>,
    /// Woken when the listener is at its cap: connections idle for a while close on it.
    full: Arc<Notify>,
    /// Where the listener's connections are counted.
    metrics: Arc<ServerMetrics>,
}

impl ConnectionCap {
    /// At most `max` connections open at once; 0 for no cap. The connections are counted in
    /// `metrics`.
    pub fn new(max: usize, metrics: &Arc<ServerMetrics>) -> ConnectionCap {
        ConnectionCap {
            slots: (max > 0).then(|| Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)))),
            full: Arc::new(Notify::new()),
            metrics: metrics.clone(),
        }
    }

    /// Woken (`notify_waiters`) while the listener is at its cap and wants idle connections
    /// closed, once at first and again every second.
    pub fn full(&self) -> &Notify {
        &self.full
    }

    /// A place for one more connection: at once when there is one, else once a connection
    /// closes (asking idle ones to close meanwhile); `None` when `closed` resolves first.
    async fn place(&self, closed: impl Future<Output = ()>) -> Option<Place> {
        let place = |permit| Place {
            permit,
            metrics: self.metrics.clone(),
        };
        let Some(slots) = &self.slots else {
            return Some(place(None));
        };
        if let Ok(p) = slots.clone().try_acquire_owned() {
            return Some(place(Some(p)));
        }
        self.metrics.connections_limited();
        tokio::pin!(closed);
        loop {
            self.full.notify_waiters();
            tokio::select! {
                p = slots.clone().acquire_owned() => return Some(place(Some(p.ok()?))),
                () = tokio::time::sleep(FULL_REMINDER) => {}
                () = &mut closed => return None,
            }
        }
    }
}

/// A place under the cap, taken before accepting.
#[derive(Debug)]
struct Place {
    permit: Option<OwnedSemaphorePermit>,
    metrics: Arc<ServerMetrics>,
}

impl Place {
    /// The place of a connection just accepted.
    fn fill(self) -> Slot {
        self.metrics.connection_opened();
        Slot {
            _permit: self.permit,
            metrics: self.metrics,
        }
    }
}

/// A connection's place under its listener's [`ConnectionCap`]; dropping it (with the
/// connection) frees the place.
#[derive(Debug)]
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
    metrics: Arc<ServerMetrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.connection_ended();
    }
}

/// A connection an accept loop hands on.
#[derive(Debug)]
pub struct Accepted {
    /// The connection, its TLS handshake done.
    pub conn: Conn,
    /// The client's address.
    pub peer: SocketAddr,
    /// When the TCP connection was accepted (deadlines count from it).
    pub at: Instant,
    /// Its place under the listener's cap; `None` on a listener without one.
    pub slot: Option<Slot>,
}

/// The connections of one listener, ready to serve: a stream for tonic's
/// `serve_with_incoming*`, and [`Incoming::accept`] for the HTTP servers.
#[derive(Debug)]
pub struct Incoming {
    rx: mpsc::Receiver<Accepted>,
    local: SocketAddr,
}

impl Incoming {
    /// Starts accepting on `listener`; with `tls`, each connection's handshake is done before
    /// it is handed on. The accept loop ends when this value is dropped.
    pub fn new(listener: TcpListener, tls: Option<Arc<ServerConfig>>) -> io::Result<Incoming> {
        Self::start(listener, tls, None, HANDSHAKE_TIMEOUT)
    }

    /// As [`Incoming::new`], holding at most `cap`'s connections open at once (handshakes
    /// included), each TLS handshake bounded by `handshake_timeout` (at most, and without
    /// one, [`HANDSHAKE_TIMEOUT`]).
    pub fn capped(
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        cap: ConnectionCap,
        handshake_timeout: Option<Duration>,
    ) -> io::Result<Incoming> {
        let handshake_timeout =
            handshake_timeout.map_or(HANDSHAKE_TIMEOUT, |t| t.min(HANDSHAKE_TIMEOUT));
        Self::start(listener, tls, Some(cap), handshake_timeout)
    }

    fn start(
        listener: TcpListener,
        tls: Option<Arc<ServerConfig>>,
        cap: Option<ConnectionCap>,
        handshake_timeout: Duration,
    ) -> io::Result<Incoming> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, tls, cap, handshake_timeout, tx));
        Ok(Incoming { rx, local })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next connection; `None` only if the accept loop stopped.
    pub async fn accept(&mut self) -> Option<Accepted> {
        self.rx.recv().await
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    cap: Option<ConnectionCap>,
    handshake_timeout: Duration,
    tx: mpsc::Sender<Accepted>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        // The place is taken before accepting: at the cap, new connections stay in the
        // kernel's backlog rather than holding a file descriptor here.
        let place = match &cap {
            Some(cap) => match cap.place(tx.closed()).await {
                Some(p) => Some(p),
                None => return,
            },
            None => None,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        let at = Instant::now();
        let slot = place.map(Place::fill);
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = &acceptor else {
            let accepted = Accepted {
                conn: Conn::Plain(tcp),
                peer,
                at,
                slot,
            };
            if tx.send(accepted).await.is_err() {
                return;
            }
            continue;
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => {
                    let accepted = Accepted {
                        conn: Conn::Tls(Box::new(s)),
                        peer,
                        at,
                        slot,
                    };
                    let _ = tx.send(accepted).await;
                }
                Ok(Err(e)) => {
                    tracing::info!(peer = %peer, error = %e, "TLS handshake refused");
                }
                Err(_) => {
                    if let Some(slot) = &slot {
                        slot.metrics.connection_closed("handshake_timeout");
                    }
                    tracing::info!(peer = %peer, timeout = ?handshake_timeout, "TLS handshake not finished in time");
                }
            }
        });
    }
}

impl tokio_stream::Stream for Incoming {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(|a| Ok(a.conn)))
    }
}
