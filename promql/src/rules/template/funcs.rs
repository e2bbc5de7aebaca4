//! Prometheus's template functions (`query`, `humanize`, `graphLink`, …), and `len`, which
//! gtmpl's builtins lack for maps.

use super::*;

pub(super) type Func = fn(&[Value]) -> Result<Value, FuncError>;

/// Prometheus's template functions, and Go-faithful versions of the builtins gtmpl gets wrong.
pub(super) const FUNCS: &[(&str, Func)] = &[
    ("query", f_query),
    ("first", f_first),
    ("label", f_label),
    ("value", f_value),
    ("strvalue", f_strvalue),
    ("args", f_args),
    ("reReplaceAll", f_re_replace_all),
    ("safeHtml", f_safe_html),
    ("match", f_match),
    ("title", f_title),
    ("toUpper", f_to_upper),
    ("toLower", f_to_lower),
    ("graphLink", f_graph_link),
    ("tableLink", f_table_link),
    ("sortByLabel", f_sort_by_label),
    ("stripPort", f_strip_port),
    ("stripDomain", f_strip_domain),
    ("humanize", f_humanize),
    ("humanize1024", f_humanize1024),
    ("humanizeDuration", f_humanize_duration),
    ("humanizePercentage", f_humanize_percentage),
    ("humanizeTimestamp", f_humanize_timestamp),
    ("toTime", f_to_time),
    ("toDuration", f_to_duration),
    ("now", f_now),
    ("pathPrefix", f_path_prefix),
    ("externalURL", f_external_url),
    ("parseDuration", f_parse_duration),
    ("urlQueryEscape", f_url_query_escape),
    ("eq", f_eq),
    ("ne", f_ne),
    ("lt", f_lt),
    ("le", f_le),
    ("gt", f_gt),
    ("ge", f_ge),
    ("printf", f_printf),
    ("print", f_print),
    ("println", f_println),
    ("urlquery", f_urlquery),
    ("len", f_len),
];

/// Go's `len`: bytes of a string, elements of a list, entries of a map (gtmpl's has no maps).
pub(super) fn f_len(args: &[Value]) -> Result<Value, FuncError> {
    arity("len", args, 1)?;
    match &args[0] {
        Value::String(s) => Ok(Value::from(s.len())),
        Value::Array(a) => Ok(Value::from(a.len())),
        Value::Map(m) | Value::Object(m) => Ok(Value::from(m.len())),
        other => Err(calling("len", format!("len of type {}", go_type(other)))),
    }
}

/// Go's error for a call with the wrong number of arguments.
pub(super) fn arity(name: &str, args: &[Value], want: usize) -> Result<(), FuncError> {
    if args.len() == want {
        return Ok(());
    }
    Err(FuncError::Generic(format!(
        "wrong number of args for {name}: want {want} got {}",
        args.len()
    )))
}

/// An error a function returned, as Go's template reports it.
pub(super) fn calling(name: &str, msg: impl std::fmt::Display) -> FuncError {
    FuncError::Generic(format!("error calling {name}: {msg}"))
}

/// Go's error for an argument of the wrong type.
pub(super) fn wrong_type(want: &str, got: &Value) -> FuncError {
    FuncError::Generic(format!(
        "wrong type for value; expected {want}; got {}",
        go_type(got)
    ))
}

pub(super) fn want_str(v: &Value) -> Result<&str, FuncError> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(wrong_type("string", other)),
    }
}

pub(super) fn want_sample(v: &Value) -> Result<&HashMap<String, Value>, FuncError> {
    match v {
        Value::Object(o) => Ok(o),
        other => Err(wrong_type("*template.sample", other)),
    }
}

pub(super) fn want_result(v: &Value) -> Result<&Vec<Value>, FuncError> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(wrong_type("template.queryResult", other)),
    }
}

/// A function's string result, refused when longer than [`MAX_OUTPUT_BYTES`].
pub(super) fn bounded(name: &str, s: String) -> Result<Value, FuncError> {
    if s.len() > MAX_OUTPUT_BYTES {
        return Err(calling(name, too_long()));
    }
    Ok(Value::String(s))
}

pub(super) fn sample_label<'v>(sample: &'v HashMap<String, Value>, label: &str) -> &'v str {
    match sample.get("Labels") {
        Some(Value::Map(m)) => match m.get(label) {
            Some(Value::String(s)) => s,
            _ => "",
        },
        _ => "",
    }
}

pub(super) fn f_query(args: &[Value]) -> Result<Value, FuncError> {
    arity("query", args, 1)?;
    let expr = want_str(&args[0])?.to_string();
    let answer = env_get(|env| match &env.query {
        Some((tx, rx)) => tx
            .send(expr)
            .map_err(|_| "the querier is gone".to_string())
            .and_then(|()| rx.recv().map_err(|_| "the querier is gone".to_string()))
            .and_then(|r| r),
        None => Err("no querier for template queries".to_string()),
    })?;
    let samples = answer.map_err(|e| calling("query", e))?;
    let padded = env_get(|env| env.padded.clone())?;
    Ok(Value::Array(
        samples
            .iter()
            .map(|s| {
                let mut o = HashMap::new();
                o.insert("Labels".to_string(), label_map(&s.labels, &padded));
                o.insert("Value".to_string(), template_value(&s.value));
                Value::Object(o)
            })
            .collect(),
    ))
}

pub(super) fn f_first(args: &[Value]) -> Result<Value, FuncError> {
    arity("first", args, 1)?;
    want_result(&args[0])?
        .first()
        .cloned()
        .ok_or_else(|| calling("first", "first() called on vector with no elements"))
}

pub(super) fn f_label(args: &[Value]) -> Result<Value, FuncError> {
    arity("label", args, 2)?;
    let label = want_str(&args[0])?;
    let sample = want_sample(&args[1])?;
    Ok(Value::String(sample_label(sample, label).to_string()))
}

pub(super) fn f_value(args: &[Value]) -> Result<Value, FuncError> {
    arity("value", args, 1)?;
    Ok(want_sample(&args[0])?
        .get("Value")
        .cloned()
        .unwrap_or(Value::Nil))
}

pub(super) fn f_strvalue(args: &[Value]) -> Result<Value, FuncError> {
    arity("strvalue", args, 1)?;
    let sample = want_sample(&args[0])?;
    Ok(Value::String(sample_label(sample, "__value__").to_string()))
}

pub(super) fn f_args(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Map(
        args.iter()
            .enumerate()
            .map(|(i, a)| (format!("arg{i}"), a.clone()))
            .collect(),
    ))
}

/// Compiles a template's regex; Go's `MustCompile` panics on a bad one, which Prometheus turns
/// into the expansion's error.
pub(super) fn regex(pattern: &str) -> Result<regex::Regex, FuncError> {
    regex::Regex::new(pattern).map_err(|e| {
        FuncError::Generic(format!(
            "regexp: Compile({}): {}",
            quoted(pattern),
            e.to_string().lines().last().unwrap_or_default().trim()
        ))
    })
}

pub(super) fn f_re_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    arity("reReplaceAll", args, 3)?;
    let re = regex(want_str(&args[0])?)?;
    let repl = want_str(&args[1])?;
    let text = want_str(&args[2])?;
    // Go expands `$1`, `${1}` and `$name` in the replacement as the regex crate does.
    bounded("reReplaceAll", re.replace_all(text, repl).into_owned())
}

pub(super) fn f_safe_html(args: &[Value]) -> Result<Value, FuncError> {
    arity("safeHtml", args, 1)?;
    Ok(Value::String(want_str(&args[0])?.to_string()))
}

pub(super) fn f_match(args: &[Value]) -> Result<Value, FuncError> {
    arity("match", args, 2)?;
    let re = regex(want_str(&args[0])?).map_err(|e| calling("match", e))?;
    Ok(Value::Bool(re.is_match(want_str(&args[1])?)))
}

pub(super) fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    arity("title", args, 1)?;
    // `cases.Title(language.AmericanEnglish, cases.NoLower)`: the first letter of each word
    // upper-cased, the rest left as written.
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in want_str(&args[0])?.chars() {
        let starts_word = prev.is_none_or(|p| !(p.is_alphanumeric() || p == '\'' || p == '’'));
        if starts_word && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    bounded("title", out)
}

pub(super) fn f_to_upper(args: &[Value]) -> Result<Value, FuncError> {
    arity("toUpper", args, 1)?;
    bounded("toUpper", want_str(&args[0])?.to_uppercase())
}

pub(super) fn f_to_lower(args: &[Value]) -> Result<Value, FuncError> {
    arity("toLower", args, 1)?;
    bounded("toLower", want_str(&args[0])?.to_lowercase())
}

/// Go's `url.QueryEscape`.
pub(super) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
            }
        }
    }
    out
}

pub(super) fn f_graph_link(args: &[Value]) -> Result<Value, FuncError> {
    arity("graphLink", args, 1)?;
    let e = query_escape(want_str(&args[0])?);
    bounded("graphLink", format!("/graph?g0.expr={e}&g0.tab=0"))
}

pub(super) fn f_table_link(args: &[Value]) -> Result<Value, FuncError> {
    arity("tableLink", args, 1)?;
    let e = query_escape(want_str(&args[0])?);
    bounded("tableLink", format!("/graph?g0.expr={e}&g0.tab=1"))
}

pub(super) fn f_url_query_escape(args: &[Value]) -> Result<Value, FuncError> {
    arity("urlQueryEscape", args, 1)?;
    bounded("urlQueryEscape", query_escape(want_str(&args[0])?))
}

pub(super) fn f_sort_by_label(args: &[Value]) -> Result<Value, FuncError> {
    arity("sortByLabel", args, 2)?;
    let label = want_str(&args[0])?;
    let mut v = want_result(&args[1])?.clone();
    v.sort_by(|a, b| {
        let key = |s: &Value| match s {
            Value::Object(o) => sample_label(o, label).to_string(),
            _ => String::new(),
        };
        key(a).cmp(&key(b))
    });
    Ok(Value::Array(v))
}

/// Go's `net.SplitHostPort`: host and port, or `None` where it returns an error.
pub(super) fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    let i = hp.rfind(':')?;
    let (host, j, k) = if hp.starts_with('[') {
        let end = hp.find(']')?;
        if end + 1 != i {
            return None;
        }
        (&hp[1..end], 1, end + 1)
    } else {
        let host = &hp[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if hp[j..].contains('[') || hp[k..].contains(']') {
        return None;
    }
    Some((host, &hp[i + 1..]))
}

pub(super) fn f_strip_port(args: &[Value]) -> Result<Value, FuncError> {
    arity("stripPort", args, 1)?;
    let hp = want_str(&args[0])?;
    Ok(Value::String(
        split_host_port(hp).map_or(hp, |(h, _)| h).to_string(),
    ))
}

pub(super) fn f_strip_domain(args: &[Value]) -> Result<Value, FuncError> {
    arity("stripDomain", args, 1)?;
    let hp = want_str(&args[0])?;
    let (host, port) = split_host_port(hp).unwrap_or((hp, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(Value::String(hp.to_string()));
    }
    let host = host.split('.').next().unwrap_or_default();
    Ok(Value::String(if port.is_empty() {
        host.to_string()
    } else if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }))
}

/// The single argument as a float, or the function's error.
pub(super) fn float_arg(name: &str, args: &[Value]) -> Result<f64, FuncError> {
    arity(name, args, 1)?;
    to_float(&args[0]).map_err(|e| calling(name, e))
}

/// `v` scaled by `step` until below it, with the SI or binary prefix it took.
pub(super) fn humanize_with(
    mut v: f64,
    step: f64,
    prefixes: &[&'static str],
) -> (f64, &'static str) {
    let mut prefix = "";
    for p in prefixes {
        if v.abs() < step {
            break;
        }
        prefix = p;
        v /= step;
    }
    (v, prefix)
}

/// `v` scaled up by 1000 until at least 1, with the SI prefix it took.
pub(super) fn humanize_small(mut v: f64) -> (f64, &'static str) {
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    (v, prefix)
}

pub(super) fn f_humanize(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanize", args)?;
    if v == 0.0 || !v.is_finite() {
        return Ok(Value::String(format_general(v, 4)));
    }
    let (v, prefix) = if v.abs() >= 1.0 {
        humanize_with(v, 1000.0, &["k", "M", "G", "T", "P", "E", "Z", "Y"])
    } else {
        humanize_small(v)
    };
    Ok(Value::String(format!("{}{prefix}", format_general(v, 4))))
}

pub(super) fn f_humanize1024(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanize1024", args)?;
    if v.abs() <= 1.0 || !v.is_finite() {
        return Ok(Value::String(format_general(v, 4)));
    }
    let prefixes = ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"];
    let (v, prefix) = humanize_with(v, 1024.0, &prefixes);
    Ok(Value::String(format!("{}{prefix}", format_general(v, 4))))
}

pub(super) fn f_humanize_duration(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanizeDuration", args)?;
    if !v.is_finite() {
        return Ok(Value::String(format_general(v, 4)));
    }
    if v == 0.0 {
        return Ok(Value::String(format!("{}s", format_general(v, 4))));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let a = v.abs();
        let whole = a as i64;
        let (s, m, h, d) = (
            whole % 60,
            (whole / 60) % 60,
            (whole / 3600) % 24,
            whole / 86_400,
        );
        return Ok(Value::String(if d != 0 {
            format!("{sign}{d}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", format_general(a, 4))
        }));
    }
    let (v, prefix) = humanize_small(v);
    Ok(Value::String(format!("{}{prefix}s", format_general(v, 4))))
}

pub(super) fn f_humanize_percentage(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanizePercentage", args)?;
    Ok(Value::String(format!("{}%", format_general(v * 100.0, 4))))
}

/// Prometheus's `floatToTime`, to ms since the epoch (a `model.Time`'s precision); `Ok(None)`
/// for NaN and the infinities.
pub(super) fn float_to_ms(v: f64) -> Result<Option<i64>, String> {
    if !v.is_finite() {
        return Ok(None);
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_float(v, FloatFormat::G)
        ));
    }
    Ok(Some((ns as i64) / 1_000_000))
}

/// Go's `time.Time.String()` of a UTC time, `ms` since the epoch:
/// `2015-06-23 13:19:44.128 +0000 UTC`.
pub(super) fn go_time_string(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let year = if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("{y:04}")
    };
    let mut s = format!(
        "{year}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        s.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

pub(super) fn f_humanize_timestamp(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("humanizeTimestamp", args)?;
    match float_to_ms(v).map_err(|e| calling("humanizeTimestamp", e))? {
        Some(ms) => Ok(Value::String(go_time_string(ms))),
        None => Ok(Value::String(format_general(v, 4))),
    }
}

pub(super) fn f_to_time(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("toTime", args)?;
    match float_to_ms(v).map_err(|e| calling("toTime", e))? {
        Some(ms) => Ok(Value::String(go_time_string(ms))),
        None => Err(calling("toTime", "value is NaN or Inf")),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `30m0s`, `1.5ms`, `0s`.
pub(crate) fn go_duration_string(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let with_frac = |whole: u64, frac: u64, width: usize| {
        let f = format!("{frac:0width$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{f}")
        }
    };
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", with_frac(u / 1_000, u % 1_000, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", with_frac(u / 1_000_000, u % 1_000_000, 6));
    }
    let secs = u / 1_000_000_000;
    let s = with_frac(secs % 60, u % 1_000_000_000, 9);
    let (m, h) = ((secs / 60) % 60, secs / 3600);
    if h > 0 {
        format!("{sign}{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{sign}{m}m{s}s")
    } else {
        format!("{sign}{s}s")
    }
}

pub(super) fn f_to_duration(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg("toDuration", args)?;
    Ok(Value::String(go_duration_string((v * 1e9) as i64)))
}

pub(super) fn f_now(args: &[Value]) -> Result<Value, FuncError> {
    arity("now", args, 0)?;
    env_get(|env| float_value(env.ts_ms as f64 / 1000.0))
}

/// The path of an absolute URL (`http://host:9090/prefix?x` → `/prefix`).
pub(super) fn url_path(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = match after_scheme.find('/') {
        Some(i) if url.contains("://") => &after_scheme[i..],
        Some(_) | None if url.contains("://") => "",
        _ => after_scheme,
    };
    path.split(['?', '#']).next().unwrap_or_default()
}

pub(super) fn f_path_prefix(args: &[Value]) -> Result<Value, FuncError> {
    arity("pathPrefix", args, 0)?;
    env_get(|env| Value::String(url_path(&env.external_url).to_string()))
}

pub(super) fn f_external_url(args: &[Value]) -> Result<Value, FuncError> {
    arity("externalURL", args, 0)?;
    env_get(|env| Value::String(env.external_url.clone()))
}

pub(super) fn f_parse_duration(args: &[Value]) -> Result<Value, FuncError> {
    arity("parseDuration", args, 1)?;
    let s = want_str(&args[0])?;
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let ms = crate::parse_duration_ms(body).ok_or_else(|| {
        calling(
            "parseDuration",
            format!("not a valid duration string: {}", quoted(s)),
        )
    })?;
    let secs = ms as f64 / 1000.0;
    Ok(float_value(if neg { -secs } else { secs }))
}
