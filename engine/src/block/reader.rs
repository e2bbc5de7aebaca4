//! An open block on local disk: meta.json, the index, chunk segments and tombstones, with the
//! reads every consumer needs (select series, decode their samples in a time range).

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::meta::BlockMeta;
use super::segment::SegmentReader;
use super::tombstones::{Tombstones, apply_deletions};
use crate::chunk::{
    ChunkError, Encoding, FloatHistogramIterator, HistogramBatch, HistogramIterator, SampleBatch,
    decode_xor_into,
};
use crate::error::{Error, Result};
use crate::histogram::{FloatHistogram, Histogram};
use crate::index::{ChunkMeta, IndexReader, postings_for_matchers};
use crate::labels::{Label, Matcher};

/// A block opened for reading. Files are memory-mapped; nothing is decoded until asked.
#[derive(Debug)]
pub struct Block {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader<Mmap>,
    chunks: SegmentReader,
    tombstones: Tombstones,
}

impl Block {
    /// Opens the block in `dir`, validating meta.json, the index's TOC and checksummed tables,
    /// and the chunk segment headers.
    pub fn open(dir: &Path) -> Result<Self> {
        let meta = BlockMeta::read(dir)?;
        let index = IndexReader::open(&dir.join("index"))?;
        let chunks = SegmentReader::open(&dir.join("chunks"))?;
        let tombstones = Tombstones::read(&dir.join("tombstones"))?;
        Ok(Block {
            dir: dir.to_path_buf(),
            meta,
            index,
            chunks,
            tombstones,
        })
    }

    /// The block directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The block's meta.json.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The block's index.
    pub fn index(&self) -> &IndexReader<Mmap> {
        &self.index
    }

    /// The block's chunk segments.
    pub fn chunks(&self) -> &SegmentReader {
        &self.chunks
    }

    /// Drops the index's and the chunks' mapped pages from this process (see
    /// [`IndexReader::release_pages`]).
    pub fn release_pages(&self) {
        self.index.release_pages();
        self.chunks.release_pages();
    }

    /// The block's deletions.
    pub fn tombstones(&self) -> &Tombstones {
        &self.tombstones
    }

    /// Series refs (ascending, hence in label order) selected by all `matchers`.
    pub fn select(&self, matchers: &[Matcher]) -> Result<Vec<u32>> {
        Ok(postings_for_matchers(&self.index, matchers)?)
    }

    /// Reads a series' labels and chunk metas.
    pub fn series(
        &self,
        series_ref: u32,
        labels: &mut Vec<Label>,
        chunks: &mut Vec<ChunkMeta>,
    ) -> Result<()> {
        Ok(self.index.series(series_ref, labels, chunks)?)
    }

    /// Appends to `out` the samples of `series_ref` with `mint <= t <= maxt` from the chunks in
    /// `chunks` that overlap that range, with deleted intervals removed.
    pub fn read_samples(
        &self,
        series_ref: u32,
        chunks: &[ChunkMeta],
        mint: i64,
        maxt: i64,
        out: &mut SampleBatch,
    ) -> Result<()> {
        let start = out.len();
        for c in chunks {
            if c.max_time < mint || c.min_time > maxt {
                continue;
            }
            let (enc, data) = self.chunks.chunk(c.chunk_ref)?;
            if enc != Encoding::Xor as u8 {
                return Err(Error::InvalidInput(format!(
                    "{}: chunk {:#x} of series {series_ref} has encoding {enc}, which this reader does not decode",
                    self.dir.display(),
                    c.chunk_ref
                )));
            }
            decode_xor_into(data, out).map_err(|source| Error::Chunk {
                dir: self.dir.clone(),
                series_ref,
                chunk_ref: c.chunk_ref,
                source,
            })?;
        }
        trim_range(out, start, mint, maxt);
        let deleted = self.tombstones.get(u64::from(series_ref));
        if !deleted.is_empty() {
            let mut ts = out.ts.split_off(start);
            let mut val = out.val.split_off(start);
            apply_deletions(deleted, &mut ts, &mut val);
            out.ts.extend_from_slice(&ts);
            out.val.extend_from_slice(&val);
        }
        Ok(())
    }
}

/// One decoded sample of a block, of the kind its chunk stores.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockSample {
    /// A float sample (XOR chunk).
    Float(f64),
    /// An integer native histogram (chunk encoding 2).
    Histogram(Histogram),
    /// A float native histogram (chunk encoding 3).
    FloatHistogram(FloatHistogram),
}

impl Block {
    /// Appends to `floats` and `histograms` the samples of `series_ref` with
    /// `mint <= t <= maxt` from the chunks in `chunks` that overlap that range, with deleted
    /// intervals removed: XOR chunks into `floats`, native histogram chunks (encodings 2 and 3)
    /// into `histograms` as float histograms. Each output is sorted by time when the chunks
    /// are (as a block's are). Other encodings are errors naming the chunk.
    pub fn read_samples_and_histograms(
        &self,
        series_ref: u32,
        chunks: &[ChunkMeta],
        mint: i64,
        maxt: i64,
        floats: &mut SampleBatch,
        histograms: &mut HistogramBatch,
    ) -> Result<()> {
        let xor: Vec<ChunkMeta> = chunks
            .iter()
            .filter(|c| !self.is_histogram_chunk(c))
            .copied()
            .collect();
        if xor.len() != chunks.len() {
            let mut typed = Vec::new();
            let hist: Vec<ChunkMeta> = chunks
                .iter()
                .filter(|c| self.is_histogram_chunk(c))
                .copied()
                .collect();
            self.read_typed(series_ref, &hist, mint, maxt, &mut typed)?;
            for (t, s) in typed {
                match s {
                    BlockSample::Histogram(h) => histograms.push(t, h.to_float_from_counts()),
                    BlockSample::FloatHistogram(h) => histograms.push(t, h),
                    BlockSample::Float(_) => {}
                }
            }
        }
        self.read_samples(series_ref, &xor, mint, maxt, floats)
    }

    /// Whether any of `chunks` is a native histogram chunk (encoding 2 or 3).
    pub fn has_histogram_chunks(&self, chunks: &[ChunkMeta]) -> bool {
        chunks.iter().any(|c| self.is_histogram_chunk(c))
    }

    fn is_histogram_chunk(&self, c: &ChunkMeta) -> bool {
        self.chunks.chunk(c.chunk_ref).is_ok_and(|(enc, _)| {
            enc == Encoding::Histogram as u8 || enc == Encoding::FloatHistogram as u8
        })
    }

    /// Appends to `out` every sample of `series_ref` with `mint <= t <= maxt` from the chunks
    /// in `chunks` that overlap that range, each of the kind its chunk stores (floats,
    /// integer or float histograms), in chunk order, with deleted intervals removed.
    pub fn read_typed(
        &self,
        series_ref: u32,
        chunks: &[ChunkMeta],
        mint: i64,
        maxt: i64,
        out: &mut Vec<(i64, BlockSample)>,
    ) -> Result<()> {
        let deleted = self.tombstones.get(u64::from(series_ref));
        let keep = |t: i64| {
            t >= mint && t <= maxt && !deleted.iter().any(|iv| iv.mint <= t && t <= iv.maxt)
        };
        for c in chunks {
            if c.max_time < mint || c.min_time > maxt {
                continue;
            }
            let (enc, data) = self.chunks.chunk(c.chunk_ref)?;
            let fail = |source: ChunkError| Error::Chunk {
                dir: self.dir.clone(),
                series_ref,
                chunk_ref: c.chunk_ref,
                source,
            };
            match Encoding::try_from(enc) {
                Ok(Encoding::Xor) => {
                    let mut b = SampleBatch::new();
                    decode_xor_into(data, &mut b).map_err(fail)?;
                    out.extend(
                        b.iter()
                            .filter(|&(t, _)| keep(t))
                            .map(|(t, v)| (t, BlockSample::Float(v))),
                    );
                }
                Ok(Encoding::Histogram) => {
                    let mut it = HistogramIterator::new(data).map_err(fail)?;
                    while let Some((t, h)) = it.next().map_err(fail)? {
                        if keep(t) {
                            out.push((t, BlockSample::Histogram(h)));
                        }
                    }
                }
                Ok(Encoding::FloatHistogram) => {
                    let mut it = FloatHistogramIterator::new(data).map_err(fail)?;
                    while let Some((t, h)) = it.next().map_err(fail)? {
                        if keep(t) {
                            out.push((t, BlockSample::FloatHistogram(h)));
                        }
                    }
                }
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "{}: chunk {:#x} of series {series_ref} has encoding {enc}, which this reader does not decode",
                        self.dir.display(),
                        c.chunk_ref
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Drops samples outside `[mint, maxt]` from `out[start..]`, keeping order.
fn trim_range(out: &mut SampleBatch, start: usize, mint: i64, maxt: i64) {
    let mut w = start;
    for r in start..out.ts.len() {
        let t = out.ts[r];
        if t >= mint && t <= maxt {
            out.ts[w] = t;
            out.val[w] = out.val[r];
            w += 1;
        }
    }
    out.ts.truncate(w);
    out.val.truncate(w);
}

/// Lists the block directories under `dir` (those holding a meta.json), sorted by name; `dir`
/// itself when it is a block.
pub fn block_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join("meta.json").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    out.sort();
    Ok(out)
}
