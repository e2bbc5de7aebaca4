//! Every kernel against a `BTreeSet` model, and every SIMD kernel against its scalar twin.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

type Pair = fn(&[u32], &[u32], &mut Vec<u32>);
type Many = fn(&[&[u32]], &mut Vec<u32>);

/// The implementations this CPU can run, by name: scalar, the dispatched one, and each SIMD level
/// the CPU supports (the others are skipped at run time).
fn implementations() -> Vec<(&'static str, [Pair; 3], Many)> {
    let mut impls: Vec<(&'static str, [Pair; 3], Many)> = vec![
        (
            "scalar",
            [scalar::intersect, scalar::union, scalar::subtract],
            scalar::union_many,
        ),
        ("dispatched", [intersect, union, subtract], union_many),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        if avx2::available() {
            impls.push((
                "avx2",
                [simd::AVX2.intersect, simd::AVX2.union, simd::AVX2.subtract],
                simd::AVX2.union_many,
            ));
        } else {
            eprintln!("CPU lacks AVX2: AVX2 kernels not tested");
        }
        if avx512::available() {
            impls.push((
                "avx512",
                [
                    simd::AVX512.intersect,
                    simd::AVX512.union,
                    simd::AVX512.subtract,
                ],
                simd::AVX512.union_many,
            ));
        } else {
            eprintln!("CPU lacks AVX-512: AVX-512 kernels not tested");
        }
    }
    impls
}

fn model_pair(a: &[u32], b: &[u32]) -> [Vec<u32>; 3] {
    let (sa, sb): (BTreeSet<u32>, BTreeSet<u32>) =
        (a.iter().copied().collect(), b.iter().copied().collect());
    [
        sa.intersection(&sb).copied().collect(),
        sa.union(&sb).copied().collect(),
        sa.difference(&sb).copied().collect(),
    ]
}

/// Checks intersect, union and subtract of every implementation on `(a, b)` against the model,
/// starting from a dirty output buffer to prove it is cleared.
fn check_pair(a: &[u32], b: &[u32]) -> Result<(), TestCaseError> {
    let want = model_pair(a, b);
    for (name, kernels, _) in implementations() {
        for (op, (kernel, want)) in ["intersect", "union", "subtract"]
            .iter()
            .zip(kernels.iter().zip(&want))
        {
            let mut out = vec![7, 7, 7];
            kernel(a, b, &mut out);
            prop_assert_eq!(
                &out,
                want,
                "{} {} of {} and {} entries",
                name,
                op,
                a.len(),
                b.len()
            );
        }
    }
    Ok(())
}

fn check_many(lists: &[Vec<u32>]) -> Result<(), TestCaseError> {
    let want: Vec<u32> = lists
        .iter()
        .flatten()
        .copied()
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .collect();
    let slices: Vec<&[u32]> = lists.iter().map(Vec::as_slice).collect();
    let strategies: [(&str, Many); 3] = [
        ("heap", scalar::union_many_heap),
        ("merge", scalar::union_many_merge),
        ("bitmap", scalar::union_many_bitmap),
    ];
    for (name, kernel) in strategies {
        let mut out = vec![1];
        kernel(&slices, &mut out);
        prop_assert_eq!(&out, &want, "{} union of {} lists", name, lists.len());
    }
    for (name, _, kernel) in implementations() {
        let mut out = vec![1, 2];
        kernel(&slices, &mut out);
        prop_assert_eq!(&out, &want, "{} union_many of {} lists", name, lists.len());
    }
    Ok(())
}

/// Small deterministic generator so one proptest seed expands into a whole list.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// Up to `n` distinct sorted values in `[lo, lo + span)`.
fn random_list(rng: &mut SplitMix, n: usize, lo: u32, span: u64) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n).map(|_| lo + rng.below(span) as u32).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// How the values of a generated pair are spread.
#[derive(Debug, Clone, Copy)]
enum Spread {
    /// Values in a range about twice the sizes: long runs of shared and consecutive values.
    Dense,
    /// Values in a range 16 times the sizes: a few shared values.
    Sparse,
    /// Values anywhere in `u32`: almost nothing shared.
    Full,
    /// Dense, but packed against `u32::MAX`.
    Top,
}

/// How the two lists of a generated pair relate.
#[derive(Debug, Clone, Copy)]
enum Relation {
    /// Drawn independently from the same range.
    Independent,
    /// Mostly one shared set, each with a few entries of its own.
    Overlapping,
    /// `a` takes even values, `b` odd ones.
    Disjoint,
}

fn build_pair(
    na: usize,
    nb: usize,
    spread: Spread,
    relation: Relation,
    seed: u64,
) -> (Vec<u32>, Vec<u32>) {
    let mut rng = SplitMix(seed);
    let total = (na + nb) as u64 + 16;
    let span = match spread {
        Spread::Dense | Spread::Top => total * 2,
        Spread::Sparse => total * 16,
        Spread::Full => 1 << 32,
    };
    let lo = match spread {
        Spread::Top => (u64::from(u32::MAX) + 1 - span) as u32,
        _ => 0,
    };
    match relation {
        Relation::Independent => (
            random_list(&mut rng, na, lo, span),
            random_list(&mut rng, nb, lo, span),
        ),
        Relation::Overlapping => {
            let shared = random_list(&mut rng, na.min(nb), lo, span);
            let mut a = random_list(&mut rng, na - na.min(nb) + na / 8, lo, span);
            let mut b = random_list(&mut rng, nb - na.min(nb) + nb / 8, lo, span);
            a.extend(&shared);
            b.extend(&shared);
            for list in [&mut a, &mut b] {
                list.sort_unstable();
                list.dedup();
            }
            (a, b)
        }
        Relation::Disjoint => {
            let a = random_list(&mut rng, na, lo / 2, span / 2)
                .iter()
                .map(|v| v * 2)
                .collect();
            let b = random_list(&mut rng, nb, lo / 2, span / 2)
                .iter()
                .map(|v| v * 2 + 1)
                .collect();
            (a, b)
        }
    }
}

fn sizes() -> impl Strategy<Value = (usize, usize)> {
    prop_oneof![
        (0usize..2000, 0usize..2000),
        (0usize..70, 0usize..70),
        // Skewed: one list at least 8 (scalar) or 64 (SIMD) times longer, so the galloping
        // kernels run.
        (0usize..40, 1200usize..2000),
        (1200usize..2000, 0usize..40),
        (0usize..12, 1540usize..2000),
        (1540usize..2000, 0usize..12),
    ]
}

fn spread() -> impl Strategy<Value = Spread> {
    prop_oneof![
        Just(Spread::Dense),
        Just(Spread::Sparse),
        Just(Spread::Full),
        Just(Spread::Top)
    ]
}

fn relation() -> impl Strategy<Value = Relation> {
    prop_oneof![
        Just(Relation::Independent),
        Just(Relation::Overlapping),
        Just(Relation::Disjoint)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_kernel_matches_the_set_model_on_random_pairs(
        (na, nb) in sizes(), spread in spread(), relation in relation(), seed in any::<u64>()
    ) {
        let (a, b) = build_pair(na, nb, spread, relation, seed);
        check_pair(&a, &b)?;
    }

    #[test]
    fn union_many_matches_the_set_model(
        sizes in prop::collection::vec(0usize..600, 0..14), spread in spread(), seed in any::<u64>()
    ) {
        let mut rng = SplitMix(seed);
        let lists: Vec<Vec<u32>> = sizes
            .iter()
            .map(|&n| build_pair(n, 0, spread, Relation::Independent, rng.next()).0)
            .collect();
        check_many(&lists)?;
    }
}

#[test]
fn every_tail_length_matches_the_set_model() {
    // Both lists of every length up to three 16-lane blocks, so the SIMD loops exit with every
    // possible remainder on either side.
    for na in 0..=48 {
        for nb in 0..=48 {
            for (spread, relation) in [
                (Spread::Dense, Relation::Overlapping),
                (Spread::Dense, Relation::Independent),
                (Spread::Top, Relation::Overlapping),
            ] {
                let (a, b) = build_pair(na, nb, spread, relation, (na * 64 + nb) as u64);
                check_pair(&a, &b).unwrap();
            }
        }
    }
}

#[test]
fn edge_cases_match_the_set_model() {
    let run: Vec<u32> = (0..1000).collect();
    let evens: Vec<u32> = (0..1000).map(|v| v * 2).collect();
    let odds: Vec<u32> = (0..1000).map(|v| v * 2 + 1).collect();
    let top: Vec<u32> = (u32::MAX - 999..=u32::MAX).collect();
    let top_evens: Vec<u32> = top.iter().copied().filter(|v| v % 2 == 0).collect();
    let cases: Vec<(&[u32], &[u32])> = vec![
        (&[], &[]),
        (&[], &[5]),
        (&[5], &[]),
        (&[5], &[5]),
        (&[5], &[6]),
        (&[0], &[0]),
        (&[u32::MAX], &[u32::MAX]),
        (&[0, u32::MAX], &[u32::MAX]),
        (&run, &run),
        (&run, &[]),
        (&[], &run),
        (&evens, &odds),
        (&odds, &evens),
        (&evens, &run),
        (&run, &evens),
        (&top, &top),
        (&top, &top_evens),
        (&top_evens, &top),
        (&run, &top),
        (&top, &run),
        (&run[..17], &run[16..]),
        (&run[500..], &run[..501]),
    ];
    for (a, b) in cases {
        check_pair(a, b).unwrap();
    }
}

#[test]
fn union_many_edge_cases_match_the_set_model() {
    let run: Vec<u32> = (0..300).collect();
    let top: Vec<u32> = (u32::MAX - 299..=u32::MAX).collect();
    let cases: Vec<Vec<Vec<u32>>> = vec![
        vec![],
        vec![vec![]],
        vec![vec![], vec![], vec![]],
        vec![run.clone()],
        vec![run.clone(), run.clone(), run.clone()],
        vec![run.clone(), top.clone(), vec![], vec![u32::MAX], vec![0]],
        (0..100).map(|k| vec![k, k + 1000, u32::MAX - k]).collect(),
    ];
    for lists in cases {
        check_many(&lists).unwrap();
    }
}

#[test]
fn kernel_name_reports_the_best_level_the_cpu_has() {
    let name = kernel_name();
    #[cfg(target_arch = "x86_64")]
    {
        let want = if avx512::available() {
            "avx512"
        } else if avx2::available() {
            "avx2"
        } else {
            "scalar"
        };
        assert_eq!(name, want);
    }
    #[cfg(not(target_arch = "x86_64"))]
    assert_eq!(name, "scalar");
}

#[test]
fn gallop_finds_the_first_entry_not_below_the_target() {
    let list: Vec<u32> = (0..100).map(|v| v * 3).collect();
    for x in 0..310 {
        assert_eq!(
            scalar::gallop(&list, x),
            list.partition_point(|&v| v < x),
            "target {x}"
        );
    }
    assert_eq!(scalar::gallop(&[], 4), 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Postings read from a corrupt index may be unsorted or repeat entries: the kernels must
    /// neither panic nor write out of bounds (the output itself is unspecified).
    #[test]
    fn malformed_lists_do_not_panic(
        a in prop::collection::vec(0u32..40, 0..300),
        b in prop::collection::vec(0u32..40, 0..300),
        sort_a in any::<bool>(),
        sort_b in any::<bool>(),
    ) {
        let (mut a, mut b) = (a, b);
        if sort_a {
            a.sort_unstable();
        }
        if sort_b {
            b.sort_unstable();
        }
        for (_, kernels, many) in implementations() {
            let mut out = Vec::new();
            for kernel in kernels {
                kernel(&a, &b, &mut out);
                prop_assert!(out.len() <= a.len() + b.len());
            }
            many(&[&a, &b, &a], &mut out);
        }
    }
}

/// An unsorted list once made the AVX2 union give back entries it had already written (proptest
/// `malformed_lists_do_not_panic`): the output outgrew both inputs together.
#[test]
fn union_of_an_unsorted_list_stays_within_both_lists() {
    let mut a: Vec<u32> = vec![
        0, 0, 0, 0, 0, 0, 0, 12, 0, 9, 10, 0, 12, 0, 12, 0, 12, 10, 18, 13, 15, 7, 13, 13, 7, 16,
        7, 12, 14, 12, 9, 0, 8, 5, 9, 0, 18, 13, 13, 5, 10, 16, 0, 0, 8, 0, 10, 19, 14, 15, 15, 11,
        11, 14, 12, 14, 15, 15, 28, 14, 28, 28, 0, 28, 16, 4, 0, 6, 16, 17, 17, 0, 16, 16, 15, 17,
        0, 8, 0, 8, 1, 9, 23, 0, 17, 23, 6, 18, 14, 18, 23, 17, 0, 0, 23, 7,
    ];
    a.sort_unstable();
    let b: Vec<u32> = vec![
        17, 3, 19, 2, 10, 3, 20, 2, 20, 19, 0, 1, 2, 3, 0, 1, 1, 0, 2, 0, 0, 0, 0, 0, 0,
    ];
    for (name, kernels, _) in implementations() {
        for kernel in kernels {
            let mut out = Vec::new();
            kernel(&a, &b, &mut out);
            assert!(out.len() <= a.len() + b.len(), "{name}: {}", out.len());
        }
    }
}
