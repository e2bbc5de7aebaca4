//! Prometheus's HTTP API JSON, written by hand so numbers, escaping and key order come out
//! byte for byte as Prometheus writes them (Grafana and the Thanos UI parse either, but
//! differential tests compare bytes).

use std::fmt::Write as _;

use gauntlet_engine::error::{MESSAGE_BYTES, clip};
use gauntlet_engine::go_format::{FloatFormat, push_float};
use gauntlet_engine::histogram::FloatHistogram;
use gauntlet_engine::labels::Labels;

/// Appends `s` as a JSON string the way Go's `encoding/json` does: HTML-sensitive characters
/// and U+2028/U+2029 escaped, invalid UTF-8 impossible here (Rust strings).
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // Runs of characters written as they are go in whole; escapes start at ASCII bytes or at
    // 0xE2 (the first byte of U+2028 and U+2029), so every cut falls between characters.
    let (mut from, mut i) = (0, 0);
    while i < bytes.len() {
        let (escaped, width): (&str, usize) = match bytes[i] {
            b'"' => ("\\\"", 1),
            b'\\' => ("\\\\", 1),
            b'\n' => ("\\n", 1),
            b'\r' => ("\\r", 1),
            b'\t' => ("\\t", 1),
            0x08 => ("\\b", 1),
            0x0c => ("\\f", 1),
            b'<' => ("\\u003c", 1),
            b'>' => ("\\u003e", 1),
            b'&' => ("\\u0026", 1),
            0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA8) => {
                ("\\u2028", 3)
            }
            0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA9) => {
                ("\\u2029", 3)
            }
            c if c < 0x20 => ("", 1),
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[from..i]);
        if escaped.is_empty() {
            let _ = write!(out, "\\u{:04x}", bytes[i]);
        } else {
            out.push_str(escaped);
        }
        i += width;
        from = i;
    }
    out.push_str(&s[from..]);
    out.push('"');
}

/// Appends a label set as a JSON object in label order.
pub fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, &l.name);
        out.push(':');
        push_str(out, &l.value);
    }
    out.push('}');
}

/// Appends a timestamp in ms as Prometheus does: integer seconds, then `.` and exactly three
/// digits when the ms part is not zero (`1.500`, `1.005`).
pub fn push_ts(out: &mut String, t_ms: i64) {
    let mut buf = [0u8; TS_MAX];
    let n = ts_text(t_ms, &mut buf);
    out.push_str(ascii(&buf[..n]));
}

/// Longest timestamp text: `-9223372036854775.808`.
const TS_MAX: usize = 24;

/// Writes [`push_ts`]'s spelling of `t_ms` to the front of `buf`, returning its length.
fn ts_text(t_ms: i64, buf: &mut [u8; TS_MAX]) -> usize {
    let mut n = 0;
    if t_ms < 0 {
        buf[0] = b'-';
        n = 1;
    }
    let abs = t_ms.unsigned_abs();
    let mut itoa_buf = itoa::Buffer::new();
    let secs = itoa_buf.format(abs / 1000).as_bytes();
    buf[n..n + secs.len()].copy_from_slice(secs);
    n += secs.len();
    let frac = abs % 1000;
    if frac != 0 {
        let digit = |d: u64| b'0' + d as u8;
        buf[n..n + 4].copy_from_slice(&[
            b'.',
            digit(frac / 100),
            digit(frac / 10 % 10),
            digit(frac % 10),
        ]);
        n += 4;
    }
    n
}

/// Timestamps as [`push_ts`] spells them, remembered: an answer writes the same few times over
/// and over (each series of a range answer has the same steps, each sample of an instant
/// answer the same time), and copying the text costs less than writing it again.
pub struct TsText {
    /// Direct-mapped by a hash of the time: the time and its text's length (0: empty slot).
    slots: Box<[(i64, u8)]>,
    /// The slots' texts, [`TS_MAX`] bytes each.
    text: String,
}

impl TsText {
    /// Slots; a range answer of up to 11 000 steps per series (Prometheus's limit) keeps the
    /// steps of a few hundred consecutive points in them.
    const SLOTS: usize = 256;

    /// An empty memo.
    pub fn new() -> Self {
        Self {
            slots: vec![(0, 0); Self::SLOTS].into_boxed_slice(),
            text: " ".repeat(Self::SLOTS * TS_MAX),
        }
    }

    /// Appends `t_ms` as [`push_ts`] does.
    pub fn push(&mut self, out: &mut String, t_ms: i64) {
        let i = ((t_ms as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % Self::SLOTS;
        let at = i * TS_MAX;
        let slot = &mut self.slots[i];
        if slot.1 == 0 || slot.0 != t_ms {
            let mut buf = [b' '; TS_MAX];
            let n = ts_text(t_ms, &mut buf);
            self.text.replace_range(at..at + TS_MAX, ascii(&buf));
            *slot = (t_ms, n as u8);
        }
        out.push_str(&self.text[at..at + usize::from(slot.1)]);
    }
}

impl Default for TsText {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends a sample value as a JSON string as Prometheus writes it: Go's
/// `strconv.FormatFloat(v, 'f', -1, 64)`, or `'e'` (`3e-09`, `1e+21`) when `|v| < 1e-6` or
/// `|v| >= 1e21`; `NaN`, `+Inf`, `-Inf`.
pub fn push_value(out: &mut String, v: f64) {
    out.push('"');
    let a = v.abs();
    let format = if a != 0.0 && !(1e-6..1e21).contains(&a) {
        FloatFormat::E
    } else {
        FloatFormat::F
    };
    push_float(out, v, format);
    out.push('"');
}

/// Digits as text (they are ASCII).
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("0")
}

/// Appends a scalar result's value: Prometheus writes scalars always in plain notation
/// (Go's `FormatFloat(v, 'f', -1, 64)`), unlike sample values.
pub fn push_scalar_point(out: &mut String, t_ms: i64, v: f64) {
    out.push('[');
    push_ts(out, t_ms);
    out.push_str(",\"");
    push_float(out, v, FloatFormat::F);
    out.push_str("\"]");
}

/// Appends `[ts, "v"]`, the time's text through `ts`.
pub fn push_point(out: &mut String, ts: &mut TsText, t_ms: i64, v: f64) {
    out.push('[');
    ts.push(out, t_ms);
    out.push(',');
    push_value(out, v);
    out.push(']');
}

/// Appends a native histogram as Prometheus's API writes it:
/// `{"count":"…","sum":"…","buckets":[[rule,"lower","upper","count"],…]}`, populated buckets in
/// ascending order of value, numbers spelled as sample values, and the boundary rule 0 (upper
/// bound inclusive), 1 (lower), 2 (neither) or 3 (both). No `buckets` key when every bucket is
/// empty.
pub fn push_histogram(out: &mut String, h: &FloatHistogram) {
    out.push_str("{\"count\":");
    push_value(out, h.count);
    out.push_str(",\"sum\":");
    push_value(out, h.sum);
    let mut first = true;
    for b in h.all_buckets_iter() {
        if b.count == 0.0 {
            continue;
        }
        out.push_str(if first { ",\"buckets\":[" } else { "," });
        first = false;
        let rule = match (b.lower_inclusive, b.upper_inclusive) {
            (true, true) => 3,
            (true, false) => 1,
            (false, true) => 0,
            (false, false) => 2,
        };
        out.push('[');
        out.push(char::from(b'0' + rule));
        out.push(',');
        push_value(out, b.lower);
        out.push(',');
        push_value(out, b.upper);
        out.push(',');
        push_value(out, b.count);
        out.push(']');
    }
    if !first {
        out.push(']');
    }
    out.push('}');
}

/// Appends `[ts, {histogram}]`, the time's text through `ts`.
pub fn push_histogram_point(out: &mut String, ts: &mut TsText, t_ms: i64, h: &FloatHistogram) {
    out.push('[');
    ts.push(out, t_ms);
    out.push(',');
    push_histogram(out, h);
    out.push(']');
}

/// Appends a JSON array of strings.
pub fn push_str_array(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, s);
    }
    out.push(']');
}

/// What the success envelope writes before its data.
pub const SUCCESS_HEAD: &str = "{\"status\":\"success\",\"data\":";

/// What the success envelope writes after its data: `warnings` and `infos` when any, and the
/// closing brace.
pub fn success_tail(warnings: &[String], infos: &[String]) -> String {
    let mut out = String::new();
    push_annotations(&mut out, warnings, infos);
    out.push('}');
    out
}

/// The success envelope around already-encoded `data` as one string (the server sends the
/// head, data and tail as they are).
#[cfg(test)]
pub fn success(data: &str, warnings: &[String], infos: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str(SUCCESS_HEAD);
    out.push_str(data);
    out.push_str(&success_tail(warnings, infos));
    out
}

/// The error envelope; a message longer than [`MESSAGE_BYTES`] is cut in the middle.
pub fn error(error_type: &str, message: &str, warnings: &[String]) -> String {
    let message = clip(message, MESSAGE_BYTES);
    let message = message.as_ref();
    let mut out = String::with_capacity(message.len() + 64);
    out.push_str("{\"status\":\"error\",\"errorType\":");
    push_str(&mut out, error_type);
    out.push_str(",\"error\":");
    push_str(&mut out, message);
    push_annotations(&mut out, warnings, &[]);
    out.push('}');
    out
}

fn push_annotations(out: &mut String, warnings: &[String], infos: &[String]) {
    if !warnings.is_empty() {
        out.push_str(",\"warnings\":");
        push_str_array(out, warnings);
    }
    if !infos.is_empty() {
        out.push_str(",\"infos\":");
        push_str_array(out, infos);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn strings_are_escaped_character_by_character(s in "(?s).{0,40}", t in "[\\x00-\\x7f\u{2026}-\u{202a}\u{e2}\u{80}]{0,40}") {
            for s in [&s, &t] {
                // What Go's encoding/json writes for each character.
                let mut want = String::from("\"");
                for c in s.chars() {
                    match c {
                        '"' => want.push_str("\\\""),
                        '\\' => want.push_str("\\\\"),
                        '\n' => want.push_str("\\n"),
                        '\r' => want.push_str("\\r"),
                        '\t' => want.push_str("\\t"),
                        '\u{8}' => want.push_str("\\b"),
                        '\u{c}' => want.push_str("\\f"),
                        '<' => want.push_str("\\u003c"),
                        '>' => want.push_str("\\u003e"),
                        '&' => want.push_str("\\u0026"),
                        '\u{2028}' => want.push_str("\\u2028"),
                        '\u{2029}' => want.push_str("\\u2029"),
                        c if (c as u32) < 0x20 => want.push_str(&format!("\\u{:04x}", c as u32)),
                        c => want.push(c),
                    }
                }
                want.push('"');
                let mut got = String::new();
                push_str(&mut got, s);
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    fn value(v: f64) -> String {
        let mut s = String::new();
        push_value(&mut s, v);
        s
    }

    fn ts(t: i64) -> String {
        let mut s = String::new();
        push_ts(&mut s, t);
        s
    }

    #[test]
    fn values_are_spelled_like_prometheus() {
        assert_eq!(value(1.0), "\"1\"");
        assert_eq!(value(0.1), "\"0.1\"");
        assert_eq!(value(-0.0), "\"-0\"");
        assert_eq!(value(1e-6), "\"0.000001\"");
        assert_eq!(value(3.0000000000000004e-9), "\"3.0000000000000004e-09\"");
        assert_eq!(value(-1.5e-7), "\"-1.5e-07\"");
        assert_eq!(value(1e21), "\"1e+21\"");
        assert_eq!(value(1.2345e300), "\"1.2345e+300\"");
        assert_eq!(value(999999999999999900000.0), "\"999999999999999900000\"");
        assert_eq!(value(1.0 / 3.0), "\"0.3333333333333333\"");
        assert_eq!(value(f64::NAN), "\"NaN\"");
        assert_eq!(value(f64::INFINITY), "\"+Inf\"");
        assert_eq!(value(f64::NEG_INFINITY), "\"-Inf\"");
    }

    #[test]
    fn float_ties_round_like_go() {
        // Exactly halfway between ...800.2 and ...800.3; Prometheus 3.5.3 answers
        // `vector(-1139863423205800.25)` with "-1139863423205800.2".
        let v = f64::from_bits(14_055_790_291_088_770_721);
        assert_eq!(value(v), "\"-1139863423205800.2\"");
        // In exponent form too: 2^-25 = 2.98023223876953125e-08.
        assert_eq!(value(2f64.powi(-25)), "\"2.9802322387695312e-08\"");
    }

    #[test]
    fn timestamps_keep_three_fraction_digits() {
        assert_eq!(ts(1_435_781_451_781), "1435781451.781");
        assert_eq!(ts(1_435_781_451_000), "1435781451");
        assert_eq!(ts(1_500), "1.500");
        assert_eq!(ts(1_005), "1.005");
        assert_eq!(ts(-1_500), "-1.500");
        assert_eq!(ts(0), "0");
    }

    #[test]
    fn remembered_timestamps_are_spelled_the_same() {
        let mut memo = TsText::new();
        let times: Vec<i64> = [i64::MIN, i64::MAX, -1_500, -1, 0, 1, 999, 1_000, 1_005]
            .into_iter()
            .chain((0..2000).map(|k| 1_700_000_000_123 + k * 15_000))
            .chain((0..2000).map(|k| 1_700_000_000_000 - k * 7))
            .collect();
        // Twice over, so the second pass reads slots the first one filled or overwrote.
        for t in times.iter().chain(&times) {
            let mut got = String::new();
            memo.push(&mut got, *t);
            assert_eq!(got, ts(*t), "{t}");
        }
    }

    #[test]
    fn strings_escape_like_go() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\n<&>\u{1}\u{2028}é");
        assert_eq!(s, r#""a\"b\\c\n\u003c\u0026\u003e\u0001\u2028é""#);
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            success("[]", &["w".into()], &[]),
            r#"{"status":"success","data":[],"warnings":["w"]}"#
        );
        assert_eq!(
            error("bad_data", "oops", &[]),
            r#"{"status":"error","errorType":"bad_data","error":"oops"}"#
        );
    }

    #[test]
    fn histograms_are_spelled_like_prometheus() {
        use gauntlet_engine::histogram::Span;
        // {count:20, sum:10, [-2,-1):2, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:2}
        let h = FloatHistogram {
            schema: 0,
            count: 20.0,
            sum: 10.0,
            zero_threshold: 0.001,
            zero_count: 2.0,
            positive_spans: vec![Span::new(0, 3)],
            positive_buckets: vec![1.0, 0.0, 2.0],
            negative_spans: vec![Span::new(0, 2)],
            negative_buckets: vec![1.0, 2.0],
            ..FloatHistogram::default()
        };
        let mut out = String::new();
        push_histogram(&mut out, &h);
        assert_eq!(
            out,
            r#"{"count":"20","sum":"10","buckets":[[1,"-2","-1","2"],[1,"-1","-0.5","1"],[3,"-0.001","0.001","2"],[0,"0.5","1","1"],[0,"2","4","2"]]}"#
        );
        let empty = FloatHistogram {
            count: 3.0,
            sum: f64::NAN,
            ..FloatHistogram::default()
        };
        out.clear();
        push_histogram(&mut out, &empty);
        assert_eq!(out, r#"{"count":"3","sum":"NaN"}"#);
        // Custom buckets: the first starts at -Inf (inclusive), the last ends at +Inf.
        let nhcb = FloatHistogram {
            schema: -53,
            count: 4.0,
            sum: 5.0,
            custom_values: vec![5.0, 10.0].into(),
            positive_spans: vec![Span::new(0, 3)],
            positive_buckets: vec![1.0, 2.0, 1.0],
            ..FloatHistogram::default()
        };
        out.clear();
        push_histogram(&mut out, &nhcb);
        assert_eq!(
            out,
            r#"{"count":"4","sum":"5","buckets":[[3,"-Inf","5","1"],[0,"5","10","2"],[0,"10","+Inf","1"]]}"#
        );
    }
}
