//! Benchmarks and measuring tools for Gauntlet; the benches live in `benches/`.
