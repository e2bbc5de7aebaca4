//! Text as Go's standard library writes it, for output held byte for byte to Prometheus,
//! promtool and Thanos: floats as `strconv.FormatFloat` and `fmt`'s `%g`/`%v` print them (the
//! dump, the HTTP API's sample values, error messages and annotations, `meta.json`) and as
//! `%f` with a precision prints them (Prometheus's messages about factors and timestamps), and
//! strings and runes as `%q` and `%#U` quote them (label sets, matchers, parse errors).
//!
//! The engine and the server take every Go float spelling and every Go-quoted string from
//! here rather than from Rust's `{}`, `{:e}`, `{:.6}` and `{:?}`, which differ from Go's on
//! ties, notation, infinities and escapes.

mod float;
mod quote;
#[cfg(test)]
mod tests;

pub use float::{
    FloatFormat, format_fixed, format_float, format_general, push_fixed, push_float, push_general,
    push_json_float,
};
pub use quote::{
    as_raw_byte, is_print, push_quoted, quoted, quoted_rune, raw_byte_char, unicode_format,
};
