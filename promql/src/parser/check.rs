//! Type checks of a parsed tree, in the order Prometheus makes them (a node's operands before
//! the node, except where it checks the node first), so the first error is Prometheus's.

use super::ast::*;
use super::{ParseError, lex::is_space};
use gauntlet_engine::go_format::quoted;

struct Checker<'a> {
    query: &'a str,
    error: Option<ParseError>,
}

/// Checks the types of `expr`, parsed from `query`.
pub(super) fn check(query: &str, expr: &Expr) -> Result<(), ParseError> {
    let mut c = Checker { query, error: None };
    c.check(expr);
    match c.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Drops the matching modifiers (`on`, `ignoring`, `group_left`, `group_right`) of binary
/// operations with a scalar side once the types are known, as Prometheus does: they mean
/// nothing there, and `1 + on () x` prints as `1 + x`. Returns the type of `e`.
pub(super) fn drop_scalar_matching(e: &mut Expr) -> ValueType {
    match e {
        Expr::Binary(b) => {
            let lt = drop_scalar_matching(&mut b.lhs);
            let rt = drop_scalar_matching(&mut b.rhs);
            if lt != ValueType::Vector || rt != ValueType::Vector {
                b.matching = None;
            }
            if lt == ValueType::Scalar && rt == ValueType::Scalar {
                ValueType::Scalar
            } else {
                ValueType::Vector
            }
        }
        Expr::Paren(p) => drop_scalar_matching(&mut p.expr),
        Expr::Unary(u) => drop_scalar_matching(&mut u.expr),
        Expr::Subquery(s) => {
            drop_scalar_matching(&mut s.expr);
            ValueType::Matrix
        }
        Expr::Call(c) => {
            for a in &mut c.args {
                drop_scalar_matching(a);
            }
            c.func.return_type
        }
        Expr::Aggregate(a) => {
            drop_scalar_matching(&mut a.expr);
            if let Some(p) = &mut a.param {
                drop_scalar_matching(p);
            }
            ValueType::Vector
        }
        Expr::Number(_) | Expr::String(_) | Expr::Vector(_) | Expr::Matrix(_) => e.value_type(),
    }
}

impl Checker<'_> {
    fn record(&mut self, span: Span, msg: String) {
        if self.error.is_none() {
            self.error = Some(ParseError::new(self.query, span, msg));
        }
    }

    fn expect(&mut self, e: &Expr, want: ValueType, context: &str) {
        let got = self.check(e);
        if got != want {
            self.record(
                e.span(),
                format!(
                    "expected type {} in {context}, got {}",
                    want.documented(),
                    got.documented()
                ),
            );
        }
    }

    /// The operator's span in a binary expression: between the operands, spaces trimmed.
    fn operator_span(&self, b: &BinaryExpr) -> Span {
        let bytes = self.query.as_bytes();
        let mut start = b.lhs.span().end;
        while start < bytes.len() && is_space(bytes[start] as char) {
            start += 1;
        }
        let mut end = b.rhs.span().start.saturating_sub(1);
        while end > start && is_space(bytes[end] as char) {
            end -= 1;
        }
        Span::new(start, end)
    }

    fn check(&mut self, e: &Expr) -> ValueType {
        let typ = e.value_type();
        match e {
            Expr::Aggregate(a) => {
                self.expect(&a.expr, ValueType::Vector, "aggregation expression");
                if let Some(p) = &a.param {
                    let want = if a.op == AggregateOp::CountValues {
                        ValueType::String
                    } else {
                        ValueType::Scalar
                    };
                    self.expect(p, want, "aggregation parameter");
                }
            }
            Expr::Binary(b) => self.check_binary(b),
            Expr::Call(c) => self.check_call(c),
            Expr::Paren(p) => {
                self.check(&p.expr);
            }
            Expr::Unary(u) => {
                let t = self.check(&u.expr);
                if t != ValueType::Scalar && t != ValueType::Vector {
                    self.record(
                        u.span,
                        format!(
                            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                            quoted(t.documented())
                        ),
                    );
                }
            }
            Expr::Subquery(s) => {
                let t = self.check(&s.expr);
                if t != ValueType::Vector {
                    self.record(
                        s.span,
                        format!(
                            "subquery is only allowed on instant vector, got {} instead",
                            t.short()
                        ),
                    );
                }
            }
            Expr::Matrix(m) => self.check_selector(&m.selector),
            Expr::Vector(v) => self.check_selector(v),
            Expr::Number(_) | Expr::String(_) => {}
        }
        typ
    }

    fn check_selector(&mut self, v: &VectorSelector) {
        if let Some(name) = &v.name {
            let before_name = &v.matchers[..v.matchers.len().saturating_sub(1)];
            if let Some(m) = before_name.iter().find(|m| m.name == "__name__") {
                let msg = format!(
                    "metric name must not be set twice: {} or {}",
                    quoted(name),
                    quoted(&m.value)
                );
                self.record(v.span, msg);
            }
            return;
        }
        if !v.bypass_empty_matcher_check && v.matchers.iter().all(matches_empty) {
            self.record(
                v.span,
                "vector selector must contain at least one non-empty matcher".into(),
            );
        }
    }

    fn check_binary(&mut self, b: &BinaryExpr) {
        let lt = self.check(&b.lhs);
        let rt = self.check(&b.rhs);
        if b.return_bool && !b.op.is_comparison() {
            let s = self.operator_span(b);
            self.record(
                s,
                "bool modifier can only be used on comparison operators".into(),
            );
        }
        if b.op.is_comparison()
            && !b.return_bool
            && b.lhs.value_type() == ValueType::Scalar
            && b.rhs.value_type() == ValueType::Scalar
        {
            let s = self.operator_span(b);
            self.record(
                s,
                "comparisons between scalars must use BOOL modifier".into(),
            );
        }
        let span = Span::new(b.lhs.span().start, b.rhs.span().end);
        if let Some(m) = &b.matching
            && m.on
        {
            for l in &m.labels {
                if m.include.contains(l) {
                    let s = self.operator_span(b);
                    self.record(
                        s,
                        format!(
                            "label {} must not occur in ON and GROUP clause at once",
                            quoted(l)
                        ),
                    );
                }
            }
        }
        let operand_ok = |t: ValueType| t == ValueType::Scalar || t == ValueType::Vector;
        if !operand_ok(lt) {
            self.record(
                b.lhs.span(),
                "binary expression must contain only scalar and instant vector types".into(),
            );
        }
        if !operand_ok(rt) {
            self.record(
                b.rhs.span(),
                "binary expression must contain only scalar and instant vector types".into(),
            );
        }
        if let Some(m) = &b.matching {
            let filled = m.fill.lhs.is_some() || m.fill.rhs.is_some();
            if lt != ValueType::Vector || rt != ValueType::Vector {
                if !m.labels.is_empty() {
                    self.record(
                        span,
                        "vector matching only allowed between instant vectors".into(),
                    );
                }
                if filled {
                    self.record(
                        span,
                        "filling in missing series only allowed between instant vectors".into(),
                    );
                }
            } else if b.op.is_set() {
                if matches!(m.card, Cardinality::OneToMany | Cardinality::ManyToOne) {
                    self.record(
                        span,
                        format!(
                            "no grouping allowed for {} operation",
                            quoted(b.op.as_str())
                        ),
                    );
                }
                if filled {
                    self.record(
                        span,
                        "filling in missing series not allowed for set operators".into(),
                    );
                }
            }
        }
        if (lt == ValueType::Scalar || rt == ValueType::Scalar) && b.op.is_set() {
            self.record(
                span,
                format!(
                    "set operator {} not allowed in binary scalar expression",
                    quoted(b.op.as_str())
                ),
            );
        }
    }

    fn check_call(&mut self, c: &Call) {
        let f = c.func;
        let nargs = f.arg_types.len();
        let got = c.args.len();
        if f.variadic == 0 {
            if nargs != got {
                self.record(
                    c.span,
                    format!(
                        "expected {nargs} argument(s) in call to {}, got {got}",
                        quoted(f.name)
                    ),
                );
            }
        } else {
            let least = nargs - 1;
            if least > got {
                self.record(
                    c.span,
                    format!(
                        "expected at least {least} argument(s) in call to {}, got {got}",
                        quoted(f.name)
                    ),
                );
            } else if f.variadic > 0 && least + (f.variadic as usize) < got {
                self.record(
                    c.span,
                    format!(
                        "expected at most {} argument(s) in call to {}, got {got}",
                        least + f.variadic as usize,
                        quoted(f.name)
                    ),
                );
            }
        }
        if f.name == "info" && got > 1 {
            let t = c.args[1].value_type();
            if t != ValueType::Vector {
                self.record(
                    c.span,
                    format!(
                        "expected type {} in call to function \"info\", got {}",
                        ValueType::Vector.documented(),
                        t.documented()
                    ),
                );
            }
            match &c.args[1] {
                Expr::Vector(v) if v.name.is_some() => self.record(
                    v.span,
                    "expected label selectors only, got vector selector instead".into(),
                ),
                Expr::Vector(_) => {}
                other => self.record(other.span(), "expected label selectors only".into()),
            }
        }
        for (i, arg) in c.args.iter().enumerate() {
            let i = if i >= nargs {
                if f.variadic == 0 || nargs == 0 {
                    break;
                }
                nargs - 1
            } else {
                i
            };
            let t = if f.name == "info" && i == 1 {
                self.check_info_labels(arg)
            } else {
                self.check(arg)
            };
            if t != f.arg_types[i] {
                self.record(
                    arg.span(),
                    format!(
                        "expected type {} in call to function {}, got {}",
                        f.arg_types[i].documented(),
                        quoted(f.name),
                        t.documented()
                    ),
                );
            }
        }
    }

    /// The second argument of `info()`: a selector of labels only, which may match nothing.
    fn check_info_labels(&mut self, arg: &Expr) -> ValueType {
        match arg {
            Expr::Vector(v) if v.name.is_none() => ValueType::Vector,
            other => self.check(other),
        }
    }
}

/// Whether matcher `m` matches the empty string, and so selects series that lack the label.
/// Regex matchers are judged on the simple forms whose answer is clear from the text; any
/// other regex counts as matching the empty value only when it could (`.*`, `a|`).
fn matches_empty(m: &Matcher) -> bool {
    match m.op {
        MatchOp::Equal => m.value.is_empty(),
        MatchOp::NotEqual => !m.value.is_empty(),
        MatchOp::Regex => regex_may_match_empty(&m.value),
        MatchOp::NotRegex => !regex_may_match_empty(&m.value),
    }
}

/// Whether the anchored regex `re` matches the empty string, for the patterns whose answer
/// the text tells: alternatives, groups, `*`/`?`/`{0,...}` repetitions of anything, and
/// literals, classes and `+` repetitions, which need a character.
fn regex_may_match_empty(re: &str) -> bool {
    fn alternatives(s: &[char]) -> Vec<&[char]> {
        let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                '\\' => i += 1,
                '[' => {
                    i += 1;
                    while i < s.len() && s[i] != ']' {
                        if s[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                }
                '(' => depth += 1,
                ')' => depth -= 1,
                '|' if depth == 0 => {
                    out.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
            i += 1;
        }
        out.push(&s[start..]);
        out
    }
    fn seq_empty(s: &[char]) -> bool {
        let mut i = 0;
        while i < s.len() {
            let atom_start = i;
            let atom_empty = match s[i] {
                '(' => {
                    let mut depth = 0;
                    let mut j = i;
                    while j < s.len() {
                        match s[j] {
                            '\\' => j += 1,
                            '(' => depth += 1,
                            ')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    let mut inner = &s[i + 1..j.min(s.len())];
                    if inner.first() == Some(&'?') {
                        let colon = inner.iter().position(|&c| c == ':' || c == ')');
                        inner = &inner[colon.map_or(inner.len(), |p| p + 1)..];
                    }
                    i = j + 1;
                    any_empty(inner)
                }
                '[' => {
                    i += 1;
                    if s.get(i) == Some(&'^') {
                        i += 1;
                    }
                    if s.get(i) == Some(&']') {
                        i += 1;
                    }
                    while i < s.len() && s[i] != ']' {
                        if s[i] == '\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    i += 1;
                    false
                }
                '\\' => {
                    i += 2;
                    false
                }
                '^' | '$' => {
                    i += 1;
                    true
                }
                _ => {
                    i += 1;
                    false
                }
            };
            let _ = atom_start;
            let quantified_empty = match s.get(i) {
                Some('*' | '?') => {
                    i += 1;
                    true
                }
                Some('+') => {
                    i += 1;
                    false
                }
                Some('{') => {
                    let close = s[i..].iter().position(|&c| c == '}');
                    let body: String = s[i + 1..i + close.unwrap_or(0).max(1)].iter().collect();
                    i += close.map_or(1, |p| p + 1);
                    body.split(',').next().is_some_and(|m| m.trim() == "0")
                }
                _ => false,
            };
            if s.get(i) == Some(&'?') {
                i += 1;
            }
            if !(atom_empty || quantified_empty) {
                return false;
            }
        }
        true
    }
    fn any_empty(s: &[char]) -> bool {
        alternatives(s).into_iter().any(seq_empty)
    }
    let chars: Vec<char> = re.chars().collect();
    any_empty(&chars)
}

#[cfg(test)]
mod tests {
    use super::regex_may_match_empty as e;

    #[test]
    fn empty_matching_regexes_are_told_apart() {
        for re in ["", ".*", "a*", "a|", "(a|b)?", "x{0,3}", "(?i)", "^$"] {
            assert!(e(re), "{re}");
        }
        for re in ["a", ".+", "[a-z]", "a|b", "(a)+", "x{1,3}", "\\d"] {
            assert!(!e(re), "{re}");
        }
    }
}
