//! Translation between the Thanos protobuf messages and the engine's types, with the gRPC
//! status each engine error maps to.

use std::sync::Arc;

use gauntlet_engine::ErrorClass;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::chunk::{AggrChunk, AggrType, Encoding};
use gauntlet_engine::error::{ECHO_BYTES, MESSAGE_BYTES, clip};
use gauntlet_engine::labels::{Labels, MatchType, Matcher};
use gauntlet_engine::store::{ChunkView, SeriesBatch, ShardInfo, StoreError};
use gauntlet_proto::thanos::{self, label_matcher};
use tonic::Status;

/// Regex bytes of a request whose matchers are built on the network thread that took it;
/// longer patterns can take milliseconds, even seconds, to compile, and are built on a
/// blocking thread instead.
const INLINE_REGEX_BYTES: usize = 4096;

/// Engine matchers from wire matchers, their regexes holding room in `budget`; a bad regex or
/// type is `InvalidArgument`. Long regexes are compiled off the network threads.
pub async fn matchers(
    ms: Vec<thanos::LabelMatcher>,
    budget: &Arc<MemoryBudget>,
) -> Result<Vec<Matcher>, Status> {
    let regex_bytes: usize = ms
        .iter()
        .filter(|m| {
            m.r#type == label_matcher::Type::Re as i32
                || m.r#type == label_matcher::Type::Nre as i32
        })
        .map(|m| m.value.len())
        .sum();
    if regex_bytes <= INLINE_REGEX_BYTES {
        return build_matchers(&ms, budget);
    }
    let budget = Arc::clone(budget);
    tokio::task::spawn_blocking(move || build_matchers(&ms, &budget))
        .await
        .map_err(|e| Status::internal(format!("building matchers: {e}")))?
}

fn build_matchers(
    ms: &[thanos::LabelMatcher],
    budget: &Arc<MemoryBudget>,
) -> Result<Vec<Matcher>, Status> {
    ms.iter()
        .map(|m| {
            let typ = match label_matcher::Type::try_from(m.r#type) {
                Ok(label_matcher::Type::Eq) => MatchType::Equal,
                Ok(label_matcher::Type::Neq) => MatchType::NotEqual,
                Ok(label_matcher::Type::Re) => MatchType::Regexp,
                Ok(label_matcher::Type::Nre) => MatchType::NotRegexp,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "matcher on {:?}: unknown type {}",
                        clip(&m.name, ECHO_BYTES),
                        m.r#type
                    )));
                }
            };
            Matcher::new_in(budget, typ, &m.name, &m.value)
                .map_err(|e| invalid_argument(format!("bad matcher: {e}")))
        })
        .collect()
}

/// Wire labels from engine labels.
pub fn labels(l: &Labels) -> Vec<thanos::Label> {
    l.iter()
        .map(|l| thanos::Label {
            name: l.name.to_string(),
            value: l.value.to_string(),
        })
        .collect()
}

/// Series `i` of a batch as a wire series: labels, and chunks in wire form (see [`chunk`]).
pub fn batch_series(b: &SeriesBatch, i: usize) -> thanos::Series {
    // Label bytes come from symbol tables checked to be UTF-8 when the block was loaded.
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    thanos::Series {
        labels: b
            .labels(i)
            .map(|(n, v)| thanos::Label {
                name: text(n),
                value: text(v),
            })
            .collect(),
        chunks: b.chunks(i).map(|c| chunk(&c)).collect(),
    }
}

/// A Series answer's messages: one per series, or, when the request's `response_batch_size`
/// is above 1, that many series per `SeriesResponse.batch`.
pub fn series_responses(
    series: Vec<thanos::Series>,
    response_batch_size: i64,
) -> Vec<thanos::SeriesResponse> {
    use thanos::series_response::Result;
    let wrap = |result| thanos::SeriesResponse {
        result: Some(result),
    };
    match usize::try_from(response_batch_size) {
        Ok(n) if n > 1 => {
            let mut out = Vec::with_capacity(series.len().div_ceil(n));
            let mut it = series.into_iter().peekable();
            while it.peek().is_some() {
                let series = it.by_ref().take(n).collect();
                out.push(wrap(Result::Batch(thanos::SeriesBatch { series })));
            }
            out
        }
        _ => series
            .into_iter()
            .map(|s| wrap(Result::Series(s)))
            .collect(),
    }
}

/// Whether a request asked to abort on any block error.
pub fn abort(strategy: i32, disabled: bool) -> bool {
    disabled || strategy == thanos::PartialResponseStrategy::Abort as i32
}

/// The gRPC status of a store error, by its class: limits are `ResourceExhausted` naming the
/// limit, bad requests `InvalidArgument`, an unready store or unreachable bucket
/// `Unavailable`, the rest `Internal`.
pub fn status(e: StoreError) -> Status {
    clipped(code(e.class()), &e.to_string())
}

/// The gRPC status of any engine error, by its class (as [`status`]).
pub fn engine_status(e: gauntlet_engine::Error) -> Status {
    if let gauntlet_engine::Error::OverBudget(why) = &e {
        return crate::memory::refusal(why);
    }
    clipped(code(e.class()), &e.to_string())
}

/// The gRPC code of an error class.
pub fn code(class: ErrorClass) -> tonic::Code {
    match class {
        ErrorClass::BadData => tonic::Code::InvalidArgument,
        ErrorClass::Execution => tonic::Code::ResourceExhausted,
        ErrorClass::Timeout => tonic::Code::DeadlineExceeded,
        ErrorClass::Canceled => tonic::Code::Cancelled,
        ErrorClass::Unavailable => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    }
}

/// A status whose message is at most [`MESSAGE_BYTES`]: it travels in a header.
pub fn clipped(code: tonic::Code, message: &str) -> Status {
    Status::new(code, clip(message, MESSAGE_BYTES))
}

/// An `InvalidArgument` status, its message clipped.
pub fn invalid_argument(message: String) -> Status {
    clipped(tonic::Code::InvalidArgument, &message)
}

/// A request's `shard_info` in engine terms; `None` (no sharding) when absent or when it asks
/// for fewer than one shard, as Thanos's shard matcher reads it.
pub fn shard_info(info: Option<thanos::ShardInfo>) -> Option<ShardInfo> {
    info.filter(|s| s.total_shards >= 1).map(|s| ShardInfo {
        index: s.shard_index.max(0) as u64,
        total: s.total_shards as u64,
        by: s.by,
        labels: s.labels,
    })
}

/// The aggregates a Series request asks for; `RAW` is ignored (raw chunks are always served
/// whole), unknown numbers are `InvalidArgument`.
pub fn aggregates(aggrs: &[i32]) -> Result<Vec<AggrType>, Status> {
    let mut out = Vec::with_capacity(aggrs.len());
    for &a in aggrs {
        match AggrType::from_storeapi(a) {
            Some(t) if !out.contains(&t) => out.push(t),
            Some(_) => {}
            None if a == thanos::Aggr::Raw as i32 => {}
            None => {
                return Err(Status::invalid_argument(format!("unknown aggregate {a}")));
            }
        }
    }
    Ok(out)
}

/// A served chunk in wire form: raw chunks in `raw`, downsampled ones split into the
/// aggregate fields they hold (the store has already kept only the requested ones). Each
/// payload carries its xxhash64 so a querier can drop duplicates cheaply.
pub fn chunk(c: &ChunkView<'_>) -> thanos::AggrChunk {
    let data = bytes::Bytes::copy_from_slice(c.data);
    let wire = |data: bytes::Bytes| thanos::Chunk {
        r#type: thanos::chunk::Encoding::Xor as i32,
        hash: xxhash_rust::xxh64::xxh64(&data, 0),
        data,
    };
    let mut out = thanos::AggrChunk {
        min_time: c.min_time,
        max_time: c.max_time,
        ..Default::default()
    };
    let typ = |encoding: u8| match encoding {
        2 => thanos::chunk::Encoding::Histogram,
        3 => thanos::chunk::Encoding::FloatHistogram,
        _ => thanos::chunk::Encoding::Xor,
    } as i32;
    if c.encoding != Encoding::Aggr as u8 {
        out.raw = Some(thanos::Chunk {
            r#type: typ(c.encoding),
            ..wire(data)
        });
        return out;
    }
    let parts = AggrChunk::new(c.data).present();
    let field = |t: AggrType| {
        parts[t as usize].map(|p| {
            // Sub-chunks are slices of the one copy of the chunk's bytes; a native
            // histogram's sum and counter are float histogram chunks, typed as such.
            let start = p.data.as_ptr() as usize - c.data.as_ptr() as usize;
            thanos::Chunk {
                r#type: typ(p.encoding),
                ..wire(data.slice(start..start + p.data.len()))
            }
        })
    };
    out.count = field(AggrType::Count);
    out.sum = field(AggrType::Sum);
    out.min = field(AggrType::Min);
    out.max = field(AggrType::Max);
    out.counter = field(AggrType::Counter);
    out
}

/// One label set a StoreAPI server serves, with its time range (ms), for Info.
#[derive(Debug, Clone)]
pub struct InfoSet {
    /// The external labels.
    pub labels: Labels,
    /// Oldest sample, ms.
    pub min_time: i64,
    /// Newest sample, ms.
    pub max_time: i64,
}

/// The `thanos.info.Info` answer of a StoreAPI server of `component` ("store", "receive")
/// serving `sets`: one label set and TSDB info per set, the store's range their union
/// (MaxInt64/MinInt64 when there are none, as Thanos).
pub fn info_response(
    component: &str,
    sets: &[InfoSet],
    supports_sharding: bool,
) -> thanos::info::InfoResponse {
    let zsets: Vec<thanos::ZLabelSet> = sets
        .iter()
        .map(|s| thanos::ZLabelSet {
            labels: labels(&s.labels),
        })
        .collect();
    thanos::info::InfoResponse {
        label_sets: zsets.clone(),
        component_type: component.into(),
        store: Some(thanos::info::StoreInfo {
            min_time: sets.iter().map(|s| s.min_time).min().unwrap_or(i64::MAX),
            max_time: sets.iter().map(|s| s.max_time).max().unwrap_or(i64::MIN),
            supports_sharding,
            supports_without_replica_labels: true,
            tsdb_infos: sets
                .iter()
                .zip(zsets)
                .map(|(s, z)| thanos::info::TsdbInfo {
                    labels: Some(z),
                    min_time: s.min_time,
                    max_time: s.max_time,
                })
                .collect(),
            supports_projections: false,
        }),
        ..Default::default()
    }
}
