//! Blocks against real peers: fixtures written by Prometheus and promtool dump identically;
//! bigger promtool blocks made here dump identically; blocks Gauntlet writes from the same input
//! are accepted by promtool and answer the same queries in a real Prometheus.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use common::*;

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn fixture_dumps_match_the_recorded_promtool_dumps() {
    for name in [
        "promtool-200series-2h",
        "prometheus-head-compacted-remote-write",
    ] {
        let want = gunzip(&fixtures().join(format!("{name}.dump.txt.gz")));
        let got = gauntlet_dump(&fixtures().join(name), &[]);
        assert_same_dump(name, &want, &got);
    }
}

#[test]
fn compacted_fixture_dumps_like_promtool() {
    let dir = fixtures().join("prometheus-compacted-200series-10h");
    assert_same_dump(
        "compacted",
        &promtool_dump(&dir, &[]),
        &gauntlet_dump(&dir, &[]),
    );
    // One block of the set on its own, and a time window cutting through chunks.
    let one = dir.join("01M80EJD593276B0WSCA6NM0B3");
    assert_same_dump(
        "single block",
        &promtool_dump(&one, &[]),
        &gauntlet_dump(&one, &[]),
    );
    let window = ["--min-time=1735700000000", "--max-time=1735715000000"];
    assert_same_dump(
        "window",
        &promtool_dump(&dir, &window),
        &gauntlet_dump(&dir, &window),
    );
}

#[test]
fn dump_match_selects_like_a_filter_over_the_full_dump() {
    let dir = fixtures().join("promtool-200series-2h");
    let full = String::from_utf8(gauntlet_dump(&dir, &[])).unwrap();
    type Filter = fn(&str) -> bool;
    let cases: [(&str, Filter); 4] = [
        (r#"--match=http_requests_total{code="500"}"#, |l| {
            l.starts_with(r#"{__name__="http_requests_total""#) && l.contains(r#"code="500""#)
        }),
        (
            r#"--match={__name__=~"temperature.*",sensor!~"s1|s2"}"#,
            |l| {
                l.starts_with(r#"{__name__="temperature"#)
                    && !l.contains(r#"sensor="s1""#)
                    && !l.contains(r#"sensor="s2""#)
            },
        ),
        (r#"--match={job="node",sensor=""}"#, |l| {
            l.contains(r#"job="node""#) && !l.contains("sensor=")
        }),
        (r#"--match={le!="",handler="/api/b"}"#, |l| {
            l.contains("le=") && l.contains(r#"handler="/api/b""#)
        }),
    ];
    for (arg, keep) in cases {
        let want: String = full
            .lines()
            .filter(|l| keep(l))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!want.is_empty(), "{arg} selects nothing in the fixture");
        let got = String::from_utf8(gauntlet_dump(&dir, &[arg])).unwrap();
        assert_same_dump(arg, want.as_bytes(), got.as_bytes());
    }
}

/// Generates `gen_openmetrics.py` input for `instances` × 200 series over `secs` seconds.
fn openmetrics(dir: &Path, instances: u32, secs: u32) -> std::path::PathBuf {
    let om = dir.join("input.om");
    run_ok(
        Command::new(require("python3"))
            .arg(repo_root().join("tests/tools/gen_openmetrics.py"))
            .arg(&om)
            .args([
                "1735689600",
                &secs.to_string(),
                "15",
                &instances.to_string(),
            ]),
    );
    om
}

#[test]
fn big_promtool_blocks_and_gauntlet_blocks_agree_with_promtool_and_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    // 50 instances × 200 series = 10 000 series over 2 h at 15 s.
    let om = openmetrics(tmp.path(), 50, 7200);

    let theirs = tmp.path().join("promtool-blocks");
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&theirs),
    );
    let reference = promtool_dump(&theirs, &[]);
    assert!(
        reference.len() > 100_000_000 / 4,
        "expected millions of samples"
    );
    assert_same_dump("promtool blocks", &reference, &gauntlet_dump(&theirs, &[]));

    let ours = tmp.path().join("gauntlet-blocks");
    run_ok(
        gauntlet()
            .args(["tools", "block", "create-from-openmetrics"])
            .arg(&om)
            .arg(&ours),
    );
    assert_same_dump(
        "gauntlet blocks, promtool dump",
        &reference,
        &promtool_dump(&ours, &[]),
    );
    assert_same_dump(
        "gauntlet blocks, gauntlet dump",
        &reference,
        &gauntlet_dump(&ours, &[]),
    );

    for block in std::fs::read_dir(&ours).unwrap() {
        let block = block.unwrap().path();
        let scratch = tempfile::tempdir().unwrap();
        let db = scratch.path().join("db");
        copy_dir(&block, &db.join(block.file_name().unwrap()));
        std::fs::create_dir_all(db.join("wal")).unwrap();
        let out = run_ok(
            Command::new(require("promtool"))
                .args(["tsdb", "analyze"])
                .arg(&db)
                .arg(block.file_name().unwrap()),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Series: 10000"), "promtool analyze:\n{text}");
    }

    let prom = require("prometheus");
    let a = Prometheus::start(&prom, &theirs);
    let b = Prometheus::start(&prom, &ours);
    let at = 1735689600 + 3600;
    let queries = [
        r#"count({__name__=~".+"})"#,
        "sum(rate(http_requests_total[5m]))",
        r#"http_requests_total{code="500",instance="host-07"}"#,
        r#"node_cpu_seconds_total{cpu="3",mode=~"user|system"}"#,
        "max_over_time(temperature_celsius[10m])",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        "sum by (instance) (increase(http_requests_total[1h]))",
        "process_resident_memory_bytes",
    ];
    for q in queries {
        for path in [
            format!("/api/v1/query?query={}&time={at}", urlencode(q)),
            format!(
                "/api/v1/query_range?query={}&start={}&end={}&step=60",
                urlencode(q),
                at - 1800,
                at + 1800
            ),
        ] {
            let ra = a.get(&path);
            let rb = b.get(&path);
            assert_eq!(ra["status"], "success", "{path}");
            assert!(
                ra["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()),
                "{path} returned no data"
            );
            assert_eq!(
                ra, rb,
                "{path}: prometheus over promtool's blocks vs over Gauntlet's"
            );
        }
    }
}

#[test]
fn inspect_sample_writes_a_block_promtool_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = run_ok(
        gauntlet()
            .args(["tools", "block", "inspect", "--sample"])
            .arg(&data),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("series         140"), "{text}");
    assert!(text.contains("samples        67200"), "{text}");
    assert_same_dump(
        "sample block",
        &promtool_dump(&data, &[]),
        &gauntlet_dump(&data, &[]),
    );
    // A second run finds the block and does not write another.
    let again = run_ok(
        gauntlet()
            .args(["tools", "block", "inspect", "--sample"])
            .arg(&data),
    );
    assert!(!String::from_utf8_lossy(&again.stdout).contains("wrote sample block"));
}
