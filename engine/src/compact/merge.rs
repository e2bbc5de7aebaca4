//! Merges blocks into one, streaming: the symbol tables are merged in order, then the series of
//! all inputs are walked together in label order, one label set at a time. A series' chunks
//! are copied as they are unless chunks of different inputs overlap in time or a tombstone
//! deletes some of their samples; then its samples are decoded, merged (equal timestamps once)
//! and encoded again in chunks of 120. A series holding native histogram chunks is merged
//! chunk by chunk as Prometheus's compactor merges it (`overlap.rs`; equal timestamps once), and
//! with Thanos's penalty deduplication every series is merged chunk by chunk as Thanos's
//! compactor merges replicas (`overlap.rs`). Histogram chunks are decoded to the end even when
//! copied, so a corrupt one stops the merge with its block, series and chunk named and no block
//! written. Series matching a deletion selector are left out: that is how a block is rewritten
//! without them (`rewrite.rs`).
//!
//! Series are compared and written as references into the merged symbol table: each input's
//! symbol references are mapped to the merged table's positions while the tables are merged,
//! and since the table is sorted, comparing references compares the strings. No label string
//! is looked up per series.
//!
//! Memory does not grow with the samples, chunks or series of the inputs: a read window of
//! chunk bytes shared by the inputs, the series being merged, the output index's postings spool (a
//! bounded buffer; the rest sorted into a run file), and the inputs' mapped index pages, let
//! go every few thousand series. What does grow is per distinct symbol and label pair: the
//! symbol tables and their reference maps (4 bytes a symbol an input), the postings offset
//! tables. Chunk bytes are read with plain reads through the window, not maps, so the pages of
//! inputs larger than memory do not pile up in the process.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::overlap::{self, SeriesChunk};
use crate::block::meta::{BlockDesc, Compaction, ThanosFile};
use crate::block::segment::{open_segment_file, segment_paths, split_ref};
use crate::block::{
    BlockMeta, BlockStats, Interval, RecordRead, SegmentWriter, ThanosMeta, Tombstones,
    apply_deletions, read_chunk_record,
};
use crate::chunk::{AggrChunk, AggrType, Encoding, SampleBatch, XorAppender, decode_xor_into};
use crate::error::{Error, Result};
use crate::index::postings::union_many;
use crate::index::{ChunkMeta, IndexReader, IndexWriter, postings_for_matchers};
use crate::labels::Matcher;

/// Samples per chunk when a series' samples are encoded again (Prometheus's compaction cuts
/// merged samples at 120 as well).
pub const SAMPLES_PER_MERGED_CHUNK: usize = 120;

/// How samples of one series from overlapping inputs are joined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dedup {
    /// Samples at the same timestamp are kept once (the first input's), as Prometheus's
    /// vertical compaction and Thanos's default `--deduplication.func=""` do: fits identical
    /// copies, such as a receive tier's replicas.
    #[default]
    Chain,
    /// Each input is a replica and the penalty algorithm picks which one to follow, as
    /// Thanos's `--deduplication.func=penalty` does for HA Prometheus pairs.
    Penalty,
}

/// What a merge writes and how.
#[derive(Debug, Clone)]
pub struct MergeOptions {
    /// The new block's ULID; a fresh one when `None`.
    pub ulid: Option<Ulid>,
    /// How overlapping samples are joined.
    pub dedup: Dedup,
    /// The new block's `thanos` section (labels, resolution, source); its `files` are filled
    /// in. `None` writes a Prometheus-only meta.json.
    pub thanos: Option<ThanosMeta>,
    /// Bytes of chunk data held in memory for reading, shared evenly by the inputs: each
    /// reads its chunks that many bytes at a time.
    pub read_window: usize,
    /// At most this share of one CPU (0 < share ≤ 1): the merge pauses between series so
    /// that over any stretch it works this share of the time, leaving the rest to queries in
    /// the same process. `None` runs flat out.
    pub cpu_share: Option<f64>,
    /// Selectors, each a list of matchers that must all match: a series matching any of them
    /// is left out of the new block. Empty keeps every series.
    pub delete_series: Vec<Vec<Matcher>>,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            ulid: None,
            dedup: Dedup::Chain,
            thanos: None,
            read_window: 4 << 20,
            cpu_share: None,
            delete_series: Vec::new(),
        }
    }
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeStats {
    /// Series written.
    pub series: u64,
    /// Chunks copied as they were.
    pub chunks_copied: u64,
    /// Series whose samples were decoded and encoded again (overlaps or deletions).
    pub series_rewritten: u64,
    /// Series of the inputs left out because they match [`MergeOptions::delete_series`],
    /// counted per input.
    pub series_deleted: u64,
    /// Samples in the new block, float and histogram.
    pub samples: u64,
    /// Native histogram samples among them.
    pub histogram_samples: u64,
    /// Chunk bytes read from the inputs.
    pub bytes_read: u64,
}

/// Merges the blocks in `inputs` (two or more directories, any order) into a new block under
/// `out_parent`, built in a temporary directory and renamed into place. Returns its meta and
/// what the merge did; no block is written (`None`) when every series was deleted.
///
/// The inputs must have one resolution; downsampled inputs must not overlap in time (their
/// aggregates cannot be merged sample by sample, and Thanos refuses them too).
pub fn merge_blocks(
    inputs: &[PathBuf],
    out_parent: &Path,
    opts: &MergeOptions,
) -> Result<(Option<BlockMeta>, MergeStats)> {
    if inputs.is_empty() {
        return Err(Error::InvalidInput(
            "a merge needs at least one block".into(),
        ));
    }
    let mut blocks = inputs
        .iter()
        .map(|dir| Input::open(dir, opts.read_window / inputs.len(), &opts.delete_series))
        .collect::<Result<Vec<_>>>()?;
    // Earlier blocks first: chunks of a series then come in time order, and Chain keeps the
    // earliest block's sample at a shared timestamp.
    blocks.sort_by_key(|b| (b.meta.min_time, b.meta.max_time, b.meta.ulid));
    check_inputs(&blocks)?;

    let ulid = match opts.ulid {
        Some(u) => u,
        None => Ulid::new(),
    };
    let tmp = out_parent.join(format!("{ulid}.tmp-for-creation"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let written = write_merged(&mut blocks, &tmp, opts);
    let (mut stats, block_stats, files) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    stats.series_deleted = blocks.iter().map(Input::deleted).sum();
    if stats.series == 0 {
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok((None, stats));
    }
    let meta = merged_meta(&blocks, ulid, block_stats, opts, &tmp, &files)?;
    meta.write(&tmp)?;
    let dst = out_parent.join(ulid.to_string());
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    crate::block::sync_dir(out_parent)?;
    Ok((Some(meta), stats))
}

/// One input block: its meta, index, deletions and a read window over its chunks.
struct Input {
    dir: PathBuf,
    meta: BlockMeta,
    index: IndexReader<memmap2::Mmap>,
    tombstones: Tombstones,
    chunks: ChunkWindow,
    /// The all-postings list's refs in the mapped index: offset of the first and count. The
    /// list is walked in place rather than held.
    all: (u64, usize),
    /// Position in the all-postings list of the series in `ids`/`metas`.
    pos: usize,
    /// The ref at `pos`.
    current: u32,
    /// Series left out because a deletion selector matches them, ascending, and how many
    /// of them the walk has passed.
    doomed: Vec<u32>,
    doomed_pos: usize,
    /// Series decoded since the index's pages were last released.
    since_release: u32,
    /// The input's symbol references mapped to the merged table's, filled in once the symbol
    /// tables are merged.
    remap: SymbolRemap,
    /// The current series' labels as (name, value) references of the merged symbol table:
    /// the table is sorted, so comparing references compares the label sets.
    ids: Vec<(u32, u32)>,
    /// The current series' references in the input's own table.
    raw: Vec<(u32, u32)>,
    metas: Vec<ChunkMeta>,
}

impl Input {
    fn open(dir: &Path, window: usize, delete: &[Vec<Matcher>]) -> Result<Self> {
        let meta = BlockMeta::read(dir)?;
        let index = IndexReader::open(&dir.join("index"))?;
        let tombstones = Tombstones::read(&dir.join("tombstones"))?;
        let chunks = ChunkWindow::open(&dir.join("chunks"), window)?;
        let all = index.all_postings_span()?.unwrap_or((0, 0));
        let doomed = selected_refs(&index, delete)?;
        // Opening read the tables and checked the postings list: none of it is needed again
        // soon.
        index.release_pages();
        Ok(Input {
            dir: dir.to_path_buf(),
            meta,
            index,
            tombstones,
            chunks,
            all,
            pos: 0,
            current: 0,
            doomed,
            doomed_pos: 0,
            since_release: 0,
            remap: SymbolRemap::default(),
            ids: Vec::new(),
            raw: Vec::new(),
            metas: Vec::new(),
        })
    }

    /// Whether every series has been taken.
    fn done(&self) -> bool {
        self.pos >= self.all.1
    }

    /// Series of the input left out by the deletion selectors.
    fn deleted(&self) -> u64 {
        self.doomed.len() as u64
    }

    /// Moves to the first series that is not deleted and decodes it.
    fn start(&mut self) -> Result<()> {
        self.pos = 0;
        self.seek()
    }

    fn advance(&mut self) -> Result<()> {
        self.pos += 1;
        self.seek()
    }

    /// Moves to the first series at or after `pos` that is not deleted and decodes it.
    fn seek(&mut self) -> Result<()> {
        while !self.done() {
            let Some(r) = self.index.postings_ref_at(self.all.0, self.pos) else {
                return Err(self.corrupt_postings("the all-postings list runs past the index"));
            };
            if self.pos > 0 && r <= self.current {
                return Err(self.corrupt_postings(&format!("series ref {r} does not ascend")));
            }
            self.current = r;
            while self.doomed.get(self.doomed_pos).is_some_and(|&d| d < r) {
                self.doomed_pos += 1;
            }
            if self.doomed.get(self.doomed_pos) == Some(&r) {
                self.pos += 1;
                continue;
            }
            return self.load();
        }
        Ok(())
    }

    fn corrupt_postings(&self, reason: &str) -> Error {
        Error::InvalidInput(format!(
            "{}: all-postings entry {}: {reason}",
            self.dir.join("index").display(),
            self.pos
        ))
    }

    /// Decodes the series at `pos`, its labels mapped to the merged symbol table.
    fn load(&mut self) -> Result<()> {
        let r = self.current;
        // The pages walked so far are let go now and then: what stays resident of an
        // index is about what the last stretch touched, whatever the index's size.
        self.since_release += 1;
        if self.since_release >= RELEASE_EVERY {
            self.since_release = 0;
            self.index.release_pages();
        }
        self.index
            .series_symbol_refs(r, &mut self.raw, &mut self.metas)?;
        self.ids.clear();
        for &(n, v) in &self.raw {
            let (Some(n), Some(v)) = (self.remap.get(n), self.remap.get(v)) else {
                return Err(Error::InvalidInput(format!(
                    "{}: series {r} names a symbol reference ({n} or {v}) that starts no symbol",
                    self.dir.join("index").display()
                )));
            };
            self.ids.push((n, v));
        }
        Ok(())
    }

    fn series_ref(&self) -> u32 {
        self.current
    }
}

/// Series decoded from an input between releases of its index pages: about a MiB of series
/// entries.
const RELEASE_EVERY: u32 = 8 * 1024;

/// The series refs of `index` that any of `selectors` selects, ascending.
pub(crate) fn selected_refs<B: AsRef<[u8]>>(
    index: &IndexReader<B>,
    selectors: &[Vec<Matcher>],
) -> Result<Vec<u32>> {
    let sets = selectors
        .iter()
        .map(|m| postings_for_matchers(index, m))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let lists: Vec<&[u32]> = sets.iter().map(Vec::as_slice).collect();
    let mut out = Vec::new();
    union_many(&lists, &mut out);
    Ok(out)
}

/// Checks what a merge can take: one resolution, and no overlap between downsampled inputs.
fn check_inputs(blocks: &[Input]) -> Result<()> {
    let res = |b: &Input| {
        b.meta
            .thanos
            .as_ref()
            .map_or(0, |t| t.downsample.resolution)
    };
    let first = res(&blocks[0]);
    if let Some(b) = blocks.iter().find(|b| res(b) != first) {
        return Err(Error::InvalidInput(format!(
            "block {} has resolution {} ms and block {} {} ms: only blocks of one resolution merge",
            blocks[0].meta.ulid,
            first,
            b.meta.ulid,
            res(b)
        )));
    }
    if first != 0 {
        for w in blocks.windows(2) {
            if w[1].meta.min_time < w[0].meta.max_time {
                return Err(Error::InvalidInput(format!(
                    "downsampled blocks {} and {} overlap in time; their aggregates cannot be merged",
                    w[0].meta.ulid, w[1].meta.ulid
                )));
            }
        }
    }
    Ok(())
}

/// What [`write_merged`] did: its stats, the block's stats, the segment files and sizes.
type Merged = (MergeStats, BlockStats, Vec<(String, u64)>);

/// Writes chunks, index and tombstones of the merged block into `dir`.
fn write_merged(blocks: &mut [Input], dir: &Path, opts: &MergeOptions) -> Result<Merged> {
    let mut stats = MergeStats::default();
    let mut bstats = BlockStats::default();
    let mut segments = SegmentWriter::create(&dir.join("chunks"))?;
    let mut index = IndexWriter::create(&dir.join("index"))?;

    let mut failed = None;
    let mut merged = MergedSymbols::new(blocks, &mut failed);
    index.add_symbols(&mut merged)?;
    let remaps = merged.into_remaps();
    if let Some(e) = failed {
        return Err(e);
    }
    for (b, remap) in blocks.iter_mut().zip(remaps) {
        b.remap = remap;
        b.index.release_pages();
        b.start()?;
    }

    let mut series = SeriesMerge::default();
    let mut min: Vec<(u32, u32)> = Vec::new();
    let mut out_metas: Vec<ChunkMeta> = Vec::new();
    let mut pace = Pace::new(opts.cpu_share);
    loop {
        pace.tick();
        // The smallest label set among the inputs, and every input holding it.
        let Some(first) = (0..blocks.len())
            .filter(|&i| !blocks[i].done())
            .min_by(|&a, &b| blocks[a].ids.cmp(&blocks[b].ids))
        else {
            break;
        };
        min.clear();
        min.extend_from_slice(&blocks[first].ids);
        series.clear();
        for (i, b) in blocks.iter_mut().enumerate() {
            if b.done() || b.ids != min {
                continue;
            }
            let r = b.series_ref();
            series.add(i, r, &b.metas, b.tombstones.get(u64::from(r)));
            b.advance()?;
        }
        out_metas.clear();
        let written = if series.needs_rewrite() {
            stats.series_rewritten += 1;
            series.rewrite(
                blocks,
                opts.dedup,
                &mut segments,
                &mut out_metas,
                &mut stats,
            )?
        } else {
            series.copy(blocks, &mut segments, &mut out_metas, &mut stats)?
        };
        if out_metas.is_empty() {
            continue;
        }
        index.add_series_refs(&min, &out_metas)?;
        stats.series += 1;
        stats.samples += written.floats + written.histograms;
        stats.histogram_samples += written.histograms;
        bstats.num_series += 1;
        bstats.num_chunks += out_metas.len() as u64;
    }
    bstats.num_samples = stats.samples;
    bstats.num_float_samples = stats.samples - stats.histogram_samples;
    bstats.num_histogram_samples = stats.histogram_samples;
    let files = segments.finish()?;
    index.finish()?;
    Tombstones::default().write(&dir.join("tombstones"))?;
    Ok((stats, bstats, files))
}

/// Keeps a merge to a share of one CPU: after each stretch of work it sleeps long enough that
/// work is that share of the time.
struct Pace {
    share: Option<f64>,
    since: std::time::Instant,
    ticks: u32,
}

impl Pace {
    /// Work between pauses.
    const STRETCH: std::time::Duration = std::time::Duration::from_millis(20);

    fn new(share: Option<f64>) -> Self {
        Pace {
            share: share.filter(|s| *s > 0.0 && *s < 1.0),
            since: std::time::Instant::now(),
            ticks: 0,
        }
    }

    /// Called once a series; looks at the clock every 64 calls.
    fn tick(&mut self) {
        let Some(share) = self.share else { return };
        self.ticks += 1;
        if !self.ticks.is_multiple_of(64) {
            return;
        }
        let worked = self.since.elapsed();
        if worked >= Self::STRETCH {
            std::thread::sleep(worked.mul_f64(1.0 / share - 1.0));
            self.since = std::time::Instant::now();
        }
    }
}

/// An input's symbol references mapped to the merged table's positions.
#[derive(Debug, Default)]
enum SymbolRemap {
    /// A v2 input: its references are positions, so the map is indexed by them.
    #[default]
    Empty,
    Positions(Vec<u32>),
    /// A v1 input: its references are file offsets, ascending with the symbols.
    Offsets(Vec<(u32, u32)>),
}

impl SymbolRemap {
    fn get(&self, r: u32) -> Option<u32> {
        match self {
            SymbolRemap::Empty => None,
            SymbolRemap::Positions(v) => v.get(r as usize).copied(),
            SymbolRemap::Offsets(v) => v.binary_search_by_key(&r, |p| p.0).ok().map(|i| v[i].1),
        }
    }

    fn push(&mut self, input_ref: u32, merged: u32, v2: bool) {
        match self {
            SymbolRemap::Empty if v2 => *self = SymbolRemap::Positions(vec![merged]),
            SymbolRemap::Empty => *self = SymbolRemap::Offsets(vec![(input_ref, merged)]),
            SymbolRemap::Positions(v) => v.push(merged),
            SymbolRemap::Offsets(v) => v.push((input_ref, merged)),
        }
    }
}

type SymbolIter<'a> = Box<dyn Iterator<Item = Result<(u32, &'a str)>> + 'a>;

/// The inputs' symbol tables merged in order, each symbol once; as it goes it maps each
/// input's references to the merged positions. A read error ends the iteration and is left
/// in `failed`.
struct MergedSymbols<'a> {
    iters: Vec<std::iter::Peekable<SymbolIter<'a>>>,
    v2: Vec<bool>,
    remaps: Vec<SymbolRemap>,
    failed: &'a mut Option<Error>,
    last: Option<&'a str>,
    /// Symbols emitted so far.
    emitted: u32,
}

impl<'a> MergedSymbols<'a> {
    fn new(blocks: &'a [Input], failed: &'a mut Option<Error>) -> Self {
        let iters = blocks
            .iter()
            .map(|b| {
                let it: SymbolIter<'a> =
                    Box::new(b.index.symbols_with_refs().map(|r| r.map_err(Error::from)));
                it.peekable()
            })
            .collect();
        MergedSymbols {
            iters,
            v2: blocks.iter().map(|b| b.index.version() >= 2).collect(),
            remaps: blocks.iter().map(|_| SymbolRemap::default()).collect(),
            failed,
            last: None,
            emitted: 0,
        }
    }

    /// Each input's map from its references to the merged table's positions.
    fn into_remaps(self) -> Vec<SymbolRemap> {
        self.remaps
    }
}

impl<'a> Iterator for MergedSymbols<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.failed.is_some() {
            return None;
        }
        loop {
            let mut best: Option<(usize, &'a str)> = None;
            for (i, it) in self.iters.iter_mut().enumerate() {
                match it.peek() {
                    None => {}
                    Some(Err(_)) => {
                        if let Some(Err(e)) = it.next() {
                            *self.failed = Some(e);
                        }
                        return None;
                    }
                    Some(Ok((_, s))) if best.is_none_or(|(_, b)| *s < b) => best = Some((i, s)),
                    Some(Ok(_)) => {}
                }
            }
            let (i, s) = best?;
            let Some(Ok((r, _))) = self.iters[i].next() else {
                unreachable!("peeked above");
            };
            // A table out of order would repeat or reorder symbols; the index writer
            // rejects the result, so only exact repeats are dropped here.
            if self.last == Some(s) {
                self.remaps[i].push(r, self.emitted - 1, self.v2[i]);
                continue;
            }
            self.remaps[i].push(r, self.emitted, self.v2[i]);
            self.emitted += 1;
            self.last = Some(s);
            return Some(s);
        }
    }
}

/// The chunks of one label set across the inputs.
#[derive(Default)]
struct SeriesMerge {
    /// (input, chunk meta), in input order then time order.
    chunks: Vec<(usize, ChunkMeta)>,
    /// Each contributing input with its series ref there and the series' deleted intervals.
    inputs: Vec<(usize, u32, Vec<Interval>)>,
    batches: Vec<SampleBatch>,
    merged: SampleBatch,
}

impl SeriesMerge {
    fn clear(&mut self) {
        self.chunks.clear();
        self.inputs.clear();
    }

    fn add(&mut self, input: usize, series_ref: u32, metas: &[ChunkMeta], deleted: &[Interval]) {
        self.chunks.extend(metas.iter().map(|m| (input, *m)));
        self.inputs.push((input, series_ref, deleted.to_vec()));
    }

    /// Whether chunks must be decoded: chunks of different inputs overlap, or a deletion
    /// touches a chunk.
    fn needs_rewrite(&mut self) -> bool {
        self.chunks
            .sort_by_key(|&(i, m)| (m.min_time, m.max_time, i));
        let overlap = self
            .chunks
            .windows(2)
            .any(|w| w[1].1.min_time <= w[0].1.max_time);
        let deleted = self.inputs.iter().any(|(i, _, ivs)| {
            ivs.iter().any(|iv| {
                self.chunks
                    .iter()
                    .any(|(ci, m)| ci == i && iv.mint <= m.max_time && iv.maxt >= m.min_time)
            })
        });
        overlap || deleted
    }

    /// Copies the chunks as they are; returns the samples they hold. Histogram chunks are
    /// walked to the end on the way, so one that does not decode stops the merge here.
    fn copy(
        &self,
        blocks: &mut [Input],
        out: &mut SegmentWriter,
        metas: &mut Vec<ChunkMeta>,
        stats: &mut MergeStats,
    ) -> Result<Written> {
        let mut written = Written::default();
        for &(i, m) in &self.chunks {
            let series_ref = self.series_ref_in(i);
            let b = &mut blocks[i];
            let (enc, data, crc) = match b.chunks.chunk(m.chunk_ref) {
                Ok(c) => c,
                Err(e) => return Err(series_error(b, series_ref, m.chunk_ref, &e)),
            };
            stats.bytes_read += data.len() as u64;
            if is_histogram(enc) {
                let n = match overlap::count_samples(enc, data) {
                    Ok(n) => n,
                    Err(e) => return Err(series_error(b, series_ref, m.chunk_ref, &e)),
                };
                written.histograms += n;
            } else {
                written.floats += match chunk_samples(enc, data) {
                    Ok(n) => n,
                    Err(e) => return Err(series_error(b, series_ref, m.chunk_ref, &e)),
                };
            }
            let chunk_ref = out.copy_chunk(enc, data, crc)?;
            metas.push(ChunkMeta { chunk_ref, ..m });
            stats.chunks_copied += 1;
        }
        Ok(written)
    }

    /// The series' ref in input `input`.
    fn series_ref_in(&self, input: usize) -> u32 {
        self.inputs
            .iter()
            .find(|(i, _, _)| *i == input)
            .map_or(0, |(_, r, _)| *r)
    }

    /// Whether any of the series' chunks holds native histograms (reads each chunk's
    /// encoding).
    fn has_histograms(&self, blocks: &mut [Input]) -> Result<bool> {
        for &(i, m) in &self.chunks {
            let series_ref = self.series_ref_in(i);
            let b = &mut blocks[i];
            match b.chunks.chunk(m.chunk_ref) {
                Ok((enc, _, _)) if is_histogram(enc) => return Ok(true),
                Ok(_) => {}
                Err(e) => return Err(series_error(b, series_ref, m.chunk_ref, &e)),
            }
        }
        Ok(false)
    }

    /// Merges a series chunk by chunk ([`overlap`]), as Prometheus's compactor merges one
    /// holding native histograms and Thanos's merges replicas under penalty deduplication:
    /// deletions applied chunk by chunk, chunks that overlap none kept as they are,
    /// overlapping ones joined and encoded again. Every chunk of the inputs is decoded and its
    /// histograms checked first, so a corrupt one is reported with its block, series and
    /// chunk.
    fn rewrite_by_chunks(
        &mut self,
        blocks: &mut [Input],
        dedup: Dedup,
        out: &mut SegmentWriter,
        metas: &mut Vec<ChunkMeta>,
        stats: &mut MergeStats,
    ) -> Result<Written> {
        let mut lists = Vec::with_capacity(self.inputs.len());
        for (i, series_ref, deleted) in &self.inputs {
            let b = &mut blocks[*i];
            let mut list = Vec::new();
            for &(_, m) in self.chunks.iter().filter(|(ci, _)| ci == i) {
                let fail = |b: &Input, e: &dyn std::fmt::Display| {
                    series_error(b, *series_ref, m.chunk_ref, e)
                };
                let (enc, data, _) = match b.chunks.chunk(m.chunk_ref) {
                    Ok(c) => c,
                    Err(e) => return Err(fail(b, &e)),
                };
                stats.bytes_read += data.len() as u64;
                if let Err(e) = check_chunk(enc, data) {
                    return Err(fail(b, &e));
                }
                let chunk = SeriesChunk {
                    encoding: enc,
                    min_time: m.min_time,
                    max_time: m.max_time,
                    data: data.to_vec(),
                };
                match overlap::apply_deletions(chunk, deleted) {
                    Ok(kept) => list.extend(kept),
                    Err(e) => return Err(fail(b, &e)),
                }
            }
            lists.push(list);
        }
        let merged = match dedup {
            Dedup::Chain => overlap::merge_series_chunks(lists),
            Dedup::Penalty => overlap::penalty_dedup_series_chunks(lists),
        };
        let merged = merged.map_err(|e| {
            let (i, r, _) = &self.inputs[0];
            Error::InvalidInput(format!(
                "series {} of blocks {}: merging its chunks: {e}",
                series_labels(&blocks[*i], *r),
                self.inputs
                    .iter()
                    .map(|(i, _, _)| blocks[*i].meta.ulid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let mut written = Written::default();
        for c in merged {
            let n = u64::from(u16::from_be_bytes([c.data[0], c.data[1]]));
            if is_histogram(c.encoding) {
                written.histograms += n;
            } else {
                written.floats += n;
            }
            let chunk_ref = out.write_chunk(c.encoding, &c.data)?;
            metas.push(ChunkMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk_ref,
            });
        }
        Ok(written)
    }

    /// Decodes each input's samples (deletions applied), merges them (equal timestamps once)
    /// and writes them in chunks of [`SAMPLES_PER_MERGED_CHUNK`]; returns the samples written.
    /// Series holding histograms, and every series under penalty deduplication, are merged
    /// chunk by chunk instead ([`SeriesMerge::rewrite_by_chunks`]).
    fn rewrite(
        &mut self,
        blocks: &mut [Input],
        dedup: Dedup,
        out: &mut SegmentWriter,
        metas: &mut Vec<ChunkMeta>,
        stats: &mut MergeStats,
    ) -> Result<Written> {
        if dedup == Dedup::Penalty || self.has_histograms(blocks)? {
            return self.rewrite_by_chunks(blocks, dedup, out, metas, stats);
        }
        let n = self.inputs.len();
        self.batches.resize_with(n, SampleBatch::default);
        for (k, &(i, series_ref, _)) in self.inputs.iter().enumerate() {
            let batch = &mut self.batches[k];
            batch.ts.clear();
            batch.val.clear();
            // Chunks of one input in time order; they do not overlap within a block.
            let b = &mut blocks[i];
            for &(ci, m) in self.chunks.iter().filter(|(ci, _)| *ci == i) {
                debug_assert_eq!(ci, i);
                let (enc, data, _) = b.chunks.chunk(m.chunk_ref)?;
                stats.bytes_read += data.len() as u64;
                if enc != Encoding::Xor as u8 {
                    return Err(series_error(
                        b,
                        series_ref,
                        m.chunk_ref,
                        &format!("encoding {enc} cannot be merged sample by sample"),
                    ));
                }
                if let Err(e) = decode_xor_into(data, batch) {
                    return Err(series_error(b, series_ref, m.chunk_ref, &e));
                }
            }
            apply_deletions(&self.inputs[k].2, &mut batch.ts, &mut batch.val);
            // A block whose own chunks overlap (written out of order) is put in time order,
            // a repeated timestamp kept once.
            if !batch.ts.is_sorted_by(|a, b| a < b) {
                let mut pairs: Vec<(i64, f64)> = batch
                    .ts
                    .iter()
                    .copied()
                    .zip(batch.val.iter().copied())
                    .collect();
                pairs.sort_by_key(|p| p.0);
                pairs.dedup_by_key(|p| p.0);
                (batch.ts, batch.val) = pairs.into_iter().unzip();
            }
        }
        chain_merge(&self.batches[..n], &mut self.merged);
        let (ts, val) = (&self.merged.ts, &self.merged.val);
        for start in (0..ts.len()).step_by(SAMPLES_PER_MERGED_CHUNK) {
            let end = (start + SAMPLES_PER_MERGED_CHUNK).min(ts.len());
            let mut app = XorAppender::new();
            for j in start..end {
                app.append(ts[j], val[j]);
            }
            let chunk_ref = out.write_chunk(Encoding::Xor as u8, app.bytes())?;
            metas.push(ChunkMeta {
                min_time: ts[start],
                max_time: ts[end - 1],
                chunk_ref,
            });
        }
        Ok(Written {
            floats: ts.len() as u64,
            histograms: 0,
        })
    }
}

/// Samples written for one series, by kind.
#[derive(Debug, Default, Clone, Copy)]
struct Written {
    floats: u64,
    histograms: u64,
}

fn is_histogram(enc: u8) -> bool {
    enc == Encoding::Histogram as u8 || enc == Encoding::FloatHistogram as u8
}

/// Decodes a chunk to the end and, for histogram chunks, checks every histogram as an
/// appender would take it.
fn check_chunk(enc: u8, data: &[u8]) -> std::result::Result<(), String> {
    for (t, v) in overlap::decode_chunk(enc, data).map_err(|e| e.to_string())? {
        let valid = match &v {
            overlap::Value::Float(_) => Ok(()),
            overlap::Value::Int(h) if h.is_stale() => Ok(()),
            overlap::Value::Int(h) => h.validate(),
            overlap::Value::FloatHist(h) if h.is_stale() => Ok(()),
            overlap::Value::FloatHist(h) => h.validate(),
        };
        valid.map_err(|e| format!("histogram at {t} ms: {e}"))?;
    }
    Ok(())
}

/// The labels of series `series_ref` of `b`, as an error message names them (its ref when
/// the index cannot say).
fn series_labels(b: &Input, series_ref: u32) -> String {
    let (mut labels, mut chunks) = (Vec::new(), Vec::new());
    match b.index.series(series_ref, &mut labels, &mut chunks) {
        Ok(()) => crate::labels::Labels::from_sorted(labels).to_string(),
        Err(_) => format!("ref {series_ref}"),
    }
}

/// A chunk of a series that cannot be read or merged, named by block, series and chunk.
fn series_error(
    b: &Input,
    series_ref: u32,
    chunk_ref: u64,
    reason: &(impl std::fmt::Display + ?Sized),
) -> Error {
    Error::InvalidInput(format!(
        "block {} ({}): series {}: chunk {chunk_ref:#x}: {reason}",
        b.meta.ulid,
        b.dir.display(),
        series_labels(b, series_ref)
    ))
}

/// Merges time-ordered batches into `out` in time order; at a timestamp several batches hold,
/// the earliest batch's sample is kept.
fn chain_merge(batches: &[SampleBatch], out: &mut SampleBatch) {
    out.ts.clear();
    out.val.clear();
    let mut pos = vec![0usize; batches.len()];
    loop {
        let mut best: Option<(usize, i64)> = None;
        for (k, b) in batches.iter().enumerate() {
            if let Some(&t) = b.ts.get(pos[k])
                && best.is_none_or(|(_, bt)| t < bt)
            {
                best = Some((k, t));
            }
        }
        let Some((k, t)) = best else { break };
        out.ts.push(t);
        out.val.push(batches[k].val[pos[k]]);
        for (j, b) in batches.iter().enumerate() {
            while b.ts.get(pos[j]) == Some(&t) {
                pos[j] += 1;
            }
        }
    }
}

/// Samples a chunk holds, as the block's stats count them: the sample count at the head of a
/// float or histogram chunk, the count aggregate's for a downsampled one.
pub(crate) fn chunk_samples(enc: u8, data: &[u8]) -> std::result::Result<u64, String> {
    let head = |d: &[u8]| {
        d.get(..2)
            .map(|b| u64::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| "chunk shorter than its sample count".to_string())
    };
    if enc == Encoding::Aggr as u8 {
        let sub = AggrChunk::new(data)
            .get(AggrType::Count)
            .map_err(|e| e.to_string())?;
        head(sub.data)
    } else {
        head(data)
    }
}

/// The merged block's meta.json: the inputs' envelope, level one past the highest, their
/// sources, the inputs as parents.
fn merged_meta(
    blocks: &[Input],
    ulid: Ulid,
    stats: BlockStats,
    opts: &MergeOptions,
    dir: &Path,
    files: &[(String, u64)],
) -> Result<BlockMeta> {
    let mut sources: Vec<Ulid> = blocks
        .iter()
        .flat_map(|b| b.meta.compaction.sources.iter().copied())
        .collect();
    sources.sort();
    sources.dedup();
    let mut hints: Vec<String> = Vec::new();
    let thanos = match &opts.thanos {
        None => None,
        Some(t) => {
            let mut t = t.clone();
            t.files = ThanosFile::block_files(dir, files).map_err(|source| Error::Io {
                path: dir.join("index"),
                source,
            })?;
            t.segment_files.clear();
            t.upload_time = None;
            t.index_stats = None;
            Some(t)
        }
    };
    if blocks.iter().all(|b| {
        b.meta
            .compaction
            .hints
            .iter()
            .any(|h| h == "from-out-of-order")
    }) {
        hints.push("from-out-of-order".into());
    }
    Ok(BlockMeta {
        ulid,
        min_time: blocks.iter().map(|b| b.meta.min_time).min().unwrap_or(0),
        max_time: blocks.iter().map(|b| b.meta.max_time).max().unwrap_or(0),
        stats,
        compaction: Compaction {
            level: blocks
                .iter()
                .map(|b| b.meta.compaction.level)
                .max()
                .unwrap_or(0)
                + 1,
            sources,
            parents: blocks
                .iter()
                .map(|b| BlockDesc {
                    ulid: b.meta.ulid,
                    min_time: b.meta.min_time,
                    max_time: b.meta.max_time,
                })
                .collect(),
            hints,
            ..Default::default()
        },
        version: 1,
        thanos,
    })
}

/// Chunk records of one block read through a window: a merge reads each block's chunks in
/// ref order, so one plain read fills the window for many chunks.
struct ChunkWindow {
    /// Each segment file with its path and length.
    files: Vec<(PathBuf, File, u64)>,
    buf: Vec<u8>,
    window: usize,
    /// Segment index and file offset of `buf[0]`.
    seg: u32,
    start: u64,
}

/// The smallest chunk record: length, encoding, CRC.
const MIN_RECORD: usize = 6;

impl ChunkWindow {
    fn open(chunks_dir: &Path, window: usize) -> Result<Self> {
        let files = segment_paths(chunks_dir)?
            .into_iter()
            .map(|p| open_segment_file(&p).map(|(f, len)| (p, f, len)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(ChunkWindow {
            files,
            buf: Vec::new(),
            window: window.max(4096),
            seg: u32::MAX,
            start: 0,
        })
    }

    /// Whether the window holds `len` bytes from `off` of segment `seg`.
    fn holds(&self, seg: u32, off: u64, len: usize) -> bool {
        seg == self.seg
            && off >= self.start
            && off + len as u64 <= self.start + self.buf.len() as u64
    }

    /// The encoding, payload and CRC of the chunk at `chunk_ref`, CRC checked.
    fn chunk(&mut self, chunk_ref: u64) -> Result<(u8, &[u8], u32)> {
        let (seg, off) = split_ref(chunk_ref);
        let off = u64::from(off);
        if !self.holds(seg, off, MIN_RECORD) {
            self.fill(seg, off, self.window)?;
        }
        let at = (off - self.start) as usize;
        // A record longer than the rest of the window is read again whole (never more than the
        // file holds, whatever a corrupt length field says).
        if let Ok((len, n)) = crate::encoding::read_uvarint(&self.buf[at..]) {
            let need = (n as u64 + 1).saturating_add(len).saturating_add(4);
            if !self.holds(seg, off, usize::try_from(need).unwrap_or(usize::MAX)) {
                let fit = need.min(self.files[seg as usize].2.saturating_sub(off));
                self.fill(seg, off, (fit as usize).max(self.window))?;
            }
        }
        let at = (off - self.start) as usize;
        let path = &self.files[seg as usize].0;
        match read_chunk_record(&self.buf[at..], off, path)? {
            RecordRead::Chunk {
                encoding,
                data,
                crc,
            } => Ok((encoding, data, crc)),
            RecordRead::NeedBytes(_) => Err(Error::InvalidInput(format!(
                "{}: chunk record at offset {off} runs past the end of the file",
                path.display()
            ))),
        }
    }

    /// Reads up to `len` bytes of segment `seg` from `off` into the window (fewer at the end of
    /// the file).
    fn fill(&mut self, seg: u32, off: u64, len: usize) -> Result<()> {
        let Some((path, file, size)) = self.files.get(seg as usize) else {
            return Err(Error::InvalidInput(format!(
                "chunk ref names segment {} but the block has {}",
                u64::from(seg) + 1,
                self.files.len()
            )));
        };
        let len = len.min(size.saturating_sub(off) as usize);
        self.buf.resize(len, 0);
        let mut got = 0;
        while got < len {
            match file.read_at(&mut self.buf[got..], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        self.buf.truncate(got);
        self.seg = seg;
        self.start = off;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
