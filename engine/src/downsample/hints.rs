//! The function or aggregation each selector of a PromQL query feeds, found from the query
//! text as Prometheus finds `SelectHints.Func` (the nearest enclosing call or aggregation; a
//! binary operator in between means none). A querier reading downsampled data needs it to
//! pick aggregates ([`AggrRead::for_func`](super::AggrRead::for_func)) when the evaluator's
//! own hints do not carry the function.

use promql_parser::label::{MatchOp, Matchers};
use promql_parser::parser::{Expr, VectorSelector};

use crate::labels::{MatchType, Matcher};

/// One selector's identity: its matchers (sorted `(name, op, value)`) and range (ms, 0 for
/// instant selectors).
type Key = (Vec<(String, &'static str, String)>, i64);

/// The functions the selectors of one query feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectorFuncs {
    entries: Vec<(Key, Option<String>)>,
}

impl SelectorFuncs {
    /// Walks `query`; a query that does not parse gives no entries (every lookup misses).
    pub fn from_query(query: &str) -> Self {
        let mut out = SelectorFuncs::default();
        if let Ok(expr) = crate::promql::parse(query) {
            out.walk(&expr, None);
        }
        out
    }

    /// The function consuming the selector with these matchers and range, when the query has
    /// exactly one such selector or all of them feed the same function.
    pub fn func_for(&self, matchers: &[Matcher], range_ms: i64) -> Option<&str> {
        let mut ms: Vec<(String, &'static str, String)> = matchers
            .iter()
            .map(|m| (m.name.clone(), m.typ.as_str(), m.value.clone()))
            .collect();
        ms.sort();
        ms.dedup();
        let key = (ms, range_ms);
        let mut found = self.entries.iter().filter(|(k, _)| *k == key).map(|e| &e.1);
        let first = found.next()?;
        if found.all(|f| f == first) {
            first.as_deref()
        } else {
            None
        }
    }

    /// Records the selectors under `e`; `func` is what the nearest enclosing call or
    /// aggregation named (None under a binary operator or at the top).
    fn walk(&mut self, e: &Expr, func: Option<&str>) {
        match e {
            Expr::Aggregate(a) => {
                let op = a.op.to_string();
                self.walk(&a.expr, Some(&op));
                if let Some(p) = &a.param {
                    self.walk(p, Some(&op));
                }
            }
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.walk(a, Some(c.func.name));
                }
            }
            Expr::Binary(b) => {
                self.walk(&b.lhs, None);
                self.walk(&b.rhs, None);
            }
            Expr::Unary(u) => self.walk(&u.expr, func),
            Expr::Paren(p) => self.walk(&p.expr, func),
            Expr::Subquery(s) => self.walk(&s.expr, func),
            Expr::VectorSelector(vs) => self.add(vs, 0, func),
            Expr::MatrixSelector(ms) => self.add(&ms.vs, ms.range.as_millis() as i64, func),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn add(&mut self, vs: &VectorSelector, range_ms: i64, func: Option<&str>) {
        // The evaluator selects each `or` group of a selector separately.
        let Matchers {
            matchers,
            or_matchers,
        } = &vs.matchers;
        for group in std::iter::once(matchers).chain(or_matchers) {
            let mut ms: Vec<(String, &'static str, String)> = vs
                .name
                .iter()
                .map(|n| ("__name__".to_string(), MatchType::Equal.as_str(), n.clone()))
                .collect();
            for m in group {
                let op = match m.op {
                    MatchOp::Equal => MatchType::Equal,
                    MatchOp::NotEqual => MatchType::NotEqual,
                    MatchOp::Re(_) => MatchType::Regexp,
                    MatchOp::NotRe(_) => MatchType::NotRegexp,
                };
                ms.push((m.name.clone(), op.as_str(), m.value.clone()));
            }
            ms.sort();
            ms.dedup();
            self.entries
                .push(((ms, range_ms), func.map(str::to_string)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_map_to_the_nearest_call_or_aggregation() {
        let f = SelectorFuncs::from_query(
            r#"sum by (code) (rate(http_requests_total{job="api"}[5m])) / max(max_over_time(up[1h])) + count(node_load1) - (up2)"#,
        );
        let name = |n: &str| Matcher::equal("__name__", n);
        let job = Matcher::equal("job", "api");
        assert_eq!(
            f.func_for(&[job.clone(), name("http_requests_total")], 300_000),
            Some("rate")
        );
        assert_eq!(f.func_for(&[name("up")], 3_600_000), Some("max_over_time"));
        assert_eq!(f.func_for(&[name("node_load1")], 0), Some("count"));
        assert_eq!(f.func_for(&[name("up2")], 0), None);
        assert_eq!(
            f.func_for(&[name("up")], 0),
            None,
            "range is part of the key"
        );
        assert_eq!(f.func_for(&[name("nope")], 0), None);

        // The same selector under two functions: ambiguous, so no answer.
        let g = SelectorFuncs::from_query("rate(x[5m]) and increase(x[5m])");
        assert_eq!(g.func_for(&[name("x")], 300_000), None);
        let g = SelectorFuncs::from_query("avg_over_time(x[5m]) and avg_over_time(x[5m])");
        assert_eq!(g.func_for(&[name("x")], 300_000), Some("avg_over_time"));
        // Subqueries and parentheses are looked through.
        let s = SelectorFuncs::from_query("max_over_time((rate(x[5m]))[1h:5m])");
        assert_eq!(s.func_for(&[name("x")], 300_000), Some("rate"));
        assert_eq!(
            SelectorFuncs::from_query("sum(").func_for(&[name("x")], 0),
            None
        );
    }
}
