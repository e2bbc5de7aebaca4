//! Instant queries run as vertical shards (`--query-frontend.vertical-shards`), as Thanos's
//! frontend runs them: a shardable query is asked once per shard with `shard_info`, each
//! shard's series are the series of one hash bucket, and the answer is every shard's series
//! put together, ordered by label set. Queries whose answer order is their point (`sort`,
//! `topk` and the like at the top) and queries that are not shardable are passed through.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use gauntlet_promql::parser::{self, AggregateOp, Expr, Options};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::Frontend;
use super::range::{encode_form, error_body, pass_back, request_form};
use super::retry::{Answer, Ask};
use super::shard::Analysis;

/// The answer to an instant query when the frontend shards it; `None` when it is passed
/// through as it came (not shardable, sharding off, already a shard, or its order matters).
pub(super) async fn serve(
    fe: &Arc<Frontend>,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    if fe.vertical_shards < 2 || !matches!(*method, Method::GET | Method::POST) {
        return None;
    }
    // A request that does not read is the querier's to refuse, with its own words.
    let form = request_form(method, query, headers, body).ok()?;
    if !form.value("shard_info").is_empty() {
        return None;
    }
    let q = form.value("query");
    let analysis = Analysis::of(q);
    let shardable = analysis.shardable() && !ordered(q);
    fe.metrics.sharding_instant[usize::from(!shardable)]
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if !shardable {
        return None;
    }
    let total = fe.vertical_shards;
    let mut passed = fe.forwarded(headers);
    passed.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let asks: Vec<Ask> = (0..total)
        .map(|i| {
            let mut pairs: Vec<(&str, String)> = form
                .pairs()
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            pairs.push(("shard_info", analysis.shard_param(i, total)));
            Ask {
                method: Method::POST,
                path: "/api/v1/query".into(),
                query: String::new(),
                headers: passed.clone(),
                body: Bytes::from(encode_form(&pairs)),
            }
        })
        .collect();
    let began = std::time::Instant::now();
    let answers = futures::future::join_all(
        asks.iter()
            .map(|a| fe.downstream.send(a, fe.instant_max_retries)),
    )
    .await;
    let mut got = Vec::with_capacity(answers.len());
    for a in answers {
        match a {
            Ok(a) if a.status.is_success() => got.push(a),
            // The first shard refused or failed answers for the query, as one querier would.
            Ok(a) => return Some(pass_back(a)),
            Err(e) => {
                return Some(error_body(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "internal",
                    &format!("the querier did not answer: {e}"),
                ));
            }
        }
    }
    fe.log_if_slow(began, q, 0, 0, 0);
    Some(match merge(&got) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        // A shard's answer the frontend cannot take apart goes back as it is.
        Err(_) => pass_back(got.swap_remove(0)),
    })
}

/// Whether the order of `query`'s answer is its meaning: `sort`, `sort_desc`,
/// `sort_by_label(_desc)` at the top (or on either side of a top-level operator), or `topk`,
/// `bottomk`, `limitk`, `limit_ratio` at the top. Such answers are not put back together from
/// shards by label set.
fn ordered(query: &str) -> bool {
    let Ok(expr) = parser::parse(query, &Options::all_features()) else {
        return true;
    };
    fn unparen(e: &Expr) -> &Expr {
        match e {
            Expr::Paren(p) => unparen(&p.expr),
            e => e,
        }
    }
    fn sorts(e: &Expr) -> bool {
        matches!(unparen(e), Expr::Call(c) if c.func.name.starts_with("sort"))
    }
    match unparen(&expr) {
        Expr::Aggregate(a) => matches!(
            a.op,
            AggregateOp::Topk
                | AggregateOp::Bottomk
                | AggregateOp::Limitk
                | AggregateOp::LimitRatio
        ),
        Expr::Binary(b) => sorts(&b.lhs) || sorts(&b.rhs),
        e => sorts(e),
    }
}

/// A shard's instant-query answer as read, its series left as JSON text.
#[derive(Deserialize)]
struct Shard<'a> {
    status: Option<String>,
    #[serde(borrow)]
    data: Option<ShardData<'a>>,
    warnings: Option<Vec<Value>>,
    infos: Option<Vec<Value>>,
}

#[derive(Deserialize)]
struct ShardData<'a> {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(borrow)]
    result: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct Labelled {
    #[serde(default)]
    metric: Map<String, Value>,
}

/// Why the shards' answers were not put together.
#[derive(Debug)]
struct NotMerged;

/// The shards' answers put together: every series once, ordered by label set; warnings and
/// infos once each.
fn merge(answers: &[Answer]) -> Result<Vec<u8>, NotMerged> {
    let mut result_type: Option<String> = None;
    let mut series: Vec<(super::merge::SeriesKey, &RawValue)> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut infos: Vec<String> = Vec::new();
    let shards: Vec<Shard<'_>> = answers
        .iter()
        .map(|a| serde_json::from_slice(&a.body).map_err(|_| NotMerged))
        .collect::<Result<_, _>>()?;
    for s in &shards {
        if s.status.as_deref() != Some("success") {
            return Err(NotMerged);
        }
        let data = s.data.as_ref().ok_or(NotMerged)?;
        match &result_type {
            None => result_type = Some(data.result_type.clone()),
            Some(t) if *t == data.result_type => {}
            Some(_) => return Err(NotMerged),
        }
        if !matches!(data.result_type.as_str(), "vector" | "matrix") {
            return Err(NotMerged);
        }
        for item in data.result.iter().flatten() {
            let l: Labelled = serde_json::from_str(item.get()).map_err(|_| NotMerged)?;
            series.push((super::merge::key(&l.metric), item));
        }
        for (from, into) in [(&s.warnings, &mut warnings), (&s.infos, &mut infos)] {
            for w in from.iter().flatten().filter_map(Value::as_str) {
                if !into.iter().any(|x| x == w) {
                    into.push(w.to_string());
                }
            }
        }
    }
    // Each series is in one shard; should a querier answer one twice, it is kept once.
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::new();
    out.extend_from_slice(br#"{"status":"success","data":{"resultType":"#);
    serde_json::to_writer(&mut out, result_type.as_deref().unwrap_or("vector"))
        .map_err(|_| NotMerged)?;
    out.extend_from_slice(br#","result":["#);
    for (i, (_, raw)) in series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(raw.get().as_bytes());
    }
    out.extend_from_slice(b"]}");
    super::merge::end_answer(&mut out, &warnings, &infos);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn answer(body: &str) -> Answer {
        Answer {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    #[test]
    fn shards_are_put_together_by_label_set_with_warnings_once() {
        let a = answer(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"b"},"value":[1,"2"]}]},"warnings":["w"]}"#,
        );
        let b = answer(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"c"},"value":[1,"3"]},{"metric":{"job":"a"},"value":[1,"1"]}]},"warnings":["w","v"]}"#,
        );
        let got = String::from_utf8(merge(&[a, b]).unwrap()).unwrap();
        assert_eq!(
            got,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1,"1"]},{"metric":{"job":"b"},"value":[1,"2"]},{"metric":{"job":"c"},"value":[1,"3"]}]},"warnings":["w","v"]}"#
        );
    }

    #[test]
    fn answers_of_other_shapes_are_not_merged() {
        let v = answer(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#);
        let s = answer(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#);
        assert!(merge(&[v, s]).is_err());
        let bad = answer("{not json");
        assert!(merge(&[bad]).is_err());
    }

    #[test]
    fn sorted_and_top_k_answers_keep_their_order_by_not_being_sharded() {
        for q in [
            "sort(sum by (job) (up))",
            "sort_desc(sum by (job) (up))",
            "(sort_by_label(sum by (job) (up), \"job\"))",
            "topk(3, sum by (job) (up))",
            "sort(sum by (job) (up)) > 1",
        ] {
            assert!(ordered(q), "{q}");
        }
        for q in ["sum by (job) (up)", "sum by (job) (topk by (job) (1, up))"] {
            assert!(!ordered(q), "{q}");
        }
    }
}
