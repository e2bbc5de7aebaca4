//! Selectors whose native histograms are read for their count and sum only: those under
//! `histogram_count`, `histogram_sum` or `histogram_avg` with no subquery, no
//! `histogram_quantile(s)`/`histogram_fraction` and no trim operator above them. Prometheus
//! 3.14 reads these through an iterator that decides each histogram's counter reset as it
//! goes (comparing it with the one before, where the chunk left the hint unknown), so sums of
//! them can meet a "reset" and a "not reset" and warn about the conflict. Gauntlet reads them
//! whole, and gives them the hints that iterator would.

use std::collections::HashSet;

use crate::Compat;
use crate::hist_math;
use crate::parser::{BinaryOp, Expr, VectorSelector};
use gauntlet_engine::chunk::HistogramBatch;
use gauntlet_engine::histogram::CounterResetHint;

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

fn address(vs: &VectorSelector) -> usize {
    std::ptr::from_ref(vs) as usize
}

/// Gives each histogram of one series whose counter reset is unknown the hint Prometheus's
/// count-and-sum iterator gives it: a reset or not, by comparing it with the histogram before
/// it (stale markers skipped); the first stays unknown.
pub(crate) fn assign_reset_hints(b: &mut HistogramBatch) {
    let mut prev: Option<usize> = None;
    for k in 0..b.h.len() {
        if b.h[k].is_stale() {
            continue;
        }
        if let Some(p) = prev
            && b.h[k].counter_reset_hint == CounterResetHint::Unknown
        {
            let reset = hist_math::detect_reset(&b.h[k], &b.h[p], Compat::Prometheus3_14);
            b.h[k].counter_reset_hint = if reset {
                CounterResetHint::CounterReset
            } else {
                CounterResetHint::NotCounterReset
            };
        }
        prev = Some(k);
    }
}
