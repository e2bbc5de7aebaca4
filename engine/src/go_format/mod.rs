//! Text as Go's standard library writes it, for output held byte for byte to Prometheus,
//! promtool and Thanos: floats as `strconv.FormatFloat` and `fmt`'s `%g`/`%v` print them (the
//! dump, the HTTP API's sample values, error messages and annotations, `meta.json`), and strings
//! and runes as `%q` and `%#U` quote them (label sets, matchers, parse errors).
//!
//! Every such spelling in the engine and the server comes from here.

mod float;
mod quote;
#[cfg(test)]
mod tests;

pub use float::{FloatFormat, format_float, push_float, push_json_float};
pub use quote::{is_print, push_quoted, quoted, quoted_rune, unicode_format};
