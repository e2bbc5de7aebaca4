//! The query side of downsampled data, as Thanos's querier reads it: which aggregates to ask a
//! store for, given the PromQL function around a selector, and how the chunks that come back
//! (aggregate sub-chunks, or raw chunks where no downsampled block covered) become samples.

use super::DownsampleError;
use super::aggregate::xor_samples;
use super::counter::{ChunkSamples, CounterResets};
use crate::chunk::{AggrType, SampleBatch, decode_xor_into};

/// How a series is read from downsampled chunks (Thanos's `resAggr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggrRead {
    /// Window counts.
    Count,
    /// Window sums.
    Sum,
    /// Window minima.
    Min,
    /// Window maxima.
    Max,
    /// The counter aggregate, chained across chunks with resets removed.
    Counter,
    /// Window averages, sum / count.
    Average,
}

/// Functions whose result depends on counter increases between samples.
const COUNTER_FUNCS: [&str; 6] = ["rate", "increase", "irate", "resets", "xrate", "xincrease"];

impl AggrRead {
    /// The read for the function (or aggregation) a selector feeds, as Thanos's
    /// `aggrsFromFunc`: `min`/`min_*` → min, `max`/`max_*` → max, `count`/`count_*` → count,
    /// `sum_*` (not `sum`) → sum, counter functions → counter, anything else (`sum`,
    /// `avg_over_time`, a bare selector) → average.
    pub fn for_func(func: Option<&str>) -> AggrRead {
        let f = func.unwrap_or("");
        if f == "min" || f.starts_with("min_") {
            AggrRead::Min
        } else if f == "max" || f.starts_with("max_") {
            AggrRead::Max
        } else if f == "count" || f.starts_with("count_") {
            AggrRead::Count
        } else if f.starts_with("sum_") {
            AggrRead::Sum
        } else if COUNTER_FUNCS.contains(&f) {
            AggrRead::Counter
        } else {
            AggrRead::Average
        }
    }

    /// The aggregates to request from stores (StoreAPI `aggregates`).
    pub fn aggregates(self) -> &'static [AggrType] {
        match self {
            AggrRead::Count => &[AggrType::Count],
            AggrRead::Sum => &[AggrType::Sum],
            AggrRead::Min => &[AggrType::Min],
            AggrRead::Max => &[AggrType::Max],
            AggrRead::Counter => &[AggrType::Counter],
            AggrRead::Average => &[AggrType::Count, AggrType::Sum],
        }
    }

    /// Whether functions reading two samples per range (`rate`, `irate`, `increase`, `delta`,
    /// `idelta`, `deriv`, `predict_linear`, smoothing) cap the resolution to half their range.
    pub fn caps_resolution(func: Option<&str>) -> bool {
        matches!(
            func.unwrap_or(""),
            "rate"
                | "irate"
                | "increase"
                | "delta"
                | "idelta"
                | "deriv"
                | "predict_linear"
                | "holt_winters"
                | "double_exponential_smoothing"
        )
    }
}

/// The `max_resolution_window` to send with a selection: the request's maximum, capped to half
/// the range for the two-sample functions so at least two aggregate samples fall in a range; ms.
pub fn resolution_for(max_resolution: i64, func: Option<&str>, range_ms: i64) -> i64 {
    if range_ms > 0 && AggrRead::caps_resolution(func) {
        max_resolution.min(range_ms / 2)
    } else {
        max_resolution
    }
}

/// One chunk of a series as a store serves it: the raw XOR payload (raw blocks) or XOR
/// payloads per aggregate (downsampled blocks), with its time range.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServedChunk<'a> {
    /// Chunk start, ms.
    pub min_time: i64,
    /// Chunk end, ms (inclusive).
    pub max_time: i64,
    /// The raw chunk, when the store sent one.
    pub raw: Option<&'a [u8]>,
    /// The aggregate sub-chunks sent, indexed by [`AggrType`].
    pub aggr: [Option<&'a [u8]>; 5],
}

impl<'a> ServedChunk<'a> {
    /// The sub-chunk of `at`, else the raw chunk (Thanos's `getFirstIterator(aggr, raw)`).
    fn aggregate_or_raw(&self, at: AggrType) -> Result<&'a [u8], DownsampleError> {
        self.aggr[at as usize]
            .or(self.raw)
            .ok_or_else(|| self.unreadable(format!("no {at} aggregate and no raw chunk")))
    }

    fn unreadable(&self, reason: String) -> DownsampleError {
        DownsampleError::Unreadable {
            min_time: self.min_time,
            max_time: self.max_time,
            reason,
        }
    }
}

fn decode_raw(data: &[u8], c: &ServedChunk<'_>) -> Result<ChunkSamples, DownsampleError> {
    let mut b = SampleBatch::new();
    decode_xor_into(data, &mut b).map_err(|e| c.unreadable(format!("raw chunk: {e}")))?;
    Ok(b.ts.into_iter().zip(b.val).collect())
}

/// Decodes a series' chunks (sorted by time, not overlapping: one replica's chunks) into
/// samples appended to `out`, reading aggregates as `read` says. Like Thanos, a chunk that
/// starts before the last sample taken is read from after that sample on; counters are
/// chained with resets removed, so their values never decrease.
pub fn decode_chunks(
    chunks: &[ServedChunk<'_>],
    read: AggrRead,
    out: &mut SampleBatch,
) -> Result<(), DownsampleError> {
    let at = match read {
        AggrRead::Count => AggrType::Count,
        AggrRead::Sum => AggrType::Sum,
        AggrRead::Min => AggrType::Min,
        AggrRead::Max => AggrType::Max,
        AggrRead::Counter => return decode_counter(chunks, out),
        AggrRead::Average => return decode_average(chunks, out),
    };
    let mut last: Option<i64> = None;
    for c in chunks {
        let data = c.aggregate_or_raw(at)?;
        let samples = if c.aggr[at as usize].is_some() {
            xor_samples(data, at)?
        } else {
            decode_raw(data, c)?
        };
        push_after(&samples, &mut last, out);
    }
    Ok(())
}

/// Appends the samples after `last` (the previous chunk's last timestamp) and moves `last`.
fn push_after(samples: &[(i64, f64)], last: &mut Option<i64>, out: &mut SampleBatch) {
    let skip = last.map_or(0, |l| samples.partition_point(|s| s.0 <= l));
    for &(t, v) in &samples[skip..] {
        out.push(t, v);
        *last = Some(t);
    }
}

fn decode_counter(
    chunks: &[ServedChunk<'_>],
    out: &mut SampleBatch,
) -> Result<(), DownsampleError> {
    let mut parts = Vec::with_capacity(chunks.len());
    for c in chunks {
        let data = c.aggregate_or_raw(AggrType::Counter)?;
        parts.push(if c.aggr[AggrType::Counter as usize].is_some() {
            xor_samples(data, AggrType::Counter)?
        } else {
            decode_raw(data, c)?
        });
    }
    let mut it = CounterResets::new(&parts);
    while let Some((t, v)) = it.next_sample() {
        out.push(t, v);
    }
    Ok(())
}

fn decode_average(
    chunks: &[ServedChunk<'_>],
    out: &mut SampleBatch,
) -> Result<(), DownsampleError> {
    let mut last: Option<i64> = None;
    for c in chunks {
        if let Some(raw) = c.raw {
            push_after(&decode_raw(raw, c)?, &mut last, out);
            continue;
        }
        let (Some(count), Some(sum)) = (
            c.aggr[AggrType::Count as usize],
            c.aggr[AggrType::Sum as usize],
        ) else {
            return Err(c.unreadable("average needs the count and sum aggregates".into()));
        };
        let count = xor_samples(count, AggrType::Count)?;
        let sum = xor_samples(sum, AggrType::Sum)?;
        if count.len() != sum.len() {
            return Err(c.unreadable(format!(
                "sum and count not aligned: {} sum and {} count samples",
                sum.len(),
                count.len()
            )));
        }
        let mut avg = Vec::with_capacity(count.len());
        for (&(tc, n), &(ts, s)) in count.iter().zip(&sum) {
            if tc != ts {
                return Err(c.unreadable(format!(
                    "sum and count timestamps not aligned: {ts} and {tc}"
                )));
            }
            avg.push((tc, s / n));
        }
        push_after(&avg, &mut last, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::encode_xor;
    use crate::downsample::{AggrChunkOut, downsample_raw};

    #[test]
    fn functions_map_to_thanos_aggregates() {
        for (f, r) in [
            (Some("min_over_time"), AggrRead::Min),
            (Some("min"), AggrRead::Min),
            (Some("max_over_time"), AggrRead::Max),
            (Some("count_over_time"), AggrRead::Count),
            (Some("sum_over_time"), AggrRead::Sum),
            (Some("sum"), AggrRead::Average),
            (Some("avg_over_time"), AggrRead::Average),
            (Some("rate"), AggrRead::Counter),
            (Some("resets"), AggrRead::Counter),
            (Some("xincrease"), AggrRead::Counter),
            (Some("deriv"), AggrRead::Average),
            (None, AggrRead::Average),
        ] {
            assert_eq!(AggrRead::for_func(f), r, "{f:?}");
        }
        assert_eq!(
            AggrRead::Average.aggregates(),
            &[AggrType::Count, AggrType::Sum]
        );
        assert_eq!(resolution_for(3_600_000, Some("rate"), 600_000), 300_000);
        assert_eq!(
            resolution_for(3_600_000, Some("max_over_time"), 600_000),
            3_600_000
        );
        assert_eq!(resolution_for(300_000, Some("rate"), 0), 300_000);
    }

    fn served(c: &AggrChunkOut) -> ServedChunk<'_> {
        let ac = crate::chunk::AggrChunk::new(&c.data);
        ServedChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            raw: None,
            aggr: AggrType::ALL.map(|t| ac.get_xor(t).ok()),
        }
    }

    #[test]
    fn aggregates_and_raw_chunks_read_back_as_samples() {
        // A counter with a reset between two raw batches, downsampled to 5m; then a raw chunk
        // after them.
        let first: Vec<(i64, f64)> = (0..40).map(|i| (i * 15_000, i as f64)).collect();
        let second: Vec<(i64, f64)> = (40..80).map(|i| (i * 15_000, (i - 40) as f64)).collect();
        let a = downsample_raw(&first, 300_000).unwrap();
        let b = downsample_raw(&second, 300_000).unwrap();
        let raw_ts: Vec<i64> = (80..84).map(|i| i * 15_000).collect();
        let raw = encode_xor(&raw_ts, &[40.0, 41.0, 42.0, 43.0]);
        let mut chunks = vec![served(&a[0]), served(&b[0])];
        chunks.push(ServedChunk {
            min_time: raw_ts[0],
            max_time: raw_ts[3],
            raw: Some(&raw),
            ..ServedChunk::default()
        });

        let mut out = SampleBatch::new();
        decode_chunks(&chunks, AggrRead::Counter, &mut out).unwrap();
        // Monotonic: 39 before the reset, +39 after it, then the raw samples continue (40 is
        // above the last raw value 39, so no reset: +1 each).
        assert!(out.val.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(out.val.last(), Some(&(39.0 + 39.0 + 4.0)));

        let mut out = SampleBatch::new();
        decode_chunks(&chunks, AggrRead::Max, &mut out).unwrap();
        assert_eq!(out.ts[0], 299_999);
        assert_eq!(out.val[0], 19.0);
        assert_eq!(&out.val[out.len() - 4..], &[40.0, 41.0, 42.0, 43.0]);

        let mut out = SampleBatch::new();
        decode_chunks(&chunks, AggrRead::Average, &mut out).unwrap();
        assert_eq!(out.val[0], (0..20).sum::<i64>() as f64 / 20.0);

        // A chunk with neither the aggregate nor raw data is an error naming the chunk.
        let bare = ServedChunk {
            min_time: 5,
            max_time: 6,
            ..ServedChunk::default()
        };
        let e = decode_chunks(&[bare], AggrRead::Sum, &mut out).unwrap_err();
        assert!(e.to_string().contains("[5, 6]"), "{e}");
        let mut half = served(&a[0]);
        half.aggr[AggrType::Sum as usize] = None;
        assert!(decode_chunks(&[half], AggrRead::Average, &mut out).is_err());
        let mut misaligned = served(&a[0]);
        misaligned.aggr[AggrType::Sum as usize] = misaligned.aggr[AggrType::Count as usize];
        misaligned.aggr[AggrType::Count as usize] = Some(&raw);
        assert!(decode_chunks(&[misaligned], AggrRead::Average, &mut out).is_err());
    }
}
