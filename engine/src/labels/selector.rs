//! A parser for series selectors (`metric{a="b", c=~"d"}`), the form tools take with `--match`.

use super::{METRIC_NAME, MatchType, Matcher, MatcherError};

/// A selector could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text is not a selector; `pos` is the byte position of the problem.
    #[error("invalid selector at position {pos}: {msg}")]
    Syntax { pos: usize, msg: String },
    /// A regex in the selector did not compile.
    #[error(transparent)]
    Matcher(#[from] MatcherError),
    /// Every matcher matches the empty value, so the selector would select every series; the
    /// caller must add a matcher that narrows it.
    #[error("vector selector must contain at least one non-empty matcher")]
    NoNonEmptyMatcher,
}

/// Parses `name{...}`, `{...}` or a bare metric name into matchers.
///
/// Values are double-, single- or back-quoted strings with Go escapes, as in PromQL. A selector
/// must contain at least one matcher that does not match the empty string, as Prometheus requires.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, SelectorError> {
    let mut p = Parser { s, pos: 0 };
    let mut out = Vec::new();
    p.ws();
    let name = p.ident();
    if !name.is_empty() {
        out.push(Matcher::equal(METRIC_NAME, name));
    }
    p.ws();
    if p.eat('{') {
        loop {
            p.ws();
            if p.eat('}') {
                break;
            }
            let lname = if p.peek() == Some('"') {
                p.string()?
            } else {
                p.ident().to_string()
            };
            if lname.is_empty() {
                return Err(p.err("expected label name"));
            }
            p.ws();
            let typ = if p.eat_str("=~") {
                MatchType::Regexp
            } else if p.eat_str("!~") {
                MatchType::NotRegexp
            } else if p.eat_str("!=") {
                MatchType::NotEqual
            } else if p.eat('=') {
                MatchType::Equal
            } else {
                return Err(p.err("expected one of =, !=, =~, !~"));
            };
            p.ws();
            let value = p.string()?;
            out.push(Matcher::new(typ, lname, value)?);
            p.ws();
            if p.eat(',') {
                continue;
            }
            if p.eat('}') {
                break;
            }
            return Err(p.err("expected ',' or '}'"));
        }
    }
    p.ws();
    if p.pos != s.len() {
        return Err(p.err("unexpected trailing characters"));
    }
    if out.is_empty() || out.iter().all(Matcher::matches_empty) {
        return Err(SelectorError::NoNonEmptyMatcher);
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, msg: &str) -> SelectorError {
        SelectorError::Syntax {
            pos: self.pos,
            msg: msg.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn ws(&mut self) {
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, t: &str) -> bool {
        if self.s[self.pos..].starts_with(t) {
            self.pos += t.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            let ok = c == '_'
                || c == ':'
                || c.is_ascii_alphabetic()
                || (self.pos > start && c.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    fn string(&mut self) -> Result<String, SelectorError> {
        let quote = match self.peek() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(self.err("expected quoted string")),
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            self.pos += c.len_utf8();
            if c == quote {
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                let Some(e) = self.peek() else {
                    return Err(self.err("unterminated escape"));
                };
                self.pos += e.len_utf8();
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'a' => out.push('\u{07}'),
                    'b' => out.push('\u{08}'),
                    'f' => out.push('\u{0c}'),
                    'v' => out.push('\u{0b}'),
                    '\\' | '"' | '\'' => out.push(e),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex = self
                            .s
                            .get(self.pos..self.pos + n)
                            .ok_or_else(|| self.err("short escape"))?;
                        let v =
                            u32::from_str_radix(hex, 16).map_err(|_| self.err("bad hex escape"))?;
                        out.push(char::from_u32(v).ok_or_else(|| self.err("bad code point"))?);
                        self.pos += n;
                    }
                    _ => return Err(self.err("unknown escape")),
                }
            } else {
                out.push(c);
            }
        }
    }
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
}
