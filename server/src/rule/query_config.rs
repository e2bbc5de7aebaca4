//! Where the ruler's queries go, from Thanos Rule's flags: `--query` (repeatable) with
//! `--query.sd-files` and `--grpc-query-endpoint`, or the query endpoint configuration
//! (`--query.config[-file]`, Thanos's YAML), one or the other. Both give groups of HTTP
//! endpoints, each group with its own HTTP client settings (a `--query` address is a group of
//! its own), and the addresses of Thanos gRPC Query APIs. Everything is checked here, before the ruler starts, so a typo stops
//! it with a message naming the flag or field.
//!
//! The configuration, as Thanos reads it (unknown fields are refused; `$(NAME)` is replaced by
//! the environment variable `NAME`, which must be set):
//!
//! ```yaml
//! - http_config:
//!     basic_auth: {username: u, password: p}      # or password_file
//!     bearer_token: t                             # or bearer_token_file
//!     proxy_url: http://proxy:3128
//!     tls_config: {ca_file, cert_file, key_file, server_name, insecure_skip_verify}
//!   static_configs: ["q-0:10902", "dns+q.example:10902", "dnssrv+_http._tcp.q.example"]
//!   file_sd_configs: [{files: [queriers/*.json], refresh_interval: 5m}]
//!   scheme: http            # or https
//!   path_prefix: /thanos    # in front of /api/v1/query
//!   grpc_config:            # Thanos gRPC Query APIs (plaintext, as Thanos Rule dials them)
//!     endpoint_addresses: ["q-0:10901", "dns+q.example:10901"]
//! ```
//!
//! An entry's HTTP part with neither `static_configs` nor `file_sd_configs` names no HTTP
//! endpoint and is skipped, as Thanos skips it; its `grpc_config` addresses still count.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::alertmanager_config::{
    Auth, HttpTls, RawFileSd, RawHttpConfig, build_tls, check_address, clean_prefix, http_auth,
};
use crate::query::dns;
use crate::tls::TlsError;

/// Why the query flags or configuration were refused. Each message names the flag or field;
/// the ruler cannot start until it is fixed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryConfigError {
    /// Two flags that exclude each other were both given; give one.
    #[error("{0} and {1} cannot be given together; use one")]
    Exclusive(&'static str, &'static str),
    /// Neither `--query` nor a configuration was given: the rules would have nothing to query.
    #[error(
        "no query endpoint given: give --query, --query.sd-files, --grpc-query-endpoint, --query.config or --query.config-file"
    )]
    Missing,
    /// The configuration file could not be read.
    #[error("--query.config-file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The configuration is not valid YAML, has an unknown field or a bad value, or names no
    /// endpoint; `what` names the flag, the message the entry and field.
    #[error("{what}: {message}")]
    Yaml {
        /// The flag the YAML came from.
        what: &'static str,
        /// What is wrong and where.
        message: String,
    },
    /// The configuration refers to an environment variable that is not set; set it or
    /// remove the reference.
    #[error("{what}: found reference to unset environment variable {name:?}")]
    Env {
        /// The flag the YAML came from.
        what: &'static str,
        /// The variable.
        name: String,
    },
    /// A `--query` or `--grpc-query-endpoint` address cannot be read as a query API's
    /// address; `flag` names which.
    #[error("{flag} {addr:?}: {reason}")]
    Address {
        /// The flag the address came from.
        flag: &'static str,
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings of an entry could not be loaded.
    #[error("{what}: {source}")]
    Tls {
        /// The flag and entry.
        what: String,
        /// What failed.
        source: TlsError,
    },
}

/// One group of query API endpoints and how they are reached: one configuration entry, or
/// one `--query` address.
#[derive(Debug, Clone)]
pub struct QueryEndpointGroup {
    /// Whether the endpoints are reached over TLS (`https`), and how.
    pub tls: Option<HttpTls>,
    /// The `Authorization` each request carries.
    pub auth: Option<Auth>,
    /// The HTTP proxy requests go through (`http_config.proxy_url`).
    pub proxy_url: Option<String>,
    /// The path in front of `/api/v1/query`: empty or `/…` without a trailing slash.
    pub path_prefix: String,
    /// `host[:port]` addresses, possibly with `dns+`/`dnssrv+`/`dnssrvnoa+` prefixes.
    pub static_addresses: Vec<String>,
    /// File-SD files (glob patterns) whose targets are more addresses.
    pub sd_files: Vec<String>,
}

impl QueryEndpointGroup {
    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Whether the addresses can change while the ruler runs (DNS names, discovery files).
    pub fn is_dynamic(&self) -> bool {
        !self.sd_files.is_empty()
            || self
                .static_addresses
                .iter()
                .any(|a| dns::split(a).is_some())
    }
}

/// Every query endpoint the flags name: groups of HTTP endpoints and gRPC Query API addresses.
#[derive(Debug, Clone, Default)]
pub struct QueryEndpoints {
    /// The query APIs reached over HTTP (`/api/v1/query`), by group.
    pub http: Vec<QueryEndpointGroup>,
    /// `host:port` addresses of Thanos gRPC Query APIs (`thanos.Query`), possibly with
    /// `dns+`/`dnssrv+`/`dnssrvnoa+` prefixes; reached in plaintext, as Thanos Rule reaches
    /// them.
    pub grpc: Vec<String>,
}

impl QueryEndpoints {
    /// Whether the gRPC addresses can change while the ruler runs (DNS names).
    pub fn grpc_is_dynamic(&self) -> bool {
        self.grpc.iter().any(|a| dns::split(a).is_some())
    }
}

/// The endpoints the flags give: `addrs` (`--query`), `sd_files` (`--query.sd-files`, one
/// group of plain-HTTP endpoints whose addresses the files list) and `grpc` (the addresses of
/// `--grpc-query-endpoint`), or the configuration given as text (`--query.config`) or in a
/// file (`--query.config-file`). An empty configuration counts as not given, as in Thanos.
pub fn query_endpoints(
    addrs: &[String],
    sd_files: &[String],
    grpc: &[String],
    config: Option<&str>,
    config_file: Option<&Path>,
) -> Result<QueryEndpoints, QueryConfigError> {
    let yaml = match (config, config_file) {
        (Some(_), Some(_)) => {
            return Err(QueryConfigError::Exclusive(
                "--query.config",
                "--query.config-file",
            ));
        }
        (Some(y), None) => Some(("--query.config", y.to_string())),
        (None, Some(p)) => Some((
            "--query.config-file",
            std::fs::read_to_string(p).map_err(|source| QueryConfigError::File {
                path: p.to_path_buf(),
                source,
            })?,
        )),
        (None, None) => None,
    };
    let yaml = match yaml {
        Some((what, text)) => Some((what, expand_env(what, &text)?)),
        None => None,
    }
    .filter(|(_, text)| !text.is_empty());
    match yaml {
        Some((what, _)) if !addrs.is_empty() => Err(QueryConfigError::Exclusive("--query", what)),
        Some((what, _)) if !sd_files.is_empty() => {
            Err(QueryConfigError::Exclusive("--query.sd-files", what))
        }
        Some((what, _)) if !grpc.is_empty() => {
            Err(QueryConfigError::Exclusive("--grpc-query-endpoint", what))
        }
        Some((what, text)) => parse_query_config(what, &text),
        None if addrs.is_empty() && sd_files.is_empty() && grpc.is_empty() => {
            Err(QueryConfigError::Missing)
        }
        None => {
            let mut http = parse_addresses(addrs)?;
            if !sd_files.is_empty() {
                http.push(sd_files_group(sd_files));
            }
            Ok(QueryEndpoints {
                http,
                grpc: parse_grpc_addresses(grpc)?,
            })
        }
    }
}

/// `--grpc-query-endpoint` addresses as Thanos reads them: `host:port` or a `dns+`/`dnssrv+`
/// name, none empty; one given twice is queried once.
pub fn parse_grpc_addresses(addrs: &[String]) -> Result<Vec<String>, QueryConfigError> {
    let mut out: Vec<String> = Vec::with_capacity(addrs.len());
    for given in addrs {
        let bad = |reason: String| QueryConfigError::Address {
            flag: "--grpc-query-endpoint",
            addr: given.clone(),
            reason,
        };
        if given.contains("://") {
            return Err(bad("want host:port, without a scheme".into()));
        }
        check_query_address(given).map_err(bad)?;
        if !out.contains(given) {
            out.push(given.clone());
        }
    }
    Ok(out)
}

/// The group `--query.sd-files` makes, as Thanos makes it: plain HTTP, no prefix, its
/// addresses what the files (glob patterns) list.
fn sd_files_group(sd_files: &[String]) -> QueryEndpointGroup {
    QueryEndpointGroup {
        tls: None,
        auth: None,
        proxy_url: None,
        path_prefix: String::new(),
        static_addresses: Vec::new(),
        sd_files: sd_files.to_vec(),
    }
}

/// `--query` addresses as Thanos reads them: `host:port` (http), or a URL whose scheme is
/// `http` or `https` and whose path is the prefix; the host may carry a `dns+`/`dnssrv+`
/// prefix. Each is a group of its own; one given twice is refused.
pub fn parse_addresses(addrs: &[String]) -> Result<Vec<QueryEndpointGroup>, QueryConfigError> {
    let mut out: Vec<QueryEndpointGroup> = Vec::new();
    for (i, given) in addrs.iter().enumerate() {
        let bad = |reason: &str| QueryConfigError::Address {
            flag: "--query",
            addr: given.clone(),
            reason: reason.to_string(),
        };
        if given.is_empty() {
            return Err(bad("an empty address"));
        }
        if addrs[..i].contains(given) {
            return Err(bad("given twice"));
        }
        let (scheme, rest) = given.split_once("://").unwrap_or(("http", given));
        let tls = match scheme {
            "http" => None,
            "https" => Some(build_tls(&Default::default()).map_err(|e| bad(&e.to_string()))?),
            other => return Err(bad(&format!("scheme {other:?}: want http or https"))),
        };
        // As Go's URL parser: the query and fragment are not part of the address.
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        // Credentials in the URL are not sent (Thanos drops them too).
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        check_query_address(host).map_err(|e| bad(&e))?;
        out.push(QueryEndpointGroup {
            tls,
            auth: None,
            proxy_url: None,
            path_prefix: clean_prefix(path),
            static_addresses: vec![host.to_string()],
            sd_files: Vec::new(),
        });
    }
    Ok(out)
}

/// `message` about address `addr`, starting with the address (once).
fn named(addr: &str, message: String) -> String {
    if message.starts_with(&format!("{addr:?}")) {
        message
    } else {
        format!("{addr:?}: {message}")
    }
}

/// A query API address: `host[:port]` or a name to look up in DNS.
fn check_query_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("no host".into());
    }
    check_address(addr)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueryEndpoint {
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
    grpc_config: Option<RawGrpcConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrpcConfig {
    #[serde(default)]
    endpoint_addresses: Vec<String>,
}

/// The query endpoint configuration's endpoints; `what` is the flag it came from.
pub fn parse_query_config(
    what: &'static str,
    yaml: &str,
) -> Result<QueryEndpoints, QueryConfigError> {
    let yerr = |message: String| QueryConfigError::Yaml { what, message };
    let raw: Option<Vec<RawQueryEndpoint>> =
        serde_yaml::from_str(yaml).map_err(|e| yerr(e.to_string()))?;
    let mut out = Vec::new();
    let mut grpc: Vec<String> = Vec::new();
    for (i, e) in raw.unwrap_or_default().into_iter().enumerate() {
        let field = |f: &str, m: String| yerr(format!("entry {i}: {f}: {m}"));
        for a in e.grpc_config.iter().flat_map(|g| &g.endpoint_addresses) {
            if a.contains("://") {
                return Err(field(
                    "grpc_config.endpoint_addresses",
                    format!("{a:?}: want host:port, without a scheme"),
                ));
            }
            check_query_address(a)
                .map_err(|m| field("grpc_config.endpoint_addresses", named(a, m)))?;
            if !grpc.contains(a) {
                grpc.push(a.clone());
            }
        }
        if e.static_configs.is_empty() && e.file_sd_configs.is_empty() {
            continue;
        }
        let tls = match e.scheme.as_deref().unwrap_or("http") {
            "http" | "" => None,
            "https" => Some(build_tls(&e.http_config.tls_config).map_err(|source| {
                QueryConfigError::Tls {
                    what: format!("{what}: entry {i}: http_config.tls_config"),
                    source,
                }
            })?),
            other => return Err(field("scheme", format!("{other:?}: want http or https"))),
        };
        for a in &e.static_configs {
            check_query_address(a).map_err(|m| field("static_configs", named(a, m)))?;
        }
        let mut sd_files = Vec::new();
        for sd in &e.file_sd_configs {
            if sd.files.is_empty() {
                return Err(field(
                    "file_sd_configs",
                    "file service discovery config must contain at least one path name".into(),
                ));
            }
            for f in &sd.files {
                check_sd_path(f).map_err(|m| field("file_sd_configs.files", m))?;
                sd_files.push(f.clone());
            }
            if let Some(r) = &sd.refresh_interval
                && gauntlet_promql::parse_duration_ms(r).is_none()
            {
                return Err(field(
                    "file_sd_configs.refresh_interval",
                    format!("{r:?} is not a duration"),
                ));
            }
        }
        let auth = http_auth(&e.http_config).map_err(|m| field("http_config", m))?;
        let proxy_url = match e.http_config.proxy_url.as_str() {
            "" => None,
            p => {
                reqwest::Proxy::all(p)
                    .map_err(|err| field("http_config.proxy_url", format!("{p:?}: {err}")))?;
                Some(p.to_string())
            }
        };
        out.push(QueryEndpointGroup {
            tls,
            auth,
            proxy_url,
            path_prefix: clean_prefix(&e.path_prefix),
            static_addresses: e.static_configs,
            sd_files,
        });
    }
    if out.is_empty() && grpc.is_empty() {
        return Err(yerr(
            "no query endpoint: no entry has static_configs, file_sd_configs or \
             grpc_config.endpoint_addresses"
                .into(),
        ));
    }
    Ok(QueryEndpoints { http: out, grpc })
}

/// Refuses what Prometheus's file discovery refuses: a name not ending in `.json`, `.yml` or
/// `.yaml`, or with a `*` before its last path element.
fn check_sd_path(name: &str) -> Result<(), String> {
    let after_star = name.find('*').map(|i| &name[i..]);
    let ext_ok = [".json", ".yml", ".yaml", ".JSON", ".YML", ".YAML"]
        .iter()
        .any(|e| name.ends_with(e));
    if !ext_ok || after_star.is_some_and(|rest| rest.contains('/')) {
        return Err(format!(
            "path name {name:?} is not valid for file discovery (a .json, .yml or .yaml \
             file; `*` only in its last path element)"
        ));
    }
    Ok(())
}

/// `$(NAME)` replaced by the environment variable `NAME` (letters, digits, `_`), as Thanos
/// substitutes its configuration flags.
pub(super) fn expand_env(what: &'static str, text: &str) -> Result<String, QueryConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("$(") {
        let after = &rest[i + 2..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len == 0 || !after[name_len..].starts_with(')') {
            out.push_str(&rest[..i + 2]);
            rest = after;
            continue;
        }
        let name = &after[..name_len];
        let value = std::env::var(name).map_err(|_| QueryConfigError::Env {
            what,
            name: name.to_string(),
        })?;
        out.push_str(&rest[..i]);
        out.push_str(&value);
        rest = &after[name_len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(yaml: &str) -> Result<Vec<QueryEndpointGroup>, String> {
        parse_query_config("--query.config", yaml)
            .map(|e| e.http)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_configuration_is_read_as_thanos_documents_it() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let yaml = format!(
            r#"
- http_config:
    basic_auth: {{username: rule, password_file: {pw}}}
    proxy_url: ""
    tls_config: {{ca_file: "", cert_file: "", key_file: "", server_name: "", insecure_skip_verify: false}}
    transport_config: {{max_idle_conns: 10}}
  static_configs: ["q-0:10902", "dns+q.example:10902"]
  file_sd_configs:
  - files: [queriers/*.json, more.yml]
    refresh_interval: 0s
  scheme: http
  path_prefix: thanos/
  grpc_config:
    endpoint_addresses: []
- static_configs: [q-1:9090]
  http_config: {{bearer_token: tok, proxy_url: "http://proxy:3128"}}
- scheme: https
  grpc_config: {{endpoint_addresses: []}}
"#,
            pw = pw.display()
        );
        let g = groups(&yaml).unwrap();
        assert_eq!(g.len(), 2, "the entry without endpoints is skipped");
        assert_eq!(g[0].scheme(), "http");
        assert_eq!(g[0].path_prefix, "/thanos");
        assert_eq!(g[0].static_addresses, ["q-0:10902", "dns+q.example:10902"]);
        assert_eq!(g[0].sd_files, ["queriers/*.json", "more.yml"]);
        assert!(g[0].is_dynamic());
        match &g[0].auth {
            Some(Auth::Basic { username, password }) => {
                assert_eq!(username, "rule");
                assert_eq!(password.read().unwrap(), "s3cret");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&g[1].auth, Some(Auth::Bearer(t)) if t.read().unwrap() == "tok"));
        assert_eq!(g[1].proxy_url.as_deref(), Some("http://proxy:3128"));
        assert_eq!(g[1].path_prefix, "");
        assert!(!g[1].is_dynamic());
    }

    #[test]
    fn bad_configurations_are_refused_naming_the_field() {
        let cases = [
            (
                "- static_configs: [q:1]\n  bogus: 1\n",
                "unknown field `bogus`",
            ),
            ("static_configs: [q:1]\n", "invalid type"),
            (
                "- static_configs: [q:1]\n  scheme: ftp\n",
                "entry 0: scheme: \"ftp\"",
            ),
            (
                "- static_configs: [\"http://q:1\"]\n",
                "entry 0: static_configs: \"http://q:1\"",
            ),
            ("- static_configs: [\"dns+q\"]\n", "entry 0: static_configs"),
            (
                "- file_sd_configs: [{files: [q.txt]}]\n",
                "path name \"q.txt\" is not valid",
            ),
            (
                "- file_sd_configs: [{files: [\"a*/q.json\"]}]\n",
                "path name \"a*/q.json\" is not valid",
            ),
            (
                "- file_sd_configs: [{files: []}]\n",
                "must contain at least one path name",
            ),
            (
                "- file_sd_configs: [{files: [q.json], refresh_interval: soon}]\n",
                "refresh_interval: \"soon\"",
            ),
            (
                "- static_configs: [q:1]\n  http_config: {bearer_token: a, basic_auth: {username: u}}\n",
                "basic_auth and bearer_token cannot be given together",
            ),
            (
                "- static_configs: [q:1]\n  http_config: {bearer_token_file: /nonexistent/t}\n",
                "bearer_token_file /nonexistent/t",
            ),
            (
                "- static_configs: [q:1]\n  http_config: {tls_config: {cert_file: c.pem}}\n  scheme: https\n",
                "cert_file needs key_file",
            ),
            (
                "- static_configs: [q:1]\n  http_config: {proxy_url: \"::\"}\n",
                "proxy_url",
            ),
            (
                "- grpc_config: {endpoint_addresses: [\"http://q:10901\"]}\n",
                "entry 0: grpc_config.endpoint_addresses: \"http://q:10901\": want host:port",
            ),
            (
                "- grpc_config: {endpoint_addresses: [\"dns+q\"]}\n",
                "entry 0: grpc_config.endpoint_addresses: \"dns+q\"",
            ),
            (
                "- grpc_config: {endpoint_addresses: [q:1], tls_config: {}}\n",
                "unknown field `tls_config`",
            ),
            ("[]\n", "no query endpoint"),
            ("- scheme: http\n", "no query endpoint"),
        ];
        for (yaml, want) in cases {
            let err = groups(yaml).expect_err(yaml);
            assert!(err.starts_with("--query.config: "), "{err}");
            assert!(err.contains(want), "{yaml}: {err} (want {want:?})");
        }
    }

    #[test]
    fn flags_exclude_each_other_as_in_thanos() {
        let q = vec!["q:9090".to_string()];
        let yaml = "- static_configs: [q:1]\n";
        let err = |r: Result<QueryEndpoints, QueryConfigError>| r.unwrap_err().to_string();
        assert_eq!(
            err(query_endpoints(&q, &[], &[], Some(yaml), None)),
            "--query and --query.config cannot be given together; use one"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("q.yml");
        std::fs::write(&f, yaml).unwrap();
        assert!(
            err(query_endpoints(&[], &[], &[], Some(yaml), Some(&f))).contains("cannot be given")
        );
        assert!(err(query_endpoints(&q, &[], &[], None, Some(&f))).contains("--query.config-file"));
        assert_eq!(
            query_endpoints(&[], &[], &[], None, Some(&f))
                .unwrap()
                .http
                .len(),
            1
        );
        assert!(
            err(query_endpoints(
                &[],
                &[],
                &[],
                None,
                Some(&dir.path().join("none.yml"))
            ))
            .starts_with("--query.config-file ")
        );
        assert!(
            err(query_endpoints(&[], &[], &[], None, None)).contains("no query endpoint given")
        );
        // An empty configuration is no configuration: --query is used.
        assert_eq!(
            query_endpoints(&q, &[], &[], Some(""), None)
                .unwrap()
                .http
                .len(),
            1
        );
        // --query.sd-files: one more group, of plain-HTTP endpoints the files list; alone it
        // is enough, and it excludes a configuration as --query does.
        let sd = vec!["/etc/q/*.json".to_string()];
        let g = query_endpoints(&q, &sd, &[], None, None).unwrap().http;
        assert_eq!(g.len(), 2);
        assert_eq!(g[1].sd_files, sd);
        assert!(g[1].static_addresses.is_empty() && g[1].tls.is_none() && g[1].is_dynamic());
        assert_eq!(
            query_endpoints(&[], &sd, &[], None, None)
                .unwrap()
                .http
                .len(),
            1
        );
        assert_eq!(
            err(query_endpoints(&[], &sd, &[], Some(yaml), None)),
            "--query.sd-files and --query.config cannot be given together; use one"
        );
    }

    #[test]
    fn grpc_query_endpoints_come_from_the_flag_or_the_configuration() {
        let grpc = vec![
            "q:10901".to_string(),
            "dns+q2:10901".into(),
            "q:10901".into(),
        ];
        let e = query_endpoints(&[], &[], &grpc, None, None).unwrap();
        assert!(e.http.is_empty());
        assert_eq!(
            e.grpc,
            ["q:10901", "dns+q2:10901"],
            "a repeat is dialled once"
        );
        assert!(e.grpc_is_dynamic());
        // Beside --query, as Thanos allows.
        let both = query_endpoints(&["h:9090".into()], &[], &grpc[..1], None, None).unwrap();
        assert_eq!((both.http.len(), both.grpc.len()), (1, 1));
        assert!(!both.grpc_is_dynamic());
        let yaml = "- grpc_config: {endpoint_addresses: [q:1]}\n";
        assert_eq!(
            query_endpoints(&[], &[], &grpc, Some(yaml), None)
                .unwrap_err()
                .to_string(),
            "--grpc-query-endpoint and --query.config cannot be given together; use one"
        );
        for (bad, want) in [
            ("", "no host"),
            ("grpc://q:1", "without a scheme"),
            ("dns+q", "--grpc-query-endpoint \"dns+q\""),
        ] {
            let e = query_endpoints(&[], &[], &[bad.to_string()], None, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        // An entry may hold both parts; one with only grpc_config is enough.
        let c = parse_query_config(
            "--query.config",
            "- static_configs: [h:1]\n  grpc_config: {endpoint_addresses: [g:1, g:2]}\n\
             - grpc_config: {endpoint_addresses: [g:2, \"dns+g3:1\"]}\n",
        )
        .unwrap();
        assert_eq!(c.http.len(), 1);
        assert_eq!(c.grpc, ["g:1", "g:2", "dns+g3:1"]);
        let only = parse_query_config(
            "--query.config",
            "- grpc_config: {endpoint_addresses: [g:1]}\n",
        )
        .unwrap();
        assert!(only.http.is_empty() && only.grpc == ["g:1"]);
    }

    #[test]
    fn query_addresses_are_read_as_thanos_reads_them() {
        let a = |s: &[&str]| parse_addresses(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let g = a(&["q:9090", "http://q2:9090/prefix/", "dns+q3:9090"]).unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!((g[0].scheme(), g[0].path_prefix.as_str()), ("http", ""));
        assert_eq!(g[1].static_addresses, ["q2:9090"]);
        assert_eq!(g[1].path_prefix, "/prefix");
        assert!(g[2].is_dynamic() && !g[0].is_dynamic());
        for (bad, want) in [
            (&["q:1", "q:1"][..], "given twice"),
            (&[""][..], "empty"),
            (&["ftp://q:1"][..], "scheme \"ftp\""),
            (&["http:///x"][..], "no host"),
            (&["dns+q"][..], "--query \"dns+q\""),
        ] {
            let e = a(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn environment_variables_are_substituted() {
        let name = "GAUNTLET_TEST_QUERY_CONFIG_PASSWORD";
        let set = std::env::var(name).is_ok();
        assert!(!set, "{name} must not be set outside this test");
        assert_eq!(expand_env("f", "a $(x y) $( $").unwrap(), "a $(x y) $( $");
        let e = expand_env("--query.config", &format!("p: $({name})")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("--query.config: found reference to unset environment variable \"{name}\"")
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(expand_env("f", "[$(PATH)]").unwrap(), format!("[{path}]"));
    }
}
