//! Holds `gauntlet_engine::go_format`'s floats to Go's own output: every row of
//! `testdata/gofloat/formatfloat.tsv`, which `testdata/gofloat/gen.go` printed with Go 1.19's
//! `strconv.FormatFloat(x, fmt, -1, 64)` for `'g'`, `'e'` and `'f'`. Regenerate it from the
//! repository root with
//!
//! ```sh
//! go run testdata/gofloat/gen.go > testdata/gofloat/formatfloat.tsv
//! ```

use std::collections::BTreeMap;

use gauntlet_engine::go_format::{FloatFormat, format_float};

fn table() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/gofloat/formatfloat.tsv"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The digits and exponent of an exponent-form spelling, sign dropped: `-1.5e+06` -> ("15", 6).
fn mantissa_digits(e_form: &str) -> (String, i32) {
    let (m, exp) = e_form.split_once('e').expect("exponent form");
    let digits = m.trim_start_matches('-').replace('.', "");
    (digits, exp.parse().expect("exponent"))
}

#[test]
fn floats_are_spelled_as_go_spells_them() {
    let text = table();
    let mut rows: BTreeMap<&str, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    // Rows where Rust's own shortest formatting (`{:e}`, what the dump used before) picks
    // other digits than Go.
    let mut std_differs = 0;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        let [class, bits, g, e, f] = cols[..] else {
            panic!("line {}: want 5 columns: {line}", n + 1);
        };
        let v = f64::from_bits(u64::from_str_radix(bits, 16).expect("hex bits"));
        *rows.entry(class).or_default() += 1;
        for (format, want) in [
            (FloatFormat::G, g),
            (FloatFormat::E, e),
            (FloatFormat::F, f),
        ] {
            let got = format_float(v, format);
            if got != want {
                failures.push(format!(
                    "line {} ({class} {bits}) {format:?}: want {want}, got {got}",
                    n + 1
                ));
            }
        }
        if v.is_finite() && v != 0.0 {
            let (go, go_exp) = mantissa_digits(e);
            let (rust, rust_exp) = mantissa_digits(&format!("{v:e}"));
            if go != rust {
                // Only ever a tie: as many digits, one apart in the last, Go's even.
                let (a, b): (u64, u64) = (go.parse().unwrap(), rust.parse().unwrap());
                assert!(
                    go.len() == rust.len()
                        && go_exp == rust_exp
                        && a.abs_diff(b) == 1
                        && a % 2 == 0,
                    "line {}: Go {e}, Rust {v:e}",
                    n + 1
                );
                std_differs += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} spellings differ from Go's:\n{}",
        failures.len(),
        rows.values().sum::<usize>() * 3,
        failures[..failures.len().min(20)].join("\n")
    );
    // The table holds every class, and many ties (Rust's formatting keeps the even digit of
    // about half of them by chance).
    for class in [
        "bits",
        "special",
        "subnormal",
        "pow2",
        "pow10",
        "threshold",
        "counter",
        "everyday",
        "nonunique",
        "tie",
    ] {
        assert!(rows.get(class).copied().unwrap_or(0) > 0, "no {class} rows");
    }
    assert!(rows["tie"] >= 1000 && rows["nonunique"] >= 500, "{rows:?}");
    assert!(
        std_differs >= 500,
        "{std_differs} rows where Rust's digits differ"
    );
}
