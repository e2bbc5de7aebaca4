//! `compact`: Prometheus merging the generated 2 h blocks by itself against `gauntlet compact`
//! over a bucket of the same blocks; and, when a Thanos binary is given, `thanos compact` and
//! `gauntlet compact` each making one pass over its own copy of a bucket holding an HA pair's
//! blocks (two replicas of the same data told apart by a `replica` external label): levels,
//! vertical deduplication by `replica`, downsampling.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gauntlet_engine::block::BlockMeta;

use super::current::{Figure, Recorded};
use super::peers::{Exited, run_to_exit, thanos_name};
use super::report::{Figures, ratio, render};
use super::scenarios::{
    baseline, block_count, block_dirs_in, blocks, blocks_of, copy_tree, gauntlet_name, input_name,
    input_text, objstore_file, side_figures, target, thanos_bucket,
};
use super::server::{free_port, gauntlet_has};
use super::{RunError, RunOptions};

/// `compact`: Prometheus started over the generated 2 h blocks with a larger
/// `--storage.tsdb.max-block-duration` merges them by itself (its compaction loop runs about a
/// minute after start). Measured: the samples its compactions wrote (each logged step writes
/// the samples of the blocks its `sources` name, the generated blocks' counts from their
/// meta.json, earlier steps' from those steps) over the sum of the `duration` it logs for its
/// "compact blocks" steps, the process's CPU seconds and peak RSS from start until the
/// block set has been stable for 70 s after the last compaction (or `duration` × 10 at most).
/// Gauntlet: `gauntlet compact` over a filesystem bucket holding the same blocks, one pass;
/// the samples it wrote over the time its merges took (downloads and uploads through the
/// bucket not counted), CPU and peak RSS of the whole process. Each side plans by its own
/// levels (Prometheus 2 h × 3ⁿ, Thanos 2 h → 8 h → 2 d), so both are given per sample.
pub fn compact(o: &RunOptions) -> Result<Recorded, RunError> {
    let src = blocks(o)?;
    let before = block_count(&src);
    let pdata = o.work_dir.join("compact-prometheus-data");
    let _ = std::fs::remove_dir_all(&pdata);
    copy_tree(&src, &pdata)?;
    let _ = std::fs::remove_file(pdata.join("done"));
    let extra = [
        "--storage.tsdb.min-block-duration=2h".to_string(),
        "--storage.tsdb.max-block-duration=744h".to_string(),
        "--storage.tsdb.retention.time=100y".to_string(),
    ];
    let started = Instant::now();
    let mut b = baseline(o, "compact", &pdata, &extra)?;
    let limit = started + o.duration * 10;
    let mut last_change = Instant::now();
    let mut blocks_now = block_count(&pdata);
    let mut compactions = 0usize;
    let mut logged_s = 0.0;
    let mut written = 0.0;
    while Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(500));
        let n = block_count(&pdata);
        if n != blocks_now {
            blocks_now = n;
            last_change = Instant::now();
        }
        let log = b
            .log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("compact blocks"))
            .collect();
        if lines.len() != compactions {
            compactions = lines.len();
            last_change = Instant::now();
            logged_s = lines.iter().filter_map(|l| log_duration_s(l)).sum();
            written = samples_written(&src, &lines);
        }
        if compactions > 0 && last_change.elapsed() > Duration::from_secs(70) {
            break;
        }
    }
    let stats = b.stats();
    b.stop();
    let base = Figures {
        system: b.name.clone(),
        throughput: if logged_s > 0.0 {
            written / logged_s
        } else {
            0.0
        },
        p50_ms: 0.0,
        p99_ms: 0.0,
        cpu_s: stats.map(|s| s.cpu_s),
        peak_rss_bytes: stats.map(|s| s.peak_rss_bytes),
        notes: format!(
            "{compactions} compaction steps logged taking {logged_s:.2} s in all, writing {written:.0} samples; {before} blocks → {blocks_now}; CPU and RSS are the whole process lifetime ({:.0} s)",
            started.elapsed().as_secs_f64()
        ),
    };
    let tgt = compact_gauntlet(o, &src, before)?;
    let ha = ha_compact(o)?;
    const UNIT: &str = "samples merged per compaction second";
    let mut section = render(
        "compact",
        UNIT,
        &format!("{}; {before} blocks of 2 h", input_text(o)),
        &o.command_line,
        &base,
        tgt.as_ref(),
    );
    let mut figures = side_figures(UNIT, &base, tgt.as_ref());
    if let Some((thanos, gauntlet, samples, blocks)) = &ha {
        section.push_str(&ha_table(thanos, gauntlet, *samples, *blocks));
        figures.extend(ha_figures(thanos, gauntlet, *samples));
    }
    Ok(Recorded {
        scenario: "compact",
        input: input_name(o, &[]),
        section,
        figures,
    })
}

/// Gauntlet's side of `compact`: `gauntlet compact --wait` over a filesystem bucket holding a
/// copy of the blocks in `src`, stopped once its first pass is done.
fn compact_gauntlet(
    o: &RunOptions,
    src: &Path,
    before: usize,
) -> Result<Option<Figures>, RunError> {
    let bucket = o.work_dir.join("compact-gauntlet-bucket");
    let _ = std::fs::remove_dir_all(&bucket);
    copy_tree(src, &bucket)?;
    let scratch = o.work_dir.join("compact-gauntlet-scratch");
    let _ = std::fs::remove_dir_all(&scratch);
    let objstore = o.work_dir.join("compact-gauntlet-objstore.yml");
    std::fs::write(
        &objstore,
        format!(
            "type: FILESYSTEM\nconfig:\n  directory: {}\n",
            bucket.display()
        ),
    )?;
    let args = format!(
        "compact --objstore.config-file={{data}} --data-dir={} --http-address=127.0.0.1:{{http}} --wait --wait-interval=24h --consistency-delay=0s --downsampling.disable",
        scratch.display()
    );
    let Some(mut t) = target(o, "compact", "compact", &args, &objstore)? else {
        return Ok(None);
    };
    let started = Instant::now();
    let limit = started + o.duration * 10;
    while t
        .metric_sum("thanos_compact_iterations_total")
        .unwrap_or(0.0)
        < 1.0
    {
        if Instant::now() > limit {
            return Err(RunError::Start(format!(
                "gauntlet compact did not finish a pass in {:?}",
                o.duration * 10
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let written = t
        .metric_sum("gauntlet_compact_samples_written_total")
        .unwrap_or(0.0);
    let merge_s = t
        .metric_sum("gauntlet_compact_merge_seconds_total")
        .unwrap_or(0.0);
    let compactions = t
        .metric_sum("thanos_compact_group_compactions_total")
        .unwrap_or(0.0);
    let stats = t.stats();
    let wall = started.elapsed().as_secs_f64();
    t.stop();
    let live = std::fs::read_dir(&bucket)?
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.path().join("meta.json").is_file() && !e.path().join("deletion-mark.json").exists()
        })
        .count();
    Ok(Some(Figures {
        system: t.name.clone(),
        throughput: if merge_s > 0.0 {
            written / merge_s
        } else {
            0.0
        },
        p50_ms: 0.0,
        p99_ms: 0.0,
        cpu_s: stats.map(|s| s.cpu_s),
        peak_rss_bytes: stats.map(|s| s.peak_rss_bytes),
        notes: format!(
            "{compactions:.0} compactions merging {written:.0} samples in {merge_s:.2} s (copies into and out of the bucket not counted); {before} blocks → {live}; CPU and RSS are the whole process lifetime ({wall:.1} s, one pass)"
        ),
    }))
}

/// Samples Prometheus's logged "compact blocks" steps wrote: each step the samples of its
/// `sources` (blocks of `src` by their meta.json, or earlier steps' output by their `ulid`).
fn samples_written(src: &Path, lines: &[&str]) -> f64 {
    let mut samples: std::collections::HashMap<String, f64> = std::fs::read_dir(src)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter_map(|e| {
                    let meta = std::fs::read(e.path().join("meta.json")).ok()?;
                    let v: serde_json::Value = serde_json::from_slice(&meta).ok()?;
                    let n = v["stats"]["numSamples"].as_f64()?;
                    Some((e.file_name().to_string_lossy().into_owned(), n))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut written = 0.0;
    for line in lines {
        let field = |name: &str| {
            line.split(&format!(" {name}="))
                .nth(1)
                .map(|rest| {
                    if let Some(quoted) = rest.strip_prefix('"') {
                        quoted.split('"').next().unwrap_or("")
                    } else {
                        rest.split_whitespace().next().unwrap_or("")
                    }
                })
                .unwrap_or("")
        };
        let out: f64 = field("sources")
            .trim_matches(['[', ']'])
            .split_whitespace()
            .filter_map(|id| samples.get(id))
            .sum();
        samples.insert(field("ulid").to_string(), out);
        written += out;
    }
    written
}

/// The `duration=…` field of a Prometheus log line, in seconds (`1.5s`, `850ms`, `1m2.5s`).
fn log_duration_s(line: &str) -> Option<f64> {
    let v = line.split("duration=").nth(1)?.split_whitespace().next()?;
    let v = v.trim_matches('"');
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                1e-3
            }
            ('µ' | 'u', Some('s')) => {
                chars.next();
                1e-6
            }
            ('n', Some('s')) => {
                chars.next();
                1e-9
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
    }
    Some(total)
}

/// A compaction level of Thanos's planner: 2 days. Data starting on such a boundary and lasting
/// two blocks past it (the planner leaves the newest block out, and closes a window once a
/// block after it remains) is merged up to one 2-day block, which is then downsampled.
const TWO_DAYS_MS: i64 = 48 * 3_600_000;

/// The longest a one-shot compactor may run before it is killed.
const COMPACT_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// The replica label of the HA pair's blocks, given to both compactors as
/// `--deduplication.replica-label`.
const REPLICA_LABEL: &str = "replica";

/// What one compactor's pass over the HA bucket cost and left.
struct HaSide {
    system: String,
    run: Exited,
    /// Live blocks afterwards (no deletion mark), with what the comparison looks at.
    after: Vec<LiveBlock>,
}

/// A block left in the bucket: resolution (ms), time range, series and samples.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LiveBlock {
    resolution: i64,
    min_time: i64,
    max_time: i64,
    series: u64,
    samples: u64,
}

/// The live blocks of `bucket`, sorted.
fn live_blocks(bucket: &Path) -> Vec<LiveBlock> {
    let mut out: Vec<LiveBlock> = block_dirs_in(bucket)
        .into_iter()
        .filter(|d| !d.join("deletion-mark.json").exists())
        .filter_map(|d| BlockMeta::read(&d).ok())
        .map(|m| LiveBlock {
            resolution: m.thanos.as_ref().map_or(0, |t| t.downsample.resolution),
            min_time: m.min_time,
            max_time: m.max_time,
            series: m.stats.num_series,
            samples: m.stats.num_samples,
        })
        .collect();
    out.sort();
    out
}

/// `raw 3, 5m 1, 1h 0`: live blocks per resolution.
fn by_resolution(blocks: &[LiveBlock]) -> String {
    let n = |r: i64| blocks.iter().filter(|b| b.resolution == r).count();
    format!("raw {}, 5m {}, 1h {}", n(0), n(5 * 60_000), n(3_600_000))
}

/// The HA pair's input: the generator's data moved to start on a 2-day boundary (so Thanos's
/// levels close whole windows), written once as plain blocks, then copied (hard links) as
/// replica `a` and `b` of cluster `bench`.
fn ha_source(o: &RunOptions) -> Result<std::path::PathBuf, RunError> {
    let mut g = o.data.clone();
    g.start_ms = (g.start_ms + TWO_DAYS_MS - 1) / TWO_DAYS_MS * TWO_DAYS_MS;
    let plain = blocks_of(o, &g)?;
    let name = plain
        .file_name()
        .map_or("blocks".into(), |n| n.to_string_lossy().into_owned());
    let pair: Vec<Vec<(String, String)>> = ["a", "b"]
        .iter()
        .map(|r| {
            vec![
                ("cluster".to_string(), "bench".to_string()),
                (REPLICA_LABEL.to_string(), r.to_string()),
            ]
        })
        .collect();
    thanos_bucket(&plain, &o.work_dir.join(format!("ha-{name}")), &pair)
}

/// Runs one compactor (`thanos` or `gauntlet`) once over a fresh copy of the HA bucket `src`.
fn ha_side(o: &RunOptions, which: &str, bin: &Path, src: &Path) -> Result<HaSide, RunError> {
    let dir = o.work_dir.join(format!("compact-ha-{which}"));
    let _ = std::fs::remove_dir_all(&dir);
    let bucket = dir.join("bucket");
    copy_tree(src, &bucket)?;
    let objstore = objstore_file(&dir.join("objstore.yml"), &bucket)?;
    let mut cmd = Command::new(bin);
    cmd.arg("compact")
        .arg(format!("--objstore.config-file={}", objstore.display()))
        .arg(format!("--data-dir={}", dir.join("scratch").display()))
        .arg(format!("--http-address=127.0.0.1:{}", free_port()?))
        .arg("--consistency-delay=0s")
        .arg(format!("--deduplication.replica-label={REPLICA_LABEL}"));
    let system = if which == "thanos" {
        thanos_name(bin, "compact")
    } else {
        cmd.args(&o.gauntlet_extra_args);
        gauntlet_name(bin, "compact")
    };
    eprintln!("{system}: one pass over {}", bucket.display());
    let run = run_to_exit(cmd, &dir.join("log.txt"), COMPACT_LIMIT)?;
    if !run.success {
        return Err(RunError::Other(format!(
            "{system} failed; see {}",
            dir.join("log.txt").display()
        )));
    }
    eprintln!(
        "{system}: {:.1} s wall, {:.1} CPU s, peak RSS {} MiB",
        run.wall_s,
        run.cpu_s,
        run.peak_rss_bytes >> 20
    );
    Ok(HaSide {
        system,
        after: live_blocks(&bucket),
        run,
    })
}

/// The HA part of `compact`: Thanos's and Gauntlet's compactors, one after the other, each one
/// pass (`thanos compact` without `--wait`, `gauntlet compact` without `--wait`) over its own
/// copy of the HA bucket, both with `--consistency-delay=0s` and
/// `--deduplication.replica-label=replica`, downsampling on (their defaults otherwise). Wall
/// time from spawn to exit, CPU time of the process, peak RSS.
fn ha_compact(o: &RunOptions) -> Result<Option<(HaSide, HaSide, u64, usize)>, RunError> {
    let (Some(thanos), Some(gauntlet)) = (&o.thanos_bin, &o.gauntlet_bin) else {
        return Ok(None);
    };
    if !gauntlet_has(gauntlet, "compact") {
        return Ok(None);
    }
    let src = ha_source(o)?;
    let input_samples: u64 = block_dirs_in(&src)
        .iter()
        .filter_map(|d| BlockMeta::read(d).ok())
        .map(|m| m.stats.num_samples)
        .sum();
    let blocks = block_count(&src);
    let t = ha_side(o, "thanos", thanos, &src)?;
    let g = ha_side(o, "gauntlet", gauntlet, &src)?;
    Ok(Some((t, g, input_samples, blocks)))
}

/// The HA part's table for the section.
fn ha_table(thanos: &HaSide, gauntlet: &HaSide, samples: u64, blocks: usize) -> String {
    use std::fmt::Write as _;
    let mut s = format!(
        "\nAn HA pair: the same data moved to start on a 2-day boundary, as replicas `a` and `b` \
         of cluster `bench` ({blocks} blocks of 2 h, {samples} samples); each compactor one pass \
         over its own copy of the bucket with `--deduplication.replica-label={REPLICA_LABEL}` \
         and `--consistency-delay=0s`, downsampling on: wall time from spawn to exit, CPU time \
         of the process, peak RSS (`VmHWM` read every 20 ms).\n\n\
         | system | wall s | CPU s | peak RSS MiB | input samples per wall second | live blocks after |\n\
         |---|---|---|---|---|---|\n"
    );
    for side in [thanos, gauntlet] {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.2} | {:.0} | {:.0} | {} |",
            side.system,
            side.run.wall_s,
            side.run.cpu_s,
            side.run.peak_rss_bytes as f64 / 1048576.0,
            per_wall_second(samples, &side.run),
            by_resolution(&side.after)
        );
    }
    let _ = writeln!(
        s,
        "| Gauntlet / {} | {} | {} | {} | {} | |",
        thanos.system,
        ratio(gauntlet.run.wall_s, thanos.run.wall_s),
        ratio(gauntlet.run.cpu_s, thanos.run.cpu_s),
        ratio(
            gauntlet.run.peak_rss_bytes as f64,
            thanos.run.peak_rss_bytes as f64
        ),
        ratio(thanos.run.wall_s, gauntlet.run.wall_s),
    );
    let _ = writeln!(
        s,
        "\n{}",
        if thanos.after == gauntlet.after {
            "Both left the same live blocks (resolution, time range, series and samples of each)."
                .to_string()
        } else {
            format!(
                "**The live blocks differ** (resolution, min, max, series, samples): Thanos {:?}; Gauntlet {:?}.",
                thanos.after, gauntlet.after
            )
        }
    );
    s
}

/// `samples` over a run's wall time.
fn per_wall_second(samples: u64, run: &Exited) -> f64 {
    samples as f64 / run.wall_s.max(1e-9)
}

/// The HA part's figures for the current table (Gauntlet and Thanos).
fn ha_figures(thanos: &HaSide, gauntlet: &HaSide, samples: u64) -> Vec<Figure> {
    const WHAT: &str = "HA pair, dedup by `replica`, downsampling, one pass";
    let f = |name: &str, v: fn(&Exited) -> f64, decimals| {
        Figure::new(
            &format!("{WHAT}: {name}"),
            Some(v(&gauntlet.run)),
            None,
            decimals,
        )
        .with_peers(Some(v(&thanos.run)), None)
    };
    let throughput = Figure::new(
        &format!("{WHAT}: input samples per wall second"),
        Some(per_wall_second(samples, &gauntlet.run)),
        None,
        0,
    )
    .with_peers(Some(per_wall_second(samples, &thanos.run)), None);
    vec![
        throughput,
        f("wall time, s", |e| e.wall_s, 2),
        f("CPU s", |e| e.cpu_s, 2),
        f("peak RSS, MiB", |e| e.peak_rss_bytes as f64 / 1048576.0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(resolution: i64, min_time: i64) -> LiveBlock {
        LiveBlock {
            resolution,
            min_time,
            max_time: min_time + 1,
            series: 1,
            samples: 1,
        }
    }

    #[test]
    fn live_blocks_are_counted_per_resolution() {
        let b = [block(0, 0), block(0, 1), block(300_000, 0)];
        assert_eq!(by_resolution(&b), "raw 2, 5m 1, 1h 0");
    }

    #[test]
    fn the_ha_pair_starts_on_a_two_day_boundary() {
        let start = crate::datagen::GenConfig::default().start_ms;
        let moved = (start + TWO_DAYS_MS - 1) / TWO_DAYS_MS * TWO_DAYS_MS;
        assert_eq!(moved % TWO_DAYS_MS, 0);
        assert!(moved >= start && moved - start < TWO_DAYS_MS);
    }

    #[test]
    fn samples_written_follow_each_step_to_its_sources() {
        let src = tempfile::tempdir().unwrap();
        for (id, n) in [("A", 10), ("B", 20), ("C", 30)] {
            let dir = src.path().join(id);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(
                dir.join("meta.json"),
                format!("{{\"stats\":{{\"numSamples\":{n}}}}}"),
            )
            .unwrap();
        }
        let lines = [
            r#"level=INFO msg="compact blocks" count=2 ulid=X sources="[A B]" duration=1s"#,
            r#"level=INFO msg="compact blocks" count=2 ulid=Y sources="[X C]" duration=1s"#,
        ];
        // X writes 30 samples, Y writes X's 30 and C's 30 again.
        assert_eq!(samples_written(src.path(), &lines), 90.0);
    }

    #[test]
    fn go_durations_in_logs() {
        assert_eq!(
            log_duration_s("msg=\"compact blocks\" duration=1.5s x=1"),
            Some(1.5)
        );
        assert_eq!(log_duration_s("duration=850ms"), Some(0.85));
        assert_eq!(log_duration_s("duration=1m2.5s"), Some(62.5));
        assert_eq!(log_duration_s("nothing"), None);
    }
}
