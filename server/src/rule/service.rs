//! The `thanos.Rules` gRPC service over a ruler's [`Manager`], and the Info answer that tells
//! a querier it is there.

use std::sync::Arc;

use gauntlet_proto::thanos::info::info_server::Info;
use gauntlet_proto::thanos::info::{InfoRequest, InfoResponse, QueryApiInfo, RulesInfo};
use gauntlet_proto::thanos::rules_server::{Rules, RulesServer};
use gauntlet_proto::thanos::{RulesRequest, RulesResponse};
use tonic::{Request, Response, Status};

use super::groups::{RuleSelection, manager_groups};
use super::manager::Manager;

/// Where the groups come from: a manager known at start (`gauntlet rule`) or one set once its
/// rules are loaded (`gauntlet all`); none yet answers with no groups.
pub type ManagerCell = Arc<std::sync::OnceLock<Arc<Manager>>>;

/// `thanos.Rules` over the groups of a manager.
#[derive(Debug, Clone)]
pub struct RulesService {
    manager: ManagerCell,
}

impl RulesService {
    /// The service over `manager`, as a tonic server.
    pub fn server(manager: ManagerCell) -> RulesServer<Self> {
        RulesServer::new(RulesService { manager })
    }
}

#[tonic::async_trait]
impl Rules for RulesService {
    type RulesStream = tokio_stream::Iter<std::vec::IntoIter<Result<RulesResponse, Status>>>;

    async fn rules(
        &self,
        req: Request<RulesRequest>,
    ) -> Result<Response<Self::RulesStream>, Status> {
        let groups = match self.manager.get() {
            Some(m) => RuleSelection::from_request(req.get_ref()).apply(manager_groups(m)),
            None => Vec::new(),
        };
        Ok(Response::new(tokio_stream::iter(
            crate::query::rules_proxy::frames(groups, Vec::new()),
        )))
    }
}

/// An Info service that answers as `inner` does, also advertising the Rules API when it has
/// rules (and, when `component` is given, naming the component so).
#[derive(Debug, Clone)]
pub struct WithRulesInfo<I> {
    inner: I,
    component: Option<&'static str>,
    advertise: bool,
    query_api: bool,
}

impl<I> WithRulesInfo<I> {
    /// `inner`'s answer plus `rules` when `advertise`, with `component` as the component type
    /// if given.
    pub fn new(inner: I, component: Option<&'static str>, advertise: bool) -> Self {
        WithRulesInfo {
            inner,
            component,
            advertise,
            query_api: false,
        }
    }

    /// Also advertises the gRPC Query API (`thanos.Query`) served beside it.
    pub fn with_query_api(mut self) -> Self {
        self.query_api = true;
        self
    }
}

#[tonic::async_trait]
impl<I: Info> Info for WithRulesInfo<I> {
    async fn info(&self, req: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let mut info = self.inner.info(req).await?.into_inner();
        if self.advertise {
            info.rules = Some(RulesInfo {});
        }
        if self.query_api {
            info.query = Some(QueryApiInfo {});
        }
        if let Some(c) = self.component {
            info.component_type = c.to_string();
        }
        Ok(Response::new(info))
    }
}
