//! `check rules`: what promtool prints about each rule file, line for line, and whether the
//! run failed.

use std::fmt::Write as _;

use super::file::{self, ParseOptions};

/// Which stream a line of the report goes to, as promtool splits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Progress and successes.
    Stdout,
    /// Failures.
    Stderr,
}

/// The report on a run over some files.
#[derive(Debug, Default)]
pub struct Report {
    /// The lines, in the order printed.
    pub lines: Vec<(Stream, String)>,
    /// Whether any file had an error (lint findings alone do not fail the run unless asked).
    pub failed: bool,
    /// Whether any file had a lint finding.
    pub linted: bool,
}

impl Report {
    fn out(&mut self, s: impl Into<String>) {
        self.lines.push((Stream::Stdout, s.into()));
    }

    fn err(&mut self, s: impl Into<String>) {
        self.lines.push((Stream::Stderr, s.into()));
    }

    /// The report as one text, both streams in order.
    pub fn text(&self) -> String {
        let mut t = String::new();
        for (_, l) in &self.lines {
            t.push_str(l);
            t.push('\n');
        }
        t
    }
}

/// Checks one file's text (`name` is how the file is cited) into `report`, as
/// `promtool check rules` does: parse errors, then the duplicate-rule lint (`lint_duplicates`).
pub fn check_file(
    report: &mut Report,
    name: &str,
    text: Result<&str, String>,
    opts: ParseOptions<'_>,
    lint_duplicates: bool,
) {
    report.out(format!("Checking {name}"));
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            report.err("  FAILED:");
            report.err(format!("{name}: {e}"));
            report.failed = true;
            return;
        }
    };
    let groups = match file::parse(text, opts) {
        Ok(g) => g,
        Err(errs) => {
            report.err("  FAILED:");
            for e in errs {
                report.err(format!("{name}: {e}"));
            }
            report.failed = true;
            return;
        }
    };
    let dups = if lint_duplicates {
        file::duplicate_rules(&groups)
    } else {
        Vec::new()
    };
    if dups.is_empty() {
        let n: usize = groups.iter().map(|g| g.rules.len()).sum();
        report.out(format!("  SUCCESS: {n} rules found"));
    } else {
        report.err("  FAILED:");
        let mut msg = format!("lint error {} duplicate rule(s) found.\n", dups.len());
        for (metric, labels) in &dups {
            let _ = writeln!(msg, "Metric: {metric}\nLabel(s):");
            for (k, v) in labels {
                let _ = writeln!(msg, "\t{k}: {v}");
            }
        }
        msg.push_str("Might cause inconsistency while recording expressions");
        report.err(msg);
        report.linted = true;
    }
    report.out("");
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Report, check_file};
    use crate::rules::file::ParseOptions;

    /// Every file of `testdata/rules/expected-check.txt` gives the report promtool 3.5.3 gave.
    #[test]
    fn reports_as_promtool_does() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/rules");
        let expected = std::fs::read_to_string(dir.join("expected-check.txt")).unwrap();
        let mut checked = 0;
        for case in expected.split("=== ").skip(1) {
            let (head, want) = case.split_once('\n').unwrap();
            let (name, rc) = head.split_once(" rc=").unwrap();
            // Template parse errors are worded by the template library; those files are
            // checked where templates are.
            if name.ends_with("rules-bad.yml") {
                continue;
            }
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let mut r = Report::default();
            check_file(&mut r, name, Ok(&text), ParseOptions::default(), true);
            let got = r.text();
            assert_eq!(got.trim_end(), want.trim_end(), "{name}");
            assert_eq!(r.failed, rc == "1", "{name}");
            checked += 1;
        }
        assert!(checked >= 20, "{checked}");
    }
}
