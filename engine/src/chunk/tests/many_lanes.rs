//! The many-chunk decoders against their scalar twin: the AVX-512 lanes (where the CPU has
//! them) and the public calls give the same samples and the same errors as decoding each chunk
//! alone, on encoded chunks of every shape, damaged chunks, arbitrary bytes and every fixture
//! chunk.

use proptest::prelude::*;

use super::round_trip::samples;
use super::{read_segment, segment_files, testdata};
use crate::chunk::xor::xor_slots;
use crate::chunk::xor_many::{Job, decode_jobs_scalar};
use crate::chunk::{
    ChunkError, ManyDecodeError, SampleBatch, decode_xor_into, decode_xor_many,
    decode_xor_many_flat, encode_xor, xor_many_kernel_name,
};

/// A way of decoding jobs, as `xor_many` dispatches to.
type Kernel = fn(&mut [Job<'_>], &mut [Result<usize, ChunkError>]);

/// What one chunk decodes to: its samples as `(t, value bits)`, or the error.
type Outcome = Result<Vec<(i64, u64)>, ChunkError>;

/// Runs `kernel` on `payloads`, each into slots of its own, as the public calls set them up.
fn run_kernel(kernel: Kernel, payloads: &[Vec<u8>]) -> Vec<Outcome> {
    let slots: Vec<Result<usize, ChunkError>> = payloads.iter().map(|d| xor_slots(d)).collect();
    let mut cols: Vec<(Vec<i64>, Vec<f64>)> = slots
        .iter()
        .map(|s| {
            let n = *s.as_ref().unwrap_or(&0);
            (vec![0; n], vec![0.0; n])
        })
        .collect();
    let mut jobs: Vec<Job<'_>> = payloads
        .iter()
        .zip(cols.iter_mut())
        .map(|(data, (ts, val))| Job { data, ts, val })
        .collect();
    let mut results = vec![Ok(0); jobs.len()];
    kernel(&mut jobs, &mut results);
    drop(jobs);
    slots
        .into_iter()
        .zip(results)
        .zip(cols)
        .map(|((s, r), (ts, val))| {
            s?;
            let n = r?;
            assert_eq!(n, ts.len(), "a decoded chunk fills its slots exactly");
            Ok(ts
                .into_iter()
                .zip(val.iter().map(|v| v.to_bits()))
                .collect())
        })
        .collect()
}

/// Each chunk decoded alone by the public single-chunk call.
fn one_by_one(payloads: &[Vec<u8>]) -> Vec<Outcome> {
    payloads
        .iter()
        .map(|data| {
            let mut b = SampleBatch::new();
            decode_xor_into(data, &mut b)?;
            Ok(b.iter().map(|(t, v)| (t, v.to_bits())).collect())
        })
        .collect()
}

/// The AVX-512 kernel as dispatched, and with every chunk kept in the lanes to the end; none
/// (with a note) where this CPU lacks AVX-512.
#[cfg(target_arch = "x86_64")]
fn avx512_kernels() -> Vec<(&'static str, Kernel)> {
    if !crate::chunk::xor_avx512::available() {
        eprintln!("skipped the AVX-512 arm: this CPU lacks AVX-512 F/CD/BW/DQ/VBMI2");
        return Vec::new();
    }
    vec![
        ("avx512", |jobs, results| {
            // SAFETY: `available` returned true.
            unsafe { crate::chunk::xor_avx512::decode_jobs(jobs, results) }
        }),
        ("avx512 without scalar tail", |jobs, results| {
            // SAFETY: `available` returned true.
            unsafe { crate::chunk::xor_avx512::decode_jobs_tail(jobs, results, 1) }
        }),
    ]
}

/// Chunks the AVX-512 lanes of this thread re-decoded from scratch so far.
#[cfg(target_arch = "x86_64")]
fn redecoded() -> usize {
    crate::chunk::xor_avx512::REDECODED.with(std::cell::Cell::get)
}

#[cfg(not(target_arch = "x86_64"))]
fn redecoded() -> usize {
    0
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_kernels() -> Vec<(&'static str, Kernel)> {
    eprintln!("skipped the AVX-512 arm: not x86-64");
    Vec::new()
}

/// Compares outcomes chunk by chunk, naming the first chunk and sample that differ.
fn same_outcomes(got: &[Outcome], want: &[Outcome], kernel: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (Ok(g), Ok(w)) => {
                let first = g.iter().zip(w).position(|(a, b)| a != b);
                prop_assert!(
                    first.is_none() && g.len() == w.len(),
                    "{kernel}: chunk {k}: {} samples, want {}; first difference at {first:?}: {:?} vs {:?}",
                    g.len(),
                    w.len(),
                    first.map(|i| g[i]),
                    first.map(|i| w[i])
                );
            }
            _ => prop_assert_eq!(
                g.as_ref().err(),
                w.as_ref().err(),
                "{}: chunk {}",
                kernel,
                k
            ),
        }
    }
    Ok(())
}

/// Checks every kernel and both public calls against decoding each chunk alone.
fn check_all(payloads: &[Vec<u8>]) -> Result<(), TestCaseError> {
    let want = one_by_one(payloads);
    same_outcomes(&run_kernel(decode_jobs_scalar, payloads), &want, "scalar")?;
    for (name, k) in avx512_kernels() {
        let before = redecoded();
        same_outcomes(&run_kernel(k, payloads), &want, name)?;
        // Chunks that decode must have been decoded by their lanes, not by the fallback.
        let failed = want.iter().filter(|w| w.is_err()).count();
        prop_assert!(
            redecoded() - before <= failed,
            "lanes gave up on {} chunks, only {failed} are corrupt",
            redecoded() - before
        );
    }

    // decode_xor_many: batches that already hold a sample keep it in front.
    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
    let mut outs = vec![SampleBatch::new(); slices.len() + 1];
    outs.iter_mut().for_each(|b| b.push(-3, 0.5));
    let got = decode_xor_many(&slices, &mut outs);
    let mut want_total: Result<usize, ManyDecodeError> = Ok(0);
    for (k, (o, w)) in outs.iter().zip(&want).enumerate() {
        let bits: Vec<(i64, u64)> = o.iter().map(|(t, v)| (t, v.to_bits())).collect();
        prop_assert_eq!(bits[0], (-3, 0.5f64.to_bits()));
        match w {
            Ok(s) => {
                prop_assert_eq!(&bits[1..], &s[..]);
                if let Ok(total) = &mut want_total {
                    *total += s.len();
                }
            }
            Err(e) => {
                prop_assert_eq!(bits.len(), 1, "a failed chunk leaves its batch alone");
                if want_total.is_ok() {
                    want_total = Err(ManyDecodeError::Chunk {
                        chunk: k,
                        source: e.clone(),
                    });
                }
            }
        }
    }
    prop_assert_eq!(outs.last().map(SampleBatch::len), Some(1));
    prop_assert_eq!(&got, &want_total);

    // decode_xor_many_flat: one batch, per-chunk ends, failed chunks empty.
    let mut flat = SampleBatch::new();
    flat.push(-9, 1.5);
    let mut ends = vec![42];
    let got_flat = decode_xor_many_flat(&slices, &mut flat, &mut ends);
    prop_assert_eq!(got_flat, want_total);
    prop_assert_eq!(ends.len(), payloads.len() + 1);
    let mut start = 1;
    let none = Vec::new();
    for (k, w) in want.iter().enumerate() {
        let end = ends[k + 1];
        let bits: Vec<(i64, u64)> = flat.ts[start..end]
            .iter()
            .zip(&flat.val[start..end])
            .map(|(&t, v)| (t, v.to_bits()))
            .collect();
        prop_assert_eq!(&bits, w.as_ref().unwrap_or(&none));
        start = end;
    }
    prop_assert_eq!(start, flat.len());
    prop_assert_eq!((flat.ts[0], flat.val[0].to_bits()), (-9, 1.5f64.to_bits()));
    Ok(())
}

fn encode(ts: &[i64], bits: &[u64]) -> Vec<u8> {
    let val: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).collect();
    encode_xor(ts, &val)
}

/// Damage to a valid chunk: flip bits of a byte, cut it short, or both.
fn damage(data: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = data.len();
    (
        proptest::option::of((0..len.max(1), 1u8..=255)),
        proptest::option::of(0..=len),
    )
        .prop_map(move |(flip, cut)| {
            let mut d = data.clone();
            if let Some((at, x)) = flip
                && at < d.len()
            {
                d[at] ^= x;
            }
            if let Some(c) = cut {
                d.truncate(c);
            }
            d
        })
}

/// A chunk: encoded from arbitrary samples (up to `max_len`), sometimes damaged.
fn chunk(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    (samples(max_len), 0u8..8).prop_flat_map(|((ts, bits), kind)| {
        let data = encode(&ts, &bits);
        if kind == 0 {
            damage(data).boxed()
        } else {
            Just(data).boxed()
        }
    })
}

/// Arbitrary bytes behind a sample count, so that lanes start on them.
fn garbage() -> impl Strategy<Value = Vec<u8>> {
    (0u16..400, proptest::collection::vec(any::<u8>(), 0..120)).prop_map(|(n, body)| {
        let mut d = n.to_be_bytes().to_vec();
        d.extend(body);
        d
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Sets of up to 40 chunks (more than the 16 lanes, so lanes refill and the tail goes to
    /// the scalar decoder) of 0 to 300 samples, one in eight damaged.
    #[test]
    fn lanes_decode_like_one_chunk_at_a_time(chunks in proptest::collection::vec(chunk(300), 0..40)) {
        check_all(&chunks)?;
    }

    /// Typical chunk lengths (120-ish samples) next to 1- and 2-sample chunks.
    #[test]
    fn lanes_mix_long_and_tiny_chunks(
        chunks in proptest::collection::vec(prop_oneof![chunk(2), chunk(8), (samples(130), Just(())).prop_map(|((ts, bits), ())| encode(&ts, &bits))], 1..60),
    ) {
        check_all(&chunks)?;
    }

    /// Arbitrary bytes, alone and among valid chunks: the same samples or the same error.
    #[test]
    fn lanes_on_arbitrary_bytes(
        chunks in proptest::collection::vec(prop_oneof![garbage(), chunk(150)], 0..40),
    ) {
        check_all(&chunks)?;
    }
}

/// Regular 15 s scrapes with a counter, the common shape, over many lanes.
#[test]
fn lanes_decode_regular_scrapes() {
    let payloads: Vec<Vec<u8>> = (0..50)
        .map(|k| {
            let n = 100 + k * 7;
            let ts: Vec<i64> = (0..n)
                .map(|i| 1_700_000_000_000 + i as i64 * 15_000)
                .collect();
            let bits: Vec<u64> = (0..n)
                .map(|i| ((i * (k + 1)) as f64 * 0.25).to_bits())
                .collect();
            encode(&ts, &bits)
        })
        .collect();
    check_all(&payloads).unwrap();
}

/// Every chunk of every Prometheus-written fixture, decoded as one many-chunk call per file.
#[test]
fn lanes_decode_every_fixture_chunk() {
    let mut files = segment_files(&testdata());
    files.extend(segment_files(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/chunk/testdata/xor-edge-cases"),
    ));
    assert!(files.len() >= 5, "fixture segment files missing: {files:?}");
    let mut chunks = 0;
    for file in &files {
        let payloads: Vec<Vec<u8>> = read_segment(file).into_iter().map(|c| c.data).collect();
        chunks += payloads.len();
        check_all(&payloads).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    }
    assert_eq!(chunks, 800 + 800 + 2400 + 800 + 10053 + 57);
}

#[test]
fn kernel_name_names_the_cpu_path() {
    let name = xor_many_kernel_name();
    assert!(name == "avx512" || name == "scalar", "{name}");
    #[cfg(target_arch = "x86_64")]
    assert_eq!(
        name == "avx512",
        crate::chunk::xor_avx512::available(),
        "dispatch follows the CPU"
    );
}
