//! Prometheus's HTTP API (`/api/v1/...`) over a [`Source`]: the answers Grafana, `curl` and
//! the Thanos UI expect, in Prometheus's own JSON. Engine calls are synchronous, so every
//! handler body runs on a blocking thread.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use gauntlet_engine::go_format::quoted;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{Cancel, SelectHints};
use gauntlet_promql::{Compat, Features, QueryLimits};
use percent_encoding::percent_decode_str;

use super::active::ActiveQueries;
use super::admission::Admission;
use super::json;
use super::params::{
    ApiError, Form, MAX_TIME_MS, MIN_TIME_MS, bool_param, limit_param, parse_duration,
    parse_match_sets, time_param,
};
use super::promql;
use crate::query::tenancy::{Tenancy, TenantView};
use crate::query::{ReadOptions, ReadView, Source};
use crate::rule::groups::RuleSelection;

/// Settings of the query API that do not change per request.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Lookback for instant selectors, ms (Prometheus's 5 m default).
    pub lookback_delta_ms: i64,
    /// Most samples one query may hold in memory (`--query.max-samples`).
    pub max_samples: usize,
    /// Longest a query may run (`--query.timeout`); a request's `timeout` can only shorten it.
    pub timeout: Duration,
    /// Default of the `partial_response` parameter (`--query.partial-response`).
    pub partial_response: bool,
    /// Delayed metric-name removal in PromQL (`--enable-feature=promql-delayed-name-removal`).
    pub delayed_name_removal: bool,
    /// Gated PromQL syntax turned on with `--enable-feature`.
    pub features: Features,
    /// Which Prometheus release's answers PromQL gives where releases differ
    /// (`--query.promql-compat`).
    pub compat: Compat,
    /// How long and how deeply nested a query may be (`--query.max-length`,
    /// `--query.max-depth`).
    pub limits: QueryLimits,
    /// The tenancy every request is held to (`--query.enforce-tenancy`); `None` when off.
    pub tenancy: Option<Tenancy>,
    /// Most `match[]` selectors one series, labels or label values request may carry
    /// (`--query.max-match-selectors`); each is a selection of its own.
    pub max_match_sets: usize,
    /// The gate queries and metadata reads pass (`--query.max-concurrent`,
    /// `--query.max-queued`).
    pub admission: Arc<Admission>,
    /// Where running queries are recorded (`queries.active`); `None` records nothing.
    pub active: Option<Arc<ActiveQueries>>,
    /// The process's query worker pool, shared by every query (the default: a pool made on
    /// first use, sized to the cores).
    pub pool: gauntlet_engine::query::WorkPool,
    /// The memory budget queries and metadata reads reserve from: the query role's (the
    /// default: one without a limit, for tests).
    pub budget: Arc<gauntlet_engine::budget::MemoryBudget>,
    /// The queries parsed lately, shared by the engine each request builds.
    pub parse_cache: gauntlet_promql::ParseCache,
    /// The rules this process evaluates (`gauntlet all --rule-file`), set once they are
    /// loaded; `/api/v1/rules` and `/api/v1/alerts` list theirs, or none.
    pub rules: Arc<std::sync::OnceLock<Arc<crate::rule::manager::Manager>>>,
    /// The endpoints whose rules `/api/v1/rules` and `/api/v1/alerts` list instead
    /// (`gauntlet query`).
    pub remote_rules: Option<Arc<crate::query::rules::RuleEndpoints>>,
    /// Where `/api/v1/query_exemplars` reads exemplars: the endpoints (`gauntlet query`) or
    /// the process's own heads (`gauntlet all`); none answers empty.
    pub exemplars: Option<Arc<dyn crate::query::exemplars::ExemplarSource>>,
    /// The endpoints whose metric metadata `/api/v1/metadata` merges (`gauntlet query`);
    /// none answers empty.
    pub remote_metadata: Option<Arc<crate::query::metadata::MetadataEndpoints>>,
    /// The endpoints whose scrape targets `/api/v1/targets` merges (`gauntlet query`); none
    /// answers empty.
    pub remote_targets: Option<Arc<crate::query::targets::TargetEndpoints>>,
}

/// PromQL feature flags named as Prometheus names them (`--enable-feature`, repeatable and
/// comma-separated), applied to `config`: `promql-delayed-name-removal`,
/// `promql-extended-range-selectors`, `promql-binop-fill-modifiers`. Experimental functions
/// and duration expressions are always served, so their flags are accepted and change
/// nothing.
pub fn apply_features(config: &mut ApiConfig, flags: &[String]) -> Result<(), String> {
    for f in flags.iter().flat_map(|f| f.split(',')).map(str::trim) {
        match f {
            "" => {}
            "promql-delayed-name-removal" => config.delayed_name_removal = true,
            other if config.features.enable(other) => {}
            other => return Err(format!("unknown feature {other:?}")),
        }
    }
    Ok(())
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            lookback_delta_ms: 5 * 60 * 1000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            partial_response: true,
            delayed_name_removal: false,
            features: Features::default(),
            compat: Compat::default(),
            limits: QueryLimits::default(),
            tenancy: None,
            max_match_sets: DEFAULT_MAX_MATCH_SETS,
            admission: Arc::new(Admission::new(DEFAULT_MAX_CONCURRENT, DEFAULT_MAX_QUEUED)),
            active: None,
            pool: gauntlet_engine::query::WorkPool::default(),
            budget: gauntlet_engine::budget::MemoryBudget::unlimited(),
            parse_cache: gauntlet_promql::ParseCache::default(),
            rules: Arc::default(),
            remote_rules: None,
            exemplars: None,
            remote_metadata: None,
            remote_targets: None,
        }
    }
}

/// `--query.max-concurrent`'s default, Thanos's.
pub const DEFAULT_MAX_CONCURRENT: usize = 20;
/// `--query.max-queued`'s default.
pub const DEFAULT_MAX_QUEUED: usize = 200;
/// `--query.max-match-selectors`'s default.
pub const DEFAULT_MAX_MATCH_SETS: usize = 1000;

/// Shared state of the API handlers.
pub struct ApiState {
    /// Where series come from.
    pub source: Arc<dyn Source>,
    /// Query settings.
    pub config: ApiConfig,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A successful answer: encoded `data` and annotations.
#[derive(Debug, Default)]
pub struct Reply {
    /// The JSON of `data`: its first piece.
    pub data: String,
    /// The rest of `data`'s JSON, in order, when it was encoded in pieces (a large answer is
    /// encoded by several threads); each piece goes out as it is.
    pub rest: Vec<String>,
    /// Warnings (partial responses, PromQL warnings).
    pub warnings: Vec<String>,
    /// PromQL info annotations.
    pub infos: Vec<String>,
    /// What the answer holds of the memory budget, given back once it is sent.
    pub held: Option<gauntlet_engine::budget::Reservation>,
}

type Endpoint = fn(&ApiState, &Form) -> Result<Reply, ApiError>;

/// The `/api/v1` routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/api/v1/query",
            endpoint(promql::instant_query, Gate::Admit),
        )
        .route(
            "/api/v1/query_range",
            endpoint(promql::range_query, Gate::Admit),
        )
        .route(
            "/api/v1/format_query",
            endpoint(promql::format_query, Gate::Open),
        )
        .route("/api/v1/series", endpoint(series, Gate::Admit))
        .route("/api/v1/labels", endpoint(labels, Gate::Admit))
        .route(
            "/api/v1/label/{name}/values",
            get(
                |State(st): State<Arc<ApiState>>,
                 headers: HeaderMap,
                 uri: Uri,
                 RawQuery(q): RawQuery| async move {
                    // The name as sent, still percent-encoded: a name that is not UTF-8 once
                    // decoded gets the API's own error, not the router's.
                    let name = uri
                        .path()
                        .strip_prefix("/api/v1/label/")
                        .and_then(|p| p.strip_suffix("/values"))
                        .unwrap_or_default()
                        .to_string();
                    let tenant = tenant_header(&st, &headers);
                    run(st, q, None, tenant, Gate::Admit, move |st, form| {
                        label_values(st, form, &name)
                    })
                    .await
                },
            ),
        )
        .route("/api/v1/metadata", endpoint(metadata, Gate::Admit))
        .route(
            "/api/v1/query_exemplars",
            endpoint(query_exemplars, Gate::Admit),
        )
        .route("/api/v1/status/buildinfo", endpoint(buildinfo, Gate::Open))
        .route("/api/v1/rules", endpoint(rules, Gate::Open))
        .route("/api/v1/alerts", endpoint(alerts, Gate::Open))
        .route("/api/v1/targets", endpoint(targets, Gate::Open))
        .with_state(state)
}

/// Whether an endpoint's requests pass the admission gate: those that read series do, those
/// that answer from settings alone do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Admit,
    Open,
}

/// GET and form-encoded POST for one endpoint.
fn endpoint(f: Endpoint, gate: Gate) -> MethodRouter<Arc<ApiState>> {
    let handler = move |State(st): State<Arc<ApiState>>,
                        method: Method,
                        headers: HeaderMap,
                        RawQuery(q): RawQuery,
                        body: Bytes| async move {
        let form_body = method == Method::POST
            && headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        let body = form_body.then_some(body);
        let tenant = tenant_header(&st, &headers);
        run(st, q, body, tenant, gate, f).await
    };
    get(handler).post(handler)
}

/// What the active query log records of a request: its PromQL, or its selectors.
fn active_text(form: &Form) -> String {
    match form.value("query") {
        "" => format!("match[]={}", form.all("match[]").join(",")),
        q => q.to_string(),
    }
}

/// The request's tenant header when tenancy is enforced.
fn tenant_header(st: &ApiState, headers: &HeaderMap) -> Option<String> {
    let t = st.config.tenancy.as_ref()?;
    headers
        .get(t.header.as_str())
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Parses the form and runs `f` on a blocking thread, encoding its answer. A gated request
/// first waits for its slot. The work is cancelled when this future is dropped, which is
/// what the server does when the client goes away: the handler's token trips, and every loop
/// of the work checks it.
async fn run<F>(
    st: Arc<ApiState>,
    query: Option<String>,
    body: Option<Bytes>,
    tenant: Option<String>,
    gate: Gate,
    f: F,
) -> Response
where
    F: FnOnce(&ApiState, &Form) -> Result<Reply, ApiError> + Send + 'static,
{
    let form = move || {
        let mut form = Form::parse(query.as_deref(), body.as_deref())?;
        form.set_tenant_header(tenant);
        Ok(form)
    };
    match admitted(st, gate, form, f).await {
        // The answer goes out as the pieces it was built in: a large one is not copied into
        // an envelope first.
        Ok(reply) => {
            let tail = json::success_tail(&reply.warnings, &reply.infos);
            let parts = [json::SUCCESS_HEAD.to_string(), reply.data]
                .into_iter()
                .chain(reply.rest)
                .chain([tail]);
            respond_parts(StatusCode::OK, parts, reply.held)
        }
        Err(e) => respond(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            json::error(e.error_type(), &e.message, &[]),
        ),
    }
}

/// Runs a query that came from outside the HTTP API (the gRPC Query API) as the API runs
/// its own: `f` over `form`, through the admission gate, recorded in the active query log,
/// on a blocking thread, cancelled when this future is dropped.
pub async fn run_query<T, F>(st: Arc<ApiState>, form: Form, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&ApiState, &Form) -> Result<T, ApiError> + Send + 'static,
{
    admitted(st, Gate::Admit, move || Ok(form), f).await
}

/// Makes the request's form and runs `f` over it on a blocking thread, a gated request first
/// waiting for its slot (refused with `unavailable` when the queue is full).
async fn admitted<T, M, F>(st: Arc<ApiState>, gate: Gate, make_form: M, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    M: FnOnce() -> Result<Form, ApiError> + Send + 'static,
    F: FnOnce(&ApiState, &Form) -> Result<T, ApiError> + Send + 'static,
{
    let admission = st.config.admission.clone();
    let _slot = match gate {
        Gate::Open => None,
        Gate::Admit => match admission.enter().await {
            Ok(slot) => Some(slot),
            Err(full) => {
                return Err(ApiError {
                    class: gauntlet_engine::ErrorClass::Unavailable,
                    message: full.to_string(),
                });
            }
        },
    };
    let cancel = Cancel::new(None);
    let on_drop = cancel.on_drop();
    let res = tokio::task::spawn_blocking(move || {
        let mut form = make_form()?;
        form.set_cancel(cancel);
        let _active = match (&st.config.active, gate) {
            (Some(log), Gate::Admit) => {
                Some(log.enter(&active_text(&form), crate::now_ms() / 1000))
            }
            _ => None,
        };
        let res = f(&st, &form);
        crate::memory::return_thread_memory();
        res
    })
    .await
    .unwrap_or_else(|e| Err(ApiError::internal(format!("handler failed: {e}"))));
    on_drop.disarm();
    res
}

fn respond_parts(
    status: StatusCode,
    parts: impl IntoIterator<Item = String>,
    held: Option<gauntlet_engine::budget::Reservation>,
) -> Response {
    let mut r = Response::new(axum::body::Body::new(PartsBody {
        parts: parts.into_iter().map(Bytes::from).collect(),
        _held: held,
    }));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A body sent as the byte strings it was built from, one frame each; its length is exact, so
/// it goes out with a Content-Length as a single buffer would. It holds the answer's
/// reservation until it is dropped, once sent.
struct PartsBody {
    parts: std::collections::VecDeque<Bytes>,
    _held: Option<gauntlet_engine::budget::Reservation>,
}

impl http_body::Body for PartsBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.parts
                .pop_front()
                .map(|b| Ok(http_body::Frame::data(b))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.parts.iter().map(|b| b.len() as u64).sum())
    }
}

fn respond(status: StatusCode, body: String) -> Response {
    respond_parts(status, [body], None)
}

/// Thanos Query's read parameters.
pub fn read_options(st: &ApiState, form: &Form) -> Result<ReadOptions, ApiError> {
    let replica_labels = form.all("replicaLabels[]");
    let max_resolution_ms = match form.value("max_source_resolution") {
        "" => 0,
        // Thanos: a fifth of the step for range queries, raw for instant ones.
        "auto" => parse_duration(form.value("step")).map_or(0, |step| step / 5),
        v => parse_duration(v).map_err(|e| ApiError::invalid_param("max_source_resolution", e))?,
    };
    Ok(ReadOptions {
        dedup: bool_param(form, "dedup", true)?,
        replica_labels: (!replica_labels.is_empty())
            .then(|| replica_labels.iter().map(|s| s.to_string()).collect()),
        partial_response: bool_param(form, "partial_response", st.config.partial_response)?,
        max_resolution_ms,
        shard: shard_param(form.value("shard_info"))?,
    })
}

/// The `shard_info` parameter: a `thanos.ShardInfo` in JSON, as Thanos's query frontend sends
/// it (`{"shard_index":1,"total_shards":4,"by":true,"labels":["job"]}`); absent or empty
/// means no sharding, and so does a total below 1.
pub fn shard_param(value: &str) -> Result<Option<gauntlet_engine::store::ShardInfo>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    let wire: ShardParam = serde_json::from_str(value).map_err(|e| {
        ApiError::bad_data(format!("could not unmarshal parameter shard_info: {e}"))
    })?;
    if wire.total_shards < 1 {
        return Ok(None);
    }
    // An index outside `0..total` takes no series, as in Thanos's shard matcher.
    Ok(Some(gauntlet_engine::store::ShardInfo {
        index: u64::try_from(wire.shard_index).unwrap_or(u64::MAX),
        total: wire.total_shards as u64,
        by: wire.by,
        labels: wire.labels,
    }))
}

/// `thanos.ShardInfo` as Go's `encoding/json` writes it (fields left out when zero).
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct ShardParam {
    /// This shard, `0..total_shards`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shard_index: i64,
    /// How many shards.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total_shards: i64,
    /// Hash the `labels` (true) or every label but them (false).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by: bool,
    /// The sharding labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Opens the source for one request.
pub fn open_view(st: &ApiState, form: &Form) -> Result<Arc<dyn ReadView>, ApiError> {
    let opts = read_options(st, form)?;
    let view = st.source.view(&opts)?;
    Ok(match &st.config.tenancy {
        // Every read of the request carries its tenant's matcher.
        Some(t) => {
            let tenant = t.tenant(form.tenant_header()).map_err(ApiError::bad_data)?;
            Arc::new(TenantView::new(view, t.matcher(&tenant)))
        }
        None => view,
    })
}

/// The end of a metadata request's time (`--query.timeout`): a request with many `match[]`
/// selectors reads one selection per selector, each of them one fan-out through a querier.
/// It also ends the work when the request's client goes away.
struct Deadline {
    at: std::time::Instant,
    timeout: Duration,
    cancel: Cancel,
}

impl Deadline {
    fn start(st: &ApiState, form: &Form) -> Deadline {
        Deadline {
            at: std::time::Instant::now() + st.config.timeout,
            timeout: st.config.timeout,
            cancel: form.cancel().clone(),
        }
    }

    /// Fails with a `timeout` error once the request's time is up, and with `canceled` once
    /// its client is gone.
    fn check(&self, what: &str) -> Result<(), ApiError> {
        if self.cancel.is_canceled() {
            return Err(gauntlet_engine::Error::from(
                gauntlet_engine::query::Interrupted::Canceled,
            )
            .into());
        }
        if std::time::Instant::now() > self.at {
            return Err(ApiError::timeout(format!(
                "{what} request took longer than {:?} (--query.timeout)",
                self.timeout
            )));
        }
        Ok(())
    }
}

/// The request's `match[]` selectors, parsed; more than `--query.max-match-selectors` of
/// them, or more than `--query.max-matchers` label matchers in all, are refused before any is
/// parsed.
fn match_sets(
    st: &ApiState,
    values: &[&str],
    as_param: bool,
) -> Result<Vec<Vec<gauntlet_engine::labels::Matcher>>, ApiError> {
    if values.len() > st.config.max_match_sets {
        return Err(ApiError::bad_data(format!(
            "too many match[] selectors: {}, at most {} are taken (--query.max-match-selectors)",
            values.len(),
            st.config.max_match_sets
        )));
    }
    let matchers: usize = values
        .iter()
        .map(|v| gauntlet_promql::matcher_bound(v))
        .sum();
    if matchers > st.config.limits.max_matchers {
        return Err(ApiError::bad_data(format!(
            "match[] selectors hold {matchers} label matchers, more than the {} allowed (--query.max-matchers)",
            st.config.limits.max_matchers
        )));
    }
    parse_match_sets(values, as_param, &st.config.budget)
}

/// `start` and `end` of a metadata request, which Prometheus answers even when reversed.
fn time_range(form: &Form) -> Result<(i64, i64), ApiError> {
    Ok((
        time_param(form, "start", MIN_TIME_MS)?,
        time_param(form, "end", MAX_TIME_MS)?,
    ))
}

fn forwards((start, end): (i64, i64)) -> (i64, i64) {
    (start.min(end), start.max(end))
}

/// Cuts `items` to `limit` (0 = no limit), warning as Prometheus does when it had to.
fn apply_limit<T>(items: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push("results truncated due to limit".to_string());
    }
}

fn series(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    let sets = form.all("match[]");
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = time_range(form)?;
    let limit = limit_param(form)?;
    let sets = match_sets(st, &sets, true)?;
    let view = open_view(st, form)?;
    let hints = SelectHints {
        func: Some("series".to_string()),
        cancel: form.cancel().clone(),
        ..SelectHints::default()
    };
    let mut found: BTreeSet<Labels> = BTreeSet::new();
    // A reversed range selects the series whose chunks span it, which is rarely any; the
    // sources take ranges in order, so it selects none here.
    let sets = if start > end { Vec::new() } else { sets };
    let deadline = Deadline::start(st, form);
    // The label sets found, twice (as found and as JSON), are reserved as they come.
    let mut held = st.config.budget.empty("series");
    for set in &sets {
        deadline.check("series")?;
        let selected = view.select(set, start, end, &hints)?;
        let bytes: usize = selected.iter().map(|s| 2 * labels_bytes(&s.labels)).sum();
        held.grow(bytes as u64)
            .map_err(gauntlet_engine::Error::from)?;
        for s in selected {
            found.insert(s.labels);
        }
    }
    let mut found: Vec<Labels> = found.into_iter().collect();
    let mut warnings = view.warnings();
    apply_limit(&mut found, limit, &mut warnings);
    let mut data = String::from("[");
    for (i, l) in found.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json::push_labels(&mut data, l);
    }
    data.push(']');
    Ok(Reply {
        data,
        warnings,
        held: Some(held),
        ..Reply::default()
    })
}

/// Bytes a label set takes in memory or as JSON, about.
fn labels_bytes(l: &Labels) -> usize {
    24 + l
        .iter()
        .map(|x| 54 + x.name.len() + x.value.len())
        .sum::<usize>()
}

fn labels(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    // Label names and values come from whole blocks, which a reversed range still overlaps.
    let (start, end) = forwards(time_range(form)?);
    let limit = limit_param(form)?;
    let sets = match_sets(st, &form.all("match[]"), false)?;
    let view = open_view(st, form)?;
    let mut names: Vec<String> = if sets.is_empty() {
        view.label_names(&[], start, end)?
    } else {
        let mut all = BTreeSet::new();
        let deadline = Deadline::start(st, form);
        for set in &sets {
            deadline.check("label names")?;
            all.extend(view.label_names(set, start, end)?);
        }
        all.into_iter().collect()
    };
    let mut warnings = view.warnings();
    apply_limit(&mut names, limit, &mut warnings);
    let mut data = String::new();
    json::push_str_array(&mut data, &names);
    Ok(Reply {
        data,
        warnings,
        ..Reply::default()
    })
}

fn label_values(st: &ApiState, form: &Form, raw_name: &str) -> Result<Reply, ApiError> {
    let name = percent_decode_str(raw_name).decode_utf8_lossy();
    // Names outside the classic charset arrive escaped as `U__…` (Prometheus 3).
    let name = unescape_label_name(&name);
    if name.contains('\u{FFFD}') {
        return Err(ApiError::bad_data(format!(
            "invalid label name: {}",
            quoted(&name)
        )));
    }
    if name.is_empty() {
        return Err(ApiError::bad_data(format!(
            "invalid label name: {}",
            quoted(&name)
        )));
    }
    let (start, end) = forwards(time_range(form)?);
    let limit = limit_param(form)?;
    let sets = match_sets(st, &form.all("match[]"), false)?;
    let view = open_view(st, form)?;
    let mut values: Vec<String> = if sets.is_empty() {
        view.label_values(&name, &[], start, end)?
    } else {
        let mut all = BTreeSet::new();
        let deadline = Deadline::start(st, form);
        for set in &sets {
            deadline.check("label values")?;
            all.extend(view.label_values(&name, set, start, end)?);
        }
        all.into_iter().collect()
    };
    let mut warnings = view.warnings();
    apply_limit(&mut values, limit, &mut warnings);
    let mut data = String::new();
    json::push_str_array(&mut data, &values);
    Ok(Reply {
        data,
        warnings,
        ..Reply::default()
    })
}

/// Reverses Prometheus's `U__` label-name escaping: `_` stays for `_`, `__` is `_`,
/// `_<hex>_` is that code point.
fn unescape_label_name(name: &str) -> String {
    let Some(rest) = name.strip_prefix("U__") else {
        return name.to_string();
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let hex: String = chars.by_ref().take_while(|&c| c != '_').collect();
        match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
            Some(c) => out.push(c),
            // Not a valid escape: Prometheus keeps the name as given.
            None => return name.to_string(),
        }
    }
    out
}

/// The metric metadata of the querier's endpoints (`gauntlet query`), merged by metric name;
/// elsewhere empty, as a Prometheus without scrape targets answers: Gauntlet's own blocks carry
/// no metadata.
fn metadata(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    if let Some(remote) = &st.config.remote_metadata {
        // As Thanos's querier: no limit by default, a negative one is none either.
        let limit = match form.value("limit") {
            "" => -1,
            v => v
                .parse::<i32>()
                .map_err(|_| ApiError::bad_data(format!("invalid metric metadata limit='{v}'")))?,
        };
        let (map, warnings) = remote
            .metadata(form.value("metric"), limit)
            .map_err(|e| ApiError::internal(format!("retrieving metadata: {e}")))?;
        return Ok(Reply {
            data: crate::query::metadata::metadata_json(&map),
            warnings,
            ..Reply::default()
        });
    }
    limit_param(form)?;
    Ok(Reply {
        data: "{}".to_string(),
        ..Reply::default()
    })
}

/// The exemplars of the series the query's selectors pick, from the exemplar source (none
/// answers empty; the query is still checked so bad input is reported). With tenancy
/// enforced, only the request's tenant's series are shown.
fn query_exemplars(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    let (start, end) = time_range(form)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let query = form.value("query");
    promql::check_query(st, query)?;
    let Some(source) = &st.config.exemplars else {
        return Ok(Reply {
            data: "[]".to_string(),
            ..Reply::default()
        });
    };
    let tenant = st
        .config
        .tenancy
        .as_ref()
        .map(|t| t.tenant(form.tenant_header()).map(|name| t.matcher(&name)))
        .transpose()
        .map_err(ApiError::bad_data)?;
    let (mut series, warnings) = source
        .exemplars(query, start, end)
        .map_err(|e| ApiError::internal(format!("error retrieving exemplars: {e}")))?;
    if let Some(m) = &tenant {
        series.retain(|s| m.matches(s.series.get(&m.name).unwrap_or("")));
    }
    Ok(Reply {
        data: exemplars_json(&series),
        warnings,
        ..Reply::default()
    })
}

/// Exemplars as Prometheus's API writes them: per series its labels and its exemplars, each
/// with its labels, its value as a string and its timestamp in seconds.
fn exemplars_json(series: &[gauntlet_engine::head::SeriesExemplars]) -> String {
    let mut out = String::from("[");
    for (i, s) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"seriesLabels\":");
        json::push_labels(&mut out, &s.series);
        out.push_str(",\"exemplars\":[");
        for (j, e) in s.exemplars.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"labels\":");
            json::push_labels(&mut out, &e.labels);
            out.push_str(",\"value\":");
            json::push_value(&mut out, e.value);
            out.push_str(",\"timestamp\":");
            json::push_ts(&mut out, e.ts);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
    out
}

fn buildinfo(_st: &ApiState, _form: &Form) -> Result<Reply, ApiError> {
    // Prometheus's fields, no more (clients compare the shape); `goVersion` stays empty, and
    // the compiler's version is on `gauntlet_build_info`.
    let mut data = String::from("{");
    for (i, (key, value)) in [
        ("version", env!("CARGO_PKG_VERSION")),
        ("revision", env!("GAUNTLET_REVISION")),
        ("branch", env!("GAUNTLET_BRANCH")),
        ("buildUser", ""),
        ("buildDate", env!("GAUNTLET_BUILD_DATE")),
        ("goVersion", ""),
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            data.push(',');
        }
        json::push_str(&mut data, key);
        data.push(':');
        json::push_str(&mut data, value);
    }
    data.push('}');
    Ok(Reply {
        data,
        ..Reply::default()
    })
}

/// The rules this process evaluates (`gauntlet all`) or its endpoints send (`gauntlet
/// query`), narrowed by the request; none without rules.
fn rules(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    if let Some(remote) = &st.config.remote_rules {
        let typ = form.value("type");
        if !matches!(typ.to_ascii_lowercase().as_str(), "" | "alert" | "record") {
            return Err(ApiError::bad_data(format!(
                "invalid rules parameter type='{typ}'"
            )));
        }
        let selection = RuleSelection::from_form(form).map_err(ApiError::bad_data)?;
        let sets = match_sets(st, &form.all("match[]"), false)?;
        let (groups, warnings) = remote
            .groups(&selection, &sets)
            .map_err(|e| ApiError::internal(format!("error retrieving rules: {e}")))?;
        return Ok(Reply {
            data: crate::rule::groups::groups_json(&groups, false).to_string(),
            warnings,
            ..Reply::default()
        });
    }
    let data = match st.config.rules.get() {
        Some(m) => crate::rule::api::rules_data(m, form)
            .map_err(ApiError::bad_data)?
            .to_string(),
        None => "{\"groups\":[]}".to_string(),
    };
    Ok(Reply {
        data,
        ..Reply::default()
    })
}

/// The alerts of the rules this process evaluates or its endpoints send; none without rules.
fn alerts(st: &ApiState, _form: &Form) -> Result<Reply, ApiError> {
    if let Some(remote) = &st.config.remote_rules {
        let selection = RuleSelection {
            kind: gauntlet_proto::thanos::rules_request::Type::Alert,
            ..RuleSelection::default()
        };
        let (groups, warnings) = remote
            .groups(&selection, &[])
            .map_err(|e| ApiError::internal(format!("error retrieving rules: {e}")))?;
        return Ok(Reply {
            data: crate::rule::groups::alerts_json(&groups).to_string(),
            warnings,
            ..Reply::default()
        });
    }
    let data = match st.config.rules.get() {
        Some(m) => crate::rule::api::alerts_data(m).to_string(),
        None => "{\"alerts\":[]}".to_string(),
    };
    Ok(Reply {
        data,
        ..Reply::default()
    })
}

/// The scrape targets of the querier's endpoints (`gauntlet query`: the Prometheus servers
/// behind sidecars), deduplicated; elsewhere none: Gauntlet itself scrapes nothing, its data
/// arrives as blocks and remote write.
fn targets(st: &ApiState, form: &Form) -> Result<Reply, ApiError> {
    if let Some(remote) = &st.config.remote_targets {
        let state = form.value("state");
        let state = crate::query::targets::parse_state(state).ok_or_else(|| {
            ApiError::bad_data(format!("invalid targets parameter state='{state}'"))
        })?;
        let (t, warnings) = remote
            .targets(state)
            .map_err(|e| ApiError::internal(format!("retrieving targets: {e}")))?;
        return Ok(Reply {
            data: crate::query::targets::targets_json(&t),
            warnings,
            ..Reply::default()
        });
    }
    Ok(Reply {
        data: "{\"activeTargets\":[],\"droppedTargets\":[],\"droppedTargetCounts\":{}}".to_string(),
        ..Reply::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_label_names_are_unescaped() {
        assert_eq!(unescape_label_name("job"), "job");
        assert_eq!(unescape_label_name("U__my_2e_label"), "my.label");
        assert_eq!(unescape_label_name("U__a__b"), "a_b");
        assert_eq!(unescape_label_name("U__bad_zz_"), "U__bad_zz_");
    }

    /// `shard_info` as Thanos's frontend writes it (Go's JSON, zero fields left out).
    #[test]
    fn shard_info_parameter_reads_thanos_json() {
        let s = shard_param(r#"{"shard_index":1,"total_shards":4,"by":true,"labels":["job"]}"#)
            .unwrap()
            .unwrap();
        assert_eq!(
            (s.index, s.total, s.by, s.labels),
            (1, 4, true, vec!["job".to_string()])
        );
        let s = shard_param(r#"{"total_shards":2,"labels":["instance"]}"#)
            .unwrap()
            .unwrap();
        assert_eq!((s.index, s.total, s.by), (0, 2, false));
        // No sharding: absent, empty, or fewer than one shard.
        assert!(shard_param("").unwrap().is_none());
        assert!(shard_param("{}").unwrap().is_none());
        assert!(shard_param(r#"{"total_shards":0}"#).unwrap().is_none());
        assert!(shard_param("{not json").is_err());
    }
}
