//! Downsamples a whole block on local disk, as Thanos's `downsample.Downsample` does: every
//! series (in index order) is aggregated on its own; the new block keeps the source's symbol
//! table, time range, compaction history and external labels, gets a new ULID, the target
//! resolution in `thanos.downsample.resolution` and `thanos.source = "compactor"`.
//!
//! Tombstones are not applied (Thanos never reads them; deletions are block rewrites there).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ulid::Ulid;

use super::aggregate::{AggrChunkOut, downsample_aggr, downsample_raw};
use super::counter::{ChunkSamples, expand_into};
use super::histogram::{
    downsample_aggr_histograms, downsample_raw_histograms, is_histogram_aggregate,
};
use super::{DownsampleError, RES_1H, RES_5M, RES_RAW};
use crate::block::meta::ThanosFile;
use crate::block::{Block, BlockMeta, SegmentWriter, ThanosMeta, Tombstones};
use crate::chunk::{
    AggrChunk, Encoding, FloatHistogramIterator, HistogramIterator, SampleBatch, decode_xor_into,
};
use crate::histogram::FloatHistogram;
use crate::index::{ChunkMeta, IndexWriter};
use crate::labels::{Label, Labels};

/// What one downsampling run did.
#[derive(Debug, Clone, PartialEq)]
pub struct DownsampleStats {
    /// The new block's meta.json.
    pub meta: BlockMeta,
    /// The new block's directory.
    pub dir: PathBuf,
    /// Series read from the source block.
    pub series_in: u64,
    /// Samples (raw samples, or aggregate windows by their count) read.
    pub samples_in: u64,
    /// Series written (series whose samples were all NaN are dropped).
    pub series_out: u64,
    /// Wall time of the run, seconds.
    pub seconds: f64,
}

/// Downsamples the block in `src` to `resolution` ms (5m from raw, 1h from raw or 5m) into a
/// new block under `dst_parent`, built in a temporary directory and renamed into place. One
/// thread does the work; [`downsample_block_with`] spreads it.
pub fn downsample_block(
    src: &Path,
    dst_parent: &Path,
    resolution: i64,
) -> Result<DownsampleStats, DownsampleError> {
    downsample_block_with(src, dst_parent, resolution, 1, &|_, _| {})
}

/// [`downsample_block`] with the series downsampled on `threads` workers (the block is
/// written in the same order whatever the count), calling `progress(series done, series in
/// all)` as it goes (every 1024 series or so, and at the end).
pub fn downsample_block_with(
    src: &Path,
    dst_parent: &Path,
    resolution: i64,
    threads: usize,
    progress: &dyn Fn(u64, u64),
) -> Result<DownsampleStats, DownsampleError> {
    let start = Instant::now();
    let block = Block::open(src)?;
    let src_meta = block.meta().clone();
    let from = src_meta
        .thanos
        .as_ref()
        .map_or(RES_RAW, |t| t.downsample.resolution);
    let valid_from = [RES_RAW, RES_5M].contains(&from);
    if !valid_from || ![RES_5M, RES_1H].contains(&resolution) || from >= resolution {
        return Err(DownsampleError::InvalidResolution {
            from,
            to: resolution,
        });
    }

    let ulid = Ulid::new();
    let tmp = dst_parent.join(format!("{ulid}.tmp-for-creation"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownsampleError::Io { path, source }
    };
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let result = write_block(&block, &tmp, (from, resolution), threads, progress);
    let (stats, files) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };

    let mut meta = src_meta;
    meta.ulid = ulid;
    meta.stats.num_series = stats.series_out;
    meta.stats.num_chunks = stats.chunks_out;
    // Thanos counts an aggregate chunk's samples by its count sub-chunk.
    meta.stats.num_samples = stats.samples_out;
    let mut thanos = meta.thanos.take().unwrap_or_else(|| ThanosMeta {
        version: 1,
        ..ThanosMeta::default()
    });
    thanos.downsample.resolution = resolution;
    thanos.source = "compactor".into();
    thanos.segment_files = files
        .iter()
        .filter_map(|(p, _)| p.strip_prefix("chunks/").map(str::to_string))
        .collect();
    thanos.files = ThanosFile::block_files(&tmp, &files).map_err(io(&tmp.join("index")))?;
    thanos.upload_time = None;
    thanos.index_stats = None;
    meta.thanos = Some(thanos);
    meta.write(&tmp)?;
    let dst = dst_parent.join(ulid.to_string());
    std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    crate::block::sync_dir(dst_parent)?;
    Ok(DownsampleStats {
        meta,
        dir: dst,
        series_in: stats.series_in,
        samples_in: stats.samples_in,
        series_out: stats.series_out,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[derive(Debug, Default)]
struct WriteStats {
    series_in: u64,
    samples_in: u64,
    series_out: u64,
    chunks_out: u64,
    samples_out: u64,
}

/// Series downsampled together: a worker takes one batch at a time.
const SERIES_PER_BATCH: usize = 256;
/// Batches the workers may run ahead of the writer, per worker: what the writer holds waiting
/// for an earlier batch stays bounded.
const BATCHES_AHEAD_PER_WORKER: usize = 4;
/// Series written between two releases of the source block's mapped pages.
const RELEASE_EVERY: u64 = 8 * 1024;

/// One series of the output: its labels and aggregate chunks.
struct SeriesOut {
    labels: Vec<Label>,
    chunks: Vec<AggrChunkOut>,
}

/// What a worker made of one batch of series.
struct BatchOut {
    series: Vec<SeriesOut>,
    samples_in: u64,
}

/// A worker's buffers, reused from series to series.
#[derive(Default)]
struct Scratch {
    labels: Vec<Label>,
    metas: Vec<ChunkMeta>,
    samples: ChunkSamples,
    decoded: SampleBatch,
}

/// Writes chunks, index and tombstones of the downsampled block into `dir`; returns the
/// counts and the chunk files with their sizes. Series are downsampled in batches on
/// `threads` workers and written in index order by the calling thread.
fn write_block(
    block: &Block,
    dir: &Path,
    (from, to): (i64, i64),
    threads: usize,
    progress: &dyn Fn(u64, u64),
) -> Result<(WriteStats, Vec<(String, u64)>), DownsampleError> {
    let index = block.index();
    let mut segments = SegmentWriter::create(&dir.join("chunks"))?;
    let mut iw = IndexWriter::create(&dir.join("index"))?;
    let symbols: Vec<&str> = index.symbols().collect::<Result<_, _>>()?;
    iw.add_symbols(symbols.iter().copied())?;
    drop(symbols);

    let mut refs = Vec::new();
    index.all_postings(&mut refs)?;
    let total = refs.len() as u64;
    let mut stats = WriteStats::default();
    let mut out_metas = Vec::new();
    let mut write = |batch: BatchOut| -> Result<(), DownsampleError> {
        let before = stats.series_in;
        stats.samples_in += batch.samples_in;
        stats.series_in += batch.series.len() as u64;
        for s in batch.series {
            out_metas.clear();
            for c in &s.chunks {
                let chunk_ref = segments.write_chunk(Encoding::Aggr as u8, &c.data)?;
                out_metas.push(ChunkMeta {
                    min_time: c.min_time,
                    max_time: c.max_time,
                    chunk_ref,
                });
                stats.samples_out += AggrChunk::new(&c.data).num_samples() as u64;
            }
            stats.chunks_out += s.chunks.len() as u64;
            stats.series_out += u64::from(!s.chunks.is_empty());
            if !s.chunks.is_empty() {
                iw.add_series(&Labels::from_sorted(s.labels), &out_metas)?;
            }
        }
        // The pages of the source walked so far are let go now and then, so what stays
        // resident is about the last stretch whatever the block's size.
        if stats.series_in / RELEASE_EVERY != before / RELEASE_EVERY {
            block.release_pages();
        }
        if stats.series_in / 1024 != before / 1024 {
            progress(stats.series_in, total);
        }
        Ok(())
    };
    let batches: Vec<&[u32]> = refs.chunks(SERIES_PER_BATCH).collect();
    if threads <= 1 || batches.len() <= 1 {
        let mut scratch = Scratch::default();
        for b in &batches {
            write(downsample_batch(block, b, from, to, &mut scratch)?)?;
        }
    } else {
        in_parallel(&batches, threads, &mut write, |b, scratch| {
            downsample_batch(block, b, from, to, scratch)
        })?;
    }
    let files = segments.finish()?;
    iw.finish()?;
    Tombstones::default().write(&dir.join("tombstones"))?;
    progress(total, total);
    Ok((stats, files))
}

/// Runs `work` over `batches` on `threads` workers and hands the results to `write` in batch
/// order on the calling thread. Workers stay at most a few batches each ahead of the writer;
/// the first error (from a worker or from `write`) stops every worker and is returned.
fn in_parallel<'b>(
    batches: &[&'b [u32]],
    threads: usize,
    write: &mut dyn FnMut(BatchOut) -> Result<(), DownsampleError>,
    work: impl Fn(&'b [u32], &mut Scratch) -> Result<BatchOut, DownsampleError> + Sync,
) -> Result<(), DownsampleError> {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
    use std::sync::{Condvar, Mutex};

    let ahead = threads * BATCHES_AHEAD_PER_WORKER;
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // Batches written so far; workers wait on it before taking a batch too far ahead.
    let written = (Mutex::new(0usize), Condvar::new());
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Result<BatchOut, DownsampleError>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop, written, work) = (&next, &stop, &written, &work);
            scope.spawn(move || {
                let mut scratch = Scratch::default();
                loop {
                    let i = next.fetch_add(1, Relaxed);
                    if i >= batches.len() {
                        return;
                    }
                    {
                        let mut done = written.0.lock().unwrap_or_else(|e| e.into_inner());
                        while i >= *done + ahead && !stop.load(Relaxed) {
                            done = written.1.wait(done).unwrap_or_else(|e| e.into_inner());
                        }
                    }
                    if stop.load(Relaxed) {
                        return;
                    }
                    let r = work(batches[i], &mut scratch);
                    let failed = r.is_err();
                    if tx.send((i, r)).is_err() || failed {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut done = 0usize;
        let mut result = Ok(());
        for (i, r) in rx.iter() {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&done) {
                if let Err(e) = r.and_then(&mut *write) {
                    result = Err(e);
                    break;
                }
                done += 1;
            }
            *written.0.lock().unwrap_or_else(|e| e.into_inner()) = done;
            written.1.notify_all();
            if result.is_err() {
                break;
            }
        }
        if result.is_err() {
            stop.store(true, Relaxed);
            written.1.notify_all();
        }
        result
    })
}

/// Downsamples the series `refs` of `block` from resolution `from` to `to`.
fn downsample_batch(
    block: &Block,
    refs: &[u32],
    from: i64,
    to: i64,
    scratch: &mut Scratch,
) -> Result<BatchOut, DownsampleError> {
    let mut out = BatchOut {
        series: Vec::with_capacity(refs.len()),
        samples_in: 0,
    };
    for &r in refs {
        block.series(r, &mut scratch.labels, &mut scratch.metas)?;
        let lset = Labels::from_sorted(std::mem::take(&mut scratch.labels));
        for w in scratch.metas.windows(2) {
            if w[0].max_time >= w[1].min_time {
                return Err(DownsampleError::OverlappingChunks {
                    series: lset.to_string(),
                    detail: format!(
                        "[{}, {}] and [{}, {}]",
                        w[0].min_time, w[0].max_time, w[1].min_time, w[1].max_time
                    ),
                });
            }
        }
        let chunks = if from == RES_RAW {
            downsample_series_raw(block, &lset, to, scratch, &mut out.samples_in)?
        } else {
            downsample_series_aggr(block, &lset, &scratch.metas, from, to, &mut out.samples_in)?
        };
        if chunks.is_empty() {
            tracing::warn!(series = %lset, "downsampling left no chunks; series skipped");
        }
        out.series.push(SeriesOut {
            labels: lset.into_vec(),
            chunks,
        });
    }
    Ok(out)
}

/// Downsamples one raw series: its chunks in runs of float chunks and runs of histogram
/// chunks, each run aggregated on its own (Thanos starts a new output chunk where the series
/// turns from floats to histograms or back).
fn downsample_series_raw(
    block: &Block,
    lset: &Labels,
    to: i64,
    scratch: &mut Scratch,
    samples_in: &mut u64,
) -> Result<Vec<AggrChunkOut>, DownsampleError> {
    let mut out = Vec::new();
    let mut hists: Vec<(i64, FloatHistogram)> = Vec::new();
    let mut run_is_hist = None;
    let Scratch {
        metas,
        samples,
        decoded,
        ..
    } = scratch;
    samples.clear();
    let flush = |hist: bool,
                 samples: &mut ChunkSamples,
                 hists: &mut Vec<(i64, FloatHistogram)>,
                 out: &mut Vec<AggrChunkOut>,
                 samples_in: &mut u64|
     -> Result<(), DownsampleError> {
        if hist {
            *samples_in += hists.len() as u64;
            out.extend(downsample_raw_histograms(hists, to)?);
            hists.clear();
        } else {
            *samples_in += samples.len() as u64;
            out.extend(downsample_raw(samples, to)?);
            samples.clear();
        }
        Ok(())
    };
    for m in metas.iter() {
        let (enc, data) = block.chunks().chunk(m.chunk_ref)?;
        let hist = enc == Encoding::Histogram as u8 || enc == Encoding::FloatHistogram as u8;
        if let Some(prev) = run_is_hist
            && prev != hist
        {
            flush(prev, samples, &mut hists, &mut out, samples_in)?;
        }
        run_is_hist = Some(hist);
        if hist {
            expand_histograms(lset, enc, data, &mut hists)?;
        } else {
            expand_xor(lset, enc, data, decoded, samples)?;
        }
    }
    if let Some(hist) = run_is_hist {
        flush(hist, samples, &mut hists, &mut out, samples_in)?;
    }
    Ok(out)
}

/// Appends a histogram chunk's histograms as floats, as Thanos expands them: stale markers
/// left out, and samples going back in time (or before 0) skipped.
fn expand_histograms(
    lset: &Labels,
    enc: u8,
    data: &[u8],
    out: &mut Vec<(i64, FloatHistogram)>,
) -> Result<(), DownsampleError> {
    let err = |source| DownsampleError::Chunk {
        series: lset.to_string(),
        source,
    };
    let mut last = 0i64;
    let mut push = |t: i64, h: FloatHistogram| {
        if !h.is_stale() && t >= last {
            out.push((t, h));
            last = t;
        }
    };
    if enc == Encoding::Histogram as u8 {
        let mut it = HistogramIterator::new(data).map_err(err)?;
        while let Some((t, h)) = it.next().map_err(err)? {
            push(t, h.to_float());
        }
    } else {
        let mut it = FloatHistogramIterator::new(data).map_err(err)?;
        while let Some((t, h)) = it.next().map_err(err)? {
            push(t, h);
        }
    }
    Ok(())
}

/// Appends a raw chunk's samples, expanded as Thanos expands them; `decoded` is scratch.
fn expand_xor(
    lset: &Labels,
    enc: u8,
    data: &[u8],
    decoded: &mut SampleBatch,
    out: &mut ChunkSamples,
) -> Result<(), DownsampleError> {
    if enc != Encoding::Xor as u8 {
        return Err(DownsampleError::UnsupportedEncoding {
            series: lset.to_string(),
            encoding: enc,
        });
    }
    decoded.ts.clear();
    decoded.val.clear();
    decode_xor_into(data, decoded).map_err(|source| DownsampleError::Chunk {
        series: lset.to_string(),
        source,
    })?;
    expand_into(
        decoded.ts.iter().copied().zip(decoded.val.iter().copied()),
        out,
    );
    Ok(())
}

/// Downsamples one series of an already downsampled block. Raw chunks found there (Thanos has
/// seen them in downsampled blocks) are first aggregated to 5m; empty ones are skipped.
fn downsample_series_aggr(
    block: &Block,
    lset: &Labels,
    metas: &[ChunkMeta],
    from: i64,
    to: i64,
    samples_in: &mut u64,
) -> Result<Vec<AggrChunkOut>, DownsampleError> {
    if metas.is_empty() {
        return Ok(Vec::new());
    }
    // Owned bytes for chunks made from raw ones; borrowed for the rest.
    let mut converted: Vec<Vec<u8>> = Vec::new();
    let mut order: Vec<Result<&[u8], usize>> = Vec::with_capacity(metas.len());
    let mut times: Vec<(i64, i64)> = Vec::with_capacity(metas.len());
    for m in metas {
        let (enc, data) = block.chunks().chunk(m.chunk_ref)?;
        if enc == Encoding::Aggr as u8 {
            order.push(Ok(data));
            times.push((m.min_time, m.max_time));
            continue;
        }
        let mut raw = ChunkSamples::new();
        expand_xor(lset, enc, data, &mut SampleBatch::new(), &mut raw)?;
        if raw.is_empty() {
            tracing::warn!(series = %lset, "empty raw chunk in a downsampled block skipped");
            continue;
        }
        for c in downsample_raw(&raw, RES_5M)? {
            order.push(Err(converted.len()));
            times.push((c.min_time, c.max_time));
            converted.push(c.data);
        }
    }
    let views: Vec<AggrChunk<'_>> = order
        .iter()
        .map(|o| match o {
            Ok(d) => AggrChunk::new(d),
            Err(i) => AggrChunk::new(&converted[*i]),
        })
        .collect();
    *samples_in += views.iter().map(|v| v.num_samples() as u64).sum::<u64>();
    // Runs of float aggregates and runs of histogram aggregates are downsampled apart, each
    // over its own time span, as Thanos does.
    let mut out = Vec::new();
    let mut start = 0;
    for end in 1..=views.len() {
        let hist = is_histogram_aggregate(&views[start]);
        if end < views.len() && is_histogram_aggregate(&views[end]) == hist {
            continue;
        }
        let (run, mint, maxt) = (&views[start..end], times[start].0, times[end - 1].1);
        out.extend(if hist {
            downsample_aggr_histograms(run, mint, maxt, from, to)?
        } else {
            downsample_aggr(run, mint, maxt, from, to)?
        });
        start = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockWriter, CutOptions};
    use crate::chunk::AggrType;
    use crate::downsample::aggregate::xor_samples;

    #[test]
    fn every_thread_count_writes_the_same_block() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(tmp.path(), CutOptions::default()).unwrap();
        let src_id = w.ulid();
        // Enough series for many batches; some all NaN (dropped), steps and lengths vary.
        for i in 0..1500i64 {
            let step = 15_000 * (1 + i % 4);
            let n = 40 + (i * 7) % 900;
            let ts: Vec<i64> = (0..n).map(|k| k * step + i).collect();
            let val: Vec<f64> = ts
                .iter()
                .map(|&t| {
                    if i % 97 == 0 {
                        f64::NAN
                    } else {
                        (t % 7_000) as f64
                    }
                })
                .collect();
            let name = format!("m{:02}", i / 100);
            let id = format!("{i:05}");
            let lset = Labels::from_pairs([("__name__", name.as_str()), ("id", id.as_str())]);
            w.add_series(&lset, &ts, &val).unwrap();
        }
        w.finish(None).unwrap();
        let src = tmp.path().join(src_id.to_string());
        let mut made = Vec::new();
        for threads in [1, 2, 5] {
            let out = tmp.path().join(format!("out{threads}"));
            std::fs::create_dir_all(&out).unwrap();
            let calls = std::cell::Cell::new(0);
            let s = downsample_block_with(&src, &out, RES_5M, threads, &|_, _| {
                calls.set(calls.get() + 1)
            })
            .unwrap();
            assert!(calls.get() > 1);
            assert_eq!(s.series_in, 1500);
            assert_eq!(s.series_out, 1500 - 16);
            let read = |f: &str| std::fs::read(s.dir.join(f)).unwrap();
            made.push((s.meta.stats.clone(), read("index"), read("chunks/000001")));
        }
        assert!(made.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn a_failed_batch_stops_the_workers_and_its_error_is_returned() {
        let refs: Vec<u32> = (0..4000).collect();
        let batches: Vec<&[u32]> = refs.chunks(10).collect();
        let mut seen = Vec::new();
        let r = in_parallel(
            &batches,
            3,
            &mut |b| {
                seen.push(b.samples_in);
                Ok(())
            },
            |b, _| {
                if b[0] == 1230 {
                    return Err(DownsampleError::InvalidResolution { from: 1, to: 2 });
                }
                Ok(BatchOut {
                    series: Vec::new(),
                    samples_in: u64::from(b[0]),
                })
            },
        );
        assert!(matches!(
            r,
            Err(DownsampleError::InvalidResolution { from: 1, to: 2 })
        ));
        // Everything before the failed batch was written, in order, and nothing after it.
        assert_eq!(seen, (0..123).map(|i| i * 10).collect::<Vec<u64>>());

        // An error from the writer stops the workers as well.
        let mut n = 0;
        let r = in_parallel(
            &batches,
            2,
            &mut |_| {
                n += 1;
                if n == 7 {
                    return Err(DownsampleError::InvalidResolution { from: 3, to: 4 });
                }
                Ok(())
            },
            |_, _| {
                Ok(BatchOut {
                    series: Vec::new(),
                    samples_in: 0,
                })
            },
        );
        assert!(matches!(
            r,
            Err(DownsampleError::InvalidResolution { from: 3, to: 4 })
        ));
        assert_eq!(n, 7);
    }

    #[test]
    fn a_raw_block_becomes_a_5m_then_a_1h_block_with_thanos_meta() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = BlockWriter::create(tmp.path(), CutOptions::default()).unwrap();
        let src_id = w.ulid();
        for (name, step) in [("a", 15_000i64), ("b", 60_000)] {
            let ts: Vec<i64> = (0..(4 * 3_600_000 / step)).map(|i| i * step).collect();
            let val: Vec<f64> = ts.iter().map(|&t| (t / step) as f64).collect();
            w.add_series(
                &Labels::from_pairs([("__name__", "m"), ("s", name)]),
                &ts,
                &val,
            )
            .unwrap();
        }
        let thanos = ThanosMeta {
            version: 1,
            labels: [("cluster".to_string(), "eu1".to_string())].into(),
            source: "sidecar".into(),
            ..ThanosMeta::default()
        };
        w.finish(Some(thanos)).unwrap();
        let src = tmp.path().join(src_id.to_string());
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();

        let s5 = downsample_block(&src, &out, RES_5M).unwrap();
        assert_eq!((s5.series_in, s5.series_out), (2, 2));
        assert_eq!(s5.samples_in, 960 + 240);
        let m = &s5.meta;
        let t = m.thanos.as_ref().unwrap();
        assert_eq!(t.downsample.resolution, RES_5M);
        assert_eq!(t.source, "compactor");
        assert_eq!(t.labels["cluster"], "eu1");
        assert_eq!(m.compaction.sources, vec![src_id]);
        assert_eq!((m.min_time, m.max_time), (0, 4 * 3_600_000 - 15_000 + 1));
        assert_eq!(m.stats.num_samples, 2 * 48);
        let b5 = Block::open(&s5.dir).unwrap();
        assert_eq!(BlockMeta::read(&s5.dir).unwrap(), *m);

        // Every window of series "a" counts 20 raw samples.
        let mut refs = Vec::new();
        b5.index().all_postings(&mut refs).unwrap();
        let (mut l, mut c) = (Vec::new(), Vec::new());
        b5.series(refs[0], &mut l, &mut c).unwrap();
        let mut counts = Vec::new();
        for meta in &c {
            let (enc, data) = b5.chunks().chunk(meta.chunk_ref).unwrap();
            assert_eq!(enc, 0xFF);
            let ac = AggrChunk::new(data);
            counts.extend(
                xor_samples(ac.get_xor(AggrType::Count).unwrap(), AggrType::Count).unwrap(),
            );
        }
        assert_eq!(counts.len(), 48);
        assert!(counts.iter().all(|s| s.1 == 20.0));

        let s1 = downsample_block(&s5.dir, &out, RES_1H).unwrap();
        assert_eq!(
            s1.meta.thanos.as_ref().unwrap().downsample.resolution,
            RES_1H
        );
        assert_eq!(s1.meta.stats.num_samples, 2 * 4);
        assert!(matches!(
            downsample_block(&s1.dir, &out, RES_5M),
            Err(DownsampleError::InvalidResolution {
                from: RES_1H,
                to: RES_5M
            })
        ));
        assert!(matches!(
            downsample_block(&src, &out, 1234),
            Err(DownsampleError::InvalidResolution { .. })
        ));
        // No temporary directories are left behind.
        let left: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
            .collect();
        assert!(left.is_empty());
    }
}
