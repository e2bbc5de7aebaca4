//! Where chunk boundaries fall when samples are written into chunks, following Prometheus's head
//! (`memSeries.appendPreprocessor`): a chunk never crosses a multiple of the chunk range; at a
//! quarter of the target sample count the end time is predicted so the rest of the range splits
//! evenly; a hard cut at twice the target; and (Prometheus 3.x) a cut when the XOR payload passes
//! 1005 bytes.

use crate::chunk::XorAppender;

/// Prometheus's default target of samples per float chunk.
pub const DEFAULT_SAMPLES_PER_CHUNK: usize = 120;
/// Prometheus's default chunk range and block duration: 2h in ms.
pub const DEFAULT_CHUNK_RANGE_MS: i64 = 2 * 3600 * 1000;
/// Prometheus 3.x cuts an XOR chunk when its payload exceeds this many bytes before an append
/// (1024 minus the 19 bytes a sample can take at most).
pub const MAX_XOR_BYTES_BEFORE_APPEND: usize = 1024 - 19;

/// How chunks are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutOptions {
    /// Target samples per chunk (Prometheus: 120).
    pub samples_per_chunk: usize,
    /// Chunks never cross a multiple of this range, in ms (Prometheus: 2h).
    pub chunk_range_ms: i64,
    /// Cut when the payload is larger than this before an append; `None` reproduces Prometheus
    /// 2.x, which had no byte cap.
    pub max_bytes_before_append: Option<usize>,
}

impl Default for CutOptions {
    fn default() -> Self {
        CutOptions {
            samples_per_chunk: DEFAULT_SAMPLES_PER_CHUNK,
            chunk_range_ms: DEFAULT_CHUNK_RANGE_MS,
            max_bytes_before_append: Some(MAX_XOR_BYTES_BEFORE_APPEND),
        }
    }
}

/// One encoded chunk: its time bounds (inclusive, ms) and XOR payload.
#[derive(Debug, Clone, PartialEq)]
pub struct CutChunk {
    /// First sample's timestamp.
    pub min_time: i64,
    /// Last sample's timestamp.
    pub max_time: i64,
    /// The XOR payload, starting with the 2-byte sample count. Boxed, without spare room: a
    /// head keeps several per series for hours.
    pub data: Box<[u8]>,
}

/// Bytes a new chunk's buffer starts with.
const OPEN_CHUNK_BYTES: usize = 24;

/// End of the chunk range holding `t` (Go's truncating division, as Prometheus computes it).
pub(crate) fn range_end(t: i64, width: i64) -> i64 {
    (t / width).saturating_mul(width).saturating_add(width)
}

/// Predicts a chunk's end so the remaining range fills with evenly sized chunks, assuming the
/// chunk is a quarter full at `cur`.
fn predict_end(start: i64, cur: i64, max: i64) -> i64 {
    let span = cur
        .saturating_sub(start)
        .saturating_add(1)
        .saturating_mul(4);
    if span <= 0 {
        return max;
    }
    let n = max.saturating_sub(start) / span;
    if n <= 1 {
        return max;
    }
    start + (max - start) / n
}

/// The open chunk of one series as samples arrive in time order: decides where chunks end the
/// way Prometheus's head does and hands each finished chunk back. The head keeps one per
/// series; [`cut_chunks`] runs one over a whole series.
#[derive(Debug, Clone, Default)]
pub struct ChunkCutter {
    /// The open chunk; its last timestamp is the cutter's newest.
    app: Option<XorAppender>,
    min_time: i64,
    next_at: i64,
}

impl ChunkCutter {
    /// A cutter with no open chunk.
    pub fn new() -> Self {
        ChunkCutter::default()
    }

    /// Timestamp of the last sample taken, ms (`None` before the first).
    pub fn max_time(&self) -> Option<i64> {
        self.app.as_ref().map(XorAppender::last_time)
    }

    /// The bits of the last value taken (`None` when no chunk is open).
    pub fn last_value_bits(&self) -> Option<u64> {
        self.app.as_ref().map(XorAppender::last_value_bits)
    }

    /// The open chunk: its first and last timestamps (ms) and its payload so far.
    pub fn open(&self) -> Option<(i64, i64, &[u8])> {
        self.app
            .as_ref()
            .map(|a| (self.min_time, a.last_time(), a.bytes()))
    }

    /// Bytes the open chunk's buffer takes, written or not.
    pub fn room(&self) -> usize {
        self.app.as_ref().map_or(0, XorAppender::room)
    }

    /// Appends a sample whose timestamp is after [`ChunkCutter::max_time`] (a sample at or
    /// before it is dropped, as the head drops out-of-order samples); returns the chunk that
    /// had to be closed first, if any.
    pub fn push(&mut self, t: i64, v: f64, opts: &CutOptions) -> Option<CutChunk> {
        let cut = match &self.app {
            None => true,
            Some(a) if t <= a.last_time() => return None,
            Some(a) => {
                let n = a.num_samples();
                if opts
                    .max_bytes_before_append
                    .is_some_and(|m| a.bytes().len() > m)
                {
                    true
                } else {
                    if n == opts.samples_per_chunk / 4 {
                        self.next_at = predict_end(self.min_time, a.last_time(), self.next_at);
                    }
                    t >= self.next_at || n >= opts.samples_per_chunk * 2
                }
            }
        };
        let mut closed = None;
        if cut {
            closed = self.finish();
            // A chunk's buffer starts small and doubles: a head holds one open chunk per
            // series, most of them a few samples long.
            self.app = Some(XorAppender::with_capacity(OPEN_CHUNK_BYTES));
            self.min_time = t;
            self.next_at = range_end(t, opts.chunk_range_ms);
        }
        if let Some(a) = self.app.as_mut() {
            a.append(t, v);
        }
        closed
    }

    /// Closes the open chunk and returns it.
    pub fn finish(&mut self) -> Option<CutChunk> {
        self.app.take().map(|a| CutChunk {
            min_time: self.min_time,
            max_time: a.last_time(),
            data: a.into_bytes().into_boxed_slice(),
        })
    }
}

/// Encodes one series' samples (strictly increasing timestamps) into chunks cut the way
/// Prometheus's head cuts them. Samples whose timestamp does not increase are dropped, as the
/// head drops out-of-order samples.
pub fn cut_chunks(ts: &[i64], val: &[f64], opts: CutOptions) -> Vec<CutChunk> {
    debug_assert_eq!(ts.len(), val.len());
    let mut out = Vec::with_capacity(ts.len() / opts.samples_per_chunk.max(1) + 1);
    let mut cutter = ChunkCutter::new();
    for (&t, &v) in ts.iter().zip(val) {
        out.extend(cutter.push(t, v, &opts));
    }
    out.extend(cutter.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(ts: &[i64], opts: CutOptions) -> Vec<(i64, i64, usize)> {
        let val = vec![1.0; ts.len()];
        cut_chunks(ts, &val, opts)
            .iter()
            .map(|c| {
                (
                    c.min_time,
                    c.max_time,
                    u16::from_be_bytes([c.data[0], c.data[1]]) as usize,
                )
            })
            .collect()
    }

    #[test]
    fn two_hours_at_15s_make_four_chunks_of_120() {
        let ts: Vec<i64> = (0..480).map(|i| i * 15_000).collect();
        let b = bounds(&ts, CutOptions::default());
        assert_eq!(b.len(), 4);
        assert!(b.iter().all(|&(_, _, n)| n == 120));
    }

    #[test]
    fn never_crosses_the_chunk_range() {
        let ts: Vec<i64> = (0..100).map(|i| 7_000_000 + i * 10_000).collect();
        let b = bounds(&ts, CutOptions::default());
        assert!(
            b.iter()
                .all(|&(lo, hi, _)| lo / DEFAULT_CHUNK_RANGE_MS == hi / DEFAULT_CHUNK_RANGE_MS)
        );
        assert_eq!(b.iter().map(|x| x.2).sum::<usize>(), 100);
    }

    #[test]
    fn fast_samples_hit_the_hard_cut() {
        let ts: Vec<i64> = (0..1000).collect();
        let b = bounds(&ts, CutOptions::default());
        assert!(b.iter().all(|&(_, _, n)| n <= 240));
        assert_eq!(b.iter().map(|x| x.2).sum::<usize>(), 1000);
    }

    #[test]
    fn out_of_order_samples_are_dropped() {
        let b = bounds(&[10, 20, 20, 15, 30], CutOptions::default());
        assert_eq!(b, vec![(10, 30, 3)]);
    }

    #[test]
    fn byte_cap_cuts_incompressible_chunks() {
        // Neither the sample count nor the range may cut first, so only the byte cap can.
        let opts = CutOptions {
            samples_per_chunk: 100_000,
            chunk_range_ms: i64::MAX / 4,
            ..CutOptions::default()
        };
        let ts: Vec<i64> = (0..260).map(|i| i * 1000 + i % 7).collect();
        let val: Vec<f64> = (0..260)
            .map(|i| (i as f64).sin() * i as f64 + 0.123456789)
            .collect();
        let chunks = cut_chunks(&ts, &val, opts);
        assert!(chunks.len() >= 2, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.data.len() <= 1024));
        let uncapped = CutOptions {
            max_bytes_before_append: None,
            ..opts
        };
        assert_eq!(cut_chunks(&ts, &val, uncapped).len(), 1);
    }
}
