//! `thanos.SeriesResponse` frames written straight from a series batch's label and chunk
//! bytes: no message structs, no `String` per label, one buffer per batch. The bytes are what
//! prost writes for the same `SeriesResponse { series }` (field numbers in
//! `wire-and-formats.md` §1.4–1.5; the unit tests hold the two to each other), each framed for
//! gRPC (a zero compression flag, the big-endian length, the message), or, when the request
//! asks for batches, several series to a `SeriesResponse { batch }` frame.

use gauntlet_engine::store::{ChunkView, Encoded, FrameEncoder, SeriesBatch};

/// Bytes of the gRPC frame header: compression flag and `BE32` length.
pub const FRAME_HEADER: usize = 5;

#[inline]
fn varint_len(v: u64) -> usize {
    // 1 byte per started 7 bits (0 takes one byte): bits × 9/64 rounds up to the same figure
    // for 1..=64 bits without a division.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    (bits * 9 + 64) / 64
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    // Written on the stack and appended at once: one capacity check instead of one per byte.
    let mut buf = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    out.extend_from_slice(&buf[..=n]);
}

/// Length of a length-delimited field holding `n` bytes, tag included (tags here are 1 byte).
#[inline]
fn field_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

/// Length of a string or bytes field, which proto3 leaves out when empty.
#[inline]
fn bytes_len(n: usize) -> usize {
    if n == 0 { 0 } else { field_len(n) }
}

#[inline]
fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    if !b.is_empty() {
        out.push(tag);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

#[inline]
fn label_len(name: &[u8], value: &[u8]) -> usize {
    bytes_len(name.len()) + bytes_len(value.len())
}

/// Appends `Series.labels` (1): `Label { name (1), value (2) }`.
#[inline]
fn put_label(n: &[u8], v: &[u8], out: &mut Vec<u8>) {
    let inner = label_len(n, v);
    if inner < 0x80 && !n.is_empty() && !v.is_empty() {
        // The usual label: every length fits one byte, so the tags and lengths go in two
        // appends.
        out.extend_from_slice(&[0x0A, inner as u8, 0x0A, n.len() as u8]);
        out.extend_from_slice(n);
        out.extend_from_slice(&[0x12, v.len() as u8]);
        out.extend_from_slice(v);
        return;
    }
    out.push(0x0A);
    put_varint(out, inner as u64);
    put_bytes(out, 0x0A, n);
    put_bytes(out, 0x12, v);
}

/// `thanos.Chunk { type: XOR (0, omitted), data, hash }`.
#[inline]
fn chunk_len(data: &[u8], hash: u64) -> usize {
    bytes_len(data.len()) + if hash != 0 { 1 + varint_len(hash) } else { 0 }
}

/// `thanos.AggrChunk { min_time, max_time, raw }`.
#[inline]
fn aggr_len(c: &ChunkView<'_>, raw: usize) -> usize {
    let t = |v: i64| if v != 0 { 1 + varint_len(v as u64) } else { 0 };
    t(c.min_time) + t(c.max_time) + field_len(raw)
}

/// How a Series answer is framed: one series per `thanos.SeriesResponse`, or, when the request
/// asks for it with `response_batch_size` > 1, up to that many per `SeriesResponse.batch`.
/// The engine cores write each series (see [`FrameEncoder`]); [`SeriesFrames::frames`] cuts
/// the written bytes into gRPC frames.
#[derive(Debug, Clone, Copy)]
pub struct SeriesFrames {
    /// Series per frame; 1 writes each series as a whole frame.
    batch: usize,
}

/// Most bytes of series put in one batched frame: a batch of large series is cut sooner, so a
/// frame stays well under the 4 MiB a default gRPC client accepts.
const MAX_BATCH_BYTES: usize = 1 << 20;

impl SeriesFrames {
    /// The framing a request's `response_batch_size` asks for (0 and 1: one series per frame).
    pub fn for_request(response_batch_size: i64) -> Self {
        SeriesFrames {
            batch: usize::try_from(response_batch_size).unwrap_or(1).max(1),
        }
    }
}

/// Appends the frame header and `SeriesResponse.batch` tag and length for a batch whose
/// `SeriesBatch.series` fields take `n` bytes.
fn put_batch_header(n: usize, out: &mut Vec<u8>) {
    let msg = field_len(n);
    out.push(0);
    out.extend_from_slice(&(msg as u32).to_be_bytes());
    // SeriesResponse.batch (4).
    out.push(0x22);
    put_varint(out, n as u64);
}

impl FrameEncoder for SeriesFrames {
    fn encode_series(&self, batch: &SeriesBatch, i: usize, out: &mut Vec<u8>) {
        put_series(batch, i, self.batch <= 1, &mut Vec::new(), out);
    }

    /// One frame per series, or groups of up to `batch` series (and at most
    /// [`MAX_BATCH_BYTES`]) each behind one header, written in place: each group's series are
    /// measured first, so its header goes out with its exact length.
    fn encode_batch(&self, b: &SeriesBatch) -> Encoded {
        let mut e = Encoded {
            bytes: Vec::with_capacity(b.bytes() + b.len().div_ceil(self.batch) * 16),
            ends: Vec::with_capacity(b.len()),
            grouped: self.batch > 1,
        };
        let mut hashes = Vec::new();
        if self.batch <= 1 {
            for i in 0..b.len() {
                put_series(b, i, true, &mut hashes, &mut e.bytes);
                e.ends.push(e.bytes.len() as u32);
            }
            return e;
        }
        let mut group: Vec<Measured> = Vec::with_capacity(self.batch.min(b.len()));
        let mut i = 0;
        while i < b.len() {
            let (first, mut total) = (i, 0);
            hashes.clear();
            while i < b.len() && group.len() < self.batch && total < MAX_BATCH_BYTES {
                let m = measure(b, i, &mut hashes);
                total += field_len(m.len());
                group.push(m);
                i += 1;
            }
            put_batch_header(total, &mut e.bytes);
            let mut h = 0;
            for (k, m) in group.drain(..).enumerate() {
                h += put_measured(b, first + k, m, &hashes[h..], &mut e.bytes);
                e.ends.push(e.bytes.len() as u32);
            }
        }
        e
    }
}

/// A series sized for writing.
enum Measured {
    /// An XOR series: its `Series` message length and how many chunk hashes it added.
    Fast { len: usize, chunks: usize },
    /// Any other series, encoded by prost.
    General(Vec<u8>),
}

impl Measured {
    /// Bytes of the `Series` message.
    fn len(&self) -> usize {
        match self {
            Measured::Fast { len, .. } => *len,
            Measured::General(v) => v.len(),
        }
    }
}

/// Sizes series `i` of `b`, appending its chunks' hashes to `hashes` on the fast path.
fn measure(b: &SeriesBatch, i: usize, hashes: &mut Vec<u64>) -> Measured {
    if b.chunks(i).any(|c| c.encoding != XOR) {
        // Downsampled (aggregate) and histogram chunks take the general path: rare, and their
        // wire form has more fields than this writer covers.
        return Measured::General(prost::Message::encode_to_vec(
            &super::convert::batch_series(b, i),
        ));
    }
    let mut len = 0;
    for (n, v) in b.labels(i) {
        len += field_len(label_len(n, v));
    }
    let before = hashes.len();
    for c in b.chunks(i) {
        let h = xxhash_rust::xxh64::xxh64(c.data, 0);
        hashes.push(h);
        len += field_len(aggr_len(&c, chunk_len(c.data, h)));
    }
    Measured::Fast {
        len,
        chunks: hashes.len() - before,
    }
}

/// Writes series `i` of `b`, measured as `m`, as field 1 holding a `thanos.Series`; its
/// chunk hashes start `hashes`. Returns how many hashes it used.
fn put_measured(
    b: &SeriesBatch,
    i: usize,
    m: Measured,
    hashes: &[u64],
    out: &mut Vec<u8>,
) -> usize {
    out.push(0x0A);
    put_varint(out, m.len() as u64);
    match m {
        Measured::General(v) => {
            out.extend_from_slice(&v);
            0
        }
        Measured::Fast { chunks, .. } => {
            put_series_body(b, i, &hashes[..chunks], out);
            chunks
        }
    }
}

/// TSDB chunk encoding byte of XOR chunks, the only ones written by the fast path.
const XOR: u8 = 1;

/// Appends series `i` of `b` as a length-delimited field 1 holding a `thanos.Series`: that is
/// both a whole `SeriesResponse { series }` and one element of `SeriesBatch.series`. With
/// `framed`, the gRPC frame header goes first, making it a frame of its own. Chunks carry the
/// xxhash64 of their payload, as the querier uses it to drop duplicates; `hashes` is scratch.
fn put_series(b: &SeriesBatch, i: usize, framed: bool, hashes: &mut Vec<u64>, out: &mut Vec<u8>) {
    hashes.clear();
    let m = measure(b, i, hashes);
    if framed {
        out.push(0);
        out.extend_from_slice(&(field_len(m.len()) as u32).to_be_bytes());
    }
    put_measured(b, i, m, hashes, out);
}

/// The fields of series `i` of `b` (an XOR series), its chunks' hashes given.
fn put_series_body(b: &SeriesBatch, i: usize, hashes: &[u64], out: &mut Vec<u8>) {
    for (n, v) in b.labels(i) {
        put_label(n, v, out);
    }
    for (c, &h) in b.chunks(i).zip(hashes.iter()) {
        let raw = chunk_len(c.data, h);
        // Series.chunks (2): AggrChunk { min_time (1), max_time (2), raw (3) }.
        out.push(0x12);
        put_varint(out, aggr_len(&c, raw) as u64);
        if c.min_time != 0 {
            out.push(0x08);
            put_varint(out, c.min_time as u64);
        }
        if c.max_time != 0 {
            out.push(0x10);
            put_varint(out, c.max_time as u64);
        }
        out.push(0x1A);
        put_varint(out, raw as u64);
        // Chunk { data (2), hash (3) }; type XOR is 0, the default, so not written.
        put_bytes(out, 0x12, c.data);
        if h != 0 {
            out.push(0x18);
            put_varint(out, h);
        }
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
mod tests {
    use super::*;
    use bytes::Bytes;
    use gauntlet_engine::store::RawChunk;
    use gauntlet_proto::thanos::{self, series_response};
    use prost::Message;

    #[test]
    fn frames_are_what_prost_writes() {
        let mut b = SeriesBatch::new();
        let long = "v".repeat(300);
        type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<(i64, i64, Vec<u8>)>);
        let cases: Vec<Case<'_>> = vec![
            (
                vec![("__name__", "up"), ("job", "node"), ("zone", "")],
                vec![
                    (1_700_000_000_000, 1_700_000_119_000, vec![0, 120, 1, 2, 3]),
                    (-5, 0, vec![0, 1]),
                ],
            ),
            (vec![("a", long.as_str())], vec![]),
            (vec![], vec![(0, i64::MAX, vec![7; 200])]),
        ];
        for (labels, chunks) in &cases {
            b.start_series();
            for (n, v) in labels {
                b.push_label(n.as_bytes(), v.as_bytes());
            }
            for (lo, hi, data) in chunks {
                b.push_chunk(RawChunk {
                    min_time: *lo,
                    max_time: *hi,
                    encoding: 1,
                    data: Bytes::from(data.clone()),
                });
            }
        }
        for i in 0..b.len() {
            let mut out = Vec::new();
            put_series(&b, i, true, &mut Vec::new(), &mut out);
            let want = thanos::SeriesResponse {
                result: Some(series_response::Result::Series(
                    super::super::convert::batch_series(&b, i),
                )),
            }
            .encode_to_vec();
            assert_eq!(out[0], 0);
            assert_eq!(
                u32::from_be_bytes([out[1], out[2], out[3], out[4]]) as usize,
                want.len()
            );
            assert_eq!(&out[5..], &want[..], "series {i}");
            let back = thanos::SeriesResponse::decode(&out[5..]).unwrap();
            let Some(series_response::Result::Series(s)) = back.result else {
                panic!("not a series")
            };
            assert_eq!(s.labels.len(), b.series(i).labels.len());
        }
        for bits in 0..64 {
            for v in [1u64 << bits, (1u64 << bits) - 1] {
                let mut o = Vec::new();
                put_varint(&mut o, v);
                assert_eq!(o.len(), varint_len(v), "{v}");
            }
        }
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            assert_eq!(o.len(), varint_len(v), "{v}");
        }
    }

    /// Splits gRPC frames and decodes each as a `SeriesResponse`.
    fn decode_frames(mut b: &[u8]) -> Vec<thanos::SeriesResponse> {
        let mut out = Vec::new();
        while !b.is_empty() {
            assert_eq!(b[0], 0, "uncompressed frame");
            let n = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            out.push(thanos::SeriesResponse::decode(&b[5..5 + n]).unwrap());
            b = &b[5 + n..];
        }
        out
    }

    #[test]
    fn batched_frames_hold_the_same_series() {
        let mut b = SeriesBatch::new();
        for s in 0..23u8 {
            b.start_series();
            b.push_label(b"__name__", b"m");
            b.push_label(b"i", format!("{s:03}").as_bytes());
            if s == 5 {
                b.push_label(b"big", "x".repeat(200).as_bytes());
            }
            for c in 0..(s % 4) {
                b.push_chunk(RawChunk {
                    min_time: i64::from(c) * 1000,
                    max_time: i64::from(c) * 1000 + 999,
                    // Series 7 carries a histogram chunk, written by the general path.
                    encoding: if s == 7 { 2 } else { 1 },
                    data: Bytes::from(vec![0, 2, s, c]),
                });
            }
        }
        let want: Vec<thanos::Series> = (0..b.len())
            .map(|i| super::super::convert::batch_series(&b, i))
            .collect();
        for size in [0i64, 1, 2, 5, 64, -3] {
            let enc = SeriesFrames::for_request(size);
            let mut batch = b.clone();
            batch.encode_with(&enc);
            let written = batch.take_encoded().expect("encoded");
            assert_eq!(written.grouped, enc.batch > 1);
            assert_eq!(written.ends.len(), b.len());
            let wire = written.bytes;
            let mut got = Vec::new();
            for r in decode_frames(&wire) {
                match r.result {
                    Some(series_response::Result::Series(s)) => {
                        assert!(enc.batch <= 1, "batch {size}: a lone series");
                        got.push(s);
                    }
                    Some(series_response::Result::Batch(sb)) => {
                        assert!(enc.batch > 1, "batch {size}: a batch");
                        assert!(!sb.series.is_empty() && sb.series.len() <= enc.batch);
                        got.extend(sb.series);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(got, want, "batch size {size}");
        }
        // Grouped bytes cannot lose a series on their own: dropping one drops them, and the
        // sender writes the batch again; series written one by one are cut.
        for (size, kept) in [(4, false), (1, true)] {
            let mut batch = b.clone();
            batch.encode_with(&SeriesFrames::for_request(size));
            batch.pop_series();
            assert_eq!(batch.is_encoded(), kept, "batch size {size}");
        }
    }
}
