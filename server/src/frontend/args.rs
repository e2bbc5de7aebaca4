//! The flags of `gauntlet query-frontend`, named and defaulted as `thanos query-frontend`'s,
//! and the response-cache configuration (Thanos's YAML).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::remote_cache::{MemcachedConfig, RedisConfig};
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
    /// How requests are split, cached, tried again and logged.
    #[command(flatten)]
    pub settings: FrontendSettings,
}

/// The frontend's flags but its own HTTP server and downstream URL: what `gauntlet all` takes
/// too for the frontend it can run in front of its own query API.
#[derive(Debug, Args, Clone)]
pub struct FrontendSettings {
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
    /// Ask again for downsampled data when a `max_source_resolution=auto` answer is empty or
    /// misses the front of its range: at 5m, then at 1h, for what is missing.
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
    /// Shards each shardable query (`sum by`, `without`, ...) is run as, each over the series
    /// of one hash bucket (`shard_info` downstream); 0 or 1 turns vertical sharding off.
    #[arg(long = "query-frontend.vertical-shards", default_value_t = 0)]
    pub vertical_shards: usize,
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
    /// Split label and series requests at multiples of this interval and ask the parts in
    /// parallel; 0 does not split. Must be above 0 with a labels response cache.
    #[arg(long = "labels.split-interval", default_value = "24h", value_parser = duration)]
    pub labels_split_interval: Duration,
    /// Most tries of one label or series request when the querier fails.
    #[arg(long = "labels.max-retries-per-request", default_value_t = 5)]
    pub labels_max_retries: usize,
    /// Most parts of one label or series request asked of the querier at a time.
    #[arg(long = "labels.max-query-parallelism", default_value_t = 14)]
    pub labels_max_query_parallelism: usize,
    /// Label and series parts ending within this much of now are not cached: their data may
    /// still change.
    #[arg(
        long = "labels.response-cache-max-freshness",
        default_value = "1m",
        value_parser = duration
    )]
    pub labels_max_freshness: Duration,
    /// `partial_response` of label and series requests that do not give it.
    #[arg(
        long = "labels.partial-response",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    pub labels_partial_response: bool,
    /// Thanos's spelling of --labels.partial-response=false.
    #[arg(long = "no-labels.partial-response", hide = true)]
    pub no_labels_partial_response: bool,
    /// Time range of label and series requests that give no `start` and `end`: the last this
    /// much (0: all time, asked whole).
    #[arg(long = "labels.default-time-range", default_value = "24h", value_parser = duration)]
    pub labels_default_time_range: Duration,
    /// Response cache of label and series requests (Thanos's YAML, as
    /// --query-range.response-cache-config). Without one nothing is cached.
    #[arg(long = "labels.response-cache-config", value_name = "YAML")]
    pub labels_response_cache_config: Option<String>,
    /// As --labels.response-cache-config, from a file.
    #[arg(long = "labels.response-cache-config-file", value_name = "FILE")]
    pub labels_response_cache_config_file: Option<PathBuf>,
}

impl FrontendSettings {
    /// Whether range queries are aligned to their step (`--[no-]query-range.align-range-with-step`).
    pub fn align(&self) -> bool {
        self.align_range_with_step && !self.no_align_range_with_step
    }

    /// The `partial_response` of range queries that do not give it
    /// (`--[no-]query-range.partial-response`).
    pub fn partial_response(&self) -> bool {
        self.partial_response && !self.no_partial_response
    }

    /// Whether `auto` answers missing their front are asked again coarser
    /// (`--[no-]query-range.request-downsampled`).
    pub fn request_downsampled(&self) -> bool {
        self.request_downsampled && !self.no_request_downsampled
    }

    /// The `partial_response` of label and series requests that do not give it
    /// (`--[no-]labels.partial-response`).
    pub fn labels_partial_response(&self) -> bool {
        self.labels_partial_response && !self.no_labels_partial_response
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
    /// `type: MEMCACHED`.
    Memcached(MemcachedConfig),
    /// `type: REDIS`.
    Redis(Box<RedisConfig>),
}

/// The response cache `yaml` (or the file `file`) configures, if either is given; `flag`
/// names them in errors.
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
        "MEMCACHED" => memcached_config(config).map(|c| Some(CacheConfig::Memcached(c))),
        "REDIS" => redis_config(config).map(|c| Some(CacheConfig::Redis(Box::new(c)))),
        "" => Err("no type: want IN-MEMORY, MEMCACHED or REDIS".into()),
        other => Err(format!(
            "unknown type {other:?}: want IN-MEMORY, MEMCACHED or REDIS"
        )),
    }
}

/// The fields of `config` checked against `known` (Thanos reads its cache YAML strictly).
fn only_fields(config: &serde_yaml::Value, known: &[&str]) -> Result<(), String> {
    let Some(map) = config.as_mapping() else {
        return if config.is_null() {
            Ok(())
        } else {
            Err("config: want a mapping".into())
        };
    };
    for k in map.keys() {
        match k.as_str() {
            Some(name) if known.contains(&name) => {}
            other => return Err(format!("config: unknown field {other:?}")),
        }
    }
    Ok(())
}

/// `config.<name>` as a duration, `default` when absent (Go's `0s` is zero).
fn yaml_duration(
    config: &serde_yaml::Value,
    name: &str,
    default: Duration,
) -> Result<Duration, String> {
    match &config[name] {
        serde_yaml::Value::Null => Ok(default),
        serde_yaml::Value::String(s) => duration(s).map_err(|e| format!("{name}: {e}")),
        serde_yaml::Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
        _ => Err(format!("{name}: not a duration")),
    }
}

/// `config.<name>` as a count, `default` when absent or 0.
fn yaml_count(config: &serde_yaml::Value, name: &str, default: usize) -> Result<usize, String> {
    match &config[name] {
        serde_yaml::Value::Null => Ok(default),
        v => match v.as_u64() {
            Some(0) => Ok(default),
            Some(n) => Ok(n as usize),
            None => Err(format!("{name}: not a number")),
        },
    }
}

/// `config.<name>` as a size in bytes (`1MiB` or a number), `default` when absent or 0.
fn yaml_bytes(config: &serde_yaml::Value, name: &str, default: usize) -> Result<usize, String> {
    let n = match &config[name] {
        serde_yaml::Value::Null => 0,
        serde_yaml::Value::Number(n) => n.as_u64().ok_or(format!("{name}: not a size"))?,
        serde_yaml::Value::String(s) => {
            crate::store::parse_bytes(s).map_err(|e| format!("{name}: {e}"))?
        }
        _ => return Err(format!("{name}: not a size")),
    };
    Ok(if n == 0 { default } else { n as usize })
}

/// `config.<name>` as text, empty when absent.
fn yaml_text(config: &serde_yaml::Value, name: &str) -> Result<String, String> {
    match &config[name] {
        serde_yaml::Value::Null => Ok(String::new()),
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("{name}: not text")),
    }
}

/// Fails when `config.<name>` turns on something not built: `what` says what.
fn refuse_if_set(config: &serde_yaml::Value, name: &str, what: &str) -> Result<(), String> {
    let on = match &config[name] {
        serde_yaml::Value::Null => false,
        serde_yaml::Value::Bool(b) => *b,
        serde_yaml::Value::String(s) => !s.is_empty(),
        serde_yaml::Value::Mapping(m) => m
            .get("enabled")
            .is_some_and(|v| v.as_bool().unwrap_or(false)),
        _ => true,
    };
    if on {
        Err(format!(
            "{name}: {what} is not built into gauntlet query-frontend"
        ))
    } else {
        Ok(())
    }
}

/// Thanos's memcached client configuration, with its defaults.
fn memcached_config(config: &serde_yaml::Value) -> Result<MemcachedConfig, String> {
    only_fields(
        config,
        &[
            "addresses",
            "timeout",
            "max_idle_connections",
            "max_async_concurrency",
            "max_async_buffer_size",
            "max_get_multi_concurrency",
            "max_item_size",
            "max_get_multi_batch_size",
            "dns_provider_update_interval",
            "auto_discovery",
            "set_async_circuit_breaker_config",
            "expiration",
        ],
    )?;
    refuse_if_set(config, "auto_discovery", "memcached auto discovery")?;
    let addresses = match &config["addresses"] {
        serde_yaml::Value::Null => Vec::new(),
        serde_yaml::Value::Sequence(s) => s
            .iter()
            .map(|a| a.as_str().map(str::to_string).ok_or("addresses: not text"))
            .collect::<Result<_, _>>()?,
        serde_yaml::Value::String(s) => s.split(',').map(|a| a.trim().to_string()).collect(),
        _ => return Err("addresses: want a list".into()),
    };
    if addresses.is_empty() {
        return Err("addresses: no memcached address given".into());
    }
    for a in &addresses {
        if let Some((lookup, rest)) = crate::query::dns::split(a) {
            crate::query::dns::check(lookup, rest).map_err(|e| format!("addresses: {e}"))?;
        }
    }
    Ok(MemcachedConfig {
        addresses,
        timeout: nonzero(yaml_duration(config, "timeout", Duration::ZERO)?, 500),
        max_idle_connections: yaml_count(config, "max_idle_connections", 100)?,
        max_item_size: yaml_bytes(config, "max_item_size", 1 << 20)?,
        max_async_concurrency: yaml_count(config, "max_async_concurrency", 10)?,
        dns_update_interval: nonzero(
            yaml_duration(config, "dns_provider_update_interval", Duration::ZERO)?,
            10_000,
        ),
        expiration: yaml_duration(config, "expiration", Duration::ZERO)?,
    })
}

/// Thanos's Redis client configuration, with its defaults.
fn redis_config(config: &serde_yaml::Value) -> Result<RedisConfig, String> {
    only_fields(
        config,
        &[
            "addr",
            "prefix",
            "username",
            "password",
            "db",
            "dial_timeout",
            "read_timeout",
            "write_timeout",
            "max_get_multi_concurrency",
            "get_multi_batch_size",
            "max_set_multi_concurrency",
            "set_multi_batch_size",
            "tls_enabled",
            "tls_config",
            "cache_size",
            "master_name",
            "max_async_buffer_size",
            "max_async_concurrency",
            "set_async_circuit_breaker_config",
            "expiration",
        ],
    )?;
    refuse_if_set(config, "cache_size", "Redis client-side caching")?;
    let addr = yaml_text(config, "addr")?;
    if addr.is_empty() {
        return Err("addr: no Redis address given".into());
    }
    let master_name = yaml_text(config, "master_name")?;
    let cluster = addr.contains(',') && master_name.is_empty();
    let tls_enabled = match &config["tls_enabled"] {
        serde_yaml::Value::Null => false,
        v => v.as_bool().ok_or("tls_enabled: not true or false")?,
    };
    let tls = if tls_enabled {
        let raw = match &config["tls_config"] {
            serde_yaml::Value::Null => Default::default(),
            v => serde_yaml::from_value(v.clone()).map_err(|e| format!("tls_config: {e}"))?,
        };
        Some(raw)
    } else {
        None
    };
    let db = match &config["db"] {
        serde_yaml::Value::Null => 0,
        v => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or("db: not a number")?,
    };
    if cluster && db != 0 {
        return Err(format!(
            "db: {db} with several addresses (a Redis Cluster, which has only db 0)"
        ));
    }
    Ok(RedisConfig {
        addr,
        prefix: yaml_text(config, "prefix")?,
        username: yaml_text(config, "username")?,
        password: yaml_text(config, "password")?,
        db,
        dial_timeout: nonzero(yaml_duration(config, "dial_timeout", Duration::ZERO)?, 5000),
        read_timeout: nonzero(yaml_duration(config, "read_timeout", Duration::ZERO)?, 3000),
        write_timeout: nonzero(
            yaml_duration(config, "write_timeout", Duration::ZERO)?,
            3000,
        ),
        max_async_concurrency: yaml_count(config, "max_async_concurrency", 20)?,
        expiration: yaml_duration(config, "expiration", Duration::ZERO)?,
        tls,
        master_name,
    })
}

/// `d`, or `default_ms` when it is zero (Thanos's defaults for unset client timeouts).
fn nonzero(d: Duration, default_ms: u64) -> Duration {
    if d.is_zero() {
        Duration::from_millis(default_ms)
    } else {
        d
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
    fn memcached_and_redis_configs_read_thanos_fields_and_defaults() {
        let m = parse_cache_config(
            "type: MEMCACHED\nconfig:\n  addresses: [\"127.0.0.1:11211\", \"dns+mc:11211\"]\n  timeout: 1s\n  max_item_size: 2MiB\n  expiration: 1h\n  max_get_multi_batch_size: 0\n",
        )
        .unwrap();
        let Some(CacheConfig::Memcached(m)) = m else {
            panic!("{m:?}")
        };
        assert_eq!(m.addresses, vec!["127.0.0.1:11211", "dns+mc:11211"]);
        assert_eq!(m.timeout, Duration::from_secs(1));
        assert_eq!(m.max_item_size, 2 << 20);
        assert_eq!(m.expiration, Duration::from_secs(3600));
        assert_eq!((m.max_idle_connections, m.max_async_concurrency), (100, 10));
        let r = parse_cache_config(
            "type: REDIS\nconfig:\n  addr: 127.0.0.1:6379\n  prefix: fe-\n  db: 2\n  password: s\n  tls_enabled: false\n",
        )
        .unwrap();
        let Some(CacheConfig::Redis(r)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            (r.addr.as_str(), r.prefix.as_str(), r.db),
            ("127.0.0.1:6379", "fe-", 2)
        );
        assert_eq!(r.dial_timeout, Duration::from_secs(5));
        assert_eq!(r.expiration, Duration::ZERO);
        assert_eq!((r.tls.clone(), r.master_name.as_str()), (None, ""));
        // TLS and Sentinel.
        let r = parse_cache_config(
            "type: REDIS\nconfig:\n  addr: s1:26379,s2:26379\n  master_name: main\n  tls_enabled: true\n  tls_config:\n    ca_file: /ca.pem\n    server_name: redis.example\n",
        )
        .unwrap();
        let Some(CacheConfig::Redis(r)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(r.master_name, "main");
        let tls = r.tls.unwrap();
        assert_eq!(
            (tls.ca_file.as_str(), tls.server_name.as_str()),
            ("/ca.pem", "redis.example")
        );
    }

    #[test]
    fn cache_configs_that_cannot_work_fail_clearly() {
        for (yaml, want) in [
            ("type: MEMCACHED\n", "addresses"),
            (
                "type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  adresses: [b:1]\n",
                "unknown field",
            ),
            (
                "type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  auto_discovery: true\n",
                "not built",
            ),
            (
                "type: MEMCACHED\nconfig:\n  addresses: [a:1]\n  timeout: soon\n",
                "timeout",
            ),
            ("type: REDIS\n", "addr"),
            (
                "type: REDIS\nconfig:\n  addr: a:1\n  tls_enabled: true\n  tls_config:\n    ca_fil: x\n",
                "unknown field",
            ),
            (
                "type: REDIS\nconfig:\n  addr: a:1\n  tls_enabled: sure\n",
                "tls_enabled",
            ),
            (
                "type: REDIS\nconfig:\n  addr: a:1,b:2\n  db: 3\n",
                "Cluster",
            ),
            ("type: FOO\n", "unknown type"),
            ("tpye: IN-MEMORY\n", "unknown field"),
        ] {
            let e = parse_cache_config(yaml).unwrap_err();
            assert!(e.contains(want), "{yaml}: {e}");
        }
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        fe: FrontendArgs,
    }

    fn args(flags: &[&str]) -> FrontendSettings {
        let argv = std::iter::once("query-frontend").chain(flags.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .fe
            .settings
    }

    #[test]
    fn defaults_and_bool_spellings_are_thanos_s() {
        let d = args(&[]);
        assert!(d.align() && d.partial_response() && d.request_downsampled());
        assert!(!args(&["--no-query-range.request-downsampled"]).request_downsampled());
        assert_eq!(d.split_interval, Duration::from_secs(24 * 3600));
        assert_eq!((d.max_retries, d.max_query_parallelism), (5, 14));
        assert_eq!(d.max_freshness, Duration::from_secs(60));
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
