//! Series selectors (`metric{a="b", c=~"d"}`), the form `match[]` parameters and tools'
//! `--match` take, read by the query parser as Prometheus's `ParseMetricSelector` reads them:
//! one vector selector and nothing else, its errors worded and placed as for a query
//! (`1:5: parse error: unexpected "("`), so an API answer for a bad selector reads as
//! Prometheus's does.

use std::sync::Arc;

use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::labels::{METRIC_NAME, MatchType, Matcher};

use super::{Options, ParseError, parse::Parser};

/// A series selector could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The text is not a selector, or a regex in it does not compile: Prometheus's message
    /// and its place.
    #[error(transparent)]
    Syntax(#[from] ParseError),
    /// Every matcher matches the empty value, so the selector would select every series; the
    /// caller must add a matcher that narrows it.
    #[error("vector selector must contain at least one non-empty matcher")]
    NoNonEmptyMatcher,
}

/// Parses `name{...}`, `{...}` or a bare metric name into matchers, the metric name first.
///
/// Values are double-, single- or back-quoted strings with Go escapes, as in PromQL; label
/// names may be quoted, and a quoted name alone is the metric name
/// (`{"my.metric", job="a"}`). A selector must contain at least one matcher that does not
/// match the empty string, as Prometheus requires of `match[]`.
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>, SelectorError> {
    selector(text, None)
}

/// [`parse_selector`] for a request: the regexes hold room in `budget` while they live.
pub fn parse_selector_in(
    text: &str,
    budget: &Arc<MemoryBudget>,
) -> Result<Vec<Matcher>, SelectorError> {
    selector(text, Some(budget))
}

fn selector(text: &str, budget: Option<&Arc<MemoryBudget>>) -> Result<Vec<Matcher>, SelectorError> {
    let opts = Options::default();
    let mut parser = Parser::new(text, &opts);
    parser.budget = budget.cloned();
    let matchers = parser.metric_selector()?;
    if matchers.iter().all(Matcher::matches_empty) {
        return Err(SelectorError::NoNonEmptyMatcher);
    }
    Ok(matchers)
}

/// Reads the metric name and labels that begin a promqltest series description
/// (`name{l="v", …} values…`) with the query lexer, as Prometheus reads them: the labels
/// (the metric name as `__name__`, first) and the rest of the text, where the values are.
pub(crate) fn parse_series_labels(text: &str) -> Result<(Vec<Matcher>, &str), ParseError> {
    let (labels, end) = Parser::new(text, &Options::default()).series_description()?;
    Ok((labels, &text[end..]))
}

/// Why a matcher's regex is refused, worded as Prometheus's parser words it
/// (`error parsing regexp: missing closing ): ...`), or `None` when a selection compiles it.
/// The query parser's [`Options::regex_check`] for the server.
pub fn regex_refusal(pattern: &str) -> Option<String> {
    Matcher::new(MatchType::Regexp, METRIC_NAME, pattern)
        .err()
        .map(|e| regex_error(&e.reason))
}

/// A refused regex's `reason` as Prometheus's parser reports it.
pub(super) fn regex_error(reason: &str) -> String {
    format!("error parsing regexp: {reason}")
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
        for everything in ["{}", r#"{a=""}"#, r#"{a=~".*", b!="x"}"#] {
            assert_eq!(
                parse_selector(everything),
                Err(SelectorError::NoNonEmptyMatcher),
                "{everything}"
            );
        }
    }

    #[test]
    fn errors_read_as_prometheus_writes_them() {
        // Prometheus 3.5.3's messages for these `match[]` values (3.14's for `@`, which 3.5
        // names by its token number, as the query parser does).
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
            ("x@", "1:2: parse error: unexpected <op:@>"),
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
            // A bad regex is the first error even when the text goes wrong after it.
            (
                r#"{a=~"(" b}"#,
                "1:2: parse error: error parsing regexp: missing closing ): `(`",
            ),
            // Words that are operators or modifiers, not metric names, in Prometheus's grammar.
            ("bool", "1:1: parse error: unexpected <bool>"),
            ("atan2", "1:1: parse error: unexpected <op:atan2>"),
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
            ("by", 1),
            ("offset{a=\"b\"}", 2),
            (r#"{"héllo wörld"="ü", "ünïcode"}"#, 2),
            ("{a!=\"\"}", 1),
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
        let m = parse_selector(r#"x{b!~"c", "d.e"="f"}"#).unwrap();
        let got: Vec<(&str, MatchType, &str)> = m
            .iter()
            .map(|m| (m.name.as_str(), m.typ, m.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (METRIC_NAME, MatchType::Equal, "x"),
                ("b", MatchType::NotRegexp, "c"),
                ("d.e", MatchType::Equal, "f"),
            ]
        );
    }

    #[test]
    fn printed_matchers_parse_back() {
        // Found by the selector_parse fuzz target: a label name outside the legacy charset
        // prints quoted, and must parse back to the same matcher.
        let ms = parse_selector(r#"x{"rate(5m])a"="b"}"#).unwrap();
        let printed: Vec<String> = ms.iter().map(Matcher::to_string).collect();
        let again = parse_selector(&format!("{{{}}}", printed.join(","))).unwrap();
        assert_eq!(again, ms);
    }

    #[test]
    fn series_descriptions_end_where_their_values_begin() {
        fn read(text: &str) -> (String, &str) {
            let (labels, rest) = parse_series_labels(text).unwrap();
            let labels: Vec<String> = labels.iter().map(Matcher::to_string).collect();
            (labels.join(","), rest)
        }
        assert_eq!(
            read(r#"x{a="b c", "d.e"="f"} 1 2x3"#),
            (r#"__name__="x",a="b c","d.e"="f""#.to_string(), " 1 2x3")
        );
        assert_eq!(
            read("x {{schema:0 count:1}}x2"),
            (r#"__name__="x""#.to_string(), " {{schema:0 count:1}}x2")
        );
        assert_eq!(
            read("x{{count:1}}"),
            (r#"__name__="x""#.to_string(), "{{count:1}}")
        );
        assert_eq!(read("{} 3"), (String::new(), " 3"));
        assert_eq!(read(r#"{a="1"}"#), (r#"a="1""#.to_string(), ""));
        assert!(parse_series_labels(r#"x{a!="1"} 1"#).is_err());
        assert!(parse_series_labels("3{g=\"z\"} 1").is_err());
    }

    #[test]
    fn regex_refusal_words_the_reason_as_prometheus() {
        assert_eq!(regex_refusal("a|b"), None);
        assert_eq!(
            regex_refusal("a(b").as_deref(),
            Some("error parsing regexp: missing closing ): `a(b`")
        );
    }
}
