//! Prometheus's errors for queries this parser refuses in other words, or takes where
//! Prometheus refuses them, worded and placed as Prometheus reports them:
//! - the checks on a parsed expression (operand types, modifiers, set operators), which
//!   Prometheus places at the start of the node at fault (a binary expression at its left
//!   operand, a modifier at the expression it modifies);
//! - syntax errors the parser only calls invalid (a dangling operator, keywords out of place);
//! - number and duration literals, read as Prometheus 3's lexer reads them.
//!
//! The parser gives no positions, so the text is scanned into tokens with parentheses kept
//! apart, and the node at fault is found from them.

use super::duration_expr::skip_string;
use super::positions::{comment_end, line_col, placed, skip_group, type_alone, type_name};
use crate::go_format::{format_fixed, quoted, unicode_format};
use crate::labels::{Literal, lex_literal};

/// A token of PromQL text, as far as finding nodes needs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind<'a> {
    Word(&'a str),
    Number,
    Str,
    /// A whole `{...}` matcher list.
    Braces,
    /// A whole `[...]` range or subquery; whether it holds a `:`.
    Brackets {
        subquery: bool,
    },
    Open,
    Close,
    Comma,
    Op(&'a str),
    At,
}

#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    kind: Kind<'a>,
    start: usize,
}

/// The tokens of `q`; `None` when a group or string does not close.
fn tokens(q: &str) -> Option<Vec<Token<'_>>> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                i = comment_end(b, i);
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i, c);
                Kind::Str
            }
            b'{' => {
                i = skip_group(b, i, b'{', b'}')?;
                Kind::Braces
            }
            b'[' => {
                i = skip_group(b, i, b'[', b']')?;
                Kind::Brackets {
                    subquery: b[start..i].contains(&b':'),
                }
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b',' => {
                i += 1;
                Kind::Comma
            }
            b'@' => {
                i += 1;
                Kind::At
            }
            // A number or duration, as far as the lexer reads it.
            b'0'..=b'9' | b'.' => {
                i = match lex_literal(b, start) {
                    Literal::Number(e) | Literal::Duration(e) | Literal::Bad(e) => e.max(start + 1),
                };
                Kind::Number
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                match &q[start..i] {
                    w @ ("and" | "or" | "unless" | "atan2") => Kind::Op(w),
                    w => Kind::Word(w),
                }
            }
            _ => {
                let two = q.get(i..i + 2).unwrap_or("");
                let op = ["==", "!=", ">=", "<="]
                    .into_iter()
                    .find(|o| *o == two)
                    .or_else(|| {
                        ["+", "-", "*", "/", "%", "^", ">", "<"]
                            .into_iter()
                            .find(|o| q[i..].starts_with(o))
                    })?;
                i += op.len();
                Kind::Op(&q[start..i])
            }
        };
        out.push(Token { kind, start });
    }
    Some(out)
}

/// Binding strength of a binary operator, as Prometheus's grammar orders them.
fn precedence(op: &str) -> u8 {
    match op {
        "or" => 1,
        "and" | "unless" => 2,
        "==" | "!=" | ">" | "<" | ">=" | "<=" => 3,
        "+" | "-" => 4,
        "*" | "/" | "%" | "atan2" => 5,
        _ => 6, // ^
    }
}

/// Whether token `k` is a binary operator (not a sign): something that ends an operand comes
/// before it.
fn is_binary_at(t: &[Token<'_>], k: usize) -> bool {
    let Kind::Op(_) = t[k].kind else {
        return false;
    };
    k > 0
        && match t[k - 1].kind {
            Kind::Word(w) => !matches!(w, "bool" | "offset"),
            Kind::Number | Kind::Str | Kind::Braces | Kind::Brackets { .. } | Kind::Close => true,
            _ => false,
        }
}

/// Index of the first token of the left operand of the binary operator at `k`: back to an
/// unmatched `(`, a `,`, or an operator binding more loosely, at the same depth.
fn left_start(t: &[Token<'_>], k: usize) -> usize {
    let Kind::Op(op) = t[k].kind else { return k };
    let p = precedence(op);
    let mut depth = 0usize;
    let mut j = k;
    while j > 0 {
        let prev = j - 1;
        match t[prev].kind {
            Kind::Close => depth += 1,
            Kind::Open if depth == 0 => break,
            Kind::Open => depth -= 1,
            Kind::Comma if depth == 0 => break,
            Kind::Op(o) if depth == 0 && is_binary_at(t, prev) && precedence(o) < p => break,
            // `^` is right-associative: a `^` to the left ends this one's left operand.
            Kind::Op("^") if depth == 0 && p == 6 && is_binary_at(t, prev) => break,
            _ => {}
        }
        j = prev;
    }
    j
}

/// Index of the first token of the right operand of the binary operator at `k`, past `bool`
/// and vector matching modifiers.
fn right_start(t: &[Token<'_>], k: usize) -> usize {
    let mut j = k + 1;
    while j < t.len() {
        match t[j].kind {
            Kind::Word("bool") => j += 1,
            Kind::Word("on" | "ignoring" | "group_left" | "group_right") => {
                j += 1;
                if matches!(t.get(j).map(|x| x.kind), Some(Kind::Open)) {
                    while j < t.len() && t[j].kind != Kind::Close {
                        j += 1;
                    }
                    j += 1;
                }
            }
            _ => break,
        }
    }
    j
}

/// Index just past the right operand starting at `r` of an operator of precedence `p`.
fn right_end(t: &[Token<'_>], r: usize, p: u8) -> usize {
    let mut depth = 0usize;
    let mut j = r;
    while j < t.len() {
        match t[j].kind {
            Kind::Open => depth += 1,
            Kind::Close if depth == 0 => break,
            Kind::Close => depth -= 1,
            Kind::Comma if depth == 0 => break,
            Kind::Op(o) if depth == 0 && j > r && is_binary_at(t, j) => {
                let q = precedence(o);
                if q < p || (q == p && p != 6) {
                    break;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

/// The text of tokens `a..b` of `q`.
fn span<'q>(q: &'q str, t: &[Token<'_>], a: usize, b: usize) -> &'q str {
    let from = t.get(a).map_or(q.len(), |x| x.start);
    let to = t.get(b).map_or(q.len(), |x| x.start);
    q.get(from..to.max(from)).unwrap_or("")
}

/// Index of the first token of the expression a modifier at token `k` applies to.
fn modified_start(t: &[Token<'_>], k: usize) -> usize {
    let mut j = k;
    // Earlier modifiers of the same expression (`x @ 1 offset 5m`).
    loop {
        while j > 0 && matches!(t[j - 1].kind, Kind::Brackets { .. }) {
            j -= 1;
        }
        if j >= 2 && matches!(t[j - 2].kind, Kind::At | Kind::Word("offset")) {
            j -= 2;
            continue;
        }
        if j >= 3
            && matches!(t[j - 1].kind, Kind::Close)
            && matches!(t[j - 2].kind, Kind::Open)
            && matches!(t[j - 3].kind, Kind::Word("start" | "end"))
            && j >= 4
            && matches!(t[j - 4].kind, Kind::At)
        {
            j -= 4;
            continue;
        }
        if j >= 3
            && matches!(t[j - 1].kind, Kind::Number)
            && matches!(t[j - 2].kind, Kind::Op("-" | "+"))
            && matches!(t[j - 3].kind, Kind::At | Kind::Word("offset"))
        {
            j -= 3;
            continue;
        }
        break;
    }
    if j == 0 {
        return 0;
    }
    match t[j - 1].kind {
        Kind::Braces => {
            if j >= 2 && matches!(t[j - 2].kind, Kind::Word(_)) {
                j - 2
            } else {
                j - 1
            }
        }
        Kind::Close => {
            let mut depth = 0usize;
            let mut m = j - 1;
            loop {
                match t[m].kind {
                    Kind::Close => depth += 1,
                    Kind::Open => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                if m == 0 {
                    return 0;
                }
                m -= 1;
            }
            // A call or aggregation's name (and its grouping) before the parenthesis.
            let mut s = m;
            while s > 0 {
                match t[s - 1].kind {
                    Kind::Word(w) if !matches!(w, "by" | "without") => return s - 1,
                    Kind::Word("by" | "without") => s -= 1,
                    Kind::Close => {
                        // `sum by (a) (x)`: skip the grouping list.
                        let mut g = s - 1;
                        while g > 0 && t[g].kind != Kind::Open {
                            g -= 1;
                        }
                        s = g;
                    }
                    _ => break,
                }
            }
            m
        }
        _ => j - 1,
    }
}

/// The first token that is `want`, as a binary operator when it is one.
fn find(t: &[Token<'_>], want: impl Fn(&Kind<'_>) -> bool) -> Option<usize> {
    (0..t.len()).find(|&k| want(&t[k].kind))
}

/// Prometheus's wording and position for the parser's message `msg` about `query`, for the
/// messages of its checks on a parsed expression; `None` for others, or when the node at
/// fault is not found.
pub(crate) fn placed_check_error(query: &str, msg: &str) -> Option<String> {
    // A character no token starts with: found before the text is tokenized (which it stops).
    if let Some(c) = msg
        .strip_prefix("unexpected character: '")
        .and_then(|r| r.strip_suffix('\''))
        .and_then(|r| {
            let mut cs = r.chars();
            cs.next().filter(|_| cs.next().is_none())
        })
    {
        let b = query.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                q @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, q),
                b'#' => i = comment_end(b, i),
                _ if query[i..].starts_with(c) => return Some(placed(line_col(query, i), msg)),
                _ => i += 1,
            }
        }
        return None;
    }
    if msg.starts_with("unexpected character after '.'") {
        // A `.` that starts no number is a character no token starts with.
        let b = query.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                q @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, q),
                b'#' => i = comment_end(b, i),
                b'{' => i = skip_group(b, i, b'{', b'}').unwrap_or(b.len()),
                b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    return Some(placed(line_col(query, i), "unexpected character: '.'"));
                }
                c if c.is_ascii_digit() => {
                    i = match lex_literal(b, i) {
                        Literal::Number(e) | Literal::Duration(e) | Literal::Bad(e) => e.max(i + 1),
                    }
                }
                _ => i += 1,
            }
        }
        return None;
    }
    let t = tokens(query)?;
    let at = |k: usize| line_col(query, t[k].start);
    let op_named =
        |name: &str| (0..t.len()).find(|&k| t[k].kind == Kind::Op(name) && is_binary_at(&t, k));
    if let Some(op) = msg
        .strip_prefix("set operator '")
        .and_then(|r| r.strip_suffix("' not allowed in binary scalar expression"))
    {
        let k = op_named(op)?;
        // Matching labels between a scalar and a vector are refused first.
        let matching = matches!(
            t.get(k + 1).map(|x| x.kind),
            Some(Kind::Word("on" | "ignoring"))
        ) && t.get(k + 2).is_some_and(|x| x.kind == Kind::Open)
            && t.get(k + 3).is_some_and(|x| x.kind != Kind::Close);
        if matching {
            let m = "vector matching only allowed between instant vectors";
            return Some(placed(at(left_start(&t, k)), m));
        }
        let m = format!("set operator {op:?} not allowed in binary scalar expression");
        return Some(placed(at(left_start(&t, k)), &m));
    }
    if let Some(op) = msg
        .strip_prefix("no grouping allowed for '")
        .and_then(|r| r.strip_suffix("' operation"))
    {
        let k = op_named(op)?;
        let m = format!("no grouping allowed for {op:?} operation");
        return Some(placed(at(left_start(&t, k)), &m));
    }
    if let Some(what) = msg
        .strip_prefix("unexpected ")
        .filter(|w| w.starts_with('<'))
    {
        // The parser names the token as Prometheus does but not where it is.
        let k = (0..t.len()).find(|&k| {
            crate::labels::token_description_at(query, t[k].start).as_deref() == Some(what)
        })?;
        return Some(placed(at(k), msg));
    }
    // Inside a range or subquery's brackets: a second `:`, or a `-` before the duration.
    let in_brackets = |pick: &dyn Fn(&str) -> Option<usize>| {
        t.iter().find_map(|x| match x.kind {
            Kind::Brackets { .. } => {
                let end = skip_group(query.as_bytes(), x.start, b'[', b']')?;
                pick(&query[x.start..end]).map(|off| line_col(query, x.start + off))
            }
            _ => None,
        })
    };
    if msg == "unexpected second colon(:) in brackets" {
        let pos = in_brackets(&|g| g.match_indices(':').nth(1).map(|(i, _)| i))?;
        return Some(placed(pos, "unexpected colon ':'"));
    }
    if msg == "unexpected character inside brackets: '-'" {
        // `[-5m]`, `[5m:-1m]`: a duration below zero.
        let pos = in_brackets(&|g| {
            let i = g.find('-')?;
            g[..i].trim_end().ends_with(['[', ':']).then_some(i)
        })?;
        return Some(placed(pos, "duration must be greater than 0"));
    }
    if msg == "bool modifier can only be used on comparison operators" {
        let k = find(&t, |x| *x == Kind::Word("bool"))?;
        return Some(placed(at(k.checked_sub(1)?), msg));
    }
    if msg == "binary expression must contain only scalar and instant vector types" {
        // The first operator (in text order) with an operand of another type; Prometheus
        // points at that operand.
        for k in (0..t.len()).filter(|&k| is_binary_at(&t, k)) {
            let Kind::Op(op) = t[k].kind else { continue };
            let l = left_start(&t, k);
            let r = right_start(&t, k);
            let e = right_end(&t, r, precedence(op));
            let bad = |s: &str| type_alone(s).is_some_and(|ty| ty == "matrix" || ty == "string");
            if bad(span(query, &t, l, k)) {
                return Some(placed(at(l), msg));
            }
            if r < t.len() && bad(span(query, &t, r, e)) {
                return Some(placed(at(r), msg));
            }
        }
        return None;
    }
    if msg == "ranges only allowed for vector selectors" {
        let k = (1..t.len()).find(|&k| {
            matches!(t[k].kind, Kind::Brackets { subquery: false })
                && matches!(
                    t[k - 1].kind,
                    Kind::Close | Kind::Brackets { .. } | Kind::Number | Kind::Str
                )
        })?;
        return Some(placed(at(k), msg));
    }
    if msg == "@ <timestamp> may not be set multiple times" {
        let first = find(&t, |x| *x == Kind::At)?;
        return Some(placed(at(modified_start(&t, first)), msg));
    }
    if msg == "offset may not be set multiple times" {
        let first = find(&t, |x| *x == Kind::Word("offset"))?;
        return Some(placed(at(modified_start(&t, first)), msg));
    }
    for (modifier, token) in [("@", Kind::At), ("offset", Kind::Word("offset"))] {
        if msg.starts_with(&format!("{modifier} modifier must be preceded by")) {
            let k = find(&t, |x| *x == token)?;
            let m = format!(
                "{modifier} modifier must be preceded by an instant vector selector or range \
                 vector selector or a subquery"
            );
            return Some(placed(at(modified_start(&t, k)), &m));
        }
    }
    if let Some(value) = msg.strip_prefix("timestamp out of bounds for @ modifier: ") {
        let k = find(&t, |x| *x == Kind::At)?;
        let value = match value {
            "inf" => "+Inf",
            "-inf" => "-Inf",
            "NaN" | "nan" => "NaN",
            other => other,
        };
        let m = format!("timestamp out of bounds for @ modifier: {value}");
        return Some(placed(at(modified_start(&t, k)), &m));
    }
    // `expected type vector in aggregation expression, got matrix`: the parser says
    // "expression" for the parameter too, Prometheus "parameter".
    if let Some((want, got)) = msg
        .strip_prefix("expected type ")
        .and_then(|r| r.split_once(" in aggregation expression, got "))
    {
        let param = want != "vector";
        let pos = super::positions::aggregation_argument_of_type(query, param, got)?;
        let m = format!(
            "expected type {} in aggregation {}, got {}",
            type_name(want),
            if param { "parameter" } else { "expression" },
            type_name(got)
        );
        return Some(placed(pos, &m));
    }
    if msg.starts_with("no arguments for aggregate expression '") {
        let k = (0..t.len()).find(|&k| {
            matches!(t[k].kind, Kind::Word(_))
                && t.get(k + 1).is_some_and(|x| x.kind == Kind::Open)
                && t.get(k + 2).is_some_and(|x| x.kind == Kind::Close)
        });
        // `sum() by (a)` or `sum by (a) ()`: the aggregation's name.
        let k = k.or_else(|| {
            (0..t.len()).find(
                |&k| matches!(t[k].kind, Kind::Word(w) if super::positions::is_aggregation(w)),
            )
        })?;
        return Some(placed(
            at(k),
            "no arguments for aggregate expression provided",
        ));
    }
    if msg == "vector selector must contain at least one non-empty matcher" {
        // The first selector that, alone, is refused the same way: at its name, or its brace.
        let k = (0..t.len()).find(|&k| {
            let end = match (t[k].kind, t.get(k + 1).map(|x| x.kind)) {
                (Kind::Word(_), Some(Kind::Braces)) => k + 2,
                (Kind::Braces, _) if k == 0 || !matches!(t[k - 1].kind, Kind::Word(_)) => k + 1,
                _ => return false,
            };
            let alone = span(query, &t, k, end);
            std::panic::catch_unwind(|| promql_parser::parser::parse(alone))
                .is_ok_and(|r| r.is_err_and(|e| e == msg))
        })?;
        return Some(placed(at(k), msg));
    }
    if let Some(c) = msg
        .strip_prefix("unknown escape sequence '")
        .and_then(|r| r.strip_suffix('\''))
        .and_then(|r| {
            let mut cs = r.chars();
            cs.next().filter(|_| cs.next().is_none())
        })
    {
        // Outside braces (those are the selector lexer's): the string literal holding it.
        let escape = format!("\\{c}");
        let k = (0..t.len()).find(|&k| {
            t[k].kind == Kind::Str && span(query, &t, k, k + 1).contains(escape.as_str())
        })?;
        let m = format!("unknown escape sequence {}", unicode_format(c));
        return Some(placed(at(k), &m));
    }
    if let Some(got) = msg.strip_prefix(
        "unary expression only allowed on expressions of type scalar or vector, got: ",
    ) {
        let k = (0..t.len())
            .find(|&k| matches!(t[k].kind, Kind::Op("-" | "+")) && !is_binary_at(&t, k))?;
        let m = format!(
            "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
            type_name(got)
        );
        return Some(placed(at(k), &m));
    }
    None
}

/// Prometheus's error for a keyword out of place, for queries the parser refuses without saying
/// why: a malformed or second grouping of an aggregation (`sum by a (x)`, `count by (,a) (x)`),
/// vector matching keywords in the wrong order or twice (`x + ignoring(a) on(b) y`, `x > bool
/// bool y`), or an `@` followed by no timestamp (`x @ foo`).
pub(crate) fn misplaced_keyword_error(query: &str) -> Option<String> {
    let t = tokens(query)?;
    let describe = |k: usize| match t.get(k) {
        Some(x) => crate::labels::token_description_at(query, x.start)
            .unwrap_or_else(|| "input".to_string()),
        None => "end of input".to_string(),
    };
    let place = |k: usize| line_col(query, t.get(k).map_or(query.len(), |x| x.start));
    for k in 0..t.len() {
        match t[k].kind {
            Kind::Word(w) if w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without") => {
                let aggregation = k > 0
                    && match t[k - 1].kind {
                        Kind::Word(a) => super::positions::is_aggregation(a),
                        Kind::Close => true,
                        _ => false,
                    };
                if !aggregation {
                    continue;
                }
                if t.get(k + 1).map(|x| x.kind) != Some(Kind::Open) {
                    let m = format!(
                        "unexpected {} in grouping opts, expected \"(\"",
                        describe(k + 1)
                    );
                    return Some(placed(place(k + 1), &m));
                }
                let mut j = k + 2;
                let mut want_label = true;
                loop {
                    match t.get(j).map(|x| x.kind) {
                        Some(Kind::Close) => break,
                        Some(Kind::Word(_) | Kind::Str) if want_label => want_label = false,
                        Some(Kind::Comma) if !want_label => want_label = true,
                        _ => {
                            let expected = if want_label {
                                "label"
                            } else {
                                "\",\" or \")\""
                            };
                            let m = format!(
                                "unexpected {} in grouping opts, expected {expected}",
                                describe(j)
                            );
                            return Some(placed(place(j), &m));
                        }
                    }
                    j += 1;
                }
                // The aggregated expression follows a grouping that comes first, and no second
                // grouping follows it.
                if matches!(t[k - 1].kind, Kind::Word(_)) {
                    if t.get(j + 1).map(|x| x.kind) != Some(Kind::Open) {
                        let m = format!("unexpected {} in aggregation", describe(j + 1));
                        return Some(placed(place(j + 1), &m));
                    }
                    let mut depth = 0usize;
                    let mut e = j + 1;
                    while e < t.len() {
                        match t[e].kind {
                            Kind::Open => depth += 1,
                            Kind::Close => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        e += 1;
                    }
                    let grouping = |x: Kind<'_>| matches!(x, Kind::Word(w) if w.eq_ignore_ascii_case("by") || w.eq_ignore_ascii_case("without"));
                    if t.get(e + 1).is_some_and(|x| grouping(x.kind)) {
                        let m = format!("unexpected {}", describe(e + 1));
                        return Some(placed(place(e + 1), &m));
                    }
                }
            }
            // Vector matching in the wrong order: a second `on`/`ignoring`, a second
            // `group_left`/`group_right`, or `bool` after them.
            Kind::Word(w @ ("on" | "ignoring" | "group_left" | "group_right"))
                if k > 0 && after_operator(&t, k) =>
            {
                let mut j = k + 1;
                if t.get(j).map(|x| x.kind) == Some(Kind::Open) {
                    while j < t.len() && t[j].kind != Kind::Close {
                        j += 1;
                    }
                    j += 1;
                }
                let next = t.get(j).map(|x| x.kind);
                let keyword = matches!(
                    next,
                    Some(Kind::Word(
                        "bool" | "on" | "ignoring" | "group_left" | "group_right"
                    ))
                );
                // A keyword where a label list may still come: `group_left group_left`.
                if keyword && j == k + 1 {
                    let m = format!(
                        "unexpected {} in grouping opts, expected \"(\"",
                        describe(j)
                    );
                    return Some(placed(place(j), &m));
                }
                let refused = match next {
                    Some(Kind::Word("bool" | "on" | "ignoring")) => true,
                    Some(Kind::Word("group_left" | "group_right")) => {
                        matches!(w, "group_left" | "group_right")
                    }
                    _ => false,
                };
                if refused {
                    return Some(placed(place(j), &format!("unexpected {}", describe(j))));
                }
            }
            Kind::Word("bool")
                if k > 0
                    && after_operator(&t, k)
                    && t.get(k + 1).map(|x| x.kind) == Some(Kind::Word("bool")) =>
            {
                return Some(placed(
                    place(k + 1),
                    &format!("unexpected {}", describe(k + 1)),
                ));
            }
            Kind::At => {
                // `start()` and `end()` are read as one token each: a bare `start` is refused
                // at what follows it.
                let kind = |j: usize| t.get(j).map(|x| x.kind);
                let wrong = match kind(k + 1) {
                    Some(Kind::Number) => None,
                    Some(Kind::Op("-" | "+")) => {
                        (kind(k + 2) != Some(Kind::Number)).then_some(k + 2)
                    }
                    Some(Kind::Word("start" | "end")) => {
                        if kind(k + 2) != Some(Kind::Open) {
                            Some(k + 2)
                        } else {
                            (kind(k + 3) != Some(Kind::Close)).then_some(k + 3)
                        }
                    }
                    _ => Some(k + 1),
                };
                if let Some(w) = wrong {
                    let m = format!("unexpected {} in @, expected timestamp", describe(w));
                    return Some(placed(place(w), &m));
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether token `k` comes right after a binary operator, its `bool`, or a vector matching
/// clause's label list: where vector matching keywords are read as keywords.
fn after_operator(t: &[Token<'_>], k: usize) -> bool {
    match t[k - 1].kind {
        Kind::Op(_) => is_binary_at(t, k - 1),
        Kind::Word("bool") => true,
        Kind::Close => {
            let Some(m) = (0..k - 1).rev().find(|&m| t[m].kind == Kind::Open) else {
                return false;
            };
            m > 0
                && matches!(
                    t[m - 1].kind,
                    Kind::Word("on" | "ignoring" | "group_left" | "group_right")
                )
                && m >= 2
                && after_operator(t, m - 1)
        }
        Kind::Word("on" | "ignoring" | "group_left" | "group_right") => {
            k >= 2 && after_operator(t, k - 1)
        }
        _ => false,
    }
}

/// Prometheus's error for a query ending where an operand must follow (`x +`, `x and`,
/// `1 == bool`): the end of input, placed after the last character.
pub(crate) fn end_of_input_error(query: &str) -> Option<String> {
    let t = tokens(query)?;
    let last = t.last()?;
    let dangling = match last.kind {
        Kind::Op(_) => true,
        Kind::Word(w) => matches!(w, "bool" | "on" | "ignoring" | "group_left" | "group_right"),
        _ => false,
    };
    dangling.then(|| placed(line_col(query, query.len()), "unexpected end of input"))
}

/// Prometheus's error for an `@` timestamp whose milliseconds do not fit 64 bits
/// (`x @ 1e20`), which the parser takes.
pub(crate) fn at_out_of_bounds(query: &str) -> Option<String> {
    let t = tokens(query)?;
    for k in (0..t.len()).filter(|&k| t[k].kind == Kind::At) {
        let (mut j, mut sign) = (k + 1, 1.0);
        if let Some(Kind::Op(o @ ("-" | "+"))) = t.get(j).map(|x| x.kind) {
            sign = if o == "-" { -1.0 } else { 1.0 };
            j += 1;
        }
        if t.get(j).map(|x| x.kind) != Some(Kind::Number) {
            continue;
        }
        let text = span(query, &t, j, j + 1).trim_end();
        let Ok(v) = text.parse::<f64>() else { continue };
        let ms = sign * v * 1000.0;
        if ms.is_finite() && (ms >= i64::MAX as f64 || ms <= i64::MIN as f64) {
            let m = format!(
                "timestamp out of bounds for @ modifier: {}",
                format_fixed(sign * v, 6)
            );
            return Some(placed(line_col(query, t[modified_start(&t, k)].start), &m));
        }
    }
    None
}

/// Where number and duration literals start in `q`: outside strings, comments, selectors'
/// braces and identifiers.
fn literal_starts(q: &str) -> Vec<usize> {
    let b = q.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            c @ (b'"' | b'\'' | b'`') => i = skip_string(b, i, c),
            b'#' => i = comment_end(b, i),
            b'{' => i = skip_group(b, i, b'{', b'}').unwrap_or(b.len()),
            // An identifier (a `:` before a digit separates a subquery's range and step).
            c if c.is_ascii_alphabetic()
                || c == b'_'
                || (c == b':' && !b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                out.push(i);
                i = match lex_literal(b, i) {
                    Literal::Number(e) | Literal::Duration(e) | Literal::Bad(e) => e.max(i + 1),
                };
            }
            _ => i += 1,
        }
    }
    out
}

/// Prometheus's error for the first number or duration literal its lexer refuses, or whose
/// text does not then parse (`5x`, `1e`, `1.2.3`, `1d1y`, `[1.5m]`), placed at the literal.
pub(crate) fn literal_error(query: &str) -> Option<String> {
    let b = query.as_bytes();
    for s in literal_starts(query) {
        let msg = match lex_literal(b, s) {
            Literal::Bad(e) => format!(
                "bad number or duration syntax: {}",
                quoted(&query[s..e.min(query.len())])
            ),
            Literal::Duration(e) => match duration_text_error(&query[s..e]) {
                Some(m) => m,
                None => continue,
            },
            Literal::Number(e) => {
                let text = &query[s..e];
                let digits: String = text.chars().filter(|&c| c != '_').collect();
                let hex = digits.starts_with("0x") || digits.starts_with("0X");
                if hex || digits.parse::<f64>().is_ok() {
                    continue;
                }
                format!(
                    "error parsing number: strconv.ParseFloat: parsing {}: invalid syntax",
                    quoted(text)
                )
            }
        };
        return Some(placed(line_col(query, s), &msg));
    }
    None
}

/// Why Prometheus's duration parser refuses `text` (a duration token), if it does, in its
/// words: a unit it does not know, or units out of order.
fn duration_text_error(text: &str) -> Option<String> {
    const UNITS: [&str; 8] = ["y", "w", "d", "h", "m", "s", "ms", ""];
    let b = text.as_bytes();
    let mut i = 0;
    let mut last = None;
    while i < b.len() {
        let d = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let u = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        if d == u || u == i {
            return Some(format!("not a valid duration string: {}", quoted(text)));
        }
        let unit = &text[u..i];
        let Some(pos) = UNITS[..7].iter().position(|x| *x == unit) else {
            return Some(format!(
                "unknown unit {} in duration {}",
                quoted(unit),
                quoted(text)
            ));
        };
        if last.is_some_and(|l| pos <= l) {
            return Some(format!("not a valid duration string: {}", quoted(text)));
        }
        last = Some(pos);
    }
    None
}

/// `query` with the underscores of its number literals taken out (`1_000` is 1000 to
/// Prometheus 3; the parser does not read them); `None` when it has none.
pub(crate) fn without_number_underscores(query: &str) -> Option<String> {
    let b = query.as_bytes();
    let mut cuts = Vec::new();
    for s in literal_starts(query) {
        if let Literal::Number(e) = lex_literal(b, s)
            && query[s..e].contains('_')
        {
            cuts.push(s..e);
        }
    }
    if cuts.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(query.len());
    let mut last = 0;
    for r in cuts {
        out.push_str(&query[last..r.start]);
        out.extend(query[r.clone()].chars().filter(|&c| c != '_'));
        last = r.end;
    }
    out.push_str(&query[last..]);
    Some(out)
}

/// A `{a="b" or c="d"}` selector: Prometheus 3.5 has no `or` between matchers, and reads it as
/// an identifier where a `,` or `}` must come.
pub(crate) fn has_or_matchers(e: &promql_parser::parser::Expr) -> bool {
    use promql_parser::parser::Expr;
    match e {
        Expr::VectorSelector(vs) => !vs.matchers.or_matchers.is_empty(),
        Expr::MatrixSelector(ms) => !ms.vs.matchers.or_matchers.is_empty(),
        Expr::Aggregate(a) => {
            has_or_matchers(&a.expr) || a.param.as_deref().is_some_and(has_or_matchers)
        }
        Expr::Unary(u) => has_or_matchers(&u.expr),
        Expr::Binary(b) => has_or_matchers(&b.lhs) || has_or_matchers(&b.rhs),
        Expr::Paren(p) => has_or_matchers(&p.expr),
        Expr::Subquery(s) => has_or_matchers(&s.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| has_or_matchers(a)),
        Expr::Extension(_) | Expr::NumberLiteral(_) | Expr::StringLiteral(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages and positions as Prometheus 3.5.3's API answered them for these queries.
    #[test]
    fn check_errors_are_placed_as_prometheus_places_them() {
        let cases = [
            (
                "x and 1",
                "set operator 'and' not allowed in binary scalar expression",
                "1:1: parse error: set operator \"and\" not allowed in binary scalar expression",
            ),
            (
                "sum(a or b and 1)",
                "set operator 'and' not allowed in binary scalar expression",
                "1:10: parse error: set operator \"and\" not allowed in binary scalar expression",
            ),
            (
                "x and on (a) group_left y",
                "no grouping allowed for 'and' operation",
                "1:1: parse error: no grouping allowed for \"and\" operation",
            ),
            (
                "x + bool y",
                "bool modifier can only be used on comparison operators",
                "1:3: parse error: bool modifier can only be used on comparison operators",
            ),
            (
                "x[5m] + 1",
                "binary expression must contain only scalar and instant vector types",
                "1:1: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "x + \"a\"",
                "binary expression must contain only scalar and instant vector types",
                "1:5: parse error: binary expression must contain only scalar and instant vector types",
            ),
            (
                "rate(x[5m])[5m]",
                "ranges only allowed for vector selectors",
                "1:12: parse error: ranges only allowed for vector selectors",
            ),
            (
                "x[5m][5m]",
                "ranges only allowed for vector selectors",
                "1:6: parse error: ranges only allowed for vector selectors",
            ),
            (
                "(x)[5m]",
                "ranges only allowed for vector selectors",
                "1:4: parse error: ranges only allowed for vector selectors",
            ),
            (
                "x @ 1 @ 2",
                "@ <timestamp> may not be set multiple times",
                "1:1: parse error: @ <timestamp> may not be set multiple times",
            ),
            (
                "x offset 1m offset 2m",
                "offset may not be set multiple times",
                "1:1: parse error: offset may not be set multiple times",
            ),
            (
                "sum(x) @ 10",
                "@ modifier must be preceded by an vector selector or matrix selector or a subquery",
                "1:1: parse error: @ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
            ),
            (
                "x @ Inf",
                "timestamp out of bounds for @ modifier: inf",
                "1:1: parse error: timestamp out of bounds for @ modifier: +Inf",
            ),
            (
                "-\"a\"",
                "unary expression only allowed on expressions of type scalar or vector, got: string",
                "1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got \"string\"",
            ),
        ];
        let more = [
            (
                "{a=~\".*\"}",
                "vector selector must contain at least one non-empty matcher",
                "1:1: parse error: vector selector must contain at least one non-empty matcher",
            ),
            (
                "sum(x) + {a=\"\"}",
                "vector selector must contain at least one non-empty matcher",
                "1:10: parse error: vector selector must contain at least one non-empty matcher",
            ),
            (
                "\"\\z\"",
                "unknown escape sequence 'z'",
                "1:1: parse error: unknown escape sequence U+007A 'z'",
            ),
            (
                "x $",
                "unexpected character: '$'",
                "1:3: parse error: unexpected character: '$'",
            ),
            (
                "x[5m:1m:1m]",
                "unexpected second colon(:) in brackets",
                "1:8: parse error: unexpected colon ':'",
            ),
            (
                "x[5m:-1m]",
                "unexpected character inside brackets: '-'",
                "1:6: parse error: duration must be greater than 0",
            ),
            (
                "x[-5m]",
                "unexpected character inside brackets: '-'",
                "1:3: parse error: duration must be greater than 0",
            ),
            (
                "x + group_left (a) y",
                "unexpected <group_left>",
                "1:5: parse error: unexpected <group_left>",
            ),
            (
                "..5",
                "unexpected character after '.': '.'",
                "1:1: parse error: unexpected character: '.'",
            ),
            (
                "x + .e5",
                "unexpected character after '.': 'e'",
                "1:5: parse error: unexpected character: '.'",
            ),
            (
                "sum(x[5m])",
                "expected type vector in aggregation expression, got matrix",
                "1:5: parse error: expected type instant vector in aggregation expression, got range vector",
            ),
            (
                "topk(\"a\", x)",
                "expected type scalar in aggregation expression, got string",
                "1:6: parse error: expected type scalar in aggregation parameter, got string",
            ),
            (
                "sum() by (a)",
                "no arguments for aggregate expression 'sum' provided",
                "1:1: parse error: no arguments for aggregate expression provided",
            ),
        ];
        for (q, msg, want) in cases.into_iter().chain(more) {
            assert_eq!(placed_check_error(q, msg).as_deref(), Some(want), "{q}");
        }
    }

    /// Queries the parser takes and Prometheus 3.5.3 refuses, with its answers.
    #[test]
    fn queries_prometheus_refuses_are_refused() {
        for (q, want) in [
            (
                "x{a=\"b\" or c=\"d\"}",
                "1:9: parse error: unexpected identifier \"or\" in label matching, expected \",\" or \"}\"",
            ),
            (
                "{a=\"b\" or c=\"d\"}",
                "1:8: parse error: unexpected identifier \"or\" in label matching, expected \",\" or \"}\"",
            ),
            (
                "x @ 1e20",
                "1:1: parse error: timestamp out of bounds for @ modifier: 100000000000000000000.000000",
            ),
            (
                "avg(x[5m:1m] @ 1e30)",
                "1:5: parse error: timestamp out of bounds for @ modifier: 1000000000000000019884624838656.000000",
            ),
            (
                "1 unless on(a) x",
                "1:1: parse error: vector matching only allowed between instant vectors",
            ),
        ] {
            match crate::promql::parse(q) {
                Err(crate::promql::PromqlError::Parse(e)) => assert_eq!(e, want, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        assert!(crate::promql::parse("x @ 1e9").is_ok());
    }

    /// Literals as Prometheus 3.5.3's lexer read them (its answers to these queries).
    #[test]
    fn literals_are_read_as_prometheus_reads_them() {
        for (q, want) in [
            (
                "5x",
                "1:1: parse error: bad number or duration syntax: \"5\"",
            ),
            (
                "1.2.3",
                "1:1: parse error: bad number or duration syntax: \"1.2.\"",
            ),
            (
                "1e",
                "1:1: parse error: bad number or duration syntax: \"1e\"",
            ),
            (
                "1e+",
                "1:1: parse error: bad number or duration syntax: \"1e+\"",
            ),
            (
                "1e5x",
                "1:1: parse error: bad number or duration syntax: \"1e5\"",
            ),
            (
                "1.5e3.2",
                "1:1: parse error: bad number or duration syntax: \"1.5e3.\"",
            ),
            (
                "0xg",
                "1:1: parse error: bad number or duration syntax: \"0x\"",
            ),
            (
                "0x1p3",
                "1:1: parse error: bad number or duration syntax: \"0x1\"",
            ),
            (
                "1__0",
                "1:1: parse error: bad number or duration syntax: \"1__\"",
            ),
            (
                "1_",
                "1:1: parse error: bad number or duration syntax: \"1_\"",
            ),
            (
                "1._5",
                "1:1: parse error: bad number or duration syntax: \"1._\"",
            ),
            (
                "1ee5",
                "1:1: parse error: bad number or duration syntax: \"1ee\"",
            ),
            (
                "1e5e5",
                "1:1: parse error: bad number or duration syntax: \"1e5e\"",
            ),
            (
                "5m5x",
                "1:1: parse error: bad number or duration syntax: \"5m5\"",
            ),
            (
                "5mx",
                "1:1: parse error: bad number or duration syntax: \"5mx\"",
            ),
            (
                "5y5y",
                "1:1: parse error: bad number or duration syntax: \"5y5\"",
            ),
            (
                "x[1h30]",
                "1:3: parse error: bad number or duration syntax: \"1h30\"",
            ),
            (
                "x[5smh]",
                "1:3: parse error: bad number or duration syntax: \"5sm\"",
            ),
            (
                "x offset 5x",
                "1:10: parse error: bad number or duration syntax: \"5\"",
            ),
            (
                "count by (1a) (x)",
                "1:11: parse error: bad number or duration syntax: \"1\"",
            ),
            (
                "x[1.5m]",
                "1:3: parse error: unknown unit \".\" in duration \"1.5m\"",
            ),
            (
                "x[5m:1.5s]",
                "1:6: parse error: unknown unit \".\" in duration \"1.5s\"",
            ),
            (
                ".5.",
                "1:1: parse error: error parsing number: strconv.ParseFloat: parsing \".5.\": invalid syntax",
            ),
        ] {
            assert_eq!(literal_error(q).as_deref(), Some(want), "{q}");
        }
        for q in [
            "1", "1.5", ".5", "1e5", "1E-3", "0x1F", "1_000", "5m", "1h30m", "5ms", "x1[5m]",
        ] {
            assert_eq!(literal_error(q), None, "{q}");
        }
        assert_eq!(
            without_number_underscores("x * 1_000 + 2_5").as_deref(),
            Some("x * 1000 + 25")
        );
        assert_eq!(without_number_underscores("x_1 * 10"), None);
    }

    /// Prometheus 3.5.3's answers to these queries.
    #[test]
    fn malformed_groupings_and_timestamps() {
        for (q, want) in [
            (
                "sum by a (x)",
                "1:8: parse error: unexpected identifier \"a\" in grouping opts, expected \"(\"",
            ),
            (
                "count by (,a) (x)",
                "1:11: parse error: unexpected \",\" in grouping opts, expected label",
            ),
            (
                "sum(x) by",
                "1:10: parse error: unexpected end of input in grouping opts, expected \"(\"",
            ),
            (
                "sum by (a) (x) by (b)",
                "1:16: parse error: unexpected <by>",
            ),
            (
                "sum without (a) by (b) (x)",
                "1:17: parse error: unexpected <by> in aggregation",
            ),
            (
                "sum by (job) x",
                "1:14: parse error: unexpected identifier \"x\" in aggregation",
            ),
            (
                "x + ignoring(a) on(b) y",
                "1:17: parse error: unexpected <on>",
            ),
            (
                "x + on (a) group_left(b) group_right y",
                "1:26: parse error: unexpected <group_right>",
            ),
            ("x == on() bool y", "1:11: parse error: unexpected <bool>"),
            ("x > bool bool y", "1:10: parse error: unexpected <bool>"),
            (
                "x - on (a) group_left group_left y",
                "1:23: parse error: unexpected <group_left> in grouping opts, expected \"(\"",
            ),
            (
                "x @ start(1)",
                "1:11: parse error: unexpected number \"1\" in @, expected timestamp",
            ),
            (
                "x @ -foo",
                "1:6: parse error: unexpected identifier \"foo\" in @, expected timestamp",
            ),
            (
                "x[10m] @ start",
                "1:15: parse error: unexpected end of input in @, expected timestamp",
            ),
            (
                "x @ foo",
                "1:5: parse error: unexpected identifier \"foo\" in @, expected timestamp",
            ),
        ] {
            assert_eq!(misplaced_keyword_error(q).as_deref(), Some(want), "{q}");
        }
        for q in [
            "sum by (a, b,) (x) @ start()",
            "sum(x) by (a) + on (a) group_left (b) y",
            "x == bool on (a) y",
            "x + ignoring (a) group_right y",
        ] {
            assert_eq!(misplaced_keyword_error(q), None, "{q}");
        }
    }

    #[test]
    fn dangling_operators_end_the_input_too_soon() {
        for (q, want) in [
            ("1 + ", "1:5: parse error: unexpected end of input"),
            ("x + y +", "1:8: parse error: unexpected end of input"),
            ("1 == bool", "1:10: parse error: unexpected end of input"),
            ("x and", "1:6: parse error: unexpected end of input"),
        ] {
            assert_eq!(end_of_input_error(q).as_deref(), Some(want), "{q}");
        }
        assert_eq!(end_of_input_error("x + y"), None);
    }
}
