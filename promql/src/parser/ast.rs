//! The expression tree a query parses into.
//!
//! Every node carries its [`Span`] (byte offsets into the query), so errors and warnings
//! found while evaluating can point where Prometheus points. Modifiers are kept as written:
//! `offset` and `@` on the selector or subquery they follow, duration expressions (`[5m+1m]`,
//! `offset (1h*2)`, `step()`) as [`DurationExpr`] trees to be evaluated once a query's step and
//! range are known.

use super::functions::Function;

/// A range of the query's text, byte offsets, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset just past the last byte.
    pub end: usize,
}

impl Span {
    /// The span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
}

/// The type of value an expression evaluates to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// No value (an empty argument list); never the type of a valid expression.
    None,
    /// A single number without labels.
    Scalar,
    /// An instant vector: one sample per series.
    Vector,
    /// A range vector: the samples of a time range per series.
    Matrix,
    /// A string literal.
    String,
}

impl ValueType {
    /// The name Prometheus's documentation and most error messages use: `instant vector`,
    /// `range vector`, `scalar`, `string`.
    pub fn documented(self) -> &'static str {
        match self {
            ValueType::None => "none",
            ValueType::Scalar => "scalar",
            ValueType::Vector => "instant vector",
            ValueType::Matrix => "range vector",
            ValueType::String => "string",
        }
    }

    /// The short name some messages use (`matrix`, `vector`).
    pub fn short(self) -> &'static str {
        match self {
            ValueType::None => "none",
            ValueType::Scalar => "scalar",
            ValueType::Vector => "vector",
            ValueType::Matrix => "matrix",
            ValueType::String => "string",
        }
    }
}

/// A PromQL expression.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Expr {
    /// A number literal.
    Number(NumberLiteral),
    /// A string literal.
    String(StringLiteral),
    /// An instant vector selector.
    Vector(VectorSelector),
    /// A range vector selector.
    Matrix(MatrixSelector),
    /// A subquery.
    Subquery(SubqueryExpr),
    /// A parenthesized expression.
    Paren(ParenExpr),
    /// A unary minus or plus.
    Unary(UnaryExpr),
    /// A binary operation.
    Binary(BinaryExpr),
    /// A function call.
    Call(Call),
    /// An aggregation.
    Aggregate(AggregateExpr),
}

/// A number: `1`, `0x1F`, `-Inf`, or a duration used as seconds (`5m`).
#[derive(Debug, Clone, PartialEq)]
pub struct NumberLiteral {
    /// The value (seconds, for a duration).
    pub value: f64,
    /// Written as a duration (`5m`), and printed back as one.
    pub duration: bool,
    /// Where the literal is in the query.
    pub span: Span,
}

/// A string literal, escapes decoded (bytes that are not UTF-8 as the engine's raw-byte
/// characters).
#[derive(Debug, Clone, PartialEq)]
pub struct StringLiteral {
    /// The decoded value.
    pub value: String,
    /// Where the literal is in the query, quotes included.
    pub span: Span,
}

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the value equals the matcher's.
    Equal,
    /// `!=`: the value differs from the matcher's.
    NotEqual,
    /// `=~`: the whole value matches the regex.
    Regex,
    /// `!~`: the whole value does not match the regex.
    NotRegex,
}

impl MatchOp {
    /// As written in a selector: `=`, `!=`, `=~`, `!~`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One label matcher of a selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// How the value is compared.
    pub op: MatchOp,
    /// The value or regex, unquoted.
    pub value: String,
}

/// `@ <timestamp>`, `@ start()` or `@ end()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// A fixed time, ms since the epoch.
    Timestamp(i64),
    /// `@ start()`: the query's start time.
    Start,
    /// `@ end()`: the query's end time.
    End,
}

/// An arithmetic expression over durations, as a range, subquery step or offset is written in
/// Prometheus 3 (`5m`, `5m + 1m`, `(1h * 2)`, `step()`, `min_of(range(), 1h)`). Numbers are
/// seconds.
#[derive(Debug, Clone, PartialEq)]
pub enum DurationExpr {
    /// A number or duration literal, in seconds.
    Number(NumberLiteral),
    /// `step()`: the query's resolution step.
    Step(Span),
    /// `range()`: the query's range (end minus start).
    Range(Span),
    /// `-e` or `+e`.
    Unary {
        /// [`BinaryOp::Sub`] or [`BinaryOp::Add`].
        op: BinaryOp,
        /// The operand.
        expr: Box<DurationExpr>,
        /// Where the expression is in the query.
        span: Span,
    },
    /// `a + b`, `a * b`, ...: only the arithmetic operators.
    Binary {
        /// The operator.
        op: BinaryOp,
        /// The left operand.
        lhs: Box<DurationExpr>,
        /// The right operand.
        rhs: Box<DurationExpr>,
    },
    /// `min_of(a, b)` or `max_of(a, b)`.
    MinMax {
        /// `max_of` rather than `min_of`.
        max: bool,
        /// The two arguments.
        args: Box<(DurationExpr, DurationExpr)>,
        /// Where the call is in the query.
        span: Span,
    },
    /// `(e)`.
    Paren {
        /// The expression inside.
        expr: Box<DurationExpr>,
        /// Where the parentheses are in the query.
        span: Span,
    },
}

impl DurationExpr {
    /// Where the expression is in the query.
    pub fn span(&self) -> Span {
        match self {
            DurationExpr::Number(n) => n.span,
            DurationExpr::Step(s) | DurationExpr::Range(s) => *s,
            DurationExpr::Unary { span, .. }
            | DurationExpr::MinMax { span, .. }
            | DurationExpr::Paren { span, .. } => *span,
            DurationExpr::Binary { lhs, rhs, .. } => Span::new(lhs.span().start, rhs.span().end),
        }
    }

    /// The literal's seconds when the expression is a single number (no arithmetic).
    pub fn literal_seconds(&self) -> Option<f64> {
        match self {
            DurationExpr::Number(n) => Some(n.value),
            _ => None,
        }
    }

    /// Whether the expression uses `step()` or `range()`, and so has its value only once a
    /// query's times are known.
    pub fn needs_query_times(&self) -> bool {
        match self {
            DurationExpr::Number(_) => false,
            DurationExpr::Step(_) | DurationExpr::Range(_) => true,
            DurationExpr::Unary { expr, .. } | DurationExpr::Paren { expr, .. } => {
                expr.needs_query_times()
            }
            DurationExpr::Binary { lhs, rhs, .. } => {
                lhs.needs_query_times() || rhs.needs_query_times()
            }
            DurationExpr::MinMax { args, .. } => {
                args.0.needs_query_times() || args.1.needs_query_times()
            }
        }
    }

    /// The value in seconds, given the query's step and range (seconds); `None` when the
    /// arithmetic has no finite answer (a division by zero).
    pub fn seconds(&self, step_s: f64, range_s: f64) -> Option<f64> {
        let v = match self {
            DurationExpr::Number(n) => n.value,
            DurationExpr::Step(_) => step_s,
            DurationExpr::Range(_) => range_s,
            DurationExpr::Unary { op, expr, .. } => {
                let v = expr.seconds(step_s, range_s)?;
                if *op == BinaryOp::Sub { -v } else { v }
            }
            DurationExpr::Paren { expr, .. } => expr.seconds(step_s, range_s)?,
            DurationExpr::Binary { op, lhs, rhs } => {
                let (a, b) = (lhs.seconds(step_s, range_s)?, rhs.seconds(step_s, range_s)?);
                match op {
                    BinaryOp::Add => a + b,
                    BinaryOp::Sub => a - b,
                    BinaryOp::Mul => a * b,
                    BinaryOp::Div => a / b,
                    BinaryOp::Mod => a % b,
                    BinaryOp::Pow => a.powf(b),
                    _ => return None,
                }
            }
            DurationExpr::MinMax { max, args, .. } => {
                let (a, b) = (
                    args.0.seconds(step_s, range_s)?,
                    args.1.seconds(step_s, range_s)?,
                );
                if *max { a.max(b) } else { a.min(b) }
            }
        };
        v.is_finite().then_some(v)
    }
}

/// `offset` of a selector or subquery.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Offset {
    /// No offset (or `offset 0`).
    #[default]
    None,
    /// A literal offset, ms (negative looks ahead).
    Literal(i64),
    /// A duration expression, evaluated once the query's times are known.
    Expr(DurationExpr),
}

impl Offset {
    fn is_set(&self) -> bool {
        !matches!(self, Offset::None)
    }

    pub(crate) fn set(&self) -> bool {
        self.is_set()
    }
}

/// An instant vector selector: `name{matchers} @ t offset d`.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSelector {
    /// The metric name written before the braces, if any.
    pub name: Option<String>,
    /// The matchers, the metric name's `__name__="..."` matcher last when a name was written
    /// before the braces.
    pub matchers: Vec<Matcher>,
    /// `offset d`.
    pub offset: Offset,
    /// `@ t`.
    pub at: Option<At>,
    /// `anchored` (Prometheus 3.14's extended range selectors).
    pub anchored: bool,
    /// `smoothed` (Prometheus 3.14's extended range selectors).
    pub smoothed: bool,
    /// The selector as the second argument of `info()`, which may match nothing.
    pub bypass_empty_matcher_check: bool,
    /// Where the selector is in the query.
    pub span: Span,
}

/// A range vector selector: `selector[range]`; the selector holds the `offset` and `@`.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixSelector {
    /// The selector before the brackets, with its `offset` and `@`.
    pub selector: VectorSelector,
    /// The range in the brackets, seconds.
    pub range: DurationExpr,
    /// Where the selector is in the query.
    pub span: Span,
}

/// A subquery: `expr[range:step]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubqueryExpr {
    /// The inner expression, evaluated at each step.
    pub expr: Box<Expr>,
    /// The range before the colon, seconds.
    pub range: DurationExpr,
    /// The step; `None` when left out (the evaluation interval is used).
    pub step: Option<DurationExpr>,
    /// `offset d`.
    pub offset: Offset,
    /// `@ t`.
    pub at: Option<At>,
    /// Where the subquery is in the query.
    pub span: Span,
}

/// `(expr)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ParenExpr {
    /// The expression inside.
    pub expr: Box<Expr>,
    /// Where the parentheses are in the query.
    pub span: Span,
}

/// `-expr` or `+expr` (a negated number literal is folded into the literal).
#[derive(Debug, Clone, PartialEq)]
pub struct UnaryExpr {
    /// [`BinaryOp::Sub`] or [`BinaryOp::Add`].
    pub op: BinaryOp,
    /// The operand.
    pub expr: Box<Expr>,
    /// Where the expression is in the query.
    pub span: Span,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `^`.
    Pow,
    /// `atan2`.
    Atan2,
    /// `</` (Prometheus 3.14): a histogram with its buckets above the bound removed.
    TrimUpper,
    /// `>/` (Prometheus 3.14): a histogram with its buckets below the bound removed.
    TrimLower,
    /// `==`.
    Eql,
    /// `!=`.
    Neq,
    /// `>`.
    Gtr,
    /// `<`.
    Lss,
    /// `>=`.
    Gte,
    /// `<=`.
    Lte,
    /// `and`: the left side's series that the right side has.
    And,
    /// `or`: the left side's series, then the right side's the left lacks.
    Or,
    /// `unless`: the left side's series that the right side lacks.
    Unless,
}

impl BinaryOp {
    /// As written in a query.
    pub fn as_str(self) -> &'static str {
        use BinaryOp::*;
        match self {
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
            Pow => "^",
            Atan2 => "atan2",
            TrimUpper => "</",
            TrimLower => ">/",
            Eql => "==",
            Neq => "!=",
            Gtr => ">",
            Lss => "<",
            Gte => ">=",
            Lte => "<=",
            And => "and",
            Or => "or",
            Unless => "unless",
        }
    }

    /// Whether this is a comparison (`==`, `<`...).
    pub fn is_comparison(self) -> bool {
        use BinaryOp::*;
        matches!(self, Eql | Neq | Gtr | Lss | Gte | Lte)
    }

    /// Whether this is a set operator (`and`, `or`, `unless`).
    pub fn is_set(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }

    /// Binding power: `or` lowest, `^` highest.
    pub fn precedence(self) -> u8 {
        use BinaryOp::*;
        match self {
            Or => 1,
            And | Unless => 2,
            Eql | Neq | Gtr | Lss | Gte | Lte => 3,
            Add | Sub => 4,
            Mul | Div | Mod | Atan2 | TrimUpper | TrimLower => 5,
            Pow => 6,
        }
    }
}

/// How the series of a binary operation's two sides pair up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Cardinality {
    #[default]
    /// Each series pairs with at most one of the other side.
    OneToOne,
    /// `group_left`: many left series to one right series.
    ManyToOne,
    /// `group_right`: one left series to many right series.
    OneToMany,
    /// The set operators (`and`, `or`, `unless`).
    ManyToMany,
}

/// Values filled in for series missing on one side (`fill()`, Prometheus 3.14).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FillValues {
    /// The value a missing left-hand series takes, if any.
    pub lhs: Option<f64>,
    /// The value a missing right-hand series takes, if any.
    pub rhs: Option<f64>,
}

/// `on`/`ignoring`, `group_left`/`group_right` and `fill` of a binary operation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VectorMatching {
    /// How series pair up.
    pub card: Cardinality,
    /// The labels of `on (...)` or `ignoring (...)`.
    pub labels: Vec<String>,
    /// `on` rather than `ignoring`.
    pub on: bool,
    /// The labels of `group_left (...)` or `group_right (...)`.
    pub include: Vec<String>,
    /// `fill`, `fill_left` and `fill_right`.
    pub fill: FillValues,
}

/// `lhs op rhs`.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryExpr {
    /// The operator.
    pub op: BinaryOp,
    /// The left operand.
    pub lhs: Box<Expr>,
    /// The right operand.
    pub rhs: Box<Expr>,
    /// `bool` after a comparison.
    pub return_bool: bool,
    /// The matching modifiers; `None` when a side is a scalar.
    pub matching: Option<VectorMatching>,
}

/// A function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The function called.
    pub func: &'static Function,
    /// The arguments, in order.
    pub args: Vec<Expr>,
    /// Where the call is in the query, name to closing parenthesis.
    pub span: Span,
}

/// An aggregation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `count`.
    Count,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `group`.
    Group,
    /// `stddev`.
    Stddev,
    /// `stdvar`.
    Stdvar,
    /// `topk`.
    Topk,
    /// `bottomk`.
    Bottomk,
    /// `count_values`.
    CountValues,
    /// `quantile`.
    Quantile,
    /// `limitk` (experimental).
    Limitk,
    /// `limit_ratio` (experimental).
    LimitRatio,
}

impl AggregateOp {
    /// As written in a query.
    pub fn as_str(self) -> &'static str {
        use AggregateOp::*;
        match self {
            Sum => "sum",
            Avg => "avg",
            Count => "count",
            Min => "min",
            Max => "max",
            Group => "group",
            Stddev => "stddev",
            Stdvar => "stdvar",
            Topk => "topk",
            Bottomk => "bottomk",
            CountValues => "count_values",
            Quantile => "quantile",
            Limitk => "limitk",
            LimitRatio => "limit_ratio",
        }
    }

    /// Whether the operator takes a parameter before the expression (`topk(3, x)`).
    pub fn takes_param(self) -> bool {
        use AggregateOp::*;
        matches!(
            self,
            Topk | Bottomk | CountValues | Quantile | Limitk | LimitRatio
        )
    }

    /// Whether Prometheus gates the operator behind `promql-experimental-functions`.
    pub fn is_experimental(self) -> bool {
        matches!(self, AggregateOp::Limitk | AggregateOp::LimitRatio)
    }
}

/// `op by (labels) (param, expr)`.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateExpr {
    /// The operator.
    pub op: AggregateOp,
    /// The expression aggregated.
    pub expr: Box<Expr>,
    /// The parameter before the expression (`topk`'s k), if the operator takes one.
    pub param: Option<Box<Expr>>,
    /// The labels of `by (...)` or `without (...)`.
    pub grouping: Vec<String>,
    /// `without` rather than `by`.
    pub without: bool,
    /// Where the aggregation is in the query.
    pub span: Span,
}

impl Expr {
    /// Where the expression is in the query, as Prometheus's `PositionRange` places it.
    pub fn span(&self) -> Span {
        match self {
            Expr::Number(n) => n.span,
            Expr::String(s) => s.span,
            Expr::Vector(v) => v.span,
            Expr::Matrix(m) => m.span,
            Expr::Subquery(s) => s.span,
            Expr::Paren(p) => p.span,
            Expr::Unary(u) => u.span,
            Expr::Binary(b) => Span::new(b.lhs.span().start, b.rhs.span().end),
            Expr::Call(c) => c.span,
            Expr::Aggregate(a) => a.span,
        }
    }

    /// The type of value the expression evaluates to.
    pub fn value_type(&self) -> ValueType {
        match self {
            Expr::Number(_) => ValueType::Scalar,
            Expr::String(_) => ValueType::String,
            Expr::Vector(_) | Expr::Aggregate(_) => ValueType::Vector,
            Expr::Matrix(_) | Expr::Subquery(_) => ValueType::Matrix,
            Expr::Paren(p) => p.expr.value_type(),
            Expr::Unary(u) => u.expr.value_type(),
            Expr::Binary(b) => {
                if b.lhs.value_type() == ValueType::Scalar
                    && b.rhs.value_type() == ValueType::Scalar
                {
                    ValueType::Scalar
                } else {
                    ValueType::Vector
                }
            }
            Expr::Call(c) => c.func.return_type,
        }
    }
}

impl DurationExpr {
    /// Sets every span in the expression to the empty span.
    pub fn clear_spans(&mut self) {
        match self {
            DurationExpr::Number(n) => n.span = Span::default(),
            DurationExpr::Step(s) | DurationExpr::Range(s) => *s = Span::default(),
            DurationExpr::Unary { expr, span, .. } | DurationExpr::Paren { expr, span } => {
                *span = Span::default();
                expr.clear_spans();
            }
            DurationExpr::Binary { lhs, rhs, .. } => {
                lhs.clear_spans();
                rhs.clear_spans();
            }
            DurationExpr::MinMax { args, span, .. } => {
                *span = Span::default();
                args.0.clear_spans();
                args.1.clear_spans();
            }
        }
    }
}

impl Offset {
    fn clear_spans(&mut self) {
        if let Offset::Expr(e) = self {
            e.clear_spans();
        }
    }
}

impl VectorSelector {
    fn clear_spans(&mut self) {
        self.span = Span::default();
        self.offset.clear_spans();
    }
}

impl Expr {
    /// Sets every span in the tree to the empty span, so trees parsed from different texts
    /// compare by structure alone (as the round trip through the printer is checked).
    pub fn clear_spans(&mut self) {
        match self {
            Expr::Number(n) => n.span = Span::default(),
            Expr::String(s) => s.span = Span::default(),
            Expr::Vector(v) => v.clear_spans(),
            Expr::Matrix(m) => {
                m.span = Span::default();
                m.selector.clear_spans();
                m.range.clear_spans();
            }
            Expr::Subquery(s) => {
                s.span = Span::default();
                s.expr.clear_spans();
                s.range.clear_spans();
                if let Some(step) = &mut s.step {
                    step.clear_spans();
                }
                s.offset.clear_spans();
            }
            Expr::Paren(p) => {
                p.span = Span::default();
                p.expr.clear_spans();
            }
            Expr::Unary(u) => {
                u.span = Span::default();
                u.expr.clear_spans();
            }
            Expr::Binary(b) => {
                b.lhs.clear_spans();
                b.rhs.clear_spans();
            }
            Expr::Call(c) => {
                c.span = Span::default();
                c.args.iter_mut().for_each(Expr::clear_spans);
            }
            Expr::Aggregate(a) => {
                a.span = Span::default();
                a.expr.clear_spans();
                if let Some(p) = &mut a.param {
                    p.clear_spans();
                }
            }
        }
    }
}
