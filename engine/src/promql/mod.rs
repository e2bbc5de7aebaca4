//! PromQL: queries parsed with `promql-parser`, evaluated by Gauntlet over any
//! [`Queryable`](crate::query::Queryable) with Prometheus 3.x semantics on float samples.
//!
//! Evaluation is columnar: every expression is evaluated for all steps of a query at once.
//! Selectors fetch each series once for the whole query range, range functions slide a window
//! over each series' sorted samples in one pass, and aggregations and binary operators work on
//! step columns.

mod check_errors;
mod duration;
mod duration_expr;
mod error;
pub(crate) mod eval;
mod functions;
mod hist_math;
mod hist_notation;
mod limits;
mod positions;
pub mod promqltest;
mod value;

pub use duration::parse_duration_ms;
pub use error::PromqlError;
pub use limits::{DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, QueryLimits, nesting_bound};
pub use value::{InstantSample, QueryResult, QueryStats, Value};

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::query::Queryable;

/// Limits and defaults of an [`Engine`].
#[derive(Debug, Clone, PartialEq, Eq)]
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
        }
    }
}

/// The PromQL engine. Stateless between queries; share one per process.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
}

impl Engine {
    /// An engine with these options.
    pub fn new(opts: EngineOptions) -> Self {
        Engine { opts }
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
            let expr = parse_for(query, duration_expr::QueryTimes::default(), depth)?;
            let positions = positions::Positions::find(query, &expr);
            let prepared = began.elapsed();
            let res = eval::run(&self.opts, storage, &expr, &positions, t_ms, t_ms, 0, true)?;
            Ok(timed(res, began, prepared))
        })
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
        let times = duration_expr::QueryTimes {
            step_ms,
            range_ms: end_ms.saturating_sub(start_ms),
        };
        let began = Instant::now();
        let depth = self.opts.limits.check(query)?;
        limits::with_stack_for(depth, || {
            let expr = parse_for(query, times, depth)?;
            let positions = positions::Positions::find(query, &expr);
            let prepared = began.elapsed();
            let res = eval::run(
                &self.opts, storage, &expr, &positions, start_ms, end_ms, step_ms, false,
            )?;
            Ok(timed(res, began, prepared))
        })
    }

    /// `query` pretty-printed the way `/api/v1/format_query` answers, within this engine's
    /// limits.
    pub fn format_query(&self, query: &str) -> Result<String, PromqlError> {
        let depth = self.opts.limits.check(query)?;
        limits::with_stack_for(depth, || {
            Ok(parse_for(query, duration_expr::QueryTimes::default(), depth)?.prettify())
        })
    }
}

/// `res` with its preparation and total times: the query began at `began` and took
/// `prepared` to read.
fn timed(mut res: QueryResult, began: Instant, prepared: Duration) -> QueryResult {
    res.stats.preparation = prepared;
    res.stats.eval_total = began.elapsed();
    res
}

/// Parses a query alone, without the cache or the limits: for trusted text (test scripts);
/// requests go through [`Engine`].
pub(crate) fn parse(query: &str) -> Result<promql_parser::parser::Expr, PromqlError> {
    parse_uncached(query, duration_expr::QueryTimes::default())
}

/// Queries parsed lately, and which of them went in first. Dashboards send the same queries
/// over and over, and the server reads each query twice (for its selectors' hints, then to
/// evaluate it); parsing took about a tenth of a small query's time.
#[derive(Default)]
struct ParseCache {
    parsed: HashMap<(String, duration_expr::QueryTimes), promql_parser::parser::Expr>,
    order: VecDeque<(String, duration_expr::QueryTimes)>,
}

/// Most queries [`ParseCache`] keeps.
const PARSE_CACHE_QUERIES: usize = 256;
/// Longest query [`ParseCache`] keeps, bytes.
const PARSE_CACHE_QUERY_BYTES: usize = 4096;

fn parse_cache() -> &'static Mutex<ParseCache> {
    static CACHE: OnceLock<Mutex<ParseCache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// Parses a query whose duration expressions see these `step()` and `range()` values; a query
/// parsed lately is taken from [`ParseCache`]. `depth` is the query's nesting bound: only a
/// query shallow enough for any thread to drop is kept in the cache.
fn parse_for(
    query: &str,
    times: duration_expr::QueryTimes,
    depth: usize,
) -> Result<promql_parser::parser::Expr, PromqlError> {
    let key = (query.to_string(), times);
    if let Some(e) = parse_cache()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .parsed
        .get(&key)
    {
        return Ok(e.clone());
    }
    let expr = parse_uncached(query, times)?;
    if query.len() <= PARSE_CACHE_QUERY_BYTES && limits::runs_inline(depth) {
        let mut c = parse_cache().lock().unwrap_or_else(|p| p.into_inner());
        if c.parsed.insert(key.clone(), expr.clone()).is_none() {
            c.order.push_back(key);
            while c.order.len() > PARSE_CACHE_QUERIES {
                if let Some(old) = c.order.pop_front() {
                    c.parsed.remove(&old);
                }
            }
        }
    }
    Ok(expr)
}

/// [`parse_for`] without the cache.
fn parse_uncached(
    query: &str,
    times: duration_expr::QueryTimes,
) -> Result<promql_parser::parser::Expr, PromqlError> {
    if let Some(e) = positions::duration_range_error(query) {
        return Err(PromqlError::Parse(e));
    }
    let plain = check_errors::without_number_underscores(query);
    let text = decode_byte_escapes(plain.as_deref().unwrap_or(query));
    let text = duration_expr::rewrite(&text, times);
    // The parser panics on some input it should refuse (found by fuzzing); such a query is
    // reported as invalid rather than failing the request.
    // Matcher regexes are checked with RE2's rules and words, as Prometheus compiles each
    // matcher when its parser reads it: a refused one is the error even where this parser
    // took the regex, or stopped later at the selector as a whole.
    let regex_first = |e: &str| {
        (e.starts_with("illegal regex") || e.starts_with("vector selector must contain"))
            .then(|| crate::labels::first_regex_error(query))
            .flatten()
    };
    match std::panic::catch_unwind(|| promql_parser::parser::parse(&text)) {
        Ok(Ok(expr)) => {
            let refused = crate::labels::first_regex_error(query)
                .or_else(|| {
                    // The selector lexer reads `or` between matchers as Prometheus 3.5 does.
                    check_errors::has_or_matchers(&expr)
                        .then(|| crate::labels::first_brace_error(query))?
                })
                .or_else(|| check_errors::at_out_of_bounds(query))
                // The parser takes a bare `[0]`; Prometheus refuses a range of nothing.
                .or_else(|| {
                    let off = zero_duration_offset(query)?;
                    Some(positions::placed(
                        positions::line_col(query, off),
                        "duration must be greater than 0",
                    ))
                })
                // Arithmetic after a parenthesized offset goes on with the offset in
                // Prometheus, which then refuses an operand that is not a duration.
                .or_else(|| {
                    let k = duration_expr::offset_operand_error(query)?;
                    let what = crate::labels::token_description_at(query, k)
                        .unwrap_or_else(|| "input".to_string());
                    Some(positions::placed(
                        positions::line_col(query, k),
                        &format!("unexpected {what} in offset, expected number or duration"),
                    ))
                })
                .or_else(|| number_error(query));
            match refused {
                Some(e) => Err(PromqlError::Parse(e)),
                None => Ok(expr),
            }
        }
        Ok(Err(e)) => Err(PromqlError::Parse(
            regex_first(&e)
                .or_else(|| {
                    let literal = e.starts_with("bad number or duration syntax")
                        || e.starts_with("ParseFloatError")
                        || e.starts_with("not a valid duration string")
                        || e.starts_with("unknown unit");
                    literal.then(|| check_errors::literal_error(query))?
                })
                .or_else(|| {
                    e.starts_with("ParseFloatError")
                        .then(|| number_error(query))?
                })
                .unwrap_or_else(|| parse_error(query, e)),
        )),
        Err(_) => Err(PromqlError::Parse("invalid promql query".into())),
    }
}

/// The parser's message for `query` worded and placed as Prometheus words and places it
/// (`1:5: parse error: unclosed left parenthesis`), where the message and the text tell how:
/// errors at the end of the input point there, lexical errors at the offending character,
/// unknown functions and argument errors at the call or argument at fault, and a query with
/// nothing in it has its own form. Other messages keep the parser's wording, without a
/// position (the parser does not report one).
fn parse_error(query: &str, msg: String) -> String {
    // Errors inside a selector's braces: the parser's words for them are its own (or a bare
    // "invalid promql query"); the selector lexer words and places them as Prometheus does.
    let in_braces = msg.contains("label matching")
        || msg.contains("label matcher")
        || msg.starts_with("unknown escape sequence")
        || msg.starts_with("metric name must not be set twice")
        || msg.starts_with("unexpected right brace")
        || msg.starts_with("unexpected left brace")
        || msg.starts_with("unterminated quoted string")
        || msg == "invalid promql query";
    if in_braces && let Some(e) = crate::labels::first_brace_error(query) {
        return e;
    }
    if msg == "invalid promql query"
        && let Some(e) = check_errors::end_of_input_error(query)
            .or_else(|| check_errors::misplaced_keyword_error(query))
    {
        return e;
    }
    // An `@` out of bounds is refused while parsing, before the checks of the expression
    // around it.
    if let Some(e) = check_errors::at_out_of_bounds(query) {
        return e;
    }
    if let Some(e) = check_errors::placed_check_error(query, &msg) {
        return e;
    }
    if msg == "'!' can not be at the end"
        && let Some(off) = query.rfind('!')
    {
        let msg = "unexpected character after '!': '\u{FFFD}'";
        return positions::placed(positions::line_col(query, off), msg);
    }
    let msg = match msg.as_str() {
        "unexpected end of input inside brackets" => match positions::open_bracket_at_end(query) {
            Some((_, false)) => "unexpected end of input in duration expression".to_string(),
            Some((true, true)) => "unclosed left parenthesis".to_string(),
            _ => "unclosed left bracket".to_string(),
        },
        "unexpected end of input in offset, expected duration" => {
            "unexpected end of input in offset, expected number or duration".to_string()
        }
        _ => msg,
    };
    if msg == "no expression found in input" {
        let at = if query.is_empty() {
            "unknown position"
        } else {
            "1:1"
        };
        return format!("{at}: parse error: {msg}");
    }
    if msg.starts_with("unclosed left") || msg.starts_with("unexpected end of input") {
        return positions::placed(positions::line_col(query, query.len()), &msg);
    }
    let msg = match msg.strip_prefix("unterminated quoted string") {
        Some(_) => "unterminated quoted string".to_string(),
        None => msg,
    };
    if let Some(off) = positions::lexical_error_offset(query, &msg) {
        return positions::placed(positions::line_col(query, off), &msg);
    }
    let found = match msg.as_str() {
        // A range or subquery of nothing: at its duration.
        "duration must be greater than 0" => zero_duration_offset(query),
        // An empty argument between two commas: Prometheus points at the first.
        "trailing commas not allowed in function call args" => unquoted_offset(query, |b, i| {
            b[i] == b',' && b[i + 1..].trim_ascii_start().first() == Some(&b',')
        }),
        _ => unquoted_offset(query, |b, i| {
            msg.strip_prefix("unexpected character after '!': '")
                .and_then(|r| r.strip_suffix('\''))
                .is_some_and(|c| b[i] == b'!' && b[i + 1..].starts_with(c.as_bytes()))
        }),
    };
    if let Some(off) = found {
        return positions::placed(positions::line_col(query, off), &msg);
    }
    // Prometheus quotes names Go's way, calls types by their PromQL names and points at the
    // call or argument at fault.
    if msg.starts_with("unknown function with name '")
        && let Some((name, at)) = positions::first_unknown_call(query)
    {
        return positions::placed(at, &format!("unknown function with name {name:?}"));
    }
    if let Some((want, rest)) = msg
        .strip_prefix("expected type ")
        .and_then(|r| r.split_once(" in call to function '"))
        && let Some((name, got)) = rest.split_once("', got ")
        && let Some(at) = positions::argument_of_type(query, name, got)
    {
        let msg = format!(
            "expected type {} in call to function {name:?}, got {}",
            positions::type_name(want),
            positions::type_name(got)
        );
        return positions::placed(at, &msg);
    }
    if msg.starts_with("expected ")
        && let Some((head, rest)) = msg.split_once(" argument(s) in call to '")
        && let Some((name, got)) = rest.split_once("', got ")
        && let Some(at) = positions::call_named(query, name)
    {
        let msg = format!("{head} argument(s) in call to {name:?}, got {got}");
        return positions::placed(at, &msg);
    }
    if let Some(counts) =
        msg.strip_prefix("wrong number of arguments for aggregate expression provided, ")
        && let Some(got) = counts.rsplit_once("got ").and_then(|(_, n)| n.parse().ok())
        && let Some(at) = positions::aggregation_with_args(query, got)
    {
        return positions::placed(at, &msg);
    }
    msg
}

/// PromQL strings are Go strings: `\xHH` escapes are bytes, and runs of them spell UTF-8.
/// The parser reads each as a character, so runs are decoded here first; bytes that are not
/// valid UTF-8 become [`raw_byte_char`](crate::go_format::raw_byte_char)s, which label-name
/// checks reject and error messages quote back as bytes, as Prometheus does.
fn decode_byte_escapes(q: &str) -> std::borrow::Cow<'_, str> {
    if !q.contains("\\x") {
        return std::borrow::Cow::Borrowed(q);
    }
    let b = q.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = String::with_capacity(q.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] != b'x' {
            i += 2;
            continue;
        }
        let mut bytes = Vec::new();
        let start = i;
        while i + 3 < b.len() && b[i] == b'\\' && b[i + 1] == b'x' {
            match (hex(b[i + 2]), hex(b[i + 3])) {
                (Some(h), Some(l)) if h >= 8 => {
                    bytes.push(h << 4 | l);
                    i += 4;
                }
                _ => break,
            }
        }
        if bytes.is_empty() {
            i = start + 1;
            continue;
        }
        out.push_str(&q[last..start]);
        for c in utf8_or_raw_bytes(&bytes) {
            // Re-escaped so the parser reads back exactly this character.
            out.push_str(&format!("\\U{:08x}", c as u32));
        }
        last = i;
    }
    out.push_str(&q[last..]);
    std::borrow::Cow::Owned(out)
}

/// The characters of `bytes`: valid UTF-8 decoded, every other byte as a
/// [`raw_byte_char`](crate::go_format::raw_byte_char).
fn utf8_or_raw_bytes(mut bytes: &[u8]) -> Vec<char> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.extend(s.chars());
                break;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                out.extend(std::str::from_utf8(good).unwrap_or_default().chars());
                let bad = e.error_len().unwrap_or(rest.len()).max(1);
                out.extend(
                    rest[..bad]
                        .iter()
                        .map(|&b| crate::go_format::raw_byte_char(b)),
                );
                bytes = &rest[bad..];
            }
        }
    }
    out
}

/// The first byte offset outside string literals and comments where `at(bytes, offset)` holds.
fn unquoted_offset(query: &str, at: impl Fn(&[u8], usize) -> bool) -> Option<usize> {
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => i = duration_expr::skip_string(b, i, q),
            b'#' => i = positions::comment_end(b, i),
            _ if at(b, i) => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The first number literal Go's `strconv` refuses where Rust's parsing does not, worded and
/// placed as Prometheus reports it: a decimal beyond the float range (`1e400`, which Rust reads
/// as infinity), or a hexadecimal integer beyond 64 bits (which Go then fails to read as a
/// float, having no exponent).
fn number_error(query: &str) -> Option<String> {
    let off = unquoted_offset(query, |b, i| number_refusal(b, i).is_some())?;
    let (end, why) = number_refusal(query.as_bytes(), off)?;
    Some(positions::placed(
        positions::line_col(query, off),
        &format!(
            "error parsing number: strconv.ParseFloat: parsing \"{}\": {why}",
            &query[off..end]
        ),
    ))
}

/// The end of the number literal at `i` and why Go refuses it, if it does.
fn number_refusal(b: &[u8], i: usize) -> Option<(usize, &'static str)> {
    let end = number_end(b, i)?;
    let tok = std::str::from_utf8(&b[i..end]).ok()?;
    let why = match tok.get(..2) {
        Some("0x" | "0X") => i64::from_str_radix(&tok[2..], 16)
            .is_err()
            .then_some("invalid syntax"),
        _ => tok
            .parse::<f64>()
            .is_ok_and(f64::is_infinite)
            .then_some("value out of range"),
    };
    why.map(|why| (end, why))
}

/// End of the number literal starting at `i`, lexed as Prometheus lexes one (`0x` and hex
/// digits, or digits, a fraction and an exponent); `None` when none starts there or the
/// literal runs on into a duration or a name.
fn number_end(b: &[u8], i: usize) -> Option<usize> {
    let starts =
        b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit));
    if !starts
        || i.checked_sub(1)
            .is_some_and(|p| duration_expr::is_ident_byte(b[p]) || b[p] == b'.')
    {
        return None;
    }
    let run = |mut j: usize, ok: fn(&u8) -> bool| {
        while b.get(j).is_some_and(ok) {
            j += 1;
        }
        j
    };
    let mut j = i;
    if b[j] == b'0' && matches!(b.get(j + 1), Some(b'x' | b'X')) {
        j = run(j + 2, u8::is_ascii_hexdigit);
    } else {
        j = run(j, u8::is_ascii_digit);
        if b.get(j) == Some(&b'.') {
            j = run(j + 1, u8::is_ascii_digit);
        }
        if matches!(b.get(j), Some(b'e' | b'E')) {
            let k = j + 1 + usize::from(matches!(b.get(j + 1), Some(b'+' | b'-')));
            if b.get(k).is_some_and(u8::is_ascii_digit) {
                j = run(k, u8::is_ascii_digit);
            }
        }
    }
    (!b.get(j)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_'))
    .then_some(j)
}

/// Where the first range or subquery duration that is zero starts (`[0]`, `[5m:0s]`): right
/// after a `[`, or after the `:` of a subquery. One pass over the text, strings and comments
/// skipped.
fn zero_duration_offset(query: &str) -> Option<usize> {
    let b = query.as_bytes();
    let mut in_brackets = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i = duration_expr::skip_string(b, i, q);
                continue;
            }
            b'#' => {
                i = positions::comment_end(b, i);
                continue;
            }
            b'[' => in_brackets = true,
            b']' => in_brackets = false,
            _ => {}
        }
        if (b[i] == b'[' || (b[i] == b':' && in_brackets)) && is_zero_duration(&b[i + 1..]) {
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// Whether `b` starts with a zero duration (`0`, `0s`, `0m0s`) ended by `]` or `:`. Reads no
/// further than the characters a duration can hold.
fn is_zero_duration(b: &[u8]) -> bool {
    let end = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'.' || c.is_ascii_whitespace()))
        .unwrap_or(b.len());
    matches!(b.get(end), None | Some(b']' | b':'))
        && duration_expr::is_zero_duration_literal(b[..end].trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::duration_expr::QueryTimes;
    use super::{parse_for, parse_uncached};

    #[test]
    fn parsed_queries_come_back_the_same_from_the_cache() {
        let times = |step_ms| QueryTimes {
            step_ms,
            range_ms: 3_600_000,
        };
        for q in [
            "sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))",
            "max_over_time(up[step() * 4])",
            "topk(3, x offset -1m @ start())",
        ] {
            for step in [15_000, 60_000, 15_000] {
                let want = parse_uncached(q, times(step)).unwrap();
                assert_eq!(parse_for(q, times(step), 4).unwrap(), want, "{q}");
                assert_eq!(parse_for(q, times(step), 4).unwrap(), want, "{q} (cached)");
            }
        }
        // A refused query stays refused on every call.
        for _ in 0..2 {
            assert!(parse_for("sum(", times(15_000), 2).is_err());
        }
    }
}
