//! The ruler's queries over HTTP: Prometheus's `/api/v1/query` on the `--query` endpoints
//! (any Thanos or Gauntlet querier, or Prometheus), round robin, the next endpoint tried when
//! one fails to answer, and `dns+`/`dnssrv+` addresses resolved again every
//! `--query.sd-dns-interval`.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gauntlet_engine::labels::Labels;
use gauntlet_promql::InstantSample;
use gauntlet_promql::rules::group::RuleQuerier;
use serde_json::Value;

use crate::query::dns::{self, Dns};

/// Queries the `--query` endpoints.
#[derive(Debug)]
pub struct HttpQuerier {
    /// The addresses as given (`host:port`, `http(s)://host:port/prefix`, `dns+…`).
    given: Vec<String>,
    /// What they resolve to now: base URLs.
    resolved: RwLock<Vec<String>>,
    next: AtomicUsize,
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    dns: Option<Dns>,
}

impl HttpQuerier {
    /// A querier over `endpoints` (each a query API's address), each request bounded by
    /// `timeout`; requests are made on `runtime`.
    pub fn new(
        endpoints: &[String],
        timeout: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<HttpQuerier>, String> {
        if endpoints.is_empty() {
            return Err("no --query endpoint given".into());
        }
        for e in endpoints {
            if let Some((lookup, rest)) = dns::split(e) {
                dns::check(lookup, rest).map_err(|why| format!("--query {e:?}: {why}"))?;
            }
        }
        let needs_dns = endpoints.iter().any(|e| dns::split(e).is_some());
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("building the query client: {e}"))?;
        let q = HttpQuerier {
            given: endpoints.to_vec(),
            resolved: RwLock::new(
                endpoints
                    .iter()
                    .filter(|e| dns::split(e).is_none())
                    .map(|e| base_url(e))
                    .collect(),
            ),
            next: AtomicUsize::new(0),
            client,
            runtime,
            dns: if needs_dns { Some(Dns::new()?) } else { None },
        };
        Ok(Arc::new(q))
    }

    /// Resolves the `dns+` addresses again.
    pub async fn refresh(&self) {
        let Some(dns) = &self.dns else {
            return;
        };
        let found = dns.resolve(&self.given).await;
        let urls: Vec<String> = found.iter().map(|a| base_url(a)).collect();
        *self.resolved.write().unwrap_or_else(|p| p.into_inner()) = urls;
    }

    /// Keeps the `dns+` addresses fresh every `every` until the runtime ends.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration) {
        if self.dns.is_none() {
            return;
        }
        let me = self.clone();
        self.runtime.spawn(async move {
            loop {
                me.refresh().await;
                tokio::time::sleep(every).await;
            }
        });
    }

    /// One instant query on one endpoint: `Ok(Err)` is an answer that refuses the query
    /// (no other endpoint is tried), `Err` an endpoint that did not answer.
    async fn query_on(
        &self,
        base: &str,
        expr: &str,
        t_ms: i64,
        partial_response: bool,
    ) -> Result<Result<Vec<InstantSample>, String>, String> {
        let time = format!("{}.{:03}", t_ms.div_euclid(1000), t_ms.rem_euclid(1000));
        let form = [
            ("query", expr),
            ("time", time.as_str()),
            ("dedup", "true"),
            (
                "partial_response",
                if partial_response { "true" } else { "false" },
            ),
        ];
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect();
        let resp = self
            .client
            .post(format!("{base}/api/v1/query"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.join("&"))
            .send()
            .await
            .map_err(|e| format!("{base}: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("{base}: {e}"))?;
        let json: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) if status.is_server_error() => {
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
        Ok(parse_result(&json["data"]))
    }
}

impl RuleQuerier for HttpQuerier {
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<InstantSample>, String> {
        query_with(self, expr, t_ms, true)
    }
}

/// [`HttpQuerier`] with a group's partial-response strategy (`abort` asks for none).
#[derive(Debug)]
pub struct StrategyQuerier<'a> {
    /// The shared querier.
    pub inner: &'a HttpQuerier,
    /// Whether a partial answer is accepted.
    pub partial_response: bool,
}

impl RuleQuerier for StrategyQuerier<'_> {
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<InstantSample>, String> {
        query_with(self.inner, expr, t_ms, self.partial_response)
    }
}

fn query_with(
    q: &HttpQuerier,
    expr: &str,
    t_ms: i64,
    partial: bool,
) -> Result<Vec<InstantSample>, String> {
    let urls = q.resolved.read().unwrap_or_else(|p| p.into_inner()).clone();
    if urls.is_empty() {
        return Err("no query endpoint resolved".into());
    }
    let start = q.next.fetch_add(1, Relaxed);
    let mut failures = Vec::new();
    for i in 0..urls.len() {
        let base = &urls[(start + i) % urls.len()];
        match q.runtime.block_on(q.query_on(base, expr, t_ms, partial)) {
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

/// `http://host:port` for a bare address; URLs as given, without a trailing slash.
fn base_url(addr: &str) -> String {
    let a = addr.trim_end_matches('/');
    if a.starts_with("http://") || a.starts_with("https://") {
        a.to_string()
    } else {
        format!("http://{a}")
    }
}

/// The samples of a query answer's `data`: a vector, or a scalar as one sample without
/// labels.
fn parse_result(data: &Value) -> Result<Vec<InstantSample>, String> {
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
        return Err(format!(
            "{labels}: native histogram results of --query endpoints are not read by the ruler yet"
        ));
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
    use super::{base_url, parse_result};
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
        let s = parse_result(&json!({"resultType": "scalar", "result": [10, "+Inf"]})).unwrap();
        assert_eq!((s[0].t_ms, s[0].v), (10_000, f64::INFINITY));
        assert!(parse_result(&json!({"resultType": "matrix", "result": []})).is_err());
        assert_eq!(base_url("q:9090"), "http://q:9090");
        assert_eq!(base_url("https://q/prefix/"), "https://q/prefix");
    }
}
