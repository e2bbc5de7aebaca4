//! `gauntlet compact` over a filesystem bucket of blocks written by promtool: the compacted
//! blocks dump (`promtool tsdb dump`) to exactly what their sources held, replicas are
//! deduplicated offline, an overlap it may not merge halts that group only, corrupt blocks are
//! reported with the bucket left as it was, and SIGKILLs at random moments of a pass never lose
//! or duplicate a sample.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::bucket::{block_dirs, promtool_blocks, upload};
use crate::common::*;
use gauntlet_engine::block::BlockMeta;

/// The bucket's blocks without a deletion mark, with their metas (a meta.json that does not
/// parse is no block).
fn live(bucket: &Path) -> Vec<(PathBuf, BlockMeta)> {
    block_dirs(bucket)
        .into_iter()
        .filter(|d| !d.join("deletion-mark.json").exists())
        .filter_map(|d| BlockMeta::read(&d).ok().map(|m| (d, m)))
        .collect()
}

/// Samples in the live blocks readers serve (those another block holds whole left out), by
/// the blocks' `replica` label (`None` for deduplicated blocks).
fn served_samples(bucket: &Path) -> BTreeMap<Option<String>, u64> {
    let blocks = live(bucket);
    let copies = gauntlet_engine::compact::redundant(blocks.iter().map(|(_, m)| m));
    let mut out = BTreeMap::new();
    for (_, m) in blocks.iter().filter(|(_, m)| !copies.contains(&m.ulid)) {
        let replica = m
            .thanos
            .as_ref()
            .and_then(|t| t.labels.get("replica").cloned());
        *out.entry(replica).or_insert(0) += m.stats.num_samples;
    }
    out
}

/// Each replica's view (its own blocks and the deduplicated ones) serves every sample once.
fn assert_each_replica_whole(bucket: &Path, want: u64, what: &str) {
    let served = served_samples(bucket);
    let merged = served.get(&None).copied().unwrap_or(0);
    for r in ["a", "b"] {
        let own = served.get(&Some(r.to_string())).copied().unwrap_or(0);
        assert_eq!(merged + own, want, "{what}: replica {r} sees {served:?}");
    }
}

/// `promtool tsdb dump` of the live blocks whose external labels include `labels`.
fn live_dump(bucket: &Path, labels: &[(&str, &str)]) -> Vec<u8> {
    let scratch = tempfile::tempdir().unwrap();
    for (d, m) in live(bucket) {
        let ext = m.thanos.map(|t| t.labels).unwrap_or_default();
        if labels
            .iter()
            .all(|(k, v)| ext.get(*k).map(String::as_str) == Some(*v))
        {
            copy_dir(&d, &scratch.path().join(d.file_name().unwrap()));
        }
    }
    promtool_dump(scratch.path(), &[])
}

/// Samples in a dump (one line each).
fn lines(dump: &[u8]) -> usize {
    dump.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

fn compact(objstore: &Path, data: &Path, extra: &[&str]) -> std::process::Output {
    gauntlet()
        .arg("compact")
        .arg("--objstore.config-file")
        .arg(objstore)
        .arg("--data-dir")
        .arg(data)
        .args(["--http-address", "127.0.0.1:0", "--consistency-delay", "0s"])
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Live blocks of each group (by external labels) never overlap in time, once the blocks
/// readers skip (those whose sources another block holds whole) are left out.
fn assert_no_overlap(bucket: &Path) {
    let blocks = live(bucket);
    let copies = gauntlet_engine::compact::redundant(blocks.iter().map(|(_, m)| m));
    let mut by_group: BTreeMap<String, Vec<(i64, i64, String)>> = BTreeMap::new();
    for (_, m) in blocks
        .into_iter()
        .filter(|(_, m)| !copies.contains(&m.ulid))
    {
        let t = m.thanos.unwrap_or_default();
        by_group
            .entry(format!("{:?}@{}", t.labels, t.downsample.resolution))
            .or_default()
            .push((m.min_time, m.max_time, m.ulid.to_string()));
    }
    for (g, mut v) in by_group {
        v.sort();
        for w in v.windows(2) {
            assert!(w[1].0 >= w[0].1, "group {g}: live blocks overlap: {w:?}");
        }
    }
}

#[test]
fn compacted_blocks_hold_exactly_their_sources_and_prometheus_opens_them() {
    let tmp = tempfile::tempdir().unwrap();
    // 10 instances × 200 series over 10 h: five 2 h blocks.
    let src = promtool_blocks(tmp.path(), 10, 10);
    let reference = promtool_dump(&src, &[]);
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let ext = [("cluster", "eu1")];
    let sources = upload(&src, &bucket, &ext);
    assert_eq!(sources.len(), 5);
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);

    let out = compact(&objstore, &tmp.path().join("data"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The four older blocks fill an 8 h window; the newest waits.
    let blocks = live(&bucket);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let (dir, meta) = blocks
        .iter()
        .find(|(_, m)| m.compaction.level == 2)
        .expect("a level-2 block");
    assert_eq!(meta.compaction.sources.len(), 4);
    assert_eq!(meta.max_time - meta.min_time, 8 * 3_600_000);
    let t = meta.thanos.clone().unwrap();
    assert_eq!(t.source, "compactor");
    assert_eq!(t.labels.get("cluster").map(String::as_str), Some("eu1"));
    assert!(t.files.iter().any(|f| f.rel_path == "index"));
    // Exactly the sources' samples, nothing twice.
    let got = live_dump(&bucket, &ext);
    assert_same_dump("live blocks after compaction", &reference, &got);
    let samples: u64 = blocks.iter().map(|(_, m)| m.stats.num_samples).sum();
    assert_eq!(samples as usize, lines(&reference));
    // promtool analyzes it, and a real Prometheus opens it and answers from it.
    let scratch = tempfile::tempdir().unwrap();
    let db = scratch.path().join("db");
    copy_dir(dir, &db.join(dir.file_name().unwrap()));
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "analyze"])
            .arg(&db),
    );
    let prom = Prometheus::start(&prometheus3(), &db);
    let v = prom.get("/api/v1/query?query=count(count%20by%20(instance)%20(%7B__name__%3D~%22.%2B%22%7D))&time=1735700400");
    assert_eq!(v["data"]["result"][0]["value"][1], "10", "{v}");
    drop(prom);

    // Sources are marked, not deleted, until the delete delay has passed.
    for id in &sources[..4] {
        assert!(
            bucket
                .join(id.to_string())
                .join("deletion-mark.json")
                .is_file()
        );
    }
    let out = compact(
        &objstore,
        &tmp.path().join("data"),
        &["--delete-delay", "0s"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for id in &sources[..4] {
        assert!(
            walk(&bucket.join(id.to_string())).is_empty(),
            "{id} still in the bucket"
        );
    }
    assert_same_dump("after deletion", &reference, &live_dump(&bucket, &ext));
}

#[test]
fn replicas_are_deduplicated_into_one_block_without_the_replica_label() {
    let tmp = tempfile::tempdir().unwrap();
    let src = promtool_blocks(tmp.path(), 5, 4);
    let reference = promtool_dump(&src, &[]);
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    upload(&src, &bucket, &[("cluster", "eu1"), ("replica", "a")]);
    upload(&src, &bucket, &[("cluster", "eu1"), ("replica", "b")]);
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let out = compact(
        &objstore,
        &tmp.path().join("data"),
        &["--deduplication.replica-label", "replica"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let blocks = live(&bucket);
    // Each pair of replica blocks became one block; neither carries a replica label.
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    for (_, m) in &blocks {
        let labels = m.thanos.clone().unwrap().labels;
        assert_eq!(labels.get("replica"), None);
        assert_eq!(labels.get("cluster").map(String::as_str), Some("eu1"));
        assert_eq!(m.compaction.sources.len(), 2);
    }
    let got = live_dump(&bucket, &[("cluster", "eu1")]);
    assert_same_dump("deduplicated replicas", &reference, &got);
    let samples: u64 = blocks.iter().map(|(_, m)| m.stats.num_samples).sum();
    assert_eq!(samples as usize, lines(&reference));

    // Penalty deduplication of identical replicas gives the same samples.
    let bucket2 = tmp.path().join("bucket2");
    std::fs::create_dir_all(&bucket2).unwrap();
    upload(&src, &bucket2, &[("replica", "a")]);
    upload(&src, &bucket2, &[("replica", "b")]);
    let objstore2 = filesystem_objstore(tmp.path().join("objstore2.yml"), &bucket2);
    let out = compact(
        &objstore2,
        &tmp.path().join("data2"),
        &[
            "--deduplication.replica-label",
            "replica",
            "--deduplication.func",
            "penalty",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_dump("penalty", &reference, &live_dump(&bucket2, &[]));
}

#[test]
fn an_overlap_without_vertical_compaction_halts_its_group_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let src = promtool_blocks(tmp.path(), 2, 10);
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    // Group "a" holds two copies of every block; groups "b" and "c" one each. Two groups
    // are compacted at once.
    upload(&src, &bucket, &[("g", "a")]);
    upload(&src, &bucket, &[("g", "a")]);
    upload(&src, &bucket, &[("g", "b")]);
    upload(&src, &bucket, &[("g", "c")]);
    let before_a = live_dump(&bucket, &[("g", "a")]);
    let before_c = live_dump(&bucket, &[("g", "c")]);
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let out = compact(
        &objstore,
        &tmp.path().join("data"),
        &["--compact.concurrency", "2"],
    );
    assert!(!out.status.success(), "an overlap must fail a one-shot run");
    let err = stderr(&out);
    assert!(
        err.contains("overlap") && err.contains("--compact.enable-vertical-compaction"),
        "{err}"
    );
    // Groups b and c were compacted; group a was left as it was.
    let levels: Vec<(String, u32)> = live(&bucket)
        .into_iter()
        .map(|(_, m)| (m.thanos.unwrap().labels["g"].clone(), m.compaction.level))
        .collect();
    assert!(levels.contains(&("b".to_string(), 2)), "{levels:?}");
    assert!(levels.contains(&("c".to_string(), 2)), "{levels:?}");
    assert_same_dump(
        "group c compacted",
        &before_c,
        &live_dump(&bucket, &[("g", "c")]),
    );
    assert!(
        levels.iter().filter(|l| l.0 == "a").all(|l| l.1 == 1),
        "{levels:?}"
    );
    assert_eq!(levels.iter().filter(|l| l.0 == "a").count(), 10);
    assert_same_dump(
        "group a untouched",
        &before_a,
        &live_dump(&bucket, &[("g", "a")]),
    );
}

#[test]
fn corrupt_blocks_are_reported_and_the_bucket_is_left_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let src = promtool_blocks(tmp.path(), 2, 10);
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let ids = upload(&src, &bucket, &[("g", "a")]);
    upload(&src, &bucket, &[("g", "b")]);
    // Group a: a chunk segment cut short. Outside the groups: a meta.json that does not parse
    // and a partial upload (no meta.json).
    let seg = bucket.join(ids[1].to_string()).join("chunks/000001");
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len / 2).unwrap();
    let junk = ulid::Ulid::new().to_string();
    std::fs::create_dir_all(bucket.join(&junk)).unwrap();
    std::fs::write(bucket.join(&junk).join("meta.json"), b"{ not json").unwrap();
    let partial = ulid::Ulid::new().to_string();
    std::fs::create_dir_all(bucket.join(&partial).join("chunks")).unwrap();
    std::fs::write(bucket.join(&partial).join("index"), b"half").unwrap();

    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let out = compact(&objstore, &tmp.path().join("data"), &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("000001") && err.contains("halted"), "{err}");
    assert!(err.contains("does not parse"), "{err}");
    // Group a: nothing marked, nothing added. Group b compacted. The junk stays for a human.
    for id in &ids {
        assert!(
            !bucket
                .join(id.to_string())
                .join("deletion-mark.json")
                .exists()
        );
    }
    let a_blocks = live(&bucket)
        .into_iter()
        .filter(|(_, m)| {
            m.thanos
                .as_ref()
                .is_some_and(|t| t.labels.get("g").map(String::as_str) == Some("a"))
        })
        .count();
    assert_eq!(a_blocks, 5);
    assert!(live(&bucket).iter().any(|(_, m)| m.compaction.level == 2));
    assert!(bucket.join(&junk).join("meta.json").exists());
    assert!(
        bucket.join(&partial).join("index").exists(),
        "a fresh partial upload is kept"
    );
    // No scratch left behind.
    let scratch: Vec<_> = walk(&tmp.path().join("data"));
    assert!(scratch.is_empty(), "{scratch:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // 2 instances × 200 series over 26 h, two replicas: 26 blocks, compactions at two
    // levels and deduplication.
    let src = promtool_blocks(tmp.path(), 2, 26);
    let reference = promtool_dump(&src, &[]);
    let want_samples = lines(&reference) as u64;
    let pristine = tmp.path().join("pristine");
    std::fs::create_dir_all(&pristine).unwrap();
    upload(&src, &pristine, &[("cluster", "eu1"), ("replica", "a")]);
    upload(&src, &pristine, &[("cluster", "eu1"), ("replica", "b")]);
    let bucket = tmp.path().join("bucket");
    copy_dir(&pristine, &bucket);
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let data = tmp.path().join("data");
    let args = [
        "--deduplication.replica-label",
        "replica",
        "--delete-delay",
        "0s",
        "--downsampling.disable",
    ];
    // Time one whole run on a copy first, to spread the kills over it.
    let probe = tmp.path().join("probe");
    copy_dir(&pristine, &probe);
    let probe_cfg = filesystem_objstore(tmp.path().join("probe.yml"), &probe);
    let t0 = Instant::now();
    let out = compact(&probe_cfg, &tmp.path().join("probe-data"), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let whole = (t0.elapsed().as_millis() as u64).max(50);

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let (mut kills, mut runs) = (0, 0);
    while kills < 12 {
        runs += 1;
        assert!(
            runs < 100,
            "only {kills} of {runs} kills landed inside a run of {whole} ms"
        );
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let at = Duration::from_millis(10 + seed % whole);
        let mut child = gauntlet()
            .arg("compact")
            .arg("--objstore.config-file")
            .arg(&objstore)
            .arg("--data-dir")
            .arg(&data)
            .args(["--http-address", "127.0.0.1:0", "--consistency-delay", "0s"])
            .args(args)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        if child.try_wait().unwrap().is_some() {
            // The work ran out before the kill: start again from the uncompacted bucket.
            std::fs::remove_dir_all(&bucket).unwrap();
            copy_dir(&pristine, &bucket);
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills += 1;
        // Whatever the moment, what readers serve holds every sample once.
        assert_no_overlap(&bucket);
        assert_each_replica_whole(
            &bucket,
            want_samples,
            &format!("after kill {kills} at {at:?}"),
        );
    }
    let out = compact(&objstore, &data, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = compact(&objstore, &data, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_overlap(&bucket);
    assert_same_dump(
        "after kills",
        &reference,
        &live_dump(&bucket, &[("cluster", "eu1")]),
    );
    assert_each_replica_whole(&bucket, want_samples, "at the end");
    assert_eq!(
        served_samples(&bucket).keys().collect::<Vec<_>>(),
        vec![&None]
    );
    // The same blocks as the uninterrupted run, and nothing left in the scratch directory.
    let spans = |b: &Path| {
        let mut v: Vec<(i64, i64)> = live(b)
            .iter()
            .map(|(_, m)| (m.min_time, m.max_time))
            .collect();
        v.sort();
        v
    };
    assert_eq!(spans(&bucket), spans(&probe));
    assert!(walk(&data).is_empty(), "{:?}", walk(&data));
}

#[test]
fn gauntlet_all_compacts_its_bucket_in_the_background_and_answers_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let src = promtool_blocks(tmp.path(), 5, 10);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    upload(&src, &data, &[("cluster", "eu1")]);
    let data_arg = format!("--data-dir={}", data.display());
    let server = GauntletServer::start(
        &[
            "all",
            &data_arg,
            "--compact.interval=1s",
            "--compact.consistency-delay=0s",
            "--sync-block-duration=1s",
        ],
        "/-/ready",
    );
    // Samples of each family over the whole range, summed: counted twice if both a block and
    // its sources were served.
    let families = [
        "http_requests_total",
        "node_cpu_seconds_total",
        "process_resident_memory_bytes",
        "temperature_celsius",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_count",
        "http_request_duration_seconds_sum",
    ];
    let q = families
        .iter()
        .map(|f| format!("sum(count_over_time({f}[12h]))"))
        .collect::<Vec<_>>()
        .join(" + ");
    let query = format!("/api/v1/query?query={}&time=1735725600", urlencode(&q));
    let query = query.as_str();
    let (code, before) = server.get(query);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&before));
    let text = String::from_utf8_lossy(&before).into_owned();
    let want = lines(&promtool_dump(&src, &[]));
    assert!(
        text.contains(&format!("\"{want}\"")),
        "{want} samples expected: {text}"
    );
    // Wait for the level-2 block, then for the store to have dropped its sources.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !live(&data).iter().any(|(_, m)| m.compaction.level == 2) {
        assert!(Instant::now() < deadline, "no compaction within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    let (code, after) = server.get(query);
    assert_eq!(code, 200);
    assert_eq!(
        String::from_utf8_lossy(&after),
        String::from_utf8_lossy(&before),
        "the same samples after compaction, none twice"
    );
    let (_, metrics) = server.get("/metrics");
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.lines().any(|l| l.starts_with("thanos_compact_group_compactions_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    // The compactor's status: a finished pass that made the level-2 block, nothing left to
    // compact; the blocks page marks its sources replaced and the new block served.
    let level2: Vec<(String, Vec<String>)> = live(&data)
        .iter()
        .filter(|(_, m)| m.compaction.level == 2)
        .map(|(_, m)| {
            let sources = m.compaction.sources.iter().map(|u| u.to_string()).collect();
            (m.ulid.to_string(), sources)
        })
        .collect();
    assert_eq!(level2.len(), 1, "{level2:?}");
    let (new_id, sources) = &level2[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let (code, body) = server.get("/api/v1/status/compactor");
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["data"]["lastPass"]["compacted"].is_array() {
            break v;
        }
        assert!(Instant::now() < deadline, "no finished pass reported: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["data"]["todo"]["compactions"], 0, "{status}");
    assert!(status["data"]["lastPass"]["error"].is_null(), "{status}");
    let (_, body) = server.get("/api/v1/blocks");
    let blocks: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut seen_new = false;
    for b in blocks["data"]["blocks"].as_array().unwrap() {
        let (id, state) = (b["ulid"].as_str().unwrap().to_string(), &b["gauntlet"]);
        if id == *new_id {
            seen_new = true;
            assert_eq!(state["served"], true, "{b}");
            let want = format!("compacted from {} source blocks", sources.len());
            assert_eq!(state["compaction"], want.as_str(), "{b}");
        } else if sources.contains(&id) {
            assert!(!state["deletionMarkTime"].is_null(), "{b}");
            assert_eq!(state["compaction"], "replaced: marked for deletion", "{b}");
        } else {
            assert!(state["deletionMarkTime"].is_null(), "{b}");
            assert_eq!(state["compaction"], "not compacted yet", "{b}");
        }
    }
    assert!(seen_new, "{blocks}");
    let (_, metrics) = server.get("/metrics");
    assert!(
        String::from_utf8_lossy(&metrics)
            .lines()
            .any(|l| l == "thanos_compact_todo_compactions 0"),
    );
}

#[test]
fn a_bucket_that_vanishes_is_reported_and_the_waiting_compactor_carries_on_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let src = promtool_blocks(tmp.path(), 2, 10);
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    upload(&src, &bucket, &[("g", "a")]);
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let [port] = free_ports();
    let log = tmp.path().join("log.txt");
    let mut child = gauntlet()
        .arg("compact")
        .arg("--objstore.config-file")
        .arg(&objstore)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .arg(format!("--http-address=127.0.0.1:{port}"))
        .args([
            "--consistency-delay",
            "0s",
            "--wait",
            "--wait-interval",
            "300ms",
        ])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let metric = |name: &str| -> f64 {
        let Ok((200, body)) = http_get(port, "/metrics") else {
            return -1.0;
        };
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{name} "))
                    .map(|v| v.parse().unwrap())
            })
            .unwrap_or(-1.0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let wait_for = |name: &str, at_least: f64, child: &mut std::process::Child| {
        while metric(name) < at_least {
            assert!(Instant::now() < deadline, "{name} never reached {at_least}");
            assert!(child.try_wait().unwrap().is_none(), "the compactor exited");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("thanos_compact_group_compactions_total", 1.0, &mut child);
    // The bucket goes away: passes fail, the process stays up and says so.
    std::fs::remove_dir_all(&bucket).unwrap();
    let failed = metric("gauntlet_compact_pass_failures_total");
    wait_for(
        "gauntlet_compact_pass_failures_total",
        failed + 2.0,
        &mut child,
    );
    // It comes back with other blocks: the next pass compacts them.
    std::fs::create_dir_all(&bucket).unwrap();
    upload(&src, &bucket, &[("g", "b")]);
    wait_for("thanos_compact_group_compactions_total", 2.0, &mut child);
    // SIGTERM: a clean stop.
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("compactor stopped"), "{text}");
    assert_same_dump(
        "the returned bucket",
        &promtool_dump(&src, &[]),
        &live_dump(&bucket, &[("g", "b")]),
    );
}

/// `--parquet`: a pass converts the compacted blocks long enough (here the 8 h one, not the
/// newest 2 h one) into Parquet shards, once; with `--parquet.delete-tsdb` their TSDB files go
/// and a store serves them from the shards with every sample.
#[test]
fn the_parquet_step_converts_long_blocks_once() {
    let tmp = tempfile::tempdir().unwrap();
    let src = promtool_blocks(tmp.path(), 10, 10);
    for (k, delete) in [false, true].into_iter().enumerate() {
        let bucket = tmp.path().join(format!("bucket{k}"));
        std::fs::create_dir_all(&bucket).unwrap();
        upload(&src, &bucket, &[("cluster", "eu1")]);
        let objstore = filesystem_objstore(tmp.path().join(format!("objstore{k}.yml")), &bucket);
        let mut flags = vec![
            "--parquet",
            "--parquet.min-block-duration=8h",
            "--downsampling.disable",
        ];
        if delete {
            flags.push("--parquet.delete-tsdb");
        }
        let data = tmp.path().join(format!("data{k}"));
        let out = compact(&objstore, &data, &flags);
        assert!(out.status.success(), "{}", stderr(&out));
        let blocks = live(&bucket);
        assert_eq!(blocks.len(), 2, "{blocks:?}");
        let mut converted = None;
        for (dir, meta) in &blocks {
            let long = meta.max_time - meta.min_time >= 8 * 3_600_000;
            assert_eq!(dir.join("0.labels.parquet").is_file(), long, "{dir:?}");
            assert_eq!(dir.join("0.chunks.parquet").is_file(), long, "{dir:?}");
            assert_eq!(dir.join("index").is_file(), !(long && delete), "{dir:?}");
            if long {
                converted = Some((dir.clone(), meta.clone()));
            }
        }
        let (dir, meta) = converted.expect("the 8 h block was converted");
        let written = std::fs::metadata(dir.join("0.labels.parquet"))
            .unwrap()
            .modified()
            .unwrap();
        // A second pass has nothing left to convert.
        let out = compact(&objstore, &data, &flags);
        assert!(out.status.success(), "{}", stderr(&out));
        let again = std::fs::metadata(dir.join("0.labels.parquet"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(written, again, "converted twice");
        if delete {
            // Served from the shards: every sample of the block.
            let rt = tokio::runtime::Runtime::new().unwrap();
            let served = rt.block_on(async {
                use gauntlet_engine::labels::{MatchType, Matcher};
                use gauntlet_engine::store::{BucketStore, SeriesQuery, StoreOptions};
                let cfg = gauntlet_engine::bucket::BucketConfig::filesystem(&bucket).unwrap();
                let store = BucketStore::open(
                    gauntlet_engine::bucket::Bucket::open(&cfg).unwrap(),
                    &tmp.path().join("store-data"),
                    StoreOptions::default(),
                )
                .unwrap();
                let rep = store.sync().await.unwrap();
                assert_eq!((rep.loaded, rep.failed.len()), (2, 0), "{rep:?}");
                assert_eq!(store.parquet_blocks().len(), 1);
                let q = SeriesQuery {
                    min_time: meta.min_time,
                    max_time: meta.max_time - 1,
                    matchers: vec![Matcher::new(MatchType::Regexp, "__name__", ".+").unwrap()],
                    ..SeriesQuery::default()
                };
                let res = store.series(&q).await.unwrap();
                let mut n = 0u64;
                for s in &res.series {
                    for c in &s.chunks {
                        let mut it = gauntlet_engine::chunk::XorIterator::new(&c.data).unwrap();
                        while let Some((t, _)) = it.next().unwrap() {
                            if t >= q.min_time && t <= q.max_time {
                                n += 1;
                            }
                        }
                    }
                }
                n
            });
            assert_eq!(served, meta.stats.num_samples);
        }
    }
}
