//! Benchmarks and measuring tools for Gauntlet; the benches live in `benches/`. This library
//! re-exports the data generator ([`datagen`], its own crate, which the server's `--demo` uses
//! too) and holds its remote-write form ([`remote_write`]), the load
//! generators ([`load`]) and the side-by-side runner ([`runner`]) behind the `gauntlet-bench`
//! binary, and what several benches share.

pub use gauntlet_datagen as datagen;
pub mod load;
pub mod remote_write;
pub mod runner;

use std::path::{Path, PathBuf};

use gauntlet_engine::block::SegmentReader;
use gauntlet_engine::chunk::Encoding;

/// The chunks directory of the promtool-written fixture block (200 series, 800 chunks, 96 000
/// samples over 2 h).
pub fn fixture_chunks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/tsdb/promtool-200series-2h/01M80EDTXX3TS2DC5H3CJBESG9/chunks")
}

/// Payloads of the first `limit` XOR chunks of the fixture block, in file order.
pub fn fixture_xor_chunks(limit: usize) -> Vec<Vec<u8>> {
    let dir = fixture_chunks_dir();
    let reader = SegmentReader::open(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    reader
        .iter()
        .map(|r| r.unwrap_or_else(|e| panic!("fixture segment: {e}")))
        .filter(|(_, enc, _)| *enc == Encoding::Xor.as_u8())
        .take(limit)
        .map(|(_, _, data)| data.to_vec())
        .collect()
}
