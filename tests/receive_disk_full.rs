//! The receive WAL's disk fills: the receiver's `--tsdb.path` is on a size-limited tmpfs
//! (mounted by the test, which needs root, as `tests/run.sh` does), nearly filled by a file
//! of the test's own. Writes get a 5xx once the WAL cannot grow, the receiver keeps running,
//! writing resumes once the file is removed, and after a SIGKILL and a restart every sample
//! that was acknowledged is in the tenant's TSDB as promtool reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::storeapi::parse_dump;
use crate::common::*;

/// A tmpfs of `mib` MiB mounted on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {mib} MiB tmpfs on {} failed (this test needs root, as tests/run.sh \
             has): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The samples of one request, by series.
type Sent = Vec<(String, Vec<(i64, f64)>)>;

/// Free bytes on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> u64 {
    let out = run_ok(Command::new("df").args(["-B1", "--output=avail"]).arg(dir));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_full_wal_disk_refuses_writes_loses_nothing_acknowledged_and_recovers() {
    // Where the disk fills, relative to the WAL's pages and records, decides whether a record
    // is cut part way: a few offsets, a tmpfs page apart, put the cut in different places.
    for pages in [0, 1, 3] {
        disk_fills(pages * 4096);
    }
}

/// One run: a receiver whose WAL disk fills with `3 MiB + extra` bytes left.
fn disk_fills(extra: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("disk");
    let _disk = Tmpfs::mount(&mnt, 24);
    let filler = mnt.join("filler");
    let tsdb = mnt.join("receive");
    let ports = free_ports();
    let mut recv = Receiver::start_on(&tsdb, &[], ports);
    // Leave about 3 MiB: room for a few hundred requests' WAL records, not for all of them.
    let leave = (3 << 20) + extra;
    let fill = free_bytes(&mnt).saturating_sub(leave);
    run_ok(
        Command::new("fallocate")
            .args(["-l", &fill.to_string()])
            .arg(&filler),
    );

    // Requests of 200 series × 5 samples, each sample's value unique, until the disk is full.
    let t0 = now_ms() - 10 * 60_000;
    let mut acked: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    let write = |k: usize| -> (u16, String, Sent) {
        let mut sent = Vec::new();
        let ts = (0..200)
            .map(|i| {
                let name = format!("s{i}");
                let samples: Vec<(i64, f64)> = (0..5)
                    .map(|j| (t0 + (k * 5 + j) as i64 * 100, (k * 1000 + i * 5 + j) as f64))
                    .collect();
                sent.push((name.clone(), samples.clone()));
                series(&[("__name__", "disk_full"), ("i", &name)], &samples)
            })
            .collect();
        let (code, _, msg) =
            post(ports[2], "/api/v1/receive", &[V1], &write_body(ts)).expect("remote write");
        (code, msg, sent)
    };
    let mut k = 0;
    let refused = loop {
        assert!(k < 5_000, "the disk never filled");
        let (code, msg, sent) = write(k);
        k += 1;
        match code {
            200 => {
                for (name, s) in sent {
                    acked.entry(name).or_default().extend(s);
                }
            }
            500..=599 => break (code, msg),
            other => panic!("write {k}: {other} {msg}"),
        }
    };
    assert!(
        !acked.is_empty(),
        "no write was taken before the disk filled"
    );
    eprintln!("disk full after {k} requests: {refused:?}");
    assert!(
        refused.1.to_lowercase().contains("space") || refused.1.contains("WAL"),
        "the refusal says why: {refused:?}"
    );
    // Still running, still refusing, still healthy.
    let (code, _) = http_get(ports[0], "/-/healthy").unwrap();
    assert_eq!(code, 200);
    let (code, _, _) = write(k);
    assert!(code >= 500, "{code}");
    k += 1;

    // Space comes back: writing resumes within a few seconds.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut resumed = 0;
    while resumed < 5 {
        let (code, msg, sent) = write(k);
        k += 1;
        if code == 200 {
            resumed += 1;
            for (name, s) in sent {
                acked.entry(name).or_default().extend(s);
            }
        } else {
            assert!(code >= 500, "{code} {msg}");
            assert!(
                Instant::now() < deadline,
                "writes still refused: {code} {msg}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // A SIGKILL, a restart, and every acknowledged sample is there.
    recv.kill();
    drop(recv);
    let recv = Receiver::start_on(&tsdb, &[], ports);
    let out = run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "dump"])
            .arg(tsdb.join("default-tenant")),
    );
    drop(recv);
    let dump = parse_dump(&out.stdout, &[]);
    let mut missing = 0;
    for (name, samples) in &acked {
        let key = dump
            .keys()
            .find(|l| {
                l.get("i") == Some(name) && l.get("__name__").is_some_and(|n| n == "disk_full")
            })
            .unwrap_or_else(|| panic!("series {name} lost"));
        let kept = &dump[key];
        for s in samples {
            if !kept.contains(s) {
                missing += 1;
            }
        }
    }
    assert_eq!(missing, 0, "acknowledged samples lost");
}
