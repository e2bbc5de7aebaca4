//! Printing a parsed query and parsing the text again gives the same tree, for queries the
//! grammar-driven generator makes from proptest's seeds (valid ones, and malformed ones that
//! happen to parse).

mod common;

use common::canonical;
use common::generate::{malformed_queries, valid_queries};
use gauntlet_promql::parser::{Options, parse};
use proptest::prelude::*;

fn round_trips(q: &str) -> Result<(), TestCaseError> {
    let opts = Options::all_features();
    let Ok(e) = parse(q, &opts) else {
        return Ok(());
    };
    let printed = e.to_string();
    let again = parse(&printed, &opts)
        .map_err(|err| TestCaseError::fail(format!("{q:?} prints as {printed:?}: {err}")))?;
    prop_assert_eq!(
        canonical(&again),
        canonical(&e),
        "{:?} prints as {:?}",
        q,
        printed
    );
    // Printing is stable: the printed text prints as itself.
    prop_assert_eq!(again.to_string(), printed);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn printed_queries_parse_back_to_the_same_tree(seed in any::<u64>()) {
        for q in valid_queries(seed, 4).iter().chain(&malformed_queries(seed, 4)) {
            round_trips(q)?;
        }
    }
}
