//! `POST /api/v1/receive` (and `/api/v1/write`): remote write 1.0 and 2.0 into a tenant's
//! head, answered with the status codes Thanos Receive gives: 200; 400 for malformed bodies and
//! invalid labels; 409 for out-of-order, duplicate-timestamp, too-old and too-new samples; 413
//! over the body or per-request limits; 415 for an unknown content type; 429 over the tenant's
//! series limit; 503 when the WAL cannot be written. Every series that can be written is
//! written whatever the answer, and the message says what was refused and how many samples it
//! affected. With a hashring the series go where it says ([`super::replicate`]); the HTTP
//! handler and the gRPC `WriteableStore` server share [`write`] from the decoded request on.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gauntlet_engine::budget::{Decoding, DecodingRefused};
use gauntlet_engine::head::{AppendBatch, AppendReport, Exemplar};
use gauntlet_engine::labels::Labels;
use gauntlet_engine::labels::hash_pairs;
use gauntlet_engine::remote_write::{self, LabelLimits, SeriesEntry, Version, WriteBatch};
use gauntlet_proto::prometheus as pb;

use super::forward::Forwarder;
use super::replicate::{Failed, Failure, Route};
use super::tenants::{Tenant, Tenants, requested_tenant};

/// Per-request limits (0 = none), as Thanos Receive's write limits.
#[derive(Debug, Clone, Default)]
pub struct RequestLimits {
    /// Most bytes of a (compressed) body.
    pub body_bytes: usize,
    /// Most series in one request.
    pub series: usize,
    /// Most samples in one request.
    pub samples: usize,
    /// Label count and name and value lengths of one series.
    pub labels: LabelLimits,
}

/// Counters of the write endpoint.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Requests by answer: 2xx, 400, 409, 413, 415, 429, 5xx.
    pub codes: [AtomicU64; 7],
    /// Series received.
    pub series: AtomicU64,
    /// Float samples received.
    pub samples: AtomicU64,
    /// Native histogram samples received.
    pub histograms: AtomicU64,
    /// Exemplars received.
    pub exemplars: AtomicU64,
    /// Series refused for invalid labels.
    pub invalid_series: AtomicU64,
    /// Requests taken as remote write 2.0 (`io.prometheus.write.v2.Request`).
    pub v2_requests: AtomicU64,
}

impl WriteStats {
    /// Status classes in the order of [`WriteStats::codes`].
    pub const CODES: [&'static str; 7] = ["200", "400", "409", "413", "415", "429", "503"];

    fn count(&self, code: StatusCode) {
        let i = match code.as_u16() {
            200..=299 => 0,
            400 => 1,
            409 => 2,
            413 => 3,
            415 => 4,
            429 => 5,
            _ => 6,
        };
        self.codes[i].fetch_add(1, Relaxed);
    }
}

/// What the write handler needs.
#[derive(Debug)]
pub struct WriteState {
    /// Every tenant.
    pub tenants: Arc<Tenants>,
    /// Header naming the tenant (`--receive.tenant-header`).
    pub tenant_header: String,
    /// Tenant of requests without the header or with it empty (`--receive.default-tenant-id`).
    pub default_tenant: String,
    /// Per-request limits.
    pub limits: RequestLimits,
    /// fsync the WAL before answering (`--tsdb.wal-fsync=batch`).
    pub fsync: bool,
    /// Counters.
    pub stats: WriteStats,
    /// Header giving the replica number of a write another receiver already replicated
    /// (`--receive.replica-header`), lower case.
    pub replica_header: String,
    /// Where series go when a hashring is configured; `None` keeps everything here.
    pub forward: Option<Arc<Forwarder>>,
}

fn answer(st: &WriteState, code: StatusCode, msg: String) -> Response {
    st.stats.count(code);
    if code != StatusCode::OK {
        tracing::debug!(code = code.as_u16(), message = %msg, "remote write refused");
    }
    let msg =
        gauntlet_engine::error::clip(&msg, gauntlet_engine::error::MESSAGE_BYTES).into_owned();
    (code, msg).into_response()
}

/// Largest decompressed body taken, bytes, whatever the body limit: a declared size past
/// this is refused before anything is allocated. Prometheus sends requests of a few hundred
/// kilobytes decoded (2 000 samples by default); snappy can expand a body about 21 times, so
/// a body of 800 KiB of repeated bytes reaches this. What it decodes to is bounded before
/// decoding starts ([`remote_write::DecodeLimits::for_body`], at most
/// [`remote_write::MAX_ENTRY_BYTES`]), so one request's decoding holds at most 48 MiB.
pub const MAX_DECODED_BYTES: usize = 16 << 20;

/// Longest a remote write waits for decoding room ([`gauntlet_engine::budget::DECODING_ROOM`])
/// before it is answered 503, which Prometheus retries.
const DECODING_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Largest forwarded gRPC message a receiver takes or sends, bytes: a 2.0 request's labels
/// travel as full strings between receivers, several times the bytes of its symbol
/// references.
pub const MAX_FORWARD_BYTES: usize = 4 * MAX_DECODED_BYTES;

/// The handler.
pub async fn receive(
    State(st): State<Arc<WriteState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The header's raw bytes: a name in UTF-8 is not visible ASCII, which `to_str` wants.
    let named = headers.get(st.tenant_header.as_str()).map(|v| v.as_bytes());
    let tenant_name = match requested_tenant(named, &st.default_tenant) {
        Ok(name) => name,
        Err(e) => return answer(&st, StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Counted from 1 on the wire; absent means not yet replicated.
    let replica = match headers.get(st.replica_header.as_str()) {
        None => 0,
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            Some(r) => r,
            None => {
                return answer(
                    &st,
                    StatusCode::BAD_REQUEST,
                    "could not parse replica header".into(),
                );
            }
        },
    };
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let enc = headers
        .get(axum::http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    let version = match remote_write::version_from_content_type(ct)
        .and_then(|v| remote_write::check_content_encoding(enc).map(|()| v))
    {
        Ok(v) => v,
        Err(e) => return answer(&st, decode_status(&e), e.to_string()),
    };
    if version == Version::V2 {
        st.stats.v2_requests.fetch_add(1, Relaxed);
    }
    let limit = if st.limits.body_bytes == 0 {
        MAX_DECODED_BYTES
    } else {
        st.limits.body_bytes
    };
    let raw = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            return if too_large {
                answer(
                    &st,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over {limit} bytes (--receive.limits.request-size)"),
                )
            } else {
                answer(
                    &st,
                    StatusCode::BAD_REQUEST,
                    format!("reading the body: {e}"),
                )
            };
        }
    };
    // The body decompressed, then decoded into entries that borrow it: what both may hold is
    // known from its header before either is allocated, and is taken from the decoding room
    // (waiting for bodies being decoded to give theirs back) and reserved as work in flight.
    // A header that is corrupt or declares too much is refused before anything is allocated.
    // (The compressed body was reserved at the door, from its declared length.)
    let decoded = match remote_write::declared_len(&raw, MAX_DECODED_BYTES) {
        Ok(n) => n,
        Err(e) => return answer(&st, decode_status(&e), e.to_string()),
    };
    let limits = remote_write::DecodeLimits {
        series: st.limits.series,
        samples: st.limits.samples,
        ..remote_write::DecodeLimits::for_body(version, decoded)
    };
    let room = match st
        .tenants
        .budget()
        .decode_room(
            "remote write",
            (decoded + limits.entry_bytes) as u64,
            DECODING_WAIT,
        )
        .await
    {
        Ok(r) => r,
        Err(DecodingRefused::OverBudget(why)) => {
            st.stats.count(StatusCode::SERVICE_UNAVAILABLE);
            return crate::memory::refused_write(&why);
        }
        Err(busy) => return answer(&st, StatusCode::SERVICE_UNAVAILABLE, busy.to_string()),
    };
    let mut buf = Vec::new();
    if let Err(e) = remote_write::decompress(&raw, MAX_DECODED_BYTES, &mut buf) {
        return answer(&st, decode_status(&e), e.to_string());
    }
    drop(raw);
    let input = Input::Http {
        version,
        buf,
        limits,
        _room: room,
    };
    let done = write(&st, &tenant_name, replica, input).await;
    let mut resp = answer(&st, done.code, done.message);
    if version == Version::V2 {
        let written = remote_write::Written {
            samples: done.written_samples,
            histograms: done.written_histograms,
            exemplars: done.written_exemplars,
        };
        let h = resp.headers_mut();
        for (name, v) in written.headers() {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(name, v);
            }
        }
    }
    resp
}

/// Where a write's series come from.
#[derive(Debug)]
pub enum Input {
    /// A decompressed remote-write body.
    Http {
        /// Its protocol version.
        version: Version,
        /// The protobuf bytes.
        buf: Vec<u8>,
        /// What it may decode to.
        limits: remote_write::DecodeLimits,
        /// The decoding room it holds until it is decoded and copied out.
        _room: Decoding,
    },
    /// Series forwarded by another receiver (`thanos.WriteRequest`).
    Forwarded(Vec<pb::TimeSeries>),
}

impl Input {
    /// Fills `wb` with the series, borrowing their strings from `self`.
    fn decode<'a>(&'a self, wb: &mut WriteBatch<'a>) -> Result<(), (StatusCode, String)> {
        match self {
            Input::Http {
                version,
                buf,
                limits,
                ..
            } => remote_write::decode_limited(*version, buf, limits, wb).map_err(|e| {
                let flag = match e {
                    remote_write::DecodeError::TooMany { what: "series", .. } => {
                        " (--receive.limits.request-series)"
                    }
                    remote_write::DecodeError::TooMany { .. } => {
                        " (--receive.limits.request-samples)"
                    }
                    _ => "",
                };
                (
                    decode_status(&e),
                    format!("decoding the write request: {e}{flag}"),
                )
            }),
            Input::Forwarded(series) => {
                for ts in series {
                    let labels = wb.labels.len() as u32;
                    let samples = wb.samples.len() as u32;
                    let histograms = wb.histogram_samples.len() as u32;
                    let exemplars = wb.exemplar_samples.len() as u32;
                    for e in &ts.exemplars {
                        let first = wb.exemplar_labels.len() as u32;
                        wb.exemplar_labels
                            .extend(e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
                        wb.exemplar_samples.push(remote_write::ExemplarSample {
                            labels: first..wb.exemplar_labels.len() as u32,
                            value: e.value,
                            t: e.timestamp,
                        });
                    }
                    wb.labels.extend(
                        ts.labels
                            .iter()
                            .map(|l| (l.name.as_str(), l.value.as_str())),
                    );
                    wb.samples
                        .extend(ts.samples.iter().map(|s| remote_write::Sample {
                            t: s.timestamp,
                            v: s.value,
                        }));
                    wb.histogram_samples
                        .extend(ts.histograms.iter().map(super::histogram::from_proto));
                    wb.histograms += ts.histograms.len();
                    wb.exemplars += ts.exemplars.len();
                    wb.series.push(SeriesEntry {
                        labels: labels..wb.labels.len() as u32,
                        samples: samples..wb.samples.len() as u32,
                        histograms: ts.histograms.len() as u32,
                        histogram_samples: histograms..wb.histogram_samples.len() as u32,
                        exemplars: ts.exemplars.len() as u32,
                        exemplar_samples: exemplars..wb.exemplar_samples.len() as u32,
                        ..SeriesEntry::default()
                    });
                }
                Ok(())
            }
        }
    }
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The status Thanos Receive would give.
    pub code: StatusCode,
    /// What was refused and why; empty on success.
    pub message: String,
    /// Float samples written (for remote write 2.0's answer headers).
    pub written_samples: u64,
    /// Native histogram samples written (for remote write 2.0's answer headers).
    pub written_histograms: u64,
    /// Exemplars stored (for remote write 2.0's answer headers).
    pub written_exemplars: u64,
}

impl Answer {
    /// A write refused before any series was stored.
    pub fn refused(code: StatusCode, message: String) -> Self {
        Answer {
            code,
            message,
            written_samples: 0,
            written_histograms: 0,
            written_exemplars: 0,
        }
    }
}

/// Writes `input`'s series for `tenant_name`: here, or over the hashring (replica `replica`,
/// counted from 1; 0 for a write not yet replicated). Both front doors end here.
pub async fn write(st: &WriteState, tenant_name: &str, replica: u64, input: Input) -> Answer {
    let route = match &st.forward {
        None => Route::Local,
        Some(f) => match f.route(tenant_name, replica) {
            Ok(r) => r,
            Err((code, msg)) => return Answer::refused(code, msg),
        },
    };
    let tenant = if route.stores_here() {
        match open_tenant(st, tenant_name).await {
            Ok(t) => Some(t),
            Err(a) => return a,
        }
    } else {
        None
    };
    // Decoding borrows the input; what reaches the cores or other receivers is copied out, so
    // nothing borrowed crosses the awaits below.
    let plan = {
        let mut wb = WriteBatch::new();
        if let Err((code, msg)) = input.decode(&mut wb) {
            return Answer::refused(code, msg);
        }
        let checked = match check(st, &wb) {
            Ok(c) => c,
            Err((code, msg)) => return Answer::refused(code, msg),
        };
        match route.plan(tenant, tenant_name, &wb, checked) {
            Ok(p) => p,
            Err((code, msg)) => return Answer::refused(code, msg),
        }
    };
    drop(input);
    plan.execute(st).await
}

/// The tenant named `name`, opened (its WAL replayed) on its first write.
async fn open_tenant(st: &WriteState, name: &str) -> Result<Arc<Tenant>, Answer> {
    if let Some(t) = st.tenants.get(name) {
        return Ok(t);
    }
    let tenants = st.tenants.clone();
    let owned = name.to_string();
    let open = tokio::task::spawn_blocking(move || tenants.get_or_open(&owned))
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("opening the tenant: {e}")));
    open.map_err(|e| {
        tracing::error!(tenant = %name, error = %format!("{e:#}"), "opening a tenant failed");
        Answer::refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("opening tenant {name:?}: {e:#}"),
        )
    })
}

fn decode_status(e: &remote_write::DecodeError) -> StatusCode {
    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST)
}

/// What was refused before the append: series with invalid labels.
#[derive(Debug, Default)]
pub struct Refusals {
    invalid_series: u64,
    invalid_samples: u64,
    first_invalid: Option<String>,
    invalid_histograms: u64,
    first_invalid_histogram: Option<String>,
}

impl Refusals {
    /// Whether any series was refused.
    pub fn any(&self) -> bool {
        self.invalid_series > 0 || self.invalid_histograms > 0
    }

    /// Appends what was refused to `msg` (`; `-separated), if anything; refused series are
    /// named even when they carried no samples, so a refusal never goes without a message.
    pub fn describe(&self, msg: &mut String) {
        if let Some(first) = &self.first_invalid {
            push_part(
                msg,
                &format!(
                    "{} series with invalid labels (first: {first})",
                    self.invalid_series
                ),
                self.invalid_samples,
            );
        }
        if let Some(first) = &self.first_invalid_histogram {
            push_part(
                msg,
                &format!("invalid native histograms (first: {first})"),
                self.invalid_histograms,
            );
        }
    }
}

/// A request's series that passed the checks.
#[derive(Debug)]
pub struct Checked {
    /// Indexes in the batch of the series with valid labels and at least one float sample,
    /// valid native histogram or exemplar.
    pub series: Vec<u32>,
    /// The series refused.
    pub refusals: Refusals,
}

/// Checks the request's limits and labels.
fn check(st: &WriteState, wb: &WriteBatch<'_>) -> Result<Checked, (StatusCode, String)> {
    let n_series = wb.series.len();
    let n_samples = wb.samples.len();
    st.stats.series.fetch_add(n_series as u64, Relaxed);
    st.stats.samples.fetch_add(n_samples as u64, Relaxed);
    st.stats.exemplars.fetch_add(wb.exemplars as u64, Relaxed);
    st.stats
        .histograms
        .fetch_add(wb.histogram_samples.len() as u64, Relaxed);
    let l = &st.limits;
    if l.series > 0 && n_series > l.series {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request has {n_series} series, over the limit of {} (--receive.limits.request-series)",
                l.series
            ),
        ));
    }
    if l.samples > 0 && n_samples > l.samples {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request has {n_samples} samples, over the limit of {} (--receive.limits.request-samples)",
                l.samples
            ),
        ));
    }
    let mut series = Vec::with_capacity(n_series);
    let mut refusals = Refusals::default();
    for i in 0..n_series {
        let samples = wb.series_samples(i);
        let hists = wb.series_histograms(i);
        if let Err(e) = remote_write::validate_labels(wb.series_labels(i), &l.labels) {
            refusals.invalid_series += 1;
            refusals.invalid_samples += (samples.len() + hists.len()) as u64;
            if refusals.first_invalid.is_none() {
                refusals.first_invalid = Some(match limit_flag(&e) {
                    Some(flag) => format!("{e} ({flag})"),
                    None => e.to_string(),
                });
            }
            continue;
        }
        // An invalid histogram is refused alone, as Prometheus refuses it: the series' other
        // samples are written and the request answered 400 naming it.
        let mut valid_hists = 0;
        for h in hists {
            if let Err(e) = h.validate() {
                refusals.invalid_histograms += 1;
                if refusals.first_invalid_histogram.is_none() {
                    refusals.first_invalid_histogram = Some(format!(
                        "series {} at {} ms: {e}",
                        describe_series(wb.series_labels(i)),
                        h.t
                    ));
                }
            } else {
                valid_hists += 1;
            }
        }
        // Prometheus sends a series' exemplars in entries of their own, without samples: they
        // go to the series its earlier samples made.
        if !samples.is_empty() || valid_hists > 0 || !wb.series_exemplars(i).is_empty() {
            series.push(i as u32);
        }
    }
    st.stats
        .invalid_series
        .fetch_add(refusals.invalid_series, Relaxed);
    Ok(Checked { series, refusals })
}

/// The flag setting the limit a label refusal is over, for its message.
fn limit_flag(e: &remote_write::LabelError) -> Option<&'static str> {
    use remote_write::LabelError as E;
    match e {
        E::TooManyLabels { .. } => Some("--receive.limits.label-count"),
        E::NameTooLong { .. } => Some("--receive.limits.label-name-length"),
        E::ValueTooLong { .. } => Some("--receive.limits.label-value-length"),
        _ => None,
    }
}

/// Series of one request bound for this receiver's head, split by owning core.
#[derive(Debug)]
pub struct LocalWrite {
    tenant: Arc<Tenant>,
    batches: Vec<AppendBatch>,
}

impl LocalWrite {
    /// Copies the series `series` (indexes into `wb`, checked) into per-core batches.
    pub fn new(tenant: Arc<Tenant>, wb: &WriteBatch<'_>, series: &[u32]) -> Self {
        let head = &tenant.head;
        let mut batches = vec![AppendBatch::new(); head.cores()];
        for &i in series {
            let labels = wb.series_labels(i as usize);
            let hash = hash_pairs(labels.iter().copied());
            batches[head.route(hash)].push_series_with_histograms(
                hash,
                labels.iter().copied(),
                wb.series_samples(i as usize).iter().map(|s| (s.t, s.v)),
                wb.series_histograms(i as usize)
                    .iter()
                    .filter(|h| h.validate().is_ok())
                    .map(|h| (h.t, h.h.clone())),
            );
            batches[head.route(hash)].push_exemplars(wb.series_exemplars(i as usize).iter().map(
                |e| Exemplar {
                    labels: Labels::from_pairs(wb.exemplar_pairs(e).iter().copied()),
                    value: e.value,
                    ts: e.t,
                },
            ));
        }
        LocalWrite { tenant, batches }
    }

    /// Appends to the head and, with `fsync`, syncs the WAL. An error answers as its engine
    /// class says ([`Failure::from_class`]): the WAL not written is worth a retry (503).
    pub async fn store(self, fsync: bool) -> Result<AppendReport, Failed> {
        let LocalWrite { tenant, batches } = self;
        let head = tenant.head.clone();
        let report = head.append(batches).await.map_err(|e| {
            tracing::error!(tenant = %tenant.name, error = %e, "append failed");
            (
                Failure::from_class(e.class()),
                format!("storing samples: {e}"),
            )
        })?;
        if fsync {
            let h = head.clone();
            let synced = match tokio::task::spawn_blocking(move || h.sync_wal()).await {
                Ok(r) => r.map_err(|e| (Failure::from_class(e.class()), e.to_string())),
                Err(e) => Err((Failure::Unavailable, e.to_string())),
            };
            if let Err((failure, e)) = synced {
                tracing::error!(tenant = %tenant.name, error = %e, "WAL fsync failed");
                return Err((failure, format!("syncing the WAL: {e}")));
            }
        }
        if report.series_limited > 0 {
            tenant.series_limited_requests.fetch_add(1, Relaxed);
        }
        Ok(report)
    }
}

/// A series' labels as `{a="1", b="2"}`, clipped, for error messages.
fn describe_series(labels: &[(&str, &str)]) -> String {
    let mut s = String::from("{");
    for (i, (n, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{n}={v:?}");
        if s.len() > 512 {
            s.push_str(", ...");
            break;
        }
    }
    s.push('}');
    s
}

/// Appends `what: n samples` to `msg`, after a `; ` when it holds a part already.
fn push_part(msg: &mut String, what: &str, n: u64) {
    if !msg.is_empty() {
        msg.push_str("; ");
    }
    let _ = write!(msg, "{what}: {n} samples");
}

/// The answer for a request whose writable part was written: the most serious refusal
/// decides the code (invalid labels, then the series limit, then conflicts), and the message
/// lists every kind refused with its sample count.
pub fn outcome(r: &Refusals, rep: &AppendReport) -> (StatusCode, String) {
    let mut msg = String::new();
    r.describe(&mut msg);
    let mut add = |what: &str, n: u64| {
        if n > 0 {
            push_part(&mut msg, what, n);
        }
    };
    add(
        "new series over the tenant's active series limit (--receive.limits.max-series)",
        rep.series_limited,
    );
    add("out of order sample", rep.out_of_order);
    add("duplicate sample for timestamp", rep.duplicate_timestamp);
    add("invalid native histogram", rep.invalid_histograms);
    add("out of bounds (older than the head accepts)", rep.too_old);
    add(
        "too far in the future (--tsdb.too-far-in-future.time-window)",
        rep.too_new,
    );
    let failure = if r.any() || rep.invalid_histograms > 0 {
        Some(Failure::BadData)
    } else if rep.series_limited > 0 {
        Some(Failure::Limited)
    } else if rep.conflicts() > 0 {
        Some(Failure::Conflict)
    } else {
        None
    };
    (failure.map_or(StatusCode::OK, Failure::status), msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_serious_refusal_decides_the_code() {
        let mut rep = AppendReport::default();
        assert_eq!(outcome(&Refusals::default(), &rep).0, StatusCode::OK);
        rep.out_of_order = 3;
        let (c, m) = outcome(&Refusals::default(), &rep);
        assert_eq!(c, StatusCode::CONFLICT);
        assert_eq!(m, "out of order sample: 3 samples");
        rep.series_limited = 2;
        assert_eq!(
            outcome(&Refusals::default(), &rep).0,
            StatusCode::TOO_MANY_REQUESTS
        );
        let r = Refusals {
            invalid_series: 1,
            invalid_samples: 4,
            first_invalid: Some("no metric name".into()),
            ..Refusals::default()
        };
        let (c, m) = outcome(&r, &rep);
        assert_eq!(c, StatusCode::BAD_REQUEST);
        assert!(
            m.starts_with("1 series with invalid labels (first: no metric name): 4 samples"),
            "{m}"
        );
        assert!(m.contains("out of order sample: 3 samples"), "{m}");
        // Series refused without samples are still named.
        let r = Refusals {
            invalid_series: 2,
            invalid_samples: 0,
            first_invalid: Some("empty label set".into()),
            ..Refusals::default()
        };
        let (c, m) = outcome(&r, &AppendReport::default());
        assert_eq!(c, StatusCode::BAD_REQUEST);
        assert_eq!(
            m,
            "2 series with invalid labels (first: empty label set): 0 samples"
        );
    }
}
