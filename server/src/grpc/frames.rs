//! `thanos.SeriesResponse` frames written straight from a series batch's label and chunk
//! bytes: no message structs, no `String` per label, one buffer per batch. The bytes are what
//! prost writes for the same `SeriesResponse { series }` (field numbers in
//! `wire-and-formats.md` §1.4–1.5; the unit test holds the two to each other), each framed for
//! gRPC (a zero compression flag, the big-endian length, the message).

use gauntlet_engine::store::{ChunkView, FrameEncoder, SeriesBatch};

/// Bytes of the gRPC frame header: compression flag and `BE32` length.
pub const FRAME_HEADER: usize = 5;

#[inline]
fn varint_len(v: u64) -> usize {
    // 1 byte per started 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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

/// Writes each series as one gRPC frame of `thanos.SeriesResponse { series }` (on the engine
/// cores, see [`FrameEncoder`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SeriesFrames;

impl FrameEncoder for SeriesFrames {
    fn encode_series(&self, batch: &SeriesBatch, i: usize, out: &mut Vec<u8>) {
        put_series_frame(batch, i, out);
    }
}

/// TSDB chunk encoding byte of XOR chunks, the only ones written by the fast path.
const XOR: u8 = 1;

/// Chunks per series whose hashes are kept on the stack.
const STACK_CHUNKS: usize = 32;

/// Appends series `i` of `b` as one gRPC frame of `thanos.SeriesResponse { series }`; chunks
/// carry the xxhash64 of their payload, as the querier uses it to drop duplicates.
pub fn put_series_frame(b: &SeriesBatch, i: usize, out: &mut Vec<u8>) {
    if b.chunks(i).any(|c| c.encoding != XOR) {
        // Downsampled (aggregate) and histogram chunks take the general path: rare, and their
        // wire form has more fields than this writer covers.
        let msg = gauntlet_proto::thanos::SeriesResponse {
            result: Some(gauntlet_proto::thanos::series_response::Result::Series(
                super::convert::batch_series(b, i),
            )),
        };
        put_frame(&prost::Message::encode_to_vec(&msg), out);
        return;
    }
    let n = b.num_chunks(i);
    let mut stack = [0u64; STACK_CHUNKS];
    let mut heap = Vec::new();
    let hashes: &mut [u64] = if n <= STACK_CHUNKS {
        &mut stack[..n]
    } else {
        heap.resize(n, 0);
        &mut heap
    };
    let mut series = 0;
    for (n, v) in b.labels(i) {
        series += field_len(label_len(n, v));
    }
    for (c, h) in b.chunks(i).zip(hashes.iter_mut()) {
        *h = xxhash_rust::xxh64::xxh64(c.data, 0);
        series += field_len(aggr_len(&c, chunk_len(c.data, *h)));
    }
    let msg = field_len(series);
    out.reserve(FRAME_HEADER + msg);
    out.push(0);
    out.extend_from_slice(&(msg as u32).to_be_bytes());
    // SeriesResponse.series (1).
    out.push(0x0A);
    put_varint(out, series as u64);
    for (n, v) in b.labels(i) {
        // Series.labels (1): Label { name (1), value (2) }.
        out.push(0x0A);
        put_varint(out, label_len(n, v) as u64);
        put_bytes(out, 0x0A, n);
        put_bytes(out, 0x12, v);
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
    use gauntlet_engine::store::SeriesBatch;
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
            put_series_frame(&b, i, &mut out);
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
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            assert_eq!(o.len(), varint_len(v), "{v}");
        }
    }
}
