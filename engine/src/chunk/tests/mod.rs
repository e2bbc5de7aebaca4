//! Tests of the chunk codecs against Prometheus-written data, round trips and hostile input.

mod hostile_input;
mod prometheus_fixtures;
mod round_trip;

use std::path::{Path, PathBuf};

use crate::encoding::{Decbuf, crc32c_append};

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

/// Reads a chunk segment file (spec §3.5), checking its magic and every record's CRC.
pub(super) fn read_segment(path: &Path) -> Vec<SegmentChunk> {
    let bytes = std::fs::read(path).unwrap();
    let mut d = Decbuf::new(&bytes, 0);
    assert_eq!(d.be32().unwrap(), 0x85BD_40DD, "{path:?}: segment magic");
    assert_eq!(d.u8().unwrap(), 1, "{path:?}: segment version");
    d.skip(3).unwrap();
    let mut out = Vec::new();
    while d.remaining() > 0 {
        let offset = d.position();
        let len = d.uvarint().unwrap() as usize;
        let encoding = d.u8().unwrap();
        let data = d.bytes(len).unwrap();
        let crc = d.be32().unwrap();
        assert_eq!(
            crc32c_append(crc32c_append(0, &[encoding]), data),
            crc,
            "{path:?}: CRC of record at {offset}"
        );
        out.push(SegmentChunk {
            offset,
            encoding,
            data: data.to_vec(),
        });
    }
    out
}
