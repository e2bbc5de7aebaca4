//! A snappy block compressor that leaves chosen byte ranges as literals, so the load generator
//! can rewrite those bytes (sample timestamps) inside an already compressed request. Its output
//! is ordinary snappy block format: any decoder (Prometheus's, `snap`) reads it.
//!
//! Stock compressors may copy a timestamp from an earlier one, and a later copy may point at
//! it; either would make an in-place rewrite corrupt other bytes. Here no copy starts, ends or
//! reads inside a protected range, and every protected range lands whole inside one literal.

use gauntlet_engine::encoding::put_uvarint;

/// Hash table size (entries) of the match finder; 16 K entries like snappy's.
const TABLE_BITS: u32 = 14;
/// Longest backward distance a match may use; 2-byte-offset copies keep the output simple.
const MAX_OFFSET: usize = 65_535;
const MIN_MATCH: usize = 4;

/// Compresses `input` into snappy block format. `protected` holds sorted, disjoint
/// `(start, len)` byte ranges of `input` that must stay literal; returns the compressed bytes
/// and, for each protected range, the offset of its first byte in the output.
///
/// Panics if `input` is longer than `u32::MAX` bytes or `protected` is unsorted or out of
/// bounds (both are the caller's invariants, not data errors).
pub fn compress_with_literals(input: &[u8], protected: &[(u32, u32)]) -> (Vec<u8>, Vec<u32>) {
    assert!(
        u32::try_from(input.len()).is_ok(),
        "snappy input over 4 GiB"
    );
    let mut mask = vec![false; input.len()];
    let mut prev_end = 0usize;
    for &(s, l) in protected {
        let (s, e) = (s as usize, s as usize + l as usize);
        assert!(
            s >= prev_end && e <= input.len(),
            "protected ranges unsorted"
        );
        mask[s..e].fill(true);
        prev_end = e;
    }
    let mut out = Vec::with_capacity(input.len() / 2 + 16);
    put_uvarint(&mut out, input.len() as u64);
    let mut positions = Vec::with_capacity(protected.len());
    let mut next_protected = 0usize;
    let mut table = vec![u32::MAX; 1 << TABLE_BITS];
    let mut lit_start = 0usize;
    let mut p = 0usize;
    let n = input.len();
    // Records where protected ranges inside `input[from..to]` land once that literal is out.
    let mut emit_literal = |out: &mut Vec<u8>, from: usize, to: usize, next: &mut usize| {
        if from == to {
            return;
        }
        literal_header(out, to - from);
        let base = out.len();
        out.extend_from_slice(&input[from..to]);
        while *next < protected.len() && (protected[*next].0 as usize) < to {
            positions.push((base + protected[*next].0 as usize - from) as u32);
            *next += 1;
        }
    };
    while p + MIN_MATCH <= n {
        if mask[p..p + MIN_MATCH].iter().any(|&m| m) {
            p += 1;
            continue;
        }
        let word = u32::from_le_bytes([input[p], input[p + 1], input[p + 2], input[p + 3]]);
        let h = (word.wrapping_mul(0x1e35_a7bd) >> (32 - TABLE_BITS)) as usize;
        let cand = table[h] as usize;
        table[h] = p as u32;
        if cand == u32::MAX as usize
            || p - cand > MAX_OFFSET
            || input[cand..cand + MIN_MATCH] != input[p..p + MIN_MATCH]
        {
            p += 1;
            continue;
        }
        // Candidates only enter the table when their 4 bytes are unprotected, so only the
        // extension needs the mask.
        let mut len = MIN_MATCH;
        while p + len < n
            && !mask[p + len]
            && !mask[cand + len]
            && input[cand + len] == input[p + len]
        {
            len += 1;
        }
        emit_literal(&mut out, lit_start, p, &mut next_protected);
        copy(&mut out, p - cand, len);
        p += len;
        lit_start = p;
    }
    emit_literal(&mut out, lit_start, n, &mut next_protected);
    debug_assert_eq!(positions.len(), protected.len());
    (out, positions)
}

fn literal_header(out: &mut Vec<u8>, len: usize) {
    let m = len - 1;
    if m < 60 {
        out.push((m as u8) << 2);
    } else {
        let bytes = (usize::BITS - m.leading_zeros()).div_ceil(8) as usize;
        out.push(((59 + bytes) as u8) << 2);
        out.extend_from_slice(&m.to_le_bytes()[..bytes]);
    }
}

fn copy(out: &mut Vec<u8>, offset: usize, mut len: usize) {
    // Long matches go out as 64-byte copies; the tail is kept at 4 bytes or more so it can use
    // the short form when the offset allows.
    while len > 0 {
        let l = if len > 64 {
            if len - 64 < 4 { 60 } else { 64 }
        } else {
            len
        };
        if (4..=11).contains(&l) && offset < 2048 {
            out.push(0b01 | (((l - 4) as u8) << 2) | (((offset >> 8) as u8) << 5));
            out.push(offset as u8);
        } else {
            out.push(0b10 | (((l - 1) as u8) << 2));
            out.extend_from_slice(&(offset as u16).to_le_bytes());
        }
        len -= l;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(input: &[u8], protected: &[(u32, u32)]) {
        let (c, pos) = compress_with_literals(input, protected);
        let d = snap::raw::Decoder::new().decompress_vec(&c).unwrap();
        assert_eq!(d, input);
        for (&(s, l), &o) in protected.iter().zip(&pos) {
            assert_eq!(
                &c[o as usize..(o + l) as usize],
                &input[s as usize..(s + l) as usize]
            );
        }
        // Rewriting every protected range in the compressed bytes rewrites exactly those bytes.
        let mut c2 = c.clone();
        let mut want = input.to_vec();
        for (&(s, l), &o) in protected.iter().zip(&pos) {
            for i in 0..l as usize {
                c2[o as usize + i] ^= 0x5a;
                want[s as usize + i] ^= 0x5a;
            }
        }
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&c2).unwrap(), want);
    }

    #[test]
    fn repetitive_input_with_protected_ranges() {
        let mut input = Vec::new();
        let mut prot = Vec::new();
        for i in 0..500u32 {
            input.extend_from_slice(b"\x0a\x08__name__\x12\x0bhttp_requests\x0a\x06handler");
            prot.push((input.len() as u32, 6));
            input.extend_from_slice(&[1, 2, 3, 4, 5, (i % 7) as u8]);
            input.extend_from_slice(&vec![b'x'; (i % 90) as usize]);
        }
        roundtrip(&input, &prot);
        let (c, _) = compress_with_literals(&input, &prot);
        assert!(c.len() < input.len() / 2, "{} of {}", c.len(), input.len());
    }

    #[test]
    fn edges() {
        roundtrip(b"", &[]);
        roundtrip(b"abc", &[(0, 3)]);
        roundtrip(&[7u8; 300], &[(0, 1), (150, 6), (299, 1)]);
        roundtrip(&[7u8; 100_000], &[(70_000, 6)]);
    }
}
