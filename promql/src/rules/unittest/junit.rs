//! Unit-test results as the JUnit XML report `promtool test rules --junit` writes: one
//! `testsuite` per file, one `testcase` per test group run, a `failure` per problem found, and
//! an `error` in a case named `unknown` when the file stopped before its groups ran.

use super::FileReport;

/// The report for `files` (each its name as given on the command line, and what running it
/// found), stamped with `timestamp` (`2006-01-02T15:04:05`, local time) where a file got as
/// far as its test groups. One line, no XML declaration, as promtool writes it.
pub fn report(files: &[(String, FileReport)], timestamp: &str) -> String {
    let mut out = String::from("<testsuites>");
    for (name, file) in files {
        suite(&mut out, name, file, timestamp);
    }
    out.push_str("</testsuites>");
    out
}

fn suite(out: &mut String, name: &str, file: &FileReport, timestamp: &str) {
    let mut cases: Vec<(&str, &[String])> = file
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.errors.as_slice()))
        .collect();
    // An abort lands on the last case, made up as `unknown` when no group ran yet.
    if file.aborted.is_some() && cases.is_empty() {
        cases.push(("unknown", &[]));
    }
    let failures: usize = cases.iter().map(|(_, f)| f.len()).sum();
    let stamp = if file.started { timestamp } else { "" };
    out.push_str(&format!(
        "<testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\" skipped=\"0\" timestamp=\"{}\">",
        escape(name),
        cases.len(),
        usize::from(file.aborted.is_some()),
        escape(stamp)
    ));
    let last = cases.len().saturating_sub(1);
    for (i, (case, fails)) in cases.iter().enumerate() {
        out.push_str(&format!("<testcase name=\"{}\">", escape(case)));
        for f in *fails {
            out.push_str(&format!("<failure>{}</failure>", escape(f)));
        }
        if i == last
            && let Some(e) = &file.aborted
        {
            out.push_str(&format!("<error>{}</error>", escape(e)));
        }
        out.push_str("</testcase>");
    }
    out.push_str("</testsuite>");
}

/// Text escaped as Go's `encoding/xml` escapes character data and attribute values: quotes
/// as numeric references, and tab, newline and carriage return too, so the text survives
/// attribute normalisation; characters XML cannot hold become U+FFFD.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

/// XML 1.0's `Char` production.
fn xml_char(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

#[cfg(test)]
mod tests {
    use super::super::{FileReport, GroupReport};
    use super::report;

    /// The shapes promtool 3.5.3 wrote for a failing group, a passing one, and files aborted
    /// before (no timestamp) and after (timestamp) their tests were reached.
    #[test]
    fn as_promtool_writes_it() {
        let files = vec![
            (
                "a.yml".to_string(),
                FileReport {
                    aborted: None,
                    started: true,
                    groups: vec![
                        GroupReport {
                            name: "g1".into(),
                            errors: vec!["x: \"y\"\n  <z> & 'w'".into(), "two".into()],
                        },
                        GroupReport {
                            name: "unnamed#1".into(),
                            errors: vec![],
                        },
                    ],
                },
            ),
            (
                "bad.yml".to_string(),
                FileReport {
                    aborted: Some("yaml: unmarshal errors:\n  line 2: field bogus".into()),
                    started: false,
                    groups: vec![],
                },
            ),
            (
                "order.yml".to_string(),
                FileReport {
                    aborted: Some("group name repeated in evaluation order: a".into()),
                    started: true,
                    groups: vec![],
                },
            ),
        ];
        let want = concat!(
            "<testsuites>",
            "<testsuite name=\"a.yml\" tests=\"2\" failures=\"2\" errors=\"0\" skipped=\"0\" timestamp=\"2026-11-26T23:12:53\">",
            "<testcase name=\"g1\"><failure>x: &#34;y&#34;&#xA;  &lt;z&gt; &amp; &#39;w&#39;</failure><failure>two</failure></testcase>",
            "<testcase name=\"unnamed#1\"></testcase></testsuite>",
            "<testsuite name=\"bad.yml\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" timestamp=\"\">",
            "<testcase name=\"unknown\"><error>yaml: unmarshal errors:&#xA;  line 2: field bogus</error></testcase></testsuite>",
            "<testsuite name=\"order.yml\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" timestamp=\"2026-11-26T23:12:53\">",
            "<testcase name=\"unknown\"><error>group name repeated in evaluation order: a</error></testcase></testsuite>",
            "</testsuites>"
        );
        assert_eq!(report(&files, "2026-11-26T23:12:53"), want);
    }
}
