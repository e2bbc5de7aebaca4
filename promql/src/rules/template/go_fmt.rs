//! Go's comparisons and `fmt` over template values: `eq`…`ge`, `printf`, `print`, `println`
//! and `urlquery`, replacing gtmpl's builtins (see the parent module on why).

use super::*;

// ---------------------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------------------

/// How two values compare, Go's way where the kinds agree (see the module docs where not).
pub(super) fn compare(
    name: &str,
    a: &Value,
    b: &Value,
) -> Result<Option<std::cmp::Ordering>, FuncError> {
    let num = |v: &Value| match v {
        Value::Number(n) => Some(number_f64(n)),
        Value::String(s) => parse_float(s).ok(),
        _ => None,
    };
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Some(x.cmp(y))),
        (Value::Bool(x), Value::Bool(y)) if name == "eq" || name == "ne" => Ok(Some(x.cmp(y))),
        (Value::Bool(_), Value::Bool(_)) => Err(calling(name, "invalid type for comparison")),
        (Value::Number(_), _) | (_, Value::Number(_)) => match (num(a), num(b)) {
            (Some(x), Some(y)) => Ok(x.partial_cmp(&y)),
            _ => Err(calling(name, "incompatible types for comparison")),
        },
        _ => Err(calling(name, "invalid type for comparison")),
    }
}

pub(super) fn f_eq(args: &[Value]) -> Result<Value, FuncError> {
    if args.len() < 2 {
        return Err(calling("eq", "missing argument for comparison"));
    }
    for b in &args[1..] {
        if compare("eq", &args[0], b)? == Some(std::cmp::Ordering::Equal) {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

pub(super) fn f_ne(args: &[Value]) -> Result<Value, FuncError> {
    arity("ne", args, 2)?;
    Ok(Value::Bool(
        compare("ne", &args[0], &args[1])? != Some(std::cmp::Ordering::Equal),
    ))
}

pub(super) fn ordered(
    name: &str,
    args: &[Value],
    ok: fn(std::cmp::Ordering) -> bool,
) -> Result<Value, FuncError> {
    arity(name, args, 2)?;
    Ok(Value::Bool(
        compare(name, &args[0], &args[1])?.is_some_and(ok),
    ))
}

pub(super) fn f_lt(args: &[Value]) -> Result<Value, FuncError> {
    ordered("lt", args, std::cmp::Ordering::is_lt)
}

pub(super) fn f_le(args: &[Value]) -> Result<Value, FuncError> {
    ordered("le", args, std::cmp::Ordering::is_le)
}

pub(super) fn f_gt(args: &[Value]) -> Result<Value, FuncError> {
    ordered("gt", args, std::cmp::Ordering::is_gt)
}

pub(super) fn f_ge(args: &[Value]) -> Result<Value, FuncError> {
    ordered("ge", args, std::cmp::Ordering::is_ge)
}

// ---------------------------------------------------------------------------------------------
// printf, print, println, urlquery: Go's fmt
// ---------------------------------------------------------------------------------------------

/// Go's `%v` of a value.
pub(super) fn go_v(v: &Value, out: &mut String) {
    match v {
        Value::NoValue => out.push_str("<no value>"),
        Value::Nil => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::String(s) => out.push_str(s),
        Value::Number(n) => match n.as_f64() {
            Some(f) => out.push_str(&format_float(f, FloatFormat::G)),
            None => out.push_str(&n.to_string()),
        },
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                go_v(x, out);
            }
            out.push(']');
        }
        Value::Object(m) | Value::Map(m) => {
            out.push_str(if matches!(v, Value::Map(_)) {
                "map["
            } else {
                "{"
            });
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            for (i, (k, x)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(k);
                out.push(':');
                go_v(x, out);
            }
            out.push(if matches!(v, Value::Map(_)) { ']' } else { '}' });
        }
        Value::Function(_) => out.push_str("<func>"),
    }
}

/// One `%` directive's flags, width and precision.
#[derive(Default)]
pub(super) struct Spec {
    minus: bool,
    plus: bool,
    zero: bool,
    space: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    /// Pads `body` (its sign, if any, first) to the width.
    fn pad(&self, body: &str, numeric: bool, out: &mut String) {
        let n = body.chars().count();
        let w = self.width.unwrap_or(0);
        if n >= w {
            out.push_str(body);
        } else if self.minus {
            out.push_str(body);
            (n..w).for_each(|_| out.push(' '));
        } else if self.zero && (numeric || !self.minus) {
            let (sign, digits) = match body.as_bytes().first() {
                Some(b'-' | b'+' | b' ') if numeric => body.split_at(1),
                _ => ("", body),
            };
            out.push_str(sign);
            (n..w).for_each(|_| out.push('0'));
            out.push_str(digits);
        } else {
            (n..w).for_each(|_| out.push(' '));
            out.push_str(body);
        }
    }

    fn signed(&self, neg: bool, digits: &str) -> String {
        let sign = if neg {
            "-"
        } else if self.plus {
            "+"
        } else if self.space {
            " "
        } else {
            ""
        };
        format!("{sign}{digits}")
    }
}

/// A value as an integer for `%d`, `%x`, `%c` and `%q`, when it is one.
pub(super) fn as_int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) if n.as_f64().is_none() => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
}

/// A value as a float for `%f`, `%e` and `%g`: a float, or a string holding one.
pub(super) fn as_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_float(s).ok(),
        _ => None,
    }
}

pub(super) fn fmt_float(spec: &Spec, verb: char, f: f64) -> String {
    if !f.is_finite() {
        let s = if f.is_nan() {
            "NaN".to_string()
        } else {
            spec.signed(f < 0.0, "Inf")
        };
        return if f.is_nan() && (spec.plus || spec.space) {
            format!("{}NaN", if spec.plus { '+' } else { ' ' })
        } else {
            s
        };
    }
    let neg = f.is_sign_negative();
    let a = f.abs();
    // A float64's exact decimal expansion ends within 1100 places (767 significant digits);
    // Rust's formatter takes at most 65535, so longer precisions are zeros appended.
    let zeros = |p: usize, cap: usize| "0".repeat(p.saturating_sub(cap));
    let digits = match (verb, spec.prec) {
        ('f' | 'F', p) => {
            let p = p.unwrap_or(6);
            format!("{a:.*}{}", p.min(1100), zeros(p, 1100))
        }
        ('e' | 'E', p) => {
            let p = p.unwrap_or(6);
            let e = go_exp(&format!("{a:.*e}", p.min(800)));
            match e.split_once('e') {
                Some((m, x)) => format!("{m}{}e{x}", zeros(p, 800)),
                None => e,
            }
        }
        ('g' | 'G' | 'v', Some(p)) => format_general(a, p),
        _ => format_float(a, FloatFormat::G),
    };
    let digits = if verb.is_ascii_uppercase() {
        digits.to_uppercase()
    } else {
        digits
    };
    spec.signed(neg, &digits)
}

/// Rust's `1.5e6` as Go's `1.5e+06`.
pub(super) fn go_exp(rust: &str) -> String {
    match rust.split_once('e') {
        Some((m, e)) => {
            let (sign, d) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            format!("{m}e{sign}{d:0>2}")
        }
        None => rust.to_string(),
    }
}

/// Go's `%!verb(type=value)` for an argument the verb cannot print.
pub(super) fn bad_verb(verb: char, v: &Value, out: &mut String) {
    out.push_str(&format!("%!{verb}({}=", go_type(v)));
    go_v(v, out);
    out.push(')');
}

pub(super) fn fmt_one(spec: &Spec, verb: char, v: &Value, out: &mut String) {
    match verb {
        'v' => {
            if let (Value::Number(n), true) = (v, spec.prec.is_some())
                && let Some(f) = n.as_f64()
            {
                return spec.pad(&fmt_float(spec, 'g', f), true, out);
            }
            let mut s = String::new();
            go_v(v, &mut s);
            spec.pad(&s, false, out);
        }
        's' => match v {
            Value::String(s) => {
                let s: String = match spec.prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                };
                spec.pad(&s, false, out);
            }
            Value::Bool(_) | Value::Number(_) | Value::Nil | Value::NoValue => {
                bad_verb(verb, v, out)
            }
            _ => {
                let mut s = String::new();
                go_v(v, &mut s);
                spec.pad(&s, false, out);
            }
        },
        'q' => match (v, as_int(v)) {
            (Value::String(s), _) => spec.pad(&quoted(s), false, out),
            (_, Some(i)) => match u32::try_from(i).ok().and_then(char::from_u32) {
                Some(c) => spec.pad(&quoted_rune(c), false, out),
                None => spec.pad("'�'", false, out),
            },
            _ => bad_verb(verb, v, out),
        },
        'd' => match as_int(v) {
            Some(i) => {
                let s = spec.signed(i < 0, &i.unsigned_abs().to_string());
                spec.pad(&s, true, out);
            }
            None => bad_verb(verb, v, out),
        },
        'x' | 'X' => {
            let s = match (v, as_int(v)) {
                (_, Some(i)) => spec.signed(i < 0, &format!("{:x}", i.unsigned_abs())),
                (Value::String(s), _) => s.bytes().map(|b| format!("{b:02x}")).collect(),
                _ => return bad_verb(verb, v, out),
            };
            let s = if verb == 'X' { s.to_uppercase() } else { s };
            spec.pad(&s, true, out);
        }
        'c' => match as_int(v)
            .and_then(|i| u32::try_from(i).ok())
            .and_then(char::from_u32)
        {
            Some(c) => spec.pad(&c.to_string(), false, out),
            None => bad_verb(verb, v, out),
        },
        't' => match v {
            Value::Bool(b) => spec.pad(if *b { "true" } else { "false" }, false, out),
            _ => bad_verb(verb, v, out),
        },
        'f' | 'F' | 'e' | 'E' | 'g' | 'G' => match as_float(v) {
            Some(f) => spec.pad(&fmt_float(spec, verb, f), true, out),
            None => bad_verb(verb, v, out),
        },
        _ => bad_verb(verb, v, out),
    }
}

/// Go's `fmt.Sprintf` over template values.
pub(super) fn sprintf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0usize;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if out.len() > MAX_OUTPUT_BYTES {
            return Err(too_long());
        }
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '0' => spec.zero = !spec.minus,
                ' ' => spec.space = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize));
                chars.next();
            }
            n
        };
        spec.width = number(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(number(&mut chars).unwrap_or(0));
        }
        // Go refuses widths and precisions above a million, as `%!(BADWIDTH)`.
        if spec.width.is_some_and(|w| w > 1_000_000) {
            out.push_str("%!(BADWIDTH)");
            spec.width = None;
        }
        if spec.prec.is_some_and(|p| p > 1_000_000) {
            out.push_str("%!(BADPREC)");
            spec.prec = None;
        }
        if spec.width.unwrap_or(0) + spec.prec.unwrap_or(0) + out.len() > MAX_OUTPUT_BYTES {
            return Err(too_long());
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        match args.get(next) {
            Some(v) => fmt_one(&spec, verb, v, &mut out),
            None => out.push_str(&format!("%!{verb}(MISSING)")),
        }
        next += 1;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, v) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(go_type(v));
            out.push('=');
            go_v(v, &mut out);
        }
        out.push(')');
    }
    Ok(out)
}

pub(super) fn f_printf(args: &[Value]) -> Result<Value, FuncError> {
    let Some(format) = args.first() else {
        return Err(FuncError::Generic(
            "wrong number of args for printf: want at least 1 got 0".into(),
        ));
    };
    let s = sprintf(want_str(format)?, &args[1..]).map_err(|e| calling("printf", e))?;
    bounded("printf", s)
}

/// Go's `fmt.Sprint`: operands as `%v`, a space between two that are not strings.
pub(super) fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::String(_));
        if i > 0 && !is_str(a) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        go_v(a, &mut out);
    }
    out
}

pub(super) fn f_print(args: &[Value]) -> Result<Value, FuncError> {
    bounded("print", sprint(args))
}

pub(super) fn f_println(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        go_v(a, &mut out);
    }
    out.push('\n');
    bounded("println", out)
}

pub(super) fn f_urlquery(args: &[Value]) -> Result<Value, FuncError> {
    bounded("urlquery", query_escape(&sprint(args)))
}
