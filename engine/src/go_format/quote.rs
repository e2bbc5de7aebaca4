//! Strings and runes quoted as Go's `strconv.Quote` and `fmt`'s `%q` and `%#U` write them, for
//! label sets, matchers and error messages that must read as Prometheus's.

use std::fmt::Write as _;

/// Where a byte that is not valid UTF-8 in a Go string of a query (`"a\xc5z"`) is kept in a
/// Rust string: byte `b` (0x80..=0xff) as the private-use character U+10FF00 + `b`, which
/// [`push_quoted`] writes back as `\xHH` as Go quotes the byte.
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

/// Appends `v` quoted the way Go's `strconv.Quote` (and `%q`) does: printable characters kept,
/// `"` and `\` escaped, control characters as `\n`-style or `\xNN`/`\uNNNN` escapes.
pub fn push_quoted(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        push_quoted_char(out, c, '"');
    }
    out.push('"');
}

/// `s` quoted as [`push_quoted`] appends it.
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_quoted(&mut out, s);
    out
}

/// A rune as Go's `%q` writes it (`strconv.QuoteRune`): `'x'`, `'\''`, `'"'`, `'\n'`.
pub fn quoted_rune(c: char) -> String {
    let mut out = String::with_capacity(8);
    out.push('\'');
    push_quoted_char(&mut out, c, '\'');
    out.push('\'');
    out
}

/// A rune as Go's `%#U` writes it: `U+007A 'z'`, without the character when it is not
/// printable (`U+0007`).
pub fn unicode_format(c: char) -> String {
    let mut out = format!("U+{:04X}", c as u32);
    if is_print(c) {
        let _ = write!(out, " '{c}'");
    }
    out
}

/// Appends `c` as it stands inside a Go quoted literal closed by `quote`.
fn push_quoted_char(out: &mut String, c: char, quote: char) {
    match c {
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        '\\' => out.push_str("\\\\"),
        '\u{07}' => out.push_str("\\a"),
        '\u{08}' => out.push_str("\\b"),
        '\u{0c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{0b}' => out.push_str("\\v"),
        c if as_raw_byte(c).is_some() => {
            let _ = write!(out, "\\x{:02x}", as_raw_byte(c).unwrap_or(0));
        }
        c if is_print(c) => out.push(c),
        c if (c as u32) < 0x80 => {
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

/// Go's `strconv.IsPrint` for the characters label values hold in practice: ASCII graphic and
/// space, and non-ASCII letters, marks, numbers, punctuation and symbols (not other spaces,
/// controls, format characters or unassigned code points we can recognise cheaply).
pub fn is_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Format characters Go treats as unprintable: soft hyphen, zero-width and bidi controls,
    // the BOM, and private-use or surrogate-adjacent ranges.
    !matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_quote_like_go() {
        assert_eq!(quoted("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(
            quoted("\u{7}\u{0}\u{7f}é\u{200b}"),
            r#""\a\x00\x7fé\u200b""#
        );
        assert_eq!(quoted("'"), r#""'""#);
        assert_eq!(quoted("\u{f0000}"), r#""\U000f0000""#);
    }

    #[test]
    fn runes_quote_like_go() {
        assert_eq!(quoted_rune('x'), "'x'");
        assert_eq!(quoted_rune('\''), r"'\''");
        assert_eq!(quoted_rune('"'), r#"'"'"#);
        assert_eq!(quoted_rune('\n'), r"'\n'");
        assert_eq!(quoted_rune('\u{0}'), r"'\x00'");
        assert_eq!(unicode_format('z'), "U+007A 'z'");
        assert_eq!(unicode_format('\u{7}'), "U+0007");
    }
}
