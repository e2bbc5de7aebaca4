//! String literals of PromQL (a Go language) read back into their values: Go's escapes
//! decoded, and bytes that are not UTF-8 kept as the engine's raw-byte characters
//! ([`gauntlet_engine::go_format::raw_byte_char`]). Quoting the other way, as Go's `%q` writes
//! names in messages and the printer writes literals, is the engine's
//! [`gauntlet_engine::go_format::quoted`].

use gauntlet_engine::go_format::raw_byte_char;

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
    use super::unquote;
    use gauntlet_engine::go_format::{quoted, raw_byte_char};

    #[test]
    fn escapes_decode_to_their_bytes() {
        assert_eq!(unquote(r#""a\x41\101\u00e9\U0001F600""#).unwrap(), "aAAé😀");
        assert_eq!(unquote("'it\\'s'").unwrap(), "it's");
        assert_eq!(unquote("`a\\nb`").unwrap(), "a\\nb");
        let raw = unquote(r#""\xc3\xa9\xff""#).unwrap();
        assert_eq!(raw, format!("é{}", raw_byte_char(0xff)));
        assert_eq!(quoted(&raw), r#""é\xff""#);
    }
}
