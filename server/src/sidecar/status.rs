//! The sidecar's status page (`/` on its HTTP server): plain server-rendered HTML with
//! Prometheus's health (up or down, when it was last asked), its external labels, the last
//! block uploaded and when, and the reloader's last reload. It refreshes itself every 10 s.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use super::reloader::ReloaderStats;
use super::shipper::Shipper;
use super::store::PromState;

/// What the status page shows.
#[derive(Debug, Clone)]
pub struct StatusSources {
    /// Prometheus's health and labels.
    pub state: Arc<PromState>,
    /// The shipper, when uploads are on.
    pub shipper: Option<Arc<Shipper>>,
    /// The reloader's counters, when it runs.
    pub reloader: Option<Arc<ReloaderStats>>,
}

/// The route of the status page.
pub fn router(sources: StatusSources) -> Router {
    Router::new().route(
        "/",
        get(move || {
            let s = sources.clone();
            async move { Html(page(&s, crate::now_ms())) }
        }),
    )
}

/// `s` with the characters HTML gives a meaning escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A time in ms as RFC 3339 UTC and how long before `now_ms` it was; "never" for 0.
fn when(ms: i64, now_ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    let ago = (now_ms - ms).max(0) / 1000;
    format!("{} ({ago}s ago)", humantime::format_rfc3339_seconds(t))
}

/// One table row of a name and an already escaped value.
fn row(out: &mut String, name: &str, value_html: &str) {
    let _ = writeln!(
        out,
        "<tr><th>{}</th><td>{value_html}</td></tr>",
        escape(name)
    );
}

/// The page's HTML at `now_ms`.
pub fn page(s: &StatusSources, now_ms: i64) -> String {
    let st = &s.state;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\">\
         <title>Gauntlet sidecar</title>\
         <style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:2em}\
         .up{color:#080}.down{color:#b00}</style></head><body>\n<h1>Gauntlet sidecar</h1>\n",
    );
    out.push_str("<h2>Prometheus</h2>\n<table>\n");
    row(&mut out, "URL", &escape(st.client.url()));
    let health = if st.is_up() {
        "<span class=\"up\" id=\"prometheus-health\">up</span>"
    } else {
        "<span class=\"down\" id=\"prometheus-health\">down</span>"
    };
    row(&mut out, "Health", health);
    row(
        &mut out,
        "Last check",
        &escape(&when(st.last_check_ms(), now_ms)),
    );
    let ext = st.external();
    let labels: Vec<String> = ext
        .iter()
        .map(|l| format!("{}=\"{}\"", escape(&l.name), escape(&l.value)))
        .collect();
    row(&mut out, "External labels", &labels.join(", "));
    out.push_str("</table>\n<h2>Uploads</h2>\n<table>\n");
    match &s.shipper {
        None => row(&mut out, "Uploads", "off (no --objstore.config-file)"),
        Some(sh) => {
            let block = sh
                .stats
                .last_upload_block
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let block = if block.is_empty() {
                "none yet".to_string()
            } else {
                block
            };
            row(
                &mut out,
                "Last uploaded block",
                &format!("<span id=\"last-upload-block\">{}</span>", escape(&block)),
            );
            row(
                &mut out,
                "Last upload",
                &escape(&when(sh.stats.last_upload_ms.load(Relaxed), now_ms)),
            );
            row(
                &mut out,
                "Blocks uploaded since start",
                &sh.stats.uploads.load(Relaxed).to_string(),
            );
        }
    }
    out.push_str("</table>\n");
    if let Some(r) = &s.reloader {
        out.push_str("<h2>Reloader</h2>\n<table>\n");
        row(
            &mut out,
            "Last successful reload",
            &escape(&when(r.last_reload_success_ms.load(Relaxed), now_ms)),
        );
        row(
            &mut out,
            "Reloads (failed)",
            &format!(
                "{} ({})",
                r.reloads.load(Relaxed),
                r.reloads_failed.load(Relaxed)
            ),
        );
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped_and_times_say_how_long_ago() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(when(0, 5), "never");
        assert_eq!(when(1_000, 61_000), "1970-01-01T00:00:01Z (60s ago)");
    }
}
