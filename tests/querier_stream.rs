//! The querier's streaming read path over real `gauntlet store` processes. Its answers equal
//! `gauntlet all` over the same data, with dedup over an HA pair whose series sets interleave
//! (each replica holds series the other lacks), and through a second querier stacked on it; a
//! selection of every series holds a bounded amount of memory in the querier, not every
//! series' samples at once; a store that dies while its answer streams is a warning or an
//! error, as partial responses are asked for.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::bucket::upload;
use crate::common::*;

/// 2025-01-01, aligned to 8 h: the generated data's start, Unix seconds.
const T0: i64 = 1_735_689_600;

/// The value of label `name` on an OpenMetrics sample line.
fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}=\""))? + name.len() + 2;
    line[at..].split('"').next()
}

/// `src` with only the sample lines `keep` holds to (comment lines and `# EOF` stay).
fn filter_om(src: &Path, dst: &Path, keep: impl Fn(&str) -> bool) -> PathBuf {
    let text = std::fs::read_to_string(src).unwrap();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with('#') || keep(line) {
            out.push_str(line);
            out.push('\n');
        }
    }
    std::fs::write(dst, out).unwrap();
    dst.to_path_buf()
}

/// Promtool's blocks of an OpenMetrics file, in `dir`.
fn blocks_of(om: &Path, dir: &Path) -> PathBuf {
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(om)
            .arg(dir),
    );
    dir.to_path_buf()
}

/// A `gauntlet store` over a bucket holding `blocks` with external labels `labels`.
fn store(root: &Path, name: &str, blocks: &Path, labels: &[(&str, &str)]) -> GauntletServer {
    let bucket = root.join(format!("{name}-bucket"));
    std::fs::create_dir_all(&bucket).unwrap();
    upload(blocks, &bucket, labels);
    let cfg = filesystem_objstore(root.join(format!("{name}.yml")), &bucket);
    GauntletServer::start(
        &[
            "store",
            &format!("--objstore.config-file={}", cfg.display()),
            &format!(
                "--data-dir={}",
                root.join(format!("{name}-cache")).display()
            ),
            "--sync-block-duration=1h",
        ],
        "/-/ready",
    )
}

fn querier(endpoints: &[&GauntletServer], extra: &[&str]) -> GauntletServer {
    let mut args: Vec<String> = vec!["query".into(), "--query.replica-label=replica".into()];
    for e in endpoints {
        args.push(format!("--endpoint=127.0.0.1:{}", e.grpc_port));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    GauntletServer::start(&args, "/-/ready")
}

fn get_json(s: &GauntletServer, path: &str) -> serde_json::Value {
    let (status, body) = s.get(path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Instant and range queries over the generated data, and the series and label APIs.
fn paths() -> Vec<String> {
    let at = (T0 + 3600).to_string();
    let (start, end) = ((T0 + 300).to_string(), (T0 + 7200).to_string());
    let mut out = Vec::new();
    for query in [
        r#"http_requests_total{handler="/api/a"}"#,
        "sum by (instance) (rate(http_requests_total[5m]))",
        r#"count({__name__=~".+"})"#,
        r#"count by (instance) ({__name__=~".+"})"#,
        "max_over_time(temperature_celsius[10m])",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ] {
        out.push(api_path(
            "/api/v1/query",
            &[("query", query), ("time", &at)],
        ));
        out.push(api_path(
            "/api/v1/query_range",
            &[
                ("query", query),
                ("start", &start),
                ("end", &end),
                ("step", "60"),
            ],
        ));
    }
    out.push(api_path(
        "/api/v1/series",
        &[(
            "match[]",
            r#"{__name__=~"http_requests_total",handler="/api/b"}"#,
        )],
    ));
    out.push(api_path("/api/v1/label/instance/values", &[]));
    out
}

#[test]
fn answers_over_an_ha_pair_with_interleaved_series_equal_one_process() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // host-00 to host-05; replica a lacks host-01 and host-04, b lacks host-00 and host-03:
    // in label order their series interleave, and dedup meets series of one replica alone
    // and of both. (No replica has a gap: penalty dedup keeps to the replica it reads until
    // a gap longer than its penalty, so there it does not equal the union of the samples.)
    let om = gen_openmetrics(root, T0, 7200, 15, 6);
    let a_om = filter_om(&om, &root.join("a.om"), |l| {
        !matches!(label(l, "instance"), Some("host-01" | "host-04"))
    });
    let b_om = filter_om(&om, &root.join("b.om"), |l| {
        !matches!(label(l, "instance"), Some("host-00" | "host-03"))
    });
    let a = store(
        root,
        "a",
        &blocks_of(&a_om, &root.join("a-blocks")),
        &[("replica", "a")],
    );
    let b = store(
        root,
        "b",
        &blocks_of(&b_om, &root.join("b-blocks")),
        &[("replica", "b")],
    );
    let single = GauntletServer::start(
        &[
            "all",
            &format!("--data-dir={}", blocks_of(&om, &root.join("all")).display()),
        ],
        "/-/ready",
    );
    let q1 = querier(&[&a, &b], &[]);
    let q2 = querier(&[&q1], &[]);
    for path in paths() {
        let want = get_json(&single, &path);
        let data = &want["data"];
        let results = data.as_array().or_else(|| data["result"].as_array());
        assert!(results.is_some_and(|r| !r.is_empty()), "{path}: no data");
        assert_eq!(get_json(&q1, &path), want, "{path}: querier with dedup");
        assert_eq!(get_json(&q2, &path), want, "{path}: stacked querier");
    }
    // Without dedup each replica's series come back apart: 4 instances each.
    let sel = r#"count by (replica) (count by (replica, instance) (http_requests_total))"#;
    let path = api_path(
        "/api/v1/query",
        &[
            ("query", sel),
            ("time", &(T0 + 1800).to_string()),
            ("dedup", "false"),
        ],
    );
    for q in [&q1, &q2] {
        let got = get_json(q, &path);
        let mut counts: Vec<(String, String)> = got["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"]["replica"].as_str().unwrap().to_string(),
                    r["value"][1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        counts.sort();
        assert_eq!(
            counts,
            [("a".into(), "4".into()), ("b".into(), "4".into())],
            "{got}"
        );
    }
}

/// Peak resident memory of process `pid` so far, MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib / 1024.0
}

/// Most the querier's peak memory may grow while it counts every series below, MiB. Reading
/// every answer whole before evaluating, it grew by 141 MiB (debug build); streamed, by 57.
const FULL_SELECTION_GROWTH_MIB: f64 = 100.0;

#[test]
fn a_selection_of_every_series_streams_in_bounded_memory() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // 8000 series × 2 h at 15 s: 3.8 million samples, 61 MB decoded.
    let om = gen_openmetrics(root, T0, 7200, 15, 40);
    let s = store(root, "s", &blocks_of(&om, &root.join("blocks")), &[]);
    let q = querier(&[&s], &[]);
    let idle = peak_rss_mib(q.pid());
    let path = api_path(
        "/api/v1/query_range",
        &[
            ("query", r#"count({__name__=~".+"})"#),
            ("start", &T0.to_string()),
            ("end", &(T0 + 7200).to_string()),
            ("step", "60"),
        ],
    );
    let got = get_json(&q, &path);
    let result = got["data"]["result"].as_array().unwrap();
    assert_eq!(result[0]["values"][0][1], "8000", "{got}");
    let grew = peak_rss_mib(q.pid()) - idle;
    assert!(
        grew < FULL_SELECTION_GROWTH_MIB,
        "the querier's peak memory grew by {grew:.0} MiB (from {idle:.0} MiB)"
    );
}

#[test]
fn a_store_that_dies_while_its_answer_streams_is_a_warning_or_an_error() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let om = gen_openmetrics(root, T0, 7200, 15, 20);
    let blocks = blocks_of(&om, &root.join("blocks"));
    let path = api_path(
        "/api/v1/query_range",
        &[
            ("query", r#"count({__name__=~".+"})"#),
            ("start", &T0.to_string()),
            ("end", &(T0 + 7200).to_string()),
            ("step", "15"),
        ],
    );
    for partial in [true, false] {
        let a = store(root, &format!("a-{partial}"), &blocks, &[("replica", "a")]);
        let b = store(root, &format!("b-{partial}"), &blocks, &[("replica", "b")]);
        let q = querier(&[&a, &b], &["--endpoint.info-timeout=1h"]);
        let full = get_json(&q, &path);
        let b_addr = format!("127.0.0.1:{}", b.grpc_port);
        // Frozen, `b` holds the merge up while `a`'s answer waits in its bounded inbox; then
        // `b` dies with the query in flight.
        b.signal("STOP");
        let port = q.http_port;
        let asked = format!("{path}&partial_response={partial}");
        let query = std::thread::spawn(move || http_get(port, &asked).unwrap());
        std::thread::sleep(Duration::from_millis(500));
        let killed = Instant::now();
        drop(b);
        let (status, body) = query.join().unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        // Well inside `--store.response-timeout` (2 m): the failure ended the wait.
        assert!(killed.elapsed() < Duration::from_secs(60));
        if partial {
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["data"], full["data"], "`a` holds a full copy");
            let w = answer["warnings"].as_array().expect("warnings");
            assert!(
                w.iter().any(|w| w.as_str().unwrap().contains(&b_addr)),
                "{answer}"
            );
        } else {
            assert!(status >= 500, "{status} {answer}");
            assert_eq!(answer["status"], "error");
            assert!(
                answer["error"].as_str().unwrap().contains(&b_addr),
                "{answer}"
            );
        }
    }
}
