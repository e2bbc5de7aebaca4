//! The `parquet` scenario: Prometheus-on-Parquet reads, Gauntlet's store against
//! prometheus-community/parquet-common (the library Thanos's and Cortex's Parquet paths read
//! with), on the same files and the same selections.
//!
//! The input is parquet-common's own `BenchmarkSelect` data set: `test_metric_0..4` over
//! instances × 5 regions × 10 zones × 20 services × 3 environments (1.5M series at its 100
//! instances), a sample a minute for an hour. One TSDB block of it is converted once by
//! parquet-common's converter (through `parquet-peer`), into the block's own directory, and
//! timed; Gauntlet's converter is timed on a copy. Then, for each of the benchmark's cases:
//! - parquet-common: `parquet-peer bench`, the library's queryable opened once and the select
//!   run in-process, every sample iterated, with its bucket requests and bytes counted;
//! - Gauntlet: `gauntlet store --store.parquet=prefer` over the bucket holding the very same
//!   files, each selection streamed over the StoreAPI (gRPC included), the best of the passes,
//!   with the store's bucket requests and bytes from its `/metrics`;
//! - the same selection from the TSDB form of the block (`--store.parquet=off`), so the table
//!   shows when each form wins.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use gauntlet_engine::block::{BlockWriter, CutOptions};
use gauntlet_engine::labels::Labels;

use super::current::{Figure, Recorded};
use super::report::{machine_description, ratio, utc_now};
use super::scenarios::{objstore_file, start_gauntlet};
use super::series::{self, Selection};
use super::server::Server;
use super::{RunError, RunOptions};

/// parquet-common's `BenchmarkSelect` cases: name and selector.
pub const CASES: &[(&str, &str)] = &[
    ("SingleMetricAllSeries", r#"{__name__="test_metric_1"}"#),
    (
        "SingleMetricReducedSeries",
        r#"{__name__="test_metric_1",instance="instance-1"}"#,
    ),
    (
        "SingleMetricOneSeries",
        r#"{__name__="test_metric_1",instance="instance-2",region="region-1",zone="zone-3",service="service-10",environment="environment-1"}"#,
    ),
    (
        "SingleMetricSparseSeries",
        r#"{__name__="test_metric_1",service="service-1",environment="environment-0"}"#,
    ),
    (
        "NonExistentSeries",
        r#"{__name__="test_metric_1",environment="non-existent-environment"}"#,
    ),
    ("MultipleMetricsRange", r#"{__name__=~"test_metric_[1-5]"}"#),
    (
        "MultipleMetricsSparse",
        r#"{__name__=~"test_metric_(1|5|10|15|20)"}"#,
    ),
    (
        "NegativeRegexSingleMetric",
        r#"{__name__="test_metric_1",instance!~"(instance-1.*|instance-2.*)"}"#,
    ),
    (
        "NegativeRegexMultipleMetrics",
        r#"{__name__=~"test_metric_[1-3]",instance!~"(instance-1.*|instance-2.*)"}"#,
    ),
    (
        "ExpensiveRegexSingleMetric",
        r#"{__name__="test_metric_1",instance=~"(container-1|instance-2|container-3|instance-4|container-5)"}"#,
    ),
    (
        "ExpensiveRegexMultipleMetrics",
        r#"{__name__=~"test_metric_[1-3]",instance=~"(instance-1|instance-2|instance-3|instance-4|instance-5)"}"#,
    ),
];

/// Options of the `parquet` scenario.
#[derive(Clone, Debug)]
pub struct ParquetOptions {
    /// Instances of the data set (parquet-common's benchmark: 100, 1.5M series).
    pub instances: usize,
    /// Measured passes per case (after one warm-up pass); the best is reported.
    pub passes: usize,
    /// The `parquet-peer` binary.
    pub peer_bin: PathBuf,
}

const START_MS: i64 = 1_735_689_600_000;
const STEP_MS: i64 = 60_000;
const SAMPLES: i64 = 60;

/// Writes the benchmark's data set as one block under `dir`; its directory.
fn write_block(dir: &Path, instances: usize) -> Result<PathBuf, RunError> {
    let other = |e: gauntlet_engine::Error| RunError::Other(e.to_string());
    let mut w = BlockWriter::create(dir, CutOptions::default()).map_err(other)?;
    let id = w.ulid();
    let ts: Vec<i64> = (0..SAMPLES).map(|k| START_MS + k * STEP_MS).collect();
    let mut val = vec![0.0; ts.len()];
    // Label order: environment, instance, region, service, zone after the name; series are
    // added in label order, so each loop nests as the labels sort (names as text).
    let sorted = |n: usize, p: &str| {
        let mut v: Vec<String> = (0..n).map(|i| format!("{p}-{i}")).collect();
        v.sort();
        v
    };
    let (envs, insts, regions, services, zones) = (
        sorted(3, "environment"),
        sorted(instances, "instance"),
        sorted(5, "region"),
        sorted(20, "service"),
        sorted(10, "zone"),
    );
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for m in 0..5 {
        let name = format!("test_metric_{m}");
        for e in &envs {
            for i in &insts {
                for r in &regions {
                    for s in &services {
                        for z in &zones {
                            for v in val.iter_mut() {
                                seed ^= seed << 13;
                                seed ^= seed >> 7;
                                seed ^= seed << 17;
                                *v = (seed >> 11) as f64 / (1u64 << 53) as f64;
                            }
                            let labels = Labels::from_pairs([
                                ("__name__", name.as_str()),
                                ("environment", e),
                                ("instance", i),
                                ("region", r),
                                ("service", s),
                                ("zone", z),
                            ]);
                            w.add_series(&labels, &ts, &val).map_err(other)?;
                        }
                    }
                }
            }
        }
    }
    w.finish(None).map_err(other)?;
    Ok(dir.join(id.to_string()))
}

fn run_tool(mut cmd: Command, what: &str) -> Result<(String, f64), RunError> {
    let t = Instant::now();
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(RunError::Other(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        t.elapsed().as_secs_f64(),
    ))
}

/// One case's figures on one side.
#[derive(Clone, Debug, Default)]
struct CaseRow {
    series: u64,
    ms: f64,
    requests: f64,
    bytes: f64,
}

/// parquet-common's figures for every case.
fn peer_side(po: &ParquetOptions, bucket: &Path, name: &str) -> Result<Vec<CaseRow>, RunError> {
    let mut out = Vec::new();
    for (case, sel) in CASES {
        let mut cmd = Command::new(&po.peer_bin);
        cmd.args(["bench", "--dir"])
            .arg(bucket)
            .args(["--name", name])
            .args(["--mint", &START_MS.to_string()])
            .args(["--maxt", &(START_MS + SAMPLES * STEP_MS).to_string()])
            .args(["--match", sel, "--n", &po.passes.max(1).to_string()]);
        let (stdout, _) = run_tool(cmd, &format!("parquet-peer bench {case}"))?;
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .map_err(|e| RunError::Other(format!("parquet-peer bench {case}: {e}: {stdout}")))?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let row = CaseRow {
            series: v["series"].as_u64().unwrap_or(0),
            ms: f("ns_per_op") / 1e6,
            requests: f("bucket_requests_per_op"),
            bytes: f("bucket_bytes_per_op"),
        };
        eprintln!(
            "parquet-common {case}: {} series, {:.2} ms, {} requests, {:.0} bytes",
            row.series, row.ms, row.requests, row.bytes
        );
        out.push(row);
    }
    Ok(out)
}

fn reads(s: &Server) -> (f64, f64) {
    (
        s.metric_sum("thanos_objstore_bucket_operations_total")
            .unwrap_or(f64::NAN),
        s.metric_sum("gauntlet_objstore_bucket_read_bytes_total")
            .unwrap_or(f64::NAN),
    )
}

/// Gauntlet's store over `objstore` in `mode`, every case streamed over gRPC.
fn gauntlet_side(
    o: &RunOptions,
    po: &ParquetOptions,
    objstore: &Path,
    mode: &str,
) -> Result<(String, Vec<CaseRow>, Option<u64>), RunError> {
    let data = o.work_dir.join(format!("parquet-store-{mode}-data"));
    let _ = std::fs::remove_dir_all(&data);
    let args = [
        format!("--objstore.config-file={}", objstore.display()),
        format!("--data-dir={}", data.display()),
        format!("--store.parquet={mode}"),
    ];
    let (mut store, grpc) = start_gauntlet(
        o,
        &format!("parquet-store-{mode}"),
        "store",
        &args,
        &o.gauntlet_extra_args,
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let url = format!("http://{grpc}");
    let mut out = Vec::new();
    for (case, text) in CASES {
        let sel = Selection::parse(text, START_MS, START_MS + SAMPLES * STEP_MS)?;
        rt.block_on(series::store_series(
            &url,
            &sel,
            series::RESPONSE_BATCH,
            None,
        ))?;
        let mut best: Option<CaseRow> = None;
        for _ in 0..po.passes.max(1) {
            let before = reads(&store);
            let got = rt.block_on(series::store_series(
                &url,
                &sel,
                series::RESPONSE_BATCH,
                None,
            ))?;
            let after = reads(&store);
            let row = CaseRow {
                series: got.series,
                ms: got.seconds * 1e3,
                requests: after.0 - before.0,
                bytes: after.1 - before.1,
            };
            if best.as_ref().is_none_or(|b| row.ms < b.ms) {
                best = Some(row);
            }
        }
        let row = best.unwrap_or_default();
        eprintln!(
            "{} ({mode}) {case}: {} series, {:.2} ms, {} requests, {:.0} bytes",
            store.name, row.series, row.ms, row.requests, row.bytes
        );
        out.push(row);
    }
    let rss = store.stats().map(|s| s.peak_rss_bytes);
    let name = store.name.clone();
    store.stop();
    Ok((name, out, rss))
}

/// The `parquet` scenario (see the module's documentation).
pub fn parquet(o: &RunOptions, po: &ParquetOptions) -> Result<Recorded, RunError> {
    let bucket = o.work_dir.join(format!("parquet-bench-i{}", po.instances));
    let block = match std::fs::read_dir(&bucket).ok().and_then(|mut d| {
        d.find_map(|e| {
            e.ok()
                .map(|e| e.path())
                .filter(|p| p.join("meta.json").is_file())
        })
    }) {
        Some(b) => b,
        None => {
            std::fs::create_dir_all(&bucket)?;
            eprintln!(
                "writing the benchmark's block ({} instances) ...",
                po.instances
            );
            write_block(&bucket, po.instances)?
        }
    };
    let id = block
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // parquet-common's converter, into the block's directory (once: its files are reused).
    let mut convert_s = [f64::NAN, f64::NAN];
    if !block.join("0.labels.parquet").is_file() {
        let mut cmd = Command::new(&po.peer_bin);
        cmd.args(["convert", "--block"])
            .arg(&block)
            .arg("--out")
            .arg(&bucket)
            .args(["--name", &id]);
        convert_s[1] = run_tool(cmd, "parquet-peer convert")?.1;
        eprintln!(
            "parquet-common converted the block in {:.1} s",
            convert_s[1]
        );
    }
    // Gauntlet's converter, timed on a copy holding the TSDB files only.
    if let Some(bin) = &o.gauntlet_bin {
        let copy = o.work_dir.join("parquet-convert-copy");
        let _ = std::fs::remove_dir_all(&copy);
        std::fs::create_dir_all(copy.join(&id).join("chunks"))?;
        for f in ["meta.json", "index"] {
            std::fs::hard_link(block.join(f), copy.join(&id).join(f))?;
        }
        for e in std::fs::read_dir(block.join("chunks"))? {
            let e = e?;
            std::fs::hard_link(e.path(), copy.join(&id).join("chunks").join(e.file_name()))?;
        }
        let objstore = objstore_file(&o.work_dir.join("parquet-convert.yml"), &copy)?;
        let mut cmd = Command::new(bin);
        cmd.args(["tools", "bucket", "convert", "--to=parquet"])
            .arg(format!("--objstore.config-file={}", objstore.display()));
        convert_s[0] = run_tool(cmd, "gauntlet tools bucket convert")?.1;
        eprintln!("Gauntlet converted the block in {:.1} s", convert_s[0]);
        let _ = std::fs::remove_dir_all(&copy);
    }
    let peer = peer_side(po, &bucket, &id)?;
    let objstore = objstore_file(&o.work_dir.join("parquet-objstore.yml"), &bucket)?;
    let pq = gauntlet_side(o, po, &objstore, "prefer")?;
    let tsdb = gauntlet_side(o, po, &objstore, "off")?;
    let series: u64 = 5 * po.instances as u64 * 5 * 10 * 20 * 3;
    let input = format!(
        "parquet-common BenchmarkSelect data, {} instances ({}k series)",
        po.instances,
        series / 1000
    );
    let mut figures = Vec::new();
    for (i, (case, _)) in CASES.iter().enumerate() {
        figures.push(
            Figure::new(
                &format!("{case}: ms per select (parquet-common in the Thanos column)"),
                Some(pq.1[i].ms),
                None,
                2,
            )
            .with_peers(Some(peer[i].ms), None),
        );
    }
    let section = render(o, po, &input, &convert_s, &peer, &pq, &tsdb);
    Ok(Recorded {
        scenario: "parquet",
        input,
        section,
        figures,
    })
}

fn render(
    o: &RunOptions,
    po: &ParquetOptions,
    input: &str,
    convert_s: &[f64; 2],
    peer: &[CaseRow],
    pq: &(String, Vec<CaseRow>, Option<u64>),
    tsdb: &(String, Vec<CaseRow>, Option<u64>),
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## {} — `run parquet`\n", utc_now());
    let _ = writeln!(s, "Machine: {}.", machine_description());
    let _ = writeln!(
        s,
        "Input: {input}, a sample a minute for an hour, one TSDB block in a FILESYSTEM bucket, \
         converted by parquet-common's converter (its defaults: row groups of 1M rows, 8 h \
         chunk columns, zstd). Both readers read those same files: parquet-common through \
         `parquet-peer bench` (its queryable opened once, then in-process selects, every sample \
         iterated, best of {} selects), Gauntlet through `gauntlet store \
         --store.parquet=prefer` over the StoreAPI (gRPC and its encoding included, one warm-up \
         then the best of {} passes). The TSDB column is `gauntlet store --store.parquet=off` \
         on the block's TSDB form. Requests and bytes are per select, from each reader's own \
         bucket counters.",
        po.passes.max(1),
        po.passes.max(1)
    );
    let _ = writeln!(s, "Command: `{}`\n", o.command_line);
    let _ = writeln!(
        s,
        "Conversion: Gauntlet's converter {:.1} s, parquet-common's {}.\n",
        convert_s[0],
        if convert_s[1].is_nan() {
            "not re-run (its files were reused)".to_string()
        } else {
            format!("{:.1} s", convert_s[1])
        }
    );
    let _ = writeln!(
        s,
        "| case | series | parquet-common ms | {} (Parquet) ms | ratio | Gauntlet (TSDB) ms | requests parquet-common / Gauntlet | KiB parquet-common / Gauntlet |",
        pq.0
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for (i, (case, _)) in CASES.iter().enumerate() {
        let (p, g, t) = (&peer[i], &pq.1[i], &tsdb.1[i]);
        let same = if p.series == g.series && g.series == t.series {
            g.series.to_string()
        } else {
            format!("{} / {} / {} (differ)", p.series, g.series, t.series)
        };
        let _ = writeln!(
            s,
            "| {case} | {same} | {:.2} | {:.2} | {} | {:.2} | {:.0} / {:.0} | {:.0} / {:.0} |",
            p.ms,
            g.ms,
            ratio(p.ms, g.ms),
            t.ms,
            p.requests,
            g.requests,
            p.bytes / 1024.0,
            g.bytes / 1024.0
        );
    }
    let mib =
        |r: Option<u64>| r.map_or("–".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
    let _ = writeln!(
        s,
        "\nPeak RSS of Gauntlet's store: {} serving Parquet, {} serving TSDB.",
        mib(pq.2),
        mib(tsdb.2)
    );
    s
}
