//! The data generator: deterministic, its two outputs agree, promtool accepts its OpenMetrics,
//! and the data has the shapes it promises (churn, consistent histograms, realistic compression);
//! blocks generated in batches of targets hold what blocks generated at once hold.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use gauntlet_bench::datagen::{
    Batches, Families, GenConfig, batch_targets, collect_series, write_blocks_dir,
    write_blocks_dir_batched, write_openmetrics,
};
use gauntlet_engine::block::inspect::inspect;
use gauntlet_engine::block::{Block, block_dirs};
use gauntlet_engine::chunk::{STALE_NAN_BITS, SampleBatch};
use gauntlet_engine::exposition::parse_exposition;
use gauntlet_engine::labels::Label;

const PROMTOOL: &str = "/usr/bin/promtool";

/// A small data set with several churns, fast enough for every test.
fn small() -> GenConfig {
    GenConfig {
        targets: 4,
        duration_ms: 3_600_000,
        churn_every_ms: 10 * 60_000,
        ..GenConfig::default()
    }
}

fn openmetrics(cfg: &GenConfig) -> Vec<u8> {
    let mut out = Vec::new();
    write_openmetrics(cfg, &mut out).expect("generate OpenMetrics");
    out
}

/// Each bucket of one histogram series set at one timestamp: (le, value), by timestamp.
type BucketsByTs = BTreeMap<i64, Vec<(f64, f64)>>;

/// Samples by series text, values as bits so NaN payloads compare exactly.
type ByBits = BTreeMap<String, Vec<(i64, u64)>>;

fn read_blocks(dir: &Path) -> ByBits {
    let mut out = ByBits::new();
    let (mut refs, mut labels, mut chunks) = (Vec::new(), Vec::<Label>::new(), Vec::new());
    let mut batch = SampleBatch::new();
    for d in block_dirs(dir).expect("list blocks") {
        let b = Block::open(&d).expect("open block");
        b.index().all_postings(&mut refs).expect("postings");
        for &r in &refs {
            labels.clear();
            b.series(r, &mut labels, &mut chunks).expect("series");
            batch.clear();
            b.read_samples(r, &chunks, i64::MIN, i64::MAX, &mut batch)
                .expect("samples");
            let key = gauntlet_engine::labels::Labels::from_sorted(labels.clone()).to_string();
            let e = out.entry(key).or_default();
            e.extend(
                batch
                    .ts
                    .iter()
                    .zip(&batch.val)
                    .map(|(&t, v)| (t, v.to_bits())),
            );
        }
    }
    for v in out.values_mut() {
        v.sort_by_key(|p| p.0);
    }
    out
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_differs() {
    let cfg = small();
    let a = openmetrics(&cfg);
    assert_eq!(a, openmetrics(&cfg));
    let other = openmetrics(&GenConfig { seed: 2, ..cfg });
    assert_ne!(a, other);
}

#[test]
fn openmetrics_parses_to_the_series_in_the_written_blocks() {
    let cfg = small();
    let text = String::from_utf8(openmetrics(&cfg)).expect("utf-8");
    let mut parsed = ByBits::new();
    for s in parse_exposition(&text).expect("parse OpenMetrics") {
        let v: Vec<(i64, u64)> =
            s.ts.iter()
                .zip(&s.val)
                .map(|(&t, v)| (t, v.to_bits()))
                .collect();
        assert!(parsed.insert(s.labels.to_string(), v).is_none());
    }

    let dir = tempfile::tempdir().expect("temp dir");
    write_blocks_dir(&cfg, dir.path()).expect("write blocks");
    let mut blocks = read_blocks(dir.path());
    // OpenMetrics cannot carry stale markers; the blocks end churned series with one.
    let mut stale = 0;
    for v in blocks.values_mut() {
        if v.last().is_some_and(|p| p.1 == STALE_NAN_BITS) {
            v.pop();
            stale += 1;
        }
        assert!(
            v.iter().all(|p| p.1 != STALE_NAN_BITS),
            "stale marker before the end"
        );
    }
    assert!(stale > 0, "churn should end some series");
    assert_eq!(parsed.len(), blocks.len());
    for (k, v) in &parsed {
        assert_eq!(Some(v), blocks.get(k), "series {k}");
    }
}

#[test]
fn promtool_accepts_the_openmetrics_output_and_writes_the_same_samples() {
    assert!(
        Path::new(PROMTOOL).is_file(),
        "{PROMTOOL} is missing; install Prometheus 2.x tools to run this test"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("data.om");
    std::fs::write(&input, openmetrics(&small())).expect("write input");
    let out_dir = dir.path().join("blocks");
    let out = Command::new(PROMTOOL)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&out_dir)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = read_blocks(&out_dir);
    assert!(!theirs.is_empty(), "promtool wrote no samples");

    // Gauntlet's blocks of the same data hold the same samples, plus the stale markers that
    // OpenMetrics cannot carry.
    let ours_dir = dir.path().join("ours");
    write_blocks_dir(&small(), &ours_dir).expect("write blocks");
    let mut ours = read_blocks(&ours_dir);
    for v in ours.values_mut() {
        v.retain(|p| p.1 != STALE_NAN_BITS);
    }
    assert_eq!(theirs.len(), ours.len());
    for (k, v) in &theirs {
        assert_eq!(Some(v), ours.get(k), "series {k}");
    }
}

#[test]
fn default_knobs_compress_to_between_1_and_2_5_bytes_per_sample() {
    let dir = tempfile::tempdir().expect("temp dir");
    let metas = write_blocks_dir(&GenConfig::default(), dir.path()).expect("write blocks");
    assert!(!metas.is_empty());
    for d in block_dirs(dir.path()).expect("list blocks") {
        let report = inspect(&Block::open(&d).expect("open block")).expect("inspect");
        let bps = report.bytes_per_sample();
        eprintln!("{}: {bps:.3} bytes/sample", d.display());
        assert!(
            (1.0..=2.5).contains(&bps),
            "{}: {bps:.3} bytes/sample",
            d.display()
        );
    }
}

#[test]
fn churn_ends_series_with_stale_markers_and_starts_new_ones_mid_range() {
    let cfg = small();
    let series = collect_series(&cfg).expect("generate");
    let first_round_end = cfg.start_ms + cfg.scrape_interval_ms;
    let mut ended = 0;
    let mut started = 0;
    for s in &series {
        let stale_at: Vec<usize> = (0..s.val.len())
            .filter(|&i| s.val[i].to_bits() == STALE_NAN_BITS)
            .collect();
        match stale_at.as_slice() {
            [] => {}
            [i] => {
                assert_eq!(*i, s.val.len() - 1, "{}: stale marker not last", s.labels);
                ended += 1;
            }
            _ => panic!("{}: several stale markers", s.labels),
        }
        if s.ts[0] >= first_round_end {
            assert!(
                s.labels
                    .get("__name__")
                    .is_some_and(|n| n.starts_with("kube_")),
                "{}: only pods churn",
                s.labels
            );
            started += 1;
        }
    }
    // Five churns of 2 of 8 pods on 4 targets, 6 series per pod.
    assert_eq!(ended, 5 * 2 * 4 * 6);
    assert_eq!(started, ended);
}

#[test]
fn histogram_buckets_are_cumulative_and_count_equals_the_inf_bucket() {
    let cfg = GenConfig {
        families: Families {
            node: false,
            kube: false,
            app: true,
        },
        duration_ms: 12 * 3_600_000,
        ..small()
    };
    let series = collect_series(&cfg).expect("generate");
    // (instance, handler) -> timestamp -> (le, value) of each bucket, and the _count values.
    let mut buckets: HashMap<(String, String), BucketsByTs> = HashMap::new();
    let mut counts: HashMap<(String, String), BTreeMap<i64, f64>> = HashMap::new();
    let mut resets = 0;
    for s in &series {
        let name = s.labels.get("__name__").unwrap_or_default();
        let key = || {
            (
                s.labels.get("instance").unwrap_or_default().to_string(),
                s.labels.get("handler").unwrap_or_default().to_string(),
            )
        };
        match name {
            "http_request_duration_seconds_bucket" => {
                let le = s.labels.get("le").expect("le label");
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("numeric le")
                };
                let by_ts = buckets.entry(key()).or_default();
                for (&t, &v) in s.ts.iter().zip(&s.val) {
                    by_ts.entry(t).or_default().push((le, v));
                }
            }
            "http_request_duration_seconds_count" => {
                counts
                    .entry(key())
                    .or_default()
                    .extend(s.ts.iter().copied().zip(s.val.iter().copied()));
            }
            "http_requests_total" => {
                assert!(s.val.iter().all(|v| v.fract() == 0.0 && *v >= 0.0));
                resets += s.val.windows(2).filter(|w| w[1] < w[0]).count();
            }
            _ => {}
        }
    }
    assert!(
        resets > 0,
        "twelve hours on four targets should see a restart"
    );
    assert_eq!(buckets.len(), 4 * 3);
    for (key, by_ts) in &buckets {
        for (t, b) in by_ts {
            let mut b = b.clone();
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            assert_eq!(b.len(), 12, "{key:?} at {t}");
            assert!(
                b.windows(2).all(|w| w[0].1 <= w[1].1),
                "{key:?} at {t}: buckets not cumulative: {b:?}"
            );
            let inf = b.last().expect("+Inf bucket").1;
            assert_eq!(Some(&inf), counts[key].get(t), "{key:?} at {t}: _count");
        }
    }
}

#[test]
fn node_counters_never_fall_and_byte_gauges_move_in_pages() {
    let cfg = GenConfig {
        families: Families {
            node: true,
            kube: false,
            app: false,
        },
        ..small()
    };
    for s in collect_series(&cfg).expect("generate") {
        let name = s.labels.get("__name__").unwrap_or_default();
        if name.ends_with("_total") {
            assert!(s.val.windows(2).all(|w| w[0] <= w[1]), "{}", s.labels);
        }
        if name == "node_cpu_seconds_total" {
            // Hundredths of a second, as /proc/stat reports them.
            assert!(
                s.val.iter().all(|v| ((v * 100.0).round() / 100.0) == *v),
                "{}",
                s.labels
            );
        }
        if name == "node_memory_MemAvailable_bytes" || name == "node_filesystem_avail_bytes" {
            assert!(s.val.iter().all(|v| v % 4096.0 == 0.0), "{}", s.labels);
            let changes = s.val.windows(2).filter(|w| w[0] != w[1]).count();
            assert!(changes < s.val.len() - 1, "{}: no plateaus", s.labels);
        }
    }
}

#[test]
fn out_of_range_knobs_are_rejected() {
    for cfg in [
        GenConfig {
            scrape_interval_ms: 0,
            ..small()
        },
        GenConfig {
            duration_ms: -1,
            ..small()
        },
        GenConfig {
            churn_fraction: 1.5,
            ..small()
        },
        GenConfig {
            start_ms: i64::MAX,
            ..small()
        },
    ] {
        assert!(cfg.validate().is_err(), "{cfg:?}");
        assert!(write_openmetrics(&cfg, Vec::new()).is_err(), "{cfg:?}");
    }
}

/// One block as the engine's reader sees it: its time range and stats, and per series (by its
/// labels' text) the time range of each chunk and every sample, values as bits.
type BlockView = (
    (i64, i64, u64, u64, u64),
    BTreeMap<String, (Vec<(i64, i64)>, Vec<(i64, u64)>)>,
);

fn read_block_views(dir: &Path) -> Vec<BlockView> {
    let (mut refs, mut labels, mut chunks) = (Vec::new(), Vec::<Label>::new(), Vec::new());
    let mut batch = SampleBatch::new();
    let mut out = Vec::new();
    for d in block_dirs(dir).expect("list blocks") {
        let b = Block::open(&d).expect("open block");
        let m = b.meta();
        assert_eq!(
            m.compaction.level,
            1,
            "{}: a freshly written block",
            d.display()
        );
        assert_eq!(m.compaction.sources, vec![m.ulid], "{}", d.display());
        assert!(m.compaction.parents.is_empty(), "{}", d.display());
        let head = (
            m.min_time,
            m.max_time,
            m.stats.num_series,
            m.stats.num_samples,
            m.stats.num_chunks,
        );
        let mut series = BTreeMap::new();
        b.index().all_postings(&mut refs).expect("postings");
        for &r in &refs {
            labels.clear();
            b.series(r, &mut labels, &mut chunks).expect("series");
            batch.clear();
            b.read_samples(r, &chunks, i64::MIN, i64::MAX, &mut batch)
                .expect("samples");
            let key = gauntlet_engine::labels::Labels::from_sorted(labels.clone()).to_string();
            let ranges = chunks.iter().map(|c| (c.min_time, c.max_time)).collect();
            let samples = batch
                .ts
                .iter()
                .zip(&batch.val)
                .map(|(&t, v)| (t, v.to_bits()))
                .collect();
            assert!(series.insert(key, (ranges, samples)).is_none());
        }
        out.push((head, series));
    }
    out.sort_by_key(|v| v.0);
    out
}

#[test]
fn blocks_generated_in_batches_of_targets_equal_those_generated_at_once() {
    // Three 2 h ranges (the last one partial), churn in each, and batches that do not divide
    // the targets evenly.
    let cfg = GenConfig {
        targets: 7,
        scrape_interval_ms: 30_000,
        duration_ms: 5 * 3_600_000,
        churn_every_ms: 40 * 60_000,
        ..GenConfig::default()
    };
    let root = tempfile::tempdir().expect("temp dir");
    let at_once_dir = root.path().join("at-once");
    let metas = write_blocks_dir_batched(&cfg, &at_once_dir, None, &Batches::default())
        .expect("write at once");
    assert_eq!(metas.len(), 3);
    let at_once = read_block_views(&at_once_dir);
    let series: usize = at_once.iter().map(|b| b.1.len()).sum();
    assert!(series > 7 * 147, "churned pods add series: {series}");
    let scratch = root.path().join("scratch");
    for batch in [1, 3, 6] {
        let dir = root.path().join(format!("batch-{batch}"));
        let batches = Batches {
            targets: batch,
            // Elsewhere once: the batches' blocks may wait on another file system.
            scratch: (batch == 3).then(|| scratch.clone()),
        };
        let metas = write_blocks_dir_batched(&cfg, &dir, None, &batches).expect("write batched");
        assert_eq!(metas.len(), 3, "batch {batch}");
        let batched = read_block_views(&dir);
        assert_eq!(batched.len(), at_once.len(), "batch {batch}");
        for (b, a) in batched.iter().zip(&at_once) {
            assert_eq!(b.0, a.0, "batch {batch}: block range and stats");
            assert_eq!(
                b.1.len(),
                a.1.len(),
                "batch {batch}: series of block {:?}",
                a.0
            );
            for (k, v) in &a.1 {
                assert_eq!(b.1.get(k), Some(v), "batch {batch}: series {k}");
            }
        }
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("list output")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !metas.iter().any(|m| m.ulid.to_string() == *n))
            .collect();
        assert!(
            left.is_empty(),
            "batch {batch}: scratch left behind: {left:?}"
        );
    }
    let left = std::fs::read_dir(&scratch).map_or(0, |d| d.count());
    assert_eq!(left, 0, "scratch left behind under {}", scratch.display());
}

#[test]
fn batches_are_sized_by_the_memory_they_hold() {
    let base = GenConfig::default();
    let at_15s = batch_targets(&base);
    let at_60s = batch_targets(&GenConfig {
        scrape_interval_ms: 60_000,
        ..base.clone()
    });
    // A quarter of the samples: about three and a half times the targets (labels stay).
    assert!(
        at_60s > 3 * at_15s && at_60s < 4 * at_15s,
        "{at_15s} {at_60s}"
    );
    let big_pods = batch_targets(&GenConfig {
        pods_per_target: 10_000,
        duration_ms: 24 * 3_600_000,
        scrape_interval_ms: 10,
        ..base
    });
    assert_eq!(big_pods, 1);
    // 10M series at 60 s over 2 h: a few GiB at a time, in tens of batches, not one.
    assert!((1_000..10_000).contains(&at_60s), "{at_60s}");
}
