//! What one query may ask of the process before anything parses it: its length, how deeply
//! its expression nests, and how many label matchers its selectors hold.
//!
//! The parser, the checks and the evaluator all walk the expression tree recursively, one
//! stack frame (or a few) per level, and the parser's type checks revisit a node's operands at
//! every level above them. So a query's nesting decides how much stack its evaluation needs,
//! and its length times its nesting how long parsing takes. Both are bounded here from the
//! text alone, in one pass that never recurses: a query over a limit is refused with a
//! `bad_data` error naming the limit, and a query under it runs on a stack sized for its depth
//! ([`with_stack_for`]). No query, however deep, can overflow a thread's stack.

use super::error::PromqlError;

/// Default of [`QueryLimits::max_depth`]: deeper than any query a person or dashboard writes
/// (those stay under a few dozen levels), shallow enough that parsing a query of
/// [`DEFAULT_MAX_BYTES`] stays under about a second.
pub const DEFAULT_MAX_DEPTH: usize = 1000;

/// Default of [`QueryLimits::max_bytes`]: 1 MiB, the size of the longest URL Prometheus's own
/// HTTP server takes.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// Default of [`QueryLimits::max_matchers`]: far more than any dashboard's query holds, few
/// enough that parsing and resolving them stays within a few MiB (each matcher costs the parser,
/// the type checks and the selection several hundred bytes, where its text is a few).
pub const DEFAULT_MAX_MATCHERS: usize = 10_000;

/// Limits on a query's text, checked before it is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// The deepest expression nesting accepted: operators, parentheses, calls, aggregations
    /// and subqueries each add a level (`--query.max-depth`).
    pub max_depth: usize,
    /// The longest query accepted, bytes (`--query.max-length`).
    pub max_bytes: usize,
    /// The most label matchers all of a query's selectors may hold together
    /// (`--query.max-matchers`).
    pub max_matchers: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_depth: DEFAULT_MAX_DEPTH,
            max_bytes: DEFAULT_MAX_BYTES,
            max_matchers: DEFAULT_MAX_MATCHERS,
        }
    }
}

impl QueryLimits {
    /// Checks `query` against both limits, returning its nesting bound ([`nesting_bound`]).
    pub fn check(&self, query: &str) -> Result<usize, PromqlError> {
        if query.len() > self.max_bytes {
            return Err(PromqlError::Parse(format!(
                "query is {} bytes long, more than the {} bytes allowed (--query.max-length)",
                query.len(),
                self.max_bytes
            )));
        }
        let matchers = matcher_bound(query);
        if matchers > self.max_matchers {
            return Err(PromqlError::Parse(format!(
                "query holds {matchers} label matchers, more than the {} allowed (--query.max-matchers)",
                self.max_matchers
            )));
        }
        let depth = nesting_bound(query);
        if depth > self.max_depth {
            return Err(PromqlError::Parse(format!(
                "query nests {depth} levels deep, more than the {} allowed (--query.max-depth)",
                self.max_depth
            )));
        }
        Ok(depth)
    }
}

/// An upper bound on the depth of the expression tree `query` parses into, from its text.
///
/// Each group of parentheses or brackets is scanned as one operand of the group around it, and
/// a selector's braces as a leaf; within a group, every operator (binary or unary) may add a level above its deepest
/// operand, a group adds one for the node it stands for (a call, an aggregation, a paren
/// expression), and a `[...]` range or subquery stacks on what it follows, as
/// `x[1m:][1m:]` does. Arguments separated by commas are operands side by side, so the deepest
/// of them counts. Strings and comments are skipped. Unbalanced text is bounded as if it
/// closed at the end, which only overcounts: the parser refuses it anyway.
pub fn nesting_bound(query: &str) -> usize {
    /// One open group: its operators and deepest operand so far, and its deepest argument
    /// before the last comma.
    #[derive(Default)]
    struct Group {
        ops: usize,
        deepest_operand: usize,
        deepest_arg: usize,
        bracket: bool,
    }
    impl Group {
        fn depth(&self) -> usize {
            1 + self
                .deepest_arg
                .max(self.ops.saturating_add(self.deepest_operand))
        }
    }
    fn close(groups: &mut Vec<Group>) {
        if groups.len() < 2 {
            return;
        }
        let Some(g) = groups.pop() else { return };
        let depth = g.depth();
        let Some(outer) = groups.last_mut() else {
            return;
        };
        if g.bracket {
            outer.ops = outer.ops.saturating_add(depth);
        } else {
            outer.deepest_operand = outer.deepest_operand.max(depth);
        }
    }

    let b = query.as_bytes();
    let mut groups = vec![Group::default()];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i = skip_string(b, i, c);
                continue;
            }
            b'#' => {
                i = comment_end(b, i);
                continue;
            }
            // A selector's matchers (`or` between them included) nest nothing: one operand.
            b'{' => {
                if let Some(g) = groups.last_mut() {
                    g.deepest_operand = g.deepest_operand.max(1);
                }
                i = skip_group(b, i, b'{', b'}').unwrap_or(b.len());
                continue;
            }
            b'(' | b'[' => groups.push(Group {
                bracket: c == b'[',
                ..Group::default()
            }),
            b')' | b']' => close(&mut groups),
            b',' => {
                if let Some(g) = groups.last_mut() {
                    g.deepest_arg = g.deepest_arg.max(g.ops.saturating_add(g.deepest_operand));
                    g.ops = 0;
                    g.deepest_operand = 0;
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' => {
                if let Some(g) = groups.last_mut() {
                    g.ops = g.ops.saturating_add(1);
                }
            }
            // `==` and `!=`; `=`, `=~` and `!~` only appear between a label and its value.
            b'=' | b'!' if b.get(i + 1) == Some(&b'=') => {
                if let Some(g) = groups.last_mut() {
                    g.ops = g.ops.saturating_add(1);
                }
                i += 2;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                if matches!(&b[start..i], b"and" | b"or" | b"unless" | b"atan2")
                    && let Some(g) = groups.last_mut()
                {
                    g.ops = g.ops.saturating_add(1);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    while groups.len() > 1 {
        close(&mut groups);
    }
    groups[0].depth()
}

/// An upper bound on the label matchers in `query`'s selectors, from its text: every `=` and
/// `!~` between braces, outside strings and comments (`=`, `!=` and `=~` each hold one `=`).
pub fn matcher_bound(query: &str) -> usize {
    let b = query.as_bytes();
    let (mut i, mut depth, mut n) = (0, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i = skip_string(b, i, q);
                continue;
            }
            b'#' => {
                i = comment_end(b, i);
                continue;
            }
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b'=' if depth > 0 => n += 1,
            b'!' if depth > 0 && b.get(i + 1) == Some(&b'~') => n += 1,
            _ => {}
        }
        i += 1;
    }
    n
}

/// Stack a query of nesting `depth` may need per level, bytes: the deepest frames measured
/// (a subquery level, about 5 KiB in a release build) with room for unoptimized builds.
const STACK_PER_LEVEL: usize = 24 << 10;

/// Stack for everything around the recursion, bytes.
const STACK_BASE: usize = 2 << 20;

/// Queries up to this deep run on the caller's thread: [`STACK_BASE`] of stack holds them.
const INLINE_DEPTH: usize = 32;

/// Runs `f`, the parsing and evaluation of a query of nesting `depth`, on a stack deep enough
/// for it: the caller's own for shallow queries, else a thread of its own with
/// [`STACK_PER_LEVEL`] per level. The thread's stack is reserved, not touched, so it costs
/// memory only as deep as the query goes, and is unmapped when the query ends.
pub(crate) fn with_stack_for<T: Send>(
    depth: usize,
    f: impl FnOnce() -> Result<T, PromqlError> + Send,
) -> Result<T, PromqlError> {
    if depth <= INLINE_DEPTH {
        return f();
    }
    let stack = STACK_BASE.saturating_add(depth.saturating_mul(STACK_PER_LEVEL));
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("gauntlet-deep-query".into())
            .stack_size(stack)
            .spawn_scoped(s, f)
            .map_err(|e| {
                PromqlError::Execution(format!(
                    "no thread for a query {depth} levels deep ({stack} bytes of stack): {e}"
                ))
            })?;
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Whether a query of nesting `depth` may be kept and dropped by any thread: one that needs
/// no stack of its own.
pub(crate) fn runs_inline(depth: usize) -> bool {
    depth <= INLINE_DEPTH
}

/// Index just past the string literal opened by `quote` at `start`.
fn skip_string(b: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' && quote != b'`' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// Index just past the comment starting at `i` (its line's end).
fn comment_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| i + p)
}

/// Index just past the group `open`…`close` starting at `start` (nested groups and strings
/// skipped), or `None` when it does not close.
fn skip_group(b: &[u8], start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                i = skip_string(b, i, q);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The depth of the tree the parser builds, walked without recursion.
    fn parsed_depth(q: &str) -> usize {
        use crate::parser::Expr;
        let expr = crate::parse(q).expect(q);
        let mut deepest = 0;
        let mut stack: Vec<(&Expr, usize)> = vec![(&expr, 1)];
        while let Some((e, d)) = stack.pop() {
            deepest = deepest.max(d);
            let children: Vec<&Expr> = match e {
                Expr::Aggregate(a) => std::iter::once(&*a.expr)
                    .chain(a.param.as_deref())
                    .collect(),
                Expr::Unary(u) => vec![&u.expr],
                Expr::Binary(x) => vec![&x.lhs, &x.rhs],
                Expr::Paren(p) => vec![&p.expr],
                Expr::Subquery(s) => vec![&s.expr],
                Expr::Call(c) => c.args.iter().collect(),
                Expr::Matrix(_) => {
                    deepest = deepest.max(d + 1);
                    Vec::new()
                }
                _ => Vec::new(),
            };
            stack.extend(children.into_iter().map(|c| (c, d + 1)));
        }
        deepest
    }

    #[test]
    fn the_bound_holds_the_parsed_depth() {
        for q in [
            "up",
            "1",
            "sum(up)",
            "((up))",
            "1 + 1 + 1",
            "-(-(-1))",
            "rate(http_requests_total{job=\"a(\"}[5m])",
            "max_over_time((rate(x[5m]))[1h:5m])",
            "max_over_time(rate(x[1m])[5m:])[10m:]",
            "sum by (job) (rate(a[5m])) / on (job) group_left sum(b) > bool 1",
            "topk(3, x) or y and z unless w",
            "a atan2 b ^ 2 ^ 3",
            "label_replace(up, \"a\", \"$1\", \"b\", \"(.*)\")",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m]))) # ((((",
            "x offset 5m @ 100 + y offset -1m",
            "{__name__=~\"a.*\", b!=\"c\"} == 1",
            "max_over_time(deriv(rate(x[1m])[5m:1m])[10m:])",
            "clamp(x, -1, +2) * -3",
        ] {
            let bound = nesting_bound(q);
            let depth = parsed_depth(q);
            assert!(bound >= depth, "{q}: bound {bound} below depth {depth}");
            assert!(
                bound <= depth + 4,
                "{q}: bound {bound} far above depth {depth}"
            );
        }
    }

    #[test]
    fn chains_and_nesting_count_every_level() {
        let chain = vec!["1"; 20_000].join(" + ");
        assert_eq!(nesting_bound(&chain), 20_000);
        let parens = format!("{}1{}", "(".repeat(5_000), ")".repeat(5_000));
        assert_eq!(nesting_bound(&parens), 5_001);
        let subqueries = format!("x{}", "[1m:]".repeat(300));
        assert_eq!(nesting_bound(&subqueries), 301);
        // Wide is not deep.
        let wide = format!("sum({})", vec!["up"; 10_000].join(", "));
        assert_eq!(nesting_bound(&wide), 2);
        let matchers: Vec<String> = (0..10_000).map(|i| format!("l{i}=\"v\"")).collect();
        assert_eq!(nesting_bound(&format!("up{{{}}}", matchers.join(","))), 2);
        // Unclosed groups close at the end.
        assert_eq!(nesting_bound(&"(".repeat(100)), 101);
        assert_eq!(nesting_bound(&")".repeat(100)), 1);
    }

    #[test]
    fn limits_name_the_flag() {
        let limits = QueryLimits {
            max_depth: 10,
            max_bytes: 100,
            max_matchers: 3,
        };
        assert_eq!(limits.check("sum(rate(x[5m]))").unwrap(), 4);
        let deep = limits.check(&"-".repeat(20)).unwrap_err().to_string();
        assert!(deep.contains("--query.max-depth"), "{deep}");
        let long = limits.check(&"x".repeat(101)).unwrap_err().to_string();
        assert!(long.contains("--query.max-length"), "{long}");
        assert!(limits.check(r#"x{a="1",b!="2",c=~"3"}"#).is_ok());
        let wide = limits
            .check(r#"x{a="1"} + y{b!~"2", c="{=}"} + z{d="4"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            wide.contains("4 label matchers") && wide.contains("--query.max-matchers"),
            "{wide}"
        );
    }

    #[test]
    fn matchers_are_counted_between_braces_outside_strings() {
        assert_eq!(matcher_bound(r#"sum(rate(x{a="=",b!~"{"}[5m])) == 1"#), 2);
        assert_eq!(matcher_bound("up # {a=\"1\"}\n"), 0);
        assert_eq!(matcher_bound(r#"{"a b"="c", d=~"e"}"#), 2);
        let many: Vec<String> = (0..130_000).map(|_| r#"a="x""#.to_string()).collect();
        assert_eq!(matcher_bound(&format!("x{{{}}}", many.join(","))), 130_000);
    }

    #[test]
    fn deep_queries_get_a_stack_of_their_own() {
        // Recursion a 2 MiB test thread could not hold: 2000 levels of 4 KiB frames.
        fn down(n: usize) -> usize {
            let pad = std::hint::black_box([n as u8; 4096]);
            if n == 0 {
                pad[0] as usize
            } else {
                down(n - 1) + 1
            }
        }
        let got = with_stack_for(2000, || Ok(down(2000))).unwrap();
        assert_eq!(got, 2000);
        assert_eq!(with_stack_for(1, || Ok(7)).unwrap(), 7);
    }
}
