//! Chunk sets the XOR benches share.

use gauntlet_bench::datagen::{GenConfig, write_blocks_dir};
use gauntlet_engine::block::{SegmentReader, block_dirs};
use gauntlet_engine::chunk::Encoding;

/// XOR payloads of the blocks Gauntlet's block writer cuts from a small, fixed generator config
/// (node, kube and app families of 2 targets over 2 h, seed 1), in file order; the blocks are
/// written to a temporary directory that is removed on return.
pub fn generated_chunks() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = GenConfig {
        targets: 2,
        seed: 1,
        ..GenConfig::default()
    };
    write_blocks_dir(&cfg, dir.path()).expect("generated blocks");
    let mut chunks = Vec::new();
    for block in block_dirs(dir.path()).expect("block dirs") {
        let reader = SegmentReader::open(&block.join("chunks")).expect("chunk segments");
        for rec in reader.iter() {
            let (_, enc, data) = rec.expect("chunk record");
            if enc == Encoding::Xor.as_u8() {
                chunks.push(data.to_vec());
            }
        }
    }
    chunks
}
