//! Vertical sharding (`--query-frontend.vertical-shards`): which queries may be run as N
//! shards, each over the series of one hash bucket, with their answers simply put together.
//!
//! A query is shardable when every series of its answer is computed from input series that
//! agree on some labels: the grouping labels of its aggregations (`sum by (job)`), the labels
//! of its vector matchings (`on (job)`), or everything but the labels an aggregation drops
//! (`without (instance)`). Hashing the input series on those labels puts all the inputs of an
//! output series in one shard. The rules are Thanos's query analyzer's (`pkg/querysharding`),
//! walked over Gauntlet's own syntax tree, with one addition noted at [`Analysis::scope`].

use gauntlet_promql::parser::{self, Expr, Options};

use crate::http::api::ShardParam;

/// The labels a query is sharded on, when it is shardable.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Analysis {
    /// `None` until a node scoped the labels; then the labels hashed (`by`) or left out of the
    /// hash (`without`). Shardable when non-empty.
    labels: Option<Vec<String>>,
    /// Hash `labels` (true) or every label but `labels` (false).
    by: bool,
}

impl Analysis {
    /// The analysis of `query`: not shardable when it does not parse, uses `absent`,
    /// `absent_over_time` or `scalar`, or has no grouping labels to shard on.
    pub fn of(query: &str) -> Analysis {
        let Ok(expr) = parser::parse(query, &Options::all_features()) else {
            return Analysis::default();
        };
        let mut a = Analysis::default();
        let mut dynamic = Vec::new();
        if !a.walk(&expr, &mut dynamic) {
            return Analysis::default();
        }
        // Labels `label_replace`/`label_join` write cannot be hashed by the stores, which see
        // the series before they are written: they are left out of the hash.
        if !dynamic.is_empty() {
            a.scope(&dynamic, false);
        }
        a
    }

    /// Whether the query can be sharded.
    pub fn shardable(&self) -> bool {
        self.labels.as_ref().is_some_and(|l| !l.is_empty())
    }

    /// The sharding labels (empty when not shardable).
    pub fn labels(&self) -> &[String] {
        self.labels.as_deref().unwrap_or(&[])
    }

    /// The `shard_info` parameter of shard `index` of `total`, as Thanos's frontend encodes
    /// it (Go's JSON of `storepb.ShardInfo`).
    pub fn shard_param(&self, index: usize, total: usize) -> String {
        let p = ShardParam {
            shard_index: index as i64,
            total_shards: total as i64,
            by: self.by,
            labels: self.labels().to_vec(),
        };
        serde_json::to_string(&p).unwrap_or_default()
    }

    /// Visits `e` and its children, parents first as Prometheus's `Inspect` does; false when
    /// a node makes the query unshardable.
    fn walk(&mut self, e: &Expr, dynamic: &mut Vec<String>) -> bool {
        match e {
            Expr::Call(c) => {
                match c.func.name {
                    "label_join" | "label_replace" => {
                        if let Some(Expr::String(s)) = c.args.get(1).map(unparen) {
                            dynamic.push(s.value.clone());
                        }
                    }
                    "absent_over_time" | "absent" | "scalar" => return false,
                    "histogram_quantile" => self.scope(&["le".to_string()], false),
                    _ => {}
                }
                c.args.iter().all(|a| self.walk(a, dynamic))
            }
            Expr::Binary(b) => {
                if let Some(m) = &b.matching {
                    let mut labels = m.labels.clone();
                    if !m.on {
                        labels.push("__name__".into());
                    }
                    self.scope(&labels, m.on);
                }
                self.walk(&b.lhs, dynamic) && self.walk(&b.rhs, dynamic)
            }
            Expr::Aggregate(a) => {
                let mut labels = a.grouping.clone();
                // Beyond Thanos: `without` also drops the metric name from its groups, so
                // series of different names may share a group; they must share a shard too.
                if a.without {
                    labels.push("__name__".into());
                }
                self.scope(&labels, !a.without);
                self.walk(&a.expr, dynamic)
                    && a.param.as_ref().is_none_or(|p| self.walk(p, dynamic))
            }
            Expr::Paren(p) => self.walk(&p.expr, dynamic),
            Expr::Unary(u) => self.walk(&u.expr, dynamic),
            Expr::Subquery(s) => self.walk(&s.expr, dynamic),
            _ => true,
        }
    }

    /// Narrows the sharding labels by a node's: two `by` sets keep their common labels, two
    /// `without` sets their union, and `by` with `without` the `by` labels not left out.
    fn scope(&mut self, labels: &[String], by: bool) {
        let Some(held) = self.labels.take() else {
            self.labels = Some(dedup(labels.to_vec()));
            self.by = by;
            return;
        };
        let (next, next_by) = match (self.by, by) {
            (true, true) => (
                held.into_iter().filter(|l| labels.contains(l)).collect(),
                true,
            ),
            (false, false) => {
                let mut u = held;
                u.extend(labels.iter().cloned());
                (dedup(u), false)
            }
            (true, false) => (
                held.into_iter().filter(|l| !labels.contains(l)).collect(),
                true,
            ),
            (false, true) => (
                labels
                    .iter()
                    .filter(|l| !held.contains(l))
                    .cloned()
                    .collect(),
                true,
            ),
        };
        self.labels = Some(dedup(next));
        self.by = next_by;
    }
}

/// `e` without the parentheses around it.
fn unparen(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// `v` with each label once, in first-seen order.
fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(v.len());
    for l in v {
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(a: &Analysis) -> (bool, bool, Vec<String>) {
        let mut l = a.labels().to_vec();
        l.sort();
        (a.shardable(), a.by, l)
    }

    fn check(query: &str, shardable: bool, by: bool, labels: &[&str]) {
        let a = Analysis::of(query);
        let want = (
            shardable,
            by,
            labels.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        if shardable {
            assert_eq!(sorted(&a), want, "{query}");
        } else {
            assert!(!a.shardable(), "{query} is shardable: {a:?}");
        }
    }

    #[test]
    fn aggregations_by_labels_shard_on_them() {
        check("sum by (job) (up)", true, true, &["job"]);
        check(
            "sum by (job, instance) (rate(http_requests_total[5m]))",
            true,
            true,
            &["instance", "job"],
        );
        check(
            "avg by (job) (up) / on (job) count by (job) (up)",
            true,
            true,
            &["job"],
        );
        check(
            "sum by (job, zone) (a) + on (job) sum by (job, zone) (b)",
            true,
            true,
            &["job"],
        );
        check(
            "max by (job) (sum by (job, instance) (up))",
            true,
            true,
            &["job"],
        );
        check("sum by (job) (up) > 0", true, true, &["job"]);
    }

    #[test]
    fn aggregations_without_labels_shard_on_the_rest() {
        check(
            "count without (instance) (up)",
            true,
            false,
            &["__name__", "instance"],
        );
        check(
            "sum without (instance) (rate(x[5m])) / sum without (pod) (rate(y[5m]))",
            true,
            false,
            &["__name__", "instance", "pod"],
        );
        // `by` inside `without`: the `by` labels not left out.
        check(
            "sum without (instance) (sum by (job, instance) (up))",
            true,
            true,
            &["job"],
        );
        check(
            "histogram_quantile(0.9, sum by (le, job) (rate(h_bucket[5m])))",
            true,
            true,
            &["job"],
        );
    }

    #[test]
    fn some_queries_are_not_shardable() {
        check("up", false, false, &[]);
        check("rate(x[5m])", false, false, &[]);
        check("sum(up)", false, false, &[]);
        check("sum by (job) (up) + sum(up)", false, false, &[]);
        check("absent(up)", false, false, &[]);
        check("sum by (job) (absent_over_time(up[5m]))", false, false, &[]);
        check("scalar(sum by (job) (up))", false, false, &[]);
        check("sum by (job) (", false, false, &[]);
    }

    #[test]
    fn binary_operations_shard_on_their_matching_labels() {
        // Without `on`, series match on every label but the name.
        check("a / b", true, false, &["__name__"]);
        check("sum by (job) (a) / b", true, true, &["job"]);
        check("a / ignoring (pod) b", true, false, &["__name__", "pod"]);
    }

    #[test]
    fn labels_written_by_label_replace_are_left_out() {
        check(
            r#"sum by (job, dst) (label_replace(up, "dst", "$1", "instance", "(.*)"))"#,
            true,
            true,
            &["job"],
        );
        check(
            r#"sum by (dst) (label_replace(up, "dst", "$1", "instance", "(.*)"))"#,
            false,
            false,
            &[],
        );
    }

    #[test]
    fn the_parameter_is_go_json_of_the_shard_info() {
        let a = Analysis::of("sum by (job) (up)");
        assert_eq!(
            a.shard_param(1, 4),
            r#"{"shard_index":1,"total_shards":4,"by":true,"labels":["job"]}"#
        );
        // Zero values are left out, as Go's omitempty does.
        assert_eq!(
            a.shard_param(0, 2),
            r#"{"total_shards":2,"by":true,"labels":["job"]}"#
        );
        let w = Analysis::of("count without (instance) (up)");
        assert_eq!(
            w.shard_param(0, 2),
            r#"{"total_shards":2,"labels":["instance","__name__"]}"#
        );
    }
}
