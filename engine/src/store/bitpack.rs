//! Blocks of 256 ascending refs, delta-encoded and bitpacked in eight interleaved lanes.
//!
//! A block's refs become deltas `d[i] = ref[i] - ref[i - 1] - 1` (wrapping; before the first
//! ref comes the previous block's last, or `u32::MAX` when there is none, so a first ref of 0
//! packs as 0). Every delta is stored in `bits` bits, the fewest that hold the largest. The 256
//! deltas are 32 rows of 8: delta `i` sits in lane `i % 8` of row `i / 8`. Each lane packs its
//! 32 deltas one after another, lowest bits first, into `bits` words of 32 bits; word `w` of
//! lane `l` is stored little-endian at byte `32 * w + 4 * l`. A block takes `32 * bits` bytes.
//!
//! The interleaving lets one row of 8 lanes be unpacked with the same shift and mask for every
//! lane, which the compiler turns into vector instructions; one unpacking function per width
//! (a const parameter) makes every shift a constant.

/// Refs per block.
pub const BLOCK: usize = 256;
/// Lanes a row is packed in.
const LANES: usize = 8;

/// Unpacks one block's deltas from its words.
type Unpacker = fn(&[u32; BLOCK], &mut [u32; BLOCK]);

/// Bytes of a block packed with `bits` bits per delta.
pub const fn packed_size(bits: u8) -> usize {
    bits as usize * BLOCK / 8
}

/// The block's deltas, `initial` being the ref before it.
fn deltas(initial: Option<u32>, refs: &[u32; BLOCK]) -> [u32; BLOCK] {
    let mut prev = initial.unwrap_or(u32::MAX);
    let mut out = [0u32; BLOCK];
    for (d, &r) in out.iter_mut().zip(refs) {
        *d = r.wrapping_sub(prev).wrapping_sub(1);
        prev = r;
    }
    out
}

/// Bits per delta that hold every one of `deltas`.
fn width(deltas: &[u32; BLOCK]) -> u8 {
    let any = deltas.iter().fold(0, |a, &d| a | d);
    (32 - any.leading_zeros()) as u8
}

/// Packs `refs` (ascending, each above `initial`) in the fewest bits per delta, appending
/// [`packed_size`]`(bits)` bytes to `out`; returns `bits`.
pub fn pack(initial: Option<u32>, refs: &[u32; BLOCK], out: &mut Vec<u8>) -> u8 {
    let d = deltas(initial, refs);
    let bits = width(&d);
    pack_deltas(&d, bits, out);
    bits
}

/// Appends `deltas` packed in `bits` bits each (at least [`width`]) to `out`.
fn pack_deltas(deltas: &[u32; BLOCK], bits: u8, out: &mut Vec<u8>) {
    let bits = usize::from(bits);
    let mut words = [[0u32; LANES]; 32];
    if bits > 0 {
        for (row, d) in deltas.chunks_exact(LANES).enumerate() {
            let at = row * bits;
            let (w, shift) = (at / 32, at % 32);
            for (lane, &v) in d.iter().enumerate() {
                words[w][lane] |= v << shift;
                if shift + bits > 32 {
                    words[w + 1][lane] |= v >> (32 - shift);
                }
            }
        }
    }
    out.extend(words[..bits].iter().flatten().flat_map(|w| w.to_le_bytes()));
}

/// Unpacks a block written by [`pack`] with `bits` bits per delta: `data` holds
/// [`packed_size`]`(bits)` bytes, `initial` is the ref before the block.
pub fn unpack(initial: Option<u32>, data: &[u8], bits: u8, out: &mut [u32; BLOCK]) {
    /// One unpacker per width, so that its shifts are constants.
    const UNPACKERS: [Unpacker; 33] = [
        unpack_deltas::<0>,
        unpack_deltas::<1>,
        unpack_deltas::<2>,
        unpack_deltas::<3>,
        unpack_deltas::<4>,
        unpack_deltas::<5>,
        unpack_deltas::<6>,
        unpack_deltas::<7>,
        unpack_deltas::<8>,
        unpack_deltas::<9>,
        unpack_deltas::<10>,
        unpack_deltas::<11>,
        unpack_deltas::<12>,
        unpack_deltas::<13>,
        unpack_deltas::<14>,
        unpack_deltas::<15>,
        unpack_deltas::<16>,
        unpack_deltas::<17>,
        unpack_deltas::<18>,
        unpack_deltas::<19>,
        unpack_deltas::<20>,
        unpack_deltas::<21>,
        unpack_deltas::<22>,
        unpack_deltas::<23>,
        unpack_deltas::<24>,
        unpack_deltas::<25>,
        unpack_deltas::<26>,
        unpack_deltas::<27>,
        unpack_deltas::<28>,
        unpack_deltas::<29>,
        unpack_deltas::<30>,
        unpack_deltas::<31>,
        unpack_deltas::<32>,
    ];
    let bits = bits.min(32);
    let mut words = [0u32; BLOCK];
    let data = &data[..packed_size(bits)];
    for (w, b) in words.iter_mut().zip(data.chunks_exact(4)) {
        *w = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    UNPACKERS[usize::from(bits)](&words, out);
    let mut prev = initial.unwrap_or(u32::MAX);
    for v in out.iter_mut() {
        prev = prev.wrapping_add(*v).wrapping_add(1);
        *v = prev;
    }
}

/// The deltas of a block packed with `B` bits each, from its words (lane-interleaved, as
/// [`pack`] lays them out; only the first `8 * B` are read).
fn unpack_deltas<const B: usize>(words: &[u32; BLOCK], out: &mut [u32; BLOCK]) {
    if B == 0 {
        out.fill(0);
        return;
    }
    let mask = if B == 32 { u32::MAX } else { (1u32 << B) - 1 };
    for (row, o) in out.chunks_exact_mut(LANES).enumerate() {
        let at = row * B;
        let (w, shift) = (at / 32, at % 32);
        let lo = &words[w * LANES..][..LANES];
        if shift + B > 32 {
            let hi = &words[(w + 1) * LANES..][..LANES];
            for ((o, &l), &h) in o.iter_mut().zip(lo).zip(hi) {
                *o = ((l >> shift) | (h << (32 - shift))) & mask;
            }
        } else {
            for (o, &l) in o.iter_mut().zip(lo) {
                *o = (l >> shift) & mask;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitpacking::{BitPacker, BitPacker8x};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// The bytes are those of `bitpacking`'s 8-lane packer (what earlier builds wrote into
        /// the postings caches), and they unpack to the refs.
        #[test]
        fn blocks_match_the_eight_lane_layout_and_round_trip(
            gap_bits in 0u32..=23,
            seeds in proptest::collection::vec(any::<u32>(), BLOCK),
            start in 0u32..1 << 31,
            has_initial in any::<bool>(),
        ) {
            let mut refs = [0u32; BLOCK];
            let mut r = start;
            for (o, s) in refs.iter_mut().zip(&seeds) {
                *o = r;
                r += (s & ((1u32 << gap_bits) - 1)) + 1;
            }
            let initial = (has_initial && start > 0).then_some(start / 2);
            let mut ours = Vec::new();
            let bits = pack(initial, &refs, &mut ours);
            let packer = BitPacker8x::new();
            prop_assert_eq!(bits, packer.num_bits_strictly_sorted(initial, &refs));
            prop_assert_eq!(ours.len(), packed_size(bits));
            let mut theirs = vec![0u8; BitPacker8x::compressed_block_size(bits)];
            packer.compress_strictly_sorted(initial, &refs, &mut theirs, bits);
            prop_assert_eq!(&ours, &theirs);
            let mut back = [0u32; BLOCK];
            unpack(initial, &ours, bits, &mut back);
            prop_assert_eq!(&back[..], &refs[..]);
            // A wider width than needed reads back too.
            round_trip(bits + 1, initial, &refs);
        }
    }

    #[test]
    fn every_width_round_trips() {
        for bits in 0..=32u8 {
            // The first delta (from no ref before) is the first ref itself, the others 0.
            let max = if bits == 32 {
                u32::MAX
            } else {
                (1u32 << bits) - 1
            };
            let mut refs = [0u32; BLOCK];
            refs[0] = max.min(u32::MAX - BLOCK as u32);
            for i in 1..BLOCK {
                refs[i] = refs[i - 1] + 1;
            }
            let mut packed = Vec::new();
            assert_eq!(pack(None, &refs, &mut packed), bits);
            round_trip(bits, None, &refs);
        }
    }

    /// Packs with `bits` per delta and checks that the refs come back.
    fn round_trip(bits: u8, initial: Option<u32>, refs: &[u32; BLOCK]) {
        let mut buf = Vec::new();
        pack_deltas(&deltas(initial, refs), bits, &mut buf);
        assert_eq!(buf.len(), packed_size(bits));
        let mut back = [0u32; BLOCK];
        unpack(initial, &buf, bits, &mut back);
        assert_eq!(&back[..], &refs[..], "width {bits}");
    }
}
