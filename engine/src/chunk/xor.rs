//! XOR ("Gorilla") float chunks, bit for bit as Prometheus's `chunkenc/xor.go` writes them
//! (`docs/formats/tsdb-block.md`, XOR chunk payload).
//!
//! Layout: a big-endian u16 sample count; sample 0 as a varint timestamp and the 64 raw bits of
//! the value; sample 1 as a uvarint timestamp delta and an XOR-encoded value; every later sample
//! as a bucketed delta-of-delta timestamp and an XOR-encoded value. All fields after the count
//! are packed MSB first with no alignment, the last byte zero-padded.
//!
//! Decoding deviates from Prometheus in one way only: a value header whose leading and
//! significant bits add up to more than 64 (which no writer emits) is an error instead of
//! silently decoding garbage.

use super::bstream::{BitReader, BitWriter};
use super::xor_fast::{FAST_SLACK_BYTES, RunState, dod_field, fast_run};
use super::{ChunkError, SampleBatch};
use crate::encoding::{UvarintError, put_uvarint, read_uvarint, zigzag_decode, zigzag_encode};

/// Most samples one chunk holds: the count field is a u16.
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// Bytes of the sample count that starts every payload.
const HEADER_BYTES: usize = 2;

/// Writer state before the first `11` value header (Prometheus's 0xff "unset").
const UNSET: u8 = 0xff;

/// Fewest bits any sample after the second takes: a `0` dod bit and a `0` value bit.
const MIN_SAMPLE_BITS: usize = 2;

/// Encodes `ts` and `val` (ms, and the values paired by index) into a fresh XOR payload, byte for
/// byte what Prometheus's appender writes for the same samples.
///
/// Any timestamp order is accepted, as in Prometheus.
///
/// # Panics
///
/// If `ts` and `val` differ in length or hold more than [`MAX_SAMPLES`] samples: both are caller
/// bugs, as the chunk cutter keeps chunks far smaller.
pub fn encode_xor(ts: &[i64], val: &[f64]) -> Vec<u8> {
    assert_eq!(ts.len(), val.len(), "encode_xor: ts and val lengths differ");
    assert!(
        ts.len() <= MAX_SAMPLES,
        "encode_xor: {} samples exceed the chunk limit of {MAX_SAMPLES}",
        ts.len()
    );
    // Real chunks take 1-4 bytes per sample; growth handles the rest.
    let mut a = XorAppender::with_capacity(HEADER_BYTES + 16 + ts.len() * 4);
    for (&t, &v) in ts.iter().zip(val) {
        a.append_unchecked(t, v);
    }
    a.write_count();
    a.into_bytes()
}

/// Incremental XOR encoder, the counterpart of Prometheus's `xorAppender`: after every append,
/// [`bytes`](XorAppender::bytes) is a complete payload holding all samples so far.
#[derive(Debug, Clone)]
pub struct XorAppender {
    w: BitWriter,
    num: u16,
    t: i64,
    /// Previous timestamp delta, kept as Go keeps it (u64, wrapping).
    t_delta: u64,
    v_bits: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorAppender {
    fn default() -> Self {
        XorAppender::new()
    }
}

impl XorAppender {
    /// An appender for an empty chunk.
    pub fn new() -> Self {
        XorAppender::with_capacity(128)
    }

    /// An appender for an empty chunk whose buffer starts with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut prefix = Vec::with_capacity(bytes.max(HEADER_BYTES) + 8);
        prefix.extend_from_slice(&[0; HEADER_BYTES]);
        XorAppender {
            w: BitWriter::with_prefix(prefix),
            num: 0,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            leading: UNSET,
            trailing: 0,
        }
    }

    /// An appender that continues an existing payload, in the state it would have had if it had
    /// written every sample itself (the payload is decoded and its samples appended afresh).
    ///
    /// Prometheus instead resumes at the next byte boundary, with its value state "unset" only
    /// for empty chunks; it never appends to a chunk read back from disk, so this is a choice,
    /// not a compatibility matter. Here appending the rest of a series gives the same bytes as
    /// encoding it in one go.
    pub fn from_payload(data: &[u8]) -> Result<Self, ChunkError> {
        let mut d = Decoder::new(data)?;
        let mut a = XorAppender::with_capacity(data.len() + 16);
        while let Some((t, bits)) = d.next_sample()? {
            a.append_unchecked(t, f64::from_bits(bits));
        }
        a.write_count();
        Ok(a)
    }

    /// Number of samples appended.
    pub fn num_samples(&self) -> usize {
        usize::from(self.num)
    }

    /// Whether the chunk holds [`MAX_SAMPLES`] samples and takes no more.
    pub fn is_full(&self) -> bool {
        usize::from(self.num) >= MAX_SAMPLES
    }

    /// The payload so far: sample count, then the bit stream, zero-padded.
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// The timestamp of the last sample appended, ms (0 before the first).
    pub fn last_time(&self) -> i64 {
        self.t
    }

    /// The bits of the last value appended (0 before the first).
    pub fn last_value_bits(&self) -> u64 {
        self.v_bits
    }

    /// Bytes the payload's buffer takes, written or not.
    pub fn room(&self) -> usize {
        self.w.room()
    }

    /// The finished payload.
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.into_bytes()
    }

    /// Appends a sample (`t` in ms), or fails with [`ChunkError::TooManySamples`] when the chunk
    /// is full.
    pub fn try_append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.is_full() {
            return Err(ChunkError::TooManySamples { max: MAX_SAMPLES });
        }
        self.append_unchecked(t, v);
        self.write_count();
        Ok(())
    }

    /// Appends a sample (`t` in ms).
    ///
    /// # Panics
    ///
    /// When the chunk already holds [`MAX_SAMPLES`] samples; use
    /// [`try_append`](XorAppender::try_append) where that can happen.
    pub fn append(&mut self, t: i64, v: f64) {
        assert!(
            !self.is_full(),
            "XOR chunk already holds {MAX_SAMPLES} samples"
        );
        self.append_unchecked(t, v);
        self.write_count();
    }

    /// Appends with the count already checked to be below [`MAX_SAMPLES`]; the header is left
    /// for [`XorAppender::write_count`].
    #[inline(always)]
    fn append_unchecked(&mut self, t: i64, v: f64) {
        let v_bits = v.to_bits();
        let mut t_delta = 0;
        match self.num {
            0 => {
                self.write_uvarint(zigzag_encode(t));
                self.w.write_bits(v_bits, 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                self.write_uvarint(t_delta);
                self.write_value(0, 0, v_bits);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                let raw = dod as u64;
                // The dod field (bucket prefix, then dod's low bits) goes out in one write with
                // the value's control bits; see `write_value` for why that is byte-exact.
                let (field, width) = if dod == 0 {
                    (0, 1)
                } else if bit_range(dod, 14) {
                    ((0b10 << 14) | (raw & 0x3fff), 16)
                } else if bit_range(dod, 17) {
                    ((0b110 << 17) | (raw & 0x1_ffff), 20)
                } else if bit_range(dod, 20) {
                    ((0b1110 << 20) | (raw & 0xf_ffff), 24)
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(raw, 64);
                    (0, 0)
                };
                self.write_value(field, width, v_bits);
            }
        }
        self.t = t;
        self.v_bits = v_bits;
        self.t_delta = t_delta;
        self.num += 1;
    }

    /// Stores the sample count in the header.
    #[inline]
    fn write_count(&mut self) {
        if let Some(h) = self.w.bytes_mut().get_mut(..HEADER_BYTES) {
            h.copy_from_slice(&self.num.to_be_bytes());
        }
    }

    /// Writes a varint field byte by byte, as Go does.
    fn write_uvarint(&mut self, v: u64) {
        let mut tmp = Vec::with_capacity(10);
        put_uvarint(&mut tmp, v);
        for b in tmp {
            self.w.write_byte(b);
        }
    }

    /// Writes the `width` (0..=24) bits of `field`, then `v_bits` XOR the previous value
    /// (`docs/formats/tsdb-block.md`, XOR chunk payload, value XOR encoding).
    ///
    /// Go writes each field separately, and only the split of a sample's last write shows in the
    /// bytes (it decides Go's empty trailing byte, see [`BitWriter`]); so everything before the
    /// value's payload is merged into one write, and the payload keeps its own. A lone `0` value
    /// bit merged with a dod field makes 1, 2, 17, 21 or 25 bits: never whole bytes, like Go's
    /// single bit.
    #[inline(always)]
    fn write_value(&mut self, field: u64, width: u32, v_bits: u64) {
        let delta = v_bits ^ self.v_bits;
        if delta == 0 {
            self.w.write_bits(field << 1, width + 1);
            return;
        }
        // Five bits hold the leading count, so it is clamped; the extra zeros become significant.
        let lz = (delta.leading_zeros() as u8).min(31);
        let tz = delta.trailing_zeros() as u8;
        if self.leading != UNSET && lz >= self.leading && tz >= self.trailing {
            let sig = u32::from(64 - self.leading - self.trailing);
            self.w.write_bits((field << 2) | 0b10, width + 2);
            self.w.write_bits(delta >> self.trailing, sig);
            return;
        }
        self.leading = lz;
        self.trailing = tz;
        let sig = 64 - u32::from(lz) - u32::from(tz);
        // A 6-bit field cannot hold 64; 0 stands for it, as 0 significant bits never occur.
        let header = (0b11 << 11) | (u64::from(lz) << 6) | u64::from(sig & 63);
        self.w.write_bits((field << 13) | header, width + 13);
        self.w.write_bits(delta >> tz, sig);
    }
}

/// Whether `x` fits the `n`-bit dod bucket: `-(2^(n-1) - 1) <= x <= 2^(n-1)`.
#[inline]
fn bit_range(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

/// Decodes an XOR chunk payload (starting with its 2-byte big-endian sample count) and appends
/// its samples to `out`, returning how many were appended.
///
/// Never panics. On corrupt input it returns the error and leaves `out` as it was.
pub fn decode_xor_into(data: &[u8], out: &mut SampleBatch) -> Result<usize, ChunkError> {
    let slots = xor_slots(data)?;
    if slots == 0 {
        return Ok(0);
    }
    let (ts0, val0) = (out.ts.len(), out.val.len());
    out.ts.resize(ts0 + slots, 0);
    out.val.resize(val0 + slots, 0.0);
    match decode_xor_slots(data, &mut out.ts[ts0..], &mut out.val[val0..]) {
        Ok(n) => Ok(n),
        Err(e) => {
            out.ts.truncate(ts0);
            out.val.truncate(val0);
            Err(e)
        }
    }
}

/// Output slots a payload needs: its header's sample count, capped at what its bits could
/// encode, as the header is untrusted. A payload that decodes fills exactly this many.
pub(super) fn xor_slots(data: &[u8]) -> Result<usize, ChunkError> {
    let n = xor_num_samples(data)?;
    let max_in_payload = data.len() * 8 / MIN_SAMPLE_BITS + 2;
    Ok(n.min(max_in_payload))
}

/// Decodes `data` into `ts` and `val`, each [`xor_slots`] long, returning the sample count.
/// On error the slots hold unspecified samples.
pub(super) fn decode_xor_slots(
    data: &[u8],
    ts: &mut [i64],
    val: &mut [f64],
) -> Result<usize, ChunkError> {
    let mut d = Decoder::new(data)?;
    let n = d.num_samples;
    if n > 0 {
        d.decode_into(ts, val)?;
    }
    Ok(n)
}

/// Decodes samples 0 and 1 of a payload announcing at least 2 into `ts[..2]` and `val[..2]`,
/// returning the decoder state after them, for a decoder that takes over from there (the
/// AVX-512 lanes). The error is the one [`decode_xor_slots`] would return.
pub(super) fn decode_head(
    data: &[u8],
    ts: &mut [i64],
    val: &mut [f64],
) -> Result<RunState, ChunkError> {
    let mut d = Decoder::new(data)?;
    d.first()?;
    d.read = 1;
    if let (Some(t), Some(v)) = (ts.first_mut(), val.first_mut()) {
        *t = d.t;
        *v = f64::from_bits(d.v_bits);
    }
    d.second()?;
    d.read = 2;
    if let (Some(t), Some(v)) = (ts.get_mut(1), val.get_mut(1)) {
        *t = d.t;
        *v = f64::from_bits(d.v_bits);
    }
    Ok(d.state())
}

/// Continues decoding `data` from `st`, reached after `read` samples (2 or more), into `ts` and
/// `val`, which hold the slots from sample `read` on; the result is what
/// [`decode_xor_slots`] returns for the whole payload.
pub(super) fn decode_resume(
    data: &[u8],
    st: RunState,
    read: usize,
    ts: &mut [i64],
    val: &mut [f64],
) -> Result<usize, ChunkError> {
    let mut d = Decoder::new(data)?;
    d.r.set_bit_pos(st.pos);
    d.read = read;
    d.t = st.t;
    d.t_delta = st.t_delta;
    d.v_bits = st.v_bits;
    d.trailing = st.trailing as u8;
    d.sig = st.sig;
    d.decode_into(ts, val)?;
    Ok(d.num_samples)
}

/// Decodes `data` one sample at a time through the careful path only, as `(t, value bits)`:
/// the reference the fast loops are tested against.
#[cfg(test)]
pub(super) fn decode_careful(data: &[u8]) -> Result<Vec<(i64, u64)>, ChunkError> {
    let mut d = Decoder::new(data)?;
    let mut out = Vec::new();
    while let Some(s) = d.next_sample()? {
        out.push(s);
    }
    Ok(out)
}

/// Number of samples an XOR payload's header announces (not checked against its bytes).
pub fn xor_num_samples(data: &[u8]) -> Result<usize, ChunkError> {
    match data {
        [a, b, ..] => Ok(usize::from(u16::from_be_bytes([*a, *b]))),
        _ => Err(ChunkError::MissingHeader { len: data.len() }),
    }
}

/// Samples an [`XorIterator`] decodes ahead with the batch decoder's fast loop.
const ITER_BUF: usize = 32;

/// Sample iterator over an XOR payload, for callers that step or seek instead of decoding the
/// whole chunk; [`decode_xor_into`] is faster for whole chunks.
///
/// It decodes up to 32 samples ahead into a small buffer of its own (no allocation), which
/// makes stepping nearly as cheap as batch decoding.
#[derive(Debug, Clone)]
pub struct XorIterator<'a> {
    dec: Decoder<'a>,
    buf_t: [i64; ITER_BUF],
    buf_v: [f64; ITER_BUF],
    /// Next buffered sample to return.
    head: usize,
    /// Buffered samples.
    len: usize,
    cur: Option<(i64, f64)>,
    err: Option<ChunkError>,
}

impl<'a> XorIterator<'a> {
    /// An iterator before the first sample of `data`; fails only if the sample count is missing.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        Ok(XorIterator {
            dec: Decoder::new(data)?,
            buf_t: [0; ITER_BUF],
            buf_v: [0.0; ITER_BUF],
            head: 0,
            len: 0,
            cur: None,
            err: None,
        })
    }

    /// Number of samples the header announces.
    pub fn num_samples(&self) -> usize {
        self.dec.num_samples
    }

    /// The sample last returned by `next` or `seek`, if any.
    pub fn at(&self) -> Option<(i64, f64)> {
        self.cur
    }

    /// Decodes the next sample (`t` in ms); `Ok(None)` at the end. After an error every call
    /// returns that error again.
    #[allow(
        clippy::should_implement_trait,
        reason = "fallible, so it cannot be Iterator::next"
    )]
    #[inline]
    pub fn next(&mut self) -> Result<Option<(i64, f64)>, ChunkError> {
        if self.head < self.len {
            let s = (self.buf_t[self.head], self.buf_v[self.head]);
            self.head += 1;
            self.cur = Some(s);
            return Ok(self.cur);
        }
        self.refill()
    }

    /// Returns the next sample when the buffer is empty, refilling it where the fast loop can.
    fn refill(&mut self) -> Result<Option<(i64, f64)>, ChunkError> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        let left = self.dec.num_samples.saturating_sub(self.dec.read);
        if self.dec.read >= 2 && left > 0 {
            let n = left.min(ITER_BUF);
            let got = self
                .dec
                .fast_runs(&mut self.buf_t[..n], &mut self.buf_v[..n]);
            if got > 0 {
                self.head = 1;
                self.len = got;
                self.cur = Some((self.buf_t[0], self.buf_v[0]));
                return Ok(self.cur);
            }
        }
        // Samples 0 and 1, and whatever the fast loop leaves (it names no errors).
        match self.dec.next_sample() {
            Ok(s) => {
                self.cur = s.map(|(t, bits)| (t, f64::from_bits(bits)));
                Ok(self.cur)
            }
            Err(e) => {
                self.cur = None;
                self.err = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Moves to the first sample with timestamp `>= t` (ms) and returns it, `Ok(None)` if there
    /// is none. Like Prometheus it never moves back: if the current sample already qualifies it
    /// is returned again.
    pub fn seek(&mut self, t: i64) -> Result<Option<(i64, f64)>, ChunkError> {
        if let Some(cur) = self.cur
            && cur.0 >= t
        {
            return Ok(Some(cur));
        }
        while let Some(s) = self.next()? {
            if s.0 >= t {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }
}

/// Reader state of an XOR payload, shared by the batch decoder, the iterator and the appender's
/// resume.
#[derive(Debug, Clone)]
struct Decoder<'a> {
    r: BitReader<'a>,
    num_samples: usize,
    /// Samples decoded so far.
    read: usize,
    t: i64,
    t_delta: u64,
    v_bits: u64,
    /// Trailing zeros of the last `11` header (Prometheus's reader starts at 0).
    trailing: u8,
    /// `64 - leading - trailing` of the last `11` header: the width of a `10` value. A reader
    /// starts at 64, which only matters for streams no writer emits.
    sig: u32,
}

impl<'a> Decoder<'a> {
    fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        let num_samples = xor_num_samples(data)?;
        Ok(Decoder {
            r: BitReader::new(data, HEADER_BYTES * 8),
            num_samples,
            read: 0,
            t: 0,
            t_delta: 0,
            v_bits: 0,
            trailing: 0,
            sig: 64,
        })
    }

    /// Decodes the next sample as `(t, value bits)`; `Ok(None)` after the last one.
    #[inline]
    fn next_sample(&mut self) -> Result<Option<(i64, u64)>, ChunkError> {
        match self.read {
            r if r >= self.num_samples => return Ok(None),
            0 => self.first()?,
            1 => self.second()?,
            _ => self.step()?,
        }
        self.read += 1;
        Ok(Some((self.t, self.v_bits)))
    }

    /// Fills `ts` and `val` with the samples from the current one on, until the header's count.
    /// The slices may be shorter than the count only when the payload cannot hold that many.
    #[inline]
    fn decode_into(&mut self, ts: &mut [i64], val: &mut [f64]) -> Result<(), ChunkError> {
        let slots = ts.len().min(val.len());
        let mut i = 0;
        // Samples 0 and 1 have their own layouts; calling their decoders directly, not through
        // `next_sample`, keeps the per-chunk cost down.
        if self.read == 0 && i < slots && self.num_samples > 0 {
            self.first()?;
            self.read = 1;
            ts[i] = self.t;
            val[i] = f64::from_bits(self.v_bits);
            i += 1;
        }
        if self.read == 1 && i < slots && self.num_samples > 1 {
            self.second()?;
            self.read = 2;
            ts[i] = self.t;
            val[i] = f64::from_bits(self.v_bits);
            i += 1;
        }
        let end = slots.min(self.num_samples.saturating_sub(self.read) + i);
        if self.read >= 2 && i < end {
            i += self.fast_runs(&mut ts[i..end], &mut val[i..end]);
        }
        // The fast loop leaves anything it cannot vouch for (corrupt fields, reads past the
        // end) to the careful path, which decodes it again and names the error.
        while i < end {
            self.step()?;
            self.read += 1;
            ts[i] = self.t;
            val[i] = f64::from_bits(self.v_bits);
            i += 1;
        }
        if self.read < self.num_samples {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// Runs [`fast_run`] over the payload, then over a zero-padded copy of its last bytes, and
    /// commits the state reached; returns the samples written.
    #[inline(always)]
    fn fast_runs(&mut self, ts: &mut [i64], val: &mut [f64]) -> usize {
        let data = self.r.data();
        let mut st = self.state();
        // Within the payload the slack check alone keeps every sample inside it.
        let mut n = fast_run::<false>(data, data.len() * 8, &mut st, ts, val);
        let byte = st.pos >> 3;
        if let Some(rest) = data.get(byte..)
            && n < ts.len()
            && rest.len() + FAST_SLACK_BYTES <= TAIL_BUF_BYTES
        {
            // Padding with zeros reads past the end as the bit reader does; `fast_run` stops
            // before committing a sample that ends beyond the real bytes.
            let mut buf = [0u8; TAIL_BUF_BYTES];
            buf[..rest.len()].copy_from_slice(rest);
            let base = byte * 8;
            st.pos -= base;
            n += fast_run::<true>(&buf, rest.len() * 8, &mut st, &mut ts[n..], &mut val[n..]);
            st.pos += base;
        }
        self.r.set_bit_pos(st.pos);
        self.t = st.t;
        self.t_delta = st.t_delta;
        self.v_bits = st.v_bits;
        self.trailing = st.trailing as u8;
        self.sig = st.sig;
        self.read += n;
        n
    }

    /// The state the fast loops take, at the current position.
    fn state(&self) -> RunState {
        RunState {
            pos: self.r.bit_pos(),
            t: self.t,
            t_delta: self.t_delta,
            v_bits: self.v_bits,
            trailing: u32::from(self.trailing),
            sig: self.sig,
        }
    }

    fn truncated(&self) -> ChunkError {
        ChunkError::Truncated {
            sample: self.read,
            num_samples: self.num_samples,
            bit_offset: self.r.bit_pos() as u64,
            bit_len: self.r.bit_len() as u64,
        }
    }

    /// Reads a byte-aligned varint field (samples 0 and 1 start on byte boundaries).
    #[inline]
    fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        let byte = self.r.bit_pos().div_ceil(8);
        let rest = self.r.data().get(byte..).unwrap_or_default();
        match read_uvarint(rest) {
            Ok((v, n)) => {
                self.r.set_bit_pos((byte + n) * 8);
                Ok(v)
            }
            Err(UvarintError::Truncated) => {
                self.r.set_bit_pos((byte + rest.len() + 1) * 8);
                Err(self.truncated())
            }
            Err(UvarintError::Overflow) => Err(ChunkError::InvalidVarint {
                sample: self.read,
                byte_offset: byte as u64,
            }),
        }
    }

    /// Sample 0: varint timestamp, then the value's 64 raw bits.
    #[inline]
    fn first(&mut self) -> Result<(), ChunkError> {
        self.t = zigzag_decode(self.read_uvarint()?);
        self.v_bits = self.r.read_bits(64);
        if self.r.overrun() {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// Sample 1: uvarint timestamp delta, then an XOR value.
    #[inline]
    fn second(&mut self) -> Result<(), ChunkError> {
        self.t_delta = self.read_uvarint()?;
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read_value()?;
        if self.r.overrun() {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// Samples 2 and later: delta-of-delta timestamp, then an XOR value.
    #[inline(always)]
    fn step(&mut self) -> Result<(), ChunkError> {
        let w = self.r.peek();
        let dod = if w >> 63 == 0 {
            self.r.consume(1);
            0
        } else {
            let (dod, n) = dod_field::<false>(self.r.data(), self.r.bit_pos(), w);
            self.r.consume(n);
            dod
        };
        self.t_delta = self.t_delta.wrapping_add(dod as u64);
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read_value()?;
        if self.r.overrun() {
            return Err(self.truncated());
        }
        Ok(())
    }

    /// Reads one XOR-encoded value into `v_bits`.
    #[inline(always)]
    fn read_value(&mut self) -> Result<(), ChunkError> {
        let w = self.r.peek();
        if w >> 63 == 0 {
            self.r.consume(1);
            return Ok(());
        }
        if (w >> 62) & 1 == 0 {
            self.r.consume(2);
            let bits = self.r.read_bits(self.sig);
            self.v_bits ^= bits << self.trailing;
            return Ok(());
        }
        let leading = ((w >> 57) & 31) as u32;
        let sig = match ((w >> 51) & 63) as u32 {
            0 => 64,
            s => s,
        };
        if leading + sig > 64 {
            // A header cut off by the end of the payload reads as zeros: report the truncation.
            if self.r.bit_pos() + 13 > self.r.bit_len() {
                self.r.consume(13);
                return Err(self.truncated());
            }
            return Err(ChunkError::InvalidValueHeader {
                sample: self.read,
                bit_offset: self.r.bit_pos() as u64,
                leading: leading as u8,
                significant: sig as u8,
            });
        }
        let trailing = 64 - leading - sig;
        self.r.consume(13);
        let bits = self.r.read_bits(sig);
        self.v_bits ^= bits << trailing;
        self.trailing = trailing as u8;
        self.sig = sig;
        Ok(())
    }
}

/// Size of the zero-padded copy the last bytes of a payload are decoded from.
const TAIL_BUF_BYTES: usize = 64;
