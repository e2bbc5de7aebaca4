//! Results caches outside the process, as Thanos's query frontend uses them: memcached
//! (`type: MEMCACHED`, its text protocol) and Redis (`type: REDIS`, RESP). Several frontends
//! share one cache this way, and it outlives their restarts.
//!
//! An entry holds a part's extents under its full key ([`super::cache::key`]); the cache
//! itself is addressed by the key's SHA-256 (memcached takes keys of at most 250 bytes, with no
//! spaces), and an entry whose stored key differs from the one asked is a miss. A cache that
//! is down or slow costs a request at most `timeout` per lookup: the lookup counts as a miss,
//! and stores go on in the background, a bounded number at a time (a store with no room is
//! skipped, as Thanos skips it), so answers keep coming, uncached.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;

use super::cache::{Cached, Extent};
use super::merge;

/// How long an entry lives when the configuration says 0 (Thanos's default).
pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(24 * 3600);

/// A memcached cluster's settings (`type: MEMCACHED`).
#[derive(Debug, Clone, PartialEq)]
pub struct MemcachedConfig {
    /// `addresses`: `host:port`, or `dns+`/`dnssrv+` names resolved every
    /// `dns_provider_update_interval`.
    pub addresses: Vec<String>,
    /// `timeout` of one operation.
    pub timeout: Duration,
    /// `max_idle_connections` kept per server.
    pub max_idle_connections: usize,
    /// `max_item_size`: larger entries are not stored.
    pub max_item_size: usize,
    /// `max_async_concurrency`: stores running at once.
    pub max_async_concurrency: usize,
    /// `dns_provider_update_interval`.
    pub dns_update_interval: Duration,
    /// `expiration` of an entry.
    pub expiration: Duration,
}

/// A Redis server's settings (`type: REDIS`).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// `addr`: `host:port`.
    pub addr: String,
    /// `prefix` put before every key.
    pub prefix: String,
    /// `username` (ACL), with `password`.
    pub username: String,
    /// `password` (`AUTH`).
    pub password: String,
    /// `db` selected on each connection.
    pub db: u32,
    /// `dial_timeout`.
    pub dial_timeout: Duration,
    /// `read_timeout`.
    pub read_timeout: Duration,
    /// `write_timeout`.
    pub write_timeout: Duration,
    /// `max_async_concurrency`: stores running at once.
    pub max_async_concurrency: usize,
    /// `expiration` of an entry.
    pub expiration: Duration,
    /// `tls_config`, when `tls_enabled`: connections to the Redis server (not to the
    /// sentinels) over TLS.
    pub tls: Option<crate::rule::alertmanager_config::RawTls>,
    /// `master_name`: with it, `addr` lists Redis Sentinels (comma-separated), asked for the
    /// address of the master of that name on each new connection. Without it, several
    /// `addr`s are nodes of a Redis Cluster.
    pub master_name: String,
}

/// What an entry holds: the full key and the extents, each answer as the querier's JSON, or
/// a label or series answer whole (`body`).
#[derive(Serialize, Deserialize)]
struct Stored {
    key: String,
    #[serde(default)]
    extents: Vec<StoredExtent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredExtent {
    start: i64,
    end: i64,
    answer: String,
}

/// The bytes stored for `value` under `key`.
pub fn encode_entry(key: &str, value: &Cached) -> Vec<u8> {
    let stored = match value {
        Cached::Extents(extents) => Stored {
            key: key.to_string(),
            extents: extents
                .iter()
                .map(|e| StoredExtent {
                    start: e.start,
                    end: e.end,
                    answer: String::from_utf8_lossy(&merge::encode(&e.answer)).into_owned(),
                })
                .collect(),
            body: None,
        },
        Cached::Body(b) => Stored {
            key: key.to_string(),
            extents: Vec::new(),
            body: Some(String::from_utf8_lossy(b).into_owned()),
        },
    };
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// What an entry holds for `key`: `None` when it is another key's (a hash collision) or
/// does not read.
pub fn decode_entry(key: &str, bytes: &[u8]) -> Option<Cached> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    if stored.key != key {
        return None;
    }
    if let Some(body) = stored.body {
        return Some(Cached::Body(Bytes::from(body)));
    }
    stored
        .extents
        .into_iter()
        .map(|e| {
            Some(Extent {
                start: e.start,
                end: e.end,
                answer: merge::parse(e.answer).ok()?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .map(Cached::Extents)
}

/// The name an entry of `key` has in the cache: the SHA-256 of the key, in hex.
pub fn hashed_key(key: &str) -> String {
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A results cache in memcached or Redis, with its counters.
#[derive(Debug)]
pub struct RemoteCache {
    backend: Backend,
    stores: Arc<tokio::sync::Semaphore>,
    /// Lookups.
    pub gets: AtomicU64,
    /// Lookups that found the entry.
    pub hits: AtomicU64,
    /// Entries stored.
    pub added: AtomicU64,
    /// Lookups and stores that failed (the cache down, slow or answering nonsense).
    pub failures: AtomicU64,
    /// Stores skipped: too large, or too many running.
    pub skipped: AtomicU64,
}

#[derive(Debug)]
enum Backend {
    Memcached(Box<Memcached>),
    Redis(Box<Redis>),
}

impl RemoteCache {
    /// A memcached-backed cache.
    pub fn memcached(cfg: MemcachedConfig) -> Result<RemoteCache, String> {
        if cfg.addresses.is_empty() {
            return Err("addresses: no memcached address given".into());
        }
        let stores = cfg.max_async_concurrency.max(1);
        Ok(RemoteCache::with(
            Backend::Memcached(Box::new(Memcached::new(cfg)?)),
            stores,
        ))
    }

    /// A Redis-backed cache.
    pub fn redis(cfg: RedisConfig) -> Result<RemoteCache, String> {
        if cfg.addr.is_empty() {
            return Err("addr: no Redis address given".into());
        }
        let tls = match &cfg.tls {
            None => None,
            Some(raw) => {
                let t = crate::rule::alertmanager_config::build_tls(raw)
                    .map_err(|e| format!("tls_config: {e}"))?;
                // RESP has no ALPN name.
                let mut config = Arc::unwrap_or_clone(t.config);
                config.alpn_protocols.clear();
                Some(RedisTls {
                    connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
                    server_name: t.server_name,
                })
            }
        };
        let stores = cfg.max_async_concurrency.max(1);
        Ok(RemoteCache::with(
            Backend::Redis(Box::new(Redis {
                cluster: (cfg.addr.contains(',') && cfg.master_name.is_empty())
                    .then(|| Mutex::new(Vec::new())),
                cfg,
                tls,
                idle: IdlePool::new(16),
            })),
            stores,
        ))
    }

    fn with(backend: Backend, stores: usize) -> RemoteCache {
        RemoteCache {
            backend,
            stores: Arc::new(tokio::sync::Semaphore::new(stores)),
            gets: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            added: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// The entry stored under `key`, if the cache has it and answers in time.
    pub async fn get(&self, key: &str) -> Option<Cached> {
        self.gets.fetch_add(1, Relaxed);
        let name = hashed_key(key);
        let got = match &self.backend {
            Backend::Memcached(m) => m.get(&name).await,
            Backend::Redis(r) => r.get(&name).await,
        };
        match got {
            Ok(Some(bytes)) => {
                let value = decode_entry(key, &bytes)?;
                self.hits.fetch_add(1, Relaxed);
                Some(value)
            }
            Ok(None) => None,
            Err(e) => {
                self.failures.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, "results cache lookup failed");
                None
            }
        }
    }

    /// Stores `value` under `key` in the background; skipped when the entry is too large
    /// or too many stores are running.
    pub fn put(self: &Arc<Self>, key: &str, value: &Cached) {
        let bytes = encode_entry(key, value);
        let too_large = match &self.backend {
            Backend::Memcached(m) => m.cfg.max_item_size > 0 && bytes.len() > m.cfg.max_item_size,
            Backend::Redis(_) => false,
        };
        let Some(permit) = (!too_large)
            .then(|| self.stores.clone().try_acquire_owned().ok())
            .flatten()
        else {
            self.skipped.fetch_add(1, Relaxed);
            return;
        };
        let name = hashed_key(key);
        let me = self.clone();
        tokio::spawn(async move {
            let res = match &me.backend {
                Backend::Memcached(m) => m.set(&name, &bytes).await,
                Backend::Redis(r) => r.set(&name, &bytes).await,
            };
            drop(permit);
            match res {
                Ok(()) => {
                    me.added.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    me.failures.fetch_add(1, Relaxed);
                    tracing::debug!(error = %e, "results cache store failed");
                }
            }
        });
    }
}

/// Seconds an entry lives (0 in the configuration: a day).
fn expiration_s(d: Duration) -> u64 {
    if d.is_zero() {
        DEFAULT_EXPIRATION.as_secs()
    } else {
        d.as_secs().max(1)
    }
}

/// Runs `f` within `limit`, a timeout turned into an error naming `what`.
async fn within<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

type Conn = BufStream<TcpStream>;

/// Idle connections by server address, at most `max` kept per server.
#[derive(Debug)]
struct IdlePool<C> {
    by_server: Mutex<HashMap<String, Vec<C>>>,
    max: usize,
}

impl<C> IdlePool<C> {
    fn new(max: usize) -> Self {
        IdlePool {
            by_server: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// An idle connection to `server`, if one is kept.
    fn take(&self, server: &str) -> Option<C> {
        self.by_server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(server)
            .and_then(Vec::pop)
    }

    /// Keeps `c` for the next call to `server`, unless `max` are kept already.
    fn give_back(&self, server: &str, c: C) {
        let mut idle = self.by_server.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(server.to_string()).or_default();
        if list.len() < self.max {
            list.push(c);
        }
    }
}

/// A memcached cluster: each key on one server, chosen by a jump consistent hash of the key
/// over the servers in address order (adding a server moves few keys).
#[derive(Debug)]
struct Memcached {
    cfg: MemcachedConfig,
    dns: Option<crate::query::dns::Dns>,
    /// The servers as last resolved, and when.
    servers: tokio::sync::Mutex<(Option<Instant>, Vec<String>)>,
    idle: IdlePool<Conn>,
}

impl Memcached {
    fn new(cfg: MemcachedConfig) -> Result<Memcached, String> {
        let prefixed = cfg
            .addresses
            .iter()
            .any(|a| crate::query::dns::split(a).is_some());
        let dns = if prefixed {
            Some(crate::query::dns::Dns::new()?)
        } else {
            None
        };
        Ok(Memcached {
            idle: IdlePool::new(cfg.max_idle_connections),
            cfg,
            dns,
            servers: tokio::sync::Mutex::new((None, Vec::new())),
        })
    }

    /// The server holding `name`.
    async fn server_for(&self, name: &str) -> Result<String, String> {
        let mut s = self.servers.lock().await;
        let stale =
            s.0.is_none_or(|at| at.elapsed() >= self.cfg.dns_update_interval);
        if stale {
            let mut list = match &self.dns {
                Some(d) => d.resolve(&self.cfg.addresses).await,
                None => self.cfg.addresses.clone(),
            };
            list.sort();
            list.dedup();
            *s = (Some(Instant::now()), list);
        }
        if s.1.is_empty() {
            return Err("no memcached server resolved".into());
        }
        let h = xxhash_rust::xxh64::xxh64(name.as_bytes(), 0);
        Ok(s.1[jump_hash(h, s.1.len())].clone())
    }

    async fn conn(&self, server: &str) -> Result<Conn, String> {
        match self.idle.take(server) {
            Some(c) => Ok(c),
            None => within(
                self.cfg.timeout,
                &format!("connecting to memcached {server}"),
                TcpStream::connect(server),
            )
            .await
            .map(BufStream::new),
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let server = self.server_for(name).await?;
        let mut c = self.conn(&server).await?;
        let what = format!("memcached {server}: get");
        let got = within(self.cfg.timeout, &what, async {
            c.write_all(format!("get {name}\r\n").as_bytes()).await?;
            c.flush().await?;
            memcached_get_reply(&mut c).await
        })
        .await?;
        self.idle.give_back(&server, c);
        Ok(got)
    }

    async fn set(&self, name: &str, value: &[u8]) -> Result<(), String> {
        let server = self.server_for(name).await?;
        let mut c = self.conn(&server).await?;
        let what = format!("memcached {server}: set");
        let exp = expiration_s(self.cfg.expiration);
        within(self.cfg.timeout, &what, async {
            let head = format!("set {name} 0 {exp} {}\r\n", value.len());
            c.write_all(head.as_bytes()).await?;
            c.write_all(value).await?;
            c.write_all(b"\r\n").await?;
            c.flush().await?;
            let line = read_line(&mut c).await?;
            if line == "STORED" {
                Ok(())
            } else {
                Err(protocol(format!("set answered {line:?}")))
            }
        })
        .await?;
        self.idle.give_back(&server, c);
        Ok(())
    }
}

/// Google's jump consistent hash: the bucket of `key` among `n`.
fn jump_hash(mut key: u64, n: usize) -> usize {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < n as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as usize
}

fn protocol(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Most bytes of a reply line read (a memcached `VALUE` header, a Redis status or length).
const MAX_LINE: usize = 1024;

/// One `\r\n`-ended line, without its end.
async fn read_line<R: AsyncBufRead + Unpin>(c: &mut R) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = (&mut *c)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(protocol("the connection closed".into()));
    }
    if !line.ends_with(b"\r\n") {
        return Err(protocol("a reply line too long or cut".into()));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| protocol("a reply line that is not text".into()))
}

/// Reads `n` bytes and the `\r\n` after them.
/// The buffer grows with what arrives: a length the data never reaches costs no memory.
async fn read_block<R: AsyncBufRead + Unpin>(c: &mut R, n: usize) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(n.min(64 << 10) + 2);
    (&mut *c).take(n as u64 + 2).read_to_end(&mut data).await?;
    if data.len() != n + 2 {
        return Err(protocol("the connection closed inside a data block".into()));
    }
    if !data.ends_with(b"\r\n") {
        return Err(protocol("a data block not ended by CRLF".into()));
    }
    data.truncate(n);
    Ok(data)
}

/// Most bytes of one entry read back (memcached's largest item size, 1 GiB; Redis's largest
/// string is 512 MiB).
const MAX_ENTRY: usize = 1 << 30;

/// The answer to one `get`: `VALUE <key> <flags> <bytes>`, the data, `END`; or `END` alone.
async fn memcached_get_reply<R: AsyncBufRead + Unpin>(
    c: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let line = read_line(c).await?;
    if line == "END" {
        return Ok(None);
    }
    let mut parts = line.split(' ');
    if parts.next() != Some("VALUE") {
        return Err(protocol(format!("get answered {line:?}")));
    }
    let len: usize = parts
        .nth(2)
        .and_then(|n| n.parse().ok())
        .filter(|&n| n <= MAX_ENTRY)
        .ok_or_else(|| protocol(format!("a VALUE line without a length: {line:?}")))?;
    let data = read_block(c, len).await?;
    let end = read_line(c).await?;
    if end != "END" {
        return Err(protocol(format!("get did not end with END: {end:?}")));
    }
    Ok(Some(data))
}

/// Reads `bytes` as a cache server's answers would come: a memcached `get` answer, then every
/// RESP reply in them. What the readers make of any input, for the fuzz target
/// `cache_replies`: an answer or an error, never a panic or an unbounded allocation.
pub fn read_cache_replies(bytes: &[u8]) -> (Result<Option<Vec<u8>>, String>, Vec<String>) {
    futures::executor::block_on(async {
        let mut r = bytes;
        let get = memcached_get_reply(&mut r).await.map_err(|e| e.to_string());
        let mut r = bytes;
        // The same bytes as a Redis Cluster's `CLUSTER NODES` answer.
        let slots = parse_cluster_nodes(&String::from_utf8_lossy(bytes));
        let mut replies = vec![format!("{} slot ranges", slots.len())];
        while !r.is_empty() && replies.len() < 1024 {
            match read_reply(&mut r).await {
                Ok(reply) => replies.push(format!("{reply:?}")),
                Err(e) => {
                    replies.push(e.to_string());
                    break;
                }
            }
        }
        (get, replies)
    })
}

/// A Redis server, over RESP.
#[derive(Debug)]
struct Redis {
    cfg: RedisConfig,
    tls: Option<RedisTls>,
    /// Idle connections by server address ("" for the one server, or the master the
    /// sentinels name).
    idle: IdlePool<RedisConn>,
    /// With several `addr`s and no `master_name`: a Redis Cluster, each key on the master
    /// that holds its hash slot. `None` otherwise.
    cluster: Option<Mutex<Vec<SlotRange>>>,
}

/// Hash slots of a Redis Cluster.
const CLUSTER_SLOTS: u16 = 16384;

/// A range of hash slots and the master serving it (`CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotRange {
    first: u16,
    last: u16,
    addr: String,
}

/// The hash slot of `key` in a Redis Cluster: CRC-16/XMODEM of the key, or of its hash tag
/// (what lies between the first `{` and the next `}`, when not empty), modulo 16384.
fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    let mut crc: u16 = 0;
    for &b in tagged.unwrap_or(key) {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % CLUSTER_SLOTS
}

/// The masters' slot ranges in a `CLUSTER NODES` answer: per line, the node's `ip:port`
/// (before any `@cport` or `,hostname`), its flags, and its slots (`a-b` or `a`; slots being
/// moved, in brackets, are left to the MOVED and ASK redirections).
fn parse_cluster_nodes(text: &str) -> Vec<SlotRange> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let flags: Vec<&str> = f[2].split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|x| *x == "fail" || *x == "noaddr") {
            continue;
        }
        let addr = f[1].split(['@', ',']).next().unwrap_or_default();
        if addr.is_empty() || addr.starts_with(':') {
            continue;
        }
        for slots in &f[8..] {
            if slots.starts_with('[') {
                continue;
            }
            let (a, b) = slots.split_once('-').unwrap_or((slots, slots));
            if let (Ok(first), Ok(last)) = (a.parse::<u16>(), b.parse::<u16>())
                && first <= last
                && last < CLUSTER_SLOTS
            {
                out.push(SlotRange {
                    first,
                    last,
                    addr: addr.to_string(),
                });
            }
        }
    }
    out.sort_by_key(|r| r.first);
    out
}

/// Where a MOVED or ASK error sends a command: `MOVED <slot> <ip:port>`.
fn redirection<'a>(error: &'a str, kind: &str) -> Option<&'a str> {
    let rest = error.strip_prefix(kind)?.strip_prefix(' ')?;
    rest.split_whitespace().nth(1)
}

/// How connections to the Redis server are made secure.
struct RedisTls {
    connector: tokio_rustls::TlsConnector,
    /// The name the certificate is checked against instead of the address's host.
    server_name: Option<rustls::pki_types::ServerName<'static>>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// A byte stream to Redis: plain TCP or TLS over it.
trait RedisStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + std::fmt::Debug
{
}

impl<T> RedisStream for T where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + std::fmt::Debug
{
}

type RedisConn = BufStream<Box<dyn RedisStream>>;

/// Most elements of an array reply read (a sentinel's answer has two).
const MAX_ARRAY: usize = 64;

/// A RESP reply, as far as this client reads them.
#[derive(Debug, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    /// An array of bulk strings (`None`: the null array).
    Array(Option<Vec<Option<Vec<u8>>>>),
}

/// A command as RESP writes it: an array of bulk strings.
fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The length a bulk or array header gives (`rest`, after its kind), `None` for -1 (null);
/// more than `max` is refused.
fn resp_length(rest: &str, line: &str, what: &str, max: usize) -> std::io::Result<Option<usize>> {
    let n: i64 = rest
        .parse()
        .map_err(|_| protocol(format!("a bad {what} length {line:?}")))?;
    if n < 0 {
        return Ok(None);
    }
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= max)
        .map(Some)
        .ok_or_else(|| protocol(format!("a {what} too large: {n}")))
}

async fn read_reply<R: AsyncBufRead + Unpin>(c: &mut R) -> std::io::Result<Reply> {
    let line = read_line(c).await?;
    // The kinds are ASCII; after any other first character the rest is never looked at.
    let kind = line.bytes().next();
    let rest = line.get(1..).unwrap_or_default();
    match kind {
        Some(b'+') => Ok(Reply::Status(rest.to_string())),
        Some(b'-') => Ok(Reply::Error(rest.to_string())),
        Some(b':') => rest
            .parse()
            .map(Reply::Integer)
            .map_err(|_| protocol(format!("a bad integer reply {line:?}"))),
        Some(b'$') => match resp_length(rest, &line, "bulk reply", MAX_ENTRY)? {
            None => Ok(Reply::Bulk(None)),
            Some(n) => Ok(Reply::Bulk(Some(read_block(c, n).await?))),
        },
        Some(b'*') => {
            let Some(n) = resp_length(rest, &line, "array reply", MAX_ARRAY)? else {
                return Ok(Reply::Array(None));
            };
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                // Element by element, without recursion: only bulk strings are taken.
                let line = read_line(c).await?;
                let len = line
                    .strip_prefix('$')
                    .ok_or_else(|| protocol(format!("an array element {line:?}")))?;
                items.push(match resp_length(len, &line, "array element", MAX_LINE)? {
                    None => None,
                    Some(n) => Some(read_block(c, n).await?),
                });
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(protocol(format!("an unexpected reply {line:?}"))),
    }
}

impl Redis {
    /// The master's address as the first sentinel that knows it says
    /// (`SENTINEL get-master-addr-by-name`).
    async fn master_addr(&self) -> Result<String, String> {
        let name = &self.cfg.master_name;
        let mut errors = Vec::new();
        for sentinel in self.cfg.addr.split(',').map(str::trim) {
            let what = format!("Redis Sentinel {sentinel}");
            let asked = async {
                let tcp = within(
                    self.cfg.dial_timeout,
                    &format!("connecting to {what}"),
                    TcpStream::connect(sentinel),
                )
                .await?;
                let mut c: RedisConn = BufStream::new(Box::new(tcp));
                let args: [&[u8]; 3] = [b"SENTINEL", b"get-master-addr-by-name", name.as_bytes()];
                self.send(&mut c, &args, &what).await
            };
            match asked.await {
                Ok(Reply::Array(Some(v))) => match v.as_slice() {
                    [Some(host), Some(port)] => {
                        let (host, port) =
                            (String::from_utf8_lossy(host), String::from_utf8_lossy(port));
                        return Ok(if host.contains(':') {
                            format!("[{host}]:{port}")
                        } else {
                            format!("{host}:{port}")
                        });
                    }
                    other => errors.push(format!("{what}: master {name:?} answered {other:?}")),
                },
                Ok(Reply::Array(None)) => {
                    errors.push(format!("{what}: no master named {name:?}"));
                }
                Ok(r) => errors.push(format!("{what}: answered {r:?}")),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// A connection to `server` (a cluster node), or to the Redis server (`addr`, or the
    /// master the sentinels name) when it is empty; over TLS when configured.
    async fn connect(&self, server: &str) -> Result<RedisConn, String> {
        let addr = if !server.is_empty() {
            server.to_string()
        } else if self.cfg.master_name.is_empty() {
            self.cfg.addr.clone()
        } else {
            self.master_addr().await?
        };
        let tcp = within(
            self.cfg.dial_timeout,
            &format!("connecting to Redis {addr}"),
            TcpStream::connect(addr.as_str()),
        )
        .await?;
        let Some(tls) = &self.tls else {
            return Ok(BufStream::new(Box::new(tcp)));
        };
        let name = match &tls.server_name {
            Some(n) => n.clone(),
            None => {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| format!("Redis {addr}: {host:?} as a TLS server name: {e}"))?
            }
        };
        let stream = within(
            self.cfg.dial_timeout,
            &format!("TLS handshake with Redis {addr}"),
            tls.connector.connect(name, tcp),
        )
        .await?;
        Ok(BufStream::new(Box::new(stream)))
    }

    /// An idle connection to `server` ("": the Redis server), or a new one, authenticated
    /// and on the configured database.
    async fn conn(&self, server: &str) -> Result<RedisConn, String> {
        if let Some(c) = self.idle.take(server) {
            return Ok(c);
        }
        let mut c = self.connect(server).await?;
        if !self.cfg.password.is_empty() {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if !self.cfg.username.is_empty() {
                args.push(self.cfg.username.as_bytes());
            }
            args.push(self.cfg.password.as_bytes());
            self.call(&mut c, &args, "AUTH").await?;
        }
        if self.cfg.db != 0 {
            let db = self.cfg.db.to_string();
            self.call(&mut c, &[b"SELECT", db.as_bytes()], "SELECT")
                .await?;
        }
        Ok(c)
    }

    /// Sends one command and reads its reply; a Redis error reply is an error.
    async fn call(&self, c: &mut RedisConn, args: &[&[u8]], what: &str) -> Result<Reply, String> {
        let what = format!("Redis {}: {what}", self.cfg.addr);
        match self.send(c, args, &what).await? {
            Reply::Error(e) => Err(format!("{what}: {e}")),
            r => Ok(r),
        }
    }

    /// Sends one command and reads its reply, an error reply included; `what` names the
    /// command and the server in errors.
    async fn send(&self, c: &mut RedisConn, args: &[&[u8]], what: &str) -> Result<Reply, String> {
        within(self.cfg.write_timeout, what, async {
            c.write_all(&resp_command(args)).await?;
            c.flush().await
        })
        .await?;
        within(self.cfg.read_timeout, what, read_reply(c)).await
    }

    /// The cluster's slot map, read from the first node of `addr` that answers
    /// `CLUSTER NODES`.
    async fn read_slots(&self) -> Result<Vec<SlotRange>, String> {
        let mut errors = Vec::new();
        for node in self.cfg.addr.split(',').map(str::trim) {
            let asked = async {
                let mut c = self.conn(node).await?;
                match self
                    .call(&mut c, &[b"CLUSTER", b"NODES"], "CLUSTER NODES")
                    .await?
                {
                    Reply::Bulk(Some(text)) => {
                        self.idle.give_back(node, c);
                        Ok(parse_cluster_nodes(&String::from_utf8_lossy(&text)))
                    }
                    r => Err(format!("Redis {node}: CLUSTER NODES answered {r:?}")),
                }
            };
            match asked.await {
                Ok(slots) if !slots.is_empty() => return Ok(slots),
                Ok(_) => errors.push(format!("Redis {node}: no slot is served")),
                Err(e) => errors.push(e),
            }
        }
        Err(errors.join("; "))
    }

    /// The server a command on `key` goes to: "" (the Redis server) outside a cluster, else
    /// the master holding the key's slot (the slot map read first when not known).
    async fn server_of(&self, key: &[u8]) -> Result<String, String> {
        let Some(map) = &self.cluster else {
            return Ok(String::new());
        };
        let slot = key_slot(key);
        let find = |m: &[SlotRange]| {
            m.iter()
                .find(|r| r.first <= slot && slot <= r.last)
                .map(|r| r.addr.clone())
        };
        if let Some(a) = find(&map.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(a);
        }
        let slots = self.read_slots().await?;
        let found = find(&slots);
        *map.lock().unwrap_or_else(|p| p.into_inner()) = slots;
        found.ok_or_else(|| {
            format!(
                "Redis Cluster {}: no node serves slot {slot}",
                self.cfg.addr
            )
        })
    }

    /// Runs a command on `key` where the key lives: in a cluster, a MOVED answer (the slot
    /// has another master) is followed after the slot map is dropped, and an ASK answer
    /// (the slot is being moved) by `ASKING` on the node named, at most a few times.
    async fn run(&self, key: &[u8], args: &[&[u8]], what: &str) -> Result<Reply, String> {
        let mut server = self.server_of(key).await?;
        let mut asking = false;
        for _ in 0..4 {
            let mut c = self.conn(&server).await?;
            if asking {
                self.call(&mut c, &[b"ASKING"], "ASKING").await?;
            }
            let label = format!(
                "Redis {}: {what}",
                if server.is_empty() {
                    &self.cfg.addr
                } else {
                    &server
                }
            );
            match self.send(&mut c, args, &label).await? {
                Reply::Error(e) if self.cluster.is_some() => {
                    if let Some(to) = redirection(&e, "MOVED") {
                        if let Some(map) = &self.cluster {
                            map.lock().unwrap_or_else(|p| p.into_inner()).clear();
                        }
                        self.idle.give_back(&server, c);
                        (server, asking) = (to.to_string(), false);
                    } else if let Some(to) = redirection(&e, "ASK") {
                        self.idle.give_back(&server, c);
                        (server, asking) = (to.to_string(), true);
                    } else {
                        return Err(format!("{label}: {e}"));
                    }
                }
                Reply::Error(e) => return Err(format!("{label}: {e}")),
                r => {
                    self.idle.give_back(&server, c);
                    return Ok(r);
                }
            }
        }
        Err(format!(
            "Redis Cluster {}: {what}: redirected too many times",
            self.cfg.addr
        ))
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let key = format!("{}{name}", self.cfg.prefix);
        match self
            .run(key.as_bytes(), &[b"GET", key.as_bytes()], "GET")
            .await?
        {
            Reply::Bulk(v) => Ok(v),
            r => Err(format!("Redis {}: GET answered {r:?}", self.cfg.addr)),
        }
    }

    async fn set(&self, name: &str, value: &[u8]) -> Result<(), String> {
        let key = format!("{}{name}", self.cfg.prefix);
        let exp = expiration_s(self.cfg.expiration).to_string();
        let args: [&[u8]; 5] = [b"SET", key.as_bytes(), value, b"EX", exp.as_bytes()];
        match self.run(key.as_bytes(), &args, "SET").await? {
            Reply::Status(s) if s == "OK" => Ok(()),
            r => Err(format!("Redis {}: SET answered {r:?}", self.cfg.addr)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(start: i64, end: i64) -> Extent {
        let body = serde_json::json!({"status": "success", "data": {"resultType": "matrix",
            "result": [{"metric": {"job": "a"}, "values": [[start as f64 / 1000.0, "1"],
            [end as f64 / 1000.0, "2"]]}]}});
        Extent {
            start,
            end,
            answer: merge::parse(serde_json::to_vec(&body).unwrap()).unwrap(),
        }
    }

    #[test]
    fn an_entry_reads_back_only_under_its_own_key() {
        let extents = Cached::Extents(vec![extent(0, 60_000), extent(120_000, 180_000)]);
        let bytes = encode_entry("fe:t:up:15000", &extents);
        assert_eq!(decode_entry("fe:t:up:15000", &bytes), Some(extents));
        let body = Cached::Body(Bytes::from_static(br#"{"status":"success","data":["a"]}"#));
        let bytes = encode_entry("fe:labels:t", &body);
        assert_eq!(decode_entry("fe:labels:t", &bytes), Some(body));
        assert_eq!(decode_entry("fe:labels:u", &bytes), None);
        assert_eq!(decode_entry("fe:t:up:30000", &bytes), None);
        assert_eq!(decode_entry("fe:t:up:15000", b"{not json"), None);
        assert_eq!(
            decode_entry("fe:t:up:15000", &bytes[..bytes.len() / 2]),
            None
        );
    }

    #[test]
    fn hashed_keys_fit_memcached() {
        let long = format!("fe:t:{}:15000", "sum(rate(x[5m])) ".repeat(100));
        let h = hashed_key(&long);
        assert_eq!(h.len(), 64);
        assert!(h.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(h, hashed_key("fe:t:up:15000"));
    }

    #[test]
    fn jump_hash_spreads_keys_and_moves_few_when_a_server_is_added() {
        let keys: Vec<u64> = (0..10_000u64)
            .map(|i| xxhash_rust::xxh64::xxh64(&i.to_le_bytes(), 0))
            .collect();
        let mut counts = [0usize; 4];
        for &k in &keys {
            counts[jump_hash(k, 4)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (2000..3000).contains(&c)),
            "{counts:?}"
        );
        let moved = keys
            .iter()
            .filter(|&&k| jump_hash(k, 4) != jump_hash(k, 5))
            .count();
        // About a fifth move to the new server, and only to it.
        assert!((1500..2500).contains(&moved), "{moved}");
        assert!(
            keys.iter()
                .all(|&k| jump_hash(k, 4) == jump_hash(k, 5) || jump_hash(k, 5) == 4)
        );
        assert_eq!(jump_hash(123, 1), 0);
    }

    #[test]
    fn resp_commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            resp_command(&[b"GET", b"k"]),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".to_vec()
        );
    }

    /// A connection to a one-shot server that writes `reply`.
    async fn reading(reply: &'static [u8]) -> Conn {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(reply).await.unwrap();
        });
        BufStream::new(TcpStream::connect(addr).await.unwrap())
    }

    #[tokio::test]
    async fn replies_are_read_and_hostile_ones_refused() {
        let mut c = reading(b"VALUE k 0 3\r\nabc\r\nEND\r\n").await;
        assert_eq!(
            memcached_get_reply(&mut c).await.unwrap(),
            Some(b"abc".to_vec())
        );
        let mut c = reading(b"END\r\n").await;
        assert_eq!(memcached_get_reply(&mut c).await.unwrap(), None);
        // A length past what is sent, a huge length, a missing END, a line with no end.
        for bad in [
            &b"VALUE k 0 10\r\nabc\r\nEND\r\n"[..],
            b"VALUE k 0 99999999999\r\n",
            b"VALUE k 0 3\r\nabc\r\nNOPE\r\n",
            b"SERVER_ERROR out of memory\r\n",
        ] {
            let leaked: &'static [u8] = Box::leak(bad.to_vec().into_boxed_slice());
            let mut c = reading(leaked).await;
            assert!(memcached_get_reply(&mut c).await.is_err(), "{bad:?}");
        }
        let long: &'static [u8] = Box::leak(vec![b'x'; 4096].into_boxed_slice());
        let mut c = reading(long).await;
        assert!(read_line(&mut c).await.is_err());

        let mut c = reading(b"$3\r\nabc\r\n$-1\r\n+OK\r\n-ERR wrong\r\n:5\r\n").await;
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Bulk(Some(b"abc".to_vec()))
        );
        assert_eq!(read_reply(&mut c).await.unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Status("OK".into())
        );
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Error("ERR wrong".into())
        );
        assert_eq!(read_reply(&mut c).await.unwrap(), Reply::Integer(5));
        let mut c = reading(b"$99999999999\r\n").await;
        assert!(read_reply(&mut c).await.is_err());
        // Arrays of bulk strings (a sentinel's answer), the null array; hostile ones refused.
        let mut c = reading(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n*-1\r\n*1\r\n$-1\r\n").await;
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Array(Some(vec![
                Some(b"127.0.0.1".to_vec()),
                Some(b"6379".to_vec())
            ]))
        );
        assert_eq!(read_reply(&mut c).await.unwrap(), Reply::Array(None));
        assert_eq!(
            read_reply(&mut c).await.unwrap(),
            Reply::Array(Some(vec![None]))
        );
        for bad in [
            &b"*99999999\r\n"[..],
            b"*1\r\n*1\r\n$1\r\na\r\n",
            b"*1\r\n:5\r\n",
            b"*2\r\n$1\r\na\r\n",
            b"*1\r\n$999999\r\nabc\r\n",
        ] {
            let leaked: &'static [u8] = Box::leak(bad.to_vec().into_boxed_slice());
            let mut c = reading(leaked).await;
            assert!(read_reply(&mut c).await.is_err(), "{bad:?}");
        }
        // A reply starting with a character of more than one byte (found by fuzzing).
        let mut c = reading("\u{43e}\r\n".as_bytes()).await;
        assert!(read_reply(&mut c).await.is_err());
    }

    #[tokio::test]
    async fn a_cache_that_is_not_there_is_a_quick_miss() {
        // A port nobody listens on: the lookup fails at once and counts as a failure.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cache = Arc::new(
            RemoteCache::memcached(MemcachedConfig {
                addresses: vec![format!("127.0.0.1:{port}")],
                timeout: Duration::from_millis(500),
                max_idle_connections: 4,
                max_item_size: 1 << 20,
                max_async_concurrency: 2,
                dns_update_interval: Duration::from_secs(10),
                expiration: Duration::ZERO,
            })
            .unwrap(),
        );
        let began = Instant::now();
        assert!(cache.get("fe:k").await.is_none());
        assert!(began.elapsed() < Duration::from_secs(2));
        assert_eq!(cache.failures.load(Relaxed), 1);
        assert_eq!(cache.hits.load(Relaxed), 0);
    }

    #[test]
    fn cluster_slots_are_redis_s() {
        // Slots Redis's `CLUSTER KEYSLOT` gives.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag is no tag (the whole key is hashed); only the first `{` counts.
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
    }

    #[test]
    fn cluster_nodes_give_the_masters_slot_ranges() {
        let text = "\
07c3 127.0.0.1:30004@31004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@31002,host-b master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [93->-292f]
e7d1 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
dead 127.0.0.1:30009@31009 master,fail - 0 0 1 disconnected 7
";
        let want = [
            (0, 5460, "127.0.0.1:30001"),
            (5461, 10922, "127.0.0.1:30002"),
            (10923, 16383, "127.0.0.1:30003"),
        ];
        let got = parse_cluster_nodes(text);
        assert_eq!(
            got,
            want.map(|(first, last, a)| SlotRange {
                first,
                last,
                addr: a.into()
            })
        );
        assert_eq!(
            redirection("MOVED 3999 127.0.0.1:6381", "MOVED"),
            Some("127.0.0.1:6381")
        );
        assert_eq!(
            redirection("ASK 3999 10.0.0.1:7000", "ASK"),
            Some("10.0.0.1:7000")
        );
        assert_eq!(redirection("ERR wrong", "MOVED"), None);
    }
}
