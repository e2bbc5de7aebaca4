//! Arbitrary bytes as an XOR chunk payload: the batch decoder and the iterator must agree, never
//! panic, leave the batch untouched on error, and whatever decodes must re-encode to samples
//! that decode the same. The input split at every `0xA5` byte is also decoded as many chunks in
//! one call (on AVX-512 machines, the lanes), both into a batch per chunk and into one flat
//! batch, which must match one call per chunk.

#![no_main]

use gauntlet_engine::chunk::{
    ManyDecodeError, SampleBatch, XorAppender, XorIterator, decode_xor_into, decode_xor_many,
    decode_xor_many_flat, encode_xor,
};
use libfuzzer_sys::fuzz_target;

fn bits(batch: &SampleBatch) -> Vec<(i64, u64)> {
    batch.iter().map(|(t, v)| (t, v.to_bits())).collect()
}

/// Decodes `chunks` in one call and one by one; both must give the same batches and error.
fn check_many(chunks: &[&[u8]]) {
    let mut outs = vec![SampleBatch::new(); chunks.len()];
    let got = decode_xor_many(chunks, &mut outs);
    let mut want: Result<usize, ManyDecodeError> = Ok(0);
    for (k, data) in chunks.iter().enumerate() {
        let mut b = SampleBatch::new();
        match decode_xor_into(data, &mut b) {
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
        assert_eq!(
            bits(&outs[k]),
            bits(&b),
            "chunk {k} decodes differently in a batch"
        );
    }
    assert_eq!(got, want);

    let mut flat = SampleBatch::new();
    let mut ends = Vec::new();
    let got_flat = decode_xor_many_flat(chunks, &mut flat, &mut ends);
    assert_eq!(got_flat, want);
    assert_eq!(ends.len(), chunks.len());
    let mut start = 0;
    for (k, (&end, out)) in ends.iter().zip(&outs).enumerate() {
        let part = SampleBatch {
            ts: flat.ts[start..end].to_vec(),
            val: flat.val[start..end].to_vec(),
        };
        assert_eq!(bits(&part), bits(out), "chunk {k} decodes differently flat");
        start = end;
    }
    assert_eq!(start, flat.len());
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<&[u8]> = data.split(|&b| b == 0xA5).collect();
    check_many(&parts);

    // A marker sample first: decoding appends after it, and on error must leave only it.
    let mut batch = SampleBatch::new();
    batch.push(-1, f64::from_bits(0xdead));
    let res = decode_xor_into(data, &mut batch);

    let mut it_samples = Vec::new();
    let it_res = XorIterator::new(data).and_then(|mut it| {
        while let Some((t, v)) = it.next()? {
            it_samples.push((t, v.to_bits()));
        }
        Ok(())
    });

    match res {
        Ok(n) => {
            assert!(
                it_res.is_ok(),
                "iterator failed where the batch decoder succeeded"
            );
            assert_eq!(batch.len(), n + 1);
            assert_eq!(bits(&batch)[1..], it_samples[..]);

            batch.ts.remove(0);
            batch.val.remove(0);
            let again = encode_xor(&batch.ts, &batch.val);
            let mut redecoded = SampleBatch::new();
            decode_xor_into(&again, &mut redecoded).expect("re-encoded chunk decodes");
            assert_eq!(bits(&redecoded), bits(&batch));

            // Resuming an appender from the payload gives the one-shot encoding.
            let resumed = XorAppender::from_payload(data).expect("decodable payload resumes");
            assert_eq!(resumed.bytes(), &again[..]);
        }
        Err(e) => {
            assert_eq!(bits(&batch), [(-1, 0xdead)]);
            assert_eq!(it_res, Err(e), "iterator and batch decoder disagree");
        }
    }
});
