//! Duration literals (`1h30m`) read and written as Prometheus reads and writes them.

/// Nanoseconds in each unit, biggest first; a literal's units must come in this order.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000_000_000),
    ("w", 7 * 24 * 3_600_000_000_000),
    ("d", 24 * 3_600_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

/// The duration literal `s` in nanoseconds, or Prometheus's message for why it is not one.
pub fn parse_duration_ns(s: &str) -> Result<i64, String> {
    match s {
        "0" => return Ok(0),
        "" => return Err("empty duration string".into()),
        _ => {}
    }
    let invalid = || {
        format!(
            "not a valid duration string: {}",
            gauntlet_engine::go_format::quoted(s)
        )
    };
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    let mut last_unit = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            return Err(invalid());
        }
        let digits_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let v: u64 = s[digits_start..i].parse().map_err(|_| invalid())?;
        let unit_start = i;
        while i < b.len() && !b[i].is_ascii_digit() {
            i += 1;
        }
        if i == unit_start {
            return Err(invalid());
        }
        let unit = &s[unit_start..i];
        let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!(
                "unknown unit {} in duration {}",
                gauntlet_engine::go_format::quoted(unit),
                gauntlet_engine::go_format::quoted(s)
            ));
        };
        if pos < last_unit {
            return Err(invalid());
        }
        last_unit = pos + 1;
        let mult = UNITS[pos].1;
        if v > (1u64 << 63) / mult {
            return Err("duration out of range".into());
        }
        total = total.saturating_add(v * mult);
        if total > i64::MAX as u64 {
            return Err("duration out of range".into());
        }
    }
    Ok(total as i64)
}

/// `ms` written as Prometheus writes a duration (`1h30m`, `372d`, `0s`): years and weeks only
/// when they divide it exactly. Negative durations are written as nothing, as Prometheus does;
/// callers put the sign in front.
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut ms = ms;
    let mut out = String::new();
    let mut unit = |name: &str, mult: i64, exact: bool| {
        if exact && ms % mult != 0 {
            return;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&v.to_string());
            out.push_str(name);
            ms -= v * mult;
        }
    };
    unit("y", 365 * 86_400_000, true);
    unit("w", 7 * 86_400_000, true);
    unit("d", 86_400_000, false);
    unit("h", 3_600_000, false);
    unit("m", 60_000, false);
    unit("s", 1000, false);
    unit("ms", 1, false);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_as_prometheus_does() {
        assert_eq!(parse_duration_ns("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(
            parse_duration_ns("5m1h"),
            Err("not a valid duration string: \"5m1h\"".into())
        );
        assert_eq!(
            parse_duration_ns("1.5m"),
            Err("unknown unit \".\" in duration \"1.5m\"".into())
        );
        assert_eq!(format_duration_ms(372 * 86_400_000), "372d");
        assert_eq!(format_duration_ms(365 * 86_400_000), "1y");
        assert_eq!(format_duration_ms(90_000), "1m30s");
        assert_eq!(format_duration_ms(1500), "1s500ms");
    }
}
