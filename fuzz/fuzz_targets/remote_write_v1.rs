//! Remote write 1.0 bodies (`prometheus.WriteRequest`), raw or snappy-compressed, through the
//! receiver's decompression, decoder and label validation: never a panic, and the same
//! reading as prost (see `remote_write/check.rs`).
#![no_main]
use gauntlet_engine::remote_write::Version;
use libfuzzer_sys::fuzz_target;

#[path = "remote_write/check.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::run(Version::V1, data));
