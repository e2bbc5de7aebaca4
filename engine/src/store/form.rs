//! The two forms a streamed Series answer takes: [`SeriesBatch`] (labels and chunk payloads
//! by reference, for PromQL and other in-process readers) and [`WireBatch`] (StoreAPI frames,
//! for the gRPC server). [`StreamBatch`] is what the producers on the engine cores write and
//! what the stream merges, whichever the form.

use std::cmp::Ordering;

use bytes::Bytes;

use super::StoreError;
use super::batch::SeriesBatch;
use super::block::RawChunk;
use super::series::merge_chunks;
use super::symbols::SymbolPages;
use super::wire::{WireBatch, WireBuf, WireChunk, WireForm, put_label_field};
use crate::labels::Labels;

/// A label of a series as a producer serves it: a (name, value) pair of symbol references
/// of the block, or (with `name == EXT`) the block's external label number `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub(super) name: u32,
    pub(super) value: u32,
}

impl Served {
    /// The `name` of an external label.
    pub(super) const EXT: u32 = u32::MAX;
}

/// A chunk of a series as a producer serves it: its time range, encoding, and where its
/// payload lies in the batch's buffers.
#[derive(Debug, Clone, Copy)]
pub struct ReadChunk {
    pub(super) min_time: i64,
    pub(super) max_time: i64,
    pub(super) encoding: u8,
    pub(super) buf: u32,
    pub(super) start: u32,
    pub(super) len: u32,
}

/// What a producer read of a batch: the symbols and external labels its labels refer to and
/// the buffers its chunk payloads lie in.
#[derive(Debug, Clone, Copy)]
pub struct ReadBatch<'a> {
    pub(super) syms: &'a SymbolPages,
    pub(super) ext: &'a Labels,
    pub(super) bufs: &'a [Bytes],
    /// The labels of the batch's series, one after another, and where each series' end.
    pub(super) served: &'a [Served],
    pub(super) ends: &'a [u32],
}

impl<'a> ReadBatch<'a> {
    /// The bytes of a served label's name and value.
    #[inline]
    pub(super) fn label(&self, l: Served) -> (&'a [u8], &'a [u8]) {
        if l.name == Served::EXT {
            let e = &self.ext.as_slice()[l.value as usize];
            (e.name.as_bytes(), e.value.as_bytes())
        } else {
            (self.syms.get(l.name), self.syms.get(l.value))
        }
    }

    /// The payload of a chunk.
    #[inline]
    pub(super) fn data(&self, c: &ReadChunk) -> &'a [u8] {
        &self.bufs[c.buf as usize][c.start as usize..(c.start + c.len) as usize]
    }

    /// The labels of the batch's series that the series before does not start with, in
    /// order: what the batch needs looked up.
    pub(super) fn fresh_labels(&self) -> impl Iterator<Item = Served> + 'a {
        let (served, ends) = (self.served, self.ends);
        let mut prev: &[Served] = &[];
        let mut start = 0;
        ends.iter().flat_map(move |&end| {
            let cur = &served[start..end as usize];
            start = end as usize;
            let shared = shared_prefix(cur, prev);
            prev = cur;
            cur[shared..].iter().copied()
        })
    }

    /// A served label set as text, for error messages.
    pub(super) fn labels_text(&self, labels: &[Served]) -> String {
        pairs_text(labels.iter().map(|&l| self.label(l)))
    }
}

/// Label pairs as text, `{name="value", ...}`, for error messages.
pub(super) fn pairs_text<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> String {
    let pairs: Vec<String> = pairs
        .map(|(n, v)| {
            format!(
                "{}={:?}",
                String::from_utf8_lossy(n),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Label pairs already written to the current batch, by symbol references: sorted series
/// repeat most of their labels, so most labels cost a lookup here instead of two symbol
/// lookups and a copy. Direct-mapped; a generation number empties it per batch. `V` says
/// where the batch holds the label.
#[derive(Debug)]
pub(super) struct LabelMemo<V> {
    slots: Vec<(u64, u32, V)>,
    generation: u32,
    /// External labels written to the current batch.
    ext: Vec<Option<V>>,
}

const MEMO_SLOTS: usize = 4096;

impl<V: Copy + Default> Default for LabelMemo<V> {
    fn default() -> Self {
        LabelMemo {
            slots: vec![(0, 0, V::default()); MEMO_SLOTS],
            generation: 0,
            ext: Vec::new(),
        }
    }
}

impl<V: Copy + Default> LabelMemo<V> {
    /// Forgets every label (a new batch).
    pub(super) fn clear(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.slots.fill((0, 0, V::default()));
            self.generation = 1;
        }
        self.ext.clear();
    }

    #[inline(always)]
    fn slot(key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - MEMO_SLOTS.trailing_zeros())) as usize
    }

    /// Where the batch holds label `l`, if it was written.
    #[inline(always)]
    pub(super) fn get(&self, l: Served) -> Option<V> {
        if l.name == Served::EXT {
            return self.ext.get(l.value as usize).copied().flatten();
        }
        let key = (u64::from(l.name) << 32) | u64::from(l.value);
        let s = &self.slots[Self::slot(key)];
        (s.0 == key && s.1 == self.generation).then_some(s.2)
    }

    /// Remembers where the batch holds label `l`.
    #[inline(always)]
    pub(super) fn put(&mut self, l: Served, at: V) {
        if l.name == Served::EXT {
            let e = l.value as usize;
            if self.ext.len() <= e {
                self.ext.resize(e + 1, None);
            }
            self.ext[e] = Some(at);
            return;
        }
        let key = (u64::from(l.name) << 32) | u64::from(l.value);
        self.slots[Self::slot(key)] = (key, self.generation, at);
    }
}

/// A batch of a streamed Series answer, in one of its forms.
pub trait StreamBatch: Sized + Send + std::fmt::Debug + 'static {
    /// What every batch of an answer shares (the wire framing).
    type Form: Clone + Send + Sync + std::fmt::Debug + 'static;
    /// A producer's memory kept from batch to batch (label memo, scratch space).
    #[doc(hidden)]
    type Writer: Default + Send;

    /// An empty batch.
    fn empty(form: &Self::Form) -> Self;
    /// Number of series.
    fn len(&self) -> usize;
    /// Whether the batch holds no series.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes held (the figure batches are sized by).
    fn bytes(&self) -> usize;
    /// Number of chunks.
    fn total_chunks(&self) -> usize;
    /// Compares series `i` of this batch with series `j` of `other` as label sets.
    fn cmp_series(&self, i: usize, other: &Self, j: usize) -> Ordering;
    /// Appends series `i` of `from`.
    fn copy_series(&mut self, from: &Self, i: usize);
    /// Drops the last series.
    fn pop_series(&mut self);
    /// Keeps the first `n` series.
    fn truncate(&mut self, n: usize);
    /// The series sorted by label set (stable).
    fn sorted(&self) -> Self;
    /// Whether the series are in strictly ascending label order.
    fn is_sorted(&self) -> bool;
    /// Appends the series made of the same series in several batches (`parts`, in block
    /// order), or adds them to the last series when that is the same one: chunks in time
    /// order, overlapping ones merged.
    fn push_merged(&mut self, parts: &[(&Self, usize)]) -> Result<(), StoreError>;
    /// Appends a series given whole: its labels (sorted by name) and chunks (in time order).
    fn push_owned(&mut self, labels: &[(&[u8], &[u8])], chunks: &[RawChunk]);
    /// Makes room for about `bytes` more of series given whole, so that a batch filled with
    /// [`StreamBatch::push_owned`] is not grown step by step.
    fn reserve_owned(&mut self, bytes: usize) {
        let _ = bytes;
    }

    /// Starts writing a batch a producer read (see [`ReadBatch`]).
    #[doc(hidden)]
    fn start_read(&mut self, w: &mut Self::Writer, read: &ReadBatch<'_>, bytes_hint: usize);
    /// Appends a series a producer read: its served labels, in order, and chunks.
    #[doc(hidden)]
    fn push_read(
        &mut self,
        w: &mut Self::Writer,
        read: &ReadBatch<'_>,
        labels: &[Served],
        chunks: &[ReadChunk],
    );
}

/// A producer's memory for writing [`SeriesBatch`]es.
#[derive(Debug, Default)]
pub struct SeriesWriter {
    memo: LabelMemo<[u32; 3]>,
    /// Index of the batch's first chunk buffer.
    base: u32,
    /// Labels of the series written last.
    prev: Vec<Served>,
}

/// How many labels `labels` shares with `prev` from the start: sorted series mostly repeat
/// the first labels of the series before them.
#[inline]
fn shared_prefix(labels: &[Served], prev: &[Served]) -> usize {
    labels.iter().zip(prev).take_while(|(a, b)| a == b).count()
}

impl StreamBatch for SeriesBatch {
    type Form = ();
    type Writer = SeriesWriter;

    fn empty(_: &()) -> Self {
        SeriesBatch::new()
    }

    fn len(&self) -> usize {
        SeriesBatch::len(self)
    }

    fn bytes(&self) -> usize {
        SeriesBatch::bytes(self)
    }

    fn total_chunks(&self) -> usize {
        SeriesBatch::total_chunks(self)
    }

    fn cmp_series(&self, i: usize, other: &Self, j: usize) -> Ordering {
        SeriesBatch::cmp_series(self, i, other, j)
    }

    fn copy_series(&mut self, from: &Self, i: usize) {
        SeriesBatch::copy_series(self, from, i);
    }

    fn pop_series(&mut self) {
        SeriesBatch::pop_series(self);
    }

    fn truncate(&mut self, n: usize) {
        SeriesBatch::truncate(self, n);
    }

    fn sorted(&self) -> Self {
        SeriesBatch::sorted(self)
    }

    fn is_sorted(&self) -> bool {
        SeriesBatch::is_sorted(self)
    }

    fn push_owned(&mut self, labels: &[(&[u8], &[u8])], chunks: &[RawChunk]) {
        self.start_series();
        for (n, v) in labels {
            self.push_label(n, v);
        }
        for c in chunks {
            self.push_chunk(c.clone());
        }
    }

    fn push_merged(&mut self, parts: &[(&Self, usize)]) -> Result<(), StoreError> {
        let Some(&(first, i0)) = parts.first() else {
            return Ok(());
        };
        let grows = !self.is_empty() && self.cmp_series(self.len() - 1, first, i0).is_eq();
        if !grows {
            self.copy_series(first, i0);
        }
        let last = self.len() - 1;
        for &(b, i) in &parts[usize::from(!grows)..] {
            self.append_chunks_of(b, i);
        }
        if parts.len() > 1 || grows {
            self.merge_overlapping(last)?;
        }
        Ok(())
    }

    fn start_read(&mut self, w: &mut SeriesWriter, read: &ReadBatch<'_>, bytes_hint: usize) {
        w.memo.clear();
        w.prev.clear();
        w.base = self.bufs_len() as u32;
        for b in read.bufs {
            self.add_buf(b.clone());
        }
        self.reserve_text(bytes_hint);
        // The symbols of unique values (pod names, say) lie all over the symbol table: looked
        // up one after another, their lookups wait for memory together instead of one at a
        // time while the series are written.
        let mut touched = 0usize;
        for l in read.fresh_labels() {
            let (n, v) = read.label(l);
            touched += usize::from(n.first().copied().unwrap_or(0))
                + usize::from(v.first().copied().unwrap_or(0))
                + usize::from(v.last().copied().unwrap_or(0));
        }
        std::hint::black_box(touched);
    }

    #[inline]
    fn push_read(
        &mut self,
        w: &mut SeriesWriter,
        read: &ReadBatch<'_>,
        labels: &[Served],
        chunks: &[ReadChunk],
    ) {
        self.start_series();
        let shared = shared_prefix(labels, &w.prev);
        self.labels_of_previous(shared);
        for &l in &labels[shared..] {
            let at = match w.memo.get(l) {
                Some(at) => at,
                None => {
                    let (n, v) = read.label(l);
                    let n = self.push_text(n);
                    let v = self.push_text(v);
                    let at = [n.start, n.end, v.end];
                    w.memo.put(l, at);
                    at
                }
            };
            self.push_label_at(at);
        }
        w.prev.clear();
        w.prev.extend_from_slice(labels);
        for c in chunks {
            self.push_chunk_in(
                w.base + c.buf,
                c.start,
                c.len,
                c.min_time,
                c.max_time,
                c.encoding,
            );
        }
    }
}

impl SeriesBatch {
    /// Merges the chunks of series `i` (gathered from several blocks) when they overlap.
    fn merge_overlapping(&mut self, i: usize) -> Result<(), StoreError> {
        if self.chunks_in_order(i) {
            return Ok(());
        }
        let chunks = merge_chunks(self.raw_chunks(i)).map_err(|source| StoreError::Chunk {
            block: "merge".into(),
            series: format!("{:?}", self.series(i).labels),
            source,
        })?;
        self.replace_last_chunks(chunks);
        Ok(())
    }
}

/// A producer's memory for writing [`WireBatch`]es.
#[derive(Debug, Default)]
pub struct WireWriter {
    /// Label fields written before, kept from batch to batch.
    cache: LabelCache,
    /// Labels of the series written last, and where each one's field ends (from the start of
    /// its label fields).
    prev: Vec<Served>,
    prev_ends: Vec<u32>,
    ends: Vec<u32>,
}

/// Label fields a producer has written, in wire form, by symbol references: a series' labels
/// that the series before does not share are copied from here, and looked up in the block's
/// symbols only the first time. Sorted series come back to the same values (the pods of one
/// namespace under each phase, say) within a few hundred series, across batches. Direct-mapped;
/// emptied when its bytes pass a cap.
#[derive(Debug)]
struct LabelCache {
    /// Per slot: the key (`name << 32 | value`, or an external label), its generation, where
    /// its field lies in `fields`.
    slots: Vec<(u64, u32, u32, u32)>,
    generation: u32,
    fields: WireBuf,
}

/// Slots of a label cache: 16 bytes each.
const CACHE_SLOTS: usize = 1 << 13;
/// Bytes of label fields a cache keeps before it starts over.
const CACHE_FIELDS_MAX: usize = 1 << 20;

impl Default for LabelCache {
    fn default() -> Self {
        LabelCache {
            slots: vec![(0, 0, 0, 0); CACHE_SLOTS],
            generation: 1,
            fields: WireBuf::default(),
        }
    }
}

impl LabelCache {
    #[inline(always)]
    fn key(l: Served) -> u64 {
        (u64::from(l.name) << 32) | u64::from(l.value)
    }

    #[inline(always)]
    fn slot(key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - CACHE_SLOTS.trailing_zeros())) as usize
    }

    /// The field of label `l`, written from the batch's symbols when not cached.
    #[inline(always)]
    fn field(&mut self, read: &ReadBatch<'_>, l: Served) -> (u32, u32) {
        let key = Self::key(l);
        let i = Self::slot(key);
        let s = self.slots[i];
        if s.0 == key && s.1 == self.generation {
            return (s.2, s.3);
        }
        let (n, v) = read.label(l);
        let at = self.fields.len();
        put_label_field(&mut self.fields, n, v);
        let f = (at as u32, (self.fields.len() - at) as u32);
        self.slots[i] = (key, self.generation, f.0, f.1);
        f
    }

    /// The bytes of a field [`LabelCache::field`] gave.
    #[inline(always)]
    fn bytes(&self, (at, len): (u32, u32)) -> &[u8] {
        &self.fields.as_slice()[at as usize..(at + len) as usize]
    }

    /// Starts over when the fields have grown past their cap.
    fn trim(&mut self) {
        if self.fields.len() > CACHE_FIELDS_MAX {
            self.generation = self.generation.wrapping_add(1);
            if self.generation == 0 {
                self.slots.fill((0, 0, 0, 0));
                self.generation = 1;
            }
            self.fields.truncate(0);
        }
    }
}

impl StreamBatch for WireBatch {
    type Form = WireForm;
    type Writer = WireWriter;

    fn empty(form: &WireForm) -> Self {
        WireBatch::of(form)
    }

    fn len(&self) -> usize {
        WireBatch::len(self)
    }

    fn bytes(&self) -> usize {
        WireBatch::bytes(self)
    }

    fn total_chunks(&self) -> usize {
        WireBatch::total_chunks(self)
    }

    fn cmp_series(&self, i: usize, other: &Self, j: usize) -> Ordering {
        WireBatch::cmp_series(self, i, other, j)
    }

    fn copy_series(&mut self, from: &Self, i: usize) {
        WireBatch::copy_series(self, from, i);
    }

    fn pop_series(&mut self) {
        WireBatch::pop_series(self);
    }

    fn truncate(&mut self, n: usize) {
        WireBatch::truncate(self, n);
    }

    fn sorted(&self) -> Self {
        WireBatch::sorted(self)
    }

    fn is_sorted(&self) -> bool {
        WireBatch::is_sorted(self)
    }

    fn push_merged(&mut self, parts: &[(&Self, usize)]) -> Result<(), StoreError> {
        WireBatch::push_merged(self, parts).map_err(|source| StoreError::Chunk {
            block: "merge".into(),
            series: parts
                .first()
                .map(|&(b, i)| b.labels_text(i))
                .unwrap_or_default(),
            source,
        })
    }

    fn push_owned(&mut self, labels: &[(&[u8], &[u8])], chunks: &[RawChunk]) {
        self.push_series(labels, chunks);
    }

    fn reserve_owned(&mut self, bytes: usize) {
        self.reserve(bytes);
    }

    fn start_read(&mut self, w: &mut WireWriter, read: &ReadBatch<'_>, bytes_hint: usize) {
        w.cache.trim();
        w.prev.clear();
        w.prev_ends.clear();
        self.reserve(bytes_hint);
        // The labels the batch needs are written to the cache first, one after another: the
        // symbols of unique values (pod names, say) lie all over the symbol table, and these
        // lookups, independent of each other, wait for memory together instead of one at a
        // time while the series are written.
        for l in read.fresh_labels() {
            w.cache.field(read, l);
        }
    }

    #[inline]
    fn push_read(
        &mut self,
        w: &mut WireWriter,
        read: &ReadBatch<'_>,
        labels: &[Served],
        chunks: &[ReadChunk],
    ) {
        // The labels shared with the series before are copied from it in one piece, the rest
        // from the cache.
        let shared = shared_prefix(labels, &w.prev);
        self.open_series();
        let start = self.written();
        if shared > 0 {
            self.labels_of_previous(w.prev_ends[shared - 1] as usize);
        }
        w.ends.clear();
        w.ends.extend_from_slice(&w.prev_ends[..shared]);
        for &l in &labels[shared..] {
            let f = w.cache.field(read, l);
            self.put_label_bytes(w.cache.bytes(f));
            w.ends.push((self.written() - start) as u32);
        }
        self.end_labels();
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        for c in chunks {
            let wc = wire_chunk(read, c);
            let s = wc.sized();
            self.put_chunk(&wc, s);
            min_time = min_time.min(c.min_time);
            max_time = max_time.max(c.max_time);
        }
        self.end_series(chunks.len(), min_time, max_time);
        w.prev.clear();
        w.prev.extend_from_slice(labels);
        std::mem::swap(&mut w.prev_ends, &mut w.ends);
    }
}

#[inline(always)]
fn wire_chunk<'a>(read: &ReadBatch<'a>, c: &ReadChunk) -> WireChunk<'a> {
    WireChunk {
        min_time: c.min_time,
        max_time: c.max_time,
        encoding: c.encoding,
        data: read.data(c),
    }
}
