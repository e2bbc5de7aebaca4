//! Parsing speed: the query sets of `perf/queries/` (every query of `default.txt`,
//! `histogram.txt` and the selectors of `series.txt`) parsed by gauntlet-promql, by the
//! engine's path (`Engine::format_query`: the query limits, gauntlet-promql, then the printer;
//! each query made unique by a trailing comment so the engine's parse cache does not answer).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark that cannot go on stops by panicking, at the line it stopped"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gauntlet_promql::Engine;
use gauntlet_promql::parser::{Options, parse};

fn queries(file: &str) -> Vec<String> {
    let path = format!("{}/../perf/queries/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let skip = match words.first() {
                Some(&"instant") => 2,
                Some(&"range") | Some(&"series") if words.len() > 3 => {
                    if words[0] == "range" {
                        4
                    } else {
                        3
                    }
                }
                _ => return None,
            };
            let mut rest = l.trim_start();
            for _ in 0..skip {
                rest = rest[rest.find(char::is_whitespace)?..].trim_start();
            }
            Some(rest.to_string())
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let opts = Options::all_features();
    let engine = Engine::default();
    for file in ["default.txt", "histogram.txt", "series.txt"] {
        let qs = queries(file);
        assert!(!qs.is_empty(), "{file}: no queries");
        for q in &qs {
            parse(q, &opts).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
        let bytes: usize = qs.iter().map(String::len).sum();
        let mut g = c.benchmark_group(format!("parse/{file}"));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("gauntlet-promql", |b| {
            b.iter(|| {
                for q in &qs {
                    std::hint::black_box(parse(q, &opts).unwrap());
                }
            })
        });
        let mut n = 0u64;
        g.bench_function("engine format_query", |b| {
            b.iter(|| {
                for q in &qs {
                    n += 1;
                    let unique = format!("{q} # {n}");
                    std::hint::black_box(engine.format_query(&unique).unwrap());
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
