//! Reads an index held fully in memory (an mmap or a `Vec`): the TOC, symbol table and postings
//! offset table are checked and indexed when it is opened; series and postings lists are
//! decoded, CRC-checked, on each request.

use super::ChunkMeta;
use super::error::IndexError;
use super::select::PostingsTable;
use super::symbols::{SymbolIter, SymbolTable};
use super::toc::{TOC_LEN, Toc};
use crate::encoding::{Decbuf, DecodeError, UvarintError, crc32c, read_uvarint};
use crate::labels::Label;
use std::cmp::Ordering;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Index magic number, the first 4 bytes of the file (big-endian).
pub const MAGIC: u32 = 0xBAAA_D700;
/// Header length in bytes: magic and version.
pub const HEADER_LEN: usize = 5;
/// Series entries start at multiples of this many bytes in format v2; a series ref is the offset
/// divided by it.
pub const SERIES_ALIGN: u64 = 16;

const POT: &str = "postings offset table";

/// A label name of the postings offset table and the run of its values in `values`.
#[derive(Debug)]
struct NameEntry {
    name: Box<str>,
    values: Range<u32>,
}

/// A reader over a whole index file.
///
/// Opening validates the header, the TOC, the symbol table and the postings offset table
/// (CRCs, ordering, bounds); series entries and postings lists are validated when read.
#[derive(Debug)]
pub struct IndexReader<B: AsRef<[u8]>> {
    buf: B,
    path: PathBuf,
    version: u8,
    toc: Toc,
    /// Absolute offset of the TOC: no section may reach it.
    limit: u64,
    symbols: SymbolTable,
    /// Label names (including the all-postings key `""`), ascending.
    names: Vec<NameEntry>,
    /// For each postings offset table entry in (name, value) order: the offset of its value
    /// field relative to `pot_start`. Four bytes per entry keeps the map compact while every
    /// value stays reachable for exact `label_values`.
    values: Vec<u32>,
    /// Absolute offset of the postings offset table body (its count field).
    pot_start: u64,
    /// Series section `[start, end)`, in bytes.
    series: Range<u64>,
    all_postings: Option<u64>,
    num_series: usize,
}

impl IndexReader<memmap2::Mmap> {
    /// Maps the index file at `path` and validates it as [`IndexReader::from_bytes`] does.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let io = |op, source| IndexError::Io {
            path: path.to_path_buf(),
            op,
            source,
        };
        let file = File::open(path).map_err(|e| io("open", e))?;
        let size = file.metadata().map_err(|e| io("stat", e))?.len();
        if size < (HEADER_LEN + TOC_LEN) as u64 {
            // Small files are read rather than mapped: mapping an empty file fails, and the
            // header checks below give a more useful error than "too small".
            let data = std::fs::read(path).map_err(|e| io("read", e))?;
            check_header(&data, path)?;
            return Err(IndexError::TooSmall {
                path: path.to_path_buf(),
                size: data.len() as u64,
            });
        }
        // SAFETY: block files are immutable once written; like Prometheus we rely on no other
        // process truncating or rewriting the file while it is mapped. All reads go through
        // bounds-checked slices of the mapping.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io("mmap", e))?;
        Self::from_bytes(map, path.to_path_buf())
    }
}

impl IndexReader<memmap2::Mmap> {
    /// Drops the pages of the mapping from this process: they stay in the page cache and
    /// fault back in when read again. A merge walking indexes larger than its memory budget
    /// calls it as it goes, so the pages it has passed do not pile up in its resident set.
    pub fn release_pages(&self) {
        release_mapped_pages(&self.buf);
    }
}

/// Drops the pages of a read-only mapping of an immutable block file from this process: they
/// stay in the page cache and fault back in when read again.
pub(crate) fn release_mapped_pages(map: &memmap2::Mmap) {
    // SAFETY: the mapping is read-only over an immutable file, so a dropped page reads back
    // the same bytes; no reference into the mapping is invalidated.
    let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
}

impl<B: AsRef<[u8]>> IndexReader<B> {
    /// Validates the index in `buf` and indexes its postings offset table; `path` is used in
    /// error messages only.
    pub fn from_bytes(buf: B, path: PathBuf) -> Result<Self, IndexError> {
        Self::build(buf, path, true)
    }

    /// Validates an index-header in `buf`: a file holding only an index's header, symbol
    /// table, postings offset table and TOC, whose postings offsets still point into the full
    /// index held elsewhere. Series and postings are then decoded from bytes fetched by the
    /// caller ([`IndexReader::decode_postings`], [`IndexReader::decode_series_entry`]).
    pub fn header_from_bytes(buf: B, path: PathBuf) -> Result<Self, IndexError> {
        Self::build(buf, path, false)
    }

    fn build(buf: B, path: PathBuf, postings_local: bool) -> Result<Self, IndexError> {
        let data = buf.as_ref();
        let version = check_header(data, &path)?;
        if data.len() < HEADER_LEN + TOC_LEN {
            return Err(IndexError::TooSmall {
                path,
                size: data.len() as u64,
            });
        }
        let toc = Toc::read(data, &path)?;
        let limit = (data.len() - TOC_LEN) as u64;
        let symbols = SymbolTable::parse(data, toc.symbols, limit, version, &path)?;
        let pot =
            PostingsOffsetTable::parse(data, toc.postings_offset_table, limit, version, &path)?;

        // The series section ends where the next section starts; 2.42 writers put the label
        // indices there, newer ones the postings.
        let series_start = toc.series;
        let series_end = if series_start == 0 {
            0
        } else {
            [
                toc.label_indices,
                toc.label_offset_table,
                toc.postings,
                toc.postings_offset_table,
            ]
            .into_iter()
            .filter(|&o| o > series_start)
            .min()
            .unwrap_or(limit)
            .min(limit)
        };

        let mut r = IndexReader {
            buf,
            path,
            version,
            toc,
            limit,
            symbols,
            names: pot.names,
            values: pot.values,
            pot_start: pot.start,
            series: series_start..series_end.max(series_start),
            all_postings: None,
            num_series: 0,
        };
        if let Some(range) = r.name_range("")
            && let Some(off) = r.find_value(range, b"")?
        {
            if !postings_local {
                r.all_postings = Some(off);
                return Ok(r);
            }
            let (body, body_off) = sized_section(r.data(), off, r.limit, "postings", &r.path)?;
            r.num_series = r.postings_count(body, body_off)?;
            r.all_postings = Some(off);
        }
        Ok(r)
    }

    fn data(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The path given when opening, used in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The index format version: 1 or 2.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The table of contents.
    pub fn toc(&self) -> &Toc {
        &self.toc
    }

    /// Size of the index in bytes.
    pub fn size(&self) -> u64 {
        self.data().len() as u64
    }

    /// The symbol `r` names (v2: its position in the table; v1: its file offset).
    pub fn symbol(&self, r: u32) -> Result<&str, IndexError> {
        self.symbols
            .lookup(self.data(), r, &self.path, self.toc.symbols)
    }

    /// Number of symbols in the table.
    pub fn num_symbols(&self) -> u32 {
        self.symbols.len()
    }

    /// All symbols in table order (sorted for files written by Prometheus or Gauntlet).
    pub fn symbols(&self) -> impl Iterator<Item = Result<&str, IndexError>> {
        let it: SymbolIter<'_> = self.symbols.iter(self.data(), &self.path);
        it
    }

    /// The symbols in table order, each with its reference: the position for a v2 index, the
    /// offset of its length prefix for v1.
    pub fn symbols_with_refs(&self) -> impl Iterator<Item = Result<(u32, &str), IndexError>> {
        let mut it: SymbolIter<'_> = self.symbols.iter(self.data(), &self.path);
        let v2 = self.version >= 2;
        let mut pos = 0u32;
        std::iter::from_fn(move || {
            // A v1 table lies in the first 4 GiB: its references are 32-bit offsets.
            let r = if v2 { pos } else { it.offset() as u32 };
            let s = it.next()?;
            pos = pos.wrapping_add(1);
            Some(s.map(|s| (r, s)))
        })
    }

    /// All label names, sorted, without the all-postings key `""`.
    pub fn label_names(&self) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| !n.name.is_empty())
            .map(|n| n.name.to_string())
            .collect()
    }

    /// All values of label `name`, sorted; empty when the name is unknown.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>, IndexError> {
        let Some(range) = self.name_range(name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(range.len());
        for i in range {
            out.push(self.value_str(self.entry(i)?.0, i)?.to_string());
        }
        Ok(out)
    }

    /// Writes the series refs of `name="value"` to `out` (cleared first); empty when absent.
    pub fn postings(&self, name: &str, value: &str, out: &mut Vec<u32>) -> Result<(), IndexError> {
        out.clear();
        if let Some(range) = self.name_range(name)
            && let Some(off) = self.find_value(range, value.as_bytes())?
        {
            self.append_postings_at(off, out)?;
        }
        Ok(())
    }

    /// Writes every series ref of the index to `out` (cleared first).
    pub fn all_postings(&self, out: &mut Vec<u32>) -> Result<(), IndexError> {
        out.clear();
        if let Some(off) = self.all_postings {
            self.append_postings_at(off, out)?;
        }
        Ok(())
    }

    /// Where the all-postings list's refs lie, CRC checked and left in place: the absolute
    /// offset of the first ref and their number (`None` without the list). Read them with
    /// [`IndexReader::postings_ref_at`]; walking the list in place spares holding a ref of
    /// every series in memory. Their order is not checked here.
    pub fn all_postings_span(&self) -> Result<Option<(u64, usize)>, IndexError> {
        let Some(off) = self.all_postings else {
            return Ok(None);
        };
        let (body, body_off) = sized_section(self.data(), off, self.limit, "postings", &self.path)?;
        let n = self.postings_count(body, body_off)?;
        Ok(Some((body_off + 4, n)))
    }

    /// The `i`th ref of a postings list whose refs start at absolute offset `start`, as
    /// [`IndexReader::all_postings_span`] gives; `None` past the end of the index.
    pub fn postings_ref_at(&self, start: u64, i: usize) -> Option<u32> {
        let at = usize::try_from(start)
            .ok()?
            .checked_add(i.checked_mul(4)?)?;
        let b = self.data().get(at..at.checked_add(4)?)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Number of series: the length of the all-postings list.
    pub fn num_series(&self) -> usize {
        self.num_series
    }

    /// Absolute offset of the all-postings list (key `""=""`), if the index has one.
    pub fn all_postings_offset(&self) -> Option<u64> {
        self.all_postings
    }

    /// Number of postings offset table entries (label name/value pairs, the all-postings key
    /// included).
    pub fn num_postings_entries(&self) -> usize {
        self.values.len()
    }

    /// Postings offset of entry `i` of the postings offset table, in (name, value) order.
    pub fn postings_offset_at(&self, i: usize) -> Result<u64, IndexError> {
        Ok(self.entry(i)?.1)
    }

    /// Decodes the postings list framed at the start of `buf` (`BE32 len`, body, `BE32 CRC`),
    /// which was read from absolute offset `base` of the index; appends its refs to `out`.
    pub fn decode_postings(
        &self,
        buf: &[u8],
        base: u64,
        out: &mut Vec<u32>,
    ) -> Result<(), IndexError> {
        let (body, body_off) = framed(buf, base, "postings", &self.path)?;
        self.append_postings_body(body, body_off, out)
    }

    /// The CRC-checked body of the series entry at the start of `buf` (read from absolute
    /// offset `base`) and the body's offset, or `Err(n)` when `buf` is too short and the entry
    /// needs `n` bytes from `base`.
    fn series_entry_body<'b>(
        &self,
        buf: &'b [u8],
        base: u64,
    ) -> Result<Result<(&'b [u8], u64), u64>, IndexError> {
        Ok(series_entry(buf, base, &self.path)?.map(|(body, at)| (body, base + at as u64)))
    }

    /// Decodes the series entry at the start of `buf`, read from absolute offset `base` of the
    /// index, as [`IndexReader::series`] does; `Ok(Some(n))` when `buf` is too short and the
    /// entry needs `n` bytes from `base`.
    pub fn decode_series_entry(
        &self,
        buf: &[u8],
        base: u64,
        labels: &mut Vec<Label>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<Option<u64>, IndexError> {
        let (body, body_off) = match self.series_entry_body(buf, base)? {
            Ok(b) => b,
            Err(need) => return Ok(Some(need)),
        };
        self.decode_series(body, body_off, labels, chunks)?;
        Ok(None)
    }

    /// Decodes the series entry at `series_ref` (v2: byte offset / 16; v1: byte offset) into
    /// its labels and chunk metas, replacing their contents; CRC checked. On error the outputs
    /// hold partial data.
    pub fn series(
        &self,
        series_ref: u32,
        labels: &mut Vec<Label>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<(), IndexError> {
        let (body, body_off) = self.series_body(series_ref)?;
        self.decode_series(body, body_off, labels, chunks)
    }

    /// Decodes series `series_ref` into the symbol references of its labels (name, value) and
    /// its chunk metas, replacing their contents; CRC checked, references checked against the
    /// symbol table. No string is looked up: a merge compares series by references.
    pub fn series_symbol_refs(
        &self,
        series_ref: u32,
        refs: &mut Vec<(u32, u32)>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<(), IndexError> {
        let (body, body_off) = self.series_body(series_ref)?;
        self.decode_series_body(body, body_off, refs, chunks)
    }

    /// The body of series `series_ref`'s entry (CRC checked) and its absolute offset.
    fn series_body(&self, series_ref: u32) -> Result<(&[u8], u64), IndexError> {
        let offset = if self.version >= 2 {
            u64::from(series_ref) * SERIES_ALIGN
        } else {
            u64::from(series_ref)
        };
        if !self.series.contains(&offset) {
            return Err(IndexError::SeriesRefOutOfRange {
                path: self.path.clone(),
                series_ref,
                offset,
                start: self.series.start,
                end: self.series.end,
            });
        }
        let section = &self.data()[offset as usize..self.series.end as usize];
        self.series_entry_body(section, offset)?
            .map_err(|need| IndexError::PastEnd {
                path: self.path.clone(),
                section: "series",
                offset,
                len: need,
                limit: self.series.end,
            })
    }

    fn decode_series(
        &self,
        body: &[u8],
        body_off: u64,
        labels: &mut Vec<Label>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<(), IndexError> {
        let mut refs = Vec::new();
        self.decode_series_body(body, body_off, &mut refs, chunks)?;
        for (i, &(n, v)) in refs.iter().enumerate() {
            let name = self.symbols.lookup(self.data(), n, &self.path, body_off)?;
            let value = self.symbols.lookup(self.data(), v, &self.path, body_off)?;
            // Reuse the strings already in `labels` to spare allocations on hot loops.
            if let Some(l) = labels.get_mut(i) {
                l.name.clear();
                l.name.push_str(name);
                l.value.clear();
                l.value.push_str(value);
            } else {
                labels.push(Label::new(name, value));
            }
        }
        labels.truncate(refs.len());
        Ok(())
    }

    /// Decodes the series entry at the start of `buf`, read from absolute offset `base`, into
    /// the symbol references of its labels (name, value) and its chunk metas, replacing their
    /// contents; CRC checked. `Ok(Some(n))` when `buf` is too short and the entry needs `n`
    /// bytes from `base`. Symbol references are checked against the table, so
    /// [`IndexReader::symbol_bytes`] of each succeeds.
    pub fn decode_series_entry_refs(
        &self,
        buf: &[u8],
        base: u64,
        refs: &mut Vec<(u32, u32)>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<Option<u64>, IndexError> {
        let (body, body_off) = match self.series_entry_body(buf, base)? {
            Ok(b) => b,
            Err(need) => return Ok(Some(need)),
        };
        self.decode_series_body(body, body_off, refs, chunks)?;
        Ok(None)
    }

    /// The bytes of symbol `r` (v2 position); the table's strings are checked to be UTF-8 by
    /// [`IndexReader::check_symbols_utf8`].
    pub fn symbol_bytes(&self, r: u32) -> Result<&[u8], IndexError> {
        self.symbols
            .lookup_bytes(self.data(), r, &self.path, self.toc.symbols)
    }

    /// Checks that every symbol is UTF-8, so bytes from [`IndexReader::symbol_bytes`] can be
    /// used as text without another check.
    pub fn check_symbols_utf8(&self) -> Result<(), IndexError> {
        for s in self.symbols() {
            s?;
        }
        Ok(())
    }

    fn decode_series_body(
        &self,
        body: &[u8],
        body_off: u64,
        refs: &mut Vec<(u32, u32)>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<(), IndexError> {
        let de = |e| self.decode_err("series", e);
        let mut d = Decbuf::new(body, body_off);
        let num_labels = d.uvarint().map_err(de)?;
        // Each label takes at least two bytes: bound the loop by the bytes present.
        if num_labels > d.remaining() as u64 / 2 {
            return Err(self.corrupt(
                "series",
                body_off,
                format!("{num_labels} labels cannot fit in {} bytes", d.remaining()),
            ));
        }
        refs.clear();
        let count = self.symbols.len();
        for _ in 0..num_labels {
            let at = d.offset();
            let n = d.uvarint32().map_err(de)?;
            let v = d.uvarint32().map_err(de)?;
            if self.version >= 2 && (n >= count || v >= count) {
                return Err(IndexError::SymbolOutOfRange {
                    path: self.path.clone(),
                    symbol: n.max(v),
                    offset: at,
                    limit: u64::from(count),
                });
            }
            refs.push((n, v));
        }

        chunks.clear();
        let num_chunks = d.uvarint().map_err(de)?;
        // Each chunk meta takes at least three bytes.
        if num_chunks > d.remaining() as u64 / 3 {
            return Err(self.corrupt(
                "series",
                d.offset(),
                format!("{num_chunks} chunks cannot fit in {} bytes", d.remaining()),
            ));
        }
        chunks.reserve(num_chunks as usize);
        if num_chunks == 0 {
            return Ok(());
        }
        // Deltas wrap as in Go: a hostile file decodes to garbage, never to a panic.
        let min_time = d.varint().map_err(de)?;
        let max_time = min_time.wrapping_add(d.uvarint().map_err(de)? as i64);
        let chunk_ref = d.uvarint().map_err(de)?;
        chunks.push(ChunkMeta {
            min_time,
            max_time,
            chunk_ref,
        });
        let (mut prev_max, mut prev_ref) = (max_time, chunk_ref);
        for _ in 1..num_chunks {
            let min_time = prev_max.wrapping_add(d.uvarint().map_err(de)? as i64);
            let max_time = min_time.wrapping_add(d.uvarint().map_err(de)? as i64);
            let chunk_ref = prev_ref.wrapping_add(d.varint().map_err(de)? as u64);
            chunks.push(ChunkMeta {
                min_time,
                max_time,
                chunk_ref,
            });
            (prev_max, prev_ref) = (max_time, chunk_ref);
        }
        Ok(())
    }

    /// The values of `name` as a range of entry indexes, if the name exists.
    pub(crate) fn name_range(&self, name: &str) -> Option<Range<usize>> {
        self.names
            .binary_search_by(|n| (*n.name).cmp(name))
            .ok()
            .map(|i| {
                let r = &self.names[i].values;
                r.start as usize..r.end as usize
            })
    }

    /// The value (raw bytes) and postings offset of entry `i`.
    pub(crate) fn entry(&self, i: usize) -> Result<(&[u8], u64), IndexError> {
        let at = self.pot_start + u64::from(self.values[i]);
        let mut d = Decbuf::new(&self.data()[at as usize..self.limit as usize], at);
        let value = d.uvarint_bytes().map_err(|e| self.decode_err(POT, e))?;
        let off = d.uvarint().map_err(|e| self.decode_err(POT, e))?;
        Ok((value, off))
    }

    /// Entry `i`'s value as UTF-8.
    pub(crate) fn value_str<'a>(&self, v: &'a [u8], i: usize) -> Result<&'a str, IndexError> {
        std::str::from_utf8(v).map_err(|_| {
            self.decode_err(
                POT,
                DecodeError::Utf8 {
                    offset: self.pot_start + u64::from(self.values[i]),
                },
            )
        })
    }

    /// Appends the postings list at absolute offset `off` to `out`, checking its CRC, length and
    /// order.
    pub(crate) fn append_postings_at(
        &self,
        off: u64,
        out: &mut Vec<u32>,
    ) -> Result<(), IndexError> {
        let (body, body_off) = sized_section(self.data(), off, self.limit, "postings", &self.path)?;
        self.append_postings_body(body, body_off, out)
    }

    /// The number of refs the postings list at absolute offset `off` declares, read without
    /// checking the list (reading it checks it).
    pub(crate) fn postings_len_at(&self, off: u64) -> Result<usize, IndexError> {
        let data = self.data();
        let at = usize::try_from(off).unwrap_or(usize::MAX);
        match data.get(at.saturating_add(4)..at.saturating_add(8)) {
            Some(b) if off.checked_add(8).is_some_and(|end| end <= self.limit) => {
                Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            }
            _ => Err(IndexError::PastEnd {
                path: self.path.clone(),
                section: "postings",
                offset: off,
                len: 8,
                limit: self.limit.min(data.len() as u64),
            }),
        }
    }

    /// Appends the refs of a postings list body (count and refs, frame removed).
    fn append_postings_body(
        &self,
        body: &[u8],
        body_off: u64,
        out: &mut Vec<u32>,
    ) -> Result<(), IndexError> {
        let n = self.postings_count(body, body_off)?;
        out.reserve(n);
        let mut prev: Option<u32> = None;
        for (i, b) in body[4..].chunks_exact(4).enumerate() {
            let r = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            if prev.is_some_and(|p| p >= r) {
                return Err(self.corrupt(
                    "postings",
                    body_off + 4 + 4 * i as u64,
                    format!("series ref {r} does not ascend"),
                ));
            }
            prev = Some(r);
            out.push(r);
        }
        Ok(())
    }

    /// The entry count of a postings list body, checked against its length.
    fn postings_count(&self, body: &[u8], body_off: u64) -> Result<usize, IndexError> {
        let mut d = Decbuf::new(body, body_off);
        let n = d.be32().map_err(|e| self.decode_err("postings", e))? as usize;
        if d.remaining() != n * 4 {
            return Err(self.corrupt(
                "postings",
                body_off,
                format!(
                    "{n} entries need {} bytes, list has {}",
                    n * 4,
                    d.remaining()
                ),
            ));
        }
        Ok(n)
    }

    fn decode_err(&self, section: &'static str, source: DecodeError) -> IndexError {
        IndexError::Decode {
            path: self.path.clone(),
            section,
            source,
        }
    }

    fn corrupt(&self, section: &'static str, offset: u64, reason: String) -> IndexError {
        IndexError::Corrupt {
            path: self.path.clone(),
            section,
            offset,
            reason,
        }
    }
}

/// Checks magic and version; returns the version.
fn check_header(data: &[u8], path: &Path) -> Result<u8, IndexError> {
    let too_small = || IndexError::TooSmall {
        path: path.to_path_buf(),
        size: data.len() as u64,
    };
    let magic = data.get(..4).ok_or_else(too_small)?;
    let found = u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if found != MAGIC {
        return Err(IndexError::BadMagic {
            path: path.to_path_buf(),
            found,
        });
    }
    match *data.get(4).ok_or_else(too_small)? {
        v @ (1 | 2) => Ok(v),
        version => Err(IndexError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        }),
    }
}

/// The series entry at the start of `buf`, which begins at absolute offset `base`: a uvarint
/// length, the body, and the body's CRC-32C (BE32). Gives the CRC-checked body and its offset
/// in `buf`, or `Err(n)` when `buf` ends inside the entry, which needs `n` bytes from `base`.
/// The one reading of this framing: the index reader's and the store's hot path.
#[inline(always)]
pub(crate) fn series_entry<'b>(
    buf: &'b [u8],
    base: u64,
    path: &Path,
) -> Result<Result<(&'b [u8], usize), u64>, IndexError> {
    let (len, n) = match read_uvarint(buf) {
        Ok(v) => v,
        // A length cut by the end of `buf`: ask for its longest form.
        Err(UvarintError::Truncated) => return Ok(Err(10 + 4)),
        Err(UvarintError::Overflow) => {
            return Err(IndexError::Corrupt {
                path: path.to_path_buf(),
                section: "series",
                offset: base,
                reason: "bad entry length".into(),
            });
        }
    };
    // A hostile length must not overflow the check.
    let need = (n as u64).saturating_add(len).saturating_add(4);
    if need > buf.len() as u64 {
        return Ok(Err(need));
    }
    let end = n + len as usize;
    let body = &buf[n..end];
    let expected = u32::from_be_bytes([buf[end], buf[end + 1], buf[end + 2], buf[end + 3]]);
    let actual = crc32c(body);
    if expected != actual {
        return Err(IndexError::Crc {
            path: path.to_path_buf(),
            section: "series",
            offset: base,
            expected,
            actual,
        });
    }
    Ok(Ok((body, n)))
}

/// Reads the section at `off` framed as `BE32 len`, `len` bytes, `BE32 CRC` and checks the CRC;
/// returns the body and its absolute offset. Nothing may reach `limit`.
pub(crate) fn sized_section<'a>(
    data: &'a [u8],
    off: u64,
    limit: u64,
    section: &'static str,
    path: &Path,
) -> Result<(&'a [u8], u64), IndexError> {
    let limit = limit.min(data.len() as u64);
    let past_end = |len| IndexError::PastEnd {
        path: path.to_path_buf(),
        section,
        offset: off,
        len,
        limit,
    };
    if off > limit || limit - off < 4 {
        return Err(past_end(4));
    }
    let at = off as usize;
    let len = u64::from(u32::from_be_bytes([
        data[at],
        data[at + 1],
        data[at + 2],
        data[at + 3],
    ]));
    if len + 8 > limit - off {
        return Err(past_end(len + 8));
    }
    let body = &data[at + 4..at + 4 + len as usize];
    let c = at + 4 + len as usize;
    let expected = u32::from_be_bytes([data[c], data[c + 1], data[c + 2], data[c + 3]]);
    let actual = crc32c(body);
    if expected != actual {
        return Err(IndexError::Crc {
            path: path.to_path_buf(),
            section,
            offset: off,
            expected,
            actual,
        });
    }
    Ok((body, off + 4))
}

/// Reads a section framed as `BE32 len`, `len` bytes, `BE32 CRC` at the start of `buf`, which
/// begins at absolute offset `base`; checks the CRC and returns the body and its offset.
pub(crate) fn framed<'a>(
    buf: &'a [u8],
    base: u64,
    section: &'static str,
    path: &Path,
) -> Result<(&'a [u8], u64), IndexError> {
    let (body, body_off) =
        sized_section(buf, 0, buf.len() as u64, section, path).map_err(|e| match e {
            IndexError::PastEnd {
                path, section, len, ..
            } => IndexError::PastEnd {
                path,
                section,
                offset: base,
                len,
                limit: base + buf.len() as u64,
            },
            IndexError::Crc {
                path,
                section,
                expected,
                actual,
                ..
            } => IndexError::Crc {
                path,
                section,
                offset: base,
                expected,
                actual,
            },
            other => other,
        })?;
    Ok((body, body_off + base))
}

/// The postings offset table decoded into sorted name runs over compact entry positions.
struct PostingsOffsetTable {
    names: Vec<NameEntry>,
    values: Vec<u32>,
    start: u64,
}

impl PostingsOffsetTable {
    fn parse(
        data: &[u8],
        off: u64,
        limit: u64,
        version: u8,
        path: &Path,
    ) -> Result<Self, IndexError> {
        let (body, start) = sized_section(data, off, limit, POT, path)?;
        let de = |source| IndexError::Decode {
            path: path.to_path_buf(),
            section: POT,
            source,
        };
        let corrupt = |offset, reason: String| IndexError::Corrupt {
            path: path.to_path_buf(),
            section: POT,
            offset,
            reason,
        };
        let mut d = Decbuf::new(body, start);
        let count = d.be32().map_err(de)?;
        // An entry takes at least four bytes (key count, two lengths, offset).
        if count as usize > d.remaining() / 4 {
            return Err(corrupt(
                start,
                format!("{count} entries cannot fit in {} bytes", d.remaining()),
            ));
        }
        let mut table = PostingsOffsetTable {
            names: Vec::new(),
            values: Vec::with_capacity(count as usize),
            start,
        };
        let mut prev: Option<(&[u8], &[u8])> = None;
        // v1 tables are in write order and get sorted below: (name, value, entry offset,
        // value position relative to `start`).
        let mut unsorted: Vec<(&[u8], &[u8], u64, u32)> = Vec::new();
        for _ in 0..count {
            let entry_at = d.offset();
            let keys = d.uvarint().map_err(de)?;
            if keys != 2 {
                return Err(corrupt(entry_at, format!("entry has {keys} keys, want 2")));
            }
            let name = d.uvarint_bytes().map_err(de)?;
            // The body is at most u32::MAX bytes long.
            let value_pos = (d.offset() - start) as u32;
            let value = d.uvarint_bytes().map_err(de)?;
            d.uvarint().map_err(de)?;
            if version < 2 {
                unsorted.push((name, value, entry_at, value_pos));
                continue;
            }
            if let Some((pn, pv)) = prev
                && (pn, pv).cmp(&(name, value)) != Ordering::Less
            {
                return Err(corrupt(
                    entry_at,
                    format!(
                        "entry {:?}={:?} does not sort after {:?}={:?}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(value),
                        String::from_utf8_lossy(pn),
                        String::from_utf8_lossy(pv),
                    ),
                ));
            }
            prev = Some((name, value));
            table.push(name, entry_at, value_pos, path)?;
        }
        if version < 2 {
            // Later duplicates win, as in Prometheus's map; the sort is stable.
            unsorted.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
            for (i, e) in unsorted.iter().enumerate() {
                if unsorted
                    .get(i + 1)
                    .is_some_and(|n| (n.0, n.1) == (e.0, e.1))
                {
                    continue;
                }
                table.push(e.0, e.2, e.3, path)?;
            }
        }
        Ok(table)
    }

    /// Appends the next entry in (name, value) order.
    fn push(
        &mut self,
        name: &[u8],
        entry_at: u64,
        value_pos: u32,
        path: &Path,
    ) -> Result<(), IndexError> {
        // At most u32::MAX entries fit in the count field.
        let i = self.values.len() as u32;
        match self.names.last_mut() {
            Some(n) if n.name.as_bytes() == name => n.values.end = i + 1,
            _ => {
                let name = std::str::from_utf8(name).map_err(|_| IndexError::Decode {
                    path: path.to_path_buf(),
                    section: POT,
                    source: DecodeError::Utf8 {
                        offset: entry_at + 1,
                    },
                })?;
                self.names.push(NameEntry {
                    name: name.into(),
                    values: i..i + 1,
                });
            }
        }
        self.values.push(value_pos);
        Ok(())
    }
}
