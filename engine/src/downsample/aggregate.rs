//! The aggregation itself, series by series, as Thanos's `downsample.go` computes it: raw
//! samples into 5m windows (`DownsampleRaw`), aggregate chunks into coarser windows
//! (`downsampleAggr`), with Thanos's batching of output chunks so the chunks it would write and
//! the ones written here hold the same samples.

use super::DownsampleError;
use super::counter::{ChunkSamples, CounterResets, expand_into};
use crate::chunk::{
    AggrChunk, AggrError, AggrType, SubChunk, XorAppender, XorIterator, encode_aggr,
};

/// Raw data is assumed to be scraped every minute when sizing output chunks (Thanos's
/// heuristic), ms.
const ASSUMED_RAW_INTERVAL_MS: i64 = 60_000;
/// Output chunks hold at most about this many samples on average.
const MAX_SAMPLES_PER_AGGR_CHUNK: i64 = 140;

/// One aggregate chunk of the output: its bounds (window timestamps, ms, inclusive) and bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct AggrChunkOut {
    /// Earliest window timestamp written, ms.
    pub min_time: i64,
    /// Latest window timestamp written, ms.
    pub max_time: i64,
    /// The aggregate chunk (record payload after the 0xFF encoding byte).
    pub data: Vec<u8>,
}

/// The timestamp of the window holding `t`: the window's last millisecond.
pub fn window_end(t: i64, resolution: i64) -> i64 {
    t.wrapping_sub(t % resolution)
        .wrapping_add(resolution)
        .wrapping_sub(1)
}

/// How full `[mint, maxt]` is with `count` samples `step` ms apart, at most 1.
fn range_fullness(mint: i64, maxt: i64, step: i64, count: usize) -> f64 {
    let f = count as f64 / (maxt.wrapping_sub(mint) as f64 / step as f64);
    if f > 1.0 { 1.0 } else { f }
}

/// Number of output chunks for a series: the fewest that keep at most 140 samples each on
/// average, from the expected number of output samples.
pub(super) fn target_chunk_count(
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
    count: usize,
) -> usize {
    let max_samples = (maxt.wrapping_sub(mint) / out_res) as f64;
    // Go truncates toward zero (NaN ranges give 1 chunk either way).
    let expected =
        ((max_samples * range_fullness(mint, maxt, in_res, count)) as i64).saturating_add(1);
    // Smallest x >= 1 with expected / x <= 140 (integer division), found directly.
    if expected <= MAX_SAMPLES_PER_AGGR_CHUNK {
        1
    } else {
        (expected / (MAX_SAMPLES_PER_AGGR_CHUNK + 1) + 1) as usize
    }
}

/// Running statistics of one window, and counter state across windows.
#[derive(Debug, Clone, Copy)]
struct Aggregator {
    /// Samples added since the batch began.
    total: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// Counter value with resets removed, since the batch began.
    counter: f64,
    last: f64,
}

impl Aggregator {
    fn new() -> Self {
        Aggregator {
            total: 0,
            count: 0,
            sum: 0.0,
            min: 0.0,
            max: 0.0,
            counter: 0.0,
            last: 0.0,
        }
    }

    /// Starts a window; min and max start at the largest finite magnitudes, as in Thanos (so a
    /// window of only +Inf keeps min = f64::MAX).
    fn reset(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }

    fn add(&mut self, v: f64) {
        if self.total > 0 {
            if v < self.last {
                self.counter += v;
            } else {
                self.counter += v - self.last;
            }
        } else {
            self.counter = v;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

/// Aggregates `data` window by window, calling `add(window timestamp, stats)` at the end of each
/// window; returns the last window's timestamp. Window timestamps are capped at the last
/// sample's timestamp so consecutive batches never overlap.
fn downsample_batch(
    data: &[(i64, f64)],
    resolution: i64,
    mut add: impl FnMut(i64, &Aggregator) -> Result<(), DownsampleError>,
) -> Result<i64, DownsampleError> {
    let mut aggr = Aggregator::new();
    let mut next_t = -1i64;
    let last_t = data.last().map_or(-1, |s| s.0);
    for &(t, v) in data {
        if crate::chunk::is_stale_nan(v) {
            continue;
        }
        if t > next_t {
            if next_t != -1 {
                add(next_t, &aggr)?;
            }
            aggr.reset();
            next_t = window_end(t, resolution).min(last_t);
        }
        aggr.add(v);
    }
    add(next_t, &aggr)?;
    Ok(next_t)
}

/// Picks the value an aggregate writes for a window.
type WindowValue = fn(&Aggregator) -> f64;

/// Five XOR appenders, one per aggregate, and the chunk's time bounds.
struct ChunkBuilder {
    apps: [Option<XorAppender>; 5],
    min_time: i64,
    max_time: i64,
}

impl ChunkBuilder {
    fn new(all: bool) -> Self {
        ChunkBuilder {
            apps: std::array::from_fn(|_| all.then(XorAppender::new)),
            min_time: i64::MAX,
            max_time: i64::MIN,
        }
    }

    fn append(&mut self, at: AggrType, t: i64, v: f64) -> Result<(), DownsampleError> {
        let app = self.apps[at as usize].get_or_insert_with(XorAppender::new);
        app.try_append(t, v)
            .map_err(|source| DownsampleError::Encode {
                aggregate: at,
                source,
            })
    }

    fn finish(self) -> AggrChunkOut {
        let bytes: [Option<Vec<u8>>; 5] = self.apps.map(|a| a.map(XorAppender::into_bytes));
        let parts: [Option<SubChunk<'_>>; 5] =
            std::array::from_fn(|i| bytes[i].as_deref().map(SubChunk::xor));
        AggrChunkOut {
            min_time: self.min_time,
            max_time: self.max_time,
            data: encode_aggr(&parts),
        }
    }
}

/// The batches Thanos cuts a raw series (samples in time order) into, one output chunk each:
/// as many as [`target_chunk_count`] asks for (raw data assumed scraped every minute), each
/// batch extended to the end of the window it ends in, so no window is split between chunks.
pub(super) fn raw_batches<T>(
    data: &[(i64, T)],
    resolution: i64,
) -> impl Iterator<Item = &[(i64, T)]> {
    let batch_size = match (data.first(), data.last()) {
        (Some(first), Some(last)) => {
            let chunks = target_chunk_count(
                first.0,
                last.0,
                ASSUMED_RAW_INTERVAL_MS,
                resolution,
                data.len(),
            );
            data.len() / chunks + 1
        }
        _ => 1,
    };
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut j = batch_size.min(rest.len());
        let cur_w = window_end(rest[j - 1].0, resolution);
        while j < rest.len() && rest[j].0 <= cur_w {
            j += 1;
        }
        let (part, tail) = rest.split_at(j);
        rest = tail;
        Some(part)
    })
}

/// Downsamples one raw series (`data`: its samples in time order, as read from its chunks) to
/// `resolution` ms, into aggregate chunks cut as Thanos cuts them. NaN samples are dropped.
pub fn downsample_raw(
    data: &[(i64, f64)],
    resolution: i64,
) -> Result<Vec<AggrChunkOut>, DownsampleError> {
    let mut out = Vec::new();
    let mut batch: Vec<(i64, f64)> = Vec::new();
    for part in raw_batches(data, resolution) {
        batch.clear();
        batch.extend(part.iter().filter(|s| !s.1.is_nan()));
        if batch.is_empty() {
            continue;
        }
        let mut b = ChunkBuilder::new(true);
        // The counter keeps the first and last raw values so a reader can see resets at chunk
        // edges (see CounterResets).
        b.append(AggrType::Counter, batch[0].0, batch[0].1)?;
        let last_t = downsample_batch(&batch, resolution, |t, a| {
            b.min_time = b.min_time.min(t);
            b.max_time = b.max_time.max(t);
            b.append(AggrType::Sum, t, a.sum)?;
            b.append(AggrType::Min, t, a.min)?;
            b.append(AggrType::Max, t, a.max)?;
            b.append(AggrType::Count, t, a.count as f64)?;
            b.append(AggrType::Counter, t, a.counter)
        })?;
        b.append(AggrType::Counter, last_t, batch[batch.len() - 1].1)?;
        out.push(b.finish());
    }
    Ok(out)
}

/// Downsamples one series' aggregate chunks (from a block of resolution `in_res`, spanning
/// `[mint, maxt]` by its chunk metas) to `out_res` ms. Chunks are aggregated in whole runs so
/// each output chunk's counter keeps true first and last raw values.
pub fn downsample_aggr(
    chunks: &[AggrChunk<'_>],
    mint: i64,
    maxt: i64,
    in_res: i64,
    out_res: i64,
) -> Result<Vec<AggrChunkOut>, DownsampleError> {
    let samples: usize = chunks.iter().map(AggrChunk::num_samples).sum();
    let n = target_chunk_count(mint, maxt, in_res, out_res, samples);
    // Thanos would loop forever on a zero batch size; more chunks asked than there are input
    // chunks means one input chunk per output chunk.
    let batch_size = (chunks.len() / n).max(1);
    chunks
        .chunks(batch_size)
        .map(|part| downsample_aggr_batch(part, out_res))
        .collect()
}

/// The samples of aggregate `at` over `chunks`, expanded as Thanos expands them; absent
/// aggregates are skipped.
fn expand_aggregate(
    chunks: &[AggrChunk<'_>],
    at: AggrType,
    buf: &mut ChunkSamples,
) -> Result<(), DownsampleError> {
    buf.clear();
    for c in chunks {
        let data = match c.get_xor(at) {
            Ok(d) => d,
            Err(AggrError::Missing { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        expand_into(xor_samples(data, at)?.into_iter(), buf);
    }
    Ok(())
}

/// Decodes an XOR sub-chunk into samples.
pub(crate) fn xor_samples(data: &[u8], at: AggrType) -> Result<ChunkSamples, DownsampleError> {
    let err = |source| {
        DownsampleError::Aggr(AggrError::Chunk {
            aggregate: at,
            source,
        })
    };
    let mut it = XorIterator::new(data).map_err(err)?;
    let mut out = Vec::with_capacity(it.num_samples().min(data.len() * 8));
    while let Some(s) = it.next().map_err(err)? {
        out.push(s);
    }
    Ok(out)
}

fn downsample_aggr_batch(
    chunks: &[AggrChunk<'_>],
    resolution: i64,
) -> Result<AggrChunkOut, DownsampleError> {
    let mut b = ChunkBuilder::new(false);
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    // Thanos tracks bounds with `if t < mint … else if t > maxt`, so the first window of an
    // aggregate only sets the minimum; later aggregates set the maximum.
    let mut bound = |t: i64| {
        if t < mint {
            mint = t;
        } else if t > maxt {
            maxt = t;
        }
    };
    let mut buf = ChunkSamples::new();
    // Counts add up: the count of a coarse window is the sum of the fine counts.
    let simple: [(AggrType, WindowValue); 4] = [
        (AggrType::Count, |a| a.sum),
        (AggrType::Sum, |a| a.sum),
        (AggrType::Min, |a| a.min),
        (AggrType::Max, |a| a.max),
    ];
    for (at, f) in simple {
        expand_aggregate(chunks, at, &mut buf)?;
        if buf.is_empty() {
            continue;
        }
        b.apps[at as usize] = Some(XorAppender::new());
        downsample_batch(&buf, resolution, |t, a| {
            bound(t);
            b.append(at, t, f(a))
        })?;
    }

    let mut counters = Vec::with_capacity(chunks.len());
    for c in chunks {
        match c.get_xor(AggrType::Counter) {
            Ok(d) => counters.push(xor_samples(d, AggrType::Counter)?),
            Err(AggrError::Missing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut it = CounterResets::new(&counters);
    buf.clear();
    expand_into(std::iter::from_fn(|| it.next_sample()), &mut buf);
    if !buf.is_empty() {
        b.append(AggrType::Counter, buf[0].0, buf[0].1)?;
        let last_t = downsample_batch(&buf, resolution, |t, a| {
            bound(t);
            b.append(AggrType::Counter, t, a.counter)
        })?;
        b.append(AggrType::Counter, last_t, it.last_raw())?;
    }
    b.min_time = mint;
    b.max_time = maxt;
    Ok(b.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M5: i64 = 300_000;

    fn decode(c: &AggrChunkOut, at: AggrType) -> ChunkSamples {
        xor_samples(AggrChunk::new(&c.data).get_xor(at).unwrap(), at).unwrap()
    }

    #[test]
    fn windows_end_at_their_last_millisecond() {
        assert_eq!(window_end(0, M5), M5 - 1);
        assert_eq!(window_end(M5 - 1, M5), M5 - 1);
        assert_eq!(window_end(M5, M5), 2 * M5 - 1);
        assert_eq!(target_chunk_count(0, 40 * 3_600_000, 60_000, M5, 9600), 4);
        assert_eq!(target_chunk_count(0, 3_600_000, 60_000, M5, 60), 1);
        assert_eq!(target_chunk_count(5, 5, 60_000, M5, 1), 1);
    }

    #[test]
    fn raw_samples_aggregate_per_window_with_counter_edges() {
        // 15 s samples over 12 minutes of a counter that resets at 6 min; one NaN.
        let mut data: Vec<(i64, f64)> = (0..48)
            .map(|i| {
                let t = i * 15_000;
                let v = if t < 360_000 {
                    i as f64
                } else {
                    (i - 24) as f64 * 2.0
                };
                (t, v)
            })
            .collect();
        data[5].1 = f64::NAN;
        let out = downsample_raw(&data, M5).unwrap();
        assert_eq!(out.len(), 1);
        let c = &out[0];
        let kept: Vec<(i64, f64)> = data.iter().copied().filter(|s| !s.1.is_nan()).collect();
        let windows = [(0, M5 - 1), (M5, 2 * M5 - 1), (2 * M5, 705_000)];
        assert_eq!((c.min_time, c.max_time), (M5 - 1, 705_000));
        let count = decode(c, AggrType::Count);
        let sum = decode(c, AggrType::Sum);
        let min = decode(c, AggrType::Min);
        let max = decode(c, AggrType::Max);
        for (k, &(lo, hi)) in windows.iter().enumerate() {
            let w: Vec<f64> = kept
                .iter()
                .filter(|s| s.0 >= lo && s.0 <= hi)
                .map(|s| s.1)
                .collect();
            let ts = hi.min(705_000);
            assert_eq!(count[k], (ts, w.len() as f64));
            assert_eq!(sum[k], (ts, w.iter().sum::<f64>()));
            assert_eq!(min[k], (ts, w.iter().copied().fold(f64::MAX, f64::min)));
            assert_eq!(max[k], (ts, w.iter().copied().fold(-f64::MAX, f64::max)));
        }
        // Counter: first raw value at its own time, running totals per window, last raw value
        // repeated at the last window's timestamp. Up to the reset the counter runs 0..23 (one
        // NaN skipped); the reset to 0 adds 0, then it climbs by 2 per sample to 46.
        let counter = decode(c, AggrType::Counter);
        assert_eq!(counter.first(), Some(&(0, 0.0)));
        assert_eq!(counter[1], (M5 - 1, 19.0));
        assert_eq!(counter[2], (2 * M5 - 1, 23.0 + 30.0));
        assert_eq!(counter[3], (705_000, 23.0 + 46.0));
        assert_eq!(counter[4], (705_000, 46.0));
        assert_eq!(counter.len(), 5);
    }

    #[test]
    fn aggregate_chunks_downsample_again() {
        // Two hours of 15 s samples → 5m chunks → 1h.
        let data: Vec<(i64, f64)> = (0..480).map(|i| (i * 15_000, (i % 7) as f64)).collect();
        let fine = downsample_raw(&data, M5).unwrap();
        let views: Vec<AggrChunk<'_>> = fine.iter().map(|c| AggrChunk::new(&c.data)).collect();
        let coarse = downsample_aggr(
            &views,
            fine[0].min_time,
            fine.last().unwrap().max_time,
            M5,
            3_600_000,
        )
        .unwrap();
        assert_eq!(coarse.len(), 1);
        let c = &coarse[0];
        let count = decode(c, AggrType::Count);
        assert_eq!(count, vec![(3_599_999, 240.0), (7_185_000, 240.0)]);
        let sum = decode(c, AggrType::Sum);
        let first_hour: f64 = data[..240].iter().map(|s| s.1).sum();
        assert_eq!(sum[0], (3_599_999, first_hour));
        assert_eq!(decode(c, AggrType::Max)[0].1, 6.0);
        assert_eq!(decode(c, AggrType::Min)[1].1, 0.0);
        assert_eq!((c.min_time, c.max_time), (3_599_999, 7_185_000));
    }
}
