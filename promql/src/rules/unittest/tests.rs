use std::path::Path;

use super::{go_duration, go_e, run_file};
use crate::Engine;
use crate::rules::expand::{PrometheusTemplates, parse_check};

fn rules_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/rules")
        .canonicalize()
        .unwrap()
}

fn run(name: &str) -> Vec<String> {
    let dir = rules_dir().join("promtool");
    run_file(
        &dir.join(name),
        &Engine::default(),
        &PrometheusTemplates::default(),
        Some(&parse_check),
        &|_| true,
    )
    .errors()
}

/// Every unit-test file of `testdata/rules/expected-test.txt` passes or fails as promtool
/// 3.5.3 did, with the report it printed (errors in order, each followed by a blank line).
#[test]
fn tests_as_promtool_does() {
    let dir = rules_dir();
    let expected = std::fs::read_to_string(dir.join("expected-test.txt")).unwrap();
    let mut checked = 0;
    for case in expected.split("=== ").skip(1) {
        let (head, want) = case.split_once('\n').unwrap();
        let (name, rc) = head.split_once(" rc=").unwrap();
        // promtool was run inside the directory; the files it cites are relative to it.
        let prefix = format!("{}/", dir.join("promtool").display());
        let errs: Vec<String> = run(name).iter().map(|e| e.replace(&prefix, "")).collect();
        let got = if errs.is_empty() {
            "  SUCCESS\n".to_string()
        } else {
            let mut t = String::from("  FAILED:\n");
            for e in &errs {
                t.push_str(e);
                t.push_str("\n\n");
            }
            t
        };
        assert_eq!(errs.is_empty(), rc == "0", "{name}: {errs:#?}");
        assert_eq!(
            unordered_pairs(got.trim_end()),
            unordered_pairs(want.trim_end()),
            "{name}"
        );
        checked += 1;
    }
    assert_eq!(checked, 9);
}

/// `text` with the series of a "duplicate series" error sorted: Prometheus lists the pair in
/// the order of a Go map, which changes from run to run.
fn unordered_pairs(text: &str) -> String {
    let Some((head, rest)) = text.split_once("operation: [") else {
        return text.to_string();
    };
    let Some((list, tail)) = rest.split_once("];") else {
        return text.to_string();
    };
    let mut items: Vec<&str> = list.split("}, {").collect();
    let trimmed: Vec<String> = items
        .iter_mut()
        .map(|i| i.trim_matches(['{', '}']).to_string())
        .collect();
    let mut sorted = trimmed;
    sorted.sort();
    format!("{head}operation: [{{{}}}];{tail}", sorted.join("}, {"))
}

/// `--run` picks groups by their name as written: the failing file's named groups alone, and
/// no group at all (an empty suite, a pass) when nothing matches.
#[test]
fn selected_groups_only() {
    let path = rules_dir().join("promtool/failing.yml");
    let run = |pick: &dyn Fn(&str) -> bool| {
        run_file(
            &path,
            &Engine::default(),
            &PrometheusTemplates::default(),
            Some(&parse_check),
            pick,
        )
    };
    let all = run(&|_| true);
    let names: Vec<&str> = all.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["Failing test", "Failing alert test"]);
    assert!(all.groups.iter().all(|g| !g.errors.is_empty()));
    let one = run(&|n| n.contains("alert"));
    assert_eq!(one.groups.len(), 1);
    assert_eq!(one.groups[0].name, "Failing alert test");
    assert_eq!(one.errors().len(), 2);
    let none = run(&|_| false);
    assert!(none.started && none.groups.is_empty() && none.errors().is_empty());
}

#[test]
fn go_formats() {
    assert_eq!(go_duration(0), "0s");
    assert_eq!(go_duration(300_000), "5m0s");
    assert_eq!(go_duration(3_723_500), "1h2m3.5s");
    assert_eq!(go_duration(59_000), "59s");
    assert_eq!(go_e(1.0), "1E+00");
    assert_eq!(go_e(0.0), "0E+00");
    assert_eq!(go_e(9_218_880_000.0), "9.21888E+09");
    assert_eq!(go_e(0.0025), "2.5E-03");
}
