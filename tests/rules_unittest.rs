//! `gauntlet tools rules test` beside `promtool test rules` (Prometheus 3.5.3) on the same
//! unit-test files (testdata/rules/promtool, passing and failing ones): with `--run`, the same
//! test groups run and the same files pass or fail; with `--junit`, the same JUnit XML —
//! suites, cases, failure and error counts, and the failure messages.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{gauntlet, prometheus3, repo_root};

/// The unit-test files compared: passing, failing, and ones whose rules or input are bad.
const FILES: [&str; 6] = [
    "unittest.yml",
    "failing.yml",
    "bad-rules-error-test.yml",
    "bad-input-series.yml",
    "no-test-group-interval.yml",
    "long-period.yml",
];

/// One `testsuite` of a JUnit report.
#[derive(Debug, PartialEq)]
struct Suite {
    name: String,
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
    /// Whether it carries a timestamp (promtool stamps the suites that reached their tests).
    stamped: bool,
    /// (case name, failure messages, error message).
    cases: Vec<(String, Vec<String>, Option<String>)>,
}

/// Runs `cmd` (`test rules` of promtool, or `tools rules test` of Gauntlet) in the fixture
/// directory with `args` and `--junit`; its exit code and its report, parsed.
fn run(mut cmd: Command, args: &[&str], junit: &Path) -> (i32, String, Vec<Suite>) {
    let out = cmd
        .current_dir(repo_root().join("testdata/rules/promtool"))
        .arg(format!("--junit={}", junit.display()))
        .args(args)
        .output()
        .unwrap();
    let xml = std::fs::read_to_string(junit).unwrap();
    let code = out.status.code().unwrap();
    (code, xml.clone(), suites(&xml))
}

fn promtool() -> Command {
    let mut c = Command::new(prometheus3().with_file_name("promtool"));
    c.args(["test", "rules"]);
    c
}

fn ours() -> Command {
    let mut c = gauntlet();
    c.args(["tools", "rules", "test"]);
    c
}

/// The suites of a report as promtool writes it: one line, the elements in a fixed order.
fn suites(xml: &str) -> Vec<Suite> {
    let attr = |tag: &str, name: &str| -> String {
        let key = format!("{name}=\"");
        let start = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
        tag[start..start + tag[start..].find('"').unwrap()].to_string()
    };
    let body = xml
        .strip_prefix("<testsuites>")
        .and_then(|x| x.strip_suffix("</testsuites>"))
        .unwrap_or_else(|| panic!("not a report: {xml}"));
    let mut out = Vec::new();
    for suite in body.split("</testsuite>").filter(|s| !s.is_empty()) {
        let (open, rest) = suite.split_once('>').unwrap();
        let num = |n: &str| attr(open, n).parse::<usize>().unwrap();
        let mut cases = Vec::new();
        for case in rest.split("</testcase>").filter(|c| !c.is_empty()) {
            let (copen, crest) = case.split_once('>').unwrap();
            let between = |tag: &str| -> Vec<String> {
                crest
                    .split(&format!("<{tag}>"))
                    .skip(1)
                    .map(|p| unescape(p.split(&format!("</{tag}>")).next().unwrap()))
                    .collect()
            };
            cases.push((
                unescape(&attr(copen, "name")),
                between("failure"),
                between("error").into_iter().next(),
            ));
        }
        out.push(Suite {
            name: unescape(&attr(open, "name")),
            tests: num("tests"),
            failures: num("failures"),
            errors: num("errors"),
            skipped: num("skipped"),
            stamped: !attr(open, "timestamp").is_empty(),
            cases,
        });
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&#xA;", "\n")
        .replace("&#x9;", "\t")
        .replace("&#xD;", "\r")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `text` with the series of a "duplicate series" error sorted: Prometheus lists the pair in
/// the order of a Go map.
fn settled(text: &str) -> String {
    let Some((head, rest)) = text.split_once("operation: [") else {
        return text.to_string();
    };
    let Some((list, tail)) = rest.split_once("];") else {
        return text.to_string();
    };
    let mut items: Vec<String> = list
        .split("}, {")
        .map(|i| i.trim_matches(['{', '}']).to_string())
        .collect();
    items.sort();
    format!("{head}operation: [{{{}}}];{tail}", items.join("}, {"))
}

/// Runs both with `args` (files and flags) and holds Gauntlet's report to promtool's.
fn same_as_promtool(args: &[&str]) -> Vec<Suite> {
    let tmp = tempfile::tempdir().unwrap();
    let (want_code, want_xml, mut want) = run(promtool(), args, &tmp.path().join("p.xml"));
    let (got_code, got_xml, mut got) = run(ours(), args, &tmp.path().join("g.xml"));
    assert_eq!(got_code, want_code, "{args:?}: exit code");
    for s in want.iter_mut().chain(got.iter_mut()) {
        for c in &mut s.cases {
            c.1 = c.1.iter().map(|m| settled(m)).collect();
        }
    }
    assert_eq!(
        got, want,
        "{args:?}\n  gauntlet: {got_xml}\n  promtool: {want_xml}"
    );
    want
}

#[test]
fn junit_reports_equal_promtools() {
    let all = same_as_promtool(&FILES);
    assert_eq!(all.len(), FILES.len());
    // Something passed, something failed, and a file's failures are counted per message.
    assert!(all.iter().any(|s| s.tests > 0 && s.failures == 0));
    let failing = all.iter().find(|s| s.name == "failing.yml").unwrap();
    assert!(failing.failures > failing.cases.len(), "{failing:?}");
}

#[test]
fn run_picks_the_same_groups_as_promtool() {
    // Unanchored, repeatable (joined with `|`), by the name as written: unnamed groups are
    // left out unless the expression matches the empty name.
    let cases: [&[&str]; 5] = [
        &["--run=alert", "failing.yml", "unittest.yml"],
        &["--run=^Failing test$", "failing.yml"],
        &[
            "--run=nomatch",
            "--run=Failing alert",
            "failing.yml",
            "unittest.yml",
        ],
        &[
            "--run=nothing-is-named-so",
            "failing.yml",
            "bad-input-series.yml",
        ],
        &["--run=^$", "failing.yml", "unittest.yml"],
    ];
    let mut picked = Vec::new();
    for args in cases {
        let suites = same_as_promtool(args);
        picked.push(suites.iter().map(|s| s.cases.len()).sum::<usize>());
    }
    // The filters chose different groups: not all, and not nothing, every time.
    let all: usize = same_as_promtool(&["failing.yml", "unittest.yml"])
        .iter()
        .map(|s| s.cases.len())
        .sum();
    assert!(
        picked.iter().any(|&n| n > 0 && n < all),
        "{picked:?} of {all}"
    );
    assert_eq!(picked[3], 0, "a filter matching nothing runs nothing");
}

#[test]
fn a_bad_file_aborts_its_suite_as_in_promtool() {
    let tmp = tempfile::tempdir().unwrap();
    let bad: PathBuf = tmp.path().join("unknown-field.yml");
    std::fs::write(&bad, "rule_files: []\nbogus: 1\n").unwrap();
    let order = tmp.path().join("order.yml");
    std::fs::write(
        &order,
        "rule_files: []\ngroup_eval_order: [a, a]\ntests:\n  - name: x\n",
    )
    .unwrap();
    let (bad, order) = (bad.display().to_string(), order.display().to_string());
    let suites = same_as_promtool(&[bad.as_str(), order.as_str(), "unittest.yml"]);
    assert_eq!(suites[0].errors, 1);
    assert!(!suites[0].stamped && suites[1].stamped);
    assert_eq!(suites[1].cases[0].0, "unknown");
}

/// Alerting rules whose templates fail to parse, most on line 2 or 3 of a multi-line text.
const BAD_TEMPLATES: &str = r#"groups:
  - name: g
    rules:
      - alert: HighLatency
        expr: vector(1)
        annotations:
          summary: "line one
            {{ foo }}"
          description: |
            first line
            second {{ .Labels.x }}
            third {{ if }}
      - alert: Other
        expr: vector(1)
        labels:
          sev: "{{ range .Labels }}"
        annotations:
          a: |
            x
            y
            {{ printf "%d" | bogus }}
          b: |
            x
            y {{ $nope }}
          c: |
            {{ if true }}
            {{ else }}
            a
            {{ else }}
            {{ end }}
          d: |
            x
            {{ end }}
          e: |
            x
            {{ humanize 1 2 ( }}
          f: |
            one
            {{ template "x" }}
            {{ define "x" }}{{ baz }}{{ end }}
"#;

/// Alerting rules whose templates fail when they run, on line 1, 2 or 3.
const FAILING_TEMPLATES: &str = r#"groups:
  - name: g
    rules:
      - alert: A
        expr: vector(1)
        annotations:
          first: |
            line one
            v={{ query "nothing" | first | value }}
          second: |
            a
            b
            {{ "x" | humanizeDuration }}
          third: "{{ humanize \"abc\" }}"
          fourth: |
            x {{ $value }}
              {{ printf "%s" (query "nothing" | first | label "foo") }}
          fifth: |
            {{ template "nope" }}
          sixth: |
            {{ $labels.alertname }}
            {{ humanize }}
"#;

const FAILING_TEMPLATES_TEST: &str = "rule_files: [rules.yml]
tests:
  - name: templates
    input_series: []
    alert_rule_test:
      - eval_time: 0
        alertname: A
        exp_alerts: []
";

/// Lines of `out`, sorted: promtool reports a rule's annotations in Go's map order.
fn sorted_lines(out: &[u8]) -> Vec<String> {
    let mut v: Vec<String> = String::from_utf8_lossy(out)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

#[test]
fn template_parse_errors_name_their_line_as_promtool_check_does() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.yml"), BAD_TEMPLATES).unwrap();
    let check = |mut cmd: Command| {
        let out = cmd.current_dir(tmp.path()).arg("bad.yml").output().unwrap();
        (
            out.status.code(),
            sorted_lines(&out.stdout),
            sorted_lines(&out.stderr),
        )
    };
    let mut promtool = Command::new(prometheus3().with_file_name("promtool"));
    promtool.args(["check", "rules"]);
    let mut ours = gauntlet();
    ours.args(["tools", "rules", "check"]);
    let want = check(promtool);
    let got = check(ours);
    assert_eq!(got, want, "gauntlet (left), promtool (right)");
    assert_eq!(want.0, Some(1));
    // Every template error names a line, and some a line past the first.
    let errors: Vec<&String> = want
        .2
        .iter()
        .filter(|l| l.contains("template: __alert_"))
        .collect();
    assert_eq!(errors.len(), 9, "{errors:#?}");
    assert!(
        errors
            .iter()
            .any(|l| l.contains("__alert_HighLatency:3: missing value for if"))
    );
    assert!(
        errors
            .iter()
            .any(|l| l.contains("__alert_Other:3: function \"bogus\" not defined"))
    );
}

#[test]
fn template_execution_errors_name_their_place_as_promtool_test_does() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("rules.yml"), FAILING_TEMPLATES).unwrap();
    std::fs::write(tmp.path().join("t.yml"), FAILING_TEMPLATES_TEST).unwrap();
    let run = |mut cmd: Command| {
        let out = cmd.current_dir(tmp.path()).arg("t.yml").output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut promtool = Command::new(prometheus3().with_file_name("promtool"));
    promtool.args(["test", "rules"]);
    let mut ours = gauntlet();
    ours.args(["tools", "rules", "test"]);
    let want = run(promtool);
    let got = run(ours);
    assert_eq!(want.0, Some(1));
    assert_eq!(got, want, "gauntlet (left), promtool (right)");
    assert!(
        want.1
            .contains(r#"__alert_A:2:23: executing \"__alert_A\" at <first>"#)
    );
    assert!(
        want.1
            .contains(r#"__alert_A:3:9: executing \"__alert_A\" at <humanizeDuration>"#)
    );
}
