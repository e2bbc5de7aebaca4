//! Prometheus's duration literals (`1h30m`, `90s`, `250ms`, `0`), as `model.ParseDuration`
//! reads them: one or more `<digits><unit>` with units in descending order, each at most once.

/// Units of a duration literal, largest first, in ms.
const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// The duration literal `s` in ms, or `None` when it is not one (or overflows).
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // "ms" must be tried before "m".
        let (idx, len) = if rest.starts_with("ms") {
            (6, 2)
        } else {
            let u = rest.get(..1)?;
            (UNITS[..6].iter().position(|(name, _)| *name == u)?, 1)
        };
        if idx < next_unit {
            return None;
        }
        next_unit = idx + 1;
        total = total.checked_add(n.checked_mul(UNITS[idx].1)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn literals_parse_as_prometheus_reads_them() {
        assert_eq!(parse_duration_ms("0"), Some(0));
        assert_eq!(parse_duration_ms("15s"), Some(15_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("1m500ms"), Some(60_500));
        assert_eq!(parse_duration_ms("2w"), Some(14 * 86_400_000));
        assert_eq!(parse_duration_ms("1y"), Some(365 * 86_400_000));
        for bad in [
            "",
            "30m1h",
            "1x",
            "1h1h",
            "ms",
            "5",
            "1.5h",
            "-5m",
            "99999999999999999y",
        ] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }
}
