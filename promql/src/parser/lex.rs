//! The lexer: PromQL text to a stream of [`Token`]s with byte positions.
//!
//! It is a state machine over the same modes Prometheus's lexer has (statements, the inside of
//! a selector's braces, the inside of a range's brackets), because what a character means and
//! what error it raises depend on the mode: `:` is a subquery colon only inside brackets,
//! keywords are plain names inside braces. Tokens are produced on demand, so a lexical error
//! surfaces when the parser reaches it, after any error the parser found earlier.

use gauntlet_engine::go_format::{quoted, quoted_rune, unicode_format};

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// End of the input.
    Eof,
    /// A name without a colon (`rate`, `job`).
    Identifier,
    /// A name with a colon (`job:rate5m`).
    MetricIdentifier,
    /// A number literal (`1`, `0x1F`, `1e3`, `Inf`).
    Number,
    /// A duration literal (`5m`, `1h30m`).
    Duration,
    /// A quoted string, quotes included.
    String,
    /// `(`.
    LeftParen,
    /// `)`.
    RightParen,
    /// `{`.
    LeftBrace,
    /// `}`.
    RightBrace,
    /// `[`.
    LeftBracket,
    /// `]`.
    RightBracket,
    /// `,`.
    Comma,
    /// `=` (a label matcher).
    Eql,
    /// `:` (a subquery's step separator, inside brackets).
    Colon,
    // Operators.
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
    /// `==` (a comparison).
    Eqlc,
    /// `!=`.
    Neq,
    /// `<=`.
    Lte,
    /// `<`.
    Lss,
    /// `>=`.
    Gte,
    /// `>`.
    Gtr,
    /// `=~` (a regex label matcher).
    EqlRegex,
    /// `!~` (a negated regex label matcher).
    NeqRegex,
    /// `@` (an evaluation-time modifier).
    At,
    /// `atan2`, the binary arc tangent operator.
    Atan2,
    /// `</`: trims a histogram's upper end (Prometheus 3.14).
    TrimUpper,
    /// `>/`: trims a histogram's lower end (Prometheus 3.14).
    TrimLower,
    /// `and`.
    Land,
    /// `or`.
    Lor,
    /// `unless`.
    Lunless,
    // Aggregators.
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
    /// `limitk`.
    Limitk,
    /// `limit_ratio`.
    LimitRatio,
    // Keywords.
    /// `offset`.
    Offset,
    /// `smoothed` (a range selector modifier).
    Smoothed,
    /// `anchored` (a range selector modifier).
    Anchored,
    /// `by`.
    By,
    /// `without`.
    Without,
    /// `on`.
    On,
    /// `ignoring`.
    Ignoring,
    /// `group_left`.
    GroupLeft,
    /// `group_right`.
    GroupRight,
    /// `fill` (values for unmatched sides of a binary operation).
    Fill,
    /// `fill_left`.
    FillLeft,
    /// `fill_right`.
    FillRight,
    /// `bool` (comparisons return 0 or 1).
    Bool,
    // Preprocessors.
    /// `start` (as in `@ start()`).
    Start,
    /// `end` (as in `@ end()`).
    End,
    /// `step` (as in `step()`, a duration expression).
    Step,
    /// `range` (as in `range()`, a duration expression).
    Range,
}

impl Kind {
    /// The keyword, aggregator or word operator `word` (any case) names, if any.
    fn keyword(word: &str) -> Option<Kind> {
        let lower = word.to_ascii_lowercase();
        Some(match lower.as_str() {
            "and" => Kind::Land,
            "or" => Kind::Lor,
            "unless" => Kind::Lunless,
            "atan2" => Kind::Atan2,
            "sum" => Kind::Sum,
            "avg" => Kind::Avg,
            "count" => Kind::Count,
            "min" => Kind::Min,
            "max" => Kind::Max,
            "group" => Kind::Group,
            "stddev" => Kind::Stddev,
            "stdvar" => Kind::Stdvar,
            "topk" => Kind::Topk,
            "bottomk" => Kind::Bottomk,
            "count_values" => Kind::CountValues,
            "quantile" => Kind::Quantile,
            "limitk" => Kind::Limitk,
            "limit_ratio" => Kind::LimitRatio,
            "offset" => Kind::Offset,
            "smoothed" => Kind::Smoothed,
            "anchored" => Kind::Anchored,
            "by" => Kind::By,
            "without" => Kind::Without,
            "on" => Kind::On,
            "ignoring" => Kind::Ignoring,
            "group_left" => Kind::GroupLeft,
            "group_right" => Kind::GroupRight,
            "fill" => Kind::Fill,
            "fill_left" => Kind::FillLeft,
            "fill_right" => Kind::FillRight,
            "bool" => Kind::Bool,
            "start" => Kind::Start,
            "end" => Kind::End,
            "step" => Kind::Step,
            "range" => Kind::Range,
            "inf" | "nan" => Kind::Number,
            _ => return None,
        })
    }

    /// Whether this is a binary or set operator (including `@` and `=~`, as Prometheus counts
    /// them).
    pub fn is_operator(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Add | Sub
                | Mul
                | Div
                | Mod
                | Pow
                | Eqlc
                | Neq
                | Lte
                | Lss
                | Gte
                | Gtr
                | EqlRegex
                | NeqRegex
                | At
                | Atan2
                | TrimUpper
                | TrimLower
                | Land
                | Lor
                | Lunless
        )
    }

    /// Whether this is an aggregation operator.
    pub fn is_aggregator(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Sum | Avg
                | Count
                | Min
                | Max
                | Group
                | Stddev
                | Stdvar
                | Topk
                | Bottomk
                | CountValues
                | Quantile
                | Limitk
                | LimitRatio
        )
    }

    /// Whether this is a keyword (`by`, `offset`, `bool`...).
    pub fn is_keyword(self) -> bool {
        use Kind::*;
        matches!(
            self,
            Offset
                | Smoothed
                | Anchored
                | By
                | Without
                | On
                | Ignoring
                | GroupLeft
                | GroupRight
                | Fill
                | FillLeft
                | FillRight
                | Bool
        )
    }

    /// Whether the token has a fixed spelling (punctuation, operators, keywords), which error
    /// messages quote without naming the kind.
    fn has_fixed_text(self) -> bool {
        use Kind::*;
        !matches!(
            self,
            Eof | Identifier | MetricIdentifier | Number | Duration | String
        )
    }

    /// How error messages name tokens of this kind.
    fn noun(self) -> &'static str {
        match self {
            Kind::Eof => "end of input",
            Kind::Identifier => "identifier",
            Kind::MetricIdentifier => "metric identifier",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Duration => "duration",
            _ => "",
        }
    }
}

/// One token: its kind and where it is in the input (byte offsets, end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// What the token is.
    pub kind: Kind,
    /// Byte offset of its first byte.
    pub start: usize,
    /// Byte offset just past its last byte.
    pub end: usize,
}

impl Token {
    /// The token's text in `src`.
    pub fn text(self, src: &str) -> &str {
        &src[self.start..self.end]
    }

    /// The token as error messages describe it: `identifier "foo"`, `"("`, `<op:+>`,
    /// `<aggr:sum>`, `<by>`, `end of input`.
    pub fn describe(self, src: &str) -> String {
        let text = self.text(src);
        let shown = if self.kind == Kind::Identifier || self.kind == Kind::MetricIdentifier {
            quoted(text)
        } else if self.kind.is_keyword() {
            format!("<{text}>")
        } else if self.kind.is_operator() {
            format!("<op:{text}>")
        } else if self.kind.is_aggregator() {
            format!("<aggr:{text}>")
        } else if text.chars().count() > 10 {
            let head: String = text.chars().take(10).collect();
            format!("{}...", quoted(&head))
        } else {
            quoted(text)
        };
        match self.kind {
            Kind::Eof => "end of input".to_string(),
            k if k.has_fixed_text() => shown,
            k => format!("{} {shown}", k.noun()),
        }
    }
}

/// A lexical error: Prometheus's message and the byte offset it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    /// The message, worded as Prometheus words it.
    pub msg: String,
    /// Byte offset in the query the error points at.
    pub pos: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Statements,
    Braces,
    DurationExpr,
}

/// The lexer over one query.
#[derive(Debug)]
pub struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    start: usize,
    width: usize,
    mode: Mode,
    paren_depth: i64,
    brace_open: bool,
    bracket_open: bool,
    got_colon: bool,
    got_duration: bool,
    done: bool,
}

type Step = Result<Option<Token>, LexError>;

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            start: 0,
            width: 0,
            mode: Mode::Statements,
            paren_depth: 0,
            brace_open: false,
            bracket_open: false,
            got_colon: false,
            got_duration: false,
            done: false,
        }
    }

    /// The next token (comments skipped), [`Kind::Eof`] at the end, or the first lexical
    /// error.
    pub fn next_token(&mut self) -> Result<Token, LexError> {
        if self.done {
            return Ok(Token {
                kind: Kind::Eof,
                start: self.src.len(),
                end: self.src.len(),
            });
        }
        loop {
            let step = match self.mode {
                Mode::Statements if self.brace_open => self.inside_braces(),
                Mode::Statements => self.statements(),
                Mode::Braces => self.inside_braces(),
                Mode::DurationExpr => self.duration_expr(),
            };
            match step {
                Ok(Some(t)) => {
                    if t.kind == Kind::Eof {
                        self.done = true;
                    }
                    return Ok(t);
                }
                Ok(None) => continue,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    fn next(&mut self) -> Option<char> {
        match self.src[self.pos..].chars().next() {
            Some(c) => {
                self.width = c.len_utf8();
                self.pos += self.width;
                Some(c)
            }
            None => {
                self.width = 0;
                None
            }
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn backup(&mut self) {
        self.pos -= self.width;
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.next() {
            Some(c) if valid.contains(c) => true,
            _ => {
                self.backup();
                false
            }
        }
    }

    fn is(&self, valid: &str) -> bool {
        self.peek().is_some_and(|c| valid.contains(c))
    }

    fn emit(&mut self, kind: Kind) -> Step {
        let t = Token {
            kind,
            start: self.start,
            end: self.pos,
        };
        self.start = self.pos;
        Ok(Some(t))
    }

    fn error(&self, msg: String) -> Step {
        Err(LexError {
            msg,
            pos: self.start,
        })
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.next();
        }
        self.start = self.pos;
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\r' || c == '\n' {
                break;
            }
            self.next();
        }
        self.start = self.pos;
    }

    fn statements(&mut self) -> Step {
        if self.src[self.pos..].starts_with('#') {
            self.line_comment();
            return Ok(None);
        }
        let Some(r) = self.next() else {
            if self.paren_depth != 0 {
                return self.error("unclosed left parenthesis".into());
            }
            if self.bracket_open {
                return self.error("unclosed left bracket".into());
            }
            return self.emit(Kind::Eof);
        };
        match r {
            ',' => self.emit(Kind::Comma),
            c if is_space(c) => {
                self.skip_spaces();
                Ok(None)
            }
            '*' => self.emit(Kind::Mul),
            '/' => self.emit(Kind::Div),
            '%' => self.emit(Kind::Mod),
            '+' => self.emit(Kind::Add),
            '-' => self.emit(Kind::Sub),
            '^' => self.emit(Kind::Pow),
            '=' => match self.peek() {
                Some('=') => {
                    self.next();
                    self.emit(Kind::Eqlc)
                }
                Some('~') => self.error("unexpected character after '=': '~'".into()),
                _ => self.emit(Kind::Eql),
            },
            '!' => match self.next() {
                Some('=') => self.emit(Kind::Neq),
                t => self.error(format!(
                    "unexpected character after '!': {}",
                    quoted_rune(t.unwrap_or('\u{FFFD}'))
                )),
            },
            '<' | '>' if self.peek() == Some('/') => {
                self.next();
                self.emit(if r == '<' {
                    Kind::TrimUpper
                } else {
                    Kind::TrimLower
                })
            }
            '<' | '>' => {
                let eq = self.peek() == Some('=');
                if eq {
                    self.next();
                }
                self.emit(match (r, eq) {
                    ('<', true) => Kind::Lte,
                    ('<', false) => Kind::Lss,
                    (_, true) => Kind::Gte,
                    _ => Kind::Gtr,
                })
            }
            c if c.is_ascii_digit() || (c == '.' && self.peek().is_some_and(is_digit)) => {
                self.backup();
                self.number_or_duration()
            }
            '"' | '\'' => self.string(r),
            '`' => self.raw_string(),
            c if is_alpha(c) || c == ':' => {
                if !self.bracket_open {
                    self.backup();
                    return self.keyword_or_identifier();
                }
                match c {
                    ':' => {
                        if self.got_colon {
                            return self.error("unexpected colon ':'".into());
                        }
                        self.got_colon = true;
                        self.emit(Kind::Colon)
                    }
                    's' | 'S' | 'm' | 'M' | 'r' | 'R' => match self.duration_keyword() {
                        Some(k) => self.emit(k),
                        None => self.error(format!(
                            "unexpected character: {}, expected ':'",
                            quoted_rune(c)
                        )),
                    },
                    _ => self.error(format!(
                        "unexpected character: {}, expected ':'",
                        quoted_rune(c)
                    )),
                }
            }
            '(' => {
                self.paren_depth += 1;
                self.emit(Kind::LeftParen)
            }
            ')' => {
                let t = self.emit(Kind::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.error("unexpected right parenthesis ')'".into());
                }
                t
            }
            '{' => {
                self.brace_open = true;
                self.mode = Mode::Braces;
                self.emit(Kind::LeftBrace)
            }
            '[' => {
                if self.bracket_open {
                    return self.error("unexpected left bracket '['".into());
                }
                self.got_colon = false;
                let t = self.emit(Kind::LeftBracket);
                self.skip_spaces();
                self.bracket_open = true;
                self.mode = Mode::DurationExpr;
                t
            }
            ']' => {
                if !self.bracket_open {
                    return self.error("unexpected right bracket ']'".into());
                }
                self.bracket_open = false;
                self.emit(Kind::RightBracket)
            }
            '@' => self.emit(Kind::At),
            c => self.error(format!("unexpected character: {}", quoted_rune(c))),
        }
    }

    fn inside_braces(&mut self) -> Step {
        if self.src[self.pos..].starts_with('#') {
            self.line_comment();
            return Ok(None);
        }
        let Some(r) = self.next() else {
            return self.error("unexpected end of input inside braces".into());
        };
        match r {
            c if is_space(c) => {
                self.skip_spaces();
                Ok(None)
            }
            c if is_alpha(c) => {
                while self.peek().is_some_and(is_alpha_numeric) {
                    self.next();
                }
                self.emit(Kind::Identifier)
            }
            ',' => self.emit(Kind::Comma),
            '"' | '\'' => self.string(r),
            '`' => self.raw_string(),
            '=' => {
                if self.peek() == Some('~') {
                    self.next();
                    return self.emit(Kind::EqlRegex);
                }
                self.emit(Kind::Eql)
            }
            '!' => match self.next() {
                Some('~') => self.emit(Kind::NeqRegex),
                Some('=') => self.emit(Kind::Neq),
                nr => self.error(format!(
                    "unexpected character after '!' inside braces: {}",
                    quoted_rune(nr.unwrap_or('\u{FFFD}'))
                )),
            },
            '{' => self.error("unexpected left brace '{'".into()),
            '}' => {
                self.brace_open = false;
                self.mode = Mode::Statements;
                self.emit(Kind::RightBrace)
            }
            c => self.error(format!(
                "unexpected character inside braces: {}",
                quoted_rune(c)
            )),
        }
    }

    fn duration_expr(&mut self) -> Step {
        let Some(r) = self.next() else {
            return self.error("unexpected end of input in duration expression".into());
        };
        match r {
            ']' => {
                self.bracket_open = false;
                self.got_colon = false;
                self.mode = Mode::Statements;
                self.emit(Kind::RightBracket)
            }
            ':' => {
                let t = self.emit(Kind::Colon);
                if !self.got_duration {
                    return self
                        .error("unexpected colon before duration in duration expression".into());
                }
                if self.got_colon {
                    return self.error("unexpected repeated colon in duration expression".into());
                }
                self.got_colon = true;
                t
            }
            '(' => {
                self.paren_depth += 1;
                self.emit(Kind::LeftParen)
            }
            ')' => {
                let t = self.emit(Kind::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.error("unexpected right parenthesis ')'".into());
                }
                t
            }
            c if is_space(c) => {
                self.skip_spaces();
                Ok(None)
            }
            '+' => self.emit(Kind::Add),
            '-' => self.emit(Kind::Sub),
            '*' => self.emit(Kind::Mul),
            '/' => self.emit(Kind::Div),
            '%' => self.emit(Kind::Mod),
            '^' => self.emit(Kind::Pow),
            ',' => self.emit(Kind::Comma),
            's' | 'S' | 'm' | 'M' | 'r' | 'R' => match self.duration_keyword() {
                Some(k) => self.emit(k),
                None => self.error(format!(
                    "unexpected character in duration expression: {}",
                    quoted_rune(r)
                )),
            },
            c if c.is_ascii_digit() || (c == '.' && self.peek().is_some_and(is_digit)) => {
                self.backup();
                self.got_duration = true;
                self.mode = Mode::Statements;
                self.number_or_duration()
            }
            c => self.error(format!(
                "unexpected character in duration expression: {}",
                quoted_rune(c)
            )),
        }
    }

    /// The word starting at `start` inside brackets, if it is one a duration expression
    /// knows: `step`, `range` (any case), `min_of`, `max_of`.
    fn duration_keyword(&mut self) -> Option<Kind> {
        while self.peek().is_some_and(is_alpha) {
            self.next();
        }
        let word = self.src[self.start..self.pos].to_ascii_lowercase();
        match word.as_str() {
            "step" => Some(Kind::Step),
            "range" => Some(Kind::Range),
            "min_of" | "max_of" => Some(Kind::Identifier),
            _ => None,
        }
    }

    fn number_or_duration(&mut self) -> Step {
        if self.scan_number() {
            return self.emit(Kind::Number);
        }
        if self.accept_remaining_duration() {
            self.backup();
            return self.emit(Kind::Duration);
        }
        self.error(format!(
            "bad number or duration syntax: {}",
            quoted(&self.src[self.start..self.pos])
        ))
    }

    fn accept_remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            while self.accept("0123456789") {}
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        !self.next().is_some_and(is_alpha_numeric)
    }

    fn scan_number(&mut self) -> bool {
        let initial = self.pos;
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            self.accept("_");
            digits = "0123456789abcdefABCDEF";
        }
        let hex = digits.len() > 10;
        self.accept(".");
        self.accept(digits);
        let (mut dot, mut exponent) = (false, false);
        while self
            .peek()
            .is_some_and(|c| digits.contains(c) || matches!(c, '.' | '_' | 'e' | 'E'))
        {
            if self.is(".") && dot {
                self.accept(".");
                return false;
            }
            if self.is("eE") && exponent {
                self.accept("eE");
                return false;
            }
            if self.accept(".") {
                dot = true;
                if self.accept("_.") || hex {
                    return false;
                }
                continue;
            }
            if self.accept("eE") {
                exponent = true;
                self.accept("+-");
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            if self.accept("_") {
                if self.accept("._eE") || self.peek().is_none() {
                    return false;
                }
                continue;
            }
            while self.accept(digits) {}
        }
        if self.pos == initial {
            return false;
        }
        !self.peek().is_some_and(is_alpha_numeric)
    }

    fn keyword_or_identifier(&mut self) -> Step {
        while self.peek().is_some_and(|c| is_alpha_numeric(c) || c == ':') {
            self.next();
        }
        let word = &self.src[self.start..self.pos];
        match Kind::keyword(word) {
            Some(k @ (Kind::Fill | Kind::FillLeft | Kind::FillRight)) => {
                let rest = self.src[self.pos..].trim_start_matches(is_space);
                if rest.starts_with('(') {
                    self.emit(k)
                } else {
                    self.emit(Kind::Identifier)
                }
            }
            Some(k) => self.emit(k),
            None if word.contains(':') => self.emit(Kind::MetricIdentifier),
            None => self.emit(Kind::Identifier),
        }
    }

    fn string(&mut self, quote: char) -> Step {
        loop {
            match self.next() {
                Some('\\') => self.escape(quote)?,
                Some('\u{FFFD}') => return self.error("invalid UTF-8 rune".into()),
                None | Some('\n') => return self.error("unterminated quoted string".into()),
                Some(c) if c == quote => return self.emit(Kind::String),
                Some(_) => {}
            }
        }
    }

    fn escape(&mut self, quote: char) -> Result<(), LexError> {
        let err = |l: &Self, msg: String| Err(LexError { msg, pos: l.start });
        let mut ch = self.next();
        let (mut n, base, max) = match ch {
            Some('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => return Ok(()),
            Some(c) if c == quote => return Ok(()),
            Some('0'..='7') => (3, 8, 255),
            Some('x') => {
                ch = self.next();
                (2, 16, 255)
            }
            Some('u') => {
                ch = self.next();
                (4, 16, 0x10FFFF)
            }
            Some('U') => {
                ch = self.next();
                (8, 16, 0x10FFFF)
            }
            None => return err(self, "escape sequence not terminated".into()),
            Some(c) => {
                return err(
                    self,
                    format!("unknown escape sequence {}", unicode_format(c)),
                );
            }
        };
        let mut x: u32 = 0;
        while n > 0 {
            let d = ch.and_then(|c| c.to_digit(16)).unwrap_or(16);
            if d >= base {
                return match ch {
                    None => err(self, "escape sequence not terminated".into()),
                    Some(c) => err(
                        self,
                        format!("illegal character {} in escape sequence", unicode_format(c)),
                    ),
                };
            }
            x = x.wrapping_mul(base).wrapping_add(d);
            n -= 1;
            if n > 0 {
                ch = self.next();
            }
        }
        if x > max || (0xD800..0xE000).contains(&x) {
            return err(
                self,
                "escape sequence is an invalid Unicode code point".into(),
            );
        }
        Ok(())
    }

    fn raw_string(&mut self) -> Step {
        loop {
            match self.next() {
                Some('\u{FFFD}') => return self.error("invalid UTF-8 rune".into()),
                None => return self.error("unterminated raw string".into()),
                Some('`') => return self.emit(Kind::String),
                Some(_) => {}
            }
        }
    }
}

pub(crate) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

pub(crate) fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

pub(crate) fn is_alpha_numeric(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Vec<Kind> {
        let mut l = Lexer::new(q);
        let mut out = Vec::new();
        loop {
            let t = l.next_token().unwrap();
            out.push(t.kind);
            if t.kind == Kind::Eof {
                return out;
            }
        }
    }

    fn error(q: &str) -> LexError {
        let mut l = Lexer::new(q);
        loop {
            match l.next_token() {
                Ok(t) if t.kind == Kind::Eof => panic!("{q} lexed"),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }

    #[test]
    fn tokens_of_a_query() {
        use Kind::*;
        assert_eq!(
            kinds("sum by (a) (rate(x{b=~\"c\"}[5m:1m])) # note"),
            vec![
                Sum,
                By,
                LeftParen,
                Identifier,
                RightParen,
                LeftParen,
                Identifier,
                LeftParen,
                Identifier,
                LeftBrace,
                Identifier,
                EqlRegex,
                String,
                RightBrace,
                LeftBracket,
                Duration,
                Colon,
                Duration,
                RightBracket,
                RightParen,
                RightParen,
                Eof
            ]
        );
        assert_eq!(
            kinds("0x_1F 1_000 .5e-3 Inf"),
            vec![Number; 4].into_iter().chain([Eof]).collect::<Vec<_>>()
        );
        assert_eq!(
            kinds("fill + fill(1)"),
            vec![Identifier, Add, Fill, LeftParen, Number, RightParen, Eof]
        );
        assert_eq!(kinds("a:b"), vec![MetricIdentifier, Eof]);
    }

    #[test]
    fn errors_point_where_prometheus_points() {
        assert_eq!(
            error("sum("),
            LexError {
                msg: "unclosed left parenthesis".into(),
                pos: 4
            }
        );
        assert_eq!(
            error(")"),
            LexError {
                msg: "unexpected right parenthesis ')'".into(),
                pos: 1
            }
        );
        assert_eq!(
            error("x{a=\"\\g\"}").msg,
            "unknown escape sequence U+0067 'g'"
        );
        assert_eq!(error("x{a=\"\\g\"}").pos, 4);
        assert_eq!(error("5mm").msg, "bad number or duration syntax: \"5mm\"");
        assert_eq!(
            error("x[:5m]").msg,
            "unexpected colon before duration in duration expression"
        );
        assert_eq!(error("a ! b").msg, "unexpected character after '!': ' '");
        assert_eq!(
            error("a !").msg,
            "unexpected character after '!': '\u{FFFD}'"
        );
    }
}
