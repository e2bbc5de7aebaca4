//! Label columns as dictionary codes: a column chunk's pages decoded into one code per row
//! (or [`NULL`]) and the dictionary the codes index, so that a matcher is evaluated once per
//! distinct value and rows are selected by comparing integers.
//!
//! Dictionary-encoded pages keep their codes; a page a writer fell back to plain encoding for
//! (its dictionary grew too large) appends its values to the dictionary, so every row still
//! has a code.

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

/// A label column chunk decoded into codes.
#[derive(Debug, Default, Clone)]
pub struct CodedColumn {
    /// The distinct values (more than one entry may hold the same value after a plain page).
    pub dict: Vec<Bytes>,
    /// Per row from `base` on: an index into `dict`, [`NULL`] or [`SKIPPED`]; rows before
    /// `base` or past the end were not read (pages holding no wanted row).
    codes: Vec<u32>,
    base: usize,
}

impl CodedColumn {
    /// The code of row `row` of the row group: an index into `dict`, [`NULL`], or
    /// [`SKIPPED`] when its page was not read.
    #[inline]
    pub fn code(&self, row: usize) -> u32 {
        row.checked_sub(self.base)
            .and_then(|i| self.codes.get(i))
            .copied()
            .unwrap_or(SKIPPED)
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

/// Decodes a label column chunk (an optional byte array column, at most one level) of
/// `rows` rows into codes. With `pages` (the chunk's page locations and the wanted rows, as
/// ascending ranges), pages holding no wanted row are skipped unread, their rows
/// [`SKIPPED`].
pub fn decode_label_column(
    path: &str,
    file: Arc<Ranges>,
    meta: &ColumnChunkMetaData,
    rows: usize,
    pages: Option<(Vec<PageLocation>, &[std::ops::Range<usize>])>,
) -> Result<CodedColumn, ParquetError> {
    let fmt = |e| ParquetError::format(path, e);
    let bad = |what: String| ParquetError::layout(path, format!("{}: {what}", meta.column_path()));
    let max_def = meta.column_descr().max_def_level();
    if max_def > 1 || meta.column_descr().max_rep_level() > 0 {
        return Err(bad(
            "a label column must be a flat optional or required value".into(),
        ));
    }
    let (locations, wanted) = match pages {
        Some((l, w)) => (Some(l), w),
        None => (None, &[][..]),
    };
    let skipping = locations.is_some();
    let mut pages = SerializedPageReader::new(file, meta, rows, locations).map_err(fmt)?;
    let mut out = CodedColumn {
        dict: Vec::new(),
        // The row count is the file's word: room grows with what the pages really hold.
        codes: Vec::with_capacity(rows.min(1 << 16)),
        base: 0,
    };
    // Rows passed so far, decoded or skipped; past the last wanted row, reading stops.
    let mut at = 0usize;
    let last_wanted = wanted.last().map(|w| w.end);
    // Codes of the current dictionary start here in `out.dict`.
    let mut dict_base: u32 = 0;
    let mut dict_len: u32 = 0;
    let mut levels = Vec::new();
    let mut values = Vec::new();
    loop {
        if skipping {
            let Some(pm) = pages.peek_next_page().map_err(fmt)? else {
                break;
            };
            if !pm.is_dict {
                if last_wanted.is_some_and(|end| at >= end) {
                    return Ok(out);
                }
                let n = pm.num_rows.unwrap_or(0).min(rows - at);
                if n > 0 && !wanted.iter().any(|w| w.start < at + n && at < w.end) {
                    pages.skip_next_page().map_err(fmt)?;
                    if out.codes.is_empty() {
                        out.base = at + n;
                    } else {
                        out.codes.extend(std::iter::repeat_n(SKIPPED, n));
                    }
                    at += n;
                    continue;
                }
            }
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
        let (buf, num_values, encoding, def_len) = match page {
            Page::DictionaryPage {
                buf, num_values, ..
            } => {
                dict_base = out.dict.len() as u32;
                let before = out.dict.len();
                plain_byte_arrays(&buf, num_values as usize, &mut out.dict).map_err(bad)?;
                dict_len = (out.dict.len() - before) as u32;
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
                    (buf, num_values, encoding, 0usize)
                } else {
                    let n = buf
                        .get(..4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                        .ok_or_else(|| bad("truncated definition levels".into()))?;
                    let levels_end = 4usize
                        .checked_add(n)
                        .filter(|&e| e <= buf.len())
                        .ok_or_else(|| bad("definition levels run past the page".into()))?;
                    decode_levels(&buf[4..levels_end], num_values as usize, &mut levels)
                        .map_err(bad)?;
                    (buf.slice(levels_end..), num_values, encoding, usize::MAX)
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
                if max_def > 0 {
                    decode_levels(&buf[rep..end], num_values as usize, &mut levels).map_err(bad)?;
                    (buf.slice(end..), num_values, encoding, usize::MAX)
                } else {
                    (buf.slice(end..), num_values, encoding, 0)
                }
            }
        };
        let n = num_values as usize;
        let present = if def_len == usize::MAX {
            levels.iter().filter(|&&l| l > 0).count()
        } else {
            n
        };
        values.clear();
        match encoding {
            Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => {
                let (&width, rest) = buf
                    .split_first()
                    .ok_or_else(|| bad("empty dictionary-coded page".into()))?;
                if width > 32 {
                    return Err(bad(format!("code width {width}")));
                }
                decode_hybrid(rest, u32::from(width), present, &mut values).map_err(bad)?;
                for v in values.iter_mut() {
                    if *v >= dict_len {
                        return Err(bad(format!(
                            "code {v} past the dictionary of {dict_len} values"
                        )));
                    }
                    *v += dict_base;
                }
            }
            Encoding::PLAIN => {
                let base = out.dict.len() as u32;
                plain_byte_arrays(&buf, present, &mut out.dict).map_err(bad)?;
                values.extend(base..base + present as u32);
            }
            other => {
                return Err(bad(format!(
                    "label values encoded as {other} are not read (dictionary or plain only)"
                )));
            }
        }
        if def_len == usize::MAX {
            let mut vi = values.iter();
            for &l in &levels {
                out.codes.push(if l > 0 {
                    *vi.next().unwrap_or(&NULL)
                } else {
                    NULL
                });
            }
        } else {
            out.codes.extend_from_slice(&values);
        }
        at = out.base + out.codes.len();
    }
    if at != rows {
        return Err(bad(format!("{at} values for a row group of {rows} rows")));
    }
    Ok(out)
}

/// Plain-encoded byte arrays (a 4-byte little-endian length before each), `n` of them.
fn plain_byte_arrays(buf: &Bytes, n: usize, out: &mut Vec<Bytes>) -> Result<(), String> {
    let mut at = 0usize;
    out.reserve(n.min(buf.len() / 4));
    for _ in 0..n {
        let len = buf
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or("truncated plain value")?;
        at += 4;
        let end = at
            .checked_add(len)
            .filter(|&e| e <= buf.len())
            .ok_or("plain value runs past the page")?;
        out.push(buf.slice(at..end));
        at = end;
    }
    Ok(())
}

/// Definition levels of a flat optional column (bit width 1), `n` of them.
fn decode_levels(buf: &[u8], n: usize, out: &mut Vec<u32>) -> Result<(), String> {
    out.clear();
    decode_hybrid(buf, 1, n, out)
}

/// Decodes `n` values of the RLE / bit-packing hybrid encoding at bit width `width`.
pub fn decode_hybrid(buf: &[u8], width: u32, n: usize, out: &mut Vec<u32>) -> Result<(), String> {
    let start = out.len();
    let target = start + n;
    let mut at = 0usize;
    let value_bytes = width.div_ceil(8) as usize;
    let mask: u64 = if width == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << width) - 1
    };
    while out.len() < target {
        let (header, k) =
            super::uvarint(buf.get(at..).unwrap_or(&[])).ok_or("truncated run header")?;
        at += k;
        if header & 1 == 0 {
            let count = (header >> 1) as usize;
            let raw = buf.get(at..at + value_bytes).ok_or("truncated run value")?;
            at += value_bytes;
            let mut v = 0u32;
            for (i, &b) in raw.iter().enumerate() {
                v |= u32::from(b) << (8 * i);
            }
            let take = count.min(target - out.len());
            out.extend(std::iter::repeat_n(v, take));
        } else {
            let groups = (header >> 1) as usize;
            let bytes = groups
                .checked_mul(width as usize)
                .ok_or("bit-packed run too long")?;
            let packed = buf.get(at..at + bytes).ok_or("truncated bit-packed run")?;
            at += bytes;
            let count = (groups * 8).min(target - out.len());
            let mut bit = 0usize;
            for _ in 0..count {
                let byte = bit / 8;
                let mut word = [0u8; 8];
                let avail = (packed.len() - byte).min(8);
                word[..avail].copy_from_slice(&packed[byte..byte + avail]);
                let v = (u64::from_le_bytes(word) >> (bit % 8)) & mask;
                out.push(v as u32);
                bit += width as usize;
            }
        }
    }
    Ok(())
}

/// Values of a flat required byte-array column chunk (a chunk or column-list column) at `rows`
/// (ascending) of its `total` rows, each a slice of its decompressed page: no value is copied.
/// Pages holding none of `rows` are skipped unread when `locations` (the offset index) says
/// where pages are. `None` when the chunk is not one this reads (levels, a dictionary, an
/// encoding other than plain or delta-length): the caller reads it with the library's
/// column reader instead.
pub fn byte_array_rows(
    path: &str,
    file: Arc<Ranges>,
    meta: &ColumnChunkMetaData,
    total: usize,
    locations: Option<Vec<PageLocation>>,
    rows: &[u32],
) -> Result<Option<Vec<Bytes>>, ParquetError> {
    let descr = meta.column_descr();
    if descr.max_def_level() > 0 || descr.max_rep_level() > 0 {
        return Ok(None);
    }
    let fmt = |e| ParquetError::format(path, e);
    let bad = |what: String| ParquetError::layout(path, format!("{}: {what}", meta.column_path()));
    let skipping = locations.is_some();
    let mut pages = SerializedPageReader::new(file, meta, total, locations).map_err(fmt)?;
    let mut out = Vec::with_capacity(rows.len());
    let mut vals: Vec<Bytes> = Vec::new();
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
            } => (buf, num_values as usize, encoding),
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let levels = (def_levels_byte_len as usize)
                    .checked_add(rep_levels_byte_len as usize)
                    .filter(|&e| e <= buf.len())
                    .ok_or_else(|| bad("levels run past the page".into()))?;
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
        vals.clear();
        match encoding {
            Encoding::PLAIN => plain_byte_arrays(&buf, n, &mut vals).map_err(bad)?,
            Encoding::DELTA_LENGTH_BYTE_ARRAY => {
                delta_length_byte_arrays(&buf, n, &mut vals).map_err(bad)?;
            }
            _ => return Ok(None),
        }
        while i < rows.len() && (rows[i] as usize) < end {
            out.push(vals[rows[i] as usize - at].clone());
            i += 1;
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

/// `DELTA_LENGTH_BYTE_ARRAY` values, `n` of them: their lengths delta-coded, then their bytes
/// one after another.
fn delta_length_byte_arrays(buf: &Bytes, n: usize, out: &mut Vec<Bytes>) -> Result<(), String> {
    let mut lengths = Vec::new();
    let mut at = delta_binary_packed(buf, n, &mut lengths)?;
    out.reserve(n);
    for &len in &lengths {
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| at.checked_add(l))
            .filter(|&e| e <= buf.len())
            .ok_or("a value runs past the page")?;
        out.push(buf.slice(at..end));
        at = end;
    }
    Ok(())
}

/// Decodes a `DELTA_BINARY_PACKED` run of `n` values into `out`; the bytes it took.
fn delta_binary_packed(buf: &[u8], n: usize, out: &mut Vec<i64>) -> Result<usize, String> {
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
    let total = n;
    out.clear();
    // Room for what the page's bytes can hold at a bit a value; runs of width 0 grow it.
    out.reserve(total.min(buf.len().saturating_mul(8) + 1));
    if total == 0 {
        return Ok(at);
    }
    out.push(first);
    let mut last = first;
    while out.len() < total {
        let (min_delta, k) =
            super::uvarint(buf.get(at..).unwrap_or(&[])).ok_or("truncated delta block")?;
        at += k;
        let min_delta = super::unzigzag(min_delta);
        let widths = buf.get(at..at + minis).ok_or("truncated delta widths")?;
        at += minis;
        for &w in widths {
            if out.len() >= total {
                break;
            }
            let w = usize::from(w);
            if w > 64 {
                return Err(format!("delta width {w}"));
            }
            let bytes = per_mini * w / 8;
            let packed = buf.get(at..at + bytes).ok_or("truncated miniblock")?;
            at += bytes;
            let take = per_mini.min(total - out.len());
            for k in 0..take {
                let bit = k * w;
                let mut word = [0u8; 16];
                let from = bit / 8;
                let avail = (packed.len() - from.min(packed.len())).min(16);
                word[..avail].copy_from_slice(&packed[from..from + avail]);
                let v = (u128::from_le_bytes(word) >> (bit % 8)) as u64;
                let v = if w == 64 { v } else { v & ((1u64 << w) - 1) };
                last = last.wrapping_add(min_delta).wrapping_add(v as i64);
                out.push(last);
            }
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::{delta_binary_packed, delta_length_byte_arrays};

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
        assert_eq!(delta_binary_packed(&run, 41, &mut out), Ok(run.len()));
        assert_eq!(out, want);
        // One value: the header alone.
        let one = packed(-3, 0, 0, &[]);
        assert_eq!(delta_binary_packed(&one, 1, &mut out), Ok(one.len()));
        assert_eq!(out, vec![-3]);

        // A count other than the page's, a truncated miniblock, widths past 64, a block size
        // not a multiple of 128, and a header cut short are each an error.
        assert!(delta_binary_packed(&run, 40, &mut out).is_err());
        assert!(delta_binary_packed(&run[..run.len() - 1], 41, &mut out).is_err());
        let wide = packed(0, 0, 65, &[1]);
        assert!(delta_binary_packed(&wide, 2, &mut out).is_err());
        let mut odd = Vec::new();
        for v in [100, 4, 2, 0] {
            uvarint(&mut odd, v);
        }
        assert!(delta_binary_packed(&odd, 2, &mut out).is_err());
        assert!(delta_binary_packed(&run[..2], 41, &mut out).is_err());

        // Delta-length values: the lengths, then the bytes; a negative length or one past
        // the page is refused.
        let mut page = packed(2, 1, 1, &[0]);
        page.extend_from_slice(b"abxyz");
        let mut vals = Vec::new();
        delta_length_byte_arrays(&Bytes::from(page.clone()), 2, &mut vals).unwrap();
        assert_eq!(
            vals,
            vec![Bytes::from_static(b"ab"), Bytes::from_static(b"xyz")]
        );
        page.pop();
        assert!(delta_length_byte_arrays(&Bytes::from(page), 2, &mut vals).is_err());
        let mut negative = packed(-1, 0, 0, &[]);
        negative.extend_from_slice(b"a");
        assert!(delta_length_byte_arrays(&Bytes::from(negative), 1, &mut vals).is_err());
    }
}
