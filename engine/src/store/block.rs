//! A block served from the bucket: its meta.json, its index-header on local disk, the sizes of
//! its chunk segments, and the ranged reads of postings, series entries and chunks, done on
//! the engine core that owns the block (its cache, its ring).

use std::collections::HashMap;
use std::ops::Range;

use bytes::Bytes;

use super::core::{StoreCore, read_range, read_ranges};
use super::header::IndexHeader;
use super::{CacheKey, StoreError};
use crate::block::segment::{SEGMENT_HEADER_SIZE, split_ref};
use crate::block::{BlockMeta, LabelFilter, RecordRead, read_chunk_record};
use crate::index::{ChunkMeta, IndexError, PostingsPlan};
use crate::labels::Labels;
use crate::shard::Core;

/// First guess of a series entry's size when the meta gives none, bytes.
const SERIES_GUESS: u64 = 1024;
/// First guess of a chunk record's size when the meta gives none, bytes.
const CHUNK_GUESS: u64 = 2048;
/// First guess of a postings list's size when the table order gives no bound, bytes.
const POSTINGS_GUESS: u64 = 64 * 1024;

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
        let ext_labels = Labels::from_pairs(
            meta.thanos
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default(),
        );
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
        self.meta
            .thanos
            .as_ref()
            .map_or(0, |t| t.downsample.resolution)
    }

    fn index_path(&self) -> String {
        format!("{}/index", self.id)
    }

    fn stat(&self, f: impl Fn(&crate::block::IndexStats) -> i64, default: u64) -> u64 {
        self.meta
            .thanos
            .as_ref()
            .and_then(|t| t.index_stats.as_ref())
            .map(f)
            .filter(|&v| v > 0)
            .map_or(default, |v| v as u64)
    }

    /// Reads the postings lists `plan` needs (from the owner's cache or in one coalesced batch
    /// of ranged reads) and combines them into the selected series refs.
    pub async fn postings(
        &self,
        core: &Core<StoreCore>,
        plan: &PostingsPlan,
    ) -> Result<Vec<u32>, StoreError> {
        if plan.empty {
            return Ok(Vec::new());
        }
        let st = core.state();
        let mut want: Vec<u64> = plan.offsets().collect();
        want.sort_unstable();
        want.dedup();
        let mut lists: HashMap<u64, Bytes> = HashMap::with_capacity(want.len());
        let mut missing = Vec::new();
        for &off in &want {
            match st.cache_get(&CacheKey::Postings(self.meta.ulid, off)) {
                Some(b) => {
                    lists.insert(off, b);
                }
                None => missing.push(off),
            }
        }
        let ranges: Vec<Range<u64>> = missing
            .iter()
            .map(|&off| self.header.postings_range(off, POSTINGS_GUESS))
            .collect();
        let path = self.index_path();
        let got = read_ranges(core, &path, &ranges).await?;
        for (off, mut b) in missing.iter().zip(got) {
            let need = 8 + u64::from(u32::from_be_bytes(frame_len(&b)));
            if need > b.len() as u64 {
                if off + need > self.header.index_size() {
                    return Err(IndexError::PastEnd {
                        path: path.clone().into(),
                        section: "postings",
                        offset: *off,
                        len: need,
                        limit: self.header.index_size(),
                    }
                    .into());
                }
                b = read_range(core, &path, *off..off + need).await?;
            }
            let b = b.slice(..need as usize);
            st.cache_put(CacheKey::Postings(self.meta.ulid, *off), &b);
            lists.insert(*off, b);
        }
        let reader = self.header.reader();
        Ok(plan.execute(|off, out| match lists.get(&off) {
            Some(b) => reader.decode_postings(b, off, out),
            None => Err(IndexError::Corrupt {
                path: path.clone().into(),
                section: "postings",
                offset: off,
                reason: "postings list was not fetched".into(),
            }),
        })?)
    }

    /// Reads the series entries of `refs` (ascending), each complete (length, body, CRC),
    /// from the owner's cache or by coalesced ranged reads; with `cache`, entries read are
    /// cached.
    pub async fn series_entries(
        &self,
        core: &Core<StoreCore>,
        refs: &[u32],
        cache: bool,
    ) -> Result<Vec<Bytes>, StoreError> {
        let st = core.state();
        let guess = self.stat(|s| s.series_max_size, SERIES_GUESS);
        let end = self.header.series_end();
        let mut entries: Vec<Bytes> = Vec::with_capacity(refs.len());
        let mut ranges = Vec::new();
        let mut missing = Vec::new();
        for (i, &r) in refs.iter().enumerate() {
            let hit = if cache {
                st.cache_get(&CacheKey::Series(self.meta.ulid, r))
            } else {
                None
            };
            match hit {
                Some(b) => entries.push(b),
                None => {
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
                    entries.push(Bytes::new());
                }
            }
        }
        let path = self.index_path();
        let got = read_ranges(core, &path, &ranges).await?;
        for ((&i, range), mut b) in missing.iter().zip(&ranges).zip(got) {
            let off = range.start;
            let need = match entry_len(&b) {
                Some(n) if n <= b.len() => n,
                want => {
                    // The guess was short (or the length varint was cut): read exactly.
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
                    b = read_range(core, &path, off..off + need).await?;
                    match entry_len(&b) {
                        Some(n) if n <= b.len() => n,
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
                }
            };
            let b = b.slice(..need);
            if cache {
                st.cache_put(CacheKey::Series(self.meta.ulid, refs[i]), &b);
            }
            entries[i] = b;
        }
        Ok(entries)
    }

    /// Reads the chunks `metas` name, in order, as raw chunks (CRC checked), in coalesced
    /// ranged reads per segment.
    pub async fn chunks(
        &self,
        core: &Core<StoreCore>,
        metas: &[ChunkMeta],
    ) -> Result<Vec<RawChunk>, StoreError> {
        let guess = self.stat(|s| s.chunk_max_size, CHUNK_GUESS);
        // Reads in file order; a chunk's read ends at the next chunk's start when that is
        // nearer than the guess (chunks of a segment are contiguous records).
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
        order.sort_unstable();
        let mut out: Vec<Option<RawChunk>> = vec![None; metas.len()];
        let mut at = 0;
        while at < order.len() {
            let seg = order[at].0;
            let n = order[at..].partition_point(|o| o.0 == seg);
            let group = &order[at..at + n];
            at += n;
            let size = self.segments[seg as usize];
            let ranges: Vec<Range<u64>> = group
                .iter()
                .enumerate()
                .map(|(j, &(_, off, _))| {
                    let mut end = (off + guess).min(size);
                    if let Some(&(_, next, _)) = group.get(j + 1)
                        && next > off
                    {
                        end = end.min(next);
                    }
                    off..end
                })
                .collect();
            let path = self.segment_path(seg);
            let got = read_ranges(core, &path, &ranges).await?;
            let ppath = std::path::PathBuf::from(&path);
            for ((&(_, off, i), range), b) in group.iter().zip(&ranges).zip(got) {
                let mut buf = b;
                let rec = match read_chunk_record(&buf, off, &ppath)? {
                    RecordRead::NeedBytes(need) => {
                        let end = off + need;
                        if end > size {
                            return Err(StoreError::Block(
                                crate::block::BlockError::ChunkOutOfBounds {
                                    path: ppath,
                                    chunk_ref: metas[i].chunk_ref,
                                    offset: off,
                                    file_len: size,
                                },
                            ));
                        }
                        buf = read_range(core, &path, range.start..end).await?;
                        read_chunk_record(&buf, off, &ppath)?
                    }
                    r => r,
                };
                let RecordRead::Chunk { encoding, data } = rec else {
                    return Err(StoreError::Block(
                        crate::block::BlockError::ChunkOutOfBounds {
                            path: ppath,
                            chunk_ref: metas[i].chunk_ref,
                            offset: off,
                            file_len: size,
                        },
                    ));
                };
                let start = data.as_ptr() as usize - buf.as_ptr() as usize;
                out[i] = Some(RawChunk {
                    min_time: metas[i].min_time,
                    max_time: metas[i].max_time,
                    encoding,
                    data: buf.slice(start..start + data.len()),
                });
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn segment_path(&self, seg: u32) -> String {
        format!("{}/chunks/{:06}", self.id, seg + 1)
    }
}

/// The BE32 length prefix at the start of a framed section (zeros if too short).
fn frame_len(b: &[u8]) -> [u8; 4] {
    match b.get(..4) {
        Some(s) => [s[0], s[1], s[2], s[3]],
        None => [0; 4],
    }
}

/// Bytes taken by the series entry at the start of `b` (varint length, body, CRC); `None`
/// when the length varint is cut short.
fn entry_len(b: &[u8]) -> Option<usize> {
    match crate::encoding::read_uvarint(b) {
        Ok((len, n)) => usize::try_from(n as u64 + len.min(u32::MAX as u64) + 4).ok(),
        Err(_) => None,
    }
}

/// The engine core owning block `id` among `cores`: a hash of the ULID, so the owner stays
/// the same across syncs and restarts.
pub(super) fn owner_of(id: ulid::Ulid, cores: usize) -> usize {
    (xxhash_rust::xxh64::xxh64(&id.to_bytes(), 0) % cores.max(1) as u64) as usize
}
