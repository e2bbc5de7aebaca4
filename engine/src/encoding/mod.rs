//! Byte-level primitives shared by every on-disk format: big-endian integers, Go-style varints,
//! length-prefixed strings and CRC-32C.
//!
//! [`Decbuf`] never panics and never allocates on hostile input: every read checks the bytes
//! left and reports the absolute offset where decoding stopped.

mod crc;

pub use crc::{crc32c, crc32c_append};

use std::fmt;

/// What went wrong while decoding bytes, with the absolute offset it happened at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes were left than the field needs: the input is truncated.
    #[error("unexpected end of data at offset {offset} (wanted {wanted} bytes, {left} left)")]
    Truncated {
        /// Absolute byte offset of the field.
        offset: u64,
        /// Bytes the field needs.
        wanted: u64,
        /// Bytes that were left.
        left: u64,
    },
    /// A varint ran past 10 bytes or overflowed its integer type.
    #[error("invalid varint at offset {offset}")]
    Varint {
        /// Absolute byte offset of the varint.
        offset: u64,
    },
    /// A string was not valid UTF-8.
    #[error("invalid UTF-8 string at offset {offset}")]
    Utf8 {
        /// Absolute byte offset of the string's bytes.
        offset: u64,
    },
}

impl DecodeError {
    /// The absolute offset the error refers to.
    pub fn offset(&self) -> u64 {
        match self {
            DecodeError::Truncated { offset, .. }
            | DecodeError::Varint { offset }
            | DecodeError::Utf8 { offset } => *offset,
        }
    }
}

/// A cursor over a byte slice that decodes the integer encodings of Prometheus formats.
///
/// `base` is the absolute offset of `buf[0]` in the file, so errors name file offsets.
#[derive(Clone)]
pub struct Decbuf<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl fmt::Debug for Decbuf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decbuf")
            .field("len", &self.buf.len())
            .field("pos", &self.pos)
            .field("base", &self.base)
            .finish()
    }
}

impl<'a> Decbuf<'a> {
    /// A cursor at the start of `buf`, which begins at absolute file offset `base`.
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Decbuf { buf, pos: 0, base }
    }

    /// Absolute offset of the next byte to read.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Position relative to the start of the slice.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread bytes.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn truncated(&self, wanted: usize) -> DecodeError {
        DecodeError::Truncated {
            offset: self.offset(),
            wanted: wanted as u64,
            left: self.remaining() as u64,
        }
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        self.pos += n;
        Ok(())
    }

    /// Reads `n` raw bytes.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.truncated(n));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Reads one byte.
    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    /// Reads a big-endian u32.
    #[inline]
    pub fn be32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a big-endian u64.
    #[inline]
    pub fn be64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// Reads a Go unsigned varint (LEB128, at most 10 bytes).
    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let start = self.offset();
        match read_uvarint(&self.buf[self.pos..]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(UvarintError::Truncated) => Err(self.truncated(1)),
            Err(UvarintError::Overflow) => Err(DecodeError::Varint { offset: start }),
        }
    }

    /// Reads an unsigned varint that must fit in 32 bits.
    #[inline]
    pub fn uvarint32(&mut self) -> Result<u32, DecodeError> {
        let start = self.offset();
        let v = self.uvarint()?;
        u32::try_from(v).map_err(|_| DecodeError::Varint { offset: start })
    }

    /// Reads a Go signed (zig-zag) varint.
    #[inline]
    pub fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(zigzag_decode(u))
    }

    /// Reads a uvarint length followed by that many bytes.
    pub fn uvarint_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| self.truncated(usize::MAX))?;
        self.bytes(n)
    }

    /// Reads a uvarint length followed by that many bytes of UTF-8.
    pub fn uvarint_str(&mut self) -> Result<&'a str, DecodeError> {
        let b = self.uvarint_bytes()?;
        std::str::from_utf8(b).map_err(|_| DecodeError::Utf8 {
            offset: self.offset() - b.len() as u64,
        })
    }
}

/// Why a raw varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UvarintError {
    /// The buffer ended inside the varint.
    Truncated,
    /// More than 10 bytes, or a 10th byte above 1.
    Overflow,
}

/// Decodes a Go uvarint from the start of `buf`, returning the value and bytes consumed. The
/// one place varints are read: index sections, series entries on the store's hot path, wire
/// messages. One byte is tested first (most label references and deltas); up to eight bytes
/// are decoded from one 64-bit load without a loop.
#[inline(always)]
pub fn read_uvarint(buf: &[u8]) -> Result<(u64, usize), UvarintError> {
    let Some(&b) = buf.first() else {
        return Err(UvarintError::Truncated);
    };
    if b < 0x80 {
        return Ok((u64::from(b), 1));
    }
    if let Some(w) = buf.get(..8) {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        let w = u64::from_le_bytes(a);
        // The first byte without its continuation bit ends the varint.
        let stop = !w & 0x8080_8080_8080_8080;
        if stop != 0 {
            // Keep the bytes up to the stop bit, drop the continuation bits, then pack the
            // 7-bit groups pairwise: 14 bits per 16, 28 per 32, 56 per 64.
            let w = w & (stop ^ (stop - 1)) & 0x7F7F_7F7F_7F7F_7F7F;
            let w = (w & 0x007F_007F_007F_007F) | ((w & 0x7F00_7F00_7F00_7F00) >> 1);
            let w = (w & 0x0000_3FFF_0000_3FFF) | ((w & 0x3FFF_0000_3FFF_0000) >> 2);
            let v = (w & 0x0000_0000_0FFF_FFFF) | ((w & 0x0FFF_FFFF_0000_0000) >> 4);
            let bits = stop.trailing_zeros() + 1;
            return Ok((v, (bits / 8) as usize));
        }
    }
    read_uvarint_slow(buf)
}

/// Decodes a Go uvarint that must fit in 32 bits from the start of `buf`, returning the value
/// and bytes consumed; a larger value is [`UvarintError::Overflow`]. Symbol references and
/// label counts mostly take one to three bytes: those are read a byte at a time without a
/// loop (the store's series-entry decoding is its hottest caller), longer ones by
/// [`read_uvarint`].
#[inline(always)]
pub fn read_uvarint32(buf: &[u8]) -> Result<(u32, usize), UvarintError> {
    let Some(&x) = buf.first() else {
        return Err(UvarintError::Truncated);
    };
    if x < 0x80 {
        return Ok((u32::from(x), 1));
    }
    let Some(&y) = buf.get(1) else {
        return Err(UvarintError::Truncated);
    };
    if y < 0x80 {
        return Ok((u32::from(x & 0x7F) | u32::from(y) << 7, 2));
    }
    let Some(&z) = buf.get(2) else {
        return Err(UvarintError::Truncated);
    };
    if z < 0x80 {
        let v = u32::from(x & 0x7F) | u32::from(y & 0x7F) << 7 | u32::from(z) << 14;
        return Ok((v, 3));
    }
    let (v, n) = read_uvarint(buf)?;
    let v = u32::try_from(v).map_err(|_| UvarintError::Overflow)?;
    Ok((v, n))
}

/// [`read_uvarint`] a byte at a time: varints of nine and ten bytes, and those near the end
/// of `buf`.
#[cold]
fn read_uvarint_slow(buf: &[u8]) -> Result<(u64, usize), UvarintError> {
    let mut x: u64 = 0;
    let mut s: u32 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == 10 {
            return Err(UvarintError::Overflow);
        }
        if b < 0x80 {
            if i == 9 && b > 1 {
                return Err(UvarintError::Overflow);
            }
            return Ok((x | (u64::from(b) << s), i + 1));
        }
        x |= u64::from(b & 0x7f) << s;
        s += 7;
    }
    if buf.len() >= 10 {
        Err(UvarintError::Overflow)
    } else {
        Err(UvarintError::Truncated)
    }
}

/// Maps a zig-zag encoded value back to its signed form.
#[inline]
pub fn zigzag_decode(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Maps a signed value to its zig-zag form.
#[inline]
pub fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Appends the encodings read by [`Decbuf`] to a growable buffer.
#[derive(Debug, Default, Clone)]
pub struct Encbuf {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Encbuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Encbuf { buf: Vec::new() }
    }

    /// An empty buffer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Encbuf {
            buf: Vec::with_capacity(n),
        }
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets the contents, keeping the allocation.
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// The bytes written so far.
    pub fn get(&self) -> &[u8] {
        &self.buf
    }

    /// Appends one byte.
    #[inline]
    pub fn put_u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends raw bytes.
    #[inline]
    pub fn put_bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Appends a big-endian u32.
    #[inline]
    pub fn put_be32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a big-endian u64.
    #[inline]
    pub fn put_be64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    /// Appends a Go uvarint.
    #[inline]
    pub fn put_uvarint(&mut self, v: u64) {
        put_uvarint(&mut self.buf, v);
    }

    /// Appends a Go signed (zig-zag) varint.
    #[inline]
    pub fn put_varint(&mut self, v: i64) {
        put_uvarint(&mut self.buf, zigzag_encode(v));
    }

    /// Appends a uvarint length and the bytes.
    pub fn put_uvarint_bytes(&mut self, b: &[u8]) {
        self.put_uvarint(b.len() as u64);
        self.put_bytes(b);
    }

    /// Overwrites 4 bytes at `pos` with a big-endian u32 (for length fields written last).
    pub fn patch_be32(&mut self, pos: usize, v: u32) {
        self.buf[pos..pos + 4].copy_from_slice(&v.to_be_bytes());
    }
}

/// Bytes `v` takes as a uvarint (protobuf's varint is the same encoding).
#[inline(always)]
pub fn uvarint_len(v: u64) -> usize {
    // One byte per started 7 bits (0 takes one byte): bits × 9/64 rounds up to the same figure
    // for 1..=64 bits without a division.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    (bits * 9 + 64) / 64
}

/// Appends a Go uvarint to `out` (protobuf's varint is the same encoding).
#[inline]
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn uvarints_decode_as_go_writes_them() {
        let mut values: Vec<u64> = vec![0, 1, 127, 128, 300, 16_383, 16_384, u64::MAX];
        values.extend((0..64).map(|s| 1u64 << s));
        values.extend((1..64).map(|s| (1u64 << s) - 1));
        for v in values {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            let n = buf.len();
            // Alone, and followed by more bytes (the 64-bit load path).
            assert_eq!(read_uvarint(&buf), Ok((v, n)), "{v}");
            buf.extend_from_slice(&[0xFF; 9]);
            assert_eq!(read_uvarint(&buf), Ok((v, n)), "{v}");
            assert_eq!(read_uvarint(&buf[..n - 1]), Err(UvarintError::Truncated));
        }
        assert_eq!(read_uvarint(&[0xFF; 11]), Err(UvarintError::Overflow));
        assert_eq!(
            read_uvarint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]),
            Err(UvarintError::Overflow)
        );
    }

    proptest! {
        #[test]
        fn uvarint_roundtrip(v in any::<u64>()) {
            let mut e = Encbuf::new();
            e.put_uvarint(v);
            let mut d = Decbuf::new(e.get(), 0);
            prop_assert_eq!(d.uvarint().unwrap(), v);
            prop_assert_eq!(d.remaining(), 0);
        }

        #[test]
        fn uvarint_len_is_the_bytes_written(v in any::<u64>()) {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            prop_assert_eq!(uvarint_len(v), out.len());
        }

        #[test]
        fn varint_roundtrip(v in any::<i64>()) {
            let mut e = Encbuf::new();
            e.put_varint(v);
            let mut d = Decbuf::new(e.get(), 0);
            prop_assert_eq!(d.varint().unwrap(), v);
        }

        /// The 32-bit reader reads what the 64-bit one does, and refuses what does not fit.
        #[test]
        fn uvarint32_reads_as_uvarint_reads(
            bytes in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let want = read_uvarint(&bytes).and_then(|(v, n)| {
                u32::try_from(v).map(|v| (v, n)).map_err(|_| UvarintError::Overflow)
            });
            prop_assert_eq!(read_uvarint32(&bytes), want);
        }

        /// The word-at-a-time path reads what the byte-at-a-time loop reads, on any bytes.
        #[test]
        fn uvarints_read_as_the_byte_loop_reads_them(
            bytes in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            prop_assert_eq!(read_uvarint(&bytes), read_uvarint_slow(&bytes));
        }

        #[test]
        fn decbuf_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut d = Decbuf::new(&bytes, 100);
            let _ = d.uvarint();
            let _ = d.varint();
            let _ = d.be32();
            let _ = d.be64();
            let _ = d.uvarint_str();
        }
    }

    #[test]
    fn uvarint32s_decode_at_every_width() {
        let values = [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            (1 << 21) - 1,
            1 << 21,
            (1 << 28) - 1,
            1 << 28,
            u32::MAX,
        ];
        for v in values {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, u64::from(v));
            let n = buf.len();
            assert_eq!(read_uvarint32(&buf), Ok((v, n)), "{v}");
            buf.push(0x55);
            assert_eq!(read_uvarint32(&buf), Ok((v, n)), "{v}");
            assert_eq!(read_uvarint32(&buf[..n - 1]), Err(UvarintError::Truncated));
        }
        let mut big = Vec::new();
        put_uvarint(&mut big, u64::from(u32::MAX) + 1);
        assert_eq!(read_uvarint32(&big), Err(UvarintError::Overflow));
        assert_eq!(read_uvarint32(&[0xFF; 11]), Err(UvarintError::Overflow));
    }

    #[test]
    fn errors_name_absolute_offsets() {
        let mut d = Decbuf::new(&[1, 2], 40);
        d.u8().unwrap();
        assert_eq!(
            d.be32(),
            Err(DecodeError::Truncated {
                offset: 41,
                wanted: 4,
                left: 1
            })
        );
        let overlong = [0xffu8; 11];
        assert_eq!(
            Decbuf::new(&overlong, 7).uvarint(),
            Err(DecodeError::Varint { offset: 7 })
        );
    }
}
