//! Rules as Prometheus 3 evaluates them: `gauntlet all --rule-file` and Prometheus 3.5 run
//! the same rule file (the same path, so both align the group to the same instants) over the
//! same remote-written samples, and every recorded sample, every `ALERTS` and
//! `ALERTS_FOR_STATE` sample must be equal, time for time, through alerts going pending,
//! firing, kept firing and resolved.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::receive::{now_ms, post, series, write_body};
use crate::common::*;

const RULES: &str = r#"groups:
  - name: parity
    interval: 1s
    rules:
      - record: job:load:sum
        expr: sum by (job) (load)
      - record: job:requests:rate10s
        expr: sum by (job) (rate(requests_total[10s]))
      - record: instance:load:max5s
        expr: max_over_time(load[5s])
      - record: job:load:count_high
        expr: count by (job) (load > 4)
      - alert: LoadHigh
        expr: load > 5
        for: 3s
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} at {{ $value | humanize }}"
      - alert: LoadMoving
        expr: changes(load[3s]) > 1
        keep_firing_for: 2s
"#;

const INSTANCES: [(&str, &str); 4] = [("api", "a1"), ("api", "a2"), ("db", "d1"), ("db", "d2")];

/// The samples of second `t_s`: `load` steady at 1 before `live_from_s`, then moving in a
/// pattern that crosses 5 and comes back; `requests_total` counting up.
fn samples_at(t_s: i64, live_from_s: i64) -> Vec<gauntlet_proto::prometheus::TimeSeries> {
    let mut out = Vec::new();
    for (i, (job, inst)) in INSTANCES.iter().enumerate() {
        let k = t_s - live_from_s;
        let load = if k < 0 {
            1.0
        } else {
            ((k * (i as i64 + 1)) % 9) as f64
        };
        let t = t_s * 1000;
        out.push(series(
            &[("__name__", "load"), ("instance", inst), ("job", job)],
            &[(t, load)],
        ));
        out.push(series(
            &[
                ("__name__", "requests_total"),
                ("instance", inst),
                ("job", job),
            ],
            &[(t, ((t_s % 100_000) * (i as i64 + 2)) as f64)],
        ));
    }
    out
}

fn write_both(prom: u16, ours: u16, body: &[u8]) {
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    for (port, path) in [(prom, "/api/v1/write"), (ours, "/api/v1/receive")] {
        let (status, _, text) = post(port, path, &headers, body).unwrap();
        assert!(
            (200..300).contains(&status),
            ":{port}{path}: {status} {text}"
        );
    }
}

/// Every raw sample of the rules' series in `[from_s, to_s]`, by series (without the tenant
/// label Gauntlet's reads add), through `/api/v1/query` of a range selector.
fn raw(port: u16, from_s: i64, to_s: i64) -> BTreeMap<String, Vec<(i64, String)>> {
    let sel = format!(
        "{{__name__=~\"job:.*|instance:.*|ALERTS|ALERTS_FOR_STATE\"}}[{}s]",
        to_s - from_s + 1
    );
    let (status, body) = http_get(
        port,
        &api_path(
            "/api/v1/query",
            &[("query", &sel), ("time", &to_s.to_string())],
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let mut m = s["metric"].as_object().unwrap().clone();
        m.remove("tenant_id");
        let points: Vec<(i64, String)> = s["values"]
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
        out.insert(Value::Object(m).to_string(), points);
    }
    out
}

fn evaluated(port: u16) -> bool {
    let Ok((200, body)) = http_get(port, "/api/v1/rules") else {
        return false;
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    v["data"]["groups"][0]["lastEvaluation"]
        .as_str()
        .is_some_and(|t| !t.starts_with("0001-"))
}

#[test]
fn recorded_and_alert_series_equal_prometheus_3() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let rules_path = rules.display().to_string();
    let prom = Prometheus::start_with_config(
        &prometheus3(),
        |_| format!("global:\n  evaluation_interval: 1s\nrule_files:\n  - {rules_path}\n"),
        &["--web.enable-remote-write-receiver"],
    );
    let [rw] = free_ports();
    let ours = GauntletServer::start(
        &[
            "all",
            &format!("--data-dir={}", tmp.path().join("data").display()),
            &format!("--remote-write.address=127.0.0.1:{rw}"),
            &format!("--rule-file={rules_path}"),
            "--eval-interval=1s",
            "--engine.cores=1",
            "--compact.interval=0s",
        ],
        "/-/ready",
    );

    // Two minutes of steady history, then both rulers running before anything moves.
    let start_s = now_ms() / 1000;
    let live_from_s = start_s + 8;
    let history: Vec<_> = (start_s - 120..=start_s)
        .flat_map(|t| samples_at(t, live_from_s))
        .collect();
    write_both(prom.port, rw, &write_body(history));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(evaluated(prom.port) && evaluated(ours.http_port)) {
        assert!(Instant::now() < deadline, "the rulers did not run in 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each second's samples are written 3 s ahead of their time, so both have them before
    // any round that could read them.
    let live_to_s = live_from_s + 20;
    let mut next = start_s + 1;
    while next <= live_to_s {
        let ahead = now_ms() / 1000 + 3;
        while next <= ahead && next <= live_to_s {
            write_both(prom.port, rw, &write_body(samples_at(next, live_from_s)));
            next += 1;
        }
        assert!(
            now_ms() / 1000 < live_to_s + 30,
            "the writer fell behind the clock"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let both evaluate past the last sample, then compare the rounds both ran over the live
    // samples (and a few before them).
    while now_ms() / 1000 < live_to_s + 3 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (from_s, to_s) = (live_from_s - 3, live_to_s);
    let want = raw(prom.port, from_s, to_s);
    let got = raw(ours.http_port, from_s, to_s);
    let recorded: usize = want.values().map(Vec::len).sum();
    assert!(
        recorded > 200,
        "Prometheus recorded only {recorded} samples: {want:?}"
    );
    for name in [
        "ALERTS",
        "ALERTS_FOR_STATE",
        "job:load:sum",
        "instance:load:max5s",
    ] {
        assert!(
            want.keys()
                .any(|k| k.contains(&format!("\"__name__\":\"{name}\""))),
            "Prometheus recorded no {name}"
        );
    }
    let fired = want.keys().any(|k| k.contains("\"alertstate\":\"firing\""));
    assert!(fired, "no alert fired: {:?}", want.keys());
    for (k, w) in &want {
        let g = got.get(k).unwrap_or_else(|| panic!("Gauntlet has no {k}"));
        assert_eq!(w, g, "{k}: Prometheus (left), Gauntlet (right)");
    }
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "series"
    );

    // Once every alert has settled, the APIs describe the same rules and alerts, but for the
    // timings (and `activeAt`, which Prometheus prints to the nanosecond of its round).
    while now_ms() / 1000 < live_to_s + 8 {
        std::thread::sleep(Duration::from_millis(200));
    }
    for path in [
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/rules?type=alert",
        // Rules whose labels satisfy a `match[]` selector (any one of them).
        "/api/v1/rules?match[]=%7Bseverity%3D%22page%22%7D",
        "/api/v1/rules?match[]=%7Bseverity%3D%22none%22%7D&match[]=%7Bseverity%3D~%22pa.*%22%7D",
        "/api/v1/rules?match[]=%7Bseverity%3D%22none%22%7D",
    ] {
        let want = untimed(&json_of(prom.port, path));
        let got = untimed(&json_of(ours.http_port, path));
        assert_eq!(want, got, "{path}: Prometheus (left), Gauntlet (right)");
    }
}

fn json_of(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// `v` without what depends on when and how fast each ran, and with alerts' `tenant_id` (the
/// label Gauntlet's reads add) removed.
fn untimed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "evaluationTime" | "lastEvaluation" | "activeAt" | "tenant_id"
                    )
                })
                .map(|(k, x)| (k.clone(), untimed(x)))
                .collect(),
        ),
        Value::Array(a) => {
            let mut items: Vec<Value> = a.iter().map(untimed).collect();
            // Alerts come in the order of a Go map in Prometheus.
            if items.iter().all(|i| {
                i.get("state").is_some() && i.get("labels").is_some() && i.get("type").is_none()
            }) {
                items.sort_by_key(|i| i.to_string());
            }
            Value::Array(items)
        }
        other => other.clone(),
    }
}
