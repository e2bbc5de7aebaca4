//! Gauntlet's PromQL: a lexer, a parser, type checks and a printer that read Prometheus 3.x's
//! grammar (up to 3.14's duration expressions, `anchored`/`smoothed` and `fill()` modifiers)
//! and refuse what it refuses in its words ([`parser`]), and an evaluator with Prometheus 3.x
//! semantics over any [`Queryable`](gauntlet_engine::query::Queryable) of the engine
//! ([`Engine`]). The engine's storage modules know nothing of PromQL; this crate reads them
//! through the engine's query, labels and chunk types.
//!
//! Evaluation is columnar: every expression is evaluated for all steps of a query at once.
//! Selectors fetch each series once for the whole query range, range functions slide a window
//! over each series' sorted samples in one pass, and aggregations and binary operators work on
//! step columns.
//!
//! ```
//! use gauntlet_promql::parser::{Options, parse};
//! let e = parse("sum(rate(x[5m])) by (job)", &Options::default()).unwrap();
//! assert_eq!(e.to_string(), "sum by (job) (rate(x[5m]))");
//! let err = parse("sum(", &Options::default()).unwrap_err();
//! assert_eq!(err.to_string(), "1:5: parse error: unclosed left parenthesis");
//! ```

mod duration;
mod error;
pub(crate) mod eval;
mod functions;
mod hist_math;
mod hist_notation;
mod limits;
pub mod parser;
#[allow(
    clippy::expect_used,
    reason = "the test-script runner fails a script by panicking, as a test does"
)]
pub mod promqltest;
pub mod rules;
mod value;

pub use duration::parse_duration_ms;
pub use error::PromqlError;
pub use limits::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, DEFAULT_MAX_MATCHERS, QueryLimits, matcher_bound,
    nesting_bound,
};
pub use parser::{SelectorError, parse_selector, parse_selector_in};
pub use value::{InstantSample, QueryResult, QueryStats, Value};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::parser::{self as ast, Expr};

use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::labels::Matcher;
use gauntlet_engine::query::{Queryable, SelectHints, Selection, Series};

/// Limits and defaults of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample, in ms (Prometheus: 5m).
    pub lookback_delta_ms: i64,
    /// The most samples a query may hold in memory at once (`--query.max-samples`).
    pub max_samples: usize,
    /// Wall-clock budget of one query; checked between evaluation stages.
    pub timeout: Duration,
    /// Drop the metric name only when the query ends, so `label_replace` and `by (__name__)`
    /// still see it after a function (Prometheus's `promql-delayed-name-removal` feature, off
    /// by default there as here; Prometheus's own test scripts run with it on).
    pub delayed_name_removal: bool,
    /// How long and how deeply nested a query may be; checked before it is parsed.
    pub limits: QueryLimits,
    /// Count the samples a query loads step by step as well as in total
    /// ([`QueryStats::samples_per_step`]), as `stats=all` asks.
    pub per_step_stats: bool,
    /// Prometheus's gated PromQL features this engine reads and evaluates
    /// (`--enable-feature`).
    pub features: Features,
    /// Which Prometheus release's answers to give where releases answer the same query
    /// differently (`--query.promql-compat`).
    pub compat: Compat,
    /// The query's end besides its timeout: tripped when its client goes away, checked with
    /// the deadline at every stage and batch, and handed to every selection.
    pub cancel: gauntlet_engine::query::Cancel,
    /// The process's query worker pool, where the query's parallel work runs, scheduled
    /// fairly against every other query's (the default: a pool made on first use).
    pub pool: gauntlet_engine::query::WorkPool,
    /// The memory budget a query reserves the samples it holds from and its regexes hold
    /// room in: the role's (the default: one without a limit, for tests and tools).
    pub budget: Arc<MemoryBudget>,
}

/// The Prometheus release whose answers the engine gives where releases differ on the same
/// query (native histograms with mismatched custom buckets, which errors some operators
/// raise, …). Queries whose answer no release changed get that answer under either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compat {
    /// Prometheus 3.5, the long-term-support release (the default).
    #[default]
    Prometheus3_5,
    /// Prometheus 3.14.
    Prometheus3_14,
}

impl Compat {
    /// Reads `--query.promql-compat`'s value: `3.5` or `3.14`.
    pub fn parse(s: &str) -> Result<Compat, String> {
        match s.trim() {
            "3.5" => Ok(Compat::Prometheus3_5),
            "3.14" => Ok(Compat::Prometheus3_14),
            other => Err(format!(
                "unknown Prometheus release {other:?}: expected 3.5 or 3.14"
            )),
        }
    }

    /// Whether answers follow Prometheus 3.14 (or later) where it changed them.
    pub fn at_least_3_14(self) -> bool {
        self == Compat::Prometheus3_14
    }
}

/// Prometheus's gated PromQL syntax, named as its `--enable-feature` flags name it. A query
/// using a feature that is off is refused by the parser as Prometheus refuses it.
/// Experimental functions (`promql-experimental-functions`) and duration expressions
/// (`promql-duration-expr`) are always read: Gauntlet serves them without flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Features {
    /// `promql-extended-range-selectors`: the `anchored` and `smoothed` range modifiers.
    pub extended_range_selectors: bool,
    /// `promql-binop-fill-modifiers`: `fill()`, `fill_left()` and `fill_right()` on binary
    /// operators.
    pub binop_fill_modifiers: bool,
}

impl Features {
    /// Every gated feature on, as Prometheus's own test scripts run.
    pub fn all() -> Features {
        Features {
            extended_range_selectors: true,
            binop_fill_modifiers: true,
        }
    }

    /// Turns on the PromQL feature Prometheus names `name` (the always-read ones are
    /// accepted and change nothing); false when `name` is no PromQL feature.
    pub fn enable(&mut self, name: &str) -> bool {
        match name {
            "promql-extended-range-selectors" => self.extended_range_selectors = true,
            "promql-binop-fill-modifiers" => self.binop_fill_modifiers = true,
            "promql-experimental-functions" | "promql-duration-expr" => {}
            _ => return false,
        }
        true
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta_ms: 300_000,
            max_samples: 50_000_000,
            timeout: Duration::from_secs(120),
            delayed_name_removal: false,
            limits: QueryLimits::default(),
            per_step_stats: false,
            features: Features::default(),
            compat: Compat::default(),
            cancel: gauntlet_engine::query::Cancel::never(),
            pool: gauntlet_engine::query::WorkPool::default(),
            budget: MemoryBudget::unlimited(),
        }
    }
}

/// The PromQL engine: its options and the cache of queries it parsed lately, which its
/// clones and the engines given the same [`ParseCache`] share.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
    cache: ParseCache,
}

impl Engine {
    /// An engine with these options and a parse cache of its own.
    pub fn new(opts: EngineOptions) -> Self {
        Self::with_cache(opts, ParseCache::default())
    }

    /// An engine with these options sharing `cache` with the engines that hold it: a server
    /// builds an engine per request (its timeout and cancellation are the request's) over
    /// one cache.
    pub fn with_cache(opts: EngineOptions, cache: ParseCache) -> Self {
        Engine { opts, cache }
    }

    /// The options this engine runs with.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `query` at `t_ms` (ms since the epoch).
    pub fn instant_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        t_ms: i64,
    ) -> Result<QueryResult, PromqlError> {
        let began = Instant::now();
        let depth = self.opts.limits.check(query)?;
        limits::with_stack_for(depth, || {
            let expr = self.parse_cached(query, depth)?;
            let prepared = began.elapsed();
            let res = eval::run(&self.opts, storage, &expr, query, t_ms, t_ms, 0, true)?;
            Ok(timed(res, began, prepared))
        })
    }

    /// The selections an instant query of `query` at `t_ms` makes, in the order it makes
    /// them, found by evaluating it over no series at all (cheap: nothing is read or
    /// computed). A query that fails, or one whose evaluation over data would select more
    /// (an `or` whose left side is empty here), gives what it gave over nothing: the list is
    /// a hint for [`Queryable::prefetch`], not a promise.
    pub fn instant_selections(&self, query: &str, t_ms: i64) -> Vec<Selection> {
        let seen = SelectionLog::default();
        let _ = self.instant_query(&seen, query, t_ms);
        seen.into_inner()
    }

    /// [`Engine::instant_selections`] through `known`: a query asked before at another time
    /// gives what it selected then, moved by the difference. That is what it selects now
    /// unless it pins a time (`@`); a pinned one's moved ranges differ from what it asks,
    /// and a hint that differs only goes unused. Evaluating over nothing each time took a
    /// fifth of a ruler's own work.
    pub fn instant_selections_known(
        &self,
        known: &SelectionCache,
        query: &str,
        t_ms: i64,
    ) -> Vec<Selection> {
        if let Some((t0, sels)) = known.lock().get(query) {
            let d = t_ms.saturating_sub(*t0);
            return sels
                .iter()
                .map(|s| Selection {
                    matchers: s.matchers.clone(),
                    mint: s.mint.saturating_add(d),
                    maxt: s.maxt.saturating_add(d),
                })
                .collect();
        }
        let sels = self.instant_selections(query, t_ms);
        let mut k = known.lock();
        if k.len() >= known.most() {
            k.clear();
        }
        k.insert(query.to_string(), (t_ms, sels.clone()));
        sels
    }

    /// Evaluates `query` at every step from `start_ms` to `end_ms` (inclusive, ms), `step_ms`
    /// apart; the answer is a matrix sorted by labels (or a scalar/string promoted to one).
    pub fn range_query(
        &self,
        storage: &dyn Queryable,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<QueryResult, PromqlError> {
        if step_ms <= 0 {
            return Err(PromqlError::Execution(
                "zero or negative query resolution step widths are not accepted. Try a positive integer"
                    .into(),
            ));
        }
        if end_ms < start_ms {
            return Err(PromqlError::Execution(
                "end timestamp must not be before start time".into(),
            ));
        }
        let began = Instant::now();
        let depth = self.opts.limits.check(query)?;
        limits::with_stack_for(depth, || {
            let expr = self.parse_cached(query, depth)?;
            let prepared = began.elapsed();
            let res = eval::run(
                &self.opts, storage, &expr, query, start_ms, end_ms, step_ms, false,
            )?;
            Ok(timed(res, began, prepared))
        })
    }

    /// `query` printed back as Prometheus's `String()` writes it (one line), within this
    /// engine's limits.
    pub fn format_query(&self, query: &str) -> Result<String, PromqlError> {
        let depth = self.opts.limits.check(query)?;
        limits::with_stack_for(depth, || Ok(self.parse_cached(query, depth)?.to_string()))
    }

    /// `query` printed back as Prometheus's `/api/v1/format_query` answers it
    /// ([`Expr::pretty`]): on one line when that is at most 100 bytes
    /// long, otherwise broken over several lines with two spaces of indentation a level;
    /// within this engine's limits.
    pub fn pretty_query(&self, query: &str) -> Result<String, PromqlError> {
        let depth = self.opts.limits.check(query)?;
        limits::with_stack_for(depth, || Ok(self.parse_cached(query, depth)?.pretty()))
    }

    /// Parses `query` (nesting bound `depth`), or takes it from [`ParseCache`].
    fn parse_cached(&self, query: &str, depth: usize) -> Result<Arc<Expr>, PromqlError> {
        let key = (query.to_string(), self.opts.features);
        if let Some(e) = self.cache.lock().parsed.get(&key) {
            return Ok(Arc::clone(e));
        }
        let expr = Arc::new(
            ast::parse(query, &parse_options(self.opts.features, depth))
                .map_err(|e| PromqlError::Parse(e.to_string()))?,
        );
        if query.len() <= PARSE_CACHE_QUERY_BYTES && limits::runs_inline(depth) {
            let mut c = self.cache.lock();
            if c.parsed.insert(key.clone(), Arc::clone(&expr)).is_none() {
                c.order.push_back(key);
                c.trim();
            }
        }
        Ok(expr)
    }
}

/// The parser's options for a query whose text nests at most `depth` levels
/// ([`nesting_bound`]): experimental functions and duration expressions always (Gauntlet
/// serves them without flags), the gated syntax of `features`, and regex matchers checked as
/// a selection will compile them. The query limits refused deeper text before this, with
/// their own message; the parser's limit, above the text's bound, only keeps its stack safe
/// whatever it counts as a level.
fn parse_options(features: Features, depth: usize) -> ast::Options {
    ast::Options {
        experimental_functions: true,
        duration_expr: true,
        extended_range_selectors: features.extended_range_selectors,
        binop_fill_modifiers: features.binop_fill_modifiers,
        max_depth: depth.saturating_mul(2).saturating_add(16),
        regex_check: Some(ast::regex_refusal),
    }
}

/// `res` with its preparation and total times: the query began at `began` and took
/// `prepared` to read.
fn timed(mut res: QueryResult, began: Instant, prepared: Duration) -> QueryResult {
    res.stats.preparation = prepared;
    res.stats.eval_total = began.elapsed();
    res
}

/// Parses a query alone, with every syntax Gauntlet reads and without the cache or the
/// limits: for trusted text (test scripts); requests go through [`Engine`].
pub(crate) fn parse(query: &str) -> Result<Expr, PromqlError> {
    ast::parse(query, &parse_options(Features::all(), DEFAULT_MAX_DEPTH))
        .map_err(|e| PromqlError::Parse(e.to_string()))
}

/// A query's text and the gated syntax it was read with.
type CacheKey = (String, Features);

/// Queries parsed lately, shared by the engines holding clones of one handle. Dashboards send
/// the same queries over and over, and the server reads each query twice (for its selectors'
/// hints, then to evaluate it); parsing took about a tenth of a small query's time. A tree
/// does not depend on the query's times (its duration expressions are evaluated when it
/// runs), so one entry serves every step and range.
#[derive(Clone, Default)]
pub struct ParseCache(Arc<Mutex<Parsed>>);

impl std::fmt::Debug for ParseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParseCache")
            .field("queries", &self.lock().order.len())
            .finish()
    }
}

impl ParseCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Parsed> {
        // The map is whole after any panic (inserts and removals are single calls).
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the cache keep up to `queries` trees (never fewer than the default): a ruler
    /// evaluates every rule's expression each round, so its cache holds them all, or each
    /// round would parse every one again. Taking the bound down drops the oldest at once.
    pub fn keep(&self, queries: usize) {
        let mut c = self.lock();
        c.most = Some(queries.max(PARSE_CACHE_QUERIES));
        c.trim();
    }
}

/// What queries selected when evaluated over nothing, and at what time
/// ([`Engine::instant_selections_known`]), for a caller that asks the same queries at
/// moving times (a ruler). Holds up to the bound given to [`SelectionCache::new`], then starts
/// over.
#[derive(Debug)]
pub struct SelectionCache {
    known: Mutex<HashMap<String, (i64, Vec<Selection>)>>,
    most: std::sync::atomic::AtomicUsize,
}

impl SelectionCache {
    /// An empty cache of up to `queries` queries.
    pub fn new(queries: usize) -> Self {
        SelectionCache {
            known: Mutex::new(HashMap::new()),
            most: std::sync::atomic::AtomicUsize::new(queries.max(1)),
        }
    }

    /// Holds up to `queries` from now on, and forgets what it held (the queries changed).
    pub fn reset(&self, queries: usize) {
        self.most
            .store(queries.max(1), std::sync::atomic::Ordering::Relaxed);
        self.lock().clear();
    }

    fn most(&self) -> usize {
        self.most.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Vec<Selection>)>> {
        // The map is whole after any panic (inserts and clears are single calls).
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for SelectionCache {
    fn default() -> Self {
        SelectionCache::new(PARSE_CACHE_QUERIES)
    }
}

/// What a [`ParseCache`] holds: the trees, which of them went in first, and how many it
/// keeps (`None`: [`PARSE_CACHE_QUERIES`]).
#[derive(Default)]
struct Parsed {
    parsed: HashMap<CacheKey, Arc<Expr>>,
    order: VecDeque<CacheKey>,
    most: Option<usize>,
}

impl Parsed {
    /// Drops the oldest trees past the bound.
    fn trim(&mut self) {
        let most = self.most.unwrap_or(PARSE_CACHE_QUERIES);
        while self.order.len() > most {
            if let Some(old) = self.order.pop_front() {
                self.parsed.remove(&old);
            }
        }
    }
}

/// Most queries [`ParseCache`] keeps unless told to keep more ([`ParseCache::keep`]).
const PARSE_CACHE_QUERIES: usize = 256;
/// Longest query [`ParseCache`] keeps, bytes.
const PARSE_CACHE_QUERY_BYTES: usize = 4096;

/// The matchers of every selector `query` names, one set per selector in the order written
/// (Prometheus's `parser.ExtractSelectors`): for the APIs that read only the series a query
/// names, such as `/api/v1/query_exemplars`. A query that does not parse is a
/// [`PromqlError::Parse`].
pub fn query_selectors(
    query: &str,
) -> Result<Vec<Vec<gauntlet_engine::labels::Matcher>>, PromqlError> {
    // A deeply nested query is parsed, walked and dropped on a stack deep enough for it, as
    // the engine runs its queries: whichever thread asks, however deep the text nests.
    let depth = limits::nesting_bound(query);
    limits::with_stack_for(depth, || {
        let opts = parser::Options {
            max_depth: depth.saturating_mul(2).saturating_add(16),
            ..parser::Options::default()
        };
        let expr = parser::parse(query, &opts).map_err(|e| PromqlError::Parse(e.to_string()))?;
        let mut selectors = Vec::new();
        parser::collect_selectors(&expr, &mut selectors);
        selectors
            .into_iter()
            .map(|vs| eval::selector::selector_matchers(vs, None))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::{Engine, EngineOptions, ParseCache, parse};
    use std::sync::Arc;

    /// A query nested far deeper than a small thread's stack allows is read on a stack of its
    /// own: the selectors come back, and neither parsing nor dropping it overflows.
    #[test]
    fn a_deep_querys_selectors_are_read_on_any_thread() {
        let deep = format!("{}up{{job=\"a\"}}{}", "(".repeat(900), ")".repeat(900));
        let got = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || super::query_selectors(&deep).map(|s| s.len()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got.unwrap(), 1);
    }

    #[test]
    fn a_querys_selections_are_found_by_evaluating_it_over_nothing() {
        let engine = Engine::default();
        let t = 1_700_000_000_000;
        let q = r#"sum by (job) (rate(a{job="x"}[5m])) / on() group_left count(b offset 1m)"#;
        let sels = engine.instant_selections(q, t);
        assert_eq!(sels.len(), 2, "{sels:?}");
        let names: Vec<String> = sels
            .iter()
            .map(|s| {
                s.matchers
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert!(names[0].contains("__name__=\"a\"") && names[0].contains("job=\"x\""));
        assert!(names[1].contains("__name__=\"b\""), "{names:?}");
        assert_eq!(sels[0].maxt, t);
        assert!((299_999..=300_000).contains(&(sels[0].maxt - sels[0].mint)));
        assert_eq!(sels[1].maxt, t - 60_000);
        // A query that does not parse selects nothing.
        assert!(engine.instant_selections("sum(", t).is_empty());
    }

    #[test]
    fn known_selections_move_with_the_time_and_equal_a_fresh_evaluation() {
        let engine = Engine::default();
        let known = super::SelectionCache::new(4);
        let t = 1_700_000_000_000;
        let q = r#"sum(rate(a{job="x"}[5m])) / count(b offset 1m)"#;
        assert_eq!(
            engine.instant_selections_known(&known, q, t),
            engine.instant_selections(q, t)
        );
        for later in [t + 15_000, t + 3_600_000, t - 30_000] {
            assert_eq!(
                engine.instant_selections_known(&known, q, later),
                engine.instant_selections(q, later),
                "{later}"
            );
        }
        // A pinned time does not move: the hint differs, and is only a hint.
        let pinned = "rate(a[5m] @ 1700000000)";
        let first = engine.instant_selections_known(&known, pinned, t);
        assert_eq!(first, engine.instant_selections(pinned, t));
        assert_eq!(engine.instant_selections(pinned, t + 15_000), first);
        // Past its bound the cache starts over rather than growing.
        for i in 0..10 {
            engine.instant_selections_known(&known, &format!("c{i}"), t);
        }
        assert!(known.lock().len() <= 4);
        known.reset(8);
        assert!(known.lock().is_empty());
    }

    #[test]
    fn parsed_queries_come_back_the_same_from_the_cache() {
        let engine = Engine::default();
        for q in [
            "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))",
            "max_over_time(up[step() * 4])",
            "topk(3, x offset -1m @ start())",
        ] {
            let want = parse(q).unwrap();
            assert_eq!(*engine.parse_cached(q, 4).unwrap(), want, "{q}");
            assert_eq!(*engine.parse_cached(q, 4).unwrap(), want, "{q} (cached)");
        }
        // A refused query stays refused on every call.
        for _ in 0..2 {
            assert!(engine.parse_cached("sum(", 2).is_err());
        }
    }

    #[test]
    fn engines_share_a_cache_only_when_handed_the_same_one() {
        let q = "rate(x[5m])";
        let cache = ParseCache::default();
        let first = Engine::with_cache(EngineOptions::default(), cache.clone());
        let second = Engine::with_cache(EngineOptions::default(), cache.clone());
        let alone = Engine::new(EngineOptions::default());
        let a = first.parse_cached(q, 4).unwrap();
        assert!(Arc::ptr_eq(&a, &second.parse_cached(q, 4).unwrap()));
        assert!(Arc::ptr_eq(&a, &first.clone().parse_cached(q, 4).unwrap()));
        assert!(!Arc::ptr_eq(&a, &alone.parse_cached(q, 4).unwrap()));
        assert_eq!(cache.lock().order.len(), 1);
        assert_eq!(alone.cache.lock().order.len(), 1);
    }

    #[test]
    fn a_cache_told_to_keep_more_holds_every_query_of_a_round() {
        let cache = ParseCache::default();
        let engine = Engine::with_cache(EngineOptions::default(), cache.clone());
        let queries: Vec<String> = (0..1000)
            .map(|i| format!("rate(x{{i=\"{i}\"}}[5m])"))
            .collect();
        let first: Vec<_> = queries
            .iter()
            .map(|q| engine.parse_cached(q, 4).unwrap())
            .collect();
        // By default the oldest went: a second round parses them again.
        assert_eq!(cache.lock().order.len(), super::PARSE_CACHE_QUERIES);
        assert!(!Arc::ptr_eq(
            &first[0],
            &engine.parse_cached(&queries[0], 4).unwrap()
        ));
        cache.keep(2000);
        let kept: Vec<_> = queries
            .iter()
            .map(|q| engine.parse_cached(q, 4).unwrap())
            .collect();
        for (q, e) in queries.iter().zip(&kept) {
            assert!(Arc::ptr_eq(e, &engine.parse_cached(q, 4).unwrap()), "{q}");
        }
        // Asking for fewer drops the oldest at once, never below the default.
        cache.keep(10);
        assert_eq!(cache.lock().order.len(), super::PARSE_CACHE_QUERIES);
        assert_eq!(cache.lock().parsed.len(), super::PARSE_CACHE_QUERIES);
    }
}

/// A source with no series that notes every selection asked of it
/// ([`Engine::instant_selections`]).
#[derive(Default)]
struct SelectionLog {
    seen: std::sync::Mutex<Vec<Selection>>,
}

impl SelectionLog {
    fn note(&self, matchers: &[Matcher], mint: i64, maxt: i64) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Selection {
                matchers: matchers.to_vec(),
                mint,
                maxt,
            });
    }

    fn into_inner(self) -> Vec<Selection> {
        self.seen.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl Queryable for SelectionLog {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        _hints: &SelectHints,
    ) -> gauntlet_engine::Result<Vec<Series>> {
        self.note(matchers, mint, maxt);
        Ok(Vec::new())
    }

    fn label_names(
        &self,
        _matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn label_values(
        &self,
        _name: &str,
        _matchers: &[Matcher],
        _mint: i64,
        _maxt: i64,
    ) -> gauntlet_engine::Result<Vec<String>> {
        Ok(Vec::new())
    }
}
