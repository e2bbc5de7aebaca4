//! Where an annotation about an expression points.
//!
//! Prometheus ends each annotation with the position of the expression it is about
//! (`… "edge_gauge" (1:6)`: line 1, byte column 6, of the query as sent): the start of the
//! expression's span, except that it takes the parentheses off a function's arguments and an
//! aggregation's operands before evaluating them, so an annotation about `rate((x[5m]))`'s
//! argument points inside them. Arguments it wraps as step invariant first keep theirs.

use std::collections::HashMap;

use crate::parser::Expr;

use crate::functions::unwrap_parens;

/// Where the arguments of one parsed tree's calls and aggregations start, by the address of
/// their node, and where the query's lines start.
#[derive(Debug, Default)]
pub(crate) struct AnnotationAt {
    /// Byte offset of each argument's start, by node address.
    args: HashMap<usize, usize>,
    /// Byte offsets of the query's line breaks.
    newlines: Vec<usize>,
}

impl AnnotationAt {
    /// The positions of `expr`, parsed from `query`.
    pub fn find(query: &str, expr: &Expr) -> AnnotationAt {
        let mut args = HashMap::new();
        arguments(expr, &mut args);
        AnnotationAt {
            args,
            newlines: query
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        }
    }

    /// ` (line:column)` of `e`, as Prometheus appends it to an annotation: 1-based, the
    /// column in bytes.
    pub fn suffix(&self, e: &Expr) -> String {
        let off = self
            .args
            .get(&address(e))
            .copied()
            .unwrap_or(e.span().start);
        format!(" ({})", self.line_col(off))
    }

    /// `line:column` of byte offset `off` of the query, as Prometheus writes positions.
    pub fn line_col(&self, off: usize) -> String {
        let before = self.newlines.partition_point(|&nl| nl < off);
        let col = match before.checked_sub(1) {
            Some(k) => off - self.newlines[k],
            None => off + 1,
        };
        format!("{}:{col}", 1 + before)
    }
}

fn address(e: &Expr) -> usize {
    e as *const Expr as usize
}

/// Records where every call and aggregation argument under `e` starts, as Prometheus reports
/// it.
fn arguments(e: &Expr, out: &mut HashMap<usize, usize>) {
    match e {
        Expr::Aggregate(a) => {
            for x in a.param.iter().map(|p| p.as_ref()).chain([a.expr.as_ref()]) {
                out.insert(address(x), unwrap_parens(x).span().start);
                arguments(x, out);
            }
        }
        Expr::Call(c) => {
            // Prometheus wraps the step-invariant arguments of a call that is not itself
            // step invariant before taking parentheses off; a wrapped argument keeps its own.
            let whole = !AT_UNSAFE.contains(&c.func.name) && c.args.iter().all(step_invariant);
            for x in &c.args {
                let keep = !whole && step_invariant(x);
                let at = if keep { x } else { unwrap_parens(x) };
                out.insert(address(x), at.span().start);
                arguments(x, out);
            }
        }
        Expr::Unary(u) => arguments(&u.expr, out),
        Expr::Binary(b) => {
            arguments(&b.lhs, out);
            arguments(&b.rhs, out);
        }
        Expr::Paren(p) => arguments(&p.expr, out),
        Expr::Subquery(s) => arguments(&s.expr, out),
        _ => {}
    }
}

/// Functions whose answer depends on the evaluation time even over `@`-pinned input.
const AT_UNSAFE: &[&str] = &[
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Whether `e` has the same value at every step, as Prometheus decides it before evaluating:
/// literals, `@`-pinned selectors and subqueries, and what is built only from them.
fn step_invariant(e: &Expr) -> bool {
    match e {
        Expr::Number(_) | Expr::String(_) => true,
        Expr::Vector(v) => v.at.is_some(),
        Expr::Matrix(m) => m.selector.at.is_some(),
        Expr::Subquery(s) => s.at.is_some(),
        Expr::Paren(p) => step_invariant(&p.expr),
        Expr::Unary(u) => step_invariant(&u.expr),
        Expr::Binary(b) => step_invariant(&b.lhs) && step_invariant(&b.rhs),
        Expr::Aggregate(a) => step_invariant(&a.expr),
        Expr::Call(c) => !AT_UNSAFE.contains(&c.func.name) && c.args.iter().all(step_invariant),
    }
}
