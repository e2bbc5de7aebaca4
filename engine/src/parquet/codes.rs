//! Label columns as dictionary codes: a column chunk's pages walked run by run for the rows
//! a read wants, so that a matcher is evaluated once per distinct value and keeps or drops
//! whole runs of rows, and labels are read as codes into the dictionary.
//!
//! Dictionary-encoded pages keep their codes; a page a writer fell back to plain encoding for
//! (its dictionary grew too large) appends its values to the dictionary, so every row still
//! has a code. The byte-array columns (column lists and chunks) are read here too, by row:
//! values are sliced out of their decompressed pages.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;

use super::ParquetError;

/// The code of a row without a value in the column.
pub const NULL: u32 = u32::MAX;
/// The code of a row whose page was not read (no wanted row in it).
pub const SKIPPED: u32 = u32::MAX - 1;

/// A label column chunk decoded into codes, for the rows a read asked for.
#[derive(Debug, Default, Clone)]
pub struct CodedColumn {
    /// The distinct values (more than one entry may hold the same value after a plain page).
    pub dict: Vec<Bytes>,
    /// Runs of decoded rows, ascending: the first row of each and where its codes start in
    /// `codes`; a run ends where the next one's codes start.
    spans: Vec<(usize, usize)>,
    /// Per decoded row: an index into `dict` or [`NULL`].
    codes: Vec<u32>,
}

impl CodedColumn {
    /// The code of row `row` of the row group: an index into `dict`, [`NULL`], or
    /// [`SKIPPED`] when the row was not decoded.
    #[inline]
    pub fn code(&self, row: usize) -> u32 {
        let i = self.spans.partition_point(|s| s.0 <= row);
        let Some(&(first, at)) = i.checked_sub(1).and_then(|i| self.spans.get(i)) else {
            return SKIPPED;
        };
        let end = self.spans.get(i).map_or(self.codes.len(), |s| s.1);
        let k = at + (row - first);
        if k < end { self.codes[k] } else { SKIPPED }
    }

    /// Rows decoded.
    pub fn decoded(&self) -> usize {
        self.codes.len()
    }

    /// The code of the `k`th decoded row (in row order): for a reader holding exactly the
    /// rows the column was decoded for, a lookup without a search.
    #[inline]
    pub fn code_at(&self, k: usize) -> u32 {
        self.codes.get(k).copied().unwrap_or(SKIPPED)
    }

    /// Appends codes for rows from `row` on (past every row decoded so far).
    fn push(&mut self, row: usize, codes: impl ExactSizeIterator<Item = u32>) {
        let joins = self
            .spans
            .last()
            .is_some_and(|&(first, at)| first + (self.codes.len() - at) == row);
        if !joins {
            self.spans.push((row, self.codes.len()));
        }
        self.codes.extend(codes);
    }
}

/// What a walk over a label column's codes hands its rows to.
trait CodeSink {
    /// The dictionary grew: `dict` is all of it so far.
    fn grew(&mut self, dict: &[Bytes]);
    /// Rows `row..row + len` all hold `code` (an index into the dictionary or [`NULL`]).
    fn repeat(&mut self, row: usize, len: usize, code: u32);
    /// Rows from `row` on hold `codes`, one each.
    fn values(&mut self, row: usize, codes: &[u32]);
}

impl CodeSink for CodedColumn {
    fn grew(&mut self, _: &[Bytes]) {}

    fn repeat(&mut self, row: usize, len: usize, code: u32) {
        self.push(row, std::iter::repeat_n(code, len));
    }

    fn values(&mut self, row: usize, codes: &[u32]) {
        self.push(row, codes.iter().copied());
    }
}

/// A matcher's verdict per dictionary value, turned into the rows it keeps.
struct MatchSink<'a> {
    accepts: &'a dyn Fn(&[u8]) -> bool,
    hits: Vec<bool>,
    null_hit: bool,
    kept: Vec<Range<usize>>,
}

impl MatchSink<'_> {
    fn keep(&mut self, row: usize, len: usize) {
        match self.kept.last_mut() {
            Some(last) if last.end == row => last.end = row + len,
            _ => self.kept.push(row..row + len),
        }
    }

    #[inline]
    fn hit(&self, code: u32) -> bool {
        if code == NULL {
            self.null_hit
        } else {
            self.hits[code as usize]
        }
    }
}

impl CodeSink for MatchSink<'_> {
    fn grew(&mut self, dict: &[Bytes]) {
        let accepts = self.accepts;
        let from = self.hits.len();
        self.hits.extend(dict[from..].iter().map(|v| accepts(v)));
    }

    fn repeat(&mut self, row: usize, len: usize, code: u32) {
        if self.hit(code) {
            self.keep(row, len);
        }
    }

    fn values(&mut self, row: usize, codes: &[u32]) {
        for (i, &c) in codes.iter().enumerate() {
            if self.hit(c) {
                self.keep(row + i, 1);
            }
        }
    }
}

/// Byte ranges of one file held in memory, read by absolute file offset: what a page reader
/// needs of a column chunk, fetched from the bucket beforehand.
#[derive(Debug, Clone)]
pub struct Ranges {
    parts: Vec<(u64, Bytes)>,
    file_len: u64,
}

impl Ranges {
    /// Ranges `parts` (start offset, bytes) of a file of `file_len` bytes.
    pub fn new(mut parts: Vec<(u64, Bytes)>, file_len: u64) -> Self {
        parts.sort_by_key(|p| p.0);
        Ranges { parts, file_len }
    }

    fn find(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        let i = self.parts.partition_point(|p| p.0 <= start);
        let miss = || {
            parquet::errors::ParquetError::General(format!(
                "bytes {start}..{} were not read",
                start.saturating_add(len)
            ))
        };
        let (off, b) = self
            .parts
            .get(i.checked_sub(1).ok_or_else(miss)?)
            .ok_or_else(miss)?;
        let from = (start - off) as usize;
        let to = from.checked_add(len as usize).ok_or_else(miss)?;
        if to > b.len() {
            return Err(miss());
        }
        Ok(b.slice(from..to))
    }
}

impl Length for Ranges {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for Ranges {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let i = self.parts.partition_point(|p| p.0 <= start);
        let (off, b) = i
            .checked_sub(1)
            .and_then(|i| self.parts.get(i))
            .filter(|(off, b)| start - off <= b.len() as u64)
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!("offset {start} was not read"))
            })?;
        Ok(b.slice((start - off) as usize..).reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.find(start, length as u64)
    }
}

/// The byte range of a column chunk in its file (dictionary page included).
pub fn chunk_range(c: &ColumnChunkMetaData) -> std::ops::Range<u64> {
    let (start, len) = c.byte_range();
    start..start + len
}

/// Where a label column chunk's pages are and which of its rows a read wants.
#[derive(Debug)]
pub struct ColumnRead<'a> {
    /// The file's bucket path, for errors.
    pub path: &'a str,
    /// The fetched bytes of the chunk (dictionary page and the data pages holding wanted
    /// rows, or all of it).
    pub file: Arc<Ranges>,
    /// The chunk.
    pub meta: &'a ColumnChunkMetaData,
    /// Rows in the row group.
    pub rows: usize,
    /// The chunk's page locations (its offset index): pages holding no wanted row are then
    /// skipped unread. Without them every page up to the last wanted row is read.
    pub locations: Option<Vec<PageLocation>>,
    /// The wanted rows, as ascending, disjoint ranges.
    pub wanted: &'a [Range<usize>],
}

/// Decodes the codes of the wanted rows of a label column chunk (an optional byte array
/// column, at most one level); other rows read as [`SKIPPED`].
pub fn decode_label_column(read: ColumnRead<'_>) -> Result<CodedColumn, ParquetError> {
    let mut out = CodedColumn::default();
    out.dict = walk_label_column(read, &mut out)?;
    Ok(out)
}

/// The wanted rows of a label column chunk whose value `accepts` takes (a row without a value
/// is taken when `null_hit`), as ascending, disjoint ranges. `accepts` is asked once per
/// dictionary value, and runs of one code are kept or dropped whole.
pub fn match_label_column(
    read: ColumnRead<'_>,
    accepts: &dyn Fn(&[u8]) -> bool,
    null_hit: bool,
) -> Result<Vec<Range<usize>>, ParquetError> {
    let mut sink = MatchSink {
        accepts,
        hits: Vec::new(),
        null_hit,
        kept: Vec::new(),
    };
    walk_label_column(read, &mut sink)?;
    Ok(sink.kept)
}

/// Walks the pages of a label column chunk holding wanted rows, handing the codes of the
/// wanted rows to `sink` in row order; the dictionary it read.
fn walk_label_column(
    read: ColumnRead<'_>,
    sink: &mut dyn CodeSink,
) -> Result<Vec<Bytes>, ParquetError> {
    let ColumnRead {
        path,
        file,
        meta,
        rows,
        locations,
        wanted,
    } = read;
    let fmt = |e| ParquetError::format(path, e);
    let bad = |what: String| ParquetError::layout(path, format!("{}: {what}", meta.column_path()));
    let max_def = meta.column_descr().max_def_level();
    if max_def > 1 || meta.column_descr().max_rep_level() > 0 {
        return Err(bad(
            "a label column must be a flat optional or required value".into(),
        ));
    }
    let mut dict: Vec<Bytes> = Vec::new();
    let Some(last_wanted) = wanted.last().map(|w| w.end) else {
        return Ok(dict);
    };
    let skipping = locations.is_some();
    let mut pages = SerializedPageReader::new(file, meta, rows, locations).map_err(fmt)?;
    // First row of the next page; the first wanted range not yet passed.
    let mut at = 0usize;
    let mut wi = 0usize;
    // Codes of the current dictionary start here in `dict`.
    let mut dict_base: u32 = 0;
    let mut dict_len: u32 = 0;
    let mut levels = Vec::new();
    let mut scratch = Vec::new();
    loop {
        if skipping {
            let Some(pm) = pages.peek_next_page().map_err(fmt)? else {
                break;
            };
            if !pm.is_dict {
                if at >= last_wanted {
                    return Ok(dict);
                }
                let n = pm.num_rows.unwrap_or(0).min(rows - at);
                while wi < wanted.len() && wanted[wi].end <= at {
                    wi += 1;
                }
                if n > 0 && wanted.get(wi).is_none_or(|w| w.start >= at + n) {
                    pages.skip_next_page().map_err(fmt)?;
                    at += n;
                    continue;
                }
            }
        } else if at >= last_wanted {
            return Ok(dict);
        }
        let Some(page) = pages.get_next_page().map_err(fmt)? else {
            break;
        };
        // A page's value count is checked against the rows left before anything is decoded.
        let left = rows - at;
        let room = |n: u32| {
            if n as usize > left {
                Err(bad(format!(
                    "pages hold more than the row group's {rows} values"
                )))
            } else {
                Ok(())
            }
        };
        // The page's values, its value count, encoding, and its definition levels when some
        // row may have no value.
        let (buf, n, encoding, has_levels) = match page {
            Page::DictionaryPage {
                buf, num_values, ..
            } => {
                dict_base = dict.len() as u32;
                plain_byte_arrays(&buf, num_values as usize, &mut dict).map_err(bad)?;
                dict_len = dict.len() as u32 - dict_base;
                sink.grew(&dict);
                continue;
            }
            Page::DataPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                room(num_values)?;
                if max_def == 0 {
                    (buf, num_values as usize, encoding, false)
                } else {
                    // Version 1 pages hold their levels as one length-prefixed run.
                    let lv =
                        plain_value(&buf, 0).map_err(|e| bad(format!("definition levels: {e}")))?;
                    let levels_end = lv.end;
                    let lv = &buf[lv];
                    let nulls = !all_set(lv, num_values as usize).map_err(bad)?;
                    if nulls {
                        levels.clear();
                        decode_hybrid(lv, 1, num_values as usize, &mut levels).map_err(bad)?;
                    }
                    (
                        buf.slice(levels_end..),
                        num_values as usize,
                        encoding,
                        nulls,
                    )
                }
            }
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                room(num_values)?;
                let rep = rep_levels_byte_len as usize;
                let end = rep
                    .checked_add(def_levels_byte_len as usize)
                    .filter(|&e| e <= buf.len())
                    .ok_or_else(|| bad("levels run past the page".into()))?;
                let lv = &buf[rep..end];
                let nulls = max_def > 0 && !all_set(lv, num_values as usize).map_err(bad)?;
                if nulls {
                    levels.clear();
                    decode_hybrid(lv, 1, num_values as usize, &mut levels).map_err(bad)?;
                }
                (buf.slice(end..), num_values as usize, encoding, nulls)
            }
        };
        while wi < wanted.len() && wanted[wi].end <= at {
            wi += 1;
        }
        // The wanted rows of this page, page-relative.
        let local: Vec<Range<usize>> = wanted[wi..]
            .iter()
            .take_while(|w| w.start < at + n)
            .map(|w| w.start.max(at) - at..w.end.min(at + n) - at)
            .collect();
        let present = if has_levels {
            levels.iter().filter(|&&l| l > 0).count()
        } else {
            n
        };
        match encoding {
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                let (&width, rest) = buf
                    .split_first()
                    .ok_or_else(|| bad("empty dictionary-coded page".into()))?;
                if width > 32 {
                    return Err(bad(format!("code width {width}")));
                }
                let check = |v: u32| {
                    if v >= dict_len {
                        Err(bad(format!(
                            "code {v} past the dictionary of {dict_len} values"
                        )))
                    } else {
                        Ok(v + dict_base)
                    }
                };
                if has_levels {
                    scratch.clear();
                    decode_hybrid(rest, u32::from(width), present, &mut scratch).map_err(bad)?;
                    let codes = with_nulls(&levels, &scratch, check)?;
                    for r in &local {
                        sink.values(at + r.start, &codes[r.clone()]);
                    }
                } else {
                    let mut err = None;
                    walk_hybrid(
                        rest,
                        u32::from(width),
                        n,
                        &local,
                        &mut scratch,
                        |row, piece| {
                            if err.is_some() {
                                return;
                            }
                            match piece {
                                Piece::Repeat(v, len) => match check(v) {
                                    Ok(c) => sink.repeat(at + row, len, c),
                                    Err(e) => err = Some(e),
                                },
                                Piece::Values(vs) => {
                                    for v in vs.iter_mut() {
                                        match check(*v) {
                                            Ok(c) => *v = c,
                                            Err(e) => {
                                                err = Some(e);
                                                return;
                                            }
                                        }
                                    }
                                    sink.values(at + row, vs);
                                }
                            }
                        },
                    )
                    .map_err(bad)?;
                    if let Some(e) = err {
                        return Err(e);
                    }
                }
            }
            Encoding::PLAIN => {
                let base = dict.len() as u32;
                plain_byte_arrays(&buf, present, &mut dict).map_err(bad)?;
                sink.grew(&dict);
                scratch.clear();
                scratch.extend(base..base + present as u32);
                let codes = if has_levels {
                    with_nulls(&levels, &scratch, Ok)?
                } else {
                    std::mem::take(&mut scratch)
                };
                for r in &local {
                    sink.values(at + r.start, &codes[r.clone()]);
                }
            }
            other => {
                return Err(bad(format!(
                    "label values encoded as {other} are not read (dictionary or plain only)"
                )));
            }
        }
        at += n;
    }
    if at != rows {
        return Err(bad(format!("{at} values for a row group of {rows} rows")));
    }
    Ok(dict)
}

/// One code per row of a page from its definition levels and the codes of its present
/// values, [`NULL`] where a row has none; each present code passed through `check`.
fn with_nulls(
    levels: &[u32],
    present: &[u32],
    check: impl Fn(u32) -> Result<u32, ParquetError>,
) -> Result<Vec<u32>, ParquetError> {
    let mut vi = present.iter();
    levels
        .iter()
        .map(|&l| {
            if l > 0 {
                vi.next().map_or(Ok(NULL), |&v| check(v))
            } else {
                Ok(NULL)
            }
        })
        .collect()
}

/// Plain-encoded byte arrays (a 4-byte little-endian length before each), `n` of them.
fn plain_byte_arrays(buf: &Bytes, n: usize, out: &mut Vec<Bytes>) -> Result<(), String> {
    let mut at = 0usize;
    out.reserve(n.min(buf.len() / 4));
    for _ in 0..n {
        let value = plain_value(buf, at)?;
        at = value.end;
        out.push(buf.slice(value));
    }
    Ok(())
}

/// Where the plain-encoded byte array starting at `at` of `buf` lies (after its 4-byte
/// little-endian length); it ends where the next one starts.
fn plain_value(buf: &[u8], at: usize) -> Result<Range<usize>, String> {
    let len = buf
        .get(at..at.saturating_add(4))
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("truncated plain value")?;
    let start = at + 4;
    let end = start
        .checked_add(len)
        .filter(|&e| e <= buf.len())
        .ok_or("plain value runs past the page")?;
    Ok(start..end)
}

/// The header of the next run of the RLE / bit-packing hybrid encoding at `buf[at..]`:
/// `(true, groups of 8 values)` for a bit-packed run, `(false, count)` for a repeated one;
/// and where the run's body starts.
fn run_header(buf: &[u8], at: usize) -> Result<(bool, usize, usize), String> {
    let (header, k) = super::uvarint(buf.get(at..).unwrap_or(&[])).ok_or("truncated run header")?;
    let count = usize::try_from(header >> 1).map_err(|_| "run too long")?;
    Ok((header & 1 == 1, count, at + k))
}

/// Whether the first `n` definition levels (bit width 1) in `buf` are all 1, walking runs
/// rather than expanding them.
fn all_set(buf: &[u8], n: usize) -> Result<bool, String> {
    let mut pos = 0usize;
    let mut at = 0usize;
    while pos < n {
        let (packed, count, body) = run_header(buf, at)?;
        if packed {
            let bytes = buf
                .get(body..body + count)
                .ok_or("truncated bit-packed run")?;
            let vals = count.saturating_mul(8).min(n - pos);
            let full = vals / 8;
            if bytes[..full].iter().any(|&b| b != 0xFF) {
                return Ok(false);
            }
            if vals % 8 != 0 && bytes[full] | (0xFF << (vals % 8)) != 0xFF {
                return Ok(false);
            }
            pos += vals;
            at = body + count;
        } else {
            let v = *buf.get(body).ok_or("truncated run value")?;
            if v & 1 == 0 && count > 0 {
                return Ok(false);
            }
            pos = pos.saturating_add(count).min(n);
            at = body + 1;
        }
    }
    Ok(true)
}

/// Part of a run of the hybrid encoding handed out by [`walk_hybrid`].
enum Piece<'a> {
    /// One value for this many rows.
    Repeat(u32, usize),
    /// One value per row.
    Values(&'a mut [u32]),
}

/// Walks the first `n` values of the RLE / bit-packing hybrid encoding at bit width `width`,
/// handing `f` the values at positions `wanted` (ascending, disjoint ranges) with their first
/// position; runs lying outside every wanted range are stepped over undecoded.
fn walk_hybrid(
    buf: &[u8],
    width: u32,
    n: usize,
    wanted: &[Range<usize>],
    scratch: &mut Vec<u32>,
    mut f: impl FnMut(usize, Piece<'_>),
) -> Result<(), String> {
    let value_bytes = width.div_ceil(8) as usize;
    let mask: u64 = if width == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << width) - 1
    };
    let (mut pos, mut at, mut wi) = (0usize, 0usize, 0usize);
    while pos < n && wi < wanted.len() {
        let (packed, count, body) = run_header(buf, at)?;
        let (len, next) = if packed {
            let bytes = count
                .checked_mul(width as usize)
                .ok_or("bit-packed run too long")?;
            let end = body.checked_add(bytes).filter(|&e| e <= buf.len());
            let end = end.ok_or("truncated bit-packed run")?;
            (count.saturating_mul(8).min(n - pos), end)
        } else {
            if body + value_bytes > buf.len() {
                return Err("truncated run value".into());
            }
            (count.min(n - pos), body + value_bytes)
        };
        let run_end = pos + len;
        while wi < wanted.len() && wanted[wi].start < run_end {
            let lo = wanted[wi].start.max(pos);
            let hi = wanted[wi].end.min(run_end);
            if lo < hi {
                if packed {
                    scratch.clear();
                    let packed_bytes = &buf[body..next];
                    let mut bit = (lo - pos) * width as usize;
                    for _ in lo..hi {
                        let byte = bit / 8;
                        let mut word = [0u8; 8];
                        let avail = (packed_bytes.len() - byte).min(8);
                        word[..avail].copy_from_slice(&packed_bytes[byte..byte + avail]);
                        scratch.push(((u64::from_le_bytes(word) >> (bit % 8)) & mask) as u32);
                        bit += width as usize;
                    }
                    f(lo, Piece::Values(scratch));
                } else {
                    let mut v = 0u32;
                    for (i, &b) in buf[body..next].iter().enumerate() {
                        v |= u32::from(b) << (8 * i);
                    }
                    f(lo, Piece::Repeat(v, hi - lo));
                }
            }
            if wanted[wi].end <= run_end {
                wi += 1;
            } else {
                break;
            }
        }
        pos = run_end;
        at = next;
    }
    Ok(())
}

/// Decodes `n` values of the RLE / bit-packing hybrid encoding at bit width `width`.
fn decode_hybrid(buf: &[u8], width: u32, n: usize, out: &mut Vec<u32>) -> Result<(), String> {
    let mut scratch = Vec::new();
    out.reserve(n.min(buf.len().saturating_mul(8)));
    let every = 0..n;
    let every = std::slice::from_ref(&every);
    walk_hybrid(buf, width, n, every, &mut scratch, |_, piece| match piece {
        Piece::Repeat(v, len) => out.extend(std::iter::repeat_n(v, len)),
        Piece::Values(vs) => out.extend_from_slice(vs),
    })?;
    if out.len() < n {
        return Err("runs end before the page's values".into());
    }
    Ok(())
}

/// Values of a flat required byte-array column chunk (a chunk or column-list column) at `rows`
/// (ascending) of its `total` rows, each a slice of its decompressed page (only a
/// `DELTA_BYTE_ARRAY` value, built from the one before it, is copied).
/// Pages holding none of `rows` are skipped unread when `locations` (the offset index) says
/// where pages are. `None` when the chunk is not one this reads (a row without a value,
/// repetition, a dictionary, an encoding other than plain or delta): the caller reads it
/// with the library's column reader instead.
pub fn byte_array_rows(
    path: &str,
    file: Arc<Ranges>,
    meta: &ColumnChunkMetaData,
    total: usize,
    locations: Option<Vec<PageLocation>>,
    rows: &[u32],
) -> Result<Option<Vec<Bytes>>, ParquetError> {
    let descr = meta.column_descr();
    let optional = descr.max_def_level() > 0;
    if descr.max_def_level() > 1 || descr.max_rep_level() > 0 {
        return Ok(None);
    }
    let fmt = |e| ParquetError::format(path, e);
    let bad = |what: String| ParquetError::layout(path, format!("{}: {what}", meta.column_path()));
    let skipping = locations.is_some();
    let mut pages = SerializedPageReader::new(file, meta, total, locations).map_err(fmt)?;
    let mut out = Vec::with_capacity(rows.len());
    let mut local = Vec::new();
    // First row of the next page, and the next wanted row's index in `rows`.
    let (mut at, mut i) = (0usize, 0usize);
    while i < rows.len() {
        let want = rows[i] as usize;
        if skipping {
            let Some(pm) = pages.peek_next_page().map_err(fmt)? else {
                break;
            };
            if pm.is_dict {
                return Ok(None);
            }
            let n = pm.num_rows.unwrap_or(0);
            if n > 0 && at + n <= want {
                pages.skip_next_page().map_err(fmt)?;
                at += n;
                continue;
            }
        }
        let Some(page) = pages.get_next_page().map_err(fmt)? else {
            break;
        };
        let (buf, n, encoding) = match page {
            Page::DictionaryPage { .. } => return Ok(None),
            Page::DataPage {
                buf,
                num_values,
                encoding,
                ..
            } if optional => {
                let levels =
                    plain_value(&buf, 0).map_err(|e| bad(format!("definition levels: {e}")))?;
                let end = levels.end;
                // An optional column is read here only while every row has a value.
                if !all_set(&buf[levels], num_values as usize).map_err(bad)? {
                    return Ok(None);
                }
                (buf.slice(end..), num_values as usize, encoding)
            }
            Page::DataPage {
                buf,
                num_values,
                encoding,
                ..
            } => (buf, num_values as usize, encoding),
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let rep = rep_levels_byte_len as usize;
                let levels = rep
                    .checked_add(def_levels_byte_len as usize)
                    .filter(|&e| e <= buf.len())
                    .ok_or_else(|| bad("levels run past the page".into()))?;
                if optional && !all_set(&buf[rep..levels], num_values as usize).map_err(bad)? {
                    return Ok(None);
                }
                (buf.slice(levels..), num_values as usize, encoding)
            }
        };
        if n > total - at {
            return Err(bad(format!(
                "pages hold more than the row group's {total} values"
            )));
        }
        let end = at + n;
        if want >= end {
            at = end;
            continue;
        }
        // The page's wanted rows, page-relative; only their values are sliced out (or, for
        // prefix-coded values, built).
        local.clear();
        while i < rows.len() && (rows[i] as usize) < end {
            local.push(rows[i] as usize - at);
            i += 1;
        }
        match encoding {
            Encoding::PLAIN => plain_wanted(&buf, &local, &mut out).map_err(bad)?,
            Encoding::DELTA_LENGTH_BYTE_ARRAY => {
                delta_length_byte_arrays(&buf, n, &local, &mut out).map_err(bad)?;
            }
            Encoding::DELTA_BYTE_ARRAY => {
                delta_byte_arrays(&buf, n, &local, &mut out).map_err(bad)?;
            }
            _ => return Ok(None),
        }
        at = end;
    }
    if out.len() != rows.len() {
        return Err(ParquetError::layout(
            path,
            "column ends before its row group",
        ));
    }
    Ok(Some(out))
}

/// The plain-encoded byte arrays at positions `wanted` (ascending) of a page, appended to
/// `out` as slices of it; the page is walked up to the last wanted value.
fn plain_wanted(buf: &Bytes, wanted: &[usize], out: &mut Vec<Bytes>) -> Result<(), String> {
    let Some(&last) = wanted.last() else {
        return Ok(());
    };
    let mut at = 0usize;
    let mut w = wanted.iter().peekable();
    for i in 0..=last {
        let value = plain_value(buf, at)?;
        at = value.end;
        if w.next_if_eq(&&i).is_some() {
            out.push(buf.slice(value));
        }
    }
    Ok(())
}

/// The last of `wanted` (ascending positions in a page of `n` values), refused past the
/// page; `None` when nothing is wanted.
fn last_wanted(wanted: &[usize], n: usize) -> Result<Option<usize>, String> {
    match wanted.last() {
        Some(&last) if last >= n => Err("a wanted value past the page's values".into()),
        last => Ok(last.copied()),
    }
}

/// The `DELTA_LENGTH_BYTE_ARRAY` values at positions `wanted` (ascending) of a page of `n`:
/// their lengths delta-coded, then their bytes one after another. Appended to `out` as
/// slices of the page.
fn delta_length_byte_arrays(
    buf: &Bytes,
    n: usize,
    wanted: &[usize],
    out: &mut Vec<Bytes>,
) -> Result<(), String> {
    let Some(last) = last_wanted(wanted, n)? else {
        return Ok(());
    };
    let mut lengths = Vec::new();
    let mut at = delta_binary_packed(buf, n, last + 1, &mut lengths)?;
    let mut w = wanted.iter().peekable();
    for (i, &len) in lengths.iter().enumerate() {
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|&e| e <= buf.len())
            .ok_or("a value runs past the page")?;
        if w.next_if_eq(&&i).is_some() {
            out.push(buf.slice(at..end));
        }
        at = end;
    }
    Ok(())
}

/// Most bytes the wanted values of one `DELTA_BYTE_ARRAY` page may come to: a value repeats
/// the one before it for free, so a hostile page could otherwise ask for any amount.
const DELTA_BYTE_ARRAY_OUT: usize = 64 << 20;

/// The values at positions `wanted` (ascending) of a `DELTA_BYTE_ARRAY` page of `n` values:
/// prefix lengths and suffixes, each value the start of the one before followed by its
/// suffix. Appended to `out` as slices of one buffer.
fn delta_byte_arrays(
    buf: &Bytes,
    n: usize,
    wanted: &[usize],
    out: &mut Vec<Bytes>,
) -> Result<(), String> {
    let Some(last) = last_wanted(wanted, n)? else {
        return Ok(());
    };
    let mut prefixes = Vec::new();
    let at = delta_binary_packed(buf, n, last + 1, &mut prefixes)?;
    let mut lengths = Vec::new();
    let mut data = at + delta_binary_packed(&buf[at..], n, last + 1, &mut lengths)?;
    let limit = DELTA_BYTE_ARRAY_OUT.max(buf.len().saturating_mul(16));
    let mut cur: Vec<u8> = Vec::new();
    let mut kept: Vec<u8> = Vec::new();
    let mut ends = Vec::new();
    let mut wanted = wanted.iter().copied().peekable();
    for (i, (&prefix, &len)) in prefixes.iter().zip(&lengths).enumerate() {
        let Some(&next) = wanted.peek() else {
            break;
        };
        let prefix = usize::try_from(prefix)
            .ok()
            .filter(|&p| p <= cur.len())
            .ok_or("a prefix longer than the value before it")?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| data.checked_add(l))
            .filter(|&e| e <= buf.len())
            .ok_or("a suffix runs past the page")?;
        cur.truncate(prefix);
        cur.extend_from_slice(&buf[data..end]);
        data = end;
        if i == next {
            if kept.len() + cur.len() > limit {
                return Err(format!("values past {limit} bytes in one page"));
            }
            kept.extend_from_slice(&cur);
            ends.push(kept.len());
            wanted.next();
        }
    }
    if wanted.peek().is_some() {
        return Err("a wanted value past the page's values".into());
    }
    let kept = Bytes::from(kept);
    let mut start = 0;
    out.extend(ends.into_iter().map(|end| {
        let v = kept.slice(start..end);
        start = end;
        v
    }));
    Ok(())
}

/// Decodes the first `upto` of the `n` values of a `DELTA_BINARY_PACKED` run into `out`; the
/// bytes the whole run takes (the miniblocks past `upto` are stepped over, not decoded).
fn delta_binary_packed(
    buf: &[u8],
    n: usize,
    upto: usize,
    out: &mut Vec<i64>,
) -> Result<usize, String> {
    let mut at = 0usize;
    let mut next = || -> Result<u64, String> {
        let (v, k) =
            super::uvarint(buf.get(at..).unwrap_or(&[])).ok_or("truncated delta header")?;
        at += k;
        Ok(v)
    };
    let block = next()?;
    let minis = next()?;
    let total = next()?;
    let first = super::unzigzag(next()?);
    if block == 0
        || block > 1 << 20
        || block % 128 != 0
        || minis == 0
        || block % minis != 0
        || (block / minis) % 32 != 0
    {
        return Err(format!(
            "delta blocks of {block} values in {minis} miniblocks"
        ));
    }
    if total != n as u64 {
        return Err(format!("{total} delta-coded values in a page of {n}"));
    }
    let (minis, per_mini) = (minis as usize, (block / minis) as usize);
    let upto = upto.min(n);
    out.clear();
    // Room for what the page's bytes can hold at a bit a value; runs of width 0 grow it.
    out.reserve(upto.min(buf.len().saturating_mul(8) + 1));
    if n == 0 {
        return Ok(at);
    }
    if upto > 0 {
        out.push(first);
    }
    let mut last = first;
    // Values accounted for, decoded or stepped over.
    let mut seen = 1usize;
    while seen < n {
        let (min_delta, k) =
            super::uvarint(buf.get(at..).unwrap_or(&[])).ok_or("truncated delta block")?;
        at += k;
        let min_delta = super::unzigzag(min_delta);
        let widths = buf.get(at..at + minis).ok_or("truncated delta widths")?;
        at += minis;
        for &w in widths {
            if seen >= n {
                break;
            }
            let w = usize::from(w);
            if w > 64 {
                return Err(format!("delta width {w}"));
            }
            let bytes = per_mini * w / 8;
            let packed = buf.get(at..at + bytes).ok_or("truncated miniblock")?;
            at += bytes;
            let take = per_mini.min(n - seen);
            let decode = take.min(upto.saturating_sub(seen));
            for k in 0..decode {
                let v = unpack(packed, k * w, w);
                last = last.wrapping_add(min_delta).wrapping_add(v as i64);
                out.push(last);
            }
            seen += take;
        }
    }
    Ok(at)
}

/// The `w`-bit value (`w` ≤ 64) starting at bit `bit` of `packed`, least significant bit
/// first; bits past the end read as zero.
#[inline]
fn unpack(packed: &[u8], bit: usize, w: usize) -> u64 {
    if w == 0 {
        return 0;
    }
    let from = bit / 8;
    let shift = bit % 8;
    let v = if shift + w <= 64 {
        let mut word = [0u8; 8];
        let avail = packed.len().saturating_sub(from).min(8);
        word[..avail].copy_from_slice(&packed[from..from + avail]);
        u64::from_le_bytes(word) >> shift
    } else {
        let mut word = [0u8; 16];
        let avail = packed.len().saturating_sub(from).min(16);
        word[..avail].copy_from_slice(&packed[from..from + avail]);
        (u128::from_le_bytes(word) >> shift) as u64
    };
    if w == 64 { v } else { v & ((1u64 << w) - 1) }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{
        Piece, all_set, decode_hybrid, delta_binary_packed, delta_byte_arrays,
        delta_length_byte_arrays, walk_hybrid,
    };

    fn uvarint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A `DELTA_BINARY_PACKED` run: one block of 128 values in 4 miniblocks, deltas of
    /// `width` bits.
    fn packed(first: i64, min_delta: i64, width: u8, deltas: &[u64]) -> Vec<u8> {
        let mut b = Vec::new();
        uvarint(&mut b, 128);
        uvarint(&mut b, 4);
        uvarint(&mut b, deltas.len() as u64 + 1);
        uvarint(&mut b, ((first << 1) ^ (first >> 63)) as u64);
        if !deltas.is_empty() {
            uvarint(&mut b, ((min_delta << 1) ^ (min_delta >> 63)) as u64);
            b.extend_from_slice(&[width; 4]);
            let used = deltas.len().div_ceil(32);
            let mut bits = vec![0u8; used * 32 * usize::from(width) / 8];
            for (k, &d) in deltas.iter().enumerate() {
                for i in 0..usize::from(width) {
                    if i < 64 && d >> i & 1 == 1 {
                        let bit = k * usize::from(width) + i;
                        bits[bit / 8] |= 1 << (bit % 8);
                    }
                }
            }
            b.extend_from_slice(&bits);
        }
        b
    }

    #[test]
    fn delta_coded_values_decode_and_lying_headers_are_refused() {
        // 1 + 40 values: lengths 5, then 5 + (2 + d) for d = k % 7, over two miniblocks.
        let deltas: Vec<u64> = (0..40).map(|k| k % 7).collect();
        let run = packed(5, 2, 3, &deltas);
        let mut want = vec![5i64];
        for d in &deltas {
            want.push(want.last().unwrap() + 2 + *d as i64);
        }
        let mut out = Vec::new();
        assert_eq!(delta_binary_packed(&run, 41, 41, &mut out), Ok(run.len()));
        assert_eq!(out, want);
        // The first values alone, the run's length still all of it.
        for upto in [0, 1, 7, 33] {
            assert_eq!(delta_binary_packed(&run, 41, upto, &mut out), Ok(run.len()));
            assert_eq!(out, want[..upto]);
        }
        // One value: the header alone.
        let one = packed(-3, 0, 0, &[]);
        assert_eq!(delta_binary_packed(&one, 1, 1, &mut out), Ok(one.len()));
        assert_eq!(out, vec![-3]);

        // A count other than the page's, a truncated miniblock, widths past 64, a block size
        // not a multiple of 128, and a header cut short are each an error.
        assert!(delta_binary_packed(&run, 40, 40, &mut out).is_err());
        assert!(delta_binary_packed(&run[..run.len() - 1], 41, 1, &mut out).is_err());
        let wide = packed(0, 0, 65, &[1]);
        assert!(delta_binary_packed(&wide, 2, 2, &mut out).is_err());
        let mut odd = Vec::new();
        for v in [100, 4, 2, 0] {
            uvarint(&mut odd, v);
        }
        assert!(delta_binary_packed(&odd, 2, 2, &mut out).is_err());
        assert!(delta_binary_packed(&run[..2], 41, 41, &mut out).is_err());

        // Delta-length values: the lengths, then the bytes; a negative length or one past
        // the page is refused.
        let mut page = packed(2, 1, 1, &[0]);
        page.extend_from_slice(b"abxyz");
        let mut vals = Vec::new();
        delta_length_byte_arrays(&Bytes::from(page.clone()), 2, &[0, 1], &mut vals).unwrap();
        assert_eq!(
            vals,
            vec![Bytes::from_static(b"ab"), Bytes::from_static(b"xyz")]
        );
        vals.clear();
        delta_length_byte_arrays(&Bytes::from(page.clone()), 2, &[1], &mut vals).unwrap();
        assert_eq!(vals, vec![Bytes::from_static(b"xyz")]);
        assert!(delta_length_byte_arrays(&Bytes::from(page.clone()), 2, &[2], &mut vals).is_err());
        page.pop();
        assert!(delta_length_byte_arrays(&Bytes::from(page), 2, &[0, 1], &mut vals).is_err());
        let mut negative = packed(-1, 0, 0, &[]);
        negative.extend_from_slice(b"a");
        assert!(delta_length_byte_arrays(&Bytes::from(negative), 1, &[0], &mut vals).is_err());
    }

    /// `values` in the RLE / bit-packing hybrid encoding at bit width `width`: runs of one
    /// value as repeated runs, the rest bit-packed in groups of 8 (the last group padded).
    fn hybrid(values: &[u32], width: u32) -> Vec<u8> {
        let mut b = Vec::new();
        let mut i = 0;
        while i < values.len() {
            let mut j = i;
            while j < values.len() && values[j] == values[i] {
                j += 1;
            }
            if j - i >= 8 {
                uvarint(&mut b, ((j - i) as u64) << 1);
                b.extend_from_slice(&values[i].to_le_bytes()[..width.div_ceil(8) as usize]);
                i = j;
                continue;
            }
            let groups = (values.len() - i).min(16).div_ceil(8);
            uvarint(&mut b, (groups as u64) << 1 | 1);
            let mut bits = vec![0u8; groups * width as usize];
            for k in 0..groups * 8 {
                let v = values.get(i + k).copied().unwrap_or(0);
                for bit in 0..width as usize {
                    if v >> bit & 1 == 1 {
                        let at = k * width as usize + bit;
                        bits[at / 8] |= 1 << (at % 8);
                    }
                }
            }
            b.extend_from_slice(&bits);
            i += groups * 8;
        }
        b
    }

    #[test]
    fn hybrid_runs_hand_out_only_the_wanted_values() {
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for width in [1u32, 3, 8, 13, 32] {
            for _ in 0..50 {
                let n = (next() % 300) as usize + 1;
                let mut values = Vec::with_capacity(n);
                while values.len() < n {
                    let v = (next() as u32)
                        & if width == 32 {
                            u32::MAX
                        } else {
                            (1 << width) - 1
                        };
                    let run = if next() % 3 == 0 {
                        (next() % 40) as usize
                    } else {
                        1
                    };
                    values.extend(std::iter::repeat_n(v, run.min(n - values.len()).max(1)));
                }
                let buf = hybrid(&values, width);
                let mut all = Vec::new();
                decode_hybrid(&buf, width, n, &mut all).unwrap();
                assert_eq!(all, values, "width {width}");
                // Random ascending, disjoint ranges.
                let mut wanted = Vec::new();
                let mut at = (next() % 20) as usize;
                while at < n {
                    let end = (at + (next() % 30) as usize + 1).min(n);
                    wanted.push(at..end);
                    at = end + (next() % 50) as usize;
                }
                let mut got = Vec::new();
                let mut scratch = Vec::new();
                walk_hybrid(
                    &buf,
                    width,
                    n,
                    &wanted,
                    &mut scratch,
                    |row, piece| match piece {
                        Piece::Repeat(v, len) => got.extend((row..row + len).map(|r| (r, v))),
                        Piece::Values(vs) => {
                            got.extend(vs.iter().enumerate().map(|(i, &v)| (row + i, v)));
                        }
                    },
                )
                .unwrap();
                let expected: Vec<(usize, u32)> = wanted
                    .iter()
                    .flat_map(|w| w.clone())
                    .map(|r| (r, values[r]))
                    .collect();
                assert_eq!(got, expected, "width {width} wanted {wanted:?}");
            }
        }
        // Runs ending before the values do, and a bit-packed run past the buffer, are errors.
        let buf = hybrid(&[5; 10], 3);
        assert!(decode_hybrid(&buf, 3, 11, &mut Vec::new()).is_err());
        assert!(decode_hybrid(&[0x03, 0xFF], 8, 8, &mut Vec::new()).is_err());
        assert!(decode_hybrid(&[0x10], 8, 8, &mut Vec::new()).is_err());
    }

    #[test]
    fn definition_levels_say_whether_every_row_has_a_value() {
        let ones = |n: usize| hybrid(&vec![1; n], 1);
        assert!(all_set(&ones(100), 100).unwrap());
        assert!(all_set(&ones(5), 5).unwrap());
        let mut some = vec![1; 50];
        some[17] = 0;
        assert!(!all_set(&hybrid(&some, 1), 50).unwrap());
        let mut last = vec![1; 12];
        last[11] = 0;
        assert!(!all_set(&hybrid(&last, 1), 12).unwrap());
        // Padding past the page's values is not a value.
        assert!(all_set(&hybrid(&[1, 1, 1], 1), 3).unwrap());
        assert!(all_set(&[], 1).is_err());
        assert!(all_set(&[0x03], 8).is_err());
    }

    #[test]
    fn prefix_coded_values_decode_up_to_the_wanted_ones_and_lies_are_refused() {
        // Prefix lengths 0, 3, 3 and suffix lengths 5, 2, 1 over "abcde" "XY" "Z".
        let page = |prefixes: Vec<u8>, data: &[u8]| {
            let mut b = prefixes;
            b.extend(packed(5, -3, 2, &[0, 2]));
            b.extend_from_slice(data);
            Bytes::from(b)
        };
        let good = page(packed(0, 0, 2, &[3, 0]), b"abcdeXYZ");
        let read = |buf: &Bytes, wanted: &[usize]| {
            let mut out = Vec::new();
            delta_byte_arrays(buf, 3, wanted, &mut out).map(|()| out)
        };
        assert_eq!(
            read(&good, &[0, 1, 2]).unwrap(),
            vec![
                Bytes::from_static(b"abcde"),
                Bytes::from_static(b"abcXY"),
                Bytes::from_static(b"abcZ")
            ]
        );
        assert_eq!(
            read(&good, &[2]).unwrap(),
            vec![Bytes::from_static(b"abcZ")]
        );
        assert!(read(&good, &[]).unwrap().is_empty());
        // A wanted value past the page, a prefix longer than the value before, a suffix
        // past the page's end.
        assert!(read(&good, &[3]).is_err());
        assert!(read(&page(packed(0, 0, 4, &[9, 0]), b"abcdeXYZ"), &[1]).is_err());
        assert!(read(&page(packed(0, 0, 2, &[3, 0]), b"abcdeX"), &[2]).is_err());
        assert!(read(&page(packed(-1, 0, 2, &[0, 0]), b"abcdeXYZ"), &[0]).is_err());
    }
}
