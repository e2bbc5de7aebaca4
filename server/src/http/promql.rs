//! The PromQL endpoints: `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query`,
//! with Prometheus's parameter checks and error messages.

use crate::now_ms;
use crate::query::ReadView;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gauntlet_engine::budget::{MemoryBudget, Need};
use gauntlet_engine::query::PoolQuery;
use gauntlet_promql::{
    Engine, EngineOptions, ParseCache, QueryResult, QueryStats, SelectionCache, Value,
};

use super::api::{ApiState, Reply, open_view};
use super::json;
use super::params::{
    ApiError, Form, StatsParam, limit_param, parse_duration, parse_time, stats_param, time_param,
};

/// Most points per series a range query may return, as Prometheus limits it.
const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// `/api/v1/query`: `query`, `time` (default now), `timeout`, `stats`.
pub fn instant_query(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    let began = Instant::now();
    let limit = limit_param(form)?;
    let (res, warnings) = instant_result(st, form)?;
    answer(st, form, truncate(res, limit), warnings, began)
}

/// A query's result and the warnings of the read it made.
pub type Evaluated = (QueryResult, Vec<String>);

/// Evaluates the instant query of `form` as `/api/v1/query` does (its `query`, `time`,
/// `timeout`, `lookback_delta` and Thanos's read parameters): the result and the warnings
/// of the read. The HTTP API encodes it as JSON, the gRPC Query API as series.
pub fn instant_result(st: &ApiState, form: &Form) -> Result<Evaluated, ApiError> {
    let t = time_param(form, "time", now_ms())?;
    let engine = engine(st, form)?;
    let query = form.value("query");
    let view = open_view(st, form)?;
    let res = engine.instant_query(view.as_ref(), query, t)?;
    Ok((res, view.warnings()))
}

/// `/api/v1/query_range`: `query`, `start`, `end`, `step`, `timeout`, `stats`.
pub fn range_query(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    let began = Instant::now();
    let limit = limit_param(form)?;
    let (res, warnings) = range_result(st, form)?;
    answer(st, form, truncate(res, limit), warnings, began)
}

/// Evaluates the range query of `form` as `/api/v1/query_range` does (its `start`, `end`,
/// `step` and the parameters [`instant_result`] reads): the result and the read's warnings.
pub fn range_result(st: &ApiState, form: &Form) -> Result<Evaluated, ApiError> {
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
    let res = engine.range_query(view.as_ref(), form.value("query"), start, end, step)?;
    Ok((res, view.warnings()))
}

/// The answer to a query request: `res` encoded on the request's share of the worker pool,
/// held in the query role's budget, with the statistics the request asked for.
fn answer(
    st: &ApiState,
    form: &Form,
    res: QueryResult,
    warnings: Vec<String>,
    began: Instant,
) -> Result<Reply, ApiError> {
    let work = st.config.pool.query(form.cancel().clone());
    reply(
        &st.config.budget,
        res,
        warnings,
        stats_param(form),
        began,
        &work,
    )
}

/// `/api/v1/format_query`: the query pretty-printed as Prometheus prints it (over several
/// lines when it is longer than 100 bytes).
pub fn format_query(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    let text = parser(st)
        .pretty_query(form.value("query"))
        .map_err(|e| ApiError::invalid_param("query", e))?;
    let mut data = String::new();
    json::push_str(&mut data, &text);
    Ok(Reply {
        data,
        ..Reply::default()
    })
}

/// Checks that `query` parses, with Prometheus's error for the `query` parameter.
pub fn check_query(st: &ApiState, query: &str) -> Result<(), ApiError> {
    parser(st)
        .format_query(query)
        .map(|_| ())
        .map_err(|e| ApiError::invalid_param("query", e))
}

/// An engine that only parses: the configured query limits, the server's pool, budget and
/// parse cache.
fn parser(st: &ApiState) -> Engine {
    Engine::with_cache(
        EngineOptions {
            limits: st.config.limits,
            pool: st.config.pool.clone(),
            budget: st.config.budget.clone(),
            ..EngineOptions::default()
        },
        st.config.parse_cache.clone(),
    )
}

/// The engine options of this request: the configured limits, the timeout shortened by
/// `timeout`, the lookback delta `lookback_delta`.
fn engine_options(st: &ApiState, form: &Form) -> Result<EngineOptions, ApiError> {
    let mut timeout = st.config.timeout;
    if let Some(v) = form.get("timeout").filter(|v| !v.is_empty()) {
        let ms = parse_duration(v).map_err(|e| ApiError::invalid_param("timeout", e))?;
        timeout = timeout.min(Duration::from_millis(ms.max(0) as u64));
    }
    let mut lookback = st.config.lookback_delta_ms;
    if let Some(v) = form.get("lookback_delta").filter(|v| !v.is_empty()) {
        lookback = parse_duration(v).map_err(|e| {
            ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
        })?;
        if lookback <= 0 {
            lookback = st.config.lookback_delta_ms;
        }
    }
    Ok(EngineOptions {
        lookback_delta_ms: lookback,
        max_samples: st.config.max_samples,
        timeout,
        delayed_name_removal: st.config.delayed_name_removal,
        limits: st.config.limits,
        per_step_stats: stats_param(form) == StatsParam::All,
        features: st.config.features,
        compat: st.config.compat,
        cancel: form.cancel().clone(),
        pool: st.config.pool.clone(),
        budget: st.config.budget.clone(),
    })
}

/// An engine for this request ([`engine_options`]) parsing through the server's cache.
fn engine(st: &ApiState, form: &Form) -> Result<Engine, ApiError> {
    Ok(Engine::with_cache(
        engine_options(st, form)?,
        st.config.parse_cache.clone(),
    ))
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

/// The answer to a query: `data` holds the result, then (when `stats` asks for them) the
/// query's statistics, its execution timed from `began`. The result and its JSON are
/// reserved from the memory budget until the answer is sent; a 503 when they do not fit. A
/// large result is encoded in pieces on the worker pool, as `work`'s tasks.
fn reply(
    budget: &Arc<MemoryBudget>,
    res: QueryResult,
    mut warnings: Vec<String>,
    stats: StatsParam,
    began: Instant,
    work: &PoolQuery,
) -> Result<Reply, ApiError> {
    let held = budget
        .reserve("query", answer_bytes(&res.value), Need::Grow)
        .map_err(gauntlet_engine::Error::from)?;
    warnings.extend(res.warnings);
    let end = match stats {
        StatsParam::Off => "}".to_string(),
        StatsParam::On | StatsParam::All => {
            let mut end = String::from(",\"stats\":");
            push_stats(&mut end, &res.stats, res.peak_samples, began.elapsed());
            end.push('}');
            end
        }
    };
    let mut head = String::from("{\"resultType\":");
    // The short head goes out as a piece of its own: joining it to the first piece of a long
    // answer would copy that piece.
    let rest = match &res.value {
        Value::Scalar { t_ms, v } => {
            head.push_str("\"scalar\",\"result\":");
            json::push_scalar_point(&mut head, *t_ms, *v);
            head.push_str(&end);
            Vec::new()
        }
        Value::String { t_ms, v } => {
            head.push_str("\"string\",\"result\":[");
            json::push_ts(&mut head, *t_ms);
            head.push(',');
            json::push_str(&mut head, v);
            head.push(']');
            head.push_str(&end);
            Vec::new()
        }
        Value::Vector(samples) => {
            head.push_str("\"vector\",\"result\":[");
            let pieces = encode_pieces(work, samples, vector_size, |out, ts, s| {
                out.push_str("{\"metric\":");
                json::push_labels(out, &s.labels);
                match &s.h {
                    Some(h) => {
                        out.push_str(",\"histogram\":");
                        json::push_histogram_point(out, ts, s.t_ms, h);
                    }
                    None => {
                        out.push_str(",\"value\":");
                        json::push_point(out, ts, s.t_ms, s.v);
                    }
                }
                out.push('}');
            });
            close(pieces, &format!("]{end}"))
        }
        Value::Matrix(series) => {
            head.push_str("\"matrix\",\"result\":[");
            let pieces = encode_pieces(work, series, matrix_size, |out, ts, s| {
                out.push_str("{\"metric\":");
                json::push_labels(out, &s.labels);
                // As Prometheus writes a series: `values` when it has floats, `histograms`
                // when it has histograms.
                if !s.samples.is_empty() || s.histograms.ts.is_empty() {
                    out.push_str(",\"values\":[");
                    for (j, (t, v)) in s.samples.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        json::push_point(out, ts, t, v);
                    }
                    out.push(']');
                }
                if !s.histograms.ts.is_empty() {
                    out.push_str(",\"histograms\":[");
                    for (j, (t, h)) in s.histograms.ts.iter().zip(&s.histograms.h).enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        json::push_histogram_point(out, ts, *t, h);
                    }
                    out.push(']');
                }
                out.push('}');
            });
            close(pieces, &format!("]{end}"))
        }
    };
    Ok(Reply {
        data: head,
        rest,
        warnings,
        infos: res.info,
        held: Some(held),
    })
}

/// Bytes a result and its JSON take, about: what [`reply`] reserves.
fn answer_bytes(v: &Value) -> u64 {
    let bytes = match v {
        Value::Vector(samples) => samples.iter().map(|s| vector_size(s) * 2).sum(),
        Value::Matrix(series) => series
            .iter()
            .map(|s| matrix_size(s) + s.samples.len() * 16 + s.histograms.len() * 256)
            .sum(),
        Value::Scalar { .. } | Value::String { .. } => 0,
    };
    bytes as u64
}

/// Appends a query's `stats` object as Prometheus writes it: timings in seconds (there is no
/// queue: execution starts as the request is read), then the sample counts, step by step
/// first when they were counted so.
fn push_stats(out: &mut String, s: &QueryStats, peak: usize, exec: Duration) {
    out.push_str("{\"timings\":{");
    let timings = [
        ("evalTotalTime", s.eval_total),
        ("resultSortTime", s.result_sort),
        ("queryPreparationTime", s.preparation),
        ("innerEvalTime", s.inner_eval),
        ("execQueueTime", Duration::ZERO),
        ("execTotalTime", exec),
    ];
    for (i, (name, d)) in timings.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(name);
        out.push_str("\":");
        push_json_number(out, d.as_secs_f64());
    }
    out.push_str("},\"samples\":{");
    if !s.samples_per_step.is_empty() {
        out.push_str("\"totalQueryableSamplesPerStep\":[");
        for (i, (t_ms, n)) in s.samples_per_step.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            push_json_number(out, *t_ms as f64 / 1000.0);
            out.push(',');
            out.push_str(itoa::Buffer::new().format(*n));
            out.push(']');
        }
        out.push_str("],");
    }
    out.push_str("\"totalQueryableSamples\":");
    out.push_str(itoa::Buffer::new().format(s.total_samples));
    out.push_str(",\"peakSamples\":");
    out.push_str(itoa::Buffer::new().format(peak));
    out.push_str("}}");
}

/// Appends a JSON number as Go's `encoding/json` spells a float64: the shortest digits that
/// read back the same, plain between 1e-6 and 1e21, with an exponent otherwise (`5e-7`).
fn push_json_number(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    let a = v.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let _ = write!(out, "{v:e}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Bytes of encoded answer worth a second task: below this, handing a piece to another
/// thread costs about what it saves.
const PARALLEL_MIN_BYTES: usize = 256 << 10;

/// Most pieces one answer is cut into.
const MAX_PIECES: usize = 4;

/// The JSON of `items`, comma-separated, in one or more pieces to be sent in order. A large
/// answer is cut into contiguous runs of about equal encoded size, each encoded by a task of
/// `work` on the worker pool; a piece after the first starts with its separating comma.
fn encode_pieces<T: Sync>(
    work: &PoolQuery,
    items: &[T],
    size: fn(&T) -> usize,
    write: impl Fn(&mut String, &mut json::TsText, &T) + Sync,
) -> Vec<String> {
    let sizes: Vec<usize> = items.iter().map(size).collect();
    let total: usize = sizes.iter().sum();
    let parts = if total >= PARALLEL_MIN_BYTES {
        work.threads().clamp(1, MAX_PIECES)
    } else {
        1
    };
    encode_in(work, items, &sizes, parts, write)
}

/// [`encode_pieces`] in `parts` pieces (fewer when there are fewer items).
fn encode_in<T: Sync>(
    work: &PoolQuery,
    items: &[T],
    sizes: &[usize],
    parts: usize,
    write: impl Fn(&mut String, &mut json::TsText, &T) + Sync,
) -> Vec<String> {
    let total: usize = sizes.iter().sum();
    let run = |(a, z): (usize, usize)| {
        let mut out = String::with_capacity(sizes[a..z].iter().sum::<usize>() + 8);
        let mut ts = json::TsText::new();
        for (i, item) in items[a..z].iter().enumerate() {
            if a + i > 0 {
                out.push(',');
            }
            write(&mut out, &mut ts, item);
        }
        out
    };
    let cuts = cut_points(sizes, total, parts);
    if cuts.len() == 1 {
        return vec![run(cuts[0])];
    }
    // Each piece is its own task; the pool takes them in turn with other queries' tasks.
    let mut pieces: Vec<Option<String>> = vec![None; cuts.len()];
    work.scope(|sc| {
        for (piece, &cut) in pieces.iter_mut().zip(&cuts) {
            let run = &run;
            sc.spawn(move || *piece = Some(run(cut)));
        }
    });
    // A piece is missing only when the query was cancelled meanwhile (its tasks dropped);
    // nobody reads that answer, so an empty piece does.
    pieces.into_iter().map(Option::unwrap_or_default).collect()
}

/// At most `parts` contiguous, non-empty index ranges covering `sizes` (one empty range when
/// `sizes` is), of about `total / parts` each.
fn cut_points(sizes: &[usize], total: usize, parts: usize) -> Vec<(usize, usize)> {
    let parts = parts.max(1);
    let mut cuts = Vec::with_capacity(parts);
    let (mut a, mut acc) = (0, 0);
    for (i, &s) in sizes.iter().enumerate() {
        acc += s;
        let goal = total / parts * (cuts.len() + 1);
        if acc >= goal && cuts.len() + 1 < parts && i + 1 < sizes.len() {
            cuts.push((a, i + 1));
            a = i + 1;
        }
    }
    cuts.push((a, sizes.len()));
    cuts
}

/// Appends `end` to the last piece (an empty list gets one piece holding just `end`).
fn close(mut pieces: Vec<String>, end: &str) -> Vec<String> {
    match pieces.last_mut() {
        Some(last) => last.push_str(end),
        None => pieces.push(end.to_string()),
    }
    pieces
}

fn labels_size(l: &gauntlet_engine::labels::Labels) -> usize {
    32 + l
        .iter()
        .map(|x| x.name.len() + x.value.len() + 6)
        .sum::<usize>()
}

/// About how many bytes a sample encodes to: its labels and one point at a typical width.
fn vector_size(s: &gauntlet_promql::InstantSample) -> usize {
    labels_size(&s.labels) + 40 + s.h.as_ref().map_or(0, |h| histogram_size(h))
}

/// About how many bytes a histogram encodes to.
fn histogram_size(h: &gauntlet_engine::histogram::FloatHistogram) -> usize {
    64 + 80 * (h.positive_buckets.len() + h.negative_buckets.len() + 1)
}

/// About how many bytes a series encodes to: its labels and its points at a typical width
/// (a ms timestamp and a 17-digit value take 40), erring long: the piece is reserved at this
/// size, and pages it never writes cost nothing, while growing it copies it.
fn matrix_size(s: &gauntlet_engine::query::Series) -> usize {
    labels_size(&s.labels)
        + 32
        + s.samples.len() * 42
        + s.histograms
            .h
            .iter()
            .map(|h| 24 + histogram_size(h))
            .sum::<usize>()
}

/// What the in-process rules keep from round to round: every rule's parsed expression and
/// what it selects, sized to the rules loaded ([`RuleCaches::size_for`]).
#[derive(Debug, Default)]
pub struct RuleCaches {
    parsed: ParseCache,
    selections: SelectionCache,
}

impl RuleCaches {
    /// Makes room for `rules` rules' expressions, and for what templates' `query` calls ask,
    /// forgetting the selections of the rules loaded before.
    pub fn size_for(&self, rules: usize) {
        let queries = rules.saturating_mul(2);
        self.parsed.keep(queries);
        self.selections.reset(queries);
    }
}

/// The engine of [`rule_query`]: `/api/v1/query`'s with no parameters, parsing through the
/// rules' own cache.
fn rule_engine(st: &ApiState, caches: &RuleCaches) -> Result<Engine, String> {
    let opts = engine_options(st, &Form::default()).map_err(|e| e.message)?;
    Ok(Engine::with_cache(opts, caches.parsed.clone()))
}

/// Evaluates a rule's expression at `t_ms` in-process, as `/api/v1/query` would with no
/// parameters but `query` and `time` (the default tenant's view under enforced tenancy): for
/// the rules `gauntlet all` runs. The answer is a vector (a scalar as one sample).
pub fn rule_query(
    st: &ApiState,
    caches: &RuleCaches,
    view: Option<Arc<dyn ReadView>>,
    expr: &str,
    t_ms: i64,
) -> Result<Vec<gauntlet_promql::InstantSample>, String> {
    let form = Form::default();
    let engine = rule_engine(st, caches)?;
    let view = match view {
        Some(v) => v,
        None => open_view(st, &form).map_err(|e| e.message)?,
    };
    let res = engine
        .instant_query(view.as_ref(), expr, t_ms)
        .map_err(|e| e.to_string())?;
    gauntlet_promql::rules::group::rule_vector(res.value)
}

/// A view for [`rule_query`] of `exprs` at `t_ms`, with what they select announced to it
/// ([`Queryable::prefetch`]): a group's rules then read the heads in one visit to their cores
/// rather than one each. `None` when no view opens (the queries then say why).
pub fn rule_prepare(
    st: &ApiState,
    caches: &RuleCaches,
    exprs: &[&str],
    t_ms: i64,
) -> Option<Arc<dyn ReadView>> {
    let form = Form::default();
    let engine = rule_engine(st, caches).ok()?;
    let view = open_view(st, &form).ok()?;
    let selections: Vec<_> = exprs
        .iter()
        .flat_map(|e| engine.instant_selections_known(&caches.selections, e, t_ms))
        .collect();
    view.prefetch(&selections);
    Some(view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::labels::Labels;
    use gauntlet_promql::InstantSample;

    fn write(out: &mut String, ts: &mut json::TsText, s: &InstantSample) {
        out.push_str("{\"metric\":");
        json::push_labels(out, &s.labels);
        out.push_str(",\"value\":");
        json::push_point(out, ts, s.t_ms, s.v);
        out.push('}');
    }

    fn test_work() -> PoolQuery {
        gauntlet_engine::query::WorkPool::default().query(gauntlet_engine::query::Cancel::never())
    }

    fn samples(n: usize) -> Vec<InstantSample> {
        (0..n)
            .map(|i| InstantSample {
                labels: Labels::from_pairs([("i", i.to_string()), ("job", "x".repeat(i % 7))]),
                t_ms: 1_700_000_000_123 + i as i64,
                v: i as f64 / 3.0,
                h: None,
            })
            .collect()
    }

    #[test]
    fn pieces_join_to_the_single_encoding() {
        let work = test_work();
        for n in [0, 1, 2, 3, 5, 17, 1000] {
            let items = samples(n);
            let sizes: Vec<usize> = items.iter().map(vector_size).collect();
            let one = encode_in(&work, &items, &sizes, 1, write).concat();
            let parsed: serde_json::Value = serde_json::from_str(&format!("[{one}]")).unwrap();
            assert_eq!(parsed.as_array().unwrap().len(), n);
            for parts in 2..=5 {
                let pieces = encode_in(&work, &items, &sizes, parts, write);
                assert!(pieces.len() <= parts.min(n.max(1)), "{n} {parts}");
                assert_eq!(pieces.concat(), one, "{n} items in {parts} parts");
            }
        }
    }

    #[test]
    fn cut_points_cover_every_index_once() {
        for sizes in [
            vec![],
            vec![5],
            vec![1, 1, 1],
            vec![100, 1, 1, 1],
            vec![1, 1, 1, 100],
        ] {
            let total = sizes.iter().sum();
            for parts in 1..=6 {
                let cuts = cut_points(&sizes, total, parts);
                assert!(cuts.len() <= parts);
                assert_eq!(cuts.first().unwrap().0, 0);
                assert_eq!(cuts.last().unwrap().1, sizes.len());
                for w in cuts.windows(2) {
                    assert_eq!(w[0].1, w[1].0);
                    assert!(w[0].0 < w[0].1, "{sizes:?} {parts}: {cuts:?}");
                }
            }
        }
    }

    #[test]
    fn a_large_matrix_reply_is_valid_json_in_pieces() {
        let series: Vec<gauntlet_engine::query::Series> = (0..400)
            .map(|i| {
                let mut samples = gauntlet_engine::chunk::SampleBatch::new();
                for k in 0..200 {
                    samples.ts.push(1_700_000_000_000 + k * 60_000);
                    samples.val.push((i * k) as f64 * 1.5e-3);
                }
                gauntlet_engine::query::Series::floats(
                    Labels::from_pairs([("i", i.to_string())]),
                    samples,
                )
            })
            .collect();
        let res = QueryResult {
            value: Value::Matrix(series),
            warnings: Vec::new(),
            info: Vec::new(),
            peak_samples: 0,
            stats: QueryStats::default(),
        };
        for stats in [StatsParam::Off, StatsParam::All] {
            let r = reply(
                &MemoryBudget::unlimited(),
                res.clone(),
                Vec::new(),
                stats,
                Instant::now(),
                &test_work(),
            )
            .unwrap();
            let body = std::iter::once(r.data.as_str())
                .chain(r.rest.iter().map(String::as_str))
                .collect::<String>();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["resultType"], "matrix");
            let result = v["result"].as_array().unwrap();
            assert_eq!(result.len(), 400);
            assert_eq!(result[399]["metric"]["i"], "399");
            assert_eq!(result[399]["values"].as_array().unwrap().len(), 200);
            assert_eq!(v.get("stats").is_some(), stats == StatsParam::All);
        }
    }

    #[test]
    fn stats_follow_the_result_in_prometheus_key_order() {
        let res = QueryResult {
            value: Value::Scalar { t_ms: 1500, v: 2.0 },
            warnings: Vec::new(),
            info: Vec::new(),
            peak_samples: 7,
            stats: QueryStats {
                total_samples: 12,
                samples_per_step: vec![(1500, 5), (61_500, 7)],
                preparation: Duration::from_micros(250),
                inner_eval: Duration::from_nanos(500),
                result_sort: Duration::ZERO,
                eval_total: Duration::from_millis(3),
            },
        };
        let r = reply(
            &MemoryBudget::unlimited(),
            res.clone(),
            Vec::new(),
            StatsParam::On,
            Instant::now(),
            &test_work(),
        )
        .unwrap();
        let exec = r.data.find("\"execTotalTime\":").unwrap();
        let text = format!(
            "{}0{}",
            &r.data[..exec + 16],
            &r.data[r.data[exec..].find('}').unwrap() + exec..]
        );
        assert_eq!(
            text,
            "{\"resultType\":\"scalar\",\"result\":[1.500,\"2\"],\"stats\":{\"timings\":{\"evalTotalTime\":0.003,\
             \"resultSortTime\":0,\"queryPreparationTime\":0.00025,\"innerEvalTime\":5e-7,\
             \"execQueueTime\":0,\"execTotalTime\":0},\"samples\":{\"totalQueryableSamplesPerStep\":\
             [[1.5,5],[61.5,7]],\"totalQueryableSamples\":12,\"peakSamples\":7}}}"
        );
        let off = reply(
            &MemoryBudget::unlimited(),
            res,
            Vec::new(),
            StatsParam::Off,
            Instant::now(),
            &test_work(),
        )
        .unwrap();
        assert_eq!(
            off.data,
            "{\"resultType\":\"scalar\",\"result\":[1.500,\"2\"]}"
        );
    }
}
