//! Kernels over postings lists: sorted, duplicate-free `u32` series references.
//!
//! Each public kernel runs the fastest implementation the CPU offers, chosen once per process:
//! [`avx512`] or [`avx2`] on x86-64, else [`scalar`]. Every SIMD kernel has a scalar twin that
//! property tests hold it to, and all of them gallop through the longer list when it is
//! some multiple of the shorter one's length (each module's `GALLOP_RATIO`, measured per kernel).
//!
//! [`union_many`] marks entries in a bitmap when the lists' values are dense (span at most
//! [`scalar::BITMAP_SPAN_PER_ENTRY`] per entry, from [`scalar::BITMAP_MIN_LISTS`] lists), and
//! otherwise merges the lists pairwise in rounds; both beat a heap of list heads by 10x or more.
//!
//! Inputs that are not sorted and duplicate-free give unspecified (but memory-safe) output.

use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
// The AVX-512 intrinsics are stable since Rust 1.89, above the workspace's declared 1.88.
#[cfg(target_arch = "x86_64")]
#[clippy::msrv = "1.89"]
pub mod avx512;
pub mod scalar;

#[cfg(test)]
mod tests;

type PairKernel = fn(&[u32], &[u32], &mut Vec<u32>);
type ManyKernel = fn(&[&[u32]], &mut Vec<u32>);

/// One implementation of every kernel.
#[derive(Debug)]
struct Kernels {
    name: &'static str,
    intersect: PairKernel,
    union: PairKernel,
    union_many: ManyKernel,
    subtract: PairKernel,
}

static ACTIVE: OnceLock<Kernels> = OnceLock::new();

fn active() -> &'static Kernels {
    ACTIVE.get_or_init(detect)
}

fn detect() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if avx512::available() {
            return simd::AVX512;
        }
        if avx2::available() {
            return simd::AVX2;
        }
    }
    Kernels {
        name: "scalar",
        intersect: scalar::intersect,
        union: scalar::union,
        union_many: scalar::union_many,
        subtract: scalar::subtract,
    }
}

/// Safe entry points to the SIMD kernels, reachable only through [`detect`], which installs them
/// after checking the CPU.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{Kernels, avx2, avx512};

    pub(super) const AVX2: Kernels = Kernels {
        name: "avx2",
        intersect: |a, b, out| {
            // SAFETY: `detect` installs this table only when `avx2::available()`.
            unsafe { avx2::intersect(a, b, out) }
        },
        union: |a, b, out| {
            // SAFETY: as above.
            unsafe { avx2::union(a, b, out) }
        },
        union_many: |lists, out| {
            // SAFETY: as above.
            unsafe { avx2::union_many(lists, out) }
        },
        subtract: |a, b, out| {
            // SAFETY: as above.
            unsafe { avx2::subtract(a, b, out) }
        },
    };

    pub(super) const AVX512: Kernels = Kernels {
        name: "avx512",
        intersect: |a, b, out| {
            // SAFETY: `detect` installs this table only when `avx512::available()`.
            unsafe { avx512::intersect(a, b, out) }
        },
        union: |a, b, out| {
            // SAFETY: as above.
            unsafe { avx512::union(a, b, out) }
        },
        union_many: |lists, out| {
            // SAFETY: as above.
            unsafe { avx512::union_many(lists, out) }
        },
        subtract: |a, b, out| {
            // SAFETY: as above.
            unsafe { avx512::subtract(a, b, out) }
        },
    };
}

/// Name of the implementation the kernels run on this CPU: `"avx512"`, `"avx2"` or `"scalar"`.
pub fn kernel_name() -> &'static str {
    active().name
}

/// Writes the references present in both `a` and `b` to `out` (cleared first).
pub fn intersect(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    (active().intersect)(a, b, out)
}

/// Writes the references present in `a` or `b` to `out` (cleared first).
pub fn union(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    (active().union)(a, b, out)
}

/// Writes the references present in any of `lists` to `out` (cleared first).
pub fn union_many(lists: &[&[u32]], out: &mut Vec<u32>) {
    (active().union_many)(lists, out)
}

/// Writes the references in `a` that are not in `b` to `out` (cleared first).
pub fn subtract(a: &[u32], b: &[u32], out: &mut Vec<u32>) {
    (active().subtract)(a, b, out)
}
