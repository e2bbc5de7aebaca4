//! Ranges, subquery steps and offsets as one query's times make them, and the syntax the
//! evaluator does not evaluate yet.
//!
//! A range, step or offset may be a duration expression (`[5m * 2]`, `offset (1h + 5m)`,
//! `[step() * 4]`): the parsed tree keeps it as written, so one tree serves every query it
//! is run as, and its value is worked out here from the query's step and range (both 0 for an
//! instant query), in seconds as Prometheus works it, then rounded to ms. [`check`] refuses a
//! query whose expressions have no value or a range of nothing before evaluation starts, so
//! the evaluator reads values that exist.

use crate::parser::{DurationExpr, Expr, Offset, VectorSelector};

use super::{AnnotationAt, Evaluator};
use crate::error::PromqlError;
use crate::functions::unwrap_parens;

/// Seconds to ms, rounded; `None` when out of range.
fn seconds_to_ms(s: f64) -> Option<i64> {
    let ms = (s * 1000.0).round();
    (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
}

/// `d` in ms for a query of this step and range (ms).
fn duration_ms(d: &DurationExpr, step_ms: i64, range_ms: i64) -> Option<i64> {
    seconds_to_ms(d.seconds(step_ms as f64 / 1000.0, range_ms as f64 / 1000.0)?)
}

impl Evaluator<'_> {
    /// The query's range (end minus start, ms).
    fn query_range_ms(&self) -> i64 {
        self.q_end.saturating_sub(self.q_start)
    }

    /// A range or subquery step in ms; [`check`] has seen that it has a value.
    pub(crate) fn duration_ms(&self, d: &DurationExpr) -> i64 {
        duration_ms(d, self.q_step, self.query_range_ms()).unwrap_or(0)
    }

    /// An offset in ms (negative looks into the future).
    pub(crate) fn offset_ms(&self, o: &Offset) -> i64 {
        match o {
            Offset::None => 0,
            Offset::Literal(ms) => *ms,
            Offset::Expr(d) => self.duration_ms(d),
        }
    }
}

/// Refuses what `expr` asks that cannot be evaluated for a query of this step and range (ms):
/// a duration expression without a value, a range that is not positive, a negative subquery
/// step, and `anchored` or `smoothed` range selectors passed to functions that do not take
/// them.
pub(crate) fn check(
    expr: &Expr,
    at: &AnnotationAt,
    step_ms: i64,
    range_ms: i64,
) -> Result<(), PromqlError> {
    let value = |d: &DurationExpr| {
        duration_ms(d, step_ms, range_ms).ok_or_else(|| {
            PromqlError::Parse(format!(
                "{}: parse error: duration expression has no value: {}",
                at.line_col(d.span().start),
                d
            ))
        })
    };
    let positive = |d: &DurationExpr| -> Result<(), PromqlError> {
        if value(d)? <= 0 {
            return Err(PromqlError::Parse(format!(
                "{}: parse error: duration must be greater than 0",
                at.line_col(d.span().start)
            )));
        }
        Ok(())
    };
    let offset = |o: &Offset| match o {
        Offset::Expr(d) => value(d).map(|_| ()),
        _ => Ok(()),
    };
    let selector = |vs: &VectorSelector| offset(&vs.offset);
    let mut pending = vec![expr];
    while let Some(e) = pending.pop() {
        match e {
            Expr::Vector(vs) => selector(vs)?,
            Expr::Matrix(ms) => {
                selector(&ms.selector)?;
                positive(&ms.range)?;
            }
            Expr::Subquery(sq) => {
                offset(&sq.offset)?;
                positive(&sq.range)?;
                if let Some(step) = &sq.step
                    && value(step)? < 0
                {
                    return Err(PromqlError::Parse(format!(
                        "{}: parse error: duration must be greater than 0",
                        at.line_col(step.span().start)
                    )));
                }
                pending.push(&sq.expr);
            }
            Expr::Paren(p) => pending.push(&p.expr),
            Expr::Unary(u) => pending.push(&u.expr),
            Expr::Binary(b) => {
                pending.push(&b.lhs);
                pending.push(&b.rhs);
            }
            Expr::Call(c) => {
                for a in &c.args {
                    if let Expr::Matrix(ms) = unwrap_parens(a) {
                        modifier_allowed(c.func.name, &ms.selector)?;
                    }
                }
                pending.extend(&c.args);
            }
            Expr::Aggregate(a) => {
                pending.push(&a.expr);
                if let Some(p) = &a.param {
                    pending.push(p);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Functions Prometheus 3.14 lets read a range selector with `anchored`, and with `smoothed`.
const ANCHORED_FUNCTIONS: &[&str] = &["changes", "delta", "increase", "rate", "resets"];
const SMOOTHED_FUNCTIONS: &[&str] = &["delta", "increase", "rate"];

/// Refuses `anchored` or `smoothed` on the range selector `vs` passed to function `name` where
/// Prometheus refuses it, in its words.
fn modifier_allowed(name: &str, vs: &VectorSelector) -> Result<(), PromqlError> {
    for (used, what, allowed) in [
        (vs.anchored, "anchored", ANCHORED_FUNCTIONS),
        (vs.smoothed, "smoothed", SMOOTHED_FUNCTIONS),
    ] {
        if used && !allowed.contains(&name) {
            return Err(PromqlError::Execution(format!(
                "{what} modifier can only be used with: {} - not with {name}",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}
