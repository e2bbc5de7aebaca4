//! What the ruler (`gauntlet rule`) needs of PromQL beyond queries: alert label and annotation
//! templates expanded as Prometheus expands them.
pub mod template;
