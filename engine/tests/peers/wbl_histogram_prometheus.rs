//! Out-of-order native histograms against a real Prometheus 3 (Debian's current build), both
//! sides with an out-of-order window of an hour, through the write-behind log `wbl/`:
//!
//! - Prometheus 3 takes integer, float and custom-bucket histograms over remote write, every
//!   other one late, and is killed with SIGKILL; its `wbl/` holds histogram records, and
//!   Gauntlet's head opening the directory holds every histogram written.
//! - Gauntlet's head takes the same writes and is dropped without closing its logs; Prometheus
//!   3 started over a copy of the directory answers every histogram. The head then cuts a block
//!   of in-order and out-of-order histograms merged: `promtool tsdb analyze` of Prometheus 3
//!   reads it, and Prometheus 3 loading it alone answers every histogram again.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::Prometheus;
use crate::common::head_histograms::*;
use crate::common::receive::{now_ms, post};
use gauntlet_engine::head::{AppendBatch, Head, HeadOptions};
use gauntlet_engine::labels::{MatchType, Matcher, hash_pairs};
use gauntlet_engine::query::{Queryable, SelectHints};

const METRIC: &str = "gauntlet_ooo_hist";
const HOUR: i64 = 3_600_000;

fn head_options() -> HeadOptions {
    HeadOptions {
        ooo_window_ms: HOUR,
        ..HeadOptions::default()
    }
}

/// Prometheus with an hour's out-of-order window, no scraping.
fn config(_port: u16) -> String {
    "global:\n  scrape_interval: 1h\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n".into()
}

/// The order the samples are written in: the even steps, then the odd ones newest first, so
/// that every odd one but the newest arrives out of order.
fn writes(samples: &Samples) -> [Samples; 2] {
    let even = samples.iter().step_by(2).cloned().collect();
    let odd = samples.iter().skip(1).step_by(2).rev().cloned().collect();
    [even, odd]
}

/// The histograms of series `name` that `q` holds, canonical.
fn held(q: &dyn Queryable, name: &str) -> Vec<(i64, String)> {
    let ms = [
        Matcher::new(MatchType::Equal, "__name__", METRIC).unwrap(),
        Matcher::new(MatchType::Equal, "series", name).unwrap(),
    ];
    let got = q
        .select(&ms, i64::MIN, i64::MAX, &SelectHints::default())
        .unwrap();
    assert_eq!(got.len(), 1, "series {name}: {got:?}");
    let h = &got[0].histograms;
    h.ts.iter().copied().zip(h.h.iter().map(canon)).collect()
}

fn want(samples: &Samples) -> Vec<(i64, String)> {
    samples
        .iter()
        .map(|(t, h)| (*t, canon(&float_of(h))))
        .collect()
}

/// Record types in the log directory `dir`.
fn record_types(dir: &Path) -> BTreeSet<u8> {
    let mut types = BTreeSet::new();
    let mut r = gauntlet_engine::wal::WalReader::open(dir).unwrap();
    while let Ok(Some(rec)) = r.next() {
        types.insert(rec[0]);
    }
    types
}

#[test]
fn prometheus3_ooo_histogram_wbl_replays_in_gauntlet() {
    let binary = crate::common::prometheus3();
    let start = (now_ms() - HOUR / 2) / STEP * STEP;
    let series = all_series(start);
    let mut p = Prometheus::start_with_config(
        &binary,
        config,
        &[
            "--web.enable-remote-write-receiver",
            "--enable-feature=native-histograms",
        ],
    );
    for part in 0..2 {
        let batch: Vec<(&str, Samples)> = series
            .iter()
            .map(|(name, s)| (*name, writes(s)[part].clone()))
            .collect();
        let (status, _, text) = post(
            p.port,
            "/api/v1/write",
            &RW_HEADERS,
            &write_body(
                METRIC,
                &batch
                    .iter()
                    .map(|(n, s)| (*n, s.as_slice()))
                    .collect::<Vec<_>>(),
            ),
        )
        .unwrap();
        assert_eq!(status, 204, "part {part}: {text}");
    }
    p.kill();
    let dir = tempfile::tempdir().unwrap();
    crate::common::copy_dir(&p.data_dir().join("wal"), &dir.path().join("wal"));
    crate::common::copy_dir(&p.data_dir().join("wbl"), &dir.path().join("wbl"));
    // Prometheus logged the late integer, float and custom-bucket histograms to its WBL.
    let types = record_types(&dir.path().join("wbl"));
    for t in [7u8, 8, 9] {
        assert!(types.contains(&t), "no WBL record of type {t}: {types:?}");
    }
    let (head, rep) = Head::open(runtime("wbl-hist-test"), dir.path(), head_options()).unwrap();
    assert_eq!(rep.skipped_records, 0, "{rep:?}");
    assert_eq!(rep.wbl_samples, 3 * (SAMPLES as u64 / 2 - 1), "{rep:?}");
    for (name, samples) in &series {
        assert_eq!(held(&head, name), want(samples), "{name}");
    }
}

#[test]
fn gauntlet_ooo_histograms_reach_prometheus3_through_the_wbl_and_a_block() {
    let binary = crate::common::prometheus3();
    let promtool3 = binary.with_file_name("promtool");
    // Every sample in one 2h block range well in the past.
    let range = 2 * HOUR;
    let start = (now_ms() - 10 * HOUR) / range * range + 60_000;
    let series = all_series(start);
    let dir = tempfile::tempdir().unwrap();
    let (head, _) = Head::open(runtime("wbl-hist-test"), dir.path(), head_options()).unwrap();
    for part in 0..2 {
        let mut batches = vec![AppendBatch::new(); head.cores()];
        for (name, samples) in &series {
            let l = labels(METRIC, name);
            let hash = hash_pairs(l);
            batches[head.route(hash)].push_series_with_histograms(
                hash,
                l,
                [],
                writes(samples)[part].iter().cloned(),
            );
        }
        let r = futures::executor::block_on(head.append(batches)).unwrap();
        assert_eq!(r.appended_histograms, 3 * SAMPLES as u64 / 2, "{r:?}");
        if part == 1 {
            assert_eq!(r.appended_ooo, 3 * (SAMPLES as u64 / 2 - 1), "{r:?}");
        }
    }
    head.sync_wal().unwrap();
    for (name, samples) in &series {
        assert_eq!(held(&head, name), want(samples), "{name}");
    }
    let types = record_types(&dir.path().join("wbl"));
    assert_eq!(types, [7u8, 8, 9].into_iter().collect(), "WBL record types");

    // Prometheus 3 replays Gauntlet's WAL and WBL.
    let end = start + (SAMPLES - 1) * STEP;
    {
        let p = Prometheus::start_over(
            &binary,
            dir.path(),
            config,
            &["--enable-feature=native-histograms"],
        );
        for (name, samples) in &series {
            assert_eq!(
                prometheus_histograms(&p, (METRIC, name), end, "3h"),
                want_summary(samples),
                "Prometheus 3 over Gauntlet's WAL and WBL: {name}"
            );
        }
    }

    // The block of the range merges in-order and out-of-order histograms.
    let meta = head
        .cut_block(start, start / range * range + range, None, |_| {})
        .unwrap()
        .expect("a block");
    assert_eq!(meta.stats.num_histogram_samples, 3 * SAMPLES as u64);
    assert_eq!(meta.stats.num_float_samples, 0);
    drop(head);
    let out = crate::common::run_ok(
        std::process::Command::new(&promtool3)
            .args(["tsdb", "analyze"])
            .arg(dir.path())
            .arg(meta.ulid.to_string()),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Series: 3"), "{text}");
    let only_block = tempfile::tempdir().unwrap();
    let block = dir.path().join(meta.ulid.to_string());
    crate::common::copy_dir(&block, &only_block.path().join(meta.ulid.to_string()));
    let blocks = gauntlet_engine::query::LocalBlocks::open(only_block.path()).unwrap();
    for (name, samples) in &series {
        assert_eq!(held(&blocks, name), want(samples), "block: {name}");
    }
    let p = Prometheus::start(&binary, only_block.path());
    for (name, samples) in &series {
        assert_eq!(
            prometheus_histograms(&p, (METRIC, name), end, "3h"),
            want_summary(samples),
            "Prometheus 3 over the block: {name}"
        );
    }
}
