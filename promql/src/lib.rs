//! Gauntlet's PromQL front end: a lexer, a parser and type checks that read Prometheus 3.x's
//! grammar (up to 3.14's duration expressions, `anchored`/`smoothed` and `fill()` modifiers)
//! and refuse what it refuses in its words, and a printer that writes a tree back as
//! Prometheus does. Nothing here evaluates a query.
//!
//! ```
//! use gauntlet_promql::parser::{Options, parse};
//! let e = parse("sum(rate(x[5m])) by (job)", &Options::default()).unwrap();
//! assert_eq!(e.to_string(), "sum by (job) (rate(x[5m]))");
//! let err = parse("sum(", &Options::default()).unwrap_err();
//! assert_eq!(err.to_string(), "1:5: parse error: unclosed left parenthesis");
//! ```

pub mod parser;
