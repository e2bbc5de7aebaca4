use super::*;
use crate::block::reader::block_dirs;
use crate::labels::hash_pairs;
use crate::query::LocalBlocks;
use crate::shard::IoChoice;

fn runtime(cores: usize) -> Arc<HeadRuntime> {
    HeadRuntime::start(&RuntimeConfig {
        cores,
        io: IoChoice::Pread,
        pin: false,
        name: "test-head".into(),
    })
    .unwrap()
}

fn opts() -> HeadOptions {
    HeadOptions {
        block_duration_ms: 3_600_000,
        ..HeadOptions::default()
    }
}

/// One request's worth: `series` series named `m` with label `i`, samples at `ts`.
fn batches(head: &Head, series: usize, ts: &[i64]) -> Vec<AppendBatch> {
    let mut out = vec![AppendBatch::new(); head.cores()];
    for i in 0..series {
        let v = format!("{i:04}");
        let pairs = [("__name__", "m"), ("i", v.as_str())];
        let hash = hash_pairs(pairs);
        out[head.route(hash)].push_series(
            hash,
            pairs,
            ts.iter().map(|&t| (t, t as f64 + i as f64)),
        );
    }
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}

fn eq(name: &str, value: &str) -> Matcher {
    Matcher::new(crate::labels::MatchType::Equal, name, value).unwrap()
}

#[test]
fn appends_are_queryable_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let (head, rep) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    assert_eq!(rep.samples, 0);
    let ts: Vec<i64> = (0..50).map(|i| 1_000_000 + i * 15_000).collect();
    let r = block_on(head.append(batches(&head, 100, &ts))).unwrap();
    assert_eq!(r.appended, 5000);
    assert_eq!(r.new_series, 100);
    assert_eq!(head.stats().series, 100);
    let got = head
        .select(&[eq("__name__", "m")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(got.len(), 100);
    assert_eq!(got[7].labels.get("i"), Some("0007"));
    assert_eq!(got[7].samples.len(), 50);
    assert_eq!(got[7].samples.val[0], 1_000_007.0);
    assert_eq!(head.label_values("i", &[], 0, i64::MAX).unwrap().len(), 100);
    drop(head);
    let (head, rep) = Head::open(rt, dir.path(), opts()).unwrap();
    assert_eq!(rep.series, 100);
    assert_eq!(rep.samples, 5000);
    assert_eq!(rep.dropped, 0);
    let again = head
        .select(&[eq("__name__", "m")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(again, got);
    // New series after a restart get refs past the replayed ones.
    let r = block_on(head.append(batches(&head, 101, &[ts[49] + 15_000]))).unwrap();
    assert_eq!(r.new_series, 1);
    assert_eq!(r.appended, 101);
}

#[test]
fn conflicts_are_counted_and_the_rest_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(2), dir.path(), opts()).unwrap();
    block_on(head.append(batches(&head, 10, &[10_000_000, 10_015_000]))).unwrap();
    // Same timestamp and value: duplicate, fine. Older: out of order. Far older: too old.
    let r = block_on(head.append(batches(
        &head,
        10,
        &[10_015_000, 10_010_000, 1_000, 10_030_000],
    )))
    .unwrap();
    assert_eq!(r.duplicates, 10);
    assert_eq!(r.out_of_order, 10);
    assert_eq!(r.too_old, 10);
    assert_eq!(r.appended, 10);
    let mut changed = batches(&head, 1, &[]);
    let pairs = [("__name__", "m"), ("i", "0000")];
    let h = hash_pairs(pairs);
    changed[head.route(h)].push_series(h, pairs, [(10_030_000, 99.0)]);
    let r = block_on(head.append(changed)).unwrap();
    assert_eq!(r.duplicate_timestamp, 1);
}

#[test]
fn out_of_order_window_and_future_limit() {
    let dir = tempfile::tempdir().unwrap();
    let o = HeadOptions {
        ooo_window_ms: 600_000,
        too_far_in_future_ms: 60_000,
        ..opts()
    };
    let (head, _) = Head::open(runtime(1), dir.path(), o.clone()).unwrap();
    let now = now_ms() / 1000 * 1000;
    block_on(head.append(batches(&head, 3, &[now]))).unwrap();
    let r = block_on(head.append(batches(
        &head,
        3,
        &[now - 300_000, now - 900_000, now + 3_600_000],
    )))
    .unwrap();
    assert_eq!(r.appended_ooo, 3);
    assert_eq!(r.too_old, 3);
    assert_eq!(r.too_new, 3);
    let got = head
        .select(&[eq("i", "0001")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(got[0].samples.ts, vec![now - 300_000, now]);
    drop(head);
    // Out-of-order samples are in the WBL.
    let (head, rep) = Head::open(runtime(1), dir.path(), o).unwrap();
    assert_eq!(rep.samples, 6);
    assert_eq!(rep.wbl_samples, 3);
    let got = head
        .select(&[eq("i", "0001")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(got[0].samples.ts, vec![now - 300_000, now]);
}

#[test]
fn series_limit_refuses_new_series_only() {
    let dir = tempfile::tempdir().unwrap();
    let o = HeadOptions {
        max_series: 5,
        ..opts()
    };
    let (head, _) = Head::open(runtime(1), dir.path(), o).unwrap();
    let r = block_on(head.append(batches(&head, 5, &[1000]))).unwrap();
    assert_eq!(r.new_series, 5);
    let r = block_on(head.append(batches(&head, 8, &[2000]))).unwrap();
    assert_eq!(r.appended, 5);
    assert_eq!(r.series_limited, 3);
}

#[test]
fn cut_block_writes_a_block_truncates_memory_and_wal() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let (head, _) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    let hour = 3_600_000;
    // Two hours of data at 30 s, then one more sample half an hour later.
    let ts: Vec<i64> = (0..240).map(|i| hour + i * 30_000).collect();
    for chunk in ts.chunks(20) {
        block_on(head.append(batches(&head, 50, chunk))).unwrap();
    }
    block_on(head.append(batches(&head, 50, &[3 * hour + 1_800_000]))).unwrap();
    let (start, end) = head.due_block().unwrap();
    assert_eq!((start, end), (hour, 2 * hour));
    // When the block is in place the head still holds its samples, so a reader that opens
    // the block then sees every sample (twice over the cut range, merged once).
    let mut seen_while_cutting = 0;
    let meta = head
        .cut_block(start, end, None, |_| {
            let blocks = LocalBlocks::open(dir.path()).unwrap();
            let from_head = head
                .select(&[eq("i", "0003")], 0, i64::MAX, &SelectHints::default())
                .unwrap();
            let from_blocks = blocks
                .select(&[eq("i", "0003")], 0, i64::MAX, &SelectHints::default())
                .unwrap();
            let merged = crate::query::merge_series(vec![from_blocks, from_head]);
            seen_while_cutting = merged[0].samples.len();
        })
        .unwrap()
        .unwrap();
    assert_eq!(seen_while_cutting, 241);
    assert_eq!(meta.min_time, hour);
    assert_eq!(meta.max_time, 2 * hour);
    assert_eq!(meta.stats.num_series, 50);
    assert_eq!(meta.stats.num_samples, 50 * 120);
    // The block holds the first hour; the head the rest.
    let blocks = LocalBlocks::open(dir.path()).unwrap();
    let from_block = blocks
        .select(&[eq("i", "0003")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(from_block[0].samples.len(), 120);
    let from_head = head
        .select(&[eq("i", "0003")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(from_head[0].samples.ts[0], 2 * hour);
    assert_eq!(from_head[0].samples.len(), 121);
    // A sample for the cut range is now too old.
    let r = block_on(head.append(batches(&head, 1, &[2 * hour - 1]))).unwrap();
    assert_eq!(r.too_old, 1);
    // The WAL was checkpointed: a restart replays only what the head still holds.
    drop(head);
    assert_eq!(block_dirs(dir.path()).unwrap().len(), 1);
    let (head, rep) = Head::open(rt, dir.path(), opts()).unwrap();
    assert_eq!(rep.samples, 50 * 121);
    let again = head
        .select(&[eq("i", "0003")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(again, from_head);
    let merged = crate::query::Merged::new(vec![Arc::new(blocks), Arc::new(head)]);
    let all = merged
        .select(&[eq("i", "0003")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(all[0].samples.len(), 241);
}

#[test]
fn a_torn_wal_tail_is_cut_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(1);
    let (head, _) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    for i in 0..10 {
        block_on(head.append(batches(&head, 20, &[1000 + i * 1000]))).unwrap();
    }
    drop(head);
    // Cut the newest segment in the middle of its last record.
    let wal_dir = dir.path().join("wal");
    let mut segs: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    segs.sort();
    let last = segs
        .iter()
        .rev()
        .find(|p| std::fs::metadata(p).unwrap().len() > 0)
        .unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let (head, rep) = Head::open(rt, dir.path(), opts()).unwrap();
    assert!(rep.repaired.is_some(), "{rep:?}");
    assert_eq!(rep.samples, 9 * 20);
    assert_eq!(head.stats().series, 20);
}

/// Series as a Kubernetes scrape makes them: eight labels, two of them unique to the series.
fn pod_batches(head: &Head, from: usize, to: usize, t: i64) -> Vec<AppendBatch> {
    let mut out = vec![AppendBatch::new(); head.cores()];
    for i in from..to {
        let pod = format!("api-server-7d9f8b6c5d-{i:08x}");
        let ip = format!("10.{}.{}.{}:9100", i >> 16 & 255, i >> 8 & 255, i & 255);
        let pairs = [
            ("__name__", "container_memory_working_set_bytes"),
            ("container", "api"),
            ("instance", ip.as_str()),
            ("job", "kubernetes-pods"),
            ("namespace", "prod"),
            ("node", "node-17"),
            ("pod", pod.as_str()),
            ("replica", "r1"),
        ];
        let hash = hash_pairs(pairs);
        out[head.route(hash)].push_series(hash, pairs, [(t, i as f64)]);
    }
    out
}

#[test]
fn memory_per_series_stays_small_and_removed_series_give_their_room_back() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let (head, _) = Head::open(rt, dir.path(), opts()).unwrap();
    let n = 50_000;
    let t = 1_000_000;
    block_on(head.append(pod_batches(&head, 0, n, t))).unwrap();
    let m = head.memory().unwrap();
    let per_series = |b: u64| b as f64 / n as f64;
    // 160 bytes of label text and 16 of lengths; the index: the series record, a hash slot
    // and the postings of the two values only this series has.
    assert!(per_series(m.label_bytes) < 180.0, "{m:?}");
    assert!(per_series(m.index_bytes) < 250.0, "{m:?}");
    let got = head
        .select(
            &[eq("pod", "api-server-7d9f8b6c5d-0000beef")],
            0,
            i64::MAX,
            &SelectHints::default(),
        )
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels.get("instance"), Some("10.0.190.239:9100"));

    // The first half stops, the head drops it, and as many new series arrive: they take the
    // slots and postings room of the old ones.
    block_on(head.append(pod_batches(&head, n / 2, n, t + 7_200_000))).unwrap();
    let (start, end) = head.due_block().unwrap();
    head.cut_block(start, end, None, |_| {}).unwrap();
    assert_eq!(head.stats().series, n as u64 / 2);
    block_on(head.append(pod_batches(&head, n, n + n / 2, t + 7_200_000))).unwrap();
    assert_eq!(head.stats().series, n as u64);
    let after = head.memory().unwrap();
    assert!(
        after.index_bytes <= m.index_bytes + m.index_bytes / 10,
        "{m:?} then {after:?}"
    );
    let gone = head
        .select(
            &[eq("pod", "api-server-7d9f8b6c5d-00000001")],
            0,
            i64::MAX,
            &SelectHints::default(),
        )
        .unwrap();
    assert!(gone.is_empty());
    let jobs = head
        .select(
            &[eq("job", "kubernetes-pods")],
            0,
            i64::MAX,
            &SelectHints::default(),
        )
        .unwrap();
    assert_eq!(jobs.len(), n);
    let re = Matcher::new(crate::labels::MatchType::Regexp, "pod", ".*-0000f.{3}").unwrap();
    let some = head
        .select(&[re], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(some.len(), 4096);
}

/// Every samples record of the log in `dir` as (ref, t), and how many series records it has.
fn log_samples(dir: &Path) -> (Vec<(u64, i64)>, usize) {
    let mut r = WalReader::open(dir).unwrap();
    let (mut out, mut series) = (Vec::new(), 0);
    while let Some(rec) = r.next().unwrap() {
        match wal::record::decode(rec).unwrap() {
            wal::record::Record::Samples(s) => out.extend(s.iter().map(|s| (s.r, s.t))),
            wal::record::Record::Series(s) => series += s.len(),
            _ => {}
        }
    }
    (out, series)
}

fn segments(dir: &Path) -> Vec<u32> {
    match wal::segment_range(dir).unwrap() {
        Some((a, b)) => (a..=b).collect(),
        None => Vec::new(),
    }
}

/// Timestamps of series `i` from the head (or whatever `q` is).
fn ts_of(q: &dyn Queryable, i: &str) -> Vec<i64> {
    q.select(&[eq("i", i)], 0, i64::MAX, &SelectHints::default())
        .unwrap()
        .first()
        .map(|s| s.samples.ts.clone())
        .unwrap_or_default()
}

#[test]
fn out_of_order_samples_go_to_the_wbl_only_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    // Without a window the WBL is not created.
    let (head, _) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    block_on(head.append(batches(&head, 4, &[1_000_000]))).unwrap();
    assert!(!dir.path().join("wbl").exists());
    drop(head);
    let o = HeadOptions {
        ooo_window_ms: 3_600_000,
        ..opts()
    };
    let (head, _) = Head::open(rt.clone(), dir.path(), o.clone()).unwrap();
    assert!(dir.path().join("wbl").is_dir());
    block_on(head.append(batches(&head, 4, &[2_000_000, 3_000_000]))).unwrap();
    let r = block_on(head.append(batches(&head, 4, &[1_500_000, 2_500_000]))).unwrap();
    assert_eq!(r.appended_ooo, 8);
    head.sync_wal().unwrap();
    assert!(head.stats().wbl_bytes > 0);
    let want = vec![1_000_000, 1_500_000, 2_000_000, 2_500_000, 3_000_000];
    assert_eq!(ts_of(&head, "0002"), want);
    drop(head);

    // The WAL holds the series and the in-order samples, the WBL the out-of-order ones and
    // no series record.
    let (wal_samples, wal_series) = log_samples(&dir.path().join("wal"));
    let (wbl_samples, wbl_series) = log_samples(&dir.path().join("wbl"));
    assert_eq!(wal_series, 4);
    assert_eq!(wbl_series, 0);
    let mut wal_ts: Vec<i64> = wal_samples.iter().map(|s| s.1).collect();
    wal_ts.sort();
    wal_ts.dedup();
    assert_eq!(wal_ts, vec![1_000_000, 2_000_000, 3_000_000]);
    let mut wbl_ts: Vec<i64> = wbl_samples.iter().map(|s| s.1).collect();
    wbl_ts.sort();
    assert_eq!(wbl_samples.len(), 8);
    assert_eq!(wbl_ts.first(), Some(&1_500_000));
    assert_eq!(wbl_ts.last(), Some(&2_500_000));

    let (head, rep) = Head::open(rt.clone(), dir.path(), o).unwrap();
    assert_eq!(rep.samples, 20, "{rep:?}");
    assert_eq!(rep.wbl_samples, 8, "{rep:?}");
    assert_eq!(rep.dropped, 0, "{rep:?}");
    assert_eq!(ts_of(&head, "0002"), want);
    // Replayed out-of-order samples still count: the same sample again is a duplicate, another
    // value at its timestamp a conflict.
    let r = block_on(head.append(batches(&head, 4, &[1_500_000]))).unwrap();
    assert_eq!(r.duplicates, 4);
    drop(head);
    // A head without a window still replays them, and a cut past them deletes the segments
    // holding them (without ever opening a writer there).
    let (head, rep) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    assert_eq!(rep.wbl_samples, 8, "{rep:?}");
    assert_eq!(ts_of(&head, "0002"), want);
    let wbl = dir.path().join("wbl");
    assert_eq!(segments(&wbl), vec![0, 1]);
    head.cut_block(0, 3_600_000, None, |_| {}).unwrap().unwrap();
    assert_eq!(segments(&wbl), Vec::<u32>::new());
    drop(head);
    let (head, rep) = Head::open(rt, dir.path(), opts()).unwrap();
    assert_eq!((rep.samples, rep.wbl_samples), (0, 0), "{rep:?}");
    let blocks = LocalBlocks::open(dir.path()).unwrap();
    let merged = crate::query::Merged::new(vec![Arc::new(blocks), Arc::new(head)]);
    assert_eq!(ts_of(&merged, "0002"), want);
}

#[test]
fn replay_drops_wal_samples_older_than_the_series_newest_and_keeps_the_wbl_copy() {
    // Laid out as Prometheus writes them: every sample in the WAL, the out-of-order ones in
    // the WBL too (after m-map markers, which are skipped).
    let dir = tempfile::tempdir().unwrap();
    let labels = Labels::from_pairs([("__name__", "m"), ("i", "0000")]);
    let sample = |r, t| wal::record::RefSample { r, t, v: t as f64 };
    let mut w = WalWriter::open(&dir.path().join("wal"), WalOptions::default()).unwrap();
    let mut buf = Vec::new();
    wal::record::encode_series(&mut buf, [(7, &labels)]);
    w.log(&[&buf]).unwrap();
    for batch in [vec![10, 20, 30], vec![25, 5], vec![40]] {
        buf.clear();
        let s: Vec<_> = batch.into_iter().map(|t| sample(7, t)).collect();
        wal::record::encode_samples(&mut buf, &s);
        w.log(&[&buf]).unwrap();
    }
    w.close().unwrap();
    let mut w = WalWriter::open(&dir.path().join("wbl"), WalOptions::default()).unwrap();
    buf.clear();
    // An m-map marker record: type 5, ref, chunk ref.
    buf.push(5);
    buf.extend_from_slice(&[0; 16]);
    w.log(&[&buf]).unwrap();
    buf.clear();
    // 25 is out of order; 5 and 99 are of a ref no series record declared.
    wal::record::encode_samples(&mut buf, &[sample(7, 25), sample(99, 5)]);
    w.log(&[&buf]).unwrap();
    w.close().unwrap();
    let (head, rep) = Head::open(runtime(2), dir.path(), opts()).unwrap();
    assert_eq!(ts_of(&head, "0000"), vec![10, 20, 25, 30, 40]);
    assert_eq!(rep.wbl_samples, 1, "{rep:?}");
    // WAL: 25 and 5 (older than 30); WBL: ref 99.
    assert_eq!(rep.dropped, 3, "{rep:?}");
    assert_eq!(rep.skipped_records, 0, "{rep:?}");
    // New series get refs past the WBL's unknown one too.
    let r = block_on(head.append(batches(&head, 2, &[50]))).unwrap();
    assert_eq!(r.new_series, 1);
    drop(head);
    let (wal_samples, _) = log_samples(&dir.path().join("wal"));
    assert!(wal_samples.iter().any(|s| s.0 == 100), "{wal_samples:?}");
}

#[test]
fn replay_puts_a_series_record_with_unsorted_labels_in_order() {
    // Prometheus writes label names sorted; a record written otherwise still names the
    // series an append of the same labels finds.
    let dir = tempfile::tempdir().unwrap();
    let mut w = WalWriter::open(&dir.path().join("wal"), WalOptions::default()).unwrap();
    let mut buf = vec![1u8];
    buf.extend_from_slice(&7u64.to_be_bytes());
    crate::encoding::put_uvarint(&mut buf, 2);
    for s in ["i", "0000", "__name__", "m"] {
        crate::encoding::put_uvarint(&mut buf, s.len() as u64);
        buf.extend_from_slice(s.as_bytes());
    }
    w.log(&[&buf]).unwrap();
    buf.clear();
    let s: Vec<_> = [10, 20]
        .into_iter()
        .map(|t| wal::record::RefSample { r: 7, t, v: 1.0 })
        .collect();
    wal::record::encode_samples(&mut buf, &s);
    w.log(&[&buf]).unwrap();
    w.close().unwrap();
    let (head, rep) = Head::open(runtime(2), dir.path(), opts()).unwrap();
    assert_eq!((rep.series, rep.samples), (1, 2), "{rep:?}");
    let r = block_on(head.append(batches(&head, 1, &[30]))).unwrap();
    assert_eq!(r.new_series, 0);
    assert_eq!(ts_of(&head, "0000"), vec![10, 20, 30]);
}

#[test]
fn replay_of_many_batches_keeps_every_sample_in_order() {
    // More series and samples than one replay batch holds: the batches' buffers are handed
    // back and reused, and several are in flight at once.
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let series = 30_000;
    let ts: Vec<i64> = (1..=12).map(|i| i * 15_000).collect();
    {
        let (head, _) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
        for t in ts.chunks(3) {
            block_on(head.append(batches(&head, series, t))).unwrap();
        }
    }
    let (head, rep) = Head::open(rt, dir.path(), opts()).unwrap();
    assert_eq!(rep.series, series as u64, "{rep:?}");
    assert_eq!(rep.samples, (series * ts.len()) as u64, "{rep:?}");
    assert_eq!((rep.dropped, rep.skipped_records), (0, 0), "{rep:?}");
    for i in [0, 1, 4_999, 17_321, series - 1] {
        assert_eq!(ts_of(&head, &format!("{i:04}")), ts, "series {i}");
    }
}

#[test]
fn a_cut_deletes_the_wbl_segments_its_block_covers_and_loses_no_sample() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let hour = 3_600_000;
    let o = HeadOptions {
        ooo_window_ms: 2 * hour,
        ..opts()
    };
    let wbl = dir.path().join("wbl");
    let (head, _) = Head::open(rt.clone(), dir.path(), o.clone()).unwrap();
    let in_order: Vec<i64> = (0..=120).map(|i| hour + i * 60_000).collect();
    for c in in_order.chunks(30) {
        block_on(head.append(batches(&head, 4, c))).unwrap();
    }
    // One record in segment 0: a sample the next block will hold, two it will not.
    let ooo_a = [hour + 30_000, 2 * hour + 30_000, 2 * hour + 1_830_000];
    let r = block_on(head.append(batches(&head, 4, &ooo_a))).unwrap();
    assert_eq!(r.appended_ooo, 12);
    let mut want: Vec<i64> = in_order.iter().chain(&ooo_a).copied().collect();
    want.sort();
    assert_eq!(ts_of(&head, "0001"), want);

    let (start, end) = head.due_block().unwrap();
    assert_eq!((start, end), (hour, 2 * hour));
    head.cut_block(start, end, None, |_| {}).unwrap().unwrap();
    // Segment 0 holds samples after the block: kept. The writer moved on to segment 1.
    assert_eq!(segments(&wbl), vec![0, 1]);
    let ooo_b = 2 * hour + 45_000;
    block_on(head.append(batches(&head, 4, &[ooo_b]))).unwrap();
    want.push(ooo_b);
    want.sort();
    head.sync_wal().unwrap();
    // A kill now: what was acknowledged is in the block or in the logs.
    drop(head);
    let (head, rep) = Head::open(rt.clone(), dir.path(), o.clone()).unwrap();
    // The WBL's sample before the block's end is in the block: dropped, not replayed twice.
    assert_eq!(rep.wbl_samples, 4 * 3, "{rep:?}");
    assert_eq!(rep.dropped, 4, "{rep:?}");
    let head_ts = ts_of(&head, "0001");
    assert!(head_ts.iter().all(|&t| t >= end), "{head_ts:?}");
    let blocks = LocalBlocks::open(dir.path()).unwrap();
    assert!(ts_of(&blocks, "0001").contains(&(hour + 30_000)));
    let merged = crate::query::Merged::new(vec![Arc::new(blocks), Arc::new(head)]);
    assert_eq!(ts_of(&merged, "0001"), want);
    drop(merged);

    // The next cut covers both segments and the empty one the restart opened.
    let (head, _) = Head::open(rt.clone(), dir.path(), o.clone()).unwrap();
    assert_eq!(segments(&wbl), vec![0, 1, 2, 3]);
    let more: Vec<i64> = (1..=60).map(|i| 3 * hour + i * 60_000).collect();
    // In steps shorter than half a block range, so that no core finds its samples behind the
    // head's in-order bound after another core's step (they would be out of order then).
    for c in more.chunks(10) {
        block_on(head.append(batches(&head, 4, c))).unwrap();
    }
    assert_eq!(head.stats().appended_ooo, 0);
    want.extend(&more);
    let (start, end) = head.due_block().unwrap();
    assert_eq!((start, end), (2 * hour, 3 * hour));
    head.cut_block(start, end, None, |_| {}).unwrap().unwrap();
    assert_eq!(segments(&wbl), vec![4]);
    drop(head);
    let (head, rep) = Head::open(rt, dir.path(), o).unwrap();
    assert_eq!(rep.wbl_samples, 0, "{rep:?}");
    let blocks = LocalBlocks::open(dir.path()).unwrap();
    let merged = crate::query::Merged::new(vec![Arc::new(blocks), Arc::new(head)]);
    assert_eq!(ts_of(&merged, "0001"), want);
}

#[test]
fn a_torn_wbl_tail_is_cut_and_the_rest_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(1);
    let o = HeadOptions {
        ooo_window_ms: 3_600_000,
        ..opts()
    };
    let (head, _) = Head::open(rt.clone(), dir.path(), o.clone()).unwrap();
    block_on(head.append(batches(&head, 20, &[100_000]))).unwrap();
    for i in 0..10 {
        block_on(head.append(batches(&head, 20, &[1000 + i * 1000]))).unwrap();
    }
    drop(head);
    let seg = wal::segment_name(&dir.path().join("wbl"), 0);
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap();
    drop(f);
    let (head, rep) = Head::open(rt.clone(), dir.path(), o.clone()).unwrap();
    assert!(rep.wbl_repaired.is_some(), "{rep:?}");
    assert!(rep.repaired.is_none(), "{rep:?}");
    assert_eq!(rep.wbl_samples, 9 * 20, "{rep:?}");
    assert_eq!(ts_of(&head, "0003").len(), 10);
    drop(head);
    // Repaired for good: the next start reads it whole.
    let (_, rep) = Head::open(rt, dir.path(), o).unwrap();
    assert!(rep.wbl_repaired.is_none(), "{rep:?}");
    assert_eq!(rep.wbl_samples, 9 * 20, "{rep:?}");
}

proptest::proptest! {
    /// The replay's radix sort orders by series id and keeps each id's samples in log order,
    /// as a comparison sort of (id, position) does, for ids of any width.
    #[test]
    fn replay_order_sorts_by_id_keeping_log_order(
        ids in proptest::collection::vec(proptest::prop_oneof![0u32..4, 0u32..5000, proptest::num::u32::ANY], 0..3000),
    ) {
        let mut keys: Vec<u64> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| ((id as u64) << 32) | i as u64)
            .collect();
        let mut want = keys.clone();
        want.sort_unstable();
        let mut scratch = vec![7; 3];
        shard::sort_by_id(&mut keys, &mut scratch, ids.iter().copied().max().unwrap_or(0));
        proptest::prop_assert_eq!(keys, want);
    }
}

/// Every series a stream hands out, in order.
fn drain(mut s: impl crate::query::SeriesStream) -> Vec<crate::query::StreamSeries> {
    let mut out = Vec::new();
    while let Some(b) = s.next_batch().unwrap() {
        assert!(!b.is_empty() && b.len() <= crate::query::BATCH_SERIES);
        out.extend(b);
    }
    out
}

#[test]
fn a_stream_hands_out_what_a_select_does_a_batch_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(3), dir.path(), opts()).unwrap();
    // More series than one fetch per core and one batch, so runs of every core interleave.
    let n = 3 * FETCH_SERIES + crate::query::BATCH_SERIES + 7;
    let ts: Vec<i64> = (0..20).map(|i| 1_000_000 + i * 15_000).collect();
    block_on(head.append(batches(&head, n, &ts))).unwrap();
    let ms = [eq("__name__", "m")];
    let want = head
        .select(&ms, 1_000_000, 1_100_000, &SelectHints::default())
        .unwrap();
    let got: Vec<Series> = drain(
        head.stream(&ms, 1_000_000, 1_100_000, HeadRead::Samples)
            .unwrap(),
    )
    .into_iter()
    .map(|s| match s.data {
        crate::query::SeriesData::Decoded(samples) => Series::floats(s.labels, samples),
        other => panic!("decoded samples expected, got {other:?}"),
    })
    .collect();
    assert_eq!(got.len(), n);
    assert_eq!(got, want);

    // Stored: floats as XOR chunks of the same samples; Labels: labels alone.
    let stored = drain(head.stream(&ms, 0, i64::MAX, HeadRead::Stored).unwrap());
    let mut scratch = crate::query::DecodeScratch::default();
    let mut samples = crate::chunk::SampleBatch::new();
    crate::query::decode_series(&stored[5], 0, i64::MAX, &mut scratch, &mut samples).unwrap();
    assert_eq!(samples.ts, ts);
    let labels = drain(head.stream(&ms, 0, i64::MAX, HeadRead::Labels).unwrap());
    assert_eq!(
        labels.iter().map(|s| &s.labels).collect::<Vec<_>>(),
        want.iter().map(|s| &s.labels).collect::<Vec<_>>()
    );
    // The series API's selection reads labels only.
    let hints = SelectHints {
        func: Some("series".into()),
        ..SelectHints::default()
    };
    let listed = head.select(&ms, 0, i64::MAX, &hints).unwrap();
    assert_eq!(listed.len(), n);
    assert!(listed.iter().all(|s| s.samples.is_empty()));
    assert!(head.has_label_name("i").unwrap());
    assert!(!head.has_label_name("tenant").unwrap());
}

#[test]
fn many_selections_opened_in_one_visit_hand_out_what_each_opened_alone_does() {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(3), dir.path(), opts()).unwrap();
    let n = 2 * FETCH_SERIES + 11;
    let ts: Vec<i64> = (0..20).map(|i| 1_000_000 + i * 15_000).collect();
    block_on(head.append(batches(&head, n, &ts))).unwrap();
    let re = |v: &str| Matcher::new(crate::labels::MatchType::Regexp, "i", v).unwrap();
    let sel = |matchers: Vec<Matcher>, mint: i64, maxt: i64| crate::query::Selection {
        matchers,
        mint,
        maxt,
    };
    // Small ones read in the visit, a big one (more than a read per core) read later, one
    // matching nothing, and the same one twice.
    let sels = vec![
        sel(
            vec![eq("__name__", "m"), eq("i", "0003")],
            1_000_000,
            1_100_000,
        ),
        sel(vec![eq("__name__", "m")], 1_000_000, 1_100_000),
        sel(
            vec![eq("__name__", "m"), re("00[1-2].")],
            1_200_000,
            1_285_000,
        ),
        sel(vec![eq("__name__", "none")], 0, i64::MAX),
        sel(
            vec![eq("__name__", "m"), eq("i", "0003")],
            1_000_000,
            1_100_000,
        ),
    ];
    let budget = Arc::new(crate::budget::MemoryBudget::new(64 << 20));
    let many = head
        .stream_many_in(sels.clone(), HeadRead::Samples, &budget)
        .unwrap();
    assert!(
        budget.reserved() > 0,
        "what they read is held until handed out"
    );
    assert_eq!(many.len(), sels.len());
    for (s, stream) in sels.iter().zip(many) {
        let alone = drain(
            head.stream(&s.matchers, s.mint, s.maxt, HeadRead::Samples)
                .unwrap(),
        );
        let got = drain(stream);
        assert_eq!(got.len(), alone.len(), "{s:?}");
        for (a, b) in got.iter().zip(&alone) {
            assert_eq!(a.labels, b.labels);
            assert_eq!(format!("{:?}", a.data), format!("{:?}", b.data), "{s:?}");
        }
    }
    assert_eq!(budget.reserved(), 0, "every stream gave back what it held");
}

#[test]
fn a_stream_in_another_budget_holds_its_reads_there() {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(2), dir.path(), opts()).unwrap();
    block_on(head.append(batches(&head, 2 * FETCH_SERIES, &[1_000_000]))).unwrap();
    let own = head.opts.budget.reserved();
    let reader = Arc::new(crate::budget::MemoryBudget::new(64 << 20));
    let mut s = head
        .stream_in(
            &[eq("__name__", "m")],
            0,
            i64::MAX,
            HeadRead::Samples,
            &reader,
        )
        .unwrap();
    let first = crate::query::SeriesStream::next_batch(&mut s).unwrap();
    assert!(first.is_some_and(|b| !b.is_empty()));
    assert!(reader.reserved() > 0, "the reader's budget holds the batch");
    assert_eq!(head.opts.budget.reserved(), own, "the head's does not");
    drop(s);
    assert_eq!(reader.reserved(), 0, "given back when the stream ends");

    // A reader's budget too small for the selection's ids refuses it.
    let tiny = Arc::new(crate::budget::MemoryBudget::new(1024));
    assert!(
        head.stream_in(
            &[eq("__name__", "m")],
            0,
            i64::MAX,
            HeadRead::Samples,
            &tiny
        )
        .is_err()
    );
}

#[test]
fn a_stream_skips_series_removed_after_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(2), dir.path(), opts()).unwrap();
    // More series on each core than one read takes: a smaller selection is read whole
    // when it starts.
    block_on(head.append(batches(&head, 4 * FETCH_SERIES, &[1_000_000]))).unwrap();
    let mut s = head
        .stream(&[eq("__name__", "m")], 0, i64::MAX, HeadRead::Samples)
        .unwrap();
    // Every series goes once the head is truncated past its samples.
    let slot = head.slot;
    head.on_cores(move |c| c.with(slot, |s| s.truncate_before(2_000_000)))
        .unwrap();
    assert!(
        crate::query::SeriesStream::next_batch(&mut s)
            .unwrap()
            .is_none()
    );
}

/// The label APIs answer for the head as a whole, as Prometheus's head does: a series whose
/// samples all lie outside the range still names its labels while the head overlaps it, and
/// nothing does once the range misses the head.
#[test]
fn label_apis_read_the_whole_head_while_it_overlaps_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(2), dir.path(), opts()).unwrap();
    let early = [1_000_000, 1_015_000];
    let late = [2_000_000, 2_015_000];
    block_on(head.append(batches(&head, 3, &early))).unwrap();
    let mut more = vec![AppendBatch::new(); head.cores()];
    let pairs = [("__name__", "m"), ("j", "late")];
    let hash = hash_pairs(pairs);
    more[head.route(hash)].push_series(hash, pairs, late.iter().map(|&t| (t, 1.0)));
    block_on(head.append(more)).unwrap();

    // Only the late series has samples in [1 900 000, 2 100 000]; the early ones count too.
    let m = [eq("__name__", "m")];
    assert_eq!(
        head.label_values("i", &m, 1_900_000, 2_100_000).unwrap(),
        ["0000", "0001", "0002"]
    );
    assert_eq!(
        head.label_names(&m, 1_900_000, 2_100_000).unwrap(),
        ["__name__", "i", "j"]
    );
    // Outside the head's [1 000 000, 2 015 000]: nothing.
    assert!(
        head.label_values("i", &m, 3_000_000, 4_000_000)
            .unwrap()
            .is_empty()
    );
    assert!(head.label_names(&[], 0, 999_999).unwrap().is_empty());
}

/// Equality, inequality and regex matchers in combinations that take each way through the
/// postings (one narrow list, lists worth intersecting, lists left to the label check,
/// regexes expanded or not) select exactly the series a check of every label selects.
#[test]
fn any_mix_of_matchers_selects_what_a_label_by_label_check_selects() {
    use crate::labels::MatchType::{Equal, NotEqual, NotRegexp, Regexp};
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let (head, _) = Head::open(rt, dir.path(), opts()).unwrap();
    let mut out = vec![AppendBatch::new(); head.cores()];
    for i in 0..3000usize {
        let (a, b, c, d) = (
            (i % 3).to_string(),
            (i % 50).to_string(),
            i.to_string(),
            (i % 1500).to_string(),
        );
        let pairs = [
            ("__name__", "m"),
            ("a", a.as_str()),
            ("b", b.as_str()),
            ("c", c.as_str()),
            ("d", d.as_str()),
        ];
        let hash = hash_pairs(pairs);
        out[head.route(hash)].push_series(hash, pairs, [(1_000, i as f64)]);
    }
    block_on(head.append(out)).unwrap();
    let all = head
        .select(&[eq("__name__", "m")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(all.len(), 3000);
    let m = |t, n: &str, v: &str| Matcher::new(t, n, v).unwrap();
    let cases: Vec<Vec<Matcher>> = vec![
        vec![m(Equal, "a", "1")],
        vec![m(Equal, "a", "1"), m(Equal, "b", "7")],
        vec![
            m(Equal, "b", "7"),
            m(Equal, "a", "1"),
            m(Regexp, "d", "1.*"),
        ],
        vec![m(Regexp, "a", "1|2"), m(NotEqual, "b", "3")],
        vec![m(Equal, "d", "5"), m(Equal, "a", "2")],
        vec![m(Equal, "a", "1"), m(Regexp, "c", "1..")],
        vec![
            m(Regexp, "b", "1."),
            m(Equal, "a", "0"),
            m(Regexp, "d", ".*5"),
        ],
        vec![
            m(Equal, "a", "0"),
            m(Equal, "d", "3"),
            m(NotRegexp, "c", "3"),
        ],
        vec![m(Equal, "a", "0"), m(Equal, "nope", "x")],
        vec![m(Equal, "a", "0"), m(Equal, "b", "none")],
        vec![m(Regexp, "c", "2.*"), m(Regexp, "b", ".*2")],
        vec![m(Equal, "a", "2"), m(Regexp, "nope", "")],
    ];
    for matchers in cases {
        let got: Vec<String> = head
            .select(&matchers, 0, i64::MAX, &SelectHints::default())
            .unwrap()
            .iter()
            .map(|s| s.labels.get("c").unwrap().to_string())
            .collect();
        let want: Vec<String> = all
            .iter()
            .filter(|s| {
                matchers
                    .iter()
                    .all(|m| m.matches(s.labels.get(&m.name).unwrap_or("")))
            })
            .map(|s| s.labels.get("c").unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{matchers:?}");
    }
}

#[test]
fn a_small_selection_is_read_when_it_starts_and_streams_as_a_large_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime(2), dir.path(), opts()).unwrap();
    let n = 3 * FETCH_SERIES;
    block_on(head.append(batches(&head, n, &[1_000_000, 1_015_000]))).unwrap();
    let want = head
        .select(&[eq("__name__", "m")], 0, i64::MAX, &SelectHints::default())
        .unwrap();
    for (matchers, len) in [
        (vec![eq("__name__", "m")], n),
        (vec![eq("__name__", "m"), eq("i", "0007")], 1),
    ] {
        let mut s = head
            .stream(&matchers, 0, i64::MAX, HeadRead::Samples)
            .unwrap();
        let mut got = Vec::new();
        while let Some(b) = crate::query::SeriesStream::next_batch(&mut s).unwrap() {
            got.extend(b.into_iter().map(|x| x.labels));
        }
        assert_eq!(got.len(), len);
        let expected: Vec<_> = want
            .iter()
            .filter(|w| got.contains(&w.labels))
            .map(|w| w.labels.clone())
            .collect();
        assert_eq!(got, expected);
    }
}

#[test]
fn label_names_are_known_without_asking_the_cores_and_go_with_their_last_series() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(2);
    let hour = 3_600_000;
    // Series with label `early` have samples in the first hour alone; the `m` series go on.
    let early = |head: &Head, ts: i64| {
        let mut out = vec![AppendBatch::new(); head.cores()];
        for i in 0..20 {
            let v = format!("{i}");
            let pairs = [("__name__", "e"), ("early", v.as_str())];
            let hash = hash_pairs(pairs);
            out[head.route(hash)].push_series(hash, pairs, [(ts, 1.0)]);
        }
        out
    };
    let (head, _) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    assert!(!head.has_label_name("early").unwrap());
    for t in (0..120).map(|i| hour + i * 30_000) {
        block_on(head.append(early(&head, t))).unwrap();
        block_on(head.append(batches(&head, 10, &[t]))).unwrap();
    }
    for t in (0..120).map(|i| 2 * hour + i * 30_000) {
        block_on(head.append(batches(&head, 10, &[t]))).unwrap();
    }
    block_on(head.append(batches(&head, 10, &[3 * hour + 1_800_000]))).unwrap();
    for name in ["__name__", "i", "early"] {
        assert!(head.has_label_name(name).unwrap(), "{name}");
    }
    // Replayed from the WAL, the names are known again.
    drop(head);
    let (head, _) = Head::open(rt.clone(), dir.path(), opts()).unwrap();
    assert!(head.has_label_name("early").unwrap());
    // Cutting the first hour removes the `early` series, and their name with them.
    let (start, end) = head.due_block().unwrap();
    head.cut_block(start, end, None, |_| {}).unwrap().unwrap();
    assert!(!head.has_label_name("early").unwrap());
    assert!(head.has_label_name("i").unwrap());
    // Another tenant's head on the same cores keeps its own names.
    let other = tempfile::tempdir().unwrap();
    let (second, _) = Head::open(rt, other.path(), opts()).unwrap();
    block_on(second.append(early(&second, hour))).unwrap();
    assert!(second.has_label_name("early").unwrap());
    assert!(!second.has_label_name("i").unwrap());
    assert!(!head.has_label_name("early").unwrap());
}
