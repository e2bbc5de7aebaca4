//! `ingest`: each side gets the same remote-write stream flat out (or at `rate`) for
//! `duration` over `connections` connections. While the load runs: acknowledged samples/s,
//! request latency, server CPU and RSS. After it: the server's own count of active series,
//! every sample counted back with `sum(count_over_time(…))` per metric name, then the server
//! killed with SIGKILL and started again over its data directory, timed until ready (the WAL
//! replay).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::load::remote_write as rwload;
use crate::load::stats::RssSampler;
use crate::remote_write::{BatchConfig, RemoteWriteStream, encode_stream};

use super::current::{Figure, Recorded};
use super::report::{Figures, ratio, render};
use super::scenarios::{
    baseline, count_samples, input_name, input_text, now_ms, side_figures, target,
};
use super::server::Server;
use super::{RunError, RunOptions};

/// How often the server's RSS is sampled while the load runs.
const RSS_EVERY: Duration = Duration::from_millis(100);

/// How long a restarted server may take to replay its WAL and answer `/-/ready`.
const RESTART_WAIT: Duration = Duration::from_secs(600);

/// The gauge both servers count their head's series with (Gauntlet's has one per tenant).
const HEAD_SERIES: &str = "prometheus_tsdb_head_series";

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

/// The table of memory, CPU and restart figures under the section's main table.
fn render_table(base: &IngestFigures, target: Option<&IngestFigures>) -> String {
    let cell = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    let count = |v: Option<u64>| cell(v.map(|n| n as f64), 0);
    let mib = |f: &IngestFigures| f.peak_rss_bytes.map(|b| b as f64 / 1048576.0);
    let mut s = format!(
        "\nActive series are the server's own `{HEAD_SERIES}` when the load ended (summed over \
         tenants); the RSS is sampled every {} ms while the load runs, and `VmHWM`, reset at its \
         start, read at its end; restart: SIGKILL after the count, the same command over the same \
         data directory, from the spawn to `/-/ready` answering 200.\n\n\
         | system | active series | peak RSS during ingest MiB | bytes per active series | \
         server CPU-s per million samples | restart to ready s | series after restart |\n\
         |---|---|---|---|---|---|---|\n",
        RSS_EVERY.as_millis()
    );
    for f in std::iter::once(base).chain(target) {
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
        let _ = writeln!(
            s,
            "| ratio target / baseline | {} | {} | {} | {} | {} | {} |",
            r(n(t.head_series), n(base.head_series)),
            r(mib(t), mib(base)),
            r(t.bytes_per_series(), base.bytes_per_series()),
            r(t.cpu_s_per_million(), base.cpu_s_per_million()),
            r(t.restart_s, base.restart_s),
            r(n(t.restart_series), n(base.restart_series)),
        );
    }
    s
}

/// The figures for the current table: those of every scenario, then ingest's own.
fn figures(
    base: (&Figures, &IngestFigures),
    target: Option<(&Figures, &IngestFigures)>,
) -> Vec<Figure> {
    let mut out = side_figures("acknowledged samples/s", base.0, target.map(|t| t.0));
    let (b, t) = (base.1, target.map(|t| t.1));
    let count = |v: Option<u64>| v.map(|n| n as f64);
    out.extend([
        Figure::new(
            "active series (server's count)",
            t.and_then(|t| count(t.head_series)),
            count(b.head_series),
            0,
        ),
        Figure::new(
            "bytes per active series (peak ingest RSS)",
            t.and_then(IngestFigures::bytes_per_series),
            b.bytes_per_series(),
            0,
        ),
        Figure::new(
            "server CPU-s per million acknowledged samples",
            t.and_then(IngestFigures::cpu_s_per_million),
            b.cpu_s_per_million(),
            2,
        ),
        Figure::new(
            "restart to ready after SIGKILL, s",
            t.and_then(|t| t.restart_s),
            b.restart_s,
            2,
        ),
        Figure::new(
            "series after restart",
            t.and_then(|t| count(t.restart_series)),
            count(b.restart_series),
            0,
        ),
    ]);
    out
}

/// Loads `server` with `stream`, then counts, then restarts it.
fn run_side(
    o: &RunOptions,
    server: &mut Server,
    write_path: &str,
    stream: RemoteWriteStream,
) -> Result<(Figures, IngestFigures), RunError> {
    let span = stream.span_ms;
    // The data starts an hour ago on the scrape grid, so a flat-out run stays near now.
    let interval = o.data.scrape_interval_ms;
    let data_start = (now_ms() - 3_600_000) / interval * interval;
    let opts = rwload::RemoteWriteOptions {
        url: format!("{}{write_path}", server.url),
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
    let head_series = server.metric_sum(HEAD_SERIES).map(|n| n as u64);
    eprintln!("{}:\n{}", server.name, rep.render());
    let end = data_start + (rep.cycles as i64 + 1) * span;
    let qt = Instant::now();
    let counted = count_samples(server, data_start, end).ok();
    let count_s = qt.elapsed().as_secs_f64();
    let cpu_s = before.zip(after).map(|(b, a)| a.cpu_s - b.cpu_s);
    let mut notes = format!(
        "{} samples acknowledged; generator CPU {:.1}% of a core",
        rep.acked_samples,
        100.0 * rep.self_cpu_share()
    );
    match counted {
        Some(c) => notes.push_str(&format!(
            "; {c:.0} samples queryable (count took {count_s:.1} s; stale markers are not counted)"
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
                restart_series = server.metric_sum(HEAD_SERIES).map(|n| n as u64);
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
    let stream_b = stream.clone();
    let mut b = baseline(o, "ingest", &data, &extra)?;
    let write_path = if o.baseline_url.is_some() {
        ""
    } else {
        "/api/v1/write"
    };
    let base = run_side(o, &mut b, write_path, stream_b)?;
    b.stop();
    let gdata = o.work_dir.join("ingest-gauntlet-data");
    let _ = std::fs::remove_dir_all(&gdata);
    // `all` rather than `receive`: the same receiver, plus the PromQL API the count needs.
    let tgt = match target(
        o,
        "ingest",
        "all",
        "all --http-address=127.0.0.1:{http} --grpc-address=127.0.0.1:{grpc} --data-dir={data} --remote-write.address=127.0.0.1:0",
        &gdata,
    )? {
        Some(mut t) => {
            let path = if o.target_url.is_some() {
                ""
            } else {
                "/api/v1/receive"
            };
            let f = run_side(o, &mut t, path, stream)?;
            t.stop();
            Some(f)
        }
        None => None,
    };
    let section = render(
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
        &base.0,
        tgt.as_ref().map(|t| &t.0),
    ) + &render_table(&base.1, tgt.as_ref().map(|t| &t.1));
    Ok(Recorded {
        scenario: "ingest",
        input: input_name(o, &[series]),
        section,
        figures: figures((&base.0, &base.1), tgt.as_ref().map(|t| (&t.0, &t.1))),
    })
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
        let s = render_table(&b, Some(&t));
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
        );
        assert!(
            alone.ends_with("| x | n/a | n/a | n/a | n/a | n/a | n/a |\n"),
            "{alone}"
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
        let f = figures((&fig(&b), &b), Some((&fig(&t), &t)));
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
    }
}
