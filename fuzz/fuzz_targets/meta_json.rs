//! meta.json and marker parsing on arbitrary bytes: never panics, and whatever parses is
//! written back into text that parses to the same value and is written identically again.
#![no_main]
use std::path::Path;

use gauntlet_engine::block::{BlockMeta, DeletionMark, NoCompactMark, NoDownsampleMark};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz/meta.json");
    if let Ok(meta) = BlockMeta::parse(data, path) {
        // The first write normalises (key order, escaping, number forms); from then on the
        // text is a fixed point.
        let j1 = meta.to_json();
        let m2 = BlockMeta::parse(j1.as_bytes(), path).expect("own output must parse");
        let j2 = m2.to_json();
        assert_eq!(j1, j2, "to_json is not a fixed point");
        let m3 = BlockMeta::parse(j2.as_bytes(), path).expect("own output must parse");
        assert_eq!(m2, m3);
    }
    if let Ok(m) = DeletionMark::parse(data, path) {
        assert_eq!(
            DeletionMark::parse(m.to_json().as_bytes(), path).unwrap(),
            m
        );
    }
    if let Ok(m) = NoCompactMark::parse(data, path) {
        assert_eq!(
            NoCompactMark::parse(m.to_json().as_bytes(), path).unwrap(),
            m
        );
    }
    if let Ok(m) = NoDownsampleMark::parse(data, path) {
        assert_eq!(
            NoDownsampleMark::parse(m.to_json().as_bytes(), path).unwrap(),
            m
        );
    }
});
