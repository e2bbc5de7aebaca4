//! Floats as Go's `strconv.FormatFloat(x, fmt, -1, 64)` writes them, for `fmt` `'g'`, `'e'` and
//! `'f'` (`%g` and `%v` of `fmt` print a float64 as `'g'` does).
//!
//! # Which digits
//!
//! Precision -1 asks for the shortest decimal that reads back as the same float64. Every
//! decimal inside the float's rounding interval reads back as it: half an ulp on either side
//! (a quarter of an ulp below a power of two, where the gap below is half as wide), the ends
//! included only when the binary mantissa is even (a parser rounds a halfway decimal to the
//! even mantissa). Go (`ftoaryu.go`, since Go 1.17) chooses among them so:
//!
//! 1. the fewest significant digits any decimal in the interval has;
//! 2. of the decimals with that many digits, the one nearest the exact value of the float;
//! 3. when two are equally near, the one whose last digit is even.
//!
//! Step 3 is reached when the float's exact binary value ends in a decimal 5 just past the last
//! kept digit, e.g. 1139863423205800.25, whose 17-digit candidates ...800.2 and ...800.3 both read
//! back: Go prints ...800.2. Rust's `{}` and `{:e}` round such ties up instead (...800.3).
//!
//! Ryū computes exactly these digits (it rounds the exact value half to even at the shortest
//! length the interval allows), so they come from the `ryu` crate and only their placement is
//! written here. The tests hold both to an exact big-number statement of the rule and to a
//! table of Go's own output (`testdata/gofloat/`).

/// Go's `fmt` byte for [`push_float`], with precision -1 (the shortest round-trip digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatFormat {
    /// `'g'`, and `fmt`'s `%g` and `%v`: exponent form when the decimal exponent of the
    /// shortest digits is below -4 or at least 6 (`1e-05`, `1.5e+06`), plain otherwise
    /// (`0.0001`, `123456.7`).
    G,
    /// `'e'`: one digit, the rest after a point, and an exponent of at least two digits
    /// (`1.5e-07`, `1e+21`, `0e+00`).
    E,
    /// `'f'`: plain digits, never an exponent (`100000000000000000000`, `0.0000001`).
    F,
}

/// Appends `v` as `strconv.FormatFloat(v, format, -1, 64)` writes it; `NaN`, `+Inf` and
/// `-Inf` for the values that are not finite, and `-0` keeps its sign.
pub fn push_float(out: &mut String, v: f64, format: FloatFormat) {
    if !v.is_finite() {
        push_not_finite(out, v);
        return;
    }
    match format {
        FloatFormat::F => push_f(out, v),
        FloatFormat::E => push_e(out, v),
        FloatFormat::G => {
            // The shortest digits of a float in [1e-4, 1e6) have a decimal exponent in
            // [-4, 5], and of no other float: only the float nearest a power of ten can print
            // as that power, so the digits and the value fall on the same side of both bounds.
            let a = v.abs();
            if a == 0.0 || (1e-4..1e6).contains(&a) {
                push_f(out, v);
            } else {
                push_e(out, v);
            }
        }
    }
}

/// `v` as `strconv.FormatFloat(v, format, -1, 64)` returns it.
pub fn format_float(v: f64, format: FloatFormat) -> String {
    let mut s = String::new();
    push_float(&mut s, v, format);
    s
}

/// Appends `v` as `fmt`'s `%.{prec}f` (and `strconv.FormatFloat(v, 'f', prec, 64)`) writes
/// it, as Prometheus's messages print factors and timestamps (`%f` is `%.6f`): `prec` digits
/// after the point, the exact binary value rounded half to even, every digit of a large one;
/// `NaN`, `+Inf` and `-Inf` for the values that are not finite (where Rust writes `NaN`,
/// `inf` and `-inf`); `-0` and negatives that round to zero keep their sign.
pub fn push_fixed(out: &mut String, v: f64, prec: usize) {
    if !v.is_finite() {
        push_not_finite(out, v);
        return;
    }
    // Rust's fixed precision is Go's for finite values: exact digits, ties to even, the sign
    // of -0 kept.
    let _ = std::fmt::Write::write_fmt(out, format_args!("{v:.prec$}"));
}

/// `v` as `fmt`'s `%.{prec}f` prints it; see [`push_fixed`].
pub fn format_fixed(v: f64, prec: usize) -> String {
    let mut s = String::new();
    push_fixed(&mut s, v, prec);
    s
}

/// Appends `v` as `fmt`'s `%.{prec}g` (and `strconv.FormatFloat(v, 'g', prec, 64)`) writes
/// it, as Prometheus's `humanize` template functions print with `%.4g`: `prec` significant
/// digits (at least one), the exact binary value rounded half to even, trailing zeros dropped;
/// exponent form when the decimal exponent is below -4 or at least the number of digits
/// asked for (the digits kept, when fewer and the value is whole).
pub fn push_general(out: &mut String, v: f64, prec: usize) {
    if !v.is_finite() {
        push_not_finite(out, v);
        return;
    }
    if v.is_sign_negative() {
        out.push('-');
    }
    if v == 0.0 {
        out.push('0');
        return;
    }
    // A float64 has at most 767 significant decimal digits; the zeros past them are trimmed
    // anyway (and Rust's formatter takes at most 65535).
    let prec = prec.clamp(1, 800);
    // Rust's exact `{:.Ne}` rounds the binary value half to even, as Go's decimal rounding does.
    let sci = format!("{:.*e}", prec - 1, v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    let exp: i64 = exp.parse().unwrap_or(0);
    let nd = digits.len() as i64;
    let dp = exp + 1;
    let mut eprec = prec as i64;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if exp < -4 || exp >= eprec {
        out.push(char::from(digits[0]));
        if digits.len() > 1 {
            out.push('.');
            digits[1..].iter().for_each(|&d| out.push(char::from(d)));
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(a));
        return;
    }
    if dp <= 0 {
        out.push_str("0.");
        (0..-dp).for_each(|_| out.push('0'));
        digits.iter().for_each(|&d| out.push(char::from(d)));
        return;
    }
    let dp = dp as usize;
    for i in 0..dp {
        out.push(char::from(*digits.get(i).unwrap_or(&b'0')));
    }
    if digits.len() > dp {
        out.push('.');
        digits[dp..].iter().for_each(|&d| out.push(char::from(d)));
    }
}

/// `v` as `fmt`'s `%.{prec}g` prints it; see [`push_general`].
pub fn format_general(v: f64, prec: usize) -> String {
    let mut s = String::new();
    push_general(&mut s, v, prec);
    s
}

/// Go's spelling of a NaN or an infinity, in every float format.
fn push_not_finite(out: &mut String, v: f64) {
    out.push_str(if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    });
}

/// Appends finite `v` as Go's `encoding/json` writes a float64: `'f'`, or `'e'` when
/// `|v| < 1e-6` or `|v| >= 1e21`, with a one-digit negative exponent shortened (`1e-7`, not
/// `1e-07`); `1e+21` keeps its sign and digits.
pub fn push_json_float(out: &mut String, v: f64) {
    let a = v.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        push_float(out, v, FloatFormat::E);
        let b = out.as_bytes();
        let n = b.len();
        if n >= 4 && &b[n - 4..n - 1] == b"e-0" {
            out.remove(n - 2);
        }
    } else {
        push_float(out, v, FloatFormat::F);
    }
}

/// 2^53: every whole number below it is a distinct float64, and its own shortest spelling.
const WHOLE_EXACT: f64 = 9_007_199_254_740_992.0;

/// Whether `v` is a non-zero whole number below 2^53 in magnitude, so its digits are those of
/// the integer.
#[inline]
fn small_whole(v: f64) -> bool {
    // Through i64 rather than `trunc`, which is a library call on the baseline x86-64 target.
    v != 0.0 && v.abs() < WHOLE_EXACT && v == (v as i64) as f64
}

/// `'f'` of finite `v`.
fn push_f(out: &mut String, v: f64) {
    if small_whole(v) {
        out.push_str(itoa::Buffer::new().format(v as i64));
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v);
    let a = v.abs();
    if a == 0.0 || (1e-5..1e16).contains(&a) {
        // Here ryu writes the digits positionally, as Go's 'f' does (the shortest digits are in
        // [1e-5, 1e16) exactly when the value is, as above), and marks whole numbers with a
        // `.0` Go leaves out.
        out.push_str(text.strip_suffix(".0").unwrap_or(text));
        return;
    }
    Digits::from_ryu(text).push_f(out);
}

/// `'e'` of finite `v`.
fn push_e(out: &mut String, v: f64) {
    if small_whole(v) {
        Digits::from_whole(v as i64).push_e(out);
        return;
    }
    let mut buf = ryu::Buffer::new();
    let text = buf.format_finite(v);
    if let Some(at) = text.bytes().position(|b| b == b'e') {
        // Outside [1e-5, 1e16) ryu writes Go's mantissa already (`-1.5e-7`, `1e300`): only
        // the exponent's sign and its second digit are missing.
        out.push_str(&text[..at]);
        let exp = &text[at + 1..];
        let digits = match exp.strip_prefix('-') {
            Some(digits) => {
                out.push_str("e-");
                digits
            }
            None => {
                out.push_str("e+");
                exp
            }
        };
        if digits.len() == 1 {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    Digits::from_ryu(text).push_e(out);
}

/// The shortest round-trip digits of a finite float, as Go's `decimalSlice` holds them: the
/// value is `0.d1d2d3... * 10^point`, with no leading or trailing zero digit (none at all for
/// zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digits {
    /// A `-` goes first (negative numbers and -0).
    negative: bool,
    /// ASCII digits; `len` of them are used. Ryū's are at most 17, a whole number's at most 16.
    buf: [u8; 24],
    len: u8,
    /// Where the decimal point goes: the value is `0.digits * 10^point`.
    pub(crate) point: i32,
}

impl Digits {
    /// The shortest round-trip digits of finite `v`.
    #[cfg(test)]
    pub(crate) fn shortest(v: f64) -> Digits {
        if small_whole(v) {
            Digits::from_whole(v as i64)
        } else {
            Digits::from_ryu(ryu::Buffer::new().format_finite(v))
        }
    }

    /// The used digits.
    pub(crate) fn digits(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The digits of a whole number, its trailing zeros dropped.
    fn from_whole(n: i64) -> Digits {
        let mut d = Digits {
            negative: n < 0,
            buf: [0; 24],
            len: 0,
            point: 0,
        };
        let mut itoa = itoa::Buffer::new();
        let text = itoa.format(n.unsigned_abs()).as_bytes();
        d.point = text.len() as i32;
        let used = text.iter().rposition(|&c| c != b'0').map_or(0, |i| i + 1);
        d.buf[..used].copy_from_slice(&text[..used]);
        d.len = used as u8;
        d
    }

    /// The digits in ryu's spelling of a finite float: `1.0`, `-0.00123`, `1.5e-7`, `1e300`.
    fn from_ryu(text: &str) -> Digits {
        let text = text.as_bytes();
        let (negative, text) = match text {
            [b'-', rest @ ..] => (true, rest),
            _ => (false, text),
        };
        let (mantissa, exp) = match text.iter().position(|&b| b == b'e') {
            Some(at) => (&text[..at], exponent(&text[at + 1..])),
            None => (text, 0),
        };
        let mut d = Digits {
            negative,
            buf: [0; 24],
            len: 0,
            point: 0,
        };
        // Digits seen before the mantissa's point, leading zeros included.
        let mut before_point = None;
        let mut seen = 0i32;
        for &b in mantissa {
            if b == b'.' {
                before_point = Some(seen);
                continue;
            }
            seen += 1;
            if d.len == 0 && b == b'0' {
                // A leading zero moves the point instead.
                d.point -= 1;
                continue;
            }
            if usize::from(d.len) < d.buf.len() {
                d.buf[usize::from(d.len)] = b;
                d.len += 1;
            }
        }
        d.point += before_point.unwrap_or(seen) + exp;
        while d.len > 0 && d.buf[usize::from(d.len) - 1] == b'0' {
            d.len -= 1;
        }
        if d.len == 0 {
            d.point = 0;
        }
        d
    }

    /// Go's `fmtE` with the precision of the digits: `d.ddde±dd`.
    fn push_e(&self, out: &mut String) {
        if self.negative {
            out.push('-');
        }
        let digits = self.digits();
        match digits {
            [] => out.push('0'),
            [first, rest @ ..] => {
                out.push(char::from(*first));
                if !rest.is_empty() {
                    out.push('.');
                    out.push_str(ascii(rest));
                }
            }
        }
        // Zero has exponent 0.
        let e = if digits.is_empty() { 0 } else { self.point - 1 };
        out.push_str(if e < 0 { "e-" } else { "e+" });
        let e = e.unsigned_abs();
        if e < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(e));
    }

    /// Go's `fmtF` with the precision of the digits: plain digits, a point only before a
    /// fraction.
    fn push_f(&self, out: &mut String) {
        if self.negative {
            out.push('-');
        }
        let d = self.digits();
        let point = self.point;
        if d.is_empty() {
            out.push('0');
        } else if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
            out.push_str(ascii(d));
        } else if point as usize >= d.len() {
            out.push_str(ascii(d));
            out.extend(std::iter::repeat_n('0', point as usize - d.len()));
        } else {
            let (whole, fraction) = d.split_at(point as usize);
            out.push_str(ascii(whole));
            out.push('.');
            out.push_str(ascii(fraction));
        }
    }
}

/// The value of ryu's exponent digits, `-` first when negative.
fn exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    let e = digits
        .iter()
        .fold(0i32, |e, &d| e * 10 + i32::from(d.wrapping_sub(b'0')));
    if negative { -e } else { e }
}

/// Digits as text (they are ASCII).
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("0")
}
