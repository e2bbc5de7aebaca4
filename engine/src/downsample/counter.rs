//! Thanos's `ApplyCounterResetsSeriesIterator`: chains a series' counter sub-chunks (or raw
//! chunks) into one monotonic series, using each chunk's duplicated last sample (the true last
//! raw value) to see a reset that falls between two chunks.

/// Samples of one chunk, in order (`(t ms, value)`).
pub(crate) type ChunkSamples = Vec<(i64, f64)>;

/// Walks chunks of counter samples and yields running totals with resets removed.
///
/// Follows Thanos step by step: NaN values are skipped; the first sample sets the total; a
/// later timestamp adds the increase (or the whole value after a drop); a sample repeating the
/// last timestamp only records the true last raw value; an earlier timestamp is skipped; when a
/// chunk ends, the next one is read from `lastT + 1` on.
#[derive(Debug)]
pub(crate) struct CounterResets<'a> {
    chunks: &'a [ChunkSamples],
    /// Current chunk.
    i: usize,
    /// Next sample of the current chunk.
    pos: usize,
    /// Samples yielded so far.
    total: u64,
    last_t: i64,
    /// The last raw value seen (updated by the duplicated last sample of a chunk).
    last_v: f64,
    /// Running total since the first sample.
    total_v: f64,
}

impl<'a> CounterResets<'a> {
    pub(crate) fn new(chunks: &'a [ChunkSamples]) -> Self {
        CounterResets {
            chunks,
            i: 0,
            pos: 0,
            total: 0,
            last_t: 0,
            last_v: 0.0,
            total_v: 0.0,
        }
    }

    /// The last raw value read: a counter chunk's true final value.
    pub(crate) fn last_raw(&self) -> f64 {
        self.last_v
    }

    /// The next `(t, running total)`, or `None` when every chunk is read.
    pub(crate) fn next_sample(&mut self) -> Option<(i64, f64)> {
        // Thanos seeks to `lastT + 1` when a chunk ends, stepping sample by sample; the target
        // is kept here instead of recursing, so many empty chunks cannot exhaust the stack.
        let mut seek_to: Option<i64> = None;
        loop {
            let chunk = self.chunks.get(self.i)?;
            let Some(&(t, v)) = chunk.get(self.pos) else {
                self.i += 1;
                self.pos = 0;
                let x = self.last_t.wrapping_add(1);
                seek_to = Some(seek_to.map_or(x, |s| s.max(x)));
                continue;
            };
            self.pos += 1;
            if v.is_nan() {
                continue;
            }
            if self.total == 0 {
                self.total = 1;
                (self.last_t, self.last_v, self.total_v) = (t, v, v);
            } else if t > self.last_t {
                if v >= self.last_v {
                    self.total_v += v - self.last_v;
                } else {
                    self.total_v += v;
                }
                (self.last_t, self.last_v) = (t, v);
                self.total += 1;
            } else {
                if t == self.last_t {
                    self.last_v = v;
                }
                continue;
            }
            if seek_to.is_some_and(|x| self.last_t < x) {
                continue;
            }
            return Some((self.last_t, self.total_v));
        }
    }
}

/// Appends `samples` to `out` as Thanos's `expandChunkIterator` does: stale markers dropped,
/// and samples going back in time (before the previous kept one, or before 0) skipped.
pub(crate) fn expand_into(samples: impl Iterator<Item = (i64, f64)>, out: &mut ChunkSamples) {
    let mut last_t = 0i64;
    for (t, v) in samples {
        if crate::chunk::is_stale_nan(v) {
            continue;
        }
        if t >= last_t {
            out.push((t, v));
            last_t = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[ChunkSamples]) -> (Vec<(i64, f64)>, f64) {
        let mut it = CounterResets::new(chunks);
        let mut out = Vec::new();
        while let Some(s) = it.next_sample() {
            out.push(s);
        }
        (out, it.last_raw())
    }

    #[test]
    fn resets_inside_and_between_chunks_are_removed() {
        // Chunk 1: first raw value 10, window totals 15 and 17, then the duplicated last
        // timestamp with the true last raw value 4 (the counter was reset inside the chunk).
        // Chunk 2 starts at 1, below 4: a reset between the chunks.
        let a = vec![(0, 10.0), (100, 15.0), (200, 17.0), (200, 4.0)];
        let b = vec![(300, 1.0), (400, 3.0), (400, 3.0)];
        let (out, last) = run(&[a, b]);
        assert_eq!(
            out,
            vec![
                (0, 10.0),
                (100, 15.0),
                (200, 17.0),
                (300, 18.0),
                (400, 20.0)
            ]
        );
        assert_eq!(last, 3.0);
    }

    #[test]
    fn nan_overlap_and_empty_chunks_are_skipped() {
        let a = vec![(0, 1.0), (10, f64::NAN), (20, 2.0)];
        let b = vec![];
        let c = vec![(5, 100.0), (20, 100.0), (30, 3.0)];
        let (out, _) = run(&[a, b, c]);
        // (5, 100) goes back in time; (20, 100) repeats the last timestamp and sets the last
        // raw value to 100, so 3 after it is a reset.
        assert_eq!(out, vec![(0, 1.0), (20, 2.0), (30, 5.0)]);
        assert_eq!(run(&[]).0, vec![]);
    }

    #[test]
    fn expansion_drops_stale_markers_and_going_back() {
        let stale = f64::from_bits(crate::chunk::STALE_NAN_BITS);
        let mut out = Vec::new();
        expand_into(
            [
                (-5, 1.0),
                (0, 2.0),
                (10, stale),
                (10, 3.0),
                (5, 4.0),
                (10, 5.0),
            ]
            .into_iter(),
            &mut out,
        );
        assert_eq!(out, vec![(0, 2.0), (10, 3.0), (10, 5.0)]);
    }
}
