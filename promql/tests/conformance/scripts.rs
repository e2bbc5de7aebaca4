//! Every `eval` query of Prometheus's promqltest scripts (v3.5.3 and v3.14.0) parses, unless
//! the script expects the evaluation to fail; and every query that parses prints as text that
//! parses back to the same tree.

use crate::common::canonical;
use gauntlet_promql::parser::{Options, parse};

fn check_scripts(dir: &str, min_queries: usize) {
    let opts = Options::all_features();
    let queries = crate::common::script_queries(dir);
    assert!(
        queries.len() >= min_queries,
        "only {} queries",
        queries.len()
    );
    let mut failures = Vec::new();
    let mut parsed = 0;
    for q in &queries {
        match parse(&q.query, &opts) {
            Ok(e) => {
                parsed += 1;
                let printed = e.to_string();
                match parse(&printed, &opts) {
                    Ok(again) if canonical(&again) == canonical(&e) => {}
                    Ok(again) => failures.push(format!(
                        "{}:{}: {:?} prints as {printed:?}, which parses to another tree: {again:?}",
                        q.file, q.line, q.query
                    )),
                    Err(err) => failures.push(format!(
                        "{}:{}: {:?} prints as {printed:?}, which does not parse: {err}",
                        q.file, q.line, q.query
                    )),
                }
            }
            Err(_) if q.expect_fail => {}
            Err(err) => failures.push(format!("{}:{}: {:?}: {err}", q.file, q.line, q.query)),
        }
    }
    eprintln!("{dir}: {} queries, {parsed} parsed", queries.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_v3_5_3_query_parses_and_prints_back() {
    check_scripts("testdata/promql/v3.5.3", 1400);
}

#[test]
fn every_v3_14_0_query_parses_and_prints_back() {
    check_scripts("testdata/promql/v3.14.0", 2100);
}
