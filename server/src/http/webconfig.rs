//! The HTTP servers' web configuration file (`--http.config`), in the format Prometheus and
//! its exporters read: `tls_server_config` (certificate, key, client-certificate policy and
//! CA, TLS versions, cipher suites, curves), `http_server_config` (HTTP/2, response headers)
//! and `basic_auth_users` (user name → bcrypt hash). Every HTTP endpoint of the role (API, UI,
//! remote write, /metrics and the health checks) is served under it.
//!
//! The file is read once at start; unknown fields are errors, as in Prometheus, and every error
//! names the flag, the file and, for YAML errors, the line.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Args;
use http::StatusCode;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use rustls::ServerConfig;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::tls::{ClientAuth, Named, ServerSettings, TlsError, parse_version, server_config};

/// The flag naming the web configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct HttpConfigArgs {
    /// Web configuration file (Prometheus's format) for every HTTP endpoint: TLS, client
    /// certificates (`tls_server_config`) and bcrypt basic-auth users (`basic_auth_users`).
    #[arg(long = "http.config", value_name = "FILE")]
    pub http_config: Option<PathBuf>,
}

impl HttpConfigArgs {
    /// The configuration the file gives; plain HTTP without authentication when no file is
    /// named.
    pub fn load(&self) -> Result<WebConfig, WebConfigError> {
        match self
            .http_config
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(path) => WebConfig::load(path),
            None => Ok(WebConfig::default()),
        }
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

/// TLS and authentication of a role's HTTP servers.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    tls: Option<Arc<ServerConfig>>,
    auth: Option<Arc<BasicAuth>>,
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
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
                for (user, hash) in &users {
                    if hash.parse::<bcrypt::HashParts>().is_err() {
                        return Err(err(format!(
                            "basic_auth_users.{user}: not a bcrypt hash (htpasswd -nBC 10 \"\" makes one)"
                        )));
                    }
                }
                Some(Arc::new(BasicAuth::new(users)))
            }
            _ => None,
        };
        Ok(WebConfig {
            tls,
            auth,
            headers: Arc::new(headers),
        })
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

    /// `router` behind the basic-auth check and with the configured response headers.
    pub fn apply(&self, router: Router) -> Router {
        let mut router = router;
        if !self.headers.is_empty() {
            let headers = self.headers.clone();
            router = router.layer(axum::middleware::from_fn_with_state(headers, add_headers));
        }
        if let Some(auth) = &self.auth {
            router = router.layer(axum::middleware::from_fn_with_state(
                auth.clone(),
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

/// Users and their bcrypt hashes, with the answers already checked: bcrypt is slow on
/// purpose (tens of ms), too slow to run on every request of a page or a remote-write stream.
#[derive(Debug)]
struct BasicAuth {
    users: BTreeMap<String, String>,
    /// SHA-256 of (user, hash, password) of credentials that matched, so no password is kept.
    good: Mutex<HashSet<[u8; 32]>>,
}

/// Most remembered good credentials; the set is emptied when it is full.
const AUTH_CACHE_MAX: usize = 1024;

/// A bcrypt hash of a random password, checked for unknown users so that a wrong user name
/// takes as long as a wrong password.
static DECOY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let random: [u8; 16] = std::array::from_fn(|_| rand_byte());
    bcrypt::hash(random, bcrypt::DEFAULT_COST).unwrap_or_default()
});

/// A byte from the standard library's randomly keyed hasher (no secret depends on it; it only
/// makes the decoy hash's password unknown).
fn rand_byte() -> u8 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish() as u8
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> BasicAuth {
        BasicAuth {
            users,
            good: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `user` with `password` may in (bcrypt on a blocking thread).
    async fn check(self: Arc<Self>, user: String, password: String) -> bool {
        let known = self.users.get(&user).cloned();
        let hash = known.clone().unwrap_or_else(|| DECOY_HASH.clone());
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
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false)
            && known.is_some();
        if ok {
            let mut good = self.good.lock().unwrap_or_else(|e| e.into_inner());
            if good.len() >= AUTH_CACHE_MAX {
                good.clear();
            }
            good.insert(key);
        }
        ok
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
    State(auth): State<Arc<BasicAuth>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some((user, password)) = basic_credentials(&req)
        && auth.check(user, password).await
    {
        return next.run(req).await;
    }
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
        let auth = Arc::new(BasicAuth::new(BTreeMap::from([(
            "alice".to_string(),
            hash,
        )])));
        assert!(auth.clone().check("alice".into(), "s3cret".into()).await);
        // The second time from the remembered answer.
        assert!(auth.clone().check("alice".into(), "s3cret".into()).await);
        assert!(!auth.clone().check("alice".into(), "s3cre".into()).await);
        assert!(!auth.clone().check("bob".into(), "s3cret".into()).await);
        assert_eq!(auth.good.lock().unwrap().len(), 1);
    }
}
