use super::*;

/// Evaluation time of Prometheus's template tests, ms.
const TS_MS: i64 = 1_353_755_652_000;
const EXT_URL: &str = "http://testhost:9090/path/prefix";

/// Answers every query with the same samples, or the same error.
struct Fixed(Result<Vec<QuerySample>, String>);

impl TemplateQuerier for Fixed {
    fn query(&self, _expr: &str, _ts_ms: i64) -> Result<Vec<QuerySample>, String> {
        self.0.clone()
    }
}

fn sample(labels: &[(&str, &str)], value: f64) -> QuerySample {
    QuerySample {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value: TemplateValue::Float(value),
    }
}

/// Runs `text` (without the alert prelude) over `dot`, as Prometheus's tests run the
/// expander: template `test`, their time and external URL, `query` answering `result`.
fn run_raw(text: &str, dot: Value, result: Vec<QuerySample>) -> Result<String, TemplateError> {
    let q = Fixed(Ok(result));
    expand_value("test", text, text.len(), dot, TS_MS, EXT_URL, Some(&q))
}

fn floats(v: &[f64]) -> Value {
    Value::Array(v.iter().map(|&f| float_value(f)).collect())
}
fn strings(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|&s| Value::from(s)).collect())
}
fn ints(v: &[i64]) -> Value {
    Value::Array(v.iter().map(|&i| Value::from(i)).collect())
}
fn uints(v: &[u64]) -> Value {
    Value::Array(v.iter().map(|&u| Value::from(u)).collect())
}

/// What a case expects: the output, or the error's full text.
enum Want {
    Out(&'static str),
    Err(&'static str),
}
use Want::{Err as E, Out as O};

const METRIC_A: &[(&str, &str)] = &[("__name__", "metric"), ("instance", "a")];
const METRIC_B: &[(&str, &str)] = &[("__name__", "metric"), ("instance", "b")];

#[test]
fn prometheus_template_cases() {
    // Cases taken from prometheus/prometheus template/template_test.go at commit d15adb9ad7.
    // Left out: the `html: true` cases (ExpandHTML, which rules do not use) and the
    // `missingkey=error` option (rules never set it). Where gtmpl cannot do what Go does, the
    // case holds Gauntlet's answer and says why.
    let hist = TemplateValue::Histogram("{count:3, sum:10}".into());
    let hist_sample = QuerySample {
        labels: METRIC_A
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value: hist.clone(),
    };
    let mut hist_dot = HashMap::new();
    hist_dot.insert("Value".to_string(), template_value(&hist));
    let cases: Vec<(&str, Value, Vec<QuerySample>, Want)> = vec![
        ("plain text", Value::Nil, vec![], O("plain text")),
        ("{{ 1 }}", Value::Nil, vec![], O("1")),
        (
            "{{ . | value }}",
            Value::Object(hist_dot),
            vec![],
            O("{count:3, sum:10}"),
        ),
        // gtmpl reads U+00A0 as a space; Go: "unrecognized character in action: U+00A0".
        (
            "{{\u{a0}}}",
            Value::Nil,
            vec![],
            E("error parsing template test: template: test: missing value for command"),
        ),
        ("{{ \"<b>\" }}", Value::Nil, vec![], O("<b>")),
        (
            "{{define \"x\"}}{{.arg0}} {{.arg1}}{{end}}{{template \"x\" (args 1 \"2\")}}",
            Value::Nil,
            vec![],
            O("1 2"),
        ),
        (
            "{{ query \"1.5\" | first | value }}",
            Value::Nil,
            vec![sample(&[], 1.5)],
            O("1.5"),
        ),
        (
            "{{ query \"metric{instance='a'}\" | first | value }}",
            Value::Nil,
            vec![sample(METRIC_A, 11.0)],
            O("11"),
        ),
        (
            "{{ query \"metric{instance='a'}\" | first | value }}",
            Value::Nil,
            vec![hist_sample],
            O("{count:3, sum:10}"),
        ),
        (
            "{{ query \"metric{instance='a'}\" | first | label \"instance\" }}",
            Value::Nil,
            vec![sample(METRIC_A, 11.0)],
            O("a"),
        ),
        (
            "{{ query \"metric{__value__='a'}\" | first | strvalue }}",
            Value::Nil,
            vec![sample(&[("__name__", "metric"), ("__value__", "a")], 11.0)],
            O("a"),
        ),
        (
            "{{ query \"metric{instance='a'}\" | first | label \"foo\" }}",
            Value::Nil,
            vec![sample(METRIC_A, 11.0)],
            O(""),
        ),
        (
            "{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}",
            Value::Nil,
            vec![sample(METRIC_A, 11.0)],
            O(""),
        ),
        (
            "{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}",
            Value::Nil,
            vec![sample(METRIC_B, 21.0), sample(METRIC_A, 11.0)],
            O("a:11: b:21: "),
        ),
        (
            "{{ \"foo.example.com\" | stripPort }}",
            Value::Nil,
            vec![],
            O("foo.example.com"),
        ),
        (
            "{{ \"foo.example.com:12345\" | stripPort }}",
            Value::Nil,
            vec![],
            O("foo.example.com"),
        ),
        (
            "{{ \"192.0.2.1\" | stripPort }}",
            Value::Nil,
            vec![],
            O("192.0.2.1"),
        ),
        (
            "{{ \"192.0.2.1:12345\" | stripPort }}",
            Value::Nil,
            vec![],
            O("192.0.2.1"),
        ),
        (
            "{{ \"2001:0DB8::1\" | stripPort }}",
            Value::Nil,
            vec![],
            O("2001:0DB8::1"),
        ),
        (
            "{{ \"[2001:0DB8::1]:12345\" | stripPort }}",
            Value::Nil,
            vec![],
            O("2001:0DB8::1"),
        ),
        (
            "{{ \"[2001:0DB8::1]::12345\" | stripPort }}",
            Value::Nil,
            vec![],
            O("[2001:0DB8::1]::12345"),
        ),
        // Go prints `<no value>` for a field of nil data; gtmpl refuses it.
        (
            "{{ .Foo }}",
            Value::Nil,
            vec![],
            E("error executing template test: only maps and objects have fields"),
        ),
        (
            "{{",
            Value::Nil,
            vec![],
            E("error parsing template test: template: test:1: unclosed action"),
        ),
        (
            "{{ query \"missing\" | first }}",
            Value::Nil,
            vec![],
            E(
                "error executing template test: template: test:1:21: executing \"test\" at <first>: error calling first: first() called on vector with no elements",
            ),
        ),
        // Go: "can't evaluate field banana in type template.queryResult".
        (
            "{{ (query \"missing\").banana }}",
            Value::Nil,
            vec![],
            E("error executing template test: only maps and objects have fields"),
        ),
        (
            "{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}",
            Value::Nil,
            vec![],
            O("xa"),
        ),
        (
            "{{ range . }}{{ humanize . }}:{{ end }}",
            floats(&[0.0, 1.0, 1234567.0, 0.12]),
            vec![],
            O("0:1:1.235M:120m:"),
        ),
        (
            "{{ range . }}{{ humanize . }}:{{ end }}",
            strings(&["0.0", "1.0", "1234567.0", ".12"]),
            vec![],
            O("0:1:1.235M:120m:"),
        ),
        (
            "{{ humanize \"one\" }}",
            Value::Nil,
            vec![],
            E(
                "error executing template test: template: test:1:3: executing \"test\" at <humanize \"one\">: error calling humanize: strconv.ParseFloat: parsing \"one\": invalid syntax",
            ),
        ),
        (
            "{{ range . }}{{ humanize . }}:{{ end }}",
            ints(&[0, -1, 1, 1234567, i64::MAX]),
            vec![],
            O("0:-1:1:1.235M:9.223E:"),
        ),
        (
            "{{ range . }}{{ humanize . }}:{{ end }}",
            uints(&[0, 1, 1234567, u64::MAX]),
            vec![],
            O("0:1:1.235M:18.45E:"),
        ),
        (
            "{{ range . }}{{ humanize1024 . }}:{{ end }}",
            floats(&[0.0, 1.0, 1048576.0, 0.12]),
            vec![],
            O("0:1:1Mi:0.12:"),
        ),
        (
            "{{ range . }}{{ humanize1024 . }}:{{ end }}",
            strings(&["0.0", "1.0", "1048576.0", ".12"]),
            vec![],
            O("0:1:1Mi:0.12:"),
        ),
        (
            "{{ humanize1024 \"one\" }}",
            Value::Nil,
            vec![],
            E(
                "error executing template test: template: test:1:3: executing \"test\" at <humanize1024 \"one\">: error calling humanize1024: strconv.ParseFloat: parsing \"one\": invalid syntax",
            ),
        ),
        (
            "{{ range . }}{{ humanize1024 . }}:{{ end }}",
            ints(&[0, -1, 1, 1234567, i64::MAX]),
            vec![],
            O("0:-1:1:1.177Mi:8Ei:"),
        ),
        (
            "{{ range . }}{{ humanize1024 . }}:{{ end }}",
            uints(&[0, 1, 1234567, u64::MAX]),
            vec![],
            O("0:1:1.177Mi:16Ei:"),
        ),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            floats(&[
                0.0,
                1.0,
                60.0,
                3600.0,
                86400.0,
                86400.0 + 3600.0,
                -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
                899.99,
            ]),
            vec![],
            O("0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"),
        ),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            strings(&["0", "1", "60", "3600", "86400"]),
            vec![],
            O("0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:"),
        ),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            floats(&[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]),
            vec![],
            O("100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"),
        ),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            strings(&[".1", ".0001", ".12345", "60.1", "60.5", "1.2345", "12.345"]),
            vec![],
            O("100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"),
        ),
        (
            "{{ humanizeDuration \"one\" }}",
            Value::Nil,
            vec![],
            E(
                "error executing template test: template: test:1:3: executing \"test\" at <humanizeDuration \"one\">: error calling humanizeDuration: strconv.ParseFloat: parsing \"one\": invalid syntax",
            ),
        ),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            ints(&[0, -1, 1, 1234567]),
            vec![],
            O("0s:-1s:1s:14d 6h 56m 7s:"),
        ),
        (
            "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
            uints(&[0, 1, 1234567]),
            vec![],
            O("0s:1s:14d 6h 56m 7s:"),
        ),
        (
            "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
            floats(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
            vec![],
            O("+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"),
        ),
        (
            "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
            strings(&["+Inf", "-Inf", "NaN"]),
            vec![],
            O("+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:"),
        ),
        // gtmpl reads the literal -0.22222 as 0 (Go: "-22.22%:…"); the string form below is exact.
        (
            "{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}",
            Value::Nil,
            vec![],
            O("0%:0%:12.35%:123.5%"),
        ),
        (
            "{{ range . }}{{ humanizePercentage . }}:{{ end }}",
            ints(&[0, -1, 1, 1234567, i64::MAX]),
            vec![],
            O("0%:-100%:100%:1.235e+08%:9.223e+20%:"),
        ),
        (
            "{{ range . }}{{ humanizePercentage . }}:{{ end }}",
            uints(&[0, 1, 1234567, u64::MAX]),
            vec![],
            O("0%:100%:1.235e+08%:1.845e+21%:"),
        ),
        (
            "{{ \"-0.22222\" | humanizePercentage }}:{{ \"0.0\" | humanizePercentage }}:{{ \"0.1234567\" | humanizePercentage }}:{{ \"1.23456\" | humanizePercentage }}",
            Value::Nil,
            vec![],
            O("-22.22%:0%:12.35%:123.5%"),
        ),
        (
            "{{ \"one\" | humanizePercentage }}",
            Value::Nil,
            vec![],
            E(
                "error executing template test: template: test:1:11: executing \"test\" at <humanizePercentage>: error calling humanizePercentage: strconv.ParseFloat: parsing \"one\": invalid syntax",
            ),
        ),
        (
            "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
            ints(&[0, -1, 1, 1234567, 9223372036]),
            vec![],
            O(
                "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:",
            ),
        ),
        (
            "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
            uints(&[0, 1, 1234567, 9223372036]),
            vec![],
            O(
                "1970-01-01 00:00:00 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:",
            ),
        ),
        (
            "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
            ints(&[i64::MIN, i64::MAX]),
            vec![],
            E(
                "error executing template test: template: test:1:16: executing \"test\" at <humanizeTimestamp .>: error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64",
            ),
        ),
        (
            "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
            uints(&[u64::MAX]),
            vec![],
            E(
                "error executing template test: template: test:1:16: executing \"test\" at <humanizeTimestamp .>: error calling humanizeTimestamp: 1.8446744073709552e+19 cannot be represented as a nanoseconds timestamp since it overflows int64",
            ),
        ),
        (
            "{{ 1435065584.128 | humanizeTimestamp }}",
            Value::Nil,
            vec![],
            O("2015-06-23 13:19:44.128 +0000 UTC"),
        ),
        (
            "{{ \"1435065584.128\" | humanizeTimestamp }}",
            Value::Nil,
            vec![],
            O("2015-06-23 13:19:44.128 +0000 UTC"),
        ),
        // gtmpl calls no method with arguments (Go: `(… | toTime).Format "2006"` is "2015");
        // toTime and toDuration give the text Go prints for the value.
        (
            "{{ 1435065584.128 | toTime }}",
            Value::Nil,
            vec![],
            O("2015-06-23 13:19:44.128 +0000 UTC"),
        ),
        (
            "{{ \"1435065584.128\" | toTime }}",
            Value::Nil,
            vec![],
            O("2015-06-23 13:19:44.128 +0000 UTC"),
        ),
        (
            "{{ (1435065584.128 | toTime).Format \"2006\" }}",
            Value::Nil,
            vec![],
            E(
                "error executing template test: Format has arguments but cannot be invoked as function",
            ),
        ),
        ("{{ 1800 | toDuration }}", Value::Nil, vec![], O("30m0s")),
        (
            "{{ \"1800\" | toDuration }}",
            Value::Nil,
            vec![],
            O("30m0s"),
        ),
        ("{{ now }}", Value::Nil, vec![], O("1.353755652e+09")),
        (
            "{{ now | toTime }}",
            Value::Nil,
            vec![],
            O("2012-11-24 11:14:12 +0000 UTC"),
        ),
        (
            "{{ \"-30m\" | parseDuration | toDuration }}",
            Value::Nil,
            vec![],
            O("-30m0s"),
        ),
        (
            "{{ \"aa bb CC\" | title }}",
            Value::Nil,
            vec![],
            O("Aa Bb CC"),
        ),
        (
            "{{ \"aa bb CC\" | toUpper }}",
            Value::Nil,
            vec![],
            O("AA BB CC"),
        ),
        (
            "{{ \"aA bB CC\" | toLower }}",
            Value::Nil,
            vec![],
            O("aa bb cc"),
        ),
        (
            "{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}",
            Value::Nil,
            vec![],
            O("true false"),
        ),
        (
            "{{ graphLink \"up\" }}",
            Value::Nil,
            vec![],
            O("/graph?g0.expr=up&g0.tab=0"),
        ),
        (
            "{{ tableLink \"up\" }}",
            Value::Nil,
            vec![],
            O("/graph?g0.expr=up&g0.tab=1"),
        ),
        ("{{ pathPrefix }}", Value::Nil, vec![], O("/path/prefix")),
        (
            "{{ externalURL }}",
            Value::Nil,
            vec![],
            O("http://testhost:9090/path/prefix"),
        ),
        (
            "{{ printf \"%0.2f\" (parseDuration \"1h2m10ms\") }}",
            Value::Nil,
            vec![],
            O("3720.01"),
        ),
        (
            "{{ printf \"%0.2f\" (parseDuration \"-1h2m10ms\") }}",
            Value::Nil,
            vec![],
            O("-3720.01"),
        ),
        (
            "{{ \"foo.example.com\" | stripDomain }}",
            Value::Nil,
            vec![],
            O("foo"),
        ),
        (
            "{{ \"foo.example.com:12345\" | stripDomain }}",
            Value::Nil,
            vec![],
            O("foo:12345"),
        ),
        (
            "{{ \"192.0.2.1\" | stripDomain }}",
            Value::Nil,
            vec![],
            O("192.0.2.1"),
        ),
        (
            "{{ \"192.0.2.1:12345\" | stripDomain }}",
            Value::Nil,
            vec![],
            O("192.0.2.1:12345"),
        ),
        (
            "{{ \"2001:0DB8::1\" | stripDomain }}",
            Value::Nil,
            vec![],
            O("2001:0DB8::1"),
        ),
        (
            "{{ \"[2001:0DB8::1]:12345\" | stripDomain }}",
            Value::Nil,
            vec![],
            O("[2001:0DB8::1]:12345"),
        ),
        (
            "{{ \"[2001:0DB8::1]::12345\" | stripDomain }}",
            Value::Nil,
            vec![],
            O("[2001:0DB8::1]::12345"),
        ),
    ];
    let mut failed = Vec::new();
    for (text, dot, result, want) in cases {
        let got = run_raw(text, dot, result);
        let ok = match (&want, &got) {
            (O(w), Ok(g)) => w == g,
            (E(w), Err(g)) => *w == g.to_string(),
            _ => false,
        };
        if !ok {
            let want = match want {
                O(w) => format!("Ok({w:?})"),
                E(w) => format!("Err({w:?})"),
            };
            let got = got.map_err(|e| e.to_string());
            failed.push(format!("{text}\n    want {want}\n    got  {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// An alert's data: labels, one external label, and `value`.
fn alert<T>(value: TemplateValue, f: impl FnOnce(&TemplateData<'_>) -> T) -> T {
    let labels: BTreeMap<String, String> = [("instance", "host:9100"), ("job", "node")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let ext: BTreeMap<String, String> = [("replica".to_string(), "r1".to_string())].into();
    let data = TemplateData {
        labels: &labels,
        external_labels: &ext,
        external_url: EXT_URL,
        value: &value,
    };
    f(&data)
}

fn alert_text(text: &str, value: f64, q: Option<&dyn TemplateQuerier>) -> String {
    alert(TemplateValue::Float(value), |d| {
        expand_or_error_text("__alert_HighLoad", text, d, TS_MS, q)
    })
}

#[test]
fn alert_forms() {
    let cases: &[(&str, f64, &str)] = &[
        ("{{ $labels.instance }} is down", 1.0, "host:9100 is down"),
        ("{{ $labels.missing }}|", 1.0, "|"),
        (
            "{{ .Labels.job }}/{{ $externalLabels.replica }}",
            1.0,
            "node/r1",
        ),
        ("{{ $externalURL }}", 1.0, EXT_URL),
        ("{{ $value }}", 0.123, "0.123"),
        ("{{ $value }}", 1234567.0, "1.234567e+06"),
        ("{{ $value }}", 1e-7, "1e-07"),
        ("{{ $value }}", 42.0, "42"),
        ("{{ $value }}", f64::NAN, "NaN"),
        ("{{ $value | humanize }}", 1234567.0, "1.235M"),
        ("{{ $value | humanizePercentage }}", 0.256, "25.6%"),
        ("{{ humanizeDuration $value }}", 3725.0, "1h 2m 5s"),
        (
            "{{ if gt $value 80.0 }}high{{ else }}low{{ end }}",
            85.5,
            "high",
        ),
        (
            "{{ if gt $value 80.0 }}high{{ else }}low{{ end }}",
            79.0,
            "low",
        ),
        ("{{ if eq $labels.job \"node\" }}yes{{ end }}", 1.0, "yes"),
        ("{{ if ne $value 0.0 }}nonzero{{ end }}", 2.0, "nonzero"),
        (
            "{{ if le 1 2 }}a{{ end }}{{ if lt 2 1 }}b{{ end }}",
            0.0,
            "a",
        ),
        // printf formats as Go's fmt does.
        ("{{ printf \"%.2f\" $value }}", 1.23456, "1.23"),
        ("{{ printf \"%f\" $value }}", 2.5, "2.500000"),
        ("{{ printf \"%s=%d\" \"n\" 42 }}", 0.0, "n=42"),
        ("{{ printf \"%v %v\" $value 7 }}", 1e21, "1e+21 7"),
        ("{{ printf \"%g\" $value }}", 1234567.0, "1.234567e+06"),
        ("{{ printf \"%q\" $labels.instance }}", 0.0, "\"host:9100\""),
        (
            "{{ printf \"%5.1f|%-4d|%04d\" $value 7 -7 }}",
            2.25,
            "  2.2|7   |-007",
        ),
        ("{{ printf \"%d\" }}", 0.0, "%!d(MISSING)"),
        ("{{ printf \"%d\" \"x\" }}", 0.0, "%!d(string=x)"),
        (
            "{{ printf \"%s\" \"a\" \"b\" }}",
            0.0,
            "a%!(EXTRA string=b)",
        ),
        ("{{ printf \"%e\" 1234.5678 }}", 0.0, "1.234568e+03"),
        ("{{ print \"a\" 1 2 \"b\" }}", 0.0, "a1 2b"),
        ("{{ urlquery \"a b&c\" }}", 0.0, "a+b%26c"),
        ("{{ len $labels }}", 0.0, "2"),
    ];
    let mut failed = Vec::new();
    for &(text, value, want) in cases {
        let got = alert_text(text, value, None);
        if got != want {
            failed.push(format!("{text} ({value}): want {want:?}, got {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn histogram_value_prints_as_prometheus_prints_it() {
    let got = alert(TemplateValue::Histogram("{count:3, sum:10}".into()), |d| {
        expand_or_error_text("h", "{{ $value }}", d, TS_MS, None)
    });
    assert_eq!(got, "{count:3, sum:10}");
    let got = alert(TemplateValue::Histogram("{count:3, sum:10}".into()), |d| {
        expand_or_error_text("h", "{{ $value | humanize }}", d, TS_MS, None)
    });
    assert_eq!(
        got,
        "<error expanding template: error executing template h: template: h:1:124: executing \"h\" at <humanize>: error calling humanize: can't convert *histogram.FloatHistogram to float>"
    );
}

#[test]
fn query_ranges_and_failures() {
    let q = Fixed(Ok(vec![
        sample(&[("instance", "b")], 2.0),
        sample(&[("instance", "a")], 0.5),
    ]));
    let text = "{{ range query \"up == 0\" }}{{ .Labels.instance }}={{ .Value }};{{ end }}";
    assert_eq!(alert_text(text, 1.0, Some(&q)), "b=2;a=0.5;");
    let text =
        "{{ range sortByLabel \"instance\" (query \"up\") }}{{ label \"instance\" . }} {{ end }}";
    assert_eq!(alert_text(text, 1.0, Some(&q)), "a b ");
    let text = "{{ with query \"up\" }}{{ . | first | value | humanize }}{{ end }}";
    assert_eq!(alert_text(text, 1.0, Some(&q)), "2");

    let failing = Fixed(Err("query timed out in expression evaluation".into()));
    assert_eq!(
        alert_text("{{ query \"up\" }}", 1.0, Some(&failing)),
        "<error expanding template: error executing template __alert_HighLoad: template: __alert_HighLoad:1:115: executing \"__alert_HighLoad\" at <query \"up\">: error calling query: query timed out in expression evaluation>"
    );
    // Without a querier a query fails rather than the process.
    assert!(alert_text("{{ query \"up\" }}", 1.0, None).starts_with("<error expanding template:"));
}

#[test]
fn refusals_use_prometheus_wording() {
    let cases: &[(&str, &str)] = &[
        (
            "{{ nosuch 1 }}",
            "error parsing template __alert_HighLoad: template: __alert_HighLoad:1: function \"nosuch\" not defined",
        ),
        (
            "{{ toUpper 1 }}",
            "error executing template __alert_HighLoad: wrong type for value; expected string; got int",
        ),
        (
            "{{ humanize }}",
            "error executing template __alert_HighLoad: template: __alert_HighLoad:1:115: executing \"__alert_HighLoad\" at <humanize>: wrong number of args for humanize: want 1 got 0",
        ),
        (
            "{{ humanize true }}",
            "error executing template __alert_HighLoad: template: __alert_HighLoad:1:115: executing \"__alert_HighLoad\" at <humanize true>: error calling humanize: can't convert bool to float",
        ),
        (
            "{{ first \"x\" }}",
            "error executing template __alert_HighLoad: wrong type for value; expected template.queryResult; got string",
        ),
        (
            "{{ reReplaceAll \"(\" \"\" \"x\" }}",
            "error executing template __alert_HighLoad: regexp: Compile(\"(\"): error: unclosed group",
        ),
        (
            "{{ parseDuration \"1x\" }}",
            "error executing template __alert_HighLoad: template: __alert_HighLoad:1:115: executing \"__alert_HighLoad\" at <parseDuration \"1x\">: error calling parseDuration: not a valid duration string: \"1x\"",
        ),
        (
            "{{ toTime \"NaN\" }}",
            "error executing template __alert_HighLoad: template: __alert_HighLoad:1:115: executing \"__alert_HighLoad\" at <toTime \"NaN\">: error calling toTime: value is NaN or Inf",
        ),
        (
            "{{ gt \"a\" 1 }}",
            "error executing template __alert_HighLoad: template: __alert_HighLoad:1:115: executing \"__alert_HighLoad\" at <gt \"a\" 1>: error calling gt: incompatible types for comparison",
        ),
        (
            "{{ template \"nope\" }}",
            "error executing template __alert_HighLoad: template: __alert_HighLoad:1:124: executing \"__alert_HighLoad\" at <{{template \"nope\"}}>: template \"nope\" not defined",
        ),
    ];
    let mut failed = Vec::new();
    for &(text, want) in cases {
        let got = alert(TemplateValue::Float(1.0), |d| {
            expand("__alert_HighLoad", text, d, TS_MS, None).map_err(|e| e.to_string())
        });
        if got.as_ref().err().map(String::as_str) != Some(want) {
            failed.push(format!("{text}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert_eq!(
        alert_text("{{", 1.0, None),
        "<error expanding template: error parsing template __alert_HighLoad: template: __alert_HighLoad:1: unclosed action>"
    );
}

#[test]
fn hostile_templates_are_refused_not_fatal() {
    let refused = |text: &str| {
        let got = alert(TemplateValue::Float(1.0), |d| {
            expand("t", text, d, TS_MS, None).map_err(|e| e.to_string())
        });
        assert!(got.is_err(), "{}: {got:?}", &text[..text.len().min(80)]);
        got.err().unwrap_or_default()
    };
    // Nesting, of blocks and of parentheses.
    let deep_ifs = format!(
        "{}x{}",
        "{{ if true }}".repeat(10_000),
        "{{ end }}".repeat(10_000)
    );
    assert!(refused(&deep_ifs).contains("nests more than 64"));
    let deep_else = format!(
        "{{{{ if false }}}}{}{{{{ end }}}}",
        "{{ else if false }}".repeat(10_000)
    );
    assert!(refused(&deep_else).contains("nests more than 64"));
    let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(refused(&deep_parens).contains("nests more than 64"));
    // Nesting within the bound is fine.
    let ok_ifs = format!("{}x{}", "{{ if true }}".repeat(50), "{{ end }}".repeat(50));
    assert_eq!(alert_text(&ok_ifs, 1.0, None), "x");
    // Templates that invoke themselves, directly or through another.
    assert!(
        refused("{{ define \"a\" }}{{ template \"a\" . }}{{ end }}{{ template \"a\" . }}")
            .contains("invokes itself")
    );
    assert!(refused("{{ define \"a\" }}{{ template \"b\" }}{{ end }}{{ define \"b\" }}{{ template \"a\" }}{{ end }}{{ template \"a\" }}").contains("invokes itself"));
    assert!(
        refused(
            "{{ template \"__alert_x\" }}"
                .replace("__alert_x", "t")
                .as_str()
        )
        .contains("invokes itself")
    );
    // A string or comment that looks like an action does not count.
    assert_eq!(
        alert_text("{{ \"{{ if\" }}{{/* {{ if */}}ok", 1.0, None),
        "{{ ifok"
    );
    // Output and the strings functions make are bounded.
    assert!(
        refused(&"{{ printf \"%1000000s\" \"x\" }}".repeat(2))
            .contains("template output exceeds 1048576 bytes")
    );
    let doubling = format!(
        "{{{{ $a := printf \"%900000s\" \"x\" }}}}{}",
        "{{ $a := printf \"%s%s\" $a $a }}".repeat(40)
    );
    assert!(refused(&doubling).contains("exceeds 1048576 bytes"));
    assert!(refused("{{ printf \"%1000001d\" 1 }}{{ printf \"%.1000000f\" 1.5 }}{{ printf \"%.1000000f\" 1.5 }}").contains("exceeds"));
    let long = "x".repeat(MAX_TEXT_BYTES + 1);
    assert!(refused(&long).contains("bytes long"));
}

#[test]
fn go_time_and_duration_text() {
    assert_eq!(go_time_string(0), "1970-01-01 00:00:00 +0000 UTC");
    assert_eq!(go_time_string(-500), "1969-12-31 23:59:59.5 +0000 UTC");
    assert_eq!(go_duration_string(1_500), "1.5µs");
    assert_eq!(go_duration_string(-90_000_000_000), "-1m30s");
    assert_eq!(go_duration_string(3_723_500_000_000), "1h2m3.5s");
    assert_eq!(url_path("http://h:9090"), "");
    assert_eq!(url_path("https://h/a/b?x=1"), "/a/b");
}

/// An action that nothing closes is refused at once (the template library's lexer loops
/// forever on one): inputs the fuzzer found.
#[test]
fn unclosed_actions_are_refused_not_hung() {
    for text in [
        "*sInstaevence {{ $label.",
        "{{ $labels.instanwn for more than 5 minutes.",
        "{{",
        "a {{ \"}}",
        "{{ /* }}",
    ] {
        let t = text.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(crate::rules::expand::parse_check("__alert_x", &t));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("{text:?} hung"));
        assert!(got.is_err(), "{text:?}: {got:?}");
    }
}

/// A character no token starts with, inside an action, is refused as Go refuses it (the
/// template library panics on some): an input the fuzzer found.
#[test]
fn stray_characters_in_actions_are_refused() {
    let text = "{ {if gt $al{ end }} {{\u{256} reReplaceAll \"(.*)G.*\" \"$1\" $labels.instance }}";
    let err = crate::rules::expand::parse_check("__alert_x", text).unwrap_err();
    assert!(
        err.contains("unrecognized character in action: U+0256"),
        "{err}"
    );
    // Inside a string it is text.
    assert!(crate::rules::expand::parse_check("__alert_x", "{{ \"\u{256}\" }}").is_ok());
}
