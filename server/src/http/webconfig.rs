//! The HTTP servers' web configuration file (`--http.config`), in the format Prometheus and
//! its exporters read: `tls_server_config` (certificate, key, client-certificate policy and
//! CA, TLS versions, cipher suites, curves), `http_server_config` (HTTP/2, response headers)
//! and `basic_auth_users` (user name → bcrypt hash). Every HTTP endpoint of the role (API, UI,
//! remote write, /metrics and the health checks) is served under it.
//!
//! The file is read once at start; unknown fields are errors, as in Prometheus, and every error
//! names the flag, the file and, for YAML errors, the line. The same flags hold the limits of
//! every HTTP listener (`--web.read-timeout`, `--web.max-connections`; see
//! [`super::connection`]).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use rustls::ServerConfig;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use super::connection::Limits;

use crate::tls::{ClientAuth, Named, ServerSettings, TlsError, parse_version, server_config};

/// The flags of a role's HTTP servers: the web configuration file and the limits every HTTP
/// listener holds its clients to.
#[derive(Debug, Clone, Args)]
pub struct HttpConfigArgs {
    /// Web configuration file (Prometheus's format) for every HTTP endpoint: TLS, client
    /// certificates (`tls_server_config`) and bcrypt basic-auth users (`basic_auth_users`).
    #[arg(long = "http.config", value_name = "FILE")]
    pub http_config: Option<PathBuf>,
    /// Maximum duration before timing out read of the request, and closing idle connections
    /// (every HTTP listener).
    #[arg(long = "web.read-timeout", default_value = "5m", value_parser = humantime::parse_duration)]
    pub read_timeout: Duration,
    /// Maximum number of simultaneous connections of each HTTP listener; past it new
    /// connections wait in the kernel's backlog. 0 for no limit.
    #[arg(long = "web.max-connections", default_value_t = 512)]
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers, from its connection's accept
    /// (TLS handshake included) or a keep-alive request's first byte.
    #[arg(long = "web.header-timeout", default_value = "10s", value_parser = humantime::parse_duration, hide = true)]
    pub header_timeout: Duration,
}

impl Default for HttpConfigArgs {
    fn default() -> HttpConfigArgs {
        let limits = Limits::default();
        HttpConfigArgs {
            http_config: None,
            read_timeout: limits.read_timeout,
            max_connections: limits.max_connections,
            header_timeout: limits.header_timeout,
        }
    }
}

impl HttpConfigArgs {
    /// The configuration the file and flags give; plain HTTP without authentication when no
    /// file is named.
    pub fn load(&self) -> Result<WebConfig, WebConfigError> {
        let config = match self
            .http_config
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(path) => WebConfig::load(path)?,
            None => WebConfig::default(),
        };
        Ok(WebConfig {
            limits: Limits {
                read_timeout: self.read_timeout,
                header_timeout: self.header_timeout,
                max_connections: self.max_connections,
            },
            ..config
        })
    }
}

/// Why the web configuration file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--http.config {}: {message}", path.display())]
pub struct WebConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with the YAML line where the parser knows it.
    pub message: String,
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<HttpServerConfig>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    #[serde(default)]
    cert_file: Option<String>,
    #[serde(default)]
    key_file: Option<String>,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
    #[serde(default)]
    cipher_suites: Option<Vec<String>>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    curve_preferences: Option<Vec<String>>,
    #[serde(default)]
    client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpServerConfig {
    #[serde(default)]
    http2: Option<bool>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

/// Response headers the file may set (the security headers Prometheus allows); any other is
/// refused so the file cannot break the protocol (`Content-Length` and the like).
const SETTABLE_HEADERS: &[&str] = &[
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// TLS, authentication and limits of a role's HTTP servers.
#[derive(Debug, Clone)]
pub struct WebConfig {
    tls: Option<Arc<ServerConfig>>,
    auth: Option<Arc<BasicAuth>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    http2: bool,
    limits: Limits,
}

impl Default for WebConfig {
    fn default() -> WebConfig {
        WebConfig {
            tls: None,
            auth: None,
            headers: Arc::default(),
            http2: true,
            limits: Limits::default(),
        }
    }
}

impl WebConfig {
    /// Reads and checks the file at `path` (relative file names in it are taken from the
    /// file's directory).
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let err = |message: String| WebConfigError {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let http = file.http_server_config.unwrap_or_default();
        let http2 = http.http2.unwrap_or(true);
        let tls = match &file.tls_server_config {
            Some(t) => tls_config(t, dir, http2).map_err(|e| err(e.to_string()))?,
            None => None,
        };
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let Some(allowed) = SETTABLE_HEADERS
                .iter()
                .find(|h| h.eq_ignore_ascii_case(&name))
            else {
                return Err(err(format!(
                    "http_server_config.headers: {name:?} cannot be set (settable: {})",
                    SETTABLE_HEADERS.join(", ")
                )));
            };
            let value = HeaderValue::from_str(&value).map_err(|_| {
                err(format!(
                    "http_server_config.headers.{name}: not a valid header value"
                ))
            })?;
            headers.push((HeaderName::from_static(lower(allowed)), value));
        }
        let auth = match file.basic_auth_users {
            Some(users) if !users.is_empty() => {
                let mut cost = 0;
                for (user, hash) in &users {
                    match hash.parse::<bcrypt::HashParts>() {
                        Ok(parts) => cost = cost.max(parts.get_cost()),
                        Err(_) => {
                            return Err(err(format!(
                                "basic_auth_users.{user}: not a bcrypt hash (htpasswd -nBC 10 \"\" makes one)"
                            )));
                        }
                    }
                }
                let auth = BasicAuth::new(users, cost)
                    .map_err(|e| err(format!("basic_auth_users: {e}")))?;
                Some(Arc::new(auth))
            }
            _ => None,
        };
        Ok(WebConfig {
            tls,
            auth,
            headers: Arc::new(headers),
            http2,
            limits: Limits::default(),
        })
    }

    /// The timeouts and connection cap of every HTTP listener.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether the servers speak HTTP/2 besides HTTP/1.1 (`http_server_config.http2`).
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// The TLS configuration of the HTTP servers; `None` for plain HTTP.
    pub fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.clone()
    }

    /// The same configuration serving `tls` (a listener with TLS flags of its own, such as
    /// `--remote-write.server-tls-*`).
    pub fn with_tls(mut self, tls: Arc<ServerConfig>) -> WebConfig {
        self.tls = Some(tls);
        self
    }

    /// Whether requests need a user and password.
    pub fn has_basic_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// `router` behind the basic-auth check and with the configured response headers; the
    /// requests the check refuses are counted in `metrics`.
    pub fn apply(&self, router: Router, metrics: &Arc<crate::metrics::ServerMetrics>) -> Router {
        let mut router = router;
        if !self.headers.is_empty() {
            let headers = self.headers.clone();
            router = router.layer(axum::middleware::from_fn_with_state(headers, add_headers));
        }
        if let Some(auth) = &self.auth {
            router = router.layer(axum::middleware::from_fn_with_state(
                (auth.clone(), metrics.clone()),
                check_basic_auth,
            ));
        }
        router
    }
}

fn lower(h: &'static str) -> &'static str {
    match h {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}

/// The rustls configuration `tls_server_config` gives; `None` when it names no certificate
/// (plain HTTP, as Prometheus does).
fn tls_config(
    t: &TlsServerConfig,
    dir: &Path,
    http2: bool,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let path = |p: &Option<String>| p.as_deref().filter(|s| !s.is_empty()).map(|s| dir.join(s));
    let (cert, key, ca) = (
        path(&t.cert_file),
        path(&t.key_file),
        path(&t.client_ca_file),
    );
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(TlsError::Settings(
                "tls_server_config.key_file is missing (cert_file is set)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(TlsError::Settings(
                "tls_server_config.cert_file is missing (key_file is set)".into(),
            ));
        }
        (Some(c), Some(k)) => (c, k),
    };
    let auth_type = t.client_auth_type.as_deref().unwrap_or("");
    let client_auth = ClientAuth::parse(auth_type).ok_or_else(|| {
        TlsError::Settings(format!(
            "tls_server_config.client_auth_type {auth_type:?}: want NoClientCert, RequestClientCert, \
             RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        ))
    })?;
    if ca.is_some() && client_auth == ClientAuth::NoClientCert {
        return Err(TlsError::Settings(
            "tls_server_config.client_ca_file is set but client_auth_type does not ask for \
             client certificates"
                .into(),
        ));
    }
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Err(TlsError::Settings(
            "tls_server_config.client_allowed_sans is not supported; sign client certificates \
             with a CA of their own instead"
                .into(),
        ));
    }
    let version = |what: &str, v: &Option<String>, default| match v.as_deref() {
        None | Some("") => Ok(default),
        Some(v) => parse_version(what, v),
    };
    let settings = ServerSettings {
        cert: Named {
            what: "tls_server_config.cert_file",
            path: &cert,
        },
        key: Named {
            what: "tls_server_config.key_file",
            path: &key,
        },
        client_ca: ca.as_deref().map(|path| Named {
            what: "tls_server_config.client_ca_file",
            path,
        }),
        client_auth,
        min_version: version(
            "tls_server_config.min_version",
            &t.min_version,
            &rustls::version::TLS12,
        )?,
        max_version: version(
            "tls_server_config.max_version",
            &t.max_version,
            &rustls::version::TLS13,
        )?,
        cipher_suites: t.cipher_suites.clone().unwrap_or_default(),
        curves: t.curve_preferences.clone().unwrap_or_default(),
        prefer_server_order: t.prefer_server_cipher_suites.unwrap_or(true),
        alpn: if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        },
    };
    server_config(&settings).map(Some)
}

/// Users and their bcrypt hashes. bcrypt is slow on purpose (tens of ms a check at cost 10),
/// too slow to run on every request of a page or a remote-write stream, and a flood of bad
/// logins must not take every core: verified credentials are remembered and skip the checks,
/// which run on the blocking pool a few at a time.
#[derive(Debug)]
struct BasicAuth {
    users: BTreeMap<String, String>,
    /// A hash of an unknown password at the users' highest cost, checked for unknown users so
    /// that a wrong user name takes as long as a wrong password.
    decoy: String,
    /// SHA-256 of (user, hash, password) of credentials that matched, so no password is kept.
    /// Only matches are remembered: at most one entry a user, and bad logins cannot push them
    /// out.
    good: Mutex<HashSet<[u8; 32]>>,
    /// The bcrypt checks that may run at once.
    checks: Arc<Semaphore>,
    /// The rate limit of the refusals' warnings.
    refusals: Mutex<RefusalLog>,
}

/// Most remembered good credentials; the set is emptied when it is full (it cannot hold more
/// than one entry a configured user while the file is unchanged).
const AUTH_CACHE_MAX: usize = 1024;

/// Least time between two logged refusals.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
    /// Refusals not logged since the last one that was.
    suppressed: u64,
}

/// Bytes from the standard library's randomly keyed hasher (no secret depends on them; they
/// only make the decoy hash's password unknown).
fn random_bytes() -> [u8; 16] {
    use std::hash::{BuildHasher as _, Hasher as _};
    let state = std::collections::hash_map::RandomState::new();
    std::array::from_fn(|i| {
        let mut h = state.build_hasher();
        h.write_usize(i);
        h.finish() as u8
    })
}

impl BasicAuth {
    /// The check of `users`, whose hashes are of at most `cost` (the decoy's).
    fn new(users: BTreeMap<String, String>, cost: u32) -> Result<BasicAuth, bcrypt::BcryptError> {
        let at_once = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        Ok(BasicAuth {
            users,
            decoy: bcrypt::hash(random_bytes(), cost)?,
            good: Mutex::new(HashSet::new()),
            checks: Arc::new(Semaphore::new(at_once)),
            refusals: Mutex::new(RefusalLog::default()),
        })
    }

    /// Whether `user` with `password` may in: at once for remembered credentials, else after
    /// a bcrypt check on the blocking pool, waiting for a turn.
    async fn check(self: Arc<Self>, user: String, password: String) -> bool {
        let known = self.users.get(&user);
        let hash = known.unwrap_or(&self.decoy).clone();
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        if known.is_some()
            && self
                .good
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&key)
        {
            return true;
        }
        let known = known.is_some();
        let Ok(turn) = self.checks.clone().acquire_owned().await else {
            return false;
        };
        // The turn goes with the check: a client that leaves does not free it early.
        let ok = tokio::task::spawn_blocking(move || {
            let ok = bcrypt::verify(password, &hash);
            drop(turn);
            ok
        })
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(false)
            && known;
        if ok {
            let mut good = self.good.lock().unwrap_or_else(|e| e.into_inner());
            if good.len() >= AUTH_CACHE_MAX {
                good.clear();
            }
            good.insert(key);
        }
        ok
    }

    /// Logs a refused request, at most one a [`REFUSAL_LOG_EVERY`], with the count of those
    /// not logged since.
    fn log_refusal(&self, peer: Option<SocketAddr>, path: &str, credentials: bool) {
        let now = Instant::now();
        let suppressed = {
            let mut log = self.refusals.lock().unwrap_or_else(|e| e.into_inner());
            if log
                .last
                .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
            {
                log.suppressed += 1;
                return;
            }
            log.last = Some(now);
            std::mem::take(&mut log.suppressed)
        };
        let remote = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        let reason = if credentials {
            "wrong user name or password"
        } else {
            "no basic-auth credentials"
        };
        tracing::warn!(remote = %remote, path, reason, suppressed, "HTTP request refused: 401 Unauthorized");
    }
}

/// The user and password of a `Basic` Authorization header.
fn basic_credentials(req: &Request) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

async fn check_basic_auth(
    State((auth, metrics)): State<(Arc<BasicAuth>, Arc<crate::metrics::ServerMetrics>)>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let credentials = basic_credentials(&req);
    let given = credentials.is_some();
    if let Some((user, password)) = credentials
        && auth.clone().check(user, password).await
    {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    auth.log_refusal(peer, req.uri().path(), given);
    // This check sits outside the request metrics of `crate::metrics::track_http`, so the
    // refusal is counted here.
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    metrics.observe_http(route, req.method(), StatusCode::UNAUTHORIZED, started);
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"))],
        "Unauthorized\n",
    )
        .into_response()
}

async fn add_headers(
    State(headers): State<Arc<Vec<(HeaderName, HeaderValue)>>>,
    req: Request,
    next: Next,
) -> Response {
    let mut resp = next.run(req).await;
    for (name, value) in headers.iter() {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<WebConfig, WebConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        std::fs::write(&p, yaml).unwrap();
        WebConfig::load(&p)
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = load("").unwrap();
        assert!(c.tls().is_none());
        assert!(!c.has_basic_auth());
    }

    #[test]
    fn unknown_fields_name_the_flag_the_file_and_the_line() {
        let e = load("basic_auth_users:\n  a: x\ntls_server_confg:\n  cert_file: a\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--http.config "), "{e}");
        assert!(e.contains("web.yml"), "{e}");
        assert!(e.contains("tls_server_confg"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn bad_hash_and_half_tls_are_refused() {
        let e = load("basic_auth_users:\n  alice: hunter2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("basic_auth_users.alice"), "{e}");
        let e = load("tls_server_config:\n  cert_file: c.pem\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_file is missing"), "{e}");
        let e = load("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_server_config.cert_file"), "{e}");
        assert!(e.contains("c.pem"), "{e}");
        let e = load("http_server_config:\n  headers:\n    Content-Length: '1'\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be set"), "{e}");
    }

    #[tokio::test]
    async fn passwords_are_checked_against_bcrypt_hashes() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth =
            Arc::new(BasicAuth::new(BTreeMap::from([("alice".to_string(), hash)]), 4).unwrap());
        assert!(auth.clone().check("alice".into(), "s3cret".into()).await);
        // The second time from the remembered answer.
        assert!(auth.clone().check("alice".into(), "s3cret".into()).await);
        assert!(!auth.clone().check("alice".into(), "s3cre".into()).await);
        assert!(!auth.clone().check("bob".into(), "s3cret".into()).await);
        assert_eq!(auth.good.lock().unwrap().len(), 1);
    }
}
