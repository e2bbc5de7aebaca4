//! Recording and alerting rules, as Prometheus and Thanos's ruler evaluate them: rule files
//! ([`file`]), checked as promtool checks them ([`check`]), evaluated group by group
//! ([`group`]) with alerts moving through their states ([`alerting`]).

pub mod alerting;
pub mod check;
pub mod file;
pub mod group;
pub mod unittest;
mod yaml;
