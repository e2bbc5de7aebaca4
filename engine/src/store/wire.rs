//! Series in the StoreAPI's wire form: `thanos.SeriesResponse` messages framed for gRPC,
//! written on the engine cores straight from block bytes (symbols, chunk records), so the
//! thread that sends an answer only hands the bytes to the socket.
//!
//! A [`WireBatch`] holds whole gRPC frames: a zero compression flag, the big-endian message
//! length, then either one `SeriesResponse { series (1) }` per frame, or, when the request
//! asks for `response_batch_size` > 1, `SeriesResponse { batch (4): SeriesBatch }` with up to
//! that many series (and at most [`MAX_FRAME_SERIES_BYTES`]). Either way each series is
//! `0x0A len Series`: field 1 of both messages. Field numbers are those of
//! `docs/formats/storeapi.md` (Series answers, Labels); the tests hold the bytes to what prost
//! writes for the same messages.
//!
//! The batch also remembers where each series' label fields and chunk fields lie, so the
//! stream can compare series (labels are parsed back, equal label sets are equal bytes) and
//! merge a series found in several blocks by concatenating their chunk fields.

mod buf;
mod parse;

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

pub(super) use self::buf::WireBuf;
use self::buf::{bytes_len, field_len, int_len, put_varint_fixed, varint_at, varint_len};
use self::parse::ChunkField;
use super::block::RawChunk;
use super::series::merge_chunks;
use crate::buffers::BufferPool;
use crate::chunk::{AggrChunk, AggrType, ChunkError, Encoding};

pub use self::parse::LabelFields;

/// Bytes of the gRPC frame header: compression flag and `BE32` length.
pub const FRAME_HEADER: usize = 5;

/// Most bytes of series put in one batched frame: a batch of large series is cut sooner, so a
/// frame stays well under the 4 MiB a default gRPC client accepts.
pub const MAX_FRAME_SERIES_BYTES: usize = 1 << 20;

/// Bytes reserved for a batched frame's header: frame header, `SeriesResponse.batch` tag, and
/// a 3-byte length (enough for [`MAX_FRAME_SERIES_BYTES`] plus one series).
const GROUP_HEADER: usize = FRAME_HEADER + 1 + 3;

/// How series are cut into frames: one per `SeriesResponse`, or up to `per_frame` per
/// `SeriesResponse.batch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireFraming {
    per_frame: usize,
}

impl WireFraming {
    /// The framing a request's `response_batch_size` asks for (0, 1 and negative: one series
    /// per frame).
    pub fn for_request(response_batch_size: i64) -> Self {
        WireFraming {
            per_frame: usize::try_from(response_batch_size).unwrap_or(1).max(1),
        }
    }

    /// Series per frame.
    pub fn per_frame(&self) -> usize {
        self.per_frame
    }
}

/// What the batches of one answer share: the framing, and the pool their buffers come from.
#[derive(Debug, Clone)]
pub struct WireForm {
    pub(super) framing: WireFraming,
    pub(super) pool: Option<Arc<BufferPool>>,
}

/// Length of a `Series.labels` field holding `Label { name, value }`, tag included.
#[inline(always)]
fn label_field_len(name: &[u8], value: &[u8]) -> usize {
    field_len(bytes_len(name.len()) + bytes_len(value.len()))
}

/// Appends a `Series.labels` (1) field: `Label { name (1), value (2) }`.
#[inline]
pub(super) fn put_label_field(out: &mut WireBuf, n: &[u8], v: &[u8]) {
    let inner = bytes_len(n.len()) + bytes_len(v.len());
    if inner < 0x80 && !n.is_empty() && !v.is_empty() {
        // The usual label: every length fits one byte.
        out.reserve(inner + 2);
        out.put(&[0x0A, inner as u8, 0x0A, n.len() as u8]);
        out.put(n);
        out.put(&[0x12, v.len() as u8]);
        out.put(v);
        return;
    }
    out.tag_varint(0x0A, inner as u64);
    out.bytes_field(0x0A, n);
    out.bytes_field(0x12, v);
}

/// `thanos.Chunk.Encoding` of a TSDB chunk encoding byte.
#[inline]
fn wire_type(encoding: u8) -> u64 {
    match encoding {
        2 => 1, // HISTOGRAM
        3 => 2, // FLOAT_HISTOGRAM
        _ => 0, // XOR
    }
}

/// Length of a `thanos.Chunk { type, data, hash }` message.
#[inline(always)]
fn wire_chunk_len(typ: u64, data: &[u8], hash: u64) -> usize {
    int_len(typ) + bytes_len(data.len()) + int_len(hash)
}

/// Appends the fields of a `thanos.Chunk { type (1), data (2), hash (3) }`; type XOR (0) and
/// a zero hash are left out.
#[inline(always)]
fn put_wire_chunk(out: &mut WireBuf, typ: u64, data: &[u8], hash: u64) {
    if typ != 0 {
        out.tag_varint(0x08, typ);
    }
    out.bytes_field(0x12, data);
    if hash != 0 {
        out.tag_varint(0x18, hash);
    }
}

/// The xxhash64 a chunk payload is sent with, so a querier can drop duplicates cheaply.
#[inline]
fn chunk_hash(data: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(data, 0)
}

/// A chunk as written: time range, TSDB encoding byte and payload.
#[derive(Debug, Clone, Copy)]
pub(super) struct WireChunk<'a> {
    pub(super) min_time: i64,
    pub(super) max_time: i64,
    pub(super) encoding: u8,
    pub(super) data: &'a [u8],
}

/// A chunk sized for writing: the `AggrChunk` message length, and the hash of a raw chunk.
#[derive(Debug, Clone, Copy)]
pub(super) struct SizedChunk {
    pub(super) len: usize,
    pub(super) hash: u64,
}

impl SizedChunk {
    /// Bytes of the `Series.chunks` field, tag included.
    #[inline(always)]
    pub(super) fn field_len(&self) -> usize {
        field_len(self.len)
    }
}

impl WireChunk<'_> {
    /// Sizes the chunk's `AggrChunk` message (hashing its payload).
    #[inline]
    pub(super) fn sized(&self) -> SizedChunk {
        let times = int_len(self.min_time as u64) + int_len(self.max_time as u64);
        if self.encoding == Encoding::Aggr as u8 {
            let mut len = times;
            for p in AggrChunk::new(self.data).present().iter().flatten() {
                len += field_len(wire_chunk_len(
                    wire_type(p.encoding),
                    p.data,
                    chunk_hash(p.data),
                ));
            }
            return SizedChunk { len, hash: 0 };
        }
        let hash = chunk_hash(self.data);
        let raw = wire_chunk_len(wire_type(self.encoding), self.data, hash);
        SizedChunk {
            len: times + field_len(raw),
            hash,
        }
    }

    /// Appends the `Series.chunks` (2) field: `AggrChunk { min_time (1), max_time (2), raw (3)
    /// }` for raw chunks, the aggregate sub-chunks in fields 4–8 for downsampled ones.
    #[inline]
    pub(super) fn put(&self, s: SizedChunk, out: &mut WireBuf) {
        if self.encoding != Encoding::Aggr as u8 {
            self.put_raw(s, out);
            return;
        }
        out.tag_varint(0x12, s.len as u64);
        if self.min_time != 0 {
            out.tag_varint(0x08, self.min_time as u64);
        }
        if self.max_time != 0 {
            out.tag_varint(0x10, self.max_time as u64);
        }
        for (t, p) in AggrType::ALL
            .iter()
            .zip(AggrChunk::new(self.data).present())
        {
            if let Some(p) = p {
                let h = chunk_hash(p.data);
                // A native histogram's sum and counter are float histogram chunks: typed as
                // such, or a querier reads them as XOR.
                let typ = wire_type(p.encoding);
                // AggrChunk.count (4), sum (5), min (6), max (7), counter (8).
                out.tag_varint(
                    ((4 + *t as u8) << 3) | 2,
                    wire_chunk_len(typ, p.data, h) as u64,
                );
                put_wire_chunk(out, typ, p.data, h);
            }
        }
    }
}

impl WireChunk<'_> {
    /// [`WireChunk::put`] for a raw chunk, written in place into room made once.
    #[inline(always)]
    fn put_raw(&self, s: SizedChunk, out: &mut WireBuf) {
        let typ = wire_type(self.encoding);
        let need = s.field_len();
        let h = out.room(need);
        let tag = |h: &mut [u8], p: usize, tag: u8, v: u64| {
            h[p] = tag;
            varint_at(h, p + 1, v)
        };
        let mut p = tag(h, 0, 0x12, s.len as u64);
        if self.min_time != 0 {
            p = tag(h, p, 0x08, self.min_time as u64);
        }
        if self.max_time != 0 {
            p = tag(h, p, 0x10, self.max_time as u64);
        }
        p = tag(h, p, 0x1A, wire_chunk_len(typ, self.data, s.hash) as u64);
        if typ != 0 {
            p = tag(h, p, 0x08, typ);
        }
        if !self.data.is_empty() {
            p = tag(h, p, 0x12, self.data.len() as u64);
            h[p..p + self.data.len()].copy_from_slice(self.data);
            p += self.data.len();
        }
        if s.hash != 0 {
            p = tag(h, p, 0x18, s.hash);
        }
        debug_assert_eq!(p, need);
        out.advance(p);
    }
}

/// Where a series lies in a batch's bytes, with what merging needs of its chunks.
#[derive(Debug, Clone, Copy)]
struct WireSeries {
    /// First byte of the series: its frame header when it has a frame of its own, else its
    /// `0x0A` tag.
    start: u32,
    /// Start of the label fields (just after `0x0A len`).
    labels: u32,
    /// Start of the chunk fields.
    chunks: u32,
    /// End of the series.
    end: u32,
    /// Number of chunks.
    n: u32,
    /// Start of the first chunk and end of the last, ms (chunks are in time order without
    /// overlapping, except in series of downsampled or histogram chunks from overlapping
    /// blocks, which are only sorted).
    min_time: i64,
    max_time: i64,
}

/// Series in wire form, sorted by labels; see the module documentation.
#[derive(Debug, Clone)]
pub struct WireBatch {
    buf: WireBuf,
    series: Vec<WireSeries>,
    chunks: usize,
    framing: WireFraming,
    pool: Option<Arc<BufferPool>>,
    /// The batched frame being filled: its header's position, and its first series. It is
    /// closed when the next series finds it full, or by [`WireBatch::into_frames`], so the
    /// last series always lies in an open frame and can be dropped.
    open: Option<(usize, usize)>,
}

impl WireBatch {
    /// An empty batch framed as `framing` says.
    pub fn new(framing: WireFraming) -> Self {
        Self::of(&WireForm {
            framing,
            pool: None,
        })
    }

    /// An empty batch of an answer of form `form`; its buffer comes from the form's pool when
    /// the first bytes are written.
    pub(super) fn of(form: &WireForm) -> Self {
        WireBatch {
            buf: WireBuf::default(),
            series: Vec::new(),
            chunks: 0,
            framing: form.framing,
            pool: form.pool.clone(),
            open: None,
        }
    }

    fn empty_like(&self) -> Self {
        Self::of(&WireForm {
            framing: self.framing,
            pool: self.pool.clone(),
        })
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the batch holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Number of chunks.
    pub fn total_chunks(&self) -> usize {
        self.chunks
    }

    /// Bytes held (the figure batches are sized by).
    pub fn bytes(&self) -> usize {
        self.buf.len() + self.series.len() * std::mem::size_of::<WireSeries>()
    }

    /// Makes room for `n` more bytes.
    #[inline]
    pub(super) fn reserve(&mut self, n: usize) {
        if !self.buf.has_storage()
            && let Some(pool) = &self.pool
        {
            self.buf = WireBuf::from_pool(pool, n);
        }
        self.buf.reserve(n);
    }

    /// The frames: every series, framed, ready to be sent. The storage goes back to the
    /// answer's pool when the bytes are dropped.
    pub fn into_frames(mut self) -> Bytes {
        self.close_frame();
        std::mem::take(&mut self.buf).into_bytes(self.pool.as_ref())
    }

    /// Bytes written so far.
    #[inline]
    pub(super) fn written(&self) -> usize {
        self.buf.len()
    }

    /// Starts a series whose `Series` message takes `len` bytes: frame headers as the framing
    /// asks, then `0x0A len`. Its label fields follow, then [`WireBatch::end_labels`], its
    /// chunk fields, and [`WireBatch::end_series`].
    #[inline]
    pub(super) fn begin_series(&mut self, len: usize) {
        self.reserve(len + 16 + GROUP_HEADER);
        let start = if self.framing.per_frame > 1 {
            if let Some((hdr, first)) = self.open {
                let body = self.buf.len() - hdr - GROUP_HEADER;
                if self.series.len() - first >= self.framing.per_frame
                    || body >= MAX_FRAME_SERIES_BYTES
                {
                    self.close_frame();
                }
            }
            if self.open.is_none() {
                self.open = Some((self.buf.len(), self.series.len()));
                self.buf.put(&[0; GROUP_HEADER]);
            }
            self.buf.len()
        } else {
            let start = self.buf.len();
            self.buf.push(0);
            self.buf.put(&(field_len(len) as u32).to_be_bytes());
            start
        };
        self.buf.tag_varint(0x0A, len as u64);
        let at = self.buf.len() as u32;
        self.series.push(WireSeries {
            start: start as u32,
            labels: at,
            chunks: at,
            end: at,
            n: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
        });
    }

    /// Starts a series whose length is known only at [`WireBatch::end_series`], which writes
    /// it: room is left for a length of two bytes (128 to 16 383 bytes, most series), and a
    /// series of another length is moved once to fit.
    #[inline]
    pub(super) fn open_series(&mut self) {
        self.begin_series(0x80);
    }

    /// Marks the end of the label fields of the series begun last.
    #[inline]
    pub(super) fn end_labels(&mut self) {
        let at = self.buf.len() as u32;
        if let Some(s) = self.series.last_mut() {
            s.chunks = at;
        }
    }

    /// Ends the series begun last, which holds `n` chunks from `min_time` to `max_time`,
    /// writing its length (and its frame's, when it has a frame of its own) now that it is
    /// known.
    #[inline]
    pub(super) fn end_series(&mut self, n: usize, min_time: i64, max_time: i64) {
        let Some(&s) = self.series.last() else {
            return;
        };
        let labels = s.labels as usize;
        let body = self.buf.len() - labels;
        // The varint written at the start holds the length asked for, not this one.
        let tag = self.series_tag(s);
        let (had, has) = (labels - tag - 1, varint_len(body as u64));
        let mut at = labels;
        if had != has {
            at = tag + 1 + has;
            self.buf.shift(labels, at);
        }
        put_varint_fixed(self.buf.written_mut(tag + 1, has), body as u64);
        if self.framing.per_frame <= 1 {
            let msg = (1 + has + body) as u32;
            self.buf
                .written_mut(s.start as usize + 1, 4)
                .copy_from_slice(&msg.to_be_bytes());
        }
        let moved = at as i64 - labels as i64;
        let end = self.buf.len() as u32;
        if let Some(s) = self.series.last_mut() {
            s.labels = at as u32;
            s.chunks = (s.chunks as i64 + moved) as u32;
            s.end = end;
            s.n = n as u32;
            s.min_time = min_time;
            s.max_time = max_time;
            debug_assert!(s.chunks >= s.labels && s.end >= s.chunks);
        }
        self.chunks += n;
    }

    /// Where the `0x0A` tag of series `s` lies.
    #[inline(always)]
    fn series_tag(&self, s: WireSeries) -> usize {
        if self.framing.per_frame > 1 {
            s.start as usize
        } else {
            s.start as usize + FRAME_HEADER
        }
    }

    /// Writes the open batched frame's header now that its length is known, moving its series
    /// when the length takes other than the 3 bytes reserved (fewer for a short frame, more for
    /// a frame whose last series took it past 2 MiB).
    fn close_frame(&mut self) {
        let Some((hdr, first)) = self.open.take() else {
            return;
        };
        let body = self.buf.len() - hdr - GROUP_HEADER;
        let n = varint_len(body as u64);
        let head = FRAME_HEADER + 1 + n;
        if head != GROUP_HEADER {
            let (from, to) = (hdr + GROUP_HEADER, hdr + head);
            self.buf.shift(from, to);
            for s in &mut self.series[first..] {
                for at in [&mut s.start, &mut s.labels, &mut s.chunks, &mut s.end] {
                    *at = (*at as usize + to - from) as u32;
                }
            }
        }
        let h = self.buf.written_mut(hdr, head);
        h[0] = 0;
        h[1..5].copy_from_slice(&(field_len(body) as u32).to_be_bytes());
        h[5] = 0x22;
        put_varint_fixed(&mut h[6..], body as u64);
    }

    /// Appends a `Series.labels` field written elsewhere by [`put_label_field`].
    #[inline]
    pub(super) fn put_label_bytes(&mut self, field: &[u8]) {
        self.buf.put(field);
    }

    /// Appends again the first `len` bytes of label fields of the series before the one begun
    /// last.
    #[inline]
    pub(super) fn labels_of_previous(&mut self, len: usize) {
        let n = self.series.len();
        debug_assert!(n >= 2);
        let at = self.series[n - 2].labels as usize;
        self.buf.put_from_within(at, len);
    }

    /// Appends a chunk field sized by [`WireChunk::sized`].
    #[inline]
    pub(super) fn put_chunk(&mut self, c: &WireChunk<'_>, s: SizedChunk) {
        c.put(s, &mut self.buf);
    }

    fn label_bytes(&self, i: usize) -> &[u8] {
        let s = &self.series[i];
        &self.buf.as_slice()[s.labels as usize..s.chunks as usize]
    }

    fn chunk_bytes(&self, i: usize) -> &[u8] {
        let s = &self.series[i];
        &self.buf.as_slice()[s.chunks as usize..s.end as usize]
    }

    /// Label `(name, value)` byte pairs of series `i`, sorted by name.
    pub fn labels(&self, i: usize) -> LabelFields<'_> {
        LabelFields {
            buf: self.label_bytes(i),
        }
    }

    /// The labels of series `i` as text, for error messages.
    pub(super) fn labels_text(&self, i: usize) -> String {
        super::form::pairs_text(self.labels(i))
    }

    /// Compares series `i` of this batch with series `j` of `other` as label sets.
    pub fn cmp_series(&self, i: usize, other: &WireBatch, j: usize) -> Ordering {
        let (a, b) = (self.label_bytes(i), other.label_bytes(j));
        if a == b {
            // One encoding per label set: equal bytes, equal labels.
            return Ordering::Equal;
        }
        self.labels(i).cmp(other.labels(j))
    }

    /// Appends a series of the label fields `labels` and the chunk fields `chunks` (joined),
    /// `n` chunks from `min_time` to `max_time`.
    fn push_fields(
        &mut self,
        labels: &[u8],
        chunks: &[&[u8]],
        n: usize,
        min_time: i64,
        max_time: i64,
    ) {
        let len = labels.len() + chunks.iter().map(|c| c.len()).sum::<usize>();
        self.begin_series(len);
        self.buf.put(labels);
        self.end_labels();
        for c in chunks {
            self.buf.put(c);
        }
        self.end_series(n, min_time, max_time);
    }

    /// Appends a series of `labels` (sorted by name) and `chunks` (in time order).
    pub fn push_series(&mut self, labels: &[(&[u8], &[u8])], chunks: &[RawChunk]) {
        let sized: Vec<SizedChunk> = chunks.iter().map(|c| wire(c).sized()).collect();
        let len = labels
            .iter()
            .map(|(n, v)| label_field_len(n, v))
            .chain(sized.iter().map(SizedChunk::field_len))
            .sum();
        self.begin_series(len);
        for (n, v) in labels {
            put_label_field(&mut self.buf, n, v);
        }
        self.end_labels();
        for (c, s) in chunks.iter().zip(sized) {
            self.put_chunk(&wire(c), s);
        }
        let (lo, hi) = chunks.iter().fold((i64::MAX, i64::MIN), |(lo, hi), c| {
            (lo.min(c.min_time), hi.max(c.max_time))
        });
        self.end_series(chunks.len(), lo, hi);
    }

    /// Appends series `i` of `from` (labels and chunks as they are).
    pub fn copy_series(&mut self, from: &WireBatch, i: usize) {
        let s = from.series[i];
        self.push_fields(
            from.label_bytes(i),
            &[from.chunk_bytes(i)],
            s.n as usize,
            s.min_time,
            s.max_time,
        );
    }

    /// Drops the last series.
    pub fn pop_series(&mut self) {
        let n = self.series.len();
        if n > 0 {
            self.truncate(n - 1);
        }
    }

    /// Keeps the first `n` series.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.series.len() {
            return;
        }
        let batched = self.framing.per_frame > 1;
        if batched && self.open.is_none_or(|(_, first)| n < first) {
            // Series of closed frames go: the frames are written again.
            let mut kept = self.empty_like();
            kept.reserve(self.series[n].start as usize);
            for i in 0..n {
                kept.copy_series(self, i);
            }
            *self = kept;
            return;
        }
        let cut = self.series[n];
        self.chunks -= self.series[n..].iter().map(|s| s.n as usize).sum::<usize>();
        self.series.truncate(n);
        match self.open {
            // The open frame loses all its series: its header goes too.
            Some((hdr, first)) if first == n => {
                self.buf.truncate(hdr);
                self.open = None;
            }
            _ => self.buf.truncate(cut.start as usize),
        }
    }

    /// The series sorted by label set (stable), for producers whose label rewriting may have
    /// changed the index order.
    pub(super) fn sorted(&self) -> WireBatch {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.sort_by(|&a, &b| self.cmp_series(a, self, b));
        let mut out = self.empty_like();
        out.reserve(self.buf.len());
        for i in idx {
            out.copy_series(self, i);
        }
        out
    }

    /// Whether the series are in strictly ascending label order.
    pub(super) fn is_sorted(&self) -> bool {
        (1..self.len()).all(|i| self.cmp_series(i - 1, self, i).is_lt())
    }

    /// Appends one series made of the same series from several batches (`parts`, in block
    /// order), or adds them to the last series when it is the same: the labels once, the
    /// chunks of every part. Parts whose chunks follow each other in time are joined as they
    /// are; overlapping raw chunks are decoded, merged and re-encoded (see [`merge_chunks`]);
    /// other chunk kinds are sorted by time.
    pub fn push_merged(&mut self, parts: &[(&WireBatch, usize)]) -> Result<(), ChunkError> {
        let Some(&(first, i0)) = parts.first() else {
            return Ok(());
        };
        let last = self.series.len().wrapping_sub(1);
        if !self.is_empty() && self.label_bytes(last) == first.label_bytes(i0) {
            // Label rewriting made two series of a block one: the last grows.
            let mut prev = self.empty_like();
            prev.copy_series(self, last);
            self.pop_series();
            let mut all = Vec::with_capacity(parts.len() + 1);
            all.push((&prev, 0));
            all.extend_from_slice(parts);
            return self.push_merged(&all);
        }
        if let [(b, i)] = parts {
            self.copy_series(b, *i);
            return Ok(());
        }
        let labels = first.label_bytes(i0);
        let mut in_order = true;
        let mut n = 0usize;
        let (mut min_time, mut max_time) = (i64::MAX, i64::MIN);
        for &(b, i) in parts {
            let s = &b.series[i];
            if s.n > 0 {
                if n > 0 && s.min_time <= max_time {
                    in_order = false;
                }
                min_time = min_time.min(s.min_time);
                max_time = max_time.max(s.max_time);
            }
            n += s.n as usize;
        }
        let mut chunks: Vec<&[u8]> = parts.iter().map(|&(b, i)| b.chunk_bytes(i)).collect();
        if in_order {
            self.push_fields(labels, &chunks, n, min_time, max_time);
            return Ok(());
        }
        let mut fields: Vec<ChunkField<'_>> = Vec::with_capacity(n);
        for c in &chunks {
            let mut buf = *c;
            while !buf.is_empty() {
                match ChunkField::next(&mut buf) {
                    Some(f) => fields.push(f),
                    // Not fields this module wrote (it cannot happen): passed on as they are.
                    None => {
                        self.push_fields(labels, &chunks, n, min_time, max_time);
                        return Ok(());
                    }
                }
            }
        }
        if !fields.iter().all(|f| f.raw_xor.is_some()) {
            // Downsampled or histogram chunks: kept as they are, in time order.
            fields.sort_by_key(|f| (f.min_time, f.max_time));
            chunks = fields.iter().map(|f| f.field).collect();
            self.push_fields(labels, &chunks, n, min_time, max_time);
            return Ok(());
        }
        let raw: Vec<RawChunk> = fields
            .iter()
            .map(|f| RawChunk {
                min_time: f.min_time,
                max_time: f.max_time,
                encoding: Encoding::Xor as u8,
                data: Bytes::copy_from_slice(f.raw_xor.unwrap_or_default()),
            })
            .collect();
        let merged = merge_chunks(raw)?;
        let pairs: Vec<(&[u8], &[u8])> = LabelFields { buf: labels }.collect();
        self.push_series(&pairs, &merged);
        Ok(())
    }
}

impl Drop for WireBatch {
    fn drop(&mut self) {
        // A batch dropped unsent (cut, merged into another) gives its storage back too.
        if let Some(pool) = &self.pool {
            std::mem::take(&mut self.buf).give_back(pool);
        }
    }
}

fn wire(c: &RawChunk) -> WireChunk<'_> {
    WireChunk {
        min_time: c.min_time,
        max_time: c.max_time,
        encoding: c.encoding,
        data: &c.data,
    }
}

/// Appends an already encoded message as one gRPC frame.
pub fn put_frame(msg: &[u8], out: &mut Vec<u8>) {
    out.reserve(FRAME_HEADER + msg.len());
    out.push(0);
    out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    out.extend_from_slice(msg);
}

#[cfg(test)]
mod tests;
