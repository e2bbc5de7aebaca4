//! Number literals read as Prometheus reads them: as a Go integer first (so `017` is octal and
//! `0x1F` hexadecimal), then as a Go float, with Go's words when neither works.

/// The value of the number literal `text` (as the lexer took it), or the message Prometheus
/// gives for it.
pub fn parse_number(text: &str) -> Result<f64, String> {
    if let Some(v) = parse_int(text) {
        return Ok(v as f64);
    }
    parse_float(text).map_err(|why| {
        format!(
            "error parsing number: strconv.ParseFloat: parsing {}: {why}",
            gauntlet_engine::go_format::quoted(text)
        )
    })
}

/// Go's `strconv.ParseInt(text, 0, 64)`, for the unsigned literals the lexer produces.
fn parse_int(text: &str) -> Option<i64> {
    let lower = text.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    if text.contains('_') && !underscores_ok(text) {
        return None;
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() && radix != 8 {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    i64::from_str_radix(&digits, radix).ok()
}

/// Go's `strconv.ParseFloat(text, 64)` for what the lexer produces: decimals (underscores
/// between digits), `Inf` and `NaN`; a hexadecimal literal has no `p` exponent, which Go
/// requires of a hexadecimal float.
fn parse_float(text: &str) -> Result<f64, &'static str> {
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "inf" | "infinity" => return Ok(f64::INFINITY),
        "nan" => return Ok(f64::NAN),
        _ => {}
    }
    if lower.starts_with("0x") {
        return Err("invalid syntax");
    }
    if lower.contains('_') && !underscores_ok(&lower) {
        return Err("invalid syntax");
    }
    let plain: String = lower.chars().filter(|&c| c != '_').collect();
    if !plain
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
    {
        return Err("invalid syntax");
    }
    match plain.parse::<f64>() {
        Ok(v) if v.is_infinite() => Err("value out of range"),
        Ok(v) => Ok(v),
        Err(_) => Err("invalid syntax"),
    }
}

/// Whether the underscores in `s` stand where Go allows them: each between two digits, or
/// between a base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1] | 0x20, b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1] | 0x20 == b'x';
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && (c | 0x20).is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

#[cfg(test)]
mod tests {
    use super::parse_number;

    #[test]
    fn numbers_read_as_go_reads_them() {
        assert_eq!(parse_number("017"), Ok(15.0));
        assert_eq!(parse_number("08"), Ok(8.0));
        assert_eq!(parse_number("0x_1F"), Ok(31.0));
        assert_eq!(parse_number("1_000.5"), Ok(1000.5));
        assert_eq!(parse_number("Inf"), Ok(f64::INFINITY));
        assert!(parse_number("1_").is_err());
        assert!(parse_number("NaN").unwrap().is_nan());
        assert_eq!(
            parse_number("1e400"),
            Err(
                "error parsing number: strconv.ParseFloat: parsing \"1e400\": value out of range"
                    .into()
            )
        );
        assert_eq!(
            parse_number("0xFFFFFFFFFFFFFFFFFF"),
            Err("error parsing number: strconv.ParseFloat: parsing \"0xFFFFFFFFFFFFFFFFFF\": invalid syntax".into())
        );
    }
}
