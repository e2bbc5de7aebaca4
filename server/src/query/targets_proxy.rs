//! The `thanos.Targets` service a querier serves itself, as Thanos's querier does, so that a
//! querier stacked above it answers `/api/v1/targets` over the endpoints below: each call is
//! the querier's own targets fan-out ([`TargetEndpoints::gather`]) with the request's `state`
//! and partial-response strategy, the targets deduplicated along this querier's replica
//! labels and answered as one frame, then the warnings.

use std::sync::Arc;

use gauntlet_proto::thanos::targets_server::{Targets, TargetsServer};
use gauntlet_proto::thanos::{
    PartialResponseStrategy, TargetsRequest, TargetsResponse, targets_response,
};
use tonic::{Request, Response, Status};

use super::targets::{TargetDiscovery, TargetEndpoints, to_proto};
use crate::grpc::convert;

/// `thanos.Targets` over a querier's targets endpoints.
#[derive(Debug, Clone)]
pub struct TargetsProxy {
    targets: Arc<TargetEndpoints>,
}

impl TargetsProxy {
    /// The service over `targets`.
    pub fn new(targets: Arc<TargetEndpoints>) -> Self {
        TargetsProxy { targets }
    }

    /// The service over `targets`, as a tonic server.
    pub fn server(targets: Arc<TargetEndpoints>) -> TargetsServer<Self> {
        TargetsServer::new(Self::new(targets))
    }
}

/// The frames of one answer: the targets, then every warning.
fn frames(t: &TargetDiscovery, warnings: Vec<String>) -> Vec<Result<TargetsResponse, Status>> {
    let targets = targets_response::Result::Targets(to_proto(t));
    let warnings = warnings.into_iter().map(targets_response::Result::Warning);
    std::iter::once(targets)
        .chain(warnings)
        .map(|r| Ok(TargetsResponse { result: Some(r) }))
        .collect()
}

#[tonic::async_trait]
impl Targets for TargetsProxy {
    type TargetsStream = tokio_stream::Iter<std::vec::IntoIter<Result<TargetsResponse, Status>>>;

    async fn targets(
        &self,
        req: Request<TargetsRequest>,
    ) -> Result<Response<Self::TargetsStream>, Status> {
        let req = req.into_inner();
        // An unknown state number reads as `any`, as the wire's default.
        let state = req.state();
        // As Thanos's proxy: an endpoint's failure fails the call only when asked to abort.
        let partial = req.partial_response_strategy() != PartialResponseStrategy::Abort;
        let (t, warnings) = self
            .targets
            .gather(state, partial)
            .await
            .map_err(|e| convert::clipped(tonic::Code::Aborted, &e))?;
        Ok(Response::new(tokio_stream::iter(frames(&t, warnings))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet_engine::labels::Labels;

    #[test]
    fn the_targets_go_first_then_the_warnings() {
        let t = TargetDiscovery {
            active: Vec::new(),
            dropped: vec![Labels::from_pairs([("__address__", "a:1")])],
        };
        let got: Vec<_> = frames(&t, vec!["w1".into(), "w2".into()])
            .into_iter()
            .map(|f| f.unwrap().result.unwrap())
            .collect();
        assert!(
            matches!(&got[0], targets_response::Result::Targets(d) if d.dropped_targets.len() == 1)
        );
        assert_eq!(
            got[1..],
            [
                targets_response::Result::Warning("w1".into()),
                targets_response::Result::Warning("w2".into())
            ]
        );
    }
}
