//! Arbitrary bytes as a label filter file: reading must never panic and never accept a filter
//! whose lookups could fall outside its fingerprints; whatever reads must answer lookups and
//! encode back to the same bytes.
//!
//! Inputs starting with a 0 byte are structured: up to 8 edit bytes, then label pairs
//! (`name=value` lines). A filter is built from the pairs and encoded, the edits flip bytes of
//! the file (pairs of position, mask), and the checksum is recomputed, so damaged headers with
//! a valid CRC are explored too.

#![no_main]

use std::path::Path;

use gauntlet_engine::block::LabelFilter;
use gauntlet_engine::encoding::crc32c;
use gauntlet_engine::labels::{MatchType, Matcher};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    let Ok(f) = LabelFilter::decode(data, Path::new("fuzz")) else {
        return;
    };
    assert_eq!(f.encode(), data, "a read filter encodes to its bytes");
    for (n, v) in [("__name__", "up"), ("job", ""), ("", ""), ("a", "b")] {
        let _ = f.contains(n, v);
    }
    let ms = [
        Matcher::equal("job", "api"),
        Matcher::new(MatchType::Regexp, "code", "500|503").unwrap(),
    ];
    let _ = f.may_match(&ms);
}

fuzz_target!(|data: &[u8]| {
    let Some((0, rest)) = data.split_first() else {
        check(data);
        return;
    };
    let (edits, text) = rest.split_at(rest.len().min(8));
    let text = String::from_utf8_lossy(text);
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect();
    let Ok(f) = LabelFilter::from_pairs(pairs.iter().copied(), 7) else {
        return;
    };
    for (n, v) in &pairs {
        assert!(f.contains(n, v), "a built filter holds its pairs");
    }
    let mut bytes = f.encode();
    let body = bytes.len() - 4;
    for e in edits.chunks(2) {
        let pos = usize::from(e[0]) * body / 256;
        bytes[pos] ^= e.get(1).copied().unwrap_or(0xFF);
    }
    let crc = crc32c(&bytes[..body]);
    bytes[body..].copy_from_slice(&crc.to_be_bytes());
    check(&bytes);
});
