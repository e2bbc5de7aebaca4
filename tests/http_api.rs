//! The Prometheus HTTP API against a real Prometheus 3 over the same blocks: bodies and status
//! codes must be byte for byte the same wherever Prometheus is deterministic.

use crate::common::*;

/// The fixture block: 200 series, 2025-01-01 00:00 to 02:00 UTC at 15 s.
const BLOCK: &str = "promtool-200series-2h";
const T0: i64 = 1_735_689_600;

struct Pair {
    prom: Prometheus,
    ours: GauntletServer,
    _data: tempfile::TempDir,
}

fn start_pair() -> Pair {
    let blocks = fixtures().join(BLOCK);
    let prom = Prometheus::start(&prometheus3(), &blocks);
    let data = tempfile::tempdir().unwrap();
    copy_dir(&blocks, data.path());
    let dir = data.path().display().to_string();
    let ours = GauntletServer::start(
        &["all", &format!("--data-dir={dir}")],
        "/api/v1/status/buildinfo",
    );
    Pair {
        prom,
        ours,
        _data: data,
    }
}

fn assert_same(pair: &Pair, path: &str) {
    let (ps, pb) = http_get(pair.prom.port, path).unwrap();
    let (gs, gb) = pair.ours.get(path);
    assert_eq!(
        (gs, String::from_utf8_lossy(&gb)),
        (ps, String::from_utf8_lossy(&pb)),
        "{path}: gauntlet (left) vs prometheus (right)"
    );
}

fn q(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn series_labels_and_values_match_prometheus_byte_for_byte() {
    let pair = start_pair();
    let start = T0.to_string();
    let end = (T0 + 7200).to_string();
    let mid = (T0 + 3600).to_string();
    let paths = [
        format!(
            "/api/v1/series?{}",
            q(&[
                ("match[]", r#"http_requests_total{code="500"}"#),
                ("start", &start),
                ("end", &end)
            ])
        ),
        format!(
            "/api/v1/series?{}",
            q(&[
                ("match[]", r#"{__name__=~"temp.*"}"#),
                ("match[]", r#"process_resident_memory_bytes"#),
                ("start", &mid),
                ("end", &end)
            ])
        ),
        format!(
            "/api/v1/series?{}",
            q(&[("match[]", r#"{job="node",cpu=~"1|3"}"#)])
        ),
        format!(
            "/api/v1/series?{}",
            q(&[("match[]", "no_such_metric"), ("start", &start)])
        ),
        // Between two samples: a series counts when a chunk of it spans the range.
        format!(
            "/api/v1/series?{}",
            q(&[
                ("match[]", r#"{__name__=~"temp.*|process.*"}"#),
                ("start", &(T0 + 3601).to_string()),
                ("end", &(T0 + 3614).to_string())
            ])
        ),
        // Past the data's end.
        format!(
            "/api/v1/series?{}",
            q(&[
                ("match[]", r#"{job="node"}"#),
                ("start", &(T0 + 7300).to_string()),
                ("end", &(T0 + 8000).to_string())
            ])
        ),
        "/api/v1/labels".to_string(),
        format!("/api/v1/labels?{}", q(&[("start", &start), ("end", &end)])),
        format!(
            "/api/v1/labels?{}",
            q(&[("match[]", "http_requests_total"), ("start", &start)])
        ),
        "/api/v1/label/__name__/values".to_string(),
        "/api/v1/label/instance/values".to_string(),
        format!(
            "/api/v1/label/le/values?{}",
            q(&[("match[]", r#"{handler="/api/b"}"#), ("end", &end)])
        ),
        "/api/v1/label/no_such_label/values".to_string(),
        // Times as RFC 3339.
        format!(
            "/api/v1/label/job/values?{}",
            q(&[
                ("start", "2025-01-01T00:30:00Z"),
                ("end", "2025-01-01T01:00:00.5Z")
            ])
        ),
        "/api/v1/metadata".to_string(),
        // Errors.
        "/api/v1/series".to_string(),
        format!(
            "/api/v1/series?{}",
            q(&[("match[]", "up"), ("start", "yesterday")])
        ),
        format!("/api/v1/labels?{}", q(&[("end", "2025-13-01T00:00:00Z")])),
        format!("/api/v1/series?{}", q(&[("match[]", r#"{job=""}"#)])),
        format!("/api/v1/series?{}", q(&[("match[]", r#"{job=~".*"}"#)])),
        // A reversed range is answered, not refused.
        format!(
            "/api/v1/series?{}",
            q(&[
                ("match[]", r#"temperature_celsius{sensor="s2"}"#),
                ("start", &mid),
                ("end", &start)
            ])
        ),
        format!(
            "/api/v1/series?{}",
            q(&[("match[]", "http_requests_total"), ("limit", "4")])
        ),
        format!("/api/v1/labels?{}", q(&[("limit", "2")])),
        // Rules, alerts and targets: there are none.
        "/api/v1/rules".to_string(),
        "/api/v1/alerts".to_string(),
        "/api/v1/targets".to_string(),
    ];
    for p in &paths {
        assert_same(&pair, p);
    }
    // Selectors Prometheus's metric-selector parser takes or refuses, and how it says so; the
    // series API calls a bad one an invalid parameter, the label APIs do not.
    let selectors = [
        "rate(x[5m])",
        "x offset 5m",
        "x{a=\"b\"} == 1",
        "x 12345678901234",
        "x{a=b}",
        "x{a}",
        "x{1=\"a\"}",
        "x{a!}",
        "x{a=\"\\z\"}",
        "x)",
        "x{a=\"b\"",
        "x{a=\"b\"}}",
        "{a=\"b\",,}",
        "{\"a\" \"b\"}",
        "x{a=\"b\",\nc=1}",
        "",
        "   ",
        "{}",
        "{a=~\"(\"}",
        "{a=~\"a**\"}",
        "{a=~\"x{1001}\"}",
        "{a=~\"\\\\p{Foo}\"}",
        // Taken: a lone quoted name is the metric name; trailing comma; comment.
        "{\"temperature_celsius\", sensor=\"s2\"}",
        "temperature_celsius{sensor=\"s2\",} # c",
    ];
    for sel in selectors {
        for api in ["series", "labels", "label/sensor/values"] {
            assert_same(&pair, &format!("/api/v1/{api}?{}", q(&[("match[]", sel)])));
        }
    }
    // A query's matcher regex is checked with RE2's rules, at its place in the query.
    for query in [
        "sum(rate(x{a=~\"(b\"}[5m])) by (c)",
        "x{a=\"{\"} + y{b=~\"c++\"}",
        "{a=~\"a**\"}",
        // Selector errors inside a query, placed and worded by the selector lexer.
        "sum(x{a=\"b\" c=\"d\"})",
        "rate(x{a=b}[5m])",
        "x + y{a}",
        "x{a=\"b\"} + y{__name__=\"z\"}",
        "x{a=\"b\"}}",
        "stddev(x{case!=\"drop\",grp!=\"\"a\"}) without (case)",
        "(month(x{{grp!~\"b|a\"} offset 5m)))",
        // Empty arguments, ranges of nothing, a stray `!`.
        "clamp(limitk (1,, x), 5, 1)",
        "acosh(1e308 >= (last_over_time(x[0s])))",
        "rate(x[5m:0s])",
        "x{a!~\"b\"}[0]",
        "edge_gaugegrp!~\"a|b\",grp=~\"a|b\"}",
        "x !",
    ] {
        assert_same(&pair, &format!("/api/v1/query?{}", q(&[("query", query)])));
    }
    // A form-encoded POST answers like the GET.
    let form = q(&[("match[]", r#"http_requests_total{code="500"}"#)]);
    let (ps, pb) = http_post_form(pair.prom.port, "/api/v1/series", &form).unwrap();
    let (gs, gb) = http_post_form(pair.ours.http_port, "/api/v1/series", &form).unwrap();
    assert_eq!(
        (gs, String::from_utf8_lossy(&gb)),
        (ps, String::from_utf8_lossy(&pb))
    );
    assert!(
        gb.len() > 100,
        "POST series returned {}",
        String::from_utf8_lossy(&gb)
    );
}

#[test]
fn buildinfo_has_prometheus_keys() {
    let pair = start_pair();
    let (_, pb) = http_get(pair.prom.port, "/api/v1/status/buildinfo").unwrap();
    let (gs, gb) = pair.ours.get("/api/v1/status/buildinfo");
    assert_eq!(gs, 200);
    let p: serde_json::Value = serde_json::from_slice(&pb).unwrap();
    let g: serde_json::Value = serde_json::from_slice(&gb).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v["data"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&g), keys(&p));
    assert_eq!(g["status"], "success");
}

/// Vectors come out in an order Prometheus does not fix (aggregation groups); everything else
/// is compared as values.
fn normalized(body: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!("bad JSON {e}: {}", String::from_utf8_lossy(body));
    });
    if v["data"]["resultType"] == "vector"
        && let Some(r) = v["data"]["result"].as_array_mut()
    {
        r.sort_by_key(|s| s["metric"].to_string());
    }
    // Nor the order of several annotations (a map in Prometheus).
    for k in ["warnings", "infos"] {
        if let Some(a) = v[k].as_array_mut() {
            a.sort_by_key(|x| x.to_string());
        }
    }
    v
}

#[test]
fn query_answers_match_prometheus() {
    let pair = start_pair();
    let at = (T0 + 3600).to_string();
    let late = (T0 + 5400).to_string() + ".25";
    let instant = [
        r#"http_requests_total{code="500",handler="/api/a"}"#,
        "sum by (method) (http_requests_total)",
        "count(temperature_celsius)",
        "max by (sensor) (temperature_celsius) > 50",
        "process_resident_memory_bytes / 1e9",
        "1/0",
        "-1/0",
        "0/0",
        "vector(1e-9) * 3",
        "1e-9",
        "vector(-1e25)",
        "1e300 * 10",
        "scalar(sum(process_resident_memory_bytes))",
        r#""a string""#,
        "time()",
        r#"label_replace(up or vector(2), "x", "$1", "job", "(.*)")"#,
        "no_such_metric",
        // Annotations end with the position of the argument they are about.
        "rate(temperature_celsius[5m])",
        "sum(\n  rate(process_resident_memory_bytes[5m])\n) + on() group_left sum(rate(temperature_celsius{sensor=\"s1\"}[1m]))",
        "quantile_over_time(2, temperature_celsius[5m])",
        "rate((temperature_celsius)[10m:1m])",
        "quantile by (instance) (-0.5, temperature_celsius)",
        "histogram_quantile(1.5, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ];
    for q in instant {
        for t in [&at, &late] {
            let path = format!("/api/v1/query?{}", self::q(&[("query", q), ("time", t)]));
            let (ps, pb) = http_get(pair.prom.port, &path).unwrap();
            let (gs, gb) = pair.ours.get(&path);
            assert_eq!(gs, ps, "{path}: {}", String::from_utf8_lossy(&gb));
            assert_eq!(normalized(&gb), normalized(&pb), "{path}");
        }
    }
    // Range queries over instant selectors and aggregations: bytes equal.
    let range = [
        r#"temperature_celsius{sensor="s1"}"#,
        "sum(http_requests_total)",
        "process_resident_memory_bytes > 2e9",
        "vector(time())",
        "1/0",
    ];
    let (start, end) = ((T0 + 600).to_string(), (T0 + 7200).to_string());
    for q in range {
        for step in ["60", "37.5", "5m"] {
            assert_same(
                &pair,
                &format!(
                    "/api/v1/query_range?{}",
                    self::q(&[
                        ("query", q),
                        ("start", &start),
                        ("end", &end),
                        ("step", step)
                    ])
                ),
            );
        }
    }
    // Errors in parameters are spelled as Prometheus spells them.
    for params in [
        vec![
            ("query", "up"),
            ("start", "1"),
            ("end", "0"),
            ("step", "15"),
        ],
        vec![("query", "up"), ("start", "0"), ("end", "1"), ("step", "0")],
        vec![("query", "up"), ("start", "0"), ("end", "1"), ("step", "x")],
        vec![
            ("query", "up"),
            ("start", "0"),
            ("end", "100000"),
            ("step", "1"),
        ],
        vec![
            ("query", "up"),
            ("start", "zero"),
            ("end", "1"),
            ("step", "1"),
        ],
    ] {
        assert_same(&pair, &format!("/api/v1/query_range?{}", self::q(&params)));
    }
    assert_same(
        &pair,
        &format!(
            "/api/v1/query?{}",
            self::q(&[("query", "up"), ("time", "later")])
        ),
    );
    // Per-request lookback and timeout, valid and not.
    for (name, value) in [
        ("lookback_delta", "1m"),
        ("lookback_delta", "2h"),
        ("lookback_delta", "x"),
        ("lookback_delta", "-1m"),
        ("timeout", "1m"),
        ("timeout", "x"),
    ] {
        assert_same(
            &pair,
            &format!(
                "/api/v1/query?{}",
                self::q(&[
                    ("query", r#"temperature_celsius{sensor="s1"}"#),
                    ("time", &late),
                    (name, value)
                ])
            ),
        );
    }
    // `limit` cuts the result (sorted by labels) and says so in a warning.
    assert_same(
        &pair,
        &format!(
            "/api/v1/query?{}",
            self::q(&[
                ("query", "sort(temperature_celsius)"),
                ("time", &at),
                ("limit", "3")
            ])
        ),
    );
    assert_same(
        &pair,
        &format!(
            "/api/v1/query_range?{}",
            self::q(&[
                ("query", "temperature_celsius"),
                ("start", &start),
                ("end", &end),
                ("step", "10m"),
                ("limit", "2")
            ])
        ),
    );
    // Parse errors: same status and error type (message wording is the parser's own).
    for bad in ["sum(", "foo{", "rate(up)", r#"{__name__=~".*"}"#] {
        let path = format!(
            "/api/v1/query?{}",
            self::q(&[("query", bad), ("time", &at)])
        );
        let (ps, pb) = http_get(pair.prom.port, &path).unwrap();
        let (gs, gb) = pair.ours.get(&path);
        let (p, g) = (normalized(&pb), normalized(&gb));
        assert_eq!(
            (gs, &g["errorType"]),
            (ps, &p["errorType"]),
            "{path}: {g} vs {p}"
        );
        assert!(
            g["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid parameter \"query\": "),
            "{g}"
        );
    }
    // Errors found at the end of the input, empty queries, unknown functions, wrong argument
    // types and counts, and durations out of range are worded exactly as Prometheus words
    // them, position included.
    for bad in [
        "sum(",
        "foo{",
        "rate(x[5m]",
        "x[5m",
        "x[5m:",
        "x[",
        "rate(x[5m",
        "sum(rate(x[ ",
        "",
        " ",
        "sum(\nx\n",
        "x offset",
        "x @",
        "unknown_fn(x)",
        "x{a=\"b}",
        "x{a=\"b\"} + \"abc",
        "x{a~\"b\"}",
        "x{a=~~\"b\"}",
        "x{a!b=\"c\"}",
        "x{0=\"a\"}",
        "sum(x))",
        "rate(x[5m]])",
        "abs(x,)",
        "count(asi(nmad_over_time(x[3m])))",
        "rate(x)",
        "sum(rate(x))",
        "abs(abs(abs(x[5m])))",
        "quantile_over_time(x[5m], 0.5)",
        "histogram_quantile(0.9, x[5m])",
        "abs(x, y)",
        "round()",
        "x + label_replace(y, \"a\")",
        "sum(x, y)",
        "x / topk(x)",
        "n[9300000000]",
        "n[1e300]",
        "rate(n[5m:9300000000])",
        "n offset 8111111111111111111111111111",
        "n offset 999999999999y",
        "n[99999999999999999999s]",
        "sum(rate(x[5m])) / on() group_left\n  no_such_function(y)",
    ] {
        assert_same(
            &pair,
            &format!(
                "/api/v1/query?{}",
                self::q(&[("query", bad), ("time", &at)])
            ),
        );
    }
    // POST form and GET agree.
    let form = self::q(&[("query", "sum(http_requests_total)"), ("time", &at)]);
    let (gs, gb) = http_post_form(pair.ours.http_port, "/api/v1/query", &form).unwrap();
    let (_, want) = pair.ours.get(&format!("/api/v1/query?{form}"));
    assert_eq!((gs, gb), (200, want));
    // format_query answers a string.
    let (gs, gb) = pair.ours.get(&format!(
        "/api/v1/format_query?{}",
        self::q(&[("query", "sum(rate(x[5m]))by(job)")])
    ));
    let g = normalized(&gb);
    assert_eq!(gs, 200, "{g}");
    assert_eq!(g["data"], "sum by (job) (rate(x[5m]))", "{g}");
    // A query longer than 100 bytes comes back over several lines, as Prometheus writes it.
    let long = r#"sum by (job, instance) (rate(http_requests_total{job="api-server",handler=~"/api/.*"}[5m])) / on(job) group_left sum by (job) (rate(http_requests_total{job="api-server"}[5m])) > 0.5"#;
    let path = format!("/api/v1/format_query?{}", self::q(&[("query", long)]));
    let (gs, gb) = pair.ours.get(&path);
    let g = normalized(&gb);
    assert_eq!(gs, 200, "{g}");
    assert_eq!(
        g["data"],
        concat!(
            "    sum by (job, instance) (rate(http_requests_total{handler=~\"/api/.*\",job=\"api-server\"}[5m]))\n",
            "  / on (job) group_left ()\n",
            "    sum by (job) (rate(http_requests_total{job=\"api-server\"}[5m]))\n",
            ">\n",
            "  0.5"
        ),
        "{g}"
    );
    assert_same(&pair, &path);
    let form = self::q(&[("query", long)]);
    let (ps, pb) = http_post_form(pair.ours.http_port, "/api/v1/format_query", &form).unwrap();
    assert_eq!((ps, pb), (200, gb));
}

#[test]
fn readme_run_command_answers_the_readme_queries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ours = GauntletServer::start(
        &["all", "--demo", &format!("--data-dir={}", data.display())],
        "/-/ready",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let hour_ago = (now.parse::<i64>().unwrap() - 3600).to_string();
    for path in [
        format!(
            "/api/v1/query?{}",
            q(&[("query", "sum by (code) (rate(http_requests_total[5m]))")])
        ),
        format!(
            "/api/v1/query?{}",
            q(&[(
                "query",
                "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))"
            )])
        ),
        format!(
            "/api/v1/query_range?{}",
            q(&[
                (
                    "query",
                    r#"sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))"#
                ),
                ("start", &hour_ago),
                ("end", &now),
                ("step", "60")
            ])
        ),
    ] {
        let (status, body) = ours.get(&path);
        let v = normalized(&body);
        assert_eq!(status, 200, "{path}: {v}");
        assert!(
            !v["data"]["result"].as_array().unwrap().is_empty(),
            "{path}: no data: {v}"
        );
    }
}
