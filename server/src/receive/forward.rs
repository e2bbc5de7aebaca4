//! The receivers' side of scaling out like Thanos Receive: the hashrings in use (from
//! `--receive.hashrings` or a file read again when it changes; a broken file keeps the last
//! good ring), the route of a write for a tenant, gRPC clients of the other receivers for
//! `thanos.WriteableStore/RemoteWrite` (lazily connected, backed off while unavailable), the
//! `WriteableStore` server taking what they forward (snappy-compressed too, as Thanos's
//! routers send it), and the metrics Thanos names for it all.
//! How a write is split and answered is [`super::replicate`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use gauntlet_proto::thanos;
use gauntlet_proto::thanos::writeable_store_client::WriteableStoreClient;
use tonic::transport::{Channel, Endpoint as TonicEndpoint};
use tonic::{Request, Response, Status};

use super::hashring::{Algorithm, HashringError, Hashrings};
use super::replicate::{Failed, Failure, Route};
use super::tenants::requested_tenant;
use super::write::{Answer, Input, MAX_FORWARD_BYTES, WriteState, write};
use crate::grpc::convert;

/// How often the hashrings file's size and modification time are looked at (a stand-in for
/// Thanos's file-change notifications).
const STAT_EVERY: Duration = Duration::from_secs(1);

/// Backoff before a peer that answered `Unavailable` is tried again: doubling from the first,
/// up to the second (Thanos's defaults, without the jitter).
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// How the receivers share writes.
#[derive(Debug, Clone)]
pub struct ForwardOptions {
    /// This receiver's address as the hashrings list it; `None` makes it a router that keeps
    /// nothing itself.
    pub local_endpoint: Option<String>,
    /// Copies of each series (`--receive.replication-factor`), at least 1.
    pub replication_factor: u64,
    /// How long a forwarded write may take; also how long a write waits for its replicas.
    pub timeout: Duration,
    /// Algorithm of rings that do not name one.
    pub algorithm: Algorithm,
    /// TLS of the connections to the other receivers.
    pub tls: crate::tls::ClientTls,
}

/// Why the hashrings could not be loaded at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The file could not be read.
    #[error("reading --receive.hashrings-file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The configuration is not usable.
    #[error("{what}: {cause}")]
    Hashring {
        /// Which flag gave it.
        what: String,
        /// Why it is refused (in the message, not a source: printed once).
        cause: HashringError,
    },
}

/// Routes writes over the hashrings and forwards them to other receivers.
#[derive(Debug)]
pub struct Forwarder {
    opts: ForwardOptions,
    rings: RwLock<Arc<Hashrings>>,
    file: Option<RingFile>,
    peers: Peers,
    stats: ForwardStats,
}

/// The hashrings file and what was last loaded from it.
#[derive(Debug)]
struct RingFile {
    path: PathBuf,
    refresh: Duration,
    /// xxhash64 of the content in use.
    loaded: Mutex<u64>,
}

/// Counters, named as Thanos Receive names them.
#[derive(Debug, Default)]
struct ForwardStats {
    forwards_ok: AtomicU64,
    forwards_failed: AtomicU64,
    replications_ok: AtomicU64,
    replications_failed: AtomicU64,
    file_changes: AtomicU64,
    file_errors: AtomicU64,
    file_refreshes: AtomicU64,
    /// 1 when the last read of the file gave a usable ring.
    reload_ok: AtomicU64,
}

impl Forwarder {
    /// A forwarder over the hashrings JSON `json` (`--receive.hashrings`).
    pub fn from_json(json: &str, opts: ForwardOptions) -> Result<Forwarder, ForwardError> {
        let rings = build(json, &opts).map_err(|cause| ForwardError::Hashring {
            what: "--receive.hashrings".into(),
            cause,
        })?;
        Ok(Forwarder::new(rings, None, opts))
    }

    /// A forwarder over the hashrings file `path`, read again every `refresh` and whenever
    /// it changes once [`Forwarder::watch`] runs.
    pub fn from_file(
        path: &Path,
        refresh: Duration,
        opts: ForwardOptions,
    ) -> Result<Forwarder, ForwardError> {
        let text = std::fs::read_to_string(path).map_err(|source| ForwardError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let rings = build(&text, &opts).map_err(|cause| ForwardError::Hashring {
            what: format!("--receive.hashrings-file {}", path.display()),
            cause,
        })?;
        let file = RingFile {
            path: path.to_path_buf(),
            refresh,
            loaded: Mutex::new(xxhash_rust::xxh64::xxh64(text.as_bytes(), 0)),
        };
        let f = Forwarder::new(rings, Some(file), opts);
        // Thanos counts the first load as a change too.
        f.stats.file_changes.store(1, Relaxed);
        f.stats.file_refreshes.store(1, Relaxed);
        Ok(f)
    }

    fn new(rings: Hashrings, file: Option<RingFile>, opts: ForwardOptions) -> Forwarder {
        tracing::info!(
            rings = rings.sizes.len(),
            endpoints = rings.addresses().len(),
            local_endpoint = opts
                .local_endpoint
                .as_deref()
                .unwrap_or("(none: routing only)"),
            replication_factor = opts.replication_factor,
            "hashrings loaded"
        );
        let stats = ForwardStats::default();
        stats.reload_ok.store(1, Relaxed);
        Forwarder {
            peers: Peers::new(opts.timeout, opts.tls.clone()),
            opts,
            rings: RwLock::new(Arc::new(rings)),
            file,
            stats,
        }
    }

    /// The replica number a write is handled as: a router (no local endpoint) keeps no copy,
    /// so it spreads even a replicated write, as Thanos's router does; above the replication
    /// factor is an error (Thanos's `errBadReplica`).
    pub fn effective_replica(&self, replica: u64) -> Result<u64, String> {
        if self.opts.local_endpoint.is_none() {
            return Ok(0);
        }
        if replica > self.opts.replication_factor {
            return Err(format!(
                "request replica {replica} exceeds receiver replication factor {}",
                self.opts.replication_factor
            ));
        }
        Ok(replica)
    }

    /// Copies of each series (`--receive.replication-factor`).
    pub fn replication_factor(&self) -> u64 {
        self.opts.replication_factor
    }

    /// How long a forwarded write may take (`--receive-forward-timeout`).
    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    /// Counts a replicated write that did or did not reach its quorum for every series.
    pub fn count_replication(&self, ok: bool) {
        let c = if ok {
            &self.stats.replications_ok
        } else {
            &self.stats.replications_failed
        };
        c.fetch_add(1, Relaxed);
    }

    /// Where the series of a write for `tenant` with replica number `replica` go.
    pub fn route(
        self: &Arc<Self>,
        tenant: &str,
        replica: u64,
    ) -> Result<Route, (StatusCode, String)> {
        let replica = self
            .effective_replica(replica)
            .map_err(|m| (StatusCode::BAD_REQUEST, m))?;
        if replica > 0 {
            return Ok(Route::Local);
        }
        let rings = self.rings.read().unwrap_or_else(|p| p.into_inner()).clone();
        let ring = rings
            .ring_for(tenant)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .clone();
        let local = self
            .opts
            .local_endpoint
            .as_deref()
            .and_then(|l| ring.endpoints().iter().position(|e| e.address == l));
        Ok(Route::Ring {
            fwd: self.clone(),
            ring,
            local,
        })
    }

    /// Sends `request` to the receiver at `address`.
    pub async fn send(&self, address: &str, request: thanos::WriteRequest) -> Result<(), Failed> {
        let mut client = match self.peers.client(address) {
            Ok(c) => c,
            Err(msg) => {
                self.stats.forwards_failed.fetch_add(1, Relaxed);
                return Err((Failure::Unavailable, msg));
            }
        };
        let mut req = Request::new(request);
        req.set_timeout(self.opts.timeout);
        match client.remote_write(req).await {
            Ok(_) => {
                self.stats.forwards_ok.fetch_add(1, Relaxed);
                self.peers.mark(address, true);
                Ok(())
            }
            Err(status) => {
                self.stats.forwards_failed.fetch_add(1, Relaxed);
                if status.code() == tonic::Code::Unavailable {
                    self.peers.mark(address, false);
                }
                tracing::debug!(endpoint = address, error = %status, "forwarding failed");
                // A peer over its memory budget is busy, not refusing the data: the client
                // retries (503) rather than dropping it as over a limit (429).
                let failure = if crate::memory::refused_by_budget(&status) {
                    Failure::Unavailable
                } else {
                    Failure::from_grpc(status.code())
                };
                Err((
                    failure,
                    format!(
                        "forwarding to {address} failed ({:?}): {}",
                        status.code(),
                        status.message()
                    ),
                ))
            }
        }
    }

    /// Reads the hashrings file again; a changed, usable content replaces the rings, a broken
    /// one is logged and the rings stay. Blocking.
    pub fn reload(&self) {
        let Some(file) = &self.file else {
            return;
        };
        self.stats.file_refreshes.fetch_add(1, Relaxed);
        let text = match std::fs::read_to_string(&file.path) {
            Ok(t) => t,
            Err(e) => {
                self.stats.file_errors.fetch_add(1, Relaxed);
                self.stats.reload_ok.store(0, Relaxed);
                tracing::error!(path = %file.path.display(), error = %e, "reading the hashrings file failed; keeping the last good hashrings");
                return;
            }
        };
        let hash = xxhash_rust::xxh64::xxh64(text.as_bytes(), 0);
        let mut loaded = file.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if *loaded == hash {
            self.stats.reload_ok.store(1, Relaxed);
            return;
        }
        match build(&text, &self.opts) {
            Ok(rings) => {
                *loaded = hash;
                let keep: HashSet<String> =
                    rings.addresses().into_iter().map(str::to_string).collect();
                tracing::info!(
                    path = %file.path.display(),
                    rings = rings.sizes.len(),
                    endpoints = keep.len(),
                    "hashrings file changed; new hashrings in use"
                );
                *self.rings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rings);
                self.peers.retain(&keep);
                self.stats.file_changes.fetch_add(1, Relaxed);
                self.stats.reload_ok.store(1, Relaxed);
            }
            Err(e) => {
                self.stats.file_errors.fetch_add(1, Relaxed);
                self.stats.reload_ok.store(0, Relaxed);
                tracing::error!(path = %file.path.display(), error = %e, "the hashrings file is not usable; keeping the last good hashrings");
            }
        }
    }

    /// Re-reads the hashrings file when its size, modification time or inode change, and
    /// every refresh interval, until `stop` turns true. Returns at once without a file.
    pub async fn watch(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(file) = &self.file else {
            return;
        };
        let every = STAT_EVERY.min(file.refresh).max(Duration::from_millis(10));
        let mut seen = stamp(&file.path);
        let mut last_read = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = stamp(&file.path);
            if now != seen || last_read.elapsed() >= file.refresh {
                seen = now;
                last_read = Instant::now();
                let me = self.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        }
    }

    /// Writes the forwarding and hashring families, for the receiver's collector.
    pub fn encode_metrics(
        &self,
        e: &mut prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> std::fmt::Result {
        use crate::metrics::{counter, counters, gauge, gauges};
        let s = &self.stats;
        for (name, help, ok, failed) in [
            (
                "thanos_receive_forward_requests_total",
                "The number of forward requests.",
                &s.forwards_ok,
                &s.forwards_failed,
            ),
            (
                "thanos_receive_replications_total",
                "The number of replication operations done by the receiver. The success of replication is fulfilled when a quorum is met.",
                &s.replications_ok,
                &s.replications_failed,
            ),
        ] {
            let samples = [("error", failed), ("success", ok)]
                .map(|(result, n)| ([("result", result)], n.load(Relaxed)));
            counters(e, name, help, samples)?;
        }
        gauge(
            e,
            "thanos_receive_replication_factor",
            "The number of times to replicate incoming write requests.",
            self.opts.replication_factor,
        )?;
        if self.file.is_some() {
            for (name, help, v) in [
                (
                    "thanos_receive_hashrings_file_changes_total",
                    "The number of times the hashrings configuration file has changed.",
                    &s.file_changes,
                ),
                (
                    "thanos_receive_hashrings_file_errors_total",
                    "The number of errors watching the hashrings configuration file.",
                    &s.file_errors,
                ),
                (
                    "thanos_receive_hashrings_file_refreshes_total",
                    "The number of refreshes of the hashrings configuration file.",
                    &s.file_refreshes,
                ),
            ] {
                counter(e, name, help, v.load(Relaxed))?;
            }
            gauge(
                e,
                "thanos_receive_config_last_reload_successful",
                "Whether the last hashring configuration file reload attempt was successful.",
                s.reload_ok.load(Relaxed),
            )?;
        }
        // Rings of one name overwrite each other, as Thanos's gauges do.
        let rings = self.rings.read().unwrap_or_else(|p| p.into_inner()).clone();
        let sizes: BTreeMap<&str, (usize, usize)> = rings
            .sizes
            .iter()
            .map(|(name, nodes, tenants)| (name.as_str(), (*nodes, *tenants)))
            .collect();
        gauges(
            e,
            "thanos_receive_hashring_nodes",
            "The number of nodes per hashring.",
            sizes
                .iter()
                .map(|(ring, (nodes, _))| ([("name", *ring)], *nodes as u64)),
        )?;
        gauges(
            e,
            "thanos_receive_hashring_tenants",
            "The number of tenants per hashring.",
            sizes
                .iter()
                .map(|(ring, (_, tenants))| ([("name", *ring)], *tenants as u64)),
        )
    }
}

/// Parses and builds the hashrings of `json` for `opts`.
fn build(json: &str, opts: &ForwardOptions) -> Result<Hashrings, HashringError> {
    let cfg = super::hashring::parse(json)?;
    let rings = Hashrings::new(&cfg, opts.algorithm, opts.replication_factor)?;
    if let Some(local) = &opts.local_endpoint
        && !rings.addresses().contains(local.as_str())
    {
        tracing::warn!(local_endpoint = %local, "--receive.local-endpoint is in no hashring: this receiver forwards every series");
    }
    Ok(rings)
}

/// What identifies a version of a file cheaply: modification time, size and inode.
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// gRPC clients of the other receivers, created on first use and connected lazily, with
/// the backoff of those that were unavailable.
#[derive(Debug)]
struct Peers {
    timeout: Duration,
    tls: crate::tls::ClientTls,
    map: Mutex<HashMap<String, Peer>>,
}

#[derive(Debug)]
struct Peer {
    client: WriteableStoreClient<Channel>,
    /// Failed attempts in a row that said `Unavailable`.
    failures: u32,
    /// Until when the peer is not tried.
    down_until: Option<Instant>,
}

impl Peers {
    fn new(timeout: Duration, tls: crate::tls::ClientTls) -> Peers {
        Peers {
            timeout,
            tls,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// A client for `address`, or why it is not tried now.
    fn client(&self, address: &str) -> Result<WriteableStoreClient<Channel>, String> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get(address) {
            if p.down_until.is_some_and(|t| Instant::now() < t) {
                return Err(format!(
                    "backing off forward request for endpoint {address} (unavailable {} times in a row)",
                    p.failures
                ));
            }
            return Ok(p.client.clone());
        }
        let channel = self.tls.connect_lazy(
            TonicEndpoint::from_shared(format!("http://{address}"))
                .map_err(|e| format!("endpoint {address:?} is not an address: {e}"))?
                .connect_timeout(self.timeout)
                .timeout(self.timeout)
                .tcp_nodelay(true),
        );
        let client = WriteableStoreClient::new(channel)
            .max_encoding_message_size(MAX_FORWARD_BYTES)
            .max_decoding_message_size(MAX_FORWARD_BYTES);
        map.insert(
            address.to_string(),
            Peer {
                client: client.clone(),
                failures: 0,
                down_until: None,
            },
        );
        Ok(client)
    }

    /// Records whether a call to `address` reached it.
    fn mark(&self, address: &str, up: bool) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = map.get_mut(address) {
            if up {
                p.failures = 0;
                p.down_until = None;
            } else {
                p.failures += 1;
                let wait = BACKOFF
                    .0
                    .saturating_mul(1 << (p.failures - 1).min(16))
                    .min(BACKOFF.1);
                p.down_until = Some(Instant::now() + wait);
            }
        }
    }

    /// Drops the clients of receivers no longer in a ring and forgets every backoff, as
    /// Thanos does when the hashring changes.
    fn retain(&self, keep: &HashSet<String>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|addr, _| keep.contains(addr));
        for p in map.values_mut() {
            p.failures = 0;
            p.down_until = None;
        }
    }
}

/// `thanos.WriteableStore` on the receiver's gRPC port: writes forwarded by other receivers
/// (Gauntlet's or Thanos's) go through [`write`] as HTTP writes do.
#[derive(Debug, Clone)]
pub struct WriteableStoreService {
    st: Arc<WriteState>,
}

impl WriteableStoreService {
    /// Serves writes into `st`.
    pub fn new(st: Arc<WriteState>) -> Self {
        WriteableStoreService { st }
    }
}

#[tonic::async_trait]
impl thanos::writeable_store_server::WriteableStore for WriteableStoreService {
    async fn remote_write(
        &self,
        request: Request<thanos::WriteRequest>,
    ) -> Result<Response<thanos::WriteResponse>, Status> {
        let req = request.into_inner();
        // The request as decoded and its series copied out for the cores: about twice its
        // encoded size, reserved before the copies are made.
        let _held = self
            .st
            .tenants
            .budget()
            .reserve(
                "forwarded write",
                prost::Message::encoded_len(&req) as u64 * 2,
                gauntlet_engine::budget::Need::Grow,
            )
            .map_err(|why| crate::memory::refusal(&why))?;
        let replica = u64::try_from(req.replica).map_err(|_| {
            convert::invalid_argument(format!("replica {} is negative", req.replica))
        })?;
        if let Some(f) = &self.st.forward {
            f.effective_replica(replica)
                .map_err(convert::invalid_argument)?;
        }
        // Newer Thanos routers may batch several tenants in one request.
        let mut batches = vec![(req.tenant, req.timeseries)];
        batches.extend(
            req.timeseries_tenant_data
                .into_iter()
                .map(|t| (t.tenant, t.timeseries)),
        );
        let mut worst: Option<Answer> = None;
        for (tenant, series) in batches {
            if series.is_empty() {
                continue;
            }
            let tenant = requested_tenant(Some(tenant.as_bytes()), &self.st.default_tenant)
                .map_err(|e| convert::invalid_argument(e.to_string()))?;
            let a = write(&self.st, &tenant, replica, Input::Forwarded(series)).await;
            let worse = worst
                .as_ref()
                .is_none_or(|w| Failure::from_status(a.code) > Failure::from_status(w.code));
            if a.code != StatusCode::OK && worse {
                worst = Some(a);
            }
        }
        match worst {
            None => Ok(Response::new(thanos::WriteResponse {})),
            Some(a) => Err(convert::clipped(
                Failure::from_status(a.code).grpc_code(),
                &a.message,
            )),
        }
    }
}

/// The `grpc-encoding` Thanos's receivers compress the writes they forward with by default
/// (`--receive.grpc-compression=snappy`): each message in snappy's framing format.
const SNAPPY: &str = "snappy";

/// A tower layer for the receiver's gRPC server (`Server::builder().layer(…)`, outside
/// [`crate::grpc::RequestLimitsLayer`], which then checks the messages as decompressed) that
/// takes requests compressed with [`SNAPPY`], as Thanos's routers send their forwarded writes:
/// each message is decompressed (to at most [`MAX_FORWARD_BYTES`]) and the request passed on
/// uncompressed. tonic knows only gzip, deflate and zstd, and would refuse them as
/// `Unimplemented`. Answers stay uncompressed, which gRPC clients always take.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnappyRequestsLayer;

impl<S> tower::Layer<S> for SnappyRequestsLayer {
    type Service = SnappyRequests<S>;

    fn layer(&self, inner: S) -> SnappyRequests<S> {
        SnappyRequests { inner }
    }
}

/// See [`SnappyRequestsLayer`].
#[derive(Debug, Clone)]
pub struct SnappyRequests<S> {
    inner: S,
}

impl<S, ResBody> tower::Service<http::Request<tonic::body::Body>> for SnappyRequests<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let snappy = req
            .headers()
            .get("grpc-encoding")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(SNAPPY.as_bytes()));
        if !snappy {
            return Box::pin(self.inner.call(req));
        }
        // The service made ready serves this call; its clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            match snappy_messages(body, MAX_FORWARD_BYTES).await {
                Ok(plain) => {
                    parts.headers.remove("grpc-encoding");
                    let body = tonic::body::Body::new(http_body_util::Full::new(plain));
                    inner.call(http::Request::from_parts(parts, body)).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The gRPC messages of `body` (each a flag byte, a 4-byte big-endian length and the message)
/// with the compressed ones decompressed from snappy's framing format, re-framed uncompressed.
async fn snappy_messages(
    body: tonic::body::Body,
    max_bytes: usize,
) -> Result<bytes::Bytes, Status> {
    use http_body_util::BodyExt as _;
    use std::io::Read as _;
    let raw = http_body_util::Limited::new(body, max_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Status::out_of_range(format!("a snappy request of more than {max_bytes} bytes"))
            } else {
                Status::invalid_argument(format!("reading a snappy request: {e}"))
            }
        })?
        .to_bytes();
    let mut out = Vec::with_capacity(raw.len() * 2);
    let mut rest = &raw[..];
    // What the messages decompress to, all of them together (a unary call has one).
    let mut payload = 0;
    while !rest.is_empty() {
        let Some(&[flag, a, b, c, d]) = rest.get(..5) else {
            return Err(Status::invalid_argument(
                "a gRPC message header is cut short",
            ));
        };
        let n = u32::from_be_bytes([a, b, c, d]) as usize;
        let msg = rest
            .get(5..5 + n)
            .ok_or_else(|| Status::invalid_argument("a gRPC message is shorter than its length"))?;
        rest = &rest[5 + n..];
        let start = out.len();
        out.extend_from_slice(&[0; 5]);
        if flag == 0 {
            out.extend_from_slice(msg);
        } else {
            let room = max_bytes.saturating_sub(payload) as u64;
            snap::read::FrameDecoder::new(msg)
                .take(room + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    Status::invalid_argument(format!("decompressing a snappy message: {e}"))
                })?;
        }
        let len = out.len() - start - 5;
        payload += len;
        if payload > max_bytes {
            return Err(Status::out_of_range(format!(
                "a request decompressing to more than {max_bytes} bytes"
            )));
        }
        out[start + 1..start + 5].copy_from_slice(&(len as u32).to_be_bytes());
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::receive::replicate::Failure;

    #[tokio::test]
    async fn snappy_messages_are_reframed_uncompressed() {
        use std::io::Write as _;
        let plain = b"a forwarded write request".repeat(40);
        let mut compressed = snap::write::FrameEncoder::new(Vec::new());
        compressed.write_all(&plain).unwrap();
        let compressed = compressed.into_inner().unwrap();
        let frames = |msgs: &[(u8, &[u8])]| {
            let mut body = Vec::new();
            for (flag, msg) in msgs {
                body.push(*flag);
                body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                body.extend_from_slice(msg);
            }
            tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(body)))
        };
        let got = snappy_messages(frames(&[(1, &compressed), (0, &plain)]), 1 << 20)
            .await
            .unwrap();
        let mut want = Vec::new();
        for _ in 0..2 {
            want.push(0);
            want.extend_from_slice(&(plain.len() as u32).to_be_bytes());
            want.extend_from_slice(&plain);
        }
        assert_eq!(&got[..], &want[..]);
        // A message decompressing past the limit is refused, not held.
        assert!(compressed.len() + 5 < 200, "{}", compressed.len());
        let err = snappy_messages(frames(&[(1, &compressed)]), 200)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::OutOfRange);
    }

    #[test]
    fn statuses_and_grpc_codes_map_both_ways() {
        for f in Failure::ALL {
            assert_eq!(Failure::from_status(f.status()), f);
        }
        assert_eq!(
            Failure::from_status(StatusCode::PAYLOAD_TOO_LARGE),
            Failure::Limited
        );
        for (code, grpc) in [
            (StatusCode::CONFLICT, tonic::Code::AlreadyExists),
            (
                StatusCode::TOO_MANY_REQUESTS,
                tonic::Code::ResourceExhausted,
            ),
            (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable),
            (StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal),
        ] {
            assert_eq!(Failure::from_status(code).grpc_code(), grpc);
            assert_eq!(Failure::from_grpc(grpc), Failure::from_status(code));
        }
        assert_eq!(
            Failure::from_status(StatusCode::BAD_REQUEST).grpc_code(),
            tonic::Code::AlreadyExists
        );
        assert_eq!(
            Failure::from_grpc(tonic::Code::InvalidArgument),
            Failure::BadData
        );
        assert_eq!(
            Failure::from_grpc(tonic::Code::DeadlineExceeded),
            Failure::Unavailable
        );
    }
}
