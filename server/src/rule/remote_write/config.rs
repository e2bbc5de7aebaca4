//! The stateless ruler's remote-write configuration (`--remote-write.config[-file]`): the
//! `remote_write:` section of a Prometheus configuration, as Thanos Rule reads it. Every
//! entry is checked before the ruler starts; an unknown field, a bad URL or a bad value stops
//! it with a message naming the entry and the field.
//!
//! ```yaml
//! remote_write:
//! - url: http://receive:10908/api/v1/receive   # required, http or https
//!   name: receive-a                            # default: a hash of the URL
//!   remote_timeout: 30s
//!   headers: {X-Scope-OrgID: team-a}
//!   basic_auth: {username: u, password: p}     # or password_file
//!   bearer_token: t                            # or bearer_token_file, or
//!   authorization: {type: Bearer, credentials: t}   # or credentials_file
//!   tls_config: {ca_file, cert_file, key_file, server_name, insecure_skip_verify}
//!   proxy_url: http://proxy:3128
//!   write_relabel_configs: [...]               # Prometheus relabel rules
//!   queue_config:
//!     capacity: 10000
//!     max_shards: 50
//!     min_shards: 1
//!     max_samples_per_send: 2000
//!     batch_send_deadline: 5s
//!     min_backoff: 30ms
//!     max_backoff: 5s
//!     retry_on_http_429: true
//! ```
//!
//! Accepted and without effect here: `send_exemplars` (rules give none), `metadata_config`
//! (rules have no metadata), `round_robin_dns`, `follow_redirects`, `enable_http2`, and the
//! queue's `capacity`, `min_shards`, `max_shards` and `sample_age_limit` (samples wait in the
//! WAL, and one sender per endpoint keeps each series in order). Refused: `oauth2`, `sigv4`,
//! `azuread`, `google_iam` and remote-write 2.0 (`protobuf_message:
//! io.prometheus.write.v2.Request`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use gauntlet_engine::relabel::{self, Rule};
use serde::Deserialize;

use crate::rule::alertmanager_config::{
    Auth, HttpTls, RawHttpConfig, RawTls, Secret, build_tls, http_auth,
};
use crate::rule::query_config::expand_env;

/// Why the remote-write configuration was refused; the ruler does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteWriteConfigError {
    /// Both `--remote-write.config` and `--remote-write.config-file` were given; give one.
    #[error(
        "--remote-write.config and --remote-write.config-file cannot be given together; use one"
    )]
    Exclusive,
    /// The file `--remote-write.config-file` names cannot be read.
    #[error("--remote-write.config-file {path}: {source}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The text is not valid YAML, has an unknown field, or a field has a bad value; the
    /// message names the flag, the entry and the field.
    #[error("{what}: {message}")]
    Invalid {
        /// The flag the configuration came from.
        what: &'static str,
        /// What is wrong and where.
        message: String,
    },
}

/// One checked `remote_write` entry.
#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    /// Where requests are POSTed.
    pub url: reqwest::Url,
    /// The endpoint's name in metrics (`remote_name`) and logs, and the key of its progress
    /// in the WAL: the configured `name`, or a hash of the URL.
    pub name: String,
    /// How long one request may take.
    pub remote_timeout: Duration,
    /// Extra headers sent with each request.
    pub headers: BTreeMap<String, String>,
    /// The `Authorization` each request carries.
    pub auth: Option<Auth>,
    /// TLS of an `https` URL.
    pub tls: Option<HttpTls>,
    /// A proxy requests go through.
    pub proxy_url: Option<String>,
    /// Relabel rules applied to each series before it is sent (a series they drop is not).
    pub write_relabel: Vec<Rule>,
    /// Batching and retries.
    pub queue: QueueConfig,
}

/// How samples are batched and retried (`queue_config`).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Samples in one request at most.
    pub max_samples_per_send: usize,
    /// How long a sample waits for a fuller request before a partial one is sent.
    pub batch_send_deadline: Duration,
    /// The first wait after a failed request; doubled after each failure.
    pub min_backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// Whether a 429 answer is retried (otherwise its samples are dropped, as a 4xx's are).
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    /// Prometheus's defaults.
    fn default() -> Self {
        QueueConfig {
            max_samples_per_send: 2000,
            batch_send_deadline: Duration::from_secs(5),
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            retry_on_http_429: true,
        }
    }
}

/// Headers the sender sets itself; Prometheus refuses them in `headers` too.
const RESERVED_HEADERS: [&str; 7] = [
    "host",
    "authorization",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "x-prometheus-remote-write-version",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    remote_write: Vec<RawRemoteWrite>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteWrite {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    remote_timeout: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    write_relabel_configs: Option<serde_yaml::Value>,
    #[serde(default)]
    queue_config: RawQueue,
    #[serde(default)]
    protobuf_message: Option<String>,
    // The HTTP client's fields, inlined as Prometheus inlines them.
    #[serde(default)]
    basic_auth: Option<serde_yaml::Value>,
    #[serde(default)]
    bearer_token: Option<serde_yaml::Value>,
    #[serde(default)]
    bearer_token_file: Option<serde_yaml::Value>,
    #[serde(default)]
    authorization: Option<RawAuthorization>,
    #[serde(default)]
    tls_config: Option<serde_yaml::Value>,
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default)]
    oauth2: Option<serde_yaml::Value>,
    #[serde(default)]
    sigv4: Option<serde_yaml::Value>,
    #[serde(default)]
    azuread: Option<serde_yaml::Value>,
    #[serde(default)]
    google_iam: Option<serde_yaml::Value>,
    // Accepted, without effect on the ruler's sending.
    #[serde(default)]
    #[allow(dead_code)]
    send_exemplars: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    send_native_histograms: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    round_robin_dns: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    follow_redirects: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    enable_http2: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    metadata_config: Option<serde_yaml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    credentials: String,
    #[serde(default)]
    credentials_file: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    #[serde(default)]
    capacity: Option<i64>,
    #[serde(default)]
    max_shards: Option<i64>,
    #[serde(default)]
    min_shards: Option<i64>,
    #[serde(default)]
    max_samples_per_send: Option<i64>,
    #[serde(default)]
    batch_send_deadline: Option<String>,
    #[serde(default)]
    min_backoff: Option<String>,
    #[serde(default)]
    max_backoff: Option<String>,
    #[serde(default)]
    retry_on_http_429: Option<bool>,
    #[serde(default)]
    sample_age_limit: Option<String>,
}

/// The remote-write endpoints the flags give, or `None` when neither flag is given or the
/// configuration is empty (the ruler then keeps its own TSDB, as Thanos Rule does).
pub fn remote_write_endpoints(
    config: Option<&str>,
    config_file: Option<&Path>,
) -> Result<Option<Vec<RemoteWriteConfig>>, RemoteWriteConfigError> {
    let (what, text) = match (config, config_file) {
        (Some(_), Some(_)) => return Err(RemoteWriteConfigError::Exclusive),
        (Some(y), None) => ("--remote-write.config", y.to_string()),
        (None, Some(p)) => (
            "--remote-write.config-file",
            std::fs::read_to_string(p).map_err(|source| RemoteWriteConfigError::File {
                path: p.to_path_buf(),
                source,
            })?,
        ),
        (None, None) => return Ok(None),
    };
    let text = expand_env(what, &text).map_err(|e| RemoteWriteConfigError::Invalid {
        what,
        message: e.to_string(),
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_remote_write(what, &text).map(Some)
}

/// The entries of a `remote_write:` document; `what` names the flag it came from.
pub fn parse_remote_write(
    what: &'static str,
    yaml: &str,
) -> Result<Vec<RemoteWriteConfig>, RemoteWriteConfigError> {
    let invalid = |message: String| RemoteWriteConfigError::Invalid { what, message };
    let raw: Option<RawFile> = serde_yaml::from_str(yaml).map_err(|e| invalid(e.to_string()))?;
    let raw = raw.map(|r| r.remote_write).unwrap_or_default();
    if raw.is_empty() {
        return Err(invalid(
            "remote_write lists no endpoint; give at least one, or leave the flag out to keep \
             the ruler's own TSDB"
                .into(),
        ));
    }
    let mut out: Vec<RemoteWriteConfig> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let c = entry(r).map_err(|m| invalid(format!("remote_write[{i}].{m}")))?;
        if out.iter().any(|o| o.url == c.url) {
            return Err(invalid(format!(
                "remote_write[{i}].url: {} is listed twice; duplicate remote write configs are \
                 not allowed",
                c.url
            )));
        }
        if out.iter().any(|o| o.name == c.name) {
            return Err(invalid(format!(
                "remote_write[{i}].name: {:?} is used twice; names must be unique",
                c.name
            )));
        }
        out.push(c);
    }
    Ok(out)
}

/// One checked entry; an error starts with the field it is about.
fn entry(r: RawRemoteWrite) -> Result<RemoteWriteConfig, String> {
    for (field, given) in [
        ("oauth2", r.oauth2.is_some()),
        ("sigv4", r.sigv4.is_some()),
        ("azuread", r.azuread.is_some()),
        ("google_iam", r.google_iam.is_some()),
    ] {
        if given {
            return Err(format!("{field}: not supported by gauntlet rule"));
        }
    }
    match r.protobuf_message.as_deref() {
        None | Some("prometheus.WriteRequest") => {}
        Some(other) => {
            return Err(format!(
                "protobuf_message: {other:?}: only prometheus.WriteRequest (remote-write 1.0) \
                 is supported"
            ));
        }
    }
    let url = parse_url(r.url.as_deref())?;
    let name = match r.name.clone() {
        Some(n) if !n.is_empty() => n,
        _ => url_hash(&url),
    };
    let remote_timeout =
        duration("remote_timeout", r.remote_timeout.as_deref())?.unwrap_or(Duration::from_secs(30));
    for h in r.headers.keys() {
        if RESERVED_HEADERS.contains(&h.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "headers: {h} is set by the sender and cannot be given"
            ));
        }
        reqwest::header::HeaderName::from_bytes(h.as_bytes())
            .map_err(|e| format!("headers: {h:?}: {e}"))?;
    }
    for (h, v) in &r.headers {
        reqwest::header::HeaderValue::from_str(v)
            .map_err(|e| format!("headers: {h}: {v:?}: {e}"))?;
    }
    let auth = auth(&r)?;
    let tls = if url.scheme() == "https" {
        let raw: RawTls = match &r.tls_config {
            Some(v) => serde_yaml::from_value(v.clone()).map_err(|e| format!("tls_config: {e}"))?,
            None => RawTls::default(),
        };
        Some(build_tls(&raw).map_err(|e| format!("tls_config: {e}"))?)
    } else {
        if let Some(v) = &r.tls_config {
            serde_yaml::from_value::<RawTls>(v.clone()).map_err(|e| format!("tls_config: {e}"))?;
        }
        None
    };
    let proxy_url = match r.proxy_url.as_deref() {
        None | Some("") => None,
        Some(p) => {
            reqwest::Proxy::all(p).map_err(|e| format!("proxy_url: {p:?}: {e}"))?;
            Some(p.to_string())
        }
    };
    let write_relabel = match &r.write_relabel_configs {
        None => Vec::new(),
        Some(v) => {
            let text =
                serde_yaml::to_string(v).map_err(|e| format!("write_relabel_configs: {e}"))?;
            relabel::parse_rules(&text).map_err(|e| format!("write_relabel_configs: {e}"))?
        }
    };
    let queue = queue(&r.queue_config).map_err(|m| format!("queue_config.{m}"))?;
    Ok(RemoteWriteConfig {
        url,
        name,
        remote_timeout,
        headers: r.headers,
        auth,
        tls,
        proxy_url,
        write_relabel,
        queue,
    })
}

/// The `url` field: required, absolute, `http` or `https`, with a host.
fn parse_url(url: Option<&str>) -> Result<reqwest::Url, String> {
    let Some(text) = url.filter(|u| !u.is_empty()) else {
        return Err("url: missing; every remote_write entry needs one".into());
    };
    let u = reqwest::Url::parse(text).map_err(|e| format!("url: {text:?}: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "url: {text:?}: scheme {:?}, want http or https",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("url: {text:?}: no host"));
    }
    Ok(u)
}

/// A short stable name for an endpoint without one: 8 hex digits of the URL's hash.
fn url_hash(url: &reqwest::Url) -> String {
    let h = xxhash_rust::xxh64::xxh64(url.as_str().as_bytes(), 0);
    format!("{:08x}", h >> 32)
}

/// The credentials an entry gives: basic auth, a bearer token, or `authorization` (one).
fn auth(r: &RawRemoteWrite) -> Result<Option<Auth>, String> {
    let mut http = serde_yaml::Mapping::new();
    for (k, v) in [
        ("basic_auth", &r.basic_auth),
        ("bearer_token", &r.bearer_token),
        ("bearer_token_file", &r.bearer_token_file),
    ] {
        if let Some(v) = v {
            http.insert(k.into(), v.clone());
        }
    }
    let raw: RawHttpConfig =
        serde_yaml::from_value(serde_yaml::Value::Mapping(http)).map_err(|e| e.to_string())?;
    let legacy = http_auth(&raw)?;
    let Some(a) = &r.authorization else {
        return Ok(legacy);
    };
    if legacy.is_some() {
        return Err("authorization: cannot be given with basic_auth or bearer_token".into());
    }
    let kind = a.kind.as_deref().unwrap_or("Bearer");
    if !kind.eq_ignore_ascii_case("bearer") {
        return Err(format!(
            "authorization.type: {kind:?}: only Bearer is supported (use basic_auth for Basic)"
        ));
    }
    let secret = match (a.credentials.is_empty(), a.credentials_file.is_empty()) {
        (false, false) => {
            return Err(
                "authorization: credentials and credentials_file cannot be given together".into(),
            );
        }
        (false, true) => Secret::Inline(a.credentials.clone()),
        (true, false) => {
            let s = Secret::File(a.credentials_file.clone().into());
            s.read().map_err(|e| {
                format!("authorization.credentials_file {}: {e}", a.credentials_file)
            })?;
            s
        }
        (true, true) => {
            return Err("authorization: credentials or credentials_file is needed".into());
        }
    };
    Ok(Some(Auth::Bearer(secret)))
}

/// The checked `queue_config`; an error starts with the field.
fn queue(q: &RawQueue) -> Result<QueueConfig, String> {
    let d = QueueConfig::default();
    for (field, v) in [
        ("capacity", q.capacity),
        ("max_shards", q.max_shards),
        ("min_shards", q.min_shards),
        ("max_samples_per_send", q.max_samples_per_send),
    ] {
        if let Some(n) = v
            && n <= 0
        {
            return Err(format!("{field}: {n}: must be positive"));
        }
    }
    if let (Some(min), Some(max)) = (q.min_shards, q.max_shards)
        && min > max
    {
        return Err(format!("min_shards: {min} is above max_shards {max}"));
    }
    duration("sample_age_limit", q.sample_age_limit.as_deref())?;
    let min_backoff = duration("min_backoff", q.min_backoff.as_deref())?.unwrap_or(d.min_backoff);
    let max_backoff = duration("max_backoff", q.max_backoff.as_deref())?.unwrap_or(d.max_backoff);
    if min_backoff > max_backoff {
        return Err(format!(
            "min_backoff: {min_backoff:?} is above max_backoff {max_backoff:?}"
        ));
    }
    let batch_send_deadline = duration("batch_send_deadline", q.batch_send_deadline.as_deref())?
        .unwrap_or(d.batch_send_deadline);
    Ok(QueueConfig {
        max_samples_per_send: q
            .max_samples_per_send
            .map_or(d.max_samples_per_send, |n| n as usize),
        batch_send_deadline,
        min_backoff,
        max_backoff,
        retry_on_http_429: q.retry_on_http_429.unwrap_or(d.retry_on_http_429),
    })
}

/// A Prometheus duration field; `None` when not given.
fn duration(field: &str, text: Option<&str>) -> Result<Option<Duration>, String> {
    match text {
        None => Ok(None),
        Some(t) => match gauntlet_promql::parse_duration_ms(t) {
            Some(ms) if ms >= 0 => Ok(Some(Duration::from_millis(ms as u64))),
            _ => Err(format!("{field}: {t:?} is not a duration")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Vec<RemoteWriteConfig>, String> {
        parse_remote_write("--remote-write.config", yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_entry_is_read_with_prometheus_defaults_where_fields_are_missing() {
        let c = parse(
            "remote_write:\n\
             - url: http://127.0.0.1:10908/api/v1/receive\n\
             \x20 name: recv\n\
             \x20 remote_timeout: 3s\n\
             \x20 headers: {X-Scope-OrgID: team-a}\n\
             \x20 basic_auth: {username: u, password: p}\n\
             \x20 write_relabel_configs:\n\
             \x20 - source_labels: [__name__]\n\
             \x20   regex: drop_me\n\
             \x20   action: drop\n\
             \x20 queue_config: {max_samples_per_send: 10, batch_send_deadline: 100ms, \
             min_backoff: 10ms, max_backoff: 1s, retry_on_http_429: false, capacity: 5, max_shards: 2}\n\
             \x20 metadata_config: {send: false}\n\
             - url: http://127.0.0.1:10909/api/v1/receive\n",
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].name, "recv");
        assert_eq!(c[0].remote_timeout, Duration::from_secs(3));
        assert_eq!(c[0].headers["X-Scope-OrgID"], "team-a");
        assert!(matches!(c[0].auth, Some(Auth::Basic { .. })));
        assert_eq!(c[0].write_relabel.len(), 1);
        assert_eq!(
            c[0].queue,
            QueueConfig {
                max_samples_per_send: 10,
                batch_send_deadline: Duration::from_millis(100),
                min_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_secs(1),
                retry_on_http_429: false,
            }
        );
        assert_eq!(c[1].queue, QueueConfig::default());
        assert_eq!(c[1].remote_timeout, Duration::from_secs(30));
        assert_eq!(
            c[1].name.len(),
            8,
            "an unnamed endpoint is named by its URL's hash"
        );
        assert_ne!(c[0].name, c[1].name);
    }

    #[test]
    fn bad_entries_are_refused_naming_the_field() {
        let cases = [
            (
                "remote_write:\n- url: http://a:1/w\n  queue_config: {max_samples: 3}\n",
                "max_samples",
            ),
            ("remote_write:\n- url: http://a:1/w\n  urll: x\n", "urll"),
            ("remote_write:\n- url: 'not a url'\n", "remote_write[0].url"),
            ("remote_write:\n- url: ftp://a/w\n", "remote_write[0].url"),
            ("remote_write:\n- name: x\n", "remote_write[0].url: missing"),
            (
                "remote_write:\n- url: http://a:1/w\n- url: http://a:1/w\n",
                "remote_write[1].url",
            ),
            (
                "remote_write:\n- url: http://a:1/w\n  remote_timeout: soon\n",
                "remote_write[0].remote_timeout",
            ),
            (
                "remote_write:\n- url: http://a:1/w\n  headers: {Authorization: x}\n",
                "remote_write[0].headers",
            ),
            (
                "remote_write:\n- url: http://a:1/w\n  sigv4: {region: x}\n",
                "remote_write[0].sigv4",
            ),
            (
                "remote_write:\n- url: http://a:1/w\n  queue_config: {max_shards: 0}\n",
                "remote_write[0].queue_config.max_shards",
            ),
            (
                "remote_write:\n- url: http://a:1/w\n  bearer_token: a\n  basic_auth: {username: u}\n",
                "remote_write[0].",
            ),
            (
                "remote_write:\n- url: http://a:1/w\n  protobuf_message: io.prometheus.write.v2.Request\n",
                "remote_write[0].protobuf_message",
            ),
            (
                "remote_write:\n- url: http://a:1/w\n  write_relabel_configs: [{action: bogus}]\n",
                "remote_write[0].write_relabel_configs",
            ),
            ("remote_writes: []\n", "remote_writes"),
            ("remote_write: []\n", "no endpoint"),
        ];
        for (yaml, want) in cases {
            let e = parse(yaml).expect_err(yaml);
            assert!(e.contains(want), "{yaml}: {e} should name {want}");
            assert!(e.starts_with("--remote-write.config: "), "{e}");
        }
    }

    #[test]
    fn an_empty_configuration_keeps_the_ruler_stateful() {
        assert!(remote_write_endpoints(None, None).unwrap().is_none());
        assert!(
            remote_write_endpoints(Some("  \n"), None)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            remote_write_endpoints(Some("x"), Some(Path::new("/nonexistent"))),
            Err(RemoteWriteConfigError::Exclusive)
        ));
        let c = remote_write_endpoints(
            Some("remote_write:\n- url: http://127.0.0.1:1/api/v1/receive\n  authorization: {credentials: tok}\n"),
            None,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(&c[0].auth, Some(Auth::Bearer(Secret::Inline(t))) if t == "tok"));
    }
}
