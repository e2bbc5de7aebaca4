//! A block served from the bucket: its meta.json, its index-header on local disk, the sizes of
//! its chunk segments, and the ranged reads of postings, series entries and chunks.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::header::IndexHeader;
use super::{CacheKey, StoreError};
use crate::block::segment::{SEGMENT_HEADER_SIZE, split_ref};
use crate::block::{BlockMeta, LabelFilter, RecordRead, read_chunk_record};
use crate::bucket::{Bucket, ByteCache};
use crate::index::{ChunkMeta, IndexError, PostingsPlan};
use crate::labels::{Label, Labels};

/// First guess of a series entry's size when the meta gives none, bytes.
const SERIES_GUESS: u64 = 1024;
/// First guess of a chunk record's size when the meta gives none, bytes.
const CHUNK_GUESS: u64 = 2048;
/// First guess of a postings list's size when the table order gives no bound, bytes.
const POSTINGS_GUESS: u64 = 64 * 1024;

/// One series entry read from a block.
#[derive(Debug, Clone)]
pub struct BlockSeries {
    /// Index ref of the series in its block.
    pub series_ref: u32,
    /// Labels as stored in the block (external labels not attached).
    pub labels: Vec<Label>,
    /// Chunk metas, all of them (callers filter by time).
    pub chunks: Vec<ChunkMeta>,
}

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
    bucket: Bucket,
    cache: Arc<ByteCache<CacheKey>>,
    label_filter: Option<LabelFilter>,
}

impl BucketBlock {
    pub(super) fn new(
        meta: BlockMeta,
        header: IndexHeader,
        segments: Vec<u64>,
        bucket: Bucket,
        cache: Arc<ByteCache<CacheKey>>,
    ) -> Self {
        let ext_labels = Labels::from_pairs(
            meta.thanos
                .as_ref()
                .map(|t| t.labels.clone())
                .unwrap_or_default(),
        );
        BucketBlock {
            id: meta.ulid.to_string(),
            meta,
            ext_labels,
            header,
            segments,
            bucket,
            cache,
            label_filter: None,
        }
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

    /// Reads the postings lists `plan` needs (from cache or in one coalesced batch of ranged
    /// reads) and combines them into the selected series refs.
    pub async fn postings(&self, plan: &PostingsPlan) -> Result<Vec<u32>, StoreError> {
        if plan.empty {
            return Ok(Vec::new());
        }
        let mut want: Vec<u64> = plan.offsets().collect();
        want.sort_unstable();
        want.dedup();
        let mut lists: HashMap<u64, Bytes> = HashMap::with_capacity(want.len());
        let mut missing = Vec::new();
        for &off in &want {
            match self.cache.get(&CacheKey::Postings(self.meta.ulid, off)) {
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
        let got = self.bucket.get_ranges(&path, &ranges).await?;
        for ((off, range), mut b) in missing.iter().zip(&ranges).zip(got) {
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
                b = self.bucket.get_range(&path, *off..off + need).await?;
            }
            let _ = range;
            let b = b.slice(..need as usize);
            self.cache
                .insert(CacheKey::Postings(self.meta.ulid, *off), b.clone());
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

    /// Reads the series entries of `refs` (ascending).
    pub async fn series(&self, refs: &[u32]) -> Result<Vec<BlockSeries>, StoreError> {
        let guess = self.stat(|s| s.series_max_size, SERIES_GUESS);
        let end = self.header.series_end();
        let mut entries: Vec<Option<Bytes>> = Vec::with_capacity(refs.len());
        let mut ranges = Vec::new();
        let mut missing = Vec::new();
        for (i, &r) in refs.iter().enumerate() {
            let hit = self.cache.get(&CacheKey::Series(self.meta.ulid, r));
            if hit.is_none() {
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
            entries.push(hit);
        }
        let path = self.index_path();
        let got = self.bucket.get_ranges(&path, &ranges).await?;
        for ((&i, range), b) in missing.iter().zip(&ranges).zip(got) {
            entries[i] = Some(b.clone());
            let _ = range;
        }
        let reader = self.header.reader();
        let mut out = Vec::with_capacity(refs.len());
        for (i, &r) in refs.iter().enumerate() {
            let off = u64::from(r) * 16;
            let mut b = entries[i].take().unwrap_or_default();
            let mut labels = Vec::new();
            let mut chunks = Vec::new();
            if let Some(need) = reader.decode_series_entry(&b, off, &mut labels, &mut chunks)? {
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
                b = self.bucket.get_range(&path, off..off + need).await?;
                if reader
                    .decode_series_entry(&b, off, &mut labels, &mut chunks)?
                    .is_some()
                {
                    return Err(IndexError::Corrupt {
                        path: path.clone().into(),
                        section: "series",
                        offset: off,
                        reason: "entry length changed between reads".into(),
                    }
                    .into());
                }
            }
            if missing.binary_search(&i).is_ok() {
                let used = entry_len(&b);
                self.cache
                    .insert(CacheKey::Series(self.meta.ulid, r), b.slice(..used));
            }
            out.push(BlockSeries {
                series_ref: r,
                labels,
                chunks,
            });
        }
        Ok(out)
    }

    /// Reads the chunks `metas` name, in order, as raw chunks (CRC checked).
    pub async fn chunks(&self, metas: &[ChunkMeta]) -> Result<Vec<RawChunk>, StoreError> {
        let guess = self.stat(|s| s.chunk_max_size, CHUNK_GUESS);
        // Group reads by segment; each chunk gets a guessed range.
        let mut by_seg: HashMap<u32, Vec<(usize, Range<u64>)>> = HashMap::new();
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
            by_seg
                .entry(seg)
                .or_default()
                .push((i, off..(off + guess).min(size)));
        }
        let mut out: Vec<Option<RawChunk>> = vec![None; metas.len()];
        for (seg, reads) in by_seg {
            let path = self.segment_path(seg);
            let ranges: Vec<Range<u64>> = reads.iter().map(|r| r.1.clone()).collect();
            let got = self.bucket.get_ranges(&path, &ranges).await?;
            for ((i, range), b) in reads.into_iter().zip(got) {
                let ppath = std::path::PathBuf::from(&path);
                let mut buf = b;
                let rec = match read_chunk_record(&buf, range.start, &ppath)? {
                    RecordRead::NeedBytes(n) => {
                        let end = range.start + n;
                        if end > self.segments[seg as usize] {
                            return Err(StoreError::Block(
                                crate::block::BlockError::ChunkOutOfBounds {
                                    path: ppath,
                                    chunk_ref: metas[i].chunk_ref,
                                    offset: range.start,
                                    file_len: self.segments[seg as usize],
                                },
                            ));
                        }
                        buf = self.bucket.get_range(&path, range.start..end).await?;
                        read_chunk_record(&buf, range.start, &ppath)?
                    }
                    r => r,
                };
                let RecordRead::Chunk { encoding, data } = rec else {
                    return Err(StoreError::Block(
                        crate::block::BlockError::ChunkOutOfBounds {
                            path: ppath,
                            chunk_ref: metas[i].chunk_ref,
                            offset: range.start,
                            file_len: self.segments[seg as usize],
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

/// Bytes taken by the series entry at the start of `b` (varint length, body, CRC), or all of
/// `b` when it cannot tell.
fn entry_len(b: &[u8]) -> usize {
    match crate::encoding::read_uvarint(b) {
        Ok((len, n)) => (n as u64 + len + 4).min(b.len() as u64) as usize,
        Err(_) => b.len(),
    }
}
