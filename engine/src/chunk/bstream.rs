//! Bit streams laid out as Prometheus's `chunkenc/bstream.go` lays them out: bits fill each byte
//! from the most significant bit down, multi-bit fields are written most significant bit first,
//! and the last byte is zero-padded.

/// Appends bits to a byte vector, most significant bit first.
///
/// Byte-exact with Go's `bstream`. Before Prometheus 3.0 it had one quirk, which
/// [`BitWriter::with_prefix`] reproduces: a write of a whole number of bytes that starts on a
/// byte boundary leaves an empty byte behind (Go's `writeByte` appended the byte after the one
/// it filled). Later writes fill that byte; if none follows, it stays as a trailing zero byte,
/// and Prometheus 2's chunks contain it. Prometheus 3 dropped it (its `writeByte` appends an
/// aligned byte as it is): [`BitWriter::with_prefix_packed`] writes that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitWriter {
    /// The bytes written, then zeros: at least 8 past the last byte touched, so every write ORs
    /// one whole big-endian word in place. A boxed slice, its length the room it has: a head
    /// keeps one writer per series, and the capacity word of a `Vec` would be spent a million
    /// times over.
    buf: Box<[u8]>,
    /// Bits written, including any prefix (a chunk holds at most 65535 samples, far below
    /// the 512 MiB this counts to).
    bits: u32,
    /// Whether the last write left Go's empty trailing byte.
    empty_tail: bool,
    /// Whether aligned whole-byte writes leave that byte (Prometheus 2's writer).
    empty_tails: bool,
}

impl Default for BitWriter {
    fn default() -> Self {
        BitWriter::with_prefix(Vec::new())
    }
}

impl BitWriter {
    /// An empty stream.
    pub fn new() -> Self {
        BitWriter::default()
    }

    /// A stream that continues after `prefix`, which is kept as whole bytes (for headers),
    /// written as Prometheus 2 writes: aligned whole-byte writes leave an empty byte behind.
    pub fn with_prefix(prefix: Vec<u8>) -> Self {
        Self::start(prefix, true)
    }

    /// A stream that continues after `prefix`, written as Prometheus 3 writes: no empty
    /// trailing byte ever.
    pub fn with_prefix_packed(prefix: Vec<u8>) -> Self {
        Self::start(prefix, false)
    }

    fn start(mut prefix: Vec<u8>, empty_tails: bool) -> Self {
        #[allow(
            clippy::expect_used,
            reason = "chunk prefixes are a few bytes; 512 MiB of one is a caller bug"
        )]
        let bits = u32::try_from(prefix.len() * 8).expect("bit stream prefix over 512 MiB");
        // The prefix's spare capacity becomes room to write in.
        let room = prefix.capacity().max(prefix.len() + WORD_BYTES);
        prefix.resize(room, 0);
        BitWriter {
            buf: prefix.into_boxed_slice(),
            bits,
            empty_tail: false,
            empty_tails,
        }
    }

    /// Appends one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Appends the low `n` bits of `v`, most significant first; `n` is at most 64.
    ///
    /// The bytes depend on how a field sequence is split into calls (see the type's docs), so
    /// split it as the Go writer does.
    #[inline(always)]
    pub fn write_bits(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64, "write_bits of {n} bits");
        if n == 0 || n > 64 {
            return;
        }
        let started_aligned = self.bits.is_multiple_of(8);
        if n > 56 {
            self.put(v >> 32, n - 32);
            self.put(v & 0xffff_ffff, 32);
        } else {
            self.put(v & (u64::MAX >> (64 - n)), n);
        }
        self.empty_tail = self.empty_tails && n.is_multiple_of(8) && started_aligned;
    }

    /// ORs `n` (1..=56) bits, `v` holding nothing above them, into the word at the write position.
    #[inline(always)]
    fn put(&mut self, v: u64, n: u32) {
        let byte = (self.bits >> 3) as usize;
        let shift = self.bits & 7;
        if self.buf.len() < byte + WORD_BYTES {
            self.grow(byte + WORD_BYTES);
        }
        if let Some(w) = self.buf.get_mut(byte..byte + WORD_BYTES) {
            let word = load_be64(w, 0) | (v << (64 - n - shift));
            w.copy_from_slice(&word.to_be_bytes());
        }
        self.bits += n;
    }

    /// Makes room for at least `need` bytes. The room grows by a quarter (at least 16 bytes),
    /// not by doubling: a head holds a million of these half written, and doubling would leave
    /// a third of their bytes unused on average.
    #[cold]
    fn grow(&mut self, need: usize) {
        let len = self.buf.len();
        let grown = need.max(len + (len / 4).max(16)).next_multiple_of(8);
        let mut v = std::mem::take(&mut self.buf).into_vec();
        v.reserve_exact(grown - len);
        v.resize(grown, 0);
        self.buf = v.into_boxed_slice();
    }

    /// Appends 8 bits, as Go's `writeByte`.
    #[inline]
    pub fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }

    /// Bytes the buffer takes, written or not.
    pub fn room(&self) -> usize {
        self.buf.len()
    }

    /// Number of bits written, including any prefix.
    pub fn bit_len(&self) -> usize {
        self.bits as usize
    }

    fn byte_len(&self) -> usize {
        self.bits.div_ceil(8) as usize + usize::from(self.empty_tail)
    }

    /// The bytes written so far; the last one is zero-padded.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.byte_len()]
    }

    /// Mutable access to the bytes written (to patch a header in place).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.byte_len();
        &mut self.buf[..len]
    }

    /// The written bytes, zero-padded to a whole byte.
    pub fn into_bytes(self) -> Vec<u8> {
        let len = self.byte_len();
        let mut v = self.buf.into_vec();
        v.truncate(len);
        v
    }
}

/// Bytes of a big-endian word.
const WORD_BYTES: usize = 8;

/// Returns the 64 bits of `data` that start at bit `pos`, left-aligned; bits past the end of
/// `data` read as zero.
#[inline(always)]
pub fn peek64(data: &[u8], pos: usize) -> u64 {
    let byte = pos >> 3;
    let shift = (pos & 7) as u32;
    match data.get(byte..byte + 9) {
        Some(w) => {
            let hi = u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            // `>> (8 - shift)` is a shift by 8 when shift is 0, which clears the ninth byte.
            (hi << shift) | (u64::from(w[8]) >> (8 - shift))
        }
        None => peek64_tail(data, pos),
    }
}

/// [`peek64`] for callers that keep 9 bytes of slack after `pos`: with no slow path to call, it
/// stays small enough for a hot loop's registers. Returns 0 where the slack is missing.
#[inline(always)]
pub fn peek64_inside(data: &[u8], pos: usize) -> u64 {
    let byte = pos >> 3;
    let shift = (pos & 7) as u32;
    match data.get(byte..byte + 9) {
        Some(&[a, b, c, d, e, f, g, h, i]) => {
            (u64::from_be_bytes([a, b, c, d, e, f, g, h]) << shift) | (u64::from(i) >> (8 - shift))
        }
        _ => 0,
    }
}

/// The 8 bytes at `byte` as a big-endian u64, or 0 if fewer than 8 are left.
#[inline(always)]
pub fn load_be64(data: &[u8], byte: usize) -> u64 {
    match data.get(byte..byte + 8) {
        Some(&[a, b, c, d, e, f, g, h]) => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => 0,
    }
}

/// [`peek64`] for the last 9 bytes of the stream and beyond, where a plain load would overrun.
#[inline(never)]
fn peek64_tail(data: &[u8], pos: usize) -> u64 {
    let byte = pos >> 3;
    let shift = (pos & 7) as u32;
    let mut w = [0u8; 9];
    if let Some(rest) = data.get(byte..) {
        let n = rest.len().min(9);
        w[..n].copy_from_slice(&rest[..n]);
    }
    let hi = u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    (hi << shift) | (u64::from(w[8]) >> (8 - shift))
}

/// Reads bits MSB first from a byte slice.
///
/// Reads never fail: past the end they yield zero bits and move the position on regardless,
/// so a decoder checks [`BitReader::overrun`] once per record instead of once per field.
#[derive(Debug, Clone, Copy)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next bit to read, counted from the first bit of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at bit `pos` of `data`.
    #[inline]
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        BitReader { data, pos }
    }

    /// The next 64 bits, left-aligned, without consuming them.
    #[inline(always)]
    pub fn peek(&self) -> u64 {
        peek64(self.data, self.pos)
    }

    /// Skips `n` bits.
    #[inline(always)]
    pub fn consume(&mut self, n: u32) {
        self.pos += n as usize;
    }

    /// Reads `n` bits (1..=64) as the low bits of the result.
    #[inline(always)]
    pub fn read_bits(&mut self, n: u32) -> u64 {
        debug_assert!((1..=64).contains(&n));
        let v = self.peek() >> (64 - n.clamp(1, 64));
        self.consume(n);
        v
    }

    /// Reads one bit.
    #[inline(always)]
    pub fn read_bit(&mut self) -> bool {
        self.read_bits(1) != 0
    }

    /// Position of the next bit to read, in bits from the start of the data.
    #[inline(always)]
    pub fn bit_pos(&self) -> usize {
        self.pos
    }

    /// Moves to bit `pos`.
    #[inline(always)]
    pub fn set_bit_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// Number of bits in the data.
    #[inline(always)]
    pub fn bit_len(&self) -> usize {
        self.data.len() * 8
    }

    /// Whether a read went past the end of the data.
    #[inline(always)]
    pub fn overrun(&self) -> bool {
        self.pos > self.data.len() * 8
    }

    /// The underlying bytes.
    #[inline(always)]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: Go's `bstream` transcribed literally, bit and byte at a time.
    #[derive(Default)]
    struct GoBstream {
        stream: Vec<u8>,
        count: u32,
    }

    impl GoBstream {
        fn write_bit(&mut self, bit: bool) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            if bit {
                self.stream[i] |= 1 << (self.count - 1);
            }
            self.count -= 1;
        }

        fn write_byte(&mut self, byt: u8) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            self.stream[i] |= ((u16::from(byt)) >> (8 - self.count)) as u8;
            self.stream.push(((u16::from(byt)) << self.count) as u8);
        }

        fn write_bits(&mut self, u: u64, nbits: u32) {
            if nbits == 0 {
                return;
            }
            let mut u = u << (64 - nbits);
            let mut nbits = nbits;
            while nbits >= 8 {
                self.write_byte((u >> 56) as u8);
                u <<= 8;
                nbits -= 8;
            }
            while nbits > 0 {
                self.write_bit((u >> 63) == 1);
                u <<= 1;
                nbits -= 1;
            }
        }
    }

    /// Go's `bstream` from Prometheus 3.0 on: an aligned `writeByte` appends the byte as is.
    #[derive(Default)]
    struct GoBstream3 {
        stream: Vec<u8>,
        count: u32,
    }

    impl GoBstream3 {
        fn write_bit(&mut self, bit: bool) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            if bit {
                self.stream[i] |= 1 << (self.count - 1);
            }
            self.count -= 1;
        }

        fn write_byte(&mut self, byt: u8) {
            if self.count == 0 {
                self.stream.push(byt);
                return;
            }
            let i = self.stream.len() - 1;
            self.stream[i] |= byt >> (8 - self.count);
            self.stream.push(((u16::from(byt)) << self.count) as u8);
        }

        fn write_bits(&mut self, u: u64, nbits: u32) {
            if nbits == 0 {
                return;
            }
            let mut u = u << (64 - nbits);
            let mut nbits = nbits;
            while nbits >= 8 {
                self.write_byte((u >> 56) as u8);
                u <<= 8;
                nbits -= 8;
            }
            while nbits > 0 {
                self.write_bit((u >> 63) == 1);
                u <<= 1;
                nbits -= 1;
            }
        }
    }

    fn field() -> impl Strategy<Value = (u64, u32)> {
        (any::<u64>(), 0u32..=64).prop_map(|(v, n)| {
            let masked = if n == 64 { v } else { v & ((1u64 << n) - 1) };
            (masked, n)
        })
    }

    proptest! {
        #[test]
        fn writer_matches_go_bstream_byte_for_byte(fields in proptest::collection::vec(field(), 0..40)) {
            let mut w = BitWriter::new();
            for &(v, n) in &fields {
                w.write_bits(v, n);
            }
            let mut go = GoBstream::default();
            for &(v, n) in &fields {
                go.write_bits(v, n);
            }
            let total: usize = fields.iter().map(|f| f.1 as usize).sum();
            prop_assert_eq!(w.bit_len(), total);
            prop_assert_eq!(w.bytes(), &go.stream[..]);
        }

        #[test]
        fn packed_writer_matches_prometheus_3_bstream(fields in proptest::collection::vec(field(), 0..40)) {
            let mut w = BitWriter::with_prefix_packed(vec![0xAB]);
            let mut go = GoBstream3 { stream: vec![0xAB], count: 0 };
            for &(v, n) in &fields {
                w.write_bits(v, n);
                go.write_bits(v, n);
            }
            prop_assert_eq!(w.bytes(), &go.stream[..]);
            prop_assert_eq!(w.bytes().len(), w.bit_len().div_ceil(8));
        }

        #[test]
        fn reader_returns_what_writer_wrote(fields in proptest::collection::vec(field(), 0..40)) {
            let mut w = BitWriter::new();
            for &(v, n) in &fields {
                w.write_bits(v, n);
            }
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes, 0);
            for &(v, n) in &fields {
                if n > 0 {
                    prop_assert_eq!(r.read_bits(n), v);
                }
            }
            prop_assert!(!r.overrun());
        }
    }

    #[test]
    fn peek_past_the_end_reads_zeros() {
        let data = [0xab, 0xcd];
        assert_eq!(peek64(&data, 0), 0xabcd_0000_0000_0000);
        assert_eq!(peek64(&data, 4), 0xbcd0_0000_0000_0000);
        assert_eq!(peek64(&data, 16), 0);
        assert_eq!(peek64(&data, 1000), 0);
        let mut r = BitReader::new(&data, 12);
        assert_eq!(r.read_bits(8), 0xd0);
        assert!(r.overrun());
    }

    #[test]
    fn peek_reads_nine_bytes_at_odd_offsets() {
        let data: Vec<u8> = (1..=20).collect();
        for pos in 0..(20 * 8) {
            let mut want = 0u64;
            for i in 0..64 {
                let p = pos + i;
                let bit = data.get(p / 8).map_or(0, |b| (b >> (7 - p % 8)) & 1);
                want = (want << 1) | u64::from(bit);
            }
            assert_eq!(peek64(&data, pos), want, "pos {pos}");
        }
    }
}
