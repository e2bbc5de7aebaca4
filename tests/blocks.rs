//! Blocks against real peers: fixtures written by Prometheus and promtool dump identically;
//! bigger promtool blocks made here dump identically, and so does a block of floats that are
//! hard to spell as Go does; blocks Gauntlet writes from the same input are accepted by promtool
//! and answer the same queries in a real Prometheus.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::common::*;

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn fixture_dumps_match_the_recorded_promtool_dumps() {
    for name in [
        "promtool-200series-2h",
        "prometheus-head-compacted-remote-write",
    ] {
        let want = gunzip(&fixtures().join(format!("{name}.dump.txt.gz")));
        let got = gauntlet_dump(&fixtures().join(name), &[]);
        assert_same_dump(name, &want, &got);
    }
}

#[test]
fn compacted_fixture_dumps_like_promtool() {
    let dir = fixtures().join("prometheus-compacted-200series-10h");
    assert_same_dump(
        "compacted",
        &promtool_dump(&dir, &[]),
        &gauntlet_dump(&dir, &[]),
    );
    // One block of the set on its own, and a time window cutting through chunks.
    let one = dir.join("01M80EJD593276B0WSCA6NM0B3");
    assert_same_dump(
        "single block",
        &promtool_dump(&one, &[]),
        &gauntlet_dump(&one, &[]),
    );
    let window = ["--min-time=1735700000000", "--max-time=1735715000000"];
    assert_same_dump(
        "window",
        &promtool_dump(&dir, &window),
        &gauntlet_dump(&dir, &window),
    );
}

#[test]
fn dump_match_selects_like_a_filter_over_the_full_dump() {
    let dir = fixtures().join("promtool-200series-2h");
    let full = String::from_utf8(gauntlet_dump(&dir, &[])).unwrap();
    type Filter = fn(&str) -> bool;
    let cases: [(&str, Filter); 4] = [
        (r#"--match=http_requests_total{code="500"}"#, |l| {
            l.starts_with(r#"{__name__="http_requests_total""#) && l.contains(r#"code="500""#)
        }),
        (
            r#"--match={__name__=~"temperature.*",sensor!~"s1|s2"}"#,
            |l| {
                l.starts_with(r#"{__name__="temperature"#)
                    && !l.contains(r#"sensor="s1""#)
                    && !l.contains(r#"sensor="s2""#)
            },
        ),
        (r#"--match={job="node",sensor=""}"#, |l| {
            l.contains(r#"job="node""#) && !l.contains("sensor=")
        }),
        (r#"--match={le!="",handler="/api/b"}"#, |l| {
            l.contains("le=") && l.contains(r#"handler="/api/b""#)
        }),
    ];
    for (arg, keep) in cases {
        let want: String = full
            .lines()
            .filter(|l| keep(l))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(!want.is_empty(), "{arg} selects nothing in the fixture");
        let got = String::from_utf8(gauntlet_dump(&dir, &[arg])).unwrap();
        assert_same_dump(arg, want.as_bytes(), got.as_bytes());
    }
}

/// Generates `gen_openmetrics.py` input for `instances` × 200 series over `secs` seconds.
fn openmetrics(dir: &Path, instances: u32, secs: u32) -> std::path::PathBuf {
    gen_openmetrics(dir, 1_735_689_600, secs, 15, instances)
}

#[test]
fn big_promtool_blocks_and_gauntlet_blocks_agree_with_promtool_and_prometheus() {
    let tmp = tempfile::tempdir().unwrap();
    // 50 instances × 200 series = 10 000 series over 2 h at 15 s.
    let om = openmetrics(tmp.path(), 50, 7200);

    let theirs = tmp.path().join("promtool-blocks");
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&om)
            .arg(&theirs),
    );
    let reference = promtool_dump(&theirs, &[]);
    assert!(
        reference.len() > 100_000_000 / 4,
        "expected millions of samples"
    );
    assert_same_dump("promtool blocks", &reference, &gauntlet_dump(&theirs, &[]));

    let ours = tmp.path().join("gauntlet-blocks");
    run_ok(
        gauntlet()
            .args(["tools", "block", "create-from-openmetrics"])
            .arg(&om)
            .arg(&ours),
    );
    assert_same_dump(
        "gauntlet blocks, promtool dump",
        &reference,
        &promtool_dump(&ours, &[]),
    );
    assert_same_dump(
        "gauntlet blocks, gauntlet dump",
        &reference,
        &gauntlet_dump(&ours, &[]),
    );

    for block in std::fs::read_dir(&ours).unwrap() {
        let block = block.unwrap().path();
        let scratch = tempfile::tempdir().unwrap();
        let db = scratch.path().join("db");
        copy_dir(&block, &db.join(block.file_name().unwrap()));
        std::fs::create_dir_all(db.join("wal")).unwrap();
        let out = run_ok(
            Command::new(require("promtool"))
                .args(["tsdb", "analyze"])
                .arg(&db)
                .arg(block.file_name().unwrap()),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Series: 10000"), "promtool analyze:\n{text}");
    }

    let prom = require("prometheus");
    let a = Prometheus::start(&prom, &theirs);
    let b = Prometheus::start(&prom, &ours);
    let at = 1735689600 + 3600;
    let queries = [
        r#"count({__name__=~".+"})"#,
        "sum(rate(http_requests_total[5m]))",
        r#"http_requests_total{code="500",instance="host-07"}"#,
        r#"node_cpu_seconds_total{cpu="3",mode=~"user|system"}"#,
        "max_over_time(temperature_celsius[10m])",
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
        "sum by (instance) (increase(http_requests_total[1h]))",
        "process_resident_memory_bytes",
    ];
    for q in queries {
        for path in [
            format!("/api/v1/query?query={}&time={at}", urlencode(q)),
            format!(
                "/api/v1/query_range?query={}&start={}&end={}&step=60",
                urlencode(q),
                at - 1800,
                at + 1800
            ),
        ] {
            let ra = a.get(&path);
            let rb = b.get(&path);
            assert_eq!(ra["status"], "success", "{path}");
            assert!(
                ra["data"]["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty()),
                "{path} returned no data"
            );
            assert_eq!(
                ra, rb,
                "{path}: prometheus over promtool's blocks vs over Gauntlet's"
            );
        }
    }
}

#[test]
fn inspect_sample_writes_a_block_promtool_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = run_ok(
        gauntlet()
            .args(["tools", "block", "inspect", "--sample"])
            .arg(&data),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("series         140"), "{text}");
    assert!(text.contains("samples        67200"), "{text}");
    assert_same_dump(
        "sample block",
        &promtool_dump(&data, &[]),
        &gauntlet_dump(&data, &[]),
    );
    // A second run finds the block and does not write another.
    let again = run_ok(
        gauntlet()
            .args(["tools", "block", "inspect", "--sample"])
            .arg(&data),
    );
    assert!(!String::from_utf8_lossy(&again.stdout).contains("wrote sample block"));
}

/// Sample values that test Go's `%g`: ties where the shortest form is not unique (Go keeps
/// the even last digit), large counters whose %g has 16-17 digits in exponent form, every
/// power of two, the floats nearest the powers of ten and their neighbours, subnormals, the
/// notation thresholds of `%g` (1e-4, 1e6) and of JSON (1e-6, 1e21), the extremes, negative
/// zero and both signs of everything, NaN and the infinities. Deterministic.
fn float_cases() -> Vec<(&'static str, f64)> {
    let mut out: Vec<(&'static str, f64)> = Vec::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 11
    };
    // Ties: an odd multiple of 2^-j in [2^e, 2^(e+1)), j the fewest fraction bits with
    // 10^(1-j) <= ulp, ends in a decimal 5 right after its shortest form's last digit. Only
    // binades 2^-23..2^50 hold such floats.
    for e in -23i32..=50 {
        let j = (1.0 - f64::from(e - 52) * std::f64::consts::LOG10_2).ceil() as i32;
        if j < 1 || j > 52 - e || e + j < 0 {
            continue;
        }
        let lo = 1u64 << (e + j);
        for _ in 0..12 {
            let odd = (lo + next() % lo) | 1;
            out.push(("tie", odd as f64 * 2f64.powi(-j)));
        }
    }
    for _ in 0..300 {
        // Counters: whole numbers up to 2^63, and 1e14..2^57 plus eighths.
        out.push(("counter", (next() >> (next() % 40)) as f64));
        let big = 1e14 + (next() % (1 << 50)) as f64 * 128.0;
        out.push(("counter", big + (next() % 8) as f64 / 8.0));
    }
    for k in -1074..=1023 {
        let v = if k >= -1022 {
            2f64.powi(k)
        } else {
            f64::from_bits(1 << (k + 1074))
        };
        out.push(("pow2", v));
    }
    let neighbours = |v: f64, n: u64| -> Vec<f64> {
        let b = v.to_bits();
        (b.saturating_sub(n)..=b.saturating_add(n))
            .map(f64::from_bits)
            .filter(|x| x.is_finite())
            .collect()
    };
    for k in -323..=308 {
        let v: f64 = format!("1e{k}").parse().unwrap();
        out.extend(neighbours(v, 1).into_iter().map(|x| ("pow10", x)));
    }
    for _ in 0..200 {
        out.push(("subnormal", f64::from_bits(next() >> (12 + next() % 52))));
    }
    out.extend(neighbours(5e-324, 0).into_iter().map(|x| ("subnormal", x)));
    out.extend(
        neighbours(f64::from_bits((1 << 52) - 1), 2)
            .into_iter()
            .map(|x| ("subnormal", x)),
    );
    for v in [
        1e-6,
        1e-5,
        1e-4,
        1e5,
        1e6,
        999999.5,
        1e16,
        1e20,
        1e21,
        9007199254740993.0,
    ] {
        out.extend(neighbours(v, 3).into_iter().map(|x| ("threshold", x)));
    }
    for v in [f64::MAX, f64::MIN_POSITIVE, 0.1, 1.0 / 3.0] {
        out.extend(neighbours(v, 2).into_iter().map(|x| ("extreme", x)));
    }
    let negated: Vec<(&'static str, f64)> = out.iter().map(|&(c, v)| (c, -v)).collect();
    out.extend(negated);
    out.extend([
        ("extreme", 0.0),
        ("extreme", -0.0),
        ("special", f64::NAN),
        ("special", f64::INFINITY),
        ("special", f64::NEG_INFINITY),
    ]);
    out
}

/// The significant digits of a float's text (`-1.5e+06` and `1500000` give "15").
fn significant_digits(text: &str) -> String {
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let d: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    d.trim_start_matches('0').trim_end_matches('0').to_string()
}

#[test]
fn dump_spells_every_float_as_promtool_does() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = float_cases();
    // 100 samples a series, 15 s apart, within one 2 h block.
    let mut om = String::from("# TYPE gofloat gauge\n");
    for (series, chunk) in cases.chunks(100).enumerate() {
        for (i, (_, v)) in chunk.iter().enumerate() {
            let text = match *v {
                v if v.is_nan() => "NaN".to_string(),
                f64::INFINITY => "+Inf".to_string(),
                f64::NEG_INFINITY => "-Inf".to_string(),
                // Any round-tripping spelling will do: promtool parses it back to the bits.
                v => format!("{v:e}"),
            };
            let t = 1735689600 + i as u64 * 15;
            om.push_str(&format!(
                "gofloat{{series=\"{series:03}\",first_class=\"{}\"}} {text} {t}\n",
                chunk[0].0
            ));
        }
    }
    om.push_str("# EOF\n");
    let input = tmp.path().join("floats.om");
    std::fs::write(&input, &om).unwrap();

    let theirs = tmp.path().join("promtool-blocks");
    run_ok(
        Command::new(require("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&theirs),
    );
    let reference = promtool_dump(&theirs, &[]);
    let text = String::from_utf8(reference.clone()).unwrap();
    assert_eq!(text.lines().count(), cases.len(), "one line per sample");

    // The input holds the cases where the shortest form is not unique and Rust's own
    // formatting (what the dump printed before) picks the other digit.
    let mut differs = 0;
    for line in text.lines() {
        let go = line.rsplit(' ').nth(1).unwrap();
        let v: f64 = go.parse().unwrap();
        if v.is_finite()
            && v != 0.0
            && significant_digits(go) != significant_digits(&format!("{v:e}"))
        {
            differs += 1;
        }
    }
    assert!(
        differs >= 400,
        "only {differs} values where Rust's digits differ from Go's"
    );

    assert_same_dump("promtool blocks", &reference, &gauntlet_dump(&theirs, &[]));

    // Gauntlet's own blocks from the same input keep every value's bits.
    let ours = tmp.path().join("gauntlet-blocks");
    run_ok(
        gauntlet()
            .args(["tools", "block", "create-from-openmetrics"])
            .arg(&input)
            .arg(&ours),
    );
    assert_same_dump("gauntlet blocks", &reference, &gauntlet_dump(&ours, &[]));
}
