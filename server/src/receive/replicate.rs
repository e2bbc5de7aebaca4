//! One write's journey over the hashring: each series goes to the receivers its ring names
//! (its `--receive.replication-factor` replicas), this receiver's share into its own head and
//! the rest as one `thanos.WriteRequest` per receiver and replica number; a series is written
//! once a quorum of its replicas took it, and the answer is the worst status over the series.
//! Without a hashring, or for a write another receiver already replicated, the whole write is
//! this receiver's share with a quorum of one, which answers exactly as a lone receiver does.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::http::StatusCode;
use gauntlet_engine::ErrorClass;
use gauntlet_engine::head::AppendReport;
use gauntlet_engine::remote_write::{HistogramSample, WriteBatch};
use gauntlet_proto::prometheus as pb;
use gauntlet_proto::thanos;

use super::forward::Forwarder;
use super::hashring::{Ring, series_hash};
use super::tenants::Tenant;
use super::write::{Answer, Checked, LocalWrite, Refusals, WriteState, outcome};

/// The quorum of `rf` replicas: a majority, except that 2 replicas need only one (Thanos's
/// `writeQuorum`, so that two receivers keep working while one is down).
pub fn write_quorum(rf: u64) -> u32 {
    if rf == 2 { 1 } else { (rf / 2 + 1) as u32 }
}

/// Why a replica did not take some series, mildest first: an answer takes the worst of its
/// series' causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// Samples out of order, duplicate timestamps, too old or too new (409).
    Conflict,
    /// A tenant or request limit (429).
    Limited,
    /// Invalid labels or a bad request (400).
    BadData,
    /// Anything else (500).
    Internal,
    /// The receiver could not be reached, did not answer in time or could not write its WAL
    /// (503): worth a retry.
    Unavailable,
}

impl Failure {
    /// Every failure, mildest first.
    pub const ALL: [Failure; 5] = [
        Failure::Conflict,
        Failure::Limited,
        Failure::BadData,
        Failure::Internal,
        Failure::Unavailable,
    ];

    /// The failure an answer's status stands for.
    pub fn from_status(code: StatusCode) -> Failure {
        match code.as_u16() {
            409 => Failure::Conflict,
            413 | 429 => Failure::Limited,
            503 => Failure::Unavailable,
            400..=499 => Failure::BadData,
            _ => Failure::Internal,
        }
    }

    /// The status a write answers with for this failure.
    pub fn status(self) -> StatusCode {
        match self {
            Failure::Conflict => StatusCode::CONFLICT,
            Failure::Limited => StatusCode::TOO_MANY_REQUESTS,
            Failure::BadData => StatusCode::BAD_REQUEST,
            Failure::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Failure::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The failure an engine error's class stands for on the write path: the same classes
    /// the query API maps to its statuses, answered as Thanos Receive answers them (malformed
    /// input 400, a limit 429, a deadline, a cancellation or something out of reach 503,
    /// anything else 500).
    pub fn from_class(class: ErrorClass) -> Failure {
        match class {
            ErrorClass::BadData => Failure::BadData,
            ErrorClass::Execution => Failure::Limited,
            ErrorClass::Timeout | ErrorClass::Canceled | ErrorClass::Unavailable => {
                Failure::Unavailable
            }
            _ => Failure::Internal,
        }
    }

    /// The gRPC code `thanos.WriteableStore` answers this failure with: conflicts and invalid
    /// labels are `AlreadyExists` (Thanos's writer classes bad labels as conflicts, so a
    /// Thanos router answers them with 409, not a retried 5xx), limits `ResourceExhausted`,
    /// an unavailable head `Unavailable`, anything else `Internal`.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Failure::Conflict | Failure::BadData => tonic::Code::AlreadyExists,
            Failure::Limited => tonic::Code::ResourceExhausted,
            Failure::Unavailable => tonic::Code::Unavailable,
            Failure::Internal => tonic::Code::Internal,
        }
    }

    /// What a forwarding receiver makes of a peer's gRPC code.
    pub fn from_grpc(code: tonic::Code) -> Failure {
        match code {
            tonic::Code::AlreadyExists => Failure::Conflict,
            tonic::Code::InvalidArgument => Failure::BadData,
            tonic::Code::ResourceExhausted => Failure::Limited,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                Failure::Unavailable
            }
            _ => Failure::Internal,
        }
    }
}

/// A failure and what it said.
pub type Failed = (Failure, String);

/// Where a write's series go.
#[derive(Debug)]
pub enum Route {
    /// All into this receiver's head: no hashring, or a write another receiver replicated.
    Local,
    /// Over the tenant's ring.
    Ring {
        /// The forwarder.
        fwd: Arc<Forwarder>,
        /// The tenant's ring (as it was when the write arrived).
        ring: Arc<Ring>,
        /// This receiver's index in the ring, if it is in it.
        local: Option<usize>,
    },
}

impl Route {
    /// Whether some series may be stored here (so the tenant has to be open).
    pub fn stores_here(&self) -> bool {
        match self {
            Route::Local => true,
            Route::Ring { local, .. } => local.is_some(),
        }
    }

    /// Splits the checked series of `wb` into this receiver's share and one request per other
    /// receiver and replica number.
    pub fn plan(
        self,
        tenant: Option<Arc<Tenant>>,
        tenant_name: &str,
        wb: &WriteBatch<'_>,
        checked: Checked,
    ) -> Result<Plan, (StatusCode, String)> {
        let Checked { series, refusals } = checked;
        let samples: Vec<Counts> = series
            .iter()
            .map(|&i| Counts {
                floats: wb.series_samples(i as usize).len() as u64,
                histograms: valid_histograms(wb, i as usize).count() as u64,
                exemplars: wb.series_exemplars(i as usize).len() as u64,
            })
            .collect();
        let local_write = |tenant: Option<Arc<Tenant>>, which: &[u32]| match tenant {
            Some(t) => Ok(LocalWrite::new(t, wb, which)),
            None => Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("tenant {tenant_name:?} is not open here"),
            )),
        };
        match self {
            Route::Local => {
                let local = if series.is_empty() {
                    None
                } else {
                    let positions = (0..series.len() as u32).collect();
                    Some((local_write(tenant, &series)?, positions))
                };
                Ok(Plan {
                    fwd: None,
                    quorum: 1,
                    samples,
                    refusals,
                    local,
                    remote: Vec::new(),
                })
            }
            Route::Ring { fwd, ring, local } => {
                let rf = fwd.replication_factor();
                let mut here: Vec<u32> = Vec::new();
                let mut here_positions: Vec<u32> = Vec::new();
                let mut groups: HashMap<(usize, u64), (Vec<u32>, Vec<pb::TimeSeries>)> =
                    HashMap::new();
                for (pos, &i) in series.iter().enumerate() {
                    let labels = wb.series_labels(i as usize);
                    let hash = series_hash(tenant_name, labels);
                    for n in 0..rf {
                        let e = ring
                            .index_n(hash, n)
                            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                        if Some(e) == local {
                            // One copy here even if the ring lists this receiver twice.
                            if here_positions.last() != Some(&(pos as u32)) {
                                here_positions.push(pos as u32);
                                here.push(i);
                            }
                            continue;
                        }
                        let g = groups.entry((e, n)).or_default();
                        g.0.push(pos as u32);
                        g.1.push(to_proto(wb, i as usize));
                    }
                }
                let local = if here.is_empty() {
                    None
                } else {
                    Some((local_write(tenant, &here)?, here_positions))
                };
                let remote = groups
                    .into_iter()
                    .map(|((e, n), (positions, timeseries))| Outgoing {
                        address: ring.endpoints()[e].address.clone(),
                        positions,
                        request: thanos::WriteRequest {
                            timeseries,
                            tenant: tenant_name.to_string(),
                            replica: n as i64 + 1,
                            timeseries_tenant_data: Vec::new(),
                        },
                    })
                    .collect();
                Ok(Plan {
                    quorum: write_quorum(rf),
                    fwd: Some(fwd),
                    samples,
                    refusals,
                    local,
                    remote,
                })
            }
        }
    }
}

/// Series `i`'s native histograms that validate: an invalid one is refused where the write
/// arrives ([`Refusals`]) and goes nowhere.
fn valid_histograms<'b>(
    wb: &'b WriteBatch<'_>,
    i: usize,
) -> impl Iterator<Item = &'b HistogramSample> + 'b {
    wb.series_histograms(i)
        .iter()
        .filter(|h| h.validate().is_ok())
}

/// A series of `wb` as a message to forward: its float samples, valid native histograms and
/// exemplars.
fn to_proto(wb: &WriteBatch<'_>, i: usize) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: wb
            .series_labels(i)
            .iter()
            .map(|(name, value)| pb::Label {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
        samples: wb
            .series_samples(i)
            .iter()
            .map(|s| pb::Sample {
                value: s.v,
                timestamp: s.t,
            })
            .collect(),
        histograms: valid_histograms(wb, i)
            .map(super::histogram::to_proto)
            .collect(),
        exemplars: wb
            .series_exemplars(i)
            .iter()
            .map(|e| pb::Exemplar {
                labels: wb
                    .exemplar_pairs(e)
                    .iter()
                    .map(|(name, value)| pb::Label {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                value: e.value,
                timestamp: e.t,
            })
            .collect(),
    }
}

/// Samples of one series, by kind.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    floats: u64,
    histograms: u64,
    /// Exemplars sent (counted as written with the series, as the head's answer does not
    /// cross receivers).
    exemplars: u64,
}

/// A write split by destination, owning everything it sends.
#[derive(Debug)]
pub struct Plan {
    /// `None` for a write kept here whole.
    fwd: Option<Arc<Forwarder>>,
    quorum: u32,
    /// Samples of each checked series, by position.
    samples: Vec<Counts>,
    refusals: Refusals,
    /// This receiver's share and the positions of its series.
    local: Option<(LocalWrite, Vec<u32>)>,
    remote: Vec<Outgoing>,
}

/// One request to another receiver.
#[derive(Debug)]
struct Outgoing {
    address: String,
    /// Positions of its series among the checked ones.
    positions: Vec<u32>,
    request: thanos::WriteRequest,
}

/// How one part of a plan ended.
#[derive(Debug)]
struct Done {
    positions: Vec<u32>,
    /// The head's report, for this receiver's share.
    report: Option<AppendReport>,
    failed: Option<Failed>,
}

/// Replica outcomes of one series.
#[derive(Debug, Clone, Default)]
struct Tally {
    expected: u32,
    ok: u32,
    failed: [u32; 5],
}

impl Tally {
    /// Why a series short of `quorum` was not written: the failure most of its replicas had
    /// when that many reach the quorum (the worse one on a tie), otherwise `Unavailable`.
    /// Replicas that never answered count as `Unavailable`.
    fn cause(&self, quorum: u32) -> Failure {
        let mut counts = self.failed;
        let answered = self.ok + counts.iter().sum::<u32>();
        counts[Failure::Unavailable as usize] += self.expected.saturating_sub(answered);
        let (kind, n) = Failure::ALL
            .iter()
            .map(|&k| (k, counts[k as usize]))
            .max_by_key(|&(k, n)| (n, k))
            .unwrap_or((Failure::Unavailable, 0));
        if n >= quorum {
            kind
        } else {
            Failure::Unavailable
        }
    }
}

impl Plan {
    /// Stores this receiver's share and sends the rest in parallel; answers once every series
    /// has its quorum or every part has ended (forwarded writes get `--receive-forward-timeout`;
    /// requests still running then go on in the background).
    pub async fn execute(self, st: &WriteState) -> Answer {
        let Plan {
            fwd,
            quorum,
            samples,
            refusals,
            local,
            remote,
        } = self;
        let n = samples.len();
        let mut tally = vec![Tally::default(); n];
        let parts = usize::from(local.is_some()) + remote.len();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Done>(parts.max(1));
        if let Some((w, positions)) = local {
            for &p in &positions {
                tally[p as usize].expected += 1;
            }
            let tx = tx.clone();
            let fsync = st.fsync;
            tokio::spawn(async move {
                let done = match w.store(fsync).await {
                    Ok(report) => {
                        let (code, msg) = outcome(&Refusals::default(), &report);
                        Done {
                            positions,
                            report: Some(report),
                            failed: (code != StatusCode::OK)
                                .then(|| (Failure::from_status(code), msg)),
                        }
                    }
                    Err(failed) => Done {
                        positions,
                        report: None,
                        failed: Some(failed),
                    },
                };
                let _ = tx.send(done).await;
            });
        }
        if let Some(f) = &fwd {
            for o in remote {
                for &p in &o.positions {
                    tally[p as usize].expected += 1;
                }
                let tx = tx.clone();
                let f = f.clone();
                tokio::spawn(async move {
                    let failed = f.send(&o.address, o.request).await.err();
                    let _ = tx
                        .send(Done {
                            positions: o.positions,
                            report: None,
                            failed,
                        })
                        .await;
                });
            }
        }
        drop(tx);
        let deadline = fwd
            .as_ref()
            .map(|f| tokio::time::Instant::now() + f.timeout());
        let mut short = tally.iter().filter(|t| t.expected > 0).count();
        let mut messages: [Option<String>; 5] = Default::default();
        let mut report = None;
        while short > 0 {
            let next = match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten(),
                None => rx.recv().await,
            };
            let Some(done) = next else {
                break;
            };
            if done.report.is_some() {
                report = done.report;
            }
            match done.failed {
                None => {
                    for p in done.positions {
                        let t = &mut tally[p as usize];
                        t.ok += 1;
                        if t.ok == quorum {
                            short -= 1;
                        }
                    }
                }
                Some((kind, msg)) => {
                    for p in done.positions {
                        tally[p as usize].failed[kind as usize] += 1;
                    }
                    messages[kind as usize].get_or_insert(msg);
                }
            }
        }
        let mut worst = refusals.any().then_some(Failure::BadData);
        let mut not_written = 0;
        let mut written_samples = 0;
        let mut written_histograms = 0;
        let mut written_exemplars = 0;
        for (t, s) in tally.iter().zip(&samples) {
            if t.ok >= quorum {
                written_samples += s.floats;
                written_histograms += s.histograms;
                written_exemplars += s.exemplars;
            } else {
                not_written += 1;
                worst = worst.max(Some(t.cause(quorum)));
            }
        }
        let mut message = String::new();
        refusals.describe(&mut message);
        if not_written > 0 {
            if messages.iter().all(Option::is_none) {
                messages[Failure::Unavailable as usize] =
                    Some("no answer within --receive-forward-timeout".into());
            }
            let reasons: Vec<&str> = messages
                .iter()
                .rev()
                .flatten()
                .map(String::as_str)
                .collect();
            if !message.is_empty() {
                message.push_str("; ");
            }
            match &fwd {
                Some(f) => {
                    let _ = write!(
                        message,
                        "{not_written} of {n} series not written to a quorum of {quorum} of {} replicas: {}",
                        f.replication_factor(),
                        reasons.join("; ")
                    );
                }
                None => message.push_str(&reasons.join("; ")),
            }
        }
        if let Some(f) = &fwd {
            if f.replication_factor() > 1 {
                f.count_replication(not_written == 0);
            }
        } else if let Some(r) = &report {
            // Kept here whole: count what the head took, duplicates included, as before
            // there were hashrings.
            written_samples =
                (r.appended + r.appended_ooo + r.duplicates).saturating_sub(r.appended_histograms);
            written_histograms = r.appended_histograms;
            written_exemplars = r.exemplars_appended;
        }
        Answer {
            code: worst.map_or(StatusCode::OK, Failure::status),
            message,
            written_samples,
            written_histograms,
            written_exemplars,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quorum_is_a_majority_except_for_two_replicas() {
        // handler.go writeQuorum.
        let got: Vec<u32> = (1..=6).map(write_quorum).collect();
        assert_eq!(got, [1, 1, 2, 3, 3, 4]);
    }

    fn tally(expected: u32, ok: u32, failed: &[(Failure, u32)]) -> Tally {
        let mut t = Tally {
            expected,
            ok,
            ..Tally::default()
        };
        for &(k, n) in failed {
            t.failed[k as usize] = n;
        }
        t
    }

    #[test]
    fn engine_errors_answer_by_their_class() {
        use gauntlet_engine::error::{RemoteError, RemoteErrorKind};
        let remote = |kind| {
            gauntlet_engine::Error::Remote(RemoteError {
                endpoint: "peer:10901".into(),
                kind,
                message: "refused".into(),
            })
        };
        for (kind, failure, status) in [
            (RemoteErrorKind::InvalidRequest, Failure::BadData, 400),
            (RemoteErrorKind::LimitExceeded, Failure::Limited, 429),
            (RemoteErrorKind::Timeout, Failure::Unavailable, 503),
            (RemoteErrorKind::Unavailable, Failure::Unavailable, 503),
            (RemoteErrorKind::Internal, Failure::Internal, 500),
        ] {
            let f = Failure::from_class(remote(kind).class());
            assert_eq!(f, failure, "{kind:?}");
            assert_eq!(f.status().as_u16(), status, "{kind:?}");
        }
        // The head's WAL write failing (the head reports it as a WAL error) is worth a
        // retry, as README promises (503).
        let io = gauntlet_engine::wal::WalError::Io {
            path: "tenant/wal".into(),
            source: std::io::Error::other("no space left on device"),
        };
        let wal = gauntlet_engine::wal::WalError::InvalidArgument("closed".into());
        for e in [io, wal] {
            let e = gauntlet_engine::Error::Wal(e);
            assert_eq!(
                Failure::from_class(e.class()).status(),
                StatusCode::SERVICE_UNAVAILABLE
            );
        }
    }

    #[test]
    fn a_series_short_of_its_quorum_fails_for_what_most_replicas_said() {
        use Failure::*;
        // Every replica refused the same way: that way (a 409 stays a 409).
        assert_eq!(tally(3, 0, &[(Conflict, 3)]).cause(2), Conflict);
        assert_eq!(tally(3, 1, &[(Conflict, 2)]).cause(2), Conflict);
        // Two unreachable of three: retry.
        assert_eq!(tally(3, 1, &[(Unavailable, 2)]).cause(2), Unavailable);
        // Mixed reasons with no majority, or replicas that never answered: retry.
        assert_eq!(
            tally(3, 1, &[(Conflict, 1), (Internal, 1)]).cause(2),
            Unavailable
        );
        assert_eq!(tally(3, 1, &[(Conflict, 1)]).cause(2), Unavailable);
        // One replica (no hashring): its own reason.
        assert_eq!(tally(1, 0, &[(Limited, 1)]).cause(1), Limited);
        // A tie goes to the worse reason.
        assert_eq!(
            tally(2, 0, &[(Conflict, 1), (Unavailable, 1)]).cause(1),
            Unavailable
        );
    }
}
