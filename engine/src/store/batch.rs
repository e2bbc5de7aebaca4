//! A batch of series as the store streams them: label bytes in one arena, chunks in one list,
//! so a batch of a thousand series costs a handful of allocations instead of thousands.

use std::cmp::Ordering;
use std::ops::Range;

use super::block::RawChunk;
use super::series::StoreSeries;
use crate::labels::{Label, Labels};

/// Series sorted by labels, each with its chunks.
#[derive(Debug, Clone, Default)]
pub struct SeriesBatch {
    /// Label names and values, concatenated; UTF-8 (copied from checked symbol tables).
    text: Vec<u8>,
    /// Per label: name start, name end (= value start), value end in `text`.
    labels: Vec<[u32; 3]>,
    series: Vec<Entry>,
    chunks: Vec<RawChunk>,
    /// Payload bytes of `chunks` plus a per-chunk overhead, kept as chunks come and go.
    chunk_bytes: usize,
}

/// What a chunk costs besides its payload (its struct and the reference count), bytes.
const CHUNK_OVERHEAD: usize = 48;

#[derive(Debug, Clone)]
struct Entry {
    labels: Range<u32>,
    chunks: Range<u32>,
}

impl SeriesBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Bytes held by labels and chunk payloads (the figure batches are sized by).
    pub fn bytes(&self) -> usize {
        self.text.len() + self.labels.len() * 12 + self.series.len() * 16 + self.chunk_bytes
    }

    /// Label `(name, value)` byte pairs of series `i`, sorted by name.
    pub fn labels(&self, i: usize) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + '_ {
        let r = &self.series[i].labels;
        self.labels[r.start as usize..r.end as usize]
            .iter()
            .map(|&[a, b, c]| {
                (
                    &self.text[a as usize..b as usize],
                    &self.text[b as usize..c as usize],
                )
            })
    }

    /// Chunks of series `i`, sorted by time, each of at most 120 samples.
    pub fn chunks(&self, i: usize) -> &[RawChunk] {
        let r = &self.series[i].chunks;
        &self.chunks[r.start as usize..r.end as usize]
    }

    /// Series `i` as owned labels and chunks.
    pub fn series(&self, i: usize) -> StoreSeries {
        let labels = self
            .labels(i)
            .map(|(n, v)| {
                Label::new(
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        StoreSeries {
            labels: Labels::from_sorted(labels),
            chunks: self.chunks(i).to_vec(),
        }
    }

    /// Compares series `i` of this batch with series `j` of `other` as label sets.
    pub fn cmp_series(&self, i: usize, other: &SeriesBatch, j: usize) -> Ordering {
        let mut a = self.labels(i);
        let mut b = other.labels(j);
        loop {
            match (a.next(), b.next()) {
                (Some(x), Some(y)) => match x.0.cmp(y.0).then_with(|| x.1.cmp(y.1)) {
                    Ordering::Equal => {}
                    o => return o,
                },
                (None, None) => return Ordering::Equal,
                (None, Some(_)) => return Ordering::Less,
                (Some(_), None) => return Ordering::Greater,
            }
        }
    }

    /// Starts a new series; add its labels in name order with [`SeriesBatch::push_label`] and
    /// its chunks with [`SeriesBatch::push_chunk`].
    pub fn start_series(&mut self) {
        let l = self.labels.len() as u32;
        let c = self.chunks.len() as u32;
        self.series.push(Entry {
            labels: l..l,
            chunks: c..c,
        });
    }

    /// Adds a label to the series started last.
    pub fn push_label(&mut self, name: &[u8], value: &[u8]) {
        let a = self.text.len() as u32;
        self.text.extend_from_slice(name);
        let b = self.text.len() as u32;
        self.text.extend_from_slice(value);
        let c = self.text.len() as u32;
        self.labels.push([a, b, c]);
        if let Some(e) = self.series.last_mut() {
            e.labels.end = self.labels.len() as u32;
        }
    }

    /// Adds a chunk to the series started last.
    pub fn push_chunk(&mut self, c: RawChunk) {
        self.chunk_bytes += c.data.len() + CHUNK_OVERHEAD;
        self.chunks.push(c);
        if let Some(e) = self.series.last_mut() {
            e.chunks.end = self.chunks.len() as u32;
        }
    }

    /// Drops the series started last (it turned out not to be served).
    pub fn pop_series(&mut self) {
        if let Some(e) = self.series.pop() {
            self.labels.truncate(e.labels.start as usize);
            for c in self.chunks.drain(e.chunks.start as usize..) {
                self.chunk_bytes -= c.data.len() + CHUNK_OVERHEAD;
            }
            let text_end = self.labels.last().map_or(0, |l| l[2] as usize);
            self.text.truncate(text_end);
        }
    }

    /// Number of chunks of the series started last.
    pub fn last_chunk_count(&self) -> usize {
        self.series
            .last()
            .map_or(0, |e| (e.chunks.end - e.chunks.start) as usize)
    }

    /// Copies series `i` of `from` to the end of this batch, moving no payload bytes (chunks
    /// are reference-counted).
    pub fn copy_series(&mut self, from: &SeriesBatch, i: usize) {
        self.start_series();
        for (n, v) in from.labels(i) {
            self.push_label(n, v);
        }
        for c in from.chunks(i) {
            self.push_chunk(c.clone());
        }
    }

    /// Adds the chunks of series `i` of `from` to the last series of this batch (same labels).
    pub fn append_chunks_of(&mut self, from: &SeriesBatch, i: usize) {
        for c in from.chunks(i) {
            self.push_chunk(c.clone());
        }
    }

    /// Replaces the chunks of series `i` (used after merging overlapping chunks).
    pub(super) fn replace_chunks(&mut self, i: usize, chunks: Vec<RawChunk>) {
        let mut all = Vec::with_capacity(self.chunks.len());
        for (j, e) in self.series.iter_mut().enumerate() {
            let start = all.len() as u32;
            if j == i {
                all.extend(chunks.iter().cloned());
            } else {
                all.extend_from_slice(&self.chunks[e.chunks.start as usize..e.chunks.end as usize]);
            }
            e.chunks = start..all.len() as u32;
        }
        self.chunk_bytes = all.iter().map(|c| c.data.len() + CHUNK_OVERHEAD).sum();
        self.chunks = all;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_their_labels_and_chunks_and_compare_like_label_sets() {
        let mut b = SeriesBatch::new();
        b.start_series();
        b.push_label(b"__name__", b"up");
        b.push_label(b"job", b"a");
        b.start_series();
        b.push_label(b"__name__", b"up");
        b.push_label(b"job", b"a");
        b.push_label(b"x", b"1");
        b.start_series();
        b.push_label(b"__name__", b"zz");
        b.pop_series();
        assert_eq!(b.len(), 2);
        assert_eq!(b.cmp_series(0, &b, 1), Ordering::Less);
        assert_eq!(b.cmp_series(1, &b, 0), Ordering::Greater);
        assert_eq!(b.cmp_series(1, &b, 1), Ordering::Equal);
        let s = b.series(1);
        assert_eq!(
            s.labels,
            Labels::from_pairs([("__name__", "up"), ("job", "a"), ("x", "1")])
        );
        let mut c = SeriesBatch::new();
        c.copy_series(&b, 0);
        assert_eq!(c.cmp_series(0, &b, 0), Ordering::Equal);
    }
}
