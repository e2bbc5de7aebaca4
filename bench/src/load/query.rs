//! The query load generator: runs a query file against a Prometheus-compatible HTTP API with
//! some concurrency, or, in differential mode, against two APIs and compares the answers.
//!
//! Query file format, one query per line (blank lines and `#` comments are skipped):
//!
//! ```text
//! instant <time> <expr>
//! range <from> <to> <step> <expr>
//! series <from> <to> <selector>
//! ```
//!
//! `<time>`, `<from>` and `<to>` are relative to the data's time range: `start`, `end`,
//! `start+<dur>` or `end-<dur>`; `<dur>` and `<step>` are Prometheus durations (`90s`, `5m`,
//! `1h30m`). The expression is the rest of the line. `series` lines ask `/api/v1/series` for
//! the series matching one selector in the time range.
//!
//! A worker whose query is answered 503 (the server refusing work it has no room for) pauses
//! [`REFUSED_PAUSE`] before its next query, as a client backs off a busy server: sending the
//! next one at once would only measure how fast refusals are made.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::LoadError;
use super::diff::{Difference, compare_answers};
use super::http::{Conn, Endpoint, urlencode};
use super::stats::{ProcStats, p50_p99};

/// How long a worker waits after a 503 before its next query.
pub const REFUSED_PAUSE: Duration = Duration::from_millis(500);

/// When a query is evaluated, relative to the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryKind {
    /// `/api/v1/query` at one time.
    Instant {
        /// Evaluation time.
        at: RelTime,
    },
    /// `/api/v1/query_range`.
    Range {
        /// First step.
        from: RelTime,
        /// Last step (inclusive).
        to: RelTime,
        /// Step, ms.
        step_ms: i64,
    },
    /// `/api/v1/series` with one `match[]` selector.
    Series {
        /// Start of the range.
        from: RelTime,
        /// End of the range.
        to: RelTime,
    },
}

/// A time relative to the data's start or end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelTime {
    /// Relative to the end (true) or the start (false).
    pub from_end: bool,
    /// Signed offset, ms.
    pub offset_ms: i64,
}

impl RelTime {
    fn resolve(&self, start_ms: i64, end_ms: i64) -> i64 {
        (if self.from_end { end_ms } else { start_ms }) + self.offset_ms
    }
}

/// One line of a query file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuerySpec {
    /// 1-based line number in the file.
    pub line: usize,
    /// Kind and times.
    pub kind: QueryKind,
    /// PromQL expression.
    pub expr: String,
}

/// Parses a query file's text.
pub fn parse_queries(text: &str) -> Result<Vec<QuerySpec>, LoadError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let bad = |msg: &str| LoadError::BadQueryLine {
            line,
            msg: msg.to_string(),
        };
        let mut words = l.splitn(2, char::is_whitespace);
        let kind = words.next().unwrap_or("");
        let mut rest = words.next().unwrap_or("").trim_start();
        let mut word = || -> Result<&str, LoadError> {
            let (w, r) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad("too few fields"))?;
            rest = r.trim_start();
            Ok(w)
        };
        let kind = match kind {
            "instant" => QueryKind::Instant {
                at: parse_rel(word()?).ok_or_else(|| bad("bad time"))?,
            },
            "range" => {
                let from = parse_rel(word()?).ok_or_else(|| bad("bad start time"))?;
                let to = parse_rel(word()?).ok_or_else(|| bad("bad end time"))?;
                let step_ms = parse_duration(word()?)
                    .filter(|&s| s > 0)
                    .ok_or_else(|| bad("bad step"))?;
                QueryKind::Range { from, to, step_ms }
            }
            "series" => {
                let from = parse_rel(word()?).ok_or_else(|| bad("bad start time"))?;
                let to = parse_rel(word()?).ok_or_else(|| bad("bad end time"))?;
                QueryKind::Series { from, to }
            }
            _ => return Err(bad("expected `instant`, `range` or `series`")),
        };
        if rest.is_empty() {
            return Err(bad("missing expression"));
        }
        out.push(QuerySpec {
            line,
            kind,
            expr: rest.to_string(),
        });
    }
    Ok(out)
}

fn parse_rel(s: &str) -> Option<RelTime> {
    let (from_end, rest) = if let Some(r) = s.strip_prefix("start") {
        (false, r)
    } else {
        (true, s.strip_prefix("end")?)
    };
    let offset_ms = match rest.chars().next() {
        None => 0,
        Some('+') => parse_duration(&rest[1..])?,
        Some('-') => -parse_duration(&rest[1..])?,
        Some(_) => return None,
    };
    Some(RelTime {
        from_end,
        offset_ms,
    })
}

/// Parses a Prometheus duration (`1h30m`, `90s`, `250ms`) into ms.
pub fn parse_duration(s: &str) -> Option<i64> {
    gauntlet_promql::parse_duration_ms(s)
}

/// Options of a query run.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// The data's time range, ms, that query times are relative to.
    pub data_start_ms: i64,
    /// End of the data, ms.
    pub data_end_ms: i64,
    /// Queries in flight at once.
    pub concurrency: usize,
    /// Stop after this long (checked before each query).
    pub duration: Option<Duration>,
    /// Stop after this many queries (the file is cycled).
    pub count: Option<u64>,
    /// Per-query timeout.
    pub timeout: Duration,
}

/// The path and query string of a query's request.
pub fn request_path(q: &QuerySpec, start_ms: i64, end_ms: i64) -> String {
    let secs = |ms: i64| format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000));
    let mut p = String::with_capacity(64 + q.expr.len() * 2);
    match &q.kind {
        QueryKind::Instant { at } => {
            p.push_str("/api/v1/query?time=");
            p.push_str(&secs(at.resolve(start_ms, end_ms)));
        }
        QueryKind::Range { from, to, step_ms } => {
            p.push_str("/api/v1/query_range?start=");
            p.push_str(&secs(from.resolve(start_ms, end_ms)));
            p.push_str("&end=");
            p.push_str(&secs(to.resolve(start_ms, end_ms)));
            p.push_str("&step=");
            p.push_str(&secs(*step_ms));
        }
        QueryKind::Series { from, to } => {
            p.push_str("/api/v1/series?start=");
            p.push_str(&secs(from.resolve(start_ms, end_ms)));
            p.push_str("&end=");
            p.push_str(&secs(to.resolve(start_ms, end_ms)));
            p.push_str("&match%5B%5D=");
            urlencode(&q.expr, &mut p);
            return p;
        }
    }
    p.push_str("&query=");
    urlencode(&q.expr, &mut p);
    p
}

/// Figures of a query run.
#[derive(Clone, Debug, Default)]
pub struct QueryReport {
    /// Queries sent.
    pub queries: u64,
    /// Answers with status 200.
    pub ok: u64,
    /// Other answers by status.
    pub non_2xx: BTreeMap<u16, u64>,
    /// Queries without an answer.
    pub transport_errors: u64,
    /// First error seen (status and body start, or transport error).
    pub first_error: Option<String>,
    /// Response body bytes received.
    pub bytes: u64,
    /// Wall time, s.
    pub elapsed_s: f64,
    /// Latency percentiles over all queries, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile, ms.
    pub latency_p99_ms: f64,
    /// Per query line: (line, p50 ms, runs).
    pub per_query: Vec<(usize, f64, u64)>,
    /// This process's CPU time during the run, s.
    pub self_cpu_s: f64,
}

impl QueryReport {
    /// A few lines for people.
    pub fn render(&self) -> String {
        let mut s = format!(
            "queries {} (200: {}) in {:.2} s = {:.1} queries/s, {} bytes received\n\
             latency p50 {:.2} ms, p99 {:.2} ms; generator CPU {:.2} s\n",
            self.queries,
            self.ok,
            self.elapsed_s,
            self.queries as f64 / self.elapsed_s.max(1e-9),
            self.bytes,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.self_cpu_s
        );
        for (code, n) in &self.non_2xx {
            s.push_str(&format!("non-2xx: {n} answers with status {code}\n"));
        }
        if self.transport_errors > 0 {
            s.push_str(&format!("transport errors: {}\n", self.transport_errors));
        }
        if let Some(e) = &self.first_error {
            s.push_str(&format!("first error: {e}\n"));
        }
        s
    }
}

/// Runs `queries` per `opts` and returns the figures.
pub fn run(queries: &[QuerySpec], opts: &QueryOptions) -> Result<QueryReport, LoadError> {
    if queries.is_empty() || opts.concurrency == 0 {
        return Err(LoadError::Invalid(
            "need at least one query and concurrency ≥ 1".into(),
        ));
    }
    if opts.duration.is_none() && opts.count.is_none() {
        return Err(LoadError::Invalid("give a duration or a count".into()));
    }
    let ep = Endpoint::parse(&opts.url)?;
    let paths: Arc<Vec<String>> = Arc::new(
        queries
            .iter()
            .map(|q| request_path(q, opts.data_start_ms, opts.data_end_ms))
            .collect(),
    );
    let rt = super::http::runtime()?;
    let next = Arc::new(AtomicU64::new(0));
    let cpu0 = ProcStats::read("self")?.cpu_s;
    let start = Instant::now();
    let deadline = opts.duration.map(|d| start + d);
    let results = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..opts.concurrency {
            let (ep, paths, next) = (ep.clone(), paths.clone(), next.clone());
            let (count, timeout) = (opts.count, opts.timeout);
            tasks.push(tokio::spawn(async move {
                let mut conn = Conn::new(&ep, timeout);
                // (query index, latency ms, status or 0 for no answer, bytes, error)
                let mut out: Vec<(usize, f64, u16, u64, Option<String>)> = Vec::new();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if count.is_some_and(|c| n >= c)
                        || deadline.is_some_and(|d| Instant::now() >= d)
                    {
                        return out;
                    }
                    let qi = (n % paths.len() as u64) as usize;
                    let t0 = Instant::now();
                    let r = conn
                        .send(hyper::Method::GET, Some(&paths[qi]), &[], Bytes::new())
                        .await;
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    match r {
                        Ok(a) => {
                            let err = (a.status != 200).then(|| {
                                format!(
                                    "status {}: {}",
                                    a.status,
                                    String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
                                )
                            });
                            out.push((qi, ms, a.status, a.body.len() as u64, err));
                            if a.status == 503 {
                                tokio::time::sleep(REFUSED_PAUSE).await;
                            }
                        }
                        Err(e) => out.push((qi, ms, 0, 0, Some(e.to_string()))),
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.map_err(std::io::Error::other)?);
        }
        Ok::<_, LoadError>(all)
    })?;
    let mut rep = QueryReport {
        elapsed_s: start.elapsed().as_secs_f64(),
        self_cpu_s: ProcStats::read("self")?.cpu_s - cpu0,
        ..Default::default()
    };
    let mut lat = Vec::with_capacity(results.len());
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); queries.len()];
    for (qi, ms, status, bytes, err) in results {
        rep.queries += 1;
        rep.bytes += bytes;
        lat.push(ms);
        per[qi].push(ms);
        match status {
            200 => rep.ok += 1,
            0 => rep.transport_errors += 1,
            s => *rep.non_2xx.entry(s).or_default() += 1,
        }
        if rep.first_error.is_none() {
            rep.first_error = err.map(|e| format!("line {}: {e}", queries[qi].line));
        }
    }
    (rep.latency_p50_ms, rep.latency_p99_ms) = p50_p99(&mut lat);
    rep.per_query = per
        .iter_mut()
        .zip(queries)
        .map(|(v, q)| (q.line, p50_p99(v).0, v.len() as u64))
        .collect();
    Ok(rep)
}

/// Sends every query once to `a` and to `b` and returns each query whose answers differ
/// beyond relative tolerance `tol` (or whose status differs), with what differs.
pub fn run_diff(
    queries: &[QuerySpec],
    opts: &QueryOptions,
    b_url: &str,
    tol: f64,
) -> Result<Vec<Difference>, LoadError> {
    let ea = Endpoint::parse(&opts.url)?;
    let eb = Endpoint::parse(b_url)?;
    let rt = super::http::runtime()?;
    rt.block_on(async {
        let mut ca = Conn::new(&ea, opts.timeout);
        let mut cb = Conn::new(&eb, opts.timeout);
        let mut out = Vec::new();
        for q in queries {
            let path = request_path(q, opts.data_start_ms, opts.data_end_ms);
            let ra = ca
                .send(hyper::Method::GET, Some(&path), &[], Bytes::new())
                .await?;
            let rb = cb
                .send(hyper::Method::GET, Some(&path), &[], Bytes::new())
                .await?;
            if let Some(what) = compare_answers((ra.status, &ra.body), (rb.status, &rb.body), tol) {
                out.push(Difference {
                    line: q.line,
                    expr: q.expr.clone(),
                    what,
                });
            }
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_lines() {
        let q = parse_queries(
            "# c\n\ninstant end-5m sum by (job) (rate(x[5m]))\nrange start+10m end 1m  topk(3, y)\n",
        )
        .unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].line, 3);
        assert_eq!(q[0].expr, "sum by (job) (rate(x[5m]))");
        assert_eq!(
            q[1].kind,
            QueryKind::Range {
                from: RelTime {
                    from_end: false,
                    offset_ms: 600_000
                },
                to: RelTime {
                    from_end: true,
                    offset_ms: 0
                },
                step_ms: 60_000
            }
        );
        assert_eq!(
            request_path(&q[1], 1_000_000, 2_000_500),
            "/api/v1/query_range?start=1600.000&end=2000.500&step=60.000&query=topk%283%2C%20y%29"
        );
        for bad in [
            "instant x up",
            "range start end 0s up",
            "range start end",
            "foo end up",
            "instant end",
        ] {
            assert!(parse_queries(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("5x"), None);
    }
}
