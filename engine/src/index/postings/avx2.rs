//! AVX2 kernels: blocks of 8 entries.
//!
//! Intersect and subtract compare a block of 8 from each list all-vs-all (8 broadcast compares),
//! compact the selected lanes with a permutation looked up by the 8-bit match mask, and advance
//! whichever block has the smaller last entry, without a branch. Union merges blocks of 8 through
//! a bitonic network and drops the one copy of each shared entry by comparing every output lane
//! with its predecessor. Each kernel hands the entries left when a list has fewer than a block
//! to the scalar `*_append` twins, and gallops like the scalar kernels for skewed sizes.
//!
//! Every function here needs a CPU with AVX2 and POPCNT: check [`available`] first.

use core::arch::x86_64::*;

use super::scalar;

/// Size ratio (larger / smaller) from which these kernels gallop instead of merging; see
/// `avx512::GALLOP_RATIO` for how it was chosen (the 8-lane merge is a little slower, which
/// only favours galloping more).
pub const GALLOP_RATIO: usize = 64;

const LANES: usize = 8;

/// Permutation indices moving the lanes set in an 8-bit mask to the front, in lane order.
#[repr(C, align(32))]
struct CompactTable([[u32; LANES]; 256]);

static COMPACT: CompactTable = CompactTable(build_compact());

const fn build_compact() -> [[u32; LANES]; 256] {
    let mut table = [[0u32; LANES]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut lane, mut to) = (0, 0);
        while lane < LANES {
            if (mask >> lane) & 1 == 1 {
                table[mask][to] = lane as u32;
                to += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
}

/// Whether this CPU runs the kernels of this module.
pub fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("popcnt")
}

/// AVX2 twin of [`scalar::intersect`].
///
/// # Safety
/// The CPU must support AVX2 and POPCNT ([`available`] returned true).
#[target_feature(enable = "avx2,popcnt")]
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

/// AVX2 twin of [`scalar::union`].
///
/// # Safety
/// The CPU must support AVX2 and POPCNT ([`available`] returned true).
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn union(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    union_into(a, b, out);
}

/// Appends `a ∪ b` to `out`: the twin of [`scalar::union_into`].
#[target_feature(enable = "avx2,popcnt")]
fn union_into(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if !small.is_empty() && large.len() / small.len() >= GALLOP_RATIO {
        return scalar::union_gallop_append(small, large, out);
    }
    let (i, j) = union_blocks(a, b, out);
    scalar::union_append(&a[i..], &b[j..], out);
}

/// AVX2 twin of [`scalar::union_many`]: the same bitmap for dense values, else merge rounds
/// with this module's two-way union.
///
/// # Safety
/// The CPU must support AVX2 and POPCNT ([`available`] returned true).
#[target_feature(enable = "avx2,popcnt")]
pub unsafe fn union_many(lists: &[&[u32]], out: &mut Vec<u32>) {
    // The closure inherits this function's target features, so it may call `union_into`.
    scalar::union_many_with(
        lists,
        out,
        |a, b, out| union_into(a, b, out),
        |bits, lo, out| extract_bits(bits, lo, out),
    )
}

/// AVX2 twin of [`scalar::subtract`].
///
/// # Safety
/// The CPU must support AVX2 and POPCNT ([`available`] returned true).
#[target_feature(enable = "avx2,popcnt")]
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

/// Mask of the lanes of `va` equal to any of the 8 entries at `pb`.
///
/// # Safety
/// `pb` must be valid for reading 8 `u32`s.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn match_lanes(va: __m256i, pb: *const u32) -> u32 {
    // SAFETY: the caller guarantees pb[0..8] is readable.
    let eq = |t: usize| unsafe { _mm256_cmpeq_epi32(va, _mm256_set1_epi32(*pb.add(t) as i32)) };
    let m01 = _mm256_or_si256(eq(0), eq(1));
    let m23 = _mm256_or_si256(eq(2), eq(3));
    let m45 = _mm256_or_si256(eq(4), eq(5));
    let m67 = _mm256_or_si256(eq(6), eq(7));
    let m = _mm256_or_si256(_mm256_or_si256(m01, m23), _mm256_or_si256(m45, m67));
    _mm256_movemask_ps(_mm256_castsi256_ps(m)) as u32
}

/// The lanes of `v` selected by the 8-bit `mask`, moved to the front.
#[inline]
#[target_feature(enable = "avx2")]
fn compact(v: __m256i, mask: u32) -> __m256i {
    let row = &COMPACT.0[(mask & 0xff) as usize];
    // SAFETY: `row` is 8 `u32`s, 32-byte aligned by `CompactTable`'s repr.
    let perm = unsafe { _mm256_load_si256(row.as_ptr().cast()) };
    _mm256_permutevar8x32_epi32(v, perm)
}

/// Appends the entries common to the whole blocks of `a` and `b` and returns how far each list
/// was consumed; everything before those positions has been dealt with.
#[target_feature(enable = "avx2,popcnt")]
fn intersect_blocks(a: &[u32], b: &[u32], out: &mut Vec<u32>) -> (usize, usize) {
    let (mut i, mut j) = (0, 0);
    if a.len() < LANES || b.len() < LANES {
        return (i, j);
    }
    // Each match consumes an entry of both lists, so at most min(len) entries are written, plus
    // the full block of garbage lanes every store may leave past the end.
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
            let va = _mm256_loadu_si256(pa.add(i).cast());
            let (max_a, max_b) = (*pa.add(i + LANES - 1), *pb.add(j + LANES - 1));
            let mask = match_lanes(va, pb.add(j));
            _mm256_storeu_si256(dst.add(written).cast(), compact(va, mask));
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
#[target_feature(enable = "avx2,popcnt")]
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
            // 8-lane store stays within the a.len() + 8 entries reserved.
            unsafe {
                let va = _mm256_loadu_si256(pa.add(i).cast());
                let (max_a, max_b) = (*pa.add(i + LANES - 1), *pb.add(j + LANES - 1));
                matched |= match_lanes(va, pb.add(j));
                let keep = !matched & 0xff;
                _mm256_storeu_si256(dst.add(written).cast(), compact(va, keep));
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

/// Finishes `a \ b` from positions `i` and `j` with the scalar kernel, where the block of `a`
/// at `i` may already have the lanes in `matched` matched by earlier blocks of `b`.
pub(super) fn finish_subtract<const N: usize>(
    a: &[u32],
    b: &[u32],
    mut i: usize,
    j: usize,
    matched: u32,
    out: &mut Vec<u32>,
) {
    let rest_b = &b[j..];
    if matched != 0 {
        let mut unmatched = [0u32; N];
        let mut n = 0;
        for (lane, &v) in a[i..i + N].iter().enumerate() {
            if matched >> lane & 1 == 0 {
                unmatched[n] = v;
                n += 1;
            }
        }
        scalar::subtract_append(&unmatched[..n], rest_b, out);
        i += N;
    }
    scalar::subtract_append(&a[i..], rest_b, out);
}

/// Sorts a bitonic sequence of 8 ascending.
#[inline]
#[target_feature(enable = "avx2")]
fn bitonic_sort(v: __m256i) -> __m256i {
    let swapped = _mm256_permute2x128_si256::<0x01>(v, v);
    let v = _mm256_blend_epi32::<0b1111_0000>(
        _mm256_min_epu32(v, swapped),
        _mm256_max_epu32(v, swapped),
    );
    let swapped = _mm256_shuffle_epi32::<0b01_00_11_10>(v);
    let v = _mm256_blend_epi32::<0b1100_1100>(
        _mm256_min_epu32(v, swapped),
        _mm256_max_epu32(v, swapped),
    );
    let swapped = _mm256_shuffle_epi32::<0b10_11_00_01>(v);
    _mm256_blend_epi32::<0b1010_1010>(_mm256_min_epu32(v, swapped), _mm256_max_epu32(v, swapped))
}

/// Merges two ascending blocks into the 8 smallest and the 8 largest entries, both ascending.
#[inline]
#[target_feature(enable = "avx2")]
fn merge(x: __m256i, y: __m256i) -> (__m256i, __m256i) {
    let reversed = _mm256_permutevar8x32_epi32(y, _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0));
    let low = _mm256_min_epu32(x, reversed);
    let high = _mm256_max_epu32(x, reversed);
    (bitonic_sort(low), bitonic_sort(high))
}

/// Appends the union of whole blocks of `a` and `b` and returns how far each list was consumed:
/// every entry before those positions is in `out`, every entry after them is greater than the
/// last entry of `out`.
#[target_feature(enable = "avx2,popcnt")]
fn union_blocks(a: &[u32], b: &[u32], out: &mut Vec<u32>) -> (usize, usize) {
    if a.len() < LANES || b.len() < LANES {
        return (0, 0);
    }
    out.reserve(a.len() + b.len() + LANES);
    let start = out.len();
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u32>();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let rotate = _mm256_setr_epi32(7, 0, 1, 2, 3, 4, 5, 6);
    // Lane 0 of `prev_rotated` holds the entry before the block being written; the first block
    // has none, so it gets a value that differs from the first entry.
    let mut prev_rotated = _mm256_set1_epi32((a[0].min(b[0]) ^ 1) as i32);
    // SAFETY: both lists hold at least one block.
    let (va, vb) = unsafe { (_mm256_loadu_si256(pa.cast()), _mm256_loadu_si256(pb.cast())) };
    let (mut i, mut j) = (LANES, LANES);
    let (mut low, mut carry) = merge(va, vb);
    let mut written = 0;
    loop {
        let rotated = _mm256_permutevar8x32_epi32(low, rotate);
        let previous = _mm256_blend_epi32::<0b0000_0001>(rotated, prev_rotated);
        let dup = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(low, previous)));
        let keep = !(dup as u32) & 0xff;
        // SAFETY: `written` never exceeds the entries consumed (i + j) less the 8 held in
        // `carry`, so the 8-lane store ends within the a.len() + b.len() + 8 reserved.
        unsafe { _mm256_storeu_si256(dst.add(written).cast(), compact(low, keep)) };
        written += keep.count_ones() as usize;
        prev_rotated = rotated;
        if i + LANES > a.len() || j + LANES > b.len() {
            break;
        }
        // SAFETY: i and j are in bounds (checked just above), and so is the block loaded.
        let next = unsafe {
            let take_a = *pa.add(i) <= *pb.add(j);
            let from = if take_a { pa.add(i) } else { pb.add(j) };
            i += usize::from(take_a) * LANES;
            j += usize::from(!take_a) * LANES;
            _mm256_loadu_si256(from.cast())
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

/// Moves the consumed positions of both lists back over the entries greater than `last`, at
/// most `held` entries in all: `carry` holds that many, and sorted lists never need more. On
/// unsorted (corrupt) lists the cap keeps the output within `a.len() + b.len()` entries.
pub(super) fn give_back(
    (a, i): (&[u32], usize),
    (b, j): (&[u32], usize),
    last: u32,
    held: usize,
) -> (usize, usize) {
    let back = |list: &[u32], at: usize, most: usize| {
        list[..at]
            .iter()
            .rev()
            .take(most)
            .take_while(|&&v| v > last)
            .count()
    };
    let ga = back(a, i, held);
    let gb = back(b, j, held - ga);
    (i - ga, j - gb)
}

/// Appends `lo + n` for every set bit `n` of `bits`, in order: each byte of the bitmap compacts a
/// block of 8 consecutive values through the permutation table.
#[target_feature(enable = "avx2,popcnt")]
fn extract_bits(bits: &[u64], lo: u32, out: &mut Vec<u32>) {
    let count: usize = bits.iter().map(|w| w.count_ones() as usize).sum();
    out.reserve(count + LANES);
    let start = out.len();
    let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u32>();
    let mut written = 0;
    let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (n, &word) in bits.iter().enumerate() {
        if word == 0 {
            continue;
        }
        // Lanes past u32::MAX wrap; they belong to bits only malformed input sets.
        let mut base = _mm256_add_epi32(
            lanes,
            _mm256_set1_epi32(lo.wrapping_add(n as u32 * 64) as i32),
        );
        for byte in word.to_le_bytes() {
            let mask = u32::from(byte);
            // SAFETY: `written` counts set bits already read, so it is at most `count` less the
            // bits of this byte, and the 8-lane store ends within the `count + 8` reserved.
            unsafe { _mm256_storeu_si256(dst.add(written).cast(), compact(base, mask)) };
            written += mask.count_ones() as usize;
            base = _mm256_add_epi32(base, _mm256_set1_epi32(LANES as i32));
        }
    }
    // SAFETY: the first `written` lanes past `start` were initialised by the stores above.
    unsafe { out.set_len(start + written) };
}
