//! Expressions written back as text, as Prometheus's `String()` writes them: one line,
//! aggregation modifiers before the arguments, matchers sorted, durations normalized
//! (`90s` as `1m30s`), `@` before `offset`.

use std::fmt::{self, Display, Formatter, Write as _};

use super::ast::*;
use super::duration::format_duration_ms;
use super::parse::is_legacy_label;
use gauntlet_engine::go_format::quoted;

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Number(n) => write_number(f, n),
            Expr::String(s) => f.write_str(&quoted(&s.value)),
            Expr::Vector(v) => write_selector(f, v, None),
            Expr::Matrix(m) => write_selector(f, &m.selector, Some(&m.range)),
            Expr::Subquery(s) => write!(f, "{}{}", s.expr, SubquerySuffix(s)),
            Expr::Paren(p) => write!(f, "({})", p.expr),
            Expr::Unary(u) => write!(f, "{}{}", u.op.as_str(), u.expr),
            Expr::Binary(b) => {
                if positive_inf_base(b) {
                    f.write_str(INF_BASE)?;
                } else {
                    write!(f, "{}", b.lhs)?;
                }
                write!(f, " {} {}", BinaryOperator(b), b.rhs)
            }
            Expr::Call(c) => {
                write!(f, "{}(", c.func.name)?;
                for (i, a) in c.args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_char(')')
            }
            Expr::Aggregate(a) => {
                write!(f, "{}(", AggregateHead(a))?;
                if let Some(p) = &a.param {
                    write!(f, "{p}, ")?;
                }
                write!(f, "{})", a.expr)
            }
        }
    }
}

/// `+Inf` on the left of `^` would read back as the sign applied to the power (`+(Inf ^ x)`):
/// it is written [`INF_BASE`] there so the text parses to the same tree (Prometheus's own
/// printer keeps the sign).
pub(super) fn positive_inf_base(b: &BinaryExpr) -> bool {
    matches!(&*b.lhs, Expr::Number(n)
        if b.op == BinaryOp::Pow && n.value == f64::INFINITY && !n.duration)
}

/// How a `+Inf` base of `^` is written (see [`positive_inf_base`]).
pub(super) const INF_BASE: &str = "Inf";

/// An aggregation's operator and grouping, as written before its parenthesis: `sum`,
/// `sum by (job) `, `topk without (instance) ` (Prometheus's `ShortString()`).
pub(super) struct AggregateHead<'a>(pub &'a AggregateExpr);

impl Display for AggregateHead<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let a = self.0;
        f.write_str(a.op.as_str())?;
        if a.without {
            write!(f, " without ({}) ", labels(&a.grouping))
        } else if !a.grouping.is_empty() {
            write!(f, " by ({}) ", labels(&a.grouping))
        } else {
            Ok(())
        }
    }
}

/// A binary operation's operator with its modifiers: `/ on (job) group_left ()`,
/// `> bool`, `+` (Prometheus's `ShortString()`).
pub(super) struct BinaryOperator<'a>(pub &'a BinaryExpr);

impl Display for BinaryOperator<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let b = self.0;
        f.write_str(b.op.as_str())?;
        if b.return_bool {
            f.write_str(" bool")?;
        }
        if let Some(m) = &b.matching {
            write_matching(f, m)?;
        }
        Ok(())
    }
}

/// What a subquery writes after its expression: `[1h:5m] @ 100.000 offset 1m`.
pub(super) struct SubquerySuffix<'a>(pub &'a SubqueryExpr);

impl Display for SubquerySuffix<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let s = self.0;
        f.write_char('[')?;
        write_range(f, &s.range)?;
        f.write_char(':')?;
        if let Some(step) = &s.step {
            write_range(f, step)?;
        }
        f.write_char(']')?;
        write_at_offset(f, s.at, &s.offset)
    }
}

impl Display for DurationExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            DurationExpr::Number(n) => write_number(f, n),
            DurationExpr::Step(_) => f.write_str("step()"),
            DurationExpr::Range(_) => f.write_str("range()"),
            DurationExpr::Unary { op, expr, .. } => write!(f, "{}{expr}", op.as_str()),
            DurationExpr::Binary { op, lhs, rhs } => write!(f, "{lhs} {} {rhs}", op.as_str()),
            DurationExpr::MinMax { max, args, .. } => {
                let name = if *max { "max_of" } else { "min_of" };
                write!(f, "{name}({}, {})", args.0, args.1)
            }
            DurationExpr::Paren { expr, .. } => write!(f, "({expr})"),
        }
    }
}

/// Labels joined as Prometheus joins grouping labels: `a, b`, names outside the legacy
/// character set quoted.
fn labels(ls: &[String]) -> String {
    ls.iter()
        .map(|l| {
            if is_legacy_label(l) {
                l.clone()
            } else {
                quoted(l)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn write_matching(f: &mut Formatter<'_>, m: &VectorMatching) -> fmt::Result {
    // `ignoring () group_x` is written too (Prometheus's printer drops it, losing the
    // grouping when the text is parsed again).
    let grouped = matches!(m.card, Cardinality::ManyToOne | Cardinality::OneToMany);
    if !m.labels.is_empty() || m.on || grouped {
        let tag = if m.on { "on" } else { "ignoring" };
        write!(f, " {tag} ({})", labels(&m.labels))?;
        match m.card {
            Cardinality::ManyToOne => write!(f, " group_left ({})", labels(&m.include))?,
            Cardinality::OneToMany => write!(f, " group_right ({})", labels(&m.include))?,
            _ => {}
        }
    }
    match (m.fill.lhs, m.fill.rhs) {
        (Some(l), Some(r)) if l.to_bits() == r.to_bits() => write!(f, " fill({})", float(l)),
        (l, r) => {
            if let Some(l) = l {
                write!(f, " fill_left({})", float(l))?;
            }
            if let Some(r) = r {
                write!(f, " fill_right({})", float(r))?;
            }
            Ok(())
        }
    }
}

/// `v` as Prometheus writes a number literal: shortest decimal without exponent, `+Inf`,
/// `-Inf`, `NaN`.
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn write_number(f: &mut Formatter<'_>, n: &NumberLiteral) -> fmt::Result {
    if n.duration && n.value.is_finite() {
        let ms = (n.value * 1000.0).round() as i64;
        if ms < 0 {
            return write!(f, "-{}", format_duration_ms(-ms));
        }
        return f.write_str(&format_duration_ms(ms));
    }
    f.write_str(&float(n.value))
}

/// A range or step: a lone literal as a normalized duration, anything else as written.
fn write_range(f: &mut Formatter<'_>, d: &DurationExpr) -> fmt::Result {
    match d {
        DurationExpr::Number(n) => {
            let ms = ((n.value * 1e9).round() as i64) / 1_000_000;
            if ms < 0 {
                write!(f, "-{}", format_duration_ms(-ms))
            } else {
                f.write_str(&format_duration_ms(ms))
            }
        }
        other => write!(f, "{other}"),
    }
}

fn write_at_offset(f: &mut Formatter<'_>, at: Option<At>, offset: &Offset) -> fmt::Result {
    match at {
        Some(At::Timestamp(ms)) => write!(f, " @ {:.3}", ms as f64 / 1000.0)?,
        Some(At::Start) => f.write_str(" @ start()")?,
        Some(At::End) => f.write_str(" @ end()")?,
        None => {}
    }
    match offset {
        Offset::None => Ok(()),
        Offset::Literal(ms) if *ms < 0 => write!(f, " offset -{}", format_duration_ms(-ms)),
        Offset::Literal(ms) => write!(f, " offset {}", format_duration_ms(*ms)),
        Offset::Expr(e) => write!(f, " offset {e}"),
    }
}

fn write_matcher(out: &mut String, m: &Matcher) {
    if is_legacy_label(&m.name) {
        out.push_str(&m.name);
    } else {
        out.push_str(&quoted(&m.name));
    }
    out.push_str(m.op.as_str());
    out.push_str(&quoted(&m.value));
}

fn write_selector(
    f: &mut Formatter<'_>,
    v: &VectorSelector,
    range: Option<&DurationExpr>,
) -> fmt::Result {
    let name = v.name.as_deref().unwrap_or("");
    let legacy_name = name.is_empty() || is_legacy_metric(name);
    let mut parts: Vec<String> = Vec::new();
    for m in &v.matchers {
        if m.name == "__name__" && m.op == MatchOp::Equal && m.value == name && !m.value.is_empty()
        {
            continue;
        }
        let mut s = String::new();
        write_matcher(&mut s, m);
        parts.push(s);
    }
    parts.sort();
    if legacy_name {
        f.write_str(name)?;
        if !parts.is_empty() {
            write!(f, "{{{}}}", parts.join(","))?;
        }
    } else {
        write!(f, "{{{}", quoted(name))?;
        for p in &parts {
            write!(f, ", {p}")?;
        }
        f.write_char('}')?;
    }
    if let Some(r) = range {
        f.write_char('[')?;
        write_range(f, r)?;
        f.write_char(']')?;
    }
    if v.anchored {
        f.write_str(" anchored")?;
    }
    if v.smoothed {
        f.write_str(" smoothed")?;
    }
    write_at_offset(f, v.at, &v.offset)
}

/// Whether `s` is a metric name in the legacy character set (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn is_legacy_metric(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c == ':' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c == ':' || c.is_ascii_alphanumeric())
}
