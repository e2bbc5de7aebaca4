//! Arbitrary text as a rule file and as a rule unit-test file: reading and checking it (with
//! templates parsed) must give groups or errors, never panic, and the groups must run one
//! round over an empty store.

#![no_main]

use gauntlet_promql::rules::check::{Report, check_file};
use gauntlet_promql::rules::expand::{PrometheusTemplates, parse_check};
use gauntlet_promql::rules::file::{ParseOptions, parse};
use gauntlet_promql::rules::group::{Group, RuleQuerier};
use gauntlet_promql::InstantSample;
use libfuzzer_sys::fuzz_target;

/// A querier with no data: every rule gets an empty answer.
struct Empty;

impl RuleQuerier for Empty {
    fn query(&self, _: &str, _: i64) -> Result<Vec<InstantSample>, String> {
        Ok(Vec::new())
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = ParseOptions {
        ignore_unknown_fields: false,
        check_template: Some(&parse_check),
    };
    let mut report = Report::default();
    check_file(&mut report, "fuzz.yml", Ok(text), opts, true);
    if let Ok(groups) = parse(text, opts) {
        for g in &groups {
            if let Ok(mut g) = Group::new("fuzz.yml", g, 60_000, 0) {
                let _ = g.eval_timestamp(1_700_000_000_000);
                let _ = g.eval(
                    1_700_000_000_000,
                    &Empty,
                    &PrometheusTemplates::default(),
                    60_000,
                    &mut |_| {},
                );
            }
        }
    }
});
