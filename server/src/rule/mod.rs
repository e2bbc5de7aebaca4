//! `gauntlet rule`: recording and alerting rules evaluated as Thanos Rule evaluates them
//! ([`cmd`], [`manager`]), their queries ([`query`], over gRPC [`query_grpc`]), their API ([`api`]) and the alerts
//! they raise sent to Alertmanager ([`notifier`]), and the groups as the `thanos.Rules`
//! service sends them ([`groups`], [`service`]). With a remote-write configuration the ruler
//! is stateless ([`stateless`]): its results are remote-written through a WAL
//! ([`remote_write`]).

pub mod alertmanager_config;
pub mod api;
pub mod cmd;
pub mod groups;
pub mod manager;
pub mod notifier;
pub mod query;
pub mod query_config;
pub mod query_grpc;
pub mod query_histogram;
pub mod remote_write;
pub mod service;
pub mod stateless;
