//! A batch of series as the store streams them: label bytes in one arena, chunk payloads as
//! ranges of the few buffers they were read into, so a batch of a thousand series costs a
//! handful of allocations and no reference-count traffic per chunk.

use std::cmp::Ordering;
use std::ops::Range;

use bytes::Bytes;

use super::block::RawChunk;
use super::series::StoreSeries;
use crate::labels::{Label, Labels};
use crate::query::Grouping;

/// Series sorted by labels, each with its chunks.
#[derive(Debug, Clone, Default)]
pub struct SeriesBatch {
    /// Label names and values; UTF-8 (copied from checked symbol tables). Labels of several
    /// series may share bytes.
    text: Vec<u8>,
    /// Per label: name start, name end (= value start), value end in `text`.
    labels: Vec<[u32; 3]>,
    series: Vec<Entry>,
    chunks: Vec<ChunkEntry>,
    /// The buffers chunk payloads live in (whole coalesced reads, or re-cut chunks).
    bufs: Vec<Bytes>,
    /// Bytes of `bufs`, counted once each.
    buf_bytes: usize,
}

#[derive(Debug, Clone)]
struct Entry {
    labels: Range<u32>,
    chunks: Range<u32>,
}

/// A chunk: its time range and where its payload lies in the batch's buffers.
#[derive(Debug, Clone, Copy)]
struct ChunkEntry {
    min_time: i64,
    max_time: i64,
    buf: u32,
    start: u32,
    len: u32,
    encoding: u8,
}

/// A chunk of a batch, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkView<'a> {
    /// First sample's timestamp, ms.
    pub min_time: i64,
    /// Last sample's timestamp, ms (inclusive).
    pub max_time: i64,
    /// TSDB chunk encoding byte (1 = XOR).
    pub encoding: u8,
    /// The payload, starting with the 2-byte sample count.
    pub data: &'a [u8],
}

/// Bytes a batch's bookkeeping costs per label, series and chunk besides the payloads.
const LABEL_COST: usize = 12;
const SERIES_COST: usize = 24;
const CHUNK_COST: usize = 32;

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

    /// Bytes held: labels, bookkeeping and the payload buffers (the figure batches are sized
    /// by).
    pub fn bytes(&self) -> usize {
        self.text.len()
            + self.labels.len() * LABEL_COST
            + self.series.len() * SERIES_COST
            + self.chunks.len() * CHUNK_COST
            + self.buf_bytes
    }

    /// Makes room for `n` more bytes of label text.
    pub(super) fn reserve_text(&mut self, n: usize) {
        self.text.reserve(n);
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

    /// Number of labels of series `i`.
    pub fn num_labels(&self, i: usize) -> usize {
        self.series[i].labels.len()
    }

    /// Chunks of series `i`, sorted by time, each of at most 120 samples.
    pub fn chunks(&self, i: usize) -> impl ExactSizeIterator<Item = ChunkView<'_>> + '_ {
        let r = &self.series[i].chunks;
        self.chunks[r.start as usize..r.end as usize]
            .iter()
            .map(|c| self.view(c))
    }

    /// Number of chunks of series `i`.
    pub fn num_chunks(&self, i: usize) -> usize {
        self.series[i].chunks.len()
    }

    /// Number of chunks in the batch.
    pub fn total_chunks(&self) -> usize {
        self.chunks.len()
    }

    fn view(&self, c: &ChunkEntry) -> ChunkView<'_> {
        let s = c.start as usize;
        ChunkView {
            min_time: c.min_time,
            max_time: c.max_time,
            encoding: c.encoding,
            data: &self.bufs[c.buf as usize][s..s + c.len as usize],
        }
    }

    /// Series `i` as owned labels and chunks (the chunks share the batch's buffers).
    pub fn series(&self, i: usize) -> StoreSeries {
        let labels = self
            .labels(i)
            .map(|(n, v)| Label::from_bytes(n, v))
            .collect();
        StoreSeries {
            labels: Labels::from_sorted(labels),
            chunks: self.raw_chunks(i),
        }
    }

    /// Every series of the batch, as [`SeriesBatch::series`] gives them one at a time. A label
    /// the batch holds once for several series (sorted series share most of theirs) is decoded
    /// once and cloned for the rest.
    pub fn all_series(&self) -> Vec<StoreSeries> {
        self.all_series_reading(None)
    }

    /// [`SeriesBatch::all_series`] with, under `grouping`, only the labels it reads.
    pub fn all_series_reading(&self, grouping: Option<&Grouping>) -> Vec<StoreSeries> {
        const SLOTS: usize = 1024;
        let mut memo: Vec<Option<([u32; 3], Label)>> = vec![None; SLOTS];
        let slot = |at: &[u32; 3]| {
            (u64::from(at[0]).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros()))
                as usize
        };
        (0..self.series.len())
            .map(|i| {
                let r = &self.series[i].labels;
                let labels = self.labels[r.start as usize..r.end as usize]
                    .iter()
                    .filter(|at| {
                        grouping.is_none_or(|g| g.reads(&self.text[at[0] as usize..at[1] as usize]))
                    })
                    .map(|at| {
                        let m = &mut memo[slot(at)];
                        match m {
                            Some((key, l)) if key == at => l.clone(),
                            _ => {
                                let [a, b, c] = at.map(|x| x as usize);
                                let l = Label::from_bytes(&self.text[a..b], &self.text[b..c]);
                                *m = Some((*at, l.clone()));
                                l
                            }
                        }
                    })
                    .collect();
                StoreSeries {
                    labels: Labels::from_sorted(labels),
                    chunks: self.raw_chunks(i),
                }
            })
            .collect()
    }

    fn raw_chunk(&self, c: &ChunkEntry) -> RawChunk {
        let s = c.start as usize;
        RawChunk {
            min_time: c.min_time,
            max_time: c.max_time,
            encoding: c.encoding,
            data: self.bufs[c.buf as usize].slice(s..s + c.len as usize),
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
    /// its chunks with [`SeriesBatch::push_chunk`] or [`SeriesBatch::push_chunk_in`].
    pub fn start_series(&mut self) {
        let l = self.labels.len() as u32;
        let c = self.chunks.len() as u32;
        self.series.push(Entry {
            labels: l..l,
            chunks: c..c,
        });
    }

    /// Keeps the first `n` series.
    pub fn truncate(&mut self, n: usize) {
        while self.series.len() > n {
            self.pop_series();
        }
    }

    /// Adds a label to the series started last.
    pub fn push_label(&mut self, name: &[u8], value: &[u8]) {
        let a = self.text.len() as u32;
        self.text.extend_from_slice(name);
        let b = self.text.len() as u32;
        self.text.extend_from_slice(value);
        let c = self.text.len() as u32;
        self.push_label_at([a, b, c]);
    }

    /// Appends `bytes` to the label arena; returns their range, for labels that reuse them.
    pub(super) fn push_text(&mut self, bytes: &[u8]) -> Range<u32> {
        let a = self.text.len() as u32;
        self.text.extend_from_slice(bytes);
        a..self.text.len() as u32
    }

    /// Adds to the series started last the first `n` labels of the series before it.
    pub(super) fn labels_of_previous(&mut self, n: usize) {
        let k = self.series.len();
        if n == 0 || k < 2 {
            return;
        }
        let from = self.series[k - 2].labels.start as usize;
        self.labels.extend_from_within(from..from + n);
        self.series[k - 1].labels.end = self.labels.len() as u32;
    }

    /// Adds a label by its arena position (the same bytes as an earlier label).
    pub(super) fn push_label_at(&mut self, l: [u32; 3]) {
        self.labels.push(l);
        if let Some(e) = self.series.last_mut() {
            e.labels.end = self.labels.len() as u32;
        }
    }

    /// Number of payload buffers.
    pub(super) fn bufs_len(&self) -> usize {
        self.bufs.len()
    }

    /// Adds a buffer chunk payloads will point into; returns its index.
    pub(super) fn add_buf(&mut self, b: Bytes) -> u32 {
        self.buf_bytes += b.len();
        self.bufs.push(b);
        self.bufs.len() as u32 - 1
    }

    /// Adds a chunk whose payload is `buf[start..start + len]` to the series started last.
    pub(super) fn push_chunk_in(
        &mut self,
        buf: u32,
        start: u32,
        len: u32,
        min_time: i64,
        max_time: i64,
        encoding: u8,
    ) {
        self.chunks.push(ChunkEntry {
            min_time,
            max_time,
            buf,
            start,
            len,
            encoding,
        });
        if let Some(e) = self.series.last_mut() {
            e.chunks.end = self.chunks.len() as u32;
        }
    }

    /// Adds an owned chunk to the series started last.
    pub fn push_chunk(&mut self, c: RawChunk) {
        let len = c.data.len() as u32;
        let buf = self.buf_index(&c.data);
        let start = (c.data.as_ptr() as usize - self.bufs[buf as usize].as_ptr() as usize) as u32;
        self.push_chunk_in(buf, start, len, c.min_time, c.max_time, c.encoding);
    }

    /// The index of a buffer holding `data`: one of the last few added when `data` lies in
    /// it (chunks copied from another batch come in runs from the same buffer), else `data`
    /// added as a new buffer.
    fn buf_index(&mut self, data: &Bytes) -> u32 {
        let p = data.as_ptr() as usize;
        let n = self.bufs.len();
        for k in (n.saturating_sub(4)..n).rev() {
            let b = &self.bufs[k];
            let s = b.as_ptr() as usize;
            if p >= s && p + data.len() <= s + b.len() {
                return k as u32;
            }
        }
        self.add_buf(data.clone())
    }

    /// Adds chunk `c` of batch `from` (a range of one of its buffers) to the series started
    /// last, sharing the buffer.
    fn copy_chunk(&mut self, from: &SeriesBatch, c: &ChunkEntry) {
        let src = &from.bufs[c.buf as usize];
        let n = self.bufs.len();
        let mut buf = None;
        for k in (n.saturating_sub(4)..n).rev() {
            let b = &self.bufs[k];
            if b.as_ptr() == src.as_ptr() && b.len() == src.len() {
                buf = Some(k as u32);
                break;
            }
        }
        let buf = buf.unwrap_or_else(|| self.add_buf(src.clone()));
        self.push_chunk_in(buf, c.start, c.len, c.min_time, c.max_time, c.encoding);
    }

    /// Drops the series started last (it turned out not to be served). Its label bytes stay in
    /// the arena, where later labels may share them.
    pub fn pop_series(&mut self) {
        if let Some(e) = self.series.pop() {
            self.labels.truncate(e.labels.start as usize);
            self.chunks.truncate(e.chunks.start as usize);
        }
    }

    /// Number of chunks of the series started last.
    pub fn last_chunk_count(&self) -> usize {
        self.series
            .last()
            .map_or(0, |e| (e.chunks.end - e.chunks.start) as usize)
    }

    /// Copies series `i` of `from` to the end of this batch; payloads are shared, not copied.
    pub fn copy_series(&mut self, from: &SeriesBatch, i: usize) {
        self.start_series();
        for (n, v) in from.labels(i) {
            self.push_label(n, v);
        }
        self.append_chunks_of(from, i);
    }

    /// Adds the chunks of series `i` of `from` to the last series of this batch (same labels).
    pub fn append_chunks_of(&mut self, from: &SeriesBatch, i: usize) {
        let r = from.series[i].chunks.clone();
        for c in &from.chunks[r.start as usize..r.end as usize] {
            self.copy_chunk(from, c);
        }
    }

    /// The chunks of series `i`, owned.
    pub(super) fn raw_chunks(&self, i: usize) -> Vec<RawChunk> {
        let r = &self.series[i].chunks;
        self.chunks[r.start as usize..r.end as usize]
            .iter()
            .map(|c| self.raw_chunk(c))
            .collect()
    }

    /// Whether the chunks of series `i` are in time order without overlapping (each starts
    /// after the one before ends), as chunks of one block, or of blocks following each other
    /// in time, are: such chunks need no merging.
    pub(super) fn chunks_in_order(&self, i: usize) -> bool {
        let r = &self.series[i].chunks;
        self.chunks[r.start as usize..r.end as usize]
            .windows(2)
            .all(|w| w[1].min_time > w[0].max_time)
    }

    /// Replaces the chunks of the last series (used after merging overlapping chunks).
    pub(super) fn replace_last_chunks(&mut self, chunks: Vec<RawChunk>) {
        let Some(last) = self.series.len().checked_sub(1) else {
            return;
        };
        self.chunks
            .truncate(self.series[last].chunks.start as usize);
        self.series[last].chunks.end = self.series[last].chunks.start;
        for c in chunks {
            self.push_chunk(c);
        }
    }

    /// Sorts the series by label set (stable), for producers whose label rewriting may have
    /// changed the index order.
    pub(super) fn sorted(&self) -> SeriesBatch {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.sort_by(|&a, &b| self.cmp_series(a, self, b));
        let mut out = SeriesBatch::new();
        for i in idx {
            out.copy_series(self, i);
        }
        out
    }

    /// Whether the series are in strictly ascending label order.
    pub(super) fn is_sorted(&self) -> bool {
        (1..self.len()).all(|i| self.cmp_series(i - 1, self, i).is_lt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(data: &'static [u8], t: i64) -> RawChunk {
        RawChunk {
            min_time: t,
            max_time: t + 1,
            encoding: 1,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn series_keep_their_labels_and_chunks_and_compare_like_label_sets() {
        let mut b = SeriesBatch::new();
        b.start_series();
        b.push_label(b"__name__", b"up");
        b.push_label(b"job", b"a");
        b.push_chunk(chunk(b"\x00\x01abc", 1));
        b.start_series();
        let name = b.push_text(b"__name__");
        let up = b.push_text(b"up");
        assert_eq!(name.end, up.start);
        b.push_label_at([name.start, name.end, up.end]);
        let job = b.push_text(b"job");
        let a = b.push_text(b"a");
        b.push_label_at([job.start, job.end, a.end]);
        b.push_label(b"x", b"1");
        let buf = b.add_buf(Bytes::from_static(b"....\x00\x01zz.."));
        b.push_chunk_in(buf, 4, 4, 10, 20, 1);
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
        assert_eq!(&s.chunks[0].data[..], b"\x00\x01zz");
        assert_eq!(b.chunks(0).next().unwrap().data, b"\x00\x01abc");
        let mut c = SeriesBatch::new();
        c.copy_series(&b, 1);
        c.copy_series(&b, 0);
        assert_eq!(c.cmp_series(0, &b, 1), Ordering::Equal);
        assert!(!c.is_sorted());
        let s = c.sorted();
        assert!(s.is_sorted());
        assert_eq!(s.chunks(1).next().unwrap().data, b"\x00\x01zz");
        // Chunks copied from one buffer share it.
        assert_eq!(s.bufs.len(), 2);
        let mut r = s.clone();
        r.replace_last_chunks(vec![chunk(b"\x00\x01new", 5), chunk(b"\x00\x01two", 7)]);
        assert_eq!(r.chunks(0).next().unwrap().data, b"\x00\x01abc");
        let last: Vec<_> = r.chunks(1).map(|c| c.data).collect();
        assert_eq!(last, [b"\x00\x01new", b"\x00\x01two"]);
        assert!(r.chunks_in_order(1));
    }

    #[test]
    fn all_series_equals_each_series_with_shared_labels() {
        // Labels written once and reused by later series (as the store writes them), new ones
        // between, enough that memo slots collide.
        let mut b = SeriesBatch::new();
        let mut shared: Vec<[u32; 3]> = Vec::new();
        for i in 0..3000u32 {
            b.start_series();
            let n = b.push_text(b"job");
            let v = b.push_text(format!("j{}", i % 7).as_bytes());
            b.push_label_at([n.start, n.end, v.end]);
            if i % 3 == 0 || shared.is_empty() {
                let n = b.push_text(b"long_shared_label_name_of_more_than_24_bytes");
                let v = b.push_text(format!("value-{i}-padded-past-the-inline-size").as_bytes());
                shared.push([n.start, n.end, v.end]);
            }
            b.push_label_at(shared[(i as usize * 7919) % shared.len()]);
            b.push_label(b"pod", format!("p{i}").as_bytes());
            b.push_chunk(chunk(b"\x00\x01ab", i64::from(i)));
        }
        let each: Vec<StoreSeries> = (0..b.len()).map(|i| b.series(i)).collect();
        assert_eq!(b.all_series(), each);
    }

    #[test]
    fn series_labels_read_back_as_lossy_utf8_of_their_bytes() {
        let long = "v".repeat(100);
        let pairs: [(&[u8], &[u8]); 8] = [
            (b"__name__", b"up"),
            (b"a24", b"exactly-twenty-four-byte"),
            (b"a25", b"exactly-twenty-five-bytes"),
            (b"b_long", long.as_bytes()),
            (b"empty", b""),
            (b"invalid", b"a\xffb\xe2\x82"),
            (b"na\xc3me", b"ok"),
            (b"utf8", "h\u{e9}llo \u{20ac} \u{1f600}".as_bytes()),
        ];
        let mut b = SeriesBatch::new();
        b.start_series();
        for (n, v) in pairs {
            b.push_label(n, v);
        }
        let s = b.series(0);
        assert_eq!(b.all_series(), vec![s.clone()]);
        assert_eq!(s.labels.len(), pairs.len());
        for (l, (n, v)) in s.labels.iter().zip(pairs) {
            assert_eq!(l.name.as_str(), String::from_utf8_lossy(n));
            assert_eq!(l.value.as_str(), String::from_utf8_lossy(v));
        }
        assert_eq!(s.labels.get("a24"), Some("exactly-twenty-four-byte"));
        assert_eq!(s.labels.get("a25"), Some("exactly-twenty-five-bytes"));
        assert_eq!(s.labels.get("b_long"), Some(long.as_str()));
        assert_eq!(s.labels.get("empty"), Some(""));
        assert_eq!(s.labels.get("invalid"), Some("a\u{fffd}b\u{fffd}"));
        assert_eq!(s.labels.get("na\u{fffd}me"), Some("ok"));
        assert_eq!(s.labels.get("utf8"), Some("h\u{e9}llo \u{20ac} \u{1f600}"));
    }
}
