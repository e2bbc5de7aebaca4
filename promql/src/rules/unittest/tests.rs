use std::collections::BTreeMap;
use std::path::Path;

use super::{TemplatesFactory, go_duration, go_e, run_file};
use crate::rules::alerting::AlertTemplates;
use crate::rules::group::RuleQuerier;
use crate::{Engine, InstantSample};

/// Leaves templates as written: for the files whose alerts carry no templates.
struct Verbatim;

impl AlertTemplates for Verbatim {
    fn expand(&self, _: &str, text: &str, _: &InstantSample, _: i64) -> String {
        text.to_string()
    }
}

impl TemplatesFactory for Verbatim {
    fn make<'q>(
        &self,
        _: &BTreeMap<String, String>,
        _: &str,
        _: &'q dyn RuleQuerier,
    ) -> Box<dyn AlertTemplates + 'q> {
        Box::new(Verbatim)
    }
}

fn run(name: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/rules/promtool");
    run_file(&dir.join(name), &Engine::default(), &Verbatim, None)
}

/// promtool 3.5.3 passes these files (`promtool test rules FILE` exits 0).
#[test]
fn passes_what_promtool_passes() {
    for f in [
        "at-modifier-test.yml",
        "negative-offset-test.yml",
        "long-period.yml",
        "no-test-group-interval.yml",
    ] {
        let errs = run(f);
        assert!(errs.is_empty(), "{f}: {errs:#?}");
    }
}

/// And fails these, with these accounts.
#[test]
fn fails_what_promtool_fails() {
    let errs = run("bad-rules-error-test.yml");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with("    rule: joined, time: 0s, err: found duplicate series for the match group {a=\"1\"} on the right hand-side of the operation"),
        "{errs:#?}"
    );
    let errs = run("bad-rules-syntax-test.yml");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].ends_with("bad-rules-syntax.yml: 7:15: group \"bad-syntax\", rule 1, \"x\": could not parse expression: 1:7: parse error: unexpected end of input"),
        "{errs:#?}"
    );
    assert_eq!(run("bad-input-series.yml").len(), 1);
    let errs = run("failing.yml");
    assert_eq!(errs.len(), 4, "{errs:#?}");
    assert_eq!(
        errs[1],
        "    expr: \"test\", time: 0s,\n        exp: {__name__=\"test\"} 1E+00\n        got: {__name__=\"test\"} 0E+00"
    );
    assert_eq!(
        errs[0],
        "    name: Failing test,\n    alertname: Test, time: 0s, \n        exp:[\n            0:\n              Labels:{alertname=\"Test\"}\n              Annotations:{}\n            ], \n        got:[]"
    );
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
