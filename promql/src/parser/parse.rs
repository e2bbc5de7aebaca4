//! The parser: recursive descent over the lexer's tokens, binary operators by precedence
//! climbing.
//!
//! It follows Prometheus's grammar, and raises its errors where Prometheus's generated parser
//! does: a token that cannot continue the query is reported in the words of the innermost
//! construct that has its own (`in aggregation`, `in grouping opts`, `in label matching`,
//! `in offset`, `in subquery selector`), otherwise bare. Tokens are read one ahead, only when
//! needed, so errors come in the order Prometheus finds them. Nesting is bounded by
//! [`Options::max_depth`], so no input can exhaust the stack.

use super::ast::*;
use super::functions::{self, UNKNOWN};
use super::lex::{Kind, Lexer, Token};
use super::unquote::unquote;
use super::{Options, ParseError, duration, number};
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::go_format::{as_raw_byte, quoted};
use gauntlet_engine::labels::{MatchType, Matcher as LabelMatcher};

/// A syntax error was recorded; the parse stops.
#[derive(Debug)]
pub(super) struct Stop;

type R<T> = Result<T, Stop>;

/// Binding power of unary minus: it binds as `*` does, so `-a ^ b` is `-(a ^ b)` and `-a * b`
/// is `(-a) * b`; its operand is read at the power of `^`.
const UNARY_OPERAND: u8 = 6;

/// What a duration expression is part of, for its errors' words.
#[derive(Debug, Clone, Copy)]
enum DurCtx {
    /// The range of `[range]` or `[range:step]`.
    Range,
    /// The step of `[range:step]`.
    Step,
    /// The duration after `offset`.
    Offset,
}

impl DurCtx {
    fn words(self) -> (&'static str, &'static str) {
        match self {
            DurCtx::Range => ("subquery selector", "number or duration"),
            DurCtx::Step => ("subquery selector", "number or duration or \"]\""),
            DurCtx::Offset => ("offset", "number or duration"),
        }
    }
}

pub(super) struct Parser<'a> {
    src: &'a str,
    lex: Lexer<'a>,
    ahead: Option<Token>,
    error: Option<ParseError>,
    opts: &'a Options,
    depth: usize,
    /// How many aggregations the parser is inside: their errors say `in aggregation`.
    aggregations: usize,
    /// While reading a metric selector ([`Parser::metric_selector`]): its matchers as the
    /// engine selects with them, each regex compiled once, where it is read.
    selected: Option<Vec<LabelMatcher>>,
    /// The memory budget the regexes of [`Parser::selected`] hold room in, when they are built
    /// for a request.
    pub(super) budget: Option<std::sync::Arc<MemoryBudget>>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(src: &'a str, opts: &'a Options) -> Self {
        Parser {
            src,
            lex: Lexer::new(src),
            ahead: None,
            error: None,
            opts,
            depth: 0,
            aggregations: 0,
            selected: None,
            budget: None,
        }
    }

    /// The whole text as one vector selector, as Prometheus's `ParseMetricSelector` reads a
    /// `match[]` value: a metric name, braces, or both, and nothing else (no range, offset or
    /// `@`). The matchers come in the order written, the metric name first; the selector is
    /// not type-checked, so it may name the metric twice.
    pub(super) fn metric_selector(mut self) -> Result<Vec<LabelMatcher>, ParseError> {
        self.selected = Some(Vec::new());
        let result = self.metric_selector_body();
        match (result, self.error) {
            (Ok(()), None) => Ok(self.selected.unwrap_or_default()),
            (_, Some(e)) => Err(e),
            (Err(Stop), None) => Err(ParseError::new(
                self.src,
                Span::default(),
                "unexpected error".into(),
            )),
        }
    }

    /// The metric and labels that begin a promqltest series description
    /// (`name{l="v", …} values…`), as Prometheus's `ParseSeriesDesc` reads them: a metric
    /// name, braces straight after it (or alone), or both. Returns the labels as `=`
    /// matchers, the metric name first, and the byte offset where the values begin.
    pub(super) fn series_description(mut self) -> Result<(Vec<LabelMatcher>, usize), ParseError> {
        self.selected = Some(Vec::new());
        let result = self.series_description_body();
        match (result, self.error) {
            (Ok(end), None) => {
                let labels = self.selected.unwrap_or_default();
                if let Some(m) = labels.iter().find(|m| m.typ != MatchType::Equal) {
                    return Err(ParseError::new(
                        self.src,
                        Span::default(),
                        format!("a series description has labels, not the matcher {m}"),
                    ));
                }
                Ok((labels, end))
            }
            (_, Some(e)) => Err(e),
            (Err(Stop), None) => Err(ParseError::new(
                self.src,
                Span::default(),
                "unexpected error".into(),
            )),
        }
    }

    fn series_description_body(&mut self) -> R<usize> {
        let t = self.peek()?;
        let name_end = match t.kind {
            Kind::LeftBrace => return self.braces(&mut Vec::new()),
            k if k == Kind::Identifier || k.is_aggregator() || is_metric_keyword(k) => {
                self.bump()?;
                if let Some(selected) = &mut self.selected {
                    selected.push(LabelMatcher::equal("__name__", t.text(self.src)));
                }
                t.end
            }
            _ => return Err(self.unexpected(t, "", "")),
        };
        // Values follow after white space, and may start with a histogram's `{{`: braces
        // count as labels only straight after the name.
        let after = &self.src[name_end..];
        if after.starts_with('{') && !after.starts_with("{{") {
            return self.braces(&mut Vec::new());
        }
        Ok(name_end)
    }

    fn metric_selector_body(&mut self) -> R<()> {
        let t = self.peek()?;
        match t.kind {
            Kind::LeftBrace => {
                self.selector(None)?;
            }
            k if k == Kind::Identifier || k.is_aggregator() || is_metric_keyword(k) => {
                self.bump()?;
                self.selector(Some(t))?;
            }
            _ => return Err(self.unexpected(t, "", "")),
        }
        let t = self.peek()?;
        if t.kind != Kind::Eof {
            return Err(self.unexpected(t, "", ""));
        }
        Ok(())
    }

    /// The whole query as one expression, or the first error.
    pub(super) fn parse(mut self) -> Result<Expr, ParseError> {
        let result = self.top();
        match (result, self.error) {
            (Ok(e), None) => Ok(e),
            (_, Some(e)) => Err(e),
            (Err(Stop), None) => Err(ParseError::new(
                self.src,
                Span::default(),
                "unexpected error".into(),
            )),
        }
    }

    fn top(&mut self) -> R<Expr> {
        let t = self.peek()?;
        if t.kind == Kind::Eof {
            self.record(Span::default(), "no expression found in input".into());
            return Err(Stop);
        }
        let e = self.expr(0)?;
        let t = self.peek()?;
        if t.kind != Kind::Eof {
            return Err(self.unexpected(t, "", ""));
        }
        Ok(e)
    }

    // ---- tokens and errors ----

    fn peek(&mut self) -> R<Token> {
        if let Some(t) = self.ahead {
            return Ok(t);
        }
        match self.lex.next_token() {
            Ok(t) => {
                self.ahead = Some(t);
                Ok(t)
            }
            Err(e) => {
                self.record(Span::new(e.pos, self.src.len()), e.msg);
                Err(Stop)
            }
        }
    }

    fn bump(&mut self) -> R<Token> {
        let t = self.peek()?;
        self.ahead = None;
        Ok(t)
    }

    fn text(&self, t: Token) -> &'a str {
        t.text(self.src)
    }

    /// Records an error unless an earlier one was; parsing goes on.
    fn record(&mut self, span: Span, msg: String) {
        if self.error.is_none() {
            self.error = Some(ParseError::new(self.src, span, msg));
        }
    }

    /// Records "unexpected `t`" in `context`, expecting `expected`.
    fn unexpected(&mut self, t: Token, context: &str, expected: &str) -> Stop {
        let mut msg = format!("unexpected {}", t.describe(self.src));
        if !context.is_empty() {
            msg.push_str(" in ");
            msg.push_str(context);
        }
        if !expected.is_empty() {
            msg.push_str(", expected ");
            msg.push_str(expected);
        }
        self.record(Span::new(t.start, t.end), msg);
        Stop
    }

    /// "unexpected `t`" where an expression or its continuation was due.
    fn unexpected_in_expr(&mut self, t: Token) -> Stop {
        let context = if self.aggregations > 0 {
            "aggregation"
        } else {
            ""
        };
        self.unexpected(t, context, "")
    }

    fn enter(&mut self, at: Token) -> R<()> {
        self.depth += 1;
        if self.depth > self.opts.max_depth {
            self.record(
                Span::new(at.start, at.end),
                format!("query nests more than {} levels deep", self.opts.max_depth),
            );
            return Err(Stop);
        }
        Ok(())
    }

    // ---- expressions ----

    fn expr(&mut self, min_prec: u8) -> R<Expr> {
        let first = self.peek()?;
        self.enter(first)?;
        let r = self.expr_from(min_prec);
        self.depth -= 1;
        r
    }

    fn expr_from(&mut self, min_prec: u8) -> R<Expr> {
        let mut lhs = self.unary()?;
        // Each operator or modifier applied in this loop puts a node above `lhs` without a
        // call of its own: it counts as a level all the same, as the checks and the
        // evaluator walk the tree recursively.
        let mut wrapped = 0;
        let result = loop {
            let t = self.peek()?;
            if matches!(
                t.kind,
                Kind::LeftBracket | Kind::Offset | Kind::At | Kind::Anchored | Kind::Smoothed
            ) || binary_op(t.kind).is_some_and(|op| op.precedence() >= min_prec)
            {
                self.enter(t)?;
                wrapped += 1;
            }
            lhs = match t.kind {
                Kind::LeftBracket => self.range_or_subquery(lhs)?,
                Kind::Offset => self.offset(lhs)?,
                Kind::At => self.at(lhs)?,
                Kind::Anchored | Kind::Smoothed => self.extended_range(lhs)?,
                _ => {
                    let Some(op) = binary_op(t.kind) else {
                        break lhs;
                    };
                    let prec = op.precedence();
                    if prec < min_prec {
                        break lhs;
                    }
                    self.bump()?;
                    let (return_bool, matching) = self.binary_modifiers()?;
                    let rhs = self.expr(if op == BinaryOp::Pow { prec } else { prec + 1 })?;
                    let b = BinaryExpr {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                        return_bool,
                        matching: Some(matching),
                    };
                    let fill = b.matching.as_ref().map(|m| m.fill).unwrap_or_default();
                    if !self.opts.binop_fill_modifiers && (fill.lhs.is_some() || fill.rhs.is_some())
                    {
                        self.record(
                            Span::new(b.lhs.span().start, b.rhs.span().end),
                            "binop fill modifiers are experimental and not enabled".into(),
                        );
                    }
                    Expr::Binary(b)
                }
            };
        };
        self.depth -= wrapped;
        Ok(result)
    }

    fn unary(&mut self) -> R<Expr> {
        let t = self.peek()?;
        let op = match t.kind {
            Kind::Add => BinaryOp::Add,
            Kind::Sub => BinaryOp::Sub,
            _ => return self.primary(),
        };
        self.bump()?;
        let operand = self.expr(UNARY_OPERAND)?;
        Ok(match operand {
            Expr::Number(mut n) => {
                if op == BinaryOp::Sub {
                    n.value = -n.value;
                }
                n.span.start = t.start;
                Expr::Number(n)
            }
            e => {
                let span = Span::new(t.start, e.span().end);
                Expr::Unary(UnaryExpr {
                    op,
                    expr: Box::new(e),
                    span,
                })
            }
        })
    }

    fn primary(&mut self) -> R<Expr> {
        let t = self.peek()?;
        match t.kind {
            Kind::Number | Kind::Duration => {
                self.bump()?;
                Ok(Expr::Number(self.number_literal(t)))
            }
            Kind::String => {
                self.bump()?;
                let value = unquote(self.text(t)).unwrap_or_default();
                Ok(Expr::String(StringLiteral {
                    value,
                    span: Span::new(t.start, t.end),
                }))
            }
            Kind::LeftParen => {
                self.bump()?;
                let e = self.expr(0)?;
                let close = self.peek()?;
                if close.kind != Kind::RightParen {
                    return Err(self.unexpected_in_expr(close));
                }
                self.bump()?;
                Ok(Expr::Paren(ParenExpr {
                    expr: Box::new(e),
                    span: Span::new(t.start, close.end),
                }))
            }
            Kind::LeftBrace => self.selector(None),
            Kind::Identifier => {
                self.bump()?;
                if self.peek()?.kind == Kind::LeftParen {
                    self.call(t)
                } else {
                    self.selector(Some(t))
                }
            }
            k if k.is_aggregator() => {
                self.bump()?;
                if matches!(
                    self.peek()?.kind,
                    Kind::LeftParen | Kind::By | Kind::Without
                ) {
                    self.aggregate(t)
                } else {
                    self.selector(Some(t))
                }
            }
            Kind::Start | Kind::End | Kind::Step | Kind::Range => {
                self.bump()?;
                if self.peek()?.kind == Kind::LeftParen {
                    self.call(t)
                } else {
                    self.selector(Some(t))
                }
            }
            k if is_metric_keyword(k) => {
                self.bump()?;
                self.selector(Some(t))
            }
            _ => Err(self.unexpected_in_expr(t)),
        }
    }

    fn number_literal(&mut self, t: Token) -> NumberLiteral {
        let span = Span::new(t.start, t.end);
        let text = self.text(t);
        if t.kind == Kind::Duration {
            let value = match duration::parse_duration_ns(text) {
                Ok(ns) => ns as f64 / 1e9,
                Err(e) => {
                    self.record(span, e);
                    0.0
                }
            };
            return NumberLiteral {
                value,
                duration: true,
                span,
            };
        }
        let value = match number::parse_number(text) {
            Ok(v) => v,
            Err(e) => {
                self.record(span, e);
                0.0
            }
        };
        NumberLiteral {
            value,
            duration: false,
            span,
        }
    }

    // ---- selectors ----

    /// A vector selector: an optional name (already read), then optional braces.
    fn selector(&mut self, name: Option<Token>) -> R<Expr> {
        let mut matchers = Vec::new();
        let start = name.map_or(self.peek()?.start, |n| n.start);
        let mut end = name.map_or(start, |n| n.end);
        if let (Some(n), Some(selected)) = (name, &mut self.selected) {
            selected.push(LabelMatcher::equal("__name__", n.text(self.src)));
        }
        if self.peek()?.kind == Kind::LeftBrace {
            end = self.braces(&mut matchers)?;
        }
        let name = name.map(|n| self.text(n).to_string());
        if let Some(n) = &name {
            matchers.push(Matcher {
                name: "__name__".into(),
                op: MatchOp::Equal,
                value: n.clone(),
            });
        }
        Ok(Expr::Vector(VectorSelector {
            name,
            matchers,
            offset: Offset::None,
            at: None,
            anchored: false,
            smoothed: false,
            bypass_empty_matcher_check: false,
            span: Span::new(start, end),
        }))
    }

    /// `{matchers}`; returns the end of the closing brace.
    fn braces(&mut self, matchers: &mut Vec<Matcher>) -> R<usize> {
        const CTX: &str = "label matching";
        self.bump()?;
        loop {
            let t = self.peek()?;
            match t.kind {
                Kind::RightBrace => {
                    self.bump()?;
                    return Ok(t.end);
                }
                Kind::Identifier | Kind::String => {
                    self.bump()?;
                    let op = self.peek()?;
                    let op_kind = match op.kind {
                        Kind::Eql => Some(MatchOp::Equal),
                        Kind::Neq => Some(MatchOp::NotEqual),
                        Kind::EqlRegex => Some(MatchOp::Regex),
                        Kind::NeqRegex => Some(MatchOp::NotRegex),
                        _ => None,
                    };
                    match op_kind {
                        Some(m) => {
                            self.bump()?;
                            let v = self.peek()?;
                            if v.kind != Kind::String {
                                return Err(self.unexpected(v, CTX, "string"));
                            }
                            self.bump()?;
                            let name = if t.kind == Kind::String {
                                unquote(self.text(t)).unwrap_or_default()
                            } else {
                                self.text(t).to_string()
                            };
                            let value = unquote(self.text(v)).unwrap_or_default();
                            let matcher = Matcher { name, op: m, value };
                            self.read_matcher(&matcher, Span::new(t.start, v.end));
                            matchers.push(matcher);
                        }
                        None if t.kind == Kind::Identifier => {
                            return Err(self.unexpected(op, CTX, "label matching operator"));
                        }
                        None => {
                            let matcher = Matcher {
                                name: "__name__".into(),
                                op: MatchOp::Equal,
                                value: unquote(self.text(t)).unwrap_or_default(),
                            };
                            self.read_matcher(&matcher, Span::new(t.start, t.end));
                            matchers.push(matcher);
                        }
                    }
                }
                _ => return Err(self.unexpected(t, CTX, "identifier or \"}\"")),
            }
            let t = self.peek()?;
            match t.kind {
                Kind::Comma => {
                    self.bump()?;
                }
                Kind::RightBrace => {}
                _ => return Err(self.unexpected(t, CTX, "\",\" or \"}\"")),
            }
        }
    }

    /// Checks a matcher just read at `span`: in a metric selector, builds it as the engine
    /// selects with it; otherwise checks its regex with [`Options::regex_check`]. A regex
    /// that does not compile is an error at the matcher, as Prometheus reports it.
    fn read_matcher(&mut self, m: &Matcher, span: Span) {
        let typ = match m.op {
            MatchOp::Equal => MatchType::Equal,
            MatchOp::NotEqual => MatchType::NotEqual,
            MatchOp::Regex => MatchType::Regexp,
            MatchOp::NotRegex => MatchType::NotRegexp,
        };
        let refusal = match &mut self.selected {
            Some(selected) => match match &self.budget {
                Some(b) => LabelMatcher::new_in(b, typ, m.name.as_str(), m.value.as_str()),
                None => LabelMatcher::new(typ, m.name.as_str(), m.value.as_str()),
            } {
                Ok(built) => {
                    selected.push(built);
                    None
                }
                Err(e) => Some(super::series_selector::regex_error(&e.reason)),
            },
            None if matches!(typ, MatchType::Regexp | MatchType::NotRegexp) => {
                self.opts.regex_check.and_then(|check| check(&m.value))
            }
            None => None,
        };
        if let Some(msg) = refusal {
            self.record(span, msg);
        }
    }

    // ---- calls and aggregations ----

    fn call(&mut self, name: Token) -> R<Expr> {
        let (args, end) = self.call_args()?;
        let raw = self.text(name);
        let lowered;
        let text = if name.kind == Kind::Identifier {
            raw
        } else {
            lowered = raw.to_ascii_lowercase();
            lowered.as_str()
        };
        let span = Span::new(name.start, name.end);
        let func = match functions::lookup(text) {
            None => {
                self.record(span, format!("unknown function with name {}", quoted(text)));
                &UNKNOWN
            }
            Some(f) => {
                if f.experimental && !self.opts.experimental_functions {
                    self.record(span, format!("function {} is not enabled", quoted(text)));
                }
                f
            }
        };
        Ok(Expr::Call(Call {
            func,
            args,
            span: Span::new(name.start, end),
        }))
    }

    /// `(a, b, ...)`: the arguments and the end of the closing parenthesis.
    fn call_args(&mut self) -> R<(Vec<Expr>, usize)> {
        self.bump()?;
        let t = self.peek()?;
        if t.kind == Kind::RightParen {
            self.bump()?;
            return Ok((Vec::new(), t.end));
        }
        let mut args = vec![self.expr(0)?];
        loop {
            let t = self.peek()?;
            match t.kind {
                Kind::RightParen => {
                    self.bump()?;
                    return Ok((args, t.end));
                }
                Kind::Comma => {
                    self.bump()?;
                    let n = self.peek()?;
                    if !starts_expr(n.kind) {
                        self.record(
                            Span::new(t.start, t.end),
                            "trailing commas not allowed in function call args".into(),
                        );
                        if n.kind == Kind::RightParen {
                            self.bump()?;
                            return Ok((args, n.end));
                        }
                        return Err(self.unexpected_in_expr(n));
                    }
                    args.push(self.expr(0)?);
                }
                _ => return Err(self.unexpected_in_expr(t)),
            }
        }
    }

    fn aggregate(&mut self, op_tok: Token) -> R<Expr> {
        self.aggregations += 1;
        let r = self.aggregate_body(op_tok);
        self.aggregations -= 1;
        r
    }

    fn aggregate_body(&mut self, op_tok: Token) -> R<Expr> {
        let op = aggregate_op(op_tok.kind);
        let mut grouping = Vec::new();
        let mut without = false;
        let t = self.peek()?;
        let modifier_first = matches!(t.kind, Kind::By | Kind::Without);
        if modifier_first {
            self.bump()?;
            without = t.kind == Kind::Without;
            grouping = self.grouping_labels()?.0;
        }
        let t = self.peek()?;
        if t.kind != Kind::LeftParen {
            return Err(self.unexpected(t, "aggregation", ""));
        }
        let (mut args, mut end) = self.call_args()?;
        if !modifier_first {
            let t = self.peek()?;
            if matches!(t.kind, Kind::By | Kind::Without) {
                self.bump()?;
                without = t.kind == Kind::Without;
                (grouping, end) = self.grouping_labels()?;
            }
        }
        let span = Span::new(op_tok.start, end);
        let placeholder = || {
            Expr::Number(NumberLiteral {
                value: 0.0,
                duration: false,
                span,
            })
        };
        let mut param = None;
        if args.is_empty() {
            self.record(
                span,
                "no arguments for aggregate expression provided".into(),
            );
            args.push(placeholder());
        } else {
            let mut want = 1;
            if op.takes_param() {
                if op.is_experimental() && !self.opts.experimental_functions {
                    self.record(
                        span,
                        format!(
                            "{}() is experimental and must be enabled with --enable-feature=promql-experimental-functions",
                            op.as_str()
                        ),
                    );
                }
                want = 2;
            }
            if args.len() != want {
                self.record(
                    span,
                    format!(
                        "wrong number of arguments for aggregate expression provided, expected {want}, got {}",
                        args.len()
                    ),
                );
                args.truncate(1);
            } else if want == 2 {
                param = Some(Box::new(args.remove(0)));
            }
        }
        Ok(Expr::Aggregate(AggregateExpr {
            op,
            expr: Box::new(args.pop().unwrap_or_else(placeholder)),
            param,
            grouping,
            without,
            span,
        }))
    }

    /// `(label, ...)` after `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`:
    /// the labels and the end of the closing parenthesis.
    fn grouping_labels(&mut self) -> R<(Vec<String>, usize)> {
        const CTX: &str = "grouping opts";
        let t = self.peek()?;
        if t.kind != Kind::LeftParen {
            return Err(self.unexpected(t, CTX, "\"(\""));
        }
        self.bump()?;
        let mut labels = Vec::new();
        let t = self.peek()?;
        if t.kind == Kind::RightParen {
            self.bump()?;
            return Ok((labels, t.end));
        }
        loop {
            let t = self.peek()?;
            let label = match t.kind {
                Kind::String => {
                    let name = unquote(self.text(t)).unwrap_or_default();
                    if name.is_empty() || name.chars().any(|c| as_raw_byte(c).is_some()) {
                        self.record(
                            Span::new(t.start, t.end),
                            format!("invalid label name for grouping: {}", quoted(&name)),
                        );
                    }
                    name
                }
                k if is_label_keyword(k) => self.text(t).to_string(),
                _ => return Err(self.unexpected(t, CTX, "label")),
            };
            self.bump()?;
            labels.push(label);
            let t = self.peek()?;
            match t.kind {
                Kind::Comma => {
                    self.bump()?;
                    let n = self.peek()?;
                    if n.kind == Kind::RightParen {
                        self.bump()?;
                        return Ok((labels, n.end));
                    }
                }
                Kind::RightParen => {
                    self.bump()?;
                    return Ok((labels, t.end));
                }
                _ => return Err(self.unexpected(t, CTX, "\",\" or \")\"")),
            }
        }
    }

    // ---- binary operators ----

    fn binary_modifiers(&mut self) -> R<(bool, VectorMatching)> {
        let mut m = VectorMatching::default();
        let mut return_bool = false;
        if self.peek()?.kind == Kind::Bool {
            self.bump()?;
            return_bool = true;
        }
        let t = self.peek()?;
        if matches!(t.kind, Kind::On | Kind::Ignoring) {
            self.bump()?;
            m.on = t.kind == Kind::On;
            m.labels = self.grouping_labels()?.0;
            let g = self.peek()?;
            if matches!(g.kind, Kind::GroupLeft | Kind::GroupRight) {
                self.bump()?;
                m.card = if g.kind == Kind::GroupLeft {
                    Cardinality::ManyToOne
                } else {
                    Cardinality::OneToMany
                };
                let n = self.peek()?;
                if n.kind == Kind::LeftParen {
                    m.include = self.grouping_labels()?.0;
                } else if !starts_expr(n.kind)
                    && !matches!(n.kind, Kind::Fill | Kind::FillLeft | Kind::FillRight)
                {
                    return Err(self.unexpected(n, "grouping opts", "\"(\""));
                }
            }
        }
        loop {
            let t = self.peek()?;
            let (lhs, rhs) = match t.kind {
                Kind::Fill => (true, true),
                Kind::FillLeft => (true, false),
                Kind::FillRight => (false, true),
                _ => return Ok((return_bool, m)),
            };
            self.bump()?;
            let v = self.fill_value()?;
            if lhs {
                m.fill.lhs = Some(v);
            }
            if rhs {
                m.fill.rhs = Some(v);
            }
        }
    }

    /// `(number)` of a fill modifier.
    fn fill_value(&mut self) -> R<f64> {
        const CTX: &str = "fill modifier";
        let open = self.bump()?;
        debug_assert_eq!(open.kind, Kind::LeftParen);
        let mut sign = 1.0;
        let mut t = self.peek()?;
        while matches!(t.kind, Kind::Add | Kind::Sub) {
            if t.kind == Kind::Sub {
                sign = -sign;
            }
            self.bump()?;
            t = self.peek()?;
        }
        if !matches!(t.kind, Kind::Number | Kind::Duration) {
            return Err(self.unexpected(t, CTX, "number"));
        }
        self.bump()?;
        let v = self.number_literal(t).value * sign;
        let close = self.peek()?;
        if close.kind != Kind::RightParen {
            return Err(self.unexpected(close, CTX, "\")\""));
        }
        self.bump()?;
        Ok(v)
    }

    // ---- ranges, subqueries and modifiers ----

    fn range_or_subquery(&mut self, lhs: Expr) -> R<Expr> {
        let open = self.bump()?;
        let range = self.bracket_duration(DurCtx::Range)?;
        let t = self.peek()?;
        match t.kind {
            Kind::RightBracket => {
                self.bump()?;
                let why = match &lhs {
                    Expr::Vector(vs) if vs.offset.set() => {
                        Some("no offset modifiers allowed before range")
                    }
                    Expr::Vector(vs) if vs.at.is_some() => {
                        Some("no @ modifiers allowed before range")
                    }
                    Expr::Vector(_) => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(why) = why {
                    self.record(Span::new(open.start, t.end), why.into());
                }
                let start = lhs.span().start;
                let selector = match lhs {
                    Expr::Vector(vs) => vs,
                    other => VectorSelector {
                        name: None,
                        matchers: Vec::new(),
                        offset: Offset::None,
                        at: None,
                        anchored: false,
                        smoothed: false,
                        bypass_empty_matcher_check: false,
                        span: other.span(),
                    },
                };
                Ok(Expr::Matrix(MatrixSelector {
                    selector,
                    range,
                    span: Span::new(start, t.end),
                }))
            }
            Kind::Colon => {
                self.bump()?;
                let step = if self.peek()?.kind == Kind::RightBracket {
                    None
                } else {
                    Some(self.bracket_duration(DurCtx::Step)?)
                };
                let close = self.peek()?;
                if close.kind != Kind::RightBracket {
                    return Err(self.unexpected(close, "subquery selector", "\"]\""));
                }
                self.bump()?;
                let start = lhs.span().start;
                Ok(Expr::Subquery(SubqueryExpr {
                    expr: Box::new(lhs),
                    range,
                    step,
                    offset: Offset::None,
                    at: None,
                    span: Span::new(start, close.end),
                }))
            }
            _ => Err(self.unexpected(t, "subquery or range", "\":\" or \"]\"")),
        }
    }

    /// The range or step inside brackets: a duration expression whose literal, if it is one,
    /// must be positive.
    fn bracket_duration(&mut self, ctx: DurCtx) -> R<DurationExpr> {
        let d = self.duration_expr(0, ctx)?;
        match d.literal_seconds() {
            Some(s) if s <= 0.0 => {
                self.record(d.span(), "duration must be greater than 0".into());
            }
            Some(_) => {}
            None => self.experimental_duration(&d),
        }
        Ok(d)
    }

    fn experimental_duration(&mut self, d: &DurationExpr) {
        if !self.opts.duration_expr {
            self.record(
                d.span(),
                "experimental duration expression is not enabled".into(),
            );
        }
    }

    fn duration_expr(&mut self, min_prec: u8, ctx: DurCtx) -> R<DurationExpr> {
        let first = self.peek()?;
        self.enter(first)?;
        let r = self.duration_expr_from(min_prec, ctx);
        self.depth -= 1;
        r
    }

    fn duration_expr_from(&mut self, min_prec: u8, ctx: DurCtx) -> R<DurationExpr> {
        let lhs = self.duration_unary(ctx)?;
        self.duration_operators(lhs, min_prec, ctx)
    }

    /// The binary operators (and their right operands) that follow `lhs`.
    fn duration_operators(
        &mut self,
        mut lhs: DurationExpr,
        min_prec: u8,
        ctx: DurCtx,
    ) -> R<DurationExpr> {
        loop {
            let t = self.peek()?;
            let op = match t.kind {
                Kind::Add => BinaryOp::Add,
                Kind::Sub => BinaryOp::Sub,
                Kind::Mul => BinaryOp::Mul,
                Kind::Div => BinaryOp::Div,
                Kind::Mod => BinaryOp::Mod,
                Kind::Pow => BinaryOp::Pow,
                _ => return Ok(lhs),
            };
            let prec = op.precedence();
            if prec < min_prec {
                return Ok(lhs);
            }
            self.bump()?;
            let rhs = self.duration_expr(if op == BinaryOp::Pow { prec } else { prec + 1 }, ctx)?;
            if matches!(op, BinaryOp::Div | BinaryOp::Mod)
                && !rhs.needs_query_times()
                && rhs.seconds(0.0, 0.0) == Some(0.0)
            {
                let what = if op == BinaryOp::Div {
                    "division by zero"
                } else {
                    "modulo by zero"
                };
                self.record(Span::new(t.start, t.end), what.into());
            }
            lhs = DurationExpr::Binary {
                op,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
    }

    fn duration_unary(&mut self, ctx: DurCtx) -> R<DurationExpr> {
        let t = self.peek()?;
        let op = match t.kind {
            Kind::Add => BinaryOp::Add,
            Kind::Sub => BinaryOp::Sub,
            _ => return self.duration_primary(ctx),
        };
        self.bump()?;
        let operand = self.duration_expr(UNARY_OPERAND, ctx)?;
        Ok(self.signed_duration(t, op, operand))
    }

    /// `op operand`, a literal folded into one literal.
    fn signed_duration(&mut self, t: Token, op: BinaryOp, operand: DurationExpr) -> DurationExpr {
        match operand {
            DurationExpr::Number(mut n) => {
                if op == BinaryOp::Sub {
                    n.value = -n.value;
                }
                n.span.start = t.start;
                DurationExpr::Number(n)
            }
            e if op == BinaryOp::Add => e,
            e => {
                let span = Span::new(t.start, e.span().end);
                DurationExpr::Unary {
                    op,
                    expr: Box::new(e),
                    span,
                }
            }
        }
    }

    fn duration_primary(&mut self, ctx: DurCtx) -> R<DurationExpr> {
        let (context, expected) = ctx.words();
        let t = self.peek()?;
        match t.kind {
            Kind::Number | Kind::Duration => {
                self.bump()?;
                let n = self.number_literal(t);
                if t.kind == Kind::Number && duration_out_of_range(n.value) {
                    self.record(n.span, "duration out of range".into());
                }
                Ok(DurationExpr::Number(n))
            }
            Kind::LeftParen => {
                self.bump()?;
                let inner = self.duration_expr(0, ctx)?;
                let close = self.peek()?;
                if close.kind != Kind::RightParen {
                    return Err(self.unexpected(close, context, expected));
                }
                self.bump()?;
                Ok(match inner {
                    DurationExpr::Number(n) => DurationExpr::Number(n),
                    e => DurationExpr::Paren {
                        expr: Box::new(e),
                        span: Span::new(t.start, close.end),
                    },
                })
            }
            Kind::Step | Kind::Range => {
                self.bump()?;
                let end = self.empty_parens(context, expected)?;
                let span = Span::new(t.start, end);
                Ok(if t.kind == Kind::Step {
                    DurationExpr::Step(span)
                } else {
                    DurationExpr::Range(span)
                })
            }
            Kind::Identifier
                if matches!(
                    self.text(t).to_ascii_lowercase().as_str(),
                    "min_of" | "max_of"
                ) =>
            {
                self.bump()?;
                let max = self.text(t).eq_ignore_ascii_case("max_of");
                let open = self.peek()?;
                if open.kind != Kind::LeftParen {
                    return Err(self.unexpected(open, context, expected));
                }
                self.bump()?;
                let a = self.duration_expr(0, ctx)?;
                let comma = self.peek()?;
                if comma.kind != Kind::Comma {
                    return Err(self.unexpected(comma, context, expected));
                }
                self.bump()?;
                let b = self.duration_expr(0, ctx)?;
                let close = self.peek()?;
                if close.kind != Kind::RightParen {
                    return Err(self.unexpected(close, context, expected));
                }
                self.bump()?;
                Ok(DurationExpr::MinMax {
                    max,
                    args: Box::new((a, b)),
                    span: Span::new(t.start, close.end),
                })
            }
            _ => Err(self.unexpected(t, context, expected)),
        }
    }

    /// `()` after `step`, `range`, `start`, `end`: the end of the `)`.
    fn empty_parens(&mut self, context: &str, expected: &str) -> R<usize> {
        let open = self.peek()?;
        if open.kind != Kind::LeftParen {
            return Err(self.unexpected(open, context, expected));
        }
        self.bump()?;
        let close = self.peek()?;
        if close.kind != Kind::RightParen {
            return Err(self.unexpected(close, context, expected));
        }
        self.bump()?;
        Ok(close.end)
    }

    fn offset(&mut self, lhs: Expr) -> R<Expr> {
        self.bump()?;
        let ctx = DurCtx::Offset;
        let t = self.peek()?;
        let d = match t.kind {
            Kind::Add | Kind::Sub => {
                self.bump()?;
                let op = if t.kind == Kind::Sub {
                    BinaryOp::Sub
                } else {
                    BinaryOp::Add
                };
                let paren = self.peek()?.kind == Kind::LeftParen;
                let operand = self.offset_operand(ctx)?;
                let signed = self.signed_duration(t, op, operand);
                // Prometheus 3.5 goes on with the operators after a signed parenthesis too
                // (`offset -(1m) * 2 + 180` is an offset of one minute; the sign binds to
                // the parenthesis alone); one holding the duration functions, which came
                // later, ends at itself.
                if paren && !calls_duration_functions(&signed) {
                    self.duration_operators(signed, 0, ctx)?
                } else {
                    signed
                }
            }
            // A parenthesized duration goes on with the operators after it
            // (`offset (1h) * 2` is an offset of two hours), any other ends at itself.
            Kind::LeftParen => {
                let first = self.offset_operand(ctx)?;
                self.duration_operators(first, 0, ctx)?
            }
            _ => self.offset_operand(ctx)?,
        };
        let offset = match d.literal_seconds() {
            Some(s) => {
                let ns = (s * 1e9).round() as i64;
                if ns == 0 {
                    Offset::None
                } else {
                    Offset::Literal(ns / 1_000_000)
                }
            }
            None => {
                self.experimental_duration(&d);
                Offset::Expr(d.clone())
            }
        };
        let end = d.span().end;
        Ok(self.set_offset(lhs, offset, end))
    }

    /// What may follow `offset` and its sign: a literal, a parenthesized duration
    /// expression, `step()`, `range()`, `min_of(...)`, `max_of(...)`.
    fn offset_operand(&mut self, ctx: DurCtx) -> R<DurationExpr> {
        let t = self.peek()?;
        let first = self.peek()?;
        self.enter(first)?;
        let r = match t.kind {
            Kind::Add | Kind::Sub => {
                let (context, expected) = ctx.words();
                Err(self.unexpected(t, context, expected))
            }
            _ => self.duration_primary(ctx),
        };
        self.depth -= 1;
        r
    }

    fn set_offset(&mut self, lhs: Expr, offset: Offset, end: usize) -> Expr {
        let already = |o: &Offset| o.set();
        let span = lhs.span();
        match lhs {
            Expr::Vector(mut vs) => {
                if already(&vs.offset) {
                    self.record(span, "offset may not be set multiple times".into());
                } else {
                    vs.offset = offset;
                }
                vs.span.end = end;
                Expr::Vector(vs)
            }
            Expr::Matrix(mut ms) => {
                if already(&ms.selector.offset) {
                    self.record(span, "offset may not be set multiple times".into());
                } else {
                    ms.selector.offset = offset;
                }
                ms.span.end = end;
                Expr::Matrix(ms)
            }
            Expr::Subquery(mut sq) => {
                if already(&sq.offset) {
                    self.record(span, "offset may not be set multiple times".into());
                } else {
                    sq.offset = offset;
                }
                sq.span.end = end;
                Expr::Subquery(sq)
            }
            other => {
                self.record(
                    span,
                    "offset modifier must be preceded by an instant vector selector or range vector selector or a subquery".into(),
                );
                other
            }
        }
    }

    fn at(&mut self, lhs: Expr) -> R<Expr> {
        const CTX: &str = "@";
        const WANT: &str = "timestamp";
        self.bump()?;
        let t = self.peek()?;
        let (at, end) = match t.kind {
            Kind::Start | Kind::End => {
                self.bump()?;
                let end = self.empty_parens(CTX, WANT)?;
                let at = if t.kind == Kind::Start {
                    At::Start
                } else {
                    At::End
                };
                (Some(at), end)
            }
            _ => {
                let mut sign = 1.0;
                let mut n = t;
                if matches!(t.kind, Kind::Add | Kind::Sub) {
                    self.bump()?;
                    if t.kind == Kind::Sub {
                        sign = -1.0;
                    }
                    n = self.peek()?;
                }
                if !matches!(n.kind, Kind::Number | Kind::Duration) {
                    return Err(self.unexpected(n, CTX, WANT));
                }
                self.bump()?;
                let ts = self.number_literal(n).value * sign;
                if !ts.is_finite() || ts >= i64::MAX as f64 || ts <= i64::MIN as f64 {
                    self.record(
                        lhs.span(),
                        format!("timestamp out of bounds for @ modifier: {}", go_float_f(ts)),
                    );
                }
                let ms = (ts * 1000.0).round();
                (ts.is_finite().then_some(At::Timestamp(ms as i64)), n.end)
            }
        };
        let span = lhs.span();
        let target = match lhs {
            Expr::Vector(mut vs) => {
                if vs.at.is_some() {
                    self.record(span, "@ <timestamp> may not be set multiple times".into());
                } else {
                    vs.at = at;
                    vs.span.end = end;
                }
                Expr::Vector(vs)
            }
            Expr::Matrix(mut ms) => {
                if ms.selector.at.is_some() {
                    self.record(span, "@ <timestamp> may not be set multiple times".into());
                } else {
                    ms.selector.at = at;
                    ms.span.end = end;
                }
                Expr::Matrix(ms)
            }
            Expr::Subquery(mut sq) => {
                if sq.at.is_some() {
                    self.record(span, "@ <timestamp> may not be set multiple times".into());
                } else {
                    sq.at = at;
                    sq.span.end = end;
                }
                Expr::Subquery(sq)
            }
            other => {
                self.record(
                    span,
                    "@ modifier must be preceded by an instant vector selector or range vector selector or a subquery".into(),
                );
                other
            }
        };
        Ok(target)
    }

    /// `anchored` or `smoothed` after a selector.
    fn extended_range(&mut self, lhs: Expr) -> R<Expr> {
        let t = self.bump()?;
        let anchored = t.kind == Kind::Anchored;
        let word = if anchored { "anchored" } else { "smoothed" };
        let span = lhs.span();
        if !self.opts.extended_range_selectors {
            self.record(
                span,
                format!("{word} modifier is experimental and not enabled"),
            );
            return Ok(lhs);
        }
        let both = "anchored and smoothed modifiers cannot be used together";
        let set = |vs: &mut VectorSelector, p: &mut Self| {
            if anchored {
                vs.anchored = true;
            } else {
                vs.smoothed = true;
            }
            if vs.anchored && vs.smoothed {
                p.record(span, both.into());
            }
        };
        Ok(match lhs {
            Expr::Vector(mut vs) => {
                set(&mut vs, self);
                vs.span.end = t.end;
                Expr::Vector(vs)
            }
            Expr::Matrix(mut ms) => {
                set(&mut ms.selector, self);
                ms.span.end = t.end;
                Expr::Matrix(ms)
            }
            Expr::Subquery(_) => {
                self.record(
                    span,
                    format!("{word} modifier is not supported for subqueries"),
                );
                lhs
            }
            other => {
                self.record(span, format!("{word} modifier not implemented"));
                other
            }
        })
    }
}

/// Whether Prometheus counts `v` seconds as beyond a duration's range (about 292 years).
fn duration_out_of_range(v: f64) -> bool {
    !(-9_223_372_036.854_776..=9_223_372_036.854_776).contains(&v)
}

/// `v` as Go's `%f` writes it.
fn go_float_f(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v:.6}")
    }
}

fn binary_op(k: Kind) -> Option<BinaryOp> {
    Some(match k {
        Kind::Add => BinaryOp::Add,
        Kind::Sub => BinaryOp::Sub,
        Kind::Mul => BinaryOp::Mul,
        Kind::Div => BinaryOp::Div,
        Kind::Mod => BinaryOp::Mod,
        Kind::Pow => BinaryOp::Pow,
        Kind::Atan2 => BinaryOp::Atan2,
        Kind::TrimUpper => BinaryOp::TrimUpper,
        Kind::TrimLower => BinaryOp::TrimLower,
        Kind::Eqlc => BinaryOp::Eql,
        Kind::Neq => BinaryOp::Neq,
        Kind::Gtr => BinaryOp::Gtr,
        Kind::Lss => BinaryOp::Lss,
        Kind::Gte => BinaryOp::Gte,
        Kind::Lte => BinaryOp::Lte,
        Kind::Land => BinaryOp::And,
        Kind::Lor => BinaryOp::Or,
        Kind::Lunless => BinaryOp::Unless,
        _ => return None,
    })
}

fn aggregate_op(k: Kind) -> AggregateOp {
    match k {
        Kind::Sum => AggregateOp::Sum,
        Kind::Avg => AggregateOp::Avg,
        Kind::Count => AggregateOp::Count,
        Kind::Min => AggregateOp::Min,
        Kind::Max => AggregateOp::Max,
        Kind::Group => AggregateOp::Group,
        Kind::Stddev => AggregateOp::Stddev,
        Kind::Stdvar => AggregateOp::Stdvar,
        Kind::Topk => AggregateOp::Topk,
        Kind::Bottomk => AggregateOp::Bottomk,
        Kind::CountValues => AggregateOp::CountValues,
        Kind::Quantile => AggregateOp::Quantile,
        Kind::Limitk => AggregateOp::Limitk,
        _ => AggregateOp::LimitRatio,
    }
}

/// Keywords that also name metrics when written alone (`by`, `offset`, `and`, ...).
fn is_metric_keyword(k: Kind) -> bool {
    matches!(
        k,
        Kind::MetricIdentifier
            | Kind::By
            | Kind::Without
            | Kind::Offset
            | Kind::Land
            | Kind::Lor
            | Kind::Lunless
            | Kind::Start
            | Kind::End
            | Kind::Step
            | Kind::Range
            | Kind::Anchored
            | Kind::Smoothed
    )
}

/// Tokens that can be a label in grouping labels (any word, keywords included).
fn is_label_keyword(k: Kind) -> bool {
    k == Kind::Identifier
        || k == Kind::MetricIdentifier
        || k.is_aggregator()
        || k.is_keyword()
        || matches!(
            k,
            Kind::Land
                | Kind::Lor
                | Kind::Lunless
                | Kind::Atan2
                | Kind::Start
                | Kind::End
                | Kind::Step
                | Kind::Range
        )
}

/// Whether a token can start an expression.
fn starts_expr(k: Kind) -> bool {
    matches!(
        k,
        Kind::Number
            | Kind::Duration
            | Kind::String
            | Kind::LeftParen
            | Kind::LeftBrace
            | Kind::Identifier
            | Kind::Add
            | Kind::Sub
    ) || k.is_aggregator()
        || is_metric_keyword(k)
}

/// Whether `s` is a label name in the legacy character set (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub(crate) fn is_legacy_label(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Whether `d` calls `step()`, `range()`, `min_of()` or `max_of()`.
fn calls_duration_functions(d: &DurationExpr) -> bool {
    match d {
        DurationExpr::Number(_) => false,
        DurationExpr::Step(_) | DurationExpr::Range(_) | DurationExpr::MinMax { .. } => true,
        DurationExpr::Unary { expr, .. } | DurationExpr::Paren { expr, .. } => {
            calls_duration_functions(expr)
        }
        DurationExpr::Binary { lhs, rhs, .. } => {
            calls_duration_functions(lhs) || calls_duration_functions(rhs)
        }
    }
}
