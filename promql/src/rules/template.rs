//! Alert label and annotation templates, expanded as Prometheus's ruler expands them: Go
//! `text/template` (the `gtmpl` crate) with Prometheus's template functions (`query`,
//! `humanize`, `graphLink`, …) and the `$labels`, `$externalLabels`, `$externalURL` and `$value`
//! variables an alerting rule's templates start with.
//!
//! # Where gtmpl differs from Go's `text/template`, and what is done about it
//!
//! - gtmpl's numbers lose a float's kind (a whole float becomes an integer, `-0.5` becomes 0)
//!   and print with Rust's `{}`. Floats Gauntlet hands to a template (`$value`, a query
//!   sample's `.Value`, `now`, `parseDuration`) are therefore strings holding Go's `%v` of the
//!   float, which read back as the same float: they print as Go prints them, and the functions
//!   that take a number (`humanize…`, `printf`'s numeric verbs, the comparisons) read them as
//!   numbers. A number in the template's own text (`{{ 0.5 }}`) is still gtmpl's, so a negative
//!   fractional literal is mangled.
//! - `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `len`, `printf`, `print`, `println` and `urlquery` are
//!   replaced by Go-faithful versions over that encoding. A comparison of a string that reads
//!   as a number with a number compares numbers, where Go would refuse the mixed types.
//! - gtmpl's map lookup of a missing key gives `<no value>`, where Prometheus's
//!   `missingkey=zero` over `map[string]string` gives "". Each label map is given an empty
//!   value for every field name the template text names (`$labels.instance`) that it lacks,
//!   so those print "" (a `range` over the map sees those names too).
//! - gtmpl cannot call a method with arguments, so `toTime` and `toDuration` return the text
//!   Go prints for a `time.Time` and a `time.Duration` (`(x | toTime).Format "2006"` fails).
//! - gtmpl iterates a map in no fixed order (Go: sorted keys) and prints a map or a list in
//!   Rust's debug notation (Go: `map[k:v]`, `[a b]`).
//! - gtmpl's errors carry no usable line and column, so they are found again in the text
//!   ([`location`]): a parse error gets the line Go's parser names (and Go's words where gtmpl's
//!   differ), an execution error the place and text of the failing command or field chain
//!   (`template: t:1:21: executing "t" at <first>: error calling first: …`), the first one
//!   naming the failing function or field when several do.
//! - gtmpl's functions are plain function pointers, so the expansion's time, external URL and
//!   querier reach them through a thread-local set for the expansion; with a querier the
//!   template runs on a scoped thread that asks the caller's thread for each query.
//!
//! Hostile templates are bounded: the text ([`MAX_TEXT_BYTES`]), the nesting of blocks and
//! parentheses ([`MAX_NESTING`]), the output and every string a function makes
//! ([`MAX_OUTPUT_BYTES`]); a template that invokes itself (directly or through others) is
//! refused, as gtmpl would recurse until the stack overflows.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::mpsc;

use gauntlet_engine::go_format::{FloatFormat, format_float, format_general, quoted, quoted_rune};
use gauntlet_engine::histogram::FloatHistogram;
use gtmpl::{Context, Template, Value};
use gtmpl_value::FuncError;

use crate::functions::instant::civil_from_days;

mod funcs;
mod location;

pub(crate) use funcs::go_duration_string;
mod go_fmt;

use funcs::*;
use go_fmt::*;

/// The most bytes an expansion may write, and the longest string a function may make.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// The longest template text expanded, bytes (before the variable prelude).
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// How deeply blocks (`if`, `range`, `with`, `define`, `block`) and parentheses may nest.
pub const MAX_NESTING: usize = 64;
/// Most distinct field names given an empty value in each label map (see the module docs).
const MAX_PADDED_NAMES: usize = 1024;
/// Stack of the thread a template with a querier runs on, bytes.
const WORKER_STACK_BYTES: usize = 16 << 20;

/// The variables an alerting rule's templates start with, as Prometheus defines them.
const PRELUDE: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}\
{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// One sample a template's `query` function returns.
#[derive(Debug, Clone, PartialEq)]
pub struct QuerySample {
    /// The series' labels (with `__name__` when the query kept it).
    pub labels: BTreeMap<String, String>,
    /// The sample's value.
    pub value: TemplateValue,
}

/// Runs a PromQL instant query for the template `query` function.
pub trait TemplateQuerier {
    /// Evaluates `expr` at `ts_ms` (ms since the epoch); the error text is what the template
    /// reports after `error calling query: `.
    fn query(&self, expr: &str, ts_ms: i64) -> Result<Vec<QuerySample>, String>;
}

/// A sample's value as a template sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateValue {
    /// A float sample.
    Float(f64),
    /// A native histogram sample, as Prometheus prints a `FloatHistogram`
    /// (`{count:3, sum:10}`): `$value` is the histogram itself there, which prints so.
    Histogram(String),
}

impl From<f64> for TemplateValue {
    fn from(v: f64) -> Self {
        TemplateValue::Float(v)
    }
}

impl From<&FloatHistogram> for TemplateValue {
    fn from(h: &FloatHistogram) -> Self {
        TemplateValue::Histogram(h.to_string())
    }
}

/// What an alerting rule's templates are expanded over.
#[derive(Debug, Clone, Copy)]
pub struct TemplateData<'a> {
    /// The alert's labels (the sample's, without `__name__`), `$labels`.
    pub labels: &'a BTreeMap<String, String>,
    /// The ruler's external labels, `$externalLabels`.
    pub external_labels: &'a BTreeMap<String, String>,
    /// The ruler's external URL, `$externalURL` (and `externalURL`, `pathPrefix`).
    pub external_url: &'a str,
    /// The alert's sample value, `$value`.
    pub value: &'a TemplateValue,
}

/// Why a template did not expand; the text is Prometheus's wording where gtmpl allows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The text is not a template (or exceeds a bound before it is run); the rule stores
    /// [`expand_or_error_text`]'s message, and `gauntlet rule` should refuse such a file.
    #[error("error parsing template {name}: {message}")]
    Parse {
        /// The template's name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// Running the template failed (a function's error, a failed query, an output bound).
    #[error("error executing template {name}: {message}")]
    Execute {
        /// The template's name.
        name: String,
        /// What failed.
        message: String,
    },
}

/// Expands `text` as Prometheus expands an alert's label or annotation template, with the
/// `$labels`, `$externalLabels`, `$externalURL` and `$value` prelude; `ts_ms` is the
/// evaluation time (ms), which `now` returns and `query` runs at.
pub fn expand(
    name: &str,
    text: &str,
    data: &TemplateData<'_>,
    ts_ms: i64,
    querier: Option<&dyn TemplateQuerier>,
) -> Result<String, TemplateError> {
    let full = format!("{PRELUDE}{text}");
    let names = field_names(text);
    let mut fields = HashMap::new();
    fields.insert("Labels".to_string(), label_map(data.labels, &names));
    fields.insert(
        "ExternalLabels".to_string(),
        label_map(data.external_labels, &names),
    );
    fields.insert(
        "ExternalURL".to_string(),
        Value::String(data.external_url.to_string()),
    );
    fields.insert("Value".to_string(), template_value(data.value));
    let dot = Value::Object(fields);
    expand_value(
        name,
        &full,
        text.len(),
        dot,
        ts_ms,
        data.external_url,
        querier,
    )
}

/// [`expand`]'s result, or what an alerting rule stores when expansion fails:
/// `<error expanding template: …>` (the caller logs the failure as a warning).
pub fn expand_or_error_text(
    name: &str,
    text: &str,
    data: &TemplateData<'_>,
    ts_ms: i64,
    querier: Option<&dyn TemplateQuerier>,
) -> String {
    expand(name, text, data, ts_ms, querier)
        .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
}

/// Checks `full` (whose user-written part is `text_len` bytes) and runs it over `dot`.
fn expand_value(
    name: &str,
    full: &str,
    text_len: usize,
    dot: Value,
    ts_ms: i64,
    external_url: &str,
    querier: Option<&dyn TemplateQuerier>,
) -> Result<String, TemplateError> {
    let parse_err = |message: String| TemplateError::Parse {
        name: name.to_string(),
        message,
    };
    if text_len > MAX_TEXT_BYTES {
        return Err(parse_err(format!(
            "template is {text_len} bytes long, more than the {MAX_TEXT_BYTES} allowed"
        )));
    }
    check_structure(name, full).map_err(|e| parse_err(location::parse_error(name, full, &e)))?;
    let user_text = full
        .get(full.len().saturating_sub(text_len)..)
        .unwrap_or(full);
    let env = Env {
        ts_ms,
        external_url: external_url.to_string(),
        padded: field_names(user_text),
        query: None,
    };
    let Some(querier) = querier else {
        return with_env(env, || run(name, full, dot));
    };
    let (req_tx, req_rx) = mpsc::channel::<String>();
    let (resp_tx, resp_rx) = mpsc::channel::<Result<Vec<QuerySample>, String>>();
    let env = Env {
        query: Some((req_tx, resp_rx)),
        ..env
    };
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("rule-template".into())
            .stack_size(WORKER_STACK_BYTES)
            .spawn_scoped(s, move || with_env(env, || run(name, full, dot)));
        let worker = match worker {
            Ok(w) => w,
            Err(e) => {
                return Err(TemplateError::Execute {
                    name: name.to_string(),
                    message: format!("cannot start the template's thread: {e}"),
                });
            }
        };
        // The worker drops its sender when it finishes, which ends this loop.
        while let Ok(expr) = req_rx.recv() {
            if resp_tx.send(querier.query(&expr, ts_ms)).is_err() {
                break;
            }
        }
        worker.join().unwrap_or_else(|_| {
            Err(TemplateError::Execute {
                name: name.to_string(),
                message: format!("panic expanding template {name}"),
            })
        })
    })
}

/// Parses and executes `full` over `dot` with the Prometheus functions. A panic inside gtmpl
/// fails the expansion, as Prometheus recovers one, rather than the rule's evaluation.
fn run(name: &str, full: &str, dot: Value) -> Result<String, TemplateError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_unguarded(name, full, dot)
    }))
    .unwrap_or_else(|_| {
        Err(TemplateError::Execute {
            name: name.to_string(),
            message: format!("panic expanding template {name}"),
        })
    })
}

fn run_unguarded(name: &str, full: &str, dot: Value) -> Result<String, TemplateError> {
    let mut tmpl = Template::with_name(name);
    tmpl.add_funcs(FUNCS);
    tmpl.parse(full).map_err(|e| TemplateError::Parse {
        name: name.to_string(),
        message: location::parse_error(name, full, &e.to_string()),
    })?;
    let mut out = BoundedOutput::default();
    let exec_err = |message: String| TemplateError::Execute {
        name: name.to_string(),
        message,
    };
    tmpl.execute(&mut out, &Context::from(dot))
        .map_err(|e| exec_err(located(name, full, exec_message(e))))?;
    String::from_utf8(out.0).map_err(|e| exec_err(e.to_string()))
}

/// An execution error `message` as Go's `text/template` words it, with the place and text of
/// the failing node (`template: NAME:2:23: executing "NAME" at <first>: …`) where it can be
/// found in `full` (see [`location`]); else the message alone.
fn located(name: &str, full: &str, message: String) -> String {
    // gtmpl's words for a missing template; Go quotes the name.
    let message = match message
        .strip_prefix("template ")
        .and_then(|r| r.strip_suffix(" not defined"))
    {
        Some(called) if !called.starts_with('"') => {
            let go = format!("template {} not defined", quoted(called));
            return match location::locate(full, &message) {
                Some((pos, node)) => format!(
                    "template: {}: executing {} at <{node}>: {go}",
                    location::position(name, full, pos),
                    quoted(name)
                ),
                None => go,
            };
        }
        _ => message,
    };
    match location::locate(full, &message) {
        Some((pos, node)) => format!(
            "template: {}: executing {} at <{node}>: {message}",
            location::position(name, full, pos),
            quoted(name)
        ),
        None => message,
    }
}

/// gtmpl's execution error in Go's words where they differ only in wording (a missing field
/// would otherwise print the whole data).
fn exec_message(e: gtmpl::error::ExecError) -> String {
    use gtmpl::error::ExecError;
    match e {
        ExecError::NoFiledFor(field, v) => {
            format!("can't evaluate field {field} in type {}", go_type(&v))
        }
        other => other.to_string(),
    }
}

/// The template's output, refusing to grow past [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct BoundedOutput(Vec<u8>);

impl Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT_BYTES {
            return Err(std::io::Error::other(too_long()));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_long() -> String {
    format!("template output exceeds {MAX_OUTPUT_BYTES} bytes")
}

// ---------------------------------------------------------------------------------------------
// The expansion's environment
// ---------------------------------------------------------------------------------------------

/// What the functions that are not pure need: the evaluation time, the external URL and the
/// way to the querier (requests out, answers back).
struct Env {
    ts_ms: i64,
    external_url: String,
    /// The field names the template's text names, which query samples' labels are padded with.
    padded: BTreeSet<String>,
    #[allow(
        clippy::type_complexity,
        reason = "a request channel and its answers, used in one place"
    )]
    query: Option<(
        mpsc::Sender<String>,
        mpsc::Receiver<Result<Vec<QuerySample>, String>>,
    )>,
}

thread_local! {
    static ENV: RefCell<Option<Env>> = const { RefCell::new(None) };
}

/// Runs `f` with `env` as this thread's expansion environment, and clears it afterwards (which
/// drops the query channel, so the caller's loop ends).
fn with_env<T>(env: Env, f: impl FnOnce() -> T) -> T {
    ENV.with(|e| *e.borrow_mut() = Some(env));
    let out = f();
    ENV.with(|e| e.borrow_mut().take());
    out
}

fn env_get<T>(f: impl FnOnce(&Env) -> T) -> Result<T, FuncError> {
    ENV.with(|e| match e.borrow().as_ref() {
        Some(env) => Ok(f(env)),
        None => Err(FuncError::Generic(
            "template function used outside an expansion".into(),
        )),
    })
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// A float as a template value: Go's `%v` of it (see the module docs).
fn float_value(v: f64) -> Value {
    Value::String(format_float(v, FloatFormat::G))
}

fn template_value(v: &TemplateValue) -> Value {
    match v {
        TemplateValue::Float(f) => float_value(*f),
        TemplateValue::Histogram(h) => Value::String(h.clone()),
    }
}

/// A label map, with an empty value for each of `pad` it lacks.
fn label_map(labels: &BTreeMap<String, String>, pad: &BTreeSet<String>) -> Value {
    let mut m: HashMap<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for p in pad {
        m.entry(p.clone())
            .or_insert_with(|| Value::String(String::new()));
    }
    Value::Map(m)
}

/// The names that follow a `.` in `text` (`$labels.instance` → `instance`).
fn field_names(text: &str) -> BTreeSet<String> {
    let b = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() && out.len() < MAX_PADDED_NAMES {
        if b[i] == b'.' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > start && !b[start].is_ascii_digit() {
                out.insert(text[start..j].to_string());
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Go's name of the type a value stands for, for error messages.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::NoValue | Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::String(_) => "string",
        Value::Number(n) if n.as_f64().is_some() => "float64",
        Value::Number(_) => "int",
        Value::Array(_) => "template.queryResult",
        Value::Object(_) => "*template.sample",
        Value::Map(_) => "map[string]interface {}",
        Value::Function(_) => "func",
    }
}

/// A number as a float, whatever gtmpl made of it.
fn number_f64(n: &gtmpl_value::Number) -> f64 {
    if let Some(f) = n.as_f64() {
        f
    } else if let Some(i) = n.as_i64() {
        i as f64
    } else {
        n.as_u64().map_or(0.0, |u| u as f64)
    }
}

/// Go's `strconv.ParseFloat(s, 64)`, with its error text.
fn parse_float(s: &str) -> Result<f64, String> {
    let t = s.replace('_', "");
    let bad = |why: &str| format!("strconv.ParseFloat: parsing {}: {why}", quoted(s));
    // Rust reads "1." and ".5" as Go does, but not a leading '+' before inf, which it does
    // read; and neither takes an empty string or surrounding space.
    match t.parse::<f64>() {
        Ok(v) if v.is_infinite() && !t.to_ascii_lowercase().contains("inf") => {
            Err(bad("value out of range"))
        }
        Ok(_) if t.len() != s.len() => Err(bad("invalid syntax")),
        Ok(v) => Ok(v),
        Err(_) => Err(bad("invalid syntax")),
    }
}

/// Prometheus's `ConvertToFloat`: numbers, and strings Go's `ParseFloat` reads.
fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => Ok(number_f64(n)),
        Value::String(s) if s.starts_with("{count:") => {
            Err("can't convert *histogram.FloatHistogram to float".into())
        }
        Value::String(s) => parse_float(s),
        other => Err(format!("can't convert {} to float", go_type(other))),
    }
}

// ---------------------------------------------------------------------------------------------
// Structure checks
// ---------------------------------------------------------------------------------------------

/// Refuses what would exhaust gtmpl's recursion: blocks or parentheses nested more than
/// [`MAX_NESTING`] deep, and templates that invoke themselves.
fn check_structure(name: &str, text: &str) -> Result<(), String> {
    let mut blocks: Vec<(usize, Option<String>)> = Vec::new(); // (else-ifs, defined name)
    let mut depth = 0usize;
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let action = &rest[open + 2..];
        let (body, after) = action_body(action);
        if body.len() == action.len() {
            // No `}}` closes it: refused here, in the library's words, because its lexer does
            // not always return on such text.
            return Err(format!(
                "template: {name}: unexpected unclosed action in command"
            ));
        }
        rest = after;
        let body = body.trim_start_matches('-').trim();
        if let Some(c) = stray_char(body) {
            // Go's lexer refuses a character no token starts with; the template library's
            // panics on some of them (inside a thread of its own), so they are refused here.
            return Err(format!(
                "template: {name}: unrecognized character in action: U+{:04X} '{c}'",
                c as u32
            ));
        }
        if body.starts_with("/*") {
            continue;
        }
        let paren = max_paren_depth(body);
        let word = body.split(|c: char| !c.is_ascii_alphanumeric()).next();
        let current = blocks
            .iter()
            .rev()
            .find_map(|(_, n)| n.clone())
            .unwrap_or_else(|| name.to_string());
        match word {
            Some("if" | "range" | "with") => {
                depth += 1;
                blocks.push((0, None));
            }
            Some("define" | "block") => {
                let called = literal_after(body);
                if word == Some("block")
                    && let Some(c) = &called
                {
                    calls.entry(current).or_default().insert(c.clone());
                }
                depth += 1;
                blocks.push((0, called));
            }
            Some("else") => {
                if body["else".len()..].trim_start().starts_with(['i', 'w'])
                    && let Some(b) = blocks.last_mut()
                {
                    b.0 += 1;
                    depth += 1;
                }
            }
            Some("end") => {
                if let Some((elses, _)) = blocks.pop() {
                    depth = depth.saturating_sub(1 + elses);
                }
            }
            Some("template") => {
                if let Some(c) = literal_after(body) {
                    calls.entry(current).or_default().insert(c);
                }
            }
            _ => {}
        }
        if depth + paren > MAX_NESTING {
            return Err(format!(
                "template nests more than {MAX_NESTING} blocks and parentheses deep"
            ));
        }
    }
    if let Some(cycle) = find_cycle(&calls) {
        return Err(format!(
            "template {} invokes itself, which is not supported",
            quoted(&cycle)
        ));
    }
    Ok(())
}

/// The text of an action up to its closing `}}` (skipping strings and comments), and what
/// follows it.
fn action_body(s: &str) -> (&str, &str) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'`' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => match s[i + 2..].find("*/") {
                Some(end) => i += end + 4,
                None => return (s, ""),
            },
            b'}' if b.get(i + 1) == Some(&b'}') => return (&s[..i], &s[i + 2..]),
            _ => i += 1,
        }
    }
    (s, "")
}

/// The first character outside an action's strings and comments that is not ASCII, if any:
/// no token of the template language starts with one.
fn stray_char(body: &str) -> Option<char> {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '`' | '\'' => quote = Some(c),
                '/' if chars.peek() == Some(&'*') => return None,
                c if !c.is_ascii() => return Some(c),
                _ => {}
            },
        }
    }
    None
}

/// How deeply parentheses nest in an action (outside its strings).
fn max_paren_depth(body: &str) -> usize {
    let (mut d, mut max, mut quote) = (0usize, 0usize, None);
    let mut escaped = false;
    for c in body.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q != '`' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '`' | '\'' => quote = Some(c),
                '(' => {
                    d += 1;
                    max = max.max(d);
                }
                ')' => d = d.saturating_sub(1),
                _ => {}
            },
        }
    }
    max
}

/// The string literal after an action's keyword (`template "x" .` → `x`).
fn literal_after(body: &str) -> Option<String> {
    let rest = body.split_once(char::is_whitespace)?.1.trim_start();
    let q = rest.chars().next()?;
    if q != '"' && q != '`' {
        return None;
    }
    let inner = &rest[1..];
    let end = inner.find(q)?;
    Some(inner[..end].to_string())
}

/// A template that reaches itself through the calls, if any.
fn find_cycle(calls: &BTreeMap<String, BTreeSet<String>>) -> Option<String> {
    // 0: unseen, 1: on the path, 2: done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    let mut stack: Vec<(&str, Vec<&str>)> = Vec::new();
    for start in calls.keys() {
        if state.get(start.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        state.insert(start, 1);
        stack.push((start, calls[start].iter().map(String::as_str).collect()));
        while let Some((node, next)) = stack.last_mut() {
            match next.pop() {
                Some(n) => match state.get(n).copied().unwrap_or(0) {
                    1 => return Some(n.to_string()),
                    0 => {
                        state.insert(n, 1);
                        let succ = calls
                            .get(n)
                            .map(|s| s.iter().map(String::as_str).collect())
                            .unwrap_or_default();
                        stack.push((n, succ));
                    }
                    _ => {}
                },
                None => {
                    state.insert(node, 2);
                    stack.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests;
