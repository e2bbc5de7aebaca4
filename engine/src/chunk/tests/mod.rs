//! Tests of the chunk codecs against Prometheus-written data, round trips and hostile input.

mod fast_paths;
mod histogram_appenders;
mod histogram_fixtures;
mod histogram_hostile;
mod hostile_input;
mod many_lanes;
mod prometheus_fixtures;
mod round_trip;

use std::path::{Path, PathBuf};

/// One record of a chunk segment file.
pub(super) struct SegmentChunk {
    /// Byte offset of the record in its file.
    pub offset: usize,
    /// The encoding byte.
    pub encoding: u8,
    /// The chunk payload.
    pub data: Vec<u8>,
}

/// Root of the Prometheus-written test blocks.
pub(super) fn testdata() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/tsdb"))
}

/// Every `chunks/NNNNNN` file below `dir`, sorted.
pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.parent().and_then(Path::file_name) == Some("chunks".as_ref()) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads a chunk segment file with the block segment reader, which checks its header and every
/// record's CRC.
pub(super) fn read_segment(path: &Path) -> Vec<SegmentChunk> {
    let bytes = std::fs::read(path).unwrap();
    let dir = path.parent().unwrap().to_path_buf();
    let reader = crate::block::SegmentReader::from_segments(vec![bytes], dir).unwrap();
    reader
        .iter()
        .map(|r| {
            let (chunk_ref, encoding, data) = r.unwrap_or_else(|e| panic!("{path:?}: {e}"));
            SegmentChunk {
                offset: (chunk_ref & 0xFFFF_FFFF) as usize,
                encoding,
                data: data.to_vec(),
            }
        })
        .collect()
}
