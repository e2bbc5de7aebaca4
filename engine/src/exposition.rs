//! Parses the text exposition formats (OpenMetrics and Prometheus text) with explicit
//! timestamps into per-series sample columns, the input `promtool tsdb create-blocks-from
//! openmetrics` takes.

use std::collections::HashMap;

use crate::block::writer::SeriesSamples;
use crate::labels::{Label, Labels, METRIC_NAME};

/// A line of the input could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct ExpositionError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub msg: String,
}

/// Parses `text` into series, each with samples sorted by timestamp (ms). OpenMetrics
/// timestamps are seconds and are rounded to ms. Every sample must carry a timestamp.
pub fn parse_exposition(text: &str) -> Result<Vec<SeriesSamples>, ExpositionError> {
    // Keyed by the series text as written, so repeated lines of a series cost one lookup and no
    // label parsing; the same series written with its labels in another order still merges
    // through the parsed label set.
    let mut by_text: HashMap<&str, usize> = HashMap::new();
    let mut by_series: HashMap<Labels, usize> = HashMap::new();
    let mut out: Vec<SeriesSamples> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            if line.trim() == "# EOF" {
                break;
            }
            continue;
        }
        let err = |msg: &str| ExpositionError {
            line: i + 1,
            msg: msg.to_string(),
        };
        let key_end = series_text_end(line);
        let (idx, rest) = match by_text.get(&line[..key_end]) {
            Some(&idx) => (idx, &line[key_end..]),
            None => {
                let (labels, rest) = parse_series(line).map_err(|m| err(&m))?;
                let idx = *by_series.entry(labels.clone()).or_insert_with(|| {
                    out.push(SeriesSamples {
                        labels,
                        ts: Vec::new(),
                        val: Vec::new(),
                    });
                    out.len() - 1
                });
                by_text.insert(&line[..key_end], idx);
                (idx, rest)
            }
        };
        let rest = rest.split(" # ").next().unwrap_or(rest).trim();
        let mut fields = rest.split_ascii_whitespace();
        let v = fields.next().ok_or_else(|| err("missing value"))?;
        let v = parse_value(v).ok_or_else(|| err("invalid value"))?;
        let t = fields.next().ok_or_else(|| err("missing timestamp"))?;
        let t: f64 = t.parse().map_err(|_| err("invalid timestamp"))?;
        if !t.is_finite() {
            return Err(err("invalid timestamp"));
        }
        if fields.next().is_some() {
            return Err(err("unexpected text after timestamp"));
        }
        let ts = (t * 1000.0).round() as i64;
        out[idx].ts.push(ts);
        out[idx].val.push(v);
    }
    for s in &mut out {
        if s.ts.windows(2).any(|w| w[0] > w[1]) {
            let mut pairs: Vec<(i64, f64)> =
                s.ts.iter().copied().zip(s.val.iter().copied()).collect();
            pairs.sort_by_key(|p| p.0);
            s.ts = pairs.iter().map(|p| p.0).collect();
            s.val = pairs.iter().map(|p| p.1).collect();
        }
    }
    Ok(out)
}

/// Byte length of the series part of a sample line: up to the first space outside quotes and
/// braces.
fn series_text_end(line: &str) -> usize {
    let b = line.as_bytes();
    let (mut in_quote, mut escaped, mut in_braces) = (false, false, false);
    for (i, &c) in b.iter().enumerate() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_quote = false;
            }
        } else if c == b'"' {
            in_quote = true;
        } else if c == b'{' {
            in_braces = true;
        } else if c == b'}' {
            in_braces = false;
        } else if c == b' ' && !in_braces {
            return i;
        }
    }
    b.len()
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

/// Parses `name{a="b",...}` (or `{"name", a="b"}`) and returns the labels and the rest.
fn parse_series(line: &str) -> Result<(Labels, &str), String> {
    let b = line.as_bytes();
    let mut pos = 0;
    while pos < b.len() && (b[pos].is_ascii_alphanumeric() || b[pos] == b'_' || b[pos] == b':') {
        pos += 1;
    }
    let mut labels = Vec::new();
    if pos > 0 {
        labels.push(Label::new(METRIC_NAME, &line[..pos]));
    }
    if pos < b.len() && b[pos] == b'{' {
        pos += 1;
        loop {
            while pos < b.len() && b[pos] == b' ' {
                pos += 1;
            }
            if pos >= b.len() {
                return Err("unterminated label set".into());
            }
            if b[pos] == b'}' {
                pos += 1;
                break;
            }
            let name = if b[pos] == b'"' {
                let (s, n) = unquote(&line[pos..])?;
                pos += n;
                s
            } else {
                let start = pos;
                while pos < b.len() && (b[pos].is_ascii_alphanumeric() || b[pos] == b'_') {
                    pos += 1;
                }
                line[start..pos].to_string()
            };
            while pos < b.len() && b[pos] == b' ' {
                pos += 1;
            }
            if pos < b.len() && b[pos] == b'=' {
                pos += 1;
                while pos < b.len() && b[pos] == b' ' {
                    pos += 1;
                }
                let (value, n) = unquote(&line[pos..])?;
                pos += n;
                if name.is_empty() {
                    return Err("empty label name".into());
                }
                labels.push(Label::new(name, value));
            } else if labels.is_empty() && !name.is_empty() {
                // A quoted metric name inside the braces.
                labels.push(Label::new(METRIC_NAME, name));
            } else {
                return Err("expected '='".into());
            }
            while pos < b.len() && b[pos] == b' ' {
                pos += 1;
            }
            if pos < b.len() && b[pos] == b',' {
                pos += 1;
            }
        }
    }
    if labels.is_empty() {
        return Err("missing metric name".into());
    }
    let n = labels.len();
    let set = Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)));
    if set.len() != n {
        return Err("duplicate label name".into());
    }
    if pos >= b.len() || b[pos] != b' ' {
        return Err("expected a space before the value".into());
    }
    Ok((set, &line[pos..]))
}

/// Reads a double-quoted string with `\\`, `\"` and `\n` escapes; returns it and bytes consumed.
fn unquote(s: &str) -> Result<(String, usize), String> {
    let mut chars = s.char_indices();
    if chars.next().map(|c| c.1) != Some('"') {
        return Err("expected '\"'".into());
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => match chars.next().map(|c| c.1) {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openmetrics_samples() {
        let text = "# HELP x y\n# TYPE up gauge\nup{job=\"a\", instance=\"h:1\"} 1 100\nup{job=\"a\", instance=\"h:1\"} 3 200\nup{instance=\"h:1\",job=\"a\"} NaN 99.5\nother 2.5e3 101\n{\"my.metric\",l=\"q\\\"\\n\"} +Inf 1\n# EOF\nignored 1 1\n";
        let s = parse_exposition(text).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0].labels.to_string(),
            r#"{__name__="up", instance="h:1", job="a"}"#
        );
        assert_eq!(s[0].ts, vec![99500, 100000, 200000]);
        assert_eq!(s[0].val[2], 3.0);
        assert!(s[0].val[0].is_nan());
        assert_eq!(s[1].val, vec![2500.0]);
        assert_eq!(s[2].labels.get("l"), Some("q\"\n"));
        assert_eq!(s[2].labels.get("__name__"), Some("my.metric"));
    }

    #[test]
    fn braces_and_spaces_inside_values_do_not_split_the_series() {
        let text = "q{a=\"x} y\", b=\"{ }\"} 5 7\nq{a=\"x} y\", b=\"{ }\"} 6 8\n";
        let s = parse_exposition(text).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels.get("a"), Some("x} y"));
        assert_eq!(s[0].labels.get("b"), Some("{ }"));
        assert_eq!(s[0].val, vec![5.0, 6.0]);
    }

    #[test]
    fn rejects_bad_lines_with_line_numbers() {
        for (text, line) in [
            ("up 1\n", 1),
            ("a 1 1\nup{x=\"1} 1 1\n", 2),
            ("up{a=\"1\",a=\"2\"} 1 1", 1),
            ("up abc 1", 1),
        ] {
            assert_eq!(parse_exposition(text).unwrap_err().line, line, "{text:?}");
        }
    }
}
