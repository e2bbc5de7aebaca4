//! Series refs as the store keeps them in its caches and between resolving a selection and
//! streaming it: ascending refs delta-encoded and bitpacked in blocks of 256 (eight interleaved
//! lanes, laid out in `bitpack.rs`), the last partial block kept as plain `u32`s.
//! Series entries are 16-byte aligned and sorted, so the refs of a block's postings differ by
//! a few units: the 1.78M-series all-postings list takes well under a byte per ref instead of
//! four.
//!
//! Layout of the bytes (all little-endian): `u32 len`, `u32 blocks`, then per block
//! `u32 data offset`, `u32 previous ref`, `u8 has previous`, `u8 bits`; the packed data; the
//! tail refs.

use std::ops::Range;

use bytes::Bytes;

use super::bitpack::{self, BLOCK};
/// Bytes of a block's description.
const META: usize = 10;

/// Sorted, distinct series refs, bitpacked.
#[derive(Debug, Clone)]
pub struct PackedRefs {
    bytes: Bytes,
    len: usize,
    blocks: usize,
    data_at: usize,
    tail_at: usize,
}

/// Why packed bytes cannot be read (only bytes this module wrote are ever read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("packed postings are malformed: {0}")]
pub struct PackedError(&'static str);

impl Default for PackedRefs {
    fn default() -> Self {
        PackedBuilder::new().finish()
    }
}

impl PackedRefs {
    /// Reads packed refs written by [`PackedBuilder::finish`] (e.g. from a cache), checking
    /// every length so that decoding cannot go out of bounds.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, PackedError> {
        let u32_at = |at: usize| -> Result<u32, PackedError> {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(PackedError("truncated"))
        };
        let len = u32_at(0)? as usize;
        let blocks = u32_at(4)? as usize;
        if blocks > len / BLOCK {
            return Err(PackedError("more blocks than refs"));
        }
        let data_at = 8 + blocks * META;
        let mut end = data_at;
        for k in 0..blocks {
            let m = 8 + k * META;
            let off = u32_at(m)? as usize;
            let bits = *bytes.get(m + 9).ok_or(PackedError("truncated"))?;
            if bits > 32 || off != end - data_at {
                return Err(PackedError("bad block"));
            }
            end += bitpack::packed_size(bits);
        }
        let tail_at = end;
        if bytes.len() != tail_at + (len - blocks * BLOCK) * 4 {
            return Err(PackedError("length does not match"));
        }
        Ok(PackedRefs {
            bytes,
            len,
            blocks,
            data_at,
            tail_at,
        })
    }

    /// The encoded bytes (what a cache stores).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Number of refs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no refs.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends every ref to `out`.
    pub fn decode_all(&self, out: &mut Vec<u32>) {
        self.decode_range(0..self.len, out);
    }

    /// Appends the refs from `lo` to `hi` (inclusive) to `out`, decoding only the blocks that
    /// can hold such refs.
    pub fn decode_within(&self, lo: u32, hi: u32, out: &mut Vec<u32>) {
        if lo > hi {
            return;
        }
        // The first part that can hold `lo` or above.
        let parts = self.parts();
        let (mut k, mut z) = (0, parts);
        while k < z {
            let m = (k + z) / 2;
            if self.upper(m) < lo {
                k = m + 1;
            } else {
                z = m;
            }
        }
        let mut part = Vec::with_capacity(BLOCK);
        while k < parts {
            part.clear();
            self.decode_range(self.part_range(k), &mut part);
            let a = part.partition_point(|&r| r < lo);
            let z = part.partition_point(|&r| r <= hi).max(a);
            out.extend_from_slice(&part[a..z]);
            if self.upper(k) >= hi {
                return;
            }
            k += 1;
        }
    }

    /// The refs of `candidates` (sorted) that this list holds, into `out` (cleared first).
    /// Each candidate is looked for in the one part whose range can hold it, and a part is
    /// decoded only when some candidate falls in its range.
    pub fn retain(&self, candidates: &[u32], out: &mut Vec<u32>) {
        out.clear();
        let parts = self.parts();
        let mut part: Vec<u32> = Vec::with_capacity(BLOCK);
        let (mut k, mut held) = (0, usize::MAX);
        for &r in candidates {
            while k < parts && self.upper(k) < r {
                k += 1;
            }
            if k == parts {
                break;
            }
            if held != k {
                part.clear();
                self.decode_range(self.part_range(k), &mut part);
                held = k;
            }
            if part.binary_search(&r).is_ok() {
                out.push(r);
            }
        }
    }

    /// The parts of the list: its packed blocks, then the tail when there is one.
    fn parts(&self) -> usize {
        self.blocks + usize::from(self.len > self.blocks * BLOCK)
    }

    /// Positions of part `k`'s refs.
    fn part_range(&self, k: usize) -> Range<usize> {
        k * BLOCK..((k + 1) * BLOCK).min(self.len)
    }

    /// A ref that part `k`'s refs are not above and the later parts' refs are: the ref
    /// before the next block (its description's), or the tail's first ref less one.
    fn upper(&self, k: usize) -> u32 {
        if k + 1 >= self.parts() {
            u32::MAX
        } else if k + 1 < self.blocks {
            let m = &self.bytes[8 + (k + 1) * META + 4..8 + (k + 1) * META + 8];
            u32::from_le_bytes([m[0], m[1], m[2], m[3]])
        } else {
            let t = &self.bytes[self.tail_at..self.tail_at + 4];
            // The tail's refs are above every packed ref, so its first is not 0 (unless the
            // bytes are damaged, when any bound is as good).
            u32::from_le_bytes([t[0], t[1], t[2], t[3]]).saturating_sub(1)
        }
    }

    /// Appends the refs at positions `range` (clamped to the length) to `out`.
    pub fn decode_range(&self, range: Range<usize>, out: &mut Vec<u32>) {
        let end = range.end.min(self.len);
        let mut at = range.start.min(end);
        let mut block = [0u32; BLOCK];
        while at < end {
            let k = at / BLOCK;
            if k >= self.blocks {
                let b = &self.bytes[self.tail_at..];
                for i in at - self.blocks * BLOCK..end - self.blocks * BLOCK {
                    out.push(u32::from_le_bytes([
                        b[4 * i],
                        b[4 * i + 1],
                        b[4 * i + 2],
                        b[4 * i + 3],
                    ]));
                }
                return;
            }
            let m = &self.bytes[8 + k * META..8 + (k + 1) * META];
            let off = u32::from_le_bytes([m[0], m[1], m[2], m[3]]) as usize;
            let prev = u32::from_le_bytes([m[4], m[5], m[6], m[7]]);
            let initial = (m[8] != 0).then_some(prev);
            let bits = m[9];
            let size = bitpack::packed_size(bits);
            let data = &self.bytes[self.data_at + off..self.data_at + off + size];
            bitpack::unpack(initial, data, bits, &mut block);
            let from = at - k * BLOCK;
            let to = (end - k * BLOCK).min(BLOCK);
            out.extend_from_slice(&block[from..to]);
            at = k * BLOCK + to;
        }
    }
}

/// Builds [`PackedRefs`] from ascending refs.
#[derive(Debug)]
pub struct PackedBuilder {
    pending: Vec<u32>,
    meta: Vec<u8>,
    data: Vec<u8>,
    len: usize,
    prev: Option<u32>,
}

impl Default for PackedBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackedBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        PackedBuilder {
            pending: Vec::with_capacity(BLOCK),
            meta: Vec::new(),
            data: Vec::new(),
            len: 0,
            prev: None,
        }
    }

    /// The last ref pushed.
    pub fn last(&self) -> Option<u32> {
        self.pending.last().copied().or(self.prev)
    }

    /// Appends refs, each above the last one pushed (callers check the order).
    pub fn extend(&mut self, refs: &[u32]) {
        for &r in refs {
            debug_assert!(self.last().is_none_or(|l| l < r), "refs must ascend");
            self.pending.push(r);
            if self.pending.len() == BLOCK {
                self.flush_block();
            }
        }
    }

    fn flush_block(&mut self) {
        // Called only with a whole block pending; were it not, the refs would stay pending
        // and end in the plain tail.
        let Ok(block) = <&[u32; BLOCK]>::try_from(&self.pending[..]) else {
            return;
        };
        let off = self.data.len() as u32;
        let bits = bitpack::pack(self.prev, block, &mut self.data);
        self.meta.extend_from_slice(&off.to_le_bytes());
        self.meta
            .extend_from_slice(&self.prev.unwrap_or(0).to_le_bytes());
        self.meta.push(u8::from(self.prev.is_some()));
        self.meta.push(bits);
        self.prev = self.pending.last().copied();
        self.len += BLOCK;
        self.pending.clear();
    }

    /// The packed refs.
    pub fn finish(self) -> PackedRefs {
        let blocks = self.meta.len() / META;
        let len = self.len + self.pending.len();
        let mut out =
            Vec::with_capacity(8 + self.meta.len() + self.data.len() + 4 * self.pending.len());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&(blocks as u32).to_le_bytes());
        out.extend_from_slice(&self.meta);
        out.extend_from_slice(&self.data);
        for r in &self.pending {
            out.extend_from_slice(&r.to_le_bytes());
        }
        let data_at = 8 + self.meta.len();
        PackedRefs {
            tail_at: data_at + self.data.len(),
            bytes: Bytes::from(out),
            len,
            blocks,
            data_at,
        }
    }
}

/// Packs ascending refs.
pub fn pack(refs: &[u32]) -> PackedRefs {
    let mut b = PackedBuilder::new();
    b.extend(refs);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packed_refs_decode_to_what_was_packed(
            mut refs in proptest::collection::vec(0u32..2_000_000, 0..2000),
            a in 0usize..2100,
            b in 0usize..2100,
        ) {
            refs.sort_unstable();
            refs.dedup();
            let p = pack(&refs);
            let p = PackedRefs::from_bytes(p.bytes().clone()).unwrap();
            prop_assert_eq!(p.len(), refs.len());
            let mut all = Vec::new();
            p.decode_all(&mut all);
            prop_assert_eq!(&all, &refs);
            let (lo, hi) = (a.min(b), a.max(b));
            let mut part = Vec::new();
            p.decode_range(lo..hi, &mut part);
            let lo = lo.min(refs.len());
            let hi = hi.min(refs.len());
            prop_assert_eq!(&part[..], &refs[lo..hi]);
        }

        #[test]
        fn packed_refs_within_bounds_are_the_refs_in_them(
            mut refs in proptest::collection::vec(0u32..200_000, 0..3000),
            a in 0u32..210_000,
            b in 0u32..210_000,
        ) {
            refs.sort_unstable();
            refs.dedup();
            let p = pack(&refs);
            let mut got = Vec::new();
            p.decode_within(a, b, &mut got);
            let want: Vec<u32> = refs.iter().copied().filter(|r| (a..=b).contains(r)).collect();
            prop_assert_eq!(got, want);
            let mut candidates: std::collections::BTreeSet<u32> =
                (0..600u32).map(|i| i * 353 % 210_000).collect();
            candidates.extend(refs.iter().copied().step_by(7));
            let candidates: Vec<u32> = candidates.into_iter().collect();
            let mut kept = Vec::new();
            p.retain(&candidates, &mut kept);
            let want: Vec<u32> = candidates.iter().copied().filter(|c| refs.binary_search(c).is_ok()).collect();
            prop_assert_eq!(kept, want);
            for r in refs.iter().copied().step_by(97) {
                let mut one = Vec::new();
                p.decode_within(r, r, &mut one);
                prop_assert_eq!(one, vec![r]);
            }
        }
    }

    #[test]
    fn dense_refs_take_little_space_and_bad_bytes_are_refused() {
        let refs: Vec<u32> = (0..100_000u32).map(|i| i * 5 + (i % 3)).collect();
        let p = pack(&refs);
        assert!(p.bytes().len() < refs.len(), "{} bytes", p.bytes().len());
        let b = p.bytes().clone();
        assert!(PackedRefs::from_bytes(b.slice(..b.len() - 1)).is_err());
        assert!(PackedRefs::from_bytes(Bytes::from_static(&[9, 9, 9, 9, 9, 9, 9, 9])).is_err());
        assert!(PackedRefs::from_bytes(Bytes::new()).is_err());
        assert!(PackedRefs::default().is_empty());
    }
}
