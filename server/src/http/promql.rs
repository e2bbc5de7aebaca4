//! The PromQL endpoints: `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query`,
//! with Prometheus's parameter checks and error messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gauntlet_engine::promql::{Engine, EngineOptions, PromqlError, QueryResult, Value};

use super::api::{ApiState, Reply, open_view};
use super::json;
use super::params::{ApiError, Form, limit_param, parse_duration, parse_time, time_param};

/// Most points per series a range query may return, as Prometheus limits it.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// `/api/v1/query`: `query`, `time` (default now), `timeout`.
pub fn instant_query(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    let limit = limit_param(form)?;
    let t = time_param(form, "time", now_ms())?;
    let engine = engine(st, form)?;
    let query = form.value("query");
    let view = open_view(st, form)?;
    let res = engine
        .instant_query(view.as_ref(), query, t)
        .map_err(query_error)?;
    Ok(reply(truncate(res, limit), view.warnings()))
}

/// `/api/v1/query_range`: `query`, `start`, `end`, `step`, `timeout`.
pub fn range_query(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    let limit = limit_param(form)?;
    let start = parse_time(form.value("start")).map_err(|e| ApiError::invalid_param("start", e))?;
    let end = parse_time(form.value("end")).map_err(|e| ApiError::invalid_param("end", e))?;
    if end < start {
        return Err(ApiError::invalid_param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step =
        parse_duration(form.value("step")).map_err(|e| ApiError::invalid_param("step", e))?;
    if step <= 0 {
        return Err(ApiError::invalid_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Prometheus divides Go durations (ns); ms divide the same way.
    if (end - start) / step > MAX_POINTS_PER_SERIES {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let engine = engine(st, form)?;
    let view = open_view(st, form)?;
    let res = engine
        .range_query(view.as_ref(), form.value("query"), start, end, step)
        .map_err(query_error)?;
    Ok(reply(truncate(res, limit), view.warnings()))
}

/// `/api/v1/format_query`: the query pretty-printed.
pub fn format_query(_st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    let text = gauntlet_engine::promql::format_query(form.value("query"))
        .map_err(|e| ApiError::invalid_param("query", e))?;
    let mut data = String::new();
    json::push_str(&mut data, &text);
    Ok(Reply {
        data,
        ..Reply::default()
    })
}

/// Checks that `query` parses, with Prometheus's error for the `query` parameter.
pub fn check_query(query: &str) -> Result<(), ApiError> {
    gauntlet_engine::promql::format_query(query)
        .map(|_| ())
        .map_err(|e| ApiError::invalid_param("query", e))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// An engine for this request: the configured limits, the timeout shortened by `timeout`.
fn engine(st: &ApiState, form: &Form) -> Result<Engine, ApiError> {
    let mut timeout = st.config.timeout;
    if let Some(v) = form.get("timeout").filter(|v| !v.is_empty()) {
        let ms = parse_duration(v).map_err(|e| ApiError::invalid_param("timeout", e))?;
        timeout = timeout.min(Duration::from_millis(ms.max(0) as u64));
    }
    let mut lookback = st.config.lookback_delta_ms;
    if let Some(v) = form.get("lookback_delta").filter(|v| !v.is_empty()) {
        lookback = parse_duration(v).map_err(|e| ApiError::invalid_param("lookback_delta", e))?;
        if lookback <= 0 {
            lookback = st.config.lookback_delta_ms;
        }
    }
    Ok(Engine::new(EngineOptions {
        lookback_delta_ms: lookback,
        max_samples: st.config.max_samples,
        timeout,
        delayed_name_removal: st.config.delayed_name_removal,
    }))
}

fn query_error(e: PromqlError) -> ApiError {
    match e {
        PromqlError::Parse(m) => ApiError::invalid_param("query", m),
        e => ApiError {
            error_type: e.error_type(),
            message: e.to_string(),
        },
    }
}

/// Keeps the first `limit` series of a vector or matrix (0 = all), warning when it cut.
fn truncate(mut res: QueryResult, limit: usize) -> QueryResult {
    let cut = match &mut res.value {
        Value::Vector(v) if limit > 0 && v.len() > limit => {
            v.truncate(limit);
            true
        }
        Value::Matrix(m) if limit > 0 && m.len() > limit => {
            m.truncate(limit);
            true
        }
        _ => false,
    };
    if cut {
        res.warnings
            .push("results truncated due to limit".to_string());
    }
    res
}

fn reply(res: QueryResult, mut warnings: Vec<String>) -> Reply {
    warnings.extend(res.warnings);
    // Sized up front: a large matrix grown by doubling is copied about twice over.
    let mut data = String::with_capacity(64 + encoded_size_hint(&res.value));
    data.push_str("{\"resultType\":");
    match &res.value {
        Value::Scalar { t_ms, v } => {
            data.push_str("\"scalar\",\"result\":");
            json::push_scalar_point(&mut data, *t_ms, *v);
        }
        Value::String { t_ms, v } => {
            data.push_str("\"string\",\"result\":[");
            json::push_ts(&mut data, *t_ms);
            data.push(',');
            json::push_str(&mut data, v);
            data.push(']');
        }
        Value::Vector(samples) => {
            data.push_str("\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                data.push_str("{\"metric\":");
                json::push_labels(&mut data, &s.labels);
                data.push_str(",\"value\":");
                json::push_point(&mut data, s.t_ms, s.v);
                data.push('}');
            }
            data.push(']');
        }
        Value::Matrix(series) => {
            data.push_str("\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    data.push(',');
                }
                data.push_str("{\"metric\":");
                json::push_labels(&mut data, &s.labels);
                data.push_str(",\"values\":[");
                for (j, (t, v)) in s.samples.iter().enumerate() {
                    if j > 0 {
                        data.push(',');
                    }
                    json::push_point(&mut data, t, v);
                }
                data.push_str("]}");
            }
            data.push(']');
        }
    }
    data.push('}');
    Reply {
        data,
        warnings,
        infos: res.info,
    }
}

/// About how many bytes a result encodes to: each label pair and each point at a typical width.
fn encoded_size_hint(v: &Value) -> usize {
    let labels = |l: &gauntlet_engine::labels::Labels| {
        32 + l
            .iter()
            .map(|x| x.name.len() + x.value.len() + 6)
            .sum::<usize>()
    };
    match v {
        Value::Vector(samples) => samples.iter().map(|s| labels(&s.labels) + 40).sum(),
        Value::Matrix(series) => series
            .iter()
            .map(|s| labels(&s.labels) + 16 + s.samples.len() * 28)
            .sum(),
        _ => 0,
    }
}
