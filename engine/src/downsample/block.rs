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
use crate::chunk::{AggrChunk, Encoding, FloatHistogramIterator, HistogramIterator, XorIterator};
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
/// new block under `dst_parent`, built in a temporary directory and renamed into place.
pub fn downsample_block(
    src: &Path,
    dst_parent: &Path,
    resolution: i64,
) -> Result<DownsampleStats, DownsampleError> {
    downsample_block_with_progress(src, dst_parent, resolution, &|_, _| {})
}

/// [`downsample_block`], calling `progress(series done, series in all)` as it goes (every
/// 1024 series and at the end).
pub fn downsample_block_with_progress(
    src: &Path,
    dst_parent: &Path,
    resolution: i64,
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
    let result = write_block(&block, &tmp, from, resolution, progress);
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

/// Writes chunks, index and tombstones of the downsampled block into `dir`; returns the
/// counts and the chunk files with their sizes.
fn write_block(
    block: &Block,
    dir: &Path,
    from: i64,
    to: i64,
    progress: &dyn Fn(u64, u64),
) -> Result<(WriteStats, Vec<(String, u64)>), DownsampleError> {
    let index = block.index();
    let mut segments = SegmentWriter::create(&dir.join("chunks"))?;
    let mut iw = IndexWriter::create(&dir.join("index"))?;
    let symbols: Vec<&str> = index.symbols().collect::<Result<_, _>>()?;
    iw.add_symbols(symbols.iter().copied())?;

    let mut refs = Vec::new();
    index.all_postings(&mut refs)?;
    let mut stats = WriteStats::default();
    let (mut labels, mut metas) = (Vec::<Label>::new(), Vec::<ChunkMeta>::new());
    let mut samples = ChunkSamples::new();
    let mut out_metas = Vec::new();
    let total = refs.len() as u64;
    for r in refs {
        block.series(r, &mut labels, &mut metas)?;
        stats.series_in += 1;
        if stats.series_in % 1024 == 0 {
            progress(stats.series_in, total);
        }
        let lset = Labels::from_sorted(std::mem::take(&mut labels));
        for w in metas.windows(2) {
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
            downsample_series_raw(block, &lset, &metas, to, &mut samples, &mut stats)?
        } else {
            downsample_series_aggr(block, &lset, &metas, from, to, &mut stats)?
        };
        labels = lset.into_vec();
        if chunks.is_empty() {
            tracing::warn!(series = %Labels::from_sorted(labels.clone()), "downsampling left no chunks; series skipped");
            continue;
        }
        out_metas.clear();
        for c in &chunks {
            let chunk_ref = segments.write_chunk(Encoding::Aggr as u8, &c.data)?;
            out_metas.push(ChunkMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk_ref,
            });
            stats.samples_out += AggrChunk::new(&c.data).num_samples() as u64;
        }
        stats.chunks_out += chunks.len() as u64;
        stats.series_out += 1;
        iw.add_series(&Labels::from_sorted(labels.clone()), &out_metas)?;
    }
    let files = segments.finish()?;
    iw.finish()?;
    Tombstones::default().write(&dir.join("tombstones"))?;
    progress(total, total);
    Ok((stats, files))
}

/// Downsamples one raw series: its chunks in runs of float chunks and runs of histogram
/// chunks, each run aggregated on its own (Thanos starts a new output chunk where the series
/// turns from floats to histograms or back).
fn downsample_series_raw(
    block: &Block,
    lset: &Labels,
    metas: &[ChunkMeta],
    to: i64,
    samples: &mut ChunkSamples,
    stats: &mut WriteStats,
) -> Result<Vec<AggrChunkOut>, DownsampleError> {
    let mut out = Vec::new();
    let mut hists: Vec<(i64, FloatHistogram)> = Vec::new();
    let mut run_is_hist = None;
    samples.clear();
    let flush = |hist: bool,
                 samples: &mut ChunkSamples,
                 hists: &mut Vec<(i64, FloatHistogram)>,
                 out: &mut Vec<AggrChunkOut>,
                 stats: &mut WriteStats|
     -> Result<(), DownsampleError> {
        if hist {
            stats.samples_in += hists.len() as u64;
            out.extend(downsample_raw_histograms(hists, to)?);
            hists.clear();
        } else {
            stats.samples_in += samples.len() as u64;
            out.extend(downsample_raw(samples, to)?);
            samples.clear();
        }
        Ok(())
    };
    for m in metas {
        let (enc, data) = block.chunks().chunk(m.chunk_ref)?;
        let hist = enc == Encoding::Histogram as u8 || enc == Encoding::FloatHistogram as u8;
        if let Some(prev) = run_is_hist
            && prev != hist
        {
            flush(prev, samples, &mut hists, &mut out, stats)?;
        }
        run_is_hist = Some(hist);
        if hist {
            expand_histograms(lset, enc, data, &mut hists)?;
        } else {
            expand_xor(lset, enc, data, samples)?;
        }
    }
    if let Some(hist) = run_is_hist {
        flush(hist, samples, &mut hists, &mut out, stats)?;
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

/// Appends a raw chunk's samples, expanded as Thanos expands them.
fn expand_xor(
    lset: &Labels,
    enc: u8,
    data: &[u8],
    out: &mut ChunkSamples,
) -> Result<(), DownsampleError> {
    if enc != Encoding::Xor as u8 {
        return Err(DownsampleError::UnsupportedEncoding {
            series: lset.to_string(),
            encoding: enc,
        });
    }
    let err = |source| DownsampleError::Chunk {
        series: lset.to_string(),
        source,
    };
    let mut it = XorIterator::new(data).map_err(err)?;
    let mut decoded = Vec::with_capacity(it.num_samples().min(data.len() * 8));
    while let Some(s) = it.next().map_err(err)? {
        decoded.push(s);
    }
    expand_into(decoded.into_iter(), out);
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
    stats: &mut WriteStats,
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
        expand_xor(lset, enc, data, &mut raw)?;
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
    stats.samples_in += views.iter().map(|v| v.num_samples() as u64).sum::<u64>();
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
