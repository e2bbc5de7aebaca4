//! Where in a template an execution error happened, as Go's `text/template` reports it:
//! `NAME:LINE:COL` and the failing node's text (`executing "NAME" at <first>: …`).
//!
//! gtmpl's execution errors name no node, so the node is found again in the text: a
//! function's error (`error calling first: …`, `wrong number of args for humanize: …`) is
//! placed at the first command in the text that calls that function, and a missing field
//! (`can't evaluate field y in type string`) at the first field chain that names it. When the
//! function or field is named by several actions, the first is cited, which may not be the
//! one that failed.

/// One token of an action, with its byte offset in the template text.
#[derive(Debug, Clone, PartialEq)]
struct Token<'a> {
    pos: usize,
    kind: Kind,
    text: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The start of an action (`{{` or `{{-`), before its first token.
    Open,
    /// The end of an action (`}}` or `-}}`).
    Close,
    /// A word: a function, a keyword, `nil`, `true`.
    Ident,
    /// `.name` (one element of a field chain), or `.` alone.
    Field,
    /// `$name`.
    Variable,
    /// A string, raw string, character or number.
    Literal,
    Pipe,
    LParen,
    RParen,
    /// `:=` or `=`.
    Assign,
    Comma,
}

/// The node an execution error is about, as (byte offset in `text`, Go's text of the node).
pub(super) fn locate(text: &str, message: &str) -> Option<(usize, String)> {
    let tokens = tokens(text);
    if let Some(called) = message
        .strip_prefix("template ")
        .and_then(|r| r.strip_suffix(" not defined"))
    {
        return find_template_call(&tokens, called);
    }
    if let Some(func) = failing_function(message) {
        return find_command(&tokens, func);
    }
    let field = message
        .strip_prefix("can't evaluate field ")?
        .split(' ')
        .next()?;
    find_chain(&tokens, field)
}

/// `NAME:LINE:COL` of byte `pos` of `text`, counted as Go counts them: lines from 1, the
/// column a 0-based byte offset in its line (on line 1, the offset in the text).
pub(super) fn position(name: &str, text: &str, pos: usize) -> String {
    let before = text.get(..pos).unwrap_or(text);
    let line = 1 + before.matches('\n').count();
    let col = before.rfind('\n').map_or(pos, |nl| pos - nl - 1);
    format!("{name}:{line}:{col}")
}

/// The line (from 1) byte `pos` of `text` is on.
fn line_of(text: &str, pos: usize) -> usize {
    1 + text.get(..pos).unwrap_or(text).matches('\n').count()
}

/// A parse error as Go's `text/template` words it, `template: NAME:LINE: what`, from the
/// template library's `error` (`template: NAME[:LINE]:what`, its line counted its own way and
/// NAME possibly a `define`d template's): the words made Go's where they differ, the line
/// found again in `text` as Go's parser names it (the line of the token it stopped at), and
/// left out where it cannot be found.
pub(super) fn parse_error(name: &str, text: &str, error: &str) -> String {
    let what = error
        .strip_prefix("template: ")
        .and_then(|r| r.split_once(':'))
        .map_or(error, |(_, r)| {
            r.trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start_matches(':')
                .trim_start()
        });
    let what = go_parse_words(what);
    match parse_error_line(text, &what) {
        Some(line) => format!("template: {name}:{line}: {what}"),
        None => format!("template: {name}: {what}"),
    }
}

/// The template library's parse messages in Go's words.
fn go_parse_words(what: &str) -> String {
    if let Some(f) = what
        .strip_prefix("function ")
        .and_then(|r| r.strip_suffix(" not defined"))
        .filter(|f| !f.starts_with('"'))
    {
        return format!("function \"{f}\" not defined");
    }
    if let Some(v) = what
        .strip_prefix("undefined variable ")
        .filter(|v| !v.starts_with('"'))
    {
        return format!("undefined variable \"{v}\"");
    }
    match what {
        "unexpected unclosed left paren in parenthesized pipeline" => "unclosed left paren".into(),
        "unexpected unclosed action in command" => "unclosed action".into(),
        other => other.to_string(),
    }
}

/// The line Go's parser names for the parse error `what` (Go's words) in `text`.
fn parse_error_line(text: &str, what: &str) -> Option<usize> {
    let tokens = tokens(text);
    let line = |pos: usize| Some(line_of(text, pos));
    if let Some(f) = what
        .strip_prefix("function \"")
        .and_then(|r| r.strip_suffix("\" not defined"))
    {
        let t = tokens
            .iter()
            .find(|t| t.kind == Kind::Ident && t.text == f)?;
        return line(t.pos);
    }
    if let Some(v) = what
        .strip_prefix("undefined variable \"")
        .and_then(|r| r.strip_suffix('"'))
    {
        let t = tokens
            .iter()
            .find(|t| t.kind == Kind::Variable && t.text == v)?;
        return line(t.pos);
    }
    if let Some(kw) = what.strip_prefix("missing value for ") {
        // The action holding the keyword alone: Go stops at its closing delimiter.
        let i = tokens.windows(3).position(|w| {
            w[0].kind == Kind::Open
                && w[1].kind == Kind::Ident
                && w[1].text == kw
                && w[2].kind == Kind::Close
        })?;
        return line(tokens[i + 2].pos);
    }
    match what {
        "unexpected EOF" | "unclosed action" => line(text.len()),
        "unclosed left paren" => {
            let mut depth = 0i64;
            for t in &tokens {
                match t.kind {
                    Kind::LParen => depth += 1,
                    Kind::RParen => depth -= 1,
                    Kind::Close if depth > 0 => return line(t.pos),
                    Kind::Close => depth = 0,
                    _ => {}
                }
            }
            line(text.len())
        }
        "unexpected {{end}}" | "expected end; found {{else}}" => {
            misplaced_block_word(&tokens).and_then(line)
        }
        _ => None,
    }
}

/// Where the block structure first breaks: an `end` closing no block, or an `else` after a
/// block's plain `else`.
fn misplaced_block_word(tokens: &[Token<'_>]) -> Option<usize> {
    // Per open block: whether it had its plain `else`.
    let mut blocks: Vec<bool> = Vec::new();
    for w in tokens.windows(2) {
        if w[0].kind != Kind::Open || w[1].kind != Kind::Ident {
            continue;
        }
        let next = tokens
            .iter()
            .find(|t| t.pos > w[1].pos)
            .filter(|t| t.kind == Kind::Ident);
        match w[1].text {
            "if" | "range" | "with" | "define" | "block" => blocks.push(false),
            "else" => {
                let chained = next.is_some_and(|t| matches!(t.text, "if" | "with"));
                match blocks.last_mut() {
                    Some(true) => return Some(w[1].pos),
                    Some(plain) => *plain = !chained,
                    None => return Some(w[1].pos),
                }
            }
            "end" if blocks.pop().is_none() => return Some(w[1].pos),
            _ => {}
        }
    }
    None
}

/// The first `{{template "name" …}}` invoking `called`: Go places it at the name, and prints
/// it as `{{template "name"}}` (with its pipeline, if any, after the name).
fn find_template_call(tokens: &[Token<'_>], called: &str) -> Option<(usize, String)> {
    let i = tokens.windows(3).position(|w| {
        w[0].kind == Kind::Open
            && w[1].kind == Kind::Ident
            && w[1].text == "template"
            && w[2].kind == Kind::Literal
            && w[2].text.get(1..w[2].text.len().saturating_sub(1)) == Some(called)
    })?;
    let name = &tokens[i + 2];
    let end = tokens[i + 3..]
        .iter()
        .position(|t| t.kind == Kind::Close)
        .map_or(tokens.len(), |n| i + 3 + n);
    let pipeline = &tokens[i + 3..end];
    let text = if pipeline.is_empty() {
        format!("{{{{template {}}}}}", name.text)
    } else {
        format!("{{{{template {} {}}}}}", name.text, print_tokens(pipeline))
    };
    Some((name.pos, text))
}

/// The function an error message says failed.
fn failing_function(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("error calling ")
        .or_else(|| message.strip_prefix("wrong number of args for "))?;
    rest.split(':').next().filter(|f| !f.is_empty())
}

/// The first command whose first word is `func`: its offset and its text as Go prints a
/// command (words one space apart, pipelines in parentheses with ` | ` between commands).
fn find_command(tokens: &[Token<'_>], func: &str) -> Option<(usize, String)> {
    for (i, t) in tokens.iter().enumerate() {
        if t.kind != Kind::Ident || t.text != func || !starts_command(tokens, i) {
            continue;
        }
        let mut depth = 0usize;
        let mut end = i + 1;
        while let Some(t) = tokens.get(end) {
            match t.kind {
                Kind::Open | Kind::Close => break,
                Kind::LParen => depth += 1,
                Kind::RParen if depth == 0 => break,
                Kind::RParen => depth -= 1,
                Kind::Pipe if depth == 0 => break,
                _ => {}
            }
            end += 1;
        }
        return Some((t.pos, print_tokens(&tokens[i..end])));
    }
    None
}

/// Whether token `i` is the first word of a command.
fn starts_command(tokens: &[Token<'_>], i: usize) -> bool {
    let Some(prev) = i.checked_sub(1).and_then(|p| tokens.get(p)) else {
        return false;
    };
    match prev.kind {
        Kind::Open | Kind::Pipe | Kind::LParen | Kind::Assign => true,
        Kind::Ident => matches!(prev.text, "if" | "range" | "with" | "else"),
        Kind::Literal => {
            // `{{ template "name" pipeline }}` and `{{ block "name" pipeline }}`.
            i >= 2
                && tokens[i - 2].kind == Kind::Ident
                && matches!(tokens[i - 2].text, "template" | "block")
        }
        _ => false,
    }
}

/// Go's text of a run of tokens.
fn print_tokens(tokens: &[Token<'_>]) -> String {
    let mut out = String::new();
    let mut prev: Option<Kind> = None;
    for t in tokens {
        let glued = match (prev, t.kind) {
            (None, _) | (Some(Kind::LParen), _) | (_, Kind::RParen) | (_, Kind::Comma) => true,
            // The elements of a chain: `.Labels.x`, `$labels.x`, `(x).y`.
            (Some(Kind::Field | Kind::Variable | Kind::RParen), Kind::Field) => !t.text.eq("."),
            _ => false,
        };
        if !glued {
            out.push(' ');
        }
        out.push_str(t.text);
        prev = Some(t.kind);
    }
    out
}

/// The first field chain naming `.field`: its offset as Go's parser gives it (a chain of
/// several elements is placed at its second element) and its text.
fn find_chain(tokens: &[Token<'_>], field: &str) -> Option<(usize, String)> {
    let mut i = 0;
    while i < tokens.len() {
        let starts = matches!(tokens[i].kind, Kind::Field | Kind::Variable)
            && !(i > 0 && matches!(tokens[i - 1].kind, Kind::Field | Kind::Variable));
        if !starts {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while tokens
            .get(end)
            .is_some_and(|t| t.kind == Kind::Field && t.text != ".")
        {
            end += 1;
        }
        let chain = &tokens[i..end];
        if chain
            .iter()
            .any(|t| t.kind == Kind::Field && t.text.get(1..) == Some(field))
        {
            let pos = chain.get(1).map_or(chain[0].pos, |t| t.pos);
            return Some((pos, print_tokens(chain)));
        }
        i = end;
    }
    None
}

/// The tokens of every action of `text` (comments and the text between actions left out).
fn tokens(text: &str) -> Vec<Token<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(open) = text.get(i..).and_then(|r| r.find("{{")) {
        let start = i + open;
        i = start + 2;
        if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        out.push(Token {
            pos: start,
            kind: Kind::Open,
            text: "",
        });
        loop {
            while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                i += 1;
            }
            let Some(&c) = b.get(i) else { return out };
            let close = if c == b'-' && b.get(i + 1) == Some(&b'}') && b.get(i + 2) == Some(&b'}') {
                3
            } else if c == b'}' && b.get(i + 1) == Some(&b'}') {
                2
            } else {
                0
            };
            if close > 0 {
                out.push(Token {
                    pos: i,
                    kind: Kind::Close,
                    text: "",
                });
                i += close;
                break;
            }
            let (kind, len) = match c {
                b'/' if b.get(i + 1) == Some(&b'*') => {
                    let len = text[i..].find("*/").map_or(b.len() - i, |e| e + 2);
                    i += len;
                    continue;
                }
                b'"' | b'\'' | b'`' => (Kind::Literal, quoted_len(&b[i..])),
                b'|' => (Kind::Pipe, 1),
                b'(' => (Kind::LParen, 1),
                b')' => (Kind::RParen, 1),
                b',' => (Kind::Comma, 1),
                b'=' => (Kind::Assign, 1),
                b':' if b.get(i + 1) == Some(&b'=') => (Kind::Assign, 2),
                b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                    (Kind::Field, 1 + word_len(&b[i + 1..]))
                }
                b'$' => (Kind::Variable, 1 + word_len(&b[i + 1..])),
                c if c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.') => {
                    (Kind::Literal, number_len(&b[i..]))
                }
                _ => (Kind::Ident, word_len(&b[i..]).max(1)),
            };
            let len = len.min(b.len() - i);
            // Every token ends on a character boundary: they end before ASCII bytes or at
            // the end of the text, and a one-byte token is taken only on an ASCII byte.
            let end = (i + len..=b.len())
                .find(|&e| text.is_char_boundary(e))
                .unwrap_or(b.len());
            out.push(Token {
                pos: i,
                kind,
                text: &text[i..end],
            });
            i = end;
        }
    }
    out
}

/// Bytes of the quoted literal at the start of `b` (to the end of `b` if unterminated).
fn quoted_len(b: &[u8]) -> usize {
    let q = b[0];
    let mut i = 1;
    while i < b.len() && b[i] != q {
        if b[i] == b'\\' && q != b'`' {
            i += 1;
        }
        i += 1;
    }
    (i + 1).min(b.len())
}

/// Bytes of the name at the start of `b` (letters, digits, `_`, and any non-ASCII byte).
fn word_len(b: &[u8]) -> usize {
    b.iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80))
        .unwrap_or(b.len())
}

/// Bytes of the number at the start of `b`.
fn number_len(b: &[u8]) -> usize {
    let n = b
        .iter()
        .enumerate()
        .position(|(i, &c)| {
            !(c.is_ascii_alphanumeric()
                || c == b'.'
                || c == b'_'
                || (matches!(c, b'+' | b'-')
                    && (i == 0 || matches!(b[i - 1], b'e' | b'E' | b'p' | b'P'))))
        })
        .unwrap_or(b.len());
    n.max(1)
}

#[cfg(test)]
mod tests {
    use super::{locate, parse_error, position};

    /// Lines and words promtool 3.5.3 (`check rules`) gave for these templates' parse errors.
    #[test]
    fn parse_errors_as_go_names_them() {
        let cases = [
            (
                "x\n{{ range .Labels }}\ny\n",
                "template: A: unexpected EOF",
                "template: n:4: unexpected EOF",
            ),
            (
                "x\ny {{ $nope }}\n",
                "template: A: undefined variable $nope",
                "template: n:2: undefined variable \"$nope\"",
            ),
            (
                "x\n{{ if true }}\n{{ else }}\n{{ else }}\n{{ end }}\n",
                "template: A: expected end; found {{else}}",
                "template: n:4: expected end; found {{else}}",
            ),
            (
                "one\ntwo {{ end }}\n",
                "template: A: unexpected {{end}}",
                "template: n:2: unexpected {{end}}",
            ),
            (
                "x\n{{ humanize 1 2 ( }}\n",
                "template: A: unexpected unclosed left paren in parenthesized pipeline",
                "template: n:2: unclosed left paren",
            ),
            (
                "one\n{{ template \"x\" }}\n{{ define \"x\" }}{{ foo }}{{ end }}\n",
                "template: x:16:function foo not defined",
                "template: n:3: function \"foo\" not defined",
            ),
            (
                "one\n{{ \n  bar }}\n",
                "template: A: function bar not defined",
                "template: n:3: function \"bar\" not defined",
            ),
            (
                "one\n{{ with }}",
                "template: A: missing value for with",
                "template: n:2: missing value for with",
            ),
            (
                "line one {{ foo }}",
                "template: A: function foo not defined",
                "template: n:1: function \"foo\" not defined",
            ),
            (
                "{{",
                "template: A: unexpected unclosed action in command",
                "template: n:1: unclosed action",
            ),
            (
                "a\n{{ x := 1 }}\n",
                "template: A: function x not defined",
                "template: n:2: function \"x\" not defined",
            ),
            (
                "{{ .X }}",
                "template: A: something else",
                "template: n: something else",
            ),
        ];
        for (text, error, want) in cases {
            assert_eq!(parse_error("n", text, error), want, "{text:?}");
        }
    }

    /// The nodes and positions Prometheus 3.5.3 reported for these templates (its prelude of
    /// variable definitions is on line 1 too, so columns there count it).
    #[test]
    fn as_go_places_them() {
        let text = "line one\nv={{ query \"nothing\" | first | value }}\n";
        let (pos, ctx) = locate(
            text,
            "error calling first: first() called on vector with no elements",
        )
        .unwrap();
        assert_eq!(
            (position("t", text, pos).as_str(), ctx.as_str()),
            ("t:2:23", "first")
        );

        let text = "a\nb\n{{ .Labels.x.y }}\n";
        let (pos, ctx) = locate(text, "can't evaluate field y in type string").unwrap();
        assert_eq!(
            (position("t", text, pos).as_str(), ctx.as_str()),
            ("t:3:10", ".Labels.x.y")
        );

        let text = "{{ humanize   \"abc\" }}";
        let (pos, ctx) = locate(text, "error calling humanize: strconv.ParseFloat").unwrap();
        assert_eq!((pos, ctx.as_str()), (3, "humanize \"abc\""));

        let text =
            "x {{ $value }}\n  {{ printf \"%s\" (query \"nothing\" | first | label \"foo\") }}\n";
        let (pos, ctx) = locate(text, "error calling first: x").unwrap();
        assert_eq!(
            (position("t", text, pos).as_str(), ctx.as_str()),
            ("t:2:36", "first")
        );
        let (_, ctx) = locate(text, "error calling printf: x").unwrap();
        assert_eq!(
            ctx,
            "printf \"%s\" (query \"nothing\" | first | label \"foo\")"
        );

        let text = "{{ if gt (len $labels.a) 1 }}{{ $labels.zone.name }}{{ end }}";
        let (pos, ctx) = locate(text, "can't evaluate field name in type string").unwrap();
        assert_eq!(
            (pos, ctx.as_str()),
            (text.find(".zone").unwrap(), "$labels.zone.name")
        );
        let (pos, ctx) = locate(text, "wrong number of args for gt: want 2 got 1").unwrap();
        assert_eq!((pos, ctx.as_str()), (6, "gt (len $labels.a) 1"));

        let text = "{{ $value }}\n{{ template \"nope\" }}";
        let (pos, ctx) = locate(text, "template nope not defined").unwrap();
        assert_eq!(
            (position("t", text, pos).as_str(), ctx.as_str()),
            ("t:2:12", "{{template \"nope\"}}")
        );

        // A function named only inside a string is not a call of it.
        assert_eq!(locate("{{ \"first\" }}", "error calling first: x"), None);
        assert_eq!(locate("{{ x", "error calling x: y").map(|l| l.0), Some(3));
    }
}
