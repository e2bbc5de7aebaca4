//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus's regex semantics: RE2 syntax, fully
//! anchored, `.` matching newlines (Prometheus 3.x).

use std::fmt;

use regex::Regex;
use regex_syntax::hir::{Hir, HirKind, Literal};

use crate::error::{ECHO_BYTES, MESSAGE_BYTES, clip};

/// The kind of comparison a matcher makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// `=`: value equals.
    Equal,
    /// `!=`: value differs.
    NotEqual,
    /// `=~`: value matches the anchored regex.
    Regexp,
    /// `!~`: value does not match the anchored regex.
    NotRegexp,
}

impl MatchType {
    /// The operator as written in PromQL.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }
}

/// A matcher's regex did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MatcherError {
    /// Label the matcher was for.
    pub name: String,
    /// The pattern as given.
    pub pattern: String,
    /// The regex engine's explanation.
    pub reason: String,
}

/// The pattern and name are the user's and may be megabytes long: they are cut to a length an
/// error message can carry.
impl fmt::Display for MatcherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid regex {:?} for label {:?}: {}",
            clip(&self.pattern, ECHO_BYTES),
            clip(&self.name, ECHO_BYTES),
            clip(&self.reason, MESSAGE_BYTES)
        )
    }
}

/// Why Go's regexp package, whose RE2 syntax Prometheus uses, refuses `pattern`, in its words
/// (`missing closing ): `a(b``), or `None` when it takes it. Besides mapping this crate's
/// parse errors, it refuses what RE2 refuses and this crate takes: a repetition of a
/// repetition (`a**`) and counts above 1000.
pub fn re2_refusal(pattern: &str) -> Option<String> {
    use regex_syntax::ast::{self, Ast, ErrorKind, RepetitionKind, RepetitionRange};
    let ast = match ast::parse::Parser::new().parse(pattern) {
        Ok(ast) => ast,
        Err(e) => {
            let span = e.span();
            // A missing repetition's span is empty: the operator is the character there.
            let end = if span.end.offset > span.start.offset {
                span.end.offset
            } else {
                pattern[span.start.offset..]
                    .chars()
                    .next()
                    .map_or(span.start.offset, |c| span.start.offset + c.len_utf8())
            };
            let part = pattern.get(span.start.offset..end).unwrap_or("");
            let from = pattern.get(span.start.offset..).unwrap_or("");
            let (what, text) = match e.kind() {
                ErrorKind::GroupUnclosed => ("missing closing )", pattern),
                ErrorKind::GroupUnopened => ("unexpected )", pattern),
                ErrorKind::ClassUnclosed => ("missing closing ]", from),
                ErrorKind::RepetitionMissing => ("missing argument to repetition operator", part),
                ErrorKind::EscapeUnrecognized => ("invalid escape sequence", part),
                ErrorKind::RepetitionCountInvalid
                | ErrorKind::RepetitionCountDecimalEmpty
                | ErrorKind::RepetitionCountUnclosed => ("invalid repeat count", part),
                ErrorKind::ClassRangeInvalid => ("invalid character class range", part),
                ErrorKind::FlagUnrecognized | ErrorKind::GroupNameInvalid => {
                    let open = pattern[..span.start.offset].rfind("(?").unwrap_or(0);
                    let end = span.end.offset.min(pattern.len());
                    ("invalid or unsupported Perl syntax", &pattern[open..end])
                }
                kind => return Some(kind.to_string()),
            };
            return Some(format!("{what}: `{text}`"));
        }
    };
    // RE2's own limits, checked over the tree.
    let mut stack = vec![&ast];
    while let Some(a) = stack.pop() {
        match a {
            Ast::Repetition(r) => {
                if let Ast::Repetition(inner) = &*r.ast {
                    let text = &pattern[inner.op.span.start.offset..r.op.span.end.offset];
                    return Some(format!("invalid nested repetition operator: `{text}`"));
                }
                if let RepetitionKind::Range(
                    RepetitionRange::Exactly(n)
                    | RepetitionRange::AtLeast(n)
                    | RepetitionRange::Bounded(_, n),
                ) = &r.op.kind
                    && *n > 1000
                {
                    let text = &pattern[r.op.span.start.offset..r.op.span.end.offset];
                    return Some(format!("invalid repeat count: `{text}`"));
                }
                stack.push(&r.ast);
            }
            Ast::Group(g) => stack.push(&g.ast),
            Ast::ClassBracketed(c) => {
                if let Some(text) = unknown_posix_class(pattern, &c.kind) {
                    return Some(format!("invalid character class range: `{text}`"));
                }
            }
            Ast::Alternation(x) => stack.extend(x.asts.iter()),
            Ast::Concat(x) => stack.extend(x.asts.iter()),
            _ => {}
        }
    }
    // Unicode classes this crate does not know, as RE2 words it.
    if let Err(e) = regex_syntax::hir::translate::Translator::new().translate(pattern, &ast) {
        let span = e.span();
        let part = pattern
            .get(span.start.offset..span.end.offset)
            .unwrap_or("");
        return Some(match e.kind() {
            regex_syntax::hir::ErrorKind::UnicodePropertyNotFound
            | regex_syntax::hir::ErrorKind::UnicodePropertyValueNotFound => {
                format!("invalid character class range: `{part}`")
            }
            kind => kind.to_string(),
        });
    }
    None
}

/// A `[:name:]` inside a bracketed class whose name RE2 does not know (this crate reads it
/// as a nested class of those characters), as written in `pattern`.
fn unknown_posix_class<'p>(pattern: &'p str, set: &regex_syntax::ast::ClassSet) -> Option<&'p str> {
    use regex_syntax::ast::{ClassSet, ClassSetItem};
    match set {
        ClassSet::BinaryOp(op) => {
            unknown_posix_class(pattern, &op.lhs).or_else(|| unknown_posix_class(pattern, &op.rhs))
        }
        ClassSet::Item(item) => {
            let items = match item {
                ClassSetItem::Union(u) => u.items.iter().collect(),
                other => vec![other],
            };
            items.into_iter().find_map(|it| match it {
                ClassSetItem::Bracketed(b) => {
                    let text = &pattern[b.span.start.offset..b.span.end.offset];
                    if text.len() > 4 && text.starts_with("[:") && text.ends_with(":]") {
                        Some(text)
                    } else {
                        unknown_posix_class(pattern, &b.kind)
                    }
                }
                _ => None,
            })
        }
    }
}

/// What the regex of a `=~`/`!~` matcher is known to accept, found once at construction so the
/// index can take cheap paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegexShape {
    /// `.*`: every value, including the empty one.
    Any,
    /// `.+`: every non-empty value.
    NonEmpty,
    /// An alternation of literals (`a|b|c`, or a single literal): exactly these values.
    Set(Vec<String>),
    /// Values starting with this literal followed by `.*`.
    Prefix(String),
    /// Nothing cheaper is known: run the regex.
    General,
}

/// One label matcher.
#[derive(Clone)]
pub struct Matcher {
    /// The label name the matcher applies to.
    pub name: String,
    /// The value or pattern as written.
    pub value: String,
    /// The comparison.
    pub typ: MatchType,
    re: Option<Regex>,
    shape: RegexShape,
    /// A literal every value the regex accepts starts with (empty when none is known).
    prefix: String,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Matcher({self})")
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut q = String::new();
        // A name that is not a legacy identifier is quoted, as Prometheus's `Matcher.String`
        // does, so the printed selector parses back to the same matcher.
        if legacy_name(&self.name) {
            q.push_str(&self.name);
        } else {
            crate::go_format::push_quoted(&mut q, &self.name);
        }
        q.push_str(self.typ.as_str());
        crate::go_format::push_quoted(&mut q, &self.value);
        f.write_str(&q)
    }
}

/// Whether `name` is a label name in the legacy charset (`[a-zA-Z_][a-zA-Z0-9_]*`), which
/// prints without quotes.
fn legacy_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .char_indices()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.value == other.value && self.typ == other.typ
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Builds a matcher, compiling the regex for `=~`/`!~`.
    pub fn new(
        typ: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let (re, (shape, prefix)) = match typ {
            MatchType::Equal | MatchType::NotEqual => (None, (RegexShape::General, String::new())),
            MatchType::Regexp | MatchType::NotRegexp => {
                let refused = |reason| MatcherError {
                    name: name.clone(),
                    pattern: value.clone(),
                    reason,
                };
                if let Some(reason) = re2_refusal(&value) {
                    return Err(refused(reason));
                }
                let anchored = format!("^(?s:{value})$");
                let re = Regex::new(&anchored).map_err(|e| refused(e.to_string()))?;
                (Some(re), regex_shape(&value))
            }
        };
        Ok(Matcher {
            name,
            value,
            typ,
            re,
            shape,
            prefix,
        })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self::new(MatchType::Equal, name, value).expect("equality matchers always build")
    }

    /// Whether `v` (the empty string when the label is absent) satisfies the matcher.
    #[inline]
    pub fn matches(&self, v: &str) -> bool {
        match self.typ {
            MatchType::Equal => v == self.value,
            MatchType::NotEqual => v != self.value,
            MatchType::Regexp => self.regex_matches(v),
            MatchType::NotRegexp => !self.regex_matches(v),
        }
    }

    fn regex_matches(&self, v: &str) -> bool {
        match &self.shape {
            RegexShape::Any => true,
            RegexShape::NonEmpty => !v.is_empty(),
            RegexShape::Set(set) => set.iter().any(|s| s == v),
            RegexShape::Prefix(p) => v.starts_with(p.as_str()),
            RegexShape::General => self.re.as_ref().is_some_and(|re| re.is_match(v)),
        }
    }

    /// Whether a series without this label (value "") is selected.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// What the regex is known to accept; `General` for `=`/`!=`.
    pub fn shape(&self) -> &RegexShape {
        &self.shape
    }

    /// For `=~`/`!~`, a literal that every value the regex accepts starts with (`host-0` for
    /// `host-0(1|2).*`); empty when none is known.
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }

    /// For `=~` with a literal alternation (and `=` itself), the exact values selected.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        match (self.typ, &self.shape) {
            (MatchType::Equal, _) => Some(vec![self.value.as_str()]),
            (MatchType::Regexp, RegexShape::Set(s)) => Some(s.iter().map(String::as_str).collect()),
            _ => None,
        }
    }

    /// The matcher that selects exactly the complement (`=` ↔ `!=`, `=~` ↔ `!~`).
    pub fn inverse(&self) -> Matcher {
        let typ = match self.typ {
            MatchType::Equal => MatchType::NotEqual,
            MatchType::NotEqual => MatchType::Equal,
            MatchType::Regexp => MatchType::NotRegexp,
            MatchType::NotRegexp => MatchType::Regexp,
        };
        Matcher {
            name: self.name.clone(),
            value: self.value.clone(),
            typ,
            re: self.re.clone(),
            shape: self.shape.clone(),
            prefix: self.prefix.clone(),
        }
    }
}

/// The regex's shape and a literal prefix of every value it accepts.
fn regex_shape(pattern: &str) -> (RegexShape, String) {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .build()
        .parse(pattern)
    else {
        return (RegexShape::General, String::new());
    };
    (shape_of(&hir), literal_prefix(&hir))
}

/// The literal the regex's matches all begin with: its leading literal parts.
fn literal_prefix(hir: &Hir) -> String {
    match hir.kind() {
        HirKind::Capture(c) => literal_prefix(&c.sub),
        HirKind::Concat(parts) => {
            let mut p = String::new();
            for part in parts {
                match literal(part) {
                    Some(l) => p.push_str(&l),
                    None => {
                        p.push_str(&literal_prefix(part));
                        break;
                    }
                }
            }
            p
        }
        _ => literal(hir).unwrap_or_default(),
    }
}

fn shape_of(hir: &Hir) -> RegexShape {
    if is_dot_star(hir, 0) {
        return RegexShape::Any;
    }
    if is_dot_star(hir, 1) {
        return RegexShape::NonEmpty;
    }
    if let Some(set) = literal_set(hir) {
        return RegexShape::Set(set);
    }
    if let HirKind::Concat(parts) = hir.kind()
        && parts.len() == 2
        && is_dot_star(&parts[1], 0)
        && let Some(p) = literal(&parts[0])
    {
        return RegexShape::Prefix(p);
    }
    if let HirKind::Capture(c) = hir.kind() {
        return shape_of(&c.sub);
    }
    RegexShape::General
}

/// `.*` (min 0) or `.+` (min 1) over any character, newlines included.
fn is_dot_star(hir: &Hir, min: u32) -> bool {
    match hir.kind() {
        HirKind::Repetition(r) if r.min == min && r.max.is_none() => {
            matches!(r.sub.kind(), HirKind::Class(regex_syntax::hir::Class::Unicode(c))
                if c.ranges().len() == 1
                    && c.ranges()[0].start() == '\0'
                    && c.ranges()[0].end() == char::MAX)
        }
        HirKind::Capture(c) => is_dot_star(&c.sub, min),
        _ => false,
    }
}

fn literal(hir: &Hir) -> Option<String> {
    match hir.kind() {
        HirKind::Empty => Some(String::new()),
        HirKind::Literal(Literal(bytes)) => String::from_utf8(bytes.to_vec()).ok(),
        HirKind::Capture(c) => literal(&c.sub),
        HirKind::Concat(parts) => {
            let mut s = String::new();
            for p in parts {
                s.push_str(&literal(p)?);
            }
            Some(s)
        }
        _ => None,
    }
}

fn literal_set(hir: &Hir) -> Option<Vec<String>> {
    let mut out = match hir.kind() {
        HirKind::Alternation(alts) => {
            let mut out = Vec::with_capacity(alts.len());
            for a in alts {
                out.extend(literal_set(a)?);
            }
            out
        }
        HirKind::Capture(c) => literal_set(&c.sub)?,
        // regex-syntax folds `a|b` of single characters into a class.
        HirKind::Class(regex_syntax::hir::Class::Unicode(c)) => {
            let n: u32 = c
                .ranges()
                .iter()
                .map(|r| r.end() as u32 - r.start() as u32 + 1)
                .sum();
            if n > 64 {
                return None;
            }
            c.ranges()
                .iter()
                .flat_map(|r| (r.start()..=r.end()).map(|ch| ch.to_string()))
                .collect()
        }
        _ => vec![literal(hir)?],
    };
    out.sort();
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn re(p: &str) -> Matcher {
        Matcher::new(MatchType::Regexp, "l", p).unwrap()
    }

    #[test]
    fn regex_is_fully_anchored_and_dot_matches_newline() {
        let m = re("ab|c");
        assert!(m.matches("ab") && m.matches("c") && !m.matches("abc") && !m.matches("xab"));
        let m = re("a.c");
        assert!(m.matches("a\nc"));
        assert!(re("foo.*bar").matches("foo\nbar"));
    }

    #[test]
    fn names_outside_the_legacy_charset_print_quoted() {
        let eq = |n: &str| Matcher::new(MatchType::Equal, n, "b").unwrap().to_string();
        assert_eq!(eq("job"), r#"job="b""#);
        assert_eq!(eq("_a1"), r#"_a1="b""#);
        assert_eq!(eq("rate(5m])a"), r#""rate(5m])a"="b""#);
        assert_eq!(eq("a:b"), r#""a:b"="b""#);
        assert_eq!(eq("1a"), r#""1a"="b""#);
        assert_eq!(eq(""), r#"""="b""#);
        // Found by the selector_parse fuzz target: the printed form must parse back.
        let ms = crate::labels::parse_selector(r#"x{"rate(5m])a"="b"}"#).unwrap();
        let printed: Vec<String> = ms.iter().map(Matcher::to_string).collect();
        let again = crate::labels::parse_selector(&format!("{{{}}}", printed.join(","))).unwrap();
        assert_eq!(again, ms);
    }

    #[test]
    fn shapes() {
        assert_eq!(re(".*").shape(), &RegexShape::Any);
        assert_eq!(re(".+").shape(), &RegexShape::NonEmpty);
        assert_eq!(
            re("a|bb|c").shape(),
            &RegexShape::Set(vec!["a".into(), "bb".into(), "c".into()])
        );
        assert_eq!(
            re("(GET|PUT)").shape(),
            &RegexShape::Set(vec!["GET".into(), "PUT".into()])
        );
        assert_eq!(re("api.*").shape(), &RegexShape::Prefix("api".into()));
        assert_eq!(re("a[0-9]+").shape(), &RegexShape::General);
        assert!(re("").matches("") && !re("").matches("x"));
    }

    #[test]
    fn shapes_agree_with_the_regex() {
        let values = ["", "a", "bb", "c", "api", "api/x", "\n", "abc", "GET"];
        for p in [
            ".*",
            ".+",
            "a|bb|c",
            "api.*",
            "(GET|PUT)",
            "",
            "a?",
            "[ab]",
            "a|",
        ] {
            let m = re(p);
            let r = Regex::new(&format!("^(?s:{p})$")).unwrap();
            for v in values {
                assert_eq!(m.matches(v), r.is_match(v), "pattern {p:?} value {v:?}");
            }
        }
    }

    #[test]
    fn literal_prefixes_begin_every_accepted_value() {
        for (p, prefix) in [
            ("host-00(1|2).*", "host-00"),
            ("a(b(c|d))x+", "ab"),
            ("(api)/v[12]/.*", "api/v"),
            ("ab?c", "a"),
            ("(ab)+c", ""),
            ("^host.*", ""),
            ("(?i)host.*x", ""),
            ("a|ab", ""),
            ("x.*y", "x"),
        ] {
            let m = re(p);
            assert_eq!(m.literal_prefix(), prefix, "{p}");
            let r = Regex::new(&format!("^(?s:{p})$")).unwrap();
            for v in [
                "host-001",
                "host-0025",
                "abcx",
                "abdxx",
                "api/v1/q",
                "ac",
                "abc",
                "ababc",
            ] {
                if r.is_match(v) {
                    assert!(v.starts_with(prefix), "{p} accepts {v}");
                }
            }
        }
    }

    #[test]
    fn bad_regex_is_an_error() {
        let e = Matcher::new(MatchType::Regexp, "job", "a(").unwrap_err();
        assert_eq!(e.name, "job");
    }

    #[test]
    fn empty_matching() {
        assert!(Matcher::equal("x", "").matches_empty());
        assert!(
            !Matcher::new(MatchType::NotEqual, "x", "")
                .unwrap()
                .matches_empty()
        );
        assert!(re(".*").matches_empty());
        assert!(!re(".+").matches_empty());
    }
}
