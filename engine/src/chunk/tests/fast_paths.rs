//! The decoder's fast paths against its careful path: the BMI2 build of the fast loop against
//! its portable twin on arbitrary bytes and states, the batch decoder against sample-by-sample
//! decoding (same samples, same error) on valid and damaged chunks, and the many-chunk call
//! against one call per chunk.

use proptest::prelude::*;

use super::round_trip::samples;
use crate::chunk::xor::decode_careful;
use crate::chunk::xor_fast::{RunState, fast_run_portable};
use crate::chunk::{ManyDecodeError, SampleBatch, decode_xor_into, decode_xor_many, encode_xor};

fn encode(ts: &[i64], bits: &[u64]) -> Vec<u8> {
    let val: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).collect();
    encode_xor(ts, &val)
}

fn batch_bits(b: &SampleBatch) -> Vec<(i64, u64)> {
    b.iter().map(|(t, v)| (t, v.to_bits())).collect()
}

/// Damage to a valid chunk: flip a byte, cut it short, or both.
#[derive(Debug, Clone)]
struct Damage {
    flip_at: Option<(usize, u8)>,
    cut: Option<usize>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (
        proptest::option::of((any::<usize>(), 1u8..=255)),
        proptest::option::of(any::<usize>()),
    )
        .prop_map(|(flip_at, cut)| Damage { flip_at, cut })
}

fn apply(mut data: Vec<u8>, d: &Damage) -> Vec<u8> {
    if let Some((at, x)) = d.flip_at
        && !data.is_empty()
    {
        let i = at % data.len();
        data[i] ^= x;
    }
    if let Some(c) = d.cut {
        data.truncate(c % (data.len() + 1));
    }
    data
}

/// A build of the fast loop.
type FastRun = fn(&[u8], usize, &mut RunState, &mut [i64], &mut [f64]) -> usize;

/// Runs one build of the fast loop and returns what it wrote and the state it reached.
fn run(
    f: FastRun,
    buf: &[u8],
    end_bits: usize,
    st: RunState,
    n: usize,
) -> (Vec<(i64, u64)>, RunState) {
    let mut st = st;
    let mut ts = vec![0; n];
    let mut val = vec![0.0; n];
    let got = f(buf, end_bits, &mut st, &mut ts, &mut val);
    let out = ts[..got]
        .iter()
        .zip(&val[..got])
        .map(|(&t, v)| (t, v.to_bits()))
        .collect();
    (out, st)
}

fn run_state() -> impl Strategy<Value = RunState> {
    (
        0usize..64,
        any::<i64>(),
        any::<u64>(),
        any::<u64>(),
        0u32..64,
        1u32..=64,
    )
        .prop_map(|(pos, t, t_delta, v_bits, trailing, sig)| RunState {
            pos,
            t,
            t_delta,
            v_bits,
            trailing,
            sig,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn bmi2_fast_loop_matches_its_portable_twin(
        buf in proptest::collection::vec(any::<u8>(), 0..200),
        st in run_state(),
        n in 0usize..100,
        end_cut in any::<usize>(),
    ) {
        use crate::chunk::xor_fast::bmi2;
        prop_assume!(bmi2::available());
        let end_bits = end_cut % (buf.len() * 8 + 1);
        // SAFETY: the kernel needs BMI2, and `available` returned true above.
        let fast: FastRun =
            |b, e, s, t, v| unsafe { bmi2::fast_run_bmi2::<false>(b, e, s, t, v) };
        // SAFETY: as above, BMI2 is available.
        let fast_end: FastRun =
            |b, e, s, t, v| unsafe { bmi2::fast_run_bmi2::<true>(b, e, s, t, v) };
        prop_assert_eq!(
            run(fast, &buf, end_bits, st, n),
            run(fast_run_portable::<false>, &buf, end_bits, st, n)
        );
        prop_assert_eq!(
            run(fast_end, &buf, end_bits, st, n),
            run(fast_run_portable::<true>, &buf, end_bits, st, n)
        );
    }

    #[test]
    fn batch_decode_matches_sample_by_sample_decode((ts, bits) in samples(300), d in damage()) {
        let data = apply(encode(&ts, &bits), &d);
        let mut b = SampleBatch::new();
        let got = decode_xor_into(&data, &mut b).map(|_| batch_bits(&b));
        prop_assert_eq!(got, decode_careful(&data));
    }

    #[test]
    fn many_chunks_decode_as_one_call_each(
        chunks in proptest::collection::vec((samples(150), damage(), any::<bool>()), 0..12),
    ) {
        let payloads: Vec<Vec<u8>> = chunks
            .iter()
            .map(|((ts, bits), d, damaged)| {
                let data = encode(ts, bits);
                if *damaged { apply(data, d) } else { data }
            })
            .collect();
        let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        // Batches that already hold a sample: decoding appends after it.
        let mut outs = vec![SampleBatch::new(); slices.len()];
        outs.iter_mut().for_each(|b| b.push(-3, 0.5));
        let got = decode_xor_many(&slices, &mut outs);

        let mut want_outs = outs.clone();
        want_outs.iter_mut().for_each(|b| {
            b.clear();
            b.push(-3, 0.5);
        });
        let mut want: Result<usize, ManyDecodeError> = Ok(0);
        for (k, data) in slices.iter().enumerate() {
            match decode_xor_into(data, &mut want_outs[k]) {
                Ok(n) => {
                    if let Ok(total) = &mut want {
                        *total += n;
                    }
                }
                Err(source) => {
                    if want.is_ok() {
                        want = Err(ManyDecodeError::Chunk { chunk: k, source });
                    }
                }
            }
        }
        prop_assert_eq!(got, want);
        for (o, w) in outs.iter().zip(&want_outs) {
            prop_assert_eq!(batch_bits(o), batch_bits(w));
        }
    }
}

#[test]
fn many_chunks_need_one_batch_each() {
    let data = encode(&[1, 2], &[1.0f64.to_bits(), 2.0f64.to_bits()]);
    let mut outs = vec![SampleBatch::new()];
    assert_eq!(
        decode_xor_many(&[&data, &data], &mut outs),
        Err(ManyDecodeError::TooFewOutputs { chunks: 2, outs: 1 })
    );
    assert!(outs[0].is_empty());
    let mut outs = vec![SampleBatch::new(); 3];
    assert_eq!(decode_xor_many(&[&data, &data], &mut outs), Ok(4));
    assert_eq!(outs[1].ts, [1, 2]);
    assert!(outs[2].is_empty());
}
