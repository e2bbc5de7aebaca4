//! The table of contents: the last 52 bytes of an index, six big-endian section offsets and a
//! CRC-32C over them.

use super::error::IndexError;
use crate::encoding::{Decbuf, Encbuf, crc32c};
use std::path::Path;

/// Size of the TOC in bytes: six BE64 offsets and a BE32 CRC.
pub const TOC_LEN: usize = 6 * 8 + 4;

/// Where each section of an index starts (absolute byte offsets; 0 means absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Toc {
    /// The symbol table.
    pub symbols: u64,
    /// The series (the writer records the position before the 16-byte padding).
    pub series: u64,
    /// The legacy label indices (2.42 and older writers).
    pub label_indices: u64,
    /// The legacy label offset table.
    pub label_offset_table: u64,
    /// The postings lists (position before the 4-byte padding).
    pub postings: u64,
    /// The postings offset table.
    pub postings_offset_table: u64,
}

impl Toc {
    /// Reads and CRC-checks the TOC at the end of `data`.
    pub fn read(data: &[u8], path: &Path) -> Result<Toc, IndexError> {
        let Some(start) = data.len().checked_sub(TOC_LEN) else {
            return Err(IndexError::TooSmall {
                path: path.to_path_buf(),
                size: data.len() as u64,
            });
        };
        let body = &data[start..start + TOC_LEN - 4];
        let mut d = Decbuf::new(&data[start..], start as u64);
        let decode = |e| IndexError::Decode {
            path: path.to_path_buf(),
            section: "TOC",
            source: e,
        };
        let toc = Toc {
            symbols: d.be64().map_err(decode)?,
            series: d.be64().map_err(decode)?,
            label_indices: d.be64().map_err(decode)?,
            label_offset_table: d.be64().map_err(decode)?,
            postings: d.be64().map_err(decode)?,
            postings_offset_table: d.be64().map_err(decode)?,
        };
        let expected = d.be32().map_err(decode)?;
        let actual = crc32c(body);
        if expected != actual {
            return Err(IndexError::Crc {
                path: path.to_path_buf(),
                section: "TOC",
                offset: start as u64,
                expected,
                actual,
            });
        }
        Ok(toc)
    }

    /// Appends the encoded TOC with its CRC.
    pub fn encode(&self, out: &mut Encbuf) {
        let start = out.len();
        for v in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_offset_table,
            self.postings,
            self.postings_offset_table,
        ] {
            out.put_be64(v);
        }
        let crc = crc32c(&out.get()[start..]);
        out.put_be32(crc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toc_round_trips_and_detects_flipped_bytes() {
        let toc = Toc {
            symbols: 5,
            series: 516,
            label_indices: 13056,
            label_offset_table: 19336,
            postings: 13460,
            postings_offset_table: 19439,
        };
        let mut e = Encbuf::new();
        e.put_bytes(&[0; 7]);
        toc.encode(&mut e);
        assert_eq!(e.len(), 7 + TOC_LEN);
        assert_eq!(Toc::read(e.get(), Path::new("x")).unwrap(), toc);
        let mut bad = e.buf.clone();
        bad[10] ^= 1;
        match Toc::read(&bad, Path::new("x")) {
            Err(IndexError::Crc {
                section, offset, ..
            }) => {
                assert_eq!((section, offset), ("TOC", 7));
            }
            other => panic!("want CRC error, got {other:?}"),
        }
        assert!(matches!(
            Toc::read(&[0; 51], Path::new("x")),
            Err(IndexError::TooSmall { size: 51, .. })
        ));
    }
}
