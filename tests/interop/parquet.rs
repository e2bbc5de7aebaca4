//! Parquet blocks both ways between Gauntlet and prometheus-community/parquet-common (the
//! library Thanos's and Cortex's Parquet paths are built on), through `parquet-peer`, a small
//! program of ours over that library (`tests/peers/parquet/`):
//! - shards parquet-common's converter writes are served by `gauntlet store`'s bucket store
//!   with the samples of the TSDB block they came from;
//! - shards `gauntlet tools bucket convert --to=parquet` writes are read by parquet-common's
//!   own reader with the same series and samples, selective matchers included.
//!
//! The blocks: Prometheus-written fixtures (one 2 h, one compacted over 10 h so that chunks
//! cross the 8 h chunk columns) and one with native histograms, integer and float.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gauntlet_engine::block::CutOptions;
use gauntlet_engine::block::histogram_cut::{cut_float_histogram_chunks, cut_histogram_chunks};
use gauntlet_engine::block::reader::{Block, BlockSample};
use gauntlet_engine::block::writer::{BlockWriter, EncodedChunk};
use gauntlet_engine::bucket::{Bucket, BucketConfig};
use gauntlet_engine::chunk::{Encoding, FloatHistogramIterator, HistogramIterator, XorIterator};
use gauntlet_engine::histogram::{Histogram, Span};
use gauntlet_engine::labels::{Labels, MatchType, Matcher};
use gauntlet_engine::store::{BucketStore, SeriesQuery, StoreOptions};
use serde_json::Value;

use crate::common::peers::{peer_bin, run_bounded};
use crate::common::{copy_dir, filesystem_objstore, gauntlet, repo_root};

/// The longest a conversion or a dump may take on these small blocks.
const TOOL_TIME: Duration = Duration::from_secs(120);

/// Series as text: labels, then per sample its time and value (floats exactly, histograms as
/// count and sum).
type Answer = BTreeMap<String, Vec<(i64, String)>>;

/// Fails with the first difference (the answers can be long).
fn assert_answers(got: &Answer, want: &Answer, what: &str) {
    if got == want {
        return;
    }
    let keys = |a: &Answer| a.keys().cloned().collect::<Vec<_>>();
    let missing: Vec<_> = keys(want)
        .into_iter()
        .filter(|k| !got.contains_key(k))
        .take(3)
        .collect();
    let extra: Vec<_> = keys(got)
        .into_iter()
        .filter(|k| !want.contains_key(k))
        .take(3)
        .collect();
    let differ = want
        .iter()
        .find(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, v)| {
            let g = &got[k];
            let at = v
                .iter()
                .zip(g.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(v.len().min(g.len()));
            format!(
                "{k}: {} vs {} samples, first difference at {at}: want {:?} got {:?}",
                v.len(),
                g.len(),
                v.get(at),
                g.get(at)
            )
        });
    panic!(
        "{what}: {} series, want {}; missing {missing:?}; extra {extra:?}; {differ:?}",
        got.len(),
        want.len()
    );
}

fn float_text(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else {
        format!("{v:?}")
    }
}

fn sample_text(s: &BlockSample) -> String {
    match s {
        BlockSample::Float(v) => float_text(*v),
        BlockSample::Histogram(h) => {
            format!("h {} {}", float_text(h.count as f64), float_text(h.sum))
        }
        BlockSample::FloatHistogram(h) => {
            format!("h {} {}", float_text(h.count), float_text(h.sum))
        }
    }
}

fn labels_text(pairs: impl Iterator<Item = (String, String)>) -> String {
    let mut v: Vec<String> = pairs.map(|(n, v)| format!("{n}={v:?}")).collect();
    v.sort();
    format!("{{{}}}", v.join(", "))
}

/// What the TSDB block holds for `matchers` in `[mint, maxt]`.
fn tsdb_answer(dir: &Path, matchers: &[Matcher], mint: i64, maxt: i64) -> Answer {
    let block = Block::open(dir).unwrap();
    let mut out = Answer::new();
    let (mut labels, mut metas) = (Vec::new(), Vec::new());
    for r in block.select(matchers).unwrap() {
        labels.clear();
        metas.clear();
        block.series(r, &mut labels, &mut metas).unwrap();
        let mut samples = Vec::new();
        block
            .read_typed(r, &metas, mint, maxt, &mut samples)
            .unwrap();
        if samples.is_empty() {
            continue;
        }
        let key = labels_text(
            labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string())),
        );
        out.insert(
            key,
            samples.iter().map(|(t, s)| (*t, sample_text(s))).collect(),
        );
    }
    out
}

/// What every block of `bucket` holds together, each series' samples merged by time.
fn bucket_answer(bucket: &Path, matchers: &[Matcher], mint: i64, maxt: i64) -> Answer {
    let mut out = Answer::new();
    for e in std::fs::read_dir(bucket).unwrap() {
        for (k, v) in tsdb_answer(&e.unwrap().path(), matchers, mint, maxt) {
            out.entry(k).or_default().extend(v);
        }
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup_by_key(|s| s.0);
    }
    out
}

/// A chunk as the block writer takes it: encoding, time range, payload.
type Encoded = (Encoding, i64, i64, Vec<u8>);

/// A block of native histograms (integer and float, 2 h at 30 s) beside a float series.
fn write_histogram_block(parent: &Path) -> PathBuf {
    let t0 = 1_735_689_600_000i64;
    let ts: Vec<i64> = (0..240).map(|k| t0 + k * 30_000).collect();
    let hist = |k: i64| Histogram {
        schema: 1,
        zero_threshold: 0.001,
        zero_count: k as u64,
        count: (3 * k + 1) as u64,
        sum: k as f64 * 1.25,
        positive_spans: vec![Span {
            offset: 0,
            length: 2,
        }],
        positive_buckets: vec![k, 1],
        ..Histogram::default()
    };
    let ints: Vec<(i64, Histogram)> = ts
        .iter()
        .enumerate()
        .map(|(k, &t)| (t, hist(k as i64)))
        .collect();
    let floats: Vec<_> = ints.iter().map(|(t, h)| (*t, h.to_float())).collect();
    let mut w = BlockWriter::create(parent, CutOptions::default()).unwrap();
    let id = w.ulid();
    let hc = cut_histogram_chunks(&ints, 2 * 3_600_000).unwrap();
    let fc = cut_float_histogram_chunks(&floats, 2 * 3_600_000).unwrap();
    let enc = |cs: &[gauntlet_engine::block::histogram_cut::CutHistogramChunk]| -> Vec<Encoded> {
        cs.iter()
            .map(|c| (c.encoding, c.min_time, c.max_time, c.data.clone()))
            .collect()
    };
    let series: Vec<(Labels, Vec<Encoded>)> = vec![
        (
            Labels::from_pairs([("__name__", "rpc_seconds"), ("kind", "float")]),
            enc(&fc),
        ),
        (
            Labels::from_pairs([("__name__", "rpc_seconds"), ("kind", "int")]),
            enc(&hc),
        ),
    ];
    let vals: Vec<f64> = (0..ts.len()).map(|k| k as f64 / 3.0).collect();
    w.add_series(
        &Labels::from_pairs([("__name__", "aaa_float"), ("kind", "x")]),
        &ts,
        &vals,
    )
    .unwrap();
    for (labels, chunks) in &series {
        w.add_encoded_chunks(
            labels,
            chunks.iter().map(|(e, lo, hi, d)| EncodedChunk {
                encoding: *e,
                min_time: *lo,
                max_time: *hi,
                data: d,
            }),
        )
        .unwrap();
    }
    w.finish(None).unwrap().unwrap();
    parent.join(id.to_string())
}

/// The buckets the tests convert, made under `root`: the 2 h fixture with the histogram block
/// (no series in common), and the compacted fixture (whose series are the 2 h fixture's
/// names with other values, so it goes alone). Each with its block ULIDs.
fn buckets(root: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let fixtures = repo_root().join("testdata/tsdb");
    let mut out = Vec::new();
    for (k, name) in [
        "promtool-200series-2h",
        "prometheus-compacted-200series-10h",
    ]
    .iter()
    .enumerate()
    {
        let bucket = root.join(format!("bucket{k}"));
        for e in std::fs::read_dir(fixtures.join(name)).unwrap() {
            let e = e.unwrap();
            if e.path().join("meta.json").is_file() {
                copy_dir(&e.path(), &bucket.join(e.file_name()));
            }
        }
        if k == 0 {
            write_histogram_block(&bucket);
        }
        let mut ids: Vec<String> = std::fs::read_dir(&bucket)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        out.push((bucket, ids));
    }
    out
}

fn range(dir: &Path) -> (i64, i64) {
    let b = Block::open(dir).unwrap();
    (b.meta().min_time, b.meta().max_time - 1)
}

fn m(t: MatchType, n: &str, v: &str) -> Matcher {
    Matcher::new(t, n, v).unwrap()
}

/// Selections each block is asked, as matchers and as the selector text parquet-peer takes.
fn selections() -> Vec<(Vec<Matcher>, &'static str)> {
    vec![
        (
            vec![m(MatchType::Regexp, "__name__", ".+")],
            r#"{__name__=~".+"}"#,
        ),
        (
            vec![m(MatchType::Equal, "__name__", "http_requests_total")],
            r#"{__name__="http_requests_total"}"#,
        ),
        (
            vec![
                m(MatchType::Regexp, "__name__", "node_.*|rpc_.*"),
                m(MatchType::NotEqual, "kind", "float"),
            ],
            r#"{__name__=~"node_.*|rpc_.*",kind!="float"}"#,
        ),
        (
            vec![m(MatchType::Equal, "__name__", "no_such_metric")],
            r#"{__name__="no_such_metric"}"#,
        ),
    ]
}

#[test]
fn parquet_common_shards_are_served_by_the_bucket_store() {
    let peer = peer_bin("parquet-peer");
    let tmp = tempfile::tempdir().unwrap();
    for (n, (tsdb, ids)) in buckets(tmp.path()).into_iter().enumerate() {
        let pq = tmp.path().join(format!("parquet{n}"));
        copy_dir(&tsdb, &pq);
        serve_and_compare(
            &peer,
            &tsdb,
            &pq,
            &ids,
            &tmp.path().join(format!("data{n}")),
        );
    }
}

/// Converts every block of `pq` (a copy of `tsdb`) with parquet-common, removes its TSDB
/// files, and holds the bucket store over `pq` to the TSDB blocks.
fn serve_and_compare(peer: &Path, tsdb: &Path, pq: &Path, ids: &[String], data: &Path) {
    for id in ids {
        let dir = pq.join(id);
        let mut cmd = Command::new(peer);
        cmd.args(["convert", "--block"])
            .arg(&dir)
            .arg("--out")
            .arg(pq)
            .args(["--name", id]);
        let out = run_bounded(cmd, TOOL_TIME);
        assert!(
            out.status.success(),
            "parquet-peer convert {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Served from the shards alone: the TSDB files are gone.
        std::fs::remove_file(dir.join("index")).unwrap();
        std::fs::remove_dir_all(dir.join("chunks")).unwrap();
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = BucketConfig::filesystem(pq).unwrap();
        let store =
            BucketStore::open(Bucket::open(&cfg).unwrap(), data, StoreOptions::default()).unwrap();
        let rep = store.sync().await.unwrap();
        assert_eq!((rep.loaded, rep.failed.len()), (ids.len(), 0), "{rep:?}");
        assert_eq!(store.parquet_blocks().len(), ids.len());
        for id in ids {
            let (lo, hi) = range(&tsdb.join(id));
            for (matchers, text) in selections() {
                for (mint, maxt) in [(lo, hi), (lo + 3_600_000, lo + 4_000_000)] {
                    let want = bucket_answer(tsdb, &matchers, mint, maxt);
                    let q = SeriesQuery {
                        min_time: mint,
                        max_time: maxt,
                        matchers: matchers.clone(),
                        ..SeriesQuery::default()
                    };
                    let res = store.series(&q).await.unwrap();
                    let mut got = Answer::new();
                    for s in res.series {
                        let mut samples = Vec::new();
                        for c in &s.chunks {
                            decode_into(c.encoding, &c.data, &mut samples);
                        }
                        samples.retain(|(t, _)| *t >= mint && *t <= maxt);
                        samples.sort_by_key(|s| s.0);
                        if samples.is_empty() {
                            continue;
                        }
                        let key = labels_text(
                            s.labels
                                .iter()
                                .map(|l| (l.name.to_string(), l.value.to_string())),
                        );
                        assert!(got.insert(key, samples).is_none(), "a series served twice");
                    }
                    assert_answers(&got, &want, &format!("{id} {text} {mint}..{maxt}"));
                }
            }
        }
    });
}

fn decode_into(encoding: u8, data: &[u8], out: &mut Vec<(i64, String)>) {
    match encoding {
        1 => {
            let mut it = XorIterator::new(data).unwrap();
            while let Some((t, v)) = it.next().unwrap() {
                out.push((t, float_text(v)));
            }
        }
        2 => {
            let mut it = HistogramIterator::new(data).unwrap();
            while let Some((t, h)) = it.next().unwrap() {
                out.push((t, sample_text(&BlockSample::Histogram(h))));
            }
        }
        3 => {
            let mut it = FloatHistogramIterator::new(data).unwrap();
            while let Some((t, h)) = it.next().unwrap() {
                out.push((t, sample_text(&BlockSample::FloatHistogram(h))));
            }
        }
        e => panic!("chunk encoding {e}"),
    }
}

/// parquet-peer's dump (one JSON object per series) as an answer.
fn dump_answer(stdout: &[u8]) -> Answer {
    let mut out = Answer::new();
    for line in String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let labels = v["labels"].as_object().unwrap();
        let key = labels_text(
            labels
                .iter()
                .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string())),
        );
        let num = |s: &Value| float_text(s.as_str().unwrap().parse::<f64>().unwrap());
        let mut samples = Vec::new();
        for f in v["floats"].as_array().into_iter().flatten() {
            samples.push((f[0].as_i64().unwrap(), num(&f[1])));
        }
        for h in v["histograms"].as_array().into_iter().flatten() {
            let count = h[1]["count"].as_str().unwrap().parse::<f64>().unwrap();
            let count = float_text(count);
            samples.push((
                h[0].as_i64().unwrap(),
                format!("h {count} {}", num(&h[1]["sum"])),
            ));
        }
        samples.sort_by_key(|s| s.0);
        if !samples.is_empty() {
            out.insert(key, samples);
        }
    }
    out
}

#[test]
fn gauntlet_shards_are_read_by_parquet_common() {
    let peer = peer_bin("parquet-peer");
    let tmp = tempfile::tempdir().unwrap();
    for (n, (bucket, ids)) in buckets(tmp.path()).into_iter().enumerate() {
        let tsdb = tmp.path().join(format!("tsdb{n}"));
        copy_dir(&bucket, &tsdb);
        let objstore = filesystem_objstore(tmp.path().join(format!("objstore{n}.yml")), &bucket);
        convert_and_read(&peer, &bucket, &tsdb, &ids, &objstore);
    }
}

/// Converts every block of `bucket` with `gauntlet tools bucket convert` and holds
/// parquet-common's reader to the TSDB blocks (a copy in `tsdb`).
fn convert_and_read(peer: &Path, bucket: &Path, tsdb: &Path, ids: &[String], objstore: &Path) {
    // Small row groups: several per file, so that both readers cross row groups.
    let out = run_bounded(
        {
            let mut c = gauntlet();
            c.args([
                "tools",
                "bucket",
                "convert",
                "--to=parquet",
                "--parquet.row-group-size=64",
            ])
            .arg(format!("--objstore.config-file={}", objstore.display()));
            c
        },
        TOOL_TIME,
    );
    assert!(
        out.status.success(),
        "gauntlet tools bucket convert: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    for id in ids {
        assert!(said.contains(id.as_str()), "{id} not converted: {said}");
        assert!(bucket.join(id).join("0.labels.parquet").is_file());
        assert!(bucket.join(id).join("0.chunks.parquet").is_file());
        let (lo, hi) = range(&tsdb.join(id));
        for (matchers, text) in selections() {
            for (mint, maxt) in [(lo, hi), (lo + 3_600_000, lo + 4_000_000)] {
                let mut cmd = Command::new(peer);
                cmd.args(["dump", "--dir"]).arg(bucket).args([
                    "--name",
                    id,
                    "--mint",
                    &mint.to_string(),
                    "--maxt",
                    &maxt.to_string(),
                    "--match",
                    text,
                ]);
                let out = run_bounded(cmd, TOOL_TIME);
                assert!(
                    out.status.success(),
                    "parquet-peer dump {id} {text}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let want = tsdb_answer(&tsdb.join(id), &matchers, mint, maxt);
                assert_answers(
                    &dump_answer(&out.stdout),
                    &want,
                    &format!("{id} {text} {mint}..{maxt}"),
                );
            }
        }
    }
    // A second run finds nothing left to convert.
    let out = run_bounded(
        {
            let mut c = gauntlet();
            c.args(["tools", "bucket", "convert", "--to=parquet"])
                .arg(format!("--objstore.config-file={}", objstore.display()));
            c
        },
        TOOL_TIME,
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
