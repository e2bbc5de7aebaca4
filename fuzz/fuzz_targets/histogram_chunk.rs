//! Arbitrary bytes as an integer native histogram chunk payload (encoding 2): the whole-chunk
//! decoder, the iterator and an appender resumed from the payload must agree, never panic and
//! never allocate for counts the payload cannot hold. Whatever decodes must re-encode to
//! samples that decode the same, `seek` must find every sample, and the resumed appender must
//! take one more sample.

#![no_main]

use gauntlet_engine::chunk::{
    HistogramAppend, HistogramAppender, HistogramIterator, decode_histogram_chunk,
};
use gauntlet_engine::histogram::{FloatHistogram, Histogram};
use libfuzzer_sys::fuzz_target;

fn same(a: &[(i64, Histogram)], b: &[(i64, Histogram)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && x.1.identical(&y.1))
}

/// The samples with a zero threshold and custom bounds of -0 made 0.
fn unsigned_zeros(samples: &[(i64, Histogram)]) -> Vec<(i64, Histogram)> {
    let plus = |v: f64| if v == 0.0 { 0.0 } else { v };
    samples
        .iter()
        .map(|(t, h)| {
            let mut h = h.clone();
            h.zero_threshold = plus(h.zero_threshold);
            h.custom_values = h.custom_values.iter().map(|&b| plus(b)).collect();
            (*t, h)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let decoded = decode_histogram_chunk(data);

    // The iterator, step by step, reads the same samples and fails the same way; the float
    // view of each sample is the integer one read as PromQL reads it (absolute counts).
    let mut it_samples = Vec::new();
    let it_res = HistogramIterator::new(data).and_then(|mut it| {
        let mut f = FloatHistogram::default();
        while let Some((t, h)) = it.next()? {
            it.float_histogram_into(&mut f);
            assert!(f.identical(&h.to_float_from_counts()), "float view differs at {t}");
            it_samples.push((t, h));
        }
        Ok(())
    });
    let resumed = HistogramAppender::from_payload(data);

    let samples = match (decoded, it_res) {
        (Ok(s), Ok(())) => s,
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "decoder and iterator fail differently");
            assert_eq!(resumed.unwrap_err(), a, "resuming fails differently");
            return;
        }
        (a, b) => panic!("decoder {:?} but iterator {b:?}", a.map(|s| s.len())),
    };
    assert!(same(&samples, &it_samples), "decoder and iterator disagree");

    // What an appender resumed from the payload writes decodes to the same samples.
    let mut app = resumed.expect("a payload that decodes resumes");
    assert_eq!(app.num_samples(), samples.len());
    // The layout writes a zero threshold or custom bound of -0 as 0, as Prometheus does.
    let again = decode_histogram_chunk(app.bytes()).expect("re-encoded chunk decodes");
    assert!(
        same(&again, &unsigned_zeros(&samples)),
        "re-encoded chunk decodes differently"
    );

    // Seeking to each of the first samples' timestamps finds it (timestamps need not grow in a
    // corrupt chunk, so only the first occurrence at or after is checked).
    for (k, (t, _)) in samples.iter().enumerate().take(8) {
        let mut it = HistogramIterator::new(data).unwrap();
        let found = it.seek(*t).unwrap();
        let want = samples.iter().map(|s| s.0).find(|&x| x >= *t);
        assert_eq!(found, want, "seek({t}) from sample {k}");
    }

    // One more sample: the last one again, a millisecond later. A valid sample equal to the
    // last fits without a new chunk, unless its zero threshold is NaN (which equals nothing,
    // so the chunk's layout does not match).
    if let Some((t, last)) = samples.last() {
        let next = t.checked_add(1).unwrap_or(*t);
        let r = app.append(None, next, last);
        let fits = !last.is_stale() && !last.zero_threshold.is_nan() && last.validate().is_ok();
        if fits && samples.len() < 65_535 {
            match r {
                Ok(HistogramAppend::Appended) => {}
                r => panic!("the last sample again: {r:?}"),
            }
        }
    }
});
