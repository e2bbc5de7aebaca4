//! The function each selector of a query feeds, for the hints its selection carries to the
//! storage: Prometheus's `SelectHints.Func`, found as Prometheus finds it while walking the
//! tree (the nearest call or aggregation above the selector, looking through parentheses,
//! unary minus, range selectors and subqueries; a binary operator in between means none). A
//! source reading downsampled data picks its aggregates by it (`rate` reads the counter
//! aggregate, `max_over_time` the max, …).

use std::collections::HashMap;

use crate::parser::{Expr, VectorSelector};

/// The function or aggregation each selector node of one parsed tree feeds, by the node's
/// address: two selectors with the same matchers under different functions keep their own.
#[derive(Debug, Default)]
pub(crate) struct SelectorFuncs {
    by_node: HashMap<usize, String>,
}

impl SelectorFuncs {
    /// Walks `expr` once (without recursion: the tree may be deep).
    pub fn find(expr: &Expr) -> SelectorFuncs {
        let mut by_node = HashMap::new();
        let mut pending: Vec<(&Expr, Option<String>)> = vec![(expr, None)];
        while let Some((e, func)) = pending.pop() {
            match e {
                Expr::Aggregate(a) => {
                    let op = a.op.as_str().to_string();
                    pending.push((&a.expr, Some(op.clone())));
                    if let Some(p) = &a.param {
                        pending.push((p, Some(op)));
                    }
                }
                Expr::Call(c) => {
                    pending.extend(c.args.iter().map(|a| (a, Some(c.func.name.to_string()))))
                }
                Expr::Binary(b) => {
                    pending.push((&b.lhs, None));
                    pending.push((&b.rhs, None));
                }
                Expr::Unary(u) => pending.push((&u.expr, func)),
                Expr::Paren(p) => pending.push((&p.expr, func)),
                Expr::Subquery(s) => pending.push((&s.expr, func)),
                Expr::Vector(vs) => {
                    if let Some(f) = func {
                        by_node.insert(address(vs), f);
                    }
                }
                Expr::Matrix(ms) => {
                    if let Some(f) = func {
                        by_node.insert(address(&ms.selector), f);
                    }
                }
                _ => {}
            }
        }
        SelectorFuncs { by_node }
    }

    /// The function selector `vs` (a node of the walked tree) feeds, if any.
    pub fn of(&self, vs: &VectorSelector) -> Option<String> {
        self.by_node.get(&address(vs)).cloned()
    }
}

fn address(vs: &VectorSelector) -> usize {
    std::ptr::from_ref(vs) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The function each selector of `q` feeds, in the order the selectors appear.
    fn funcs(q: &str) -> Vec<(String, Option<String>)> {
        let expr = crate::parse(q).unwrap();
        let found = SelectorFuncs::find(&expr);
        let mut out = Vec::new();
        let mut pending = vec![&expr];
        while let Some(e) = pending.pop() {
            let vs = match e {
                Expr::Vector(vs) => vs,
                Expr::Matrix(ms) => &ms.selector,
                Expr::Aggregate(a) => {
                    // The parameter comes first in the text: `topk(k, v)`.
                    pending.push(&a.expr);
                    pending.extend(a.param.as_deref());
                    continue;
                }
                Expr::Call(c) => {
                    pending.extend(c.args.iter().rev());
                    continue;
                }
                Expr::Binary(b) => {
                    pending.push(&b.rhs);
                    pending.push(&b.lhs);
                    continue;
                }
                Expr::Unary(u) => {
                    pending.push(&u.expr);
                    continue;
                }
                Expr::Paren(p) => {
                    pending.push(&p.expr);
                    continue;
                }
                Expr::Subquery(s) => {
                    pending.push(&s.expr);
                    continue;
                }
                _ => continue,
            };
            out.push((vs.name.clone().unwrap_or_default(), found.of(vs)));
        }
        out
    }

    fn named(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(n, f)| (n.to_string(), f.map(str::to_string)))
            .collect()
    }

    #[test]
    fn selectors_feed_the_nearest_call_or_aggregation() {
        assert_eq!(
            funcs(
                r#"sum by (code) (rate(http_requests_total{job="api"}[5m])) / max(max_over_time(up[1h])) + count(node_load1) - (up2)"#
            ),
            named(&[
                ("http_requests_total", Some("rate")),
                ("up", Some("max_over_time")),
                ("node_load1", Some("count")),
                ("up2", None),
            ])
        );
        // The same selector under two functions keeps each.
        assert_eq!(
            funcs("rate(x[5m]) and increase(x[5m])"),
            named(&[("x", Some("rate")), ("x", Some("increase"))])
        );
        // Parentheses, unary minus and subqueries are looked through; a binary operator ends
        // the search, and an aggregation's parameter feeds the aggregation.
        assert_eq!(
            funcs("max_over_time((-rate(x[5m]))[1h:5m]) + y + abs(z * w) + topk(scalar(k), v)"),
            named(&[
                ("x", Some("rate")),
                ("y", None),
                ("z", None),
                ("w", None),
                ("k", Some("scalar")),
                ("v", Some("topk")),
            ])
        );
    }
}
