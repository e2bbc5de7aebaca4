//! `/api/v1/labels`, `/api/v1/label/NAME/values` and `/api/v1/series` through the frontend,
//! as Thanos's labels tripperware handles them: a request without `start` and `end` gets the
//! last `--labels.default-time-range`; the range is split at multiples of
//! `--labels.split-interval`, the parts are asked in parallel (at most
//! `--labels.max-query-parallelism` at a time) and their answers merged: label names and
//! values as one sorted set, series once each in label order.
//!
//! Each part is cached whole (`--labels.response-cache-config`) under the tenant, the path,
//! the matchers, the options and the part's own window, so a whole split interval, once
//! past `--labels.response-cache-max-freshness`, is asked once; the part at either edge of a
//! moving window is asked again. Unlike Thanos's cache, which answers a part from an entry
//! of another window in the same interval, an answer here is always the one of the window
//! asked. Not cached: `storeMatch[]`, `dedup=false`, `Cache-Control: no-store`, answers with
//! warnings. Requests with `limit` (the querier truncates) and without any bound are passed
//! through whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::Value;

use super::Frontend;
use super::range::{Failure, api_error, encode_form, format_time, request_form};
use super::retry::{Answer, Ask};
use crate::http::params::{ApiError, Form, parse_time};

/// The most parts one request is split into; a longer range is asked whole.
const MAX_PARTS: usize = 1000;

/// A label or series request as the frontend reads it.
#[derive(Debug)]
struct LabelsQuery {
    path: String,
    start: i64,
    end: i64,
    /// Every parameter but `start` and `end`, passed on as given (plus `partial_response`).
    rest: Vec<(String, String)>,
    /// The cache key's prefix: tenant, path, matchers and options.
    key: String,
    cacheable: bool,
    headers: HeaderMap,
}

/// One part's answer: the `data` entries and the warnings.
#[derive(Debug, Default)]
struct Part {
    data: Vec<Value>,
    warnings: Vec<String>,
}

/// Whether a request is split (or cached) rather than passed through whole.
pub(super) fn splits(fe: &Frontend) -> bool {
    fe.labels.split_interval_ms > 0
}

/// Serves one label names, label values or series request.
pub(super) async fn serve(
    fe: Arc<Frontend>,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Option<Response> {
    let form = match request_form(&method, query.as_deref(), &headers, &body) {
        Ok(f) => f,
        Err(e) => return Some(api_error(&e)),
    };
    let lq = match read(&fe, path, &form, &headers) {
        Ok(Some(lq)) => lq,
        Ok(None) => return None,
        Err(e) => return Some(api_error(&e)),
    };
    let parts = split(lq.start, lq.end, fe.labels.split_interval_ms);
    fe.metrics
        .split_queries
        .fetch_add(parts.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let answers: Vec<Result<Part, Failure>> = futures::stream::iter(parts)
        .map(|(s, e)| part(&fe, &lq, s, e))
        .buffered(fe.labels.max_parallelism.max(1))
        .collect()
        .await;
    let got = match answers.into_iter().collect::<Result<Vec<_>, _>>() {
        Ok(got) => got,
        Err(f) => return Some(f.into_response("label or series request")),
    };
    let out = encode(&merge(got));
    Some(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

/// Reads the request; `None` when it goes through whole (a `limit`, or no bound at all).
fn read(
    fe: &Frontend,
    path: String,
    form: &Form,
    headers: &HeaderMap,
) -> Result<Option<LabelsQuery>, ApiError> {
    if form.get("limit").is_some_and(|l| !l.is_empty()) {
        return Ok(None);
    }
    let now = crate::now_ms();
    let range = fe.labels.default_range_ms;
    let bound = |name: &str, default: i64| -> Result<Option<i64>, ApiError> {
        match form.get(name).filter(|v| !v.is_empty()) {
            Some(v) => parse_time(v)
                .map(Some)
                .map_err(|e| ApiError::invalid_param(name, e)),
            None if range > 0 => Ok(Some(default)),
            None => Ok(None),
        }
    };
    let (Some(start), Some(end)) = (bound("start", now - range)?, bound("end", now)?) else {
        return Ok(None);
    };
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let dedup = !matches!(form.get("dedup"), Some("false" | "0"));
    let no_store = super::no_store(headers);
    let mut rest: Vec<(String, String)> = form
        .pairs()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "start" | "end"))
        .cloned()
        .collect();
    if form.get("partial_response").is_none() {
        rest.push((
            "partial_response".into(),
            fe.labels.partial_response.to_string(),
        ));
    }
    let tenant = fe.tenant_of(headers);
    let mut options: Vec<String> = rest.iter().map(|(k, v)| format!("{k}={v}")).collect();
    options.sort_unstable();
    let key = format!("fe:labels:{tenant}:{path}:{}", options.join("&"));
    let passed = fe.forwarded(headers);
    let cacheable = dedup && !no_store && form.all("storeMatch[]").is_empty();
    let parts = (end - start) / fe.labels.split_interval_ms.max(1);
    if parts >= MAX_PARTS as i64 {
        return Ok(None);
    }
    Ok(Some(LabelsQuery {
        path,
        start,
        end,
        rest,
        key,
        cacheable,
        headers: passed,
    }))
}

/// `[start, end]` cut at the multiples of `interval` (ms): each part ends where the next
/// begins, both ends inclusive, as the label API reads a window.
fn split(start: i64, end: i64, interval: i64) -> Vec<(i64, i64)> {
    if interval <= 0 {
        return vec![(start, end)];
    }
    let mut out = Vec::new();
    let mut from = start;
    loop {
        let next = (from.div_euclid(interval) + 1).saturating_mul(interval);
        if next >= end {
            out.push((from, end));
            return out;
        }
        out.push((from, next));
        from = next;
    }
}

/// One part's answer: from the labels cache where it has it, from the querier otherwise.
async fn part(fe: &Frontend, lq: &LabelsQuery, start: i64, end: i64) -> Result<Part, Failure> {
    let fresh_from = crate::now_ms() - fe.labels.max_freshness_ms;
    let cache = fe
        .labels
        .cache
        .as_ref()
        .filter(|_| lq.cacheable && end <= fresh_from);
    let key = format!("{}:{start}:{end}", lq.key);
    if let Some(c) = cache
        && let Some(body) = c.get_body(&key).await
        && let Some(p) = parse(&body)
    {
        return Ok(p);
    }
    let a = fetch(fe, lq, start, end).await?;
    let Some(p) = parse(&a.body) else {
        return Err(Failure::Answer(a));
    };
    let no_store = super::no_store(&a.headers);
    if let Some(c) = cache
        && p.warnings.is_empty()
        && !no_store
    {
        c.put_body(&key, a.body);
    }
    Ok(p)
}

/// Asks the querier for `[start, end]`: label values with GET (the only method Prometheus
/// takes there), names and series with a POSTed form.
async fn fetch(fe: &Frontend, lq: &LabelsQuery, start: i64, end: i64) -> Result<Answer, Failure> {
    let mut pairs: Vec<(&str, String)> =
        vec![("start", format_time(start)), ("end", format_time(end))];
    pairs.extend(lq.rest.iter().map(|(k, v)| (k.as_str(), v.clone())));
    let form = encode_form(&pairs);
    let values = lq.path.starts_with("/api/v1/label/");
    let mut headers = lq.headers.clone();
    let ask = if values {
        Ask {
            method: Method::GET,
            path: lq.path.clone(),
            query: form,
            headers,
            body: Bytes::new(),
        }
    } else {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        Ask {
            method: Method::POST,
            path: lq.path.clone(),
            query: String::new(),
            headers,
            body: Bytes::from(form),
        }
    };
    let a = fe
        .downstream
        .send(&ask, fe.labels_max_retries)
        .await
        .map_err(Failure::Unreachable)?;
    if !a.status.is_success() {
        return Err(Failure::Answer(a));
    }
    Ok(a)
}

/// A successful label or series answer's entries and warnings; `None` for anything else.
fn parse(body: &[u8]) -> Option<Part> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if v["status"] != "success" {
        return None;
    }
    let data = v["data"].as_array()?.clone();
    if !data.iter().all(|d| d.is_string() || d.is_object()) {
        return None;
    }
    let warnings = v["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some(Part { data, warnings })
}

/// How an entry sorts and is told apart: a label name or value as itself, a series by its
/// label pairs in name order (Prometheus's order of label sets).
fn sort_key(v: &Value) -> Vec<(String, String)> {
    match v {
        Value::String(s) => vec![(s.clone(), String::new())],
        Value::Object(m) => {
            let mut pairs: Vec<(String, String)> = m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            pairs.sort();
            pairs
        }
        _ => Vec::new(),
    }
}

/// The parts as one answer: every entry once, sorted; every warning once.
fn merge(parts: Vec<Part>) -> Part {
    let mut entries: BTreeMap<Vec<(String, String)>, Value> = BTreeMap::new();
    let mut warnings: Vec<String> = Vec::new();
    for p in parts {
        for d in p.data {
            entries.entry(sort_key(&d)).or_insert(d);
        }
        for w in p.warnings {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
    }
    Part {
        data: entries.into_values().collect(),
        warnings,
    }
}

/// Prometheus's JSON for a merged answer.
fn encode(p: &Part) -> Vec<u8> {
    let mut out = serde_json::json!({"status": "success", "data": p.data});
    if !p.warnings.is_empty() {
        out["warnings"] = serde_json::json!(p.warnings);
    }
    serde_json::to_vec(&out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn a_range_is_cut_at_the_interval_s_multiples() {
        assert_eq!(split(0, 3 * H, 0), vec![(0, 3 * H)]);
        assert_eq!(split(H / 2, H / 2, H), vec![(H / 2, H / 2)]);
        assert_eq!(
            split(H / 2, 2 * H + 5, H),
            vec![(H / 2, H), (H, 2 * H), (2 * H, 2 * H + 5)]
        );
        // Ending on a multiple: no empty last part.
        assert_eq!(split(0, 2 * H, H), vec![(0, H), (H, 2 * H)]);
        // Before 1970 too.
        assert_eq!(split(-H - 1, -H + 1, H), vec![(-H - 1, -H), (-H, -H + 1)]);
    }

    #[test]
    fn parts_merge_into_one_sorted_answer_without_repeats() {
        let a = parse(br#"{"status":"success","data":["job","__name__"]}"#).unwrap();
        let b = parse(br#"{"status":"success","data":["zone","job"],"warnings":["w1"]}"#).unwrap();
        let c = parse(br#"{"status":"success","data":[],"warnings":["w1","w2"]}"#).unwrap();
        let m = merge(vec![a, b, c]);
        assert_eq!(
            String::from_utf8(encode(&m)).unwrap(),
            r#"{"data":["__name__","job","zone"],"status":"success","warnings":["w1","w2"]}"#
        );
        let a = parse(
            br#"{"status":"success","data":[{"__name__":"up","job":"b"},{"__name__":"up","job":"a"}]}"#,
        )
        .unwrap();
        let b = parse(
            br#"{"status":"success","data":[{"job":"a","__name__":"up"},{"__name__":"up"}]}"#,
        )
        .unwrap();
        let m = merge(vec![a, b]);
        let keys: Vec<_> = m.data.iter().map(sort_key).collect();
        assert_eq!(m.data.len(), 3);
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(keys[0], vec![("__name__".to_string(), "up".to_string())]);
    }

    #[test]
    fn what_is_not_a_successful_answer_does_not_parse() {
        for body in [
            &br#"{"status":"error","error":"x"}"#[..],
            br#"{"status":"success","data":{"resultType":"matrix"}}"#,
            br#"{"status":"success","data":[1,2]}"#,
            br#"not json"#,
            br#"{"status":"success","data":["a""#,
        ] {
            assert!(parse(body).is_none(), "{}", String::from_utf8_lossy(body));
        }
    }
}
