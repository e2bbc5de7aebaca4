//! `gauntlet tools block label-filter DIR`: builds the label filter the store keeps for each
//! block and prints its size, build time and false-positive rate measured on absent pairs.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use gauntlet_engine::block::{LabelFilter, block_dirs};
use gauntlet_engine::index::IndexReader;

/// Prints one line per block under `dir`: pairs, filter bytes, bytes per pair, build time
/// (best of 3) and the share of `probes` absent pairs the filter wrongly reports present.
pub fn run(dir: &Path, probes: usize) -> anyhow::Result<()> {
    println!("block\tpairs\tbytes\tbytes/pair\tbuild_ms\tfalse_positive_%");
    for b in block_dirs(dir)? {
        let path = b.join("index");
        let index =
            IndexReader::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut best = f64::MAX;
        let mut filter = None;
        for _ in 0..3 {
            let t = Instant::now();
            let f = LabelFilter::build(&index, index.size())?;
            best = best.min(t.elapsed().as_secs_f64() * 1000.0);
            filter = Some(f);
        }
        let Some(f) = filter else { continue };
        let names = index.label_names();
        let hits = (0..probes)
            .filter(|i| {
                let name = names
                    .get(i % names.len().max(1))
                    .map_or("x", String::as_str);
                f.contains(name, &format!("absent-{i}"))
            })
            .count();
        let bytes = f.encoded_len();
        println!(
            "{}\t{}\t{}\t{:.3}\t{:.2}\t{:.3}",
            b.file_name().unwrap_or_default().to_string_lossy(),
            f.num_keys(),
            bytes,
            bytes as f64 / f.num_keys().max(1) as f64,
            best,
            100.0 * hits as f64 / probes.max(1) as f64
        );
    }
    Ok(())
}
