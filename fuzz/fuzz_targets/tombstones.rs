//! Tombstones parsing on arbitrary bytes (raw, and framed with a valid header and CRC so the
//! fuzzer reaches the entry decoder): never panics, and what parses re-encodes to a file that
//! parses to the same set.
#![no_main]
use std::path::Path;

use gauntlet_engine::block::Tombstones;
use gauntlet_engine::encoding::crc32c;
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    let path = Path::new("fuzz/tombstones");
    if let Ok(t) = Tombstones::parse(bytes, path) {
        let enc = t.encode();
        let back = Tombstones::parse(&enc, path).expect("own output must parse");
        assert_eq!(back, t);
        assert_eq!(back.encode(), enc);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut framed = vec![0x01, 0x30, 0xBA, 0x30, 0x01];
    framed.extend_from_slice(data);
    framed.extend_from_slice(&crc32c(data).to_be_bytes());
    check(&framed);
});
