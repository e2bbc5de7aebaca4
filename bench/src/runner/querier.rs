//! The peers of the `query` scenario. Queriers: `gauntlet query` and `thanos query` (with its
//! two engines, `--query.promql-engine=prometheus` and `thanos`) over one `gauntlet store` of
//! the same blocks, so the querier alone differs. VictoriaMetrics single-node: the same query
//! file over the same samples, imported through its remote-write endpoint.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::current::Figure;
use super::peers::{thanos_query, victoria, victoria_flush, wait_endpoints};
use super::report::{Figures, ratio};
use super::scenarios::{QueryLoad, median, start_gauntlet};
use super::server::{Server, gauntlet_has};
use super::{RunError, RunOptions};
use crate::datagen::GenConfig;
use crate::load::http::{Conn, Endpoint};
use crate::load::query::QuerySpec;
use crate::remote_write::{BatchConfig, EncodedRequest, encode_each};

/// How long a querier may take to see the store healthy.
const ENDPOINT_WAIT: Duration = Duration::from_secs(120);

/// Connections the import into VictoriaMetrics sends over.
const IMPORT_CONNECTIONS: usize = 4;

/// The queriers' figures: one side per querier, each with its per-query medians alone.
pub(super) struct Queriers {
    /// The store they all read (`gauntlet store VERSION`).
    store: String,
    /// `gauntlet query`, `thanos query` with the Prometheus engine, with the Thanos engine.
    sides: Vec<(Figures, Vec<f64>)>,
    /// Queries whose answers differ between `gauntlet query` and `thanos query` (Prometheus
    /// engine), with what differs.
    diffs: Vec<crate::load::diff::Difference>,
}

/// The figure names' prefix in the current table.
const PREFIX: &str = "querier over one `gauntlet store`";

impl Queriers {
    /// The section's part: a table per querier and the per-query medians.
    pub(super) fn render(&self, queries: &[QuerySpec]) -> String {
        let mut s = format!(
            "\nQueriers over one `{}` of the same blocks (the store's defaults; each querier \
             measured alone as above, the store shared): `gauntlet query`, and `thanos query` \
             with `--query.promql-engine=prometheus` and `=thanos`.\n\n\
             | system | queries/s | p50 ms | p99 ms | querier CPU s | querier peak RSS MiB | \
             median alone ms | notes |\n|---|---|---|---|---|---|---|---|\n",
            self.store
        );
        let mib = |f: &Figures| {
            f.peak_rss_bytes
                .map_or("n/a".into(), |b| format!("{:.0}", b as f64 / 1048576.0))
        };
        for (f, alone) in &self.sides {
            let _ = writeln!(
                s,
                "| {} | {:.1} | {:.2} | {:.2} | {} | {} | {:.1} | {} |",
                f.system,
                f.throughput,
                f.p50_ms,
                f.p99_ms,
                f.cpu_s.map_or("n/a".into(), |c| format!("{c:.2}")),
                mib(f),
                median(&mut alone.clone()),
                f.notes
            );
        }
        if let Some((g, galone)) = self.sides.first() {
            for (t, talone) in &self.sides[1..] {
                let _ = writeln!(
                    s,
                    "| Gauntlet / {} | {} | {} | {} | {} | {} | {} | |",
                    t.system,
                    ratio(g.throughput, t.throughput),
                    ratio(g.p50_ms, t.p50_ms),
                    ratio(g.p99_ms, t.p99_ms),
                    match (g.cpu_s, t.cpu_s) {
                        (Some(a), Some(b)) => ratio(a, b),
                        _ => "n/a".into(),
                    },
                    match (g.peak_rss_bytes, t.peak_rss_bytes) {
                        (Some(a), Some(b)) => ratio(a as f64, b as f64),
                        _ => "n/a".into(),
                    },
                    ratio(median(&mut galone.clone()), median(&mut talone.clone())),
                );
            }
        }
        let _ = writeln!(
            s,
            "\n{} of {} queries answer differently through `gauntlet query` and `thanos query` \
             (Prometheus engine){}",
            self.diffs.len(),
            queries.len(),
            if self.diffs.is_empty() {
                ".".to_string()
            } else {
                format!(
                    ": {}.",
                    self.diffs
                        .iter()
                        .take(10)
                        .map(|d| format!("line {} `{}`", d.line, d.expr.replace('|', "\\|")))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        let _ = write!(
            s,
            "\nPer query through each querier, alone (median of the runs, the queriers taking \
             turns query by query), ms:\n\n| line | query |"
        );
        for (f, _) in &self.sides {
            let _ = write!(s, " {} |", f.system);
        }
        s.push_str("\n|---|---|");
        s.push_str(&"---|".repeat(self.sides.len()));
        s.push('\n');
        for (i, q) in queries.iter().enumerate() {
            let _ = write!(s, "| {} | `{}` |", q.line, q.expr.replace('|', "\\|"));
            for (_, alone) in &self.sides {
                let _ = write!(s, " {:.1} |", alone.get(i).copied().unwrap_or(f64::NAN));
            }
            s.push('\n');
        }
        s
    }

    /// The figures for the current table: Gauntlet's querier against Thanos's with each engine.
    pub(super) fn figures(&self, concurrency: usize) -> Vec<Figure> {
        let Some((g, galone)) = self.sides.first() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (t, talone) in &self.sides[1..] {
            let engine = t.system.rsplit(' ').next().unwrap_or("");
            let rss = |f: &Figures| f.peak_rss_bytes.map(|b| b as f64 / 1048576.0);
            let rows = [
                (
                    format!("queries/s at concurrency {concurrency}"),
                    Some(g.throughput),
                    Some(t.throughput),
                    1,
                ),
                ("latency p50, ms".into(), Some(g.p50_ms), Some(t.p50_ms), 1),
                ("latency p99, ms".into(), Some(g.p99_ms), Some(t.p99_ms), 1),
                (
                    "median latency of the queries run alone, ms".into(),
                    Some(median(&mut galone.clone())),
                    Some(median(&mut talone.clone())),
                    1,
                ),
                ("peak RSS of the querier, MiB".into(), rss(g), rss(t), 0),
            ];
            for (name, gv, tv, d) in rows {
                out.push(
                    Figure::new(&format!("{PREFIX}, Thanos {engine}: {name}"), gv, None, d)
                        .with_peers(tv, None),
                );
            }
        }
        out
    }
}

/// The queriers' comparison: needs a Gauntlet binary with `store` and `query` and a Thanos
/// binary; `None` without them. The store serves the blocks in `src` as a FILESYSTEM bucket.
pub(super) fn queriers(
    o: &RunOptions,
    src: &Path,
    load: &QueryLoad,
) -> Result<Option<Queriers>, RunError> {
    let (Some(bin), Some(_)) = (&o.gauntlet_bin, &o.thanos_bin) else {
        return Ok(None);
    };
    if !gauntlet_has(bin, "store") || !gauntlet_has(bin, "query") || o.target_url.is_some() {
        return Ok(None);
    }
    let dir = o.work_dir.join("queriers");
    let _ = std::fs::remove_dir_all(&dir);
    let objstore = super::scenarios::objstore_file(&dir.join("objstore.yml"), src)?;
    let (store, store_grpc) = start_gauntlet(
        o,
        "queriers/store",
        "store",
        &[
            format!("--objstore.config-file={}", objstore.display()),
            format!("--data-dir={}", dir.join("store-data").display()),
        ],
        &[],
    )?;
    let endpoints = [store_grpc];
    let (gq, _) = start_gauntlet(
        o,
        "queriers/gauntlet-query",
        "query",
        &[format!("--endpoint={}", endpoints[0])],
        &[],
    )?;
    wait_endpoints(&gq, &endpoints, ENDPOINT_WAIT)?;
    let mut servers = vec![gq];
    for engine in ["prometheus", "thanos"] {
        servers.push(thanos_query(
            o,
            &format!("queriers/thanos-query-{engine}"),
            &format!("engine {engine}"),
            &endpoints,
            &[format!("--query.promql-engine={engine}")],
        )?);
    }
    let mut figures = Vec::new();
    for s in &servers {
        figures.push(load.measure(s)?);
    }
    let diffs = load.diff(&servers[0], &servers[1])?;
    for d in diffs.iter().take(20) {
        eprintln!("queriers differ: line {} `{}`: {}", d.line, d.expr, d.what);
    }
    let refs: Vec<&Server> = servers.iter().collect();
    let alone = load.alone(&refs)?;
    Ok(Some(Queriers {
        store: store.name.clone(),
        sides: figures.into_iter().zip(alone).collect(),
        diffs,
    }))
}

/// VictoriaMetrics single-node over the data of `g` imported through `/api/v1/write` (the same
/// samples the blocks hold, stale markers included): the query load as on every side, then
/// each query alone; its figures and per-query medians.
pub(super) fn victoria_side(
    o: &RunOptions,
    g: &GenConfig,
    load: &QueryLoad,
) -> Result<(Figures, Vec<f64>), RunError> {
    let data = o.work_dir.join("query-victoria-data");
    let _ = std::fs::remove_dir_all(&data);
    // The generated data lies in the past: keep it all, and let no query time out sooner than
    // the other sides' (2 min).
    let vm = victoria(
        o,
        "query-victoria",
        &data,
        &[
            "-retentionPeriod=100y".to_string(),
            "-search.maxQueryDuration=2m".to_string(),
        ],
    )?;
    let t = Instant::now();
    let (samples, stream) = import(g, &format!("{}/api/v1/write", vm.url))?;
    victoria_flush(&vm)?;
    eprintln!(
        "{}: imported {samples} samples of {} series in {:.1} s",
        vm.name,
        stream,
        t.elapsed().as_secs_f64()
    );
    let mut f = load.measure(&vm)?;
    f.notes
        .push_str(&format!("; {samples} samples imported by remote write"));
    let alone = load.alone(&[&vm])?.pop().unwrap_or_default();
    Ok((f, alone))
}

/// Sends the data of `g` once to the remote-write endpoint `url`, generated and encoded as it
/// goes (the whole data set need not fit in memory) over [`IMPORT_CONNECTIONS`] connections;
/// a request not answered 2xx is an error. Returns the samples and series sent.
pub(super) fn import(g: &GenConfig, url: &str) -> Result<(u64, usize), RunError> {
    let ep = Endpoint::parse(url)?;
    let batch = BatchConfig {
        shards: IMPORT_CONNECTIONS,
        ..BatchConfig::default()
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<EncodedRequest>(64);
    let cfg = g.clone();
    let producer = std::thread::spawn(move || {
        encode_each(&cfg, &batch, |r| {
            tx.blocking_send(r)
                .map_err(|_| RunError::Other("the import stopped".into()))
        })
    });
    let rt = crate::load::http::runtime()?;
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let sent: Result<u64, RunError> = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..IMPORT_CONNECTIONS {
            let (rx, ep) = (rx.clone(), ep.clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::new(&ep, Duration::from_secs(120));
                let mut samples = 0u64;
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some(r) = next else {
                        return Ok(samples);
                    };
                    let a = conn
                        .send(
                            hyper::Method::POST,
                            None,
                            crate::load::remote_write::HEADERS,
                            Bytes::from(r.body),
                        )
                        .await?;
                    if !(200..300).contains(&a.status) {
                        return Err(RunError::Other(format!(
                            "import: status {}: {}",
                            a.status,
                            String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
                        )));
                    }
                    samples += u64::from(r.samples);
                }
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t
                .await
                .map_err(|e| RunError::Other(format!("import task: {e}")))??;
        }
        Ok(total)
    });
    // A failed sender drops the receiver, which ends the producer with an error.
    drop(rx);
    let stream = producer
        .join()
        .map_err(|_| RunError::Other("the import's generator panicked".into()))??;
    Ok((sent?, stream.series))
}
