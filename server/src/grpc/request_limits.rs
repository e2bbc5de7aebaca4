//! What a gRPC request may decode to, checked on its bytes before it is decoded. The generated
//! decoder makes every element of a repeated message field a struct of its own: an empty
//! `LabelMatcher` is two bytes on the wire and 56 in memory, an empty `TimeSeries` two and
//! 96, and a million of them are then turned into matchers or series. [`RequestLimitsLayer`]
//! reads a request of the StoreAPI or a forwarded remote write whole (within a size limit),
//! walks its wire format with the messages' shapes, and refuses one that would pass its
//! limit before anything of it is decoded:
//!
//! - `thanos.Store/Series`, `LabelNames`, `LabelValues`: at most [`MAX_STORE_REQUEST_BYTES`]
//!   and [`MAX_STORE_REQUEST_ITEMS`] matchers and label names (a selector has a handful);
//!   `InvalidArgument` past either, as the store answered a request too large before.
//! - `thanos.WriteableStore/RemoteWrite`: at most [`crate::receive::write::MAX_FORWARD_BYTES`],
//!   decoding to at most [`FORWARD_BYTES_PER_BYTE`] bytes of structs per byte of request
//!   (a real request takes about 4: labels are short strings), `InvalidArgument` past it.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt;
use tonic::Status;
use tonic::body::Body;

/// Largest StoreAPI request read, bytes: a selector's matchers (a regex of a query as long as
/// `--query.max-length` allows, 1 MiB by default) and hints.
pub const MAX_STORE_REQUEST_BYTES: usize = 4 << 20;

/// Most matchers and label names (replica, shard and grouping labels) in one StoreAPI
/// request.
pub const MAX_STORE_REQUEST_ITEMS: usize = 10_000;

/// Most bytes of structs a forwarded write may decode to per byte of request (plus 64 KiB).
pub const FORWARD_BYTES_PER_BYTE: usize = 8;

/// gRPC's frame header: a compression flag and a four-byte length.
const FRAME_HEADER: usize = 5;

/// How a field of a message is decoded, for what it costs in memory, bytes.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A string or a message without repeated fields: its struct (strings' bytes are the
    /// request's own).
    Item(usize),
    /// A message with repeated fields: its struct and its fields.
    Msg(usize, &'static [Field]),
    /// A packed repeated scalar: a struct of this many bytes per element, elements of at
    /// least this many bytes on the wire.
    Packed(usize, usize),
}

#[derive(Debug, Clone, Copy)]
struct Field {
    num: u64,
    kind: Kind,
}

const fn f(num: u64, kind: Kind) -> Field {
    Field { num, kind }
}

/// `size_of` of the generated structs, rounded up: `LabelMatcher` (two strings and an enum),
/// `String`.
const MATCHER: Kind = Kind::Item(56);
const STRING: Kind = Kind::Item(24);

const GROUPING: &[Field] = &[f(3, STRING)];
const QUERY_HINTS: &[Field] = &[f(4, Kind::Msg(32, GROUPING)), f(6, STRING)];
const SHARD_INFO: &[Field] = &[f(4, STRING)];
const SERIES_REQUEST: &[Field] = &[
    f(3, MATCHER),
    f(5, Kind::Packed(4, 1)),
    f(12, Kind::Msg(96, QUERY_HINTS)),
    f(13, Kind::Msg(48, SHARD_INFO)),
    f(14, STRING),
];
const LABEL_NAMES_REQUEST: &[Field] = &[f(6, MATCHER), f(7, STRING)];
const LABEL_VALUES_REQUEST: &[Field] = &[f(7, MATCHER), f(8, STRING)];

/// `prometheus.TimeSeries` and what it holds, by their structs' sizes.
const LABEL: Kind = Kind::Item(48);
const SPAN: Kind = Kind::Item(8);
const EXEMPLAR: &[Field] = &[f(1, LABEL)];
const HISTOGRAM: &[Field] = &[
    f(8, SPAN),
    f(9, Kind::Packed(8, 1)),
    f(10, Kind::Packed(8, 8)),
    f(11, SPAN),
    f(12, Kind::Packed(8, 1)),
    f(13, Kind::Packed(8, 8)),
    f(16, Kind::Packed(8, 8)),
];
const TIME_SERIES: &[Field] = &[
    f(1, LABEL),
    f(2, Kind::Item(16)),
    f(3, Kind::Msg(40, EXEMPLAR)),
    f(4, Kind::Msg(224, HISTOGRAM)),
];
const TENANT_SERIES: &[Field] = &[f(1, Kind::Msg(96, TIME_SERIES))];
const WRITE_REQUEST: &[Field] = &[
    f(1, Kind::Msg(96, TIME_SERIES)),
    f(4, Kind::Msg(48, TENANT_SERIES)),
];

/// What a message costs once decoded: elements of its repeated fields, and bytes of structs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Cost {
    items: usize,
    bytes: usize,
}

/// Reads a varint at `*at`, moving past it; `None` when cut short or too long.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// What `msg`, a message of shape `fields`, decodes to; counted up to where it stops being
/// well formed (the decoder stops there too, with an error).
fn cost(msg: &[u8], fields: &[Field]) -> Cost {
    let mut c = Cost::default();
    let mut at = 0;
    while at < msg.len() {
        let Some(key) = varint(msg, &mut at) else {
            break;
        };
        let (num, wire) = (key >> 3, key & 7);
        let field = fields.iter().find(|x| x.num == num).map(|x| x.kind);
        let value = match wire {
            0 => varint(msg, &mut at).map(|_| &msg[..0]),
            1 => (at + 8 <= msg.len()).then(|| {
                at += 8;
                &msg[..0]
            }),
            2 => varint(msg, &mut at).and_then(|n| {
                let end = at.checked_add(usize::try_from(n).ok()?)?;
                let v = msg.get(at..end)?;
                at = end;
                Some(v)
            }),
            5 => (at + 4 <= msg.len()).then(|| {
                at += 4;
                &msg[..0]
            }),
            _ => None,
        };
        let Some(value) = value else {
            break;
        };
        match (field, wire) {
            (Some(Kind::Item(size)), 2) => {
                c.items += 1;
                c.bytes += size;
            }
            (Some(Kind::Msg(size, inner)), 2) => {
                let sub = cost(value, inner);
                c.items += 1 + sub.items;
                c.bytes += size + sub.bytes;
            }
            (Some(Kind::Packed(size, width)), 2) => {
                let n = value.len() / width;
                c.items += n;
                c.bytes += n * size;
            }
            // One element of a repeated scalar sent unpacked.
            (Some(Kind::Packed(size, _)), _) => {
                c.items += 1;
                c.bytes += size;
            }
            _ => {}
        }
    }
    c
}

/// What a call of `path` may be, or `None` for calls not checked here.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// A StoreAPI read: its shape.
    Store(&'static [Field]),
    /// A forwarded remote write.
    Forward,
}

fn check_of(path: &str) -> Option<Check> {
    match path {
        "/thanos.Store/Series" => Some(Check::Store(SERIES_REQUEST)),
        "/thanos.Store/LabelNames" => Some(Check::Store(LABEL_NAMES_REQUEST)),
        "/thanos.Store/LabelValues" => Some(Check::Store(LABEL_VALUES_REQUEST)),
        "/thanos.WriteableStore/RemoteWrite" => Some(Check::Forward),
        _ => None,
    }
}

impl Check {
    fn max_bytes(self) -> usize {
        match self {
            Check::Store(_) => MAX_STORE_REQUEST_BYTES,
            Check::Forward => crate::receive::write::MAX_FORWARD_BYTES,
        }
    }

    /// Why `msg` is refused, if it is.
    fn refusal(self, msg: &[u8]) -> Option<Status> {
        match self {
            Check::Store(fields) => {
                let c = cost(msg, fields);
                (c.items > MAX_STORE_REQUEST_ITEMS).then(|| {
                    Status::invalid_argument(format!(
                        "request carries {} matchers and label names, more than the {MAX_STORE_REQUEST_ITEMS} a StoreAPI request may",
                        c.items
                    ))
                })
            }
            Check::Forward => {
                let c = cost(msg, WRITE_REQUEST);
                let limit = msg.len() * FORWARD_BYTES_PER_BYTE + (64 << 10);
                (c.bytes > limit).then(|| {
                    Status::invalid_argument(format!(
                        "forwarded write of {} bytes decodes to {} bytes of series, labels and samples, more than the {limit} bytes a request of its size may ({FORWARD_BYTES_PER_BYTE} per byte): refused",
                        msg.len(),
                        c.bytes
                    ))
                })
            }
        }
    }
}

/// Reads the request of a checked call whole and refuses it when it would pass its limits
/// (see the module's documentation); other calls pass untouched. For a tonic server:
/// `Server::builder().layer(RequestLimitsLayer)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestLimitsLayer;

impl<S> tower::Layer<S> for RequestLimitsLayer {
    type Service = RequestLimits<S>;

    fn layer(&self, inner: S) -> RequestLimits<S> {
        RequestLimits { inner }
    }
}

/// See [`RequestLimitsLayer`].
#[derive(Debug, Clone)]
pub struct RequestLimits<S> {
    inner: S,
}

impl<S, ResBody> tower::Service<http::Request<Body>> for RequestLimits<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let Some(check) = check_of(req.uri().path()) else {
            return Box::pin(self.inner.call(req));
        };
        // The service that was polled ready takes the call; a clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let max = check.max_bytes();
            let bytes = match http_body_util::Limited::new(body, max + FRAME_HEADER)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    let too_large = e
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some();
                    let status = if too_large {
                        Status::invalid_argument(format!(
                            "reading the request (at most {max} bytes, the limit of this call): refused"
                        ))
                    } else {
                        Status::invalid_argument(format!("reading the request: {e}"))
                    };
                    return Ok(status.into_http());
                }
            };
            // An uncompressed frame is checked; a compressed one is left to tonic, which
            // refuses it (no compression is enabled on these servers).
            if let Some([0, a, b, c, d]) = bytes.get(..FRAME_HEADER) {
                let n = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
                let msg = bytes.get(FRAME_HEADER..).unwrap_or_default();
                let msg = msg.get(..n).unwrap_or(msg);
                if let Some(status) = check.refusal(msg) {
                    return Ok(status.into_http());
                }
            }
            let body = Body::new(http_body_util::Full::new(bytes));
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_proto::prometheus as pb;
    use gauntlet_proto::thanos;
    use prost::Message;

    #[test]
    fn store_requests_are_counted_by_their_matchers_and_labels() {
        let req = thanos::SeriesRequest {
            matchers: vec![thanos::LabelMatcher::default(); 3],
            without_replica_labels: vec!["replica".into(); 2],
            shard_info: Some(thanos::ShardInfo {
                labels: vec!["a".into(); 4],
                ..Default::default()
            }),
            aggregates: vec![1, 2],
            max_time: 5,
            ..Default::default()
        };
        let c = cost(&req.encode_to_vec(), SERIES_REQUEST);
        assert_eq!(c.items, 3 + 2 + (1 + 4) + 2);
        let check = Check::Store(SERIES_REQUEST);
        assert!(check.refusal(&req.encode_to_vec()).is_none());
        let bomb = thanos::SeriesRequest {
            matchers: vec![thanos::LabelMatcher::default(); MAX_STORE_REQUEST_ITEMS + 1],
            ..Default::default()
        };
        let refused = check.refusal(&bomb.encode_to_vec()).unwrap();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(
            refused.message().contains("more than the 10000"),
            "{refused:?}"
        );
        let names = thanos::LabelNamesRequest {
            matchers: vec![thanos::LabelMatcher::default(); MAX_STORE_REQUEST_ITEMS],
            without_replica_labels: vec![String::new()],
            ..Default::default()
        };
        assert!(
            Check::Store(LABEL_NAMES_REQUEST)
                .refusal(&names.encode_to_vec())
                .is_some()
        );
    }

    #[test]
    fn forwarded_writes_are_held_to_what_their_size_decodes_to() {
        let real = thanos::WriteRequest {
            timeseries: (0..1000)
                .map(|i| pb::TimeSeries {
                    labels: vec![
                        pb::Label {
                            name: "__name__".into(),
                            value: "up".into(),
                        },
                        pb::Label {
                            name: "instance".into(),
                            value: format!("host-{i}:9100"),
                        },
                    ],
                    samples: vec![pb::Sample {
                        value: 1.0,
                        timestamp: i,
                    }],
                    ..Default::default()
                })
                .collect(),
            tenant: "t".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let c = cost(&real, WRITE_REQUEST);
        assert!(c.bytes < 4 * real.len(), "{c:?} for {} bytes", real.len());
        assert!(Check::Forward.refusal(&real).is_none());
        let empty = thanos::WriteRequest {
            timeseries: vec![pb::TimeSeries::default(); 100_000],
            ..Default::default()
        }
        .encode_to_vec();
        let refused = Check::Forward.refusal(&empty).unwrap();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        // Malformed bytes are left to the decoder's own error.
        assert!(Check::Forward.refusal(&[0xff; 64]).is_none());
        assert_eq!(cost(&[0x0a, 0x05, 0x0a], TIME_SERIES), Cost::default());
    }
}
