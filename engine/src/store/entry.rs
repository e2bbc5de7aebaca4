//! Decoding a series entry of the index (as read from the bucket) into what the store streams:
//! the symbol references of its labels and the metas of its chunks in the requested time
//! range. The layout is the index's (`index/FORMAT.md`); this is the store's hot loop, so the
//! varints are read with the encoding module's short-varint fast paths and nothing is
//! allocated.

use std::path::Path;

use crate::encoding::{read_uvarint, read_uvarint32, zigzag_decode};
use crate::index::{ChunkMeta, IndexError, series_entry};

/// A cursor over an entry body; every read is bounds-checked and fails with the offset.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn uvarint(&mut self) -> Option<u64> {
        let (v, n) = read_uvarint(self.buf.get(self.pos..)?).ok()?;
        self.pos += n;
        Some(v)
    }

    #[inline(always)]
    fn uvarint32(&mut self) -> Option<u32> {
        varint32(self.buf, &mut self.pos)
    }
}

/// What an entry decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Labels appended.
    pub labels: usize,
    /// Chunks of the series (in any time range).
    pub chunks: usize,
    /// Chunks appended (those overlapping the range).
    pub kept: usize,
}

/// Decodes the series entry `buf` (varint length, body, CRC) read from index offset `base`:
/// checks its CRC, appends its labels' (name, value) symbol references (each below
/// `num_symbols`) to `labels`, and the metas of its chunks overlapping `[mint, maxt]` to
/// `chunks`. `path` names the index in errors.
pub fn decode_entry(
    buf: &[u8],
    base: u64,
    num_symbols: u32,
    (mint, maxt): (i64, i64),
    path: &str,
    labels: &mut Vec<(u32, u32)>,
    chunks: &mut Vec<ChunkMeta>,
) -> Result<Decoded, IndexError> {
    let corrupt = |at: usize, reason: &str| IndexError::Corrupt {
        path: path.into(),
        section: "series",
        offset: base + at as u64,
        reason: reason.to_string(),
    };
    let (body, body_at) = match series_entry(buf, base, Path::new(path))? {
        Ok(entry) => entry,
        Err(need) => {
            return Err(IndexError::PastEnd {
                path: path.into(),
                section: "series",
                offset: base,
                len: need,
                limit: base + buf.len() as u64,
            });
        }
    };
    let (l0, c0) = (labels.len(), chunks.len());
    if let Some(d) = decode_body(body, num_symbols, (mint, maxt), labels, chunks) {
        return Ok(d);
    }
    // Something is wrong with the entry: decoded again, step by step, for the error.
    labels.truncate(l0);
    chunks.truncate(c0);
    let mut c = Cursor { buf: body, pos: 0 };
    let at = |c: &Cursor<'_>| body_at + c.pos;
    let n = c
        .uvarint()
        .ok_or_else(|| corrupt(at(&c), "bad label count"))?;
    // Each label takes at least two bytes: bound the loop by the bytes present.
    if n > body.len() as u64 / 2 {
        return Err(corrupt(body_at, "more labels than the entry can hold"));
    }
    let first = labels.len();
    for _ in 0..n {
        let here = at(&c);
        let (Some(nr), Some(vr)) = (c.uvarint32(), c.uvarint32()) else {
            return Err(corrupt(here, "bad label reference"));
        };
        if nr >= num_symbols || vr >= num_symbols {
            return Err(IndexError::SymbolOutOfRange {
                path: path.into(),
                symbol: nr.max(vr),
                offset: base + here as u64,
                limit: u64::from(num_symbols),
            });
        }
        labels.push((nr, vr));
    }
    let bad = |c: &Cursor<'_>| corrupt(at(c), "bad chunk meta");
    let num_chunks = c.uvarint().ok_or_else(|| bad(&c))?;
    // Each chunk meta takes at least three bytes.
    if num_chunks > (body.len() - c.pos) as u64 / 3 {
        return Err(corrupt(at(&c), "more chunks than the entry can hold"));
    }
    let kept = chunk_metas(num_chunks, (mint, maxt), chunks, &mut c).ok_or_else(|| bad(&c))?;
    Ok(Decoded {
        labels: labels.len() - first,
        chunks: num_chunks as usize,
        kept,
    })
}

/// A `u32` varint at `b[*pos..]`, advancing `pos`.
#[inline(always)]
fn varint32(b: &[u8], pos: &mut usize) -> Option<u32> {
    let (v, n) = read_uvarint32(b.get(*pos..)?).ok()?;
    *pos += n;
    Some(v)
}

/// A `u64` varint at `b[*pos..]`, advancing `pos`.
#[inline(always)]
fn varint64(b: &[u8], pos: &mut usize) -> Option<u64> {
    let (v, n) = read_uvarint(b.get(*pos..)?).ok()?;
    *pos += n;
    Some(v)
}

/// The entry body decoded as [`decode_entry`] does, when it is well formed; `None` on any
/// fault (the caller decodes it again for the error), with whatever was appended left for
/// the caller to cut.
#[inline]
fn decode_body(
    body: &[u8],
    num_symbols: u32,
    (mint, maxt): (i64, i64),
    labels: &mut Vec<(u32, u32)>,
    chunks: &mut Vec<ChunkMeta>,
) -> Option<Decoded> {
    let mut p = 0;
    let n = usize::try_from(varint64(body, &mut p)?).ok()?;
    if n > body.len() / 2 {
        return None;
    }
    labels.reserve(n);
    let mut top = 0;
    for _ in 0..n {
        let name = varint32(body, &mut p)?;
        let value = varint32(body, &mut p)?;
        top = top.max(name).max(value);
        labels.push((name, value));
    }
    if n > 0 && top >= num_symbols {
        return None;
    }
    let num_chunks = varint64(body, &mut p)?;
    if num_chunks > (body.len() - p) as u64 / 3 {
        return None;
    }
    let mut c = Cursor { buf: body, pos: p };
    let kept = chunk_metas(num_chunks, (mint, maxt), chunks, &mut c)?;
    Some(Decoded {
        labels: n,
        chunks: num_chunks as usize,
        kept,
    })
}

/// Reads `num_chunks` chunk metas (the first as absolute values, the rest as deltas) from
/// `c`, a cursor over the entry body, and appends those overlapping `mint..=maxt`;
/// the number appended, or `None` when a varint is cut short. Deltas wrap as in Go: a hostile
/// file decodes to garbage, never to a panic.
#[inline(always)]
fn chunk_metas(
    num_chunks: u64,
    (mint, maxt): (i64, i64),
    chunks: &mut Vec<ChunkMeta>,
    c: &mut Cursor<'_>,
) -> Option<usize> {
    let mut kept = 0;
    if num_chunks == 0 {
        return Some(kept);
    }
    let mut min = zigzag_decode(c.uvarint()?);
    let mut max_time = min.wrapping_add(c.uvarint()? as i64);
    let mut chunk_ref = c.uvarint()?;
    for k in 0..num_chunks {
        if k > 0 {
            min = max_time.wrapping_add(c.uvarint()? as i64);
            max_time = min.wrapping_add(c.uvarint()? as i64);
            chunk_ref = chunk_ref.wrapping_add(zigzag_decode(c.uvarint()?) as u64);
        }
        if min > maxt {
            // Chunks are sorted by time: the rest are later still.
            break;
        }
        if max_time >= mint {
            chunks.push(ChunkMeta {
                min_time: min,
                max_time,
                chunk_ref,
            });
            kept += 1;
        }
    }
    Some(kept)
}

/// Bytes taken by the series entry at the start of `b` (varint length, body, CRC); `None`
/// when the length varint is cut short.
pub fn entry_len(b: &[u8]) -> Option<usize> {
    let mut c = Cursor { buf: b, pos: 0 };
    let len = c.uvarint()?;
    usize::try_from(c.pos as u64 + len.min(u64::from(u32::MAX)) + 4).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexReader, IndexWriter};
    use crate::labels::Labels;

    #[test]
    fn hostile_entry_lengths_are_errors() {
        let mut buf = Vec::new();
        for len in [u64::MAX, u64::MAX - 3, 1 << 40, 100] {
            buf.clear();
            crate::encoding::put_uvarint(&mut buf, len);
            buf.extend_from_slice(&[0; 16]);
            let (mut labels, mut chunks) = (Vec::new(), Vec::new());
            let got = decode_entry(&buf, 16, 10, (0, 1), "x", &mut labels, &mut chunks);
            assert!(
                matches!(got, Err(IndexError::PastEnd { .. })),
                "{len}: {got:?}"
            );
        }
    }

    #[test]
    fn entries_decode_as_the_index_reader_does() {
        let mut w = IndexWriter::in_memory();
        w.add_symbols(["__name__", "a", "b", "m", "x"]).unwrap();
        let metas: Vec<ChunkMeta> = (0..5)
            .map(|i| ChunkMeta {
                min_time: i * 100 - 150,
                max_time: i * 100 - 60,
                chunk_ref: 8 + 300 * i as u64,
            })
            .collect();
        w.add_series(&Labels::from_pairs([("__name__", "m"), ("a", "x")]), &metas)
            .unwrap();
        w.add_series(&Labels::from_pairs([("__name__", "m"), ("b", "x")]), &[])
            .unwrap();
        let bytes = w.finish_to_vec().unwrap();
        let ix = IndexReader::from_bytes(bytes.clone(), "i".into()).unwrap();
        let mut all = Vec::new();
        ix.all_postings(&mut all).unwrap();
        let off = u64::from(all[0]) * 16;
        let entry = &bytes[off as usize..];
        let n = entry_len(entry).unwrap();
        let (mut lr, mut cm) = (Vec::new(), Vec::new());
        let d = decode_entry(&entry[..n], off, 5, (-1000, 1000), "i", &mut lr, &mut cm).unwrap();
        assert_eq!((d.labels, d.chunks, d.kept), (2, 5, 5));
        let (mut want_l, mut want_c) = (Vec::new(), Vec::new());
        ix.decode_series_entry_refs(&entry[..n], off, &mut want_l, &mut want_c)
            .unwrap();
        assert_eq!((lr.clone(), cm.clone()), (want_l, want_c.clone()));
        // A time range keeps the overlapping chunks only.
        cm.clear();
        let d = decode_entry(&entry[..n], off, 5, (0, 100), "i", &mut lr, &mut cm).unwrap();
        assert_eq!(d.kept, 2);
        assert_eq!(cm, want_c[1..3]);
        // Truncation, a flipped bit and a short symbol table are errors, not panics.
        assert!(decode_entry(&entry[..n - 1], off, 5, (0, 1), "i", &mut lr, &mut cm).is_err());
        let mut bad = entry[..n].to_vec();
        bad[2] ^= 1;
        assert!(matches!(
            decode_entry(&bad, off, 5, (0, 1), "i", &mut lr, &mut cm),
            Err(IndexError::Crc { .. })
        ));
        assert!(matches!(
            decode_entry(&entry[..n], off, 2, (0, 1), "i", &mut lr, &mut cm),
            Err(IndexError::SymbolOutOfRange { .. })
        ));
        for cut in 0..n {
            let _ = entry_len(&entry[..cut]);
            let _ = decode_entry(&entry[..cut], off, 5, (0, 1), "i", &mut lr, &mut cm);
        }
    }
}
