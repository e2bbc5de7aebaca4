//! Arbitrary text as a `match[]` series selector: a matcher list or a placed error, never a
//! panic; a selector that parses gives the same matchers when parsed again from its printed
//! form.

#![no_main]

use gauntlet_promql::parse_selector;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ms) = parse_selector(text) {
        let printed = format!(
            "{{{}}}",
            ms.iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        let again = parse_selector(&printed)
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}: {e}"));
        assert_eq!(again.len(), ms.len(), "{printed}");
    }
});
