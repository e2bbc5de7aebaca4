//! `gauntlet rule --query.config-file` from end to end: the ruler finds its querier in a
//! `file_sd_configs` file, reaches it behind a path prefix with basic auth (a loopback
//! gateway in front of `gauntlet query` checks both, as a reverse proxy would), records the
//! right series, follows the file when it changes, and sends what Thanos Rule sends (no
//! `step`). A bad configuration stops the ruler at start with a message naming the field.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::receive::{Receiver, V1, now_ms, post, series, write_body};
use crate::common::{GauntletServer, api_path, free_ports, gauntlet, http_get, http_post_form};

/// The path prefix and credentials the gateway asks for.
const PREFIX: &str = "/thanos-q";
const USER: &str = "rule";
const PASSWORD: &str = "s3cret";

/// The rules both tests record: a subquery without a step, its maximum and its point count.
pub const SUBQUERY_RULES: &str = "groups:
- name: subqueries
  interval: 1s
  rules:
  - record: qcfg:rate:max
    expr: max_over_time(rate(qcfg_counter[1m])[5m:])
  - record: qcfg:points
    expr: count_over_time(rate(qcfg_counter[1m])[5m:])
";

/// A receiver holding `qcfg_counter{job="j"}` rising 10 a second on a 15 s grid from ten
/// minutes ago to ten minutes ahead (so every subquery step of the next minutes has a rate),
/// and a `gauntlet query` over it that answers with it.
pub fn counter_behind_query(dir: &Path) -> (Receiver, GauntletServer) {
    let rx = Receiver::start_bare(&dir.join("receive"), &[], free_ports());
    let t0 = now_ms() / 60_000 * 60_000 - 600_000;
    let samples: Vec<(i64, f64)> = (0..=80)
        .map(|i| (t0 + i * 15_000, (i * 150) as f64))
        .collect();
    let body = write_body(vec![series(
        &[("__name__", "qcfg_counter"), ("job", "j")],
        &samples,
    )]);
    let (code, _, msg) = post(rx.rw, "/api/v1/receive", &[V1], &body).unwrap();
    assert!((200..300).contains(&code), "{code} {msg}");
    let query = GauntletServer::start(
        &["query", &format!("--endpoint=127.0.0.1:{}", rx.grpc)],
        "/-/ready",
    );
    wait_for(30, "the querier to answer with qcfg_counter", || {
        let at = format!("{:.3}", now_ms() as f64 / 1000.0);
        let v = json(
            query.http_port,
            &api_path("/api/v1/query", &[("query", "qcfg_counter"), ("time", &at)]),
        );
        v["data"]["result"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            .then_some(())
    });
    (rx, query)
}

/// The JSON `path` answers on `port`, which must be 200.
pub fn json(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// `check`'s first answer, asked every 200 ms for at most `secs` seconds.
pub fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = check() {
            return t;
        }
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of the one series `expr` answers on `port` now, as the API writes it.
pub fn one_value(port: u16, expr: &str) -> Option<String> {
    let at = format!("{:.3}", now_ms() as f64 / 1000.0);
    let v = json(
        port,
        &api_path("/api/v1/query", &[("query", expr), ("time", &at)]),
    );
    let r = v["data"]["result"].as_array()?;
    (r.len() == 1).then(|| r[0]["value"][1].as_str().unwrap().to_string())
}

/// One request the gateway took: its path, `Authorization` header and body.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    authorization: Option<String>,
    body: String,
}

/// A loopback HTTP gateway in front of a querier: a request under [`PREFIX`] with the right
/// basic credentials is passed on (the prefix taken off), anything else is refused with 401.
struct Gateway {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Gateway {
    fn start(query_port: u16) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let log = log.clone();
                std::thread::spawn(move || serve_one(conn, query_port, &log));
            }
        });
        Gateway { port, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve_one(conn: TcpStream, query_port: u16, log: &Mutex<Vec<Seen>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let (mut length, mut authorization) = (0usize, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap_or(0),
            "authorization" => authorization = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    log.lock().unwrap().push(Seen {
        path: path.clone(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    let want = basic_credentials();
    let (status, answer) = match path.strip_prefix(PREFIX) {
        Some(rest) if authorization.as_deref() == Some(want.as_str()) => {
            http_post_form(query_port, rest, &body).unwrap_or((502, b"querier down".to_vec()))
        }
        _ => (401, b"unauthorized".to_vec()),
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    let _ = conn.write_all(&answer);
}

/// The `Authorization` the gateway wants.
fn basic_credentials() -> String {
    format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{USER}:{PASSWORD}")
        )
    )
}

fn form_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .find_map(|p| p.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v))
}

#[test]
fn a_query_config_with_file_discovery_auth_and_prefix_reaches_the_querier() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rx, query) = counter_behind_query(tmp.path());
    let (first, second) = (
        Gateway::start(query.http_port),
        Gateway::start(query.http_port),
    );
    let sd = tmp.path().join("queriers.json");
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["127.0.0.1:{}"]}}]"#, first.port),
    )
    .unwrap();
    let pw = tmp.path().join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let config = tmp.path().join("query.yml");
    std::fs::write(
        &config,
        format!(
            "- http_config:\n    basic_auth: {{username: {USER}, password_file: {}}}\n  \
             file_sd_configs:\n  - files: [{}]\n    refresh_interval: 5m\n  \
             scheme: http\n  path_prefix: {PREFIX}/\n",
            pw.display(),
            sd.display()
        ),
    )
    .unwrap();
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, SUBQUERY_RULES).unwrap();
    let data = format!("--data-dir={}", tmp.path().join("rule").display());
    let ruler = GauntletServer::start(
        &[
            "rule",
            &data,
            &format!("--rule-file={}", rules.display()),
            &format!("--query.config-file={}", config.display()),
            // The discovery file is watched: its change below is seen long before the 30 s
            // refresh interval.
            "--query.sd-dns-interval=30s",
            "--query.default-step=30s",
        ],
        "/-/ready",
    );
    let reader = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", ruler.grpc_port),
        ],
        "/-/ready",
    );
    let (max, points) = wait_for(60, "the recorded series", || {
        Some((
            one_value(reader.http_port, "qcfg:rate:max{job=\"j\"}")?,
            one_value(reader.http_port, "qcfg:points{job=\"j\"}")?,
        ))
    });
    let max: f64 = max.parse().unwrap();
    assert!((max - 10.0).abs() < 1e-9, "max rate {max}");
    // The querier's default subquery resolution (one minute) over five minutes: five steps.
    assert_eq!(points, "5");

    let seen = first.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(s.path, format!("{PREFIX}/api/v1/query"), "{s:?}");
        assert_eq!(s.authorization, Some(basic_credentials()), "{s:?}");
        assert_eq!(form_value(&s.body, "dedup"), Some("true"), "{s:?}");
        // A group naming no partial_response_strategy aborts, as in Thanos Rule.
        assert_eq!(
            form_value(&s.body, "partial_response"),
            Some("false"),
            "{s:?}"
        );
        assert_eq!(form_value(&s.body, "step"), None, "{s:?}");
        assert!(form_value(&s.body, "time").is_some(), "{s:?}");
    }

    // The discovery file now names the second gateway: the ruler moves to it within seconds,
    // not at the next 30 s refresh.
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["127.0.0.1:{}"]}}]"#, second.port),
    )
    .unwrap();
    wait_for(12, "queries through the second gateway", || {
        (!second.seen().is_empty()).then_some(())
    });
    let after = first.seen().len();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        first.seen().len() <= after + 2,
        "the first gateway is still queried after the file changed"
    );
    let health = json(ruler.http_port, "/api/v1/rules");
    for r in health["data"]["groups"][0]["rules"].as_array().unwrap() {
        assert_eq!(r["health"], "ok", "{r}");
    }
    // Answers were whole: Thanos Rule's count of answers with store warnings stays 0 for both
    // strategies.
    let (_, metrics) = http_get(ruler.http_port, "/metrics").unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    for strategy in ["abort", "warn"] {
        let line =
            format!("thanos_rule_evaluation_with_warnings_total{{strategy=\"{strategy}\"}} 0");
        assert!(metrics.lines().any(|l| l == line), "no {line:?}");
    }
}

/// `gauntlet rule ARGS…` is refused at start; its stderr.
fn refused(args: &[&str]) -> String {
    let out = gauntlet()
        .arg("rule")
        .args(args)
        .output()
        .expect("running gauntlet rule");
    assert!(!out.status.success(), "{args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_query_config_stops_the_ruler_at_start_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("rule").display());
    let [http, grpc] = free_ports();
    let http = format!("--http-address=127.0.0.1:{http}");
    let grpc = format!("--grpc-address=127.0.0.1:{grpc}");
    let base = [data.as_str(), http.as_str(), grpc.as_str()];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        refused(&a)
    };
    let cases: [(&[&str], &str); 5] = [
        (&[], "no query endpoint given"),
        (
            &[
                "--query=127.0.0.1:1",
                "--query.config=- static_configs: [q:1]",
            ],
            "--query and --query.config cannot be given together",
        ),
        (
            &["--query.config=- static_configs: [q:1]\n  bogus: x"],
            "unknown field `bogus`",
        ),
        (
            &["--query.config=- file_sd_configs: [{files: [q.txt]}]"],
            "path name \"q.txt\" is not valid for file discovery",
        ),
        (
            &[
                "--query.config=- static_configs: [q:1]\n  http_config: {basic_auth: {username: u, password_file: /nonexistent/pw}}",
            ],
            "entry 0: http_config: basic_auth.password_file /nonexistent/pw",
        ),
    ];
    for (extra, want) in cases {
        let err = with(extra);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
}

/// One request a [`Recorder`] passed on: its method and its path with the query string.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    body: String,
}

/// A loopback HTTP proxy in front of a querier that records each request's method, target
/// and body, and passes it on as it came (GET with its query string, POST with its form).
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    fn start(query_port: u16) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let log = log.clone();
                std::thread::spawn(move || record_one(conn, query_port, &log));
            }
        });
        Recorder { port, seen }
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn record_one(conn: TcpStream, query_port: u16, log: &Mutex<Vec<Request>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("").to_string();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8_lossy(&body).into_owned();
    log.lock().unwrap().push(Request {
        method: method.clone(),
        target: target.clone(),
        body: body.clone(),
    });
    let answer = if method == "GET" {
        http_get(query_port, &target)
    } else {
        http_post_form(query_port, &target, &body)
    };
    let (status, answer) = answer.unwrap_or((502, b"querier down".to_vec()));
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.len()
    );
    let _ = conn.write_all(&answer);
}

#[test]
fn query_sd_files_name_the_querier_and_get_is_used_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let (_rx, query) = counter_behind_query(tmp.path());
    let (first, second) = (
        Recorder::start(query.http_port),
        Recorder::start(query.http_port),
    );
    // A YAML discovery file, named by a glob: the ruler is given no --query at all.
    let sd = tmp.path().join("queriers-a.yml");
    std::fs::write(&sd, format!("- targets: ['127.0.0.1:{}']\n", first.port)).unwrap();
    let pattern = tmp.path().join("queriers-*.yml");
    let rules = tmp.path().join("rules.yml");
    std::fs::write(&rules, SUBQUERY_RULES).unwrap();
    let data = format!("--data-dir={}", tmp.path().join("rule").display());
    let ruler = GauntletServer::start(
        &[
            "rule",
            &data,
            &format!("--rule-file={}", rules.display()),
            &format!("--query.sd-files={}", pattern.display()),
            "--query.sd-interval=1s",
            "--query.http-method=GET",
        ],
        "/-/ready",
    );
    let reader = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", ruler.grpc_port),
        ],
        "/-/ready",
    );
    let max = wait_for(60, "the recorded series", || {
        one_value(reader.http_port, "qcfg:rate:max{job=\"j\"}")
    });
    let max: f64 = max.parse().unwrap();
    assert!((max - 10.0).abs() < 1e-9, "max rate {max}");
    let seen = first.seen();
    assert!(!seen.is_empty());
    for r in &seen {
        assert_eq!(r.method, "GET", "{r:?}");
        let (path, query) = r.target.split_once('?').unwrap_or((&r.target, ""));
        assert_eq!(path, "/api/v1/query", "{r:?}");
        assert!(r.body.is_empty(), "{r:?}");
        assert_eq!(form_value(query, "dedup"), Some("true"), "{r:?}");
        assert!(form_value(query, "query").is_some(), "{r:?}");
        assert!(form_value(query, "time").is_some(), "{r:?}");
    }

    // The file now names the second querier: within a few --query.sd-interval the ruler
    // queries it and no longer the first.
    std::fs::write(&sd, format!("- targets: ['127.0.0.1:{}']\n", second.port)).unwrap();
    wait_for(30, "queries through the second querier", || {
        (!second.seen().is_empty()).then_some(())
    });
    let after = first.seen().len();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        first.seen().len() <= after + 2,
        "the first querier is still queried after the file changed"
    );
    assert!(second.seen().iter().all(|r| r.method == "GET"));
    let health = json(ruler.http_port, "/api/v1/rules");
    for r in health["data"]["groups"][0]["rules"].as_array().unwrap() {
        assert_eq!(r["health"], "ok", "{r}");
    }
}

#[test]
fn a_bad_http_method_or_sd_files_beside_a_config_stop_the_ruler() {
    let tmp = tempfile::tempdir().unwrap();
    let data = format!("--data-dir={}", tmp.path().join("rule").display());
    let err = refused(&[&data, "--query=127.0.0.1:1", "--query.http-method=PUT"]);
    assert!(err.contains("want GET or POST"), "{err}");
    let err = refused(&[
        &data,
        "--query.sd-files=/nonexistent/*.json",
        "--query.config=- static_configs: [q:1]",
    ]);
    assert!(
        err.contains("--query.sd-files and --query.config cannot be given together"),
        "{err}"
    );
}
