//! `--log.level` and `--log.format` as Thanos has them: every line a role writes is logfmt
//! (`ts=… level=… caller=… msg=…`) or one JSON object, the level filters, and a bad value is
//! refused naming the flag.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs `gauntlet <flags> all` over an empty data dir until it is ready, stops it with
/// SIGTERM and returns what it wrote to stderr.
fn all_log(flags: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let [http, grpc, rw] = free_ports();
    let log = tmp.path().join("stderr.log");
    let mut child = gauntlet()
        .args(flags)
        .arg("all")
        .arg(format!("--data-dir={}", tmp.path().join("data").display()))
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .arg(format!("--remote-write.address=127.0.0.1:{rw}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http_get(http, "/-/ready"), Ok((200, _))) {
        assert!(Instant::now() < deadline, "not ready in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = child.wait().unwrap();
    assert!(status.success(), "exit on SIGTERM: {status}");
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn logfmt_is_the_default_and_every_line_is_key_value_pairs() {
    let text = all_log(&[]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 3, "{text}");
    for l in &lines {
        assert!(l.starts_with("ts="), "{l}");
        let keys: Vec<&str> = l
            .split(' ')
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .take(4)
            .collect();
        assert_eq!(keys, ["ts", "level", "caller", "msg"], "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("level=info") && l.contains(r#"msg="HTTP API listening""#)),
        "{text}"
    );
}

#[test]
fn json_lines_parse_and_the_level_filters() {
    let text = all_log(&["--log.format=json"]);
    let mut levels = Vec::new();
    for l in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        for k in ["ts", "level", "caller", "msg"] {
            assert!(v[k].is_string(), "{k} in {l}");
        }
        levels.push(v["level"].as_str().unwrap().to_string());
    }
    assert!(levels.iter().any(|l| l == "info"), "{text}");

    let quiet = all_log(&["--log.level=warn", "--log.format=json"]);
    for l in quiet.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(matches!(v["level"].as_str(), Some("warn" | "error")), "{l}");
    }
}

#[test]
fn bad_log_flags_are_refused_naming_the_flag() {
    for (flag, name) in [
        ("--log.format=xml", "--log.format"),
        ("--log.level=loud", "--log.level"),
    ] {
        let out = gauntlet().args([flag, "all"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} was accepted");
        assert!(err.contains(name), "{flag}: {err}");
    }
}
