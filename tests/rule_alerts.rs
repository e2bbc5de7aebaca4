//! `gauntlet rule`'s alerts from end to end: through two real Alertmanagers to a webhook
//! (firing with expanded templates and external labels, then resolved, then through the one
//! left when the other dies), across a SIGKILL and a restart (the `for` clock restored as
//! Prometheus restores it), and past bad input (a template failing at run time, a query the
//! querier refuses, a query endpoint that hangs, Alertmanagers that fail or hang) with the
//! process up and the other rules healthy. Each ruler reads gauges written to a
//! `gauntlet receive` through `gauntlet query`, all on loopback.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::{GauntletServer, api_path, free_port, free_ports, http_get, which};

/// Remote write's stale marker: a series written with it ends at once.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A receiver and `gauntlet query` over it: what the rulers read.
struct Data {
    rx: Receiver,
    query: GauntletServer,
    _dir: tempfile::TempDir,
}

impl Data {
    fn start() -> Data {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start_bare(&dir.path().join("receive"), &[], free_ports());
        let query = GauntletServer::start(
            &["query", &format!("--endpoint=127.0.0.1:{}", rx.grpc)],
            "/-/ready",
        );
        Data {
            rx,
            query,
            _dir: dir,
        }
    }

    /// Writes `rule_gauge{job="j",instance}` = `v` now, and waits (at most 30 s) until the
    /// querier answers with it (or, for a stale marker, without it).
    fn write(&self, instance: &str, v: f64) {
        let t = now_ms();
        let body = write_body(vec![series(
            &[
                ("__name__", "rule_gauge"),
                ("instance", instance),
                ("job", "j"),
            ],
            &[(t, v)],
        )]);
        let (code, _, msg) = post(self.rx.rw, "/api/v1/receive", &[V1], &body).unwrap();
        assert!((200..300).contains(&code), "{code} {msg}");
        let stale = v.to_bits() == STALE_NAN;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let at = format!("{:.3}", now_ms() as f64 / 1000.0);
            let q = format!("rule_gauge{{instance=\"{instance}\"}}");
            let path = api_path("/api/v1/query", &[("query", &q), ("time", &at)]);
            let v = json(self.query.http_port, &path);
            let found = v["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
            if found != stale {
                return;
            }
            assert!(Instant::now() < deadline, "{q} not as written in 30 s: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn query_flag(&self) -> String {
        format!("--query=127.0.0.1:{}", self.query.http_port)
    }
}

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

/// The ruler's alerts on `/api/v1/alerts`.
fn alerts(port: u16) -> Vec<Value> {
    json(port, "/api/v1/alerts")["data"]["alerts"]
        .as_array()
        .unwrap()
        .clone()
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

/// RFC 3339 as the API prints it, in ms since the epoch.
fn time_ms(v: &Value) -> i64 {
    let t = humantime::parse_rfc3339(v.as_str().unwrap()).unwrap();
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rule_file(dir: &Path, text: &str) -> String {
    let p = dir.join("rules.yml");
    std::fs::write(&p, text).unwrap();
    format!("--rule-file={}", p.display())
}

/// An HTTP listener on loopback that answers every request with `status` and keeps the
/// requests' paths and JSON bodies; `None` never answers (it accepts and holds the
/// connection).
struct Listener {
    port: u16,
    got: Arc<Mutex<Vec<(String, Value)>>>,
    accepted: Arc<AtomicUsize>,
}

impl Listener {
    fn start(status: Option<u16>) -> Listener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (g, a) = (got.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                a.fetch_add(1, Ordering::Relaxed);
                match status {
                    None => held.push(s),
                    Some(code) => {
                        let g = g.clone();
                        std::thread::spawn(move || answer(s, code, &g));
                    }
                }
            }
        });
        Listener {
            port,
            got,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits (at most 30 s) for a request to `path` whose body holds an alert that `pick`
    /// chooses, and returns that alert.
    fn alert(&self, path: &str, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        wait_for(30, what, || {
            self.got
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _)| p == path)
                .flat_map(|(_, b)| b["alerts"].as_array().cloned().unwrap_or_default())
                .find(|a| pick(a))
        })
    }
}

/// Reads one HTTP request from `s`, keeps its path and body, answers `code` and closes.
fn answer(mut s: TcpStream, code: u16, got: &Mutex<Vec<(String, Value)>>) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let body = serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or(Value::Null);
    got.lock().unwrap().push((path, body));
    let _ = write!(
        s,
        "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`) on loopback, clustering off,
/// notifying `webhook` at once of each alert (grouped by instance), resolved ones too.
/// Killed when dropped.
struct Alertmanager {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start(webhook: &str) -> Alertmanager {
        let bin = ["prometheus-alertmanager", "alertmanager"]
            .into_iter()
            .find_map(which)
            .expect(
                "no Alertmanager on PATH: install Debian's prometheus-alertmanager \
                 (tests/run.sh does)",
            );
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  resolve_timeout: 5s\n\
                 route:\n  receiver: hook\n  group_by: [alertname, instance]\n  \
                 group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n- name: hook\n  webhook_configs:\n  \
                 - url: {webhook}\n    send_resolved: true\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let am = Alertmanager { child, port, dir };
        wait_for(30, "Alertmanager ready", || {
            matches!(http_get(port, "/-/ready"), Ok((200, _))).then_some(())
        });
        am
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        self.kill();
    }
}

const AM_RULES: &str = r#"groups:
  - name: paging
    rules:
      - alert: GaugeHigh
        expr: rule_gauge > 5
        labels:
          severity: page
        annotations:
          summary: '{{ $labels.instance }} is at {{ $value | humanize }}'
          cluster: 'cluster {{ $externalLabels.cluster }}'
"#;

/// An alert goes through two real Alertmanagers to their webhooks firing, with its
/// annotations expanded and the ruler's external labels but the dropped replica label; it
/// resolves when its series ends (a stale marker); with one Alertmanager killed the next alert
/// still reaches the other, and the sender's metrics count what each got and failed.
#[test]
fn alerts_reach_two_alertmanagers_fire_resolve_and_survive_one_dying() {
    let data = Data::start();
    data.write("a", 12345.0);
    let hook = Listener::start(Some(200));
    let am1 = Alertmanager::start(&format!("{}/am1", hook.url()));
    let mut am2 = Alertmanager::start(&format!("{}/am2", hook.url()));
    let tmp = tempfile::tempdir().unwrap();
    let ruler = GauntletServer::start(
        &[
            "rule",
            &format!("--data-dir={}", tmp.path().join("rule").display()),
            &rule_file(tmp.path(), AM_RULES),
            &data.query_flag(),
            "--eval-interval=1s",
            "--label=cluster=\"eu1\"",
            "--label=replica=\"r0\"",
            "--alert.label-drop=replica",
            &format!("--alertmanagers.url={}", am1.url()),
            &format!("--alertmanagers.url={}", am2.url()),
            "--alertmanagers.send-timeout=2s",
        ],
        "/-/ready",
    );

    let is = |instance: &'static str, status: &'static str| {
        move |a: &Value| a["labels"]["instance"] == instance && a["status"] == status
    };
    for path in ["/am1", "/am2"] {
        let a = hook.alert(path, &format!("{path}: a firing"), is("a", "firing"));
        let want = serde_json::json!({
            "alertname": "GaugeHigh",
            "cluster": "eu1",
            "instance": "a",
            "job": "j",
            "severity": "page",
            // The receiver's tenant label, on every series the querier reads from it.
            "tenant_id": "default-tenant",
        });
        assert_eq!(a["labels"], want, "{path}: {a}");
        assert_eq!(a["annotations"]["summary"], "a is at 12.35k", "{path}: {a}");
        assert_eq!(a["annotations"]["cluster"], "cluster eu1", "{path}: {a}");
    }

    data.write("a", f64::from_bits(STALE_NAN));
    for (path, am) in [("/am1", &am1), ("/am2", &am2)] {
        let a = wait_for_alert(&hook, path, am, is("a", "resolved"));
        assert_eq!(a["annotations"]["summary"], "a is at 12.35k", "{path}: {a}");
        assert!(a["labels"].get("replica").is_none(), "{path}: {a}");
    }
    assert!(
        alerts(ruler.http_port).is_empty(),
        "a resolved alert is not active"
    );

    let am2_port = format!(":{}\"", am2.port);
    let am1_port = format!(":{}\"", am1.port);
    am2.kill();
    data.write("b", 7.0);
    let b = wait_for_alert(&hook, "/am1", &am1, is("b", "firing"));
    assert_eq!(b["annotations"]["summary"], "b is at 7", "{b}");
    let sent = "thanos_alert_sender_alerts_sent_total";
    let errors = "thanos_alert_sender_errors_total";
    // The killed Alertmanager's failure is counted once the ruler's send to it gives up.
    wait_for(15, "an error counted for the killed Alertmanager", || {
        (metric(ruler.http_port, errors, &[&am2_port]) >= 1.0).then_some(())
    });
    // a firing, a resolved, b firing to the live one; a firing and resolved to the dead one
    // before it died.
    assert!(
        metric(ruler.http_port, sent, &[&am1_port]) >= 3.0,
        "{}",
        metric(ruler.http_port, sent, &[&am1_port])
    );
    assert!(metric(ruler.http_port, sent, &[&am2_port]) >= 2.0);
    assert_eq!(metric(ruler.http_port, errors, &[&am1_port]), 0.0);
    assert_eq!(
        metric(
            ruler.http_port,
            "thanos_alert_sender_alerts_dropped_total",
            &[]
        ),
        0.0,
        "one Alertmanager took every alert"
    );
    assert!(
        hook.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/am2")
            .flat_map(|(_, b)| b["alerts"].as_array().cloned().unwrap_or_default())
            .all(|a| a["labels"]["instance"] == "a"),
        "the killed Alertmanager notified nothing after its death"
    );
}

/// [`Listener::alert`], with the Alertmanager's log in the failure.
fn wait_for_alert(
    hook: &Listener,
    path: &str,
    am: &Alertmanager,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = hook
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .flat_map(|(_, b)| b["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| pick(a));
        if let Some(a) = found {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: no such notification in 30 s; got {:?}; Alertmanager's log:\n{}",
            hook.got.lock().unwrap(),
            am.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const FOR_RULES: &str = r#"groups:
  - name: held
    rules:
      - alert: HeldHigh
        expr: rule_gauge > 5
        for: 20s
"#;

/// Starts a ruler over `dir` evaluating [`FOR_RULES`] every second with a 2 s grace period.
fn for_ruler(data: &Data, dir: &Path, rules: &str) -> GauntletServer {
    GauntletServer::start(
        &[
            "rule",
            &format!("--data-dir={}", dir.display()),
            rules,
            &data.query_flag(),
            "--eval-interval=1s",
            "--for-grace-period=2s",
        ],
        "/-/ready",
    )
}

/// The `HeldHigh` alert's state and `activeAt` (ms), once there is one.
fn held(port: u16) -> Option<(String, i64)> {
    let a = alerts(port)
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "HeldHigh")?;
    Some((a["state"].as_str()?.to_string(), time_ms(&a["activeAt"])))
}

/// A ruler SIGKILLed 5 s into an alert's 20 s `for` and restarted over the same data dir
/// restores the alert's `activeAt` from its `ALERTS_FOR_STATE` series as Prometheus does: the
/// time pending before the outage counts, the outage does not (`activeAt` moves on by the
/// downtime, not to the restart), and the alert fires 20 s after the restored `activeAt`.
#[test]
fn a_restart_restores_the_for_state_minus_the_outage() {
    let data = Data::start();
    data.write("a", 10.0);
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("rule");
    let rules = rule_file(tmp.path(), FOR_RULES);
    let ruler = for_ruler(&data, &dir, &rules);
    let (state, t0) = wait_for(30, "HeldHigh pending", || held(ruler.http_port));
    assert_eq!(state, "pending");
    std::thread::sleep(Duration::from_millis((t0 + 5_000 - now_ms()).max(0) as u64));
    assert_eq!(held(ruler.http_port).unwrap(), ("pending".to_string(), t0));
    drop(ruler); // SIGKILL
    let killed = now_ms();
    // A few seconds down, so that the outage is told apart from the time pending before it.
    std::thread::sleep(Duration::from_secs(3));
    let ruler = for_ruler(&data, &dir, &rules);
    let (state, active_at) = wait_for(30, "HeldHigh back", || held(ruler.http_port));
    let seen = now_ms();
    assert_eq!(state, "pending");
    // Prometheus: activeAt + (restore time − time of the last ALERTS_FOR_STATE sample). The
    // last sample is at most a round (1 s) before the kill, the restore at most a round and
    // a poll before `seen`.
    let downtime = seen - killed;
    let want = t0 + downtime;
    assert!(
        (active_at - want).abs() <= 2_500,
        "activeAt {active_at} wanted {want} (T0 {t0}, down {downtime} ms)"
    );
    assert!(
        seen - active_at >= 3_500,
        "the 5 s pending before the kill were lost: activeAt {active_at}, now {seen}"
    );
    let fired = wait_for(40, "HeldHigh firing", || {
        let (state, at) = held(ruler.http_port)?;
        assert_eq!(at, active_at, "activeAt moved");
        (state == "firing").then(now_ms)
    });
    assert!(
        (fired - (active_at + 20_000)).abs() <= 2_500,
        "fired at {fired}, wanted activeAt + 20 s = {}",
        active_at + 20_000
    );
}

const BAD_RULES: &str = r#"groups:
  - name: bad
    rules:
      - record: job:rule_gauge:sum
        expr: sum by (job) (rule_gauge)
      - record: job:rule_gauge:many_to_many
        expr: sum by (job) (rule_gauge) + on() group_left rule_gauge
      - alert: TemplateFails
        expr: rule_gauge > 5
        annotations:
          summary: '{{ humanize "x" }}'
"#;

/// One ruler given bad input stays up and keeps its other rules healthy: an annotation whose
/// template fails at run time reads `<error expanding template: …>` with the rule healthy; a
/// query the querier refuses (many-to-many matching) makes its rule alone `err` with the
/// querier's message; a first `--query` endpoint that never answers is passed over after
/// `--query.timeout`; an Alertmanager answering 500 and another never answering are counted
/// as errors while `/-/healthy` answers.
#[test]
fn bad_templates_queries_and_peers_keep_the_ruler_up() {
    let data = Data::start();
    data.write("a", 10.0);
    data.write("b", 20.0);
    let hung_query = Listener::start(None);
    let failing_am = Listener::start(Some(500));
    let hung_am = Listener::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let ruler = GauntletServer::start(
        &[
            "rule",
            &format!("--data-dir={}", tmp.path().join("rule").display()),
            &rule_file(tmp.path(), BAD_RULES),
            &format!("--query=127.0.0.1:{}", hung_query.port),
            &data.query_flag(),
            "--query.timeout=1s",
            "--eval-interval=3s",
            &format!("--alertmanagers.url={}", failing_am.url()),
            &format!("--alertmanagers.url={}", hung_am.url()),
            "--alertmanagers.send-timeout=1s",
        ],
        "/-/ready",
    );

    let rules = wait_for(30, "every rule evaluated", || {
        let v = json(ruler.http_port, "/api/v1/rules");
        let rules = v["data"]["groups"][0]["rules"].as_array()?.clone();
        (rules.len() == 3 && rules.iter().all(|r| r["health"] != "unknown")).then_some(rules)
    });
    let by_name = |n: &str| rules.iter().find(|r| r["name"] == n).unwrap().clone();
    let sum = by_name("job:rule_gauge:sum");
    assert_eq!(sum["health"], "ok", "{sum}");
    let m2m = by_name("job:rule_gauge:many_to_many");
    assert_eq!(m2m["health"], "err", "{m2m}");
    let last_error = m2m["lastError"].as_str().unwrap_or_default();
    assert!(last_error.contains("many-to-many"), "{m2m}");
    let tf = by_name("TemplateFails");
    assert_eq!(tf["health"], "ok", "{tf}");

    let fired = alerts(ruler.http_port);
    assert_eq!(fired.len(), 2, "{fired:?}");
    for a in &fired {
        let summary = a["annotations"]["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("<error expanding template: ") && summary.contains("humanize"),
            "{a}"
        );
    }
    // The hanging endpoint was asked (and passed over): the rules above read the real one.
    assert!(hung_query.accepted.load(Ordering::Relaxed) >= 1);

    let errors = "thanos_alert_sender_errors_total";
    for l in [&failing_am, &hung_am] {
        let port = format!(":{}\"", l.port);
        wait_for(15, "an Alertmanager error counted", || {
            (metric(ruler.http_port, errors, &[&port]) >= 1.0).then_some(())
        });
    }
    assert!(
        failing_am
            .got
            .lock()
            .unwrap()
            .iter()
            .any(|(p, _)| p == "/api/v2/alerts"),
        "the ruler posted its alerts to Alertmanager's v2 API"
    );
    assert!(hung_am.accepted.load(Ordering::Relaxed) >= 1);
    assert_eq!(http_get(ruler.http_port, "/-/healthy").unwrap().0, 200);
    // Rounds go on after all this.
    let before = metric(
        ruler.http_port,
        "prometheus_rule_group_iterations_total",
        &[],
    );
    wait_for(15, "another round", || {
        (metric(
            ruler.http_port,
            "prometheus_rule_group_iterations_total",
            &[],
        ) > before)
            .then_some(())
    });
    assert_eq!(http_get(ruler.http_port, "/-/healthy").unwrap().0, 200);
}
