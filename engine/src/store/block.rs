//! A block served from the bucket: its meta.json, its index-header on local disk, the sizes of
//! its chunk segments, and the ranged reads of postings, series entries and chunks, done on
//! the engine core that owns the block (its cache, its ring).

use bytes::Bytes;

use super::core::{StoreCore, fetch, fetch_pages, read_range};
use super::entry::entry_len;
use super::header::IndexHeader;
use super::{CacheKey, StoreError};
use crate::block::BlockMeta;
use crate::block::LabelFilter;
use crate::block::segment::{SEGMENT_HEADER_SIZE, split_ref};
use crate::index::{ChunkMeta, IndexError};
use crate::labels::Labels;
use crate::shard::Core;

/// First guess of a series entry's size when the meta gives none, bytes.
const SERIES_GUESS: u64 = 1024;
/// First guess of a chunk record's size when the meta gives none, bytes.
const CHUNK_GUESS: u64 = 2048;

/// A raw chunk as served on the wire: its time range and XOR payload.
#[derive(Debug, Clone, PartialEq)]
pub struct RawChunk {
    /// First sample's timestamp, ms.
    pub min_time: i64,
    /// Last sample's timestamp, ms (inclusive).
    pub max_time: i64,
    /// TSDB chunk encoding byte (1 = XOR).
    pub encoding: u8,
    /// The payload, starting with the 2-byte sample count.
    pub data: Bytes,
}

/// A block loaded from the bucket.
#[derive(Debug)]
pub struct BucketBlock {
    /// meta.json.
    pub meta: BlockMeta,
    /// External labels from the Thanos section, sorted.
    pub ext_labels: Labels,
    /// The index-header.
    pub header: IndexHeader,
    /// Sizes of `chunks/000001`... in order, bytes.
    pub segments: Vec<u64>,
    id: String,
    /// The engine core that owns the block: reads it and caches its postings and series.
    owner: usize,
    label_filter: Option<LabelFilter>,
}

impl BucketBlock {
    pub(super) fn new(
        meta: BlockMeta,
        header: IndexHeader,
        segments: Vec<u64>,
        cores: usize,
    ) -> Self {
        let ext_labels = meta.external_labels();
        BucketBlock {
            id: meta.ulid.to_string(),
            owner: owner_of(meta.ulid, cores),
            meta,
            ext_labels,
            header,
            segments,
            label_filter: None,
        }
    }

    /// The engine core that owns this block.
    pub fn owner(&self) -> usize {
        self.owner
    }

    /// The block with its label filter (see [`LabelFilter`]).
    pub(super) fn with_label_filter(mut self, f: Option<LabelFilter>) -> Self {
        self.label_filter = f;
        self
    }

    /// The block's label filter, when one could be built.
    pub fn label_filter(&self) -> Option<&LabelFilter> {
        self.label_filter.as_ref()
    }

    /// The block's ULID as a string.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Downsampling resolution, ms (0 = raw).
    pub fn resolution(&self) -> i64 {
        self.meta.resolution()
    }

    pub(super) fn index_path(&self) -> String {
        format!("{}/index", self.id)
    }

    pub(super) fn stat(&self, f: impl Fn(&crate::block::IndexStats) -> i64, default: u64) -> u64 {
        self.meta
            .thanos
            .as_ref()
            .and_then(|t| t.index_stats.as_ref())
            .map(f)
            .filter(|&v| v > 0)
            .map_or(default, |v| v as u64)
    }

    /// Reads the series entries of `refs` (ascending), each complete (length, body, CRC),
    /// from the owner's cache or by coalesced ranged reads; with `cache`, entries read are
    /// cached.
    pub(super) async fn series_entries(
        &self,
        core: &Core<StoreCore>,
        refs: &[u32],
        cache: bool,
    ) -> Result<Entries, StoreError> {
        let st = core.state();
        let guess = self.stat(|s| s.series_max_size, SERIES_GUESS);
        let end = self.header.series_end();
        let mut out = Entries {
            bufs: Vec::new(),
            at: vec![(0, 0, 0); refs.len()],
        };
        let mut hits = Vec::new();
        let mut ranges = Vec::with_capacity(refs.len());
        let mut missing = Vec::with_capacity(refs.len());
        for (i, &r) in refs.iter().enumerate() {
            if cache && let Some(b) = st.cache_get(&CacheKey::Series(self.meta.ulid, r)) {
                hits.push((i, b));
                continue;
            }
            let off = u64::from(r) * 16;
            if off >= end {
                return Err(IndexError::SeriesRefOutOfRange {
                    path: self.index_path().into(),
                    series_ref: r,
                    offset: off,
                    start: 0,
                    end,
                }
                .into());
            }
            ranges.push(off..(off + guess).min(end));
            missing.push(i);
        }
        let path = self.index_path();
        let fetched = fetch(core, &path, &ranges).await?;
        let mut walk = fetched.walker();
        let mut extra = Vec::new();
        for (&i, range) in missing.iter().zip(&ranges) {
            let off = range.start;
            let (buf, start, have) = walk.at(off).unwrap_or((usize::MAX, 0, &[]));
            let need = match entry_len(have) {
                Some(n) if n <= have.len() => n,
                want => {
                    // The read ended inside the entry: read exactly what it needs.
                    let need = want.map_or(14, |n| n as u64);
                    if off + need > end {
                        return Err(IndexError::PastEnd {
                            path: path.clone().into(),
                            section: "series",
                            offset: off,
                            len: need,
                            limit: end,
                        }
                        .into());
                    }
                    let b = read_range(core, &path, off..off + need).await?;
                    match entry_len(&b) {
                        Some(n) if n <= b.len() => extra.push((i, b.slice(..n))),
                        _ => {
                            return Err(IndexError::Corrupt {
                                path: path.clone().into(),
                                section: "series",
                                offset: off,
                                reason: "entry length changed between reads".into(),
                            }
                            .into());
                        }
                    }
                    continue;
                }
            };
            if cache {
                st.cache_put(CacheKey::Series(self.meta.ulid, refs[i]), &have[..need]);
            }
            out.at[i] = (buf as u32, start as u32, need as u32);
        }
        out.bufs = fetched.bufs;
        for (i, b) in hits.into_iter().chain(extra) {
            if cache {
                st.cache_put(CacheKey::Series(self.meta.ulid, refs[i]), &b);
            }
            out.at[i] = (out.bufs.len() as u32, 0, b.len() as u32);
            out.bufs.push(b);
        }
        Ok(out)
    }

    /// Reads the chunks `metas` name (CRC checked), in coalesced ranged reads per segment, or
    /// with `cache` through the core's chunk page cache; returns the buffers read and where
    /// each chunk's payload lies in them, in the order of `metas`.
    pub(super) async fn chunks(
        &self,
        core: &Core<StoreCore>,
        metas: &[ChunkMeta],
        cache: bool,
    ) -> Result<ChunkData, StoreError> {
        let guess = self.stat(|s| s.chunk_max_size, CHUNK_GUESS);
        // Reads in file order (the order chunks of a batch are normally asked in); a chunk's
        // read ends at the next chunk's start when that is nearer than the guess (chunks of a
        // segment are contiguous records).
        let mut order: Vec<(u32, u64, usize)> = Vec::with_capacity(metas.len());
        for (i, c) in metas.iter().enumerate() {
            let (seg, off) = split_ref(c.chunk_ref);
            let size = *self.segments.get(seg as usize).ok_or_else(|| {
                StoreError::Block(crate::block::BlockError::SegmentMissing {
                    dir: self.id.clone().into(),
                    chunk_ref: c.chunk_ref,
                    segment: u64::from(seg),
                    num_segments: self.segments.len(),
                })
            })?;
            let off = u64::from(off);
            if off < SEGMENT_HEADER_SIZE as u64 || off >= size {
                return Err(StoreError::Block(
                    crate::block::BlockError::ChunkOutOfBounds {
                        path: self.segment_path(seg).into(),
                        chunk_ref: c.chunk_ref,
                        offset: off,
                        file_len: size,
                    },
                ));
            }
            order.push((seg, off, i));
        }
        if !order.is_sorted() {
            order.sort_unstable();
        }
        let mut out = ChunkData {
            bufs: Vec::new(),
            at: vec![(0, 0, 0, 0); metas.len()],
        };
        let mut at = 0;
        let mut ranges = Vec::new();
        while at < order.len() {
            let seg = order[at].0;
            let n = order[at..].partition_point(|o| o.0 == seg);
            let group = &order[at..at + n];
            at += n;
            let size = self.segments[seg as usize];
            ranges.clear();
            ranges.extend(group.iter().enumerate().map(|(j, &(_, off, _))| {
                let mut end = (off + guess).min(size);
                if let Some(&(_, next, _)) = group.get(j + 1)
                    && next > off
                {
                    end = end.min(next);
                }
                off..end
            }));
            let path = self.segment_path(seg);
            let fetched = if cache {
                fetch_pages(core, (self.meta.ulid, seg, &path), size, &ranges).await?
            } else {
                fetch(core, &path, &ranges).await?
            };
            let mut walk = fetched.walker();
            let base = out.bufs.len();
            let mut extra = Vec::new();
            for &(_, off, i) in group {
                let (buf, start, have) = walk.at(off).unwrap_or((usize::MAX, 0, &[]));
                match parse_record(have, off, &path)? {
                    Ok((encoding, s, len)) => {
                        out.at[i] = (
                            (base + buf) as u32,
                            (start + s) as u32,
                            len as u32,
                            encoding,
                        );
                    }
                    Err(mut need) => {
                        let out_of_bounds = || {
                            StoreError::Block(crate::block::BlockError::ChunkOutOfBounds {
                                path: path.clone().into(),
                                chunk_ref: metas[i].chunk_ref,
                                offset: off,
                                file_len: size,
                            })
                        };
                        // The record runs past what was read (or its length field does):
                        // take it from the neighbouring page, else read it, until it parses.
                        loop {
                            if off + need > size {
                                return Err(out_of_bounds());
                            }
                            let b = match fetched.join(off, need) {
                                Some(b) => b,
                                None => read_range(core, &path, off..off + need).await?,
                            };
                            match parse_record(&b, off, &path)? {
                                Ok((encoding, s, len)) => {
                                    extra.push((i, b, s, len, encoding));
                                    break;
                                }
                                Err(more) if more > need => need = more,
                                Err(_) => return Err(out_of_bounds()),
                            }
                        }
                    }
                }
            }
            out.bufs.extend(fetched.bufs);
            for (i, b, s, len, enc) in extra {
                out.at[i] = (out.bufs.len() as u32, s as u32, len as u32, enc);
                out.bufs.push(b);
            }
        }
        Ok(out)
    }

    fn segment_path(&self, seg: u32) -> String {
        format!("{}/chunks/{:06}", self.id, seg + 1)
    }
}

/// Parses the chunk record at the start of `have`, read from offset `off` of segment `path`:
/// `uvarint len`, encoding byte, `len` bytes of payload, `BE32` CRC-32C of encoding and payload.
/// Gives the encoding and the payload's start and length in `have`, or `Err(n)` when `have`
/// ends inside the record, which needs `n` bytes.
#[inline(always)]
fn parse_record(
    have: &[u8],
    off: u64,
    path: &str,
) -> Result<Result<(u8, usize, usize), u64>, StoreError> {
    let Ok((len, n)) = crate::encoding::read_uvarint(have) else {
        if have.len() < MAX_LEN_FIELD {
            return Ok(Err(MAX_LEN_FIELD as u64 + 5));
        }
        return Err(bad_record(path, off));
    };
    if n > MAX_LEN_FIELD {
        return Err(bad_record(path, off));
    }
    let need = n as u64 + 1 + len + 4;
    if need > have.len() as u64 {
        return Ok(Err(need));
    }
    let len = len as usize;
    let c = &have[n + 1 + len..n + 5 + len];
    let expected = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
    let actual = crate::encoding::crc32c(&have[n..n + 1 + len]);
    if expected != actual {
        return Err(StoreError::Block(crate::block::BlockError::CrcMismatch {
            path: path.into(),
            offset: off,
            expected,
            actual,
        }));
    }
    Ok(Ok((have[n], n + 1, len)))
}

/// Most bytes of a chunk record's length field.
const MAX_LEN_FIELD: usize = 5;

fn bad_record(path: &str, off: u64) -> StoreError {
    StoreError::Block(crate::block::BlockError::decode(
        std::path::Path::new(path),
        crate::encoding::DecodeError::Varint { offset: off },
    ))
}

/// Series entries read for a batch: the buffers read and, per entry, (buffer, start, length).
#[derive(Debug)]
pub(super) struct Entries {
    bufs: Vec<Bytes>,
    at: Vec<(u32, u32, u32)>,
}

impl Entries {
    /// The bytes of entry `i` (varint length, body, CRC).
    pub(super) fn get(&self, i: usize) -> &[u8] {
        let (b, s, n) = self.at[i];
        &self.bufs[b as usize][s as usize..(s + n) as usize]
    }
}

/// Chunks read for a batch: the buffers read and, per chunk, (buffer, payload start, payload
/// length, encoding).
#[derive(Debug)]
pub(super) struct ChunkData {
    pub(super) bufs: Vec<Bytes>,
    pub(super) at: Vec<(u32, u32, u32, u8)>,
}

/// The engine core owning block `id` among `cores`: a hash of the ULID, so the owner stays
/// the same across syncs and restarts.
pub(super) fn owner_of(id: ulid::Ulid, cores: usize) -> usize {
    (xxhash_rust::xxh64::xxh64(&id.to_bytes(), 0) % cores.max(1) as u64) as usize
}
