//! Logs as Thanos's flags shape them: `--log.level=debug|info|warn|error` and
//! `--log.format=logfmt|json`, one event per line on stderr:
//!
//! - logfmt: `ts=2026-11-24T10:00:00.123Z level=info caller=gauntlet::receive msg="remote write
//!   listening" address=0.0.0.0:19291`, values quoted when they hold spaces, quotes or `=`;
//! - json: `{"ts":"…","level":"info","caller":"gauntlet::receive","msg":"…","address":"…"}`.
//!
//! `RUST_LOG`, when set, takes over the level filter (per-module filters for debugging).

use std::fmt::{self, Write as _};
use std::time::SystemTime;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(
    missing_docs,
    reason = "the variants are the flag's values and say what they are; clap would print \
              their doc comments as a list under each `--help`"
)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(
    missing_docs,
    reason = "the variants are the flag's values and say what they are; clap would print \
              their doc comments as a list under each `--help`"
)]
pub enum LogFormat {
    Logfmt,
    Json,
}

/// Installs the process's logger.
pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .event_format(LineFormat(format))
        .with_writer(std::io::stderr)
        .init();
}

/// Formats each event as one logfmt or JSON line.
struct LineFormat(LogFormat);

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let ts = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let level = level_name(*meta.level());
        let mut head: Vec<(&str, &str)> = vec![("ts", &ts), ("level", level)];
        head.push(("caller", meta.target()));
        head.push(("msg", &fields.message));
        let all = head
            .into_iter()
            .chain(fields.pairs.iter().map(|(k, v)| (*k, v.as_str())));
        let line = match self.0 {
            LogFormat::Logfmt => logfmt_line(all),
            LogFormat::Json => json_line(all),
        };
        writeln!(writer, "{line}")
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::TRACE => "debug",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// An event's message and its other fields, in the order given.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.message = v;
        } else {
            self.pairs.push((field.name(), v));
        }
    }
}

/// `k=v` pairs separated by spaces, a value quoted (Go-style escapes) when it is empty or
/// holds a space, a quote, `=` or a control character.
fn logfmt_line<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(k);
        out.push('=');
        let plain = !v.is_empty()
            && !v
                .chars()
                .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
        if plain {
            out.push_str(v);
        } else {
            out.push_str(&serde_json::Value::from(v).to_string());
        }
    }
    out
}

/// One JSON object of string values, keys in the order given.
fn json_line<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{}:{}",
            serde_json::Value::from(k),
            serde_json::Value::from(v)
        );
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_what_needs_it() {
        let line = logfmt_line(
            [
                ("level", "info"),
                ("msg", "remote write listening"),
                ("address", "0.0.0.0:19291"),
                ("empty", ""),
                ("q", "a\"b=c\nd"),
            ]
            .into_iter(),
        );
        assert_eq!(
            line,
            r#"level=info msg="remote write listening" address=0.0.0.0:19291 empty="" q="a\"b=c\nd""#
        );
    }

    #[test]
    fn json_lines_parse_and_keep_the_order() {
        let line = json_line([("ts", "t"), ("msg", "x \"y\""), ("n", "3")].into_iter());
        assert_eq!(line, r#"{"ts":"t","msg":"x \"y\"","n":"3"}"#);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "x \"y\"");
    }
}
