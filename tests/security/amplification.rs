//! No single request can amplify into memory before it is refused: against `gauntlet all` with
//! default flags, the kernel's high-water mark of the process's resident size (`VmHWM`, reset
//! before each request through `/proc/PID/clear_refs`) may grow by at most [`GOAL`] above the
//! bytes the request sent. Snappy bombs at the decoded limit (each shape one at a time, and
//! four at once) are answered 413; megabyte regexes in a query, in `match[]` and in a
//! StoreAPI Series call, and queries of many small regexes that compile large, are refused
//! (400 or `InvalidArgument`, naming the limit) or answered within the goal; a Series request
//! of a million empty matchers is refused; a series of 100,000 labels, one with a 1 MiB label
//! value and one with a 64 KiB label name are refused with 400 naming the limit, by default.
//! `docs/security.md` ("Request size and amplification") says what is enforced and lists the
//! figures before and after.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use gauntlet_proto::thanos;
use prost::Message;
use serde_json::{Value, json};

use crate::common::receive::{V1, now_ms, post, series, snappy, write_body};
use crate::common::storeapi::python_calls;
use crate::common::{free_ports, gauntlet, http_get, http_post_form, urlencode};

/// Most a request may raise the process's resident size by, above the bytes it sent.
const GOAL: u64 = 64 << 20;

/// The largest decompressed remote-write body a receiver takes, bytes: a bomb at this size is
/// the worst one that is not refused from its header alone.
const DECODED_LIMIT: usize = 16 << 20;

/// Bytes of the regexes sent (916 KiB, under `--query.max-length`'s default of 1 MiB).
const REGEX_BYTES: usize = 916 << 10;

/// `gauntlet all` with default flags on a fresh data directory, killed on drop.
struct All {
    child: Child,
    http: u16,
    grpc: u16,
    rw: u16,
    _dir: tempfile::TempDir,
}

impl All {
    fn start() -> All {
        let dir = tempfile::tempdir().unwrap();
        let [http, grpc, rw] = free_ports();
        let child = gauntlet()
            .arg("all")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .arg(format!("--remote-write.address=127.0.0.1:{rw}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting gauntlet all");
        let mut all = All {
            child,
            http,
            grpc,
            rw,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(http, "/-/ready"), Ok((200, _))) {
            if let Ok(Some(status)) = all.child.try_wait() {
                panic!("gauntlet all exited early with {status}");
            }
            assert!(Instant::now() < deadline, "gauntlet all not ready in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        all.warm_up();
        all
    }

    /// One of each kind of request the tests make, answered normally, so that what the first
    /// of them allocates for good (the tenant's head and WAL, thread caches, the gRPC
    /// connection's buffers) is not counted against the requests measured.
    fn warm_up(&self) {
        let t = now_ms();
        for i in 0..3 {
            let body = write_body(vec![series(
                &[("__name__", "up"), ("job", &format!("warm{i}"))],
                &[(t, 1.0)],
            )]);
            let (code, _, msg) = post(self.rw, "/api/v1/receive", &[V1], &body).unwrap();
            assert_eq!(code, 200, "{msg}");
            let (code, body) = http_post_form(
                self.http,
                "/api/v1/query",
                &format!("query={}", urlencode("up{job=~\"warm0|warm1|x.*\"}")),
            )
            .unwrap();
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
            let (code, body) = http_post_form(
                self.http,
                "/api/v1/series",
                &format!("match[]={}", urlencode("up{job=~\"warm.+\"}")),
            )
            .unwrap();
            assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
        }
        let r = python_calls(
            self.grpc,
            &json!([{"method": "Series", "min_time": 0, "max_time": i64::MAX,
                     "matchers": [[2, "job", "warm.*"]]}]),
        );
        assert_eq!(r[0]["ok"], true, "{r:?}");
    }

    /// (`VmRSS`, `VmHWM`) of the process, bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{name} in /proc/PID/status"))
                * 1024
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Runs `f` and returns its result with how far the process's resident size rose above
    /// where it was when `f` started (the high-water mark, reset first), bytes. Memory a
    /// request freed may stay resident for the next to reuse, so each measure is best taken
    /// on a process of its own ([`measured`]).
    fn growth<T>(&self, what: &str, sent: usize, f: impl FnOnce() -> T) -> (T, u64) {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")
            .expect("resetting VmHWM through /proc/PID/clear_refs");
        let (before, _) = self.memory();
        let out = f();
        let (after, peak) = self.memory();
        let grew = peak.saturating_sub(before);
        eprintln!(
            "{what}: sent {:.2} MiB; VmRSS {:.1} MiB before, {:.1} MiB after; VmHWM {:.1} MiB, \
             {:.1} MiB above the start (goal: {:.1} MiB)",
            mib(sent as u64),
            mib(before),
            mib(after),
            mib(peak),
            mib(grew),
            mib(GOAL + sent as u64),
        );
        (out, grew)
    }

    /// Asserts the process is still up and answering.
    fn assert_alive(&self) {
        assert!(self.child_alive(), "gauntlet all is no longer running");
        let (code, _) = http_get(self.http, "/-/healthy").unwrap();
        assert_eq!(code, 200);
    }

    fn child_alive(&self) -> bool {
        std::fs::metadata(format!("/proc/{}", self.child.id())).is_ok()
    }
}

impl Drop for All {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `f` run against a fresh `gauntlet all` (warmed up), with the growth of its resident size
/// ([`All::growth`]); the process is checked to be up and answering afterwards.
fn measured<T>(what: &str, sent: usize, f: impl FnOnce(&All) -> T) -> (T, u64) {
    let all = All::start();
    let out = all.growth(what, sent, || f(&all));
    all.assert_alive();
    out
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn assert_within_goal(what: &str, sent: usize, grew: u64) {
    assert!(
        grew <= GOAL + sent as u64,
        "{what}: resident size rose {:.1} MiB, over the {:.1} MiB allowed (64 MiB above the \
         {:.2} MiB sent)",
        mib(grew),
        mib(GOAL + sent as u64),
        mib(sent as u64)
    );
}

/// A protobuf varint.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Field `key` (tag byte) holding `inner`, length-delimited.
fn delimited(key: u8, inner: &[u8]) -> Vec<u8> {
    let mut out = vec![key];
    varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// `unit` repeated to fill `room` bytes.
fn filled(unit: &[u8], room: usize) -> Vec<u8> {
    unit.repeat(room / unit.len())
}

/// Remote-write bodies that decompress to [`DECODED_LIMIT`] bytes of messages that are
/// cheap on the wire and dear in memory: (what, protocol version, decompressed body).
fn bombs() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let n = DECODED_LIMIT;
    // Room left for a message's framing: its key and a length of up to four bytes.
    let framed = |outer: &[u8]| n - outer.len() * 5;
    let v2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
    let v1 = "application/x-protobuf";
    vec![
        // 1.0: `timeseries` entries that are empty messages, two bytes each.
        ("1.0 empty series", v1, filled(&[0x0a, 0x00], n)),
        // 1.0: one series of empty labels.
        (
            "1.0 empty labels",
            v1,
            delimited(0x0a, &filled(&[0x0a, 0x00], framed(&[0]))),
        ),
        // 1.0: one series of empty samples.
        (
            "1.0 empty samples",
            v1,
            delimited(0x0a, &filled(&[0x12, 0x00], framed(&[0]))),
        ),
        // 1.0: one native histogram whose packed bucket deltas are one byte each (eight in
        // memory).
        (
            "1.0 histogram buckets",
            v1,
            delimited(
                0x0a,
                &delimited(0x22, &delimited(0x62, &vec![0u8; framed(&[0, 0, 0])])),
            ),
        ),
        // 2.0: one series whose label references are one byte each (sixteen in memory).
        ("2.0 label references", v2, {
            let mut body = delimited(0x22, b"");
            body.extend(delimited(0x22, b"a"));
            let refs = vec![1u8; framed(&[0, 0, 0, 0])];
            body.extend(delimited(0x2a, &delimited(0x0a, &refs)));
            body
        }),
    ]
}

#[test]
fn snappy_bombs_are_refused_before_they_take_memory() {
    for (what, content_type, raw) in bombs() {
        let body = snappy(&raw);
        let headers = [("Content-Type", content_type)];
        let ((code, msg), grew) = measured(what, body.len(), |all| {
            let (code, _, msg) = post(all.rw, "/api/v1/receive", &headers, &body).unwrap();
            (code, msg)
        });
        assert!(matches!(code, 400 | 413), "{what}: {code} {msg}");
        assert_within_goal(what, body.len(), grew);
    }
    // Four of the worst at once: each waits for the decoding room the others hold, so
    // together they take no more than one.
    let body = snappy(&filled(&[0x0a, 0x00], DECODED_LIMIT));
    let what = "four 1.0 bombs at once";
    let (codes, grew) = measured(what, body.len(), |all| {
        std::thread::scope(|s| {
            let sent: Vec<_> = (0..4)
                .map(|_| s.spawn(|| post(all.rw, "/api/v1/receive", &[V1], &body).unwrap()))
                .collect();
            sent.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        })
    });
    for (code, _, msg) in &codes {
        assert!(matches!(code, 400 | 413), "{what}: {code} {msg}");
    }
    assert_within_goal(what, body.len(), grew);
}

/// `n`-byte alternation of distinct values, each followed by `tail` (`""` for plain values).
fn alternation(n: usize, tail: &str) -> String {
    let mut s = String::with_capacity(n + 16);
    let mut i = 0;
    while s.len() < n {
        if i > 0 {
            s.push('|');
        }
        s.push_str(&format!("value_{i:06}{tail}"));
        i += 1;
    }
    s
}

#[test]
fn megabyte_regexes_are_refused_or_answered_within_the_goal() {
    let many: String = (0..300)
        .map(|i| format!("l{i}=~\"\\\\pL{{10}}{i}\","))
        .collect();
    let mut queries = vec![];
    for (what, regex) in [
        ("plain values", alternation(REGEX_BYTES, "")),
        ("values and a dot", alternation(REGEX_BYTES, ".")),
    ] {
        let label = |path: &str| format!("{path} with {} KiB of {what}", regex.len() >> 10);
        queries.push((
            label("/api/v1/query"),
            "/api/v1/query",
            format!(
                "query={}",
                urlencode(&format!("count(up{{job=~\"{regex}\"}})"))
            ),
        ));
        queries.push((
            label("/api/v1/series"),
            "/api/v1/series",
            format!("match[]={}", urlencode(&format!("up{{job=~\"{regex}\"}}"))),
        ));
    }
    // Three hundred regexes of a few bytes that each compile to half a megabyte.
    queries.push((
        "/api/v1/query with 300 small regexes of letters".into(),
        "/api/v1/query",
        format!("query={}", urlencode(&format!("count(up{{{many}}})"))),
    ));
    // Form bodies near the API's 2 MiB: selectors by the ten thousand, plain and regex.
    let repeated = |one: String| -> String {
        let one = format!("match[]={}&", urlencode(&one));
        one.repeat(1_900_000 / one.len())
    };
    queries.push((
        "/api/v1/series with 1.9 MB of match[] sets".into(),
        "/api/v1/series",
        repeated("up{a=~\"b|c\"}".into()),
    ));
    // 999 selectors, under --query.max-match-selectors, each with a regex of 1.8 KB.
    let pad = "x".repeat(1800);
    let regexes: String = (0..999)
        .map(|i| {
            format!(
                "match[]={}&",
                urlencode(&format!("up{{a=~\".+{pad}{i}\"}}"))
            )
        })
        .collect();
    queries.push((
        "/api/v1/series with 999 match[] regexes of 1.8 KB".into(),
        "/api/v1/series",
        regexes,
    ));
    // 130 000 equality matchers in one selector (780 KB): each costs the parser and the
    // selection hundreds of bytes, so they are counted and refused before parsing.
    let wide: Vec<&str> = vec!["a=\"x\""; 130_000];
    let wide = format!("x{{{}}}", wide.join(","));
    queries.push((
        "/api/v1/query with 130 000 matchers".into(),
        "/api/v1/query",
        format!("query={}&time=1", urlencode(&wide)),
    ));
    queries.push((
        "/api/v1/series with 130 000 matchers".into(),
        "/api/v1/series",
        format!("match[]={}", urlencode(&wide)),
    ));
    for (label, path, form) in queries {
        let ((code, body), grew) = measured(&label, form.len(), |all| {
            http_post_form(all.http, path, &form).unwrap()
        });
        let body = String::from_utf8_lossy(&body);
        assert!(
            code == 200 || (code == 400 && body.contains("bad_data")),
            "{label}: {code} {}",
            &body[..body.len().min(300)]
        );
        if code == 400 {
            // Refused for a limit, which the answer names.
            assert!(
                body.contains("limit") || body.contains("at most") || body.contains("allowed"),
                "{label}: {body}"
            );
            assert!(body.len() < 2048, "{label}: a {} byte answer", body.len());
        }
        assert_within_goal(&label, form.len(), grew);
    }
    // The StoreAPI: a Series call with a megabyte regex that is not a list of values is
    // refused, as is one whose matchers are a million empty messages.
    let regex = alternation(REGEX_BYTES, ".");
    let call = json!([{"method": "Series", "min_time": 0, "max_time": i64::MAX,
                       "matchers": [[2, "job", regex]]}]);
    let what = "StoreAPI Series with a 916 KiB regex";
    let (r, grew) = measured(what, REGEX_BYTES, |all| python_calls(all.grpc, &call));
    assert_eq!(r[0]["ok"], false, "{}", r[0]);
    assert_eq!(r[0]["code"], "INVALID_ARGUMENT", "{}", r[0]);
    let details = r[0]["details"].as_str().unwrap_or("");
    assert!(details.contains("limit"), "{details}");
    assert_within_goal(what, REGEX_BYTES, grew);
    let empty = thanos::SeriesRequest {
        min_time: 0,
        max_time: i64::MAX,
        matchers: vec![thanos::LabelMatcher::default(); 1 << 20],
        ..Default::default()
    };
    let sent = empty.encoded_len();
    let what = "StoreAPI Series with 2^20 empty matchers";
    let (status, grew) = measured(what, sent, |all| series_call(all.grpc, empty));
    let status = status.expect_err("a million empty matchers are refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("more than the"), "{status:?}");
    assert_within_goal(what, sent, grew);
}

/// A StoreAPI Series call, drained; its status when it fails.
fn series_call(grpc_port: u16, req: thanos::SeriesRequest) -> Result<usize, tonic::Status> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let call = async {
                let mut client = thanos::store_client::StoreClient::connect(format!(
                    "http://127.0.0.1:{grpc_port}"
                ))
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?
                .max_encoding_message_size(usize::MAX)
                .max_decoding_message_size(usize::MAX);
                let mut stream = client.series(req).await?.into_inner();
                let mut frames = 0;
                while stream.message().await?.is_some() {
                    frames += 1;
                }
                Ok(frames)
            };
            tokio::time::timeout(Duration::from_secs(120), call)
                .await
                .expect("Series answered within 120 s")
        })
}

#[test]
fn labels_over_the_default_limits_are_refused() {
    let t = now_ms();
    let names: Vec<String> = (0..100_000).map(|i| format!("l{i:06}")).collect();
    let mut many: Vec<(&str, &str)> = vec![("__name__", "many_labels")];
    many.extend(names.iter().map(|n| (n.as_str(), "v")));
    let long = "x".repeat(1 << 20);
    let long_name = "n".repeat(64 << 10);
    let cases = [
        ("100,000 labels", many, "--receive.limits.label-count"),
        (
            "a 1 MiB label value",
            vec![("__name__", "long_value"), ("v", long.as_str())],
            "--receive.limits.label-value-length",
        ),
        (
            "a 64 KiB label name",
            vec![("__name__", "long_name"), (long_name.as_str(), "v")],
            "--receive.limits.label-name-length",
        ),
    ];
    let all = All::start();
    for (what, labels, flag) in cases {
        let body = write_body(vec![series(&labels, &[(t, 1.0)])]);
        let ((code, msg), grew) = all.growth(what, body.len(), || {
            let (code, _, msg) = post(all.rw, "/api/v1/receive", &[V1], &body).unwrap();
            (code, msg)
        });
        assert_eq!(code, 400, "{what}: {msg}");
        assert!(msg.contains(flag), "{what}: {msg}");
        assert!(msg.contains("limit"), "{what}: {msg}");
        assert_within_goal(what, body.len(), grew);
    }
    // Nothing of them was stored; a series within the limits is.
    let ok = write_body(vec![series(
        &[("__name__", "within_limits"), ("v", &"x".repeat(4096))],
        &[(t, 1.0)],
    )]);
    let (code, _, msg) = post(all.rw, "/api/v1/receive", &[V1], &ok).unwrap();
    assert_eq!(code, 200, "{msg}");
    let (code, body) = http_get(all.http, "/api/v1/label/__name__/values").unwrap();
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(names.contains(&"within_limits"), "{names:?}");
    for refused in ["many_labels", "long_value", "long_name"] {
        assert!(!names.contains(&refused), "{refused} was stored: {names:?}");
    }
    all.assert_alive();
}
