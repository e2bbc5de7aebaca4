//! The data generator: deterministic, its two outputs agree, promtool accepts its OpenMetrics,
//! and the data has the shapes it promises (churn, consistent histograms, realistic compression).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

use gauntlet_bench::datagen::{
    Families, GenConfig, collect_series, write_blocks_dir, write_openmetrics,
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
