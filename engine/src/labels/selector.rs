//! A parser for series selectors (`metric{a="b", c=~"d"}`), the form `match[]` parameters and
//! tools' `--match` take. It accepts what Prometheus's metric-selector parser accepts and words
//! and places its errors the same way (`1:5: parse error: unexpected "("`), so an API answer
//! for a bad selector reads as Prometheus's does.

use super::{METRIC_NAME, MatchType, Matcher};
use crate::go_format::{push_quoted, quoted_rune, unicode_format};

/// A selector could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text is not a selector (or a regex in it does not compile): the message and its
    /// place, line and byte column from 1 (`None` for empty text, which has no place).
    #[error("{}: parse error: {msg}", place.map_or("unknown position".to_string(), |(l, c)| format!("{l}:{c}")))]
    Syntax {
        place: Option<(usize, usize)>,
        msg: String,
    },
    /// Every matcher matches the empty value, so the selector would select every series; the
    /// caller must add a matcher that narrows it.
    #[error("vector selector must contain at least one non-empty matcher")]
    NoNonEmptyMatcher,
}

/// Parses `name{...}`, `{...}` or a bare metric name into matchers.
///
/// Values are double-, single- or back-quoted strings with Go escapes, as in PromQL; a quoted
/// label name may stand alone as the metric name (`{"my.metric", job="a"}`). A selector must
/// contain at least one matcher that does not match the empty string, as Prometheus requires.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut lx = Lexer { s, pos: 0 };
    let mut out = Vec::new();
    let (at, first) = lx.outer()?;
    let next = match first {
        Tok::Word(w) | Tok::Keyword(w) | Tok::Aggr(w) | Tok::Op(w) | Tok::Quoted(w)
            if w.starts_with(is_word_start) =>
        {
            out.push(Matcher::equal(METRIC_NAME, w));
            lx.outer()?
        }
        Tok::Eof if s.is_empty() => {
            return Err(SelectorError::Syntax {
                place: None,
                msg: "unexpected end of input".into(),
            });
        }
        Tok::Eof => return Err(lx.error(at, "unexpected end of input".into())),
        t => (at, t),
    };
    let (at, last) = match next {
        (_, Tok::Punct("{")) => {
            lx.braces(&mut out)?;
            lx.outer()?
        }
        t => t,
    };
    if last != Tok::Eof {
        return Err(lx.error(at, format!("unexpected {}", last.describe())));
    }
    if out.is_empty() || out.iter().all(Matcher::matches_empty) {
        return Err(SelectorError::NoNonEmptyMatcher);
    }
    Ok(out)
}

/// Why a matcher's regex is refused, worded as Prometheus's parser words it
/// (`error parsing regexp: missing closing ): ...`), or `None` when a selection compiles it.
pub fn regex_refusal(pattern: &str) -> Option<String> {
    Matcher::new(MatchType::Regexp, METRIC_NAME, pattern)
        .err()
        .map(|e| format!("{REGEX_ERROR}{}", e.reason))
}

/// How a matcher regex RE2 refuses is reported, before the reason.
const REGEX_ERROR: &str = "error parsing regexp: ";

/// A token, as Prometheus's lexer sorts them (for parsing and for naming them in errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// An identifier: a metric name outside braces, a label name inside.
    Word(&'a str),
    /// A string literal, quotes included.
    Str(&'a str),
    Number(&'a str),
    Duration(&'a str),
    /// Punctuation named by its text: `(`, `[`, `{`, `}`, `,`, `=`.
    Punct(&'static str),
    /// An operator, `<op:+>` in errors.
    Op(&'a str),
    /// `offset`, `by` and the like, `<offset>` in errors.
    Keyword(&'a str),
    /// An aggregation name, `<aggr:sum>` in errors.
    Aggr(&'a str),
    /// `start` and `end`, quoted in errors.
    Quoted(&'a str),
    At,
    Eof,
}

impl Tok<'_> {
    /// The token as Prometheus's parser names it after "unexpected".
    fn describe(&self) -> String {
        let mut out = String::new();
        match *self {
            Tok::Word(w) => {
                out.push_str("identifier ");
                push_quoted(&mut out, w);
            }
            Tok::Str(v) => short_quoted(&mut out, "string ", v),
            Tok::Number(v) => short_quoted(&mut out, "number ", v),
            Tok::Duration(v) => short_quoted(&mut out, "duration ", v),
            Tok::Punct(p) => push_quoted(&mut out, p),
            Tok::Quoted(w) => push_quoted(&mut out, w),
            Tok::Op(o) => out = format!("<op:{o}>"),
            Tok::Keyword(k) => out = format!("<{k}>"),
            Tok::Aggr(a) => out = format!("<aggr:{a}>"),
            Tok::At => out.push_str("\"<Item 57400>\" <op:@>"),
            Tok::Eof => out.push_str("end of input"),
        }
        out
    }
}

/// `kind` and the first ten characters of `v` quoted, `...` when there were more.
fn short_quoted(out: &mut String, kind: &str, v: &str) {
    out.push_str(kind);
    match v.char_indices().nth(10) {
        Some((cut, _)) => {
            push_quoted(out, &v[..cut]);
            out.push_str("...");
        }
        None => push_quoted(out, v),
    }
}

fn is_word_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

/// Words the lexer gives a kind of their own (matched lower-cased, as Prometheus does).
fn classify(w: &str) -> Tok<'_> {
    match w.to_ascii_lowercase().as_str() {
        "inf" | "nan" => Tok::Number(w),
        "and" | "or" | "unless" | "atan2" => Tok::Op(w),
        "sum" | "avg" | "count" | "min" | "max" | "group" | "stddev" | "stdvar" | "topk"
        | "bottomk" | "count_values" | "quantile" | "limitk" | "limit_ratio" => Tok::Aggr(w),
        "offset" | "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" | "bool" => {
            Tok::Keyword(w)
        }
        "start" | "end" => Tok::Quoted(w),
        _ => Tok::Word(w),
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

struct Lexer<'a> {
    s: &'a str,
    pos: usize,
}

type Lexed<'a> = Result<(usize, Tok<'a>), SelectorError>;

impl<'a> Lexer<'a> {
    fn error(&self, at: usize, msg: String) -> SelectorError {
        let before = &self.s.as_bytes()[..at.min(self.s.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let col = match before.iter().rposition(|&b| b == b'\n') {
            Some(nl) => at - nl,
            None => at + 1,
        };
        SelectorError::Syntax {
            place: Some((line, col)),
            msg,
        }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    /// The next token outside braces.
    fn outer(&mut self) -> Lexed<'a> {
        loop {
            self.take_while(is_space);
            if self.peek() != Some('#') {
                break;
            }
            self.take_while(|c| c != '\n');
        }
        let at = self.pos;
        let Some(c) = self.bump() else {
            return Ok((at, Tok::Eof));
        };
        let tok = match c {
            c if is_word_start(c) => {
                self.pos = at;
                classify(self.take_while(|c| is_word_start(c) || c.is_ascii_digit()))
            }
            '0'..='9' | '.' if c != '.' || self.peek().is_some_and(|d| d.is_ascii_digit()) => {
                self.pos = at;
                return self.number();
            }
            '"' | '\'' | '`' => {
                self.pos = at;
                Tok::Str(self.string()?.0)
            }
            '(' => Tok::Punct("("),
            '[' => Tok::Punct("["),
            '{' => Tok::Punct("{"),
            ',' => Tok::Punct(","),
            '@' => Tok::At,
            // Prometheus's lexer reads the parenthesis before it finds it unmatched.
            ')' => {
                return Err(self.error(self.pos, "unexpected right parenthesis ')'".into()));
            }
            ']' => return Err(self.error(at, "unexpected right bracket ']'".into())),
            '=' => match self.peek() {
                Some('=') => self.op(at, 1),
                Some('~') => {
                    return Err(self.error(at, "unexpected character after '=': '~'".into()));
                }
                _ => Tok::Punct("="),
            },
            '!' => match self.bump() {
                Some('=') => self.op(at, 0),
                c => {
                    let c = c.unwrap_or('\u{FFFD}');
                    return Err(self.error(
                        at,
                        format!("unexpected character after '!': {}", quoted_rune(c)),
                    ));
                }
            },
            '<' | '>' => {
                let n = usize::from(self.peek() == Some('='));
                self.op(at, n)
            }
            '+' | '-' | '*' | '/' | '%' | '^' => self.op(at, 0),
            c => return Err(self.error(at, format!("unexpected character: {}", quoted_rune(c)))),
        };
        Ok((at, tok))
    }

    /// An operator starting at `at`, `more` bytes past the current position.
    fn op(&mut self, at: usize, more: usize) -> Tok<'a> {
        self.pos += more;
        Tok::Op(&self.s[at..self.pos])
    }

    /// A number (`1`, `.5`, `1e3`, `0x1f`) or a duration (`5m`, `1h30m`) at the position.
    fn number(&mut self) -> Lexed<'a> {
        let at = self.pos;
        match lex_literal(self.s.as_bytes(), at) {
            Literal::Number(end) => {
                self.pos = end;
                Ok((at, Tok::Number(&self.s[at..end])))
            }
            Literal::Duration(end) => {
                self.pos = end;
                Ok((at, Tok::Duration(&self.s[at..end])))
            }
            Literal::Bad(end) => {
                self.pos = end.min(self.s.len());
                let mut msg = "bad number or duration syntax: ".to_string();
                push_quoted(&mut msg, &self.s[at..self.pos]);
                Err(self.error(at, msg))
            }
        }
    }

    /// A string literal at the position: its text with quotes, and its value.
    fn string(&mut self) -> Result<(&'a str, String), SelectorError> {
        let at = self.pos;
        let quote = self.bump().unwrap_or('"');
        let mut value = String::new();
        loop {
            let c = self.bump();
            match c {
                None if quote == '`' => {
                    return Err(self.error(at, "unterminated raw string".into()));
                }
                None | Some('\n') if quote != '`' => {
                    return Err(self.error(at, "unterminated quoted string".into()));
                }
                Some(c) if c == quote => return Ok((&self.s[at..self.pos], value)),
                Some('\\') if quote != '`' => {
                    let v = self.escape(quote).map_err(|m| self.error(at, m))?;
                    value.push(v);
                }
                Some(c) => value.push(c),
                None => unreachable!("handled above"),
            }
        }
    }

    /// The character an escape (after its backslash) stands for, or Prometheus's complaint.
    fn escape(&mut self, quote: char) -> Result<char, String> {
        let Some(e) = self.bump() else {
            return Err("escape sequence not terminated".into());
        };
        let (digits, radix, max) = match e {
            'a' => return Ok('\u{07}'),
            'b' => return Ok('\u{08}'),
            'f' => return Ok('\u{0c}'),
            'n' => return Ok('\n'),
            'r' => return Ok('\r'),
            't' => return Ok('\t'),
            'v' => return Ok('\u{0b}'),
            '\\' => return Ok('\\'),
            c if c == quote => return Ok(c),
            '0'..='7' => {
                self.pos -= 1;
                (3, 8, 255)
            }
            'x' => (2, 16, 255),
            'u' => (4, 16, 0x10FFFF),
            'U' => (8, 16, 0x10FFFF),
            c => return Err(format!("unknown escape sequence {}", unicode_format(c))),
        };
        let mut v: u32 = 0;
        for _ in 0..digits {
            match self.bump() {
                None => return Err("escape sequence not terminated".into()),
                Some(d) => match d.to_digit(radix) {
                    Some(d) => v = v * radix + d,
                    None => {
                        return Err(format!(
                            "illegal character {} in escape sequence",
                            unicode_format(d)
                        ));
                    }
                },
            }
        }
        match char::from_u32(v).filter(|_| v <= max) {
            Some(c) => Ok(c),
            None => Err("escape sequence is an invalid Unicode code point".into()),
        }
    }

    /// The next token inside braces.
    fn inner(&mut self) -> Lexed<'a> {
        self.take_while(is_space);
        let at = self.pos;
        let Some(c) = self.bump() else {
            return Err(self.error(at, "unexpected end of input inside braces".into()));
        };
        let tok = match c {
            ',' => Tok::Punct(","),
            '}' => Tok::Punct("}"),
            '=' if self.peek() == Some('~') => self.op(at, 1),
            '=' => Tok::Punct("="),
            '!' => match self.peek() {
                Some('=' | '~') => self.op(at, 1),
                c => {
                    let c = c.unwrap_or('\u{FFFD}');
                    return Err(self.error(
                        at,
                        format!(
                            "unexpected character after '!' inside braces: {}",
                            quoted_rune(c)
                        ),
                    ));
                }
            },
            '"' | '\'' | '`' => {
                self.pos = at;
                Tok::Str(self.string()?.0)
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                self.pos = at;
                Tok::Word(self.take_while(|c| c.is_ascii_alphanumeric() || c == '_'))
            }
            '{' => return Err(self.error(at, "unexpected left brace '{'".into())),
            c => {
                return Err(self.error(
                    at,
                    format!("unexpected character inside braces: {}", quoted_rune(c)),
                ));
            }
        };
        Ok((at, tok))
    }

    /// The matchers between braces, the `{` already read.
    fn braces(&mut self, out: &mut Vec<Matcher>) -> Result<(), SelectorError> {
        let unexpected = |lx: &Self, (at, t): (usize, Tok<'_>), expected: &str| {
            lx.error(
                at,
                format!(
                    "unexpected {} in label matching, expected {expected}",
                    t.describe()
                ),
            )
        };
        loop {
            let (at, t) = self.inner()?;
            let name = match t {
                Tok::Punct("}") => return Ok(()),
                Tok::Word(w) => w.to_string(),
                Tok::Str(raw) => self.value_of(at, raw)?,
                t => return Err(unexpected(self, (at, t), "identifier or \"}\"")),
            };
            let op = self.inner()?;
            let typ = match op.1 {
                Tok::Punct("=") => MatchType::Equal,
                Tok::Op("!=") => MatchType::NotEqual,
                Tok::Op("=~") => MatchType::Regexp,
                Tok::Op("!~") => MatchType::NotRegexp,
                Tok::Punct(p @ ("," | "}")) if matches!(t, Tok::Str(_)) => {
                    // A lone quoted name is the metric name.
                    out.push(Matcher::equal(METRIC_NAME, name));
                    if p == "}" {
                        return Ok(());
                    }
                    continue;
                }
                _ if matches!(t, Tok::Str(_)) => {
                    return Err(unexpected(self, op, "\",\" or \"}\""));
                }
                _ => return Err(unexpected(self, op, "label matching operator")),
            };
            let value = match self.inner()? {
                (vat, Tok::Str(raw)) => self.value_of(vat, raw)?,
                v => return Err(unexpected(self, v, "string")),
            };
            let m = Matcher::new(typ, name, value)
                .map_err(|e| self.error(at, format!("{REGEX_ERROR}{}", e.reason)))?;
            out.push(m);
            match self.inner()? {
                (_, Tok::Punct(",")) => {}
                (_, Tok::Punct("}")) => return Ok(()),
                t => return Err(unexpected(self, t, "\",\" or \"}\"")),
            }
        }
    }

    /// The value of the string literal `raw` lexed at `at`.
    fn value_of(&self, at: usize, raw: &'a str) -> Result<String, SelectorError> {
        let mut again = Lexer { s: self.s, pos: at };
        again
            .string()
            .map(|(_, v)| v)
            .map_err(|_| self.error(at, format!("bad string {raw}")))
    }
}

/// What Prometheus's lexer reads from a number or duration literal.
#[derive(Debug, PartialEq)]
pub(crate) enum Literal {
    /// A number token ending at this index (it may still fail to parse as a float).
    Number(usize),
    /// A duration token ending at this index.
    Duration(usize),
    /// Refused after reading up to this index: `bad number or duration syntax`.
    Bad(usize),
}

/// Reads the number or duration literal at `s` as Prometheus 3's lexer does: digits with at
/// most one `.` and one exponent, `_` between digits, hexadecimal after `0x`; failing that, a
/// duration (`5m`, `1h30m`, units in `smhdwy`); failing that, refused with what was read.
pub(crate) fn lex_literal(b: &[u8], s: usize) -> Literal {
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let in_set = |c: u8, set: &[u8]| c != 0 && set.contains(&c);
    let mut i = s;
    let number_ok = 'number: {
        if at(i) == b'0' && matches!(at(i + 1), b'x' | b'X') {
            i += 2;
            if at(i) == b'_' {
                i += 1;
            }
            while at(i).is_ascii_hexdigit() || at(i) == b'_' {
                i += 1;
                if b[i - 1] == b'_' && !at(i).is_ascii_hexdigit() {
                    if in_set(at(i), b"._") {
                        i += 1;
                    }
                    return Literal::Bad(i);
                }
            }
            break 'number !at(i).is_ascii_alphanumeric();
        }
        if at(i) == b'.' {
            i += 1;
        }
        if at(i).is_ascii_digit() {
            i += 1;
        }
        let (mut dot, mut exp) = (false, false);
        while at(i).is_ascii_digit() || in_set(at(i), b"._eE") {
            let c = b[i];
            i += 1;
            let anti: &[u8] = match c {
                b'.' if dot => {
                    if in_set(at(i), b"_.") {
                        i += 1;
                    }
                    return Literal::Bad(i);
                }
                b'.' => {
                    dot = true;
                    b"_."
                }
                b'e' | b'E' if exp => {
                    if in_set(at(i), b"._eE") {
                        i += 1;
                    }
                    return Literal::Bad(i);
                }
                b'e' | b'E' => {
                    exp = true;
                    if in_set(at(i), b"._eE") {
                        return Literal::Bad(i + 1);
                    }
                    if in_set(at(i), b"+-") {
                        i += 1;
                    }
                    b""
                }
                b'_' => b"._eE",
                _ => b"",
            };
            if in_set(at(i), anti) {
                return Literal::Bad(i + 1);
            }
        }
        // An exponent, its sign or an underscore may not end the number.
        if in_set(b[i - 1], b"eE+-_") {
            return Literal::Bad(i);
        }
        !at(i).is_ascii_alphanumeric()
    };
    if number_ok {
        return Literal::Number(i);
    }
    // The rest of a duration: a unit, then more digits and units.
    if !in_set(at(i), b"smhdwy") {
        return Literal::Bad(i);
    }
    i += 1;
    if at(i) == b's' {
        i += 1;
    }
    while at(i).is_ascii_digit() {
        while at(i).is_ascii_digit() {
            i += 1;
        }
        if !in_set(at(i), b"smhdw") {
            return Literal::Bad(i);
        }
        i += 1;
        if at(i) == b's' {
            i += 1;
        }
    }
    if at(i).is_ascii_alphanumeric() {
        // The lexer reads the character before refusing it.
        let width = std::str::from_utf8(&b[i..])
            .ok()
            .and_then(|r| r.chars().next());
        return Literal::Bad(i + width.map_or(1, char::len_utf8));
    }
    Literal::Duration(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let m = parse_selector(r#"up{job="api", code=~"5..",x!="",y!~'a|b'}"#).unwrap();
        let s: Vec<String> = m.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            s,
            [
                r#"__name__="up""#,
                r#"job="api""#,
                r#"code=~"5..""#,
                r#"x!="""#,
                r#"y!~"a|b""#
            ]
        );
        assert_eq!(parse_selector("up").unwrap().len(), 1);
        assert_eq!(parse_selector(r#"{"a.b"="c\n"}"#).unwrap()[0].value, "c\n");
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "{}",
            r#"{a=""}"#,
            "up{",
            r#"up{a="b""#,
            r#"up{a~"b"}"#,
            "up} ",
            r#"{a=~"("}"#,
        ] {
            assert!(parse_selector(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_read_as_prometheus_writes_them() {
        // Prometheus 3.5.3's messages for these `match[]` values.
        let cases = [
            ("rate(x[5m])", r#"1:5: parse error: unexpected "(""#),
            ("x[5m]", r#"1:2: parse error: unexpected "[""#),
            ("x offset 5m", "1:3: parse error: unexpected <offset>"),
            ("x + y", "1:3: parse error: unexpected <op:+>"),
            ("1", r#"1:1: parse error: unexpected number "1""#),
            ("x y", r#"1:3: parse error: unexpected identifier "y""#),
            ("x sum", "1:3: parse error: unexpected <aggr:sum>"),
            ("x end", r#"1:3: parse error: unexpected "end""#),
            ("x 5ms", r#"1:3: parse error: unexpected duration "5ms""#),
            (
                "x 5x",
                r#"1:3: parse error: bad number or duration syntax: "5""#,
            ),
            (
                r#"x "abcdefghijklmno""#,
                r#"1:3: parse error: unexpected string "\"abcdefghi"..."#,
            ),
            (
                "x@",
                r#"1:2: parse error: unexpected "<Item 57400>" <op:@>"#,
            ),
            ("x)", "1:3: parse error: unexpected right parenthesis ')'"),
            ("x ]", "1:3: parse error: unexpected right bracket ']'"),
            ("x.y", "1:2: parse error: unexpected character: '.'"),
            (
                "x !",
                "1:3: parse error: unexpected character after '!': '\u{FFFD}'",
            ),
            (
                r#"x{a="b" c="d"}"#,
                r#"1:9: parse error: unexpected identifier "c" in label matching, expected "," or "}""#,
            ),
            (
                "x{a=b}",
                r#"1:5: parse error: unexpected identifier "b" in label matching, expected string"#,
            ),
            (
                "x{a}",
                r#"1:4: parse error: unexpected "}" in label matching, expected label matching operator"#,
            ),
            (
                "{=}",
                r#"1:2: parse error: unexpected "=" in label matching, expected identifier or "}""#,
            ),
            (
                r#"{a="b"!="c"}"#,
                r#"1:7: parse error: unexpected <op:!=> in label matching, expected "," or "}""#,
            ),
            (
                "x{1=\"a\"}",
                "1:3: parse error: unexpected character inside braces: '1'",
            ),
            (
                "x{a!}",
                "1:4: parse error: unexpected character after '!' inside braces: '}'",
            ),
            ("x{a{", "1:4: parse error: unexpected left brace '{'"),
            (
                "x{a=\"b\"",
                "1:8: parse error: unexpected end of input inside braces",
            ),
            ("x{a=\"b}", "1:5: parse error: unterminated quoted string"),
            ("x{a=`b", "1:5: parse error: unterminated raw string"),
            (
                r#"x{a="\z"}"#,
                "1:5: parse error: unknown escape sequence U+007A 'z'",
            ),
            (
                r#"x{a="\x4"}"#,
                r#"1:5: parse error: illegal character U+0022 '"' in escape sequence"#,
            ),
            (
                "x{a=\"b\",\nc=1}",
                "2:3: parse error: unexpected character inside braces: '1'",
            ),
            ("", "unknown position: parse error: unexpected end of input"),
            ("   ", "1:4: parse error: unexpected end of input"),
            (
                r#"{a=~"a(b"}"#,
                "1:2: parse error: error parsing regexp: missing closing ): `a(b`",
            ),
            (
                r#"{a=~"a**"}"#,
                "1:2: parse error: error parsing regexp: invalid nested repetition operator: `**`",
            ),
            (
                r#"{a=~"x[a[:foo:]]"}"#,
                "1:2: parse error: error parsing regexp: invalid character class range: `[:foo:]`",
            ),
            (
                r#"{a=~"*"}"#,
                "1:2: parse error: error parsing regexp: missing argument to repetition operator: `*`",
            ),
        ];
        for (text, want) in cases {
            let got = parse_selector(text).unwrap_err().to_string();
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn takes_what_prometheus_takes() {
        for (text, n) in [
            (r#"{"a.b", c="d"}"#, 2),
            (r#"x{a="b",}"#, 2),
            ("x:y", 1),
            ("sum", 1),
            (r#"x{a="\141"} # comment"#, 2),
            (r#"{"__name__"="x", a='b'}"#, 2),
            (r#"x{__name__="y"}"#, 2),
        ] {
            let m = parse_selector(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.len(), n, "{text}");
        }
        let m = parse_selector(r#"{"a.b", c="d"}"#).unwrap();
        assert_eq!(
            (m[0].name.as_str(), m[0].value.as_str()),
            (METRIC_NAME, "a.b")
        );
        assert_eq!(parse_selector(r#"x{a="\141"}"#).unwrap()[1].value, "a");
    }
}
