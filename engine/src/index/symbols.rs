//! The symbol table: every label name and value of the index, sorted and deduplicated, so series
//! entries can name strings by a small integer.
//!
//! Layout: `BE32 len`, `BE32 count`, `count` x (`uvarint strlen`, bytes), `BE32 CRC` over the
//! `len` bytes after the length field. A v2 reference is the 0-based position of a symbol, a v1
//! reference is the absolute file offset of its length prefix.

use super::error::IndexError;
use super::reader::sized_section;
use crate::encoding::{Decbuf, DecodeError};
use std::cmp::Ordering;
use std::path::Path;

const SECTION: &str = "symbol table";

/// A parsed symbol table over bytes held elsewhere (the index file or the writer's buffer).
#[derive(Debug, Clone)]
pub(crate) struct SymbolTable {
    version: u8,
    /// Absolute offset of the first symbol (just after the count field).
    first: u64,
    /// Absolute offset one past the last byte covered by the CRC.
    end: u64,
    count: u32,
    /// v2 only: offset of each symbol relative to `first`; the table is at most 4 GiB.
    offsets: Vec<u32>,
}

impl SymbolTable {
    /// Parses and CRC-checks the table at absolute offset `off` of `data`; nothing may reach
    /// `limit`.
    pub(crate) fn parse(
        data: &[u8],
        off: u64,
        limit: u64,
        version: u8,
        path: &Path,
    ) -> Result<SymbolTable, IndexError> {
        let (body, body_off) = sized_section(data, off, limit, SECTION, path)?;
        let decode = |source| IndexError::Decode {
            path: path.to_path_buf(),
            section: SECTION,
            source,
        };
        let mut d = Decbuf::new(body, body_off);
        let count = d.be32().map_err(decode)?;
        // Each symbol takes at least its one-byte length, so this bounds the allocation by the
        // bytes actually present.
        if count as usize > d.remaining() {
            return Err(IndexError::Corrupt {
                path: path.to_path_buf(),
                section: SECTION,
                offset: body_off,
                reason: format!("{count} symbols cannot fit in {} bytes", d.remaining()),
            });
        }
        let first = d.offset();
        let mut offsets = Vec::new();
        if version >= 2 {
            offsets.reserve_exact(count as usize);
        }
        for _ in 0..count {
            if version >= 2 {
                // `first` is at least 4 bytes into a body of at most u32::MAX bytes.
                offsets.push((d.offset() - first) as u32);
            }
            d.uvarint_bytes().map_err(decode)?;
        }
        Ok(SymbolTable {
            version,
            first,
            end: body_off + body.len() as u64,
            count,
            offsets,
        })
    }

    /// Number of symbols.
    pub(crate) fn len(&self) -> u32 {
        self.count
    }

    /// The symbol `r` refers to; `ref_offset` is where the reference was read, for errors.
    pub(crate) fn lookup<'a>(
        &self,
        data: &'a [u8],
        r: u32,
        path: &Path,
        ref_offset: u64,
    ) -> Result<&'a str, IndexError> {
        let at = if self.version >= 2 {
            match self.offsets.get(r as usize) {
                Some(&o) => self.first + u64::from(o),
                None => {
                    return Err(IndexError::SymbolOutOfRange {
                        path: path.to_path_buf(),
                        symbol: r,
                        offset: ref_offset,
                        limit: u64::from(self.count),
                    });
                }
            }
        } else {
            let at = u64::from(r);
            if at < self.first || at >= self.end {
                return Err(IndexError::SymbolOutOfRange {
                    path: path.to_path_buf(),
                    symbol: r,
                    offset: ref_offset,
                    limit: self.end,
                });
            }
            at
        };
        self.str_at(data, at, path)
    }

    /// The bytes of v2 symbol `r`, without a UTF-8 check.
    pub(crate) fn lookup_bytes<'a>(
        &self,
        data: &'a [u8],
        r: u32,
        path: &Path,
        ref_offset: u64,
    ) -> Result<&'a [u8], IndexError> {
        let Some(&o) = self.offsets.get(r as usize) else {
            return Err(IndexError::SymbolOutOfRange {
                path: path.to_path_buf(),
                symbol: r,
                offset: ref_offset,
                limit: u64::from(self.count),
            });
        };
        let at = self.first + u64::from(o);
        let bytes = &data[at as usize..self.end as usize];
        Decbuf::new(bytes, at)
            .uvarint_bytes()
            .map_err(|source| decode_err(path, source))
    }

    /// Decodes the length-prefixed string at absolute offset `at`, which lies inside the table.
    fn str_at<'a>(&self, data: &'a [u8], at: u64, path: &Path) -> Result<&'a str, IndexError> {
        // parse() checked `end` against the data, and callers keep `at` below it.
        let bytes = &data[at as usize..self.end as usize];
        Decbuf::new(bytes, at)
            .uvarint_str()
            .map_err(|source| IndexError::Decode {
                path: path.to_path_buf(),
                section: SECTION,
                source,
            })
    }

    /// The v2 reference of `sym`, found by binary search over the sorted table; `None` if
    /// absent.
    pub(crate) fn reverse_lookup(
        &self,
        data: &[u8],
        sym: &str,
        path: &Path,
    ) -> Result<Option<u32>, IndexError> {
        let (mut lo, mut hi) = (0usize, self.offsets.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.first + u64::from(self.offsets[mid]);
            match self.str_at(data, at, path)?.cmp(sym) {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Some(mid as u32)),
            }
        }
        Ok(None)
    }

    /// Iterates over the symbols in table order.
    pub(crate) fn iter<'a>(&self, data: &'a [u8], path: &'a Path) -> SymbolIter<'a> {
        SymbolIter {
            d: Decbuf::new(&data[self.first as usize..self.end as usize], self.first),
            left: self.count,
            path,
        }
    }
}

/// Iterator over the strings of a symbol table; stops after the first error.
#[derive(Debug)]
pub(crate) struct SymbolIter<'a> {
    d: Decbuf<'a>,
    left: u32,
    path: &'a Path,
}

impl<'a> SymbolIter<'a> {
    /// The absolute file offset of the next symbol's length prefix: its v1 reference.
    pub(crate) fn offset(&self) -> u64 {
        self.d.offset()
    }
}

impl<'a> Iterator for SymbolIter<'a> {
    type Item = Result<&'a str, IndexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        match self.d.uvarint_str() {
            Ok(s) => Some(Ok(s)),
            Err(source) => {
                self.left = 0;
                Some(Err(decode_err(self.path, source)))
            }
        }
    }
}

fn decode_err(path: &Path, source: DecodeError) -> IndexError {
    IndexError::Decode {
        path: path.to_path_buf(),
        section: SECTION,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Encbuf, crc32c};

    fn table(syms: &[&str]) -> Vec<u8> {
        let mut body = Encbuf::new();
        body.put_be32(syms.len() as u32);
        for s in syms {
            body.put_uvarint_bytes(s.as_bytes());
        }
        let mut e = Encbuf::new();
        e.put_bytes(&[0xAA; 3]);
        e.put_be32(body.len() as u32);
        e.put_bytes(body.get());
        e.put_be32(crc32c(body.get()));
        e.buf
    }

    #[test]
    fn v2_refs_are_positions_and_reverse_lookup_finds_them() {
        let syms = ["", "__name__", "a", "job", "up"];
        let data = table(&syms);
        let p = Path::new("t");
        let t = SymbolTable::parse(&data, 3, data.len() as u64, 2, p).unwrap();
        assert_eq!(t.len(), 5);
        for (i, s) in syms.iter().enumerate() {
            assert_eq!(t.lookup(&data, i as u32, p, 0).unwrap(), *s);
            assert_eq!(t.reverse_lookup(&data, s, p).unwrap(), Some(i as u32));
        }
        assert_eq!(t.reverse_lookup(&data, "b", p).unwrap(), None);
        assert!(matches!(
            t.lookup(&data, 5, p, 9),
            Err(IndexError::SymbolOutOfRange {
                symbol: 5,
                offset: 9,
                ..
            })
        ));
        let all: Vec<&str> = t.iter(&data, p).map(Result::unwrap).collect();
        assert_eq!(all, syms);
    }

    #[test]
    fn v1_refs_are_file_offsets() {
        let data = table(&["a", "bc"]);
        let p = Path::new("t");
        let t = SymbolTable::parse(&data, 3, data.len() as u64, 1, p).unwrap();
        // Header 3 bytes, len 4, count 4: "a" at 11, "bc" at 13.
        assert_eq!(t.lookup(&data, 11, p, 0).unwrap(), "a");
        assert_eq!(t.lookup(&data, 13, p, 0).unwrap(), "bc");
        assert!(t.lookup(&data, 3, p, 0).is_err());
        assert!(t.lookup(&data, 100, p, 0).is_err());
    }

    #[test]
    fn absurd_count_is_rejected_before_allocating() {
        let mut data = table(&["a"]);
        data[7..11].copy_from_slice(&u32::MAX.to_be_bytes());
        let crc = crc32c(&data[7..data.len() - 4]);
        let n = data.len();
        data[n - 4..].copy_from_slice(&crc.to_be_bytes());
        let e = SymbolTable::parse(&data, 3, n as u64, 2, Path::new("t")).unwrap_err();
        assert!(matches!(e, IndexError::Corrupt { offset: 7, .. }), "{e}");
    }
}
