//! Portable kernels: the reference every SIMD kernel must agree with.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::cmp::Reverse;

/// Sorted intersection by merging; gallops when one list is much shorter.
pub fn intersect(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if small.is_empty() {
        return;
    }
    if large.len() / small.len() >= 32 {
        let mut rest = large;
        for &x in small {
            match rest.binary_search(&x) {
                Ok(i) => {
                    out.push(x);
                    rest = &rest[i + 1..];
                }
                Err(i) => rest = &rest[i..],
            }
            if rest.is_empty() {
                break;
            }
        }
        return;
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
}

/// Sorted union of two lists.
pub fn union(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    out.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
}

/// K-way union with a min-heap of list heads.
pub fn union_many(lists: &[&[u32]], out: &mut Vec<u32>) {
    out.clear();
    match lists.len() {
        0 => return,
        1 => {
            out.extend_from_slice(lists[0]);
            return;
        }
        2 => return union(lists[0], lists[1], out),
        _ => {}
    }
    out.reserve(lists.iter().map(|l| l.len()).max().unwrap_or(0));
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

/// Sorted difference `a \ b`.
pub fn subtract(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    out.clear();
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            j += 1;
            continue;
        }
        out.push(x);
    }
}
