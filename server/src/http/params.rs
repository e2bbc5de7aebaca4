//! Request parameters as Prometheus reads them: form values from a POST body first, then the
//! URL query; times as Unix seconds or RFC 3339; durations as seconds or `1h30m`.

use std::sync::Arc;

use gauntlet_engine::ErrorClass;
use gauntlet_engine::budget::MemoryBudget;
use gauntlet_engine::go_format::quoted;
use gauntlet_engine::labels::Matcher;
use gauntlet_promql::PromqlError;
use gauntlet_promql::{SelectorError, parse_selector_in};
use percent_encoding::percent_decode_str;

/// Earliest time the API accepts, ms: Prometheus's `MinTime` (a Go `time.Time` bound).
pub const MIN_TIME_MS: i64 = -9_223_309_901_257_974_000;
/// Latest time the API accepts, ms: Prometheus's `MaxTime`.
pub const MAX_TIME_MS: i64 = 9_223_309_901_257_974_999;
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";

/// A failed API call: what kind of failure ([`ErrorClass`], which gives Prometheus's
/// `errorType` and the HTTP status) and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What the failure means for the client.
    pub class: ErrorClass,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// A `bad_data` error (HTTP 400).
    pub fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            class: ErrorClass::BadData,
            message: message.into(),
        }
    }

    /// An `internal` error (HTTP 500).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            class: ErrorClass::Internal,
            message: message.into(),
        }
    }

    /// A `timeout` error (HTTP 503).
    pub fn timeout(message: impl Into<String>) -> Self {
        ApiError {
            class: ErrorClass::Timeout,
            message: message.into(),
        }
    }

    /// `invalid parameter "name": reason`, as Prometheus wraps parameter errors.
    pub fn invalid_param(name: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_data(format!("invalid parameter {name:?}: {reason}"))
    }

    /// Prometheus's `errorType` for this error.
    pub fn error_type(&self) -> &'static str {
        match self.class {
            ErrorClass::BadData => "bad_data",
            ErrorClass::Execution => "execution",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Canceled => "canceled",
            ErrorClass::Unavailable => "unavailable",
            _ => "internal",
        }
    }

    /// The HTTP status Prometheus answers with for this error's class.
    pub fn status(&self) -> u16 {
        match self.class {
            ErrorClass::BadData => 400,
            ErrorClass::Execution => 422,
            ErrorClass::Timeout | ErrorClass::Canceled | ErrorClass::Unavailable => 503,
            _ => 500,
        }
    }
}

/// A storage failure keeps its class: a store limit is `execution` (422), a store or
/// endpoint out of reach `unavailable` (503), a timeout `timeout` (503).
impl From<gauntlet_engine::Error> for ApiError {
    fn from(e: gauntlet_engine::Error) -> Self {
        ApiError {
            class: e.class(),
            message: e.to_string(),
        }
    }
}

/// A query's failure; a query that does not parse is a bad `query` parameter.
impl From<PromqlError> for ApiError {
    fn from(e: PromqlError) -> Self {
        match e {
            PromqlError::Parse(m) => ApiError::invalid_param("query", m),
            e => ApiError {
                class: e.class(),
                message: e.to_string(),
            },
        }
    }
}

/// Decoded form values in Prometheus's precedence: body values, then URL query values.
#[derive(Debug, Default, Clone)]
pub struct Form {
    pairs: Vec<(String, String)>,
    /// The request's tenant header, when tenancy is enforced and the request had one.
    tenant: Option<String>,
    /// Ends the request's work when its client goes away.
    cancel: gauntlet_engine::query::Cancel,
}

impl Form {
    /// The value of the request's tenant header (see [`crate::query::tenancy`]).
    pub fn tenant_header(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Records the request's tenant header.
    pub fn set_tenant_header(&mut self, value: Option<String>) {
        self.tenant = value;
    }

    /// The request's cancellation token: tripped when its client goes away.
    pub fn cancel(&self) -> &gauntlet_engine::query::Cancel {
        &self.cancel
    }

    /// Records the request's cancellation token.
    pub fn set_cancel(&mut self, cancel: gauntlet_engine::query::Cancel) {
        self.cancel = cancel;
    }

    /// Parses the URL query and, for a form-encoded body, the body (which comes first).
    pub fn parse(query: Option<&str>, body: Option<&[u8]>) -> Result<Form, ApiError> {
        let mut pairs = Vec::new();
        if let Some(body) = body {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_data("request body is not valid UTF-8"))?;
            decode_pairs(text, &mut pairs)?;
        }
        if let Some(q) = query {
            decode_pairs(q, &mut pairs)?;
        }
        Ok(Form {
            pairs,
            tenant: None,
            cancel: gauntlet_engine::query::Cancel::never(),
        })
    }

    /// A form of the given `(key, value)` pairs, for a request that did not come as a URL or
    /// body (the gRPC Query API's), in precedence order.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Form {
        Form {
            pairs,
            tenant: None,
            cancel: gauntlet_engine::query::Cancel::never(),
        }
    }

    /// The first value of `key`, or "" (Go's `FormValue`).
    pub fn value(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    /// The first value of `key` if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every pair, in precedence order (body first, then the URL's query).
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// Every value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn decode_pairs(text: &str, out: &mut Vec<(String, String)>) -> Result<(), ApiError> {
    for part in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((unescape(k)?, unescape(v)?));
    }
    Ok(())
}

fn unescape(s: &str) -> Result<String, ApiError> {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ApiError::bad_data(format!("invalid URL escape in {}", quoted(s))))
}

/// Parses a time parameter: Unix seconds (rounded to ms) or RFC 3339 with optional fraction.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round() / 1000.0;
        // Seconds beyond an i64 saturate, as Go's conversion does on the machines Prometheus
        // runs on; they are then out of range as milliseconds.
        let secs = secs.clamp(i64::MIN as f64, i64::MAX as f64) as i128;
        let nanos = secs * 1_000_000_000 + (frac * 1e9) as i128;
        return i64::try_from(nanos.div_euclid(1_000_000))
            .map_err(|_| format!("cannot parse {} to a valid timestamp", quoted(s)));
    }
    match s {
        MIN_TIME_TEXT => return Ok(MIN_TIME_MS),
        MAX_TIME_TEXT => return Ok(MAX_TIME_MS),
        _ => {}
    }
    parse_rfc3339(s).ok_or_else(|| format!("cannot parse {} to a valid timestamp", quoted(s)))
}

/// The time parameter `name` in ms, or `default` when absent or empty.
pub fn time_param(form: &Form, name: &str, default: i64) -> Result<i64, ApiError> {
    match form.get(name) {
        None | Some("") => Ok(default),
        Some(v) => parse_time(v).map_err(|e| {
            ApiError::invalid_param(name, format!("invalid time value for '{name}': {e}"))
        }),
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` to ms since the epoch.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Go truncates to ns; ms keeps the first three digits.
        let d = &frac[..digits];
        let first3 = format!("{:0<3}", &d[..d.len().min(3)]);
        ms = first3.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' || !matches!(rb[0], b'+' | b'-') {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if rb[0] == b'-' { -o } else { o }
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    Some(secs * 1000 + ms)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a duration parameter to ms: float seconds or a Prometheus duration (`1h30m`, `5m`).
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        let ns = f * 1e9;
        if ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
            return Err(format!(
                "cannot parse {} to a valid duration. It overflows int64",
                quoted(s)
            ));
        }
        return Ok((ns as i64) / 1_000_000);
    }
    gauntlet_promql::parse_duration_ms(s)
        .ok_or_else(|| format!("cannot parse {} to a valid duration", quoted(s)))
}

/// Parses every `match[]` selector; each must hold a matcher that does not match "". The
/// series API reports a bad one as an invalid `match[]` parameter, the label APIs with the
/// bare message, as Prometheus does. Their regexes hold room in `budget`.
pub fn parse_match_sets(
    values: &[&str],
    as_param: bool,
    budget: &Arc<MemoryBudget>,
) -> Result<Vec<Vec<Matcher>>, ApiError> {
    // A selector given twice selects the same series twice; each is read once.
    let mut seen = std::collections::HashSet::new();
    values
        .iter()
        .filter(|v| seen.insert(**v))
        .map(|v| {
            parse_selector_in(v, budget).map_err(|e| {
                let msg = match e {
                    SelectorError::NoNonEmptyMatcher => {
                        "match[] must contain at least one non-empty matcher".to_string()
                    }
                    e => e.to_string(),
                };
                if as_param {
                    ApiError::invalid_param("match[]", msg)
                } else {
                    ApiError::bad_data(msg)
                }
            })
        })
        .collect()
}

/// A boolean parameter as Go's `strconv.ParseBool` reads it; `default` when absent or empty.
pub fn bool_param(form: &Form, name: &str, default: bool) -> Result<bool, ApiError> {
    match form.get(name) {
        None | Some("") => Ok(default),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(ApiError::bad_data(format!(
            "cannot parse parameter {name}: strconv.ParseBool: parsing {}: invalid syntax",
            quoted(v)
        ))),
    }
}

/// The `limit` parameter: 0 (no limit) when absent; negative or non-integer is bad data.
pub fn limit_param(form: &Form) -> Result<usize, ApiError> {
    match form.get("limit") {
        None | Some("") => Ok(0),
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| {
                ApiError::invalid_param(
                    "limit",
                    format!("strconv.Atoi: parsing {}: invalid syntax", quoted(v)),
                )
            })?;
            if n < 0 {
                return Err(ApiError::invalid_param(
                    "limit",
                    "limit must be non-negative",
                ));
            }
            Ok(n as usize)
        }
    }
}

/// What the `stats` parameter of a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsParam {
    /// No `stats` (or an empty one): the answer carries none.
    Off,
    /// Any other value: timings and sample counts.
    On,
    /// `stats=all`: the sample counts step by step as well.
    All,
}

/// The `stats` parameter, read as Prometheus reads it.
pub fn stats_param(form: &Form) -> StatsParam {
    match form.value("stats") {
        "" => StatsParam::Off,
        "all" => StatsParam::All,
        _ => StatsParam::On,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parameter_reads_as_prometheus_reads_it() {
        let read = |q: &str| stats_param(&Form::parse(Some(q), None).unwrap());
        assert_eq!(read("query=up"), StatsParam::Off);
        assert_eq!(read("stats="), StatsParam::Off);
        assert_eq!(read("stats=1"), StatsParam::On);
        assert_eq!(read("stats=ALL"), StatsParam::On);
        assert_eq!(read("stats=all"), StatsParam::All);
    }

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1735689600"), Ok(1_735_689_600_000));
        assert_eq!(parse_time("1735689600.5"), Ok(1_735_689_600_500));
        assert_eq!(parse_time("1735689600.1234"), Ok(1_735_689_600_123));
        assert_eq!(parse_time("-1.5"), Ok(-1500));
        assert_eq!(parse_time("2025-01-01T00:00:00Z"), Ok(1_735_689_600_000));
        assert_eq!(
            parse_time("2025-01-01T01:00:00.25+01:00"),
            Ok(1_735_689_600_250)
        );
        assert_eq!(parse_time(MIN_TIME_TEXT), Ok(MIN_TIME_MS));
        assert_eq!(parse_time(MAX_TIME_TEXT), Ok(MAX_TIME_MS));
        // Far outside any timestamp: an error, not an overflow (found by the http_api target).
        for far in ["-1e300", "1e300", "9.3e18", "-9.3e18"] {
            assert!(parse_time(far).is_err(), "{far}");
        }
        assert_eq!(
            parse_time("yesterday"),
            Err("cannot parse \"yesterday\" to a valid timestamp".into())
        );
        assert!(parse_time("2025-02-30T00:00:00Z").is_err());
        // Quoted as Go's %q quotes, not as Rust's Debug (`"\u{1}\u{7f}"`).
        assert_eq!(
            parse_time("\u{1}\u{7f}"),
            Err(r#"cannot parse "\x01\x7f" to a valid timestamp"#.into())
        );
    }

    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("15s"), Ok(15_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("1m500ms"), Ok(60_500));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400_000));
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1e30").is_err());
    }

    #[test]
    fn form_body_values_come_before_query_values() {
        let f = Form::parse(
            Some("match%5B%5D=up&time=2"),
            Some(b"match[]=a%7Bb%3D%22c+d%22%7D&time=1"),
        )
        .unwrap();
        assert_eq!(f.value("time"), "1");
        assert_eq!(f.all("match[]"), vec!["a{b=\"c d\"}", "up"]);
        assert_eq!(f.value("absent"), "");
    }

    #[test]
    fn errors_map_to_prometheus_statuses() {
        assert_eq!(ApiError::bad_data("x").status(), 400);
        assert_eq!(ApiError::internal("x").status(), 500);
        let e = ApiError::invalid_param("start", "cannot parse \"x\" to a valid timestamp");
        assert_eq!(
            e.message,
            "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"
        );
    }
}
