//! Gauntlet reads the WAL a real Prometheus writes: Prometheus 2.42 (Debian stable) and 3.x
//! (Debian's current build) scrape themselves every second for a few seconds and are killed
//! with SIGKILL, as a crash would; every record of their `wal/` must then read and decode,
//! every samples record may only use refs an earlier series record gave, and there must be
//! hundreds of series and samples. A record torn by the kill may only be the log's last, and
//! is repaired as Prometheus would repair it.
//!
//! And Gauntlet writes what Prometheus writes: the records read back, logged by Gauntlet's
//! writer into a fresh segment, must give the same bytes as Prometheus's segment, with WAL
//! compression on (Prometheus's default) and off.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::Prometheus;
use gauntlet_engine::wal::record::{self, Record};
use gauntlet_engine::wal::{
    PAGE_SIZE, SegmentReader, WalError, WalOptions, WalReader, WalWriter, last_checkpoint, repair,
    segment_name, segment_range,
};

/// Scrapes itself every second.
fn config(port: u16) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
}

/// Runs `binary` for about 8 s (until it has appended a few thousand samples; at most 25 s),
/// then kills it with SIGKILL and returns its data dir's owner with the dir.
fn run_and_kill(binary: &Path, extra: &[&str]) -> (Prometheus, std::path::PathBuf) {
    let mut p = Prometheus::start_with_config(binary, config, extra);
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let v = p.get("/api/v1/query?query=prometheus_tsdb_head_samples_appended_total");
        let appended: f64 = v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
            .sum();
        let waited = started.elapsed();
        if (appended > 3000.0 && waited > Duration::from_secs(8))
            || waited > Duration::from_secs(25)
        {
            break;
        }
    }
    p.kill();
    let data = p.data_dir();
    (p, data)
}

#[derive(Debug, Default)]
struct Replay {
    series: usize,
    samples: usize,
    up_samples: usize,
    other: BTreeMap<u8, usize>,
}

/// Reads and decodes every record, checking each sample's ref was given by a series record
/// before it; a torn tail is repaired once and the log read again.
fn replay(wal: &Path) -> Replay {
    for attempt in 0..2 {
        match try_replay(wal) {
            Ok(r) => return r,
            Err(e @ WalError::Corrupt { .. }) if attempt == 0 => {
                let WalError::Corrupt { segment, .. } = &e else {
                    unreachable!()
                };
                let (_, last) = segment_range(wal).unwrap().unwrap();
                assert_eq!(
                    segment.file_name().unwrap().to_str().unwrap(),
                    format!("{last:08}"),
                    "only the last segment may be torn by a kill: {e}"
                );
                eprintln!("the kill tore the log's last record ({e}); repairing");
                repair(wal, &e).unwrap();
            }
            Err(e) => panic!("reading {}: {e}", wal.display()),
        }
    }
    unreachable!()
}

fn try_replay(wal: &Path) -> Result<Replay, WalError> {
    let mut r = WalReader::open(wal)?;
    let mut known = HashSet::new();
    let mut up = HashSet::new();
    let mut out = Replay::default();
    while r.advance()? {
        let decoded = record::decode(r.record()).unwrap_or_else(|e| {
            panic!(
                "record at {} offset {}: {e}",
                r.segment().display(),
                r.offset()
            )
        });
        match decoded {
            Record::Series(s) => {
                for s in s {
                    assert!(s.labels.iter().any(|l| l.0 == "__name__"), "{s:?}");
                    if s.labels.contains(&("__name__", "up")) {
                        up.insert(s.r);
                    }
                    known.insert(s.r);
                    out.series += 1;
                }
            }
            Record::Samples(s) => {
                for s in s {
                    assert!(known.contains(&s.r), "sample of unknown ref {}", s.r);
                    if up.contains(&s.r) {
                        assert_eq!(s.v, 1.0);
                        out.up_samples += 1;
                    }
                    out.samples += 1;
                }
            }
            Record::Tombstones(_) => {}
            Record::Other(t) => *out.other.entry(t).or_default() += 1,
            _ => {}
        }
    }
    Ok(out)
}

/// Logs the records of each of Prometheus's segments into a fresh segment with Gauntlet's
/// writer and compares the bytes. Records are placed the same whatever batches they were
/// logged in, so one record per call gives Prometheus's layout; a segment Prometheus closed
/// ends on a page boundary, which closing ours gives too.
fn rewrite_matches(wal: &Path, compress: bool, what: &str) {
    assert!(last_checkpoint(wal).unwrap().is_none());
    let (first, last) = segment_range(wal).unwrap().unwrap();
    for n in first..=last {
        let theirs = std::fs::read(segment_name(wal, n)).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            compress,
            ..WalOptions::default()
        };
        let mut w = WalWriter::open(tmp.path(), opts).unwrap();
        let mut r = SegmentReader::new(&theirs[..], segment_name(wal, n));
        let mut records = 0;
        while let Some(rec) = r.next().unwrap() {
            w.log(&[rec]).unwrap();
            records += 1;
        }
        if theirs.len().is_multiple_of(PAGE_SIZE) {
            w.close().unwrap();
        }
        let ours = std::fs::read(segment_name(tmp.path(), 0)).unwrap();
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{what}: segment {n} ({records} records)"
        );
        if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
            panic!("{what}: segment {n} first differs at byte {i} ({records} records)");
        }
        eprintln!(
            "{what}: segment {n}, {records} records, {} bytes: same bytes",
            ours.len()
        );
    }
}

fn check(binary: &Path, what: &str, compress: bool) {
    let extra: &[&str] = if compress {
        &[]
    } else {
        &["--no-storage.tsdb.wal-compression"]
    };
    let (_p, data) = run_and_kill(binary, extra);
    let wal = data.join("wal");
    let r = replay(&wal);
    eprintln!("{what}: {r:?}");
    assert!(r.series >= 200, "{what}: {r:?}");
    assert!(r.samples >= 1000, "{what}: {r:?}");
    assert!(r.up_samples >= 3, "{what}: {r:?}");
    rewrite_matches(&wal, compress, what);
}

/// Both compression settings, at once (each run takes about 8 s).
fn check_both(binary: &Path, what: &str) {
    std::thread::scope(|s| {
        let on = s.spawn(|| check(binary, &format!("{what}, snappy"), true));
        check(binary, &format!("{what}, uncompressed"), false);
        on.join().unwrap();
    });
}

#[test]
fn gauntlet_reads_and_writes_the_wal_of_prometheus_2() {
    let Some(prometheus) = crate::common::require_or_skip("prometheus", "wal_prometheus") else {
        return;
    };
    check_both(&prometheus, "Prometheus 2.42");
}

#[test]
fn gauntlet_reads_and_writes_the_wal_of_prometheus_3() {
    check_both(&crate::common::prometheus3(), "Prometheus 3");
}
