//! Parses arbitrary bytes as a store index-header and, when they parse, decodes every symbol
//! page and postings offset window it points at from the rest of the input taken as the index;
//! any outcome but a panic (or a huge allocation) is fine.
#![no_main]
use gauntlet_engine::store::header::IndexHeader;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    // The first two bytes say where the header ends and the index begins.
    let Some((split, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let at = usize::from(u16::from_le_bytes(*split)).min(rest.len());
    let (header, index) = rest.split_at(at);
    if let Ok(h) = IndexHeader::parse(header, Path::new("fuzz-header")) {
        let _ = h.label_names();
        let _ = h.memory_bytes();
        let _ = h.verify_against(index, Path::new("fuzz-index"));
        let _ = h.verify_against(rest, Path::new("fuzz-index"));
    }
});
