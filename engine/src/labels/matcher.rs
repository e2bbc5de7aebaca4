//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus's regex semantics: RE2 syntax, fully
//! anchored, `.` matching newlines (Prometheus 3.x).
//!
//! A regex from a request is bounded before it costs memory. An alternation of plain values
//! (`a|b|c`, what a dashboard sends for a variable of many values) is read as the set of its
//! values without the regex parser, so it may be as long as the request. Any other regex is
//! refused past [`MAX_REGEX_BYTES`] before it is parsed (parsing takes about 150 bytes of
//! memory per byte of pattern), refused when it compiles past [`MAX_REGEX_COMPILED_BYTES`],
//! and, built for a request ([`Matcher::new_in`]), holds room for what it compiled to in the
//! request's memory budget for as long as it lives
//! ([`crate::budget::MemoryBudget::hold_regex`]), so the regexes of requests in flight (a
//! query can hold thousands) cannot together take more than that room.

use std::fmt;
use std::sync::Arc;

use regex_automata::meta;
use regex_syntax::hir::{Hir, HirKind, Literal};

use crate::budget::{MemoryBudget, RegexHold};
use crate::error::{ECHO_BYTES, MESSAGE_BYTES, clip};

/// Longest regex compiled, bytes: a longer one is refused before it is parsed. Alternations of
/// plain values are not compiled and are not held to it.
pub const MAX_REGEX_BYTES: usize = 128 << 10;

/// Most memory one regex may compile to, bytes (its automata, as the regex engine counts
/// them); one that compiles to more is refused. A regex of [`MAX_REGEX_BYTES`] that is not
/// pathological compiles to about 12 bytes per byte, under this.
pub const MAX_REGEX_COMPILED_BYTES: usize = 4 << 20;

/// Bytes of lazy DFA a compiled regex keeps per thread matching with it. Label values are
/// short: a small cache serves them, and a larger one would not be counted.
const REGEX_CACHE_BYTES: usize = 256 << 10;

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
    /// An alternation of literals (`a|b|c`, or a single literal): exactly these values, sorted
    /// and without duplicates.
    Set(Vec<String>),
    /// Values starting with this literal followed by `.*`.
    Prefix(String),
    /// Nothing cheaper is known: run the regex.
    General,
}

/// A compiled regex and the room it holds in the memory budget while it lives (shared by a
/// matcher's clones, which share its caches too).
#[derive(Debug)]
struct Compiled {
    re: meta::Regex,
    /// The room held in the budget of the request that built it; `None` for trusted text.
    _room: Option<RegexHold>,
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
    re: Option<Arc<Compiled>>,
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
    /// Builds a matcher, compiling the regex for `=~`/`!~` without holding room for it in a
    /// memory budget: for trusted text (configuration, tools, tests). Requests build theirs
    /// with [`Matcher::new_in`].
    pub fn new(
        typ: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        Self::build(None, typ, name, value)
    }

    /// Builds a matcher for a request, compiling the regex for `=~`/`!~` with room held for
    /// it in `budget` for as long as the matcher lives.
    pub fn new_in(
        budget: &Arc<MemoryBudget>,
        typ: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        Self::build(Some(budget), typ, name, value)
    }

    fn build(
        budget: Option<&Arc<MemoryBudget>>,
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
                if let Some(values) = plain_alternation(&value) {
                    let prefix = common_prefix(&values).to_string();
                    (None, (RegexShape::Set(values), prefix))
                } else {
                    if value.len() > MAX_REGEX_BYTES {
                        return Err(refused(format!(
                            "a regex of {} bytes is over the limit of {} KiB for a regex that is not a list of plain values (a|b|c)",
                            value.len(),
                            MAX_REGEX_BYTES >> 10
                        )));
                    }
                    if let Some(reason) = re2_refusal(&value) {
                        return Err(refused(reason));
                    }
                    let re = compile(&value, budget).map_err(refused)?;
                    (Some(Arc::new(re)), regex_shape(&value))
                }
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
    #[allow(
        clippy::expect_used,
        reason = "an equality matcher compiles no regex, so building it cannot fail"
    )]
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
            RegexShape::Set(set) => set.binary_search_by(|s| s.as_str().cmp(v)).is_ok(),
            RegexShape::Prefix(p) => v.starts_with(p.as_str()),
            RegexShape::General => self.re.as_ref().is_some_and(|c| c.re.is_match(v)),
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

/// `^(?s:pattern)$` compiled within [`MAX_REGEX_COMPILED_BYTES`], with room held for it in
/// `budget` when there is one, or why not.
fn compile(pattern: &str, budget: Option<&Arc<MemoryBudget>>) -> Result<Compiled, String> {
    let config = meta::Config::new()
        .nfa_size_limit(Some(MAX_REGEX_COMPILED_BYTES))
        .hybrid_cache_capacity(REGEX_CACHE_BYTES)
        .match_kind(regex_automata::MatchKind::LeftmostFirst)
        .utf8_empty(true);
    let re = meta::Builder::new()
        .configure(config)
        .syntax(regex_automata::util::syntax::Config::new().utf8(true))
        .build(&format!("^(?s:{})$", super::go_to_rust(pattern)))
        .map_err(|e| match e.size_limit() {
            Some(_) => format!(
                "it compiles to more than the limit of {} MiB for one regex",
                MAX_REGEX_COMPILED_BYTES >> 20
            ),
            None => e.to_string(),
        })?;
    // What a compiled regex holds is about twice what it reports (the caches of the threads
    // matching with it), and at least a few pages.
    let bytes = 2 * re.memory_usage() as u64 + (16 << 10);
    let room = budget
        .map(|b| b.hold_regex(bytes))
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Compiled { re, _room: room })
}

/// The values of `pattern` when it is an alternation of plain values (`a|b|c`), alone or as
/// the only group (`(a|b)`, `(?:a|b)`), with ASCII punctuation escaped by a backslash as RE2
/// reads it (`10\.0\.0\.1`): sorted, without duplicates. `None` for anything else. Read
/// without the regex parser, so an alternation as long as a request costs what its values
/// take.
fn plain_alternation(pattern: &str) -> Option<Vec<String>> {
    let inner = pattern
        .strip_prefix("(?:")
        .or_else(|| pattern.strip_prefix('(').filter(|p| !p.starts_with('?')))
        .and_then(|p| p.strip_suffix(')'))
        .unwrap_or(pattern);
    let mut values = Vec::new();
    let mut value = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '|' => values.push(std::mem::take(&mut value)),
            '\\' => match chars.next() {
                Some(e) if e.is_ascii_punctuation() => value.push(e),
                _ => return None,
            },
            '.' | '+' | '*' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' => return None,
            c => value.push(c),
        }
    }
    values.push(value);
    values.sort_unstable();
    values.dedup();
    Some(values)
}

/// The longest prefix every one of `values` starts with.
fn common_prefix(values: &[String]) -> &str {
    let Some((first, rest)) = values.split_first() else {
        return "";
    };
    let mut len = first.len();
    for v in rest {
        len = first
            .char_indices()
            .zip(v.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(len);
    }
    &first[..len]
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
        // That the printed form parses back is held where selectors are parsed
        // (gauntlet-promql's `parse_selector`).
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
            let r = regex::Regex::new(&format!("^(?s:{p})$")).unwrap();
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
            ("a|ab", "a"),
            ("host-001|host-002", "host-00"),
            ("x.*y", "x"),
        ] {
            let m = re(p);
            assert_eq!(m.literal_prefix(), prefix, "{p}");
            let r = regex::Regex::new(&format!("^(?s:{p})$")).unwrap();
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
    fn plain_alternations_are_sets_without_a_regex() {
        for (p, want) in [
            ("a|bb|c", vec!["a", "bb", "c"]),
            ("(GET|PUT)", vec!["GET", "PUT"]),
            ("(?:b|a|b)", vec!["a", "b"]),
            (r"10\.0\.0\.1|10\.0\.0\.2", vec!["10.0.0.1", "10.0.0.2"]),
            (r"a\-b|c\/d|e\(f\)", vec!["a-b", "c/d", "e(f)"]),
            ("a|", vec!["", "a"]),
            ("", vec![""]),
            ("héllo wörld|x y", vec!["héllo wörld", "x y"]),
        ] {
            let m = re(p);
            assert!(m.re.is_none(), "{p}: compiled");
            let want: Vec<String> = want.into_iter().map(String::from).collect();
            assert_eq!(m.shape(), &RegexShape::Set(want.clone()), "{p}");
            // The same answers as the regex itself.
            let r = regex::Regex::new(&format!("^(?s:{p})$")).unwrap();
            for v in want
                .iter()
                .map(String::as_str)
                .chain(["", "a", "ab", "10.0.0.3", "x"])
            {
                assert_eq!(m.matches(v), r.is_match(v), "{p} on {v:?}");
            }
        }
        // Anything else is a regex.
        for p in [
            "a.b|c", "(a)|(b)", "a|b*", r"\d|a", "[ab]", "a{2}", "(?i)a|b", "^a",
        ] {
            assert!(
                re(p).re.is_some() || re(p).shape() != &RegexShape::General,
                "{p}"
            );
            assert!(plain_alternation(p).is_none(), "{p}");
        }
    }

    #[test]
    fn a_megabyte_of_plain_values_is_read_without_parsing() {
        let values: Vec<String> = (0..100_000).map(|i| format!("value_{i:06}")).collect();
        let p = values.join("|");
        assert!(p.len() > 1 << 20);
        let m = re(&p);
        assert!(m.re.is_none());
        assert!(m.matches("value_054321") && !m.matches("value_1") && !m.matches(""));
        assert_eq!(m.set_matches().map(|s| s.len()), Some(100_000));
        assert_eq!(m.literal_prefix(), "value_0");
    }

    #[test]
    fn regexes_past_their_limits_are_refused_naming_them() {
        // Long and not plain values: refused before it is parsed.
        let long: String = (0..20_000).map(|i| format!("v{i}.|")).collect();
        let e = Matcher::new(MatchType::Regexp, "job", long.as_str()).unwrap_err();
        assert!(e.reason.contains("limit of 128 KiB"), "{e}");
        assert!(e.to_string().len() < 1024);
        // Short, but compiling to more than one regex may.
        let e = Matcher::new(MatchType::Regexp, "job", r"\pL{200}").unwrap_err();
        assert!(e.reason.contains("limit of 4 MiB for one regex"), "{e}");
        // A request's compiled regex holds room in its budget while it lives, shared by its
        // clones.
        let budget = MemoryBudget::unlimited();
        let m = Matcher::new_in(&budget, MatchType::Regexp, "job", r"\pL{10}").unwrap();
        let copy = m.clone();
        let (a, b) = (m.re.as_ref().unwrap(), copy.re.as_ref().unwrap());
        assert!(Arc::ptr_eq(a, b));
        let held = a._room.as_ref().map_or(0, |r| r.bytes());
        assert!(held > 100 << 10, "{held}");
        assert_eq!(budget.regexes(), held);
        assert!(copy.matches("abcdefghij") && !copy.matches("abc"));
        drop((m, copy));
        assert_eq!(budget.regexes(), 0);
    }

    #[test]
    fn perl_classes_and_boundaries_match_as_in_prometheus() {
        let digits = Matcher::new(MatchType::Regexp, "l", r"\d+").unwrap();
        assert!(digits.matches("2024") && !digits.matches("٣٤"));
        let word = Matcher::new(MatchType::NotRegexp, "l", r".*\bapi\b.*").unwrap();
        assert!(!word.matches("my api v1") && !word.matches("éapi"));
        assert!(word.matches("myapi"));
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
