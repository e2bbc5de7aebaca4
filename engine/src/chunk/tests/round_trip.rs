//! Encode then decode gives back every timestamp and every value bit, through both decoders.

use proptest::prelude::*;

use crate::chunk::xor::{MAX_SAMPLES, xor_num_samples};
use crate::chunk::{
    ChunkError, STALE_NAN_BITS, SampleBatch, XorAppender, XorIterator, decode_xor_into, encode_xor,
};

/// Encodes, decodes both ways, and checks bit identity; returns the payload.
fn assert_round_trip(ts: &[i64], bits: &[u64]) -> Vec<u8> {
    let val: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).collect();
    let data = encode_xor(ts, &val);
    assert_eq!(xor_num_samples(&data), Ok(ts.len()));

    // Decoding appends after what the batch already holds.
    let mut batch = SampleBatch::new();
    batch.push(7, 7.0);
    assert_eq!(decode_xor_into(&data, &mut batch), Ok(ts.len()));
    assert_eq!(&batch.ts[1..], ts);
    let got: Vec<u64> = batch.val[1..].iter().map(|v| v.to_bits()).collect();
    assert_eq!(got, bits);

    let mut it = XorIterator::new(&data).unwrap();
    assert_eq!(it.num_samples(), ts.len());
    for (&t, &b) in ts.iter().zip(bits) {
        let (it_t, it_v) = it.next().unwrap().unwrap();
        assert_eq!((it_t, it_v.to_bits()), (t, b));
    }
    assert_eq!(it.next(), Ok(None));
    data
}

fn special_bits() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(STALE_NAN_BITS),
        Just(f64::NAN.to_bits()),
        Just(0x7ff8_0000_0000_0001),
        Just(0xfff0_0000_0000_0001),
        Just(f64::INFINITY.to_bits()),
        Just(f64::NEG_INFINITY.to_bits()),
        Just((-0.0f64).to_bits()),
        Just(0),
        Just(1),
        Just(u64::MAX),
        Just(f64::MIN_POSITIVE.to_bits()),
        Just(f64::MAX.to_bits()),
    ]
}

/// Values: arbitrary bit patterns, special floats, and gauge-like runs with small changes.
fn values(len: usize) -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        proptest::collection::vec(any::<u64>(), len),
        proptest::collection::vec(special_bits(), len),
        proptest::collection::vec(prop_oneof![special_bits(), any::<u64>()], len),
        // Counters and gauges: few distinct values, small relative changes, repeats.
        proptest::collection::vec((0u32..4, -1000.0f64..1000.0), len).prop_map(|steps| {
            let mut v = 100.0f64;
            steps
                .into_iter()
                .map(|(kind, d)| {
                    match kind {
                        0 => {}
                        1 => v += d.round(),
                        2 => v += d,
                        _ => v *= 1.0 + d / 1e6,
                    }
                    v.to_bits()
                })
                .collect()
        }),
    ]
}

/// Timestamps: arbitrary i64 (any order, any dod bucket), and scrape-like runs with jitter.
fn timestamps(len: usize) -> impl Strategy<Value = Vec<i64>> {
    prop_oneof![
        proptest::collection::vec(any::<i64>(), len),
        proptest::collection::vec(
            prop_oneof![
                Just(i64::MIN),
                Just(i64::MAX),
                Just(0i64),
                -1i64..=1,
                any::<i64>()
            ],
            len
        ),
        (
            any::<i64>(),
            1i64..100_000,
            proptest::collection::vec(-70_000i64..70_000, len)
        )
            .prop_map(|(start, step, jitter)| {
                let mut t = start;
                jitter
                    .into_iter()
                    .map(|j| {
                        t = t
                            .wrapping_add(step)
                            .wrapping_add(if j.abs() < 60_000 { 0 } else { j });
                        t
                    })
                    .collect()
            }),
        // Deltas straddling every delta-of-delta bucket boundary (`docs/formats/tsdb-block.md`).
        (
            -1_700_000_000_000i64..1_800_000_000_000,
            proptest::collection::vec(
                prop_oneof![
                    Just(0i64),
                    Just(8192),
                    Just(-8191),
                    Just(8193),
                    Just(-8192),
                    Just(65536),
                    Just(-65535),
                    Just(65537),
                    Just(-65536),
                    Just(524288),
                    Just(-524287),
                    Just(524289),
                    Just(-524288),
                    Just(i64::MAX),
                    Just(i64::MIN)
                ],
                len
            )
        )
            .prop_map(|(start, dods)| {
                let (mut t, mut d) = (start, 15_000i64);
                dods.into_iter()
                    .map(|dod| {
                        d = d.wrapping_add(dod);
                        t = t.wrapping_add(d);
                        t
                    })
                    .collect()
            }),
    ]
}

pub(super) fn samples(max_len: usize) -> impl Strategy<Value = (Vec<i64>, Vec<u64>)> {
    (0..=max_len).prop_flat_map(|n| (timestamps(n), values(n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_bit_identical((ts, bits) in samples(300)) {
        assert_round_trip(&ts, &bits);
    }

    #[test]
    fn appender_bytes_are_a_valid_chunk_after_every_append((ts, bits) in samples(40)) {
        let mut a = XorAppender::new();
        for i in 0..ts.len() {
            a.append(ts[i], f64::from_bits(bits[i]));
            prop_assert_eq!(a.num_samples(), i + 1);
            let vals: Vec<f64> = bits[..=i].iter().map(|&b| f64::from_bits(b)).collect();
            prop_assert_eq!(a.bytes(), &encode_xor(&ts[..=i], &vals)[..]);
        }
    }

    #[test]
    fn appender_resumed_from_payload_writes_the_same_bytes((ts, bits) in samples(60), cut in 0usize..60) {
        let cut = cut.min(ts.len());
        let vals: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).collect();
        let mut first = encode_xor(&ts[..cut], &vals[..cut]);
        // Stray bytes after the last sample are not part of the chunk.
        first.extend_from_slice(&[0xde, 0xad]);
        let mut a = XorAppender::from_payload(&first).unwrap();
        prop_assert_eq!(a.num_samples(), cut);
        for i in cut..ts.len() {
            a.append(ts[i], vals[i]);
        }
        prop_assert_eq!(a.into_bytes(), encode_xor(&ts, &vals));
    }

    #[test]
    fn seek_finds_first_sample_at_or_after_target(
        (ts, bits) in samples(150),
        first_target in any::<i64>(),
        second_target in any::<i64>(),
        nexts in 0usize..5,
    ) {
        let vals: Vec<f64> = bits.iter().map(|&b| f64::from_bits(b)).collect();
        let data = encode_xor(&ts, &vals);
        let mut it = XorIterator::new(&data).unwrap();
        let mut pos = 0; // index of the next sample `next` would return
        for _ in 0..nexts {
            let got = it.next().unwrap();
            prop_assert_eq!(got.map(|s| s.0), ts.get(pos).copied());
            pos = (pos + 1).min(ts.len());
        }
        // Reference: the current sample if it qualifies, else the first later one that does.
        for target in [first_target, second_target] {
            let cur = pos.checked_sub(1).filter(|_| it.at().is_some());
            let want = match cur {
                Some(c) if ts[c] >= target => Some(c),
                _ => (pos..ts.len()).find(|&i| ts[i] >= target),
            };
            let got = it.seek(target).unwrap();
            match want {
                Some(i) => {
                    prop_assert_eq!(got.map(|(t, v)| (t, v.to_bits())), Some((ts[i], bits[i])));
                    pos = i + 1;
                }
                None => {
                    prop_assert_eq!(got, None);
                    pos = ts.len();
                }
            }
        }
    }
}

#[test]
fn special_floats_round_trip_bit_exactly() {
    let bits = [
        STALE_NAN_BITS,
        1.0f64.to_bits(),
        STALE_NAN_BITS,
        STALE_NAN_BITS,
        f64::NAN.to_bits(),
        0x7ff8_dead_beef_0001,
        0xfff0_0000_0000_0001,
        f64::INFINITY.to_bits(),
        f64::NEG_INFINITY.to_bits(),
        (-0.0f64).to_bits(),
        0.0f64.to_bits(),
        (-0.0f64).to_bits(),
        f64::MIN_POSITIVE.to_bits(),
        1, // smallest subnormal
        f64::MAX.to_bits(),
        f64::MIN.to_bits(),
    ];
    let ts: Vec<i64> = (0..bits.len() as i64)
        .map(|i| 1_735_689_600_000 + i * 15_000)
        .collect();
    assert_round_trip(&ts, &bits);
}

#[test]
fn extreme_timestamps_take_the_64_bit_dod_path() {
    let ts = [
        i64::MIN,
        i64::MAX,
        i64::MIN,
        0,
        -1,
        i64::MAX,
        i64::MAX,
        i64::MIN + 1,
        1,
    ];
    let data = assert_round_trip(&ts, &[0; 9]);
    // Sample 2's dod (i64::MIN - i64::MAX) - (i64::MAX - i64::MIN) wraps to 2: 16-bit bucket;
    // sample 3 needs the 68-bit form, so the payload is longer than 9 one-bit samples.
    assert!(data.len() > 2 + 10 + 8 + 10 + 9);
}

#[test]
fn one_sample_chunk_is_header_varint_raw_value_and_go_trailing_byte() {
    let data = assert_round_trip(&[-1], &[STALE_NAN_BITS]);
    // count 1, zig-zag(-1) = 1, the 8 raw value bytes, and the empty byte Go's writer leaves
    // after whole-byte writes that start aligned.
    assert_eq!(data, [0, 1, 1, 0x7f, 0xf0, 0, 0, 0, 0, 0, 2, 0]);
}

#[test]
fn empty_chunk_is_just_a_zero_count() {
    let data = assert_round_trip(&[], &[]);
    assert_eq!(data, [0, 0]);
    assert_eq!(XorAppender::new().bytes(), &[0, 0]);
}

#[test]
fn repeated_values_and_regular_timestamps_cost_two_bits_per_sample() {
    let ts: Vec<i64> = (0..120).map(|i| i * 15_000).collect();
    let data = assert_round_trip(&ts, &[42.0f64.to_bits(); 120]);
    // header 2 + varint(0) 1 + value 8 + uvarint(15000) 2 + 1 bit + 118 × 2 bits.
    assert_eq!(data.len(), 2 + 1 + 8 + 2 + (1 + 118 * 2usize).div_ceil(8));
}

#[test]
fn chunk_of_65535_samples_round_trips_and_is_full() {
    let n = MAX_SAMPLES;
    let ts: Vec<i64> = (0..n as i64).map(|i| i * 1000 + (i % 7) * 13).collect();
    let bits: Vec<u64> = (0..n as u64)
        .map(|i| (i as f64 * 0.25).sin().to_bits())
        .collect();
    let data = assert_round_trip(&ts, &bits);
    assert_eq!(&data[..2], &[0xff, 0xff]);

    let mut a = XorAppender::from_payload(&data).unwrap();
    assert!(a.is_full());
    assert_eq!(
        a.try_append(0, 0.0),
        Err(ChunkError::TooManySamples { max: MAX_SAMPLES })
    );
    assert_eq!(a.bytes(), &data[..]);
}

#[test]
#[should_panic(expected = "already holds")]
fn append_beyond_65535_samples_panics() {
    let mut a = XorAppender::new();
    for i in 0..=MAX_SAMPLES as i64 {
        a.append(i, 0.0);
    }
}

#[test]
fn value_with_more_than_31_leading_zeros_is_clamped_and_round_trips() {
    // 1.0 XOR next has 50+ leading zeros; the 5-bit field holds 31 and the rest is significant.
    let bits = [
        1.0f64.to_bits(),
        1.0f64.to_bits() ^ 1,
        1.0f64.to_bits() ^ 3,
        1.0f64.to_bits(),
    ];
    assert_round_trip(&[0, 1, 2, 3], &bits);
}
