//! `ingest`: each side gets the same remote-write stream flat out (or at `rate`) for
//! `duration` over `connections` connections. While the load runs: acknowledged samples/s,
//! request latency, server CPU and RSS. After it: the server's own count of active series,
//! every sample counted back with `sum(count_over_time(…))` per metric name, then the server
//! killed with SIGKILL and started again over its data directory, timed until ready (the WAL
//! replay).
//!
//! The sides, one after the other: Prometheus (`--web.enable-remote-write-receiver`), Gauntlet,
//! and when their binaries are given `thanos receive` and VictoriaMetrics single-node
//! (`/api/v1/write`). Gauntlet is `gauntlet all` (the receiver with its PromQL API in one
//! process), or `gauntlet receive` when Thanos's receiver is measured, so the two receivers
//! compare one to one. A receiver with only a StoreAPI is counted through a `thanos query` put
//! in front of it for the count (and, after the restart, a new one for its series: Thanos's
//! receiver cuts its head into a block as it starts, so its head gauge reads 0 then).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::load::remote_write as rwload;
use crate::load::stats::RssSampler;
use crate::remote_write::{BatchConfig, RemoteWriteStream, encode_stream};

use super::current::{Figure, Recorded};
use super::peers::{thanos, thanos_query, victoria, victoria_flush, victoria_series};
use super::report::{Figures, ratio, render_sides};
use super::scenarios::{
    all_side_figures, baseline, count_samples, count_series, input_name, input_text, now_ms,
    series_suffix, target_with,
};
use super::server::{Server, free_port};
use super::{RunError, RunOptions};

/// How often the server's RSS is sampled while the load runs.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// How long a restarted server may take to replay its WAL and answer `/-/ready`.
const RESTART_WAIT: Duration = Duration::from_secs(600);

/// The gauge Prometheus, Gauntlet and Thanos count their head's series with (Gauntlet's and
/// Thanos's have one per tenant).
const HEAD_SERIES: &str = "prometheus_tsdb_head_series";

/// The external label both StoreAPI receivers announce (Thanos's requires one).
const RECEIVE_LABEL: &str = "--label=receive=\"bench\"";

/// How a side is counted.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Counting {
    /// Its own PromQL API counts samples, its head gauge counts series (Prometheus, `gauntlet
    /// all`).
    Own,
    /// Only a StoreAPI at this `host:port`: a `thanos query` in front counts (`thanos receive`,
    /// `gauntlet receive`).
    Fronted(String),
    /// VictoriaMetrics: its own API counts after a flush, `/api/v1/series/count` counts series.
    Victoria,
}

/// What ingest measures on one side beyond the [`Figures`] every scenario has.
#[derive(Clone, Debug, Default, PartialEq)]
struct IngestFigures {
    /// System name and version.
    system: String,
    /// Samples in requests answered 2xx.
    acked_samples: u64,
    /// Server CPU during the load (user + system), s.
    cpu_s: Option<f64>,
    /// Peak RSS while the load ran, bytes.
    peak_rss_bytes: Option<u64>,
    /// Series in the server's head when the load ended, by its own count.
    head_series: Option<u64>,
    /// Time from the restart's spawn to `/-/ready` answering 200, s.
    restart_s: Option<f64>,
    /// Series in the head once the restarted server is ready.
    restart_series: Option<u64>,
}

impl IngestFigures {
    /// Server CPU seconds per million acknowledged samples.
    fn cpu_s_per_million(&self) -> Option<f64> {
        self.cpu_s
            .filter(|_| self.acked_samples > 0)
            .map(|c| c * 1e6 / self.acked_samples as f64)
    }

    /// Peak ingest RSS over active series, bytes.
    fn bytes_per_series(&self) -> Option<f64> {
        match (self.peak_rss_bytes, self.head_series) {
            (Some(b), Some(n)) if n > 0 => Some(b as f64 / n as f64),
            _ => None,
        }
    }
}

/// The table of memory, CPU and restart figures under the section's main table: the
/// baseline, the target and the `peers`, then the target's ratio to each.
fn render_table(
    base: &IngestFigures,
    target: Option<&IngestFigures>,
    peers: &[&IngestFigures],
) -> String {
    let cell = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    let count = |v: Option<u64>| cell(v.map(|n| n as f64), 0);
    let mib = |f: &IngestFigures| f.peak_rss_bytes.map(|b| b as f64 / 1048576.0);
    let mut s = format!(
        "\nActive series are the server's own `{HEAD_SERIES}` when the load ended (summed over \
         tenants; VictoriaMetrics: `/api/v1/series/count`); the RSS is sampled every {} ms while \
         the load runs, and `VmHWM`, reset at its start, read at its end; restart: SIGKILL after \
         the count, the same command over the same data directory, from the spawn to `/-/ready` \
         answering 200; series after it by the same gauges, or for a receiver with only a \
         StoreAPI through a `thanos query` in front of it (`count(last_over_time(…))` per metric \
         name).\n\n\
         | system | active series | peak RSS during ingest MiB | bytes per active series | \
         server CPU-s per million samples | restart to ready s | series after restart |\n\
         |---|---|---|---|---|---|---|\n",
        RSS_EVERY.as_millis()
    );
    for f in std::iter::once(base)
        .chain(target)
        .chain(peers.iter().copied())
    {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            f.system,
            count(f.head_series),
            cell(mib(f), 0),
            cell(f.bytes_per_series(), 0),
            cell(f.cpu_s_per_million(), 2),
            cell(f.restart_s, 2),
            count(f.restart_series),
        );
    }
    if let Some(t) = target {
        let r = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "n/a".into(),
        };
        let n = |v: Option<u64>| v.map(|n| n as f64);
        let others = std::iter::once(("ratio target / baseline".to_string(), base)).chain(
            peers
                .iter()
                .map(|p| (format!("Gauntlet / {}", p.system), *p)),
        );
        for (name, b) in others {
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {} | {} | {} | {} |",
                r(n(t.head_series), n(b.head_series)),
                r(mib(t), mib(b)),
                r(t.bytes_per_series(), b.bytes_per_series()),
                r(t.cpu_s_per_million(), b.cpu_s_per_million()),
                r(t.restart_s, b.restart_s),
                r(n(t.restart_series), n(b.restart_series)),
            );
        }
    }
    s
}

/// The figures for the current table: those of every scenario, then ingest's own, for each
/// side that ran.
fn figures(
    base: &SideFigures,
    target: Option<&SideFigures>,
    thanos: Option<&SideFigures>,
    victoria: Option<&SideFigures>,
) -> Vec<Figure> {
    let mut out = all_side_figures(
        "acknowledged samples/s",
        Some(&base.0),
        target.map(|t| &t.0),
        thanos.map(|t| &t.0),
        victoria.map(|t| &t.0),
    );
    let sides = [Some(base), target, thanos, victoria].map(|s| s.map(|s| &s.1));
    let figure = |name: &str, v: fn(&IngestFigures) -> Option<f64>, decimals| {
        let [p, g, t, vm] = sides.map(|s| s.and_then(v));
        Figure::new(name, g, p, decimals).with_peers(t, vm)
    };
    out.extend([
        figure(
            "active series (server's count)",
            |f| f.head_series.map(|n| n as f64),
            0,
        ),
        figure(
            "bytes per active series (peak ingest RSS)",
            IngestFigures::bytes_per_series,
            0,
        ),
        figure(
            "server CPU-s per million acknowledged samples",
            IngestFigures::cpu_s_per_million,
            2,
        ),
        figure("restart to ready after SIGKILL, s", |f| f.restart_s, 2),
        figure(
            "series after restart",
            |f| f.restart_series.map(|n| n as f64),
            0,
        ),
    ]);
    out
}

/// Loads `server` with `stream` at `write_url`, then counts, then restarts it.
fn run_side(
    o: &RunOptions,
    server: &mut Server,
    write_url: String,
    counting: &Counting,
    stream: RemoteWriteStream,
) -> Result<(Figures, IngestFigures), RunError> {
    let span = stream.span_ms;
    // The data starts an hour ago on the scrape grid, so a flat-out run stays near now.
    let interval = o.data.scrape_interval_ms;
    let data_start = (now_ms() - 3_600_000) / interval * interval;
    let opts = rwload::RemoteWriteOptions {
        url: write_url,
        rate: o.rate,
        duration: o.duration,
        timeout: Duration::from_secs(60),
        time_shift_ms: data_start - o.data.start_ms,
    };
    let before = server.stats();
    let sampler = server.pid.map(|p| RssSampler::start(p, RSS_EVERY));
    let rep = rwload::run(stream, &opts)?;
    let rss = sampler.map(RssSampler::finish);
    let after = server.stats();
    if *counting == Counting::Victoria {
        victoria_flush(server)?;
    }
    let head_series = match counting {
        Counting::Victoria => victoria_series(server),
        _ => server.metric_sum(HEAD_SERIES).map(|n| n as u64),
    };
    eprintln!("{}:\n{}", server.name, rep.render());
    let end = data_start + (rep.cycles as i64 + 1) * span;
    let qt = Instant::now();
    let counted = match counting {
        Counting::Fronted(grpc) => front(o, server, grpc)
            .and_then(|f| count_samples(&f, data_start, end))
            .ok(),
        _ => count_samples(server, data_start, end).ok(),
    };
    let count_s = qt.elapsed().as_secs_f64();
    let cpu_s = before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s);
    let mut notes = format!(
        "{} samples acknowledged; generator CPU {:.1}% of a core",
        rep.acked_samples,
        100.0 * rep.self_cpu_share()
    );
    match counted {
        Some(c) => notes.push_str(&format!(
            "; {c:.0} samples queryable (count took {count_s:.1} s{}; stale markers are not counted)",
            if matches!(counting, Counting::Fronted(_)) {
                ", through `thanos query`"
            } else {
                ""
            }
        )),
        None => notes.push_str("; queryable count not available"),
    }
    for (code, n) in &rep.non_2xx {
        notes.push_str(&format!("; {n}× HTTP {code}"));
    }
    if rep.transport_errors > 0 {
        notes.push_str(&format!("; {} transport errors", rep.transport_errors));
    }
    let (mut restart_s, mut restart_series) = (None, None);
    if server.pid.is_some() {
        match server.restart(RESTART_WAIT) {
            Ok(d) => {
                restart_s = Some(d.as_secs_f64());
                restart_series = match counting {
                    Counting::Own => server.metric_sum(HEAD_SERIES).map(|n| n as u64),
                    Counting::Victoria => victoria_series(server),
                    Counting::Fronted(grpc) => front(o, server, grpc)
                        .and_then(|f| count_series(&f, data_start, end))
                        .ok()
                        .map(|n| n as u64),
                };
                eprintln!(
                    "{}: ready {:.2} s after a restart with {} series",
                    server.name,
                    d.as_secs_f64(),
                    restart_series.map_or("?".into(), |n| n.to_string())
                );
            }
            Err(e) => notes.push_str(&format!("; restart failed: {e}")),
        }
    }
    let peak_rss_bytes = rss.map(|r| r.peak_bytes());
    let figures = Figures {
        system: server.name.clone(),
        throughput: rep.acked_samples_per_s(),
        p50_ms: rep.latency_p50_ms,
        p99_ms: rep.latency_p99_ms,
        cpu_s,
        peak_rss_bytes,
        notes,
    };
    let ingest = IngestFigures {
        system: server.name.clone(),
        acked_samples: rep.acked_samples,
        cpu_s,
        peak_rss_bytes,
        head_series,
        restart_s,
        restart_series,
    };
    Ok((figures, ingest))
}

/// A `thanos query` over the receiver `server`'s StoreAPI at `grpc`, for counting.
fn front(o: &RunOptions, server: &Server, grpc: &str) -> Result<Server, RunError> {
    let dir = format!("ingest-front-{}", server.pid.unwrap_or(0));
    thanos_query(o, &dir, "", &[grpc.to_string()], &[])
}

/// One side's figures: those of every scenario and ingest's own.
type SideFigures = (Figures, IngestFigures);

/// The `ingest` scenario (see the module's documentation).
pub fn ingest(o: &RunOptions) -> Result<Recorded, RunError> {
    let batch = BatchConfig {
        shards: o.connections,
        external_labels: vec![("replica".into(), "bench".into())],
        ..BatchConfig::default()
    };
    let t0 = Instant::now();
    let stream = encode_stream(&o.data, &batch)?;
    eprintln!(
        "encoded {} requests, {} series, {} samples in {:.1} s",
        stream.requests.len(),
        stream.series,
        stream.samples,
        t0.elapsed().as_secs_f64()
    );
    let series = stream.series as u64;
    let data = o.work_dir.join("ingest-prometheus-data");
    let _ = std::fs::remove_dir_all(&data);
    let extra = [
        "--web.enable-remote-write-receiver".to_string(),
        "--query.max-samples=1000000000".to_string(),
        "--query.timeout=10m".to_string(),
    ];
    let mut b = baseline(o, "ingest", &data, &extra)?;
    let write_url = if o.baseline_url.is_some() {
        b.url.clone()
    } else {
        format!("{}/api/v1/write", b.url)
    };
    let base = run_side(o, &mut b, write_url, &Counting::Own, stream.clone())?;
    b.stop();
    drop(b);
    // Thanos's receiver is compared with Gauntlet's; without it, `all` as before.
    let receive = o.thanos_bin.is_some();
    let tgt = gauntlet_side(o, receive, stream.clone())?;
    let thanos = match &o.thanos_bin {
        Some(_) => Some(thanos_side(o, stream.clone())?),
        None => None,
    };
    let vm = match &o.victoria_bin {
        Some(_) => Some(victoria_side(o, stream)?),
        None => None,
    };
    let peers: Vec<Figures> = thanos.iter().chain(&vm).map(|p| p.0.clone()).collect();
    let section = render_sides(
        "ingest",
        "acked samples/s",
        &format!(
            "{}; {} connections, {} s {}, 2000 samples per request, external label \
             replica=\"bench\"; peak RSS is the peak while the load ran, server CPU is over the load",
            input_text(o),
            o.connections,
            o.duration.as_secs(),
            o.rate
                .map_or("flat out".to_string(), |r| format!("at {r:.0} samples/s"))
        ),
        &o.command_line,
        Some(&base.0),
        tgt.as_ref().map(|t| &t.0),
        &peers,
    ) + &render_table(
        &base.1,
        tgt.as_ref().map(|t| &t.1),
        &thanos.iter().chain(&vm).map(|p| &p.1).collect::<Vec<_>>(),
    );
    let mut input = input_name(o, &[]);
    if receive && tgt.is_some() {
        input.push_str(", Gauntlet `receive`");
    }
    input.push_str(&series_suffix(&[series]));
    Ok(Recorded {
        scenario: "ingest",
        input,
        section,
        figures: figures(&base, tgt.as_ref(), thanos.as_ref(), vm.as_ref()),
    })
}

/// Gauntlet's side: `gauntlet all`, or with `receive` `gauntlet receive` (counted through a
/// `thanos query` in front of it, as Thanos's receiver is); `None` without a Gauntlet binary.
fn gauntlet_side(
    o: &RunOptions,
    receive: bool,
    stream: RemoteWriteStream,
) -> Result<Option<SideFigures>, RunError> {
    let gdata = o.work_dir.join("ingest-gauntlet-data");
    let _ = std::fs::remove_dir_all(&gdata);
    let (rw, grpc) = (free_port()?, free_port()?);
    let started = if receive {
        target_with(
            o,
            "ingest",
            "receive",
            &format!(
                "receive --tsdb.path={{data}} --http-address=127.0.0.1:{{http}} \
                 --grpc-address=127.0.0.1:{{storeapi}} --remote-write.address=127.0.0.1:{{rw}} \
                 {RECEIVE_LABEL}"
            ),
            &gdata,
            &[("rw", rw.to_string()), ("storeapi", grpc.to_string())],
        )?
    } else {
        // `all` rather than `receive`: the same receiver, plus the PromQL API the count needs.
        target_with(
            o,
            "ingest",
            "all",
            "all --http-address=127.0.0.1:{http} --grpc-address=127.0.0.1:{grpc} --data-dir={data} --remote-write.address=127.0.0.1:0",
            &gdata,
            &[],
        )?
    };
    let Some(mut t) = started else {
        return Ok(None);
    };
    let (url, counting) = match (o.target_url.is_some(), receive) {
        (true, _) => (t.url.clone(), Counting::Own),
        (false, true) => (
            format!("http://127.0.0.1:{rw}/api/v1/receive"),
            Counting::Fronted(format!("127.0.0.1:{grpc}")),
        ),
        (false, false) => (format!("{}/api/v1/receive", t.url), Counting::Own),
    };
    let f = run_side(o, &mut t, url, &counting, stream)?;
    t.stop();
    Ok(Some(f))
}

/// `thanos receive` (one node, no hashring: it ingests what it is sent) over an empty TSDB
/// directory.
fn thanos_side(o: &RunOptions, stream: RemoteWriteStream) -> Result<SideFigures, RunError> {
    let data = o.work_dir.join("ingest-thanos-data");
    let _ = std::fs::remove_dir_all(&data);
    let rw = free_port()?;
    let mut t = thanos(
        o,
        "ingest-thanos",
        "receive",
        "",
        &[
            format!("--tsdb.path={}", data.display()),
            format!("--remote-write.address=127.0.0.1:{rw}"),
            RECEIVE_LABEL.to_string(),
        ],
    )?;
    let url = format!("http://127.0.0.1:{rw}/api/v1/receive");
    let f = run_side(
        o,
        &mut t.server,
        url,
        &Counting::Fronted(t.grpc.clone()),
        stream,
    )?;
    t.server.stop();
    Ok(f)
}

/// VictoriaMetrics single-node over an empty data directory, written at `/api/v1/write`.
fn victoria_side(o: &RunOptions, stream: RemoteWriteStream) -> Result<SideFigures, RunError> {
    let data = o.work_dir.join("ingest-victoria-data");
    let _ = std::fs::remove_dir_all(&data);
    // Counting every sample back reads them all in one query per metric name.
    let mut vm = victoria(
        o,
        "ingest-victoria",
        &data,
        &[
            "-search.maxQueryDuration=10m".to_string(),
            "-search.maxSamplesPerQuery=1000000000000".to_string(),
        ],
    )?;
    let url = format!("{}/api/v1/write", vm.url);
    let f = run_side(o, &mut vm, url, &Counting::Victoria, stream)?;
    vm.stop();
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(system: &str, cpu_s: f64, rss_mib: u64, series: u64, restart_s: f64) -> IngestFigures {
        IngestFigures {
            system: system.into(),
            acked_samples: 20_000_000,
            cpu_s: Some(cpu_s),
            peak_rss_bytes: Some(rss_mib << 20),
            head_series: Some(series),
            restart_s: Some(restart_s),
            restart_series: Some(series),
        }
    }

    #[test]
    fn per_series_and_per_sample_figures() {
        let f = side("p", 50.0, 400, 100_000, 1.5);
        assert_eq!(f.cpu_s_per_million(), Some(2.5));
        assert_eq!(f.bytes_per_series(), Some(4194.304));
        let none = IngestFigures {
            head_series: Some(0),
            acked_samples: 0,
            ..f
        };
        assert_eq!(none.bytes_per_series(), None);
        assert_eq!(none.cpu_s_per_million(), None);
    }

    #[test]
    fn the_table_has_a_row_per_side_and_their_ratio() {
        let (b, t) = (
            side("prometheus", 50.0, 400, 100_000, 1.5),
            side("gauntlet", 15.0, 800, 100_000, 3.0),
        );
        let s = render_table(&b, Some(&t), &[]);
        assert!(
            s.contains("| prometheus | 100000 | 400 | 4194 | 2.50 | 1.50 | 100000 |\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "| ratio target / baseline | 1.00x | 2.00x | 2.00x | 0.30x | 2.00x | 1.00x |\n"
            ),
            "{s}"
        );
        let alone = render_table(
            &IngestFigures {
                system: "x".into(),
                ..Default::default()
            },
            None,
            &[],
        );
        assert!(
            alone.ends_with("| x | n/a | n/a | n/a | n/a | n/a | n/a |\n"),
            "{alone}"
        );
    }

    #[test]
    fn each_peer_gets_a_row_and_gauntlets_ratio_to_it() {
        let (b, t, th) = (
            side("prometheus", 50.0, 400, 100_000, 1.5),
            side("gauntlet receive", 15.0, 800, 100_000, 3.0),
            side("thanos receive", 30.0, 1600, 100_000, 6.0),
        );
        let s = render_table(&b, Some(&t), &[&th]);
        assert!(
            s.contains("| thanos receive | 100000 | 1600 | 16777 | 1.50 | 6.00 | 100000 |\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "| Gauntlet / thanos receive | 1.00x | 0.50x | 0.50x | 0.50x | 0.50x | 1.00x |\n"
            ),
            "{s}"
        );
        assert!(
            s.find("ratio target / baseline") < s.find("Gauntlet / thanos receive"),
            "the baseline's ratio first: {s}"
        );
    }

    #[test]
    fn the_current_table_gets_ingests_own_rows_after_the_common_ones() {
        let (b, t) = (
            side("prometheus", 50.0, 400, 100_000, 1.5),
            side("gauntlet", 15.0, 800, 100_000, 3.0),
        );
        let fig = |i: &IngestFigures| Figures {
            system: i.system.clone(),
            throughput: 1e6,
            p50_ms: 5.0,
            p99_ms: 10.0,
            cpu_s: i.cpu_s,
            peak_rss_bytes: i.peak_rss_bytes,
            notes: String::new(),
        };
        let v = side("victoria-metrics", 40.0, 300, 100_000, 2.0);
        let f = figures(
            &(fig(&b), b.clone()),
            Some(&(fig(&t), t.clone())),
            None,
            Some(&(fig(&v), v.clone())),
        );
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "acknowledged samples/s",
                "latency p50, ms",
                "latency p99, ms",
                "peak RSS, MiB",
                "active series (server's count)",
                "bytes per active series (peak ingest RSS)",
                "server CPU-s per million acknowledged samples",
                "restart to ready after SIGKILL, s",
                "series after restart",
            ]
        );
        assert_eq!(f[6].gauntlet, Some(0.75));
        assert_eq!(f[6].prometheus, Some(2.5));
        assert_eq!((f[6].thanos, f[6].victoria), (None, Some(2.0)));
        assert_eq!(f[0].victoria, Some(1e6));
    }
}
