//! Text as Go's standard library writes it, for output held byte for byte to Prometheus,
//! promtool and Thanos: floats as `strconv.FormatFloat` and `fmt`'s `%g`/`%v` print them (the
//! dump, the HTTP API's sample values, error messages and annotations, `meta.json`), and strings
//! and runes as `%q` and `%#U` quote them (label sets, matchers, parse errors).
//!
//! The engine and the server take every shortest float spelling and every Go-quoted string
//! from here rather than from Rust's `{}`, `{:e}` and `{:?}`, which differ from Go's on ties,
//! notation and escapes.

mod float;
mod quote;
#[cfg(test)]
mod tests;

pub use float::{FloatFormat, format_float, push_float, push_json_float};
pub use quote::{is_print, push_quoted, quoted, quoted_rune, unicode_format};
