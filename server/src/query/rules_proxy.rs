//! The `thanos.Rules` service a querier serves itself, as Thanos's querier does, so that a
//! querier stacked above it sees the rules of the rulers below: each call is the querier's own
//! rules fan-out ([`RuleEndpoints::gather`]), with the request's filters, its `match[]`
//! selectors and its partial-response strategy, the groups merged and the rules deduplicated
//! along this querier's replica labels.

use std::sync::Arc;

use gauntlet_engine::budget::MemoryBudget;
use gauntlet_proto::thanos::rules_server::{Rules, RulesServer};
use gauntlet_proto::thanos::{
    PartialResponseStrategy, RulesRequest, RulesResponse, rules_response,
};
use tonic::{Request, Response, Status};

use super::rules::RuleEndpoints;
use crate::http::params::parse_match_sets;
use crate::rule::groups::RuleSelection;

/// `thanos.Rules` over a querier's rule endpoints.
#[derive(Debug, Clone)]
pub struct RulesProxy {
    rules: Arc<RuleEndpoints>,
    /// What parsing the request's selectors may reserve.
    budget: Arc<MemoryBudget>,
}

impl RulesProxy {
    /// The service over `rules`; selectors are parsed within `budget`.
    pub fn new(rules: Arc<RuleEndpoints>, budget: Arc<MemoryBudget>) -> Self {
        RulesProxy { rules, budget }
    }

    /// The service over `rules`, as a tonic server; selectors are parsed within `budget`.
    pub fn server(rules: Arc<RuleEndpoints>, budget: Arc<MemoryBudget>) -> RulesServer<Self> {
        RulesServer::new(Self::new(rules, budget))
    }
}

/// The frames of one `thanos.Rules` answer: every group, then every warning (the querier's,
/// the ruler's and the sidecar's answers alike).
pub(crate) fn frames(
    groups: Vec<gauntlet_proto::thanos::RuleGroup>,
    warnings: Vec<String>,
) -> Vec<Result<RulesResponse, Status>> {
    let groups = groups.into_iter().map(rules_response::Result::Group);
    let warnings = warnings.into_iter().map(rules_response::Result::Warning);
    groups
        .chain(warnings)
        .map(|r| Ok(RulesResponse { result: Some(r) }))
        .collect()
}

#[tonic::async_trait]
impl Rules for RulesProxy {
    type RulesStream = tokio_stream::Iter<std::vec::IntoIter<Result<RulesResponse, Status>>>;

    async fn rules(
        &self,
        req: Request<RulesRequest>,
    ) -> Result<Response<Self::RulesStream>, Status> {
        let req = req.into_inner();
        let selection = RuleSelection::from_request(&req);
        let selectors: Vec<&str> = req.matcher_string.iter().map(String::as_str).collect();
        let sets = parse_match_sets(&selectors, false, &self.budget)
            .map_err(|e| Status::invalid_argument(e.message))?;
        // Thanos's rules proxy fails the call on an endpoint's failure only when asked to
        // abort; its default (WARN) turns the failure into a warning frame.
        let partial = req.partial_response_strategy() != PartialResponseStrategy::Abort;
        let (groups, warnings) = self
            .rules
            .gather(&selection, &sets, partial)
            .await
            .map_err(|e| Status::aborted(format!("fetching rules: {e}")))?;
        Ok(Response::new(tokio_stream::iter(frames(groups, warnings))))
    }
}
