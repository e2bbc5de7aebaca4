//! `gauntlet tools bucket` over a filesystem bucket of blocks written by promtool: `ls` and
//! `inspect` show every block with its counts, `verify` passes sound blocks and reports truncated
//! and flipped chunk bytes, lying stats and overlaps, `mark` writes and removes markers and
//! refuses what is not a marker or not a block, `cleanup` deletes only what is due, and
//! `rewrite --delete-series` writes a block that dumps to exactly the source less the deleted
//! series.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use crate::common::bucket::{promtool_blocks, upload};
use crate::common::*;
use gauntlet_engine::block::{BlockMeta, DeletionMark, NoCompactMark, NoDownsampleMark};
use ulid::Ulid;

/// A bucket in `tmp` with promtool's blocks over `hours` uploaded under `cluster="eu1"`;
/// returns the objstore file, the bucket directory and the block ULIDs by time.
fn bucket_of(tmp: &Path, hours: u32) -> (PathBuf, PathBuf, Vec<Ulid>) {
    let src = promtool_blocks(tmp, 2, hours);
    let bucket = tmp.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let ids = upload(&src, &bucket, &[("cluster", "eu1")]);
    let objstore = filesystem_objstore(tmp.join("objstore.yml"), &bucket);
    (objstore, bucket, ids)
}

/// `gauntlet tools bucket ARGS --objstore.config-file OBJSTORE`, bounded to two minutes.
fn tools(objstore: &Path, args: &[&str]) -> Output {
    let mut child = gauntlet()
        .args(["tools", "bucket"])
        .args(args)
        .arg("--objstore.config-file")
        .arg(objstore)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("gauntlet tools bucket {args:?} ran past two minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// As [`tools`], asserting success; returns stdout.
fn tools_ok(objstore: &Path, args: &[&str]) -> String {
    let out = tools(objstore, args);
    assert!(
        out.status.success(),
        "tools bucket {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// As [`tools`], asserting failure; returns stdout and stderr together.
fn tools_fail(objstore: &Path, args: &[&str]) -> String {
    let out = tools(objstore, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "tools bucket {args:?} succeeded:\n{text}"
    );
    text
}

fn meta(bucket: &Path, id: Ulid) -> BlockMeta {
    BlockMeta::read(&bucket.join(id.to_string())).unwrap()
}

/// The line of `text` that starts with `id`.
fn line_of(text: &str, id: Ulid) -> &str {
    text.lines()
        .find(|l| l.starts_with(&id.to_string()))
        .unwrap_or_else(|| panic!("no line for {id} in:\n{text}"))
}

/// The cells of a table line.
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// Samples in a dump (one line each).
fn lines(dump: &[u8]) -> usize {
    dump.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count()
}

#[test]
fn ls_and_inspect_show_every_block_with_its_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (objstore, bucket, ids) = bucket_of(tmp.path(), 6);
    assert_eq!(ids.len(), 3);
    let other = upload(
        &tmp.path().join("promtool-blocks"),
        &bucket,
        &[("cluster", "us1")],
    );
    // An upload that never finished: chunks but no meta.json.
    let partial = Ulid::new();
    std::fs::create_dir_all(bucket.join(format!("{partial}/chunks"))).unwrap();
    std::fs::write(bucket.join(format!("{partial}/chunks/000001")), b"x").unwrap();

    let out = tools_ok(&objstore, &["ls"]);
    let header = out.lines().next().unwrap();
    assert_eq!(
        cells(header),
        [
            "ULID",
            "FROM",
            "UNTIL",
            "RANGE",
            "LEVEL",
            "RESOLUTION",
            "#SERIES",
            "#SAMPLES",
            "#CHUNKS",
            "LABELS",
            "SOURCE"
        ]
    );
    for id in ids.iter().chain(&other) {
        let m = meta(&bucket, *id);
        let c = cells(line_of(&out, *id));
        assert_eq!(c[3], "2h0m0s", "{c:?}");
        assert_eq!(c[4], "1");
        assert_eq!(c[5], "0s");
        assert_eq!(c[6], m.stats.num_series.to_string());
        assert_eq!(c[7], m.stats.num_samples.to_string());
        assert_eq!(c[8], m.stats.num_chunks.to_string());
        assert_eq!(c[10], "sidecar");
    }
    assert!(line_of(&out, ids[0]).contains("2025-01-01T00:00:00Z"));
    assert!(line_of(&out, ids[0]).contains("cluster=\"eu1\""));
    assert!(line_of(&out, partial).contains("partial upload"));
    // By min time, the partial upload last.
    let order: Vec<Ulid> = out
        .lines()
        .skip(1)
        .map(|l| l[..26].parse().unwrap())
        .collect();
    assert_eq!(order.len(), 7, "{out}");
    assert_eq!(order[6], partial);
    let mins: Vec<i64> = order[..6]
        .iter()
        .map(|id| meta(&bucket, *id).min_time)
        .collect();
    assert!(mins.windows(2).all(|w| w[0] <= w[1]), "{out}");

    // JSON: each meta.json on a line of its own.
    let out = tools_ok(&objstore, &["ls", "-o", "json"]);
    let metas: Vec<BlockMeta> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metas.len(), 6);
    assert_eq!(metas[0].min_time, 1_735_689_600_000);

    // Wide shows the markers; --exclude-delete leaves marked blocks out.
    tools_ok(
        &objstore,
        &[
            "mark",
            "--id",
            &ids[1].to_string(),
            "--marker",
            "deletion-mark.json",
            "--details",
            "test",
        ],
    );
    let out = tools_ok(&objstore, &["ls", "-o", "wide"]);
    assert!(line_of(&out, ids[1]).contains("deletion("), "{out}");
    assert!(line_of(&out, ids[0]).ends_with('-'), "{out}");
    let out = tools_ok(&objstore, &["ls", "--exclude-delete"]);
    assert!(!out.contains(&ids[1].to_string()), "{out}");
    assert!(out.contains(&ids[0].to_string()), "{out}");

    // Inspect: Thanos's columns; the samples of the eu1 blocks are every line of the dump.
    let out = tools_ok(&objstore, &["inspect", "--selector", "cluster=\"eu1\""]);
    assert_eq!(
        cells(out.lines().next().unwrap()),
        [
            "ULID",
            "FROM",
            "UNTIL",
            "RANGE",
            "UNTIL-DOWN",
            "#SERIES",
            "#SAMPLES",
            "#CHUNKS",
            "COMP-LEVEL",
            "COMP-FAILED",
            "LABELS",
            "RESOLUTION",
            "SOURCE"
        ]
    );
    assert_eq!(out.lines().count(), 4, "{out}");
    let mut samples = 0u64;
    for id in &ids {
        let m = meta(&bucket, *id);
        let c = cells(line_of(&out, *id));
        assert_eq!(c[4], "38h0m0s");
        assert_eq!(c[5], m.stats.num_series.to_string());
        assert_eq!(c[7], m.stats.num_chunks.to_string());
        assert_eq!(c[8], "1");
        assert_eq!(c[9], "false");
        samples += c[6].parse::<u64>().unwrap();
    }
    let dump = promtool_dump(&tmp.path().join("promtool-blocks"), &[]);
    assert_eq!(samples, lines(&dump) as u64);
    assert!(!out.contains(&other[0].to_string()));

    let out = tools_ok(
        &objstore,
        &["inspect", "-l", "cluster=~\"us.*\"", "--sort-by", "UNTIL"],
    );
    let listed: Vec<&str> = out.lines().skip(1).map(|l| &l[..26]).collect();
    let want: Vec<String> = other.iter().map(Ulid::to_string).collect();
    assert_eq!(listed, want);
    let out = tools_ok(&objstore, &["inspect", "--sort-by", "#SAMPLES,ULID"]);
    let samples: Vec<u64> = out
        .lines()
        .skip(1)
        .map(|l| cells(l)[6].parse().unwrap())
        .collect();
    assert!(samples.windows(2).all(|w| w[0] <= w[1]), "{samples:?}");
    let err = tools_fail(&objstore, &["inspect", "--sort-by", "BOGUS"]);
    assert!(err.contains("no such column"), "{err}");
}

/// Flips the first payload byte after the sample count of the first chunk in `segment`: the
/// record's CRC no longer holds.
fn flip_chunk_byte(segment: &Path) {
    let mut bytes = std::fs::read(segment).unwrap();
    let mut at = 8;
    while bytes[at] & 0x80 != 0 {
        at += 1;
    }
    // Past the length, the encoding byte and the 2-byte sample count.
    let at = at + 1 + 1 + 2;
    bytes[at] ^= 0xFF;
    std::fs::write(segment, bytes).unwrap();
}

#[test]
fn verify_passes_sound_blocks_and_reports_each_kind_of_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let (objstore, bucket, ids) = bucket_of(tmp.path(), 8);
    assert_eq!(ids.len(), 4);
    let out = tools_ok(&objstore, &["verify"]);
    assert!(out.contains("verified 4 blocks: no issues"), "{out}");

    let [truncated, flipped, lying, sound] = [ids[0], ids[1], ids[2], ids[3]];
    let seg = bucket.join(format!("{truncated}/chunks/000001"));
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    flip_chunk_byte(&bucket.join(format!("{flipped}/chunks/000001")));
    let mut m = meta(&bucket, lying);
    m.stats.num_samples += 7;
    m.write(&bucket.join(lying.to_string())).unwrap();
    // A second copy of the sound block's data under its own ULID and sources.
    let copy = Ulid::new();
    copy_dir(
        &bucket.join(sound.to_string()),
        &bucket.join(copy.to_string()),
    );
    let mut m = meta(&bucket, sound);
    m.ulid = copy;
    m.compaction.sources = vec![copy];
    m.write(&bucket.join(copy.to_string())).unwrap();

    let out = tools_fail(&objstore, &["verify"]);
    let has = |id: Ulid, kind: &str, text: &str| {
        out.lines()
            .any(|l| l.starts_with(&format!("{id}  {kind}  ")) && l.contains(text))
    };
    assert!(
        has(truncated, "index_known_issues", "chunk"),
        "truncated chunks not reported:\n{out}"
    );
    assert!(
        has(flipped, "index_known_issues", "CRC32C mismatch"),
        "flipped byte not reported:\n{out}"
    );
    let real = meta(&bucket, lying).stats.num_samples - 7;
    assert!(
        has(
            lying,
            "index_known_issues",
            &format!(
                "meta.json says the block has {} samples, it holds {real}",
                real + 7
            )
        ),
        "lying stats not reported:\n{out}"
    );
    assert!(
        has(sound, "overlapped_blocks", &copy.to_string())
            && has(copy, "overlapped_blocks", &sound.to_string()),
        "overlap not reported:\n{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.starts_with(&sound.to_string()) && l.contains("index_known_issues")),
        "{out}"
    );
    assert!(out.contains("issues in 5 of the 5 blocks checked"), "{out}");

    // One block, one check: the sound block alone passes.
    let out = tools_ok(
        &objstore,
        &[
            "verify",
            "--id",
            &sound.to_string(),
            "--issues",
            "index_known_issues",
        ],
    );
    assert!(out.contains("verified 1 blocks: no issues"), "{out}");
    let err = tools_fail(&objstore, &["verify", "--id", &Ulid::new().to_string()]);
    assert!(err.contains("no such block in the bucket"), "{err}");

    // A block whose sources another block holds whole is reported as such, not as an overlap.
    let mut m = meta(&bucket, copy);
    m.compaction.sources = vec![sound, copy];
    m.compaction.level = 2;
    m.write(&bucket.join(copy.to_string())).unwrap();
    let out = tools_fail(
        &objstore,
        &[
            "verify",
            "--issues",
            "overlapped_blocks,duplicated_compaction",
        ],
    );
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "{sound}  duplicated_compaction  block {copy} holds every source"
        ))),
        "{out}"
    );
    assert!(!out.contains("overlapped_blocks"), "{out}");
}

#[test]
fn mark_adds_and_removes_markers_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (objstore, bucket, ids) = bucket_of(tmp.path(), 4);
    let (a, b) = (ids[0].to_string(), ids[1].to_string());
    let before = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    let out = tools_ok(
        &objstore,
        &[
            "mark",
            "--id",
            &a,
            "--id",
            &b,
            "--marker",
            "no-compact-mark.json",
            "--details",
            "too big",
        ],
    );
    assert!(
        out.contains(&format!("{a}: no-compact-mark.json written")),
        "{out}"
    );
    for id in [&a, &b] {
        let m = NoCompactMark::read(&bucket.join(id)).unwrap().unwrap();
        assert_eq!(m.details, "too big");
        assert_eq!(m.reason, "manual");
        assert_eq!(m.id.to_string(), *id);
        assert!(m.no_compact_time >= before);
    }
    tools_ok(
        &objstore,
        &[
            "mark",
            "--id",
            &a,
            "--marker",
            "no-downsample-mark.json",
            "--details",
            "keep raw",
        ],
    );
    assert_eq!(
        NoDownsampleMark::read(&bucket.join(&a))
            .unwrap()
            .unwrap()
            .details,
        "keep raw"
    );
    tools_ok(
        &objstore,
        &[
            "mark",
            "--id",
            &a,
            "--marker",
            "deletion-mark.json",
            "--details",
            "bad data",
        ],
    );
    let d = DeletionMark::read(&bucket.join(&a)).unwrap().unwrap();
    assert_eq!(d.details, "bad data");
    assert!(d.deletion_time >= before);
    // A second mark leaves the first as it was.
    let out = tools_ok(
        &objstore,
        &[
            "mark",
            "--id",
            &a,
            "--marker",
            "deletion-mark.json",
            "--details",
            "again",
        ],
    );
    assert!(out.contains("already has"), "{out}");
    assert_eq!(DeletionMark::read(&bucket.join(&a)).unwrap().unwrap(), d);

    tools_ok(
        &objstore,
        &[
            "mark",
            "--id",
            &a,
            "--marker",
            "deletion-mark.json",
            "--remove",
        ],
    );
    assert!(!bucket.join(&a).join("deletion-mark.json").exists());
    assert!(bucket.join(&a).join("no-compact-mark.json").exists());
    let out = tools_ok(
        &objstore,
        &[
            "mark",
            "--id",
            &a,
            "--marker",
            "deletion-mark.json",
            "--remove",
        ],
    );
    assert!(out.contains("nothing to remove"), "{out}");

    let err = tools_fail(
        &objstore,
        &[
            "mark",
            "--id",
            &a,
            "--marker",
            "delete-me.json",
            "--details",
            "x",
        ],
    );
    assert!(err.contains("\"delete-me.json\" is not a marker"), "{err}");
    let missing = Ulid::new().to_string();
    let err = tools_fail(
        &objstore,
        &[
            "mark",
            "--id",
            &b,
            "--id",
            &missing,
            "--marker",
            "deletion-mark.json",
            "--details",
            "x",
        ],
    );
    assert!(
        err.contains(&format!("--id={missing}: no such block")),
        "{err}"
    );
    assert!(
        !bucket.join(&b).join("deletion-mark.json").exists(),
        "a refused command marked a block"
    );
    let err = tools_fail(
        &objstore,
        &[
            "mark",
            "--id",
            "not-a-ulid",
            "--marker",
            "deletion-mark.json",
            "--details",
            "x",
        ],
    );
    assert!(err.contains("is not a block ULID"), "{err}");
    let err = tools_fail(
        &objstore,
        &["mark", "--id", &b, "--marker", "deletion-mark.json"],
    );
    assert!(err.contains("--details"), "{err}");
}

/// Sets the modification time of every file under `dir`.
fn age_files(dir: &Path, t: SystemTime) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            age_files(&p, t);
        } else {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
    }
}

#[test]
fn cleanup_deletes_only_what_is_due() {
    let tmp = tempfile::tempdir().unwrap();
    let (objstore, bucket, ids) = bucket_of(tmp.path(), 6);
    let (old_mark, new_mark, unmarked) = (ids[0], ids[1], ids[2]);
    let now = SystemTime::now();
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    DeletionMark::new(old_mark, now_s - 3 * 86_400, "old")
        .write(&bucket.join(old_mark.to_string()))
        .unwrap();
    DeletionMark::new(new_mark, now_s - 3_600, "new")
        .write(&bucket.join(new_mark.to_string()))
        .unwrap();
    let five_days_ago = now - Duration::from_secs(5 * 86_400);
    let partial = |ulid_time: SystemTime, mtime: SystemTime| {
        let id = Ulid::from_datetime(ulid_time);
        let dir = bucket.join(id.to_string());
        std::fs::create_dir_all(dir.join("chunks")).unwrap();
        std::fs::write(dir.join("chunks/000001"), b"partial").unwrap();
        age_files(&dir, mtime);
        id
    };
    let abandoned = partial(five_days_ago, five_days_ago);
    let still_written = partial(five_days_ago, now);
    let new_ulid = partial(now, five_days_ago);

    let out = tools_ok(&objstore, &["cleanup"]);
    assert!(
        out.contains(&format!("{old_mark}: deleted (marked for deletion")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{abandoned}: deleted (partial upload")),
        "{out}"
    );
    assert!(
        out.contains("cleanup: 1 blocks and 1 partial uploads deleted"),
        "{out}"
    );
    assert!(!bucket.join(old_mark.to_string()).exists());
    assert!(!bucket.join(abandoned.to_string()).exists());
    for id in [new_mark, unmarked] {
        assert!(
            bucket.join(id.to_string()).join("meta.json").exists(),
            "{id}"
        );
    }
    for id in [still_written, new_ulid] {
        assert!(
            bucket.join(id.to_string()).join("chunks/000001").exists(),
            "{id}"
        );
    }

    let out = tools_ok(&objstore, &["cleanup", "--delete-delay", "30m"]);
    assert!(out.contains(&format!("{new_mark}: deleted")), "{out}");
    assert!(!bucket.join(new_mark.to_string()).exists());
    assert!(bucket.join(unmarked.to_string()).join("meta.json").exists());
    let out = tools_ok(&objstore, &["cleanup", "--delete-delay", "0s"]);
    assert!(
        out.contains("cleanup: 0 blocks and 0 partial uploads deleted"),
        "{out}"
    );
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn rewrite_deletes_the_matching_series_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (objstore, bucket, ids) = bucket_of(tmp.path(), 2);
    let src = ids[0];
    let selectors = [
        "--delete-series",
        "{__name__=\"node_cpu_seconds_total\",mode=~\"i.*\"}",
        "--delete-series",
        "temperature_celsius{sensor=\"s3\"}",
    ];
    let deleted = |line: &str| {
        (line.starts_with("{__name__=\"node_cpu_seconds_total\"")
            && ["idle", "iowait", "irq"]
                .iter()
                .any(|m| line.contains(&format!("mode=\"{m}\""))))
            || (line.starts_with("{__name__=\"temperature_celsius\"")
                && line.contains("sensor=\"s3\""))
    };
    let before = promtool_dump(&bucket.join(src.to_string()), &[]);
    let want: Vec<&[u8]> = before
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| !deleted(std::str::from_utf8(l).unwrap()))
        .collect();
    let removed = lines(&before) - want.len();
    // 2 instances × 8 cpus × 3 modes, and 2 sensors, 480 samples each.
    assert_eq!(removed, (2 * 8 * 3 + 2) * 480);

    let untouched = snapshot(&bucket);
    let src_id = src.to_string();
    let mut args = vec!["rewrite", "--id", src_id.as_str()];
    args.extend(selectors);
    let mut dry = args.clone();
    dry.push("--dry-run");
    let out = tools_ok(&objstore, &dry);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains(": would delete {"))
            .count(),
        2 * 8 * 3 + 2,
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "would delete 50 series, {removed} samples (dry run"
        )),
        "{out}"
    );
    assert_eq!(snapshot(&bucket), untouched, "a dry run changed the bucket");

    let out = tools_ok(&objstore, &args);
    assert!(
        out.contains(&format!("deleted 50 series, {removed} samples")),
        "{out}"
    );
    let mark = DeletionMark::read(&bucket.join(src.to_string()))
        .unwrap()
        .unwrap();
    assert!(mark.details.starts_with("rewritten into "), "{mark:?}");
    let new: Ulid = mark.details["rewritten into ".len()..][..26]
        .parse()
        .unwrap();
    let new_dir = bucket.join(new.to_string());
    let after = promtool_dump(&new_dir, &[]);
    assert_same_dump("rewritten block", &want.concat(), &after);

    let (old, m) = (meta(&bucket, src), meta(&bucket, new));
    assert_eq!((m.min_time, m.max_time), (old.min_time, old.max_time));
    assert_eq!(m.compaction, old.compaction);
    let t = m.thanos.as_ref().unwrap();
    assert_eq!(t.source, "bucket.rewrite");
    assert_eq!(t.labels, old.thanos.as_ref().unwrap().labels);
    assert_eq!(t.downsample.resolution, 0);
    assert_eq!(t.rewrites.len(), 1);
    assert_eq!(t.rewrites[0].sources, vec![src]);
    assert_eq!(t.rewrites[0].deletions_applied.len(), 2);
    assert_eq!(
        t.rewrites[0].deletions_applied[1],
        serde_json::json!({"matchers": ["__name__=\"temperature_celsius\"", "sensor=\"s3\""]})
    );
    assert_eq!(m.stats.num_samples, old.stats.num_samples - removed as u64);
    assert_eq!(m.stats.num_series, old.stats.num_series - 50);

    // The new block is sound, and the marked source is not rewritten twice.
    let out = tools_ok(&objstore, &["verify", "--id", &new.to_string()]);
    assert!(out.contains("no issues"), "{out}");
    let err = tools_fail(&objstore, &args);
    assert!(err.contains("marked for deletion"), "{err}");
    let err = tools_fail(
        &objstore,
        &["rewrite", "--id", &src_id, "--delete-series", "{job="],
    );
    assert!(err.contains("--delete-series"), "{err}");
}
