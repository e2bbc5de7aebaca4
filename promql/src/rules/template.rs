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
//! - gtmpl's errors carry no line and column: `error executing template t: error calling
//!   first: …` where Prometheus writes `error executing template t: template: t:1:21:
//!   executing "t" at <first>: error calling first: …`. Parse errors are gtmpl's words.
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
    check_structure(name, full).map_err(parse_err)?;
    let env = Env {
        ts_ms,
        external_url: external_url.to_string(),
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

/// Parses and executes `full` over `dot` with the Prometheus functions.
fn run(name: &str, full: &str, dot: Value) -> Result<String, TemplateError> {
    let mut tmpl = Template::with_name(name);
    tmpl.add_funcs(FUNCS);
    tmpl.parse(full).map_err(|e| TemplateError::Parse {
        name: name.to_string(),
        message: parse_message(name, e),
    })?;
    let mut out = BoundedOutput::default();
    let exec_err = |message: String| TemplateError::Execute {
        name: name.to_string(),
        message,
    };
    tmpl.execute(&mut out, &Context::from(dot))
        .map_err(|e| exec_err(exec_message(e)))?;
    String::from_utf8(out.0).map_err(|e| exec_err(e.to_string()))
}

/// gtmpl's parse error as `template: NAME: what`: its line numbers count from a different
/// place than Go's (and the prelude shifts them), so they are left out.
fn parse_message(name: &str, e: gtmpl::error::ParseError) -> String {
    let text = e.to_string();
    let prefix = format!("template: {name}:");
    match text.strip_prefix(&prefix) {
        Some(rest) => {
            let what = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            format!("{prefix} {}", what.trim_start_matches(':').trim_start())
        }
        None => text,
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
        rest = after;
        let body = body.trim_start_matches('-').trim();
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

// ---------------------------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------------------------

type Func = fn(&[Value]) -> Result<Value, FuncError>;

/// Prometheus's template functions, and Go-faithful versions of the builtins gtmpl gets wrong.
const FUNCS: &[(&str, Func)] = &[
    ("query", f_query),
    ("first", f_first),
    ("label", f_label),
    ("value", f_value),
    ("strvalue", f_strvalue),
    ("args", f_args),
    ("reReplaceAll", f_re_replace_all),
    ("safeHtml", f_safe_html),
    ("match", f_match),
    ("title", f_title),
    ("toUpper", f_to_upper),
    ("toLower", f_to_lower),
    ("graphLink", f_graph_link),
    ("tableLink", f_table_link),
    ("sortByLabel", f_sort_by_label),
    ("stripPort", f_strip_port),
    ("stripDomain", f_strip_domain),
    ("humanize", f_humanize),
    ("humanize1024", f_humanize1024),
    ("humanizeDuration", f_humanize_duration),
    ("humanizePercentage", f_humanize_percentage),
    ("humanizeTimestamp", f_humanize_timestamp),
    ("toTime", f_to_time),
    ("toDuration", f_to_duration),
    ("now", f_now),
    ("pathPrefix", f_path_prefix),
    ("externalURL", f_external_url),
    ("parseDuration", f_parse_duration),
    ("urlQueryEscape", f_url_query_escape),
    ("eq", f_eq),
    ("ne", f_ne),
    ("lt", f_lt),
    ("le", f_le),
    ("gt", f_gt),
    ("ge", f_ge),
    ("printf", f_printf),
    ("print", f_print),
    ("println", f_println),
    ("urlquery", f_urlquery),
    ("len", f_len),
];

/// Go's `len`: bytes of a string, elements of a list, entries of a map (gtmpl's has no maps).
fn f_len(args: &[Value]) -> Result<Value, FuncError> {
    arity("len", args, 1)?;
    match &args[0] {
        Value::String(s) => Ok(Value::from(s.len())),
        Value::Array(a) => Ok(Value::from(a.len())),
        Value::Map(m) | Value::Object(m) => Ok(Value::from(m.len())),
        other => Err(calling("len", format!("len of type {}", go_type(other)))),
    }
}

/// Go's error for a call with the wrong number of arguments.
fn arity(name: &str, args: &[Value], want: usize) -> Result<(), FuncError> {
    if args.len() == want {
        return Ok(());
    }
    Err(FuncError::Generic(format!(
        "wrong number of args for {name}: want {want} got {}",
        args.len()
    )))
}

/// An error a function returned, as Go's template reports it.
fn calling(name: &str, msg: impl std::fmt::Display) -> FuncError {
    FuncError::Generic(format!("error calling {name}: {msg}"))
}

/// Go's error for an argument of the wrong type.
fn wrong_type(want: &str, got: &Value) -> FuncError {
    FuncError::Generic(format!(
        "wrong type for value; expected {want}; got {}",
        go_type(got)
    ))
}

fn want_str(v: &Value) -> Result<&str, FuncError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong_type("string", other)),
    }
}

fn want_sample(v: &Value) -> Result<&HashMap<String, Value>, FuncError> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(wrong_type("*template.sample", other)),
    }
}

fn want_result(v: &Value) -> Result<&Vec<Value>, FuncError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(wrong_type("template.queryResult", other)),
    }
}

/// A function's string result, refused when longer than [`MAX_OUTPUT_BYTES`].
fn bounded(name: &str, s: String) -> Result<Value, FuncError> {
    if s.len() > MAX_OUTPUT_BYTES {
        return Err(calling(name, too_long()));
    }
    Ok(Value::String(s))
}

fn sample_label<'v>(sample: &'v HashMap<String, Value>, label: &str) -> &'v str {
    match sample.get("Labels") {
        Some(Value::Map(m)) => match m.get(label) {
            Some(Value::String(s)) => s,
            _ => "",
        },
        _ => "",
    }
}

fn f_query(args: &[Value]) -> Result<Value, FuncError> {
    arity("query", args, 1)?;
    let expr = want_str(&args[0])?.to_string();
    let answer = env_get(|env| match &env.query {
        Some((tx, rx)) => tx
            .send(expr)
            .map_err(|_| "the querier is gone".to_string())
            .and_then(|()| rx.recv().map_err(|_| "the querier is gone".to_string()))
            .and_then(|r| r),
        None => Err("no querier for template queries".to_string()),
    })?;
    let samples = answer.map_err(|e| calling("query", e))?;
    let none = BTreeSet::new();
    Ok(Value::Array(
        samples
            .iter()
            .map(|s| {
                let mut o = HashMap::new();
                o.insert("Labels".to_string(), label_map(&s.labels, &none));
                o.insert("Value".to_string(), template_value(&s.value));
                Value::Object(o)
            })
            .collect(),
    ))
}

fn f_first(args: &[Value]) -> Result<Value, FuncError> {
    arity("first", args, 1)?;
    want_result(&args[0])?
        .first()
        .cloned()
        .ok_or_else(|| calling("first", "first() called on vector with no elements"))
}

fn f_label(args: &[Value]) -> Result<Value, FuncError> {
    arity("label", args, 2)?;
    let label = want_str(&args[0])?;
    let sample = want_sample(&args[1])?;
    Ok(Value::String(sample_label(sample, label).to_string()))
}

fn f_value(args: &[Value]) -> Result<Value, FuncError> {
    arity("value", args, 1)?;
    Ok(want_sample(&args[0])?
        .get("Value")
        .cloned()
        .unwrap_or(Value::Nil))
}

fn f_strvalue(args: &[Value]) -> Result<Value, FuncError> {
    arity("strvalue", args, 1)?;
    let sample = want_sample(&args[0])?;
    Ok(Value::String(sample_label(sample, "__value__").to_string()))
}

fn f_args(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Map(
        args.iter()
            .enumerate()
            .map(|(i, a)| (format!("arg{i}"), a.clone()))
            .collect(),
    ))
}

/// Compiles a template's regex; Go's `MustCompile` panics on a bad one, which Prometheus turns
/// into the expansion's error.
fn regex(pattern: &str) -> Result<regex::Regex, FuncError> {
    regex::Regex::new(pattern).map_err(|e| {
        FuncError::Generic(format!(
            "regexp: Compile({}): {}",
            quoted(pattern),
            e.to_string().lines().last().unwrap_or_default().trim()
        ))
    })
}

fn f_re_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    arity("reReplaceAll", args, 3)?;
    let re = regex(want_str(&args[0])?)?;
    let repl = want_str(&args[1])?;
    let text = want_str(&args[2])?;
    // Go expands `$1`, `${1}` and `$name` in the replacement as the regex crate does.
    bounded("reReplaceAll", re.replace_all(text, repl).into_owned())
}

fn f_safe_html(args: &[Value]) -> Result<Value, FuncError> {
    arity("safeHtml", args, 1)?;
    Ok(Value::String(want_str(&args[0])?.to_string()))
}

fn f_match(args: &[Value]) -> Result<Value, FuncError> {
    arity("match", args, 2)?;
    let re = regex(want_str(&args[0])?).map_err(|e| calling("match", e))?;
    Ok(Value::Bool(re.is_match(want_str(&args[1])?)))
}

fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    arity("title", args, 1)?;
    // `cases.Title(language.AmericanEnglish, cases.NoLower)`: the first letter of each word
    // upper-cased, the rest left as written.
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in want_str(&args[0])?.chars() {
        let starts_word = prev.is_none_or(|p| !(p.is_alphanumeric() || p == '\'' || p == '’'));
        if starts_word && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    bounded("title", out)
}

fn f_to_upper(args: &[Value]) -> Result<Value, FuncError> {
    arity("toUpper", args, 1)?;
    bounded("toUpper", want_str(&args[0])?.to_uppercase())
}

fn f_to_lower(args: &[Value]) -> Result<Value, FuncError> {
    arity("toLower", args, 1)?;
    bounded("toLower", want_str(&args[0])?.to_lowercase())
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
            }
        }
    }
    out
}

fn f_graph_link(args: &[Value]) -> Result<Value, FuncError> {
    arity("graphLink", args, 1)?;
    let e = query_escape(want_str(&args[0])?);
    bounded("graphLink", format!("/graph?g0.expr={e}&g0.tab=0"))
}

fn f_table_link(args: &[Value]) -> Result<Value, FuncError> {
    arity("tableLink", args, 1)?;
    let e = query_escape(want_str(&args[0])?);
    bounded("tableLink", format!("/graph?g0.expr={e}&g0.tab=1"))
}

fn f_url_query_escape(args: &[Value]) -> Result<Value, FuncError> {
    arity("urlQueryEscape", args, 1)?;
    bounded("urlQueryEscape", query_escape(want_str(&args[0])?))
}

fn f_sort_by_label(args: &[Value]) -> Result<Value, FuncError> {
    arity("sortByLabel", args, 2)?;
    let label = want_str(&args[0])?;
    let mut v = want_result(&args[1])?.clone();
    v.sort_by(|a, b| {
        let key = |s: &Value| match s {
            Value::Object(o) => sample_label(o, label).to_string(),
            _ => String::new(),
        };
        key(a).cmp(&key(b))
    });
    Ok(Value::Array(v))
}

/// Go's `net.SplitHostPort`: host and port, or `None` where it returns an error.
fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    let i = hp.rfind(':')?;
    let (host, j, k) = if hp.starts_with('[') {
        let end = hp.find(']')?;
        if end + 1 != i {
            return None;
        }
        (&hp[1..end], 1, end + 1)
    } else {
        let host = &hp[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if hp[j..].contains('[') || hp[k..].contains(']') {
        return None;
    }
    Some((host, &hp[i + 1..]))
}

fn f_strip_port(args: &[Value]) -> Result<Value, FuncError> {
    arity("stripPort", args, 1)?;
    let hp = want_str(&args[0])?;
    Ok(Value::String(
        split_host_port(hp).map_or(hp, |(h, _)| h).to_string(),
    ))
}

fn f_strip_domain(args: &[Value]) -> Result<Value, FuncError> {
    arity("stripDomain", args, 1)?;
    let hp = want_str(&args[0])?;
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(Value::String(hp.to_string()));
    }
    let host = host.split('.').next().unwrap_or_default();
    Ok(Value::String(if port.is_empty() {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }))
}

/// The single argument as a float, or the function's error.
fn float_arg(name: &str, args: &[Value]) -> Result<f64, FuncError> {
    arity(name, args, 1)?;
    to_float(&args[0]).map_err(|e| calling(name, e))
}

/// `v` scaled by `step` until below it, with the SI or binary prefix it took.
fn humanize_with(mut v: f64, step: f64, prefixes: &[&'static str]) -> (f64, &'static str) {
    let mut prefix = "";
    for p in prefixes {
        if v.abs() < step {
            break;
        }
        prefix = p;
        v /= step;
    }
    (v, prefix)
}

/// `v` scaled up by 1000 until at least 1, with the SI prefix it took.
fn humanize_small(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    (v, prefix)
}

fn f_humanize(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanize", args)?;
    if v == 0.0 || !v.is_finite() {
        return Ok(Value::String(format_general(v, 4)));
    }
    let (v, prefix) = if v.abs() >= 1.0 {
        humanize_with(v, 1000.0, &["k", "M", "G", "T", "P", "E", "Z", "Y"])
    } else {
        humanize_small(v)
    };
    Ok(Value::String(format!("{}{prefix}", format_general(v, 4))))
}

fn f_humanize1024(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanize1024", args)?;
    if v.abs() <= 1.0 || !v.is_finite() {
        return Ok(Value::String(format_general(v, 4)));
    }
    let prefixes = ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];
    let (v, prefix) = humanize_with(v, 1024.0, &prefixes);
    Ok(Value::String(format!("{}{prefix}", format_general(v, 4))))
}

fn f_humanize_duration(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanizeDuration", args)?;
    if !v.is_finite() {
        return Ok(Value::String(format_general(v, 4)));
    }
    if v == 0.0 {
        return Ok(Value::String(format!("{}s", format_general(v, 4))));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let a = v.abs();
        let whole = a as i64;
        let (s, m, h, d) = (
            whole % 60,
            (whole / 60) % 60,
            (whole / 3600) % 24,
            whole / 86_400,
        );
        return Ok(Value::String(if d != 0 {
            format!("{sign}{d}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", format_general(a, 4))
        }));
    }
    let (v, prefix) = humanize_small(v);
    Ok(Value::String(format!("{}{prefix}s", format_general(v, 4))))
}

fn f_humanize_percentage(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanizePercentage", args)?;
    Ok(Value::String(format!("{}%", format_general(v * 100.0, 4))))
}

/// Prometheus's `floatToTime`, to ms since the epoch (a `model.Time`'s precision); `Ok(None)`
/// for NaN and the infinities.
fn float_to_ms(v: f64) -> Result<Option<i64>, String> {
    if !v.is_finite() {
        return Ok(None);
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_float(v, FloatFormat::G)
        ));
    }
    Ok(Some((ns as i64) / 1_000_000))
}

/// Go's `time.Time.String()` of a UTC time, `ms` since the epoch:
/// `2015-06-23 13:19:44.128 +0000 UTC`.
fn go_time_string(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let year = if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("{y:04}")
    };
    let mut s = format!(
        "{year}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        s.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

fn f_humanize_timestamp(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanizeTimestamp", args)?;
    match float_to_ms(v).map_err(|e| calling("humanizeTimestamp", e))? {
        Some(ms) => Ok(Value::String(go_time_string(ms))),
        None => Ok(Value::String(format_general(v, 4))),
    }
}

fn f_to_time(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("toTime", args)?;
    match float_to_ms(v).map_err(|e| calling("toTime", e))? {
        Some(ms) => Ok(Value::String(go_time_string(ms))),
        None => Err(calling("toTime", "value is NaN or Inf")),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `30m0s`, `1.5ms`, `0s`.
fn go_duration_string(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let with_frac = |whole: u64, frac: u64, width: usize| {
        let f = format!("{frac:0width$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{f}")
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", with_frac(u / 1_000, u % 1_000, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", with_frac(u / 1_000_000, u % 1_000_000, 6));
    }
    let secs = u / 1_000_000_000;
    let s = with_frac(secs % 60, u % 1_000_000_000, 9);
    let (m, h) = ((secs / 60) % 60, secs / 3600);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

fn f_to_duration(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("toDuration", args)?;
    Ok(Value::String(go_duration_string((v * 1e9) as i64)))
}

fn f_now(args: &[Value]) -> Result<Value, FuncError> {
    arity("now", args, 0)?;
    env_get(|env| float_value(env.ts_ms as f64 / 1000.0))
}

/// The path of an absolute URL (`http://host:9090/prefix?x` → `/prefix`).
fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = match after_scheme.find('/') {
        Some(i) if url.contains("://") => &after_scheme[i..],
        Some(_) | None if url.contains("://") => "",
        _ => after_scheme,
    };
    path.split(['?', '#']).next().unwrap_or_default()
}

fn f_path_prefix(args: &[Value]) -> Result<Value, FuncError> {
    arity("pathPrefix", args, 0)?;
    env_get(|env| Value::String(url_path(&env.external_url).to_string()))
}

fn f_external_url(args: &[Value]) -> Result<Value, FuncError> {
    arity("externalURL", args, 0)?;
    env_get(|env| Value::String(env.external_url.clone()))
}

fn f_parse_duration(args: &[Value]) -> Result<Value, FuncError> {
    arity("parseDuration", args, 1)?;
    let s = want_str(&args[0])?;
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let ms = crate::parse_duration_ms(body).ok_or_else(|| {
        calling(
            "parseDuration",
            format!("not a valid duration string: {}", quoted(s)),
        )
    })?;
    let secs = ms as f64 / 1000.0;
    Ok(float_value(if neg { -secs } else { secs }))
}

// ---------------------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------------------

/// How two values compare, Go's way where the kinds agree (see the module docs where not).
fn compare(name: &str, a: &Value, b: &Value) -> Result<Option<std::cmp::Ordering>, FuncError> {
    let num = |v: &Value| match v {
        Value::Number(n) => Some(number_f64(n)),
        Value::String(s) => parse_float(s).ok(),
        _ => None,
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Bool(x), Value::Bool(y)) if name == "eq" || name == "ne" => Ok(Some(x.cmp(y))),
        (Value::Bool(_), Value::Bool(_)) => Err(calling(name, "invalid type for comparison")),
        (Value::Number(_), _) | (_, Value::Number(_)) => match (num(a), num(b)) {
            (Some(x), Some(y)) => Ok(x.partial_cmp(&y)),
            _ => Err(calling(name, "incompatible types for comparison")),
        },
        _ => Err(calling(name, "invalid type for comparison")),
    }
}

fn f_eq(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() < 2 {
        return Err(calling("eq", "missing argument for comparison"));
    }
    for b in &args[1..] {
        if compare("eq", &args[0], b)? == Some(std::cmp::Ordering::Equal) {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn f_ne(args: &[Value]) -> Result<Value, FuncError> {
    arity("ne", args, 2)?;
    Ok(Value::Bool(
        compare("ne", &args[0], &args[1])? != Some(std::cmp::Ordering::Equal),
    ))
}

fn ordered(
    name: &str,
    args: &[Value],
    ok: fn(std::cmp::Ordering) -> bool,
) -> Result<Value, FuncError> {
    arity(name, args, 2)?;
    Ok(Value::Bool(
        compare(name, &args[0], &args[1])?.is_some_and(ok),
    ))
}

fn f_lt(args: &[Value]) -> Result<Value, FuncError> {
    ordered("lt", args, std::cmp::Ordering::is_lt)
}

fn f_le(args: &[Value]) -> Result<Value, FuncError> {
    ordered("le", args, std::cmp::Ordering::is_le)
}

fn f_gt(args: &[Value]) -> Result<Value, FuncError> {
    ordered("gt", args, std::cmp::Ordering::is_gt)
}

fn f_ge(args: &[Value]) -> Result<Value, FuncError> {
    ordered("ge", args, std::cmp::Ordering::is_ge)
}

// ---------------------------------------------------------------------------------------------
// printf, print, println, urlquery: Go's fmt
// ---------------------------------------------------------------------------------------------

/// Go's `%v` of a value.
fn go_v(v: &Value, out: &mut String) {
    match v {
        Value::NoValue => out.push_str("<no value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(s),
        Value::Number(n) => match n.as_f64() {
            Some(f) => out.push_str(&format_float(f, FloatFormat::G)),
            None => out.push_str(&n.to_string()),
        },
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_v(x, out);
            }
            out.push(']');
        }
        Value::Object(m) | Value::Map(m) => {
            out.push_str(if matches!(v, Value::Map(_)) {
                "map["
            } else {
                "{"
            });
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            for (i, (k, x)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_v(x, out);
            }
            out.push(if matches!(v, Value::Map(_)) { ']' } else { '}' });
        }
        Value::Function(_) => out.push_str("<func>"),
    }
}

/// One `%` directive's flags, width and precision.
#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    /// Pads `body` (its sign, if any, first) to the width.
    fn pad(&self, body: &str, numeric: bool, out: &mut String) {
        let n = body.chars().count();
        let w = self.width.unwrap_or(0);
        if n >= w {
            out.push_str(body);
        } else if self.minus {
            out.push_str(body);
            (n..w).for_each(|_| out.push(' '));
        } else if self.zero && (numeric || !self.minus) {
            let (sign, digits) = match body.as_bytes().first() {
                Some(b'-' | b'+' | b' ') if numeric => body.split_at(1),
                _ => ("", body),
            };
            out.push_str(sign);
            (n..w).for_each(|_| out.push('0'));
            out.push_str(digits);
        } else {
            (n..w).for_each(|_| out.push(' '));
            out.push_str(body);
        }
    }

    fn signed(&self, neg: bool, digits: &str) -> String {
        let sign = if neg {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        };
        format!("{sign}{digits}")
    }
}

/// A value as an integer for `%d`, `%x`, `%c` and `%q`, when it is one.
fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) if n.as_f64().is_none() => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
}

/// A value as a float for `%f`, `%e` and `%g`: a float, or a string holding one.
fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_float(s).ok(),
        _ => None,
    }
}

fn fmt_float(spec: &Spec, verb: char, f: f64) -> String {
    if !f.is_finite() {
        let s = if f.is_nan() {
            "NaN".to_string()
        } else {
            spec.signed(f < 0.0, "Inf")
        };
        return if f.is_nan() && (spec.plus || spec.space) {
            format!("{}NaN", if spec.plus { '+' } else { ' ' })
        } else {
            s
        };
    }
    let neg = f.is_sign_negative();
    let a = f.abs();
    // A float64's exact decimal expansion ends within 1100 places (767 significant digits);
    // Rust's formatter takes at most 65535, so longer precisions are zeros appended.
    let zeros = |p: usize, cap: usize| "0".repeat(p.saturating_sub(cap));
    let digits = match (verb, spec.prec) {
        ('f' | 'F', p) => {
            let p = p.unwrap_or(6);
            format!("{a:.*}{}", p.min(1100), zeros(p, 1100))
        }
        ('e' | 'E', p) => {
            let p = p.unwrap_or(6);
            let e = go_exp(&format!("{a:.*e}", p.min(800)));
            match e.split_once('e') {
                Some((m, x)) => format!("{m}{}e{x}", zeros(p, 800)),
                None => e,
            }
        }
        ('g' | 'G' | 'v', Some(p)) => format_general(a, p),
        _ => format_float(a, FloatFormat::G),
    };
    let digits = if verb.is_ascii_uppercase() {
        digits.to_uppercase()
    } else {
        digits
    };
    spec.signed(neg, &digits)
}

/// Rust's `1.5e6` as Go's `1.5e+06`.
fn go_exp(rust: &str) -> String {
    match rust.split_once('e') {
        Some((m, e)) => {
            let (sign, d) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            format!("{m}e{sign}{d:0>2}")
        }
        None => rust.to_string(),
    }
}

/// Go's `%!verb(type=value)` for an argument the verb cannot print.
fn bad_verb(verb: char, v: &Value, out: &mut String) {
    out.push_str(&format!("%!{verb}({}=", go_type(v)));
    go_v(v, out);
    out.push(')');
}

fn fmt_one(spec: &Spec, verb: char, v: &Value, out: &mut String) {
    match verb {
        'v' => {
            if let (Value::Number(n), true) = (v, spec.prec.is_some())
                && let Some(f) = n.as_f64()
            {
                return spec.pad(&fmt_float(spec, 'g', f), true, out);
            }
            let mut s = String::new();
            go_v(v, &mut s);
            spec.pad(&s, false, out);
        }
        's' => match v {
            Value::String(s) => {
                let s: String = match spec.prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                };
                spec.pad(&s, false, out);
            }
            Value::Bool(_) | Value::Number(_) | Value::Nil | Value::NoValue => {
                bad_verb(verb, v, out)
            }
            _ => {
                let mut s = String::new();
                go_v(v, &mut s);
                spec.pad(&s, false, out);
            }
        },
        'q' => match (v, as_int(v)) {
            (Value::String(s), _) => spec.pad(&quoted(s), false, out),
            (_, Some(i)) => match u32::try_from(i).ok().and_then(char::from_u32) {
                Some(c) => spec.pad(&quoted_rune(c), false, out),
                None => spec.pad("'�'", false, out),
            },
            _ => bad_verb(verb, v, out),
        },
        'd' => match as_int(v) {
            Some(i) => {
                let s = spec.signed(i < 0, &i.unsigned_abs().to_string());
                spec.pad(&s, true, out);
            }
            None => bad_verb(verb, v, out),
        },
        'x' | 'X' => {
            let s = match (v, as_int(v)) {
                (_, Some(i)) => spec.signed(i < 0, &format!("{:x}", i.unsigned_abs())),
                (Value::String(s), _) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                _ => return bad_verb(verb, v, out),
            };
            let s = if verb == 'X' { s.to_uppercase() } else { s };
            spec.pad(&s, true, out);
        }
        'c' => match as_int(v)
            .and_then(|i| u32::try_from(i).ok())
            .and_then(char::from_u32)
        {
            Some(c) => spec.pad(&c.to_string(), false, out),
            None => bad_verb(verb, v, out),
        },
        't' => match v {
            Value::Bool(b) => spec.pad(if *b { "true" } else { "false" }, false, out),
            _ => bad_verb(verb, v, out),
        },
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => match as_float(v) {
            Some(f) => spec.pad(&fmt_float(spec, verb, f), true, out),
            None => bad_verb(verb, v, out),
        },
        _ => bad_verb(verb, v, out),
    }
}

/// Go's `fmt.Sprintf` over template values.
fn sprintf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if out.len() > MAX_OUTPUT_BYTES {
            return Err(too_long());
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = !spec.minus,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
                chars.next();
            }
            n
        };
        spec.width = number(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(number(&mut chars).unwrap_or(0));
        }
        // Go refuses widths and precisions above a million, as `%!(BADWIDTH)`.
        if spec.width.is_some_and(|w| w > 1_000_000) {
            out.push_str("%!(BADWIDTH)");
            spec.width = None;
        }
        if spec.prec.is_some_and(|p| p > 1_000_000) {
            out.push_str("%!(BADPREC)");
            spec.prec = None;
        }
        if spec.width.unwrap_or(0) + spec.prec.unwrap_or(0) + out.len() > MAX_OUTPUT_BYTES {
            return Err(too_long());
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => fmt_one(&spec, verb, v, &mut out),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, v) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(go_type(v));
            out.push('=');
            go_v(v, &mut out);
        }
        out.push(')');
    }
    Ok(out)
}

fn f_printf(args: &[Value]) -> Result<Value, FuncError> {
    let Some(format) = args.first() else {
        return Err(FuncError::Generic(
            "wrong number of args for printf: want at least 1 got 0".into(),
        ));
    };
    let s = sprintf(want_str(format)?, &args[1..]).map_err(|e| calling("printf", e))?;
    bounded("printf", s)
}

/// Go's `fmt.Sprint`: operands as `%v`, a space between two that are not strings.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::String(_));
        if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        go_v(a, &mut out);
    }
    out
}

fn f_print(args: &[Value]) -> Result<Value, FuncError> {
    bounded("print", sprint(args))
}

fn f_println(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        go_v(a, &mut out);
    }
    out.push('\n');
    bounded("println", out)
}

fn f_urlquery(args: &[Value]) -> Result<Value, FuncError> {
    bounded("urlquery", query_escape(&sprint(args)))
}

#[cfg(test)]
mod tests;
