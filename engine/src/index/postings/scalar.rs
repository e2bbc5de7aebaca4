//! Portable kernels: the reference every SIMD kernel must agree with, and the fallback on CPUs
//! without SIMD kernels.
//!
//! Besides the four public kernels this module holds the `*_append` building blocks the SIMD
//! kernels finish their tails with, and the galloping kernels used for skewed list sizes.

/// Size ratio (larger / smaller) from which the kernels gallop through the larger list instead of
/// merging both: a merge touches every entry, galloping about `small * log2(large / small)`.
pub const GALLOP_RATIO: usize = 32;

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
        out.reserve(small.len());
        intersect_append(a, b, out);
    }
}

/// Sorted union of two lists, duplicates written once.
pub fn union(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if !small.is_empty() && large.len() / small.len() >= GALLOP_RATIO {
        union_gallop_append(small, large, out);
    } else {
        union_append(a, b, out);
    }
}

/// K-way union: pairwise merges of the shortest lists first, so each entry is copied about
/// `log2(k)` times and no per-entry heap bookkeeping is needed.
pub fn union_many(lists: &[&[u32]], out: &mut Vec<u32>) {
    union_many_with(lists, out, union)
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
///
/// An entry equal to the last one already in `out` is not written again, so a SIMD kernel can
/// hand over its tail in the middle of a run of equal entries.
pub fn union_append(mut a: &[u32], mut b: &[u32], out: &mut Vec<u32>) {
    if let Some(&last) = out.last() {
        // Lists are sorted and duplicate-free, so only their first entries can repeat `last`.
        if a.first() == Some(&last) {
            a = &a[1..];
        }
        if b.first() == Some(&last) {
            b = &b[1..];
        }
    }
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

/// K-way union built from a two-way `union`: lists are merged pairwise in rounds, each round
/// pairing the shortest lists, so each entry is copied about `log2(k)` times.
pub(crate) fn union_many_with(
    lists: &[&[u32]],
    out: &mut Vec<u32>,
    union: fn(&[u32], &[u32], &mut Vec<u32>),
) {
    out.clear();
    let mut inputs: Vec<&[u32]> = lists.iter().copied().filter(|l| !l.is_empty()).collect();
    match inputs.len() {
        0 => return,
        1 => {
            out.extend_from_slice(inputs[0]);
            return;
        }
        2 => return union(inputs[0], inputs[1], out),
        _ => {}
    }
    // Each round halves the number of lists; buffers of consumed rounds are reused.
    inputs.sort_unstable_by_key(|l| l.len());
    let mut level: Vec<Vec<u32>> = Vec::with_capacity(inputs.len().div_ceil(2));
    let mut pairs = inputs.chunks_exact(2);
    for pair in &mut pairs {
        let mut merged = Vec::new();
        union(pair[0], pair[1], &mut merged);
        level.push(merged);
    }
    if let [odd] = pairs.remainder() {
        level.push(odd.to_vec());
    }
    let mut spare: Vec<Vec<u32>> = Vec::new();
    while level.len() > 2 {
        level.sort_unstable_by_key(|l| l.len());
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        let mut drained = level.drain(..);
        while let Some(x) = drained.next() {
            match drained.next() {
                Some(y) => {
                    let mut merged = spare.pop().unwrap_or_default();
                    union(&x, &y, &mut merged);
                    next.push(merged);
                    spare.push(x);
                    spare.push(y);
                }
                None => next.push(x),
            }
        }
        drop(drained);
        level = next;
    }
    union(&level[0], &level[1], out);
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
