//! Compaction as Thanos's compactor does it: blocks of one group (same external labels and
//! resolution) are planned level by level ([`plan`]) and merged into one block series by series
//! ([`merge`]), so that memory follows the merge's buffers and the largest series, not the size
//! of the blocks. Series holding native histograms are merged chunk by chunk as Prometheus's
//! compactor merges them ([`overlap`]). A block is rewritten without some of its series by the
//! same merge ([`rewrite`]).

pub mod merge;
pub mod overlap;
pub mod plan;
pub mod rewrite;

pub use merge::{Dedup, MergeOptions, MergeStats, merge_blocks};
pub use plan::{PlanBlock, Planned, group_key, plan, plan_batch, redundant};
