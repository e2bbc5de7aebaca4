//! The per-block index-header: the parts of a block's index needed to resolve matchers (symbol
//! table, postings offset table) built once from ranged reads and kept on local disk, so that
//! only postings lists, series entries and chunks are fetched per request. Format in
//! `INDEX_HEADER.md` beside this file.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::StoreError;
use crate::bucket::Bucket;
use crate::encoding::{Decbuf, Encbuf, crc32c};
use crate::index::reader::{HEADER_LEN, MAGIC};
use crate::index::toc::TOC_LEN;
use crate::index::{IndexError, IndexReader, Toc};

/// File name of the index-header inside `<data-dir>/<ULID>/`.
pub const HEADER_FILENAME: &str = "gauntlet-index-header";
/// Length of the source section: `BE32 len`, `BE64 index size`, six `BE64` TOC offsets, CRC.
const SOURCE_LEN: usize = 4 + 8 + 6 * 8 + 4;

/// An index-header mapped from local disk.
#[derive(Debug)]
pub struct IndexHeader {
    reader: IndexReader<Mmap>,
    /// Size of the full index object, bytes.
    index_size: u64,
    /// The TOC of the full index.
    toc: Toc,
    /// Postings lists appear in the file in postings-offset-table order, so a list ends where
    /// the next entry's list starts.
    postings_in_order: bool,
    file_size: u64,
}

impl IndexHeader {
    /// Opens the header at `path`, building it from the block's index in the bucket first when
    /// it is missing or unreadable.
    pub async fn open_or_build(
        bucket: &Bucket,
        block: &str,
        path: &Path,
    ) -> Result<Self, StoreError> {
        if path.exists() {
            match Self::open(path) {
                Ok(h) => return Ok(h),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "rebuilding index-header")
                }
            }
        }
        let bytes = build(bucket, &format!("{block}/index"), path).await?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
        Self::open(path)
    }

    /// Maps and validates a header file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
        let file_size = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        if file_size < (HEADER_LEN + SOURCE_LEN + TOC_LEN) as u64 {
            return Err(IndexError::TooSmall {
                path: path.to_path_buf(),
                size: file_size,
            }
            .into());
        }
        // SAFETY: the header is written once to a temporary name and renamed into place; it is
        // never modified while mapped, and every read goes through bounds-checked slices.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| StoreError::io(path, e))?;
        let (index_size, toc) = read_source(&map, path)?;
        let reader = IndexReader::header_from_bytes(map, path.to_path_buf())?;
        let mut postings_in_order = true;
        let mut prev = 0;
        for i in 0..reader.num_postings_entries() {
            let off = reader.postings_offset_at(i)?;
            if off < prev || off >= index_size {
                postings_in_order = false;
                break;
            }
            prev = off;
        }
        Ok(IndexHeader {
            reader,
            index_size,
            toc,
            postings_in_order,
            file_size,
        })
    }

    /// The reader over the header: symbols, label names and values, postings offsets.
    pub fn reader(&self) -> &IndexReader<Mmap> {
        &self.reader
    }

    /// Size of the full index object in the bucket, bytes.
    pub fn index_size(&self) -> u64 {
        self.index_size
    }

    /// Size of the header file, bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// The byte range of the index to fetch for the postings list at `off`: up to the next
    /// list when lists are in table order, else a first guess of `guess` bytes.
    pub fn postings_range(&self, off: u64, guess: u64) -> std::ops::Range<u64> {
        let limit = self.toc.postings_offset_table.min(self.index_size);
        if self.postings_in_order {
            let n = self.reader.num_postings_entries();
            // The first entry whose list starts after `off`.
            let (mut lo, mut hi) = (0, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.reader.postings_offset_at(mid) {
                    Ok(o) if o <= off => lo = mid + 1,
                    _ => hi = mid,
                }
            }
            let end = if lo < n {
                self.reader.postings_offset_at(lo).unwrap_or(limit)
            } else {
                limit
            };
            if end > off {
                return off..end.min(limit.max(off + 8));
            }
        }
        off..(off + guess).min(self.index_size)
    }

    /// End of the series section of the full index (where series entries may be read).
    pub fn series_end(&self) -> u64 {
        [
            self.toc.label_indices,
            self.toc.postings,
            self.toc.postings_offset_table,
        ]
        .into_iter()
        .filter(|&o| o > self.toc.series)
        .min()
        .unwrap_or(self.index_size)
    }
}

/// Reads the source section: the size and TOC of the full index.
fn read_source(data: &[u8], path: &Path) -> Result<(u64, Toc), StoreError> {
    let corrupt = |reason: &str| IndexError::Corrupt {
        path: path.to_path_buf(),
        section: "index-header source",
        offset: HEADER_LEN as u64,
        reason: reason.to_string(),
    };
    let sec = &data[HEADER_LEN..HEADER_LEN + SOURCE_LEN];
    let body = &sec[4..SOURCE_LEN - 4];
    let mut d = Decbuf::new(sec, HEADER_LEN as u64);
    let dec = |e| IndexError::Decode {
        path: path.to_path_buf(),
        section: "index-header source",
        source: e,
    };
    if d.be32().map_err(dec)? as usize != SOURCE_LEN - 8 {
        return Err(corrupt("bad length").into());
    }
    let index_size = d.be64().map_err(dec)?;
    let toc = Toc {
        symbols: d.be64().map_err(dec)?,
        series: d.be64().map_err(dec)?,
        label_indices: d.be64().map_err(dec)?,
        label_offset_table: d.be64().map_err(dec)?,
        postings: d.be64().map_err(dec)?,
        postings_offset_table: d.be64().map_err(dec)?,
    };
    if d.be32().map_err(dec)? != crc32c(body) {
        return Err(corrupt("CRC mismatch").into());
    }
    Ok((index_size, toc))
}

/// Builds the header bytes of the index object at `index_path` with four ranged reads: the
/// TOC, the symbol table's length, then the symbol table and the postings offset table.
pub async fn build(bucket: &Bucket, index_path: &str, local: &Path) -> Result<Vec<u8>, StoreError> {
    let size = bucket.size(index_path).await?;
    let ipath = PathBuf::from(index_path);
    if size < (HEADER_LEN + TOC_LEN) as u64 {
        return Err(IndexError::TooSmall { path: ipath, size }.into());
    }
    let head = bucket.get_range(index_path, 0..HEADER_LEN as u64).await?;
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if magic != MAGIC {
        return Err(IndexError::BadMagic {
            path: ipath,
            found: magic,
        }
        .into());
    }
    if head[4] != 2 {
        // v1 symbol references are file offsets, which moving the table would break.
        return Err(IndexError::UnsupportedVersion {
            path: ipath,
            version: head[4],
        }
        .into());
    }
    let tail = bucket
        .get_range(index_path, size - TOC_LEN as u64..size)
        .await?;
    let toc = Toc::read(&tail, &ipath)?;
    let limit = size - TOC_LEN as u64;
    let past_end = |section: &'static str, offset: u64, len: u64| IndexError::PastEnd {
        path: ipath.clone(),
        section,
        offset,
        len,
        limit,
    };
    if toc.symbols < HEADER_LEN as u64 || toc.symbols + 8 > limit {
        return Err(past_end("symbol table", toc.symbols, 8).into());
    }
    if toc.postings_offset_table < HEADER_LEN as u64 || toc.postings_offset_table + 8 > limit {
        return Err(past_end("postings offset table", toc.postings_offset_table, 8).into());
    }
    let lens = bucket
        .get_ranges(
            index_path,
            &[
                toc.symbols..toc.symbols + 4,
                toc.postings_offset_table..toc.postings_offset_table + 4,
            ],
        )
        .await?;
    let be32 = |b: &[u8]| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let sym_end = toc.symbols + 8 + be32(&lens[0]);
    let pot_end = toc.postings_offset_table + 8 + be32(&lens[1]);
    if sym_end > limit {
        return Err(past_end("symbol table", toc.symbols, sym_end - toc.symbols).into());
    }
    if pot_end > limit {
        let len = pot_end - toc.postings_offset_table;
        return Err(past_end("postings offset table", toc.postings_offset_table, len).into());
    }
    let parts = bucket
        .get_ranges(
            index_path,
            &[toc.symbols..sym_end, toc.postings_offset_table..pot_end],
        )
        .await?;

    let mut e = Encbuf::with_capacity(parts[0].len() + parts[1].len() + 128);
    e.put_bytes(&head);
    let start = e.len();
    e.put_be32((SOURCE_LEN - 8) as u32);
    e.put_be64(size);
    for v in [
        toc.symbols,
        toc.series,
        toc.label_indices,
        toc.label_offset_table,
        toc.postings,
        toc.postings_offset_table,
    ] {
        e.put_be64(v);
    }
    let crc = crc32c(&e.get()[start + 4..]);
    e.put_be32(crc);
    let symbols = e.len() as u64;
    e.put_bytes(&parts[0]);
    let pot = e.len() as u64;
    e.put_bytes(&parts[1]);
    Toc {
        symbols,
        postings_offset_table: pot,
        ..Toc::default()
    }
    .encode(&mut e);
    // Validate before anyone persists it: a corrupt index fails here, naming the bucket path.
    IndexReader::header_from_bytes(e.get(), local.to_path_buf()).map_err(|err| {
        StoreError::Index(match err {
            IndexError::Crc {
                section,
                expected,
                actual,
                ..
            } => IndexError::Crc {
                path: ipath.clone(),
                section,
                offset: if section == "symbol table" {
                    toc.symbols
                } else {
                    toc.postings_offset_table
                },
                expected,
                actual,
            },
            other => other,
        })
    })?;
    Ok(e.buf)
}
