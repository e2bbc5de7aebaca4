//! `store`: the store gateway. `gauntlet store` and `thanos store` serve the same FILESYSTEM
//! bucket (generated blocks with a Thanos section, copied per cluster), one after the other,
//! each from an empty data directory (index-headers built from scratch) and behind its own
//! `thanos query`, as a Thanos user deploys them. Measured per store: the time from the spawn
//! to ready, the bucket requests and bytes read to get there, the query file through the
//! querier (the `query` scenario's load), every series of each selection streamed straight
//! from the store over gRPC (the `series` scenario's client), the bucket reads of that load,
//! the store's CPU and its peak RSS.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;

use super::current::{Figure, Recorded};
use super::peers::{thanos, thanos_query};
use super::report::{Figures, machine_description, ratio, utc_now};
use super::scenarios::{
    QueryLoad, block_dirs_in, block_series, blocks, input_name, input_text, objstore_file,
    series_suffix, start_gauntlet, thanos_bucket,
};
use super::series::{self, Api, Selection};
use super::server::{Server, gauntlet_has};
use super::{RunError, RunOptions};

/// What the `store` scenario takes beyond the common options.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Copies of the generated blocks in the bucket, copy `i` with the external label
    /// `cluster="c<i>"`.
    pub copies: usize,
    /// The selections streamed over gRPC.
    pub selectors: Vec<String>,
    /// Measured passes per selection (after one warm-up pass); the best is reported.
    pub passes: usize,
}

/// Requests and bytes a store read from the bucket, by its own metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct BucketReads {
    requests: f64,
    bytes: f64,
}

impl BucketReads {
    fn since(self, earlier: BucketReads) -> BucketReads {
        BucketReads {
            requests: self.requests - earlier.requests,
            bytes: self.bytes - earlier.bytes,
        }
    }

    fn mib(self) -> f64 {
        self.bytes / 1048576.0
    }
}

/// Which store: they name their bucket metrics differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauntlet,
    Thanos,
}

impl Kind {
    /// The store's bucket reads so far: operations of every kind (Thanos's objstore counter,
    /// which Gauntlet's store exposes under the same name) and bytes fetched (Thanos:
    /// `thanos_objstore_bucket_operation_fetched_bytes_total`; Gauntlet:
    /// `gauntlet_objstore_bucket_read_bytes_total`).
    fn reads(self, s: &Server) -> BucketReads {
        let bytes = match self {
            Kind::Gauntlet => "gauntlet_objstore_bucket_read_bytes_total",
            Kind::Thanos => "thanos_objstore_bucket_operation_fetched_bytes_total",
        };
        BucketReads {
            requests: s
                .metric_sum("thanos_objstore_bucket_operations_total")
                .unwrap_or(f64::NAN),
            bytes: s.metric_sum(bytes).unwrap_or(f64::NAN),
        }
    }
}

/// One store's figures.
struct Side {
    system: String,
    /// From the spawn to `/-/ready`, s.
    ready_s: f64,
    /// Bucket reads until ready.
    to_ready: BucketReads,
    /// Bucket reads during the query load and the streaming.
    during_load: BucketReads,
    /// The query load through the querier (its CPU and RSS are the store's).
    query: Figures,
    /// Series streamed straight from the store.
    series: series::Side,
    /// Store CPU from ready to the end, s.
    cpu_s: Option<f64>,
}

/// Reads every index file of the bucket once, so both stores start with the same page cache:
/// "cold" is a store with no index-header on disk, not a machine that never read the bucket.
fn warm_indexes(bucket: &Path) -> Result<(), RunError> {
    let mut buf = vec![0u8; 1 << 20];
    for b in block_dirs_in(bucket) {
        let mut f = std::fs::File::open(b.join("index"))?;
        while f.read(&mut buf)? > 0 {}
    }
    Ok(())
}

/// Starts one store over `objstore` from an empty data directory, its querier in front, and
/// measures it.
fn side(
    o: &RunOptions,
    kind: Kind,
    bucket: &Path,
    objstore: &Path,
    load: &QueryLoad,
    sels: &[Selection],
    passes: usize,
) -> Result<Side, RunError> {
    let name = match kind {
        Kind::Gauntlet => "gauntlet",
        Kind::Thanos => "thanos",
    };
    let data = o.work_dir.join(format!("store-{name}-data"));
    let _ = std::fs::remove_dir_all(&data);
    warm_indexes(bucket)?;
    let args = [
        format!("--objstore.config-file={}", objstore.display()),
        format!("--data-dir={}", data.display()),
    ];
    let (mut store, grpc) = match kind {
        Kind::Gauntlet => start_gauntlet(
            o,
            &format!("store-{name}"),
            "store",
            &args,
            &o.gauntlet_extra_args,
        )?,
        Kind::Thanos => {
            let t = thanos(o, &format!("store-{name}"), "store", "", &args)?;
            (t.server, t.grpc)
        }
    };
    let ready_s = store.started_in.map_or(f64::NAN, |d| d.as_secs_f64());
    let to_ready = kind.reads(&store);
    let cpu0 = store.stats();
    eprintln!(
        "{}: ready in {ready_s:.2} s after {} bucket requests, {:.1} MiB",
        store.name,
        to_ready.requests,
        to_ready.mib()
    );
    let mut q = thanos_query(
        o,
        &format!("store-{name}-query"),
        "",
        std::slice::from_ref(&grpc),
        &[],
    )?;
    let mut query = load.measure(&q)?;
    q.stop();
    // The querier's process figures are not the store's: take the store's over the load.
    let cpu1 = store.stats();
    query.cpu_s = cpu0.zip(cpu1).map(|(a, b)| b.cpu_s - a.cpu_s);
    query.peak_rss_bytes = cpu1.map(|s| s.peak_rss_bytes);
    query.system = store.name.clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let url = format!("http://{grpc}");
    let series = rt.block_on(series::measure_side(&store, Api::Store(&url), sels, passes))?;
    drop(rt);
    let during_load = kind.reads(&store).since(to_ready);
    let end = store.stats();
    store.stop();
    Ok(Side {
        system: store.name.clone(),
        ready_s,
        to_ready,
        during_load,
        query,
        cpu_s: cpu0.zip(end).map(|(a, b)| b.cpu_s - a.cpu_s),
        series,
    })
}

/// The `store` scenario (see the module's documentation): Gauntlet's store first, then
/// Thanos's, each when its binary is given.
pub fn store(o: &RunOptions, so: &StoreOptions) -> Result<Recorded, RunError> {
    let src = blocks(o)?;
    let copies: Vec<Vec<(String, String)>> = (0..so.copies.max(1))
        .map(|i| vec![("cluster".to_string(), format!("c{i}"))])
        .collect();
    let name = src
        .file_name()
        .map_or("blocks".into(), |n| n.to_string_lossy().into_owned());
    let bucket = thanos_bucket(
        &src,
        &o.work_dir.join(format!("store-{name}-x{}", copies.len())),
        &copies,
    )?;
    let objstore = objstore_file(&o.work_dir.join("store-objstore.yml"), &bucket)?;
    let load = QueryLoad::of(o)?;
    let (start, end) = (o.data.start_ms, o.data.start_ms + o.data.duration_ms);
    let sels = so
        .selectors
        .iter()
        .map(|t| Selection::parse(t, start, end))
        .collect::<Result<Vec<_>, _>>()?;
    let mut gauntlet = None;
    if let Some(bin) = &o.gauntlet_bin {
        if gauntlet_has(bin, "store") {
            gauntlet = Some(side(
                o,
                Kind::Gauntlet,
                &bucket,
                &objstore,
                &load,
                &sels,
                so.passes,
            )?);
        } else {
            eprintln!("{}: no `store` subcommand", bin.display());
        }
    }
    let thanos = match &o.thanos_bin {
        Some(_) => Some(side(
            o,
            Kind::Thanos,
            &bucket,
            &objstore,
            &load,
            &sels,
            so.passes,
        )?),
        None => None,
    };
    if gauntlet.is_none() && thanos.is_none() {
        return Err(RunError::Start(
            "`run store` needs --gauntlet-bin, a Thanos binary, or both".into(),
        ));
    }
    let series = block_series(&bucket);
    let mut input = input_name(o, &[]);
    if copies.len() > 1 {
        input.push_str(&format!(", {} clusters", copies.len()));
    }
    input.push_str(&series_suffix(&series));
    let section = render(
        o,
        &bucket,
        copies.len(),
        &load,
        gauntlet.as_ref(),
        thanos.as_ref(),
    );
    Ok(Recorded {
        scenario: "store",
        input,
        section,
        figures: figures(o.concurrency, gauntlet.as_ref(), thanos.as_ref()),
    })
}

/// The figures for the current table: Gauntlet's store and Thanos's.
fn figures(concurrency: usize, g: Option<&Side>, t: Option<&Side>) -> Vec<Figure> {
    let f = |name: &str, v: &dyn Fn(&Side) -> Option<f64>, d: usize| {
        Figure::new(name, g.and_then(v), None, d).with_peers(t.and_then(v), None)
    };
    let mut out = vec![
        f(
            &format!("queries/s through `thanos query` at concurrency {concurrency}"),
            &|s| Some(s.query.throughput),
            1,
        ),
        f("latency p50, ms", &|s| Some(s.query.p50_ms), 1),
        f("latency p99, ms", &|s| Some(s.query.p99_ms), 1),
    ];
    let selectors: Vec<String> = g
        .or(t)
        .map(|s| s.series.rows.iter().map(|r| r.selector.clone()).collect())
        .unwrap_or_default();
    for (i, sel) in selectors.iter().enumerate() {
        out.push(f(
            &format!("series/s over gRPC, `{sel}`"),
            &|s| {
                s.series
                    .rows
                    .get(i)
                    .map(|r| r.best.series as f64 / r.best.best_seconds())
            },
            0,
        ));
        out.push(f(
            &format!("store CPU s per pass, `{sel}`"),
            &|s| s.series.rows.get(i).and_then(|r| r.cpu_s),
            2,
        ));
    }
    out.extend([
        f(
            "peak RSS of the store, MiB",
            &|s| s.series.peak_rss.map(|b| b as f64 / 1048576.0),
            0,
        ),
        f(
            "start to ready on a cold bucket (no index-headers), s",
            &|s| Some(s.ready_s),
            2,
        ),
        f(
            "bucket requests to ready",
            &|s| Some(s.to_ready.requests),
            0,
        ),
        f("bucket MiB read to ready", &|s| Some(s.to_ready.mib()), 2),
        f(
            "bucket requests during the load",
            &|s| Some(s.during_load.requests),
            0,
        ),
        f(
            "bucket MiB read during the load",
            &|s| Some(s.during_load.mib()),
            2,
        ),
    ]);
    out
}

/// The section: the stores' table, the streaming table, whether both streamed the same.
fn render(
    o: &RunOptions,
    bucket: &Path,
    copies: usize,
    load: &QueryLoad,
    g: Option<&Side>,
    t: Option<&Side>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## {} — `run store`\n", utc_now());
    let _ = writeln!(s, "Machine: {}.", machine_description());
    let _ = writeln!(
        s,
        "Input: {}; {copies} cop{} of the blocks, each with its own external label \
         `cluster`, {} blocks in one FILESYSTEM bucket; each store from an empty data \
         directory (the bucket's index files read once before each start, so both find them in \
         the page cache), behind its own `thanos query`; {} ({} queries), one warm-up pass then \
         {} s at concurrency {}; then each selection streamed straight from the store over gRPC \
         ({} series per message asked), one warm-up pass then the best of the measured passes. \
         CPU and peak RSS are the store's, not the querier's.",
        input_text(o),
        if copies == 1 { "y" } else { "ies" },
        block_dirs_in(bucket).len(),
        o.queries.display(),
        load.queries.len(),
        o.duration.as_secs(),
        o.concurrency,
        series::RESPONSE_BATCH,
    );
    let _ = writeln!(s, "Command: `{}`\n", o.command_line);
    let _ = writeln!(
        s,
        "| system | start to ready s | to ready: bucket requests | to ready: bucket MiB | \
         queries/s | p50 ms | p99 ms | store CPU s over the queries | load: bucket requests | \
         load: bucket MiB | store CPU s after ready | peak RSS MiB | notes |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let opt = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    let sides: Vec<&Side> = g.into_iter().chain(t).collect();
    for x in &sides {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} | {} | {:.0} | {:.2} | {} | {} | {} |",
            x.system,
            x.ready_s,
            x.to_ready.requests,
            x.to_ready.mib(),
            x.query.throughput,
            x.query.p50_ms,
            x.query.p99_ms,
            opt(x.query.cpu_s, 2),
            x.during_load.requests,
            x.during_load.mib(),
            opt(x.cpu_s, 2),
            opt(x.series.peak_rss.map(|b| b as f64 / 1048576.0), 0),
            x.query.notes
        );
    }
    if let (Some(g), Some(t)) = (g, t) {
        let r = |a: f64, b: f64| ratio(a, b);
        let ro = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "n/a".into(),
        };
        let mib = |x: &Side| x.series.peak_rss.map(|b| b as f64);
        let _ = writeln!(
            s,
            "| Gauntlet / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | |",
            t.system,
            r(g.ready_s, t.ready_s),
            r(g.to_ready.requests, t.to_ready.requests),
            r(g.to_ready.bytes, t.to_ready.bytes),
            r(g.query.throughput, t.query.throughput),
            r(g.query.p50_ms, t.query.p50_ms),
            r(g.query.p99_ms, t.query.p99_ms),
            ro(g.query.cpu_s, t.query.cpu_s),
            r(g.during_load.requests, t.during_load.requests),
            r(g.during_load.bytes, t.during_load.bytes),
            ro(g.cpu_s, t.cpu_s),
            ro(mib(g), mib(t)),
        );
    }
    let _ = writeln!(
        s,
        "\n| selector | system | series | series/s | chunks | bytes received | store CPU s per pass |\n\
         |---|---|---|---|---|---|---|"
    );
    let mut agree = true;
    if let Some(first) = sides.first() {
        for (i, row) in first.series.rows.iter().enumerate() {
            for x in &sides {
                let Some(r) = x.series.rows.get(i) else {
                    continue;
                };
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {:.0} | {} | {} | {} |",
                    r.selector,
                    x.system,
                    r.best.series,
                    r.best.series as f64 / r.best.best_seconds(),
                    r.best.chunks,
                    r.best.wire_bytes,
                    opt(r.cpu_s, 2)
                );
                if (r.best.series, r.best.chunks, r.best.chunk_bytes)
                    != (row.best.series, row.best.chunks, row.best.chunk_bytes)
                {
                    agree = false;
                }
            }
        }
    }
    if sides.len() > 1 {
        let _ = writeln!(
            s,
            "\n{}",
            if agree {
                "Both stores streamed the same number of series, chunks and chunk bytes for every \
                 selection."
            } else {
                "**The stores disagree on series, chunks or chunk bytes for some selection** (see \
                 the rows)."
            }
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_reads_are_taken_between_two_readings() {
        let a = BucketReads {
            requests: 10.0,
            bytes: 1048576.0,
        };
        let b = BucketReads {
            requests: 25.0,
            bytes: 3.0 * 1048576.0,
        };
        assert_eq!(
            b.since(a),
            BucketReads {
                requests: 15.0,
                bytes: 2.0 * 1048576.0
            }
        );
        assert_eq!(b.since(a).mib(), 2.0);
    }
}
