//! Where histogram chunk boundaries fall, following Prometheus 3's head
//! (`memSeries.histogramsAppendPreprocessor` and `appendHistogram`): chunks aim at 1024 bytes
//! rather than a sample count. Once a chunk reaches a quarter of that, its end time is predicted
//! so the rest of the chunk range fills with chunks of that size; a chunk is cut at the predicted
//! time or at 2048 bytes, but only once it holds 10 samples, unless the chunk range ends first.
//! A chunk never crosses a multiple of the chunk range. There is no sample-count rule (the 120
//! samples of float chunks do not apply).
//!
//! Besides these cuts, the chunk appender starts a new chunk when a sample does not fit (a
//! counter reset, a new schema or zero threshold, gauge against counter, after a stale
//! marker), and rewrites the chunk when new buckets appear; a switch between integer and float
//! histograms cuts too.

use super::cut::{DEFAULT_CHUNK_RANGE_MS, range_end};
use crate::chunk::{
    ChunkError, Encoding, FloatHistogramAppender, HistogramAppend, HistogramAppender,
};
use crate::histogram::{FloatHistogram, Histogram};

/// The size a histogram chunk aims at, in bytes.
pub const TARGET_BYTES_PER_HISTOGRAM_CHUNK: usize = 1024;
/// Fewest samples a histogram chunk is cut at, unless its chunk range ends first.
pub const MIN_SAMPLES_PER_HISTOGRAM_CHUNK: usize = 10;

/// One finished histogram chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct CutHistogramChunk {
    /// [`Encoding::Histogram`] or [`Encoding::FloatHistogram`].
    pub encoding: Encoding,
    /// The chunk's start as the head records it, ms: its first sample's timestamp.
    pub min_time: i64,
    /// Its last sample's timestamp, ms.
    pub max_time: i64,
    /// The payload, header included.
    pub data: Vec<u8>,
}

/// The open chunk's appender.
#[derive(Debug, Clone)]
enum Open {
    Int(HistogramAppender),
    Float(FloatHistogramAppender),
}

impl Open {
    fn new(encoding: Encoding) -> Open {
        match encoding {
            Encoding::FloatHistogram => Open::Float(FloatHistogramAppender::new()),
            _ => Open::Int(HistogramAppender::new()),
        }
    }

    fn encoding(&self) -> Encoding {
        match self {
            Open::Int(_) => Encoding::Histogram,
            Open::Float(_) => Encoding::FloatHistogram,
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Open::Int(a) => a.bytes(),
            Open::Float(a) => a.bytes(),
        }
    }

    fn num_samples(&self) -> usize {
        match self {
            Open::Int(a) => a.num_samples(),
            Open::Float(a) => a.num_samples(),
        }
    }
}

#[derive(Debug, Clone)]
struct HeadChunk {
    app: Open,
    min_time: i64,
    /// `i64::MIN` until the first sample.
    max_time: i64,
}

impl HeadChunk {
    fn finish(&self) -> CutHistogramChunk {
        CutHistogramChunk {
            encoding: self.app.encoding(),
            min_time: self.min_time,
            max_time: self.max_time,
            data: self.app.bytes().to_vec(),
        }
    }
}

/// The chunks of one histogram series as its samples arrive in time order, cut where
/// Prometheus's head cuts them and holding the bytes it writes: give it the same samples and
/// the chunks come out the same.
#[derive(Debug, Clone)]
pub struct HistogramChunkCutter {
    chunk_range: i64,
    head: Option<HeadChunk>,
    /// The time at which the open chunk is cut at the latest.
    next_at: i64,
    /// Whether `next_at` was predicted from the open chunk's size.
    end_time_computed: bool,
    done: Vec<CutHistogramChunk>,
}

impl Default for HistogramChunkCutter {
    fn default() -> Self {
        HistogramChunkCutter::new(DEFAULT_CHUNK_RANGE_MS)
    }
}

impl HistogramChunkCutter {
    /// A cutter for a new series whose chunks never cross a multiple of `chunk_range_ms`
    /// (Prometheus's minimum block duration, 2h by default).
    pub fn new(chunk_range_ms: i64) -> Self {
        HistogramChunkCutter {
            chunk_range: chunk_range_ms.max(1),
            head: None,
            next_at: i64::MIN,
            end_time_computed: false,
            done: Vec::new(),
        }
    }

    /// Appends an integer histogram at `t` (ms). Fails, changing nothing, if `h` does not
    /// validate or `t` is not after the last sample.
    pub fn append_histogram(&mut self, t: i64, h: &Histogram) -> Result<(), ChunkError> {
        h.validate()
            .map_err(|source| ChunkError::InvalidHistogram { source })?;
        self.check_order(t)?;
        let prev = self.prepare(t, Encoding::Histogram);
        let prev = match prev {
            Some(Open::Int(a)) => Some(a),
            _ => None,
        };
        let Some(head) = self.head.as_mut() else {
            return Ok(());
        };
        let Open::Int(app) = &mut head.app else {
            return Ok(());
        };
        let outcome = app.append_valid(prev.as_ref(), t, h)?;
        self.after_append(t, outcome.map_new(Open::Int));
        Ok(())
    }

    /// Appends a float histogram at `t` (ms), as [`append_histogram`](Self::append_histogram).
    pub fn append_float_histogram(&mut self, t: i64, h: &FloatHistogram) -> Result<(), ChunkError> {
        h.validate()
            .map_err(|source| ChunkError::InvalidHistogram { source })?;
        self.check_order(t)?;
        let prev = match self.prepare(t, Encoding::FloatHistogram) {
            Some(Open::Float(a)) => Some(a),
            _ => None,
        };
        let Some(head) = self.head.as_mut() else {
            return Ok(());
        };
        let Open::Float(app) = &mut head.app else {
            return Ok(());
        };
        let outcome = app.append_valid(prev.as_ref(), t, h)?;
        self.after_append(t, outcome.map_new(Open::Float));
        Ok(())
    }

    /// The open chunk, if it holds a sample: its encoding, first and last timestamps (ms) and
    /// payload so far.
    pub fn open(&self) -> Option<(Encoding, i64, i64, &[u8])> {
        self.head
            .as_ref()
            .filter(|h| h.app.num_samples() > 0)
            .map(|h| (h.app.encoding(), h.min_time, h.max_time, h.app.bytes()))
    }

    /// Closes the open chunk, as when a float sample comes between histograms: the next
    /// histogram starts a chunk of its own with nothing to compare its counters against.
    pub fn close(&mut self) {
        if let Some(h) = self.head.take()
            && h.app.num_samples() > 0
        {
            self.done.push(h.finish());
        }
        self.end_time_computed = false;
    }

    /// Chunks finished so far, oldest first, taken out of the cutter.
    pub fn take_finished(&mut self) -> Vec<CutHistogramChunk> {
        std::mem::take(&mut self.done)
    }

    /// Every chunk, the open one last.
    pub fn finish(mut self) -> Vec<CutHistogramChunk> {
        if let Some(h) = self.head.take()
            && h.app.num_samples() > 0
        {
            self.done.push(h.finish());
        }
        self.done
    }

    /// Samples must come after the open chunk's last one (or the last finished chunk's).
    fn check_order(&self, t: i64) -> Result<(), ChunkError> {
        let last = match &self.head {
            Some(h) => h.max_time,
            None => self.done.last().map_or(i64::MIN, |c| c.max_time),
        };
        if last != i64::MIN && t <= last {
            return Err(ChunkError::OutOfOrderSample { t, max_t: last });
        }
        Ok(())
    }

    /// Cuts the open chunk where the head's size and time rules say so (or when the encoding
    /// changes) and returns the appender of the chunk cut, which the new chunk's counter-reset
    /// header is worked out against.
    fn prepare(&mut self, t: i64, encoding: Encoding) -> Option<Open> {
        let mut cut_from = None;
        let mut created = false;
        if self.head.is_none() {
            self.cut(t, encoding, &mut cut_from);
            created = true;
        }
        if self.head.as_ref()?.app.encoding() != encoding {
            self.cut(t, encoding, &mut cut_from);
            created = true;
        }
        let head = self.head.as_mut()?;
        let samples = head.app.num_samples();
        let bytes = head.app.bytes().len();
        if samples == 0 {
            head.min_time = t;
            self.next_at = range_end(t, self.chunk_range);
        }
        // The minimum sample count gives way when the chunk range ends first, or when no end
        // time was predicted yet.
        let range_start = if self.end_time_computed {
            range_end(head.min_time, self.chunk_range)
        } else {
            self.next_at
        };
        if !self.end_time_computed && bytes >= TARGET_BYTES_PER_HISTOGRAM_CHUNK / 4 {
            let ratio = TARGET_BYTES_PER_HISTOGRAM_CHUNK as f64 / bytes as f64;
            self.next_at =
                compute_chunk_end_time(head.min_time, head.max_time, self.next_at, ratio);
            self.end_time_computed = true;
        }
        if (t >= self.next_at || bytes >= 2 * TARGET_BYTES_PER_HISTOGRAM_CHUNK)
            && (samples >= MIN_SAMPLES_PER_HISTOGRAM_CHUNK || t >= range_start)
        {
            self.cut(t, encoding, &mut cut_from);
            created = true;
        }
        if created {
            self.end_time_computed = false;
        }
        cut_from
    }

    /// Closes the open chunk and opens an empty one starting at `t`; the first closed
    /// appender goes to `cut_from`.
    fn cut(&mut self, t: i64, encoding: Encoding, cut_from: &mut Option<Open>) {
        if let Some(old) = self.head.take() {
            if old.app.num_samples() > 0 {
                self.done.push(old.finish());
            }
            if cut_from.is_none() {
                *cut_from = Some(old.app);
            }
        }
        self.head = Some(HeadChunk {
            app: Open::new(encoding),
            min_time: t,
            max_time: i64::MIN,
        });
        self.next_at = range_end(t, self.chunk_range);
    }

    /// Records an append's outcome: a chunk the appender started replaces the open one.
    fn after_append(&mut self, t: i64, outcome: HistogramAppend<Open>) {
        match outcome {
            HistogramAppend::Appended | HistogramAppend::Recoded => {
                if let Some(h) = self.head.as_mut() {
                    h.max_time = t;
                }
            }
            HistogramAppend::NewChunk(app) => {
                if let Some(old) = self.head.take() {
                    self.done.push(old.finish());
                }
                self.head = Some(HeadChunk {
                    app,
                    min_time: t,
                    max_time: t,
                });
                // The predicted-end flag is left as it was, as the head leaves it.
                self.next_at = range_end(t, self.chunk_range);
            }
        }
    }
}

impl<A> HistogramAppend<A> {
    /// The same outcome with the new chunk's appender mapped.
    fn map_new<B>(self, f: impl FnOnce(A) -> B) -> HistogramAppend<B> {
        match self {
            HistogramAppend::Appended => HistogramAppend::Appended,
            HistogramAppend::Recoded => HistogramAppend::Recoded,
            HistogramAppend::NewChunk(a) => HistogramAppend::NewChunk(f(a)),
        }
    }
}

/// The predicted end of a chunk that started at `start`, holds samples up to `cur` and is
/// `1/ratio_to_full` full: the rest of the range up to `max` is split into chunks of the same
/// time span (float arithmetic as the head's, truncated toward zero).
fn compute_chunk_end_time(start: i64, cur: i64, max: i64, ratio_to_full: f64) -> i64 {
    let n = (max - start) as f64 / ((cur - start + 1) as f64 * ratio_to_full);
    if n <= 1.0 {
        return max;
    }
    (start as f64 + (max - start) as f64 / n.floor()) as i64
}

/// Cuts a whole series of integer histograms (in time order) into chunks.
pub fn cut_histogram_chunks(
    samples: &[(i64, Histogram)],
    chunk_range_ms: i64,
) -> Result<Vec<CutHistogramChunk>, ChunkError> {
    let mut c = HistogramChunkCutter::new(chunk_range_ms);
    for (t, h) in samples {
        c.append_histogram(*t, h)?;
    }
    Ok(c.finish())
}

/// Cuts a whole series of float histograms (in time order) into chunks.
pub fn cut_float_histogram_chunks(
    samples: &[(i64, FloatHistogram)],
    chunk_range_ms: i64,
) -> Result<Vec<CutHistogramChunk>, ChunkError> {
    let mut c = HistogramChunkCutter::new(chunk_range_ms);
    for (t, h) in samples {
        c.append_float_histogram(*t, h)?;
    }
    Ok(c.finish())
}
