//! The head's exemplars: stored with the samples, logged to the WAL as Prometheus's
//! exemplars records, replayed at open, kept through a checkpoint.

use super::*;
use crate::labels::hash_pairs;
use crate::shard::IoChoice;

fn runtime(cores: usize) -> Arc<HeadRuntime> {
    HeadRuntime::start(&RuntimeConfig {
        cores,
        io: IoChoice::Pread,
        pin: false,
        name: "test-head-ex".into(),
    })
    .unwrap()
}

fn opts(max_exemplars: u64) -> HeadOptions {
    HeadOptions {
        block_duration_ms: 3_600_000,
        max_exemplars,
        ..HeadOptions::default()
    }
}

/// `series` series of one sample at `t` each, each with one exemplar (trace `t-i`, value i).
fn batches(head: &Head, series: usize, t: i64) -> Vec<AppendBatch> {
    let mut out = vec![AppendBatch::new(); head.cores()];
    for i in 0..series {
        let v = format!("{i:03}");
        let pairs = [("__name__", "m"), ("i", v.as_str())];
        let hash = hash_pairs(pairs);
        let b = &mut out[head.route(hash)];
        b.push_series(hash, pairs, [(t, i as f64)]);
        b.push_exemplars([Exemplar {
            labels: Labels::from_pairs([("trace_id", format!("{t}-{i}"))]),
            value: i as f64,
            ts: t,
        }]);
    }
    out
}

fn all() -> Vec<Vec<Matcher>> {
    vec![vec![Matcher::equal("__name__", "m")]]
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

#[test]
fn exemplars_are_stored_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let (head, _) = Head::open(rt.clone(), dir.path(), opts(100)).unwrap();
    let r = block_on(head.append(batches(&head, 10, 1_000))).unwrap();
    assert_eq!(r.exemplars_appended, 10);
    let r = block_on(head.append(batches(&head, 10, 2_000))).unwrap();
    assert_eq!(r.exemplars_appended, 10);
    // The same again: duplicates, ignored; older: out of order.
    let r = block_on(head.append(batches(&head, 10, 2_000))).unwrap();
    assert_eq!((r.exemplars_appended, r.exemplars_out_of_order), (0, 0));
    let r = block_on(head.append(batches(&head, 10, 1_500))).unwrap();
    assert_eq!(r.exemplars_out_of_order, 10);
    let before = head.select_exemplars(0, i64::MAX, &all());
    assert_eq!(before.len(), 10);
    assert_eq!(before[3].exemplars.len(), 2);
    assert_eq!(
        before[3].exemplars[1].labels,
        Labels::from_pairs([("trace_id", "2000-3")])
    );
    head.sync_wal().unwrap();
    drop(head);

    let (head, rep) = Head::open(rt, dir.path(), opts(100)).unwrap();
    assert_eq!((rep.exemplars, rep.dropped_exemplars), (20, 0));
    assert_eq!(head.select_exemplars(0, i64::MAX, &all()), before);
    assert_eq!(head.exemplar_stats().exemplars, 20);
}

#[test]
fn replay_keeps_the_newest_exemplars_the_store_has_room_for() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(1);
    let (head, _) = Head::open(rt.clone(), dir.path(), opts(100)).unwrap();
    for t in 1..=5 {
        block_on(head.append(batches(&head, 10, t * 1000))).unwrap();
    }
    drop(head);
    let (head, rep) = Head::open(rt.clone(), dir.path(), opts(15)).unwrap();
    assert_eq!(rep.exemplars, 15);
    let got = head.select_exemplars(0, i64::MAX, &all());
    let oldest = got.iter().flat_map(|s| &s.exemplars).map(|e| e.ts).min();
    assert_eq!(oldest, Some(4000));
    drop(head);
    // Storage off: nothing kept, nothing stored on append.
    let (head, rep) = Head::open(rt, dir.path(), opts(0)).unwrap();
    assert_eq!(rep.exemplars, 0);
    let r = block_on(head.append(batches(&head, 10, 9000))).unwrap();
    assert_eq!(r.exemplars_appended, 0);
    assert!(head.select_exemplars(0, i64::MAX, &all()).is_empty());
}

#[test]
fn exemplars_of_unknown_series_are_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(1), dir.path(), opts(10)).unwrap();
    let mut b = vec![AppendBatch::new(); head.cores()];
    let pairs = [("__name__", "m")];
    let hash = hash_pairs(pairs);
    // A series with no samples is not created, so its exemplar has no series to go to.
    b[head.route(hash)].push_series(hash, pairs, []);
    b[head.route(hash)].push_exemplars([Exemplar {
        labels: Labels::empty(),
        value: 1.0,
        ts: 1,
    }]);
    let r = block_on(head.append(b)).unwrap();
    assert_eq!(r.exemplars_appended, 0);
    assert!(head.select_exemplars(0, i64::MAX, &all()).is_empty());
}
