//! Native histograms in the head: append rules, type switches, stale markers, replay from the
//! WAL, and the cut into a block.

use super::*;
use crate::histogram::{CounterResetHint, Histogram, Span};
use crate::labels::hash_pairs;
use crate::shard::IoChoice;
use crate::wal::WalReader;

fn runtime(cores: usize) -> Arc<HeadRuntime> {
    HeadRuntime::start(&RuntimeConfig {
        cores,
        io: IoChoice::Pread,
        pin: false,
        name: "test-head-hist".into(),
    })
    .unwrap()
}

fn opts() -> HeadOptions {
    HeadOptions {
        block_duration_ms: 3_600_000,
        ..HeadOptions::default()
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(crate::labels::MatchType::Equal, name, value).unwrap()
}

/// A counter histogram that has seen `n` more observations than at n = 0, spread over three
/// buckets; with `custom`, over custom bounds.
pub(super) fn hist(n: u64, custom: bool) -> Histogram {
    let (a, b) = (n, 2 * n);
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: if custom { -53 } else { 1 },
        zero_threshold: if custom { 0.0 } else { 0.001 },
        zero_count: if custom { 0 } else { 1 },
        count: a + b + 3 + u64::from(!custom),
        sum: (n as f64) * 1.5 + 2.0,
        positive_spans: vec![Span::new(0, 2), Span::new(1, 1)],
        negative_spans: vec![],
        positive_buckets: vec![a as i64 + 1, b as i64 - a as i64, -(b as i64)],
        negative_buckets: vec![],
        custom_values: if custom {
            vec![0.1, 0.5, 1.0, 5.0].into()
        } else {
            Default::default()
        },
    }
}

/// One series `name` with the given floats and histograms.
fn batch(
    head: &Head,
    name: &str,
    floats: &[(i64, f64)],
    hists: &[(i64, HistogramValue)],
) -> Vec<AppendBatch> {
    let mut out = vec![AppendBatch::new(); head.cores()];
    let pairs = [("__name__", name), ("job", "t")];
    let hash = hash_pairs(pairs);
    out[head.route(hash)].push_series_with_histograms(
        hash,
        pairs,
        floats.iter().copied(),
        hists.iter().cloned(),
    );
    out
}

fn select(head: &Head, name: &str) -> Series {
    let mut got = head
        .select(
            &[eq("__name__", name)],
            0,
            i64::MAX,
            &SelectHints::default(),
        )
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    got.remove(0)
}

#[test]
fn histograms_append_query_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let (head, _) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    let t0 = 10_000_000;
    let ints: Vec<(i64, HistogramValue)> = (0..30)
        .map(|i| (t0 + i * 15_000, HistogramValue::Int(hist(i as u64, false))))
        .collect();
    let r = block_on(head.append(batch(&head, "h", &[], &ints))).unwrap();
    assert_eq!(
        (r.appended, r.appended_histograms, r.new_series),
        (30, 30, 1)
    );
    // Float histograms with custom buckets in another series.
    let floats: Vec<(i64, HistogramValue)> = (0..20)
        .map(|i| {
            let mut f = hist(i as u64, true).to_float();
            f.sum += 0.25;
            (t0 + i * 15_000, HistogramValue::Float(f))
        })
        .collect();
    block_on(head.append(batch(&head, "nhcb", &[], &floats))).unwrap();

    let s = select(&head, "h");
    assert!(s.samples.is_empty());
    assert_eq!(s.histograms.len(), 30);
    assert_eq!(s.histograms.ts[3], t0 + 45_000);
    let want = hist(3, false).to_float();
    assert_eq!(s.histograms.h[3].count, want.count);
    assert_eq!(s.histograms.h[3].positive_buckets, want.positive_buckets);
    let nhcb = select(&head, "nhcb");
    assert_eq!(nhcb.histograms.len(), 20);
    assert_eq!(&*nhcb.histograms.h[5].custom_values, &[0.1, 0.5, 1.0, 5.0]);
    assert_eq!(nhcb.histograms.h[5].sum, 5.0 * 1.5 + 2.25);

    // Same timestamp: the same histogram is a duplicate, another one a conflict; older is out
    // of order; a float at a histogram's timestamp is a conflict too.
    let last = ints[29].clone();
    let other = (last.0, HistogramValue::Int(hist(99, false)));
    let older = (t0, HistogramValue::Int(hist(0, false)));
    let r =
        block_on(head.append(batch(&head, "h", &[(last.0, 1.0)], &[last, other, older]))).unwrap();
    assert_eq!(
        (
            r.duplicates,
            r.duplicate_timestamp,
            r.out_of_order,
            r.appended
        ),
        (1, 2, 1, 0)
    );
    let mut bad = hist(1, false);
    bad.count = 1;
    let r = block_on(head.append(batch(
        &head,
        "h",
        &[],
        &[(t0 + 30 * 15_000, HistogramValue::Int(bad))],
    )))
    .unwrap();
    assert_eq!(r.invalid_histograms, 1);

    let before = (select(&head, "h"), select(&head, "nhcb"));
    drop(head);
    let (head, rep) = Head::open(rt, dir.path(), opts()).unwrap();
    assert_eq!((rep.samples, rep.dropped, rep.skipped_records), (50, 0, 0));
    assert_eq!((select(&head, "h"), select(&head, "nhcb")), before);
}

#[test]
fn switching_kinds_starts_new_chunks_and_stale_markers_follow_the_kind() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(1);
    let (head, _) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    let t = |i: i64| 20_000_000 + i * 10_000;
    let h = |i: i64| HistogramValue::Int(hist(i as u64, false));
    let fh = |i: i64| HistogramValue::Float(hist(i as u64, false).to_float());
    block_on(head.append(batch(&head, "m", &[(t(0), 1.0), (t(1), 2.0)], &[]))).unwrap();
    block_on(head.append(batch(&head, "m", &[], &[(t(2), h(2)), (t(3), h(3))]))).unwrap();
    block_on(head.append(batch(&head, "m", &[(t(4), 4.0)], &[]))).unwrap();
    block_on(head.append(batch(&head, "m", &[], &[(t(5), fh(5)), (t(6), h(6))]))).unwrap();
    // A float stale marker after a histogram is a histogram stale marker.
    let stale = f64::from_bits(crate::chunk::STALE_NAN_BITS);
    let r = block_on(head.append(batch(&head, "m", &[(t(7), stale)], &[]))).unwrap();
    assert_eq!(r.appended_histograms, 1);
    let s = select(&head, "m");
    assert_eq!(s.samples.ts, [t(0), t(1), t(4)]);
    assert_eq!(s.histograms.ts, [t(2), t(3), t(5), t(6), t(7)]);
    assert!(s.histograms.h[4].is_stale());
    assert!(!s.histograms.h[3].is_stale());
    // Replay keeps each series' kinds in log order.
    drop(head);
    let (head, rep) = Head::open(rt, dir.path(), opts()).unwrap();
    assert_eq!((rep.samples, rep.dropped), (8, 0));
    assert_eq!(format!("{:?}", select(&head, "m")), format!("{s:?}"));

    // The block holds one chunk per run of a kind: XOR, int, XOR, float, int (stale included).
    let meta = head
        .cut_block(0, 2 * 20_000_000, None, |_| {})
        .unwrap()
        .expect("a block");
    assert_eq!(meta.stats.num_float_samples, 3);
    assert_eq!(meta.stats.num_histogram_samples, 5);
    assert_eq!(meta.stats.num_chunks, 5);
    let block = crate::block::reader::block_dirs(dir.path()).unwrap();
    assert_eq!(block.len(), 1);
}

#[test]
fn out_of_order_histograms_are_kept_logged_to_the_wbl_replayed_and_cut_into_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let o = HeadOptions {
        ooo_window_ms: 3_600_000,
        ..opts()
    };
    let (head, _) = Head::open(rt.clone(), dir.path(), o.clone()).unwrap();
    let t = |i: i64| 30_000_000 + i * 10_000;
    let int = |i: i64| HistogramValue::Int(hist(i as u64, false));
    let float = |i: i64| {
        let mut f = hist(i as u64, true).to_float();
        f.sum += 0.5;
        HistogramValue::Float(f)
    };
    // Even steps in order, then the odd ones, newest first: the newest is in order, the rest
    // out of order.
    let even = |v: &dyn Fn(i64) -> HistogramValue| {
        (0..20).step_by(2).map(|i| (t(i), v(i))).collect::<Vec<_>>()
    };
    let odd = |v: &dyn Fn(i64) -> HistogramValue| {
        (0..10)
            .rev()
            .map(|k| (t(2 * k + 1), v(2 * k + 1)))
            .collect::<Vec<_>>()
    };
    block_on(head.append(batch(&head, "int", &[], &even(&int)))).unwrap();
    block_on(head.append(batch(&head, "nhcb", &[], &even(&float)))).unwrap();
    let r = block_on(head.append(batch(&head, "int", &[], &odd(&int)))).unwrap();
    assert_eq!(
        (r.appended, r.appended_ooo, r.appended_histograms),
        (1, 9, 10)
    );
    let r = block_on(head.append(batch(&head, "nhcb", &[], &odd(&float)))).unwrap();
    assert_eq!((r.appended_ooo, r.appended_histograms), (9, 10));
    // At a held timestamp: the same histogram is a duplicate, another one or a float a
    // conflict; an invalid one is refused; before the window, too old.
    let mut bad = hist(3, false);
    bad.count = 1;
    let r = block_on(head.append(batch(
        &head,
        "int",
        &[(t(5), 1.0)],
        &[
            (t(5), int(5)),
            (t(4), int(4)),
            (t(7), int(8)),
            (t(2), int(3)),
            (t(-1), HistogramValue::Int(bad)),
            (t(-400), int(0)),
        ],
    )))
    .unwrap();
    assert_eq!(
        (
            r.duplicates,
            r.duplicate_timestamp,
            r.invalid_histograms,
            r.too_old,
            r.appended_ooo
        ),
        (2, 3, 1, 1, 0),
        "{r:?}"
    );
    let all = |v: &dyn Fn(i64) -> HistogramValue| {
        (0..20).map(|i| (t(i), v(i).to_float())).collect::<Vec<_>>()
    };
    // Compared without the counter-reset hints, which chunk headers set.
    let held = |head: &Head, name: &str| {
        let s = select(head, name);
        s.histograms
            .ts
            .iter()
            .copied()
            .zip(
                s.histograms
                    .h
                    .into_iter()
                    .map(|h| crate::histogram::FloatHistogram {
                        counter_reset_hint: CounterResetHint::Unknown,
                        ..h
                    }),
            )
            .collect::<Vec<_>>()
    };
    assert_eq!(held(&head, "int"), all(&int));
    assert_eq!(held(&head, "nhcb"), all(&float));

    // The WBL holds them as histogram records (7 integer, 10 float with custom buckets).
    let mut types = std::collections::BTreeMap::new();
    let mut r = WalReader::open(&dir.path().join("wbl")).unwrap();
    while let Ok(Some(rec)) = r.next() {
        *types.entry(rec[0]).or_insert(0) += 1;
    }
    assert_eq!(
        types.keys().copied().collect::<Vec<_>>(),
        [7, 10],
        "{types:?}"
    );

    // Replayed from the WAL and WBL, as written.
    drop(head);
    let (head, rep) = Head::open(rt, dir.path(), o).unwrap();
    assert_eq!(
        (rep.samples, rep.wbl_samples, rep.dropped),
        (40, 18, 0),
        "{rep:?}"
    );
    assert_eq!(held(&head, "int"), all(&int));
    assert_eq!(held(&head, "nhcb"), all(&float));

    // The block holds every histogram, in-order and out-of-order merged into chunks.
    let meta = head
        .cut_block(0, 2 * 30_000_000, None, |_| {})
        .unwrap()
        .expect("a block");
    assert_eq!(meta.stats.num_histogram_samples, 40);
    drop(head);
    let only = tempfile::tempdir().unwrap();
    std::fs::rename(
        dir.path().join(meta.ulid.to_string()),
        only.path().join(meta.ulid.to_string()),
    )
    .unwrap();
    let blocks = crate::query::LocalBlocks::open(only.path()).unwrap();
    for (name, want) in [("int", all(&int)), ("nhcb", all(&float))] {
        let got = blocks
            .select(
                &[eq("__name__", name)],
                0,
                i64::MAX,
                &SelectHints::default(),
            )
            .unwrap();
        assert_eq!(got.len(), 1);
        let h = &got[0].histograms;
        let got: Vec<(i64, crate::histogram::FloatHistogram)> =
            h.ts.iter().copied().zip(h.h.iter().cloned()).collect();
        assert_eq!(got.len(), want.len(), "{name}");
        for ((gt, gh), (wt, wh)) in got.iter().zip(&want) {
            assert_eq!(gt, wt, "{name}");
            let gh = crate::histogram::FloatHistogram {
                counter_reset_hint: wh.counter_reset_hint,
                ..gh.clone()
            };
            assert!(gh.identical(wh), "{name} at {gt}: {gh:?} != {wh:?}");
        }
    }
}
