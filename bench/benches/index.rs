//! Index reads on the 10 053-series block a real Prometheus cut from its head: opening the
//! index, resolving matchers to postings the way queries do, and decoding series entries (with
//! their label strings, as the index reader does, and as symbol references, as the store does).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gauntlet_engine::index::{ChunkMeta, IndexReader, postings_for_matchers};
use gauntlet_engine::store::entry::decode_entry;
use gauntlet_promql::parse_selector;

fn index_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../testdata/tsdb/prometheus-head-compacted-remote-write/01M80DHKBGW4BG7BQKCYXB7PAV/index",
    )
}

fn index(c: &mut Criterion) {
    let bytes = std::fs::read(index_path()).expect("fixture index");
    let mut g = c.benchmark_group("index");
    g.bench_function("open", |b| {
        b.iter(|| IndexReader::from_bytes(black_box(bytes.as_slice()), index_path()).unwrap())
    });
    let ix = IndexReader::from_bytes(bytes.as_slice(), index_path()).unwrap();
    for sel in [
        r#"{__name__=~".+"}"#,
        r#"bench_metric{idx="42"}"#,
        r#"bench_metric{idx=~"1.*"}"#,
        r#"bench_metric{idx=~"1|22|333|4444"}"#,
        r#"bench_metric{idx!~"1.*",instance!=""}"#,
    ] {
        let m = parse_selector(sel).unwrap();
        g.bench_function(format!("select {sel}"), |b| {
            b.iter(|| postings_for_matchers(&ix, black_box(&m)).unwrap())
        });
    }
    let mut all = Vec::new();
    ix.all_postings(&mut all).unwrap();
    g.throughput(Throughput::Elements(all.len() as u64));
    let (mut labels, mut chunks) = (Vec::new(), Vec::<ChunkMeta>::new());
    g.bench_function("decode every series entry", |b| {
        b.iter(|| {
            for &r in &all {
                labels.clear();
                ix.series(r, &mut labels, &mut chunks).unwrap();
            }
            black_box(labels.len())
        })
    });
    // The store's path: symbol references and the chunk metas in a time range, no strings.
    let num_symbols = ix.num_symbols();
    let mut refs = Vec::new();
    g.bench_function("decode every series entry as the store does", |b| {
        b.iter(|| {
            for &r in &all {
                let at = u64::from(r) * 16;
                refs.clear();
                chunks.clear();
                decode_entry(
                    &bytes[at as usize..],
                    at,
                    num_symbols,
                    (i64::MIN, i64::MAX),
                    "index",
                    &mut refs,
                    &mut chunks,
                )
                .unwrap();
            }
            black_box(refs.len())
        })
    });
    g.finish();
}

criterion_group!(benches, index);
criterion_main!(benches);
