//! Expressions written over several lines, as Prometheus's `/api/v1/format_query` writes them
//! (its `Pretty()` form).
//!
//! An expression whose one-line form ([`Display`](std::fmt::Display), Prometheus's `String()`)
//! fits in [`MAX_LINE`] bytes is written on one line. A longer one is broken up by its kind,
//! its parts one level deeper, each level indented by two spaces:
//!
//! - an aggregation: `sum by (job) (` on its line, the parameter (if any) followed by `,`, the
//!   expression, then `)` at the aggregation's own indentation;
//! - a call: `rate(` on its line, one argument a line (each but the last followed by `,`),
//!   then `)`;
//! - a parenthesis: `(`, the expression, `)`;
//! - a binary operation: the left side one level deeper, the operator with its modifiers
//!   (`/ on (job) group_left ()`) at the operation's own indentation, the right side one level
//!   deeper. Nothing is written before the left side but its own indentation, so a chain
//!   `a + b + c` steps to the right as it nests to the left;
//! - a subquery: its expression written as it would be where the subquery stands, followed by
//!   the `[range:step]`, `@` and `offset`. A subquery that fits on a line is written without
//!   indentation wherever it stands, as Prometheus does;
//! - a unary operation: the sign, then its operand with the operand's first indentation left
//!   out;
//! - selectors, numbers and strings are never broken, however long.
//!
//! Lengths are counted in bytes of the one-line form, as Prometheus counts them. The one-line
//! form is Gauntlet's printer, which differs from Prometheus 3.5's where 3.5's text would not
//! parse back to the same tree: it keeps `ignoring () group_left ()` and quotes labels of `on`,
//! `ignoring` and `group_left`/`group_right` outside the legacy character set (as Prometheus
//! 3.14 does), and writes a `+Inf` base of `^` as `Inf`. Where such a difference changes the
//! length of a line, it can change where lines break too.
//!
//! Every node is measured once (the lengths of a node's parts add up to its own), and each
//! part of the text is written once, so the time is linear in the size of the tree. Both
//! passes recurse once per level of the tree, which the parser's depth limit bounds.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use super::ast::*;
use super::printer::{AggregateHead, BinaryOperator, INF_BASE, SubquerySuffix, positive_inf_base};

/// The longest one-line form an expression may have before it is broken over several lines:
/// 100 bytes, Prometheus's limit.
pub const MAX_LINE: usize = 100;

/// One level of indentation.
const INDENT: &str = "  ";

impl Expr {
    /// The expression as Prometheus's `/api/v1/format_query` writes it: on one line when its
    /// one-line form is at most [`MAX_LINE`] bytes long, otherwise broken over several lines
    /// with two spaces of indentation a level (see [the module](self)).
    ///
    /// ```
    /// use gauntlet_promql::parser::{Options, parse};
    /// let e = parse("sum(rate(x[5m])) by (job)", &Options::default()).unwrap();
    /// assert_eq!(e.pretty(), "sum by (job) (rate(x[5m]))");
    /// ```
    pub fn pretty(&self) -> String {
        self.pretty_with_max_line(MAX_LINE)
    }

    /// [`Expr::pretty`] with another line limit: an expression whose one-line form is longer
    /// than `max_line` bytes is broken up.
    pub fn pretty_with_max_line(&self, max_line: usize) -> String {
        let mut lengths = HashMap::new();
        measure(self, &mut lengths);
        let mut w = Writer {
            lengths,
            max_line,
            out: String::new(),
        };
        w.expr(self, 0, true);
        w.out
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

/// The length of `d`'s text.
fn text_len(d: impl fmt::Display) -> usize {
    let mut c = Counter(0);
    // Writing to a counter cannot fail.
    let _ = write!(c, "{d}");
    c.0
}

/// The key a node's length is kept under: its address, fixed while the tree is borrowed.
fn key(e: &Expr) -> *const Expr {
    e
}

/// Records the one-line length of `e` and of every node under it; returns `e`'s.
pub(super) fn measure(e: &Expr, lengths: &mut HashMap<*const Expr, usize>) -> usize {
    let n = match e {
        Expr::Number(_) | Expr::String(_) | Expr::Vector(_) | Expr::Matrix(_) => text_len(e),
        Expr::Subquery(s) => measure(&s.expr, lengths) + text_len(SubquerySuffix(s)),
        Expr::Paren(p) => measure(&p.expr, lengths) + 2,
        Expr::Unary(u) => measure(&u.expr, lengths) + u.op.as_str().len(),
        Expr::Binary(b) => {
            let mut lhs = measure(&b.lhs, lengths);
            if positive_inf_base(b) {
                lhs = INF_BASE.len();
            }
            lhs + text_len(BinaryOperator(b)) + measure(&b.rhs, lengths) + 2
        }
        Expr::Call(c) => {
            let args: usize = c.args.iter().map(|a| measure(a, lengths)).sum();
            c.func.name.len() + 2 + args + 2 * c.args.len().saturating_sub(1)
        }
        Expr::Aggregate(a) => {
            let param = a.param.as_ref().map_or(0, |p| measure(p, lengths) + 2);
            text_len(AggregateHead(a)) + 2 + param + measure(&a.expr, lengths)
        }
    };
    lengths.insert(key(e), n);
    n
}

/// Writes the multi-line form.
struct Writer {
    lengths: HashMap<*const Expr, usize>,
    max_line: usize,
    out: String,
}

impl Writer {
    fn indent(&mut self, level: usize) {
        for _ in 0..level {
            self.out.push_str(INDENT);
        }
    }

    /// `e`'s one-line form as the printer writes it.
    fn one_line(&mut self, e: &Expr) {
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{e}");
    }

    /// Writes `e` at `level`; `indent_first` is false where the text before it (a unary
    /// operator's sign) takes the place of its first line's indentation.
    fn expr(&mut self, e: &Expr, level: usize, indent_first: bool) {
        let split = self.lengths.get(&key(e)).copied().unwrap_or(0) > self.max_line;
        let first_indent = |w: &mut Writer| {
            if indent_first {
                w.indent(level);
            }
        };
        match e {
            Expr::Subquery(s) if split => {
                self.expr(&s.expr, level, indent_first);
                let _ = write!(self.out, "{}", SubquerySuffix(s));
            }
            // Prometheus writes a subquery that fits on a line without indentation.
            Expr::Subquery(_) => self.one_line(e),
            Expr::Unary(u) => {
                first_indent(self);
                self.out.push_str(u.op.as_str());
                self.expr(&u.expr, level, false);
            }
            Expr::Aggregate(a) if split => {
                first_indent(self);
                let _ = writeln!(self.out, "{}(", AggregateHead(a));
                if let Some(p) = &a.param {
                    self.expr(p, level + 1, true);
                    self.out.push_str(",\n");
                }
                self.expr(&a.expr, level + 1, true);
                self.close(level);
            }
            Expr::Call(c) if split && !c.args.is_empty() => {
                first_indent(self);
                self.out.push_str(c.func.name);
                self.out.push_str("(\n");
                for (i, arg) in c.args.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(",\n");
                    }
                    self.expr(arg, level + 1, true);
                }
                self.close(level);
            }
            Expr::Paren(p) if split => {
                first_indent(self);
                self.out.push_str("(\n");
                self.expr(&p.expr, level + 1, true);
                self.close(level);
            }
            Expr::Binary(b) if split => {
                if positive_inf_base(b) {
                    if indent_first {
                        self.indent(level + 1);
                    }
                    self.out.push_str(INF_BASE);
                } else {
                    self.expr(&b.lhs, level + 1, indent_first);
                }
                self.out.push('\n');
                self.indent(level);
                let _ = write!(self.out, "{}", BinaryOperator(b));
                self.out.push('\n');
                self.expr(&b.rhs, level + 1, true);
            }
            _ => {
                first_indent(self);
                self.one_line(e);
            }
        }
    }

    /// Ends a broken-up aggregation, call or parenthesis: a new line, `)` at `level`.
    fn close(&mut self, level: usize) {
        self.out.push('\n');
        self.indent(level);
        self.out.push(')');
    }
}
