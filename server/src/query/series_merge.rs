//! The querier's one fan-in, used by its HTTP API and by the StoreAPI it serves: every
//! endpoint's Series answer is read on a task of its own into a small bounded channel, and the
//! answers are merged by labels as they arrive — a k-way merge over a heap holding each
//! endpoint's next series. Each answer is sorted by labels (the StoreAPI's promise), so series
//! move on while later ones are still on the wire, and what is held is a few messages per
//! endpoint: when the merge falls behind, an endpoint's task stops reading and HTTP/2 flow
//! control holds the store back.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use gauntlet_engine::budget::{MemoryBudget, OverBudget, Reservation};
use gauntlet_engine::error::RemoteErrorKind;
use gauntlet_engine::labels::Labels;
use gauntlet_engine::query::without_labels;
use gauntlet_engine::store::ShardInfo;
use gauntlet_proto::thanos::{AggrChunk, SeriesRequest};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::endpoints::Endpoint;
use super::fanout::status_kind;
use super::series_wire::SeriesMessage;

/// Answer messages (up to 64 series each) an endpoint's task may read ahead of the merge.
const INBOX_MESSAGES: usize = 4;

/// One Series call of a fan-out.
#[derive(Debug)]
pub(super) struct Call {
    /// The endpoint asked.
    pub ep: Arc<Endpoint>,
    /// What it is asked.
    pub req: SeriesRequest,
    /// Whether its series come back with the replica labels on (it does not support
    /// `without_replica_labels`): the merge takes them off, which may break the answer's
    /// order, so that answer is read whole and sorted again before it joins the merge.
    pub resort: bool,
    /// The shard to keep when the endpoint does not shard itself (its Info says it does not
    /// support sharding): its series outside the shard are dropped as they arrive, hashed
    /// without the replica labels, as a store that shards hashes them.
    pub shard: Option<ShardInfo>,
}

/// An endpoint that failed its call, or whose answer broke the StoreAPI's rules.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failure {
    /// The endpoint's `host:port`.
    pub addr: String,
    /// What kind of failure.
    pub kind: RemoteErrorKind,
    /// What went wrong, for a warning or an error.
    pub message: String,
}

/// Why a merge stopped.
#[derive(Debug)]
pub(super) enum MergeError {
    /// An endpoint failed and partial responses are off.
    Endpoint(Failure),
    /// This process's memory budget had no room for more of an answer.
    OverBudget(OverBudget),
}

/// Series of one label set: the labels (replica labels taken off) and, per answer that held
/// it, the endpoint's index in the calls and the chunks it sent, in the calls' order.
pub(super) type Group = (Labels, Vec<(usize, Vec<AggrChunk>)>);

/// What an endpoint's task hands the merge.
enum Frame {
    /// Series of one answer message, with the reservation of the memory they hold.
    Series(Vec<(Labels, Vec<AggrChunk>)>, Reservation),
    /// A warning the endpoint sent, prefixed with its address.
    Warning(String),
    /// The call failed; nothing follows.
    Failed(Failure),
    /// The budget refused the next message; nothing follows.
    OverBudget(OverBudget),
}

/// Reads one endpoint's Series answer into `tx`, each message within `timeout` of the one
/// before (the call's start for the first), until it ends, fails, or the merge is gone.
async fn receive(
    ep: Arc<Endpoint>,
    req: SeriesRequest,
    shard: Option<(ShardInfo, Vec<String>)>,
    timeout: Duration,
    budget: Arc<MemoryBudget>,
    tx: mpsc::Sender<Frame>,
) {
    let failed = |kind, message: String| {
        Frame::Failed(Failure {
            addr: ep.addr.clone(),
            kind,
            message,
        })
    };
    let silent = || {
        failed(
            RemoteErrorKind::Timeout,
            format!("no answer within {timeout:?}"),
        )
    };
    let mut stream = match tokio::time::timeout(timeout, ep.series(req)).await {
        Ok(Ok(s)) => s,
        Ok(Err(s)) => {
            let _ = tx
                .send(failed(status_kind(&s), s.message().to_string()))
                .await;
            return;
        }
        Err(_) => {
            let _ = tx.send(silent()).await;
            return;
        }
    };
    loop {
        let frame = match tokio::time::timeout(timeout, stream.message()).await {
            Ok(Ok(None)) => return,
            Ok(Ok(Some((msg, wire_len)))) => {
                let mut held = budget.empty("query");
                // The message read, its labels and chunks kept: about twice its wire size.
                match held.grow(2 * wire_len as u64) {
                    Err(why) => Frame::OverBudget(why),
                    Ok(()) => match msg {
                        SeriesMessage::Series(series) => Frame::Series(series, held),
                        SeriesMessage::Warning(w) => Frame::Warning(format!("{}: {w}", ep.addr)),
                        SeriesMessage::Other => continue,
                    },
                }
            }
            Ok(Err(s)) => failed(status_kind(&s), s.message().to_string()),
            Err(_) => silent(),
        };
        let Some(frame) = in_shard(frame, shard.as_ref()) else {
            continue;
        };
        let last = matches!(frame, Frame::Failed(_) | Frame::OverBudget(_));
        // A closed channel means the merge was dropped (the request ended): returning drops
        // the stream, which cancels the call.
        if tx.send(frame).await.is_err() || last {
            return;
        }
    }
}

/// `frame` with only the series of `shard` (hashed without its replica labels), when the
/// endpoint is one that does not shard itself; `None` when no series is left.
fn in_shard(frame: Frame, shard: Option<&(ShardInfo, Vec<String>)>) -> Option<Frame> {
    match (frame, shard) {
        (Frame::Series(mut series, held), Some((shard, strip))) => {
            series.retain(|(labels, _)| shard.matches_except(labels, strip));
            (!series.is_empty()).then_some(Frame::Series(series, held))
        }
        (frame, _) => Some(frame),
    }
}

/// What the merge met besides series: warnings, and failures taken as warnings.
#[derive(Debug, Default)]
struct Notes {
    partial: bool,
    warnings: Vec<String>,
    failures: Vec<Failure>,
}

impl Notes {
    /// A failed endpoint: noted when partial responses are on, else the merge's end.
    fn fail(&mut self, f: Failure) -> Result<(), MergeError> {
        if self.partial {
            self.failures.push(f);
            Ok(())
        } else {
            Err(MergeError::Endpoint(f))
        }
    }
}

/// One endpoint's side of the merge: the series received and not yet merged.
struct Inbox {
    addr: String,
    rx: mpsc::Receiver<Frame>,
    buf: VecDeque<(Labels, Vec<AggrChunk>)>,
    /// The memory of the messages `buf` came from.
    held: Option<Reservation>,
    /// The answer ended (or failed): nothing more comes.
    ended: bool,
    /// See [`Call::resort`]; `sorted` once the whole answer is in and sorted.
    resort: bool,
    sorted: bool,
}

impl Inbox {
    /// Receives until `buf` holds a series or the answer ended.
    async fn fill(&mut self, strip: &[String], notes: &mut Notes) -> Result<(), MergeError> {
        while self.buf.is_empty() && !self.ended {
            match self.rx.recv().await {
                None => self.ended = true,
                Some(Frame::Series(series, held)) => {
                    // Everything received before was merged: its memory is the consumer's now.
                    match self.held.as_mut() {
                        Some(h) if self.resort => h.absorb(held),
                        _ => self.held = Some(held),
                    }
                    if self.resort || strip.is_empty() {
                        self.buf.extend(series);
                    } else {
                        self.buf.extend(
                            series
                                .into_iter()
                                .map(|(l, c)| (without_labels(&l, strip), c)),
                        );
                    }
                }
                Some(Frame::Warning(w)) => notes.warnings.push(w),
                Some(Frame::Failed(f)) => {
                    self.stop();
                    notes.fail(f)?;
                }
                Some(Frame::OverBudget(why)) => {
                    self.stop();
                    return Err(MergeError::OverBudget(why));
                }
            }
        }
        Ok(())
    }

    /// Reads the whole answer, joins consecutive frames of a series, takes the replica labels
    /// off and sorts again (stably: series that become equal keep the order they came in).
    async fn sort_all(&mut self, strip: &[String], notes: &mut Notes) -> Result<(), MergeError> {
        let mut all: Vec<(Labels, Vec<AggrChunk>)> = Vec::new();
        loop {
            self.fill(strip, notes).await?;
            let Some((labels, chunks)) = self.buf.pop_front() else {
                break;
            };
            match all.last_mut() {
                Some((last, c)) if *last == labels => c.extend(chunks),
                _ => all.push((labels, chunks)),
            }
        }
        let mut all: Vec<(Labels, Vec<AggrChunk>)> = all
            .into_iter()
            .map(|(l, c)| (without_labels(&l, strip), c))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        self.buf = all.into();
        self.sorted = true;
        Ok(())
    }

    /// The next series of the answer, its consecutive frames joined, or `None` at its end.
    async fn next(
        &mut self,
        strip: &[String],
        notes: &mut Notes,
    ) -> Result<Option<(Labels, Vec<AggrChunk>)>, MergeError> {
        if self.resort {
            if !self.sorted {
                self.sort_all(strip, notes).await?;
            }
            let next = self.buf.pop_front();
            if self.buf.is_empty() {
                self.held = None;
            }
            return Ok(next);
        }
        self.fill(strip, notes).await?;
        let Some((labels, mut chunks)) = self.buf.pop_front() else {
            self.held = None;
            return Ok(None);
        };
        loop {
            self.fill(strip, notes).await?;
            match self.buf.front() {
                Some((l, _)) if *l == labels => {}
                _ => break,
            }
            if let Some((_, more)) = self.buf.pop_front() {
                chunks.extend(more);
            }
        }
        Ok(Some((labels, chunks)))
    }

    /// Ends this answer: what is buffered is dropped and nothing more is read.
    fn stop(&mut self) {
        self.ended = true;
        self.buf.clear();
        self.held = None;
        self.rx.close();
    }
}

/// An endpoint's next series, ordered by labels, then by the endpoint's place in the calls.
struct Head {
    labels: Labels,
    ep: usize,
    chunks: Vec<AggrChunk>,
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        self.labels.cmp(&other.labels).then(self.ep.cmp(&other.ep))
    }
}

/// A k-way merge of the answers of one fan-out's Series calls. Dropping it ends the calls.
pub(super) struct SeriesMerge {
    inboxes: Vec<Inbox>,
    heap: BinaryHeap<Reverse<Head>>,
    started: bool,
    strip: Vec<String>,
    notes: Notes,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SeriesMerge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesMerge")
            .field("endpoints", &self.inboxes.len())
            .field("heads", &self.heap.len())
            .finish_non_exhaustive()
    }
}

impl SeriesMerge {
    /// Starts every call on `runtime`; `strip` are the replica labels taken off every series,
    /// `timeout` the longest an endpoint may keep the merge waiting for its next message, and
    /// `partial` whether a failed endpoint is a note ([`SeriesMerge::take_failures`]) rather
    /// than the merge's end; the messages received reserve from `budget`.
    pub fn start(
        runtime: &Handle,
        calls: Vec<Call>,
        strip: Vec<String>,
        timeout: Duration,
        partial: bool,
        budget: &Arc<MemoryBudget>,
    ) -> SeriesMerge {
        let mut inboxes = Vec::with_capacity(calls.len());
        let mut tasks = Vec::with_capacity(calls.len());
        for call in calls {
            let (tx, rx) = mpsc::channel(INBOX_MESSAGES);
            inboxes.push(Inbox {
                addr: call.ep.addr.clone(),
                rx,
                buf: VecDeque::new(),
                held: None,
                ended: false,
                resort: call.resort && !strip.is_empty(),
                sorted: false,
            });
            let shard = call.shard.map(|sh| (sh, strip.clone()));
            tasks.push(runtime.spawn(receive(
                call.ep,
                call.req,
                shard,
                timeout,
                Arc::clone(budget),
                tx,
            )));
        }
        SeriesMerge {
            inboxes,
            heap: BinaryHeap::new(),
            started: false,
            strip,
            notes: Notes {
                partial,
                ..Notes::default()
            },
            tasks,
        }
    }

    /// Puts endpoint `ep`'s next series in the heap; `after` is the series it sent before,
    /// which the next may not sort below.
    async fn advance(&mut self, ep: usize, after: Option<&Labels>) -> Result<(), MergeError> {
        let inbox = &mut self.inboxes[ep];
        let Some((labels, chunks)) = inbox.next(&self.strip, &mut self.notes).await? else {
            return Ok(());
        };
        if let Some(prev) = after
            && labels < *prev
        {
            inbox.stop();
            let failure = Failure {
                addr: inbox.addr.clone(),
                kind: RemoteErrorKind::Internal,
                message: format!("series out of order: {labels} after {prev}"),
            };
            return self.notes.fail(failure);
        }
        self.heap.push(Reverse(Head { labels, ep, chunks }));
        Ok(())
    }

    /// The next label set in order with what every endpoint sent for it, or `None` once
    /// every answer is merged.
    pub async fn next_group(&mut self) -> Result<Option<Group>, MergeError> {
        if !self.started {
            self.started = true;
            for ep in 0..self.inboxes.len() {
                self.advance(ep, None).await?;
            }
        }
        let Some(Reverse(first)) = self.heap.pop() else {
            return Ok(None);
        };
        let labels = first.labels;
        let mut members = vec![(first.ep, first.chunks)];
        self.advance(first.ep, Some(&labels)).await?;
        while self.heap.peek().is_some_and(|h| h.0.labels == labels) {
            let Some(Reverse(h)) = self.heap.pop() else {
                break;
            };
            members.push((h.ep, h.chunks));
            self.advance(h.ep, Some(&labels)).await?;
        }
        Ok(Some((labels, members)))
    }

    /// Up to `n` groups ([`SeriesMerge::next_group`]) and whether the merge has ended.
    pub async fn next_groups(&mut self, n: usize) -> Result<(Vec<Group>, bool), MergeError> {
        let mut out = Vec::with_capacity(n.min(1024));
        while out.len() < n {
            match self.next_group().await? {
                Some(g) => out.push(g),
                None => return Ok((out, true)),
            }
        }
        Ok((out, false))
    }

    /// Warnings the endpoints sent since the last call, each prefixed with its endpoint.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes.warnings)
    }

    /// Endpoints that failed since the last call (partial responses on).
    pub fn take_failures(&mut self) -> Vec<Failure> {
        std::mem::take(&mut self.notes.failures)
    }
}

impl Drop for SeriesMerge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &str) -> Labels {
        Labels::from_pairs(
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, ""))),
        )
    }

    fn chunk(t: i64) -> AggrChunk {
        AggrChunk {
            min_time: t,
            max_time: t,
            ..AggrChunk::default()
        }
    }

    /// Per endpoint, its answer's messages (series as `(labels, chunk time)`), then the
    /// failure it ends with, if any.
    type Answers<'a> = Vec<(Vec<Vec<(&'a str, i64)>>, Option<&'a str>)>;

    /// A merge over inboxes fed from memory.
    fn merge_of(answers: Answers<'_>, partial: bool) -> SeriesMerge {
        merge_with(answers, partial, Vec::new(), false)
    }

    fn merge_with(
        answers: Answers<'_>,
        partial: bool,
        strip: Vec<String>,
        resort: bool,
    ) -> SeriesMerge {
        let mut inboxes = Vec::new();
        for (i, (messages, failure)) in answers.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel(messages.len() + 2);
            for m in messages {
                let series = m
                    .into_iter()
                    .map(|(l, t)| (labels(l), vec![chunk(t)]))
                    .collect();
                let held = gauntlet_engine::budget::MemoryBudget::unlimited().empty("query");
                assert!(tx.try_send(Frame::Series(series, held)).is_ok());
            }
            if let Some(msg) = failure {
                let f = Failure {
                    addr: format!("ep{i}"),
                    kind: RemoteErrorKind::Unavailable,
                    message: msg.to_string(),
                };
                assert!(tx.try_send(Frame::Failed(f)).is_ok());
            }
            inboxes.push(Inbox {
                addr: format!("ep{i}"),
                rx,
                buf: VecDeque::new(),
                held: None,
                ended: false,
                resort,
                sorted: false,
            });
        }
        SeriesMerge {
            inboxes,
            heap: BinaryHeap::new(),
            started: false,
            strip,
            notes: Notes {
                partial,
                ..Notes::default()
            },
            tasks: Vec::new(),
        }
    }

    /// Every group as `labels: [(endpoint, [chunk times])]`.
    fn drain(m: &mut SeriesMerge) -> Result<Vec<String>, MergeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut out = Vec::new();
            while let Some((l, members)) = m.next_group().await? {
                let members: Vec<String> = members
                    .iter()
                    .map(|(ep, c)| {
                        let ts: Vec<String> = c.iter().map(|c| c.min_time.to_string()).collect();
                        format!("{ep}:{}", ts.join("+"))
                    })
                    .collect();
                out.push(format!("{l} {}", members.join(" ")));
            }
            Ok(out)
        })
    }

    #[test]
    fn an_endpoint_that_does_not_shard_is_filtered_to_the_shard() {
        let series = || {
            ["a", "b", "c", "d", "e", "f"]
                .iter()
                .map(|i| {
                    (
                        labels(&format!("__name__=up,i={i},replica=r1")),
                        vec![chunk(0)],
                    )
                })
                .collect::<Vec<_>>()
        };
        let strip = vec!["replica".to_string()];
        let mut kept = Vec::new();
        for index in 0..3 {
            let shard = ShardInfo {
                index,
                total: 3,
                by: true,
                labels: vec!["i".into(), "replica".into()],
            };
            let held = gauntlet_engine::budget::MemoryBudget::unlimited().empty("query");
            match in_shard(
                Frame::Series(series(), held),
                Some(&(shard.clone(), strip.clone())),
            ) {
                Some(Frame::Series(s, _)) => {
                    assert!(s.iter().all(|(l, _)| shard.matches_except(l, &strip)));
                    kept.extend(s.into_iter().map(|(l, _)| l));
                }
                None => {}
                Some(_) => panic!("not a series frame"),
            }
        }
        // Each series is in exactly one shard; the replica label does not count.
        kept.sort();
        let all: Vec<Labels> = series().into_iter().map(|(l, _)| l).collect();
        assert_eq!(kept, all);
    }

    #[test]
    fn one_endpoint_passes_through_with_its_split_series_joined() {
        let mut m = merge_of(
            vec![(
                vec![vec![("a=1", 1), ("a=2", 1)], vec![("a=2", 2), ("a=3", 1)]],
                None,
            )],
            true,
        );
        assert_eq!(
            drain(&mut m).unwrap(),
            [r#"{a="1"} 0:1"#, r#"{a="2"} 0:1+2"#, r#"{a="3"} 0:1"#]
        );
    }

    #[test]
    fn equal_label_sets_of_many_endpoints_group_in_endpoint_order() {
        let mut m = merge_of(
            vec![
                (vec![vec![("a=2", 10)], vec![("a=4", 10)]], None),
                (vec![vec![("a=1", 20), ("a=2", 20)]], None),
                (vec![], None),
                (vec![vec![("a=2", 30), ("a=3", 30), ("a=4", 30)]], None),
            ],
            true,
        );
        assert_eq!(
            drain(&mut m).unwrap(),
            [
                r#"{a="1"} 1:20"#,
                r#"{a="2"} 0:10 1:20 3:30"#,
                r#"{a="3"} 3:30"#,
                r#"{a="4"} 0:10 3:30"#,
            ]
        );
    }

    #[test]
    fn no_endpoints_and_empty_answers_merge_to_nothing() {
        assert!(drain(&mut merge_of(vec![], true)).unwrap().is_empty());
        let mut m = merge_of(vec![(vec![], None), (vec![vec![]], None)], true);
        assert!(drain(&mut m).unwrap().is_empty());
    }

    #[test]
    fn a_failure_mid_answer_is_a_note_or_the_end_as_asked() {
        let answers = || {
            vec![
                (vec![vec![("a=1", 1)], vec![("a=3", 1)]], Some("gone")),
                (vec![vec![("a=2", 2), ("a=4", 2)]], None),
            ]
        };
        let mut m = merge_of(answers(), true);
        assert_eq!(
            drain(&mut m).unwrap(),
            [
                r#"{a="1"} 0:1"#,
                r#"{a="2"} 1:2"#,
                r#"{a="3"} 0:1"#,
                r#"{a="4"} 1:2"#
            ]
        );
        let failed = m.take_failures();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].addr.as_str(), failed[0].message.as_str()),
            ("ep0", "gone")
        );
        let mut m = merge_of(answers(), false);
        match drain(&mut m) {
            Err(MergeError::Endpoint(f)) => assert_eq!(f.addr, "ep0"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_answer_out_of_order_fails_its_endpoint() {
        let mut m = merge_of(
            vec![
                (vec![vec![("a=2", 1), ("a=1", 1)]], None),
                (vec![vec![("a=1", 2), ("a=3", 2)]], None),
            ],
            true,
        );
        assert_eq!(
            drain(&mut m).unwrap(),
            [r#"{a="1"} 1:2"#, r#"{a="2"} 0:1"#, r#"{a="3"} 1:2"#]
        );
        let failed = m.take_failures();
        assert!(failed[0].message.contains("out of order"), "{failed:?}");
    }

    #[test]
    fn replica_labels_left_on_are_taken_off_and_the_answer_sorted_again() {
        // Sorted with the replica label, out of order without it.
        let strip = vec!["r".to_string()];
        let mut m = merge_with(
            vec![(
                vec![vec![("a=1,b=2,r=x", 1), ("a=1,b=2,r=x", 2), ("a=1,r=y", 3)]],
                None,
            )],
            true,
            strip.clone(),
            true,
        );
        assert_eq!(
            drain(&mut m).unwrap(),
            [r#"{a="1"} 0:3"#, r#"{a="1", b="2"} 0:1+2"#]
        );
        assert!(m.take_failures().is_empty());
        // Series that become equal stay members of their own, as replicas of one another.
        let mut m = merge_with(
            vec![(vec![vec![("a=1,r=x", 1), ("a=1,r=y", 2)]], None)],
            true,
            strip,
            true,
        );
        assert_eq!(drain(&mut m).unwrap(), [r#"{a="1"} 0:1 0:2"#]);
    }
}
