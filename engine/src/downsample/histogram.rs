//! Native histograms downsampled as Thanos's downsampler does it: a series' runs of
//! histogram chunks become aggregate chunks of three aggregates only —
//!
//! - `count`: histograms in the window (an XOR sub-chunk);
//! - `sum`: the window's histograms added up (a float histogram sub-chunk, gauge hint);
//! - `counter`: the counter state at the window's end, resets applied: the first histogram,
//!   then each one's increase over the one before (itself after a reset) added (a float
//!   histogram sub-chunk);
//!
//! with `min` and `max` absent. Histograms of a batch are first brought down to the batch's
//! smallest schema; a histogram whose own schema is larger than that counts as a reset when its
//! hint leaves the question open (Thanos compares the original histogram with the reduced one
//! before it). Histograms with a NaN sum (stale markers among them) are left out. A float run
//! and a histogram run never share an output chunk. From 5m to 1h, the counters are aggregated
//! again as histograms (resets between them found as between raw ones), the sums added per
//! window and the counts summed.

use super::DownsampleError;
use super::aggregate::{AggrChunkOut, raw_batches, target_chunk_count, window_end};
use crate::chunk::{
    AggrChunk, AggrType, CounterResetHeader, Encoding, FloatHistogramAppender,
    FloatHistogramIterator, HistogramAppend, HistogramIterator, SubChunk, XorAppender, encode_aggr,
};
use crate::histogram::{CounterResetHint, FloatHistogram, HistogramOpError};

/// The window state of Thanos's histogram aggregator, over [`FloatHistogram`]'s own
/// arithmetic (`copy_to_schema`, `add`, `sub`, `detect_reset`).
struct Aggregator {
    schema: i32,
    total: usize,
    count: usize,
    sum: Option<FloatHistogram>,
    counter: Option<FloatHistogram>,
    previous: Option<FloatHistogram>,
}

impl Aggregator {
    fn add(&mut self, original: &FloatHistogram) -> Result<(), String> {
        let op = |e: HistogramOpError| e.to_string();
        // A finer histogram is brought down to the batch's schema; the reset check compares
        // the original with the reduced one before it (a schema increase is a reset).
        let fh = original.copy_to_schema(self.schema).map_err(op)?;
        match (&mut self.counter, &self.previous) {
            (Some(counter), Some(prev)) => {
                if fh.counter_reset_hint != CounterResetHint::Gauge
                    && original.detect_reset(prev).map_err(op)?
                {
                    counter.add(&fh).map_err(op)?;
                } else {
                    let mut delta = fh.clone();
                    delta.sub(prev).map_err(op)?;
                    counter.add(&delta).map_err(op)?;
                }
            }
            _ => self.counter = Some(fh.clone()),
        }
        let sum = match &mut self.sum {
            Some(sum) => {
                sum.add(&fh).map_err(op)?;
                sum
            }
            None => self.sum.insert(fh.clone()),
        };
        sum.counter_reset_hint = CounterResetHint::Gauge;
        self.previous = Some(fh);
        self.count += 1;
        self.total += 1;
        Ok(())
    }
}

/// One float histogram sub-chunk being written, as Thanos's builder appends to it.
#[derive(Default)]
struct HistSub {
    app: FloatHistogramAppender,
}

impl HistSub {
    fn append(&mut self, t: i64, h: &FloatHistogram) -> Result<(), String> {
        let first = self.app.num_samples() == 0;
        match self.app.append(None, t, h).map_err(|e| e.to_string())? {
            // Thanos keeps only the new chunk when its appender asks for one.
            HistogramAppend::NewChunk(next) => self.app = next,
            _ if first
                && !matches!(
                    h.counter_reset_hint,
                    CounterResetHint::Gauge | CounterResetHint::CounterReset
                ) =>
            {
                // Thanos passes the appender as its own predecessor: the first histogram is
                // compared with itself, so the chunk says "no counter reset".
                self.app
                    .set_counter_reset_header(CounterResetHeader::NotCounterReset);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Downsamples one run of histogram samples (time order, as read from consecutive histogram
/// chunks of a raw series; float histograms or integer ones turned to float) to `resolution`
/// ms, into aggregate chunks cut as Thanos cuts them.
pub fn downsample_raw_histograms(
    data: &[(i64, FloatHistogram)],
    resolution: i64,
) -> Result<Vec<AggrChunkOut>, DownsampleError> {
    let err = |reason: String| DownsampleError::Unreadable {
        min_time: data.first().map_or(0, |s| s.0),
        max_time: data.last().map_or(0, |s| s.0),
        reason,
    };
    let mut out = Vec::new();
    for part in raw_batches(data, resolution) {
        let batch: Vec<&(i64, FloatHistogram)> =
            part.iter().filter(|s| !s.1.sum.is_nan()).collect();
        if batch.is_empty() {
            continue;
        }
        out.push(downsample_batch(&batch, resolution).map_err(err)?);
    }
    Ok(out)
}

/// Runs Thanos's window loop over `data` (time order, no NaN sums) with a histogram
/// aggregator at `schema`: `f` is called at each window's end (the window's last millisecond,
/// or the last sample's time) with the aggregator's state.
fn for_each_window(
    data: &[&(i64, FloatHistogram)],
    resolution: i64,
    mut f: impl FnMut(i64, &Aggregator) -> Result<(), String>,
) -> Result<(), String> {
    let Some(last) = data.last() else {
        return Ok(());
    };
    let mut aggr = Aggregator {
        schema: data.iter().map(|s| s.1.schema).min().unwrap_or(0),
        total: 0,
        count: 0,
        sum: None,
        counter: None,
        previous: None,
    };
    let mut next_t: Option<i64> = None;
    for (t, h) in data.iter().map(|s| (s.0, &s.1)) {
        if next_t.is_none_or(|n| t > n) {
            if let Some(n) = next_t {
                f(n, &aggr)?;
            }
            aggr.count = 0;
            aggr.sum = None;
            next_t = Some(window_end(t, resolution).min(last.0));
        }
        aggr.add(h)?;
    }
    match next_t {
        Some(n) if aggr.total > 0 => f(n, &aggr),
        _ => Ok(()),
    }
}

/// One output chunk from one batch of raw histograms.
fn downsample_batch(
    batch: &[&(i64, FloatHistogram)],
    resolution: i64,
) -> Result<AggrChunkOut, String> {
    let gauge = batch[0].1.counter_reset_hint == CounterResetHint::Gauge;
    let (mut count, mut sum, mut counter) =
        (XorAppender::new(), HistSub::default(), HistSub::default());
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    for_each_window(batch, resolution, |t, a| {
        min_time = min_time.min(t);
        max_time = max_time.max(t);
        let (Some(c), Some(s)) = (&a.counter, &a.sum) else {
            return Ok(());
        };
        let (mut c, mut s) = (c.clone(), s.clone());
        if gauge {
            c.counter_reset_hint = CounterResetHint::Gauge;
            s.counter_reset_hint = CounterResetHint::Gauge;
        }
        counter.append(t, &c)?;
        sum.append(t, &s)?;
        count
            .try_append(t, a.count as f64)
            .map_err(|e| e.to_string())
    })?;
    Ok(encode(min_time, max_time, &count, &sum, &counter))
}

fn encode(
    min_time: i64,
    max_time: i64,
    count: &XorAppender,
    sum: &HistSub,
    counter: &HistSub,
) -> AggrChunkOut {
    let mut parts: [Option<SubChunk<'_>>; 5] = [None; 5];
    parts[AggrType::Count as usize] = Some(SubChunk::xor(count.bytes()));
    parts[AggrType::Sum as usize] = Some(SubChunk {
        encoding: Encoding::FloatHistogram as u8,
        data: sum.app.bytes(),
    });
    parts[AggrType::Counter as usize] = Some(SubChunk {
        encoding: Encoding::FloatHistogram as u8,
        data: counter.app.bytes(),
    });
    AggrChunkOut {
        min_time,
        max_time,
        data: encode_aggr(&parts),
    }
}

/// Whether an aggregate chunk holds native histogram aggregates (its counter is a histogram
/// sub-chunk).
pub fn is_histogram_aggregate(c: &AggrChunk<'_>) -> bool {
    c.get(AggrType::Counter).is_ok_and(|s| {
        s.encoding == Encoding::FloatHistogram as u8 || s.encoding == Encoding::Histogram as u8
    })
}

/// The histograms of aggregate `at` over `chunks` as floats, expanded as Thanos expands them
/// (stale markers left out, samples going back in time skipped); absent aggregates skipped.
fn expand_aggregate(
    chunks: &[AggrChunk<'_>],
    at: AggrType,
) -> Result<Vec<(i64, FloatHistogram)>, String> {
    let mut out = Vec::new();
    for c in chunks {
        let sub = match c.get(at) {
            Ok(s) => s,
            Err(crate::chunk::AggrError::Missing { .. }) => continue,
            Err(e) => return Err(e.to_string()),
        };
        let mut last = 0i64;
        let mut push = |t: i64, h: FloatHistogram| {
            if !h.is_stale() && t >= last {
                out.push((t, h));
                last = t;
            }
        };
        if sub.encoding == Encoding::Histogram as u8 {
            let mut it = HistogramIterator::new(sub.data).map_err(|e| e.to_string())?;
            while let Some((t, h)) = it.next().map_err(|e| e.to_string())? {
                push(t, h.to_float());
            }
        } else {
            let mut it = FloatHistogramIterator::new(sub.data).map_err(|e| e.to_string())?;
            while let Some((t, h)) = it.next().map_err(|e| e.to_string())? {
                push(t, h);
            }
        }
    }
    Ok(out)
}

/// Downsamples one run of a series' histogram aggregate chunks (from a block of resolution
/// `in_res`, spanning `[mint, maxt]`) to `out_res` ms, as Thanos does: the counter aggregated
/// again from the counters, the sum from the sums, the count summed.
pub fn downsample_aggr_histograms(
    chunks: &[AggrChunk<'_>],
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
) -> Result<Vec<AggrChunkOut>, DownsampleError> {
    let samples: usize = chunks.iter().map(AggrChunk::num_samples).sum();
    let n = target_chunk_count(mint, maxt, in_res, out_res, samples);
    let batch_size = (chunks.len() / n).max(1);
    chunks
        .chunks(batch_size)
        .map(|part| {
            aggr_batch(part, out_res).map_err(|reason| DownsampleError::Unreadable {
                min_time: mint,
                max_time: maxt,
                reason,
            })
        })
        .collect()
}

fn aggr_batch(chunks: &[AggrChunk<'_>], resolution: i64) -> Result<AggrChunkOut, String> {
    let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
    let mut bounds = |t: i64| {
        min_time = min_time.min(t);
        max_time = max_time.max(t);
    };
    let (mut count, mut sum, mut counter) =
        (XorAppender::new(), HistSub::default(), HistSub::default());
    let counters = expand_aggregate(chunks, AggrType::Counter)?;
    let refs: Vec<&(i64, FloatHistogram)> = counters.iter().collect();
    for_each_window(&refs, resolution, |t, a| {
        bounds(t);
        match &a.counter {
            Some(c) => counter.append(t, c),
            None => Ok(()),
        }
    })?;
    let sums = expand_aggregate(chunks, AggrType::Sum)?;
    let refs: Vec<&(i64, FloatHistogram)> = sums.iter().collect();
    for_each_window(&refs, resolution, |t, a| {
        bounds(t);
        match &a.sum {
            Some(s) => sum.append(t, s),
            None => Ok(()),
        }
    })?;
    // The count: the window's counts added up.
    let mut counts = Vec::new();
    for c in chunks {
        let Ok(sub) = c.get(AggrType::Count) else {
            continue;
        };
        let mut it = crate::chunk::XorIterator::new(sub.data).map_err(|e| e.to_string())?;
        let mut last = 0i64;
        while let Some((t, v)) = it.next().map_err(|e| e.to_string())? {
            if !crate::chunk::is_stale_nan(v) && t >= last {
                counts.push((t, v));
                last = t;
            }
        }
    }
    if let Some(&(last_t, _)) = counts.last() {
        let mut next_t: Option<i64> = None;
        let mut acc = 0.0;
        for &(t, v) in &counts {
            if next_t.is_none_or(|n| t > n) {
                if let Some(n) = next_t {
                    bounds(n);
                    count.try_append(n, acc).map_err(|e| e.to_string())?;
                }
                acc = 0.0;
                next_t = Some(window_end(t, resolution).min(last_t));
            }
            acc += v;
        }
        if let Some(n) = next_t {
            bounds(n);
            count.try_append(n, acc).map_err(|e| e.to_string())?;
        }
    }
    Ok(encode(min_time, max_time, &count, &sum, &counter))
}

#[cfg(test)]
mod tests;
