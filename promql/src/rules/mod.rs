//! Recording and alerting rules, as Prometheus and Thanos's ruler evaluate them: rule files
//! ([`file`]), checked as promtool checks them ([`check`]), evaluated group by group
//! ([`group`]) with alerts moving through their states ([`alerting`]), their labels and
//! annotations expanded as Go templates with Prometheus's functions ([`template`],
//! [`expand`]), and promtool's unit tests run over them ([`unittest`]).

pub mod alerting;
pub mod check;
pub mod expand;
pub mod file;
pub mod group;
pub mod template;
pub mod unittest;
mod yaml;
