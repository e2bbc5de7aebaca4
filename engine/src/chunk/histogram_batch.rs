//! Decoding one series' native histogram chunks into a [`HistogramBatch`] that is kept from
//! series to series: each sample overwrites the histogram already in its slot, so its span and
//! bucket vectors are reused rather than allocated for every sample and freed with the series.

use super::batch::HistogramBatch;
use super::float_histogram::FloatHistogramIterator;
use super::histogram::HistogramIterator;
use super::{ChunkError, Encoding};
use crate::histogram::{CounterResetHint, FloatHistogram};

/// What [`decode_histogram_chunks_reusing`] or [`decode_histogram_stats_reusing`] made of
/// the chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReusedDecode {
    /// `out` holds every sample in the range, in time order.
    Done,
    /// Two chunks overlap in time (a sample was not after the one before it): `out` holds a
    /// part only, and the caller decodes the series with a merging decoder instead.
    Overlapping,
    /// The count-and-sum decoder met a sample whose reading needs buckets it did not keep (a
    /// gauge histogram, or a sample whose counter reset is to be decided against a sample
    /// whose buckets were skipped): `out` holds a part only, and the caller decodes the
    /// series whole instead.
    NeedsBuckets,
}

/// How much of each sample the batch decoder writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detail {
    Full,
    CountSum,
}

/// Decodes the samples in `[mint, maxt]` (ms, inclusive) of a series' native histogram chunks,
/// given as `(encoding byte, payload)` in time order, into `out` as float histograms (integer
/// counts converted as Prometheus's iterator converts them; stale markers kept). Chunks of
/// other encodings are skipped; a chunk that is corrupt is an error.
///
/// The histograms `out` holds already are overwritten in place, keeping their allocations;
/// the ones left over are dropped at the end.
pub fn decode_histogram_chunks_reusing<'a>(
    chunks: impl IntoIterator<Item = (u8, &'a [u8])>,
    range: (i64, i64),
    out: &mut HistogramBatch,
) -> Result<ReusedDecode, ChunkError> {
    decode_reusing(chunks, range, Detail::Full, out)
}

/// [`decode_histogram_chunks_reusing`] for readers of the count and sum only: each sample as
/// [`HistogramIterator::float_stats_into`] writes it, without spans or buckets, except the
/// samples a counter-reset decision may compare: a chunk's first sample whose hint is
/// unknown (when a sample comes before it) and each chunk's last sample, written whole so the
/// caller can decide the unknown hints exactly (as Prometheus decides them, on the buckets)
/// and then drop the buckets.
///
/// Gives [`ReusedDecode::NeedsBuckets`] for a gauge histogram, and for an unknown hint whose
/// previous sample (stale markers skipped) was not written whole.
pub fn decode_histogram_stats_reusing<'a>(
    chunks: impl IntoIterator<Item = (u8, &'a [u8])>,
    range: (i64, i64),
    out: &mut HistogramBatch,
) -> Result<ReusedDecode, ChunkError> {
    decode_reusing(chunks, range, Detail::CountSum, out)
}

fn decode_reusing<'a>(
    chunks: impl IntoIterator<Item = (u8, &'a [u8])>,
    (mint, maxt): (i64, i64),
    detail: Detail,
    out: &mut HistogramBatch,
) -> Result<ReusedDecode, ChunkError> {
    out.ts.clear();
    let mut n = 0usize;
    let mut last = i64::MIN;
    let mut outcome = ReusedDecode::Done;
    // With `Detail::CountSum`: whether a non-stale sample was kept, and whether the last one
    // was written whole.
    let mut prev_kept = false;
    let mut prev_whole = false;
    // Both iterators step the same way; each kept sample goes into the next slot.
    macro_rules! take {
        ($it:expr) => {{
            let mut it = $it;
            while let Some(t) = it.next_sample()? {
                if t > maxt {
                    break;
                }
                if t < mint {
                    continue;
                }
                if n > 0 && t <= last {
                    outcome = ReusedDecode::Overlapping;
                    break;
                }
                let whole = match detail {
                    Detail::Full => true,
                    Detail::CountSum => {
                        let hint = it.hint();
                        let stale = it.is_stale();
                        let decided_here = prev_kept && hint == CounterResetHint::Unknown;
                        if hint == CounterResetHint::Gauge || (decided_here && !prev_whole) {
                            outcome = ReusedDecode::NeedsBuckets;
                            break;
                        }
                        let whole = !stale && (decided_here || it.is_last());
                        if !stale {
                            prev_kept = true;
                            prev_whole = whole;
                        }
                        whole
                    }
                };
                if n == out.h.len() {
                    out.h.push(FloatHistogram::default());
                }
                if whole {
                    it.float_histogram_into(&mut out.h[n]);
                } else {
                    it.float_stats_into(&mut out.h[n]);
                }
                out.ts.push(t);
                last = t;
                n += 1;
            }
        }};
    }
    for (encoding, data) in chunks {
        if encoding == Encoding::Histogram as u8 {
            take!(HistogramIterator::new(data)?);
        } else if encoding == Encoding::FloatHistogram as u8 {
            take!(FloatHistogramIterator::new(data)?);
        }
        if outcome != ReusedDecode::Done {
            break;
        }
    }
    out.h.truncate(n);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{FloatHistogramAppender, HistogramAppender};
    use crate::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};

    /// A schema-3 histogram of absolute bucket `counts`, its count their total.
    fn h(counts: &[i64]) -> Histogram {
        let deltas = counts
            .iter()
            .scan(0, |prev, &c| {
                let d = c - *prev;
                *prev = c;
                Some(d)
            })
            .collect();
        let count: i64 = counts.iter().sum();
        Histogram {
            schema: 3,
            count: count as u64,
            sum: count as f64 * 0.5,
            positive_spans: vec![Span::new(-2, counts.len() as u32)],
            positive_buckets: deltas,
            ..Histogram::default()
        }
    }

    fn int_chunk(samples: &[(i64, Histogram)]) -> Vec<u8> {
        let mut a = HistogramAppender::new();
        for (t, h) in samples {
            a.append(None, *t, h).unwrap();
        }
        a.into_bytes()
    }

    /// What the allocating decoder gives: each sample's float histogram.
    fn fresh(encoding: u8, data: &[u8], (mint, maxt): (i64, i64)) -> Vec<(i64, FloatHistogram)> {
        let mut out = Vec::new();
        if encoding == Encoding::Histogram as u8 {
            let mut it = HistogramIterator::new(data).unwrap();
            while let Some(t) = it.next_sample().unwrap() {
                let mut f = FloatHistogram::default();
                it.float_histogram_into(&mut f);
                out.push((t, f));
            }
        } else {
            let mut it = FloatHistogramIterator::new(data).unwrap();
            while let Some(t) = it.next_sample().unwrap() {
                let mut f = FloatHistogram::default();
                it.float_histogram_into(&mut f);
                out.push((t, f));
            }
        }
        out.retain(|(t, _)| (mint..=maxt).contains(t));
        out
    }

    #[test]
    fn reused_slots_hold_what_fresh_histograms_hold() {
        let a = int_chunk(&[(0, h(&[1, 2])), (10, h(&[2, 2])), (20, h(&[2, 4, 1]))]);
        let mut fa = FloatHistogramAppender::new();
        for (t, x) in [(30, h(&[3, 4, 1])), (40, h(&[3, 4, 1, 2]))] {
            fa.append(None, t, &x.to_float()).unwrap();
        }
        let b = fa.into_bytes();
        let chunks = [
            (Encoding::Histogram as u8, &a[..]),
            (Encoding::Xor as u8, &[0u8, 0][..]),
            (Encoding::FloatHistogram as u8, &b[..]),
        ];
        let mut out = HistogramBatch::new();
        // A batch left over from a longer series with wider histograms: its slots are reused.
        for t in 0..9 {
            let mut f = h(&[5; 12]).to_float();
            f.negative_spans = vec![Span::new(0, 2)];
            f.negative_buckets = vec![1.0, 2.0];
            out.push(t, f);
        }
        for range in [(i64::MIN, i64::MAX), (10, 30), (15, 15), (41, 99)] {
            let got = decode_histogram_chunks_reusing(chunks, range, &mut out).unwrap();
            assert_eq!(got, ReusedDecode::Done);
            let mut want = fresh(chunks[0].0, chunks[0].1, range);
            want.extend(fresh(chunks[2].0, chunks[2].1, range));
            let got: Vec<(i64, FloatHistogram)> =
                out.ts.iter().copied().zip(out.h.iter().cloned()).collect();
            assert_eq!(got, want, "range {range:?}");
        }
    }

    #[test]
    fn overlapping_chunks_are_handed_back() {
        let a = int_chunk(&[(0, h(&[1, 2])), (10, h(&[2, 2]))]);
        let b = int_chunk(&[(10, h(&[2, 3]))]);
        let chunks = [
            (Encoding::Histogram as u8, &a[..]),
            (Encoding::Histogram as u8, &b[..]),
        ];
        let mut out = HistogramBatch::new();
        let got = decode_histogram_chunks_reusing(chunks, (i64::MIN, i64::MAX), &mut out);
        assert_eq!(got.unwrap(), ReusedDecode::Overlapping);
    }

    #[test]
    fn corrupt_chunks_are_errors() {
        let a = int_chunk(&[(0, h(&[1, 2])), (10, h(&[20, 30]))]);
        let cut = &a[..a.len() - 2];
        let mut out = HistogramBatch::new();
        let got = decode_histogram_chunks_reusing(
            [(Encoding::Histogram as u8, cut)],
            (i64::MIN, i64::MAX),
            &mut out,
        );
        assert!(got.is_err());
    }

    /// Whether `h` was written without buckets.
    fn bare(h: &FloatHistogram) -> bool {
        h.positive_spans.is_empty() && h.positive_buckets.is_empty()
    }

    #[test]
    fn count_and_sum_reads_keep_buckets_where_resets_are_decided() {
        // Chunk `b` starts with a bucket lower than `a` ends with (a reset the count does not
        // show); `c` is a float histogram chunk.
        let a = int_chunk(&[(0, h(&[1, 2])), (10, h(&[2, 2])), (20, h(&[2, 4, 1]))]);
        let b = int_chunk(&[
            (30, h(&[1, 9, 1])),
            (40, h(&[2, 9, 1])),
            (50, h(&[3, 9, 1])),
        ]);
        let mut fa = FloatHistogramAppender::new();
        for (t, x) in [(60, h(&[3, 9, 2])), (70, h(&[4, 9, 2]))] {
            fa.append(None, t, &x.to_float()).unwrap();
        }
        let c = fa.into_bytes();
        let chunks = [
            (Encoding::Histogram as u8, &a[..]),
            (Encoding::Histogram as u8, &b[..]),
            (Encoding::FloatHistogram as u8, &c[..]),
        ];
        let mut whole = HistogramBatch::new();
        decode_histogram_chunks_reusing(chunks, (i64::MIN, i64::MAX), &mut whole).unwrap();
        let mut out = HistogramBatch::new();
        // Reused slots of a whole read lose their buckets.
        decode_histogram_chunks_reusing(chunks, (i64::MIN, i64::MAX), &mut out).unwrap();
        let got = decode_histogram_stats_reusing(chunks, (i64::MIN, i64::MAX), &mut out);
        assert_eq!(got.unwrap(), ReusedDecode::Done);
        assert_eq!(out.ts, whole.ts);
        for (k, (x, y)) in out.h.iter().zip(&whole.h).enumerate() {
            assert_eq!(
                (x.count, x.sum, x.zero_count),
                (y.count, y.sum, y.zero_count)
            );
            assert_eq!(x.counter_reset_hint, y.counter_reset_hint);
            // Each chunk's last sample and the first samples whose hint is unknown are whole
            // (the very first has nothing before it to be compared with).
            if [2, 3, 5, 6, 7].contains(&k) {
                assert_eq!(x, y, "sample {k}");
            } else {
                assert!(bare(x), "sample {k}: {x:?}");
            }
        }
        // A range that starts inside chunk `b`: its first kept sample is not compared.
        let got = decode_histogram_stats_reusing(chunks, (40, 60), &mut out).unwrap();
        assert_eq!(got, ReusedDecode::Done);
        assert_eq!(out.ts, [40, 50, 60]);
        assert!(bare(&out.h[0]));
        assert_eq!(out.h[1], whole.h[5]);
        assert_eq!(out.h[2], whole.h[6]);
    }

    #[test]
    fn count_and_sum_reads_hand_back_what_needs_buckets() {
        let mut out = HistogramBatch::new();
        // A gauge.
        let mut g = h(&[1, 2]);
        g.counter_reset_hint = CounterResetHint::Gauge;
        let mut ga = HistogramAppender::new();
        ga.append(None, 0, &g).unwrap();
        let gauge = ga.into_bytes();
        let got = decode_histogram_stats_reusing(
            [(Encoding::Histogram as u8, &gauge[..])],
            (i64::MIN, i64::MAX),
            &mut out,
        );
        assert_eq!(got.unwrap(), ReusedDecode::NeedsBuckets);
        // A chunk ending in a stale marker: the next chunk's first sample is compared with a
        // sample whose buckets were skipped.
        let a = int_chunk(&[
            (0, h(&[1, 2])),
            (10, h(&[2, 2])),
            (20, Histogram::stale_marker()),
        ]);
        let b = int_chunk(&[(30, h(&[3, 2]))]);
        let chunks = [
            (Encoding::Histogram as u8, &a[..]),
            (Encoding::Histogram as u8, &b[..]),
        ];
        let got = decode_histogram_stats_reusing(chunks, (i64::MIN, i64::MAX), &mut out);
        assert_eq!(got.unwrap(), ReusedDecode::NeedsBuckets);
        // Without the chunk after it, the stale marker is read as the whole read has it.
        let got = decode_histogram_stats_reusing([chunks[0]], (i64::MIN, i64::MAX), &mut out);
        assert_eq!(got.unwrap(), ReusedDecode::Done);
        assert!(out.h[2].is_stale());
        assert!(bare(&out.h[0]) && bare(&out.h[1]));
    }
}
