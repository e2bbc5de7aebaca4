//! Portable kernels: the reference every SIMD kernel must agree with, and the fallback on CPUs
//! without SIMD kernels.
//!
//! Besides the four public kernels this module holds the `*_append` building blocks the SIMD
//! kernels finish their tails with, and the galloping kernels used for skewed list sizes.

use std::ops::Range;

/// Size ratio (larger / smaller) from which the scalar kernels gallop through the larger list
/// instead of merging both: a merge touches every entry, galloping about
/// `small * log2(large / small)` entries at a cache miss each. Measured break-even: about 8.
pub const GALLOP_RATIO: usize = 8;

/// Sorted intersection: a merge, or galloping when one list is [`GALLOP_RATIO`] times longer.
pub fn intersect(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if small.is_empty() {
        return;
    }
    if large.len() / small.len() >= GALLOP_RATIO {
        intersect_gallop_append(small, large, out);
    } else {
        intersect_append(a, b, out);
    }
}

/// Sorted union of two lists, duplicates written once.
pub fn union(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    union_into(a, b, out);
}

/// Appends `a ∪ b` to `out`: a merge, or galloping when one list is [`GALLOP_RATIO`] times
/// longer.
pub fn union_into(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if !small.is_empty() && large.len() / small.len() >= GALLOP_RATIO {
        union_gallop_append(small, large, out);
    } else {
        union_append(a, b, out);
    }
}

/// K-way union: a bitmap when the lists' values are dense enough (see
/// [`BITMAP_SPAN_PER_ENTRY`]), else pairwise merges in rounds, each entry copied about
/// `log2(k)` times.
pub fn union_many(lists: &[&[u32]], out: &mut Vec<u32>) {
    union_many_with(lists, out, union_into, extract_bits)
}

/// Sorted difference `a \ b`: a merge, or galloping when one list is [`GALLOP_RATIO`] times
/// longer.
pub fn subtract(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    if a.is_empty() {
        return;
    }
    if b.is_empty() {
        out.extend_from_slice(a);
        return;
    }
    if b.len() / a.len() >= GALLOP_RATIO {
        subtract_gallop_b_append(a, b, out);
    } else if a.len() / b.len() >= GALLOP_RATIO {
        subtract_gallop_a_append(a, b, out);
    } else {
        subtract_append(a, b, out);
    }
}

/// Appends `a ∩ b` to `out` by merging.
///
/// The merge has no data-dependent branch: about half its steps would mispredict on lists that
/// share entries at random. Every step writes its candidate and keeps it only on a match.
pub fn intersect_append(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let start = out.len();
    out.resize(start + a.len().min(b.len()), 0);
    let buf = &mut out[start..];
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        // k counts matches and each match advances both lists, so k < min(len) here.
        buf[k] = x;
        k += usize::from(x == y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.truncate(start + k);
}

/// Appends `a ∪ b` to `out` by merging.
pub fn union_append(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        out.push(x.min(y));
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

/// Appends `a \ b` to `out` by merging, without data-dependent branches (as
/// [`intersect_append`]).
pub fn subtract_append(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let start = out.len();
    out.resize(start + a.len(), 0);
    let buf = &mut out[start..];
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        // k counts the entries of `a` kept, so k <= i < a.len() here.
        buf[k] = x;
        k += usize::from(x < y);
        i += usize::from(x <= y);
        j += usize::from(y <= x);
    }
    out.truncate(start + k);
    out.extend_from_slice(&a[i..]);
}

/// Index of the first entry of `list` that is `>= x` (or `list.len()`), found by doubling a step
/// from the front and then bisecting: `O(log d)` for an answer at distance `d`.
pub fn gallop(list: &[u32], x: u32) -> usize {
    let mut hi = 1;
    while hi < list.len() && list[hi - 1] < x {
        hi *= 2;
    }
    let lo = hi / 2;
    let hi = hi.min(list.len());
    lo + list[lo..hi].partition_point(|&v| v < x)
}

/// Appends `small ∩ large` to `out`, galloping through `large` for each entry of `small`.
pub fn intersect_gallop_append(small: &[u32], large: &[u32], out: &mut Vec<u32>) {
    let mut rest = large;
    for &x in small {
        let at = gallop(rest, x);
        if at == rest.len() {
            break;
        }
        if rest[at] == x {
            out.push(x);
            rest = &rest[at + 1..];
        } else {
            rest = &rest[at..];
        }
    }
}

/// Appends `small ∪ large` to `out`, copying the runs of `large` between entries of `small`.
pub fn union_gallop_append(small: &[u32], large: &[u32], out: &mut Vec<u32>) {
    out.reserve(small.len() + large.len());
    let mut rest = large;
    for &x in small {
        let at = gallop(rest, x);
        out.extend_from_slice(&rest[..at]);
        out.push(x);
        rest = &rest[at..];
        if rest.first() == Some(&x) {
            rest = &rest[1..];
        }
    }
    out.extend_from_slice(rest);
}

/// Appends `a \ b` to `out` for a much shorter `a`, galloping through `b`.
pub fn subtract_gallop_b_append(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    let mut rest = b;
    for (n, &x) in a.iter().enumerate() {
        let at = gallop(rest, x);
        if at == rest.len() {
            out.extend_from_slice(&a[n..]);
            return;
        }
        if rest[at] == x {
            rest = &rest[at + 1..];
        } else {
            out.push(x);
            rest = &rest[at..];
        }
    }
}

/// Appends `a \ b` to `out` for a much shorter `b`, copying the runs of `a` between entries of
/// `b`.
pub fn subtract_gallop_a_append(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.reserve(a.len());
    let mut rest = a;
    for &y in b {
        let at = gallop(rest, y);
        out.extend_from_slice(&rest[..at]);
        rest = &rest[at..];
        if rest.first() == Some(&y) {
            rest = &rest[1..];
        }
    }
    out.extend_from_slice(rest);
}

/// A kernel appending the union of two lists to its output.
pub(crate) type UnionInto = fn(&[u32], &[u32], &mut Vec<u32>);

/// A kernel appending, in order, `lo + n` for every set bit `n` of a bitmap (bit `n % 64` of word
/// `n / 64`).
pub(crate) type ExtractBits = fn(&[u64], u32, &mut Vec<u32>);

/// Lists needed before [`union_many`] considers a bitmap: below it the merges are cheaper.
pub const BITMAP_MIN_LISTS: usize = 4;

/// Largest value span (`max - min + 1`) per input entry for which [`union_many`] marks entries in
/// a bitmap instead of merging; it bounds the bitmap at 4 bytes per entry, the inputs' own size.
pub const BITMAP_SPAN_PER_ENTRY: usize = 32;

/// K-way union with `union_into` as the two-way kernel of the merge rounds and `extract` reading
/// back the bitmap.
pub(crate) fn union_many_with(
    lists: &[&[u32]],
    out: &mut Vec<u32>,
    union_into: UnionInto,
    extract: ExtractBits,
) {
    out.clear();
    let inputs: Vec<&[u32]> = lists.iter().copied().filter(|l| !l.is_empty()).collect();
    match inputs.len() {
        0 => {}
        1 => out.extend_from_slice(inputs[0]),
        2 => union_into(inputs[0], inputs[1], out),
        k => {
            if k < BITMAP_MIN_LISTS || !union_bitmap(&inputs, out, extract) {
                union_rounds(inputs, out, union_into);
            }
        }
    }
}

/// K-way union by pairwise merges only (the fallback of [`union_many`] for sparse values).
pub fn union_many_merge(lists: &[&[u32]], out: &mut Vec<u32>) {
    out.clear();
    let inputs: Vec<&[u32]> = lists.iter().copied().filter(|l| !l.is_empty()).collect();
    match inputs.len() {
        0 => {}
        1 => out.extend_from_slice(inputs[0]),
        _ => union_rounds(inputs, out, union_into),
    }
}

/// K-way union through a bitmap whenever its size stays within [`BITMAP_SPAN_PER_ENTRY`].
pub fn union_many_bitmap(lists: &[&[u32]], out: &mut Vec<u32>) {
    out.clear();
    let inputs: Vec<&[u32]> = lists.iter().copied().filter(|l| !l.is_empty()).collect();
    if !union_bitmap(&inputs, out, extract_bits) {
        union_many_merge(lists, out);
    }
}

/// Appends the union of the non-empty `inputs` to `out` by setting one bit per value between the
/// smallest first entry and the largest last entry, then reading the bits back in order. Returns
/// false, having written nothing, when that span is too large for the entries at hand.
fn union_bitmap(inputs: &[&[u32]], out: &mut Vec<u32>, extract: ExtractBits) -> bool {
    let (Some(lo), Some(hi)) = (
        inputs.iter().filter_map(|l| l.first()).min(),
        inputs.iter().filter_map(|l| l.last()).max(),
    ) else {
        return true;
    };
    let (lo, hi) = (*lo, *hi);
    let total: usize = inputs.iter().map(|l| l.len()).sum();
    if hi < lo || (hi - lo) as usize >= total.saturating_mul(BITMAP_SPAN_PER_ENTRY) {
        return false;
    }
    let span = (hi - lo) as usize + 1;
    let mut bits = vec![0u64; span.div_ceil(64)];
    for list in inputs {
        for &v in *list {
            let at = v.wrapping_sub(lo) as usize;
            // Only unsorted input has values outside [lo, hi]; they are dropped.
            if let Some(word) = bits.get_mut(at / 64) {
                *word |= 1 << (at % 64);
            }
        }
    }
    extract(&bits, lo, out);
    true
}

/// Appends `lo + n` for every set bit `n` of `bits`, in order (the scalar [`ExtractBits`]).
pub(crate) fn extract_bits(bits: &[u64], lo: u32, out: &mut Vec<u32>) {
    out.reserve(bits.iter().map(|w| w.count_ones() as usize).sum());
    for (n, &word) in bits.iter().enumerate() {
        let base = lo as usize + n * 64;
        let mut word = word;
        while word != 0 {
            // Valid input only sets bits for values up to u32::MAX; others wrap harmlessly.
            out.push((base + word.trailing_zeros() as usize) as u32);
            word &= word - 1;
        }
    }
}

/// Appends the union of `inputs` (at least two, none empty) to `out` by merging them pairwise in
/// rounds, shortest first, between two buffers allocated once.
fn union_rounds(mut inputs: Vec<&[u32]>, out: &mut Vec<u32>, union_into: UnionInto) {
    let total: usize = inputs.iter().map(|l| l.len()).sum();
    inputs.sort_unstable_by_key(|l| l.len());
    // Slack for the full SIMD block a kernel may store past its last entry.
    let mut src: Vec<u32> = Vec::with_capacity(total + 64);
    let mut dst: Vec<u32> = Vec::with_capacity(total + 64);
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(inputs.len().div_ceil(2));
    merge_round(&inputs, &mut src, &mut ranges, union_into);
    while ranges.len() > 2 {
        ranges.sort_unstable_by_key(|r| r.len());
        let lists: Vec<&[u32]> = ranges.iter().map(|r| &src[r.clone()]).collect();
        dst.clear();
        let mut next = Vec::with_capacity(lists.len().div_ceil(2));
        merge_round(&lists, &mut dst, &mut next, union_into);
        ranges = next;
        std::mem::swap(&mut src, &mut dst);
    }
    match &ranges[..] {
        [x, y] => union_into(&src[x.clone()], &src[y.clone()], out),
        [x] => out.extend_from_slice(&src[x.clone()]),
        _ => {}
    }
}

/// Merges `lists` (sorted by length) pairwise into `buf`, recording where each result lies. With
/// an odd count the shortest list is copied alone, being the cheapest to copy.
fn merge_round(
    lists: &[&[u32]],
    buf: &mut Vec<u32>,
    ranges: &mut Vec<Range<usize>>,
    union_into: UnionInto,
) {
    let paired = if lists.len() % 2 == 1 {
        buf.extend_from_slice(lists[0]);
        ranges.push(0..buf.len());
        &lists[1..]
    } else {
        lists
    };
    for pair in paired.chunks_exact(2) {
        let at = buf.len();
        union_into(pair[0], pair[1], buf);
        ranges.push(at..buf.len());
    }
}

/// K-way union with a min-heap of list heads: `O(total * log2(k))` comparisons, kept to measure
/// the pairwise merge of [`union_many`] against.
pub fn union_many_heap(lists: &[&[u32]], out: &mut Vec<u32>) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    out.clear();
    let mut heap: BinaryHeap<Reverse<(u32, usize, usize)>> = lists
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(k, l)| Reverse((l[0], k, 0)))
        .collect();
    while let Some(Reverse((v, k, i))) = heap.pop() {
        if out.last() != Some(&v) {
            out.push(v);
        }
        if let Some(&next) = lists[k].get(i + 1) {
            heap.push(Reverse((next, k, i + 1)));
        }
    }
}
