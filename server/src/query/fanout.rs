//! The querier's read path: a request fans out to every endpoint that may hold matching data,
//! in parallel and each within a timeout; the answers are decoded to samples, merged by label
//! set and, with dedup on, replicas are folded with the penalty algorithm.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gauntlet_engine::chunk::{SampleBatch, decode_xor_into};
use gauntlet_engine::labels::{Labels, MatchType, Matcher};
use gauntlet_engine::query::{
    Queryable, SelectHints, Series, dedup_replicas, is_counter_func, merge_samples, without_labels,
};
use gauntlet_engine::{Error, Result};
use gauntlet_proto::thanos::{
    self, Aggr, AggrChunk, LabelMatcher, LabelNamesRequest, LabelValuesRequest,
    PartialResponseStrategy, SeriesRequest, label_matcher, series_response,
};
use tokio::runtime::Handle;

use super::endpoints::{Endpoint, EndpointInfo, EndpointSet};
use super::{ReadOptions, ReadView, Source};

/// A querier over a set of StoreAPI endpoints.
#[derive(Debug)]
pub struct Querier {
    endpoints: Arc<EndpointSet>,
    runtime: Handle,
    replica_labels: Vec<String>,
    endpoint_timeout: Duration,
}

impl Querier {
    /// A querier over `endpoints`, running its RPCs on `runtime`; `replica_labels` are
    /// `--query.replica-label`; each endpoint call gets at most `endpoint_timeout`.
    pub fn new(
        endpoints: Arc<EndpointSet>,
        runtime: Handle,
        replica_labels: Vec<String>,
        endpoint_timeout: Duration,
    ) -> Self {
        Querier {
            endpoints,
            runtime,
            replica_labels,
            endpoint_timeout,
        }
    }

    /// The endpoint set.
    pub fn endpoints(&self) -> &Arc<EndpointSet> {
        &self.endpoints
    }
}

impl Source for Arc<Querier> {
    fn view(&self, opts: &ReadOptions) -> Result<Arc<dyn ReadView>> {
        let replica_labels = if opts.dedup {
            opts.replica_labels
                .clone()
                .unwrap_or_else(|| self.replica_labels.clone())
        } else {
            Vec::new()
        };
        Ok(Arc::new(QuerierView {
            querier: self.clone(),
            opts: opts.clone(),
            replica_labels,
            warnings: Mutex::new(Vec::new()),
        }))
    }
}

/// One request's view through the querier.
#[derive(Debug)]
pub struct QuerierView {
    querier: Arc<Querier>,
    opts: ReadOptions,
    /// Labels to deduplicate along; empty when dedup is off.
    replica_labels: Vec<String>,
    warnings: Mutex<Vec<String>>,
}

/// The series one endpoint returned: frames of equal labels joined, chunks kept raw.
pub(super) type EndpointSeries = Vec<(Labels, Vec<AggrChunk>)>;

fn remote_error(addr: &str, msg: impl std::fmt::Display) -> Error {
    Error::Io {
        path: addr.into(),
        source: std::io::Error::other(msg.to_string()),
    }
}

/// Matchers as the StoreAPI carries them.
pub fn to_proto_matchers(matchers: &[Matcher]) -> Vec<LabelMatcher> {
    matchers
        .iter()
        .map(|m| LabelMatcher {
            r#type: match m.typ {
                MatchType::Equal => label_matcher::Type::Eq,
                MatchType::NotEqual => label_matcher::Type::Neq,
                MatchType::Regexp => label_matcher::Type::Re,
                MatchType::NotRegexp => label_matcher::Type::Nre,
            } as i32,
            name: m.name.clone(),
            value: m.value.clone(),
        })
        .collect()
}

/// Labels from the StoreAPI form.
pub fn from_proto_labels(labels: Vec<thanos::Label>) -> Labels {
    Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)))
}

impl QuerierView {
    fn strategy(&self) -> i32 {
        if self.opts.partial_response {
            PartialResponseStrategy::Warn as i32
        } else {
            PartialResponseStrategy::Abort as i32
        }
    }

    fn warn(&self, w: String) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(w);
    }

    /// An endpoint failed: a warning when partial responses are allowed, else the error.
    fn endpoint_failed(&self, addr: &str, msg: String) -> Result<()> {
        if self.opts.partial_response {
            self.warn(format!("endpoint {addr}: {msg}"));
            Ok(())
        } else {
            Err(remote_error(addr, msg))
        }
    }

    fn targets(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Vec<(Arc<Endpoint>, EndpointInfo)> {
        self.querier.endpoints.select(mint, maxt, matchers)
    }

    async fn fetch_series(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        skip_chunks: bool,
    ) -> Result<Vec<EndpointSeries>> {
        let targets = self.targets(mint, maxt, matchers);
        let timeout = self.querier.endpoint_timeout;
        let calls = targets.into_iter().map(|(ep, info)| {
            let req = SeriesRequest {
                min_time: mint,
                max_time: maxt,
                matchers: to_proto_matchers(matchers),
                max_resolution_window: self.opts.max_resolution_ms,
                aggregates: vec![Aggr::Count as i32, Aggr::Sum as i32],
                partial_response_disabled: !self.opts.partial_response,
                partial_response_strategy: self.strategy(),
                skip_chunks,
                without_replica_labels: if info.supports_without_replica_labels {
                    self.replica_labels.clone()
                } else {
                    Vec::new()
                },
                ..SeriesRequest::default()
            };
            async move {
                let res = tokio::time::timeout(timeout, series_from(&ep, req)).await;
                (ep.addr.clone(), res)
            }
        });
        let mut out = Vec::new();
        for (addr, res) in futures::future::join_all(calls).await {
            match res {
                Ok(Ok((series, warnings))) => {
                    for w in warnings {
                        self.warn(w);
                    }
                    out.push(series);
                }
                Ok(Err(status)) => self.endpoint_failed(&addr, status.message().to_string())?,
                Err(_) => self.endpoint_failed(&addr, format!("no answer within {timeout:?}"))?,
            }
        }
        Ok(out)
    }

    /// Decodes, merges and deduplicates what the endpoints sent.
    fn assemble(
        &self,
        per_endpoint: Vec<EndpointSeries>,
        mint: i64,
        maxt: i64,
        counter: bool,
        skip_chunks: bool,
    ) -> Result<Vec<Series>> {
        let mut all: Vec<(Labels, Vec<SampleBatch>)> = Vec::new();
        for series in per_endpoint {
            for (labels, chunks) in series {
                let labels = without_labels(&labels, &self.replica_labels);
                let lanes = if skip_chunks {
                    Vec::new()
                } else {
                    let (lanes, skipped) = decode_lanes(chunks, mint, maxt)?;
                    if skipped {
                        self.warn(
                            "histogram and downsampled chunks are not supported yet; they were skipped"
                                .into(),
                        );
                    }
                    lanes
                };
                all.push((labels, lanes));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<Series> = Vec::new();
        let mut i = 0;
        while i < all.len() {
            let mut j = i + 1;
            while j < all.len() && all[j].0 == all[i].0 {
                j += 1;
            }
            let lanes: Vec<&SampleBatch> = all[i..j].iter().flat_map(|(_, l)| l.iter()).collect();
            let samples = if self.replica_labels.is_empty() {
                merge_samples(&lanes)
            } else {
                dedup_replicas(&lanes, counter)
            };
            if skip_chunks || !samples.is_empty() {
                out.push(Series {
                    labels: all[i].0.clone(),
                    samples,
                });
            }
            i = j;
        }
        Ok(out)
    }

    fn label_fanout<F, Fut>(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
        call: F,
    ) -> Result<Vec<String>>
    where
        F: Fn(Arc<Endpoint>) -> Fut,
        Fut: std::future::Future<
                Output = std::result::Result<(Vec<String>, Vec<String>), tonic::Status>,
            >,
    {
        let targets = self.targets(mint, maxt, matchers);
        let timeout = self.querier.endpoint_timeout;
        let calls = targets.into_iter().map(|(ep, _)| {
            let fut = call(ep.clone());
            async move { (ep.addr.clone(), tokio::time::timeout(timeout, fut).await) }
        });
        let results = self
            .querier
            .runtime
            .block_on(futures::future::join_all(calls));
        let mut out: Vec<String> = Vec::new();
        for (addr, res) in results {
            match res {
                Ok(Ok((values, warnings))) => {
                    out.extend(values);
                    for w in warnings {
                        self.warn(w);
                    }
                }
                Ok(Err(status)) => self.endpoint_failed(&addr, status.message().to_string())?,
                Err(_) => self.endpoint_failed(&addr, format!("no answer within {timeout:?}"))?,
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// A series' chunks as non-overlapping runs ("lanes"), each decoded and cut to `[mint, maxt]`.
/// Overlapping chunks within one series come from different replicas' blocks, so each lane is
/// treated as a replica of its own. The flag says whether non-XOR chunks were skipped.
fn decode_lanes(
    mut chunks: Vec<AggrChunk>,
    mint: i64,
    maxt: i64,
) -> Result<(Vec<SampleBatch>, bool)> {
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    // Identical chunks from two stores serving the same block count once.
    chunks.dedup_by(|a, b| {
        a.min_time == b.min_time
            && a.max_time == b.max_time
            && a.raw.as_ref().map(|c| &c.data) == b.raw.as_ref().map(|c| &c.data)
    });
    let mut lanes: Vec<(i64, SampleBatch)> = Vec::new();
    let mut skipped = false;
    for c in chunks {
        let Some(raw) = c
            .raw
            .as_ref()
            .filter(|r| r.r#type == thanos::chunk::Encoding::Xor as i32)
        else {
            skipped = true;
            continue;
        };
        let lane = match lanes.iter().position(|(end, _)| *end < c.min_time) {
            Some(p) => p,
            None => {
                lanes.push((i64::MIN, SampleBatch::new()));
                lanes.len() - 1
            }
        };
        decode_xor_into(&raw.data, &mut lanes[lane].1).map_err(|e| {
            remote_error(
                "chunk",
                format!("chunk [{}, {}]: {e}", c.min_time, c.max_time),
            )
        })?;
        lanes[lane].0 = c.max_time;
    }
    let lanes = lanes
        .into_iter()
        .map(|(_, mut b)| {
            b.truncate_to_range(mint, maxt);
            b
        })
        .filter(|b| !b.is_empty())
        .collect();
    Ok((lanes, skipped))
}

/// Reads one endpoint's Series stream; consecutive frames with equal labels are one series.
pub(super) async fn series_from(
    ep: &Endpoint,
    req: SeriesRequest,
) -> std::result::Result<(EndpointSeries, Vec<String>), tonic::Status> {
    let mut stream = ep.store().series(req).await?.into_inner();
    let mut out: EndpointSeries = Vec::new();
    let mut warnings = Vec::new();
    let mut push = |s: thanos::Series| {
        let labels = from_proto_labels(s.labels);
        match out.last_mut() {
            Some((last, chunks)) if *last == labels => chunks.extend(s.chunks),
            _ => out.push((labels, s.chunks)),
        }
    };
    while let Some(msg) = stream.message().await? {
        match msg.result {
            Some(series_response::Result::Series(s)) => push(s),
            Some(series_response::Result::Batch(b)) => b.series.into_iter().for_each(&mut push),
            Some(series_response::Result::Warning(w)) => warnings.push(format!("{}: {w}", ep.addr)),
            Some(series_response::Result::Hints(_)) | None => {}
        }
    }
    Ok((out, warnings))
}

impl Queryable for QuerierView {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        hints: &SelectHints,
    ) -> Result<Vec<Series>> {
        // `/api/v1/series` only needs label sets.
        let skip_chunks = hints.func.as_deref() == Some("series");
        let counter = hints.func.as_deref().is_some_and(is_counter_func);
        let per_endpoint =
            self.querier
                .runtime
                .block_on(self.fetch_series(mint, maxt, matchers, skip_chunks))?;
        self.assemble(per_endpoint, mint, maxt, counter, skip_chunks)
    }

    fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Vec<String>> {
        let strategy = self.strategy();
        let names = self.label_fanout(mint, maxt, matchers, |ep| {
            let req = LabelNamesRequest {
                partial_response_disabled: !self.opts.partial_response,
                partial_response_strategy: strategy,
                start: mint,
                end: maxt,
                matchers: to_proto_matchers(matchers),
                without_replica_labels: self.replica_labels.clone(),
                ..LabelNamesRequest::default()
            };
            async move {
                let r = ep.store().label_names(req).await?.into_inner();
                Ok((r.names, r.warnings))
            }
        })?;
        Ok(names
            .into_iter()
            .filter(|n| !self.replica_labels.contains(n))
            .collect())
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<String>> {
        let strategy = self.strategy();
        self.label_fanout(mint, maxt, matchers, |ep| {
            let req = LabelValuesRequest {
                label: name.to_string(),
                partial_response_disabled: !self.opts.partial_response,
                partial_response_strategy: strategy,
                start: mint,
                end: maxt,
                matchers: to_proto_matchers(matchers),
                without_replica_labels: self.replica_labels.clone(),
                ..LabelValuesRequest::default()
            };
            async move {
                let r = ep.store().label_values(req).await?.into_inner();
                Ok((r.values, r.warnings))
            }
        })
    }
}

impl ReadView for QuerierView {
    fn warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::chunk::encode_xor;

    fn chunk(ts: &[i64]) -> AggrChunk {
        let val: Vec<f64> = ts.iter().map(|&t| t as f64).collect();
        AggrChunk {
            min_time: ts[0],
            max_time: *ts.last().unwrap(),
            raw: Some(thanos::Chunk {
                r#type: thanos::chunk::Encoding::Xor as i32,
                data: encode_xor(ts, &val).into(),
                hash: 0,
            }),
            ..AggrChunk::default()
        }
    }

    #[test]
    fn overlapping_chunks_become_separate_lanes_and_duplicates_count_once() {
        let chunks = vec![
            chunk(&[100, 200]),
            chunk(&[0, 50]),
            chunk(&[0, 50]),
            chunk(&[40, 60, 300]),
        ];
        let (lanes, skipped) = decode_lanes(chunks, 0, 250).unwrap();
        assert!(!skipped);
        assert_eq!(lanes.len(), 2);
        assert_eq!(lanes[0].ts, vec![0, 50, 100, 200]);
        assert_eq!(lanes[1].ts, vec![40, 60]);
    }

    #[test]
    fn non_xor_chunks_are_skipped_and_reported() {
        let mut hist = chunk(&[0, 10]);
        if let Some(raw) = hist.raw.as_mut() {
            raw.r#type = thanos::chunk::Encoding::Histogram as i32;
        }
        let (lanes, skipped) = decode_lanes(vec![hist, chunk(&[20])], 0, 100).unwrap();
        assert!(skipped);
        assert_eq!(lanes.len(), 1);
        let corrupt = AggrChunk {
            raw: Some(thanos::Chunk {
                data: vec![0xff, 0xff, 1].into(),
                ..thanos::Chunk::default()
            }),
            ..AggrChunk::default()
        };
        assert!(decode_lanes(vec![corrupt], 0, 100).is_err());
    }

    #[test]
    fn matchers_travel_in_storeapi_form() {
        let m = [
            Matcher::equal("a", "b"),
            Matcher::new(MatchType::NotRegexp, "c", "d.*").unwrap(),
        ];
        let p = to_proto_matchers(&m);
        assert_eq!(p[0].r#type, label_matcher::Type::Eq as i32);
        assert_eq!(p[1].r#type, label_matcher::Type::Nre as i32);
        assert_eq!((p[1].name.as_str(), p[1].value.as_str()), ("c", "d.*"));
    }
}
