//! `/api/v1/query_range` through the frontend: the request checked as Thanos's frontend
//! checks it, aligned to its step, split by interval, each part answered from the results
//! cache and the querier (at most `--query-range.max-query-parallelism` parts at a time), and
//! the parts merged into one answer. A part the querier refuses (4xx) or keeps failing (5xx)
//! is the answer, as the querier gave it.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;

use super::Frontend;
use super::cache::{self, Extent, KeyParts};
use super::merge::{self, Matrix};
use super::retry::{Answer, Ask};
use super::shard::Analysis;
use crate::http::params::{ApiError, Form, parse_duration, parse_time};

/// Thanos's bound on the points of one series of a range query.
const MAX_POINTS: i64 = 11_000;

/// A range query as the frontend reads it.
#[derive(Debug, Clone)]
struct RangeQuery {
    start: i64,
    end: i64,
    step: i64,
    query: String,
    /// Every other parameter, passed on to the querier as given.
    rest: Vec<(String, String)>,
    /// The options that change the answer besides query and step, for the cache key.
    options: String,
    /// Whether the answer may come from and go into the cache.
    cacheable: bool,
    tenant: String,
    /// Headers passed on to the querier (`--query-frontend.forward-header`).
    headers: HeaderMap,
    /// The request's own `shard_info` as the cache keys it (`total:index`), empty without;
    /// such a request is passed on as one shard already and not sharded again.
    given_shard: String,
}

/// One shard of a query sent on: the `shard_info` parameter and the shard's cache key part.
#[derive(Debug)]
struct Shard {
    param: String,
    key: String,
}

/// What goes back instead of a merged answer.
pub(super) enum Failure {
    /// The querier's own answer (a 4xx, the last 5xx, or one that does not read).
    Answer(Answer),
    /// The querier never answered.
    Unreachable(String),
}

impl Failure {
    /// The response to the client: the querier's own answer, or 502 when it never answered
    /// (logged, with `what` failed).
    pub(super) fn into_response(self, what: &str) -> Response {
        match self {
            Failure::Answer(a) => pass_back(a),
            Failure::Unreachable(e) => {
                let msg = format!("the querier did not answer: {e}");
                tracing::warn!(error = %msg, "{what} failed");
                error_body(StatusCode::BAD_GATEWAY, "internal", &msg)
            }
        }
    }
}

/// Serves one range query.
pub(super) async fn serve(
    fe: Arc<Frontend>,
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fe.metrics.count("query_range");
    let began = Instant::now();
    let rq = match request_form(&method, query.as_deref(), &headers, &body)
        .and_then(|f| read(&fe, &f, &headers))
    {
        Ok(rq) => rq,
        Err(e) => return api_error(&e),
    };
    let auto = fe.request_downsampled
        && rq
            .rest
            .iter()
            .any(|(k, v)| k == "max_source_resolution" && v == "auto");
    let answered = if auto {
        let mut asked = 0u64;
        let got = super::downsampled::answers(rq.start, rq.end, rq.step, |end, resolution| {
            asked += 1;
            let q = rq.at_resolution(end, resolution);
            let fe = fe.clone();
            async move { answer(&fe, &q).await }
        })
        .await;
        fe.metrics.downsampled_extra.fetch_add(
            asked.saturating_sub(1),
            std::sync::atomic::Ordering::Relaxed,
        );
        got.map(merge::merge)
    } else {
        answer(&fe, &rq).await
    };
    let merged = match answered {
        Ok(m) => m,
        Err(f) => return f.into_response("range query"),
    };
    let out = merge::encode(&merged);
    fe.log_if_slow(began, &rq.query, rq.start, rq.end, rq.step);
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

/// `rq`'s answer: split by interval and into shards, each part from the cache or the querier,
/// the parts merged. The first part that fails is the failure.
async fn answer(fe: &Frontend, rq: &RangeQuery) -> Result<Matrix, Failure> {
    let parts = super::split::split(rq.start, rq.end, rq.step, fe.split_interval_ms);
    fe.metrics
        .split_queries
        .fetch_add(parts.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let shards = shards_of(fe, rq);
    // Every part of every shard is one request downstream, at most
    // `--query-range.max-query-parallelism` of them at a time.
    let asks: Vec<(i64, i64, usize)> = parts
        .iter()
        .flat_map(|&(s, e)| (0..shards.len()).map(move |i| (s, e, i)))
        .collect();
    let answers: Vec<Result<Matrix, Failure>> = futures::stream::iter(asks)
        .map(|(s, e, i)| part(fe, rq, s, e, shards[i].as_ref()))
        .buffered(fe.max_parallelism.max(1))
        .collect()
        .await;
    let matrices = answers.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(merge::merge(matrices))
}

impl RangeQuery {
    /// This query up to `end` with `max_source_resolution` at `resolution` (ms; `None`: as
    /// asked), for [`super::downsampled`].
    fn at_resolution(&self, end: i64, resolution: Option<i64>) -> RangeQuery {
        let mut q = self.clone();
        q.end = end;
        if let Some(r) = resolution {
            // Seconds, as Thanos's frontend writes it.
            let value = format!("{}", r as f64 / 1000.0);
            for (k, v) in &mut q.rest {
                if k == "max_source_resolution" {
                    v.clone_from(&value);
                }
            }
            // The resolution leads the options of the cache key.
            if let Some(rest) = q.options.strip_prefix("auto") {
                q.options = format!("{value}{rest}");
            }
        }
        q
    }
}

/// The shards `rq` is run as: `--query-frontend.vertical-shards` of them when the query is
/// shardable ([`Analysis`]), else the one whole query (`None`).
fn shards_of(fe: &Frontend, rq: &RangeQuery) -> Vec<Option<Shard>> {
    if fe.vertical_shards < 2 || !rq.given_shard.is_empty() {
        return vec![None];
    }
    let a = Analysis::of(&rq.query);
    let counted = if a.shardable() { 0 } else { 1 };
    fe.metrics.sharding[counted].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !a.shardable() {
        return vec![None];
    }
    let total = fe.vertical_shards;
    (0..total)
        .map(|i| {
            Some(Shard {
                param: a.shard_param(i, total),
                key: format!("{total}:{i}"),
            })
        })
        .collect()
}

/// The cache key part of a request's own `shard_info` (`total:index`, as Thanos keys it);
/// empty without one.
fn given_shard_key(form: &Form) -> Result<String, ApiError> {
    Ok(
        match crate::http::api::shard_param(form.value("shard_info"))? {
            Some(s) => format!("{}:{}", s.total, s.index),
            None => String::new(),
        },
    )
}

/// Reads and checks the request's parameters.
fn read(fe: &Frontend, form: &Form, headers: &HeaderMap) -> Result<RangeQuery, ApiError> {
    let start = parse_time(form.value("start")).map_err(|e| ApiError::invalid_param("start", e))?;
    let end = parse_time(form.value("end")).map_err(|e| ApiError::invalid_param("end", e))?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let step =
        parse_duration(form.value("step")).map_err(|e| ApiError::invalid_param("step", e))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    if fe.max_query_length_ms > 0 && end - start > fe.max_query_length_ms {
        return Err(ApiError::bad_data(format!(
            "the query time range exceeds the limit (query length: {}, limit: {})",
            go_duration(end - start),
            go_duration(fe.max_query_length_ms)
        )));
    }
    let (start, end) = if fe.align {
        super::split::align(start, end, step)
    } else {
        (start, end)
    };
    let dedup = match form.get("dedup") {
        None | Some("") => true,
        Some(v) => v
            .parse::<bool>()
            .map_err(|_| ApiError::invalid_param("dedup", format!("{v:?} is not a boolean")))?,
    };
    let store_matchers = !form.all("storeMatch[]").is_empty();
    let no_store = super::no_store(headers);
    let mut rest: Vec<(String, String)> = form
        .pairs()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "start" | "end" | "step" | "query"))
        .cloned()
        .collect();
    if form.get("partial_response").is_none() {
        rest.push(("partial_response".into(), fe.partial_response.to_string()));
    }
    let mut replicas: Vec<&str> = form.all("replicaLabels[]");
    replicas.sort_unstable();
    let options = format!(
        "{}:{}:{}:{}:{}:{}",
        form.value("max_source_resolution"),
        form.value("lookback_delta"),
        form.value("engine"),
        form.get("partial_response")
            .map_or(fe.partial_response.to_string(), str::to_string),
        replicas.join(","),
        form.value("analyze"),
    );
    let tenant = fe.tenant_of(headers).to_string();
    let mut passed = fe.forwarded(headers);
    passed.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let given_shard = given_shard_key(form)?;
    Ok(RangeQuery {
        given_shard,
        start,
        end,
        step,
        query: form.value("query").to_string(),
        rest,
        options,
        cacheable: dedup && !store_matchers && !no_store,
        tenant,
        headers: passed,
    })
}

/// One part's answer: from the cache where it has it, from the querier for the rest.
async fn part(
    fe: &Frontend,
    rq: &RangeQuery,
    start: i64,
    end: i64,
    shard: Option<&Shard>,
) -> Result<Matrix, Failure> {
    let Some(cache) = fe.cache.as_ref().filter(|_| rq.cacheable) else {
        return fetch(fe, rq, start, end, shard).await.map(|(m, _)| m);
    };
    let max_time = crate::now_ms() - fe.max_freshness_ms;
    if start > max_time {
        return fetch(fe, rq, start, end, shard).await.map(|(m, _)| m);
    }
    let key = cache::key(&KeyParts {
        tenant: &rq.tenant,
        query: &rq.query,
        step: rq.step,
        split_interval: fe.split_interval_ms,
        start,
        shard: shard.map_or(rq.given_shard.as_str(), |s| s.key.as_str()),
        options: &rq.options,
    });
    let (answer, extents) = match cache.get(&key).await {
        None => {
            let (m, keep) = fetch(fe, rq, start, end, shard).await?;
            let extents = if keep {
                vec![Extent {
                    start,
                    end,
                    answer: m.clone(),
                }]
            } else {
                Vec::new()
            };
            (m, extents)
        }
        Some(mut extents) => {
            let (asks, mut parts) = cache::partition(start, end, &extents);
            let got =
                futures::future::join_all(asks.iter().map(|&(s, e)| fetch(fe, rq, s, e, shard)))
                    .await;
            let mut grew = false;
            for ((s, e), g) in asks.into_iter().zip(got) {
                let (m, keep) = g?;
                if keep {
                    extents.push(Extent {
                        start: s,
                        end: e,
                        answer: m.clone(),
                    });
                    grew = true;
                }
                parts.push(m);
            }
            let extents = if grew {
                cache::merge_extents(extents, rq.step)
            } else {
                Vec::new()
            };
            (merge::merge(parts), extents)
        }
    };
    if !extents.is_empty() {
        let kept = cache::drop_recent(extents, max_time, rq.step);
        if !kept.is_empty() {
            cache.put(&key, kept);
        }
    }
    Ok(answer)
}

/// `[start, end]` of the query (of its `shard` when given) asked of the querier: its answer,
/// and whether it may be cached (no `Cache-Control: no-store`, no warnings).
async fn fetch(
    fe: &Frontend,
    rq: &RangeQuery,
    start: i64,
    end: i64,
    shard: Option<&Shard>,
) -> Result<(Matrix, bool), Failure> {
    let mut pairs: Vec<(&str, String)> = vec![
        ("query", rq.query.clone()),
        ("start", format_time(start)),
        ("end", format_time(end)),
        ("step", format_time(rq.step)),
    ];
    pairs.extend(rq.rest.iter().map(|(k, v)| (k.as_str(), v.clone())));
    if let Some(sh) = shard {
        pairs.push(("shard_info", sh.param.clone()));
    }
    let ask = Ask {
        method: Method::POST,
        path: "/api/v1/query_range".into(),
        query: String::new(),
        headers: rq.headers.clone(),
        body: Bytes::from(encode_form(&pairs)),
    };
    let a = fe
        .downstream
        .send(&ask, fe.max_retries)
        .await
        .map_err(Failure::Unreachable)?;
    if !a.status.is_success() {
        return Err(Failure::Answer(a));
    }
    let Ok(m) = merge::parse(a.body.clone()) else {
        return Err(Failure::Answer(a));
    };
    let no_store = super::no_store(&a.headers);
    let keep = !no_store && m.warnings.is_empty();
    Ok((m, keep))
}

/// A query's parameters: the URL's, and a POSTed form's when the body is one.
pub(super) fn request_form(
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Form, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = (*method == Method::POST && is_form).then_some(&body[..]);
    Form::parse(query, body)
}

/// Unix seconds with ms, as the querier reads them.
pub(super) fn format_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// What Go's `url.QueryEscape` leaves as it is.
const FORM_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `k=v&…`, form-encoded.
pub(super) fn encode_form(pairs: &[(&str, String)]) -> String {
    let esc = |s: &str| percent_encoding::utf8_percent_encode(s, FORM_ESCAPE).to_string();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", esc(k), esc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A duration as Go prints one (`1h0m0s`, `5m30s`, `1.5s`).
fn go_duration(ms: i64) -> String {
    let d = std::time::Duration::from_millis(ms.max(0) as u64);
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let frac = d.subsec_millis();
    let s = if frac > 0 {
        format!("{s}.{frac:03}").trim_end_matches('0').to_string()
    } else {
        s.to_string()
    };
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// The querier's answer, passed back as it came.
pub(super) fn pass_back(a: Answer) -> Response {
    let mut resp = (a.status, a.body).into_response();
    for (k, v) in &a.headers {
        if super::retry::passes(k) {
            resp.headers_mut().append(k, v.clone());
        }
    }
    resp
}

/// Prometheus's error body for `e`.
pub(super) fn api_error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error_body(status, e.error_type(), &e.message)
}

/// `{"status":"error",...}` with `status`.
pub(super) fn error_body(status: StatusCode, kind: &str, msg: &str) -> Response {
    let body = serde_json::json!({"status": "error", "errorType": kind, "error": msg});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_forms_are_written_as_the_querier_reads_them() {
        assert_eq!(format_time(1_500), "1.500");
        assert_eq!(format_time(60_000), "60.000");
        assert_eq!(
            encode_form(&[("query", "sum(rate(x[5m]))".into()), ("a b", "c&d".into())]),
            "query=sum%28rate%28x%5B5m%5D%29%29&a%20b=c%26d"
        );
    }

    #[test]
    fn durations_read_as_go_prints_them() {
        assert_eq!(go_duration(3_600_000), "1h0m0s");
        assert_eq!(go_duration(330_000), "5m30s");
        assert_eq!(go_duration(1_500), "1.5s");
    }
}
