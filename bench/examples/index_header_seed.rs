//! Writes fuzz seeds from a block directory: the store's index-header of its index followed by
//! the index (`fuzz/fuzz_targets/index_header.rs` input layout), and series entries from the
//! start of its series section (`series_entry` layout). Used by `fuzz/run.sh`.
//!
//! `cargo run -p gauntlet-bench --example index_header_seed -- BLOCK_DIR HEADER_SEED ENTRY_DIR`

use std::path::{Path, PathBuf};

use gauntlet_engine::index::IndexReader;
use gauntlet_engine::store::header::IndexHeader;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [block, header_seed, entry_dir] = args.as_slice() else {
        anyhow::bail!("usage: index_header_seed BLOCK_DIR HEADER_SEED ENTRY_DIR");
    };
    let index = std::fs::read(block.join("index"))?;
    let header = IndexHeader::bytes_from_index(&index, Path::new("index"))?;
    let len = u16::try_from(header.len())?;
    let mut seed = len.to_le_bytes().to_vec();
    seed.extend_from_slice(&header);
    seed.extend_from_slice(&index);
    if let Some(dir) = header_seed.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(header_seed, seed)?;
    std::fs::create_dir_all(entry_dir)?;
    let series = IndexReader::from_bytes(index.clone(), block.join("index"))?
        .toc()
        .series as usize;
    for (i, knobs) in [0x3Fu8, 0x7F].into_iter().enumerate() {
        let mut seed = vec![knobs];
        seed.extend_from_slice(&index[series..(series + 400).min(index.len())]);
        std::fs::write(entry_dir.join(format!("seed{i}")), seed)?;
    }
    Ok(())
}
