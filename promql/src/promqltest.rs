//! A runner for Prometheus's promqltest scripts (`load`, `clear`, `eval instant|range`,
//! `eval_fail`, `eval_ordered`, `expect …`), used by the conformance test. Sections that load
//! native histograms, and evals expecting them, are skipped and counted.

use std::collections::BTreeMap;

use regex::Regex;

use super::hist_notation::{self, HistToken};
use super::{Engine, Value};
use gauntlet_engine::block::cut_float_histogram_chunks;
use gauntlet_engine::chunk::{HistogramBatch, decode_float_histogram_chunk};
use gauntlet_engine::chunk::{STALE_NAN_BITS, SampleBatch};
use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram};
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::{MemSeries, Series};

/// The outcome of one script.
#[derive(Debug, Default, Clone)]
pub struct ScriptReport {
    /// Evals that gave the expected answer.
    pub passed: usize,
    /// Evals that did not, each as `file:line: query: reason`.
    pub failed: Vec<String>,
    /// Of `failed`, those over a feature Prometheus marks experimental (see
    /// [`experimental_feature`]), or lines loading what only such a feature stores.
    pub experimental_failed: Vec<String>,
    /// Evals not run: native histograms, or expectations the runner does not check.
    pub skipped: usize,
}

/// Parses a duration of the test language (a Prometheus duration, optionally negative) into
/// ms.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    match s.strip_prefix('-') {
        Some(r) => super::parse_duration_ms(r).map(|v| -v),
        None => super::parse_duration_ms(s),
    }
}

/// Parses a number as Go's `strconv.ParseFloat` and the test language accept it.
pub(crate) fn parse_number(s: &str) -> Option<f64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if body.eq_ignore_ascii_case("inf") {
        f64::INFINITY
    } else if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if body.contains(['x', 'X']) {
        // `x` means repetition in this language, never hex.
        return None;
    } else {
        body.parse::<f64>().ok()?
    };
    Some(if neg { -v } else { v })
}

/// A sample slot of a series description: a value, a gap (`_`), or a native histogram.
#[derive(Debug, Clone)]
enum Slot {
    Value(f64),
    Gap,
    Hist(Box<FloatHistogram>),
}

/// A parsed series description line.
struct SeriesDesc {
    labels: Labels,
    slots: Vec<Slot>,
}

/// Reads a Go-style double-quoted string starting at `s[0] == '"'`; returns it and the rest.
fn read_quoted(s: &str) -> Option<(String, &str)> {
    let quote = s.chars().next()?;
    let mut out = String::new();
    let mut chars = s[1..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'x' => {
                        let (_, a) = chars.next()?;
                        let (_, b) = chars.next()?;
                        let v = u8::from_str_radix(&format!("{a}{b}"), 16).ok()?;
                        // Invalid UTF-8 bytes become U+FFFD, as Go would see them when printing.
                        out.push(if v < 0x80 { v as char } else { '\u{FFFD}' });
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            c if c == quote => return Some((out, &s[1 + i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// Parses `name{l="v", …} values…` (values optional) into the series' labels (those with
/// empty values dropped) and the values' text.
fn parse_series_desc(line: &str) -> Result<(Labels, &str), String> {
    let line = line.trim();
    let (labels, rest) = crate::parser::parse_series_labels(line).map_err(|e| e.to_string())?;
    let pairs = labels
        .into_iter()
        .filter(|m| !m.value.is_empty())
        .map(|m| (m.name, m.value));
    Ok((Labels::from_pairs(pairs), rest.trim()))
}

/// Expands a value sequence (`1 2 _ 3+2x4 stale _x3`).
fn parse_values(s: &str) -> Result<Vec<Slot>, String> {
    let mut out = Vec::new();
    for tok in hist_notation::tokens(s) {
        if tok.starts_with("{{") {
            match hist_notation::parse_token(tok)? {
                HistToken::Repeat(h, n) => {
                    out.extend(std::iter::repeat_n(Slot::Hist(Box::new(h)), n + 1))
                }
                HistToken::Series {
                    start,
                    step,
                    negative,
                    times,
                } => {
                    let mut cur = start;
                    for k in 0..=times {
                        if k > 0 {
                            cur = if negative {
                                hist_sub(&cur, &step)?
                            } else {
                                hist_add(&cur, &step)?
                            };
                        }
                        out.push(Slot::Hist(Box::new(cur.clone())));
                    }
                }
            }
        } else if tok == "_" {
            out.push(Slot::Gap);
        } else if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("bad token {tok}"))?;
            out.extend(std::iter::repeat_n(Slot::Gap, n));
        } else if tok == "stale" {
            out.push(Slot::Value(f64::from_bits(STALE_NAN_BITS)));
        } else if let Some(v) = parse_number(tok) {
            out.push(Slot::Value(v));
        } else if let Some(xi) = tok.rfind('x') {
            let times: usize = tok[xi + 1..]
                .parse()
                .map_err(|_| format!("bad token {tok}"))?;
            let head = &tok[..xi];
            // Split `a+b` / `a-b` at the sign that is not leading and not an exponent's.
            let hb = head.as_bytes();
            let split = (1..hb.len())
                .find(|&i| (hb[i] == b'+' || hb[i] == b'-') && !matches!(hb[i - 1], b'e' | b'E'));
            let (start, delta) = match split {
                Some(i) => {
                    let a = parse_number(&head[..i]).ok_or(format!("bad token {tok}"))?;
                    let d = parse_number(&head[i + 1..]).ok_or(format!("bad token {tok}"))?;
                    (a, if hb[i] == b'-' { -d } else { d })
                }
                None => (parse_number(head).ok_or(format!("bad token {tok}"))?, 0.0),
            };
            let mut k = start;
            for _ in 0..=times {
                out.push(Slot::Value(k));
                k += delta;
            }
        } else {
            return Err(format!("bad token {tok}"));
        }
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<SeriesDesc, String> {
    let (labels, rest) = parse_series_desc(line)?;
    let slots = parse_values(rest)?;
    Ok(SeriesDesc { labels, slots })
}

/// Floats equal within promqltest's tolerance (NaN equals NaN).
pub fn almost_equal(a: f64, b: f64) -> bool {
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    const EPS: f64 = 1e-6;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPS
}

/// One `eval` command with its expectations.
#[derive(Default)]
struct EvalCmd {
    line: usize,
    query: String,
    range: Option<(i64, i64, i64)>,
    at: i64,
    fail: bool,
    fail_msg: Option<String>,
    fail_re: Option<String>,
    ordered: bool,
    /// `Some(true)`: at least one warning expected; `Some(false)`: none.
    warn: Option<bool>,
    /// The same for info annotations.
    info: Option<bool>,
    /// Texts of `expect warn msg:` and `expect info msg:` lines, each of which some
    /// annotation of the answer must carry.
    warn_msgs: Vec<String>,
    info_msgs: Vec<String>,
    scalar: Option<f64>,
    string: Option<String>,
    series: Vec<(Labels, Vec<Slot>)>,
    skip: bool,
}

/// Whether annotation `got` reads `want`: exactly, or without the ` (line:column)` it ends
/// with, as Prometheus's own scripts write their messages.
fn annotation_is(got: &str, want: &str) -> bool {
    if got == want {
        return true;
    }
    got.strip_suffix(')')
        .and_then(|g| g.rsplit_once(" ("))
        .is_some_and(|(text, pos)| {
            text == want
                && pos
                    .split_once(':')
                    .is_some_and(|(l, c)| l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok())
        })
}

/// Runs one script's text; `name` prefixes failure messages.
pub fn run_script(name: &str, text: &str, engine: &Engine) -> ScriptReport {
    let mut rep = ScriptReport::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut store: Vec<Series> = Vec::new();
    let mut mem = MemSeries::default();
    // Series loaded with native-histogram samples; evals that select any of them are skipped.
    let mut native_series: Vec<Labels> = Vec::new();
    // Whether the data loaded since the last `clear` holds start timestamps (`name@st`
    // lines), which only Prometheus's experimental `use-start-timestamps` reads.
    let mut start_timestamps = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start_line = i + 1;
        // The command's body: following lines until a blank or comment line.
        let mut body = Vec::new();
        let mut j = i + 1;
        while j < lines.len() {
            let l = lines[j].trim();
            if l.is_empty() || l.starts_with('#') || is_command(l) {
                break;
            }
            body.push(l);
            j += 1;
        }
        i = j;
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        match cmd {
            "clear" => {
                store.clear();
                mem = MemSeries::default();
                native_series.clear();
                start_timestamps = false;
            }
            "load" | "load_with_nhcb" => {
                let nhcb = cmd == "load_with_nhcb";
                let step = words.next().and_then(parse_duration).unwrap_or(0);
                let mut loaded: BTreeMap<Labels, Series> = BTreeMap::new();
                let mut nhcb_parts: Vec<(Labels, Vec<Slot>)> = Vec::new();
                for l in &body {
                    let st_line = l
                        .split_whitespace()
                        .next()
                        .is_some_and(|s| s.ends_with("@st"));
                    start_timestamps |= st_line;
                    let d = match parse_line(l) {
                        Ok(d) => d,
                        Err(e) => {
                            let f = format!("{name}:{start_line}: load: {e}: {l}");
                            if st_line {
                                rep.experimental_failed.push(f.clone());
                            }
                            rep.failed.push(f);
                            continue;
                        }
                    };
                    if nhcb {
                        nhcb_parts.push((d.labels.clone(), d.slots.clone()));
                    }
                    match load_series(d.labels, &d.slots, step) {
                        Ok(s) => {
                            loaded.insert(s.labels.clone(), s);
                        }
                        Err(e) => rep
                            .failed
                            .push(format!("{name}:{start_line}: load: {e}: {l}")),
                    }
                }
                for (labels, slots) in nhcb_series(&nhcb_parts) {
                    match load_series(labels, &slots, step) {
                        Ok(s) => {
                            loaded.insert(s.labels.clone(), s);
                        }
                        Err(e) => rep.failed.push(format!("{name}:{start_line}: load: {e}")),
                    }
                }
                store.extend(loaded.into_values());
                mem = MemSeries::new(store.clone());
            }
            c if c.starts_with("eval") => {
                let cmd = match parse_eval(line, &body, start_line) {
                    Ok(c) => c,
                    Err(e) => {
                        rep.failed.push(format!("{name}:{start_line}: {e}"));
                        continue;
                    }
                };
                if cmd.skip || touches(&cmd.query, &native_series) {
                    rep.skipped += 1;
                    continue;
                }
                match check_eval(engine, &mem, &cmd) {
                    Ok(()) => rep.passed += 1,
                    Err(e) => {
                        let f = format!("{name}:{}: {}: {e}", cmd.line, cmd.query);
                        let feature = experimental_feature(&cmd.query)
                            .or(start_timestamps.then_some("use-start-timestamps"));
                        if let Some(feature) = feature {
                            rep.experimental_failed.push(format!("{f} [{feature}]"));
                        }
                        rep.failed.push(f);
                    }
                }
            }
            other => rep
                .failed
                .push(format!("{name}:{start_line}: unknown command {other}")),
        }
    }
    rep
}

/// The experimental feature of Prometheus 3.14 a query uses, by the name of its
/// `--enable-feature` flag: what Prometheus's parser refuses without the flag (experimental
/// functions and aggregations, `anchored`/`smoothed`, `fill()`); `None` for a query every
/// Prometheus 3.14 reads as it starts. Duration expressions are read by 3.14 without a flag.
pub fn experimental_feature(query: &str) -> Option<&'static str> {
    use crate::parser::{Options, parse};
    let all = Options::all_features();
    parse(query, &all).ok()?;
    let without = |o: Options| parse(query, &o).is_err();
    if without(Options {
        experimental_functions: false,
        ..all
    }) {
        Some("promql-experimental-functions")
    } else if without(Options {
        extended_range_selectors: false,
        ..all
    }) {
        Some("promql-extended-range-selectors")
    } else if without(Options {
        binop_fill_modifiers: false,
        ..all
    }) {
        Some("promql-binop-fill-modifiers")
    } else {
        None
    }
}

/// One loaded series: its float samples, and its histogram samples as Gauntlet's storage
/// hands them back (through histogram chunks, which set the counter reset hints a reader
/// sees). A stale marker in a series of histograms is a histogram stale marker, as
/// Prometheus's head stores it.
fn load_series(labels: Labels, slots: &[Slot], step: i64) -> Result<Series, String> {
    let mut samples = SampleBatch::default();
    let mut hist: Vec<(i64, FloatHistogram)> = Vec::new();
    let mut last_was_hist = false;
    for (k, s) in slots.iter().enumerate() {
        let t = k as i64 * step;
        match s {
            Slot::Gap => {}
            Slot::Hist(h) => {
                hist.push((t, (**h).clone()));
                last_was_hist = true;
            }
            Slot::Value(v) if last_was_hist && gauntlet_engine::chunk::is_stale_nan(*v) => {
                hist.push((t, FloatHistogram::stale_marker()));
            }
            Slot::Value(v) => {
                samples.ts.push(t);
                samples.val.push(*v);
                last_was_hist = false;
            }
        }
    }
    let mut histograms = HistogramBatch::default();
    if !hist.is_empty() {
        let chunks =
            cut_float_histogram_chunks(&hist, gauntlet_engine::block::cut::DEFAULT_CHUNK_RANGE_MS)
                .map_err(|e| format!("histogram samples: {e}"))?;
        for c in chunks {
            for (t, h) in decode_float_histogram_chunk(&c.data).map_err(|e| e.to_string())? {
                histograms.ts.push(t);
                histograms.h.push(h);
            }
        }
    }
    Ok(Series {
        labels,
        samples,
        histograms,
    })
}

/// The custom-bucket native histograms `load_with_nhcb` derives from classic histograms:
/// per base series and position, the `_bucket` series' cumulative counts become buckets with
/// the finite `le` bounds, the count comes from `_count` (else the `+Inf` bucket) and the sum
/// from `_sum`.
fn nhcb_series(parts: &[(Labels, Vec<Slot>)]) -> Vec<(Labels, Vec<Slot>)> {
    #[derive(Default)]
    struct Classic<'a> {
        buckets: Vec<(f64, &'a [Slot])>,
        sum: Option<&'a [Slot]>,
        count: Option<&'a [Slot]>,
    }
    let mut by_base: BTreeMap<Labels, Classic<'_>> = BTreeMap::new();
    for (labels, slots) in parts {
        let Some(base) = nhcb_labels(labels) else {
            continue;
        };
        let name = labels.get("__name__").unwrap_or("");
        let c = by_base.entry(base).or_default();
        if name.ends_with("_bucket") {
            let Some(le) = labels.get("le").and_then(|v| parse_number(v.trim())) else {
                continue;
            };
            c.buckets.push((le, slots));
        } else if name.ends_with("_sum") {
            c.sum = Some(slots);
        } else {
            c.count = Some(slots);
        }
    }
    let value = |s: Option<&[Slot]>, k: usize| match s.and_then(|s| s.get(k)) {
        Some(Slot::Value(v)) => Some(*v),
        _ => None,
    };
    let mut out = Vec::new();
    for (labels, mut c) in by_base {
        if c.buckets.is_empty() {
            continue;
        }
        c.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        // The same bound spelled twice (`0.2`, `.2`) is one bucket.
        c.buckets.dedup_by(|a, b| a.0 == b.0);
        let len = c.buckets.iter().map(|b| b.1.len()).max().unwrap_or(0);
        let bounds: Vec<f64> = c
            .buckets
            .iter()
            .map(|b| b.0)
            .filter(|b| b.is_finite())
            .collect();
        let mut slots = Vec::with_capacity(len);
        for k in 0..len {
            let cum: Option<Vec<f64>> = c.buckets.iter().map(|b| value(Some(b.1), k)).collect();
            let Some(cum) = cum else {
                slots.push(Slot::Gap);
                continue;
            };
            let mut counts = Vec::with_capacity(cum.len());
            let mut prev = 0.0;
            for &x in &cum {
                counts.push(x - prev);
                prev = x;
            }
            if c.buckets.last().is_some_and(|b| b.0.is_finite()) {
                counts.push(0.0);
            }
            let h = FloatHistogram {
                schema: gauntlet_engine::histogram::CUSTOM_BUCKETS_SCHEMA,
                count: value(c.count, k).unwrap_or(prev),
                sum: value(c.sum, k).unwrap_or(0.0),
                positive_spans: vec![gauntlet_engine::histogram::Span::new(
                    0,
                    counts.len() as u32,
                )],
                positive_buckets: counts,
                custom_values: bounds.clone().into(),
                ..FloatHistogram::default()
            };
            slots.push(Slot::Hist(Box::new(h)));
        }
        out.push((labels, slots));
    }
    out
}

/// The native histogram `load_with_nhcb` derives from a classic `_bucket`/`_sum`/`_count`
/// series: the base name, without `le`.
fn nhcb_labels(labels: &Labels) -> Option<Labels> {
    let name = labels.get("__name__")?;
    let base = ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))?;
    Some(Labels::from_pairs(
        labels.iter().filter(|l| l.name != "le").map(|l| {
            if l.name == "__name__" {
                (l.name.clone(), base.into())
            } else {
                (l.name.clone(), l.value.clone())
            }
        }),
    ))
}

/// Whether `query` selects any of `series` (or does not parse, when any exist).
fn touches(query: &str, series: &[Labels]) -> bool {
    if series.is_empty() {
        return false;
    }
    let Ok(expr) = crate::parse(query) else {
        return true;
    };
    let mut selectors = Vec::new();
    crate::parser::collect_selectors(&expr, &mut selectors);
    selectors.iter().any(|vs| {
        let Ok(ms) = crate::eval::selector_matchers(vs, None) else {
            return true;
        };
        series
            .iter()
            .any(|l| ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
    })
}

/// Whether a line starts a new command (a `clear` has no body, so one may follow at once).
fn is_command(l: &str) -> bool {
    let w = l.split_whitespace().next().unwrap_or("");
    matches!(w, "clear" | "load" | "load_with_nhcb") || w.starts_with("eval")
}

fn parse_eval(line: &str, body: &[&str], line_no: usize) -> Result<EvalCmd, String> {
    let mut c = EvalCmd {
        line: line_no,
        ..Default::default()
    };
    let (head, rest) = line.split_once(' ').ok_or("bad eval")?;
    match head {
        "eval" => {}
        "eval_fail" => c.fail = true,
        "eval_ordered" => c.ordered = true,
        "eval_warn" => c.warn = Some(true),
        "eval_info" => c.info = Some(true),
        other => return Err(format!("unknown eval form {other}")),
    }
    let rest = rest.trim();
    if let Some(r) = rest.strip_prefix("instant at ") {
        let (at, q) = r.trim().split_once(' ').ok_or("bad instant eval")?;
        c.at = parse_duration(at).ok_or("bad time")?;
        c.query = q.trim().to_string();
    } else if let Some(r) = rest.strip_prefix("range from ") {
        let re = Regex::new(r"^(\S+)\s+to\s+(\S+)\s+step\s+(\S+)\s+(.*)$").expect("static regex");
        let caps = re.captures(r.trim()).ok_or("bad range eval")?;
        let p = |k: usize| parse_duration(&caps[k]).ok_or("bad duration");
        c.range = Some((p(1)?, p(2)?, p(3)?));
        c.query = caps[4].to_string();
    } else {
        return Err(format!("bad eval: {line}"));
    }
    for l in body {
        if let Some(m) = l.strip_prefix("expected_fail_message ") {
            c.fail_msg = Some(m.trim().to_string());
        } else if let Some(m) = l.strip_prefix("expected_fail_regexp ") {
            c.fail_re = Some(m.trim().to_string());
        } else if let Some(e) = l.strip_prefix("expect ") {
            let e = e.trim();
            if e == "ordered" {
                c.ordered = true;
            } else if let Some(f) = e.strip_prefix("fail") {
                c.fail = true;
                let f = f.trim();
                if let Some(m) = f.strip_prefix("msg:") {
                    c.fail_msg = Some(m.trim().to_string());
                } else if let Some(m) = f.strip_prefix("regex:") {
                    c.fail_re = Some(m.trim().to_string());
                }
            } else if let Some(s) = e.strip_prefix("string ") {
                c.string = read_quoted(s.trim()).map(|x| x.0);
            } else if e.starts_with("range vector") {
                c.skip = true;
            } else if let Some(w) = e.strip_prefix("warn") {
                c.warn = Some(true);
                if let Some(m) = w.trim().strip_prefix("msg:") {
                    c.warn_msgs.push(m.trim().to_string());
                }
            } else if e.starts_with("no_warn") {
                c.warn = Some(false);
            } else if let Some(i) = e.strip_prefix("info") {
                c.info = Some(true);
                if let Some(m) = i.trim().strip_prefix("msg:") {
                    c.info_msgs.push(m.trim().to_string());
                }
            } else if e.starts_with("no_info") {
                c.info = Some(false);
            }
        } else if body.len() == 1 && !l.contains('{') && parse_number(l).is_some() {
            c.scalar = parse_number(l);
        } else {
            let d = parse_line(l).map_err(|e| format!("{e}: {l}"))?;
            c.series.push((d.labels, d.slots));
        }
    }
    Ok(c)
}

fn check_eval(engine: &Engine, mem: &MemSeries, c: &EvalCmd) -> Result<(), String> {
    let res = match c.range {
        Some((s, e, st)) => engine.range_query(mem, &c.query, s, e, st),
        None => engine.instant_query(mem, &c.query, c.at),
    };
    if c.fail {
        return match res {
            Ok(_) => Err("expected an error, got a result".into()),
            Err(e) => {
                let msg = e.to_string();
                if let Some(m) = &c.fail_msg
                    && msg != *m
                {
                    return Err(format!("error {msg:?}, expected {m:?}"));
                }
                if let Some(r) = &c.fail_re {
                    let re = Regex::new(r).map_err(|e| e.to_string())?;
                    if !re.is_match(&msg) {
                        return Err(format!("error {msg:?} does not match {r:?}"));
                    }
                }
                Ok(())
            }
        };
    }
    let res = res.map_err(|e| format!("error: {e}"))?;
    // Annotations are checked for presence, and their text where a `msg:` gives it.
    match c.warn {
        Some(true) if res.warnings.is_empty() => return Err("expected a warning, got none".into()),
        Some(false) if !res.warnings.is_empty() => {
            return Err(format!("expected no warning, got {:?}", res.warnings));
        }
        _ => {}
    }
    match c.info {
        Some(true) if res.info.is_empty() => {
            return Err("expected an info annotation, got none".into());
        }
        Some(false) if !res.info.is_empty() => {
            return Err(format!("expected no info annotation, got {:?}", res.info));
        }
        _ => {}
    }
    for (want, got) in [(&c.warn_msgs, &res.warnings), (&c.info_msgs, &res.info)] {
        if let Some(m) = want
            .iter()
            .find(|m| !got.iter().any(|g| annotation_is(g, m)))
        {
            return Err(format!("expected annotation {m:?}, got {got:?}"));
        }
    }
    if let Some(exp) = &c.string {
        return match &res.value {
            Value::String { v, .. } if v == exp => Ok(()),
            other => Err(format!("expected string {exp:?}, got {other:?}")),
        };
    }
    if let Some(exp) = c.scalar {
        return match res.value {
            Value::Scalar { v, .. } if almost_equal(v, exp) => Ok(()),
            other => Err(format!("expected scalar {exp}, got {other:?}")),
        };
    }
    match (c.range, res.value) {
        (None, Value::Vector(got)) => {
            if got.len() != c.series.len() {
                return Err(format!(
                    "expected {} series, got {}: {:?}",
                    c.series.len(),
                    got.len(),
                    got.iter()
                        .map(|s| format!("{} {}", s.labels, sample_text(s.v, s.h.as_deref())))
                        .collect::<Vec<_>>()
                ));
            }
            for (k, (labels, slots)) in c.series.iter().enumerate() {
                let want = match slots.first() {
                    Some(w @ (Slot::Value(_) | Slot::Hist(_))) => w,
                    _ => return Err(format!("expected line without value: {labels}")),
                };
                let pos = got
                    .iter()
                    .position(|s| s.labels == *labels)
                    .ok_or_else(|| format!("missing series {labels}"))?;
                if c.ordered && pos != k {
                    return Err(format!("{labels} at position {pos}, expected {k}"));
                }
                if !sample_matches(want, got[pos].v, got[pos].h.as_deref()) {
                    return Err(format!(
                        "{labels}: got {}, expected {want:?}",
                        sample_text(got[pos].v, got[pos].h.as_deref())
                    ));
                }
            }
            Ok(())
        }
        (None, Value::Matrix(got)) if c.series.is_empty() => {
            if got.is_empty() {
                Ok(())
            } else {
                Err(format!("expected nothing, got {} series", got.len()))
            }
        }
        (Some((start, _, step)), Value::Matrix(got)) => {
            let want: Vec<&(Labels, Vec<Slot>)> = c
                .series
                .iter()
                .filter(|(_, s)| s.iter().any(|x| !matches!(x, Slot::Gap)))
                .collect();
            if got.len() != want.len() {
                return Err(format!(
                    "expected {} series, got {}: {:?}",
                    want.len(),
                    got.len(),
                    got.iter().map(|s| s.labels.to_string()).collect::<Vec<_>>()
                ));
            }
            for (labels, slots) in want {
                let s = got
                    .iter()
                    .find(|s| s.labels == *labels)
                    .ok_or_else(|| format!("missing series {labels}"))?;
                // The series' points in time order, floats and histograms together.
                let mut have: Vec<(i64, f64, Option<&FloatHistogram>)> = s
                    .samples
                    .ts
                    .iter()
                    .zip(s.samples.val.iter())
                    .map(|(t, v)| (*t, *v, None))
                    .chain(
                        s.histograms
                            .ts
                            .iter()
                            .zip(s.histograms.h.iter())
                            .map(|(t, h)| (*t, f64::NAN, Some(h))),
                    )
                    .collect();
                have.sort_by_key(|x| x.0);
                let exp: Vec<(i64, &Slot)> = slots
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| !matches!(x, Slot::Gap))
                    .map(|(k, x)| (start + k as i64 * step, x))
                    .collect();
                if exp.len() != have.len()
                    || exp
                        .iter()
                        .zip(have.iter())
                        .any(|(a, b)| a.0 != b.0 || !sample_matches(a.1, b.1, b.2))
                {
                    let have: Vec<String> = have
                        .iter()
                        .map(|(t, v, h)| format!("{t}:{}", sample_text(*v, *h)))
                        .collect();
                    return Err(format!("{labels}: got {have:?}, expected {exp:?}"));
                }
            }
            Ok(())
        }
        (_, other) => Err(format!("unexpected result type: {other:?}")),
    }
}

/// A result sample as text for failure messages.
fn sample_text(v: f64, h: Option<&FloatHistogram>) -> String {
    match h {
        Some(h) => format!("{h:?}"),
        None => v.to_string(),
    }
}

/// Whether a result sample (a float, or a histogram when `h` is given) is the expected one.
fn sample_matches(want: &Slot, v: f64, h: Option<&FloatHistogram>) -> bool {
    match (want, h) {
        (Slot::Value(w), None) => {
            if gauntlet_engine::chunk::is_stale_nan(*w) || gauntlet_engine::chunk::is_stale_nan(v) {
                return w.to_bits() == v.to_bits();
            }
            almost_equal(v, *w)
        }
        (Slot::Hist(w), Some(h)) => histogram_matches(w, h),
        _ => false,
    }
}

/// Compares histograms as Prometheus's test framework does: the same schema, count, sum,
/// zero bucket and bucket counts within the float tolerance, buckets by their position (so
/// empty buckets and how spans are cut do not matter), and the counter reset hint only when
/// the expected histogram names one.
fn histogram_matches(want: &FloatHistogram, got: &FloatHistogram) -> bool {
    if want.counter_reset_hint != CounterResetHint::Unknown
        && want.counter_reset_hint != got.counter_reset_hint
    {
        return false;
    }
    want.schema == got.schema
        && almost_equal(want.count, got.count)
        && almost_equal(want.sum, got.sum)
        && almost_equal(want.zero_count, got.zero_count)
        && almost_equal(want.zero_threshold, got.zero_threshold)
        && buckets_match(
            &want.positive_spans,
            &want.positive_buckets,
            &got.positive_spans,
            &got.positive_buckets,
        )
        && buckets_match(
            &want.negative_spans,
            &want.negative_buckets,
            &got.negative_spans,
            &got.negative_buckets,
        )
        && (!want.uses_custom_buckets()
            || (want.custom_values.len() == got.custom_values.len()
                && want
                    .custom_values
                    .iter()
                    .zip(got.custom_values.iter())
                    .all(|(a, b)| almost_equal(*a, *b))))
}

/// Non-empty buckets by absolute index.
fn indexed_buckets(spans: &[gauntlet_engine::histogram::Span], counts: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::new();
    let mut idx = 0i32;
    let mut k = 0usize;
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 { s.offset } else { idx + s.offset };
        for _ in 0..s.length {
            if let Some(&c) = counts.get(k)
                && c != 0.0
            {
                out.push((idx, c));
            }
            idx += 1;
            k += 1;
        }
    }
    out
}

fn buckets_match(
    ws: &[gauntlet_engine::histogram::Span],
    wb: &[f64],
    gs: &[gauntlet_engine::histogram::Span],
    gb: &[f64],
) -> bool {
    let (w, g) = (indexed_buckets(ws, wb), indexed_buckets(gs, gb));
    w.len() == g.len()
        && w.iter()
            .zip(g.iter())
            .all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1))
}

fn hist_add(a: &FloatHistogram, b: &FloatHistogram) -> Result<FloatHistogram, String> {
    super::hist_math::add(a, b, crate::Compat::Prometheus3_5)
        .map(|(h, _)| h)
        .map_err(|e| format!("{e:?}"))
}

fn hist_sub(a: &FloatHistogram, b: &FloatHistogram) -> Result<FloatHistogram, String> {
    super::hist_math::sub(a, b, crate::Compat::Prometheus3_5)
        .map(|(h, _)| h)
        .map_err(|e| format!("{e:?}"))
}

/// A series written in the test language's notation (`name{l="v"}` and `1+2x3 _ stale`),
/// with its samples `step_ms` apart from 0: what rule unit tests load as input.
pub(crate) fn notation_series(series: &str, values: &str, step_ms: i64) -> Result<Series, String> {
    let d = parse_line(&format!("{series} {values}"))?;
    load_series(d.labels, &d.slots, step_ms)
}

/// Labels written as the test language writes a series (`name{l="v"}`).
pub(crate) fn notation_labels(series: &str) -> Result<Labels, String> {
    Ok(parse_series_desc(series)?.0)
}

/// Whether `got` is the histogram written as `want` in the test language's notation
/// (`{{schema:1 sum:2 …}}`), compared as the test language compares them.
pub(crate) fn histogram_is(want: &str, got: &FloatHistogram) -> Result<bool, String> {
    let d = parse_line(&format!("{{}} {want}"))?;
    match d.slots.as_slice() {
        [Slot::Hist(w)] => Ok(histogram_matches(w, got)),
        _ => Err(format!("expected one histogram, got {want:?}")),
    }
}
