//! Translation between the Thanos protobuf messages and the engine's types, with the gRPC
//! status each engine error maps to.

use gauntlet_engine::labels::{Labels, MatchType, Matcher};
use gauntlet_engine::store::{SeriesBatch, StoreError};
use gauntlet_proto::thanos::{self, label_matcher};
use tonic::Status;

/// Engine matchers from wire matchers; a bad regex or type is `InvalidArgument`.
pub fn matchers(ms: &[thanos::LabelMatcher]) -> Result<Vec<Matcher>, Status> {
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
                        m.name, m.r#type
                    )));
                }
            };
            Matcher::new(typ, &m.name, &m.value)
                .map_err(|e| Status::invalid_argument(format!("bad matcher: {e}")))
        })
        .collect()
}

/// Wire labels from engine labels.
pub fn labels(l: &Labels) -> Vec<thanos::Label> {
    l.iter()
        .map(|l| thanos::Label {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

/// Series `i` of a batch as a wire series: labels, and raw chunks with their xxhash64.
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
        chunks: b
            .chunks(i)
            .map(|c| thanos::AggrChunk {
                min_time: c.min_time,
                max_time: c.max_time,
                raw: Some(thanos::Chunk {
                    r#type: thanos::chunk::Encoding::Xor as i32,
                    hash: xxhash_rust::xxh64::xxh64(&c.data, 0),
                    data: bytes::Bytes::copy_from_slice(c.data),
                }),
                ..Default::default()
            })
            .collect(),
    }
}

/// Whether a request asked to abort on any block error.
pub fn abort(strategy: i32, disabled: bool) -> bool {
    disabled || strategy == thanos::PartialResponseStrategy::Abort as i32
}

/// The gRPC status of an engine error: limits are `ResourceExhausted` naming the limit, bad
/// requests `InvalidArgument`, an unready store `Unavailable`, the rest `Internal`.
pub fn status(e: StoreError) -> Status {
    match e {
        StoreError::LimitExceeded { .. } => Status::resource_exhausted(e.to_string()),
        StoreError::InvalidRequest(_) => Status::invalid_argument(e.to_string()),
        StoreError::NotReady | StoreError::Stopped => Status::unavailable(e.to_string()),
        _ => Status::internal(e.to_string()),
    }
}
