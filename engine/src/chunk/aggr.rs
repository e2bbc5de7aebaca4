//! Thanos's aggregate chunk (`downsample.AggrChunk`, chunk encoding byte 0xFF): the chunk format
//! of downsampled blocks. One chunk holds up to five sub-chunks over the same windows — count,
//! sum, min, max and counter — in that order, each written as
//!
//! ```text
//! uvarint L, then (when L > 0) u8 sub-encoding, L bytes of sub-chunk payload
//! ```
//!
//! where `L = 0` (a single `0x00` byte) marks the aggregate absent. Float sub-chunks are XOR
//! payloads (encoding 1). Reads follow Thanos's `AggrChunk.Get` exactly, including its quirk: an
//! entry's length must be followed by at least one more byte even when it is zero, so an absent
//! final entry reads as "invalid size" rather than "absent".

use super::{ChunkError, Encoding};
use crate::encoding::{put_uvarint, read_uvarint};

/// The aggregates a downsampled chunk can hold, numbered as Thanos numbers them in the chunk
/// (`downsample.AggrType`), which is the order of the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum AggrType {
    /// Number of raw samples in the window.
    Count = 0,
    /// Sum of the raw values in the window.
    Sum = 1,
    /// Smallest raw value in the window.
    Min = 2,
    /// Largest raw value in the window.
    Max = 3,
    /// Counter value with resets removed, plus the true first and last raw values.
    Counter = 4,
}

impl AggrType {
    /// Every aggregate, in chunk order.
    pub const ALL: [AggrType; 5] = [
        AggrType::Count,
        AggrType::Sum,
        AggrType::Min,
        AggrType::Max,
        AggrType::Counter,
    ];

    /// The aggregate's name as Thanos prints it (`count`, `sum`, …).
    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }

    /// The aggregate for a StoreAPI `thanos.Aggr` enum number (`COUNT=1` … `COUNTER=5`); `None`
    /// for `RAW=0` and unknown numbers.
    pub fn from_storeapi(n: i32) -> Option<AggrType> {
        match n {
            1 => Some(AggrType::Count),
            2 => Some(AggrType::Sum),
            3 => Some(AggrType::Min),
            4 => Some(AggrType::Max),
            5 => Some(AggrType::Counter),
            _ => None,
        }
    }

    /// The StoreAPI `thanos.Aggr` enum number of this aggregate.
    pub fn storeapi(self) -> i32 {
        self as i32 + 1
    }
}

impl std::fmt::Display for AggrType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an aggregate chunk or one of its sub-chunks could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AggrError {
    /// An entry's length is malformed or runs past the end of the chunk (Thanos: "invalid
    /// size"); the chunk is corrupt, or its last entries are absent.
    #[error("aggregate chunk: invalid size of the {aggregate} entry at byte {offset}")]
    InvalidSize {
        /// The entry being read when the bytes ran out (the one asked for or one before it).
        aggregate: AggrType,
        /// Byte offset of the entry's length field.
        offset: usize,
    },
    /// The chunk does not hold the aggregate asked for (Thanos: "aggregate does not exist");
    /// ask for another aggregate.
    #[error("aggregate {aggregate} does not exist")]
    Missing {
        /// The aggregate asked for.
        aggregate: AggrType,
    },
    /// A sub-chunk has an encoding this reader does not decode (histogram aggregates).
    #[error("aggregate {aggregate}: sub-chunk encoding {encoding} is not supported")]
    UnsupportedEncoding {
        /// The aggregate.
        aggregate: AggrType,
        /// Its encoding byte.
        encoding: u8,
    },
    /// A sub-chunk's payload does not decode.
    #[error("aggregate {aggregate}: {source}")]
    Chunk {
        /// The aggregate.
        aggregate: AggrType,
        /// The XOR decoder's error.
        source: ChunkError,
    },
}

/// One aggregate's sub-chunk: its encoding byte and payload (an XOR payload for floats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubChunk<'a> {
    /// TSDB chunk encoding of the payload (1 = XOR).
    pub encoding: u8,
    /// The payload, starting with its 2-byte sample count.
    pub data: &'a [u8],
}

impl<'a> SubChunk<'a> {
    /// An XOR sub-chunk.
    pub fn xor(data: &'a [u8]) -> Self {
        SubChunk {
            encoding: Encoding::Xor as u8,
            data,
        }
    }
}

/// A view of an aggregate chunk's bytes (the record payload after the 0xFF encoding byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggrChunk<'a> {
    data: &'a [u8],
}

impl<'a> AggrChunk<'a> {
    /// Views `data`; nothing is checked until an aggregate is read.
    pub fn new(data: &'a [u8]) -> Self {
        AggrChunk { data }
    }

    /// The chunk's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The sub-chunk of aggregate `t`, read as Thanos's `AggrChunk.Get` reads it: the entries
    /// before `t` are skipped, each length field must be followed by at least one byte.
    pub fn get(&self, t: AggrType) -> Result<SubChunk<'a>, AggrError> {
        let mut b = self.data;
        let mut offset = 0;
        for i in AggrType::ALL {
            let invalid = AggrError::InvalidSize {
                aggregate: i,
                offset,
            };
            let Ok((len, n)) = read_uvarint(b) else {
                return Err(invalid);
            };
            let rest = &b[n..];
            // At least `len + 1` bytes must follow (the encoding byte and the payload).
            if len >= rest.len() as u64 {
                return Err(invalid);
            }
            let len = len as usize;
            if len == 0 {
                if i == t {
                    return Err(AggrError::Missing { aggregate: t });
                }
                b = rest;
                offset += n;
                continue;
            }
            if i == t {
                return Ok(SubChunk {
                    encoding: rest[0],
                    data: &rest[1..=len],
                });
            }
            b = &rest[len + 1..];
            offset += n + len + 1;
        }
        unreachable!("the loop returns when it reaches the aggregate asked for")
    }

    /// The XOR payload of aggregate `t`; other sub-chunk encodings are an error.
    pub fn get_xor(&self, t: AggrType) -> Result<&'a [u8], AggrError> {
        let s = self.get(t)?;
        if s.encoding != Encoding::Xor as u8 {
            return Err(AggrError::UnsupportedEncoding {
                aggregate: t,
                encoding: s.encoding,
            });
        }
        Ok(s.data)
    }

    /// Samples in the chunk: those of its count sub-chunk, 0 when that is unreadable (as
    /// Thanos's `NumSamples`).
    pub fn num_samples(&self) -> usize {
        self.get(AggrType::Count)
            .ok()
            .and_then(|s| super::xor::xor_num_samples(s.data).ok())
            .unwrap_or(0)
    }

    /// Every aggregate that reads successfully, in chunk order; absent and unreadable ones are
    /// `None`.
    pub fn present(&self) -> [Option<SubChunk<'a>>; 5] {
        AggrType::ALL.map(|t| self.get(t).ok())
    }
}

/// Encodes an aggregate chunk from one optional sub-chunk per aggregate, in [`AggrType`] order,
/// byte for byte as Thanos's `EncodeAggrChunk`.
pub fn encode_aggr(parts: &[Option<SubChunk<'_>>; 5]) -> Vec<u8> {
    let len: usize = parts
        .iter()
        .map(|p| p.map_or(1, |s| s.data.len() + 11))
        .sum();
    let mut out = Vec::with_capacity(len);
    for p in parts {
        match p {
            // An XOR payload is never empty (it holds a 2-byte count), so a zero length only
            // ever marks an absent aggregate.
            Some(s) if !s.data.is_empty() => {
                put_uvarint(&mut out, s.data.len() as u64);
                out.push(s.encoding);
                out.extend_from_slice(s.data);
            }
            _ => out.push(0),
        }
    }
    out
}

/// A copy of the aggregate chunk `data` holding only the aggregates in `want` (the others
/// marked absent), as a store serves a downsampled chunk; fails when one of `want` is absent.
pub fn retain_aggregates(data: &[u8], want: &[AggrType]) -> Result<Vec<u8>, AggrError> {
    let c = AggrChunk::new(data);
    let mut parts: [Option<SubChunk<'_>>; 5] = [None; 5];
    for &t in want {
        parts[t as usize] = Some(c.get(t)?);
    }
    Ok(encode_aggr(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{SampleBatch, decode_xor_into, encode_xor};

    #[test]
    fn bytes_match_a_hand_encoded_chunk() {
        // Count: one sample (t=0, v=1.0); XOR payload: count 0x0001, varint t0 = 0x00, the 8
        // bytes of 1.0, and the empty byte Prometheus's bit stream keeps open after a whole
        // byte. Sum absent. Min: the same payload. Max and counter absent.
        let one = encode_xor(&[0], &[1.0]);
        assert_eq!(one, [0, 1, 0, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0]);
        let parts = [
            Some(SubChunk::xor(&one)),
            None,
            Some(SubChunk::xor(&one)),
            None,
            None,
        ];
        let got = encode_aggr(&parts);
        let mut want = vec![12, 1];
        want.extend_from_slice(&one);
        want.push(0);
        want.extend_from_slice(&[12, 1]);
        want.extend_from_slice(&one);
        want.extend_from_slice(&[0, 0]);
        assert_eq!(got, want);

        let c = AggrChunk::new(&got);
        assert_eq!(c.get(AggrType::Count).unwrap(), SubChunk::xor(&one));
        assert_eq!(c.get(AggrType::Min).unwrap().data, &one[..]);
        assert_eq!(
            c.get(AggrType::Sum),
            Err(AggrError::Missing {
                aggregate: AggrType::Sum
            })
        );
        assert_eq!(
            c.get(AggrType::Max),
            Err(AggrError::Missing {
                aggregate: AggrType::Max
            })
        );
        // Thanos's quirk: the absent last entry has no byte after it.
        assert!(matches!(
            c.get(AggrType::Counter),
            Err(AggrError::InvalidSize {
                aggregate: AggrType::Counter,
                ..
            })
        ));
        assert_eq!(c.num_samples(), 1);
    }

    #[test]
    fn long_sub_chunks_take_multi_byte_lengths_and_round_trip() {
        let ts: Vec<i64> = (0..150).map(|i| i * 300_000 + 299_999).collect();
        let payloads: Vec<Vec<u8>> = (0..5)
            .map(|k| {
                let v: Vec<f64> = ts
                    .iter()
                    .map(|&t| (t as f64).sin() * (k + 1) as f64)
                    .collect();
                encode_xor(&ts, &v)
            })
            .collect();
        assert!(payloads.iter().all(|p| p.len() > 127));
        let parts: [Option<SubChunk<'_>>; 5] =
            std::array::from_fn(|i| Some(SubChunk::xor(&payloads[i])));
        let data = encode_aggr(&parts);
        assert_eq!(data[1] & 0x80, 0, "two-byte length ends in its second byte");
        let c = AggrChunk::new(&data);
        for t in AggrType::ALL {
            assert_eq!(c.get_xor(t).unwrap(), &payloads[t as usize][..]);
            let mut b = SampleBatch::new();
            decode_xor_into(c.get_xor(t).unwrap(), &mut b).unwrap();
            assert_eq!(b.ts, ts);
        }
        assert_eq!(c.num_samples(), 150);

        let kept = retain_aggregates(&data, &[AggrType::Sum, AggrType::Counter]).unwrap();
        let k = AggrChunk::new(&kept);
        assert!(k.get(AggrType::Count).is_err());
        assert_eq!(k.get_xor(AggrType::Sum).unwrap(), &payloads[1][..]);
        assert_eq!(k.get_xor(AggrType::Counter).unwrap(), &payloads[4][..]);
        assert_eq!(k.num_samples(), 0);
        let none = retain_aggregates(&kept, &[AggrType::Min]);
        assert_eq!(
            none,
            Err(AggrError::Missing {
                aggregate: AggrType::Min
            })
        );
    }

    #[test]
    fn hostile_bytes_are_errors() {
        for data in [
            &[][..],
            &[0x80],
            &[0xff; 11],
            &[5, 1, 0, 1],
            &[0],
            &[0, 0, 0, 0],
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1,
            ],
        ] {
            let c = AggrChunk::new(data);
            for t in AggrType::ALL {
                assert!(c.get(t).is_err(), "{data:?} {t}");
            }
            assert_eq!(c.num_samples(), 0);
        }
        let c = AggrChunk::new(&[3, 2, 0, 0, 0]);
        assert_eq!(
            c.get_xor(AggrType::Count),
            Err(AggrError::UnsupportedEncoding {
                aggregate: AggrType::Count,
                encoding: 2
            })
        );
    }

    #[test]
    fn storeapi_numbers_map_both_ways() {
        for t in AggrType::ALL {
            assert_eq!(AggrType::from_storeapi(t.storeapi()), Some(t));
        }
        assert_eq!(AggrType::from_storeapi(0), None);
        assert_eq!(AggrType::from_storeapi(6), None);
        assert_eq!(AggrType::Counter.storeapi(), 5);
    }
}
