//! Talking to a StoreAPI server through the Python grpcio client (`tests/python/store_client.py`)
//! and comparing what it returns with `promtool tsdb dump`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use gauntlet_engine::chunk::{SampleBatch, decode_xor_into};
use gauntlet_engine::labels::{MatchType, Matcher};
use serde_json::Value;

use super::{repo_root, require};

/// Series (label name → value) → samples `(ts ms, value)`.
pub type Dump = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

/// Runs a JSON list of calls through the Python client against `127.0.0.1:grpc_port`.
pub fn python_calls(grpc_port: u16, calls: &Value) -> Vec<Value> {
    let mut child = Command::new(require("python3"))
        .arg(repo_root().join("tests/python/store_client.py"))
        .arg(repo_root().join("proto/proto"))
        .arg(format!("127.0.0.1:{grpc_port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(calls.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python client failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Bytes from hex text.
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Parses `promtool tsdb dump` output (label values without quotes or backslashes), adding
/// `ext` labels to every series.
pub fn parse_dump(text: &[u8], ext: &[(&str, &str)]) -> Dump {
    let mut out = Dump::new();
    for line in String::from_utf8_lossy(text).lines() {
        let close = line.rfind("} ").expect("dump line");
        let mut rest = line[close + 2..].split(' ');
        let v: f64 = rest.next().unwrap().parse().unwrap();
        let t: i64 = rest.next().unwrap().parse().unwrap();
        let mut labels = BTreeMap::new();
        for pair in line[1..close].split(", ") {
            let (n, v) = pair.split_once('=').unwrap();
            labels.insert(n.to_string(), v.trim_matches('"').to_string());
        }
        for (n, v) in ext {
            labels.insert(n.to_string(), v.to_string());
        }
        out.entry(labels).or_default().push((t, v));
    }
    out
}

/// A matcher from the client's `[type, name, value]` form.
pub fn matcher(m: &Value) -> Matcher {
    let typ = match m[0].as_i64().unwrap() {
        0 => MatchType::Equal,
        1 => MatchType::NotEqual,
        2 => MatchType::Regexp,
        _ => MatchType::NotRegexp,
    };
    Matcher::new(typ, m[1].as_str().unwrap(), m[2].as_str().unwrap()).unwrap()
}

/// What the dump says a Series call with `matchers` over `[mint, maxt]` must return.
pub fn expected(dump: &Dump, matchers: &[Matcher], mint: i64, maxt: i64) -> Dump {
    dump.iter()
        .filter(|(l, _)| {
            matchers
                .iter()
                .all(|m| m.matches(l.get(&m.name).map_or("", String::as_str)))
        })
        .filter_map(|(l, s)| {
            let s: Vec<(i64, f64)> = s
                .iter()
                .copied()
                .filter(|(t, _)| *t >= mint && *t <= maxt)
                .collect();
            (!s.is_empty()).then(|| (l.clone(), s))
        })
        .collect()
}

/// Decodes a Series result of raw chunks into the dump's shape, checking series order, chunk
/// sizes and chunk time bounds; samples are cut to `[mint, maxt]`.
pub fn decoded(res: &Value, mint: i64, maxt: i64) -> Dump {
    assert_eq!(res["ok"], true, "{res}");
    let mut out = Dump::new();
    let mut prev: Option<Vec<(String, String)>> = None;
    for s in res["series"].as_array().unwrap() {
        let labels: BTreeMap<String, String> = s["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let key: Vec<(String, String)> = labels.clone().into_iter().collect();
        if let Some(p) = &prev {
            assert!(p < &key, "series out of order: {p:?} then {key:?}");
        }
        prev = Some(key);
        let mut b = SampleBatch::new();
        for c in s["chunks"].as_array().unwrap() {
            assert_eq!(c["type"], 0, "XOR");
            let n = decode_xor_into(&hex(c["data"].as_str().unwrap()), &mut b).unwrap();
            assert!(n <= 120, "chunk of {n} samples");
            assert_eq!(c["min_time"].as_i64().unwrap(), b.ts[b.ts.len() - n]);
            assert_eq!(c["max_time"].as_i64().unwrap(), *b.ts.last().unwrap());
        }
        b.truncate_to_range(mint, maxt);
        out.insert(labels, b.iter().collect());
    }
    out
}

/// A Series call for the client: `[type, name, value]` matchers over `[mint, maxt]`.
pub fn series_call(matchers: &Value, mint: i64, maxt: i64) -> Value {
    serde_json::json!({"method": "Series", "min_time": mint, "max_time": maxt, "matchers": matchers})
}

/// Asserts two dumps are equal (NaN equal to NaN).
pub fn assert_same_series(what: &str, got: &Dump, want: &Dump) {
    assert_eq!(got.len(), want.len(), "{what}: series count");
    for ((gl, gs), (wl, ws)) in got.iter().zip(want) {
        assert_eq!(gl, wl, "{what}");
        assert_eq!(gs.len(), ws.len(), "{what} {gl:?}: sample count");
        for (g, w) in gs.iter().zip(ws) {
            assert!(
                g.0 == w.0 && (g.1 == w.1 || (g.1.is_nan() && w.1.is_nan())),
                "{what} {gl:?}: {g:?} != {w:?}"
            );
        }
    }
}

/// A matrix answer of the HTTP API as a dump.
pub fn matrix(body: &[u8]) -> Dump {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let mut out = Dump::new();
    for r in v["data"]["result"].as_array().unwrap() {
        let labels = r["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let samples = r["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let t = (x[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, x[1].as_str().unwrap().parse::<f64>().unwrap())
            })
            .collect();
        out.insert(labels, samples);
    }
    out
}
