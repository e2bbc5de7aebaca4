//! The `thanos.Metadata` service a querier serves itself, as Thanos's querier does, so that a
//! querier stacked above it answers `/api/v1/metadata` over the endpoints below: each call is
//! the querier's own metadata fan-out ([`MetadataEndpoints::gather`]) with the request's
//! `metric`, `limit` and partial-response strategy, answered as one merged frame, then the
//! warnings.

use std::sync::Arc;

use gauntlet_proto::thanos::metadata_server::{Metadata, MetadataServer};
use gauntlet_proto::thanos::{
    MetricMetadataRequest, MetricMetadataResponse, PartialResponseStrategy,
    metric_metadata_response,
};
use tonic::{Request, Response, Status};

use super::metadata::{MetadataEndpoints, MetadataMap, to_proto};
use crate::grpc::convert;

/// `thanos.Metadata` over a querier's metadata endpoints.
#[derive(Debug, Clone)]
pub struct MetadataProxy {
    metadata: Arc<MetadataEndpoints>,
}

impl MetadataProxy {
    /// The service over `metadata`.
    pub fn new(metadata: Arc<MetadataEndpoints>) -> Self {
        MetadataProxy { metadata }
    }

    /// The service over `metadata`, as a tonic server.
    pub fn server(metadata: Arc<MetadataEndpoints>) -> MetadataServer<Self> {
        MetadataServer::new(Self::new(metadata))
    }
}

/// The frames of one answer: the merged metadata, then every warning.
fn frames(map: &MetadataMap, warnings: Vec<String>) -> Vec<Result<MetricMetadataResponse, Status>> {
    let map = metric_metadata_response::Result::Metadata(to_proto(map));
    let warnings = warnings
        .into_iter()
        .map(metric_metadata_response::Result::Warning);
    std::iter::once(map)
        .chain(warnings)
        .map(|r| Ok(MetricMetadataResponse { result: Some(r) }))
        .collect()
}

#[tonic::async_trait]
impl Metadata for MetadataProxy {
    type MetricMetadataStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<MetricMetadataResponse, Status>>>;

    async fn metric_metadata(
        &self,
        req: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let req = req.into_inner();
        // As Thanos's proxy: an endpoint's failure fails the call only when asked to abort.
        let partial = req.partial_response_strategy() != PartialResponseStrategy::Abort;
        let (map, warnings) = self
            .metadata
            .gather(&req.metric, req.limit, partial)
            .await
            .map_err(|e| convert::clipped(tonic::Code::Aborted, &e))?;
        Ok(Response::new(tokio_stream::iter(frames(&map, warnings))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::metadata::Meta;

    #[test]
    fn the_metadata_goes_first_then_the_warnings() {
        let mut map = MetadataMap::new();
        map.insert(
            "up".into(),
            vec![Meta {
                typ: "gauge".into(),
                help: "Up.".into(),
                unit: String::new(),
            }],
        );
        let got: Vec<_> = frames(&map, vec!["w".into()])
            .into_iter()
            .map(|f| f.unwrap().result.unwrap())
            .collect();
        assert!(
            matches!(&got[0], metric_metadata_response::Result::Metadata(m) if m.metadata.contains_key("up"))
        );
        assert_eq!(
            got[1],
            metric_metadata_response::Result::Warning("w".into())
        );
        assert_eq!(got.len(), 2);
    }
}
