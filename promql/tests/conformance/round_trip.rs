//! Printing a parsed query and parsing the text again gives the same tree, for queries the
//! grammar-driven generator makes from proptest's seeds (valid ones, long ones, and malformed
//! ones that happen to parse): the one-line form and the multi-line form alike.

use crate::common::canonical;
use crate::common::generate::{long_queries, malformed_queries, valid_queries};
use gauntlet_promql::parser::pretty::MAX_LINE;
use gauntlet_promql::parser::{Expr, Options, parse};
use proptest::prelude::*;

fn round_trips(q: &str) -> Result<(), TestCaseError> {
    let opts = Options::all_features();
    let Ok(e) = parse(q, &opts) else {
        return Ok(());
    };
    let printed = e.to_string();
    let ambiguous = offset_then_at(q, &printed);
    let again = match parse(&printed, &opts) {
        Ok(again) => again,
        Err(_) if ambiguous => return Ok(()),
        Err(err) => {
            return Err(TestCaseError::fail(format!(
                "{q:?} prints as {printed:?}: {err}"
            )));
        }
    };
    if ambiguous && canonical(&again) != canonical(&e) {
        return Ok(());
    }
    prop_assert_eq!(
        canonical(&again),
        canonical(&e),
        "{:?} prints as {:?}",
        q,
        printed
    );
    // Printing is stable: the printed text prints as itself.
    prop_assert_eq!(&again.to_string(), &printed);
    pretty_round_trips(q, &e, &printed)
}

/// The texts Prometheus's own printing does not read back, printed the same way here:
/// `x offset (1s + 2) @ start() + y` parses, but a selector is printed with its `@` before
/// its offset, and in `x @ start() offset (1s + 2) + y` the offset's duration expression
/// takes in what follows: Prometheus 3.5 refuses that text with `unexpected identifier "y"
/// in offset` (and `x @ 5 offset (2) + 3` it reads as an offset of 5 s). Gauntlet keeps
/// Prometheus's order, so `format_query` answers as Prometheus does; a query that wrote a
/// parenthesised offset before an `@` may then print as text that reads otherwise, and the
/// check is set aside for it.
fn offset_then_at(q: &str, printed: &str) -> bool {
    // Where a parenthesised offset (`offset (`, `offset -(`, `offset +(`) starts.
    let paren_offsets = |text: &str| -> Vec<usize> {
        ["offset (", "offset -(", "offset +("]
            .iter()
            .flat_map(|p| text.match_indices(p).map(|(at, _)| at))
            .collect()
    };
    let wrote = paren_offsets(q).iter().any(|&at| q[at..].contains('@'));
    let printed_at_first = paren_offsets(printed)
        .iter()
        .any(|&at| printed[..at].contains('@'));
    wrote && printed_at_first
}

/// The multi-line form parses back to the same tree, at Prometheus's line limit and at limits
/// that break up every node that can be; it is the one-line form when that fits, and not when
/// it is one byte too long for a node that can be broken up.
fn pretty_round_trips(q: &str, e: &Expr, printed: &str) -> Result<(), TestCaseError> {
    let opts = Options::all_features();
    for max in [MAX_LINE, 10, 0] {
        let pretty = e.pretty_with_max_line(max);
        let again = parse(&pretty, &opts)
            .map_err(|err| TestCaseError::fail(format!("{q:?} is written {pretty:?}: {err}")))?;
        prop_assert_eq!(
            canonical(&again),
            canonical(e),
            "{:?} is written {:?} (lines of {} bytes at most)",
            q,
            pretty,
            max
        );
    }
    prop_assert_eq!(&e.pretty_with_max_line(printed.len()), printed);
    let breaks = match e {
        Expr::Binary(_) | Expr::Paren(_) | Expr::Aggregate(_) => true,
        Expr::Call(c) => !c.args.is_empty(),
        _ => false,
    };
    if breaks {
        prop_assert_ne!(&e.pretty_with_max_line(printed.len() - 1), printed);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn printed_queries_parse_back_to_the_same_tree(seed in any::<u64>()) {
        let queries = valid_queries(seed, 4)
            .into_iter()
            .chain(malformed_queries(seed, 4))
            .chain(long_queries(seed, 2, 100));
        for q in &queries.collect::<Vec<_>>() {
            round_trips(q)?;
        }
    }
}
