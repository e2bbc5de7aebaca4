//! Remote write 2.0 bodies (`io.prometheus.write.v2.Request`), raw or snappy-compressed,
//! through the receiver's decompression, decoder (symbol references resolved) and label
//! validation: never a panic, and the same reading as prost (see `remote_write/check.rs`).
#![no_main]
use gauntlet_engine::remote_write::Version;
use libfuzzer_sys::fuzz_target;

#[path = "remote_write/check.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::run(Version::V2, data));
