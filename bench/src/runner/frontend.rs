//! The `frontend` scenario: Gauntlet's query frontend and `thanos query-frontend` in front of
//! the same querier, a dashboard's refreshes and one long query measured through each.
//!
//! `gauntlet all --demo` loads `--history-days` days of its demo data (10 hosts) and runs
//! Gauntlet's frontend in front of its own API (`--query-frontend.http-address`); `thanos
//! query-frontend` sits in front of the same API. Both split range queries by 24h and cache
//! their parts in memory. Then, one frontend after the other:
//! - a dashboard of 20 range queries over the last 7 days (10 min step: `sum by (instance)`
//!   of the rates of ten counters, `max by (instance)` of ten gauges) is asked once with the
//!   cache empty (the cold load), then refreshed `--refreshes` times, `--refresh-every` apart,
//!   the window moving with the clock; a refresh's parts are the cache's but for the newest
//!   minutes, which each frontend asks of the querier. The figures are the latencies of the
//!   refreshes' queries.
//! - a 7-day and a `--history-days`-day query at the finest step a whole query may take
//!   (11,000 points a series) are asked `--split-passes` times of the querier whole, and of
//!   each frontend split into 24h parts asked in parallel (`Cache-Control: no-store`, so none
//!   comes from the cache).
//!
//! Prometheus has no query frontend: the scenario has Gauntlet's and Thanos's columns only.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::current::{Figure, Recorded};
use super::peers::thanos;
use super::report::{machine_description, ratio, utc_now};
use super::scenarios::gauntlet_name;
use super::server::{Server, free_port, gauntlet_cmd};
use super::{RunError, RunOptions};
use crate::load::http::{Conn, Endpoint, urlencode};

/// How long `all` may take to load its demo history and answer `/-/ready`.
const LOAD_WAIT: Duration = Duration::from_secs(1200);

/// The dashboard's window and step.
const DASHBOARD_DAYS: i64 = 7;
const DASHBOARD_STEP_S: i64 = 600;

/// Points a series of one whole range query may have (Prometheus's and Gauntlet's limit).
const MAX_POINTS: i64 = 11_000;

/// The scenario's own knobs.
#[derive(Clone, Debug)]
pub struct FrontendOptions {
    /// Days of demo history `all` loads; also the long split query's span.
    pub history_days: u32,
    /// Dashboard refreshes measured after the cold load.
    pub refreshes: u32,
    /// Time between refreshes.
    pub refresh_every: Duration,
    /// Times each long query is asked whole and through each frontend.
    pub split_passes: usize,
}

/// The latencies one frontend gave the dashboard, ms.
#[derive(Clone, Debug, Default)]
struct Dashboard {
    system: String,
    cold: Vec<f64>,
    refreshes: Vec<f64>,
}

impl Dashboard {
    fn cold_sum(&self) -> Option<f64> {
        (!self.cold.is_empty()).then(|| self.cold.iter().sum())
    }

    fn refresh_p50(&self) -> Option<f64> {
        quantile(&self.refreshes, 0.5)
    }

    fn refresh_p99(&self) -> Option<f64> {
        quantile(&self.refreshes, 0.99)
    }
}

/// One long query's medians, ms: whole at the querier and split through each frontend.
#[derive(Clone, Debug)]
struct Split {
    days: i64,
    step_s: i64,
    whole: Vec<f64>,
    gauntlet: Vec<f64>,
    thanos: Vec<f64>,
}

/// The `q` quantile of `v` (nearest rank, so the largest of fewer than 100 for p99).
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

fn median(v: &[f64]) -> Option<f64> {
    quantile(v, 0.5)
}

/// A timed GET of `path` on `url` with `headers`, over a new connection (as a browser's
/// dashboard panel asks); refused unless it answers 200 with `"status":"success"`.
fn timed_get(
    url: &str,
    path: &str,
    headers: &[(&'static str, &'static str)],
) -> Result<f64, RunError> {
    let ep = Endpoint::parse(url)?;
    let rt = crate::load::http::runtime()?;
    let t = Instant::now();
    let a = rt.block_on(async {
        Conn::new(&ep, Duration::from_secs(600))
            .send(hyper::Method::GET, Some(path), headers, bytes::Bytes::new())
            .await
    })?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if a.status != 200 || !a.body.starts_with(b"{\"status\":\"success\"") {
        return Err(RunError::Other(format!(
            "{url}{path}: HTTP {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
        )));
    }
    Ok(ms)
}

fn range_path(query: &str, start_s: i64, end_s: i64, step_s: i64) -> String {
    let mut p = String::from("/api/v1/query_range?query=");
    urlencode(query, &mut p);
    let _ = write!(p, "&start={start_s}&end={end_s}&step={step_s}");
    p
}

fn now_s() -> i64 {
    super::scenarios::now_ms() / 1000
}

/// Polls `url`'s `/-/ready` until it answers 200, for at most `wait`.
fn wait_ready(name: &str, url: &str, wait: Duration) -> Result<(), RunError> {
    let probe = Server::external(name, url, None);
    let end = Instant::now() + wait;
    loop {
        if matches!(probe.get("/-/ready"), Ok((200, _))) {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(RunError::Start(format!(
                "{name} at {url} not ready in {wait:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The dashboard's queries: rates of ten counters and ten gauges of the demo data, by host.
fn dashboard_queries(querier: &Server) -> Result<Vec<String>, RunError> {
    let (status, body) = querier.get("/api/v1/label/__name__/values")?;
    let v: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| RunError::Other(format!("metric names (HTTP {status}): {e}")))?;
    let names: Vec<&str> = v["data"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n.as_str()).collect())
        .unwrap_or_default();
    let counters = names.iter().filter(|n| n.ends_with("_total")).take(10);
    let gauges = names
        .iter()
        .filter(|n| !n.ends_with("_total") && !n.ends_with("_bucket"))
        .take(10);
    let mut qs: Vec<String> = counters
        .map(|c| format!("sum by (instance) (rate({c}[5m]))"))
        .chain(gauges.map(|g| format!("max by (instance) ({g})")))
        .collect();
    if qs.is_empty() {
        return Err(RunError::Other("the demo data has no metrics".into()));
    }
    // Fewer than 20 metrics: the queries again, as a dashboard repeating panels would.
    let n = qs.len();
    for i in n..20 {
        qs.push(qs[i % n].clone());
    }
    qs.truncate(20);
    Ok(qs)
}

/// The dashboard asked through the frontend at `url`: once cold, then refreshed.
fn dashboard(
    name: &str,
    url: &str,
    queries: &[String],
    f: &FrontendOptions,
) -> Result<Dashboard, RunError> {
    let ask = |out: &mut Vec<f64>| -> Result<(), RunError> {
        let end = now_s();
        for q in queries {
            let p = range_path(q, end - DASHBOARD_DAYS * 86_400, end, DASHBOARD_STEP_S);
            out.push(timed_get(url, &p, &[])?);
        }
        Ok(())
    };
    let mut d = Dashboard {
        system: name.to_string(),
        ..Dashboard::default()
    };
    ask(&mut d.cold)?;
    for _ in 0..f.refreshes {
        std::thread::sleep(f.refresh_every);
        ask(&mut d.refreshes)?;
    }
    eprintln!(
        "{name}: cold {:.0} ms, refresh p50 {:.1} ms, p99 {:.1} ms",
        d.cold_sum().unwrap_or(0.0),
        d.refresh_p50().unwrap_or(0.0),
        d.refresh_p99().unwrap_or(0.0)
    );
    Ok(d)
}

/// The long query over `days`, whole at `querier` and split through each frontend.
fn split(
    query: &str,
    days: i64,
    querier: &str,
    ours: &str,
    theirs: Option<&str>,
    passes: usize,
) -> Result<Split, RunError> {
    let end = now_s() / 60 * 60;
    // The finest step a whole query may take, in whole minutes.
    let step_s = 60 * ((days * 86_400 + MAX_POINTS * 60 - 1) / (MAX_POINTS * 60));
    let p = range_path(query, end - days * 86_400, end, step_s);
    let no_store = [("cache-control", "no-store")];
    let mut s = Split {
        days,
        step_s,
        whole: Vec::new(),
        gauntlet: Vec::new(),
        thanos: Vec::new(),
    };
    for _ in 0..passes {
        s.whole.push(timed_get(querier, &p, &[])?);
        s.gauntlet.push(timed_get(ours, &p, &no_store)?);
        if let Some(t) = theirs {
            s.thanos.push(timed_get(t, &p, &no_store)?);
        }
    }
    eprintln!(
        "{days}-day query at {step_s} s: whole {:.0} ms, Gauntlet split {:.0} ms, Thanos split {:.0} ms",
        median(&s.whole).unwrap_or(0.0),
        median(&s.gauntlet).unwrap_or(0.0),
        median(&s.thanos).unwrap_or(0.0)
    );
    Ok(s)
}

/// The `frontend` scenario (see the module's documentation).
pub fn frontend(o: &RunOptions, f: &FrontendOptions) -> Result<Recorded, RunError> {
    if f.history_days < 7 || f.refreshes == 0 || f.split_passes == 0 {
        return Err(RunError::Other(
            "--history-days must be at least 7, --refreshes and --split-passes positive".into(),
        ));
    }
    let bin = o.gauntlet_bin.as_ref().ok_or_else(|| {
        RunError::Other("the frontend scenario starts `gauntlet all`: give --gauntlet-bin".into())
    })?;
    let dir = o.work_dir.join("frontend");
    let data = o.work_dir.join("frontend-gauntlet-data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&dir)?;
    let cache = dir.join("cache.yml");
    std::fs::write(
        &cache,
        "type: IN-MEMORY\nconfig:\n  max_size: 1GB\n  max_size_items: 100000\n",
    )?;
    let (http, grpc, rw, fe) = (free_port()?, free_port()?, free_port()?, free_port()?);
    let args = o.gauntlet_args.as_deref().unwrap_or(
        "all --data-dir={data} --demo --demo.history={days}d --http-address=127.0.0.1:{http} \
         --grpc-address=127.0.0.1:{grpc} --remote-write.address=127.0.0.1:{rw} \
         --compact.interval=0s --query-frontend.http-address=127.0.0.1:{fe} \
         --query-range.split-interval=24h --query-range.response-cache-config-file={cache}",
    );
    let cmd = gauntlet_cmd(
        bin,
        args,
        &o.gauntlet_extra_args,
        &[
            ("data", data.display().to_string()),
            ("days", f.history_days.to_string()),
            ("http", http.to_string()),
            ("grpc", grpc.to_string()),
            ("rw", rw.to_string()),
            ("fe", fe.to_string()),
            ("cache", cache.display().to_string()),
        ],
    );
    let t = Instant::now();
    let all = Server::start(
        &gauntlet_name(bin, "all"),
        cmd,
        format!("http://127.0.0.1:{http}"),
        &dir.join("gauntlet.log"),
        LOAD_WAIT,
    )?;
    let ours_url = format!("http://127.0.0.1:{fe}");
    wait_ready(
        "gauntlet query frontend",
        &ours_url,
        Duration::from_secs(60),
    )?;
    eprintln!(
        "{}: {} days of demo data loaded, ready in {:.0} s",
        all.name,
        f.history_days,
        t.elapsed().as_secs_f64()
    );
    let upstream = match &o.thanos_bin {
        Some(_) => Some(thanos(
            o,
            "frontend-thanos",
            "query-frontend",
            "",
            &[
                format!("--query-frontend.downstream-url={}", all.url),
                "--query-range.split-interval=24h".into(),
                format!(
                    "--query-range.response-cache-config-file={}",
                    cache.display()
                ),
            ],
        )?),
        None => None,
    };
    let queries = dashboard_queries(&all)?;
    let ours_name = format!("{} query frontend", all.name);
    let ours = dashboard(&ours_name, &ours_url, &queries, f)?;
    let theirs = match &upstream {
        Some(t) => Some(dashboard(&t.server.name, &t.server.url, &queries, f)?),
        None => None,
    };
    let heavy = queries[0].clone();
    let mut splits = Vec::new();
    for days in [7, i64::from(f.history_days)] {
        if splits.iter().any(|s: &Split| s.days == days) {
            continue;
        }
        splits.push(split(
            &heavy,
            days,
            &all.url,
            &ours_url,
            upstream.as_ref().map(|t| t.server.url.as_str()),
            f.split_passes,
        )?);
    }
    drop(upstream);
    drop(all);

    let input = format!(
        "10 demo hosts, {} days loaded, 20 queries over {DASHBOARD_DAYS} days at {} min step",
        f.history_days,
        DASHBOARD_STEP_S / 60
    );
    let section = render(o, f, &queries, &ours, theirs.as_ref(), &splits);
    let th = theirs.as_ref();
    let mut figures = vec![
        Figure::new(
            "cached refresh latency per query p50, ms",
            ours.refresh_p50(),
            None,
            1,
        )
        .with_peers(th.and_then(Dashboard::refresh_p50), None),
        Figure::new(
            &format!(
                "cached refresh latency per query p99 (of {}), ms",
                ours.refreshes.len()
            ),
            ours.refresh_p99(),
            None,
            1,
        )
        .with_peers(th.and_then(Dashboard::refresh_p99), None),
        Figure::new(
            "cold dashboard, sum of 20 queries, ms",
            ours.cold_sum(),
            None,
            0,
        )
        .with_peers(th.and_then(Dashboard::cold_sum), None),
    ];
    for s in &splits {
        figures.push(
            Figure::new(
                &format!(
                    "one {}-day query at {} s step split by 24h, uncached, median ms",
                    s.days, s.step_s
                ),
                median(&s.gauntlet),
                None,
                0,
            )
            .with_peers(median(&s.thanos), None),
        );
        figures.push(Figure::new(
            &format!(
                "one {}-day query at {} s step asked whole of the querier, median ms",
                s.days, s.step_s
            ),
            median(&s.whole),
            None,
            0,
        ));
    }
    Ok(Recorded {
        scenario: "frontend",
        input,
        section,
        figures,
    })
}

fn render(
    o: &RunOptions,
    f: &FrontendOptions,
    queries: &[String],
    ours: &Dashboard,
    theirs: Option<&Dashboard>,
    splits: &[Split],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## {} — `run frontend`\n", utc_now());
    let _ = writeln!(s, "Machine: {}.", machine_description());
    let _ = writeln!(
        s,
        "Input: `gauntlet all --demo --demo.history={}d` (10 hosts), its frontend and `thanos \
         query-frontend` in front of its API, both splitting by 24h and caching in memory. A \
         dashboard of {} range queries over the last {DASHBOARD_DAYS} days at a {} s step \
         (`{}`, …) asked once cold, then refreshed {} times {} s apart through each frontend in \
         turn; then one long query asked {} times whole of the querier and split through each \
         frontend with `Cache-Control: no-store`. Latencies include a new loopback connection \
         per request.",
        f.history_days,
        queries.len(),
        DASHBOARD_STEP_S,
        queries[0],
        f.refreshes,
        f.refresh_every.as_secs(),
        f.split_passes,
    );
    let _ = writeln!(s, "Command: `{}`\n", o.command_line);
    let _ = writeln!(
        s,
        "| system | cold dashboard ms | refresh p50 ms | refresh p99 ms | five slowest refresh queries ms |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    let num = |v: Option<f64>, d: usize| v.map_or("n/a".into(), |v| format!("{v:.d$}"));
    for d in std::iter::once(ours).chain(theirs) {
        let mut slow = d.refreshes.clone();
        slow.sort_by(|a, b| b.total_cmp(a));
        let slow: Vec<String> = slow.iter().take(5).map(|v| format!("{v:.1}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            d.system,
            num(d.cold_sum(), 0),
            num(d.refresh_p50(), 1),
            num(d.refresh_p99(), 1),
            slow.join(", ")
        );
    }
    let _ = writeln!(
        s,
        "\n| long query | step s | whole at the querier, median ms | Gauntlet split, median ms | Thanos split, median ms | whole ÷ Gauntlet split |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for sp in splits {
        let cell = match (median(&sp.whole), median(&sp.gauntlet)) {
            (Some(w), Some(g)) => ratio(w, g),
            _ => "n/a".into(),
        };
        let _ = writeln!(
            s,
            "| {} days | {} | {} | {} | {} | {cell} |",
            sp.days,
            sp.step_s,
            num(median(&sp.whole), 0),
            num(median(&sp.gauntlet), 0),
            num(median(&sp.thanos), 0),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=60).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(30.0));
        assert_eq!(quantile(&v, 0.99), Some(60.0), "of 60, p99 is the largest");
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn range_paths_encode_the_query() {
        assert_eq!(
            range_path("sum by (a) (rate(x[5m]))", 10, 70, 15),
            "/api/v1/query_range?query=sum%20by%20%28a%29%20%28rate%28x%5B5m%5D%29%29&start=10&end=70&step=15"
        );
    }
}
