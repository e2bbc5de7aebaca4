//! Postings kernels: every implementation the CPU runs, on pairs with half their entries shared
//! and on 1:100 skewed pairs, plus k-way unions, and decoding the store's bitpacked refs. Throughput counts the entries of all inputs.
//!
//! `cargo bench -p gauntlet-bench --bench postings -- intersect/` runs one family; each benchmark
//! warms up for 1 s and measures for 3 s unless the command line says otherwise.

use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use gauntlet_engine::index::postings::{self, scalar};

type Pair = fn(&[u32], &[u32], &mut Vec<u32>);
type Many = fn(&[&[u32]], &mut Vec<u32>);

/// One implementation of the kernels, by the name the report shows.
struct Implementation {
    name: &'static str,
    intersect: Pair,
    union: Pair,
    subtract: Pair,
    union_many: Many,
}

/// Scalar, the dispatched kernels, and each SIMD level this CPU supports.
fn implementations() -> Vec<Implementation> {
    let mut impls = vec![
        Implementation {
            name: "scalar",
            intersect: scalar::intersect,
            union: scalar::union,
            subtract: scalar::subtract,
            union_many: scalar::union_many,
        },
        Implementation {
            name: "dispatch",
            intersect: postings::intersect,
            union: postings::union,
            subtract: postings::subtract,
            union_many: postings::union_many,
        },
    ];
    #[cfg(target_arch = "x86_64")]
    {
        use postings::{avx2, avx512};
        if avx2::available() {
            impls.push(Implementation {
                name: "avx2",
                intersect: |a, b, out| {
                    // SAFETY: pushed only when `avx2::available()`.
                    unsafe { avx2::intersect(a, b, out) }
                },
                union: |a, b, out| {
                    // SAFETY: as above.
                    unsafe { avx2::union(a, b, out) }
                },
                subtract: |a, b, out| {
                    // SAFETY: as above.
                    unsafe { avx2::subtract(a, b, out) }
                },
                union_many: |lists, out| {
                    // SAFETY: as above.
                    unsafe { avx2::union_many(lists, out) }
                },
            });
        }
        if avx512::available() {
            impls.push(Implementation {
                name: "avx512",
                intersect: |a, b, out| {
                    // SAFETY: pushed only when `avx512::available()`.
                    unsafe { avx512::intersect(a, b, out) }
                },
                union: |a, b, out| {
                    // SAFETY: as above.
                    unsafe { avx512::union(a, b, out) }
                },
                subtract: |a, b, out| {
                    // SAFETY: as above.
                    unsafe { avx512::subtract(a, b, out) }
                },
                union_many: |lists, out| {
                    // SAFETY: as above.
                    unsafe { avx512::union_many(lists, out) }
                },
            });
        }
    }
    impls
}

/// Deterministic generator so every run measures the same lists.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Two lists of about `n` entries each, half of each list shared with the other, at a random
/// gap of 1 to 4 between consecutive candidate values.
fn half_shared(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = SplitMix(seed);
    let (mut a, mut b) = (Vec::with_capacity(n + n / 8), Vec::with_capacity(n + n / 8));
    let mut v = 0u32;
    for _ in 0..n * 3 / 2 {
        let r = rng.next();
        v += 1 + (r & 3) as u32;
        match (r >> 8) % 3 {
            0 => {
                a.push(v);
                b.push(v);
            }
            1 => a.push(v),
            _ => b.push(v),
        }
    }
    (a, b)
}

/// A list of `n / 100` entries and one of about `n`, half of the short list's entries in the long
/// one.
fn skewed(n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = SplitMix(seed);
    let (mut short, mut long) = (Vec::with_capacity(n / 100 + 1), Vec::with_capacity(n + 1));
    let mut v = 0u32;
    for _ in 0..n {
        let r = rng.next();
        v += 2 + (r & 3) as u32;
        long.push(v);
        if (r >> 8).is_multiple_of(100) {
            // Half the picks land on the long list's entry, half on a value it skips.
            short.push(if (r >> 16) & 1 == 0 { v } else { v - 1 });
        }
    }
    (short, long)
}

/// `k` lists together holding `total` entries, drawn from one range so that they overlap.
fn many_lists(k: usize, total: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = SplitMix(seed);
    let span = (total * 2) as u64;
    (0..k)
        .map(|_| {
            let mut list: Vec<u32> = (0..total / k).map(|_| (rng.next() % span) as u32).collect();
            list.sort_unstable();
            list.dedup();
            list
        })
        .collect()
}

/// Entries per list of the half-shared pairs.
const SIZES: [(usize, &str); 4] = [
    (1_000, "1k"),
    (100_000, "100k"),
    (1_000_000, "1M"),
    (10_000_000, "10M"),
];

/// Fewer, flat samples for the lists that take milliseconds per call.
fn configure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
) {
    if n >= 1_000_000 {
        group.sample_size(10).sampling_mode(SamplingMode::Flat);
    }
}

fn pair_family(c: &mut Criterion, op: &str, pick: fn(&Implementation) -> Pair) {
    let impls = implementations();
    let mut out = Vec::new();
    for (n, label) in SIZES {
        let (a, b) = half_shared(n, 7);
        let mut group = c.benchmark_group(format!("{op}/half_shared"));
        configure(&mut group, n);
        group.throughput(Throughput::Elements((a.len() + b.len()) as u64));
        for imp in &impls {
            let kernel = pick(imp);
            group.bench_with_input(BenchmarkId::new(imp.name, label), &(), |bench, _| {
                bench.iter(|| kernel(black_box(&a), black_box(&b), &mut out))
            });
        }
        group.finish();
    }
    for &(n, label) in &[(100_000, "100k"), (10_000_000, "10M")] {
        let (short, long) = skewed(n, 11);
        let mut group = c.benchmark_group(format!("{op}/skew_1_to_100"));
        configure(&mut group, n);
        group.throughput(Throughput::Elements((short.len() + long.len()) as u64));
        for imp in &impls {
            let kernel = pick(imp);
            group.bench_with_input(BenchmarkId::new(imp.name, label), &(), |bench, _| {
                bench.iter(|| kernel(black_box(&short), black_box(&long), &mut out))
            });
        }
        group.finish();
    }
}

fn intersect(c: &mut Criterion) {
    pair_family(c, "intersect", |imp| imp.intersect);
}

fn union(c: &mut Criterion) {
    pair_family(c, "union", |imp| imp.union);
}

fn subtract(c: &mut Criterion) {
    pair_family(c, "subtract", |imp| imp.subtract);
}

fn union_many(c: &mut Criterion) {
    let mut kernels: Vec<(&str, Many)> = implementations()
        .iter()
        .map(|imp| (imp.name, imp.union_many))
        .collect();
    kernels.push(("scalar_merge_only", scalar::union_many_merge));
    kernels.push(("scalar_heap", scalar::union_many_heap));
    let mut out = Vec::new();
    for (k, label) in [(3, "3x333k"), (10, "10x100k"), (100, "100x10k")] {
        let lists = many_lists(k, 1_000_000, 13);
        let slices: Vec<&[u32]> = lists.iter().map(Vec::as_slice).collect();
        let mut group = c.benchmark_group("union_many");
        configure(&mut group, 1_000_000);
        group.throughput(Throughput::Elements(
            lists.iter().map(|l| l.len() as u64).sum(),
        ));
        for &(name, kernel) in &kernels {
            group.bench_with_input(BenchmarkId::new(name, label), &(), |bench, _| {
                bench.iter(|| kernel(black_box(&slices), &mut out))
            });
        }
        group.finish();
    }
}

/// Decoding the store's bitpacked refs (256-ref blocks of deltas in eight lanes): a whole
/// 1M-ref list, as a selection that takes every series of a block does.
fn packed_decode(c: &mut Criterion) {
    use gauntlet_engine::store::postings::pack;
    let mut group = c.benchmark_group("packed_decode");
    for (gap, label) in [(4u64, "gap_1_to_4"), (64, "gap_1_to_64")] {
        let mut rng = SplitMix(17);
        let mut v = 0u32;
        let refs: Vec<u32> = (0..1_000_000)
            .map(|_| {
                v += 1 + (rng.next() % gap) as u32;
                v
            })
            .collect();
        let packed = pack(&refs);
        let mut out = Vec::with_capacity(refs.len());
        group.throughput(Throughput::Elements(refs.len() as u64));
        group.bench_function(BenchmarkId::new("decode_all", label), |bench| {
            bench.iter(|| {
                out.clear();
                black_box(&packed).decode_all(&mut out);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = intersect, union, subtract, union_many, packed_decode
}
criterion_main!(benches);
