//! `store`: the store gateway. `gauntlet store` and `thanos store` serve the same FILESYSTEM
//! bucket (generated blocks with a Thanos section, copied per cluster), one after the other,
//! each from an empty data directory (index-headers built from scratch) and behind its own
//! `thanos query`, as a Thanos user deploys them. Measured per store: the time from the spawn
//! to ready, the bucket requests and bytes read to get there, the query file through the
//! querier (the `query` scenario's load), every series of each selection streamed straight
//! from the store over gRPC (the `series` scenario's client), the bucket reads of that load,
//! the store's CPU and its peak RSS.
//!
//! Every step is bounded in time (the start and the querier's wait by their ready waits, the
//! query load by its duration and per-query timeout, each Series pass by
//! [`StoreOptions::pass_timeout`]), and a store that dies (the kernel's OOM killer at 10M
//! series), never gets ready or stops answering is recorded as such, in its row of the table,
//! with whatever it measured before; the other store is still measured.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::Path;
use std::time::Duration;

use super::current::{Figure, Recorded};
use super::peers::{thanos, thanos_name, thanos_query};
use super::report::{Figures, machine_description, ratio, utc_now};
use super::scenarios::{
    QueryLoad, block_dirs_in, block_series, blocks, gauntlet_name, input_name, input_text,
    objstore_file, series_suffix, start_gauntlet, thanos_bucket,
};
use super::series::{self, Row, Selection, Streamed};
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
    /// Longest a Series pass may take; a selection whose pass takes longer is recorded as
    /// timed out and the next one streamed.
    pub pass_timeout: Duration,
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

/// One store's figures; those of the steps after a failure are missing.
struct Side {
    system: String,
    /// From the spawn to `/-/ready`, s.
    ready_s: Option<f64>,
    /// Bucket reads until ready.
    to_ready: BucketReads,
    /// Bucket reads during the query load and the streaming.
    during_load: BucketReads,
    /// The query load through the querier (its CPU and RSS are the store's).
    query: Option<Figures>,
    /// Per selection, in order: its figures, or why it has none.
    series: Vec<Result<Row, String>>,
    /// Store CPU from ready to the end, s.
    cpu_s: Option<f64>,
    /// The store's peak RSS (`VmHWM`) last read while it ran, bytes.
    peak_rss: Option<u64>,
    /// Why the store's measurement stopped short: it did not get ready, it died (how, and in
    /// which step), or its querier never saw it.
    failure: Option<String>,
}

impl Side {
    fn new(system: String) -> Side {
        Side {
            system,
            ready_s: None,
            to_ready: BucketReads::default(),
            during_load: BucketReads::default(),
            query: None,
            series: Vec::new(),
            cpu_s: None,
            peak_rss: None,
            failure: None,
        }
    }

    /// The figures of selection `i`, when it was streamed.
    fn row(&self, i: usize) -> Option<&Row> {
        self.series.get(i).and_then(|r| r.as_ref().ok())
    }
}

/// How a process ended, read from `/proc/PID/stat` while it is a zombie: the runner reaps its
/// servers only when it stops them, so one that died on its own stays readable until then.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it (9, SIGKILL, is what the kernel's OOM killer sends).
    Signal(i32),
}

/// How process `pid` ended, from its `/proc/PID/stat` text `stat`: `None` while it runs.
fn ended_from_stat(stat: &str) -> Option<Ended> {
    // Fields resume after the command name's last ')': state is field 3, exit_code field 52.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    if !matches!(f.first(), Some(&("Z" | "X"))) {
        return None;
    }
    // A wait status: the signal in the low 7 bits, else the exit status in the next byte.
    let code: i32 = f.get(49)?.parse().ok()?;
    Some(match code & 0x7f {
        0 => Ended::Exited((code >> 8) & 0xff),
        sig => Ended::Signal(sig),
    })
}

/// Processes the kernel's OOM killer has killed since boot (`oom_kill` in `/proc/vmstat`).
fn oom_kills() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/vmstat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// Says how a store ended; `oom` is whether the OOM killer killed a process meanwhile.
fn describe(e: Ended, oom: bool) -> String {
    match e {
        Ended::Signal(9) if oom => "killed by the kernel's OOM killer (SIGKILL)".into(),
        Ended::Signal(sig) => format!("killed by signal {sig}"),
        Ended::Exited(code) => format!("exited with status {code}"),
    }
}

/// Watches a started store between steps: whether it still runs, and its peak RSS so far.
struct Watch {
    oom_before: Option<u64>,
    peak_rss: Option<u64>,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            oom_before: oom_kills(),
            peak_rss: None,
        }
    }

    /// Whether the OOM killer has killed a process since the watch began.
    fn oom_since(&self) -> bool {
        self.oom_before.zip(oom_kills()).is_some_and(|(a, b)| b > a)
    }

    /// How `store` ended, when it has; else its peak RSS is read.
    fn check(&mut self, store: &Server) -> Option<String> {
        let pid = store.pid?;
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                if let Some(e) = ended_from_stat(&stat) {
                    return Some(describe(e, self.oom_since()));
                }
            }
            Err(_) => return Some("gone".into()),
        }
        if let Some(s) = store.stats() {
            self.peak_rss = self.peak_rss.max(Some(s.peak_rss_bytes));
        }
        None
    }
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
/// measures it. A store that fails a step is returned with the figures before it and the
/// failure; only the runner's own failures (I/O, a bad option) are errors.
fn side(
    o: &RunOptions,
    kind: Kind,
    bucket: &Path,
    objstore: &Path,
    load: &QueryLoad,
    sels: &[Selection],
    so: &StoreOptions,
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
    let mut watch = Watch::new();
    let (started, system) = match kind {
        Kind::Gauntlet => (
            start_gauntlet(
                o,
                &format!("store-{name}"),
                "store",
                &args,
                &o.gauntlet_extra_args,
            ),
            o.gauntlet_bin
                .as_deref()
                .map_or("gauntlet store".into(), |b| gauntlet_name(b, "store")),
        ),
        Kind::Thanos => (
            thanos(o, &format!("store-{name}"), "store", "", &args).map(|t| (t.server, t.grpc)),
            o.thanos_bin
                .as_deref()
                .map_or("thanos store".into(), |b| thanos_name(b, "store")),
        ),
    };
    let mut out = Side::new(system);
    let (mut store, grpc) = match started {
        Ok(s) => s,
        // The server was killed and reaped on the way out; its error says how it ended.
        Err(RunError::Start(why)) => {
            let oom = if watch.oom_since() {
                "; the kernel's OOM killer killed a process meanwhile"
            } else {
                ""
            };
            out.failure = Some(format!("did not get ready: {why}{oom}"));
            eprintln!("{}: {}", out.system, out.failure.as_deref().unwrap_or(""));
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    out.system = store.name.clone();
    out.ready_s = store.started_in.map(|d| d.as_secs_f64());
    out.to_ready = kind.reads(&store);
    watch.check(&store);
    let cpu0 = store.stats();
    eprintln!(
        "{}: ready in {:.2} s after {} bucket requests, {:.1} MiB",
        store.name,
        out.ready_s.unwrap_or(f64::NAN),
        out.to_ready.requests,
        out.to_ready.mib()
    );
    let query_dir = format!("store-{name}-query");
    out.failure = measure(
        o, &mut store, &grpc, &query_dir, load, sels, so, &mut watch, &mut out,
    )?;
    if let Some(f) = &out.failure {
        eprintln!("{}: {f}", store.name);
    } else {
        out.during_load = kind.reads(&store).since(out.to_ready);
        watch.check(&store);
        out.cpu_s = cpu0.zip(store.stats()).map(|(a, b)| b.cpu_s - a.cpu_s);
    }
    out.peak_rss = watch.peak_rss;
    store.stop();
    Ok(out)
}

/// The query load through a querier, then the streaming, into `out`; returns why the store's
/// measurement stopped short, if it did.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, each argument a distinct input"
)]
fn measure(
    o: &RunOptions,
    store: &mut Server,
    grpc: &str,
    query_dir: &str,
    load: &QueryLoad,
    sels: &[Selection],
    so: &StoreOptions,
    watch: &mut Watch,
    out: &mut Side,
) -> Result<Option<String>, RunError> {
    let q = thanos_query(o, query_dir, "", &[grpc.to_string()], &[]);
    let mut q = match q {
        Ok(q) => q,
        Err(RunError::Start(why)) => {
            return Ok(Some(match watch.check(store) {
                Some(e) => format!("{e} before its querier saw it"),
                None => format!("its querier never saw it: {why}"),
            }));
        }
        Err(e) => return Err(e),
    };
    let before = store.stats();
    let mut query = load.measure(&q)?;
    q.stop();
    if let Some(e) = watch.check(store) {
        query
            .notes
            .push_str(&format!("; the store was {e} during the load"));
        out.query = Some(query);
        return Ok(Some(format!("{e} during the query load")));
    }
    // The querier's process figures are not the store's: take the store's over the load.
    let after = store.stats();
    query.cpu_s = before.zip(after).map(|(a, b)| b.cpu_s - a.cpu_s);
    query.peak_rss_bytes = after.map(|s| s.peak_rss_bytes);
    query.system = store.name.clone();
    out.query = Some(query);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let url = format!("http://{grpc}");
    for sel in sels {
        let row = rt.block_on(stream(store, &url, sel, so));
        if let Err(e) = &row {
            eprintln!("{} {}: {e}", store.name, sel.text);
        }
        out.series.push(row);
        if let Some(e) = watch.check(store) {
            let failure = format!("{e} while streaming `{}`", sel.text);
            while out.series.len() < sels.len() {
                out.series.push(Err("not run: the store had ended".into()));
            }
            return Ok(Some(failure));
        }
    }
    Ok(None)
}

/// One selection streamed straight from the store: a warm-up pass, then the measured passes,
/// each within `so.pass_timeout`; the best pass and the store's CPU per pass, or why not.
async fn stream(
    store: &Server,
    url: &str,
    sel: &Selection,
    so: &StoreOptions,
) -> Result<Row, String> {
    let pass = || async {
        match tokio::time::timeout(
            so.pass_timeout,
            series::store_series(url, sel, series::RESPONSE_BATCH, None),
        )
        .await
        {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("timed out after {} s", so.pass_timeout.as_secs())),
        }
    };
    pass().await.map_err(|e| format!("warm-up pass: {e}"))?;
    let before = store.stats();
    let mut best: Option<Streamed> = None;
    for _ in 0..so.passes.max(1) {
        let got = pass().await?;
        eprintln!(
            "{} {}: {} series, {} chunks, {} bytes in {:.3} s ({:.0} series/s)",
            store.name,
            sel.text,
            got.series,
            got.chunks,
            got.wire_bytes,
            got.seconds,
            got.series as f64 / got.seconds
        );
        if best.as_ref().is_none_or(|b| got.seconds < b.seconds) {
            best = Some(got);
        }
    }
    let after = store.stats();
    Ok(Row {
        selector: sel.text.clone(),
        best: best.unwrap_or_default(),
        cpu_s: before
            .zip(after)
            .map(|(b, a)| (a.cpu_s - b.cpu_s) / so.passes.max(1) as f64),
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
                so,
            )?);
        } else {
            eprintln!("{}: no `store` subcommand", bin.display());
        }
    }
    let thanos = match &o.thanos_bin {
        Some(_) => Some(side(o, Kind::Thanos, &bucket, &objstore, &load, &sels, so)?),
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
        &src,
        &bucket,
        copies.len(),
        &load,
        &sels,
        so.pass_timeout,
        gauntlet.as_ref(),
        thanos.as_ref(),
    );
    Ok(Recorded {
        scenario: "store",
        input,
        section,
        figures: figures(o.concurrency, &sels, gauntlet.as_ref(), thanos.as_ref()),
    })
}

/// The figures for the current table: Gauntlet's store and Thanos's (none for the steps a
/// store did not get through).
fn figures(
    concurrency: usize,
    sels: &[Selection],
    g: Option<&Side>,
    t: Option<&Side>,
) -> Vec<Figure> {
    let f = |name: &str, v: &dyn Fn(&Side) -> Option<f64>, d: usize| {
        Figure::new(name, g.and_then(v), None, d).with_peers(t.and_then(v), None)
    };
    let done = |s: &Side| s.failure.is_none();
    let mut out = vec![
        f(
            &format!("queries/s through `thanos query` at concurrency {concurrency}"),
            &|s| s.query.as_ref().filter(|_| done(s)).map(|q| q.throughput),
            1,
        ),
        f(
            "latency p50, ms",
            &|s| s.query.as_ref().filter(|_| done(s)).map(|q| q.p50_ms),
            1,
        ),
        f(
            "latency p99, ms",
            &|s| s.query.as_ref().filter(|_| done(s)).map(|q| q.p99_ms),
            1,
        ),
    ];
    for (i, sel) in sels.iter().enumerate() {
        out.push(f(
            &format!("series/s over gRPC, `{}`", sel.text),
            &|s| {
                s.row(i)
                    .map(|r| r.best.series as f64 / r.best.best_seconds())
            },
            0,
        ));
        out.push(f(
            &format!("store CPU s per pass, `{}`", sel.text),
            &|s| s.row(i).and_then(|r| r.cpu_s),
            2,
        ));
    }
    out.extend([
        f(
            "peak RSS of the store, MiB",
            &|s| s.peak_rss.filter(|_| done(s)).map(|b| b as f64 / 1048576.0),
            0,
        ),
        f(
            "start to ready on a cold bucket (no index-headers), s",
            &|s| s.ready_s,
            2,
        ),
        f(
            "bucket requests to ready",
            &|s| s.ready_s.map(|_| s.to_ready.requests),
            0,
        ),
        f(
            "bucket MiB read to ready",
            &|s| s.ready_s.map(|_| s.to_ready.mib()),
            2,
        ),
        f(
            "bucket requests during the load",
            &|s| done(s).then_some(s.during_load.requests),
            0,
        ),
        f(
            "bucket MiB read during the load",
            &|s| done(s).then_some(s.during_load.mib()),
            2,
        ),
    ]);
    out
}

/// Bytes of the files under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// The sentence on the input's scrape interval when it is not the generator's 15 s: a larger
/// one keeps a block of many series small enough to generate and serve (10M series at 60 s:
/// 120 samples a series in 2 h).
fn interval_note(o: &RunOptions, src: &Path) -> String {
    let g = &o.data;
    if g.scrape_interval_ms == crate::datagen::GenConfig::default().scrape_interval_ms {
        return String::new();
    }
    let samples = g.duration_ms / g.scrape_interval_ms;
    format!(
        " Scrapes every {} s rather than the usual 15 s, so a series holds {samples} samples \
         over the {} h: that keeps {} of blocks at {:.2} GiB on disk.",
        g.scrape_interval_ms as f64 / 1000.0,
        g.duration_ms as f64 / 3_600_000.0,
        series_suffix(&block_series(src))
            .trim()
            .trim_start_matches('(')
            .trim_end_matches(')'),
        dir_bytes(src) as f64 / (1u64 << 30) as f64,
    )
}

/// The section: the stores' table, the streaming table, whether both streamed the same, and
/// how each store that stopped short failed.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, each argument a distinct input"
)]
fn render(
    o: &RunOptions,
    src: &Path,
    bucket: &Path,
    copies: usize,
    load: &QueryLoad,
    sels: &[Selection],
    pass_timeout: Duration,
    g: Option<&Side>,
    t: Option<&Side>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## {} — `run store`\n", utc_now());
    let _ = writeln!(s, "Machine: {}.", machine_description());
    let _ = writeln!(
        s,
        "Input: {};{} {copies} cop{} of the blocks, each with its own external label \
         `cluster`, {} blocks in one FILESYSTEM bucket; each store from an empty data \
         directory (the bucket's index files read once before each start, so both find them in \
         the page cache), behind its own `thanos query`; {} ({} queries), one warm-up pass then \
         {} s at concurrency {}; then each selection streamed straight from the store over gRPC \
         ({} series per message asked), one warm-up pass then the best of the measured passes, \
         each pass given {} s. CPU and peak RSS are the store's, not the querier's. A store that \
         dies, never gets ready or times out is recorded as such and the run goes on.",
        input_text(o),
        interval_note(o, src),
        if copies == 1 { "y" } else { "ies" },
        block_dirs_in(bucket).len(),
        o.queries.display(),
        load.queries.len(),
        o.duration.as_secs(),
        o.concurrency,
        series::RESPONSE_BATCH,
        pass_timeout.as_secs(),
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
        let q = x.query.as_ref();
        let ready = x.ready_s.is_some();
        let done = x.failure.is_none();
        let mut notes = q.map_or(String::new(), |q| q.notes.clone());
        if let Some(f) = &x.failure {
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            notes.push_str(&format!("**{}**", f.replace('|', "/")));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            x.system,
            opt(x.ready_s, 2),
            opt(ready.then_some(x.to_ready.requests), 0),
            opt(ready.then(|| x.to_ready.mib()), 2),
            opt(q.map(|q| q.throughput), 1),
            opt(q.map(|q| q.p50_ms), 2),
            opt(q.map(|q| q.p99_ms), 2),
            opt(q.and_then(|q| q.cpu_s), 2),
            opt(done.then_some(x.during_load.requests), 0),
            opt(done.then(|| x.during_load.mib()), 2),
            opt(x.cpu_s, 2),
            opt(x.peak_rss.map(|b| b as f64 / 1048576.0), 0),
            notes
        );
    }
    if let (Some(g), Some(t)) = (g, t)
        && g.failure.is_none()
        && t.failure.is_none()
        && let (Some(gq), Some(tq)) = (&g.query, &t.query)
    {
        let r = |a: f64, b: f64| ratio(a, b);
        let ro = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "n/a".into(),
        };
        let rss = |x: &Side| x.peak_rss.map(|b| b as f64);
        let _ = writeln!(
            s,
            "| Gauntlet / {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | |",
            t.system,
            ro(g.ready_s, t.ready_s),
            r(g.to_ready.requests, t.to_ready.requests),
            r(g.to_ready.bytes, t.to_ready.bytes),
            r(gq.throughput, tq.throughput),
            r(gq.p50_ms, tq.p50_ms),
            r(gq.p99_ms, tq.p99_ms),
            ro(gq.cpu_s, tq.cpu_s),
            r(g.during_load.requests, t.during_load.requests),
            r(g.during_load.bytes, t.during_load.bytes),
            ro(g.cpu_s, t.cpu_s),
            ro(rss(g), rss(t)),
        );
    }
    let _ = writeln!(
        s,
        "\n| selector | system | series | series/s | chunks | bytes received | store CPU s per pass |\n\
         |---|---|---|---|---|---|---|"
    );
    let mut agree = true;
    for (i, sel) in sels.iter().enumerate() {
        let first = sides.iter().find_map(|x| x.row(i));
        for x in &sides {
            match x.series.get(i) {
                Some(Ok(r)) => {
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
                    if let Some(f) = first
                        && (r.best.series, r.best.chunks, r.best.chunk_bytes)
                            != (f.best.series, f.best.chunks, f.best.chunk_bytes)
                    {
                        agree = false;
                    }
                }
                Some(Err(e)) => {
                    let _ = writeln!(
                        s,
                        "| `{}` | {} | **{}** | | | | |",
                        sel.text,
                        x.system,
                        e.replace('|', "/")
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "| `{}` | {} | not run: the store had stopped | | | | |",
                        sel.text, x.system
                    );
                }
            }
        }
    }
    if sides.len() > 1 {
        let both = (0..sels.len()).any(|i| sides.iter().all(|x| x.row(i).is_some()));
        let _ = writeln!(
            s,
            "\n{}",
            if !both {
                "No selection was streamed by both stores."
            } else if agree {
                "Both stores streamed the same number of series, chunks and chunk bytes for every \
                 selection both streamed."
            } else {
                "**The stores disagree on series, chunks or chunk bytes for some selection** (see \
                 the rows)."
            }
        );
    }
    for x in &sides {
        if let Some(f) = &x.failure {
            let _ = writeln!(
                s,
                "\n{}: **{f}**; the figures after that step are missing.",
                x.system
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::PathBuf;

    use super::*;

    /// `/proc/PID/stat` of `child` once it has ended and is a zombie (not yet reaped).
    fn zombie_stat(child: &std::process::Child) -> String {
        let path = format!("/proc/{}/stat", child.id());
        for _ in 0..500 {
            let stat = std::fs::read_to_string(&path).expect("stat of an unreaped child");
            if ended_from_stat(&stat).is_some() {
                return stat;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{path}: still running after 5 s");
    }

    #[test]
    fn a_killed_or_exited_child_is_told_apart_from_a_running_one() {
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let running = std::fs::read_to_string(format!("/proc/{}/stat", sleeper.id()))
            .expect("stat of a running child");
        assert_eq!(ended_from_stat(&running), None);
        // What the OOM killer does: SIGKILL.
        sleeper.kill().expect("kill");
        assert_eq!(
            ended_from_stat(&zombie_stat(&sleeper)),
            Some(Ended::Signal(9))
        );
        let _ = sleeper.wait();

        let mut failing = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("spawn sh");
        assert_eq!(
            ended_from_stat(&zombie_stat(&failing)),
            Some(Ended::Exited(3))
        );
        let _ = failing.wait();

        assert_eq!(
            describe(Ended::Signal(9), true),
            "killed by the kernel's OOM killer (SIGKILL)"
        );
        assert_eq!(describe(Ended::Signal(9), false), "killed by signal 9");
        assert_eq!(describe(Ended::Exited(2), false), "exited with status 2");
        assert!(oom_kills().is_some(), "/proc/vmstat has oom_kill");
    }

    #[test]
    fn a_store_killed_before_ready_is_recorded_not_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A "store" that dies as an OOM-killed one does, before it answers anything.
        let bin = dir.path().join("gauntlet");
        std::fs::write(
            &bin,
            "#!/bin/sh\n[ \"$2\" = --help ] && exit 0\nkill -9 $$\n",
        )
        .expect("write script");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let bucket = dir.path().join("bucket");
        std::fs::create_dir_all(&bucket).expect("bucket");
        let o = RunOptions {
            prometheus_bin: None,
            prometheus_script: PathBuf::new(),
            gauntlet_bin: Some(bin),
            gauntlet_args: None,
            gauntlet_extra_args: Vec::new(),
            thanos_bin: None,
            victoria_bin: None,
            target_url: None,
            target_pid: None,
            baseline_url: None,
            baseline_pid: None,
            work_dir: dir.path().join("work"),
            results: None,
            recorded: PathBuf::new(),
            data: crate::datagen::GenConfig::default(),
            connections: 1,
            duration: Duration::from_secs(1),
            rate: None,
            queries: PathBuf::new(),
            concurrency: 1,
            command_line: String::new(),
        };
        let load = QueryLoad {
            queries: Vec::new(),
            start_ms: 0,
            end_ms: 1,
            concurrency: 1,
            duration: Duration::from_secs(1),
        };
        let so = StoreOptions {
            copies: 1,
            selectors: Vec::new(),
            passes: 1,
            pass_timeout: Duration::from_secs(1),
        };
        let objstore = objstore_file(&dir.path().join("objstore.yml"), &bucket).expect("yml");
        let side = side(&o, Kind::Gauntlet, &bucket, &objstore, &load, &[], &so)
            .expect("a dead store is a figure, not an error");
        let failure = side.failure.as_deref().unwrap_or("");
        assert!(failure.starts_with("did not get ready"), "{failure}");
        assert!(failure.contains("signal: 9"), "{failure}");
        assert_eq!(side.ready_s, None);
        assert!(side.query.is_none() && side.series.is_empty());
        let figures = figures(1, &[], Some(&side), None);
        assert!(figures.iter().all(|f| f.gauntlet.is_none()), "{figures:?}");
    }

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
