//! The ruler (`gauntlet rule`, in place of `thanos rule`): evaluates recording and alerting
//! rules against a querier and sends the alerts that fire to Alertmanagers.

pub mod alertmanager_config;
pub mod notifier;
