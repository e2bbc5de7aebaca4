//! Where a query's function arguments, aggregation parameters and binary expressions start in
//! its text.
//!
//! Prometheus ends each annotation with the position of the expression it is about
//! (`… "edge_gauge" (1:6)`: line 1, byte column 6, of the query as sent). The parsed tree keeps
//! no positions, so the text is scanned once more: every function call and aggregation, in the
//! order their names appear, with the start of each of its top-level arguments. The tree's
//! calls and aggregations, visited parent first and children in source order, come in the same
//! order; each argument node is then looked up by address. When the scan and the tree disagree
//! in shape (the scan is not a full parser), no position is given rather than a wrong one.

use std::collections::HashMap;

use promql_parser::parser::Expr;

use super::duration_expr::{is_ident_byte, skip_string};

/// Start offsets of argument expressions, by the address of their node in one parsed tree.
#[derive(Debug, Default)]
pub struct Positions {
    /// `(line, column)` of each argument, 1-based, column in bytes as Prometheus counts it.
    at: HashMap<usize, (usize, usize)>,
}

impl Positions {
    /// The argument positions of `expr`, parsed from `query`.
    pub fn find(query: &str, expr: &Expr) -> Positions {
        let Some(scanned) = scan(query.as_bytes()) else {
            return Positions::default();
        };
        let mut nodes: Vec<Vec<Arg>> = Vec::new();
        calls_in_order(expr, &mut nodes);
        if nodes.len() != scanned.len()
            || nodes
                .iter()
                .zip(&scanned)
                .any(|(a, b)| a.len() != b.args.len())
        {
            return Positions::default();
        }
        let lines = LineIndex::new(query);
        let mut at: HashMap<usize, (usize, usize)> = nodes
            .iter()
            .flatten()
            .zip(scanned.iter().flat_map(|c| &c.args))
            .map(|(&(e, keep), &off)| {
                let off = if keep {
                    off
                } else {
                    inside_parens(query, e, off)
                };
                (address(e), lines.line_col(off))
            })
            .collect();
        // The whole query starts at its first token; a binary expression starts where its
        // left operand does.
        at.entry(address(expr))
            .or_insert_with(|| lines.line_col(skip_blank(query.as_bytes(), 0)));
        binary_starts(expr, &mut at);
        Positions { at }
    }

    /// ` (line:column)` of argument `e`, as Prometheus appends it to an annotation, or nothing
    /// when its position is not known.
    pub fn suffix(&self, e: &Expr) -> String {
        self.at
            .get(&address(e))
            .map(|(l, c)| format!(" ({l}:{c})"))
            .unwrap_or_default()
    }
}

/// Gives the left operand of every binary expression whose start is known that same start,
/// parent first, so chains of operators share it.
fn binary_starts(e: &Expr, at: &mut HashMap<usize, (usize, usize)>) {
    match e {
        Expr::Binary(b) => {
            if let Some(&p) = at.get(&address(e)) {
                at.entry(address(&b.lhs)).or_insert(p);
            }
            binary_starts(&b.lhs, at);
            binary_starts(&b.rhs, at);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                binary_starts(p, at);
            }
            binary_starts(&a.expr, at);
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| binary_starts(a, at)),
        Expr::Unary(u) => binary_starts(&u.expr, at),
        Expr::Paren(p) => binary_starts(&p.expr, at),
        Expr::Subquery(s) => binary_starts(&s.expr, at),
        Expr::MatrixSelector(_)
        | Expr::VectorSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

/// Where the expression inside argument `e` (at `off`) starts: Prometheus takes the
/// parentheses off a function's arguments and an aggregation's parameter before it evaluates
/// them, so its annotations point inside them (unless [`calls_in_order`] says otherwise).
fn inside_parens(query: &str, mut e: &Expr, mut off: usize) -> usize {
    let b = query.as_bytes();
    while let Expr::Paren(p) = e {
        let open = skip_blank(b, off);
        if b.get(open) != Some(&b'(') {
            return off;
        }
        off = skip_blank(b, open + 1);
        e = &p.expr;
    }
    off
}

/// How `query` ends inside an unclosed `[`: whether a `(` is open around it and whether the
/// bracket holds anything; `None` when it does not end inside one.
pub(crate) fn open_bracket_at_end(query: &str) -> Option<(bool, bool)> {
    let b = query.as_bytes();
    let mut parens = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, q),
            b'#' => {
                i = comment_end(b, i);
            }
            b'{' => i = skip_group(b, i, b'{', b'}')?,
            b'(' => {
                parens += 1;
                i += 1;
            }
            b')' => {
                parens = parens.saturating_sub(1);
                i += 1;
            }
            b'[' => match skip_group(b, i, b'[', b']') {
                Some(end) => i = end,
                None => {
                    let empty = b[i + 1..].iter().all(u8::is_ascii_whitespace);
                    return Some((parens > 0, !empty));
                }
            },
            _ => i += 1,
        }
    }
    None
}

/// Where Prometheus places a lexical error the parser reported as `msg` (its wording), as a
/// byte offset into `query`; `None` for other errors or when the text does not show it.
pub(crate) fn lexical_error_offset(query: &str, msg: &str) -> Option<usize> {
    let b = query.as_bytes();
    let quoted = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('\''))
            .and_then(|r| r.strip_suffix('\''))
            .and_then(|c| c.bytes().next().filter(|_| c.len() == 1))
    };
    let after_bang = quoted("unexpected character after '!' inside braces: ");
    let in_braces = quoted("unexpected character inside braces: ");
    let (mut parens, mut brackets, mut braces) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                let mut k = i + 1;
                loop {
                    if k >= b.len() {
                        return msg.starts_with("unterminated quoted string").then_some(i);
                    }
                    if b[k] == b'\\' && c != b'`' {
                        k += 2;
                        continue;
                    }
                    if b[k] == c {
                        break;
                    }
                    k += 1;
                }
                i = k + 1;
                continue;
            }
            b'#' if braces == 0 => {
                i = comment_end(b, i);
                continue;
            }
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            // A `~` right after `=` or `!` belongs to the operator; the stray one comes later.
            _ if braces > 0
                && ((Some(c) == in_braces && !(c == b'~' && matches!(b[i - 1], b'=' | b'!')))
                    || (c == b'!'
                        && after_bang.is_some()
                        && b.get(i + 1).copied() == after_bang)) =>
            {
                return Some(i);
            }
            _ if braces > 0 => {}
            b'(' => parens += 1,
            b'[' => brackets += 1,
            // Prometheus's lexer is one byte further on at an unmatched `)`.
            b')' if parens == 0 => {
                return (msg == "unexpected right parenthesis ')'").then_some(i + 1);
            }
            b')' => parens -= 1,
            b']' if brackets == 0 => {
                return (msg == "unexpected right bracket ']'").then_some(i);
            }
            b']' => brackets -= 1,
            b',' if msg == "trailing commas not allowed in function call args"
                && b.get(skip_blank(b, i + 1)) == Some(&b')') =>
            {
                return Some(i);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Line and column of the first call of function `name` in `query`, when the text scans.
pub(crate) fn call_named(query: &str, name: &str) -> Option<(usize, usize)> {
    let b = query.as_bytes();
    let call = scan(b)?
        .into_iter()
        .find(|c| &b[c.name.clone()] == name.as_bytes())?;
    Some(line_col(query, call.name.start))
}

/// The call of an unknown function Prometheus reports in `query`, with its line and column:
/// its parser reduces calls innermost first, so the first unknown call to close.
pub(crate) fn first_unknown_call(query: &str) -> Option<(String, (usize, usize))> {
    let b = query.as_bytes();
    let call = scan(b)?
        .into_iter()
        .filter(|c| {
            let name = String::from_utf8_lossy(&b[c.name.clone()]).to_string();
            !AGGREGATIONS.contains(&name.to_ascii_lowercase().as_str())
                // The parser itself, not this crate's parse, which reports through here.
                && promql_parser::parser::parse(&format!("{name}()"))
                    .is_err_and(|m| m.starts_with("unknown function"))
        })
        .min_by_key(|c| c.end)?;
    let name = String::from_utf8_lossy(&b[call.name.clone()]).to_string();
    Some((name, line_col(query, call.name.start)))
}

/// Line and column of the first aggregation in `query` given `args` arguments.
pub(crate) fn aggregation_with_args(query: &str, args: usize) -> Option<(usize, usize)> {
    let b = query.as_bytes();
    let call = scan(b)?.into_iter().find(|c| {
        is_aggregation(&String::from_utf8_lossy(&b[c.name.clone()])) && c.args.len() == args
    })?;
    Some(line_col(query, call.name.start))
}

/// Line and column of the argument Prometheus points a type error at: among the calls of
/// `name`, innermost first (its parser reduces them in that order), the first argument whose
/// own type, parsed alone, is `got` (a `ValueType` name).
pub(crate) fn argument_of_type(query: &str, name: &str, got: &str) -> Option<(usize, usize)> {
    let b = query.as_bytes();
    let mut calls: Vec<Call> = scan(b)?
        .into_iter()
        .filter(|c| &b[c.name.clone()] == name.as_bytes())
        .collect();
    calls.sort_by_key(|c| c.end);
    calls
        .iter()
        .find_map(|call| (0..call.args.len()).find_map(|k| call.argument_typed(query, k, got)))
}

/// Line and column of the aggregation operand Prometheus points a type error at: among the
/// aggregations, innermost first, the parameter (`param`) or the aggregated expression (the last
/// argument) whose own type, parsed alone, is `got`.
pub(crate) fn aggregation_argument_of_type(
    query: &str,
    param: bool,
    got: &str,
) -> Option<(usize, usize)> {
    let b = query.as_bytes();
    let mut calls: Vec<Call> = scan(b)?
        .into_iter()
        .filter(|c| is_aggregation(&String::from_utf8_lossy(&b[c.name.clone()])))
        .filter(|c| c.args.len() >= if param { 2 } else { 1 })
        .collect();
    calls.sort_by_key(|c| c.end);
    calls.iter().find_map(|call| {
        let k = if param { 0 } else { call.args.len() - 1 };
        call.argument_typed(query, k, got)
    })
}

/// The type of `text` parsed alone (a `ValueType` name: `vector`, `matrix`, `scalar`,
/// `string`), if it parses.
pub(crate) fn type_alone(text: &str) -> Option<String> {
    // The parser itself: this crate's parse reports its errors through here.
    let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(text)).ok()?;
    parsed.ok().map(|e| e.value_type().to_string())
}

/// Prometheus's name of a value type.
pub(crate) fn type_name(t: &str) -> &str {
    match t {
        "vector" => "instant vector",
        "matrix" => "range vector",
        other => other,
    }
}

impl Call {
    /// Where argument `k` is, when its own type parsed alone is `got`. It ends at the comma
    /// before the next argument, or at the closing parenthesis.
    fn argument_typed(&self, query: &str, k: usize, got: &str) -> Option<(usize, usize)> {
        let b = query.as_bytes();
        let start = *self.args.get(k)?;
        let end = match self.args.get(k + 1) {
            Some(&next) => b[..next].iter().rposition(|&c| c == b',').unwrap_or(next),
            None => self.end,
        };
        let text = query.get(start..end.max(start)).unwrap_or("");
        (type_alone(text).as_deref() == Some(got)).then(|| line_col(query, start))
    }
}

/// Prometheus's error for the first duration in `query` too large to be one (`[9300000000]`,
/// `offset 999999999999y`), with its position: the parser accepts some of these and cannot
/// represent others.
pub(crate) fn duration_range_error(query: &str) -> Option<String> {
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, q),
            b'#' => {
                i = comment_end(b, i);
            }
            b'{' => i = skip_group(b, i, b'{', b'}')?,
            b'[' => {
                let end = skip_group(b, i, b'[', b']')?;
                // `[range]` or `[range:step]`.
                let mut at = i + 1;
                for part in b[i + 1..end - 1].split(|&c| c == b':') {
                    let start = skip_blank(b, at);
                    if let Some(msg) = duration_token_error(token_at(b, start)) {
                        return Some(placed(line_col(query, start), &msg));
                    }
                    at += part.len() + 1;
                }
                i = end;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = word_end(b, i);
                if b[i..end].eq_ignore_ascii_case(b"offset") {
                    let start = skip_blank(b, end);
                    let sign = usize::from(matches!(b.get(start), Some(b'-' | b'+')));
                    if let Some(msg) = duration_token_error(token_at(b, start + sign)) {
                        return Some(placed(line_col(query, start + sign), &msg));
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    None
}

/// The number or duration literal starting at `i`.
fn token_at(b: &[u8], i: usize) -> &[u8] {
    let end = b[i.min(b.len())..]
        .iter()
        .position(|c| !(c.is_ascii_alphanumeric() || *c == b'.' || *c == b'_'))
        .map_or(b.len(), |n| i + n);
    &b[i.min(end)..end]
}

/// Why Prometheus refuses the duration literal `tok` as too large, if it does: a plain number
/// of seconds whose nanoseconds overflow an int64, or a `1h30m` literal whose parts or total
/// do (a part too long for a uint64 makes the whole literal invalid).
fn duration_token_error(tok: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(tok).ok()?;
    if !text.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return (secs * 1e9 > i64::MAX as f64).then(|| "duration out of range".to_string());
    }
    const UNITS_NS: [(&str, u64); 7] = [
        ("y", 365 * 86_400 * 1_000_000_000),
        ("w", 7 * 86_400 * 1_000_000_000),
        ("d", 86_400 * 1_000_000_000),
        ("h", 3_600 * 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ];
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(v) = rest[..digits].parse::<u64>() else {
            return Some(format!(
                "not a valid duration string: {}",
                crate::go_format::quoted(text)
            ));
        };
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|c| !c.is_ascii_digit()).count();
        let (_, mult) = UNITS_NS.iter().find(|(u, _)| *u == &rest[..unit_len])?;
        rest = &rest[unit_len..];
        if v > (1u64 << 63) / mult {
            return Some("duration out of range".to_string());
        }
        total = total.saturating_add(v * mult);
        if total > (1u64 << 63) - 1 {
            return Some("duration out of range".to_string());
        }
    }
    None
}

fn address(e: &Expr) -> usize {
    std::ptr::from_ref(e) as usize
}

/// Line and byte column (both from 1) of byte offset `off`.
pub(crate) fn line_col(query: &str, off: usize) -> (usize, usize) {
    LineIndex::new(query).line_col(off)
}

/// Where a text's lines start, for finding the line and column of many offsets in one pass
/// over the text.
pub(crate) struct LineIndex {
    /// Offsets of the text's newlines, ascending.
    newlines: Vec<usize>,
    len: usize,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        LineIndex {
            newlines: text
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i)
                .collect(),
            len: text.len(),
        }
    }

    /// Line and byte column (both from 1) of byte offset `off`.
    pub fn line_col(&self, off: usize) -> (usize, usize) {
        let off = off.min(self.len);
        let before = self.newlines.partition_point(|&nl| nl < off);
        let col = match before.checked_sub(1) {
            Some(k) => off - self.newlines[k],
            None => off + 1,
        };
        (1 + before, col)
    }
}

/// The arguments of every call and aggregation of `e`, parent first, children in source order.
fn calls_in_order<'e>(e: &'e Expr, out: &mut Vec<Vec<Arg<'e>>>) {
    match e {
        Expr::Aggregate(a) => {
            let args: Vec<&Expr> = a
                .param
                .iter()
                .map(|p| p.as_ref())
                .chain([a.expr.as_ref()])
                .collect();
            out.push(args.iter().map(|&x| (x, false)).collect());
            for x in args {
                calls_in_order(x, out);
            }
        }
        Expr::Call(c) => {
            let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
            // Prometheus wraps the step-invariant arguments of a call that is not itself
            // step invariant before taking parentheses off; a wrapped argument keeps its own.
            let whole = !AT_UNSAFE.contains(&c.func.name) && args.iter().all(|a| step_invariant(a));
            out.push(
                args.iter()
                    .map(|&x| (x, !whole && step_invariant(x)))
                    .collect(),
            );
            for x in args {
                calls_in_order(x, out);
            }
        }
        Expr::Unary(u) => calls_in_order(&u.expr, out),
        Expr::Binary(b) => {
            calls_in_order(&b.lhs, out);
            calls_in_order(&b.rhs, out);
        }
        Expr::Paren(p) => calls_in_order(&p.expr, out),
        Expr::Subquery(s) => calls_in_order(&s.expr, out),
        Expr::MatrixSelector(_)
        | Expr::VectorSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

/// An argument, and whether Prometheus reports it with its parentheses on.
type Arg<'e> = (&'e Expr, bool);

/// Functions whose answer depends on the evaluation time even over `@`-pinned input.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Whether `e` has the same value at every step, as Prometheus decides it before evaluating:
/// literals, `@`-pinned selectors and subqueries, and what is built only from them.
fn step_invariant(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::VectorSelector(v) => v.at.is_some(),
        Expr::MatrixSelector(m) => m.vs.at.is_some(),
        Expr::Subquery(s) => s.at.is_some(),
        Expr::Paren(p) => step_invariant(&p.expr),
        Expr::Unary(u) => step_invariant(&u.expr),
        Expr::Binary(b) => step_invariant(&b.lhs) && step_invariant(&b.rhs),
        Expr::Aggregate(a) => step_invariant(&a.expr),
        Expr::Call(c) => {
            !AT_UNSAFE.contains(&c.func.name) && c.args.args.iter().all(|a| step_invariant(a))
        }
        Expr::Extension(_) => false,
    }
}

/// Whether `name` is an aggregation operator (any case).
pub(crate) fn is_aggregation(name: &str) -> bool {
    AGGREGATIONS.contains(&name.to_ascii_lowercase().as_str())
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Words followed by a parenthesised list of label names, not arguments.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Words that may precede `(` without calling anything.
const OPERATOR_WORDS: &[&str] = &["and", "or", "unless", "atan2", "bool", "offset"];

/// A call or aggregation found in the text.
struct Call {
    /// Where its name starts and ends.
    name: std::ops::Range<usize>,
    /// Where each of its top-level arguments starts.
    args: Vec<usize>,
    /// Where its closing parenthesis is.
    end: usize,
}

/// Every call and aggregation, in the order their names appear; `None` when the text does not
/// scan (unbalanced brackets).
fn scan(b: &[u8]) -> Option<Vec<Call>> {
    let mut calls: Vec<Call> = Vec::new();
    // Open parentheses: the call whose arguments they hold, if any.
    let mut parens: Vec<Option<usize>> = Vec::new();
    let mut prev_at = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(b, i, c),
            b'#' => {
                i = comment_end(b, i);
            }
            b'{' => i = skip_group(b, i, b'{', b'}')?,
            b'[' => i = skip_group(b, i, b'[', b']')?,
            b'(' => {
                parens.push(None);
                i += 1;
            }
            b')' => {
                if let Some(k) = parens.pop()? {
                    calls[k].end = i;
                }
                i += 1;
            }
            b',' => {
                if let Some(Some(k)) = parens.last() {
                    let at = skip_blank(b, i + 1);
                    calls[*k].args.push(at);
                }
                i += 1;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                i = word_end(b, i);
                let word = std::str::from_utf8(&b[start..i]).ok()?;
                let lower = word.to_ascii_lowercase();
                let mut j = skip_blank(b, i);
                let after_at = std::mem::replace(&mut prev_at, false);
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if b.get(j) == Some(&b'(') {
                        i = skip_group(b, j, b'(', b')')?;
                    }
                    continue;
                }
                let aggregation = AGGREGATIONS.contains(&lower.as_str());
                if aggregation {
                    // `sum by (job) (x)`: the grouping comes between the name and the arguments.
                    let k = word_end(b, j);
                    let next = std::str::from_utf8(&b[j..k]).ok()?.to_ascii_lowercase();
                    if next == "by" || next == "without" {
                        let open = skip_blank(b, k);
                        if b.get(open) != Some(&b'(') {
                            return None;
                        }
                        j = skip_blank(b, skip_group(b, open, b'(', b')')?);
                    }
                }
                let is_call = b.get(j) == Some(&b'(')
                    && !after_at
                    && !OPERATOR_WORDS.contains(&lower.as_str());
                if is_call {
                    let first = skip_blank(b, j + 1);
                    calls.push(Call {
                        end: b.len(),
                        name: start..start + word.len(),
                        args: if b.get(first) == Some(&b')') {
                            Vec::new()
                        } else {
                            vec![first]
                        },
                    });
                    parens.push(Some(calls.len() - 1));
                    i = j + 1;
                }
            }
            b'@' => {
                prev_at = true;
                i += 1;
            }
            _ if c.is_ascii_digit() || c == b'.' => {
                // A number or duration: digits, letters and dots, and the sign of an exponent.
                while i < b.len() {
                    let d = b[i];
                    let exp_sign = (d == b'+' || d == b'-')
                        && matches!(b[i - 1], b'e' | b'E')
                        && !b[..i].starts_with(b"0x");
                    if d.is_ascii_alphanumeric() || d == b'.' || d == b'_' || exp_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            _ => i += 1,
        }
    }
    parens.is_empty().then_some(calls)
}

/// Index just past the group opened by `open` at `start`, strings inside skipped.
pub(crate) fn skip_group(b: &[u8], start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i = skip_string(b, i, q);
                continue;
            }
            x if x == open => depth += 1,
            x if x == close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The first index at or after `i` that is not white space or inside a comment.
fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
        } else if b[i] == b'#' {
            i = comment_end(b, i);
        } else {
            break;
        }
    }
    i
}

/// Index of the line end closing the `#` comment at `i` (the input's end on the last line).
pub(crate) fn comment_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |n| i + n)
}

/// A parse error as Prometheus writes it at `(line, column)`.
pub(crate) fn placed((line, col): (usize, usize), msg: &str) -> String {
    format!("{line}:{col}: parse error: {msg}")
}

/// Index just past the word starting at `i` (`i` itself when none starts there).
fn word_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ident_byte(b[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg_positions(q: &str) -> Vec<Vec<(usize, usize)>> {
        let expr = promql_parser::parser::parse(q).unwrap();
        let p = Positions::find(q, &expr);
        let mut nodes = Vec::new();
        calls_in_order(&expr, &mut nodes);
        nodes
            .iter()
            .map(|args| {
                args.iter()
                    .map(|(e, _)| p.at.get(&address(e)).copied().unwrap_or((0, 0)))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn arguments_are_found_where_prometheus_points() {
        // Positions Prometheus 3.5.3 gave in its annotations for these queries.
        assert_eq!(arg_positions("rate(edge_gauge[5m])"), vec![vec![(1, 6)]]);
        assert_eq!(
            arg_positions("sum(rate(edge_gauge[5m]))"),
            vec![vec![(1, 5)], vec![(1, 10)]]
        );
        assert_eq!(
            arg_positions("quantile_over_time(-1, edge_gauge[7m30s])"),
            vec![vec![(1, 20), (1, 24)]]
        );
        assert_eq!(
            arg_positions("histogram_quantile(2, sum by (le) (rate(b_bucket[5m])))")[0],
            vec![(1, 20), (1, 23)]
        );
    }

    #[test]
    fn shapes_the_scan_must_follow() {
        let q = "sum by (job) (\n  rate(x{a=\"(\", b=~\"rate\\\\(\"}[5m] offset 1m)\n) / on (job) group_left (i) max(y @ start()) # rate(\n + topk(3, z) + count_values without (a) (\"v\", w) + SUM(v) atan2 (u)";
        let got = arg_positions(q);
        assert_eq!(got[0], vec![(2, 3)]);
        assert_eq!(got[1], vec![(2, 8)]);
        assert_eq!(got[2], vec![(3, 33)]);
        assert_eq!(got[3], vec![(4, 9), (4, 12)]);
        assert_eq!(got[4], vec![(4, 43), (4, 48)]);
        assert_eq!(got[5], vec![(4, 57)]);
        assert!(got.iter().flatten().all(|&p| p != (0, 0)), "{got:?}");
    }

    #[test]
    fn durations_too_large_are_refused_where_they_stand() {
        let e = |q: &str| duration_range_error(q);
        assert_eq!(e("n[9200000000]"), None);
        assert_eq!(e("n[5m:30s] offset -1h"), None);
        assert_eq!(e(r#"n{a="[9300000000]"}"#), None);
        assert_eq!(
            e("n[9300000000]").unwrap(),
            "1:3: parse error: duration out of range"
        );
        assert_eq!(
            e("sum(\n n[5m:1e300])").unwrap(),
            "2:7: parse error: duration out of range"
        );
        assert_eq!(
            e("n OFFSET -106752d").unwrap(),
            "1:11: parse error: duration out of range"
        );
        assert_eq!(
            e("n[99999999999999999999s]").unwrap(),
            "1:3: parse error: not a valid duration string: \"99999999999999999999s\""
        );
    }

    #[test]
    fn a_shape_it_cannot_follow_gives_no_positions() {
        let expr = promql_parser::parser::parse("rate(x[5m])").unwrap();
        let p = Positions::find("rate(x[5m]) + abs(y)", &expr);
        assert!(p.at.is_empty());
        let p = Positions::find("rate(x[5m]", &expr);
        assert!(p.at.is_empty());
    }
}
