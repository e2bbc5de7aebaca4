//! Recording and alerting rules, as Prometheus and Thanos's ruler evaluate them: rule files
//! ([`file`]), checked as promtool checks them ([`check`]).

pub mod check;
pub mod file;
mod yaml;
