//! Selectors whose native histograms are read for their count and sum only: those under
//! `histogram_count`, `histogram_sum` or `histogram_avg` with no subquery, no
//! `histogram_quantile(s)`/`histogram_fraction` and no trim operator above them. Prometheus
//! 3.14 reads these through an iterator that decides each histogram's counter reset as it
//! goes (comparing it with the one before, where the chunk left the hint unknown), so sums of
//! them can meet a "reset" and a "not reset" and warn about the conflict. Gauntlet gives them
//! the hints that iterator would.
//!
//! Under any compatibility, the narrower set of [`BucketFreeSelectors`] (count and sum passed
//! through nothing that reads buckets) is decoded without buckets: only the samples a
//! counter-reset decision compares are decoded whole, and their buckets are dropped once the
//! hints are set.

use std::collections::HashSet;

use crate::Compat;
use crate::hist_math;
use crate::parser::{AggregateOp, BinaryOp, Expr, VectorSelector};
use gauntlet_engine::chunk::{HistogramBatch, ReusedDecode, decode_histogram_stats_reusing};
use gauntlet_engine::histogram::CounterResetHint;
use gauntlet_engine::query::{SeriesData, StreamSeries};

/// The selector nodes of one parsed tree read for count and sum only, by address.
#[derive(Debug, Default)]
pub(crate) struct StatsSelectors {
    nodes: HashSet<usize>,
}

impl StatsSelectors {
    /// Walks `expr` once, without recursion. A selector qualifies when a `histogram_count`,
    /// `histogram_sum` or `histogram_avg` call is above it and none of the nodes that need
    /// the buckets is.
    pub fn find(expr: &Expr) -> StatsSelectors {
        let mut nodes = HashSet::new();
        // (node, a stats function is above, a node needing buckets is above)
        let mut pending: Vec<(&Expr, bool, bool)> = vec![(expr, false, false)];
        while let Some((e, stats, blocked)) = pending.pop() {
            match e {
                Expr::Call(c) => {
                    let name = c.func.name;
                    let stats = stats
                        || matches!(name, "histogram_count" | "histogram_sum" | "histogram_avg");
                    let blocked = blocked
                        || matches!(
                            name,
                            "histogram_quantile" | "histogram_quantiles" | "histogram_fraction"
                        );
                    pending.extend(c.args.iter().map(|a| (a, stats, blocked)));
                }
                Expr::Aggregate(a) => {
                    pending.push((&a.expr, stats, blocked));
                    if let Some(p) = &a.param {
                        pending.push((p, stats, blocked));
                    }
                }
                Expr::Binary(b) => {
                    let blocked =
                        blocked || matches!(b.op, BinaryOp::TrimUpper | BinaryOp::TrimLower);
                    pending.push((&b.lhs, stats, blocked));
                    pending.push((&b.rhs, stats, blocked));
                }
                Expr::Unary(u) => pending.push((&u.expr, stats, blocked)),
                Expr::Paren(p) => pending.push((&p.expr, stats, blocked)),
                Expr::Subquery(s) => pending.push((&s.expr, stats, true)),
                Expr::Vector(vs) if stats && !blocked => {
                    nodes.insert(address(vs));
                }
                Expr::Matrix(ms) if stats && !blocked => {
                    nodes.insert(address(&ms.selector));
                }
                _ => {}
            }
        }
        StatsSelectors { nodes }
    }

    /// Whether selector `vs` (a node of the walked tree) is read for count and sum only.
    pub fn contains(&self, vs: &VectorSelector) -> bool {
        !self.nodes.is_empty() && self.nodes.contains(&address(vs))
    }
}

/// The selector nodes of one parsed tree whose histograms are decoded without their buckets:
/// those whose only reader is a `histogram_count`, `histogram_sum` or `histogram_avg` call,
/// reached through nothing but the functions and aggregations that pass count and sum
/// through untouched by buckets (`rate`, `increase`, `irate`, `last_over_time`, `sum`,
/// `avg`) and parentheses. Buckets then decide nothing but counter resets, which the decoder
/// settles before dropping them, so the answers are those of a whole read under any
/// compatibility. A subset of [`StatsSelectors`].
#[derive(Debug, Default)]
pub(crate) struct BucketFreeSelectors {
    nodes: HashSet<usize>,
}

impl BucketFreeSelectors {
    /// Walks `expr` once, without recursion.
    pub fn find(expr: &Expr) -> BucketFreeSelectors {
        let mut nodes = HashSet::new();
        // (node, only a stats function reads it, through pass-through nodes)
        let mut pending: Vec<(&Expr, bool)> = vec![(expr, false)];
        while let Some((e, stats)) = pending.pop() {
            match e {
                Expr::Call(c) => {
                    let stats = match c.func.name {
                        "histogram_count" | "histogram_sum" | "histogram_avg" => true,
                        "rate" | "increase" | "irate" | "last_over_time" => stats,
                        _ => false,
                    };
                    pending.extend(c.args.iter().map(|a| (a, stats)));
                }
                Expr::Aggregate(a) => {
                    let passes = matches!(a.op, AggregateOp::Sum | AggregateOp::Avg);
                    pending.push((&a.expr, stats && passes));
                    if let Some(p) = &a.param {
                        pending.push((p, false));
                    }
                }
                Expr::Paren(p) => pending.push((&p.expr, stats)),
                Expr::Binary(b) => {
                    pending.push((&b.lhs, false));
                    pending.push((&b.rhs, false));
                }
                Expr::Unary(u) => pending.push((&u.expr, false)),
                Expr::Subquery(s) => pending.push((&s.expr, false)),
                Expr::Vector(vs) if stats && plain(vs) => {
                    nodes.insert(address(vs));
                }
                Expr::Matrix(ms) if stats && plain(&ms.selector) => {
                    nodes.insert(address(&ms.selector));
                }
                _ => {}
            }
        }
        BucketFreeSelectors { nodes }
    }

    /// Whether selector `vs` (a node of the walked tree) is decoded without buckets.
    pub fn contains(&self, vs: &VectorSelector) -> bool {
        !self.nodes.is_empty() && self.nodes.contains(&address(vs))
    }
}

/// A selector without `anchored` or `smoothed`, whose readers interpolate buckets.
fn plain(vs: &VectorSelector) -> bool {
    !vs.anchored && !vs.smoothed
}

fn address(vs: &VectorSelector) -> usize {
    std::ptr::from_ref(vs) as usize
}

/// Gives each histogram of one series whose counter reset is unknown the hint Prometheus's
/// count-and-sum iterator gives it: a reset or not, by comparing it with the histogram before
/// it (stale markers skipped) under `compat`; the first stays unknown.
pub(crate) fn assign_reset_hints(b: &mut HistogramBatch, compat: Compat) {
    let mut prev: Option<usize> = None;
    for k in 0..b.h.len() {
        if b.h[k].is_stale() {
            continue;
        }
        if let Some(p) = prev
            && b.h[k].counter_reset_hint == CounterResetHint::Unknown
        {
            let reset = hist_math::detect_reset(&b.h[k], &b.h[p], compat);
            b.h[k].counter_reset_hint = if reset {
                CounterResetHint::CounterReset
            } else {
                CounterResetHint::NotCounterReset
            };
        }
        prev = Some(k);
    }
}

/// Decodes the native histograms of series `s` in `[mint, maxt]` (ms) for a
/// [`BucketFreeSelectors`] selector: count and sum only, unknown counter resets decided on
/// the buckets the decoder kept for that, then every bucket dropped, so no histogram of the
/// series holds spans or buckets. `false` when the series needs a whole read instead (it is
/// not in chunks, or see [`ReusedDecode`]); `out` is then to be refilled by the caller.
pub(crate) fn decode_bucket_free(
    s: &StreamSeries,
    (mint, maxt): (i64, i64),
    compat: Compat,
    out: &mut HistogramBatch,
) -> bool {
    let SeriesData::Chunks(chunks) = &s.data else {
        return false;
    };
    let picked = chunks
        .iter()
        .filter(|c| c.max_time >= mint && c.min_time <= maxt)
        .map(|c| (c.encoding, &c.data[..]));
    if !matches!(
        decode_histogram_stats_reusing(picked, (mint, maxt), out),
        Ok(ReusedDecode::Done)
    ) {
        return false;
    }
    assign_reset_hints(out, compat);
    for h in &mut out.h {
        h.positive_spans.clear();
        h.negative_spans.clear();
        h.positive_buckets.clear();
        h.negative_buckets.clear();
    }
    true
}
