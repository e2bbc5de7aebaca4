//! The native histogram notation of promqltest scripts:
//! `{{schema:0 sum:5 count:4 z_bucket:1 z_bucket_w:0.001 buckets:[1 2 1] offset:1
//! n_buckets:[…] n_offset:… counter_reset_hint:gauge custom_values:[…]}}`, and the
//! series-value forms built from it (`{{…}}xN`, `{{…}}+{{…}}xN`, `{{…}}-{{…}}xN`).

use gauntlet_engine::histogram::{CounterResetHint, FloatHistogram, Span};

/// Parses the inside of `{{…}}` (without the braces).
pub(crate) fn parse_histogram(body: &str) -> Result<FloatHistogram, String> {
    let mut h = FloatHistogram::default();
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut rest = body.trim();
    while !rest.is_empty() {
        let (key, r) = rest
            .split_once(':')
            .ok_or_else(|| format!("bad histogram field in {body:?}"))?;
        let key = key.trim();
        let r = r.trim_start();
        let (value, r) = if let Some(r) = r.strip_prefix('[') {
            let (v, r) = r
                .split_once(']')
                .ok_or_else(|| format!("unclosed [ in {body:?}"))?;
            (v, r)
        } else {
            r.split_once(char::is_whitespace).unwrap_or((r, ""))
        };
        rest = r.trim_start();
        let num = |s: &str| -> Result<f64, String> {
            super::promqltest::parse_number(s.trim())
                .ok_or_else(|| format!("bad number {s:?} for {key}"))
        };
        let list =
            |s: &str| -> Result<Vec<f64>, String> { s.split_whitespace().map(num).collect() };
        let int = |s: &str| -> Result<i32, String> {
            s.trim()
                .parse::<i32>()
                .map_err(|_| format!("bad integer {s:?} for {key}"))
        };
        match key {
            "schema" => h.schema = int(value)?,
            "sum" => h.sum = num(value)?,
            "count" => h.count = num(value)?,
            "z_bucket" => h.zero_count = num(value)?,
            "z_bucket_w" => h.zero_threshold = num(value)?,
            "buckets" => h.positive_buckets = list(value)?,
            "n_buckets" => h.negative_buckets = list(value)?,
            "offset" => offset = int(value)?,
            "n_offset" => n_offset = int(value)?,
            "custom_values" => h.custom_values = list(value)?.into(),
            "counter_reset_hint" => {
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(format!("bad counter_reset_hint {other:?}")),
                }
            }
            other => return Err(format!("unknown histogram field {other:?}")),
        }
    }
    if !h.positive_buckets.is_empty() {
        h.positive_spans = vec![Span::new(offset, h.positive_buckets.len() as u32)];
    }
    if !h.negative_buckets.is_empty() {
        h.negative_spans = vec![Span::new(n_offset, h.negative_buckets.len() as u32)];
    }
    Ok(h)
}

/// One value token of a series description that involves histograms.
pub(crate) enum HistToken {
    /// `{{…}}`, repeated `times + 1` times (`xN`), or once.
    Repeat(FloatHistogram, usize),
    /// `{{a}}+{{b}}xN` (or `-`): `a`, `a±b`, … (N+1 histograms).
    Series {
        start: FloatHistogram,
        step: FloatHistogram,
        negative: bool,
        times: usize,
    },
}

/// Splits a value sequence into tokens, keeping `{{…}}` forms whole.
pub(crate) fn tokens(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let mut depth = 0usize;
        while i < b.len() {
            if b[i..].starts_with(b"{{") {
                depth += 1;
                i += 2;
                continue;
            }
            if b[i..].starts_with(b"}}") && depth > 0 {
                depth -= 1;
                i += 2;
                continue;
            }
            if depth == 0 && b[i].is_ascii_whitespace() {
                break;
            }
            i += 1;
        }
        out.push(&s[start..i]);
    }
    out
}

/// Parses a token that starts with `{{`.
pub(crate) fn parse_token(tok: &str) -> Result<HistToken, String> {
    let first_end = tok.find("}}").ok_or("unclosed {{")?;
    let start = parse_histogram(&tok[2..first_end])?;
    let rest = &tok[first_end + 2..];
    if rest.is_empty() {
        return Ok(HistToken::Repeat(start, 0));
    }
    let times = |s: &str| -> Result<usize, String> {
        s.strip_prefix('x')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("bad histogram repetition {tok:?}"))
    };
    let (negative, r) = match rest.as_bytes()[0] {
        b'+' => (false, &rest[1..]),
        b'-' => (true, &rest[1..]),
        _ => return Ok(HistToken::Repeat(start, times(rest)?)),
    };
    let r = r.strip_prefix("{{").ok_or("expected {{ after + or -")?;
    let end = r.find("}}").ok_or("unclosed {{")?;
    let step = parse_histogram(&r[..end])?;
    Ok(HistToken::Series {
        start,
        step,
        negative,
        times: times(&r[end + 2..])?,
    })
}
