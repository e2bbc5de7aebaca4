//! Blocks both ways between Gauntlet and Thanos. Buckets Gauntlet writes (blocks its receiver
//! ships, blocks its compactor compacts, deduplicates and downsamples) pass Thanos's
//! `tools bucket verify`, are compacted further by `thanos compact` without complaint, hold
//! the blocks Thanos's compactor makes from the same sources, and `thanos store` answers over
//! them as `gauntlet store` does. Buckets Thanos's receiver writes, compacted by Thanos, pass
//! `gauntlet tools bucket verify` and `gauntlet compact`, and `gauntlet store` answers over
//! them as `thanos store` does. `tools bucket ls` and `inspect` list the same blocks on both.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use gauntlet_bench::datagen::{self, GenConfig, Generator, encode_write_request};
use gauntlet_engine::block::{BlockMeta, ThanosMeta};
use serde_json::Value;

use super::fixture::{assert_same, query_paths, write_replicas};
use crate::common::peers::{
    run_bounded, thanos_bounded, thanos_query, thanos_receive, thanos_store,
};
use crate::common::receive::{Receiver, V1, post};
use crate::common::{GauntletServer, api_path, copy_dir, gauntlet};

const HOUR: i64 = 3_600_000;
/// 2023-11-15T00:00:00Z: a multiple of 2 days, so the compactor's 8 h and 2 d windows start
/// here.
const T0: i64 = 1_700_006_400_000;
/// The longest a compactor or a `tools` command may run on the small buckets here.
const TOOL_TIME: Duration = Duration::from_secs(90);

/// A bucket directory and its objstore file.
struct Bucket {
    dir: PathBuf,
    objstore: PathBuf,
}

impl Bucket {
    /// An empty bucket `name` under `tmp`.
    fn new(tmp: &Path, name: &str) -> Bucket {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let objstore = crate::common::filesystem_objstore(tmp.join(format!("{name}.yml")), &dir);
        Bucket { dir, objstore }
    }

    /// A copy of this bucket as `name` under `tmp`.
    fn copy(&self, tmp: &Path, name: &str) -> Bucket {
        let b = Bucket::new(tmp, name);
        copy_dir(&self.dir, &b.dir);
        b
    }

    fn objstore_flag(&self) -> String {
        format!("--objstore.config-file={}", self.objstore.display())
    }

    /// Metas of the blocks not marked for deletion, by time and ULID.
    fn live(&self) -> Vec<BlockMeta> {
        let mut metas: Vec<BlockMeta> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("meta.json").is_file() && !p.join("deletion-mark.json").exists())
            .map(|p| BlockMeta::read(&p).unwrap())
            .collect();
        metas.sort_by_key(|m| (m.min_time, m.max_time, m.ulid));
        metas
    }

    /// What of its live blocks a second compactor over the same sources must reproduce: time
    /// range, level, resolution, external labels, number of sources, series and samples.
    fn shape(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .live()
            .iter()
            .map(|m| {
                let t = m.thanos.clone().unwrap_or_default();
                format!(
                    "{}..{} level {} res {} {:?} sources {} series {} samples {}",
                    m.min_time,
                    m.max_time,
                    m.compaction.level,
                    t.downsample.resolution,
                    t.labels,
                    m.compaction.sources.len(),
                    m.stats.num_series,
                    m.stats.num_samples,
                )
            })
            .collect();
        v.sort();
        v
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `thanos tools bucket verify` with its default issues, then with every issue it knows
/// named: each must exit 0 and log no warning or error (Thanos logs the issues it finds as
/// warnings and still exits 0).
fn thanos_verify(b: &Bucket, what: &str) {
    let flag = b.objstore_flag();
    let all = [
        "--issues=index_known_issues",
        "--issues=overlapped_blocks",
        "--issues=duplicated_compaction",
    ];
    for issues in [&[][..], &all[..]] {
        let mut args = vec!["tools", "bucket", "verify", flag.as_str()];
        args.extend_from_slice(issues);
        let out = thanos_bounded(&args, TOOL_TIME);
        let log = text(&out);
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("level=warn") || l.contains("level=error"))
            .collect();
        assert!(
            out.status.success() && bad.is_empty(),
            "{what}: thanos tools bucket verify {issues:?} found issues ({}):\n{}",
            out.status,
            if bad.is_empty() {
                log.clone()
            } else {
                bad.join("\n")
            }
        );
    }
}

/// `gauntlet tools bucket verify` (all its checks) must pass.
fn gauntlet_verify(b: &Bucket, what: &str) {
    let mut cmd = gauntlet();
    cmd.args(["tools", "bucket", "verify", &b.objstore_flag()]);
    let out = run_bounded(cmd, TOOL_TIME);
    assert!(
        out.status.success(),
        "{what}: gauntlet tools bucket verify failed:\n{}",
        text(&out)
    );
}

/// One pass of `thanos compact` over `b` with `extra` flags: it must exit 0 without an error
/// or a halt in its log. Returns the log.
fn thanos_compact(b: &Bucket, data: &Path, extra: &[&str], what: &str) -> String {
    let flag = b.objstore_flag();
    let data = format!("--data-dir={}", data.display());
    let mut args = vec![
        "compact",
        flag.as_str(),
        data.as_str(),
        "--http-address=127.0.0.1:0",
        "--consistency-delay=0s",
        "--downsample.concurrency=1",
    ];
    args.extend_from_slice(extra);
    let out = thanos_bounded(&args, TOOL_TIME);
    let log = text(&out);
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("level=error") || l.to_ascii_lowercase().contains("halt"))
        .collect();
    assert!(
        out.status.success() && bad.is_empty(),
        "{what}: thanos compact {extra:?} failed ({}):\n{}",
        out.status,
        if bad.is_empty() { log.as_str() } else { bad[0] }
    );
    log
}

/// One pass of `gauntlet compact` over `b` with the flags Thanos's takes: it must exit 0.
fn gauntlet_compact(b: &Bucket, data: &Path, extra: &[&str], what: &str) {
    let mut cmd = gauntlet();
    cmd.arg("compact")
        .arg(b.objstore_flag())
        .arg(format!("--data-dir={}", data.display()))
        .args([
            "--http-address=127.0.0.1:0",
            "--consistency-delay=0s",
            "--downsample.concurrency=1",
        ])
        .args(extra);
    let out = run_bounded(cmd, TOOL_TIME);
    assert!(
        out.status.success(),
        "{what}: gauntlet compact {extra:?} failed:\n{}",
        text(&out)
    );
}

/// `thanos query` (deduplicating along `replica`) over a `gauntlet store` answers `paths`,
/// with and without deduplication, as over a `thanos store` on the same bucket. Returns how
/// many answers held data.
fn assert_stores_agree(b: &Bucket, tmp: &Path, paths: &[String], what: &str) -> usize {
    let scratch = tempfile::tempdir_in(tmp).unwrap();
    let upstream = thanos_store(&b.objstore, &scratch.path().join("thanos"), &[]);
    let ours = GauntletServer::start(
        &[
            "store",
            &b.objstore_flag(),
            &format!("--data-dir={}", scratch.path().join("gauntlet").display()),
            "--ignore-deletion-marks-delay=0s",
        ],
        "/-/ready",
    );
    let dedup = ["--query.replica-label=replica"];
    let want = thanos_query(&[upstream.grpc_addr()], &dedup);
    let got = thanos_query(&[format!("127.0.0.1:{}", ours.grpc_port)], &dedup);
    let answered = assert_same(&format!("{what}, dedup"), &want, &got, paths);
    let raw: Vec<String> = paths.iter().map(|p| format!("{p}&dedup=false")).collect();
    assert_same(&format!("{what}, no dedup"), &want, &got, &raw);
    answered
}

/// `thanos store` over bucket `a` answers `paths` (through `thanos query`) as over bucket `b`.
fn assert_buckets_agree(a: &Bucket, b: &Bucket, tmp: &Path, paths: &[String], what: &str) {
    let scratch = tempfile::tempdir_in(tmp).unwrap();
    let sa = thanos_store(&a.objstore, &scratch.path().join("a"), &[]);
    let sb = thanos_store(&b.objstore, &scratch.path().join("b"), &[]);
    let dedup = ["--query.replica-label=replica"];
    let qa = thanos_query(&[sa.grpc_addr()], &dedup);
    let qb = thanos_query(&[sb.grpc_addr()], &dedup);
    assert_same(what, &qa, &qb, paths);
}

/// The blocks `ls -o json` lists, as (ULID, min, max, level, resolution), from `thanos` and
/// from `gauntlet`; and the rows of `inspect`, their ULID, FROM, UNTIL, RANGE, counts, level,
/// resolution and source columns: both tools must agree.
fn assert_listings_agree(b: &Bucket, what: &str) {
    let flag = b.objstore_flag();
    let of_ls = |out: Output| -> Vec<String> {
        assert!(out.status.success(), "{what}: ls: {}", text(&out));
        // Thanos indents each meta over several lines, Gauntlet writes one a line: read
        // both as a stream of JSON values.
        let mut v: Vec<String> = serde_json::Deserializer::from_slice(&out.stdout)
            .into_iter::<Value>()
            .map(|m| {
                let m = m.unwrap_or_else(|e| panic!("{what}: ls -o json: {e}"));
                format!(
                    "{} {}..{} level {} res {}",
                    m["ulid"],
                    m["minTime"],
                    m["maxTime"],
                    m["compaction"]["level"],
                    m["thanos"]["downsample"]["resolution"]
                )
            })
            .collect();
        v.sort();
        v
    };
    let theirs = of_ls(thanos_bounded(
        &["tools", "bucket", "ls", &flag, "-o", "json"],
        TOOL_TIME,
    ));
    let mut cmd = gauntlet();
    cmd.args(["tools", "bucket", "ls", &flag, "-o", "json"]);
    let ours = of_ls(run_bounded(cmd, TOOL_TIME));
    assert!(!theirs.is_empty(), "{what}: thanos lists no block");
    assert_eq!(ours, theirs, "{what}: ls -o json lists other blocks");

    // inspect: Thanos's TSV against Gauntlet's table (columns two or more spaces apart).
    const KEEP: [&str; 9] = [
        "ULID",
        "FROM",
        "UNTIL",
        "RANGE",
        "#SERIES",
        "#SAMPLES",
        "#CHUNKS",
        "COMP-LEVEL",
        "RESOLUTION",
    ];
    let rows = |lines: Vec<Vec<String>>| -> Vec<String> {
        let header = &lines[0];
        let idx: Vec<usize> = KEEP
            .iter()
            .map(|k| {
                header
                    .iter()
                    .position(|h| h == k)
                    .unwrap_or_else(|| panic!("{what}: inspect has no column {k}: {header:?}"))
            })
            .collect();
        let mut v: Vec<String> = lines[1..]
            .iter()
            .map(|r| {
                idx.iter()
                    .map(|&i| seconds(&r[i].replace(',', "")))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        v.sort();
        v
    };
    let out = thanos_bounded(
        &["tools", "bucket", "inspect", &flag, "--output=tsv"],
        TOOL_TIME,
    );
    assert!(out.status.success(), "{what}: inspect: {}", text(&out));
    let theirs = rows(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect(),
    );
    let mut cmd = gauntlet();
    cmd.args(["tools", "bucket", "inspect", &flag]);
    let out = run_bounded(cmd, TOOL_TIME);
    assert!(out.status.success(), "{what}: inspect: {}", text(&out));
    let ours = rows(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                l.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect(),
    );
    assert_eq!(ours, theirs, "{what}: inspect shows other blocks");
}

/// `2023-11-15T00:00:06.549Z` as `2023-11-15T00:00:06Z`: Thanos's `inspect` prints block
/// times to the second, Gauntlet's to the millisecond when a block's time has them.
fn seconds(cell: &str) -> String {
    match (cell.find('.'), cell.strip_suffix('Z')) {
        (Some(dot), Some(_)) if cell.contains('T') => format!("{}Z", &cell[..dot]),
        _ => cell.to_string(),
    }
}

/// Posts `cfg`'s scrapes with a timestamp in `[from_ms, to_ms)` to the remote-write endpoint
/// on `port`, `per_request` scrapes a request, in time order; waits out a receiver that is not
/// ready yet (503). Returns the samples sent.
fn remote_write(port: u16, cfg: &GenConfig, from_ms: i64, to_ms: i64, per_request: usize) -> usize {
    let mut g = Generator::new(cfg).unwrap();
    let mut batch = Vec::new();
    let mut scrape = Vec::new();
    let mut scrapes = 0;
    let mut sent = 0;
    let mut send = |g: &Generator, batch: &mut Vec<_>| {
        let body = encode_write_request(g.series(), batch);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, _, msg) = post(port, "/api/v1/receive", &[V1], &body).unwrap();
            if (200..300).contains(&code) {
                break;
            }
            assert!(
                code == 503 && Instant::now() < deadline,
                "remote write answered {code}: {msg}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        sent += batch.len();
        batch.clear();
    };
    while {
        scrape.clear();
        g.next_scrape(&mut scrape)
    } {
        let t = scrape.first().map_or(i64::MIN, |s| s.ts_ms);
        if t < from_ms || t >= to_ms {
            continue;
        }
        batch.extend_from_slice(&scrape);
        scrapes += 1;
        if scrapes % per_request == 0 {
            send(&g, &mut batch);
        }
    }
    if !batch.is_empty() {
        send(&g, &mut batch);
    }
    sent
}

/// Waits (at most 60 s) until `b` holds `n` blocks with a meta.json.
fn wait_for_blocks(b: &Bucket, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let have = b.live().len();
        if have >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {have} of {n} blocks in the bucket after 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes `cfg`'s data as 2 h blocks into `dir` as one Prometheus of an HA pair's sidecar
/// uploads them (external labels `cluster="eu1"`, `replica="a"`), its native histograms in
/// blocks of their own labelled `kind="native"` as well: a group apart, so that no two blocks
/// of a group overlap.
fn write_sidecar_blocks(cfg: &GenConfig, dir: &Path) {
    let thanos = |kind: Option<&str>| ThanosMeta {
        version: 1,
        labels: [("cluster", "eu1"), ("replica", "a")]
            .into_iter()
            .chain(kind.map(|k| ("kind", k)))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        source: "sidecar".into(),
        ..ThanosMeta::default()
    };
    for m in datagen::write_blocks_dir_with(cfg, dir, Some(thanos(None))).unwrap() {
        // Spanning their whole 2 h range, as Prometheus's head cuts them (the generator's end
        // at their first and last sample), so that the compactor's windows fill.
        let block = dir.join(m.ulid.to_string());
        let mut meta = BlockMeta::read(&block).unwrap();
        meta.min_time = m.min_time.div_euclid(2 * HOUR) * 2 * HOUR;
        meta.max_time = meta.min_time + 2 * HOUR;
        meta.write(&block).unwrap();
    }
    for m in datagen::write_native_blocks(cfg, dir, 2 * HOUR).unwrap() {
        let block = dir.join(m.ulid.to_string());
        let mut meta = BlockMeta::read(&block).unwrap();
        meta.thanos = Some(thanos(Some("native")));
        meta.write(&block).unwrap();
    }
}

/// `query_paths` over `cfg`'s data.
fn paths_of(cfg: &GenConfig) -> Vec<String> {
    query_paths(
        cfg.start_ms,
        cfg.start_ms + cfg.duration_ms - cfg.scrape_interval_ms,
    )
}

/// Queries of downsampled data: windows of an hour or more, over the whole range, read at
/// 5m and 1h resolution (Thanos's querier then asks the stores for the aggregates each
/// function needs), and the raw query set at 5m.
fn downsampled_paths(cfg: &GenConfig) -> Vec<String> {
    let (start, end) = (
        cfg.start_ms / 1000,
        (cfg.start_ms + cfg.duration_ms - cfg.scrape_interval_ms) / 1000,
    );
    let queries = [
        "sum by (job) (rate(node_cpu_seconds_total[1h]))",
        "increase(http_requests_total{code=\"200\"}[2h])",
        "max_over_time(node_memory_MemAvailable_bytes[1h])",
        "min_over_time(node_memory_MemAvailable_bytes[1h])",
        "avg_over_time(http_requests_in_flight[1h])",
        "sum_over_time(http_requests_in_flight[1h])",
        "count_over_time(up[1h])",
        "node_memory_MemAvailable_bytes",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[1h])))",
        "histogram_count(sum(rate(http_request_duration_seconds[1h])))",
        "histogram_sum(sum(increase(http_request_duration_seconds[2h])))",
    ];
    let mut paths = Vec::new();
    for res in ["5m", "1h"] {
        for q in queries {
            paths.push(api_path(
                "/api/v1/query_range",
                &[
                    ("query", q),
                    ("start", &start.to_string()),
                    ("end", &end.to_string()),
                    ("step", "1800"),
                    ("max_source_resolution", res),
                ],
            ));
        }
    }
    paths.extend(
        paths_of(cfg)
            .into_iter()
            .map(|p| format!("{p}&max_source_resolution=5m")),
    );
    paths
}

/// Blocks a Gauntlet receiver cuts and ships (30 min blocks over 4 h around an 8 h boundary)
/// pass Thanos's verify; Thanos's compactor compacts them; both stores answer alike before
/// and after.
#[test]
fn blocks_gauntlet_receive_ships_pass_thanos_verify_compact_and_store() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Bucket::new(tmp.path(), "bucket");
    let cfg = GenConfig {
        targets: 1,
        pods_per_target: 4,
        scrape_interval_ms: 30_000,
        start_ms: T0 - 2 * HOUR,
        duration_ms: 4 * HOUR,
        ..GenConfig::default()
    };
    let mut recv = Receiver::start(
        &tmp.path().join("receive"),
        &[
            &b.objstore_flag(),
            "--tsdb.min-block-duration=30m",
            "--tsdb.max-block-duration=30m",
            "--receive.cut-check-interval=100ms",
        ],
    );
    let sent = remote_write(recv.rw, &cfg, i64::MIN, i64::MAX, 20);
    assert!(sent > 50_000, "{sent} samples sent");
    // The head keeps the last half hour; the seven blocks before it are cut and shipped.
    wait_for_blocks(&b, 7, "receive");
    recv.kill();
    let shipped = b.live();
    assert_eq!(shipped.len(), 7, "{shipped:?}");
    assert!(
        shipped
            .iter()
            .all(|m| m.thanos.as_ref().unwrap().source == "receive")
    );

    thanos_verify(&b, "shipped");
    gauntlet_verify(&b, "shipped");
    assert_listings_agree(&b, "shipped");
    // The head's last half hour is not in the bucket.
    let paths = query_paths(cfg.start_ms, T0 + 90 * 60_000 - cfg.scrape_interval_ms);
    let answered = assert_stores_agree(&b, tmp.path(), &paths, "shipped");
    assert!(answered > paths.len() / 2, "{answered} answers held data");

    // The four blocks before the 8 h boundary make one 2 h block.
    thanos_compact(&b, &tmp.path().join("thanos-compact"), &[], "shipped");
    let live = b.live();
    assert_eq!(live.len(), 4, "{:?}", b.shape());
    // The first block starts at the first sample, as Prometheus's head cuts it.
    assert_eq!(
        (live[0].min_time, live[0].max_time),
        (shipped[0].min_time, T0)
    );
    assert_eq!(live[0].compaction.level, 2);
    thanos_verify(&b, "compacted by thanos");
    gauntlet_verify(&b, "compacted by thanos");
    assert_stores_agree(&b, tmp.path(), &paths, "compacted by thanos");
}

/// Gauntlet's compactor, with `extra` flags, over a copy of the bucket `src`, and Thanos's
/// over another: the same blocks result; the result passes Thanos's verify and listing, Thanos
/// compacts it further without complaint, and both stores answer alike over it and as over
/// Thanos's result. Returns the live blocks Gauntlet's compactor left.
fn compact_both_ways(
    tmp: &Path,
    src: &Bucket,
    extra: &[&str],
    paths: &[String],
    what: &str,
) -> Vec<BlockMeta> {
    let ours = src.copy(tmp, "ours");
    let theirs = src.copy(tmp, "theirs");
    gauntlet_compact(&ours, &tmp.join("gauntlet-compact"), extra, what);
    thanos_compact(&theirs, &tmp.join("thanos-compact-1"), extra, what);
    assert_eq!(
        ours.shape(),
        theirs.shape(),
        "{what}: Gauntlet's compactor left other blocks than Thanos's"
    );
    thanos_verify(&ours, what);
    gauntlet_verify(&ours, what);
    assert_listings_agree(&ours, what);
    let answered = assert_stores_agree(&ours, tmp, paths, what);
    assert!(
        answered > paths.len() / 2,
        "{what}: {answered} answers held data"
    );
    assert_buckets_agree(&theirs, &ours, tmp, paths, what);

    // Thanos's compactor finds nothing wrong with what Gauntlet's left, and nothing to do
    // that it did not do over its own.
    let before = ours.shape();
    thanos_compact(&ours, &tmp.join("thanos-compact-2"), extra, what);
    assert_eq!(
        ours.shape(),
        before,
        "{what}: thanos compacted Gauntlet's result further"
    );
    thanos_verify(&ours, what);
    gauntlet_verify(&ours, what);
    ours.live()
}

/// 2 h blocks of one Prometheus over 10 h from an 8 h boundary: the first four of each group
/// are compacted into one 8 h block.
#[test]
fn blocks_gauntlet_compacts_as_thanos_does() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Bucket::new(tmp.path(), "src");
    let cfg = GenConfig {
        targets: 2,
        pods_per_target: 4,
        scrape_interval_ms: 30_000,
        start_ms: T0,
        duration_ms: 10 * HOUR,
        ..GenConfig::default()
    };
    write_sidecar_blocks(&cfg, &src.dir);
    let live = compact_both_ways(tmp.path(), &src, &[], &paths_of(&cfg), "compacted");
    // Per group (floats, native histograms): one 8 h block of four, and the last 2 h block.
    let spans: Vec<(i64, u32, usize)> = live
        .iter()
        .map(|m| {
            (
                m.max_time - m.min_time,
                m.compaction.level,
                m.compaction.sources.len(),
            )
        })
        .collect();
    assert_eq!(live.len(), 4, "{spans:?}");
    assert_eq!(
        spans.iter().filter(|s| s.1 == 2 && s.2 == 4).count(),
        2,
        "{spans:?}"
    );
}

/// An HA pair's 2 h blocks over 10 h (each replica's floats and native histograms in blocks
/// of their own; the replicas scraped at other moments, so their samples interleave),
/// compacted vertically along `replica` with `--deduplication.func=<func>`: the four blocks
/// of each range merged into one without the replica label, then the first four ranges into
/// 8 h.
fn dedup_both_ways(func: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let src = Bucket::new(tmp.path(), "src");
    let cfg = GenConfig {
        targets: 2,
        pods_per_target: 4,
        scrape_interval_ms: 30_000,
        start_ms: T0,
        duration_ms: 10 * HOUR,
        ..GenConfig::default()
    };
    write_replicas(&cfg, &src.dir, &["a"]);
    write_replicas(
        &GenConfig {
            seed: 2,
            ..cfg.clone()
        },
        &src.dir,
        &["b"],
    );
    let func = format!("--deduplication.func={func}");
    let live = compact_both_ways(
        tmp.path(),
        &src,
        &[
            "--compact.enable-vertical-compaction",
            "--deduplication.replica-label=replica",
            &func,
        ],
        &paths_of(&cfg),
        &format!("deduplicated ({func})"),
    );
    let of = |m: &BlockMeta| {
        (
            m.max_time - m.min_time,
            m.compaction.sources.len(),
            m.thanos.clone().unwrap_or_default().labels,
        )
    };
    let shown: Vec<_> = live.iter().map(of).collect();
    assert_eq!(live.len(), 2, "{shown:?}");
    assert!(
        live.iter().all(|m| !of(m).2.contains_key("replica")),
        "{shown:?}"
    );
    assert_eq!((of(&live[0]).1, of(&live[1]).1), (16, 4), "{shown:?}");
}

#[test]
fn blocks_gauntlet_deduplicates_as_thanos_does() {
    dedup_both_ways("");
}

#[test]
fn blocks_gauntlet_deduplicates_with_penalty_as_thanos_does() {
    dedup_both_ways("penalty");
}

/// 2 h blocks over 50 h from a 2 d boundary, a sample a minute: compacted into a 2 d block,
/// which is downsampled to 5m.
#[test]
fn blocks_gauntlet_downsamples_as_thanos_does() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Bucket::new(tmp.path(), "src");
    let cfg = GenConfig {
        targets: 1,
        pods_per_target: 4,
        scrape_interval_ms: 60_000,
        start_ms: T0,
        duration_ms: 50 * HOUR,
        churn_every_ms: 6 * HOUR,
        ..GenConfig::default()
    };
    write_sidecar_blocks(&cfg, &src.dir);
    let live = compact_both_ways(
        tmp.path(),
        &src,
        &[],
        &downsampled_paths(&cfg),
        "downsampled",
    );
    // Per group: the 2 d raw block of 24 sources, its 5m copy, the last 2 h block.
    let five: Vec<&BlockMeta> = live
        .iter()
        .filter(|m| m.thanos.as_ref().unwrap().downsample.resolution == 300_000)
        .collect();
    assert_eq!(five.len(), 2, "{:?}", live.len());
    assert!(five.iter().all(|m| m.compaction.sources.len() == 24));
}

/// Thanos's receiver, restarted twice, flushes its head into blocks at each stop (52 h of
/// samples a minute apart from a 2 d boundary); Thanos's compactor makes a 2 d block of the
/// first three and downsamples it. Gauntlet's verify passes before and after, its compactor runs over
/// Thanos's result without complaint and makes the same blocks from the receiver's, and
/// both stores answer alike.
#[test]
fn blocks_thanos_receive_and_compact_pass_gauntlet_verify_compact_and_store() {
    let tmp = tempfile::tempdir().unwrap();
    let b = Bucket::new(tmp.path(), "bucket");
    let cfg = GenConfig {
        targets: 1,
        pods_per_target: 4,
        scrape_interval_ms: 60_000,
        start_ms: T0,
        duration_ms: 52 * HOUR,
        churn_every_ms: 6 * HOUR,
        ..GenConfig::default()
    };
    let tsdb = tmp.path().join("receive");
    let flags = ["--label=replica=\"a\""];
    let mut sent = 0;
    // Each stop flushes the head as a block up to the last 2 h boundary and one of the rest.
    // The third run's two blocks put the 2 d window's end before the newest block's start, so
    // the window is compacted although its first block starts at the first sample, not at
    // the window's start.
    let phases = [
        (i64::MIN, T0 + 26 * HOUR),
        (T0 + 26 * HOUR, T0 + 49 * HOUR),
        (T0 + 49 * HOUR, i64::MAX),
    ];
    for (from, to) in phases {
        let (mut recv, rw) = thanos_receive(&tsdb, &b.objstore, &flags);
        sent += remote_write(rw, &cfg, from, to, 60);
        let status = recv.terminate();
        assert!(
            status.success(),
            "thanos receive: {status}\n{}",
            recv.log_tail(30)
        );
    }
    assert!(sent > 100_000, "{sent} samples sent");
    let shipped = b.live();
    assert!(shipped.len() >= 3, "{:?}", b.shape());
    gauntlet_verify(&b, "thanos receive");
    thanos_verify(&b, "thanos receive");
    assert_listings_agree(&b, "thanos receive");

    let raw = b.copy(tmp.path(), "raw");
    thanos_compact(
        &b,
        &tmp.path().join("thanos-compact"),
        &[],
        "thanos receive",
    );
    assert!(
        b.live()
            .iter()
            .any(|m| m.thanos.as_ref().unwrap().downsample.resolution == 300_000),
        "thanos made no 5m block: {:?}",
        b.shape()
    );
    gauntlet_verify(&b, "compacted by thanos");
    assert_listings_agree(&b, "compacted by thanos");

    // Gauntlet's compactor over Thanos's result: nothing left to do, nothing wrong.
    let before = b.shape();
    gauntlet_compact(
        &b,
        &tmp.path().join("gauntlet-compact"),
        &[],
        "compacted by thanos",
    );
    assert_eq!(
        b.shape(),
        before,
        "gauntlet compacted Thanos's result further"
    );
    gauntlet_verify(&b, "compacted by thanos, then gauntlet");

    let paths = downsampled_paths(&cfg);
    let answered = assert_stores_agree(&b, tmp.path(), &paths, "compacted by thanos");
    assert!(answered > paths.len() / 2, "{answered} answers held data");

    // Gauntlet's compactor over the receiver's blocks makes what Thanos's made.
    gauntlet_compact(
        &raw,
        &tmp.path().join("gauntlet-compact-raw"),
        &[],
        "thanos receive",
    );
    assert_eq!(
        raw.shape(),
        b.shape(),
        "Gauntlet's compactor left other blocks than Thanos's"
    );
    gauntlet_verify(&raw, "thanos receive, compacted by gauntlet");
    assert_buckets_agree(
        &b,
        &raw,
        tmp.path(),
        &paths,
        "thanos receive, compacted both ways",
    );
}
