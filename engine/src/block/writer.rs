//! Writes a standard Prometheus block: chunk segments, index, empty tombstones and meta.json,
//! built in a temporary directory and renamed into place once complete, as Prometheus does.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::cut::{CutChunk, CutOptions, cut_chunks};
use super::meta::{BlockMeta, BlockStats, Compaction, ThanosMeta};
use super::segment::SegmentWriter;
use super::tombstones::Tombstones;
use crate::chunk::Encoding;
use crate::error::{Error, Result};
use crate::index::{ChunkMeta, IndexWriter};
use crate::labels::Labels;

/// One encoded chunk handed to [`BlockWriter::add_encoded_chunks`].
#[derive(Debug, Clone, Copy)]
pub struct EncodedChunk<'a> {
    /// The chunk's encoding: XOR, histogram or float histogram.
    pub encoding: Encoding,
    /// First sample's timestamp, ms.
    pub min_time: i64,
    /// Last sample's timestamp, ms.
    pub max_time: i64,
    /// The payload, starting with its 2-byte sample count.
    pub data: &'a [u8],
}

/// Builds one block from series added in label order.
#[derive(Debug)]
pub struct BlockWriter {
    parent: PathBuf,
    tmp: PathBuf,
    ulid: Ulid,
    opts: CutOptions,
    segments: Option<SegmentWriter>,
    series: Vec<(Labels, Vec<ChunkMeta>)>,
    symbols: BTreeSet<String>,
    stats: BlockStats,
    min_time: i64,
    max_time: i64,
    /// The block's `[min, max)` when chosen by the caller rather than by its samples.
    range: Option<(i64, i64)>,
}

impl BlockWriter {
    /// Starts a block under `parent`, cutting chunks with `opts`.
    pub fn create(parent: &Path, opts: CutOptions) -> Result<Self> {
        Self::create_with_ulid(parent, Ulid::new(), opts)
    }

    /// Starts a block with a chosen ULID (deterministic output for tests and tools).
    pub fn create_with_ulid(parent: &Path, ulid: Ulid, opts: CutOptions) -> Result<Self> {
        let tmp = parent.join(format!("{ulid}.tmp-for-creation"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|source| Error::Io {
                path: tmp.clone(),
                source,
            })?;
        }
        fs::create_dir_all(&tmp).map_err(|source| Error::Io {
            path: tmp.clone(),
            source,
        })?;
        let segments = SegmentWriter::create(&tmp.join("chunks"))?;
        Ok(BlockWriter {
            parent: parent.to_path_buf(),
            tmp,
            ulid,
            opts,
            segments: Some(segments),
            series: Vec::new(),
            symbols: BTreeSet::new(),
            stats: BlockStats::default(),
            min_time: i64::MAX,
            max_time: i64::MIN,
            range: None,
        })
    }

    /// Gives the block the time range `[min_ms, max_ms)` instead of the one its samples span,
    /// as Prometheus does for a block cut from its head (`[head min time, range end)`).
    pub fn set_time_range(&mut self, min_ms: i64, max_ms: i64) {
        self.range = Some((min_ms, max_ms));
    }

    /// The new block's ULID.
    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    /// Adds a series with its samples (timestamps increasing, ms); chunks are cut the way
    /// Prometheus cuts them. Series must come in strictly increasing label order.
    pub fn add_series(&mut self, labels: &Labels, ts: &[i64], val: &[f64]) -> Result<()> {
        if ts.len() != val.len() {
            return Err(Error::InvalidInput(format!(
                "series {labels}: {} timestamps but {} values",
                ts.len(),
                val.len()
            )));
        }
        let chunks = cut_chunks(ts, val, self.opts);
        self.add_chunks(labels, &chunks)
    }

    /// Adds a series from already encoded XOR chunks, ordered by time and not overlapping.
    pub fn add_chunks(&mut self, labels: &Labels, chunks: &[CutChunk]) -> Result<()> {
        self.add_encoded_chunks(
            labels,
            chunks.iter().map(|c| EncodedChunk {
                encoding: Encoding::Xor,
                min_time: c.min_time,
                max_time: c.max_time,
                data: &c.data,
            }),
        )
    }

    /// Adds a series from already encoded chunks of any sample encoding (XOR, histogram,
    /// float histogram), ordered by time and not overlapping: a series that switched between
    /// floats and histograms keeps its chunks of each kind, as Prometheus writes them.
    pub fn add_encoded_chunks<'c>(
        &mut self,
        labels: &Labels,
        chunks: impl IntoIterator<Item = EncodedChunk<'c>>,
    ) -> Result<()> {
        let mut chunks = chunks.into_iter().peekable();
        let Some(first_min) = chunks.peek().map(|c| c.min_time) else {
            return Ok(());
        };
        if let Some((last, _)) = self.series.last()
            && last >= labels
        {
            return Err(Error::InvalidInput(format!(
                "series {labels} added after {last}: series must be added in increasing label order"
            )));
        }
        if labels.is_empty() {
            return Err(Error::InvalidInput("series with no labels".into()));
        }
        #[allow(
            clippy::expect_used,
            reason = "only `finish`, which consumes the writer, takes the segment writer"
        )]
        let segments = self
            .segments
            .as_mut()
            .expect("segment writer lives until finish");
        let mut metas = Vec::new();
        let mut prev_max = i64::MIN;
        for c in chunks {
            if c.min_time > c.max_time || (!metas.is_empty() && c.min_time <= prev_max) {
                return Err(Error::InvalidInput(format!(
                    "series {labels}: chunk [{}, {}] overlaps or is out of order",
                    c.min_time, c.max_time
                )));
            }
            prev_max = c.max_time;
            let chunk_ref = segments.write_chunk(c.encoding as u8, c.data)?;
            metas.push(ChunkMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk_ref,
            });
            // Every sample encoding starts with its sample count, 2 bytes big-endian.
            let n = c
                .data
                .get(..2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])) as u64;
            self.stats.num_samples += n;
            if c.encoding == Encoding::Xor {
                self.stats.num_float_samples += n;
            } else {
                self.stats.num_histogram_samples += n;
            }
            self.stats.num_chunks += 1;
        }
        self.min_time = self.min_time.min(first_min);
        self.max_time = self.max_time.max(prev_max);
        for l in labels {
            if !self.symbols.contains(l.name.as_str()) {
                self.symbols.insert(l.name.to_string());
            }
            if !self.symbols.contains(l.value.as_str()) {
                self.symbols.insert(l.value.to_string());
            }
        }
        self.stats.num_series += 1;
        self.series.push((labels.clone(), metas));
        Ok(())
    }

    /// Writes the index, tombstones and meta.json and moves the block into place. The block's
    /// time range is `[first sample, last sample + 1)`. Returns its meta, or `None` when no
    /// series were added (no block is written then).
    pub fn finish(mut self, thanos: Option<ThanosMeta>) -> Result<Option<BlockMeta>> {
        #[allow(
            clippy::expect_used,
            reason = "only `finish`, which consumes the writer, takes the segment writer"
        )]
        let segments = self
            .segments
            .take()
            .expect("segment writer lives until finish");
        let files = segments.finish()?;
        if self.series.is_empty() {
            let _ = fs::remove_dir_all(&self.tmp);
            return Ok(None);
        }
        let index_path = self.tmp.join("index");
        let mut ix = IndexWriter::create(&index_path)?;
        ix.add_symbols(self.symbols.iter().map(String::as_str))?;
        for (labels, metas) in &self.series {
            ix.add_series(labels, metas)?;
        }
        ix.finish()?;
        Tombstones::default().write(&self.tmp.join("tombstones"))?;

        let thanos = match thanos {
            Some(mut t) => {
                t.files =
                    super::meta::ThanosFile::block_files(&self.tmp, &files).map_err(|source| {
                        Error::Io {
                            path: index_path.clone(),
                            source,
                        }
                    })?;
                Some(t)
            }
            None => None,
        };
        let meta = BlockMeta {
            ulid: self.ulid,
            min_time: self.range.map_or(self.min_time, |r| r.0),
            max_time: self.range.map_or(self.max_time.saturating_add(1), |r| r.1),
            stats: self.stats.clone(),
            compaction: Compaction {
                level: 1,
                sources: vec![self.ulid],
                ..Default::default()
            },
            version: 1,
            thanos,
        };
        meta.write(&self.tmp)?;
        let dst = self.parent.join(self.ulid.to_string());
        fs::rename(&self.tmp, &dst).map_err(|source| Error::Io {
            path: dst.clone(),
            source,
        })?;
        if let Ok(d) = fs::File::open(&self.parent) {
            let _ = d.sync_all();
        }
        Ok(Some(meta))
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        // An unfinished block leaves nothing behind; a finished one was renamed away already.
        if self.segments.is_some() {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// A series to write: labels and samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSamples {
    /// The series' labels.
    pub labels: Labels,
    /// Sample timestamps, ms, increasing.
    pub ts: Vec<i64>,
    /// Sample values.
    pub val: Vec<f64>,
}

/// Writes `series` (any order) into blocks aligned to `block_range_ms` under `parent`, one block
/// per window holding samples, as `promtool tsdb create-blocks-from` does. Returns the metas.
pub fn write_blocks(
    parent: &Path,
    mut series: Vec<SeriesSamples>,
    block_range_ms: i64,
    opts: CutOptions,
    thanos: Option<ThanosMeta>,
) -> Result<Vec<BlockMeta>> {
    if block_range_ms <= 0 {
        return Err(Error::InvalidInput("block range must be positive".into()));
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for s in &series {
        if let (Some(&f), Some(&l)) = (s.ts.first(), s.ts.last()) {
            lo = lo.min(f);
            hi = hi.max(l);
        }
    }
    let mut metas = Vec::new();
    if lo > hi {
        return Ok(metas);
    }
    let mut start = lo.div_euclid(block_range_ms) * block_range_ms;
    while start <= hi {
        let end = start.saturating_add(block_range_ms);
        let mut w = BlockWriter::create(parent, opts)?;
        for s in &series {
            let a = s.ts.partition_point(|&t| t < start);
            let b = s.ts.partition_point(|&t| t < end);
            if a < b {
                w.add_series(&s.labels, &s.ts[a..b], &s.val[a..b])?;
            }
        }
        if let Some(m) = w.finish(thanos.clone())? {
            metas.push(m);
        }
        start = end;
    }
    Ok(metas)
}
