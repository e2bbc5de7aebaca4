//! The web UI in a real browser: a `gauntlet all` on loopback takes series by remote write,
//! Debian's headless Chromium (driven by `web/tests/driver.mjs` with playwright-core) opens the
//! query and status pages, and what the pages show is held to what the HTTP API answers: table
//! rows and values, the graph's canvas and legend, errors with their position marked in the
//! editor, annotations, completion of metric names, label names and values, the editor's own
//! lint, several panels, Prometheus-style `/graph?g0.expr=…` links, and the status page's
//! build information, flags, runtime facts and stores (of `all` and of a querier), and the
//! graph's exemplars (each one the API answers drawn inside the plot and listed). In windows
//! 1400 and 800 px wide: the graph's time labels on a round step and apart, the legend's last
//! values, section pages (`/blocks`, `/stores`) opening at the top with their section alone,
//! wide tables scrolling inside their section, and Chromium's own `--screenshot` of a section
//! page showing it. Screenshots of every page stay in `target/web-ui-artifacts/`.
//!
//! Without Chromium the test is skipped with a message, unless `GAUNTLET_REQUIRE_BROWSER` is set
//! (tests/run.sh sets it), when a missing browser fails it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::receive::{V1, now_ms, post, series, snappy};
use crate::common::*;
use gauntlet_proto::prometheus as pb;
use prost::Message;
use serde_json::{Value, json};

/// The browser, or `None` when it is missing and the test may be skipped.
pub(crate) fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("GAUNTLET_REQUIRE_BROWSER").is_some() {
        panic!(
            "{} is missing and GAUNTLET_REQUIRE_BROWSER is set: install it with \
             `apt-get install -y chromium chromium-driver` (tests/run.sh does)",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED web_ui: {} is not installed (apt-get install -y chromium chromium-driver; \
         set GAUNTLET_REQUIRE_BROWSER=1 to make this a failure)",
        path.display()
    );
    None
}

/// `target/web-ui-artifacts/`, beside the binary under test.
fn artifacts() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_gauntlet"));
    let target = bin
        .parent()
        .and_then(Path::parent)
        .expect("the binary sits in target/<profile>/");
    target.join("web-ui-artifacts")
}

/// Runs the driver over `steps`; returns its report, one object per step, by name.
pub(crate) fn drive(
    browser: &Path,
    port: u16,
    steps: &Value,
) -> std::collections::BTreeMap<String, Value> {
    let root = repo_root();
    let modules = root.join("web/node_modules/playwright-core");
    assert!(
        modules.is_dir(),
        "{} is missing: the server's build installs web/'s npm packages (build it without \
         GAUNTLET_WEB_UI=skip)",
        modules.display()
    );
    let out = Command::new(require("node"))
        .arg(root.join("web/tests/driver.mjs"))
        .arg(format!("http://127.0.0.1:{port}"))
        .arg(artifacts())
        .arg(steps.to_string())
        .env("CHROMIUM", browser)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Vec<Value> = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the driver's report is not JSON ({e}); status {}, stdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    for step in &report {
        assert!(
            step.get("failure").is_none(),
            "step {} failed: {}\n(screenshot in {})",
            step["name"],
            step["failure"],
            artifacts().display()
        );
        assert_eq!(
            step["pageErrors"],
            json!([]),
            "step {} threw in the page",
            step["name"]
        );
    }
    assert!(out.status.success(), "driver exited with {}", out.status);
    report
        .into_iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s))
        .collect()
}

/// `name{a="b", c="d"}` as the page prints a series.
fn series_text(metric: &Value) -> String {
    let m = metric.as_object().unwrap();
    let name = m.get("__name__").and_then(Value::as_str).unwrap_or("");
    let mut pairs: Vec<_> = m.iter().filter(|(k, _)| *k != "__name__").collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let pairs: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::to_string(v).unwrap()))
        .collect();
    if pairs.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", pairs.join(", "))
    }
}

pub(crate) fn api(server: &GauntletServer, path: &str) -> Value {
    let (_, body) = server.get(path);
    serde_json::from_slice(&body).expect("API answers JSON")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Writes three counters, a gauge and a native histogram over the last 30 minutes (15 s apart,
/// ending at `end`) into the server by remote write.
pub(crate) fn write_data(port: u16, end: i64) {
    let times: Vec<i64> = (0..120).map(|i| end - (119 - i) * 15_000).collect();
    let mut ts = Vec::new();
    for (k, instance) in ["a", "b", "c"].iter().enumerate() {
        let samples: Vec<(i64, f64)> = times
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, (i as f64) * (k as f64 + 1.0) * 3.0))
            .collect();
        let mut s = series(
            &[
                ("__name__", "web_ui_requests_total"),
                ("instance", instance),
                ("job", "web"),
            ],
            &samples,
        );
        // Instance a's requests carry a trace ID every 2 min (kept where exemplar storage
        // is on).
        if k == 0 {
            s.exemplars = times
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 8 == 7)
                .map(|(i, &t)| pb::Exemplar {
                    labels: vec![pb::Label {
                        name: "trace_id".into(),
                        value: format!("trace-{i}"),
                    }],
                    value: 0.05 * (i as f64 % 10.0 + 1.0),
                    timestamp: t,
                })
                .collect();
        }
        ts.push(s);
    }
    let gauge: Vec<(i64, f64)> = times.iter().map(|&t| (t, 42.5)).collect();
    ts.push(series(&[("__name__", "web_ui_temperature")], &gauge));
    let histograms = times
        .iter()
        .enumerate()
        .map(|(i, &t)| pb::Histogram {
            count: Some(pb::histogram::Count::CountInt(3 * (i as u64 + 1))),
            zero_count: Some(pb::histogram::ZeroCount::ZeroCountInt(i as u64 + 1)),
            sum: 2.5 * (i as f64 + 1.0),
            schema: 0,
            zero_threshold: 0.001,
            positive_spans: vec![pb::BucketSpan {
                offset: 0,
                length: 2,
            }],
            positive_deltas: vec![i as i64 + 1, 0],
            timestamp: t,
            ..Default::default()
        })
        .collect();
    ts.push(pb::TimeSeries {
        labels: vec![pb::Label {
            name: "__name__".into(),
            value: "web_ui_latency_seconds".into(),
        }],
        histograms,
        ..Default::default()
    });
    let body = snappy(
        &pb::WriteRequest {
            timeseries: ts,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let (status, _, text) = post(
        port,
        "/api/v1/receive",
        &[V1, ("Content-Encoding", "snappy")],
        &body,
    )
    .expect("remote write");
    assert_eq!(status, 200, "remote write: {text}");
}

/// The 1-based column a server message's `1:N:` position names.
fn error_column(message: &str) -> usize {
    let at = message
        .find("1:")
        .unwrap_or_else(|| panic!("no position in {message:?}"));
    message[at + 2..]
        .split(':')
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no column in {message:?}"))
}

#[test]
fn query_and_status_pages_in_chromium_show_what_the_api_answers() {
    let Some(browser) = chromium() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // Two promtool blocks in the bucket, as a sidecar uploads them; compaction stays off so
    // they stay as they are while the pages are read.
    let bucket = tmp.path().join("data");
    std::fs::create_dir_all(&bucket).unwrap();
    let uploaded = crate::common::bucket::upload(
        &crate::common::bucket::promtool_blocks(tmp.path(), 1, 4),
        &bucket,
        &[("cluster", "web-ui")],
    );
    assert_eq!(uploaded.len(), 2);
    let data = format!("--data-dir={}", bucket.display());
    let server = GauntletServer::start(
        &[
            "all",
            &data,
            "--compact.interval=0s",
            "--tsdb.max-exemplars=1000",
        ],
        "/-/ready",
    );
    let port = server.http_port;

    // The page itself, its assets and an unknown asset.
    let (status, page) = server.get("/");
    assert_eq!(
        status,
        200,
        "GET / on {}: this binary serves no web UI (built with GAUNTLET_WEB_UI=skip, or \
         replaced by another checkout's build in a shared target directory)",
        env!("CARGO_BIN_EXE_gauntlet")
    );
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains("<main id=\"app\">"), "{page}");
    for path in ["/graph", "/query", "/status"] {
        assert_eq!(server.get(path).0, 200, "{path}");
    }
    let script = page
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a script tag");
    assert!(script.starts_with("/assets/"), "{script}");
    assert_eq!(server.get(script).0, 200, "{script}");
    assert_eq!(server.get("/assets/nothing-here.js").0, 404);

    // Whole seconds, so the page's evaluation time is the API's.
    let end = now_ms() / 1000 * 1000 - 30_000;
    write_data(port, end);
    let at = end / 1000;
    let counters = "web_ui_requests_total";
    let want = api(
        &server,
        &format!("/api/v1/query?query={counters}&time={at}"),
    );
    assert_eq!(
        want["data"]["result"].as_array().unwrap().len(),
        3,
        "{want}"
    );

    let rate = "rate(web_ui_requests_total[5m])";
    let range_want = api(
        &server,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={at}&step=7",
            urlencode(rate),
            at - 1800
        ),
    );
    let bad_end = "sum(rate(web_ui_requests_total[5m])";
    let bad_mid = "rate(web_ui_requests_total)";
    let bad_answers: Vec<String> = [bad_end, bad_mid]
        .iter()
        .map(|q| {
            let a = api(&server, &format!("/api/v1/query?query={}", urlencode(q)));
            assert_eq!(a["status"], "error", "{a}");
            format!(
                "{}: {}",
                a["errorType"].as_str().unwrap(),
                a["error"].as_str().unwrap()
            )
        })
        .collect();
    let info_query = "rate(web_ui_temperature[5m])";
    let info_want = api(
        &server,
        &format!("/api/v1/query?query={}&time={at}", urlencode(info_query)),
    );
    let link_expr = "web_ui_requests_total{instance=\"b\"}";

    // A querier over the same data serves the UI too, and lists its endpoint.
    let querier = GauntletServer::start(
        &[
            "query",
            &format!("--endpoint=127.0.0.1:{}", server.grpc_port),
        ],
        "/-/ready",
    );
    let qbase = format!("http://127.0.0.1:{}", querier.http_port);
    assert_eq!(querier.get("/").0, 200);
    let gauge = "web_ui_temperature";
    // The querier reads `all`'s StoreAPI, which serves the bucket: the promtool blocks.
    let in_blocks = "count by (cluster) ({__name__=~\".+\"})";
    let in_blocks_at = 1_735_689_600 + 3600;
    let querier_want = api(
        &querier,
        &format!(
            "/api/v1/query?query={}&time={in_blocks_at}",
            urlencode(in_blocks)
        ),
    );

    // Longer than a line of Prometheus's multi-line form: the Format button splits it.
    let long_expr = "sum by (instance) (rate(web_ui_requests_total{instance=~\".+\"}[5m])) / on (instance) group_left () sum by (instance) (rate(web_ui_requests_total[5m])) > 0.5";
    let q = |expr: &str, rest: &str| format!("/query?g0.expr={}&{rest}", urlencode(expr));
    let steps = json!([
        {"name": "instant_table", "path": q(counters, &format!("g0.tab=1&g0.moment_input={at}")),
         "wait": ".results"},
        {"name": "histogram_table", "path": q("web_ui_latency_seconds", &format!("g0.tab=1&g0.moment_input={at}")),
         "wait": ".results"},
        {"name": "range_graph", "path": q(rate, &format!("g0.tab=0&g0.range_input=30m&g0.end_input={at}&g0.step_input=7")),
         "wait": ".graph canvas"},
        {"name": "range_graph_stacked", "path": q(rate, &format!("g0.tab=0&g0.range_input=30m&g0.end_input={at}&g0.stacked=1")),
         "wait": ".graph canvas"},
        {"name": "range_graph_exemplars", "path": q(rate, &format!("g0.tab=0&g0.range_input=30m&g0.end_input={at}&g0.show_exemplars=1")),
         "wait": "details.exemplars"},
        {"name": "range_buttons", "path": q(rate, &format!("g0.tab=0&g0.range_input=30m&g0.end_input={at}")),
         "wait": ".graph canvas", "click": [".shorter", ".earlier"], "waitAfter": ".graph canvas"},
        {"name": "histogram_graph", "path": q("web_ui_latency_seconds", &format!("g0.tab=0&g0.range_input=30m&g0.end_input={at}")),
         "wait": ".graph canvas"},
        {"name": "error_at_end", "path": q(bad_end, "g0.tab=1"), "wait": ".messages .message.error"},
        {"name": "error_inside", "path": q(bad_mid, "g0.tab=1"), "wait": ".messages .message.error"},
        {"name": "info_annotation", "path": q(info_query, &format!("g0.tab=1&g0.moment_input={at}")),
         "wait": ".messages .message.info"},
        {"name": "prometheus_link",
         "path": format!("/graph?g0.expr={}&g0.tab=1&g0.range_input=1h", urlencode(link_expr)),
         "wait": ".results"},
        {"name": "two_panels",
         "path": format!("/graph?g0.expr={}&g0.tab=1&g0.moment_input={at}&g1.expr={}&g1.tab=0&g1.range_input=30m&g1.end_input={at}",
                         urlencode(gauge), urlencode(rate)),
         "wait": "section.panel:nth-of-type(2) .graph canvas"},
        {"name": "completion", "path": "/query", "wait": ".expr .cm-content",
         "type": "web_ui_req", "waitAfter": ".cm-tooltip-autocomplete li"},
        {"name": "label_completion", "path": "/query", "wait": ".expr .cm-content",
         "type": "web_ui_requests_total{inst", "waitAfter": ".cm-tooltip-autocomplete li"},
        {"name": "value_completion", "path": "/query", "wait": ".expr .cm-content",
         "type": "web_ui_requests_total{instance=\"", "waitAfter": ".cm-tooltip-autocomplete li"},
        {"name": "lint", "path": "/query", "wait": ".expr .cm-content",
         "type": "sum(rate(web_ui_requests_total[5m]) by", "press": ["Escape"],
         "waitAfter": ".expr .cm-lintRange-error"},
        {"name": "typed_query", "path": "/query?g0.tab=1", "wait": ".expr .cm-content",
         "type": "web_ui_temperature", "press": ["Escape", "Enter"], "waitAfter": ".results"},
        {"name": "format", "path": q(long_expr, "g0.tab=1"), "wait": ".expr .cm-content",
         "click": [".format"], "waitAfter": ".expr .cm-line:nth-child(2)"},
        {"name": "status", "path": "/status", "wait": "section#stores"},
        {"name": "querier_table", "path": format!("{qbase}{}", q(in_blocks, &format!("g0.tab=1&g0.moment_input={in_blocks_at}"))),
         "wait": ".results, .empty"},
        {"name": "querier_stores", "path": format!("{qbase}/stores"), "wait": "section#stores"},
    ]);
    let got = drive(&browser, port, &steps);

    // An instant query: one row per series, labels and value as the API gives them.
    let mut want_rows: Vec<Vec<String>> = want["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            vec![
                series_text(&s["metric"]),
                s["value"][1].as_str().unwrap().to_string(),
            ]
        })
        .collect();
    let mut rows: Vec<Vec<String>> =
        serde_json::from_value(got["instant_table"]["rows"].clone()).expect("rows of cells");
    want_rows.sort();
    rows.sort();
    assert_eq!(rows, want_rows);
    let stats = got["instant_table"]["stats"].as_str().unwrap();
    assert!(
        stats.contains("Series: 3") && stats.contains("Load time:"),
        "{stats}"
    );
    // The samples the query loaded, as the API counts them with `stats=all`.
    let counted = api(
        &server,
        &format!(
            "/api/v1/query?query={}&time={at}&stats=all",
            urlencode(counters)
        ),
    );
    let samples = &counted["data"]["stats"]["samples"]["totalQueryableSamples"];
    assert!(samples.as_u64().is_some_and(|n| n > 0), "{counted}");
    assert!(
        stats.contains(&format!("Samples: {samples}")),
        "{stats} vs {counted}"
    );
    assert_eq!(got["instant_table"]["errors"], json!([]));

    // A native histogram shows its count and sum.
    let hist = api(
        &server,
        &format!("/api/v1/query?query=web_ui_latency_seconds&time={at}"),
    );
    let h = &hist["data"]["result"][0]["histogram"][1];
    let cell = got["histogram_table"]["rows"][0][1].as_str().unwrap();
    let buckets = h["buckets"].as_array().unwrap();
    assert!(
        cell.contains(&format!("count {}", h["count"].as_str().unwrap()))
            && cell.contains(&format!("sum {}", h["sum"].as_str().unwrap()))
            && cell.contains(&format!("{} buckets", buckets.len())),
        "{cell} against {h}"
    );
    // Each bucket is listed with its bounds (open or closed as the API says) and count.
    for b in buckets {
        let rule = b[0].as_u64().unwrap();
        let left = if rule == 1 || rule == 3 { '[' } else { '(' };
        let right = if rule == 0 || rule == 3 { ']' } else { ')' };
        let shown = format!(
            "{left}{}, {}{right}{}",
            b[1].as_str().unwrap(),
            b[2].as_str().unwrap(),
            b[3].as_str().unwrap()
        );
        assert!(cell.contains(&shown), "{shown} not in {cell}");
    }

    // A native histogram's graph draws its count.
    assert_eq!(
        strings(&got["histogram_graph"]["legend"]),
        [format!(
            "{} (histogram count)",
            series_text(&hist["data"]["result"][0]["metric"])
        )]
    );

    // A range query: a drawn canvas and a legend naming every series the API returns.
    let mut want_legend: Vec<String> = range_want["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| series_text(&s["metric"]))
        .collect();
    want_legend.sort();
    assert_eq!(want_legend.len(), 3, "{range_want}");
    for name in ["range_graph", "range_graph_stacked"] {
        let step = &got[name];
        let canvases = step["canvases"].as_array().unwrap();
        assert!(
            canvases
                .iter()
                .any(|c| c["width"].as_u64() > Some(100) && c["height"].as_u64() > Some(100)),
            "{name}: {step}"
        );
        let mut legend = strings(&step["legend"]);
        legend.sort();
        assert_eq!(legend, want_legend, "{name}");
        assert_eq!(step["errors"], json!([]), "{name}");
    }
    let stats = got["range_graph"]["stats"].as_str().unwrap();
    assert!(stats.contains("Resolution: 7s"), "{stats}");
    // Exemplars (g0.show_exemplars=1, Prometheus's switch): every one the API answers for the
    // graph's window is drawn inside the plot and listed with its trace ID; none without it.
    let want = api(
        &server,
        &format!(
            "/api/v1/query_exemplars?query={}&start={}&end={at}",
            urlencode(rate),
            at - 1800
        ),
    );
    let mut want_ids: Vec<String> = want["data"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["exemplars"].as_array().unwrap().clone())
        .map(|e| {
            format!(
                "{{trace_id=\"{}\"}}",
                e["labels"]["trace_id"].as_str().unwrap()
            )
        })
        .collect();
    want_ids.sort();
    assert!(want_ids.len() >= 10, "{want}");
    let step = &got["range_graph_exemplars"];
    let drawn = step["exemplars"].as_array().unwrap();
    assert_eq!(drawn.len(), want_ids.len(), "{step}");
    let plot = &step["plot"];
    for e in drawn {
        let (x, y) = (e["x"].as_f64().unwrap(), e["y"].as_f64().unwrap());
        // The plot's size is read in whole pixels; a point on its edge may stand a fraction past.
        assert!(
            (-1.0..=plot["width"].as_f64().unwrap() + 1.0).contains(&x)
                && (-1.0..=plot["height"].as_f64().unwrap() + 1.0).contains(&y),
            "exemplar drawn outside the plot: {e} in {plot}"
        );
    }
    let mut listed: Vec<String> = step["exemplarRows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[3].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, want_ids);
    assert_eq!(got["range_graph"]["exemplars"], json!([]));

    // − shortens the range to the next round one, « moves the end back by it.
    let buttons = &got["range_buttons"];
    let utc = |secs: i64| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
        humantime::format_rfc3339_seconds(t)
            .to_string()
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_string()
    };
    let new_end = utc(at - 900);
    assert_eq!(buttons["inputs"]["range"], "15m", "{buttons}");
    assert_eq!(buttons["inputs"]["end"], new_end.as_str(), "{buttons}");
    assert_eq!(
        buttons["window"],
        format!("{} to {new_end} UTC", utc(at - 1800)),
        "{buttons}"
    );
    let url = buttons["url"].as_str().unwrap();
    assert!(
        url.contains("g0.range_input=15m")
            && url.contains(&format!(
                "g0.end_input={}",
                new_end.replace(' ', "+").replace(':', "%3A")
            )),
        "{url}"
    );
    let mut legend = strings(&buttons["legend"]);
    legend.sort();
    assert_eq!(legend, want_legend);

    // Errors: the API's message, and its position marked in the editor.
    for (name, (query, want_error)) in ["error_at_end", "error_inside"]
        .iter()
        .zip([bad_end, bad_mid].iter().zip(&bad_answers))
    {
        let step = &got[*name];
        assert_eq!(strings(&step["errors"]), vec![want_error.clone()], "{name}");
        let col = error_column(want_error);
        // Past the end of the input, the last character is marked.
        let at = col.min(query.len()) - 1;
        let marks = step["marks"].as_array().unwrap();
        assert!(
            marks.iter().any(|m| {
                m["class"].as_str().unwrap().contains("error") && m["text"] == query[at..at + 1]
            }),
            "{name}: no error mark at column {col} of {query:?}: {marks:?}"
        );
        assert_eq!(step["rows"], json!([]), "{name}");
    }

    // An annotation is shown as the API words it, and marked where it points.
    let infos = strings(&info_want["infos"]);
    assert_eq!(infos.len(), 1, "{info_want}");
    assert_eq!(strings(&got["info_annotation"]["infos"]), infos);
    assert!(
        got["info_annotation"]["marks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["class"].as_str().unwrap().contains("info")),
        "{}",
        got["info_annotation"]
    );

    // Format replaces the expression with the server's multi-line form.
    let pretty = api(
        &server,
        &format!("/api/v1/format_query?query={}", urlencode(long_expr)),
    );
    let pretty = pretty["data"]
        .as_str()
        .expect("format_query answers a string");
    assert!(pretty.contains('\n'), "{pretty}");
    assert_eq!(got["format"]["editor"], pretty, "{}", got["format"]);

    // A Prometheus link opens with its expression and tab.
    let link = &got["prometheus_link"];
    assert_eq!(link["editor"], link_expr);
    let link_want = api(
        &server,
        &format!("/api/v1/query?query={}", urlencode(link_expr)),
    );
    let link_rows = link["rows"].as_array().unwrap();
    assert_eq!(link_rows.len(), 1, "{link}");
    assert_eq!(
        strings(&link_rows[0])[0],
        series_text(&link_want["data"]["result"][0]["metric"])
    );
    assert!(
        link["url"].as_str().unwrap().starts_with("/graph?"),
        "{link}"
    );

    // A link with two panels opens both: a table and a graph.
    let panels = got["two_panels"]["panels"].as_array().unwrap();
    assert_eq!(panels.len(), 2, "{}", got["two_panels"]);
    assert_eq!(panels[0]["editor"], gauge);
    assert_eq!(
        panels[0]["rows"].as_array().unwrap().len(),
        1,
        "{}",
        panels[0]
    );
    assert_eq!(panels[1]["editor"], rate);
    let mut legend = strings(&panels[1]["legend"]);
    legend.sort();
    assert_eq!(legend, want_legend);

    // Completion offers the metric names the API lists.
    let completions = strings(&got["completion"]["completions"]);
    assert!(
        completions.iter().any(|c| c == "web_ui_requests_total"),
        "{completions:?}"
    );

    // Label names and values are offered from the API too, and the editor's own parser
    // marks a broken query before it is run.
    let labels = strings(&got["label_completion"]["completions"]);
    assert!(labels.iter().any(|c| c == "instance"), "{labels:?}");
    let mut values = strings(&got["value_completion"]["completions"]);
    values.sort();
    assert_eq!(values, ["a", "b", "c"]);
    assert!(
        got["lint"]["marks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["class"].as_str().unwrap().contains("error")),
        "{}",
        got["lint"]
    );
    assert_eq!(got["lint"]["errors"], json!([]), "nothing was sent");

    // A typed query runs on Enter and the URL then holds it.
    let typed = &got["typed_query"];
    let typed_row = strings(&typed["rows"][0]);
    assert!(
        typed_row[0].starts_with("web_ui_temperature{") && typed_row[1] == "42.5",
        "{typed}"
    );
    assert!(
        typed["url"]
            .as_str()
            .unwrap()
            .contains("g0.expr=web_ui_temperature"),
        "{typed}"
    );

    // The status page shows the build information the API gives.
    let build = api(&server, "/api/v1/status/buildinfo");
    let sections = got["status"]["status"].as_array().unwrap();
    let info = sections
        .iter()
        .find(|s| s["id"] == "buildinfo")
        .unwrap_or_else(|| panic!("{sections:?}"));
    assert!(
        info["rows"]
            .as_array()
            .unwrap()
            .contains(&json!(["version", build["data"]["version"]])),
        "{info}"
    );

    // Flags as given, runtime facts, and the bucket and heads `all` reads, as the API lists them.
    let section = |step: &str, id: &str| -> Vec<Vec<String>> {
        let sections = got[step]["status"].as_array().unwrap();
        let s = sections
            .iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("{step}: no section {id} in {sections:?}"));
        serde_json::from_value(s["rows"].clone()).unwrap()
    };
    let flags = section("status", "flags");
    let data_dir = data.trim_start_matches("--data-dir=");
    assert!(
        flags.contains(&vec!["data-dir".to_string(), data_dir.to_string()]),
        "{flags:?}"
    );
    assert!(
        flags.contains(&vec!["query.timeout".to_string(), "2m".to_string()]),
        "{flags:?}"
    );
    let runtime = section("status", "runtimeinfo");
    assert!(runtime.iter().any(|r| r[0] == "startTime"), "{runtime:?}");
    for (step, srv) in [("status", &server), ("querier_stores", &querier)] {
        let listed = api(srv, "/api/v1/stores");
        let mut want: Vec<(String, String, String)> = Vec::new();
        for (component, stores) in listed["data"].as_object().unwrap() {
            for st in stores.as_array().unwrap() {
                let health = if st["lastError"].is_null() {
                    "UP"
                } else {
                    "DOWN"
                };
                want.push((
                    component.clone(),
                    st["name"].as_str().unwrap().to_string(),
                    health.to_string(),
                ));
            }
        }
        let rows = section(step, "stores");
        let mut shown: Vec<(String, String, String)> = rows[1..]
            .iter()
            .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
            .collect();
        want.sort();
        shown.sort();
        assert_eq!(shown, want, "{step}: {listed}");
        assert!(
            !want.is_empty() && want.iter().all(|w| w.2 == "UP"),
            "{step}: {listed}"
        );
    }
    let endpoint = format!("127.0.0.1:{}", server.grpc_port);
    assert!(
        section("querier_stores", "stores")
            .iter()
            .any(|r| r[1] == endpoint && r[2] == "UP"),
        "{}",
        got["querier_stores"]
    );

    // The querier's query page shows what its API answers.
    let want_rows: Vec<Vec<String>> = querier_want["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            vec![
                series_text(&s["metric"]),
                s["value"][1].as_str().unwrap().to_string(),
            ]
        })
        .collect();
    assert_eq!(want_rows.len(), 1, "{querier_want}");
    let rows: Vec<Vec<String>> =
        serde_json::from_value(got["querier_table"]["rows"].clone()).unwrap();
    assert_eq!(rows, want_rows);

    // The bucket's blocks: one table row and one box on the time line each, as listed.
    let listed = api(&server, "/api/v1/blocks");
    let mut want_ids: Vec<String> = listed["data"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ulid"].as_str().unwrap().to_string())
        .collect();
    want_ids.sort();
    let mut uploaded: Vec<String> = uploaded.iter().map(|u| u.to_string()).collect();
    uploaded.sort();
    assert_eq!(want_ids, uploaded, "{listed}");
    let rows = section("status", "blocks");
    let mut shown: Vec<String> = rows[1..].iter().map(|r| r[0].clone()).collect();
    shown.sort();
    assert_eq!(shown, want_ids);
    for r in &rows[1..] {
        assert_eq!(r[3], "2h", "{r:?}");
        assert_eq!(r[11], "{cluster=\"web-ui\"}", "{r:?}");
        // Served by `all`'s store, never compacted, too short for a 5m block.
        assert_eq!(r[12], "yes", "{r:?}");
        assert_eq!(r[13], "not compacted yet", "{r:?}");
        assert!(r[14].starts_with("not yet: shorter than the 40h"), "{r:?}");
    }
    for b in listed["data"]["blocks"].as_array().unwrap() {
        assert_eq!(b["gauntlet"]["served"], true, "{b}");
        // promtool's meta.json lists no files: the size is what the bucket holds.
        let dir = bucket.join(b["ulid"].as_str().unwrap());
        assert_eq!(b["gauntlet"]["sizeBytes"], json!(dir_bytes(&dir)), "{b}");
    }
    for r in &rows[1..] {
        assert!(
            r[10].ends_with("KiB") || r[10].ends_with("MiB"),
            "size {r:?}"
        );
    }

    // The receive tenants `all` holds, with the series the API counts for each.
    let tenants = api(&server, "/api/v1/status/tenants");
    let listed: Vec<(String, String)> = tenants["data"]["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["series"].to_string(),
            )
        })
        .collect();
    assert!(!listed.is_empty(), "{tenants}");
    let rows = section("status", "tenants");
    let shown: Vec<(String, String)> = rows[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    assert_eq!(shown, listed, "{tenants}");
    let head_series = api(
        &server,
        &format!(
            "/api/v1/query?query={}&time={}",
            urlencode("count({tenant_id=\"default-tenant\"})"),
            end / 1000
        ),
    );
    assert_eq!(
        head_series["data"]["result"][0]["value"][1]
            .as_str()
            .unwrap(),
        listed[0].1,
        "{head_series}"
    );

    // Compaction is off: the compactor section says so, idle with no pass.
    let compactor = section("status", "compactor");
    assert!(
        compactor.contains(&vec!["Step".to_string(), "idle".to_string()]),
        "{compactor:?}"
    );
    let mut boxes = strings(&got["status"]["timeline"]);
    boxes.sort();
    assert_eq!(boxes, want_ids);

    for step in got.keys() {
        assert!(
            artifacts().join(format!("{step}.png")).is_file(),
            "screenshot of {step}"
        );
    }
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// The pixels of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes), as rows of
/// RGB triples.
fn png_rgb(bytes: &[u8]) -> Vec<Vec<[u8; 3]>> {
    use std::io::Read;
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut width, mut height, mut channels) = (0usize, 0usize, 0usize);
    let mut idat = Vec::new();
    let mut at = 8;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = &bytes[at + 8..at + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                height = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                assert_eq!(data[8], 8, "bit depth");
                channels = match data[9] {
                    2 => 3,
                    6 => 4,
                    other => panic!("PNG colour type {other}"),
                };
                assert_eq!(data[12], 0, "interlaced PNG");
            }
            b"IDAT" => idat.extend_from_slice(data),
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .expect("PNG image data inflates");
    let stride = width * channels;
    assert_eq!(raw.len(), height * (stride + 1), "PNG data size");
    let mut prev = vec![0u8; stride];
    let mut rows = Vec::with_capacity(height);
    for y in 0..height {
        let filter = raw[y * (stride + 1)];
        let mut line = raw[y * (stride + 1) + 1..(y + 1) * (stride + 1)].to_vec();
        for i in 0..stride {
            let a = if i >= channels { line[i - channels] } else { 0 };
            let b = prev[i];
            let c = if i >= channels { prev[i - channels] } else { 0 };
            let add = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                4 => {
                    let p = i16::from(a) + i16::from(b) - i16::from(c);
                    let (pa, pb, pc) = (
                        (p - i16::from(a)).abs(),
                        (p - i16::from(b)).abs(),
                        (p - i16::from(c)).abs(),
                    );
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                other => panic!("PNG filter {other}"),
            };
            line[i] = line[i].wrapping_add(add);
        }
        rows.push(line.chunks(channels).map(|p| [p[0], p[1], p[2]]).collect());
        prev = line;
    }
    rows
}

/// Takes a screenshot of `url` with Chromium's own `--screenshot`, in a window of
/// `width`x`height` CSS px, once the page's requests have been answered; returns its path.
fn cli_screenshot(browser: &Path, url: &str, width: u32, height: u32, name: &str) -> PathBuf {
    let profile = tempfile::tempdir().unwrap();
    let shot = artifacts().join(format!("{name}.png"));
    std::fs::create_dir_all(artifacts()).unwrap();
    let _ = std::fs::remove_file(&shot);
    let out = Command::new(require("timeout"))
        .arg("60")
        .arg(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            // The page draws after its API calls return; virtual time runs until they have.
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url)
        .output()
        .expect("running chromium");
    assert!(
        shot.is_file(),
        "chromium wrote no screenshot of {url} ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    shot
}

/// Pixels in rows `rows` of `png` dark enough to be text, lines or boxes drawn on the page
/// (the page's background and the sections' white are not).
fn ink(png: &Path, rows: std::ops::Range<usize>) -> usize {
    let pixels = png_rgb(&std::fs::read(png).unwrap());
    pixels[rows]
        .iter()
        .flatten()
        .filter(|p| p.iter().any(|&c| c < 200))
        .count()
}

/// Minutes since midnight of a time axis label: `HH:MM`, or a date (`Jan 2`) where a day begins.
fn label_minutes(label: &str) -> Option<u32> {
    if let Some((h, m)) = label.split_once(':') {
        return Some(h.parse::<u32>().ok()? * 60 + m.parse::<u32>().ok()?);
    }
    let (month, day) = label.split_once(' ')?;
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    (months.contains(&month) && day.parse::<u32>().is_ok()).then_some(0)
}

#[test]
fn graph_axis_legend_tables_and_section_pages_fit_1400_and_800_px_windows() {
    let Some(browser) = chromium() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("data");
    std::fs::create_dir_all(&bucket).unwrap();
    let uploaded = crate::common::bucket::upload(
        &crate::common::bucket::promtool_blocks(tmp.path(), 1, 4),
        &bucket,
        &[("cluster", "web-ui-layout"), ("replica", "a")],
    );
    assert_eq!(uploaded.len(), 2);
    let data = format!("--data-dir={}", bucket.display());
    let server = GauntletServer::start(&["all", &data, "--compact.interval=0s"], "/-/ready");
    let port = server.http_port;
    let end = now_ms() / 1000 * 1000 - 30_000;
    write_data(port, end);
    let at = end / 1000;
    let rate = "rate(web_ui_requests_total[5m])";
    let range_want = api(
        &server,
        &format!(
            "/api/v1/query_range?query={}&start={}&end={at}&step=7",
            urlencode(rate),
            at - 1800
        ),
    );
    let graph = |range: &str, step: &str| {
        format!(
            "/query?g0.expr={}&g0.tab=0&g0.range_input={range}&g0.end_input={at}{step}",
            urlencode(rate)
        )
    };

    let mut steps = Vec::new();
    for width in [1400, 800] {
        let viewport = json!({"width": width, "height": 1000});
        steps.push(
            json!({"name": format!("axis_6h_{width}"), "viewport": viewport,
            "path": graph("6h", ""), "wait": ".graph canvas"}),
        );
        steps.push(
            json!({"name": format!("legend_{width}"), "viewport": viewport,
            "path": graph("30m", "&g0.step_input=7"), "wait": ".graph canvas"}),
        );
        for page in ["blocks", "stores", "status"] {
            let wait = if page == "status" {
                "section#blocks".to_string()
            } else {
                format!("section#{page}")
            };
            steps.push(
                json!({"name": format!("{page}_{width}"), "viewport": viewport,
                "path": format!("/{page}"), "wait": wait}),
            );
        }
    }
    let got = drive(&browser, port, &json!(steps));

    let mut last_step = 0;
    for width in [1400, 800] {
        // The time axis over 6 h: one round step between ticks, labels as wide apart as the
        // step allows and never overlapping, at least 80 px from centre to centre.
        let name = format!("axis_6h_{width}");
        let ticks = got[&name]["ticks"].as_array().unwrap();
        assert!(ticks.len() >= 3, "{name}: {ticks:?}");
        let minutes: Vec<u32> = ticks
            .iter()
            .map(|t| {
                let label = t["label"].as_str().unwrap();
                label_minutes(label).unwrap_or_else(|| panic!("{name}: label {label:?}"))
            })
            .collect();
        let step = (minutes[1] + 1440 - minutes[0]) % 1440;
        assert!(
            [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720].contains(&step),
            "{name}: a step of {step} min: {ticks:?}"
        );
        assert_eq!(
            minutes[0] % step,
            0,
            "{name}: ticks on round times: {ticks:?}"
        );
        for pair in ticks.windows(2).zip(minutes.windows(2)) {
            let ([a, b], [ma, mb]) = pair else {
                unreachable!()
            };
            assert_eq!((mb + 1440 - ma) % 1440, step, "{name}: {ticks:?}");
            let (ca, cb) = (a["center"].as_f64().unwrap(), b["center"].as_f64().unwrap());
            let (wa, wb) = (a["width"].as_f64().unwrap(), b["width"].as_f64().unwrap());
            assert!(
                wa > 10.0 && wb > 10.0,
                "{name}: label widths measured: {ticks:?}"
            );
            assert!(
                cb - ca >= 80.0,
                "{name}: ticks {a} and {b} closer than 80 px"
            );
            assert!(
                ca + wa / 2.0 + 8.0 <= cb - wb / 2.0,
                "{name}: labels {a} and {b} overlap or touch"
            );
        }
        // A narrower plot takes a step at least as long.
        assert!(
            step >= last_step,
            "{name}: {step} min after {last_step} min"
        );
        last_step = step;

        // Away from the cursor, the legend shows each series' last value, as the API has it.
        let name = format!("legend_{width}");
        let labels = strings(&got[&name]["legend"]);
        let values = strings(&got[&name]["legendValues"]);
        assert_eq!(labels.len(), 3, "{name}: {}", got[&name]);
        assert_eq!(values.len(), labels.len(), "{name}: {}", got[&name]);
        for s in range_want["data"]["result"].as_array().unwrap() {
            let label = series_text(&s["metric"]);
            let i = labels
                .iter()
                .position(|l| *l == label)
                .unwrap_or_else(|| panic!("{name}: {label} not in {labels:?}"));
            let want: f64 = s["values"].as_array().unwrap().last().unwrap()[1]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let shown: f64 = values[i]
                .parse()
                .unwrap_or_else(|_| panic!("{name}: legend value {:?} of {label}", values[i]));
            assert_eq!(shown, want, "{name}: {label}");
        }

        // Section pages open at the top, showing their section alone; the whole status page
        // too. Wide tables scroll inside their section, which stays inside the window.
        for page in ["blocks", "stores", "status"] {
            let name = format!("{page}_{width}");
            let step = &got[&name];
            let layout = &step["layout"];
            assert_eq!(layout["scrollY"], 0, "{name}: {layout}");
            assert_eq!(layout["scrollX"], 0, "{name}: {layout}");
            assert!(
                layout["scrollWidth"].as_f64() <= layout["clientWidth"].as_f64(),
                "{name}: the page is wider than the window: {layout}"
            );
            let sections = step["status"].as_array().unwrap();
            let ids: Vec<&str> = sections.iter().map(|s| s["id"].as_str().unwrap()).collect();
            if page == "status" {
                assert!(
                    ids.contains(&"blocks") && ids.contains(&"flags"),
                    "{name}: {ids:?}"
                );
            } else {
                assert_eq!(ids, [page], "{name}");
                let top = sections[0]["box"]["top"].as_f64().unwrap();
                assert!(
                    (0.0..200.0).contains(&top),
                    "{name}: the section starts {top} px down the window"
                );
            }
            let inner = layout["innerWidth"].as_f64().unwrap();
            for s in sections {
                let right = s["box"]["right"].as_f64().unwrap();
                assert!(
                    right <= inner,
                    "{name}: section {} ends at {right} px",
                    s["id"]
                );
                for t in s["tables"].as_array().unwrap() {
                    assert_eq!(t["holder"], "table-scroll", "{name}: {t}");
                    assert_eq!(t["holderOverflowX"], "auto", "{name}: {t}");
                    assert!(
                        t["holderBox"]["right"].as_f64().unwrap() <= right,
                        "{name}: a table's box passes its section's edge: {t}"
                    );
                }
            }
        }
        // The blocks table is wider than 800 px: it scrolls inside its box.
        let blocks = &got[&format!("blocks_{width}")]["status"][0]["tables"];
        let table = blocks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["class"].as_str().unwrap().contains("blocks"))
            .unwrap_or_else(|| panic!("no blocks table: {blocks}"));
        if width == 800 {
            assert!(
                table["holderScrollWidth"].as_f64() > table["holderClientWidth"].as_f64(),
                "{table}"
            );
        }
    }

    // Chromium's own screenshot of a section page (taken as a person does, `chromium
    // --screenshot`) shows the section near the top, not a blank page or a blank band.
    for page in ["blocks", "stores"] {
        let shot = cli_screenshot(
            &browser,
            &format!("http://127.0.0.1:{port}/{page}"),
            1400,
            1000,
            &format!("cli_{page}_1400"),
        );
        let top = ink(&shot, 40..300);
        assert!(
            top > 500,
            "{page}: {top} drawn pixels between 40 and 300 px down {}",
            shot.display()
        );
    }
}
