//! Corrupt payloads: every decoder returns an error (never panics), leaves the batch as it was,
//! and allocates no more than the payload's size justifies.

use proptest::prelude::*;

use super::{read_segment, segment_files, testdata};
use crate::chunk::{
    ChunkError, SampleBatch, XorAppender, XorIterator, decode_xor_into, encode_xor,
};

/// A batch holding one marker sample, to check that failed decodes leave it untouched.
fn marked_batch() -> SampleBatch {
    let mut b = SampleBatch::new();
    b.push(-5, f64::from_bits(0x1234));
    b
}

fn assert_untouched(b: &SampleBatch) {
    assert_eq!(b.ts, [-5]);
    assert_eq!(b.val.len(), 1);
    assert_eq!(b.val[0].to_bits(), 0x1234);
}

/// Decodes `data` both ways; both must agree on success and on the decoded samples.
fn decode_both(data: &[u8]) -> Result<SampleBatch, ChunkError> {
    let mut batch = marked_batch();
    let res = decode_xor_into(data, &mut batch);
    let mut it_samples = Vec::new();
    let it_res = XorIterator::new(data).and_then(|mut it| {
        while let Some(s) = it.next()? {
            it_samples.push(s);
        }
        Ok(())
    });
    match res {
        Ok(n) => {
            assert!(
                it_res.is_ok(),
                "iterator failed where batch decode succeeded"
            );
            assert_eq!(batch.len(), n + 1);
            let batch_bits: Vec<_> = batch
                .iter()
                .skip(1)
                .map(|(t, v)| (t, v.to_bits()))
                .collect();
            let it_bits: Vec<_> = it_samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
            assert_eq!(batch_bits, it_bits);
            batch.ts.remove(0);
            batch.val.remove(0);
            Ok(batch)
        }
        Err(e) => {
            assert_untouched(&batch);
            assert_eq!(it_res, Err(e.clone()), "iterator and batch decode disagree");
            Err(e)
        }
    }
}

fn edge_chunks() -> Vec<Vec<u8>> {
    let ts = [i64::MIN, 5, 6, 100_000, i64::MAX, 7, 8, 9, 1 << 40];
    let vals = [
        0.0,
        f64::NAN,
        1.5,
        -0.0,
        f64::INFINITY,
        3.25,
        3.25,
        1e300,
        -7.0,
    ];
    let mut out = vec![encode_xor(&ts, &vals)];
    for n in 1..=4 {
        out.push(encode_xor(&ts[..n], &vals[..n]));
    }
    out
}

/// Cutting a chunk anywhere loses data bits, so every prefix shorter than the sample bits is
/// rejected. (Go's writer may leave one empty byte at the end; cutting only that is harmless.)
#[test]
fn every_truncation_of_a_chunk_is_an_error() {
    let mut chunks = edge_chunks();
    let files = segment_files(&testdata().join("promtool-200series-2h"));
    chunks.extend(read_segment(&files[0]).into_iter().take(20).map(|c| c.data));
    for data in &chunks {
        assert!(decode_both(data).is_ok());
        let shortest_ok = (0..=data.len())
            .find(|&cut| decode_both(&data[..cut]).is_ok())
            .unwrap();
        assert!(
            shortest_ok + 1 >= data.len(),
            "decodes when cut to {shortest_ok} of {}",
            data.len()
        );
        if shortest_ok < data.len() {
            assert_eq!(data.last(), Some(&0));
        }
        for cut in 0..shortest_ok {
            let err = decode_both(&data[..cut]).expect_err("truncated chunk decoded");
            if cut < 2 {
                assert_eq!(err, ChunkError::MissingHeader { len: cut });
            } else {
                assert!(
                    matches!(err, ChunkError::Truncated { .. }),
                    "cut {cut}: {err:?}"
                );
            }
            assert!(XorAppender::from_payload(&data[..cut]).is_err());
        }
    }
}

#[test]
fn truncation_error_names_the_sample_and_bit() {
    let data = encode_xor(&[1, 2, 3], &[1.0, 2.0, 3.0]);
    let err = decode_both(&data[..data.len() - 1]).unwrap_err();
    match err {
        ChunkError::Truncated {
            sample,
            num_samples,
            bit_offset,
            bit_len,
        } => {
            assert_eq!(num_samples, 3);
            assert_eq!(sample, 2);
            assert_eq!(bit_len, (data.len() as u64 - 1) * 8);
            assert!(bit_offset > bit_len);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn huge_sample_count_with_tiny_payload_fails_without_a_huge_reserve() {
    for data in [
        &[0xff, 0xff][..],
        &[0xff, 0xff, 0],
        &[0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ] {
        let mut batch = SampleBatch::new();
        let err = decode_xor_into(data, &mut batch).unwrap_err();
        assert!(matches!(err, ChunkError::Truncated { .. }), "{err:?}");
        assert!(batch.is_empty());
        assert!(
            batch.ts.capacity() <= 64,
            "reserved {}",
            batch.ts.capacity()
        );
    }
    // 11 bytes of zeros after a valid first sample: each later sample takes 2 bits at least.
    let mut data = encode_xor(&[1], &[1.0]);
    data[..2].copy_from_slice(&[0xff, 0xff]);
    data.extend_from_slice(&[0; 11]);
    let mut batch = SampleBatch::new();
    assert!(decode_xor_into(&data, &mut batch).is_err());
    assert!(
        batch.ts.capacity() < 200,
        "reserved {}",
        batch.ts.capacity()
    );
}

#[test]
fn overlong_varint_timestamp_is_an_invalid_varint() {
    let mut data = vec![0, 1];
    data.extend_from_slice(&[0xff; 11]);
    assert_eq!(
        decode_both(&data),
        Err(ChunkError::InvalidVarint {
            sample: 0,
            byte_offset: 2
        })
    );
}

#[test]
fn value_header_wider_than_64_bits_is_rejected() {
    // Sample 1: delta 1, then `11`, leading 31, sigbits 40 (31 + 40 > 64).
    // Count 2, t0 = 0, v0 = 0.0, delta 1.
    let mut data = vec![0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let header: u16 = (0b11 << 14) | (31 << 9) | (40 << 3);
    data.extend_from_slice(&header.to_be_bytes());
    data.extend_from_slice(&[0; 8]);
    assert!(matches!(
        decode_both(&data),
        Err(ChunkError::InvalidValueHeader {
            sample: 1,
            leading: 31,
            significant: 40,
            ..
        })
    ));
}

#[test]
fn iterator_repeats_its_error() {
    let data = encode_xor(&[1, 2, 3], &[1.0, 2.0, 3.0]);
    let mut it = XorIterator::new(&data[..data.len() - 1]).unwrap();
    let err = loop {
        match it.next() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("truncated chunk iterated to the end"),
            Err(e) => break e,
        }
    };
    assert_eq!(it.next(), Err(err.clone()));
    assert_eq!(it.seek(i64::MIN), Err(err));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_both(&data);
    }

    #[test]
    fn random_bytes_after_a_small_count_never_panic(count in 0u16..40, rest in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut data = count.to_be_bytes().to_vec();
        data.extend_from_slice(&rest);
        if let Ok(batch) = decode_both(&data) {
            // Whatever decodes re-encodes to samples that decode the same.
            let again = encode_xor(&batch.ts, &batch.val);
            let redecoded = decode_both(&again).unwrap();
            prop_assert_eq!(&redecoded.ts, &batch.ts);
            let a: Vec<u64> = redecoded.val.iter().map(|v| v.to_bits()).collect();
            let b: Vec<u64> = batch.val.iter().map(|v| v.to_bits()).collect();
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn flipped_bits_in_real_chunks_never_panic(idx in 0usize..800, flips in proptest::collection::vec((any::<usize>(), 0u8..8), 1..4)) {
        let chunks = fixture_chunks();
        let mut data = chunks[idx % chunks.len()].clone();
        for (pos, bit) in flips {
            let i = pos % data.len();
            data[i] ^= 1 << bit;
        }
        let _ = decode_both(&data);
    }
}

fn fixture_chunks() -> &'static [Vec<u8>] {
    static CHUNKS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    CHUNKS.get_or_init(|| {
        let files = segment_files(&testdata().join("promtool-200series-2h"));
        read_segment(&files[0])
            .into_iter()
            .map(|c| c.data)
            .collect()
    })
}
