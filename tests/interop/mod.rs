//! Gauntlet beside upstream Thanos: each test runs Thanos's own binary (built by
//! `tests/peers/build.sh` at the version `tests/peers/thanos/go.mod` pins) on loopback next to
//! Gauntlet's processes over the same data, and holds Gauntlet to Thanos's answers:
//! Thanos's querier in front of Gauntlet's stores, Gauntlet's querier in front of Thanos's,
//! mixed receive hashrings, buckets written by one and read, verified and compacted by the
//! other, and Thanos's query frontend and ruler over Gauntlet's querier.

mod blocks;
mod fixture;
pub(crate) mod frontend_rule;
mod gauntlet_query;
mod hashring;
mod parquet;
mod querier_front;
pub(crate) mod rule;
mod rule_stack;
