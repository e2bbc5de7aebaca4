//! Decoding one series' native histogram chunks into a [`HistogramBatch`] that is kept from
//! series to series: each sample overwrites the histogram already in its slot, so its span and
//! bucket vectors are reused rather than allocated for every sample and freed with the series.

use super::batch::HistogramBatch;
use super::float_histogram::FloatHistogramIterator;
use super::histogram::HistogramIterator;
use super::{ChunkError, Encoding};

/// What [`decode_histogram_chunks_reusing`] made of the chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReusedDecode {
    /// `out` holds every sample in the range, in time order.
    Done,
    /// Two chunks overlap in time (a sample was not after the one before it): `out` holds a
    /// part only, and the caller decodes the series with a merging decoder instead.
    Overlapping,
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
    (mint, maxt): (i64, i64),
    out: &mut HistogramBatch,
) -> Result<ReusedDecode, ChunkError> {
    out.ts.clear();
    let mut n = 0usize;
    let mut last = i64::MIN;
    let mut overlapping = false;
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
                    overlapping = true;
                    break;
                }
                match out.h.get_mut(n) {
                    Some(h) => it.float_histogram_into(h),
                    None => {
                        let mut h = crate::histogram::FloatHistogram::default();
                        it.float_histogram_into(&mut h);
                        out.h.push(h);
                    }
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
        if overlapping {
            break;
        }
    }
    out.h.truncate(n);
    Ok(if overlapping {
        ReusedDecode::Overlapping
    } else {
        ReusedDecode::Done
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{FloatHistogramAppender, HistogramAppender};
    use crate::histogram::{FloatHistogram, Histogram, Span};

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
}
