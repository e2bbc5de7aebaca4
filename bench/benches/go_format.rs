//! Go-spelled floats (`gauntlet_engine::go_format`), reported per value, over 4096 values of
//! each shape query answers and dumps carry: `whole` counters below 1e12, `fraction` (rate-like
//! values of 16-17 digits between 1e-3 and 1e4) and `wide` (mantissas times 10^-30..10^30, about
//! half of them in exponent form). `json_value` is what the HTTP API writes for a sample value
//! (`'f'`, or `'e'` below 1e-6 and from 1e21, as `server/src/http/json.rs` chooses), `dump_g`
//! what the dump writes (`%g`), and `ryu_text` ryu's own spelling alone: the floor under both.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gauntlet_engine::go_format::{FloatFormat, push_float};

/// 4096 values of each shape, the same on every run.
fn value_sets() -> Vec<(&'static str, Vec<f64>)> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let unit = |r: u64| (r >> 11) as f64 / (1u64 << 53) as f64;
    let n = 4096;
    let whole = (0..n)
        .map(|_| (next() % 1_000_000_000_000) as f64)
        .collect();
    let fraction = (0..n)
        .map(|_| unit(next()) * 10f64.powi((next() % 7) as i32 - 3))
        .collect();
    let wide = (0..n)
        .map(|_| unit(next()) * 10f64.powi((next() % 61) as i32 - 30))
        .collect();
    vec![("whole", whole), ("fraction", fraction), ("wide", wide)]
}

/// The HTTP API's choice of notation for a sample value.
fn json_format(v: f64) -> FloatFormat {
    let a = v.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        FloatFormat::E
    } else {
        FloatFormat::F
    }
}

fn go_format(c: &mut Criterion) {
    let mut g = c.benchmark_group("go_format");
    for (shape, values) in value_sets() {
        g.throughput(Throughput::Elements(values.len() as u64));
        let mut out = String::with_capacity(1 << 20);
        g.bench_function(format!("json_value/{shape}"), |b| {
            b.iter(|| {
                out.clear();
                for &v in &values {
                    let v = black_box(v);
                    out.push('"');
                    push_float(&mut out, v, json_format(v));
                    out.push('"');
                }
                out.len()
            })
        });
        g.bench_function(format!("dump_g/{shape}"), |b| {
            b.iter(|| {
                out.clear();
                for &v in &values {
                    push_float(&mut out, black_box(v), FloatFormat::G);
                }
                out.len()
            })
        });
        g.bench_function(format!("ryu_text/{shape}"), |b| {
            b.iter(|| {
                out.clear();
                for &v in &values {
                    out.push_str(ryu::Buffer::new().format_finite(black_box(v)));
                }
                out.len()
            })
        });
    }
}

criterion_group!(benches, go_format);
criterion_main!(benches);
