//! Duration expressions (Prometheus 3's `promql-duration-expr`): arithmetic in range
//! selectors, subquery ranges and steps, and offsets, such as `rate(x[5m * 2])`,
//! `x[1h:30s + 30s]`, `x offset (1h + 5m)` or `x offset min_of(step(), 1m)`, where `step()`
//! is the query's step and `range()` its end minus its start.
//!
//! The parser reads only literal durations, so before parsing each such expression is
//! evaluated (in seconds, as Prometheus does) and written back as a literal in milliseconds.
//! Queries without duration expressions pass through unchanged.

use std::borrow::Cow;

use super::positions::skip_group;

/// What `step()` and `range()` stand for in one query, ms (both 0 for an instant query).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct QueryTimes {
    pub step_ms: i64,
    pub range_ms: i64,
}

/// `query` with every duration expression replaced by its value as a `<n>ms` literal; an
/// expression that does not evaluate is left as written, so the parser reports it.
pub(crate) fn rewrite(query: &str, times: QueryTimes) -> Cow<'_, str> {
    scan(query, times).0
}

/// Where Prometheus's parser stops in an offset whose parenthesized duration an operator
/// continues with an operand that is no number or duration (`x offset (1m) * y`): the
/// operand's byte offset. (Such arithmetic is part of the offset there; see
/// [`offset_expression`].)
pub(crate) fn offset_operand_error(query: &str) -> Option<usize> {
    scan(query, QueryTimes::default()).1
}

/// [`rewrite`], and the first operand an offset refuses ([`offset_operand_error`]).
fn scan(query: &str, times: QueryTimes) -> (Cow<'_, str>, Option<usize>) {
    let b = query.as_bytes();
    let mut refused = None;
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    let mut braces = 0usize;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, q),
            b'{' => {
                braces += 1;
                i += 1;
            }
            b'}' => {
                braces = braces.saturating_sub(1);
                i += 1;
            }
            b'[' if braces == 0 => {
                let Some(close) = query[i + 1..].find(']').map(|p| i + 1 + p) else {
                    break;
                };
                let inner = &query[i + 1..close];
                if let Some(new) = rewrite_brackets(inner, times) {
                    out.push_str(&query[copied..=i]);
                    out.push_str(&new);
                    copied = close;
                }
                i = close + 1;
            }
            c if braces == 0 && c.is_ascii_alphabetic() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word_starts_token = start == 0 || !is_ident_byte(b[start - 1]);
                if word_starts_token
                    && query[start..i].eq_ignore_ascii_case("offset")
                    && let Some(Offset {
                        end,
                        ms,
                        refused_operand,
                    }) = offset_expression(query, i, times)
                {
                    refused = refused.or(refused_operand);
                    if ms == 0 {
                        // The parser refuses a zero duration; no offset is the same thing.
                        out.push_str(&query[copied..start]);
                    } else {
                        out.push_str(&query[copied..i]);
                        out.push_str(&format!(" {ms}ms"));
                    }
                    copied = end;
                    i = end;
                }
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return (Cow::Borrowed(query), refused);
    }
    out.push_str(&query[copied..]);
    (Cow::Owned(out), refused)
}

/// Whether `tok` is a duration literal worth nothing (`0`, `0s`, `0m0s`, `0.0`).
pub(crate) fn is_zero_duration_literal(tok: &[u8]) -> bool {
    tok.first().is_some_and(u8::is_ascii_digit)
        && tok
            .iter()
            .all(|&c| matches!(c, b'0' | b'.') || c.is_ascii_alphabetic())
        && !tok.iter().any(|c| matches!(c, b'x' | b'X' | b'e' | b'E'))
}

pub(crate) fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Index just past the string literal opened by `quote` at `start`.
pub(crate) fn skip_string(b: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The bracket body `range` or `range:step` with expressions evaluated, or `None` when
/// nothing in it needs rewriting.
fn rewrite_brackets(inner: &str, times: QueryTimes) -> Option<String> {
    let parts: Vec<&str> = split_top_level_colon(inner);
    if parts.len() > 2 {
        return None;
    }
    let mut changed = false;
    let mut new_parts = Vec::with_capacity(parts.len());
    for p in &parts {
        let t = p.trim();
        if t.is_empty() || is_plain_literal(t) {
            new_parts.push((*p).to_string());
            continue;
        }
        let secs = eval(t, times)?;
        new_parts.push(ms_literal(secs)?);
        changed = true;
    }
    changed.then(|| new_parts.join(":"))
}

/// Splits at colons outside parentheses.
fn split_top_level_colon(s: &str) -> Vec<&str> {
    let mut depth = 0i32;
    let mut parts = Vec::new();
    let mut last = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(&s[last..i]);
                last = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[last..]);
    parts
}

/// A number or a duration literal the parser reads by itself.
fn is_plain_literal(s: &str) -> bool {
    let mut p = Parser::new(s, QueryTimes::default());
    p.literal().is_some() && p.at_end()
}

/// An offset expression read by [`offset_expression`].
struct Offset {
    /// Index past it.
    end: usize,
    /// Its value.
    ms: i64,
    /// An operand that arithmetic after it brings in and Prometheus refuses (not a number or
    /// duration), where it starts.
    refused_operand: Option<usize>,
}

/// After `offset` at `after`: an optionally signed parenthesized expression or duration
/// function (`(1h + 5m)`, `-(2 * 2)`, `step()`, `-min_of(step(), 1s)`), as (index past it,
/// value in ms), with any arithmetic on literals or parenthesized operands that follows it.
/// A literal offset is left to the parser, and operators after it apply to the selector's
/// result.
fn offset_expression(query: &str, after: usize, times: QueryTimes) -> Option<Offset> {
    let b = query.as_bytes();
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(after);
    let start = i;
    let sign = match b.get(i) {
        Some(b'-') => -1.0,
        Some(b'+') => 1.0,
        _ => 0.0,
    };
    if sign != 0.0 {
        i = skip_ws(i + 1);
    }
    let paren_operand = b.get(i) == Some(&b'(');
    // A zero duration (`offset 0s`), which the parser refuses and Prometheus takes as no
    // offset.
    let literal_end = i + b[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.')
        .count();
    if is_zero_duration_literal(&b[i..literal_end]) {
        return Some(Offset {
            end: literal_end,
            ms: 0,
            refused_operand: None,
        });
    }
    if !paren_operand {
        let name_end = i + b[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count();
        let name = query[i..name_end].to_ascii_lowercase();
        if !DURATION_FUNCTIONS.contains(&name.as_str()) {
            return None;
        }
        i = skip_ws(name_end);
        if b.get(i) != Some(&b'(') {
            return None;
        }
    }
    let mut end = skip_group(b, i, b'(', b')')?;
    // In Prometheus 3.5 arithmetic after a parenthesized operand goes on with the duration
    // expression, while its operands are literals or parenthesized (`offset (1m + 30s) / 2`
    // is 45s). The duration functions came later, with operators after them applying to the
    // selector's result, so an operand that calls one ends the offset as before.
    let lower = query[i..end].to_ascii_lowercase();
    let continues = paren_operand && !DURATION_FUNCTIONS.iter().any(|f| lower.contains(f));
    let mut refused_operand = None;
    loop {
        let op = skip_ws(end);
        if !continues || !matches!(b.get(op), Some(b'+' | b'-' | b'*' | b'/' | b'%' | b'^')) {
            break;
        }
        let k = skip_ws(op + 1);
        let next = match b.get(k) {
            Some(b'(') => skip_group(b, k, b'(', b')'),
            Some(c) if c.is_ascii_digit() || *c == b'.' => Some(
                k + b[k..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'.')
                    .count(),
            ),
            _ => None,
        };
        match next {
            Some(n) => end = n,
            None => {
                if b.get(k)
                    .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c == b'{')
                {
                    refused_operand = Some(k);
                }
                break;
            }
        }
    }
    // The sign belongs to the first operand only: `-(1m) + 60` is 0.
    let secs = eval(&query[start..end], times)?;
    let ms = to_ms(secs)?;
    Some(Offset {
        end,
        ms,
        refused_operand,
    })
}

/// Functions a duration expression may call.
const DURATION_FUNCTIONS: [&str; 4] = ["step", "range", "min_of", "max_of"];

fn to_ms(secs: f64) -> Option<i64> {
    let ms = (secs * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
}

fn ms_literal(secs: f64) -> Option<String> {
    let ms = to_ms(secs)?;
    // A negative range is left for the parser to refuse as Prometheus does.
    (ms >= 0).then(|| format!("{ms}ms"))
}

/// Evaluates a duration expression to seconds: numbers are seconds, duration literals are
/// converted; `+ - * / % ^`, unary signs and parentheses with PromQL's precedence (`^` is
/// right-associative and binds tighter than a unary minus).
fn eval(s: &str, times: QueryTimes) -> Option<f64> {
    let mut p = Parser::new(s, times);
    let v = p.sum()?;
    p.at_end().then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    times: QueryTimes,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str, times: QueryTimes) -> Self {
        Parser {
            s: s.as_bytes(),
            i: 0,
            times,
        }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.s.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn sum(&mut self) -> Option<f64> {
        let mut v = self.product()?;
        loop {
            if self.eat(b'+') {
                v += self.product()?;
            } else if self.eat(b'-') {
                v -= self.product()?;
            } else {
                return Some(v);
            }
        }
    }

    fn product(&mut self) -> Option<f64> {
        let mut v = self.unary()?;
        loop {
            if self.eat(b'*') {
                v *= self.unary()?;
            } else if self.eat(b'/') {
                v /= self.unary()?;
            } else if self.eat(b'%') {
                v %= self.unary()?;
            } else {
                return Some(v);
            }
        }
    }

    fn unary(&mut self) -> Option<f64> {
        if self.eat(b'-') {
            return Some(-self.unary()?);
        }
        if self.eat(b'+') {
            return self.unary();
        }
        self.power()
    }

    fn power(&mut self) -> Option<f64> {
        let base = self.atom()?;
        if self.eat(b'^') {
            // Right-associative; the exponent may carry its own sign.
            let exp = self.unary()?;
            return Some(base.powf(exp));
        }
        Some(base)
    }

    fn atom(&mut self) -> Option<f64> {
        if self.eat(b'(') {
            let v = self.sum()?;
            return self.eat(b')').then_some(v);
        }
        if self.s.get(self.i).is_some_and(|c| c.is_ascii_alphabetic()) {
            return self.call();
        }
        self.literal()
    }

    /// `step()`, `range()`, `min_of(a, b)` or `max_of(a, b)`, names in any case.
    fn call(&mut self) -> Option<f64> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        let name = std::str::from_utf8(&self.s[start..self.i])
            .ok()?
            .to_ascii_lowercase();
        if !self.eat(b'(') {
            return None;
        }
        let v = match name.as_str() {
            "step" => self.times.step_ms as f64 / 1000.0,
            "range" => self.times.range_ms as f64 / 1000.0,
            "min_of" | "max_of" => {
                let a = self.sum()?;
                if !self.eat(b',') {
                    return None;
                }
                let b = self.sum()?;
                if name == "min_of" { a.min(b) } else { a.max(b) }
            }
            _ => return None,
        };
        self.eat(b')').then_some(v)
    }

    /// A duration literal (`1h30m`, `8000ms`) or a decimal number, in seconds.
    fn literal(&mut self) -> Option<f64> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len() && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.') {
            self.i += 1;
        }
        if self.i == start {
            return None;
        }
        let num = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if self.s.get(self.i).is_some_and(|c| c.is_ascii_alphabetic()) {
            // A duration literal: digit and unit runs.
            while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
                self.i += 1;
            }
            let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
            return super::parse_duration_ms(text).map(|ms| ms as f64 / 1000.0);
        }
        num.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(q: &str) -> Cow<'_, str> {
        super::rewrite(q, QueryTimes::default())
    }

    #[test]
    fn expressions_in_ranges_steps_and_offsets_become_literals() {
        assert_eq!(rewrite("rate(x[5m])"), "rate(x[5m])");
        assert_eq!(rewrite("x[26m+4m]"), "x[1800000ms]");
        assert_eq!(rewrite("x[2m*(10+5)]"), "x[1800000ms]");
        assert_eq!(rewrite("x[24m+((1.5*2m)+2m)]"), "x[1740000ms]");
        assert_eq!(rewrite("x[-5m+35m]"), "x[1800000ms]");
        assert_eq!(rewrite("x[1h30m % 1h]"), "x[1800000ms]");
        assert_eq!(rewrite("x[30m1s-30m1s % 1m]"), "x[1800000ms]");
        assert_eq!(rewrite("x[29s+1s:5s+5s]"), "x[30000ms:10000ms]");
        assert_eq!(rewrite("x[5m:]"), "x[5m:]");
        assert_eq!(rewrite("x offset (100 + 2)"), "x offset 102000ms");
        assert_eq!(rewrite("x offset -(2 * 2)"), "x offset -4000ms");
        // Arithmetic after the parenthesized operand is part of the offset.
        assert_eq!(rewrite("x offset (1m + 30s) / 2"), "x offset 45000ms");
        assert_eq!(rewrite("x offset (1m) * (2) + 60"), "x offset 180000ms");
        assert_eq!(rewrite("x offset -(1m) + 60 > 1"), "x  > 1");
        assert_eq!(rewrite("x offset 1m / 2"), "x offset 1m / 2");
        // ... and an operand that is not a duration is where Prometheus's parser stops.
        assert_eq!(offset_operand_error("x offset (1m) * y"), Some(16));
        assert_eq!(offset_operand_error("x offset -(1m) - {a=\"b\"}"), Some(17));
        for fine in [
            "x offset (1m) * 2",
            "x offset 1m * y",
            "rate(x[5m] offset (1m)) * y",
            "x offset (step()) * y",
            "x{a=\"offset (1m) * y\"}",
        ] {
            assert_eq!(offset_operand_error(fine), None, "{fine}");
        }
        assert_eq!(rewrite("x offset (-2 ^ 2)"), "x offset -4000ms");
        assert_eq!(rewrite("x offset 100 + 2"), "x offset 100 + 2");
        assert_eq!(rewrite("x OFFSET (1h)"), "x OFFSET 3600000ms");
    }

    #[test]
    fn step_range_min_of_and_max_of_take_the_query_times() {
        let t = QueryTimes {
            step_ms: 5_000,
            range_ms: 10_000,
        };
        let r = |q| super::rewrite(q, t).into_owned();
        assert_eq!(r("x[step()+1ms]"), "x[5001ms]");
        assert_eq!(r("x[1+(STep()-5)*2]"), "x[1000ms]");
        assert_eq!(r("x[max_of(min_of(step()+1,1h),1ms)]"), "x[6000ms]");
        assert_eq!(r("x[range()]"), "x[10000ms]");
        assert_eq!(r("x offset step()*0"), "x offset 5000ms*0");
        assert_eq!(r("x offset -step()*2"), "x offset -5000ms*2");
        assert_eq!(r("x offset (-step()*2)"), "x offset -10000ms");
        assert_eq!(r("x offset -min_of(step(), 1s)^0"), "x offset -1000ms^0");
        assert_eq!(r("x offset min_of(range(), 8s)"), "x offset 8000ms");
        assert_eq!(rewrite("x offset range()"), "x ");
    }

    #[test]
    fn strings_matchers_and_other_words_are_left_alone() {
        let q = r#"label_replace(x{a="[1+1]"}, "offset (1)", "$1", "b", "(.*)")"#;
        assert_eq!(rewrite(q), q);
        assert_eq!(rewrite("my_offset (1)"), "my_offset (1)");
        assert_eq!(rewrite("x[5m+]"), "x[5m+]");
        assert_eq!(rewrite("x[1m-5m]"), "x[1m-5m]");
    }
}
