//! Native histograms in the WAL and in head blocks, against a real Prometheus 3 (Debian's
//! current build):
//!
//! - Prometheus 3 takes integer, float and custom-bucket histograms over remote write and is
//!   killed with SIGKILL; Gauntlet's head replays its `wal/` (records 7 to 10) to the same
//!   histograms.
//! - Gauntlet's head takes the same histograms and is dropped; Prometheus 3 started over a copy
//!   of its directory replays Gauntlet's `wal/` and answers the same counts and sums.
//! - Gauntlet's head cuts a block of histograms; `promtool tsdb analyze` (Prometheus 3's and
//!   Debian stable's 2.42) reads it and Prometheus 3 loading it answers the same histograms.

use std::path::Path;

use crate::common::Prometheus;
use crate::common::head_histograms::*;
use crate::common::receive::{now_ms, post};
use gauntlet_engine::head::{AppendBatch, Head, HeadOptions, HistogramValue};
use gauntlet_engine::labels::{MatchType, Matcher, hash_pairs};
use gauntlet_engine::query::{Queryable, SelectHints};

const METRIC: &str = "gauntlet_wal_hist";
fn prometheus3_receiver(binary: &Path) -> Prometheus {
    Prometheus::start_with_config(
        binary,
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    )
}

/// The head's histograms of series `name`, canonical.
fn head_histograms(head: &Head, name: &str) -> Vec<(i64, String)> {
    let ms = [
        Matcher::new(MatchType::Equal, "__name__", METRIC).unwrap(),
        Matcher::new(MatchType::Equal, "series", name).unwrap(),
    ];
    let got = head
        .select(&ms, i64::MIN, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(got.len(), 1, "series {name}: {got:?}");
    let h = &got[0].histograms;
    h.ts.iter().copied().zip(h.h.iter().map(canon)).collect()
}

fn want_histograms(samples: &[(i64, HistogramValue)]) -> Vec<(i64, String)> {
    samples
        .iter()
        .map(|(t, h)| (*t, canon(&float_of(h))))
        .collect()
}

#[test]
fn prometheus3_histogram_wal_replays_in_gauntlet() {
    let binary = crate::common::prometheus3();
    let start = (now_ms() - 3_600_000) / STEP * STEP;
    let series = all_series(start);
    let mut p = prometheus3_receiver(&binary);
    for lo in (0..SAMPLES as usize).step_by(10) {
        let part: Vec<(&str, &[(i64, HistogramValue)])> =
            series.iter().map(|(n, s)| (*n, &s[lo..lo + 10])).collect();
        let body = write_body(METRIC, &part);
        let (status, _, text) = post(p.port, "/api/v1/write", &RW_HEADERS, &body).unwrap();
        assert_eq!(status, 204, "{text}");
    }
    p.kill();
    let dir = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&p.data_dir().join("wal"), &dir.path().join("wal"));
    // Prometheus wrote histogram records of types 7, 8 and 9.
    let mut types = std::collections::BTreeSet::new();
    let mut r = gauntlet_engine::wal::WalReader::open(&dir.path().join("wal")).unwrap();
    while let Ok(Some(rec)) = r.next() {
        types.insert(rec[0]);
    }
    for t in [7u8, 8, 9] {
        assert!(types.contains(&t), "no record of type {t} in {types:?}");
    }
    let (head, rep) =
        Head::open(runtime("wal-hist-test"), dir.path(), HeadOptions::default()).unwrap();
    assert_eq!(rep.samples, 3 * SAMPLES as u64, "{rep:?}");
    assert_eq!(rep.dropped, 0, "{rep:?}");
    for (name, samples) in &series {
        assert_eq!(
            head_histograms(&head, name),
            want_histograms(samples),
            "{name}"
        );
    }
}

/// A Gauntlet head holding `series`, dropped so that its WAL is complete.
fn gauntlet_head(
    dir: &Path,
    series: &[(&str, Vec<(i64, HistogramValue)>)],
    opts: HeadOptions,
) -> Head {
    let (head, _) = Head::open(runtime("wal-hist-test"), dir, opts).unwrap();
    for lo in (0..SAMPLES as usize).step_by(10) {
        let mut batches = vec![AppendBatch::new(); head.cores()];
        for (name, samples) in series {
            let l = labels(METRIC, name);
            let hash = hash_pairs(l);
            batches[head.route(hash)].push_series_with_histograms(
                hash,
                l,
                [],
                samples[lo..lo + 10].iter().cloned(),
            );
        }
        let r = futures::executor::block_on(head.append(batches)).unwrap();
        assert_eq!(r.appended_histograms, 30, "{r:?}");
    }
    head.sync_wal().unwrap();
    head
}

#[test]
fn gauntlet_histogram_wal_replays_in_prometheus3() {
    let binary = crate::common::prometheus3();
    let start = (now_ms() - 3_600_000) / STEP * STEP;
    let series = all_series(start);
    let dir = tempfile::tempdir().unwrap();
    let head = gauntlet_head(dir.path(), &series, HeadOptions::default());
    drop(head);
    let p = Prometheus::start_over(
        &binary,
        dir.path(),
        |_| "global:\n  scrape_interval: 1h\n".into(),
        &["--enable-feature=native-histograms"],
    );
    let end = start + (SAMPLES - 1) * STEP;
    for (name, samples) in &series {
        assert_eq!(
            prometheus_histograms(&p, (METRIC, name), end, "3h"),
            want_summary(samples),
            "{name}"
        );
    }
}

#[test]
fn gauntlet_head_block_of_histograms_reads_in_promtool_and_prometheus3() {
    let binary = crate::common::prometheus3();
    let promtool3 = binary.with_file_name("promtool");
    // Samples in one 2h block range well in the past, then one sample 4h later so the head
    // spans more than one and a half ranges and the first range is due.
    let range = 7_200_000;
    let start = (now_ms() - 10 * 3_600_000) / range * range + 60_000;
    let series = all_series(start);
    let dir = tempfile::tempdir().unwrap();
    let head = gauntlet_head(dir.path(), &series, HeadOptions::default());
    let late = start + 4 * 3_600_000;
    let mut batches = vec![AppendBatch::new(); head.cores()];
    let l = labels(METRIC, "int");
    let hash = hash_pairs(l);
    batches[head.route(hash)].push_series_with_histograms(
        hash,
        l,
        [],
        [(late, HistogramValue::Int(int_hist(SAMPLES as u64, false)))],
    );
    futures::executor::block_on(head.append(batches)).unwrap();
    let (lo, hi) = head.due_block().expect("a block is due");
    let meta = head
        .cut_block(lo, hi, None, |_| {})
        .unwrap()
        .expect("a block");
    assert_eq!(meta.stats.num_histogram_samples, 3 * SAMPLES as u64);
    assert_eq!(meta.stats.num_float_samples, 0);
    let block = dir.path().join(meta.ulid.to_string());
    drop(head);
    // The WAL was checkpointed at the cut: the histogram after the block is kept through it.
    assert!(
        gauntlet_engine::wal::last_checkpoint(&dir.path().join("wal"))
            .unwrap()
            .is_some()
    );
    let (head, rep) =
        Head::open(runtime("wal-hist-test"), dir.path(), HeadOptions::default()).unwrap();
    assert_eq!((rep.samples, rep.dropped), (1, 0), "{rep:?}");
    assert_eq!(
        head_histograms(&head, "int"),
        want_histograms(&[(late, HistogramValue::Int(int_hist(SAMPLES as u64, false)))])
    );
    drop(head);

    for promtool in [Some(promtool3), crate::common::which("promtool")]
        .into_iter()
        .flatten()
    {
        let out = crate::common::run_ok(
            std::process::Command::new(&promtool)
                .args(["tsdb", "analyze"])
                .arg(dir.path())
                .arg(meta.ulid.to_string()),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Series: 3"), "{}: {text}", promtool.display());
    }

    let only_block = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&block, &only_block.path().join(meta.ulid.to_string()));
    let p = Prometheus::start(&binary, only_block.path());
    let end = start + (SAMPLES - 1) * STEP;
    for (name, samples) in &series {
        assert_eq!(
            prometheus_histograms(&p, (METRIC, name), end, "3h"),
            want_summary(samples),
            "{name}"
        );
    }
}
