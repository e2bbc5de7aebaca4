//! Strings quoted and unquoted as PromQL (a Go language) does: error messages quote names with
//! `%q`, the printer writes string literals the same way, and string literals hold Go escapes,
//! whose bytes need not be UTF-8.

use std::fmt::Write as _;

/// Where a byte that is not valid UTF-8 in a string literal (`"a\xc5z"`) is kept in a Rust
/// string: byte `b` (0x80..=0xff) as the private-use character U+10FF00 + `b`, which [`quote`]
/// writes back as `\xHH`. The engine uses the same convention.
const RAW_BYTE_BASE: u32 = 0x10_FF00;

/// The character standing for the byte `b` (0x80..=0xff) that is not valid UTF-8.
pub fn raw_byte_char(b: u8) -> char {
    char::from_u32(RAW_BYTE_BASE + u32::from(b)).unwrap_or('\u{FFFD}')
}

/// The byte `c` stands for, when it is a [`raw_byte_char`].
pub fn as_raw_byte(c: char) -> Option<u8> {
    let v = c as u32;
    (RAW_BYTE_BASE + 0x80..=RAW_BYTE_BASE + 0xff)
        .contains(&v)
        .then(|| (v - RAW_BYTE_BASE) as u8)
}

/// Whether Go's `strconv.IsPrint` holds for `c` (approximated by Unicode's categories as Rust
/// exposes them: controls, separators other than the space and format characters are not).
fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() || as_raw_byte(c).is_some() {
        return false;
    }
    !matches!(c,
        '\u{AD}' | '\u{600}'..='\u{605}' | '\u{61C}' | '\u{6DD}' | '\u{70F}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E000}'..='\u{F8FF}'
        | '\u{F0000}'..='\u{10FFFF}')
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    if let Some(b) = as_raw_byte(c) {
        let _ = write!(out, "\\x{b:02x}");
        return;
    }
    match c {
        c if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        c if is_print(c) => out.push(c),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// `s` in double quotes as Go's `strconv.Quote` writes it.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// `c` in single quotes as Go's `%q` writes a rune.
pub fn quote_rune(c: char) -> String {
    let mut out = String::from("'");
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

/// `c` as Go's `%#U` writes it: `U+0067 'g'`, or `U+000A` for a character it does not print.
pub fn quote_rune_u(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// The value of a string literal as the lexer took it (quotes included): escapes decoded,
/// bytes that are not UTF-8 kept as [`raw_byte_char`]s. `None` for text the lexer would not
/// have taken.
pub fn unquote(lit: &str) -> Option<String> {
    let quote = lit.chars().next()?;
    let body = lit.get(1..lit.len().checked_sub(1)?)?;
    if !lit.ends_with(quote) || lit.len() < 2 {
        return None;
    }
    if quote == '`' {
        return Some(body.to_string());
    }
    let mut bytes: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.chars();
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        if c != '\\' {
            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let e = chars.next()?;
        let simple = match e {
            'a' => Some(7u8),
            'b' => Some(8),
            'f' => Some(12),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(11),
            '\\' => Some(b'\\'),
            '\'' | '"' => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            bytes.push(b);
            continue;
        }
        let (n, radix) = match e {
            '0'..='7' => (2, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => return None,
        };
        let mut v: u32 = if radix == 8 { e.to_digit(8)? } else { 0 };
        for _ in 0..n {
            v = v
                .checked_mul(radix)?
                .checked_add(chars.next()?.to_digit(radix)?)?;
        }
        match e {
            '0'..='7' | 'x' => bytes.push(u8::try_from(v).ok()?),
            _ => bytes.extend_from_slice(char::from_u32(v)?.encode_utf8(&mut buf).as_bytes()),
        }
    }
    Some(utf8_or_raw_bytes(&bytes))
}

/// `bytes` as a string: valid UTF-8 decoded, every other byte as a [`raw_byte_char`].
fn utf8_or_raw_bytes(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    while !bytes.is_empty() {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                break;
            }
            Err(e) => {
                let (good, rest) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len()).max(1);
                out.extend(rest[..bad].iter().map(|&b| raw_byte_char(b)));
                bytes = &rest[bad..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_reads_as_go_writes_it() {
        assert_eq!(quote("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\x01é\"");
        assert_eq!(quote_rune('\''), "'\\''");
        assert_eq!(quote_rune_u('g'), "U+0067 'g'");
        assert_eq!(quote_rune_u('\n'), "U+000A");
    }

    #[test]
    fn escapes_decode_to_their_bytes() {
        assert_eq!(unquote(r#""a\x41\101\u00e9\U0001F600""#).unwrap(), "aAAé😀");
        assert_eq!(unquote("'it\\'s'").unwrap(), "it's");
        assert_eq!(unquote("`a\\nb`").unwrap(), "a\\nb");
        let raw = unquote(r#""\xc3\xa9\xff""#).unwrap();
        assert_eq!(raw, format!("é{}", raw_byte_char(0xff)));
        assert_eq!(quote(&raw), r#""é\xff""#);
    }
}
