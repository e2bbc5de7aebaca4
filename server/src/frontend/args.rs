//! The flags of `gauntlet query-frontend`, named and defaulted as `thanos query-frontend`'s,
//! and the response-cache configuration (Thanos's YAML).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::query::cmd::duration;

/// Flags of `gauntlet query-frontend`.
#[derive(Debug, Args, Clone)]
pub struct FrontendArgs {
    /// Address of the query API, /metrics, /-/ready and /-/healthy.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    pub http_address: String,
    /// How long to wait after a stop signal before the HTTP server stops, at most.
    #[arg(long = "http-grace-period", default_value = "2m", value_parser = duration)]
    pub http_grace_period: Duration,
    /// The HTTP server's web configuration file (TLS and basic auth) and timeouts.
    #[command(flatten)]
    pub http: crate::http::webconfig::HttpConfigArgs,
    /// URL of the downstream Prometheus-compatible query API (a querier), with any path
    /// prefix.
    #[arg(
        long = "query-frontend.downstream-url",
        default_value = "http://localhost:9090"
    )]
    pub downstream_url: String,
    /// Headers forwarded to the downstream querier (repeatable); others are not sent on
    /// split range queries.
    #[arg(
        long = "query-frontend.forward-header",
        value_name = "HTTP-HEADER-NAME"
    )]
    pub forward_headers: Vec<String>,
    /// Compress HTTP responses (gzip) for clients that accept it.
    #[arg(long = "query-frontend.compress-responses")]
    pub compress_responses: bool,
    /// Log queries slower than this; 0 logs none, a negative duration logs all.
    #[arg(
        long = "query-frontend.log-queries-longer-than",
        default_value = "0",
        value_parser = signed_duration_ms,
        allow_hyphen_values = true
    )]
    pub log_queries_longer_than_ms: i64,
    /// HTTP header naming the tenant a request is for (its cache entries are its own).
    #[arg(
        long = "query-frontend.tenant-header",
        default_value = "THANOS-TENANT",
        hide = true
    )]
    pub tenant_header: String,
    /// Tenant of requests without the tenant header.
    #[arg(
        long = "query-frontend.default-tenant-id",
        default_value = "default-tenant",
        hide = true
    )]
    pub default_tenant: String,
    /// Move range queries' start and end down onto their step, for better cacheability
    /// (Grafana asks that way already).
    #[arg(
        long = "query-range.align-range-with-step",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub align_range_with_step: bool,
    /// Thanos's spelling of --query-range.align-range-with-step=false.
    #[arg(long = "no-query-range.align-range-with-step", hide = true)]
    pub no_align_range_with_step: bool,
    /// Ask again for downsampled data when an answer is empty or incomplete (accepted for
    /// Thanos's command lines; not built yet: answers are the querier's as it gives them).
    #[arg(
        long = "query-range.request-downsampled",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub request_downsampled: bool,
    /// Thanos's spelling of --query-range.request-downsampled=false.
    #[arg(long = "no-query-range.request-downsampled", hide = true)]
    pub no_request_downsampled: bool,
    /// Split range queries at multiples of this interval and run the parts in parallel; 0
    /// does not split. Must be above 0 with a response cache.
    #[arg(long = "query-range.split-interval", default_value = "24h", value_parser = duration)]
    pub split_interval: Duration,
    /// Most tries of one range-query part when the querier fails (5xx or no answer); then
    /// its error is returned.
    #[arg(long = "query-range.max-retries-per-request", default_value_t = 5)]
    pub max_retries: usize,
    /// Most tries of one instant query when the querier fails.
    #[arg(long = "query.max-retries-per-request", default_value_t = 5)]
    pub instant_max_retries: usize,
    /// Longest range (end - start) a range query may ask for; 0 for no limit.
    #[arg(long = "query-range.max-query-length", default_value = "0", value_parser = duration)]
    pub max_query_length: Duration,
    /// Most parts of one range query asked of the querier at a time.
    #[arg(long = "query-range.max-query-parallelism", default_value_t = 14)]
    pub max_query_parallelism: usize,
    /// The newest part of a range query's answer that is never cached: its data may still
    /// change.
    #[arg(
        long = "query-range.response-cache-max-freshness",
        default_value = "1m",
        value_parser = duration
    )]
    pub max_freshness: Duration,
    /// `partial_response` of range queries that do not give it.
    #[arg(
        long = "query-range.partial-response",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub partial_response: bool,
    /// Thanos's spelling of --query-range.partial-response=false.
    #[arg(long = "no-query-range.partial-response", hide = true)]
    pub no_partial_response: bool,
    /// Response cache of range queries (Thanos's YAML: `type: IN-MEMORY` with `config:`
    /// `max_size`, `max_size_items`, `validity`). Without one nothing is cached.
    #[arg(long = "query-range.response-cache-config", value_name = "YAML")]
    pub response_cache_config: Option<String>,
    /// As --query-range.response-cache-config, from a file.
    #[arg(long = "query-range.response-cache-config-file", value_name = "FILE")]
    pub response_cache_config_file: Option<PathBuf>,
    /// Split label and series requests by this interval (accepted; label and series
    /// requests are passed through whole for now).
    #[arg(long = "labels.split-interval", default_value = "24h", value_parser = duration)]
    pub labels_split_interval: Duration,
    /// Most tries of one label or series request when the querier fails.
    #[arg(long = "labels.max-retries-per-request", default_value_t = 5)]
    pub labels_max_retries: usize,
    /// Most label requests asked at a time (accepted; see --labels.split-interval).
    #[arg(long = "labels.max-query-parallelism", default_value_t = 14)]
    pub labels_max_query_parallelism: usize,
    /// Response cache of label and series requests (Thanos's YAML; checked, not used yet).
    #[arg(long = "labels.response-cache-config", value_name = "YAML")]
    pub labels_response_cache_config: Option<String>,
    /// As --labels.response-cache-config, from a file.
    #[arg(long = "labels.response-cache-config-file", value_name = "FILE")]
    pub labels_response_cache_config_file: Option<PathBuf>,
}

impl FrontendArgs {
    /// Whether range queries are aligned to their step (`--[no-]query-range.align-range-with-step`).
    pub fn align(&self) -> bool {
        self.align_range_with_step && !self.no_align_range_with_step
    }

    /// The `partial_response` of range queries that do not give it
    /// (`--[no-]query-range.partial-response`).
    pub fn partial_response(&self) -> bool {
        self.partial_response && !self.no_partial_response
    }
}

/// A duration that may be negative, ms.
fn signed_duration_ms(s: &str) -> Result<i64, String> {
    match s.strip_prefix('-') {
        Some(rest) => Ok(-crate::http::params::parse_duration(rest)?),
        None => crate::http::params::parse_duration(s),
    }
}

/// A response cache, as its YAML names it.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheConfig {
    /// `type: IN-MEMORY`.
    InMemory {
        /// `max_size`, bytes (0: no bound).
        max_bytes: u64,
        /// `max_size_items` (0: no bound).
        max_items: usize,
        /// `validity` (`None`: entries do not expire).
        validity: Option<Duration>,
    },
}

/// The response cache `yaml` (or the file `file`) configures, if either is given; `flag`
/// names them in errors. `MEMCACHED` and `REDIS` are read but not built yet: they stop the
/// frontend with an error saying so.
pub fn cache_config(
    flag: &str,
    yaml: Option<&str>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<CacheConfig>> {
    let text = match (yaml, file) {
        (Some(y), _) if !y.trim().is_empty() => y.to_string(),
        (_, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {flag}-file {}", p.display()))?,
        _ => return Ok(None),
    };
    parse_cache_config(&text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// Reads Thanos's cache YAML: `type` and its `config`.
fn parse_cache_config(text: &str) -> Result<Option<CacheConfig>, String> {
    let v: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| format!("parsing the YAML: {e}"))?;
    if v.is_null() {
        return Ok(None);
    }
    let map = v
        .as_mapping()
        .ok_or("want a mapping with `type` and `config`")?;
    for k in map.keys() {
        match k.as_str() {
            Some("type" | "config") => {}
            other => return Err(format!("unknown field {other:?}")),
        }
    }
    let kind = v["type"].as_str().unwrap_or_default().to_ascii_uppercase();
    let config = &v["config"];
    match kind.as_str() {
        "IN-MEMORY" => {
            let max_bytes = match &config["max_size"] {
                serde_yaml::Value::Null => 0,
                serde_yaml::Value::Number(n) => n.as_u64().ok_or("max_size: not a size")?,
                serde_yaml::Value::String(s) if s.is_empty() => 0,
                serde_yaml::Value::String(s) => {
                    crate::store::parse_bytes(s).map_err(|e| format!("max_size: {e}"))?
                }
                _ => return Err("max_size: not a size".into()),
            };
            let max_items = match &config["max_size_items"] {
                serde_yaml::Value::Null => 0,
                n => n.as_u64().ok_or("max_size_items: not a number")? as usize,
            };
            let validity = match &config["validity"] {
                serde_yaml::Value::Null => None,
                serde_yaml::Value::String(s) => {
                    Some(duration(s).map_err(|e| format!("validity: {e}"))?)
                }
                _ => return Err("validity: not a duration".into()),
            }
            .filter(|d| !d.is_zero());
            Ok(Some(CacheConfig::InMemory {
                max_bytes,
                max_items,
                validity,
            }))
        }
        "MEMCACHED" | "REDIS" => Err(format!(
            "type {kind} is not built into gauntlet query-frontend yet; use type IN-MEMORY"
        )),
        "" => Err("no type: want IN-MEMORY, MEMCACHED or REDIS".into()),
        other => Err(format!(
            "unknown type {other:?}: want IN-MEMORY, MEMCACHED or REDIS"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_config_reads_thanos_fields() {
        let c = parse_cache_config(
            "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_size_items: 100\n  validity: 10m\n",
        )
        .unwrap();
        assert_eq!(
            c,
            Some(CacheConfig::InMemory {
                max_bytes: 1 << 30,
                max_items: 100,
                validity: Some(Duration::from_secs(600)),
            })
        );
        let bare = parse_cache_config("type: in-memory\n").unwrap();
        assert_eq!(
            bare,
            Some(CacheConfig::InMemory {
                max_bytes: 0,
                max_items: 0,
                validity: None
            })
        );
    }

    #[test]
    fn memcached_and_redis_fail_clearly() {
        let e = parse_cache_config("type: MEMCACHED\nconfig:\n  addresses: [a:1]\n").unwrap_err();
        assert!(e.contains("not built"), "{e}");
        let e = parse_cache_config("type: REDIS\n").unwrap_err();
        assert!(e.contains("not built"), "{e}");
        assert!(parse_cache_config("type: FOO\n").is_err());
        assert!(parse_cache_config("tpye: IN-MEMORY\n").is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        fe: FrontendArgs,
    }

    fn args(flags: &[&str]) -> FrontendArgs {
        let argv = std::iter::once("query-frontend").chain(flags.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().fe
    }

    #[test]
    fn defaults_and_bool_spellings_are_thanos_s() {
        let d = args(&[]);
        assert!(d.align() && d.partial_response() && d.request_downsampled);
        assert_eq!(d.split_interval, Duration::from_secs(24 * 3600));
        assert_eq!((d.max_retries, d.max_query_parallelism), (5, 14));
        assert_eq!(d.max_freshness, Duration::from_secs(60));
        assert_eq!(d.downstream_url, "http://localhost:9090");
        assert!(!args(&["--no-query-range.align-range-with-step"]).align());
        assert!(!args(&["--query-range.align-range-with-step=false"]).align());
        assert!(!args(&["--no-query-range.partial-response"]).partial_response());
        let fwd = args(&[
            "--query-frontend.forward-header=Authorization",
            "--query-frontend.forward-header=X-Org",
        ]);
        assert_eq!(fwd.forward_headers, vec!["Authorization", "X-Org"]);
    }

    #[test]
    fn negative_log_threshold_logs_all() {
        assert_eq!(signed_duration_ms("-1s"), Ok(-1000));
        assert_eq!(signed_duration_ms("0"), Ok(0));
        assert_eq!(signed_duration_ms("2s"), Ok(2000));
    }
}
