//! The ruler's queries: over HTTP, Prometheus's `/api/v1/query` on the query endpoints (any
//! Thanos or Gauntlet querier, or Prometheus) of `--query` or `--query.config[-file]`, each
//! group of endpoints with its own client (TLS, credentials, proxy, path prefix); over gRPC,
//! Thanos's Query API on the endpoints of `--grpc-query-endpoint` or `grpc_config`
//! ([`super::query_grpc`]). Round robin over all of them, HTTP and gRPC in one rotation, the
//! next endpoint tried when one fails to answer; `dns+`/`dnssrv+` addresses looked up and
//! `file_sd_configs` and `--query.sd-files` files read again every `--query.sd-dns-interval`
//! (or `--query.sd-interval`, if shorter), and within a second of a change to one of them. HTTP queries are POSTed forms, or GETs with
//! `--query.http-method GET`. An answer's warnings are logged and the answer used, as Thanos
//! Rule does.
//!
//! An HTTP query carries what Thanos Rule's carries: the expression, the evaluation time, `dedup`,
//! `partial_response` and the `explain`/`analyze`/`engine` defaults, and no step: a subquery
//! without one is evaluated at the querier's own default resolution, as under Thanos Rule.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use gauntlet_engine::labels::Labels;
use gauntlet_promql::InstantSample;
use gauntlet_promql::rules::group::RuleQuerier;
use serde_json::Value;

use super::alertmanager_config::Auth;
use super::query_config::{QueryEndpointGroup, QueryEndpoints};
use super::query_grpc::GrpcEndpoints;
use super::query_histogram::parse_histogram;
use crate::query::dns::{self, Dns};

/// One group of query endpoints, its client and the base URLs it resolves to now.
#[derive(Debug)]
struct Endpoints {
    config: QueryEndpointGroup,
    client: reqwest::Client,
    /// `scheme://host:port/prefix` of each endpoint, after DNS and file discovery.
    resolved: RwLock<Vec<String>>,
    /// What each discovery file listed when last read: kept while it cannot be read.
    sd_last: Mutex<HashMap<PathBuf, Vec<String>>>,
}

/// The HTTP method of rule queries (`--query.http-method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryMethod {
    /// The query's parameters in the URL.
    Get,
    /// The query's parameters in a form body (Thanos's default: long expressions fit).
    Post,
}

impl QueryMethod {
    /// `GET` or `POST`, spelled as Thanos accepts them.
    pub fn parse(s: &str) -> Result<QueryMethod, String> {
        match s {
            "GET" => Ok(QueryMethod::Get),
            "POST" => Ok(QueryMethod::Post),
            other => Err(format!("{other:?}: want GET or POST")),
        }
    }
}

/// Queries the configured query endpoints, over HTTP and gRPC.
#[derive(Debug)]
pub struct RemoteQuerier {
    groups: Vec<Endpoints>,
    grpc: GrpcEndpoints,
    /// Whether a gRPC address is a DNS name, looked up on every refresh.
    grpc_dynamic: bool,
    method: QueryMethod,
    next: AtomicUsize,
    runtime: tokio::runtime::Handle,
    dns: OnceLock<Result<Dns, String>>,
}

impl RemoteQuerier {
    /// A querier over `endpoints` (see [`super::query_config::query_endpoints`]), each HTTP
    /// request sent with `method`, every request bounded by `timeout`; requests are made on
    /// `runtime`. Addresses that need no lookup are usable at once;
    /// [`RemoteQuerier::refresh`] finds the others.
    pub fn new(
        endpoints: QueryEndpoints,
        timeout: Duration,
        method: QueryMethod,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<RemoteQuerier>, String> {
        if endpoints.http.is_empty() && endpoints.grpc.is_empty() {
            return Err("no query endpoint given".into());
        }
        let grpc_dynamic = endpoints.grpc_is_dynamic();
        let mut out = Vec::with_capacity(endpoints.http.len());
        for config in endpoints.http {
            let mut b = reqwest::Client::builder()
                .timeout(timeout)
                .user_agent(concat!("Gauntlet/", env!("CARGO_PKG_VERSION")))
                .no_proxy();
            if let Some(tls) = &config.tls {
                b = b.tls_backend_preconfigured((*tls.config).clone());
            }
            if let Some(p) = &config.proxy_url {
                b = b.proxy(reqwest::Proxy::all(p).map_err(|e| format!("proxy_url {p:?}: {e}"))?);
            }
            let client = b
                .build()
                .map_err(|e| format!("building the query client: {e}"))?;
            let now: Vec<String> = config
                .static_addresses
                .iter()
                .filter(|a| dns::split(a).is_none())
                .map(|a| base_url(&config, a))
                .collect();
            out.push(Endpoints {
                config,
                client,
                resolved: RwLock::new(now),
                sd_last: Mutex::new(HashMap::new()),
            });
        }
        Ok(Arc::new(RemoteQuerier {
            groups: out,
            grpc: GrpcEndpoints::new(endpoints.grpc, timeout),
            grpc_dynamic,
            method,
            next: AtomicUsize::new(0),
            runtime,
            dns: OnceLock::new(),
        }))
    }

    /// Registers the querier's metrics (`thanos_rule_evaluation_with_warnings_total`).
    pub fn register_metrics(&self, registry: &mut crate::metrics::Registry) {
        self.grpc.warned.register(registry);
    }

    /// The DNS resolver, made on first use; `None` (logged) when the system has none.
    fn dns(&self) -> Option<&Dns> {
        match self.dns.get_or_init(Dns::new) {
            Ok(dns) => Some(dns),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver; dns+ and dnssrv+ query endpoints are not looked up");
                None
            }
        }
    }

    /// Finds every group's endpoints again: discovery files read, DNS names looked up.
    pub async fn refresh(&self) {
        if self.grpc_dynamic {
            let mut wanted = self.grpc.addresses.clone();
            match self.dns() {
                Some(dns) => wanted = dns.resolve(&wanted).await,
                None => wanted.retain(|a| dns::split(a).is_none()),
            }
            self.grpc.set_resolved(wanted);
        }
        for g in &self.groups {
            if !g.config.is_dynamic() {
                continue;
            }
            let mut wanted = g.config.static_addresses.clone();
            wanted.extend(g.read_sd_files());
            if wanted.iter().any(|a| dns::split(a).is_some()) {
                match self.dns() {
                    Some(dns) => wanted = dns.resolve(&wanted).await,
                    None => wanted.retain(|a| dns::split(a).is_none()),
                }
            }
            let mut urls: Vec<String> = Vec::with_capacity(wanted.len());
            for a in &wanted {
                let u = base_url(&g.config, a);
                if urls.contains(&u) {
                    tracing::warn!(addr = %u, "a query endpoint is listed twice; it is queried once");
                } else {
                    urls.push(u);
                }
            }
            let mut now = g.resolved.write().unwrap_or_else(|p| p.into_inner());
            if *now != urls {
                tracing::info!(endpoints = ?urls, "query endpoints");
                *now = urls;
            }
        }
    }

    /// Keeps the `dns+` addresses and discovery files fresh every `every`, and within a second
    /// of a discovery file changing, until the runtime ends (the first refresh is the
    /// caller's).
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) {
        if !self.grpc_dynamic && !self.groups.iter().any(|g| g.config.is_dynamic()) {
            return;
        }
        let me = self.clone();
        let patterns: Vec<String> = self
            .groups
            .iter()
            .flat_map(|g| g.config.sd_files.iter().cloned())
            .collect();
        self.runtime.spawn(crate::query::file_watch::refresh_loop(
            every,
            move || crate::query::file_watch::glob_files(&patterns),
            move || {
                let me = me.clone();
                async move { me.refresh().await }
            },
        ));
    }

    /// A request for `/api/v1/{path}` on endpoint `base` with `form`, sent with the ruler's
    /// `--query.http-method` (a GET carries the form in the URL) and the endpoint's
    /// credentials.
    fn request(
        &self,
        g: &Endpoints,
        base: &str,
        path: &str,
        form: String,
    ) -> Result<reqwest::RequestBuilder, String> {
        let mut req = match self.method {
            QueryMethod::Get => g.client.get(format!("{base}/api/v1/{path}?{form}")),
            QueryMethod::Post => g
                .client
                .post(format!("{base}/api/v1/{path}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form),
        };
        match &g.config.auth {
            None => {}
            Some(Auth::Basic { username, password }) => {
                let password = password
                    .read()
                    .map_err(|e| format!("{base}: basic_auth.password_file: {e}"))?;
                req = req.basic_auth(username, Some(password));
            }
            Some(Auth::Bearer(token)) => {
                let token = token
                    .read()
                    .map_err(|e| format!("{base}: bearer_token_file: {e}"))?;
                req = req.bearer_auth(token);
            }
        }
        Ok(req)
    }

    /// One instant query on one endpoint: `Ok(Err)` is an answer that refuses the query
    /// (no other endpoint is tried), `Err` an endpoint that did not answer.
    async fn query_on(
        &self,
        g: &Endpoints,
        base: &str,
        expr: &str,
        t_ms: i64,
        partial_response: bool,
    ) -> Result<Result<Vec<InstantSample>, String>, String> {
        let form = instant_query_form(expr, t_ms, partial_response);
        let req = self.request(g, base, "query", form)?;
        let resp = req.send().await.map_err(|e| format!("{base}: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("{base}: {e}"))?;
        let json: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) if status.is_server_error() => {
                return Err(format!("{base}: {status}"));
            }
            // A proxy or gateway in front of the querier refusing the ruler (credentials,
            // path): another endpoint may take it.
            Err(_) if status.is_client_error() && status != reqwest::StatusCode::BAD_REQUEST => {
                return Err(format!("{base}: {status}"));
            }
            Err(e) => return Ok(Err(format!("{base}: {status}: reading the answer: {e}"))),
        };
        if json["status"] != "success" {
            let msg = json["error"].as_str().unwrap_or("query failed").to_string();
            // An overloaded or failing querier: another may answer.
            if status.is_server_error() && json["errorType"] != "execution" {
                return Err(format!("{base}: {status}: {msg}"));
            }
            return Ok(Err(msg));
        }
        let warnings: Vec<String> = json["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(|w| w.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if super::query_grpc::log_warnings(base, expr, &warnings) {
            self.grpc.warned.count(partial_response);
        }
        Ok(parse_result(&json["data"]))
    }
}

/// One endpoint a query may go to.
#[derive(Debug)]
enum Target<'a> {
    /// An HTTP query API: its group and base URL.
    Http(&'a Endpoints, String),
    /// A gRPC Query API's `host:port`.
    Grpc(String),
}

/// A range query's series: labels and `(ms, value)` points.
pub type RangeSeries = Vec<(Labels, Vec<(i64, f64)>)>;

impl RemoteQuerier {
    /// Every endpoint resolved now, the HTTP ones (with their groups) first; an error when
    /// there is none.
    fn targets(&self) -> Result<Vec<Target<'_>>, String> {
        let mut targets: Vec<Target<'_>> = self
            .groups
            .iter()
            .flat_map(|g| {
                let now = g.resolved.read().unwrap_or_else(|p| p.into_inner()).clone();
                now.into_iter().map(move |u| Target::Http(g, u))
            })
            .collect();
        targets.extend(self.grpc.resolved().into_iter().map(Target::Grpc));
        if targets.is_empty() {
            return Err("no query endpoint resolved".into());
        }
        Ok(targets)
    }

    /// A range query (`/api/v1/query_range`) from `start_ms` to `end_ms` every `step_s`
    /// seconds, as Thanos's stateless ruler asks its query endpoints for `ALERTS_FOR_STATE`:
    /// deduplicated, no partial answers, the endpoints tried in turn until one answers.
    pub fn range_query(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_s: i64,
    ) -> Result<RangeSeries, String> {
        let targets = self.targets()?;
        let form = range_query_form(expr, start_ms, end_ms, step_s);
        let start = self.next.fetch_add(1, Relaxed);
        let mut failures = Vec::new();
        for i in 0..targets.len() {
            let outcome = match &targets[(start + i) % targets.len()] {
                Target::Http(g, base) => self.runtime.block_on(self.range_on(g, base, &form)),
                Target::Grpc(addr) => self
                    .runtime
                    .block_on(self.grpc.query_range(addr, expr, start_ms, end_ms, step_s)),
            };
            match outcome {
                Ok(answer) => return answer,
                Err(e) => {
                    tracing::warn!(error = %e, "query endpoint failed; trying the next");
                    failures.push(e);
                }
            }
        }
        Err(format!(
            "no query endpoint answered: {}",
            failures.join("; ")
        ))
    }

    /// One range query on one endpoint: `Ok(Err)` is an answer refusing it, `Err` an
    /// endpoint that did not answer.
    async fn range_on(
        &self,
        g: &Endpoints,
        base: &str,
        form: &str,
    ) -> Result<Result<RangeSeries, String>, String> {
        let req = self.request(g, base, "query_range", form.to_string())?;
        let resp = req.send().await.map_err(|e| format!("{base}: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("{base}: {e}"))?;
        let json: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("{base}: {status}: reading the answer: {e}"))?;
        if json["status"] != "success" {
            let msg = json["error"].as_str().unwrap_or("query failed").to_string();
            if status.is_server_error() {
                return Err(format!("{base}: {status}: {msg}"));
            }
            return Ok(Err(msg));
        }
        Ok(parse_matrix(&json["data"]))
    }
}

/// The form of a range query as Thanos's ruler sends it to restore alerts: whole-second
/// step, `dedup`, no partial response.
fn range_query_form(expr: &str, start_ms: i64, end_ms: i64, step_s: i64) -> String {
    let secs = |t: i64| format!("{}.{:03}", t.div_euclid(1000), t.rem_euclid(1000));
    let (start, end, step) = (secs(start_ms), secs(end_ms), step_s.to_string());
    let form = [
        ("query", expr),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("step", step.as_str()),
        ("dedup", "true"),
        ("partial_response", "false"),
    ];
    form.iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The series of a range query answer's `data` (a matrix).
pub fn parse_matrix(data: &Value) -> Result<RangeSeries, String> {
    if data["resultType"].as_str() != Some("matrix") {
        return Err("range query result is not a matrix".into());
    }
    let Some(result) = data["result"].as_array() else {
        return Ok(Vec::new());
    };
    result
        .iter()
        .map(|s| {
            let labels = s["metric"]
                .as_object()
                .map(|m| {
                    Labels::from_pairs(
                        m.iter()
                            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())),
                    )
                })
                .unwrap_or_default();
            let points = s["values"]
                .as_array()
                .map(|ps| ps.iter().map(parse_point).collect::<Result<Vec<_>, _>>())
                .unwrap_or_else(|| Ok(Vec::new()))?;
            Ok((labels, points))
        })
        .collect()
}

impl Endpoints {
    /// The addresses the discovery files list now; a file that cannot be read keeps what it
    /// listed last, one that is gone lists nothing.
    fn read_sd_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut last = self.sd_last.lock().unwrap_or_else(|p| p.into_inner());
        let mut seen = Vec::new();
        for pattern in &self.config.sd_files {
            let files = match glob::glob(pattern) {
                Ok(paths) => paths.filter_map(Result::ok).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::warn!(pattern, error = %e, "query discovery pattern not read");
                    continue;
                }
            };
            for f in files {
                let read = std::fs::read_to_string(&f)
                    .map_err(|e| e.to_string())
                    .and_then(|text| crate::query::endpoints::parse_endpoint_file(&f, &text));
                match read {
                    Ok(a) => {
                        out.extend(a.iter().cloned());
                        last.insert(f.clone(), a);
                    }
                    Err(e) => {
                        tracing::warn!(file = %f.display(), error = %e, "query discovery file not read; its last addresses are kept");
                        out.extend(last.get(&f).into_iter().flatten().cloned());
                    }
                }
                seen.push(f);
            }
        }
        last.retain(|f, _| seen.contains(f));
        out
    }
}

/// The form of an instant query, as Thanos Rule sends it: no `step` (a subquery without one
/// runs at the querier's default resolution), Thanos's `dedup`, `partial_response`, and
/// `explain`/`analyze`/`engine` at their defaults.
fn instant_query_form(expr: &str, t_ms: i64, partial_response: bool) -> String {
    let time = format!("{}.{:03}", t_ms.div_euclid(1000), t_ms.rem_euclid(1000));
    let form = [
        ("query", expr),
        ("time", time.as_str()),
        ("dedup", "true"),
        ("explain", "false"),
        ("analyze", "false"),
        ("engine", ""),
        (
            "partial_response",
            if partial_response { "true" } else { "false" },
        ),
    ];
    let pairs: Vec<String> = form
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect();
    pairs.join("&")
}

impl RuleQuerier for RemoteQuerier {
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<InstantSample>, String> {
        query_with(self, expr, t_ms, true)
    }
}

/// [`RemoteQuerier`] with a group's partial-response strategy (`abort` asks for none).
#[derive(Debug)]
pub struct StrategyQuerier<'a> {
    /// The shared querier.
    pub inner: &'a RemoteQuerier,
    /// Whether a partial answer is accepted.
    pub partial_response: bool,
}

impl RuleQuerier for StrategyQuerier<'_> {
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<InstantSample>, String> {
        query_with(self.inner, expr, t_ms, self.partial_response)
    }
}

fn query_with(
    q: &RemoteQuerier,
    expr: &str,
    t_ms: i64,
    partial: bool,
) -> Result<Vec<InstantSample>, String> {
    let targets = q.targets()?;
    let start = q.next.fetch_add(1, Relaxed);
    let mut failures = Vec::new();
    for i in 0..targets.len() {
        let outcome = match &targets[(start + i) % targets.len()] {
            Target::Http(g, base) => q.runtime.block_on(q.query_on(g, base, expr, t_ms, partial)),
            Target::Grpc(addr) => q.runtime.block_on(q.grpc.query(addr, expr, t_ms, partial)),
        };
        match outcome {
            Ok(answer) => return answer,
            Err(e) => {
                tracing::warn!(error = %e, "query endpoint failed; trying the next");
                failures.push(e);
            }
        }
    }
    Err(format!(
        "no query endpoint answered: {}",
        failures.join("; ")
    ))
}

/// `scheme://addr/prefix` of an endpoint of group `g` (a bare IPv6 address in brackets).
fn base_url(g: &QueryEndpointGroup, addr: &str) -> String {
    let host = if addr.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{addr}]")
    } else {
        addr.to_string()
    };
    format!("{}://{host}{}", g.scheme(), g.path_prefix)
}

/// The samples of a query answer's `data`: a vector (its native histograms read back as
/// histograms), or a scalar as one sample without labels.
pub fn parse_result(data: &Value) -> Result<Vec<InstantSample>, String> {
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .map(|a| a.iter().map(parse_sample).collect())
            .unwrap_or_else(|| Ok(Vec::new())),
        Some("scalar") => {
            let (t_ms, v) = parse_point(&data["result"])?;
            Ok(vec![InstantSample {
                labels: Labels::empty(),
                t_ms,
                v,
                h: None,
            }])
        }
        _ => Err("rule result is not a vector or scalar".into()),
    }
}

fn parse_sample(s: &Value) -> Result<InstantSample, String> {
    let labels = s["metric"]
        .as_object()
        .map(|m| {
            Labels::from_pairs(
                m.iter()
                    .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default())),
            )
        })
        .unwrap_or_default();
    if !s["histogram"].is_null() {
        let p = &s["histogram"];
        let t = p[0].as_f64().ok_or("a sample without a time")?;
        let h = parse_histogram(&p[1]).map_err(|e| format!("{labels}: {e}"))?;
        return Ok(InstantSample {
            labels,
            t_ms: (t * 1000.0).round() as i64,
            v: 0.0,
            h: Some(Box::new(h)),
        });
    }
    let (t_ms, v) = parse_point(&s["value"])?;
    Ok(InstantSample {
        labels,
        t_ms,
        v,
        h: None,
    })
}

/// `[seconds, "value"]` as (ms, value).
fn parse_point(p: &Value) -> Result<(i64, f64), String> {
    let t = p[0].as_f64().ok_or("a sample without a time")?;
    let s = p[1].as_str().ok_or("a sample without a value")?;
    let v = match s {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        _ => s.parse().map_err(|_| format!("a sample value {s:?}"))?,
    };
    Ok(((t * 1000.0).round() as i64, v))
}

#[cfg(test)]
mod tests {
    use super::super::query_config::{parse_addresses, parse_query_config};
    use super::{
        QueryMethod, base_url, instant_query_form, parse_matrix, parse_result, range_query_form,
    };
    use serde_json::json;

    #[test]
    fn answers_are_read_as_prometheus_writes_them() {
        let v = parse_result(&json!({"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "a"}, "value": [1700000000.5, "1"]},
            {"metric": {}, "value": [1700000000.5, "NaN"]},
        ]}))
        .unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].labels.get("job"), Some("a"));
        assert_eq!(v[0].t_ms, 1_700_000_000_500);
        assert!(v[1].v.is_nan());
        let h = parse_result(&json!({"resultType": "vector", "result": [
            {"metric": {"le": "x"}, "histogram": [1700000000.5, {"count": "3", "sum": "2.5",
                "buckets": [[0, "1", "2", "1"], [0, "2", "4", "2"]]}]},
        ]}))
        .unwrap();
        let hist = h[0].h.as_ref().expect("a histogram sample");
        assert_eq!(
            (h[0].t_ms, hist.count, hist.sum),
            (1_700_000_000_500, 3.0, 2.5)
        );
        assert_eq!(
            (hist.schema, hist.positive_buckets.as_slice()),
            (0, &[1.0, 2.0][..])
        );
        let s = parse_result(&json!({"resultType": "scalar", "result": [10, "+Inf"]})).unwrap();
        assert_eq!((s[0].t_ms, s[0].v), (10_000, f64::INFINITY));
        assert!(parse_result(&json!({"resultType": "matrix", "result": []})).is_err());
    }

    #[test]
    fn the_method_is_spelled_as_thanos_spells_it() {
        assert_eq!(QueryMethod::parse("GET"), Ok(QueryMethod::Get));
        assert_eq!(QueryMethod::parse("POST"), Ok(QueryMethod::Post));
        assert!(QueryMethod::parse("get").is_err());
        assert!(
            QueryMethod::parse("PUT")
                .unwrap_err()
                .contains("want GET or POST")
        );
    }

    #[test]
    fn endpoints_are_addressed_with_their_groups_scheme_and_prefix() {
        let g = parse_addresses(&["q:9090".into(), "http://q2/prefix/".into()]).unwrap();
        assert_eq!(base_url(&g[0], "q:9090"), "http://q:9090");
        assert_eq!(base_url(&g[1], "q2"), "http://q2/prefix");
        let c = parse_query_config(
            "--query.config",
            "- static_configs: [q:1]\n  path_prefix: /a/b/\n  scheme: https\n  \
             http_config: {tls_config: {insecure_skip_verify: true}}\n",
        )
        .unwrap()
        .http;
        assert_eq!(base_url(&c[0], "10.0.0.1:443"), "https://10.0.0.1:443/a/b");
        assert_eq!(base_url(&c[0], "::1"), "https://[::1]/a/b");
    }

    #[test]
    fn an_instant_query_carries_what_thanos_rule_sends_and_no_step() {
        let form = instant_query_form("max_over_time(rate(x[1m])[5m:])", 1_700_000_000_250, false);
        let pairs: Vec<(String, String)> = form
            .split('&')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                let v = percent_encoding::percent_decode_str(v)
                    .decode_utf8()
                    .unwrap();
                (k.to_string(), v.into_owned())
            })
            .collect();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("query"), Some("max_over_time(rate(x[1m])[5m:])"));
        assert_eq!(get("time"), Some("1700000000.250"));
        assert_eq!(get("dedup"), Some("true"));
        assert_eq!(get("partial_response"), Some("false"));
        assert_eq!(get("explain"), Some("false"));
        assert_eq!(get("analyze"), Some("false"));
        assert_eq!(get("engine"), Some(""));
        assert_eq!(
            get("step"),
            None,
            "Thanos Rule sends no step with instant queries"
        );
        assert_eq!(pairs.len(), 7, "{form}");
        let t = instant_query_form("up", -1, true);
        assert!(t.contains("partial_response=true"), "{t}");
    }

    #[test]
    fn range_queries_carry_a_whole_second_step_and_read_matrices() {
        let f = range_query_form("ALERTS_FOR_STATE{a=\"b\"}", 1_000_500, 4_600_500, 1);
        assert!(f.contains("start=1000%2E500"), "{f}");
        assert!(f.contains("end=4600%2E500"), "{f}");
        assert!(f.contains("step=1&"), "{f}");
        assert!(f.contains("dedup=true"), "{f}");
        let m = parse_matrix(&json!({"resultType": "matrix", "result": [
            {"metric": {"__name__": "ALERTS_FOR_STATE", "alertname": "A"},
             "values": [[1000.5, "1700000000"], [1001.5, "1700000000"]]},
        ]}))
        .unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].1, [(1_000_500, 1.7e9), (1_001_500, 1.7e9)]);
        assert!(parse_matrix(&json!({"resultType": "vector", "result": []})).is_err());
    }
}
