//! `/api/v1/metadata` across the querier's endpoints, as Thanos's querier answers it: every
//! endpoint whose Info advertises `metric_metadata` is asked through `thanos.Metadata` with the
//! request's `metric` and `limit`; the answers are merged by metric name, a metric's metas
//! (type, help, unit) kept once each, and at most `limit` metrics kept (negative: all).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gauntlet_proto::thanos::metadata_client::MetadataClient;
use gauntlet_proto::thanos::{self, PartialResponseStrategy, metric_metadata_response};

use super::endpoints::{Endpoint, EndpointSet, Frame, fan_out, read_frames};
use crate::http::json;

/// One metric's metadata: type, help and unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// `counter`, `gauge`, …
    pub typ: String,
    /// The HELP text.
    pub help: String,
    /// The UNIT.
    pub unit: String,
}

/// Metadata by metric name.
pub type MetadataMap = BTreeMap<String, Vec<Meta>>;

/// The metadata endpoints of a querier.
#[derive(Debug)]
pub struct MetadataEndpoints {
    endpoints: Arc<EndpointSet>,
    runtime: tokio::runtime::Handle,
    partial_response: bool,
    timeout: Duration,
}

impl MetadataEndpoints {
    /// Metadata from `endpoints` (those advertising it), calls run on `runtime` and each given
    /// at most `timeout`; `partial_response` turns an endpoint's failure into a warning
    /// instead of failing the request.
    pub fn new(
        endpoints: Arc<EndpointSet>,
        runtime: tokio::runtime::Handle,
        partial_response: bool,
        timeout: Duration,
    ) -> Self {
        MetadataEndpoints {
            endpoints,
            runtime,
            partial_response,
            timeout,
        }
    }

    /// The merged metadata of `metric` (empty: every metric), at most `limit` metrics
    /// (negative: no limit), with the warnings met. Blocking.
    pub fn metadata(&self, metric: &str, limit: i32) -> Result<(MetadataMap, Vec<String>), String> {
        self.runtime
            .block_on(self.gather(metric, limit, self.partial_response))
    }

    /// As [`metadata`](Self::metadata), from async code, with `partial` (an endpoint's failure
    /// is a warning) given by the caller: the `thanos.Metadata` request's own strategy when the
    /// querier serves metadata itself.
    pub async fn gather(
        &self,
        metric: &str,
        limit: i32,
        partial: bool,
    ) -> Result<(MetadataMap, Vec<String>), String> {
        let strategy = if partial {
            PartialResponseStrategy::Warn
        } else {
            PartialResponseStrategy::Abort
        };
        let req = thanos::MetricMetadataRequest {
            metric: metric.to_string(),
            limit,
            partial_response_strategy: strategy as i32,
        };
        let (maps, warnings) = fan_out(
            &self.endpoints,
            |i| i.metric_metadata,
            self.timeout,
            partial,
            "metadata",
            |e| {
                let req = req.clone();
                async move { fetch(&e, req).await }
            },
        )
        .await?;
        Ok((merge(maps, limit), warnings))
    }
}

/// One endpoint's metadata frames and warnings, or why the call failed.
async fn fetch(
    e: &Endpoint,
    req: thanos::MetricMetadataRequest,
) -> Result<(Vec<MetadataMap>, Vec<String>), String> {
    let mut client = MetadataClient::new(e.channel()).max_decoding_message_size(usize::MAX);
    let call = client.metric_metadata(req).await;
    read_frames(
        call,
        |m: thanos::MetricMetadataResponse| match m.result? {
            metric_metadata_response::Result::Metadata(m) => Some(Frame::Item(from_proto(m))),
            metric_metadata_response::Result::Warning(w) => Some(Frame::Warning(w)),
        },
        "no metadata",
    )
    .await
}

/// A wire metadata frame as a map (sorted by name).
fn from_proto(m: thanos::MetricMetadata) -> MetadataMap {
    m.metadata
        .into_iter()
        .map(|(name, entry)| {
            let metas = entry
                .metas
                .into_iter()
                .map(|m| Meta {
                    typ: m.r#type,
                    help: m.help,
                    unit: m.unit,
                })
                .collect();
            (name, metas)
        })
        .collect()
}

/// A map as the wire's metadata frame: the inverse of [`from_proto`].
pub fn to_proto(m: &MetadataMap) -> thanos::MetricMetadata {
    thanos::MetricMetadata {
        metadata: m
            .iter()
            .map(|(name, metas)| {
                let metas = metas
                    .iter()
                    .map(|m| thanos::Meta {
                        r#type: m.typ.clone(),
                        help: m.help.clone(),
                        unit: m.unit.clone(),
                    })
                    .collect();
                (name.clone(), thanos::MetricMetadataEntry { metas })
            })
            .collect(),
    }
}

/// The endpoints' maps as one, as Thanos's querier merges them: a metric not yet seen is
/// taken while fewer than `limit` metrics are (negative: always; 0: never), and a metric
/// seen again gains the metas it did not have.
pub fn merge(maps: Vec<MetadataMap>, limit: i32) -> MetadataMap {
    let mut out = MetadataMap::new();
    if limit == 0 {
        return out;
    }
    for m in maps {
        for (name, metas) in m {
            match out.get_mut(&name) {
                Some(have) => {
                    for meta in metas {
                        if !have.contains(&meta) {
                            have.push(meta);
                        }
                    }
                }
                None => {
                    if limit < 0 || out.len() < limit as usize {
                        out.insert(name, metas);
                    }
                }
            }
        }
    }
    out
}

/// The map as Prometheus's API writes it: `{"name":[{"type":…,"help":…,"unit":…}],…}`.
pub fn metadata_json(m: &MetadataMap) -> String {
    let mut out = String::from("{");
    for (i, (name, metas)) in m.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::push_str(&mut out, name);
        out.push_str(":[");
        for (j, meta) in metas.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"type\":");
            json::push_str(&mut out, &meta.typ);
            out.push_str(",\"help\":");
            json::push_str(&mut out, &meta.help);
            out.push_str(",\"unit\":");
            json::push_str(&mut out, &meta.unit);
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(typ: &str, help: &str) -> Meta {
        Meta {
            typ: typ.into(),
            help: help.into(),
            unit: String::new(),
        }
    }

    fn map(entries: &[(&str, Meta)]) -> MetadataMap {
        let mut m = MetadataMap::new();
        for (n, meta) in entries {
            m.entry(n.to_string()).or_default().push(meta.clone());
        }
        m
    }

    #[test]
    fn metrics_merge_by_name_and_their_metas_are_kept_once() {
        let a = map(&[("up", meta("gauge", "Up.")), ("x", meta("counter", "X."))]);
        let b = map(&[
            ("up", meta("gauge", "Up.")),
            ("up", meta("gauge", "Other help.")),
        ]);
        let got = merge(vec![a, b], -1);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got["up"],
            vec![meta("gauge", "Up."), meta("gauge", "Other help.")]
        );
        assert_eq!(
            metadata_json(&map(&[("x", meta("counter", "X<"))])),
            r#"{"x":[{"type":"counter","help":"X\u003c","unit":""}]}"#
        );
    }

    #[test]
    fn a_map_comes_back_from_the_wire_as_it_went() {
        let m = map(&[
            ("up", meta("gauge", "Up.")),
            ("up", meta("gauge", "Other help.")),
            (
                "bytes",
                Meta {
                    typ: "counter".into(),
                    help: "Bytes.".into(),
                    unit: "bytes".into(),
                },
            ),
        ]);
        let wire = to_proto(&m);
        assert_eq!(wire.metadata["up"].metas.len(), 2);
        assert_eq!(wire.metadata["bytes"].metas[0].unit, "bytes");
        assert_eq!(from_proto(wire), m);
        assert!(to_proto(&MetadataMap::new()).metadata.is_empty());
    }

    #[test]
    fn the_limit_bounds_new_metrics_not_the_metas_of_those_taken() {
        let a = map(&[("a", meta("gauge", "A."))]);
        let b = map(&[("a", meta("gauge", "A2.")), ("b", meta("gauge", "B."))]);
        let got = merge(vec![a.clone(), b.clone()], 1);
        assert_eq!(got.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(got["a"].len(), 2);
        assert!(merge(vec![a, b], 0).is_empty());
    }
}
