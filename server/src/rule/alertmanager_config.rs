//! Where the ruler sends its alerts and how, from Thanos Rule's flags: `--alertmanagers.url`
//! (repeatable) or the alerting configuration (`--alertmanagers.config[-file]`, Thanos's YAML),
//! plus what is done to each alert's labels first (`--alert.label-drop`,
//! `--alert.relabel-config[-file]`). Everything is checked here, before the ruler starts, so a
//! typo stops it with a message naming the flag or field.
//!
//! The alerting configuration, as Thanos reads it (unknown fields are refused):
//!
//! ```yaml
//! alertmanagers:
//! - http_config:
//!     basic_auth: {username: u, password: p}      # or password_file
//!     bearer_token: t                             # or bearer_token_file
//!     tls_config: {ca_file, cert_file, key_file, server_name, insecure_skip_verify}
//!   static_configs: ["am-0:9093", "dns+am.example:9093", "dnssrv+_web._tcp.am.example"]
//!   file_sd_configs: [{files: [targets.json], refresh_interval: 5m}]
//!   scheme: http            # or https
//!   path_prefix: /am        # in front of /api/v2/alerts
//!   timeout: 10s
//!   api_version: v2
//! ```
//!
//! Its `http_config`, `tls_config` and `file_sd_configs` pieces are Thanos's shared HTTP
//! client configuration; the query endpoint configuration (`query_config`) reads them too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use gauntlet_engine::relabel::{self, RelabelError, Rule};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde::Deserialize;

use crate::query::dns;
use crate::tls::{self, TlsError};

/// Port of an Alertmanager named by a `dns+` URL without one (Alertmanager's default).
const DEFAULT_PORT: u16 = 9093;

/// The ruler's Alertmanager flags, Thanos Rule's names.
#[derive(Debug, Clone, Args)]
pub struct AlertmanagerArgs {
    /// Alertmanager URL to push alerts to (repeatable): `http(s)://[user:pass@]host[:port][/path]`.
    /// The scheme may start with `dns+` or `dnssrv+` to find the Alertmanagers in DNS; a `dns+`
    /// URL without a port uses 9093. The path is put in front of `/api/v2/alerts`. A batch is
    /// sent once any one Alertmanager takes it.
    #[arg(long = "alertmanagers.url", value_name = "URL")]
    pub urls: Vec<String>,
    /// How long one POST of alerts to one Alertmanager may take.
    #[arg(long = "alertmanagers.send-timeout", default_value = "10s", value_parser = crate::query::cmd::duration)]
    pub send_timeout: Duration,
    /// How often `dns+`/`dnssrv+` addresses are looked up again (and `file_sd_configs` files
    /// read again; a file that changes is read again within a second).
    #[arg(long = "alertmanagers.sd-dns-interval", default_value = "30s", value_parser = crate::query::cmd::duration)]
    pub sd_dns_interval: Duration,
    /// Alerting configuration (Thanos's YAML: `alertmanagers:` with `static_configs`,
    /// `http_config`, `scheme`, `path_prefix`, `timeout`); not together with
    /// --alertmanagers.url.
    #[arg(long = "alertmanagers.config", value_name = "YAML")]
    pub config: Option<String>,
    /// As --alertmanagers.config, from a file.
    #[arg(long = "alertmanagers.config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Label removed from every alert before it is sent (repeatable), so that the replicas of
    /// an HA ruler pair send the same alert (drop the replica label).
    #[arg(long = "alert.label-drop", value_name = "NAME")]
    pub label_drop: Vec<String>,
    /// Prometheus relabel rules (YAML list) applied to every alert's labels before it is sent;
    /// an alert whose labels a rule drops is not sent.
    #[arg(long = "alert.relabel-config", value_name = "YAML")]
    pub relabel_config: Option<String>,
    /// As --alert.relabel-config, from a file.
    #[arg(long = "alert.relabel-config-file", value_name = "FILE")]
    pub relabel_config_file: Option<PathBuf>,
}

impl Default for AlertmanagerArgs {
    fn default() -> Self {
        AlertmanagerArgs {
            urls: Vec::new(),
            send_timeout: Duration::from_secs(10),
            sd_dns_interval: Duration::from_secs(30),
            config: None,
            config_file: None,
            label_drop: Vec::new(),
            relabel_config: None,
            relabel_config_file: None,
        }
    }
}

/// Why the Alertmanager flags or configuration were refused. Each message names the flag or
/// field; the ruler cannot start until it is fixed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Two flags that exclude each other were both given; give one.
    #[error("{0} and {1} cannot be given together; use one")]
    Exclusive(&'static str, &'static str),
    /// A file a flag or field names could not be read.
    #[error("{what} {path}: {source}")]
    File {
        /// The flag or field naming the file.
        what: String,
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The alerting configuration is not valid YAML, has an unknown field or a bad value;
    /// `what` names the flag, the message the line and field.
    #[error("{what}: {message}")]
    Yaml {
        /// The flag the YAML came from.
        what: &'static str,
        /// What is wrong and where.
        message: String,
    },
    /// An `--alertmanagers.url` cannot be read as an Alertmanager URL.
    #[error("--alertmanagers.url {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The relabel rules are invalid (the message says which rule and line).
    #[error("{what}: {source}")]
    Relabel {
        /// The flag the rules came from.
        what: String,
        /// What the rule parser said.
        source: RelabelError,
    },
    /// The TLS settings could not be loaded.
    #[error("alertmanager {index} http_config.tls_config: {0}", index = .1)]
    Tls(TlsError, usize),
}

/// Everything the sender needs, checked.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// The Alertmanager groups alerts go to; each batch goes to every Alertmanager of each.
    pub alertmanagers: Vec<AlertmanagerConfig>,
    /// Label names removed from every alert.
    pub label_drop: Vec<String>,
    /// Relabel rules applied to every alert's labels after the drop.
    pub relabel: Vec<Rule>,
    /// How often DNS names and discovery files are read again.
    pub refresh_interval: Duration,
    /// Alerts the queue holds before it drops the oldest (Thanos's: 10000).
    pub queue_capacity: usize,
    /// Alerts per POST at most (Thanos's: 100).
    pub max_batch: usize,
}

/// One group of Alertmanagers: one `alertmanagers:` entry, or one `--alertmanagers.url`.
#[derive(Debug, Clone)]
pub struct AlertmanagerConfig {
    /// Whether the Alertmanagers are reached over TLS (`https`).
    pub tls: Option<HttpTls>,
    /// The path in front of `/api/v2/alerts`: empty or `/…` without a trailing slash.
    pub path_prefix: String,
    /// `host[:port]` addresses, possibly with `dns+`/`dnssrv+`/`dnssrvnoa+` prefixes.
    pub static_addresses: Vec<String>,
    /// Files of file-SD target groups whose targets are more addresses.
    pub sd_files: Vec<PathBuf>,
    /// How long one POST may take.
    pub timeout: Duration,
    /// The `Authorization` a request carries.
    pub auth: Option<Auth>,
}

impl AlertmanagerConfig {
    /// The port an address without one is reached at: the scheme's.
    pub fn default_port(&self) -> u16 {
        if self.tls.is_some() { 443 } else { 80 }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// How an Alertmanager is reached over TLS.
#[derive(Debug, Clone)]
pub struct HttpTls {
    /// The client configuration (HTTP/1.1 by ALPN).
    pub config: Arc<ClientConfig>,
    /// The name the certificate must be valid for instead of each address's host.
    pub server_name: Option<ServerName<'static>>,
}

/// A secret given in the configuration or in a file read at each request (so a rotated file
/// takes effect without a restart, as Prometheus's HTTP client does).
#[derive(Debug, Clone)]
pub enum Secret {
    /// The value itself.
    Inline(String),
    /// A file holding the value (surrounding whitespace trimmed).
    File(PathBuf),
}

impl Secret {
    /// The value now.
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::File(p) => Ok(std::fs::read_to_string(p)?.trim().to_string()),
        }
    }
}

/// The `Authorization` header's scheme and credentials.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Basic base64(user:password)`.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Bearer token`.
    Bearer(Secret),
}

impl AlertmanagerArgs {
    /// The checked configuration these flags give.
    pub fn config(&self) -> Result<NotifierConfig, ConfigError> {
        let yaml = match (&self.config, &self.config_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Exclusive(
                    "--alertmanagers.config",
                    "--alertmanagers.config-file",
                ));
            }
            (Some(y), None) => Some(("--alertmanagers.config", y.clone())),
            (None, Some(p)) => Some((
                "--alertmanagers.config-file",
                read_file("--alertmanagers.config-file", p)?,
            )),
            (None, None) => None,
        };
        let alertmanagers = match yaml {
            Some((what, _)) if !self.urls.is_empty() => {
                return Err(ConfigError::Exclusive("--alertmanagers.url", what));
            }
            Some((what, text)) => parse_alerting_config(what, &text)?,
            None => self
                .urls
                .iter()
                .map(|u| parse_url(u, self.send_timeout))
                .collect::<Result<_, _>>()?,
        };
        let relabel = match (&self.relabel_config, &self.relabel_config_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Exclusive(
                    "--alert.relabel-config",
                    "--alert.relabel-config-file",
                ));
            }
            (Some(y), None) => relabel::parse_rules(y).map_err(|source| ConfigError::Relabel {
                what: "--alert.relabel-config".into(),
                source,
            })?,
            (None, Some(p)) => {
                let y = read_file("--alert.relabel-config-file", p)?;
                relabel::parse_rules(&y).map_err(|source| ConfigError::Relabel {
                    what: format!("--alert.relabel-config-file {}", p.display()),
                    source,
                })?
            }
            (None, None) => Vec::new(),
        };
        Ok(NotifierConfig {
            alertmanagers,
            label_drop: self.label_drop.clone(),
            relabel,
            refresh_interval: self.sd_dns_interval,
            queue_capacity: 10_000,
            max_batch: 100,
        })
    }
}

fn read_file(what: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::File {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

/// One `--alertmanagers.url`, read as Thanos reads it.
pub fn parse_url(url: &str, timeout: Duration) -> Result<AlertmanagerConfig, ConfigError> {
    let bad = |reason: &str| ConfigError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("no scheme; want http://host[:port] or https://…"))?;
    if scheme.is_empty() {
        return Err(bad("empty scheme; want http or https"));
    }
    let scheme = scheme.to_ascii_lowercase();
    let (lookup, scheme) = match ["dnssrvnoa+", "dnssrv+", "dns+"]
        .into_iter()
        .find_map(|p| scheme.strip_prefix(p).map(|s| (p, s.to_string())))
    {
        Some((p, s)) => (Some(p), s),
        None => (None, scheme),
    };
    if rest.contains(['?', '#']) {
        return Err(bad("a query or fragment is not allowed"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let (_, port) = dns::host_port(host).map_err(|e| bad(&e))?;
    let address = match lookup {
        Some("dns+") if port.is_none() => format!("dns+{host}:{DEFAULT_PORT}"),
        Some(p) => format!("{p}{host}"),
        None => host.to_string(),
    };
    let auth = match userinfo {
        None | Some("") => None,
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|c| c.into_owned())
                    .map_err(|_| bad("the user name or password is not UTF-8"))
            };
            Some(Auth::Basic {
                username: decode(user)?,
                password: Secret::Inline(decode(pass)?),
            })
        }
    };
    let tls = match scheme.as_str() {
        "http" => None,
        "https" => Some(build_tls(&RawTls::default()).map_err(|e| bad(&e.to_string()))?),
        other => return Err(bad(&format!("scheme {other:?}: want http or https"))),
    };
    Ok(AlertmanagerConfig {
        tls,
        path_prefix: clean_prefix(path),
        static_addresses: vec![address],
        sd_files: Vec::new(),
        timeout,
        auth,
    })
}

/// A path prefix as `/a/b` (no trailing slash), or empty.
pub(super) fn clean_prefix(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("/{}", parts.join("/"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerting {
    #[serde(default)]
    alertmanagers: Vec<RawAlertmanager>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    http_config: RawHttpConfig,
    #[serde(default)]
    static_configs: Vec<String>,
    #[serde(default)]
    file_sd_configs: Vec<RawFileSd>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    path_prefix: String,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpConfig {
    #[serde(default)]
    basic_auth: RawBasicAuth,
    #[serde(default)]
    bearer_token: String,
    #[serde(default)]
    bearer_token_file: String,
    #[serde(default)]
    pub(super) proxy_url: String,
    #[serde(default)]
    pub(super) tls_config: RawTls,
    /// Connection pool tuning of Go's transport; accepted and not used.
    #[serde(default)]
    #[allow(dead_code)]
    transport_config: Option<serde_yaml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password_file: String,
}

/// Thanos's and Prometheus's `tls_config` (`ca_file`, `cert_file`, `key_file`,
/// `server_name`, `insecure_skip_verify`), as written.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// CA certificates the server's certificate is checked against (PEM); none: the system's.
    #[serde(default)]
    pub ca_file: String,
    /// The client certificate (PEM), with `key_file`.
    #[serde(default)]
    pub cert_file: String,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub key_file: String,
    /// The name the server's certificate must be valid for instead of the host dialled.
    #[serde(default)]
    pub server_name: String,
    /// No check of the server's certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFileSd {
    pub(super) files: Vec<String>,
    /// Files are read again at every address refresh instead (the `sd-dns-interval`
    /// flag of the configuration's role); checked as a duration where it is used.
    #[serde(default)]
    pub(super) refresh_interval: Option<String>,
}

/// The alerting configuration's Alertmanager groups; `what` is the flag it came from.
pub fn parse_alerting_config(
    what: &'static str,
    yaml: &str,
) -> Result<Vec<AlertmanagerConfig>, ConfigError> {
    let yerr = |message: String| ConfigError::Yaml { what, message };
    let raw: Option<RawAlerting> = if yaml.trim().is_empty() {
        None
    } else {
        serde_yaml::from_str(yaml).map_err(|e| yerr(e.to_string()))?
    };
    let mut out = Vec::new();
    for (i, am) in raw
        .map(|r| r.alertmanagers)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let field = |f: &str, m: String| yerr(format!("alertmanagers[{i}].{f}: {m}"));
        let tls = match am.scheme.as_deref().unwrap_or("http") {
            "http" => None,
            "https" => {
                Some(build_tls(&am.http_config.tls_config).map_err(|e| ConfigError::Tls(e, i))?)
            }
            other => return Err(field("scheme", format!("{other:?}: want http or https"))),
        };
        match am.api_version.as_deref().unwrap_or("v2") {
            "v2" => {}
            "v1" => {
                return Err(field(
                    "api_version",
                    "v1 is not supported (Alertmanager removed its v1 API in 0.27); use v2".into(),
                ));
            }
            other => return Err(field("api_version", format!("{other:?}: want v2"))),
        }
        let timeout = match am.timeout.as_deref() {
            None => Duration::from_secs(10),
            Some(t) => match gauntlet_promql::parse_duration_ms(t) {
                Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
                _ => {
                    return Err(field(
                        "timeout",
                        format!("{t:?} is not a positive duration"),
                    ));
                }
            },
        };
        if !am.http_config.proxy_url.is_empty() {
            return Err(field(
                "http_config.proxy_url",
                "proxies are not supported".into(),
            ));
        }
        for a in &am.static_configs {
            check_address(a).map_err(|m| field("static_configs", m))?;
        }
        let mut sd_files = Vec::new();
        for sd in &am.file_sd_configs {
            for f in &sd.files {
                if f.contains(['*', '?', '[']) {
                    return Err(field(
                        "file_sd_configs.files",
                        format!("{f:?}: glob patterns are not supported; name each file"),
                    ));
                }
                sd_files.push(PathBuf::from(f));
            }
        }
        let auth = http_auth(&am.http_config).map_err(|m| field("http_config", m))?;
        out.push(AlertmanagerConfig {
            tls,
            path_prefix: clean_prefix(&am.path_prefix),
            static_addresses: am.static_configs,
            sd_files,
            timeout,
            auth,
        });
    }
    Ok(out)
}

/// The `Authorization` an `http_config` asks for: basic auth or a bearer token, not both.
pub(super) fn http_auth(h: &RawHttpConfig) -> Result<Option<Auth>, String> {
    let basic = &h.basic_auth;
    let has_basic =
        !basic.username.is_empty() || !basic.password.is_empty() || !basic.password_file.is_empty();
    let has_bearer = !h.bearer_token.is_empty() || !h.bearer_token_file.is_empty();
    Ok(match (has_basic, has_bearer) {
        (true, true) => {
            return Err("basic_auth and bearer_token cannot be given together".into());
        }
        (true, false) => Some(Auth::Basic {
            username: basic.username.clone(),
            password: secret(&basic.password, &basic.password_file, "basic_auth.password")?,
        }),
        (false, true) => Some(Auth::Bearer(secret(
            &h.bearer_token,
            &h.bearer_token_file,
            "bearer_token",
        )?)),
        (false, false) => None,
    })
}

/// A secret from its inline and file fields (one of them); the file must be readable now.
fn secret(inline: &str, file: &str, name: &str) -> Result<Secret, String> {
    match (inline.is_empty(), file.is_empty()) {
        (false, false) => Err(format!("{name} and {name}_file cannot be given together")),
        (false, true) => Ok(Secret::Inline(inline.to_string())),
        (true, false) => {
            let s = Secret::File(PathBuf::from(file));
            s.read().map_err(|e| format!("{name}_file {file}: {e}"))?;
            Ok(s)
        }
        (true, true) => Ok(Secret::Inline(String::new())),
    }
}

/// Refuses what cannot be an Alertmanager address: `host[:port]` or a DNS name to look up.
pub fn check_address(addr: &str) -> Result<(), String> {
    if let Some((lookup, rest)) = dns::split(addr) {
        return dns::check(lookup, rest);
    }
    if addr.contains('/') {
        return Err(format!(
            "{addr:?}: want host[:port] (scheme and path are separate fields)"
        ));
    }
    dns::host_port(addr).map(|_| ())
}

/// The client TLS of `https` endpoints (Alertmanagers, query APIs), from a `tls_config`.
pub(crate) fn build_tls(raw: &RawTls) -> Result<HttpTls, TlsError> {
    let provider = tls::provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "tls_config".into(),
            source,
        })?;
    let given = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
    let server_name = match raw.server_name.as_str() {
        "" => None,
        n => Some(
            ServerName::try_from(n.to_string())
                .map_err(|e| TlsError::Settings(format!("server_name {n:?}: {e}")))?,
        ),
    };
    let builder = if raw.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(tls::verify::AnyServerCert::new(provider)))
    } else {
        let roots = match given(&raw.ca_file) {
            Some(ca) => tls::load_roots("ca_file", &ca)?,
            None => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(TlsError::Settings(
                        "no ca_file and no CA certificates in the system trust store".into(),
                    ));
                }
                roots
            }
        };
        match &server_name {
            None => builder.with_root_certificates(roots),
            Some(name) => {
                // Certificates are checked against server_name whatever host was dialled.
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::Settings(format!("ca_file: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(tls::verify::NamedServerCert::new(
                        webpki,
                        name.clone(),
                    )))
            }
        }
    };
    let mut config = match (given(&raw.cert_file), given(&raw.key_file)) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                tls::load_certs("cert_file", &cert)?,
                tls::load_key("key_file", &key)?,
            )
            .map_err(|source| TlsError::Rustls {
                what: format!(
                    "cert_file {} with key_file {}",
                    cert.display(),
                    key.display()
                ),
                source,
            })?,
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => return Err(TlsError::Settings("cert_file needs key_file".into())),
        (None, Some(_)) => return Err(TlsError::Settings("key_file needs cert_file".into())),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(HttpTls {
        config: Arc::new(config),
        server_name,
    })
}
