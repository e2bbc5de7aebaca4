//! PromQL text to an expression tree: [`lex`] cuts the text into tokens, [`parse`](mod@parse)
//! builds the tree by recursive descent (operators by precedence climbing), [`check`] types
//! it, [`printer`] writes a tree back as Prometheus's `String()` does (one line), and
//! [`pretty`] as its `/api/v1/format_query` does (over several lines when long).
//! [`parse_selector`] reads a series selector (`match[]`, tools' `--match`) with the same
//! lexer and parser, into the engine's matchers.
//!
//! Errors are Prometheus's, worded and placed as its HTTP API reports them
//! (`1:5: parse error: unclosed left parenthesis`): the first error found wins, lexical and
//! syntax errors stop the parse, errors about a construct's meaning (an unknown function, an
//! offset set twice) are recorded and parsing goes on, and types are checked only when the
//! text parsed without error.

pub mod ast;
mod check;
mod duration;
pub mod functions;
pub mod lex;
mod number;
mod parse;
pub mod pretty;
#[cfg(test)]
mod pretty_tests;
pub mod printer;
mod series_selector;
mod unquote;

pub use ast::*;
pub use duration::{format_duration_ms, parse_duration_ns};
pub(crate) use series_selector::parse_series_labels;
pub use series_selector::{SelectorError, parse_selector, parse_selector_in, regex_refusal};

/// Which of Prometheus's feature-gated syntax the parser accepts, and how deeply a query may
/// nest.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `--enable-feature=promql-experimental-functions`: experimental functions and the
    /// `limitk`/`limit_ratio` aggregations.
    pub experimental_functions: bool,
    /// `--enable-feature=promql-duration-expr`: arithmetic, `step()`, `range()`,
    /// `min_of`/`max_of` in ranges, subquery steps and offsets.
    pub duration_expr: bool,
    /// `--enable-feature=promql-extended-range-selectors`: `anchored` and `smoothed`.
    pub extended_range_selectors: bool,
    /// `--enable-feature=promql-binop-fill-modifiers`: `fill()`, `fill_left()`,
    /// `fill_right()` on binary operations.
    pub binop_fill_modifiers: bool,
    /// The deepest nesting of expressions accepted; a query nesting deeper is refused with a
    /// parse error rather than risking the stack.
    pub max_depth: usize,
    /// Checks a regex matcher's pattern as the engine will compile it; `Some(message)` refuses
    /// the matcher with that message, as Prometheus refuses a regex that does not compile.
    pub regex_check: Option<fn(&str) -> Option<String>>,
}

/// Default of [`Options::max_depth`]: deeper than any query a person or a dashboard writes.
pub const DEFAULT_MAX_DEPTH: usize = 1000;

impl Default for Options {
    /// Prometheus's defaults: every gated feature off.
    fn default() -> Self {
        Options {
            experimental_functions: false,
            duration_expr: false,
            extended_range_selectors: false,
            binop_fill_modifiers: false,
            max_depth: DEFAULT_MAX_DEPTH,
            regex_check: None,
        }
    }
}

impl Options {
    /// Every gated feature on, as Prometheus's own test scripts run.
    pub fn all_features() -> Self {
        Options {
            experimental_functions: true,
            duration_expr: true,
            extended_range_selectors: true,
            binop_fill_modifiers: true,
            ..Options::default()
        }
    }
}

/// Why a query does not parse: Prometheus's message and the part of the query it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The message, without position (`unclosed left parenthesis`).
    pub msg: String,
    /// The text the error is about, byte offsets.
    pub span: Span,
    /// `line:column` of the span's start as Prometheus writes it (column in bytes, 1-based),
    /// or `unknown position` for an empty query.
    pub position: String,
}

impl ParseError {
    pub(crate) fn new(query: &str, span: Span, msg: String) -> Self {
        ParseError {
            msg,
            span,
            position: position(query, span.start),
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: parse error: {}", self.position, self.msg)
    }
}

impl std::error::Error for ParseError {}

/// `line:column` of byte offset `pos` in `query`, as Prometheus counts them.
fn position(query: &str, pos: usize) -> String {
    if query.is_empty() {
        return "unknown position".into();
    }
    if pos > query.len() {
        return "invalid position".into();
    }
    let before = &query.as_bytes()[..pos];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let last_break = before.iter().rposition(|&b| b == b'\n');
    let col = match last_break {
        Some(i) => pos - i,
        None => pos + 1,
    };
    format!("{line}:{col}")
}

/// Parses and type-checks `query`.
pub fn parse(query: &str, opts: &Options) -> Result<Expr, ParseError> {
    let mut expr = parse::Parser::new(query, opts).parse()?;
    check::check(query, &expr)?;
    check::drop_scalar_matching(&mut expr);
    Ok(expr)
}

/// Pushes every vector selector of `e` (those of range selectors included) to `out`, in the
/// order they are written: what Prometheus's `ExtractSelectors` walks, for the APIs that read
/// only the series a query names (`/api/v1/query_exemplars`).
pub fn collect_selectors<'a>(e: &'a Expr, out: &mut Vec<&'a VectorSelector>) {
    match e {
        Expr::Vector(vs) => out.push(vs),
        Expr::Matrix(ms) => out.push(&ms.selector),
        Expr::Aggregate(a) => {
            collect_selectors(&a.expr, out);
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
        }
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::Call(c) => c.args.iter().for_each(|a| collect_selectors(a, out)),
        _ => {}
    }
}
