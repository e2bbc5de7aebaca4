//! The querier's reader of StoreAPI Series answers: each `thanos.SeriesResponse` message is
//! read straight from the gRPC frame into label sets and chunks, where a generated decoder
//! would first build a `String` per label name and value and a vector of labels per series,
//! only for the merge to convert them again. Names and values up to 24 bytes are kept inline
//! (no allocation), and chunk data stays a slice of the received frame.
//!
//! Field numbers are those of `docs/formats/storeapi.md` (Series answers). Unknown fields of
//! every wire type are skipped, a field seen twice follows protobuf's rules (the last scalar
//! wins, messages merge, repeated fields append), and invalid UTF-8 in a label or warning is
//! an error, as it is for a generated decoder. It lives beside the querier rather than with
//! the engine's writer of the same messages (`store::wire`) because its chunks are the
//! generated `AggrChunk`s the fan-out merges, and the engine does not depend on them.

use std::fmt;

use bytes::{Buf, Bytes};
use gauntlet_engine::encoding::{UvarintError, read_uvarint};
use gauntlet_engine::labels::{Label, Labels};
use gauntlet_proto::thanos::{AggrChunk, Chunk, SeriesRequest};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// One Series answer message, as the merge takes it.
#[derive(Debug, Default, PartialEq)]
pub enum SeriesMessage {
    /// Series (one, or a batch), each label set sorted by name with unique names.
    Series(Vec<(Labels, Vec<AggrChunk>)>),
    /// A warning the endpoint sent.
    Warning(String),
    /// Hints, or a message with no result: nothing for the merge.
    #[default]
    Other,
}

/// What is wrong with a message, and at which byte offset of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Offset of the field or value that does not decode.
    pub offset: usize,
    /// What is wrong there.
    pub what: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "series answer does not decode at byte {}: {}",
            self.offset, self.what
        )
    }
}

impl std::error::Error for WireError {}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over one message (or a nested message) of `buf`; offsets are from `buf`'s start.
struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Cursor<'a> {
    fn fail(&self, at: usize, what: &'static str) -> WireError {
        WireError { offset: at, what }
    }

    #[inline]
    fn more(&self) -> bool {
        self.pos < self.end
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Keys and most lengths are one byte.
        if let Some(&b) = self.buf[..self.end].get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        match read_uvarint(&self.buf[self.pos..self.end]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(UvarintError::Truncated) => Err(self.fail(self.pos, "truncated varint")),
            Err(UvarintError::Overflow) => Err(self.fail(self.pos, "varint longer than 64 bits")),
        }
    }

    /// The next field's number, wire type and offset; `None` at the message's end.
    #[inline]
    fn field(&mut self) -> Result<Option<(u64, u8, usize)>, WireError> {
        if !self.more() {
            return Ok(None);
        }
        let at = self.pos;
        let (field, wire) = self.key()?;
        Ok(Some((field, wire, at)))
    }

    /// The next field's number and wire type.
    #[inline]
    fn key(&mut self) -> Result<(u64, u8), WireError> {
        let at = self.pos;
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(self.fail(at, "invalid field number"));
        }
        Ok((field, (k & 7) as u8))
    }

    /// A length-delimited field's extent, `[start, end)` of `buf`.
    #[inline]
    fn len_delim(&mut self) -> Result<(usize, usize), WireError> {
        let at = self.pos;
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.end - self.pos => {
                let start = self.pos;
                self.pos += n;
                Ok((start, self.pos))
            }
            _ => Err(self.fail(at, "length past the end of the message")),
        }
    }

    #[inline]
    fn nested(&mut self) -> Result<Cursor<'a>, WireError> {
        let (pos, end) = self.len_delim()?;
        Ok(Cursor {
            buf: self.buf,
            pos,
            end,
        })
    }

    #[inline]
    fn str(&mut self) -> Result<&'a str, WireError> {
        let at = self.pos;
        let (start, end) = self.len_delim()?;
        std::str::from_utf8(&self.buf[start..end]).map_err(|_| self.fail(at, "invalid UTF-8"))
    }

    /// Skips a field of wire type `wire` whose key ended just before the cursor.
    fn skip(&mut self, wire: u8, key_at: usize) -> Result<(), WireError> {
        let fixed = |c: &mut Self, n: usize| {
            if c.end - c.pos < n {
                return Err(c.fail(c.pos, "truncated fixed-width field"));
            }
            c.pos += n;
            Ok(())
        };
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => fixed(self, 8),
            LEN => self.len_delim().map(drop),
            FIXED32 => fixed(self, 4),
            3 | 4 => Err(self.fail(key_at, "groups are not supported")),
            _ => Err(self.fail(key_at, "no such wire type")),
        }
    }

    /// Checks that a known field has the wire type its schema gives it.
    #[inline]
    fn expect(&self, wire: u8, want: u8, key_at: usize) -> Result<(), WireError> {
        if wire == want {
            Ok(())
        } else {
            Err(self.fail(key_at, "field has the wrong wire type"))
        }
    }
}

/// Decodes one `SeriesResponse` message.
pub fn decode_series_response(buf: &Bytes) -> Result<SeriesMessage, WireError> {
    let mut c = Cursor {
        buf,
        pos: 0,
        end: buf.len(),
    };
    let mut out = SeriesMessage::Other;
    let mut sizes = Sizes::default();
    // The `result` field last set: one of a oneof's fields seen again merges into what it set
    // before, another replaces it.
    let mut last = 0;
    while let Some((field, wire, at)) = c.field()? {
        match field {
            1 | 4 => {
                c.expect(wire, LEN, at)?;
                let mut m = c.nested()?;
                let mut series = match std::mem::take(&mut out) {
                    SeriesMessage::Series(s) if last == field => s,
                    _ => Vec::new(),
                };
                if field == 1 {
                    series_into(&mut m, &mut series, false, &mut sizes)?;
                } else {
                    while let Some((field, wire, at)) = m.field()? {
                        if field == 1 {
                            m.expect(wire, LEN, at)?;
                            let mut s = m.nested()?;
                            series_into(&mut s, &mut series, true, &mut sizes)?;
                        } else {
                            m.skip(wire, at)?;
                        }
                    }
                }
                out = SeriesMessage::Series(series);
            }
            2 => {
                c.expect(wire, LEN, at)?;
                out = SeriesMessage::Warning(c.str()?.to_string());
            }
            3 => {
                c.expect(wire, LEN, at)?;
                c.len_delim()?;
                out = SeriesMessage::Other;
            }
            _ => {
                c.skip(wire, at)?;
                continue;
            }
        }
        last = field;
    }
    Ok(out)
}

/// How many labels and chunks the last series of a message had: the series of one answer are
/// alike, so each series' vectors are allocated once at that size.
#[derive(Debug, Default, Clone, Copy)]
struct Sizes {
    labels: usize,
    chunks: usize,
}

/// Reads one `Series` message: appended to `out` as a new series, or merged into the last one
/// of `out` when `!fresh` and there is one (a repeated `series` field of one response).
fn series_into(
    c: &mut Cursor<'_>,
    out: &mut Vec<(Labels, Vec<AggrChunk>)>,
    fresh: bool,
    sizes: &mut Sizes,
) -> Result<(), WireError> {
    let (mut pairs, mut chunks) = match out.pop() {
        Some((labels, chunks)) if !fresh => (labels.into_vec(), chunks),
        last => {
            out.extend(last);
            (
                Vec::with_capacity(sizes.labels),
                Vec::with_capacity(sizes.chunks),
            )
        }
    };
    while let Some((field, wire, at)) = c.field()? {
        match field {
            1 => {
                c.expect(wire, LEN, at)?;
                let mut l = c.nested()?;
                let (mut name, mut value) = ("", "");
                while let Some((field, wire, at)) = l.field()? {
                    match field {
                        1 => {
                            l.expect(wire, LEN, at)?;
                            name = l.str()?;
                        }
                        2 => {
                            l.expect(wire, LEN, at)?;
                            value = l.str()?;
                        }
                        _ => l.skip(wire, at)?,
                    }
                }
                pairs.push(Label::new(name, value));
            }
            2 => {
                c.expect(wire, LEN, at)?;
                let mut m = c.nested()?;
                let mut chunk = AggrChunk::default();
                aggr_chunk(&mut m, &mut chunk)?;
                chunks.push(chunk);
            }
            _ => c.skip(wire, at)?,
        }
    }
    *sizes = Sizes {
        labels: pairs.len(),
        chunks: chunks.len(),
    };
    // Put in name order once the whole message is read, the last of equal names kept.
    out.push((Labels::from_vec(pairs), chunks));
    Ok(())
}

fn aggr_chunk(c: &mut Cursor<'_>, out: &mut AggrChunk) -> Result<(), WireError> {
    while let Some((field, wire, at)) = c.field()? {
        let slot = match field {
            1 => {
                c.expect(wire, VARINT, at)?;
                out.min_time = c.varint()? as i64;
                continue;
            }
            2 => {
                c.expect(wire, VARINT, at)?;
                out.max_time = c.varint()? as i64;
                continue;
            }
            3 => &mut out.raw,
            4 => &mut out.count,
            5 => &mut out.sum,
            6 => &mut out.min,
            7 => &mut out.max,
            8 => &mut out.counter,
            _ => {
                c.skip(wire, at)?;
                continue;
            }
        };
        c.expect(wire, LEN, at)?;
        let mut m = c.nested()?;
        chunk(&mut m, slot.get_or_insert_with(Chunk::default))?;
    }
    Ok(())
}

fn chunk(c: &mut Cursor<'_>, out: &mut Chunk) -> Result<(), WireError> {
    while let Some((field, wire, at)) = c.field()? {
        match field {
            1 => {
                c.expect(wire, VARINT, at)?;
                out.r#type = c.varint()? as i32;
            }
            2 => {
                c.expect(wire, LEN, at)?;
                let (start, end) = c.len_delim()?;
                out.data = c.buf.slice(start..end);
            }
            3 => {
                c.expect(wire, VARINT, at)?;
                out.hash = c.varint()?;
            }
            _ => c.skip(wire, at)?,
        }
    }
    Ok(())
}

/// The Series call's codec: requests encoded as generated code does, answers read by
/// [`decode_series_response`], each with its size on the wire.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesCodec;

impl Codec for SeriesCodec {
    type Encode = SeriesRequest;
    type Decode = (SeriesMessage, usize);
    type Encoder = ProstEncoder<SeriesRequest>;
    type Decoder = SeriesDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        SeriesDecoder
    }
}

/// Decodes each Series answer message with [`decode_series_response`].
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesDecoder;

impl Decoder for SeriesDecoder {
    type Item = (SeriesMessage, usize);
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        let msg = decode_series_response(&bytes).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Some((msg, bytes.len())))
    }
}

#[cfg(test)]
mod tests {
    use gauntlet_proto::thanos::series_response::Result as Res;
    use gauntlet_proto::thanos::{Label as ProtoLabel, Series, SeriesBatch, SeriesResponse};
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    /// What a generated decoder makes of `bytes`, in this module's form.
    fn reference(bytes: &[u8]) -> Result<SeriesMessage, prost::DecodeError> {
        let series = |s: Series| {
            let labels = Labels::from_pairs(s.labels.into_iter().map(|l| (l.name, l.value)));
            (labels, s.chunks)
        };
        Ok(match SeriesResponse::decode(bytes)?.result {
            Some(Res::Series(s)) => SeriesMessage::Series(vec![series(s)]),
            Some(Res::Batch(b)) => {
                SeriesMessage::Series(b.series.into_iter().map(series).collect())
            }
            Some(Res::Warning(w)) => SeriesMessage::Warning(w),
            Some(Res::Hints(_)) | None => SeriesMessage::Other,
        })
    }

    fn label(n: &str, v: &str) -> ProtoLabel {
        ProtoLabel {
            name: n.into(),
            value: v.into(),
        }
    }

    fn raw(t: i64, data: &[u8]) -> AggrChunk {
        AggrChunk {
            min_time: t,
            max_time: t + 100,
            raw: Some(Chunk {
                r#type: 0,
                data: Bytes::copy_from_slice(data),
                hash: 7,
            }),
            ..Default::default()
        }
    }

    fn decoded(msg: &SeriesResponse) -> SeriesMessage {
        decode_series_response(&Bytes::from(msg.encode_to_vec())).unwrap()
    }

    #[test]
    fn a_batch_reads_as_a_generated_decoder_reads_it() {
        let msg = SeriesResponse {
            result: Some(Res::Batch(SeriesBatch {
                series: vec![
                    Series {
                        labels: vec![
                            label("__name__", "up"),
                            label("job", "a-job-name-longer-than-24-bytes"),
                        ],
                        chunks: vec![raw(-5, b"\x00\x01"), raw(200, b"")],
                    },
                    Series {
                        // Out of order with a duplicate name: sorted, the last kept.
                        labels: vec![label("z", "1"), label("a", "x"), label("z", "2")],
                        chunks: vec![AggrChunk {
                            count: Some(Chunk::default()),
                            counter: Some(Chunk {
                                r#type: 2,
                                data: Bytes::from_static(b"abc"),
                                hash: u64::MAX,
                            }),
                            ..Default::default()
                        }],
                    },
                    Series::default(),
                ],
            })),
        };
        let got = decoded(&msg);
        assert_eq!(got, reference(&msg.encode_to_vec()).unwrap());
        let SeriesMessage::Series(s) = got else {
            panic!("series expected");
        };
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].0, Labels::from_pairs([("a", "x"), ("z", "2")]));
    }

    #[test]
    fn warnings_hints_and_empty_messages() {
        let warning = SeriesResponse {
            result: Some(Res::Warning("store 1 failed: ünïcode".into())),
        };
        assert_eq!(
            decoded(&warning),
            SeriesMessage::Warning("store 1 failed: ünïcode".into())
        );
        let hints = SeriesResponse {
            result: Some(Res::Hints(prost_types::Any {
                type_url: "type.googleapis.com/hintspb.SeriesResponseHints".into(),
                value: vec![1, 2, 3],
            })),
        };
        assert_eq!(decoded(&hints), SeriesMessage::Other);
        assert_eq!(
            decode_series_response(&Bytes::new()).unwrap(),
            SeriesMessage::Other
        );
    }

    #[test]
    fn chunk_data_is_a_slice_of_the_received_frame() {
        let msg = SeriesResponse {
            result: Some(Res::Series(Series {
                labels: vec![label("a", "b")],
                chunks: vec![raw(0, b"payload")],
            })),
        };
        let frame = Bytes::from(msg.encode_to_vec());
        let SeriesMessage::Series(s) = decode_series_response(&frame).unwrap() else {
            panic!("series expected");
        };
        let data = &s[0].1[0].raw.as_ref().unwrap().data;
        assert_eq!(&data[..], b"payload");
        let range = frame.as_ptr_range();
        assert!(range.contains(&data.as_ptr()), "data was copied");
    }

    #[test]
    fn fields_seen_twice_follow_protobufs_rules() {
        let series = |labels: Vec<ProtoLabel>, t| {
            SeriesResponse {
                result: Some(Res::Series(Series {
                    labels,
                    chunks: vec![raw(t, b"x")],
                })),
            }
            .encode_to_vec()
        };
        let batch = SeriesResponse {
            result: Some(Res::Batch(SeriesBatch {
                series: vec![Series {
                    labels: vec![label("b", "1")],
                    chunks: vec![],
                }],
            })),
        }
        .encode_to_vec();
        let warning = SeriesResponse {
            result: Some(Res::Warning("w".into())),
        }
        .encode_to_vec();
        let cases: Vec<Vec<u8>> = vec![
            // Series twice: one series, labels and chunks of both.
            [
                series(vec![label("a", "1")], 0),
                series(vec![label("a", "2"), label("c", "3")], 5),
            ]
            .concat(),
            // Batches append; a series after a batch replaces it, and the reverse.
            [batch.clone(), batch.clone()].concat(),
            [batch.clone(), series(vec![label("a", "1")], 0)].concat(),
            [series(vec![label("a", "1")], 0), batch.clone()].concat(),
            [series(vec![label("a", "1")], 0), warning.clone()].concat(),
            [warning.clone(), batch.clone()].concat(),
            // A chunk field twice merges into one chunk.
            {
                let mut one = SeriesResponse {
                    result: Some(Res::Series(Series {
                        labels: vec![],
                        chunks: vec![raw(3, b"first")],
                    })),
                }
                .encode_to_vec();
                // Series(len) AggrChunk(len) ...: append a second `raw` (field 3) with only
                // `hash` set inside the chunk, fixing up both lengths.
                let extra = [0x1A, 0x02, 0x18, 0x09];
                one[1] += extra.len() as u8;
                one[3] += extra.len() as u8;
                one.extend_from_slice(&extra);
                one
            },
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let want = reference(bytes).unwrap();
            assert_eq!(
                decode_series_response(&Bytes::from(bytes.clone())).unwrap(),
                want,
                "case {i}"
            );
        }
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_or_what_a_generated_decoder_reads() {
        let msg = SeriesResponse {
            result: Some(Res::Batch(SeriesBatch {
                series: (0..3)
                    .map(|i| Series {
                        labels: vec![label("__name__", "metric"), label("i", &i.to_string())],
                        chunks: vec![raw(i * 1000, b"\x01\x02\x03")],
                    })
                    .collect(),
            })),
        }
        .encode_to_vec();
        let check = |bytes: &[u8]| match (
            decode_series_response(&Bytes::copy_from_slice(bytes)),
            reference(bytes),
        ) {
            (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs, "{bytes:?}"),
            (Err(e), _) => assert!(e.offset <= bytes.len(), "{e}"),
            (Ok(ours), Err(e)) => panic!("{bytes:?}: read {ours:?} where the reference fails: {e}"),
        };
        for n in 0..=msg.len() {
            check(&msg[..n]);
        }
        for i in 0..msg.len() {
            for x in [0x00, 0x07, 0x80, 0xFF] {
                let mut b = msg.clone();
                b[i] = x;
                check(&b);
            }
        }
        // Invalid UTF-8 in a label value.
        let bad = SeriesResponse {
            result: Some(Res::Series(Series {
                labels: vec![label("a", "b")],
                chunks: vec![],
            })),
        }
        .encode_to_vec();
        let mut b = bad.clone();
        *b.last_mut().unwrap() = 0xFF;
        let e = decode_series_response(&Bytes::from(b)).unwrap_err();
        assert_eq!(e.what, "invalid UTF-8");
        assert!(e.to_string().contains("byte"), "{e}");
    }

    fn arb_chunk() -> impl Strategy<Value = Option<Chunk>> {
        proptest::option::of(
            (
                0..4i32,
                proptest::collection::vec(any::<u8>(), 0..20),
                any::<u64>(),
            )
                .prop_map(|(t, d, h)| Chunk {
                    r#type: t,
                    data: Bytes::from(d),
                    hash: h,
                }),
        )
    }

    fn arb_series() -> impl Strategy<Value = Series> {
        let labels = proptest::collection::vec(("[a-c_]{0,3}", "[a-zé]{0,30}"), 0..6)
            .prop_map(|v| v.into_iter().map(|(n, v)| label(&n, &v)).collect());
        let chunk = (
            any::<i64>(),
            any::<i64>(),
            arb_chunk(),
            arb_chunk(),
            arb_chunk(),
            arb_chunk(),
            arb_chunk(),
            arb_chunk(),
        )
            .prop_map(|(min_time, max_time, raw, count, sum, min, max, counter)| {
                AggrChunk {
                    min_time,
                    max_time,
                    raw,
                    count,
                    sum,
                    min,
                    max,
                    counter,
                }
            });
        (labels, proptest::collection::vec(chunk, 0..4))
            .prop_map(|(labels, chunks)| Series { labels, chunks })
    }

    proptest! {
        #[test]
        fn any_answer_reads_as_a_generated_decoder_reads_it(
            pick in 0..4u8,
            series in proptest::collection::vec(arb_series(), 1..5),
            warning in "\\PC{0,20}",
            unknown in proptest::collection::vec((9..40u32, any::<u64>()), 0..3),
        ) {
            let result = match pick {
                0 => Some(Res::Series(series[0].clone())),
                1 => Some(Res::Batch(SeriesBatch { series })),
                2 => Some(Res::Warning(warning)),
                _ => None,
            };
            let mut bytes = SeriesResponse { result }.encode_to_vec();
            // Fields this schema does not have, of the varint and fixed64 wire types.
            for (field, v) in unknown {
                prost::encoding::uint64::encode(field, &v, &mut bytes);
                prost::encoding::fixed64::encode(field + 100, &v, &mut bytes);
            }
            let want = reference(&bytes).unwrap();
            prop_assert_eq!(decode_series_response(&Bytes::from(bytes)).unwrap(), want);
        }
    }
}
