//! The per-block index-header: what is needed to resolve matchers and decode series without
//! holding the block's symbol table or postings offset table. It keeps every 32nd symbol's
//! position (a "page") and every 32nd postings offset table entry of each label name (a
//! "window"), each with the CRC of the bytes it stands for; pages and windows are read from
//! the index in the bucket when a request needs them and kept in the owning core's cache.
//! Built once from ranged reads and kept on local disk; format in `INDEX_HEADER.md` beside
//! this file.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::StoreError;
use crate::block::label_filter::pair_key;
use crate::bucket::Bucket;
use crate::encoding::{Decbuf, DecodeError, Encbuf, crc32c};
use crate::index::reader::{HEADER_LEN, MAGIC as INDEX_MAGIC, sized_section};
use crate::index::toc::TOC_LEN;
use crate::index::{IndexError, Toc};

/// File name of the index-header inside `<data-dir>/<ULID>/`.
pub const HEADER_FILENAME: &str = "gauntlet-index-header";
/// Magic number of a Gauntlet index-header (BE32), distinct from the index's and Thanos's.
pub const HEADER_MAGIC: u32 = 0x6A17_D792;
/// The format version this build writes and reads; files of other versions are rebuilt.
pub const HEADER_VERSION: u8 = 2;
/// Symbols per page and postings offset table entries per window.
pub const SAMPLE_EVERY: usize = 32;
/// Length of the source section: `BE32 len`, `BE64 index size`, six `BE64` TOC offsets, CRC.
const SOURCE_LEN: usize = 4 + 8 + 6 * 8 + 4;
const SECTION: &str = "index-header";

/// A label name of the postings offset table.
#[derive(Debug)]
struct NameInfo {
    name: Box<str>,
    /// Entries (values) of the name.
    entries: u32,
    /// Its samples in `samples`.
    samples: Range<u32>,
    /// Absolute index offset one past the name's last entry.
    end: u64,
}

/// Every 32nd entry of a name: its value, postings offset, where the entry starts in the
/// index, and the CRC of its window (the entries up to the next sample or the name's end).
#[derive(Debug)]
struct Sample {
    value: Range<u32>,
    postings: u64,
    entry: u64,
    crc: u32,
}

/// An index-header read from local disk into memory.
#[derive(Debug)]
pub struct IndexHeader {
    /// Size of the full index object, bytes.
    index_size: u64,
    /// The TOC of the full index.
    toc: Toc,
    file_size: u64,
    num_symbols: u32,
    /// Absolute index offset of the first symbol.
    symbols_first: u64,
    /// Bytes of all symbols (their length prefixes included).
    symbols_len: u32,
    /// Per page: start relative to the first symbol, CRC of the page's bytes.
    pages: Vec<(u32, u32)>,
    names: Vec<NameInfo>,
    samples: Vec<Sample>,
    values: Vec<u8>,
    /// Offset of the all-postings list.
    all_postings: Option<u64>,
    /// Where the postings section ends (the next section of the index).
    postings_limit: u64,
    /// Postings lists appear in table order, so each ends where the next entry's starts.
    postings_in_order: bool,
    path: PathBuf,
}

/// A window of the postings offset table, parsed: `(value, postings offset, postings end)`.
pub(super) type WindowEntry<'a> = (&'a [u8], u64, u64);

impl IndexHeader {
    /// Opens the header at `path`, building it from the block's index in the bucket first when
    /// it is missing, of another version or unreadable. A header built here comes with the
    /// [`pair_key`]s of every label pair of the index, hashed while its postings offset table
    /// was walked, so that the block's label filter needs no second read of that table.
    pub async fn open_or_build(
        bucket: &Bucket,
        block: &str,
        path: &Path,
    ) -> Result<(Self, Option<Vec<u64>>), StoreError> {
        if path.exists() {
            match Self::open(path) {
                Ok(h) => return Ok((h, None)),
                Err(e) => {
                    tracing::info!(path = %path.display(), error = %e, "rebuilding index-header")
                }
            }
        }
        let (bytes, keys) = build(bucket, &format!("{block}/index"), path).await?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| StoreError::io(path, e))?;
        Ok((Self::open(path)?, Some(keys)))
    }

    /// Calls `f` with every label pair of the index, read from `bucket` (object `index`)
    /// name by name, each window checked against the CRC the header recorded. Used to build a
    /// block's label filter when the header is at hand but the filter is not.
    pub async fn for_each_pair(
        &self,
        bucket: &Bucket,
        index: &str,
        mut f: impl FnMut(&str, &[u8]),
    ) -> Result<(), StoreError> {
        let names: Vec<usize> = (0..self.names.len())
            .filter(|&n| !self.windows_of(n).is_empty())
            .collect();
        let ranges: Vec<Range<u64>> = names
            .iter()
            .map(|&n| {
                let w = self.windows_of(n);
                self.window_range(w.start).start..self.window_range(w.end - 1).end
            })
            .collect();
        let parts = bucket.get_ranges(index, &ranges).await?;
        let ipath = Path::new(index);
        let mut entries = Vec::new();
        for ((&n, r), bytes) in names.iter().zip(&ranges).zip(&parts) {
            for s in self.windows_of(n) {
                let w = self.window_range(s);
                let at = (w.start - r.start) as usize..(w.end - r.start) as usize;
                let raw = bytes.get(at).ok_or_else(|| IndexError::Corrupt {
                    path: ipath.to_path_buf(),
                    section: "postings offset table",
                    offset: w.start,
                    reason: "window past the end of the read".into(),
                })?;
                entries.clear();
                self.parse_window(s, raw, ipath, &mut entries)?;
                for e in &entries {
                    f(self.name(n), e.0);
                }
            }
        }
        Ok(())
    }

    /// The header file's bytes for an index held whole in memory (as the store builds them
    /// from ranged reads of the bucket), for tools and tests.
    pub fn bytes_from_index(index: &[u8], path: &Path) -> Result<Vec<u8>, IndexError> {
        let toc = *crate::index::IndexReader::from_bytes(index.to_vec(), path.to_path_buf())?.toc();
        let section = |start: u64, name: &'static str| -> Result<&[u8], IndexError> {
            let start = usize::try_from(start).unwrap_or(usize::MAX);
            let len = index
                .get(start..start.saturating_add(4))
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            len.and_then(|n| index.get(start..start.saturating_add(n + 8)))
                .ok_or_else(|| IndexError::Corrupt {
                    path: path.to_path_buf(),
                    section: name,
                    offset: start as u64,
                    reason: "section past the end of the index".into(),
                })
        };
        let sym = section(toc.symbols, "symbol table")?;
        let pot = section(toc.postings_offset_table, "postings offset table")?;
        encode(index.len() as u64, &toc, sym, pot, path, &mut Vec::new())
    }

    /// Reads and validates a header file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let data = std::fs::read(path).map_err(|e| StoreError::io(path, e))?;
        Ok(Self::parse(&data, path)?)
    }

    /// Parses header bytes; `path` names the file in errors.
    pub fn parse(data: &[u8], path: &Path) -> Result<Self, IndexError> {
        let corrupt = |offset: u64, reason: &str| IndexError::Corrupt {
            path: path.to_path_buf(),
            section: SECTION,
            offset,
            reason: reason.to_string(),
        };
        let de = |source: DecodeError| IndexError::Decode {
            path: path.to_path_buf(),
            section: SECTION,
            source,
        };
        if data.len() < HEADER_LEN + SOURCE_LEN {
            return Err(IndexError::TooSmall {
                path: path.to_path_buf(),
                size: data.len() as u64,
            });
        }
        let magic = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        if magic != HEADER_MAGIC {
            return Err(IndexError::BadMagic {
                path: path.to_path_buf(),
                found: magic,
            });
        }
        if data[4] != HEADER_VERSION {
            return Err(IndexError::UnsupportedVersion {
                path: path.to_path_buf(),
                version: data[4],
            });
        }
        let limit = data.len() as u64;
        let (src, src_off) = sized_section(data, HEADER_LEN as u64, limit, SECTION, path)?;
        if src.len() != SOURCE_LEN - 8 {
            return Err(corrupt(HEADER_LEN as u64, "bad source section length"));
        }
        let mut d = Decbuf::new(src, src_off);
        let index_size = d.be64().map_err(de)?;
        let toc = Toc {
            symbols: d.be64().map_err(de)?,
            series: d.be64().map_err(de)?,
            label_indices: d.be64().map_err(de)?,
            label_offset_table: d.be64().map_err(de)?,
            postings: d.be64().map_err(de)?,
            postings_offset_table: d.be64().map_err(de)?,
        };

        // Symbols.
        let sym_at = (HEADER_LEN + SOURCE_LEN) as u64;
        let (sym, sym_off) = sized_section(data, sym_at, limit, SECTION, path)?;
        let mut d = Decbuf::new(sym, sym_off);
        let num_symbols = d.be32().map_err(de)?;
        let num_pages = d.be32().map_err(de)? as usize;
        if num_pages != (num_symbols as usize).div_ceil(SAMPLE_EVERY)
            || num_pages * 8 > d.remaining()
        {
            return Err(corrupt(
                sym_off,
                "page count does not match the symbol count",
            ));
        }
        let mut pages = Vec::with_capacity(num_pages);
        for _ in 0..num_pages {
            pages.push((d.be32().map_err(de)?, d.be32().map_err(de)?));
        }
        let symbols_len = d.be32().map_err(de)?;
        if pages.windows(2).any(|w| w[0].0 >= w[1].0)
            || pages.last().is_some_and(|p| p.0 >= symbols_len)
            || pages.first().is_some_and(|p| p.0 != 0)
        {
            return Err(corrupt(sym_off, "symbol pages are not ascending"));
        }

        // Postings offset table samples.
        let pot_at = sym_off + sym.len() as u64 + 4;
        let (pot, pot_off) = sized_section(data, pot_at, limit, SECTION, path)?;
        if pot_off + pot.len() as u64 + 4 != limit {
            return Err(corrupt(pot_off + pot.len() as u64 + 4, "trailing bytes"));
        }
        let mut d = Decbuf::new(pot, pot_off);
        let all = d.be64().map_err(de)?;
        let postings_limit = d.be64().map_err(de)?;
        let postings_in_order = d.u8().map_err(de)? != 0;
        let num_names = d.be32().map_err(de)? as usize;
        if num_names > d.remaining() {
            return Err(corrupt(pot_off, "name count cannot fit"));
        }
        let mut names: Vec<NameInfo> = Vec::with_capacity(num_names);
        let mut samples: Vec<Sample> = Vec::new();
        let mut values = Vec::new();
        for _ in 0..num_names {
            let at = d.offset();
            let name = d.uvarint_str().map_err(de)?;
            let entries = d.uvarint32().map_err(de)?;
            let end = d.uvarint().map_err(de)?;
            let n = d.uvarint32().map_err(de)? as usize;
            if n != (entries as usize).div_ceil(SAMPLE_EVERY) || n > d.remaining() {
                return Err(corrupt(at, "sample count does not match the entry count"));
            }
            if names.last().is_some_and(|p| *p.name >= *name) {
                return Err(corrupt(at, "names are not sorted"));
            }
            let first = samples.len() as u32;
            for _ in 0..n {
                let at = d.offset();
                let v = d.uvarint_bytes().map_err(de)?;
                let postings = d.uvarint().map_err(de)?;
                let entry = d.uvarint().map_err(de)?;
                let crc = d.be32().map_err(de)?;
                if samples.last().is_some_and(|p| p.entry >= entry) || entry >= end {
                    return Err(corrupt(at, "sample entries are not ascending"));
                }
                let start = values.len() as u32;
                values.extend_from_slice(v);
                samples.push(Sample {
                    value: start..values.len() as u32,
                    postings,
                    entry,
                    crc,
                });
            }
            names.push(NameInfo {
                name: name.into(),
                entries,
                samples: first..samples.len() as u32,
                end,
            });
        }
        if d.remaining() != 0 {
            return Err(corrupt(
                d.offset(),
                "trailing bytes in the postings section",
            ));
        }
        let all_postings = all.checked_sub(1);
        let mut h = IndexHeader {
            index_size,
            toc,
            file_size: data.len() as u64,
            num_symbols,
            symbols_first: toc.symbols + 8,
            symbols_len,
            pages,
            names,
            samples,
            values,
            all_postings,
            postings_limit,
            postings_in_order,
            path: path.to_path_buf(),
        };
        h.names.shrink_to_fit();
        h.samples.shrink_to_fit();
        h.values.shrink_to_fit();
        Ok(h)
    }

    /// Size of the full index object in the bucket, bytes.
    pub fn index_size(&self) -> u64 {
        self.index_size
    }

    /// Size of the header file, bytes.
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// Heap bytes the header holds while loaded.
    pub fn memory_bytes(&self) -> u64 {
        (std::mem::size_of::<Self>()
            + self.pages.capacity() * 8
            + self.names.capacity() * std::mem::size_of::<NameInfo>()
            + self.names.iter().map(|n| n.name.len()).sum::<usize>()
            + self.samples.capacity() * std::mem::size_of::<Sample>()
            + self.values.capacity()) as u64
    }

    /// The local file, for errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of symbols in the index.
    pub fn num_symbols(&self) -> u32 {
        self.num_symbols
    }

    /// Number of symbol pages.
    pub fn num_pages(&self) -> usize {
        self.pages.len()
    }

    /// The byte range of the index holding symbol page `p` (its symbols' length prefixes and
    /// bytes).
    pub(super) fn page_range(&self, p: usize) -> Range<u64> {
        let start = u64::from(self.pages[p].0);
        let end = self
            .pages
            .get(p + 1)
            .map_or(u64::from(self.symbols_len), |n| u64::from(n.0));
        self.symbols_first + start..self.symbols_first + end
    }

    /// Decodes symbol page `p` read from the index into the cached form: `u32` count, then
    /// `count + 1` little-endian `u32` string offsets, then the strings; checks the CRC the
    /// header recorded (the symbols were checked to be UTF-8 when it was built).
    pub(super) fn decode_page(
        &self,
        p: usize,
        raw: &[u8],
        index: &Path,
    ) -> Result<Vec<u8>, IndexError> {
        let range = self.page_range(p);
        let actual = crc32c(raw);
        if actual != self.pages[p].1 {
            return Err(IndexError::Crc {
                path: index.to_path_buf(),
                section: "symbol table",
                offset: range.start,
                expected: self.pages[p].1,
                actual,
            });
        }
        let count = (self.num_symbols as usize - p * SAMPLE_EVERY).min(SAMPLE_EVERY);
        let mut out = Vec::with_capacity(4 + 4 * (count + 1) + raw.len());
        out.extend_from_slice(&(count as u32).to_le_bytes());
        out.resize(4 + 4 * (count + 1), 0);
        let mut d = Decbuf::new(raw, range.start);
        let mut at = 0u32;
        for k in 0..count {
            let s = d.uvarint_bytes().map_err(|source| IndexError::Decode {
                path: index.to_path_buf(),
                section: "symbol table",
                source,
            })?;
            out[4 + 4 * k..8 + 4 * k].copy_from_slice(&at.to_le_bytes());
            at += s.len() as u32;
            out.extend_from_slice(s);
        }
        out[4 + 4 * count..8 + 4 * count].copy_from_slice(&at.to_le_bytes());
        Ok(out)
    }

    /// Decodes every symbol page and postings offset window of the header from `index` (the
    /// whole index object), each checked against the CRC the header recorded; returns how many
    /// entries the windows hold. Parts past the end of `index` are errors, not panics.
    pub fn verify_against(&self, index: &[u8], path: &Path) -> Result<usize, IndexError> {
        let past = |section: &'static str, offset: u64| IndexError::Corrupt {
            path: path.to_path_buf(),
            section,
            offset,
            reason: "past the end of the index".into(),
        };
        let slice = |r: Range<u64>, section| {
            usize::try_from(r.start)
                .ok()
                .zip(usize::try_from(r.end).ok())
                .and_then(|(a, z)| index.get(a..z))
                .ok_or_else(|| past(section, r.start))
        };
        for p in 0..self.num_pages() {
            self.decode_page(p, slice(self.page_range(p), "symbol table")?, path)?;
        }
        let mut entries = Vec::new();
        for s in 0..self.samples.len() {
            let raw = slice(self.window_range(s), "postings offset table")?;
            self.parse_window(s, raw, path, &mut entries)?;
        }
        Ok(entries.len())
    }

    /// All label names, sorted, without the all-postings key `""`.
    pub fn label_names(&self) -> Vec<String> {
        self.names
            .iter()
            .filter(|n| !n.name.is_empty())
            .map(|n| n.name.to_string())
            .collect()
    }

    /// The index of label `name`, if the index has it.
    pub(super) fn name_index(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| (*n.name).cmp(name)).ok()
    }

    /// Label name `n`.
    pub(super) fn name(&self, n: usize) -> &str {
        &self.names[n].name
    }

    /// The samples (windows) of name `n`.
    pub(super) fn windows_of(&self, n: usize) -> Range<usize> {
        let r = &self.names[n].samples;
        r.start as usize..r.end as usize
    }

    fn sample_value(&self, s: usize) -> &[u8] {
        let r = &self.samples[s].value;
        &self.values[r.start as usize..r.end as usize]
    }

    /// The window of name `n` that holds `value` if the name has it: the last whose first
    /// value is not above it.
    pub(super) fn window_of(&self, n: usize, value: &[u8]) -> Option<usize> {
        let w = self.windows_of(n);
        let i = w.start
            + self.samples[w.clone()].partition_point(|s| {
                let r = &s.value;
                &self.values[r.start as usize..r.end as usize] <= value
            });
        (i > w.start).then(|| i - 1)
    }

    /// The windows of name `n` that may hold values starting with `prefix`.
    pub(super) fn prefix_windows(&self, n: usize, prefix: &[u8]) -> Range<usize> {
        let w = self.windows_of(n);
        let first = self.window_of(n, prefix).unwrap_or(w.start);
        let mut end = first;
        while end < w.end {
            let v = self.sample_value(end);
            if end > first && v > prefix && !v.starts_with(prefix) {
                break;
            }
            end += 1;
        }
        first..end
    }

    /// The byte range of the index holding window `s`.
    pub(super) fn window_range(&self, s: usize) -> Range<u64> {
        let n = self.name_of_sample(s);
        let end = match self.samples.get(s + 1) {
            Some(next) if s + 1 < self.names[n].samples.end as usize => next.entry,
            _ => self.names[n].end,
        };
        self.samples[s].entry..end
    }

    fn name_of_sample(&self, s: usize) -> usize {
        self.names
            .partition_point(|n| n.samples.end as usize <= s)
            .min(self.names.len() - 1)
    }

    /// Parses window `s` read from the index (CRC checked against the header) into its
    /// entries, each with the end of its postings list when lists are in table order (else
    /// 0).
    pub(super) fn parse_window<'a>(
        &self,
        s: usize,
        raw: &'a [u8],
        index: &Path,
        out: &mut Vec<WindowEntry<'a>>,
    ) -> Result<(), IndexError> {
        let range = self.window_range(s);
        let actual = crc32c(raw);
        if actual != self.samples[s].crc {
            return Err(IndexError::Crc {
                path: index.to_path_buf(),
                section: "postings offset table",
                offset: range.start,
                expected: self.samples[s].crc,
                actual,
            });
        }
        self.parse_checked_window(s, raw, index, out)
    }

    /// [`Self::parse_window`] for bytes whose CRC was already checked against this header (a
    /// window kept in a core's cache after it was read): the entries are still checked
    /// against their name and decoded with bounds checks.
    pub(super) fn parse_checked_window<'a>(
        &self,
        s: usize,
        raw: &'a [u8],
        index: &Path,
        out: &mut Vec<WindowEntry<'a>>,
    ) -> Result<(), IndexError> {
        let range = self.window_range(s);
        let n = self.name_of_sample(s);
        let name = &self.names[n];
        let k = s - name.samples.start as usize;
        let count = (name.entries as usize - k * SAMPLE_EVERY).min(SAMPLE_EVERY);
        let de = |source| IndexError::Decode {
            path: index.to_path_buf(),
            section: "postings offset table",
            source,
        };
        let mut d = Decbuf::new(raw, range.start);
        let first = out.len();
        for _ in 0..count {
            let at = d.offset();
            let keys = d.uvarint().map_err(de)?;
            let nm = d.uvarint_bytes().map_err(de)?;
            if keys != 2 || nm != name.name.as_bytes() {
                return Err(IndexError::Corrupt {
                    path: index.to_path_buf(),
                    section: "postings offset table",
                    offset: at,
                    reason: "window entry does not belong to its name".into(),
                });
            }
            let v = d.uvarint_bytes().map_err(de)?;
            let off = d.uvarint().map_err(de)?;
            out.push((v, off, 0));
        }
        if self.postings_in_order {
            let next = self
                .samples
                .get(s + 1)
                .map_or(self.postings_limit, |n| n.postings);
            for i in first..out.len() {
                out[i].2 = out.get(i + 1).map_or(next, |e| e.1);
            }
        }
        Ok(())
    }

    /// Offset and (when lists are in table order) end of the all-postings list.
    pub(super) fn all_postings(&self) -> Option<(u64, Option<u64>)> {
        let off = self.all_postings?;
        let end = self.postings_in_order.then(|| {
            self.samples
                .iter()
                .find(|s| s.postings > off)
                .map_or(self.postings_limit, |s| s.postings)
        });
        Some((off, end))
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

    /// Where the postings section ends.
    pub(super) fn postings_limit(&self) -> u64 {
        self.postings_limit
    }
}

/// Builds the header bytes of the index object at `index_path` with ranged reads of its TOC,
/// symbol table and postings offset table, checking each (CRCs, order, UTF-8), and the
/// [`pair_key`] of each of its label pairs.
pub async fn build(
    bucket: &Bucket,
    index_path: &str,
    local: &Path,
) -> Result<(Vec<u8>, Vec<u64>), StoreError> {
    let size = bucket.size(index_path).await?;
    let ipath = PathBuf::from(index_path);
    if size < (HEADER_LEN + TOC_LEN) as u64 {
        return Err(IndexError::TooSmall { path: ipath, size }.into());
    }
    let head = bucket.get_range(index_path, 0..HEADER_LEN as u64).await?;
    let magic = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if magic != INDEX_MAGIC {
        return Err(IndexError::BadMagic {
            path: ipath,
            found: magic,
        }
        .into());
    }
    if head[4] != 2 {
        // v1 symbol references are file offsets and its table is unsorted.
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
    let mut keys = Vec::new();
    let out = encode(size, &toc, &parts[0], &parts[1], &ipath, &mut keys)?;
    // Validate before anyone persists it.
    IndexHeader::parse(&out, local)?;
    Ok((out, keys))
}

/// Encodes the header of an index of `size` bytes with `toc` from its symbol table section
/// `sym` and postings offset table section `pot` (each framed: length, body, CRC), and pushes
/// the [`pair_key`] of every label pair of the table (not the all-postings key) onto
/// `pair_keys`.
fn encode(
    size: u64,
    toc: &Toc,
    sym: &[u8],
    pot: &[u8],
    ipath: &Path,
    pair_keys: &mut Vec<u64>,
) -> Result<Vec<u8>, IndexError> {
    let de = |section, source| IndexError::Decode {
        path: ipath.to_path_buf(),
        section,
        source,
    };
    let corrupt = |section, offset, reason: String| IndexError::Corrupt {
        path: ipath.to_path_buf(),
        section,
        offset,
        reason,
    };
    let mut e = Encbuf::with_capacity(64 * 1024);
    e.put_be32(HEADER_MAGIC);
    e.put_u8(HEADER_VERSION);
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

    // Symbols: page starts and CRCs.
    let (body, body_off) = sized_section(sym, 0, sym.len() as u64, "symbol table", ipath)?;
    let body_off = body_off + toc.symbols;
    let mut d = Decbuf::new(body, body_off);
    let count = d.be32().map_err(|e| de("symbol table", e))?;
    if count as usize > d.remaining() {
        return Err(corrupt(
            "symbol table",
            body_off,
            format!("{count} symbols cannot fit in {} bytes", d.remaining()),
        ));
    }
    let first = d.offset();
    let mut pages: Vec<(u32, u32)> = Vec::with_capacity((count as usize).div_ceil(SAMPLE_EVERY));
    let mut page_start = first;
    for i in 0..count as usize {
        if i % SAMPLE_EVERY == 0 {
            if i > 0 {
                let r = (page_start - body_off) as usize..(d.offset() - body_off) as usize;
                pages
                    .last_mut()
                    .unwrap_or_else(|| unreachable!("pushed above"))
                    .1 = crc32c(&body[r]);
            }
            page_start = d.offset();
            pages.push(((page_start - first) as u32, 0));
        }
        d.uvarint_str().map_err(|e| de("symbol table", e))?;
    }
    let symbols_len = (d.offset() - first) as u32;
    if let Some(last) = pages.last_mut() {
        let r = (page_start - body_off) as usize..(d.offset() - body_off) as usize;
        last.1 = crc32c(&body[r]);
    }
    let start = e.len();
    e.put_be32(0);
    e.put_be32(count);
    e.put_be32(pages.len() as u32);
    for (off, crc) in &pages {
        e.put_be32(*off);
        e.put_be32(*crc);
    }
    e.put_be32(symbols_len);
    let len = e.len() - start - 4;
    e.patch_be32(start, len as u32);
    let crc = crc32c(&e.get()[start + 4..]);
    e.put_be32(crc);

    // Postings offset table: every 32nd entry of each name.
    const POT: &str = "postings offset table";
    let (body, body_off) = sized_section(pot, 0, pot.len() as u64, POT, ipath)?;
    let body_off = body_off + toc.postings_offset_table;
    let mut d = Decbuf::new(body, body_off);
    let n = d.be32().map_err(|e| de(POT, e))?;
    if n as usize > d.remaining() / 4 {
        return Err(corrupt(
            POT,
            body_off,
            format!("{n} entries cannot fit in {} bytes", d.remaining()),
        ));
    }
    let postings_limit = [toc.label_offset_table, toc.postings_offset_table]
        .into_iter()
        .filter(|&o| o > toc.postings)
        .min()
        .unwrap_or(toc.postings_offset_table);
    struct Name<'a> {
        name: &'a [u8],
        entries: u32,
        end: u64,
        samples: Vec<(&'a [u8], u64, u64, u32)>,
    }
    let mut names: Vec<Name<'_>> = Vec::new();
    let mut prev: Option<(&[u8], &[u8])> = None;
    let mut in_order = true;
    let mut last_off = 0u64;
    let mut all = 0u64;
    // Closes the window that is open in the last name: its CRC covers its bytes.
    let close = |names: &mut Vec<Name<'_>>, end: u64| {
        if let Some(nm) = names.last_mut() {
            nm.end = end;
            if let Some(s) = nm.samples.last_mut() {
                let r = (s.2 - body_off) as usize..(end - body_off) as usize;
                s.3 = crc32c(&body[r]);
            }
        }
    };
    for _ in 0..n {
        let at = d.offset();
        let keys = d.uvarint().map_err(|e| de(POT, e))?;
        if keys != 2 {
            return Err(corrupt(POT, at, format!("entry has {keys} keys, want 2")));
        }
        let name = d.uvarint_bytes().map_err(|e| de(POT, e))?;
        let value = d.uvarint_bytes().map_err(|e| de(POT, e))?;
        let off = d.uvarint().map_err(|e| de(POT, e))?;
        if prev.is_some_and(|p| p >= (name, value)) {
            return Err(corrupt(
                POT,
                at,
                format!(
                    "entry {:?}={:?} is not sorted",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(value)
                ),
            ));
        }
        let (Ok(name_str), Ok(value_str)) = (std::str::from_utf8(name), std::str::from_utf8(value))
        else {
            return Err(de(POT, DecodeError::Utf8 { offset: at }));
        };
        if !name.is_empty() {
            pair_keys.push(pair_key(name_str, value_str));
        }
        prev = Some((name, value));
        if off < last_off || off >= postings_limit {
            in_order = false;
        }
        last_off = off;
        if name.is_empty() && value.is_empty() {
            all = off + 1;
        }
        let new_name = names.last().is_none_or(|nm| nm.name != name);
        let new_window = new_name
            || names
                .last()
                .is_some_and(|nm| (nm.entries as usize).is_multiple_of(SAMPLE_EVERY));
        if new_window {
            close(&mut names, at);
        }
        if new_name {
            names.push(Name {
                name,
                entries: 0,
                end: 0,
                samples: Vec::new(),
            });
        }
        let nm = names
            .last_mut()
            .unwrap_or_else(|| unreachable!("pushed above"));
        if new_window {
            nm.samples.push((value, off, at, 0));
        }
        nm.entries += 1;
    }
    close(&mut names, d.offset());
    let start = e.len();
    e.put_be32(0);
    e.put_be64(all);
    e.put_be64(postings_limit);
    e.put_u8(u8::from(in_order));
    e.put_be32(names.len() as u32);
    for nm in &names {
        e.put_uvarint_bytes(nm.name);
        e.put_uvarint(u64::from(nm.entries));
        e.put_uvarint(nm.end);
        e.put_uvarint(nm.samples.len() as u64);
        for (v, off, at, crc) in &nm.samples {
            e.put_uvarint_bytes(v);
            e.put_uvarint(*off);
            e.put_uvarint(*at);
            e.put_be32(*crc);
        }
    }
    let len = e.len() - start - 4;
    e.patch_be32(start, len as u32);
    let crc = crc32c(&e.get()[start + 4..]);
    e.put_be32(crc);
    Ok(e.buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexReader;

    #[test]
    fn header_pages_and_windows_give_back_the_index_tables() {
        // An index with many symbols and values, so names span several windows.
        let mut w = crate::index::IndexWriter::in_memory();
        let mut syms: Vec<String> = vec![
            "__name__".into(),
            "m".into(),
            "pod".into(),
            "job".into(),
            "a".into(),
        ];
        let pods: Vec<String> = (0..300).map(|i| format!("pod-{i:04}")).collect();
        syms.extend(pods.iter().cloned());
        syms.sort();
        syms.dedup();
        w.add_symbols(syms.iter().map(String::as_str)).unwrap();
        for (i, p) in pods.iter().enumerate() {
            let labels = crate::labels::Labels::from_pairs([
                ("__name__", "m"),
                ("job", "a"),
                ("pod", p.as_str()),
            ]);
            let _ = i;
            w.add_series(&labels, &[]).unwrap();
        }
        let bytes = w.finish_to_vec().unwrap();
        let ix = IndexReader::from_bytes(bytes.clone(), "index".into()).unwrap();
        let toc = *ix.toc();
        let sym_len = u32::from_be_bytes(
            bytes[toc.symbols as usize..toc.symbols as usize + 4]
                .try_into()
                .unwrap(),
        ) as usize;
        let pot_len = u32::from_be_bytes(
            bytes[toc.postings_offset_table as usize..toc.postings_offset_table as usize + 4]
                .try_into()
                .unwrap(),
        ) as usize;
        let sym = &bytes[toc.symbols as usize..toc.symbols as usize + sym_len + 8];
        let pot = &bytes
            [toc.postings_offset_table as usize..toc.postings_offset_table as usize + pot_len + 8];
        let enc = encode(
            bytes.len() as u64,
            &toc,
            sym,
            pot,
            Path::new("index"),
            &mut Vec::new(),
        )
        .unwrap();
        let h = IndexHeader::parse(&enc, Path::new("h")).unwrap();
        assert!(h.memory_bytes() < 10_000, "{}", h.memory_bytes());
        // Every symbol from its page.
        let mut got = Vec::new();
        for p in 0..h.num_pages() {
            let r = h.page_range(p);
            let page = h
                .decode_page(
                    p,
                    &bytes[r.start as usize..r.end as usize],
                    Path::new("index"),
                )
                .unwrap();
            let count = u32::from_le_bytes(page[..4].try_into().unwrap()) as usize;
            let base = 4 + 4 * (count + 1);
            for k in 0..count {
                let a = u32::from_le_bytes(page[4 + 4 * k..8 + 4 * k].try_into().unwrap()) as usize;
                let b =
                    u32::from_le_bytes(page[8 + 4 * k..12 + 4 * k].try_into().unwrap()) as usize;
                got.push(String::from_utf8(page[base + a..base + b].to_vec()).unwrap());
            }
        }
        let want: Vec<String> = ix.symbols().map(|s| s.unwrap().to_string()).collect();
        assert_eq!(got, want);
        // Every value and postings offset of `pod` from its windows, and each found by value.
        let n = h.name_index("pod").unwrap();
        assert_eq!(h.windows_of(n).len(), 300usize.div_ceil(SAMPLE_EVERY));
        let mut entries = Vec::new();
        for s in h.windows_of(n) {
            let r = h.window_range(s);
            h.parse_window(
                s,
                &bytes[r.start as usize..r.end as usize],
                Path::new("index"),
                &mut entries,
            )
            .unwrap();
        }
        let want: Vec<String> = ix.label_values("pod").unwrap();
        let got: Vec<String> = entries
            .iter()
            .map(|e| String::from_utf8(e.0.to_vec()).unwrap())
            .collect();
        assert_eq!(got, want);
        for (v, off, end) in &entries {
            let mut refs = Vec::new();
            ix.postings("pod", std::str::from_utf8(v).unwrap(), &mut refs)
                .unwrap();
            let mut at = Vec::new();
            ix.append_postings_at(*off, &mut at).unwrap();
            assert_eq!(refs, at);
            assert!(end > off);
            let w = h.window_of(n, v).unwrap();
            let r = h.window_range(w);
            let mut one = Vec::new();
            h.parse_window(
                w,
                &bytes[r.start as usize..r.end as usize],
                Path::new("index"),
                &mut one,
            )
            .unwrap();
            assert!(one.iter().any(|e| e.0 == *v));
        }
        assert_eq!(h.window_of(n, b"a"), None);
        let w0 = h.windows_of(n).start;
        assert_eq!(h.prefix_windows(n, b"pod-01"), w0 + 3..w0 + 7);
        assert_eq!(h.all_postings().map(|a| a.0), ix.all_postings_offset());
        // A flipped byte in a window or page is caught by its CRC.
        let r = h.window_range(h.windows_of(n).start);
        let mut bad = bytes[r.start as usize..r.end as usize].to_vec();
        bad[3] ^= 1;
        assert!(matches!(
            h.parse_window(
                h.windows_of(n).start,
                &bad,
                Path::new("index"),
                &mut Vec::new()
            ),
            Err(IndexError::Crc { .. })
        ));
        // Corrupt header bytes are refused, never a panic.
        for i in (0..enc.len()).step_by(7) {
            let mut b = enc.clone();
            b[i] ^= 0x5A;
            let _ = IndexHeader::parse(&b, Path::new("h"));
        }
        assert!(IndexHeader::parse(&enc[..enc.len() - 1], Path::new("h")).is_err());
    }

    #[test]
    fn headers_built_from_index_bytes_verify_against_their_index_and_refuse_others() {
        let mut w = crate::index::IndexWriter::in_memory();
        let pods: Vec<String> = (0..500).map(|i| format!("pod-{i:04}")).collect();
        let mut syms: Vec<&str> = vec!["__name__", "m", "pod"];
        syms.extend(pods.iter().map(String::as_str));
        syms.sort();
        w.add_symbols(syms.iter().copied()).unwrap();
        for p in &pods {
            let labels =
                crate::labels::Labels::from_pairs([("__name__", "m"), ("pod", p.as_str())]);
            w.add_series(&labels, &[]).unwrap();
        }
        let index = w.finish_to_vec().unwrap();
        let bytes = IndexHeader::bytes_from_index(&index, Path::new("index")).unwrap();
        let h = IndexHeader::parse(&bytes, Path::new("h")).unwrap();
        // Every (name, value) pair plus the all-postings entry.
        assert_eq!(
            h.verify_against(&index, Path::new("index")).unwrap(),
            1 + 1 + 500
        );
        // A truncated or altered index is an error, not a panic.
        assert!(
            h.verify_against(&index[..index.len() / 2], Path::new("index"))
                .is_err()
        );
        let mut bad = index.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        let _ = h.verify_against(&bad, Path::new("index"));
        assert!(IndexHeader::bytes_from_index(&index[..100], Path::new("index")).is_err());
    }

    #[test]
    fn pair_keys_hashed_while_building_are_the_index_pairs() {
        let mut w = crate::index::IndexWriter::in_memory();
        let pods: Vec<String> = (0..300).map(|i| format!("pod-{i:04}")).collect();
        let mut syms: Vec<&str> = vec!["__name__", "a", "b", "m", "n", "pod", "zone"];
        syms.extend(pods.iter().map(String::as_str));
        syms.sort();
        w.add_symbols(syms.iter().copied()).unwrap();
        let mut all = Vec::new();
        for (i, p) in pods.iter().enumerate() {
            let name = if i % 2 == 0 { "m" } else { "n" };
            let zone = if i % 3 == 0 { "a" } else { "b" };
            all.push(crate::labels::Labels::from_pairs([
                ("__name__", name),
                ("pod", p.as_str()),
                ("zone", zone),
            ]));
        }
        all.sort();
        for l in &all {
            w.add_series(l, &[]).unwrap();
        }
        let index = w.finish_to_vec().unwrap();
        let reader = IndexReader::from_bytes(index.clone(), "index".into()).unwrap();
        let toc = *reader.toc();
        let section = |start: u64| {
            let at = start as usize;
            let len = u32::from_be_bytes(index[at..at + 4].try_into().unwrap()) as usize;
            &index[at..at + len + 8]
        };
        let mut keys = Vec::new();
        encode(
            index.len() as u64,
            &toc,
            section(toc.symbols),
            section(toc.postings_offset_table),
            Path::new("index"),
            &mut keys,
        )
        .unwrap();
        let mut want = Vec::new();
        for name in reader.label_names() {
            for value in reader.label_values(&name).unwrap() {
                want.push(pair_key(&name, &value));
            }
        }
        // Two names, 300 pods, two zones; the all-postings key is not a pair.
        assert_eq!(keys.len(), 2 + 300 + 2);
        assert_eq!(keys, want);
        // The filter built from them is the one built from the index itself.
        let a = crate::block::LabelFilter::from_keys(keys, index.len() as u64).unwrap();
        let b = crate::block::LabelFilter::build(&reader, index.len() as u64).unwrap();
        assert_eq!(a.encode(), b.encode());
    }
}
