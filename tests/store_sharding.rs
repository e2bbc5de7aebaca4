//! Store sharding: Prometheus relabel rules (every action, checked against Prometheus 2.42
//! itself), and stores sharing one bucket by `hashmod` over `__block_id` and by time window,
//! behind a querier: every sample answered once, every block loaded by one shard, and queries
//! sent only to the shards whose advertised range they touch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::bucket::{block_dirs, promtool_blocks};
use crate::common::{
    GauntletServer, Prometheus, copy_dir, filesystem_objstore, gauntlet, urlencode,
};
use gauntlet_engine::block::{BlockMeta, ThanosMeta};
use gauntlet_engine::chunk::{SampleBatch, decode_xor_into};
use gauntlet_engine::labels::Labels;
use gauntlet_engine::relabel::{self, hashmod, parse_rules, process};
use gauntlet_proto::thanos;
use serde_json::Value;
use ulid::Ulid;

/// 2025-01-01T00:00:00Z, where the fixture blocks start, s.
const T0: i64 = 1_735_689_600;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

/// Runs the YAML rules over `input`.
fn run(yaml: &str, input: &[(&str, &str)]) -> Option<Labels> {
    let rules = parse_rules(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
    process(&labels(input), &rules)
}

#[test]
fn replace_uses_groups_templates_and_defaults() {
    let abc = [("a", "foo"), ("b", "bar"), ("c", "baz")];
    let got = run(
        "- source_labels: [a]\n  regex: f(.*)\n  target_label: d\n  replacement: ch${1}-ch${1}\n",
        &abc,
    );
    let mut want = abc.to_vec();
    want.push(("d", "choo-choo"));
    assert_eq!(got, Some(labels(&want)));
    // Two source labels joined by the default separator; a second rule sees the first's result.
    let got = run(
        "- source_labels: [a, b]\n  regex: f(.*);(.*)r\n  target_label: a\n  replacement: b${1}${2}m\n\
         - source_labels: [c, a]\n  regex: (b).*b(.*)ba(.*)\n  target_label: d\n  replacement: $1$2$2$3\n",
        &abc,
    );
    assert_eq!(
        got,
        Some(labels(&[
            ("a", "boobam"),
            ("b", "bar"),
            ("c", "baz"),
            ("d", "boooom")
        ]))
    );
    // The default regex `(.*)` and replacement `$1`: copy a label; the match is anchored.
    assert_eq!(
        run("- source_labels: [a]\n  target_label: z\n", &[("a", "x")]),
        Some(labels(&[("a", "x"), ("z", "x")]))
    );
    assert_eq!(
        run(
            "- source_labels: [a]\n  regex: o\n  target_label: z\n  replacement: hit\n",
            &[("a", "foo")]
        ),
        Some(labels(&[("a", "foo")])),
        "an unanchored match must not count"
    );
    // A target built from groups; an empty result removes the label; an invalid target name
    // leaves the set alone.
    let re = "some-([^-]+)-([^,]+)";
    assert_eq!(
        run(
            &format!(
                "- source_labels: [a]\n  regex: {re}\n  replacement: ${{2}}\n  target_label: ${{1}}\n"
            ),
            &[("a", "some-name-value")]
        ),
        Some(labels(&[("a", "some-name-value"), ("name", "value")]))
    );
    assert_eq!(
        run(
            "- source_labels: [a]\n  regex: (x)?.*\n  target_label: a\n  replacement: $1\n",
            &[("a", "foo"), ("b", "1")]
        ),
        Some(labels(&[("b", "1")]))
    );
    assert_eq!(
        run(
            &format!(
                "- source_labels: [a]\n  regex: {re}\n  replacement: ${{1}}\n  target_label: ${{3}}\n"
            ),
            &[("a", "some-name-0")]
        ),
        Some(labels(&[("a", "some-name-0")]))
    );
    // A missing source label reads as empty.
    assert_eq!(
        run(
            "- source_labels: [missing]\n  target_label: t\n  replacement: set\n",
            &[("a", "1")]
        ),
        Some(labels(&[("a", "1"), ("t", "set")]))
    );
}

#[test]
fn keep_drop_and_their_equal_forms_decide_the_whole_set() {
    let a = [("a", "foo")];
    assert_eq!(
        run("- source_labels: [a]\n  regex: .*o.*\n  action: drop\n", &a),
        None
    );
    assert_eq!(
        run("- source_labels: [a]\n  regex: f|o\n  action: drop\n", &a),
        Some(labels(&a))
    );
    assert_eq!(
        run(
            "- source_labels: [a]\n  regex: no-match\n  action: keep\n",
            &a
        ),
        None
    );
    assert_eq!(
        run("- source_labels: [a]\n  regex: f.*\n  action: KEEP\n", &a),
        Some(labels(&a)),
        "actions are case-insensitive"
    );
    let ports = [
        ("__tmp_port", "1234"),
        ("__port1", "1234"),
        ("__port2", "5678"),
    ];
    let rule = |action: &str, target: &str| {
        format!("- source_labels: [__tmp_port]\n  action: {action}\n  target_label: {target}\n")
    };
    assert_eq!(
        run(&rule("keepequal", "__port1"), &ports),
        Some(labels(&ports))
    );
    assert_eq!(run(&rule("keepequal", "__port2"), &ports), None);
    assert_eq!(run(&rule("dropequal", "__port1"), &ports), None);
    assert_eq!(
        run(&rule("dropequal", "__port2"), &ports),
        Some(labels(&ports))
    );
}

#[test]
fn hashmod_matches_prometheus_vectors() {
    // Values from Prometheus's own relabel tests.
    assert_eq!(hashmod("baz", 1000), 976);
    assert_eq!(hashmod("foo\nbar", 1000), 734);
    assert_eq!(
        run(
            "- source_labels: [c]\n  target_label: d\n  action: hashmod\n  modulus: 1000\n",
            &[("c", "baz")]
        ),
        Some(labels(&[("c", "baz"), ("d", "976")]))
    );
}

#[test]
fn label_actions_rename_drop_keep_and_change_case() {
    let b = [("a", "foo"), ("b1", "bar"), ("b2", "baz")];
    assert_eq!(
        run(
            "- regex: (b.*)\n  replacement: bar_${1}\n  action: labelmap\n",
            &b
        ),
        Some(labels(&[
            ("a", "foo"),
            ("b1", "bar"),
            ("b2", "baz"),
            ("bar_b1", "bar"),
            ("bar_b2", "baz")
        ]))
    );
    assert_eq!(
        run("- regex: (b.*)\n  action: labelkeep\n", &b),
        Some(labels(&[("b1", "bar"), ("b2", "baz")]))
    );
    assert_eq!(
        run("- regex: (b.*)\n  action: labeldrop\n", &b),
        Some(labels(&[("a", "foo")]))
    );
    assert_eq!(
        run(
            "- source_labels: [foo]\n  action: uppercase\n  target_label: up\n\
             - source_labels: [foo]\n  action: lowercase\n  target_label: low\n",
            &[("foo", "bAr123Foo")]
        ),
        Some(labels(&[
            ("foo", "bAr123Foo"),
            ("low", "bar123foo"),
            ("up", "BAR123FOO")
        ]))
    );
}

/// Parses `yaml` expecting an error; returns its text.
fn refused(yaml: &str) -> String {
    match parse_rules(yaml) {
        Ok(r) => panic!("{yaml:?} was accepted: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_rules_are_refused_with_the_rule_and_its_line() {
    let e = refused("- action: keep\n  source_labels: [a]\n- action: hashmod\n  target_label: s\n");
    assert!(
        e.starts_with("line 3: relabel rule 2:") && e.contains("requires non-zero modulus"),
        "{e}"
    );
    let e = refused("- action: frobnicate\n");
    assert!(e.contains(r#"unknown relabel action "frobnicate""#), "{e}");
    let e = refused("- action: keep\n  regex: a(b\n");
    assert!(e.contains("missing closing )"), "{e}");
    let e = refused("- action: keep\n  regexp: ab\n");
    assert!(
        e.contains("line 2") && e.contains("unknown field `regexp`"),
        "{e}"
    );
    let e = refused("- action: hashmod\n  target_label: s\n  modulus: three\n");
    assert!(e.contains("line 3") && e.contains("(modulus)"), "{e}");
    let e = refused("- action: replace\n  source_labels: [a]\n");
    assert!(e.contains("requires 'target_label' value"), "{e}");
    let e = refused("- action: replace\n  target_label: 0${1}\n");
    assert!(e.contains("is invalid 'target_label'"), "{e}");
    let e = refused("- action: lowercase\n  target_label: x\n  replacement: y\n");
    assert!(e.contains("'replacement' can not be set"), "{e}");
    let e = refused("- action: keepequal\n  target_label: x\n  regex: y\n");
    assert!(e.contains("requires only 'source_labels'"), "{e}");
    let e = refused("- action: labeldrop\n  regex: x\n  target_label: y\n");
    assert!(e.contains("requires only 'regex'"), "{e}");
    let e = refused("- source_labels: [bad-name]\n  target_label: x\n");
    assert!(e.contains("not a valid label name"), "{e}");
    let e = refused("action: keep\n");
    assert!(e.contains("invalid type"), "{e}");
    assert!(parse_rules("").unwrap().is_empty());
}

/// What Prometheus does with a target's labels after relabelling: labels starting with `__`
/// are removed and `instance` defaults to the address.
fn as_target(l: &Labels) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = l
        .iter()
        .filter(|l| !l.name.starts_with("__"))
        .map(|l| (l.name.to_string(), l.value.to_string()))
        .collect();
    if let Some(a) = l.get("__address__") {
        out.entry("instance".into())
            .or_insert_with(|| a.to_string());
    }
    out
}

fn json_labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// A scrape target's own labels.
type Target = Vec<(String, String)>;

/// Every action, run by Prometheus 2.42 as target relabelling (its `/api/v1/targets` shows each
/// target's labels before and after) and by Gauntlet over the same input: the same kept
/// targets with the same labels, the same dropped ones. The `hashmod` job shards ULIDs as the
/// stores below do.
#[test]
fn relabelling_agrees_with_prometheus() {
    let Some(bin) =
        crate::common::require_or_skip("prometheus", "relabelling_agrees_with_prometheus")
    else {
        return;
    };
    // ULIDs spread over the three shards by Gauntlet's hash; Prometheus's labels must agree.
    let ulids: Vec<String> = (0..24u64)
        .map(|i| {
            loop {
                let id = Ulid::new().to_string();
                if hashmod(&id, 3) == i % 3 {
                    break id;
                }
            }
        })
        .collect();
    let mut jobs: Vec<(String, String, Vec<Target>)> = Vec::new();
    let mut job = |name: &str, rules: &str, targets: Vec<Vec<(&str, &str)>>| {
        jobs.push((
            name.to_string(),
            rules.to_string(),
            targets
                .into_iter()
                .map(|t| {
                    t.into_iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                })
                .collect(),
        ));
    };
    job(
        "hashmod",
        "- source_labels: [block]\n  target_label: shard\n  action: hashmod\n  modulus: 3\n\
         - source_labels: [block, c]\n  target_label: wide\n  action: hashmod\n  modulus: 1000003\n",
        ulids
            .iter()
            .map(|u| vec![("block", u.as_str()), ("c", "baz")])
            .chain([vec![("block", "baz")], vec![("block", "")]])
            .collect(),
    );
    job(
        "replace",
        "- source_labels: [a, b]\n  regex: f(.*);(.*)r\n  target_label: a\n  replacement: b${1}${2}m\n\
         - source_labels: [c]\n  regex: some-([^-]+)-([^,]+)\n  target_label: ${1}\n  replacement: $2\n\
         - source_labels: [d]\n  regex: (x)?.*\n  target_label: d\n\
         - source_labels: [c]\n  regex: o\n  target_label: unanchored\n  replacement: hit\n",
        vec![
            vec![
                ("a", "foo"),
                ("b", "bar"),
                ("c", "some-name-value"),
                ("d", "gone"),
            ],
            vec![("a", "nope"), ("b", "bar"), ("c", "o"), ("d", "x")],
        ],
    );
    job(
        "keepdrop",
        "- source_labels: [a]\n  regex: k.*\n  action: keep\n\
         - source_labels: [b]\n  regex: d|e\n  action: drop\n",
        vec![
            vec![("a", "keep"), ("b", "stay")],
            vec![("a", "other"), ("b", "stay")],
            vec![("a", "keep"), ("b", "d")],
        ],
    );
    job(
        "equal",
        "- source_labels: [x]\n  target_label: y\n  action: keepequal\n\
         - source_labels: [x]\n  target_label: z\n  action: dropequal\n",
        vec![
            vec![("x", "1"), ("y", "1"), ("z", "2")],
            vec![("x", "1"), ("y", "2"), ("z", "2")],
            vec![("x", "1"), ("y", "1"), ("z", "1")],
        ],
    );
    job(
        "labels",
        "- regex: (b.*)\n  replacement: bar_${1}\n  action: labelmap\n\
         - regex: b2\n  action: labeldrop\n\
         - regex: (__.*|job|a|b1|bar_.*|low|up)\n  action: labelkeep\n\
         - source_labels: [a]\n  target_label: up\n  action: uppercase\n\
         - source_labels: [a]\n  target_label: low\n  action: lowercase\n",
        vec![vec![
            ("a", "MiXeD"),
            ("b1", "bar"),
            ("b2", "baz"),
            ("zz", "gone"),
        ]],
    );
    let mut cfg = String::from("global:\n  scrape_interval: 1h\nscrape_configs:\n");
    let mut port = 1;
    // What Prometheus relabels for each target (by address): its labels plus the ones
    // discovery and the scrape configuration add. (Its `discoveredLabels` cannot stand in: the
    // version tested shows them after some rules ran.)
    let mut inputs: BTreeMap<String, Labels> = BTreeMap::new();
    for (name, rules, targets) in &jobs {
        cfg.push_str(&format!("  - job_name: {name}\n    static_configs:\n"));
        for t in targets {
            let ls: Vec<String> = t.iter().map(|(k, v)| format!("{k}: {v:?}")).collect();
            cfg.push_str(&format!(
                "      - targets: ['127.0.0.1:{port}']\n        labels: {{{}}}\n",
                ls.join(", ")
            ));
            let addr = format!("127.0.0.1:{port}");
            let mut l: Vec<(String, String)> = t.clone();
            for (k, v) in [
                ("__address__", addr.as_str()),
                ("__metrics_path__", "/metrics"),
                ("__scheme__", "http"),
                ("__scrape_interval__", "1h"),
                ("__scrape_timeout__", "10s"),
                ("job", name.as_str()),
            ] {
                l.push((k.to_string(), v.to_string()));
            }
            inputs.insert(addr, Labels::from_pairs(l));
            port += 1;
        }
        cfg.push_str("    relabel_configs:\n");
        for line in rules.lines() {
            cfg.push_str(&format!("      {line}\n"));
        }
    }
    let total: usize = jobs.iter().map(|j| j.2.len()).sum();
    let prom = Prometheus::start_with_config(&bin, |_| cfg.clone(), &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let targets = loop {
        let v = prom.get("/api/v1/targets?state=any");
        let n = v["data"]["activeTargets"].as_array().unwrap().len()
            + v["data"]["droppedTargets"].as_array().unwrap().len();
        if n >= total {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus listed {n} of {total} targets in 60 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let rules: BTreeMap<String, Vec<relabel::Rule>> = jobs
        .iter()
        .map(|(n, r, _)| (n.clone(), parse_rules(r).unwrap()))
        .collect();
    let mut checked = 0;
    let mut shards = BTreeSet::new();
    for t in targets["data"]["activeTargets"].as_array().unwrap() {
        let input = &inputs[t["labels"]["instance"].as_str().unwrap()];
        let job = input.get("job").unwrap();
        let got = process(input, &rules[job])
            .unwrap_or_else(|| panic!("{job}: gauntlet dropped {input:?}, prometheus kept it"));
        assert_eq!(
            as_target(&got),
            json_labels(&t["labels"]),
            "{job}: {input:?}"
        );
        if job == "hashmod" {
            shards.insert(t["labels"]["shard"].as_str().unwrap().to_string());
        }
        checked += 1;
    }
    for t in targets["data"]["droppedTargets"].as_array().unwrap() {
        let input = &inputs[t["discoveredLabels"]["__address__"].as_str().unwrap()];
        let job = input.get("job").unwrap();
        assert_eq!(
            process(input, &rules[job]),
            None,
            "{job}: prometheus dropped {input:?}, gauntlet kept it"
        );
        checked += 1;
    }
    assert_eq!(checked, total);
    assert_eq!(shards.len(), 3, "24 ULIDs fall in every shard: {shards:?}");
}

/// The promtool fixture blocks (9 × 2 h from [`T0`]) uploaded to `bucket` with external label
/// `cluster="eu"`, block `i` under a ULID whose `hashmod(ULID, 3)` is `i % 3`, so every hash
/// shard holds three blocks. Returns the ULIDs in time order.
fn sharded_bucket(tmp: &Path, bucket: &Path) -> Vec<Ulid> {
    let src = promtool_blocks(tmp, 1, 18);
    let mut ids = Vec::new();
    for (i, b) in block_dirs(&src).into_iter().enumerate() {
        let mut meta = BlockMeta::read(&b).unwrap();
        let id = loop {
            let id = Ulid::new();
            if hashmod(&id.to_string(), 3) == i as u64 % 3 {
                break id;
            }
        };
        meta.ulid = id;
        meta.max_time = meta.min_time + 2 * 3_600_000;
        meta.compaction.sources = vec![id];
        meta.thanos = Some(ThanosMeta {
            version: 1,
            labels: [("cluster".to_string(), "eu".to_string())].into(),
            source: "sidecar".into(),
            ..ThanosMeta::default()
        });
        let dst = bucket.join(id.to_string());
        copy_dir(&b, &dst);
        let _ = std::fs::remove_file(dst.join("tombstones"));
        meta.write(&dst).unwrap();
        ids.push(id);
    }
    ids.sort_by_key(|id| {
        BlockMeta::read(&bucket.join(id.to_string()))
            .unwrap()
            .min_time
    });
    assert_eq!(ids.len(), 9, "promtool wrote 9 blocks for 18 h");
    ids
}

fn store(objstore: &Path, cache: PathBuf, extra: &[String]) -> GauntletServer {
    let mut args = vec![
        "store".to_string(),
        format!("--objstore.config-file={}", objstore.display()),
        format!("--data-dir={}", cache.display()),
        "--sync-block-duration=1h".to_string(),
    ];
    args.extend_from_slice(extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    GauntletServer::start(&args, "/-/ready")
}

fn querier(stores: &[&GauntletServer]) -> GauntletServer {
    let mut args = vec!["query".to_string()];
    args.extend(
        stores
            .iter()
            .map(|s| format!("--endpoint=127.0.0.1:{}", s.grpc_port)),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let q = GauntletServer::start(&args, "/-/ready");
    // Ready once it has asked every endpoint for Info at least once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = get_json(&q, "/api/v1/stores");
        let up = v["data"]
            .as_object()
            .map(|m| {
                m.values()
                    .flat_map(|l| l.as_array().cloned().unwrap_or_default())
                    .filter(|s| s["lastError"].is_null())
                    .count()
            })
            .unwrap_or(0);
        if up == stores.len() {
            return q;
        }
        assert!(
            Instant::now() < deadline,
            "querier did not see {} healthy stores in 30 s: {v}",
            stores.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn get_json(s: &GauntletServer, path: &str) -> Value {
    let (status, body) = s.get(path);
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// The ULIDs `/api/v1/blocks` lists.
fn loaded_blocks(s: &GauntletServer) -> BTreeSet<String> {
    get_json(s, "/api/v1/blocks")["data"]["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["ulid"].as_str().unwrap().to_string())
        .collect()
}

/// A counter or gauge from `/metrics` (the sample without labels, or with exactly `labels`).
fn metric(s: &GauntletServer, name: &str, labels: &str) -> f64 {
    let (status, body) = s.get("/metrics");
    assert_eq!(status, 200);
    let want = format!("{name}{labels} ");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&want).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("{name}{labels} not in /metrics"))
}

/// Every sample a store returns for all series over `[mint, maxt]` by a raw StoreAPI Series
/// call: (series, timestamp) → value bits, with duplicates counted.
type Samples = BTreeMap<(String, i64), Vec<u64>>;

fn series_samples(grpc_port: u16, mint: i64, maxt: i64) -> Samples {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut client =
            thanos::store_client::StoreClient::connect(format!("http://127.0.0.1:{grpc_port}"))
                .await
                .unwrap()
                .max_decoding_message_size(usize::MAX);
        let req = thanos::SeriesRequest {
            min_time: mint,
            max_time: maxt,
            matchers: vec![thanos::LabelMatcher {
                r#type: thanos::label_matcher::Type::Re as i32,
                name: "__name__".into(),
                value: ".+".into(),
            }],
            ..Default::default()
        };
        let mut stream = tokio::time::timeout(Duration::from_secs(60), client.series(req))
            .await
            .expect("Series answered in 60 s")
            .unwrap()
            .into_inner();
        let mut out = Samples::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while let Some(msg) = stream.message().await.unwrap() {
            assert!(Instant::now() < deadline, "Series stream took over 120 s");
            let Some(thanos::series_response::Result::Series(s)) = msg.result else {
                continue;
            };
            let key = s
                .labels
                .iter()
                .map(|l| format!("{}={:?}", l.name, l.value))
                .collect::<Vec<_>>()
                .join(",");
            for c in s.chunks {
                let raw = c.raw.expect("raw chunk");
                let mut b = SampleBatch::new();
                decode_xor_into(&raw.data, &mut b).unwrap();
                for (t, v) in b.iter() {
                    if t >= mint && t <= maxt {
                        out.entry((key.clone(), t)).or_default().push(v.to_bits());
                    }
                }
            }
        }
        out
    })
}

/// Sums per-store answers, keeping every copy.
fn union(parts: Vec<Samples>) -> Samples {
    let mut out = Samples::new();
    for p in parts {
        for (k, mut v) in p {
            out.entry(k).or_default().append(&mut v);
        }
    }
    out
}

fn q(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Query paths whose answers must not depend on how the bucket is sharded.
fn paths() -> Vec<String> {
    let (start, end) = ((T0 + 600).to_string(), (T0 + 17 * 3600).to_string());
    let mut out = Vec::new();
    for query in [
        r#"http_requests_total{code="500",handler="/api/a"}"#,
        "sum by (code) (rate(http_requests_total[5m]))",
        r#"count({__name__=~".+"})"#,
    ] {
        out.push(format!(
            "/api/v1/query_range?{}",
            q(&[
                ("query", query),
                ("start", &start),
                ("end", &end),
                ("step", "300")
            ])
        ));
    }
    out.push(format!(
        "/api/v1/series?{}",
        q(&[("match[]", r#"{__name__=~"http.*"}"#)])
    ));
    out
}

#[test]
fn hashmod_shards_split_the_blocks_and_answer_each_sample_once() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let ids = sharded_bucket(tmp.path(), &bucket);
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let shards: Vec<GauntletServer> = (0..3)
        .map(|i| {
            // The rules come from a file for one shard and inline for the others.
            let rules = format!(
                "- action: hashmod\n  source_labels: [__block_id]\n  target_label: shard\n  modulus: 3\n\
                 - action: keep\n  source_labels: [shard]\n  regex: \"{i}\"\n"
            );
            let flag = if i == 0 {
                let f = tmp.path().join("relabel-0.yml");
                std::fs::write(&f, &rules).unwrap();
                format!("--selector.relabel-config-file={}", f.display())
            } else {
                format!("--selector.relabel-config={rules}")
            };
            store(&objstore, tmp.path().join(format!("cache-{i}")), &[flag])
        })
        .collect();
    let whole = store(&objstore, tmp.path().join("cache-all"), &[]);

    // Each block is loaded by exactly one shard: the one its ULID hashes to.
    let mut seen = BTreeSet::new();
    for (i, s) in shards.iter().enumerate() {
        let got = loaded_blocks(s);
        let want: BTreeSet<String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| j % 3 == i)
            .map(|(_, id)| id.to_string())
            .collect();
        assert_eq!(got, want, "shard {i} blocks");
        assert_eq!(metric(s, "thanos_bucket_store_blocks_loaded", ""), 3.0);
        assert_eq!(
            metric(s, "thanos_blocks_meta_synced", "{state=\"label-excluded\"}"),
            6.0
        );
        assert!(seen.is_disjoint(&got));
        seen.extend(got);
    }
    assert_eq!(
        seen,
        loaded_blocks(&whole),
        "the shards together hold every block"
    );

    // Every sample comes from exactly one shard, and all of them together are the unsharded
    // store's answer.
    let (mint, maxt) = (T0 * 1000, (T0 + 18 * 3600) * 1000);
    let all = series_samples(whole.grpc_port, mint, maxt);
    assert!(all.values().all(|v| v.len() == 1));
    assert!(all.len() > 200 * 4000, "{} samples", all.len());
    let parts: Vec<Samples> = shards
        .iter()
        .map(|s| series_samples(s.grpc_port, mint, maxt))
        .collect();
    assert!(parts.iter().all(|p| !p.is_empty()));
    let merged = union(parts);
    let twice: Vec<_> = merged.iter().filter(|(_, v)| v.len() > 1).take(3).collect();
    assert!(twice.is_empty(), "samples served by two shards: {twice:?}");
    assert_eq!(merged, all);

    // Through queriers: the sharded set answers as the single store does.
    let q_shards = querier(&shards.iter().collect::<Vec<_>>());
    let q_whole = querier(&[&whole]);
    for p in paths() {
        let (a, b) = (q_shards.get(&p), q_whole.get(&p));
        assert_eq!(a.0, 200, "{p}: {}", String::from_utf8_lossy(&a.1));
        let (a, b): (Value, Value) = (
            serde_json::from_slice(&a.1).unwrap(),
            serde_json::from_slice(&b.1).unwrap(),
        );
        assert!(
            !a["data"].as_array().is_some_and(|d| d.is_empty())
                && !a["data"]["result"].as_array().is_some_and(|d| d.is_empty()),
            "{p}: empty answer"
        );
        assert_eq!(a["data"], b["data"], "{p}");
    }
}

#[test]
fn time_shards_advertise_their_window_and_get_only_the_queries_in_it() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    sharded_bucket(tmp.path(), &bucket);
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), &bucket);
    let rfc = |h: i64| {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_secs((T0 + h * 3600) as u64),
        )
        .to_string()
    };
    // [T0, T0+6h), [T0+6h, T0+12h), [T0+12h, ...): RFC3339 ends, and a relative start far in
    // the past for the first.
    let windows = [
        vec![
            "--min-time=-100y".to_string(),
            format!("--max-time={}", rfc_ms(&rfc(6), -1)),
        ],
        vec![
            format!("--min-time={}", rfc(6)),
            format!("--max-time={}", rfc_ms(&rfc(12), -1)),
        ],
        vec![format!("--min-time={}", rfc(12))],
    ];
    let shards: Vec<GauntletServer> = windows
        .iter()
        .enumerate()
        .map(|(i, w)| store(&objstore, tmp.path().join(format!("cache-{i}")), w))
        .collect();
    let whole = store(&objstore, tmp.path().join("cache-all"), &[]);
    let qs = querier(&shards.iter().collect::<Vec<_>>());
    let q_whole = querier(&[&whole]);

    // Info: each shard advertises its blocks' range cut to its window, a block's exclusive end
    // counted as Thanos's store counts it.
    let h = |h: i64| (T0 + h * 3600) * 1000;
    let want = [(h(0), h(6) - 1), (h(6), h(12) - 1), (h(12), h(18))];
    let stores = get_json(&qs, "/api/v1/stores");
    let mut advertised = BTreeMap::new();
    for s in stores["data"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|l| l.as_array().unwrap())
    {
        advertised.insert(
            s["name"].as_str().unwrap().to_string(),
            (
                s["minTime"].as_i64().unwrap(),
                s["maxTime"].as_i64().unwrap(),
            ),
        );
    }
    for (s, w) in shards.iter().zip(want) {
        assert_eq!(
            advertised[&format!("127.0.0.1:{}", s.grpc_port)],
            w,
            "advertised range: {stores}"
        );
    }
    // A shard whose window starts at a block boundary also loads the block ending there (it
    // overlaps by its exclusive end, as Thanos counts), but serves nothing of it.
    let (mint, maxt) = (h(0), h(18));
    let parts: Vec<Samples> = shards
        .iter()
        .map(|s| series_samples(s.grpc_port, mint, maxt))
        .collect();
    for (p, w) in parts.iter().zip(want) {
        assert!(!p.is_empty());
        assert!(
            p.keys().all(|(_, t)| *t >= w.0 && *t <= w.1),
            "a shard served samples outside its window"
        );
    }
    assert_eq!(union(parts), series_samples(whole.grpc_port, mint, maxt));

    // A query inside the first window reaches only the first shard.
    let requests = |s: &GauntletServer| metric(s, "thanos_bucket_store_series_requests_total", "");
    let before: Vec<f64> = shards.iter().map(requests).collect();
    let at = (T0 + 3 * 3600).to_string();
    let p = format!(
        "/api/v1/query?{}",
        q(&[
            ("query", "sum(rate(http_requests_total[5m]))"),
            ("time", &at)
        ])
    );
    let (a, b) = (qs.get(&p), q_whole.get(&p));
    assert_eq!(a.0, 200, "{}", String::from_utf8_lossy(&a.1));
    let (a, b): (Value, Value) = (
        serde_json::from_slice(&a.1).unwrap(),
        serde_json::from_slice(&b.1).unwrap(),
    );
    assert_eq!(a["data"], b["data"]);
    assert_eq!(a["data"]["result"].as_array().unwrap().len(), 1);
    let after: Vec<f64> = shards.iter().map(requests).collect();
    assert!(after[0] > before[0], "the first shard was not asked");
    assert_eq!(
        (after[1], after[2]),
        (before[1], before[2]),
        "shards outside the query's range were asked"
    );
    // One spanning all windows reaches every shard and answers as the single store does.
    let p = format!(
        "/api/v1/query_range?{}",
        q(&[
            ("query", "sum by (code) (rate(http_requests_total[5m]))"),
            ("start", &(T0 + 600).to_string()),
            ("end", &(T0 + 17 * 3600).to_string()),
            ("step", "300")
        ])
    );
    let (a, b) = (get_json(&qs, &p), get_json(&q_whole, &p));
    assert_eq!(a["data"], b["data"]);
    let last: Vec<f64> = shards.iter().map(requests).collect();
    assert!(last.iter().zip(&after).all(|(l, a)| l > a));
}

/// `rfc` (RFC3339 with ms) moved by `delta_ms`.
fn rfc_ms(rfc: &str, delta_ms: i64) -> String {
    let t = humantime::parse_rfc3339(rfc).unwrap();
    let t = if delta_ms < 0 {
        t - Duration::from_millis((-delta_ms) as u64)
    } else {
        t + Duration::from_millis(delta_ms as u64)
    };
    humantime::format_rfc3339_millis(t).to_string()
}

/// Bad selection flags stop the store before it serves, naming the flag (and the line).
#[test]
fn bad_selection_flags_exit_with_the_flag_named() {
    let tmp = tempfile::tempdir().unwrap();
    let objstore = filesystem_objstore(tmp.path().join("objstore.yml"), tmp.path());
    let file = tmp.path().join("rules.yml");
    std::fs::write(
        &file,
        "- action: keep\n  source_labels: [a]\n- action: hashmod\n  source_labels: [__block_id]\n  target_label: s\n",
    )
    .unwrap();
    let cases: [(Vec<String>, &str); 5] = [
        (
            vec![format!("--selector.relabel-config-file={}", file.display())],
            "--selector.relabel-config-file",
        ),
        (
            vec!["--selector.relabel-config=- action: nope".into()],
            "--selector.relabel-config: line 1: relabel rule 1: unknown relabel action",
        ),
        (vec!["--min-time=-2x".into()], "--min-time"),
        (
            vec![
                "--min-time=2025-01-02T00:00:00Z".into(),
                "--max-time=2025-01-01T00:00:00Z".into(),
            ],
            "--min-time (2025-01-02T00:00:00.000Z) is after --max-time",
        ),
        (
            vec![
                "--selector.relabel-config=[]".into(),
                format!("--selector.relabel-config-file={}", file.display()),
            ],
            "are both given",
        ),
    ];
    for (flags, want) in cases {
        let err_file = tmp.path().join("stderr");
        let mut child = gauntlet_cmd()
            .arg("store")
            .arg(format!("--objstore.config-file={}", objstore.display()))
            .arg(format!("--data-dir={}", tmp.path().join("cache").display()))
            .args(["--http-address=127.0.0.1:0", "--grpc-address=127.0.0.1:0"])
            .args(&flags)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&err_file).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{flags:?}: the store kept running");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = std::fs::read_to_string(&err_file).unwrap();
        assert!(!status.success(), "{flags:?} was accepted");
        assert!(err.contains(want), "{flags:?}: {err}");
        if want == "--selector.relabel-config-file" {
            assert!(
                err.contains("rules.yml: line 3: relabel rule 2:")
                    && err.contains("requires non-zero modulus"),
                "{err}"
            );
        }
    }
}

fn gauntlet_cmd() -> Command {
    let mut c = gauntlet();
    c.env("RUST_LOG", "warn");
    c
}
