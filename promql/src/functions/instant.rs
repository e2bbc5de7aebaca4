//! Element-wise functions over instant vectors: math, rounding and clamping, and calendar
//! functions.

use crate::parser::Expr;

use super::nonempty;
use crate::error::PromqlError;
use crate::eval::{Col, Evaluator, Steps, Val, absent, is_absent};
use gauntlet_engine::labels::Labels;

/// Go's `math.Max`: +Inf wins even over NaN, then NaN wins; +0 is above -0.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

/// Go's `math.Min`: -Inf wins even over NaN, then NaN wins; -0 is below +0.
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "sqrt" => f64::sqrt,
        // Logarithms as Go computes them, so answers agree with Prometheus to the last bit.
        "ln" => gauntlet_engine::go_math::log,
        "log2" => gauntlet_engine::go_math::log2,
        "log10" => gauntlet_engine::go_math::log10,
        "sgn" => |x: f64| {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        },
        "deg" => |x: f64| x * 180.0 / std::f64::consts::PI,
        "rad" => |x: f64| x * std::f64::consts::PI / 180.0,
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        _ => return None,
    })
}

/// An element-wise function with its scalar arguments evaluated, applied to one series at a
/// time (by the materialized path and inside streamed aggregations alike).
#[derive(Debug, Clone)]
pub(crate) enum InstantFn {
    /// A math function of one value.
    Math(fn(f64) -> f64),
    /// `round(v, to)`, `to` per step.
    Round(Vec<f64>),
    /// `clamp`, `clamp_min`, `clamp_max` with bounds per step.
    Clamp {
        both: bool,
        lo: Vec<f64>,
        hi: Vec<f64>,
    },
    /// A calendar field of the value (seconds since the epoch).
    Calendar(&'static str),
}

impl InstantFn {
    /// Whether `name` is an element-wise function of an instant vector (with an argument).
    pub(crate) fn handles(name: &str) -> bool {
        math_fn(name).is_some()
            || matches!(
                name,
                "round"
                    | "clamp"
                    | "clamp_min"
                    | "clamp_max"
                    | "day_of_month"
                    | "day_of_week"
                    | "day_of_year"
                    | "days_in_month"
                    | "hour"
                    | "minute"
                    | "month"
                    | "year"
            )
    }

    /// Evaluates the scalar arguments of `name(args)` (the vector argument is `args[0]`).
    pub(crate) fn prepare(
        ev: &mut Evaluator<'_>,
        name: &'static str,
        args: &[&Expr],
        steps: &Steps,
    ) -> Result<InstantFn, PromqlError> {
        let n = steps.n;
        if let Some(f) = math_fn(name) {
            return Ok(InstantFn::Math(f));
        }
        Ok(match name {
            "round" => InstantFn::Round(match args.get(1) {
                Some(a) => ev.arg_scalar(a, steps)?,
                None => vec![1.0; n],
            }),
            "clamp" => InstantFn::Clamp {
                both: true,
                lo: ev.arg_scalar(args[1], steps)?,
                hi: ev.arg_scalar(args[2], steps)?,
            },
            "clamp_min" => InstantFn::Clamp {
                both: false,
                lo: ev.arg_scalar(args[1], steps)?,
                hi: vec![f64::INFINITY; n],
            },
            "clamp_max" => InstantFn::Clamp {
                both: false,
                lo: vec![f64::NEG_INFINITY; n],
                hi: ev.arg_scalar(args[1], steps)?,
            },
            other => InstantFn::Calendar(other),
        })
    }

    /// Applies the function to one series' steps; the result loses its metric name.
    pub(crate) fn apply(&self, c: &mut Col) {
        c.drop_name = true;
        // These functions take floats only: histogram samples are dropped.
        c.h = None;
        for (i, x) in c.v.iter_mut().enumerate() {
            if is_absent(*x) {
                continue;
            }
            *x = match self {
                InstantFn::Math(f) => f(*x),
                InstantFn::Round(to) => {
                    let inv = 1.0 / to[i];
                    (*x * inv + 0.5).floor() / inv
                }
                InstantFn::Clamp { both, lo, hi } => {
                    if *both && hi[i] < lo[i] {
                        absent()
                    } else {
                        go_max(lo[i], go_min(hi[i], *x))
                    }
                }
                InstantFn::Calendar(name) => calendar(name, *x),
            };
        }
    }
}

pub(crate) fn call(
    ev: &mut Evaluator<'_>,
    name: &'static str,
    args: &[&Expr],
    steps: &Steps,
) -> Result<Val, PromqlError> {
    let n = steps.n;
    if InstantFn::handles(name) {
        let calendar_default = args.is_empty();
        let mut cols = if calendar_default {
            vec![Col {
                h: None,
                labels: Labels::empty(),
                drop_name: false,
                v: (0..n).map(|i| steps.t(i) as f64 / 1000.0).collect(),
            }]
        } else {
            ev.arg_vector(args[0], steps)?
        };
        let f = InstantFn::prepare(ev, name, args, steps)?;
        for c in &mut cols {
            f.apply(c);
        }
        // Only clamp with crossed bounds removes values.
        return Ok(match f {
            InstantFn::Clamp { .. } => nonempty(cols),
            _ => Val::Vector(cols),
        });
    }
    Err(PromqlError::Execution(format!(
        "function {name:?} is not supported"
    )))
}

/// Seconds from Go's absolute time epoch (year -292277022399) to the Unix epoch. Go's time
/// package computes calendar fields from `unix seconds + this` as an unsigned 64-bit count,
/// so earlier times wrap around to the far future.
const GO_UNIX_TO_ABSOLUTE: i128 = 9_223_372_028_715_321_600;

/// A calendar field of a Unix time in seconds, in UTC, as Prometheus computes it with Go's
/// `time.Unix(int64(v), 0).UTC()`: the value truncated toward zero (NaN, ±Inf and values out
/// of the int64 range become the minimum int64, as Go's conversion does on amd64), and
/// times before Go's absolute epoch wrapped as Go's unsigned arithmetic wraps them.
fn calendar(name: &str, secs: f64) -> f64 {
    let s = go_int64(secs);
    let abs = (i128::from(s) + GO_UNIX_TO_ABSOLUTE).rem_euclid(1 << 64);
    let unix = abs - GO_UNIX_TO_ABSOLUTE;
    let days = unix.div_euclid(86_400) as i64;
    let rem = unix.rem_euclid(86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    match name {
        "day_of_month" => d as f64,
        "day_of_week" => ((days + 4).rem_euclid(7)) as f64,
        "day_of_year" => (days - days_from_civil(y, 1, 1) + 1) as f64,
        "days_in_month" => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (days_from_civil(ny, nm, 1) - days_from_civil(y, m, 1)) as f64
        }
        "hour" => (rem / 3600) as f64,
        "minute" => ((rem % 3600) / 60) as f64,
        "month" => m as f64,
        "year" => y as f64,
        _ => f64::NAN,
    }
}

/// Go's `int64(x)` for a float64 on amd64: truncation toward zero, and the minimum int64
/// for NaN, ±Inf and values outside the int64 range.
fn go_int64(x: f64) -> i64 {
    // 2^63 as f64, exactly.
    const TWO_63: f64 = 9_223_372_036_854_775_808_u64 as f64;
    if x.is_nan() || !(-TWO_63..TWO_63).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

/// Year, month (1-12), day (1-31) of a day count since 1970-01-01 (proleptic Gregorian).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
