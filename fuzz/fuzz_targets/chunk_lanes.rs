//! Many valid XOR chunks built from the input, some then damaged, decoded in one call: the
//! many-chunk decoder (on AVX-512 machines, one chunk per vector lane) must give every chunk's
//! samples and error exactly as decoding it alone does. Arbitrary bytes rarely make a chunk that
//! decodes far, so this target encodes its chunks first: the lanes run long, every dod bucket
//! and value form occurs, and damage lands anywhere in them.
//!
//! Sets of fewer than 24 chunks are repeated up to 24 or more, so every input runs the lanes
//! (the call uses them from 16 chunks on) with every lane busy at first.
//!
//! Input: a sequence of chunk descriptions, each a length byte, then per sample a control
//! byte choosing the dod and value shape and up to 8 bytes feeding them; an optional damage
//! byte flips bits or cuts the chunk.

#![no_main]

use gauntlet_engine::chunk::{
    ManyDecodeError, SampleBatch, decode_xor_into, decode_xor_many, decode_xor_many_flat,
    encode_xor,
};
use libfuzzer_sys::fuzz_target;

/// Reads bytes from the input, yielding zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u64(&mut self, n: usize) -> u64 {
        (0..n).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }
}

/// One chunk from the input: up to 255 samples whose deltas and values the input shapes.
fn chunk(b: &mut Bytes<'_>) -> Vec<u8> {
    let n = usize::from(b.u8());
    let (mut t, mut step, mut v) = (b.u64(6) as i64, 15_000i64, b.u64(8));
    let (mut ts, mut vals) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let ctl = b.u8();
        // Delta of delta: mostly none, else from each bucket, or any 64-bit value.
        step = step.wrapping_add(match ctl & 7 {
            0..=3 => 0,
            4 => i64::from(b.u8() as i8),
            5 => i64::from(b.u64(2) as i16) << 2,
            6 => (b.u64(3) as i64) - (1 << 23),
            _ => b.u64(8) as i64,
        });
        t = t.wrapping_add(step);
        // Value: unchanged, a few low bits changed, a new window, or any bits (NaNs included).
        v = match (ctl >> 3) & 7 {
            0..=2 => v,
            3 | 4 => v ^ (b.u64(1) << (ctl >> 6)),
            5 => v ^ (b.u64(3) << 20),
            6 => 0x7ff0_0000_0000_0002,
            _ => b.u64(8),
        };
        ts.push(t);
        vals.push(f64::from_bits(v));
    }
    let mut data = encode_xor(&ts, &vals);
    match b.u8() {
        0..=223 => {}
        d @ 224..=239 => {
            let at = usize::from(b.u8()) % data.len().max(1);
            if let Some(x) = data.get_mut(at) {
                *x ^= d;
            }
        }
        _ => {
            let cut = usize::from(b.u8()) % (data.len() + 1);
            data.truncate(cut);
        }
    }
    data
}

fn bits(batch: &SampleBatch) -> Vec<(i64, u64)> {
    batch.iter().map(|(t, v)| (t, v.to_bits())).collect()
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let mut chunks = Vec::new();
    while !b.0.is_empty() && chunks.len() < 64 {
        chunks.push(chunk(&mut b));
    }
    // The many-chunk call uses the lanes from 16 chunks on: repeat short sets past that.
    let mut slices: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    if !slices.is_empty() {
        let base = slices.clone();
        while slices.len() < 24 {
            slices.extend_from_slice(&base);
        }
    }

    let mut want_outs = vec![SampleBatch::new(); slices.len()];
    let mut want: Result<usize, ManyDecodeError> = Ok(0);
    for (k, (c, out)) in slices.iter().zip(&mut want_outs).enumerate() {
        match decode_xor_into(c, out) {
            Ok(n) => {
                if let Ok(total) = &mut want {
                    *total += n;
                }
            }
            Err(source) => {
                if want.is_ok() {
                    want = Err(ManyDecodeError::Chunk { chunk: k, source });
                }
            }
        }
    }

    let mut outs = vec![SampleBatch::new(); slices.len()];
    assert_eq!(decode_xor_many(&slices, &mut outs), want);
    for (k, (o, w)) in outs.iter().zip(&want_outs).enumerate() {
        assert_eq!(bits(o), bits(w), "chunk {k}");
    }

    let mut flat = SampleBatch::new();
    let mut ends = Vec::new();
    assert_eq!(decode_xor_many_flat(&slices, &mut flat, &mut ends), want);
    let mut start = 0;
    for (k, (&end, w)) in ends.iter().zip(&want_outs).enumerate() {
        let got: Vec<(i64, u64)> = flat.ts[start..end]
            .iter()
            .zip(&flat.val[start..end])
            .map(|(&t, v)| (t, v.to_bits()))
            .collect();
        assert_eq!(got, bits(w), "chunk {k} flat");
        start = end;
    }
});
