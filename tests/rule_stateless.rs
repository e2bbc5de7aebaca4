//! `gauntlet rule` in stateless mode (`--remote-write.config[-file]`), from end to end: what
//! it remote-writes into a `gauntlet receive` and into upstream `thanos receive` is, sample by
//! sample, what a stateful `gauntlet rule` records for the same rules over the same data;
//! nothing recorded is lost while the receiver is down for several rounds, nor when the ruler
//! is SIGKILLed during that outage and restarted; a bad configuration stops it at start with
//! a message naming the field; and an alert's `for` clock survives a restart, restored from
//! `ALERTS_FOR_STATE` read back through the query endpoint. All processes on loopback.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::peers::thanos_receive;
use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::{
    GauntletServer, api_path, filesystem_objstore, free_ports, gauntlet, http_get,
};

fn json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The sum of the samples of `family` on `/metrics` whose lines hold every part of `with`.
fn metric(port: u16, family: &str, with: &[&str]) -> f64 {
    let (_, body) = http_get(port, "/metrics").unwrap();
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(family) && with.iter().all(|w| l.contains(w)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (at most `secs`) for `check` to give something, polling every 100 ms.
fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: not in {secs} s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A remote-write configuration sending to every `(name, port)` with quick batches and
/// retries.
fn remote_write_config(dir: &Path, to: &[(&str, u16)]) -> String {
    let mut text = String::from("remote_write:\n");
    for (name, port) in to {
        text.push_str(&format!(
            "- url: http://127.0.0.1:{port}/api/v1/receive\n  name: {name}\n  remote_timeout: 5s\n  \
             queue_config: {{max_samples_per_send: 50, batch_send_deadline: 100ms, \
             min_backoff: 50ms, max_backoff: 500ms}}\n"
        ));
    }
    format!(
        "--remote-write.config-file={}",
        write_file(dir, "remote-write.yml", &text)
    )
}

/// The raw samples of `selector` over the last `range`, per series (labels as JSON text,
/// `(ms, value text)` points), through the query API on `port`.
fn raw(port: u16, selector: &str, range: &str) -> Vec<(String, Vec<(i64, String)>)> {
    let at = format!("{:.3}", now_ms() as f64 / 1000.0);
    let q = format!("{selector}[{range}]");
    let v = json(
        port,
        &api_path("/api/v1/query", &[("query", &q), ("time", &at)]),
    );
    let mut out: Vec<(String, Vec<(i64, String)>)> = v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{q}: {v}"))
        .iter()
        .map(|s| {
            let pts = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                        p[1].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (s["metric"].to_string(), pts)
        })
        .collect();
    out.sort();
    out
}

/// `src{instance}` gauges over the last 4 minutes into the receiver on `rw`.
fn write_source(rw: u16) {
    let now = now_ms();
    let ts: Vec<gauntlet_proto::prometheus::TimeSeries> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, inst)| {
            let pts: Vec<(i64, f64)> = (0..16)
                .map(|k| {
                    (
                        now - 240_000 + k * 15_000,
                        (i as f64 + 1.0) * 10.0 + k as f64,
                    )
                })
                .collect();
            series(
                &[("__name__", "src"), ("instance", inst), ("job", "j")],
                &pts,
            )
        })
        .collect();
    let (code, _, msg) = post(rw, "/api/v1/receive", &[V1], &write_body(ts)).unwrap();
    assert!((200..300).contains(&code), "{code} {msg}");
}

const RULES: &str = "groups:
  - name: recorded
    interval: 1s
    rules:
      - record: job:src:sum
        expr: sum by (job) (src)
      - record: src:scaled
        expr: src * 2 + time()
      - record: job:src:max_t
        expr: max by (job) (src) - time()
";

/// Recorded series of the three rules, with the given `ruler` label, per series, for the
/// window `[from, to]` (ms).
fn recorded(port: u16, ruler: &str, from: i64, to: i64) -> Vec<(String, Vec<(i64, String)>)> {
    let mut all = Vec::new();
    for name in ["job:src:sum", "src:scaled", "job:src:max_t"] {
        for (labels, pts) in raw(port, &format!("{name}{{ruler=\"{ruler}\"}}"), "2m") {
            let labels = labels.replace(&format!("\"ruler\":\"{ruler}\""), "\"ruler\":\"*\"");
            let pts: Vec<(i64, String)> = pts
                .into_iter()
                .filter(|(t, _)| (from..=to).contains(t))
                .collect();
            all.push((labels, pts));
        }
    }
    all.sort();
    all
}

/// Only the labels the rules gave (no receiver or querier labels).
fn rule_labels(labels: &str) -> String {
    let v: Value = serde_json::from_str(labels).unwrap();
    let mut m = v.as_object().unwrap().clone();
    for drop in ["tenant_id", "receive", "replica", "receive_replica"] {
        m.remove(drop);
    }
    Value::Object(m).to_string()
}

#[test]
fn stateless_rule_remote_writes_what_the_stateful_rule_records_into_gauntlet_and_thanos_receive() {
    let tmp = tempfile::tempdir().unwrap();
    // The source data, read by both rulers through one querier.
    let source = Receiver::start_bare(&tmp.path().join("source"), &[], free_ports());
    write_source(source.rw);
    let q1 = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", source.grpc)],
        "/-/ready",
    );
    // Where the stateless ruler writes: a Gauntlet receiver and a Thanos receiver.
    let target = Receiver::start_bare(
        &tmp.path().join("target"),
        &["--label=receive=\"gauntlet\""],
        free_ports(),
    );
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let (thanos, thanos_rw) = thanos_receive(
        &tmp.path().join("thanos-receive"),
        &objstore,
        &["--label=receive=\"thanos\""],
    );
    // One rule file for both rulers: the same group evaluates at the same moments.
    let rules = write_file(tmp.path(), "rules.yml", RULES);
    let rule_file = format!("--rule-file={rules}");
    let query = format!("--query=127.0.0.1:{}", q1.http_port);
    let stateful_dir = format!("--data-dir={}", tmp.path().join("stateful").display());
    let stateful = GauntletServer::start(
        &[
            "rule",
            &stateful_dir,
            &rule_file,
            &query,
            "--label=ruler=\"stateful\"",
        ],
        "/-/ready",
    );
    let rw = remote_write_config(
        tmp.path(),
        &[("gauntlet", target.rw), ("thanos", thanos_rw)],
    );
    let stateless_dir = format!("--data-dir={}", tmp.path().join("stateless").display());
    let stateless = GauntletServer::start(
        &[
            "rule",
            &stateless_dir,
            &rule_file,
            &query,
            &rw,
            "--label=ruler=\"stateless\"",
        ],
        "/-/ready",
    );
    // Stateless: no StoreAPI; the Info service names a ruler with rules.
    let sent = |name: &str| {
        metric(
            stateless.http_port,
            "prometheus_remote_storage_samples_total",
            &[&format!("remote_name=\"{name}\"")],
        )
    };
    wait_for(60, "both endpoints sent at least 8 rounds", || {
        (sent("gauntlet") >= 40.0 && sent("thanos") >= 40.0).then_some(())
    });
    let to = now_ms() - 2_000;
    let from = to - 6_000;
    // Let the last rounds of the window reach the receivers.
    wait_for(30, "nothing pending", || {
        (metric(
            stateless.http_port,
            "prometheus_remote_storage_samples_pending",
            &[],
        ) == 0.0)
            .then_some(())
    });
    assert!(
        metric(
            stateless.http_port,
            "prometheus_remote_storage_highest_timestamp_in_seconds",
            &[]
        ) * 1000.0
            >= to as f64
    );
    assert_eq!(
        metric(
            stateless.http_port,
            "prometheus_remote_storage_samples_failed_total",
            &[]
        ),
        0.0
    );

    let q_stateful = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", stateful.grpc_port),
        ],
        "/-/ready",
    );
    let q_gauntlet = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", target.grpc)],
        "/-/ready",
    );
    let q_thanos = GauntletServer::start(
        &["query", &format!("--endpoint={}", thanos.grpc_addr())],
        "/-/ready",
    );
    let norm = |v: Vec<(String, Vec<(i64, String)>)>| -> Vec<(String, Vec<(i64, String)>)> {
        let mut v: Vec<_> = v.into_iter().map(|(l, p)| (rule_labels(&l), p)).collect();
        v.sort();
        v
    };
    let want = norm(recorded(q_stateful.http_port, "stateful", from, to));
    assert_eq!(want.len(), 5, "1 + 3 + 1 series: {want:?}");
    for (_, pts) in &want {
        assert!(pts.len() >= 5, "a point per second in the window: {pts:?}");
    }
    let got_gauntlet = norm(recorded(q_gauntlet.http_port, "stateless", from, to));
    assert_eq!(
        got_gauntlet, want,
        "gauntlet receive holds what the stateful ruler recorded"
    );
    let got_thanos = norm(recorded(q_thanos.http_port, "stateless", from, to));
    assert_eq!(
        got_thanos, want,
        "thanos receive holds what the stateful ruler recorded"
    );

    // The stateless ruler serves no series over gRPC: a querier over it finds none.
    let q_over_stateless = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", stateless.grpc_port),
        ],
        "/-/ready",
    );
    assert!(raw(q_over_stateless.http_port, "job:src:sum", "2m").is_empty());
    // It still serves its rules.
    let rules = json(stateless.http_port, "/api/v1/rules");
    assert_eq!(
        rules["data"]["groups"][0]["rules"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// `tick` = the evaluation time in seconds, every second: any lost sample is a hole.
const TICK_RULES: &str = "groups:
  - name: tick
    interval: 1s
    rules:
      - record: tick
        expr: vector(time())
";

#[test]
fn stateless_rule_loses_nothing_across_a_receiver_outage_and_its_own_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Receiver::start_bare(&tmp.path().join("source"), &[], free_ports());
    let q = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", source.grpc)],
        "/-/ready",
    );
    let target_ports = free_ports();
    let target_dir = tmp.path().join("target");
    let mut target = Receiver::start_bare(&target_dir, &[], target_ports);
    let rw = remote_write_config(tmp.path(), &[("target", target_ports[2])]);
    let rule_file = format!(
        "--rule-file={}",
        write_file(tmp.path(), "rules.yml", TICK_RULES)
    );
    let query = format!("--query=127.0.0.1:{}", q.http_port);
    let data = format!("--data-dir={}", tmp.path().join("ruler").display());
    let args = ["rule", data.as_str(), &rule_file, &query, &rw];
    let ruler = GauntletServer::start(&args, "/-/ready");
    let m = |port: u16, family: &str| metric(port, family, &["remote_name=\"target\""]);
    wait_for(30, "3 ticks sent", || {
        (m(ruler.http_port, "prometheus_remote_storage_samples_total") >= 3.0).then_some(())
    });

    // The receiver goes down for several rounds: samples wait and are retried.
    target.kill();
    let down_at = now_ms();
    wait_for(30, "retries while the receiver is down", || {
        (m(
            ruler.http_port,
            "prometheus_remote_storage_samples_retried_total",
        ) > 0.0
            && m(ruler.http_port, "prometheus_remote_storage_samples_pending") >= 3.0)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    // The ruler dies too, its samples unsent.
    ruler.signal("KILL");
    let killed_at = now_ms();
    drop(ruler);
    std::thread::sleep(Duration::from_millis(500));
    let ruler = GauntletServer::start(&args, "/-/ready");
    let restarted_at = now_ms();
    // Both outages overlap a while, then the receiver comes back.
    std::thread::sleep(Duration::from_secs(3));
    let pending = m(ruler.http_port, "prometheus_remote_storage_samples_pending");
    assert!(
        pending >= 5.0,
        "what was unsent before the kill waits again after the restart: {pending}"
    );
    let target = Receiver::start_bare(&target_dir, &[], target_ports);
    wait_for(30, "everything sent after the receiver is back", || {
        (m(ruler.http_port, "prometheus_remote_storage_samples_pending") == 0.0).then_some(())
    });
    let end = now_ms();
    assert_eq!(
        m(
            ruler.http_port,
            "prometheus_remote_storage_samples_failed_total"
        ),
        0.0
    );
    drop(ruler);

    let reader = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", target.grpc)],
        "/-/ready",
    );
    let got = raw(reader.http_port, "tick", "5m");
    assert_eq!(got.len(), 1, "{got:?}");
    let ts: Vec<i64> = got[0].1.iter().map(|p| p.0).collect();
    // Each sample's value is its own time: nothing was mixed up.
    for (t, v) in &got[0].1 {
        assert_eq!((*t as f64 / 1000.0).to_string(), *v, "tick at {t}");
    }
    // Every round the ruler ran is there: the only holes lie while it was dead.
    for w in ts.windows(2) {
        if w[1] - w[0] != 1000 {
            assert!(
                w[0] >= killed_at - 2_000 && w[1] <= restarted_at + 2_000,
                "a hole from {} to {} outside the ruler's own downtime ({killed_at}..{restarted_at})",
                w[0],
                w[1]
            );
        }
    }
    let during = |a: i64, b: i64| ts.iter().filter(|t| (a..b).contains(*t)).count();
    assert!(
        during(down_at + 1_000, killed_at - 1_000) >= 3,
        "rounds evaluated while the receiver was down reached it from the WAL: {ts:?}"
    );
    assert!(
        during(restarted_at + 1_000, restarted_at + 3_000) >= 1,
        "rounds after the restart reached it: {ts:?}"
    );
    assert!(ts.last().is_some_and(|t| *t >= end - 3_000), "{ts:?}");
}

#[test]
fn a_bad_remote_write_configuration_stops_the_ruler_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let rule_file = format!(
        "--rule-file={}",
        write_file(tmp.path(), "r.yml", TICK_RULES)
    );
    let cases = [
        (
            "remote_write:\n- url: http://127.0.0.1:1/api/v1/receive\n  queue_config: {max_samples: 5}\n",
            "max_samples",
        ),
        (
            "remote_write:\n- url: http://127.0.0.1:1/api/v1/receive\n  bearer_tokn: x\n",
            "bearer_tokn",
        ),
        (
            "remote_write:\n- url: '127.0.0.1 :9/x'\n",
            "remote_write[0].url",
        ),
        (
            "remote_write:\n- url: ftp://127.0.0.1:1/x\n",
            "remote_write[0].url",
        ),
        (
            "remote_write:\n- url: http://127.0.0.1:1/a\n  remote_timeout: later\n",
            "remote_write[0].remote_timeout",
        ),
    ];
    for (i, (yaml, want)) in cases.iter().enumerate() {
        let cfg = write_file(tmp.path(), &format!("rw{i}.yml"), yaml);
        let data = format!("--data-dir={}", tmp.path().join(format!("d{i}")).display());
        let [http, grpc] = free_ports();
        let out = gauntlet()
            .args([
                "rule",
                &data,
                &rule_file,
                "--query=127.0.0.1:1",
                &format!("--remote-write.config-file={cfg}"),
                &format!("--http-address=127.0.0.1:{http}"),
                &format!("--grpc-address=127.0.0.1:{grpc}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{yaml}: started");
        assert!(
            err.contains(want) && err.contains("--remote-write.config-file"),
            "{yaml}: the error should name {want}: {err}"
        );
    }
    // The inline flag too.
    let out = gauntlet()
        .args([
            "rule",
            &format!("--data-dir={}", tmp.path().join("inline").display()),
            &rule_file,
            "--query=127.0.0.1:1",
            "--remote-write.config=remote_write:\n- urll: http://127.0.0.1:1/x\n",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--remote-write.config: ") && err.contains("urll"),
        "{err}"
    );
}

/// RFC 3339 as the API prints it, in ms since the epoch.
fn time_ms(v: &Value) -> i64 {
    let t = humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn stateless_rule_restores_the_for_state_through_the_query_endpoint() {
    restores_the_for_state(false);
}

/// As [`stateless_rule_restores_the_for_state_through_the_query_endpoint`], the state read
/// back with `thanos.Query/QueryRange` on the querier's `--grpc-address` (the ruler's
/// `--grpc-query-endpoint`, no `--query`).
#[test]
fn stateless_rule_restores_the_for_state_through_a_grpc_query_endpoint() {
    restores_the_for_state(true);
}

/// A pending alert's `for` clock survives a SIGKILL of the stateless ruler: read back from
/// `ALERTS_FOR_STATE` through the querier, over its gRPC Query API (`over_grpc`) or HTTP.
fn restores_the_for_state(over_grpc: bool) {
    let tmp = tempfile::tempdir().unwrap();
    // One receiver: the ruler writes its alert series there and reads them back through
    // the querier over it.
    let target = Receiver::start_bare(&tmp.path().join("target"), &[], free_ports());
    let q = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", target.grpc)],
        "/-/ready",
    );
    let rules = "groups:
  - name: held
    interval: 1s
    rules:
      - alert: Held
        expr: vector(1)
        for: 10m
        labels: {severity: page}
";
    let rule_file = format!("--rule-file={}", write_file(tmp.path(), "rules.yml", rules));
    let rw = remote_write_config(tmp.path(), &[("target", target.rw)]);
    let query = if over_grpc {
        format!("--grpc-query-endpoint=127.0.0.1:{}", q.grpc_port)
    } else {
        format!("--query=127.0.0.1:{}", q.http_port)
    };
    let data = format!("--data-dir={}", tmp.path().join("ruler").display());
    let args = [
        "rule",
        data.as_str(),
        &rule_file,
        &query,
        &rw,
        // The receiver adds its tenant label to what it keeps.
        "--restore-ignored-label=tenant_id",
        "--query.default-step=1s",
        // Less than the `for`: a restored alert keeps its clock instead of the grace period.
        "--for-grace-period=1m",
    ];
    let active = |port: u16| -> Option<(String, i64)> {
        let v = json(port, "/api/v1/alerts");
        let a = v["data"]["alerts"].as_array()?.first()?.clone();
        Some((a["state"].as_str()?.to_string(), time_ms(&a["activeAt"])))
    };
    let ruler = GauntletServer::start(&args, "/-/ready");
    let (state, first_active) = wait_for(30, "the alert pending", || active(ruler.http_port));
    assert_eq!(state, "pending");
    // Its ALERTS_FOR_STATE samples reach the receiver and can be read back.
    wait_for(30, "ALERTS_FOR_STATE readable", || {
        (!raw(q.http_port, "ALERTS_FOR_STATE{alertname=\"Held\"}", "1m").is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    ruler.signal("KILL");
    drop(ruler);
    let restarted = GauntletServer::start(&args, "/-/ready");
    let restart_ms = now_ms();
    assert!(restart_ms - first_active > 3_000);
    let (state, active_after) = wait_for(30, "the alert back after the restart", || {
        active(restarted.http_port)
    });
    assert_eq!(state, "pending");
    assert!(
        (active_after - first_active).abs() < 1_000,
        "activeAt restored: was {first_active}, now {active_after} (restart at {restart_ms})"
    );
}
