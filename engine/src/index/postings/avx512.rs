//! AVX-512 kernels: blocks of 16 entries.
//!
//! The same plan as the AVX2 kernels, with 16 lanes, match masks held in mask registers and the
//! selected lanes compacted by `vpcompressd` instead of a permutation table.
//!
//! Every function here needs a CPU with AVX-512 F and VL and POPCNT: check [`available`] first.

use core::arch::x86_64::*;

use super::avx2::{finish_subtract, give_back};
use super::scalar;

/// Size ratio (larger / smaller) from which these kernels gallop instead of merging. The 16-lane
/// merge costs about 0.5 ns per entry; a galloping probe costs a few ns while the longer list is
/// in cache (galloping wins from a ratio near 16) but tens of ns once it is not (from near 128).
/// 64 splits the difference; the 1:100 benchmark pairs gallop.
pub const GALLOP_RATIO: usize = 64;

const LANES: usize = 16;

/// Whether this CPU runs the kernels of this module.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("popcnt")
}

/// AVX-512 twin of [`scalar::intersect`].
///
/// # Safety
/// The CPU must support AVX-512 F and VL and POPCNT ([`available`] returned true).
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
pub unsafe fn intersect(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if small.is_empty() {
        return;
    }
    if large.len() / small.len() >= GALLOP_RATIO {
        return scalar::intersect_gallop_append(small, large, out);
    }
    let (i, j) = intersect_blocks(a, b, out);
    scalar::intersect_append(&a[i..], &b[j..], out);
}

/// AVX-512 twin of [`scalar::union`].
///
/// # Safety
/// The CPU must support AVX-512 F and VL and POPCNT ([`available`] returned true).
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
pub unsafe fn union(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    union_into(a, b, out);
}

/// Appends `a ∪ b` to `out`: the twin of [`scalar::union_into`].
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
fn union_into(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if !small.is_empty() && large.len() / small.len() >= GALLOP_RATIO {
        return scalar::union_gallop_append(small, large, out);
    }
    let (i, j) = union_blocks(a, b, out);
    scalar::union_append(&a[i..], &b[j..], out);
}

/// AVX-512 twin of [`scalar::union_many`]: the same bitmap for dense values, else merge rounds
/// with this module's two-way union.
///
/// # Safety
/// The CPU must support AVX-512 F and VL and POPCNT ([`available`] returned true).
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
pub unsafe fn union_many(lists: &[&[u32]], out: &mut Vec<u32>) {
    // The closure inherits this function's target features, so it may call `union_into`.
    scalar::union_many_with(
        lists,
        out,
        |a, b, out| union_into(a, b, out),
        |bits, lo, out| extract_bits(bits, lo, out),
    )
}

/// AVX-512 twin of [`scalar::subtract`].
///
/// # Safety
/// The CPU must support AVX-512 F and VL and POPCNT ([`available`] returned true).
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
pub unsafe fn subtract(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    if a.is_empty() {
        return;
    }
    if b.is_empty() {
        return out.extend_from_slice(a);
    }
    if b.len() / a.len() >= GALLOP_RATIO {
        return scalar::subtract_gallop_b_append(a, b, out);
    }
    if a.len() / b.len() >= GALLOP_RATIO {
        return scalar::subtract_gallop_a_append(a, b, out);
    }
    subtract_blocks(a, b, out);
}

/// Mask of the lanes of `va` equal to any of the 16 entries at `pb`.
///
/// # Safety
/// `pb` must be valid for reading 16 `u32`s.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn match_lanes(va: __m512i, pb: *const u32) -> u32 {
    // SAFETY: the caller guarantees pb[0..16] is readable.
    let eq =
        |t: usize| unsafe { _mm512_cmpeq_epi32_mask(va, _mm512_set1_epi32(*pb.add(t) as i32)) };
    let m0 = (eq(0) | eq(1)) | (eq(2) | eq(3));
    let m1 = (eq(4) | eq(5)) | (eq(6) | eq(7));
    let m2 = (eq(8) | eq(9)) | (eq(10) | eq(11));
    let m3 = (eq(12) | eq(13)) | (eq(14) | eq(15));
    u32::from((m0 | m1) | (m2 | m3))
}

/// Appends the entries common to the whole blocks of `a` and `b` and returns how far each list
/// was consumed; everything before those positions has been dealt with.
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
fn intersect_blocks(a: &[u32], b: &[u32], out: &mut Vec<u32>) -> (usize, usize) {
    let (mut i, mut j) = (0, 0);
    if a.len() < LANES || b.len() < LANES {
        return (i, j);
    }
    // At most min(len) matches, plus one block of lanes a store may write past them.
    out.reserve(a.len().min(b.len()) + LANES);
    let start = out.len();
    let mut written = 0;
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u32>();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (last_a, last_b) = (a.len() - LANES, b.len() - LANES);
    // Sorted duplicate-free lists never reach this limit; it keeps malformed ones from writing
    // past the reserve.
    let limit = a.len().min(b.len());
    while i <= last_a && j <= last_b && written <= limit {
        // SAFETY: i <= a.len() - LANES and j <= b.len() - LANES, so both blocks are in bounds;
        // `written` <= min(len), so the store of LANES lanes stays within the reserve.
        unsafe {
            let va = _mm512_loadu_si512(pa.add(i).cast());
            let (max_a, max_b) = (*pa.add(i + LANES - 1), *pb.add(j + LANES - 1));
            let mask = match_lanes(va, pb.add(j));
            let packed = _mm512_maskz_compress_epi32(mask as __mmask16, va);
            _mm512_storeu_si512(dst.add(written).cast(), packed);
            written += mask.count_ones() as usize;
            i += usize::from(max_a <= max_b) * LANES;
            j += usize::from(max_b <= max_a) * LANES;
        }
    }
    // SAFETY: the first `written` lanes past `start` were initialised by the stores above.
    unsafe { out.set_len(start + written) };
    (i, j)
}

/// Writes `a \ b` to `out`: blocks of `a` accumulate which lanes matched any block of `b` and are
/// written, less those lanes, when the merge moves past them.
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
fn subtract_blocks(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let (mut i, mut j) = (0, 0);
    let mut matched = 0u32;
    if a.len() >= LANES && b.len() >= LANES {
        out.reserve(a.len() + LANES);
        let start = out.len();
        let mut written = 0;
        let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u32>();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (last_a, last_b) = (a.len() - LANES, b.len() - LANES);
        while i <= last_a && j <= last_b {
            // SAFETY: both blocks are in bounds as in `intersect_blocks`; `written` <= i, so the
            // 16-lane store stays within the a.len() + 16 entries reserved.
            unsafe {
                let va = _mm512_loadu_si512(pa.add(i).cast());
                let (max_a, max_b) = (*pa.add(i + LANES - 1), *pb.add(j + LANES - 1));
                matched |= match_lanes(va, pb.add(j));
                let keep = !matched & 0xffff;
                let packed = _mm512_maskz_compress_epi32(keep as __mmask16, va);
                _mm512_storeu_si512(dst.add(written).cast(), packed);
                // The block of `a` is final only once the merge moves past it.
                let done = max_a <= max_b;
                written += usize::from(done) * keep.count_ones() as usize;
                matched *= u32::from(!done);
                i += usize::from(done) * LANES;
                j += usize::from(max_b <= max_a) * LANES;
            }
        }
        // SAFETY: the first `written` lanes past `start` were initialised by the stores above.
        unsafe { out.set_len(start + written) };
    }
    finish_subtract::<LANES>(a, b, i, j, matched, out);
}

/// One compare-exchange stage of a bitonic sort: lanes in `upper` take the maximum of themselves
/// and their partner, the others the minimum.
#[inline]
#[target_feature(enable = "avx512f")]
fn stage(v: __m512i, partner: __m512i, upper: __mmask16) -> __m512i {
    _mm512_mask_max_epu32(_mm512_min_epu32(v, partner), upper, v, partner)
}

/// Sorts a bitonic sequence of 16 ascending.
#[inline]
#[target_feature(enable = "avx512f")]
fn bitonic_sort(v: __m512i) -> __m512i {
    let v = stage(v, _mm512_shuffle_i32x4::<0b01_00_11_10>(v, v), 0xff00);
    let v = stage(v, _mm512_shuffle_i32x4::<0b10_11_00_01>(v, v), 0xf0f0);
    let v = stage(v, _mm512_shuffle_epi32::<0b01_00_11_10>(v), 0xcccc);
    stage(v, _mm512_shuffle_epi32::<0b10_11_00_01>(v), 0xaaaa)
}

/// Merges two ascending blocks into the 16 smallest and the 16 largest entries, both ascending.
#[inline]
#[target_feature(enable = "avx512f")]
fn merge(x: __m512i, y: __m512i) -> (__m512i, __m512i) {
    let reverse = _mm512_setr_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    let reversed = _mm512_permutexvar_epi32(reverse, y);
    let low = _mm512_min_epu32(x, reversed);
    let high = _mm512_max_epu32(x, reversed);
    (bitonic_sort(low), bitonic_sort(high))
}

/// Appends the union of whole blocks of `a` and `b` and returns how far each list was consumed:
/// every entry before those positions is in `out`, every entry after them is greater than the
/// last entry of `out`.
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
fn union_blocks(a: &[u32], b: &[u32], out: &mut Vec<u32>) -> (usize, usize) {
    if a.len() < LANES || b.len() < LANES {
        return (0, 0);
    }
    out.reserve(a.len() + b.len() + LANES);
    let start = out.len();
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u32>();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    // Lane 15 of `prev` holds the entry before the block being written; the first block has
    // none, so it gets a value that differs from the first entry.
    let mut prev = _mm512_set1_epi32((a[0].min(b[0]) ^ 1) as i32);
    // SAFETY: both lists hold at least one block.
    let (va, vb) = unsafe { (_mm512_loadu_si512(pa.cast()), _mm512_loadu_si512(pb.cast())) };
    let (mut i, mut j) = (LANES, LANES);
    let (mut low, mut carry) = merge(va, vb);
    let mut written = 0;
    loop {
        let previous = _mm512_alignr_epi32::<15>(low, prev);
        let keep = _mm512_cmpneq_epi32_mask(low, previous);
        let packed = _mm512_maskz_compress_epi32(keep, low);
        // SAFETY: `written` never exceeds the entries consumed (i + j) less the 16 held in
        // `carry`, so the 16-lane store ends within the a.len() + b.len() + 16 reserved.
        unsafe { _mm512_storeu_si512(dst.add(written).cast(), packed) };
        written += keep.count_ones() as usize;
        prev = low;
        if i + LANES > a.len() || j + LANES > b.len() {
            break;
        }
        // SAFETY: i and j are in bounds (checked just above), and so is the block loaded.
        let next = unsafe {
            let take_a = *pa.add(i) <= *pb.add(j);
            let from = if take_a { pa.add(i) } else { pb.add(j) };
            i += usize::from(take_a) * LANES;
            j += usize::from(!take_a) * LANES;
            _mm512_loadu_si512(from.cast())
        };
        (low, carry) = merge(carry, next);
    }
    // SAFETY: the first `written` lanes were initialised by the stores above.
    unsafe { out.set_len(start + written) };
    let Some(&last) = out[start..].last() else {
        // Only malformed input can have the first block dropped as repeats.
        return (0, 0);
    };
    // `carry` holds the consumed entries not yet written; give back the ones greater than the
    // last entry written (the others repeat it) so the scalar tail merges them again.
    give_back((a, i), (b, j), last, LANES)
}

/// Appends `lo + n` for every set bit `n` of `bits`, in order: each 16 bits of the bitmap
/// compress a block of 16 consecutive values.
#[target_feature(enable = "avx512f,avx512vl,popcnt")]
fn extract_bits(bits: &[u64], lo: u32, out: &mut Vec<u32>) {
    let count: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
    out.reserve(count + LANES);
    let start = out.len();
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u32>();
    let mut written = 0;
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (n, &word) in bits.iter().enumerate() {
        if word == 0 {
            continue;
        }
        // Lanes past u32::MAX wrap; they belong to bits only malformed input sets.
        let mut base = _mm512_add_epi32(
            lanes,
            _mm512_set1_epi32(lo.wrapping_add(n as u32 * 64) as i32),
        );
        for quarter in 0..4 {
            let mask = (word >> (16 * quarter)) as u16;
            let packed = _mm512_maskz_compress_epi32(mask, base);
            // SAFETY: `written` counts set bits already read, so it is at most `count` less the
            // bits of this quarter, and the 16-lane store ends within the `count + 16` reserved.
            unsafe { _mm512_storeu_si512(dst.add(written).cast(), packed) };
            written += mask.count_ones() as usize;
            base = _mm512_add_epi32(base, _mm512_set1_epi32(LANES as i32));
        }
    }
    // SAFETY: the first `written` lanes past `start` were initialised by the stores above.
    unsafe { out.set_len(start + written) };
}
