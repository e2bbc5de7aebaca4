//! The web UI: the files `web/` builds to, embedded in the binary by `build.rs`, served at `/`,
//! the pages' paths (`/graph`, `/query`, `/status`, `/flags`, `/stores`, `/blocks`, `/tenants`,
//! `/compactor`, `/rules`, `/alerts`) and
//! `/assets/…`.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
#[derive(Debug)]
struct File {
    /// Its path under the build's output directory, `/`-separated (`index.html`,
    /// `assets/index-3f2a.js`).
    path: &'static str,
    bytes: &'static [u8],
    /// The same compressed with gzip, for clients that take it (text files of 1 KiB or more).
    gzip: Option<&'static [u8]>,
}

mod built {
    use super::File;
    include!(concat!(env!("OUT_DIR"), "/web_ui.rs"));
}

/// Paths the single page answers with its own `index.html`; the page shows the one named.
const PAGES: [&str; 11] = [
    "/",
    "/graph",
    "/query",
    "/status",
    "/flags",
    "/stores",
    "/blocks",
    "/tenants",
    "/compactor",
    "/rules",
    "/alerts",
];

/// The UI's routes, to merge beside the API's.
pub fn router() -> Router {
    let mut r = Router::new();
    for page in PAGES {
        r = r.route(page, get(index));
    }
    r.route("/assets/{*file}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    if !built::BUILT {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The web UI was not built into this binary (it was built with GAUNTLET_WEB_UI=skip). \
             Build it again with npm installed to get the UI; the HTTP API under /api/v1 works.\n",
        )
            .into_response();
    }
    match find("index.html") {
        Some(f) => file_response(f, "no-cache", takes_gzip(&headers)),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn asset(uri: Uri, headers: HeaderMap) -> Response {
    let rel = uri.path().trim_start_matches('/');
    match find(rel) {
        // Built asset names carry a hash of their contents, so they never change.
        Some(f) => file_response(
            f,
            "public, max-age=31536000, immutable",
            takes_gzip(&headers),
        ),
        None => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

fn find(path: &str) -> Option<&'static File> {
    built::FILES.iter().find(|f| f.path == path)
}

/// Whether the request's `Accept-Encoding` takes gzip (and does not refuse it with `q=0`).
pub(crate) fn takes_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f64>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn file_response(f: &'static File, cache: &'static str, gzip_ok: bool) -> Response {
    let gzip = f.gzip.filter(|_| gzip_ok);
    let mut r = Response::new(axum::body::Body::from(gzip.unwrap_or(f.bytes)));
    if gzip.is_some() {
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    // Caches keep the two encodings apart.
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(f.path)),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("map") => "application/json",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_files_hold_the_page_and_its_assets() {
        if !built::BUILT {
            return;
        }
        let index = find("index.html").expect("index.html embedded");
        let html = std::str::from_utf8(index.bytes).expect("UTF-8 page");
        // Every asset the page names is embedded under the path it is asked for by.
        for part in html.split("\"/assets/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(
                find(&format!("assets/{name}")).is_some(),
                "index.html names /assets/{name}, which is not embedded"
            );
        }
        assert!(built::FILES.iter().any(|f| f.path.ends_with(".js")));
    }

    #[test]
    fn the_script_is_served_gzipped_to_clients_that_take_it() {
        use flate2::read::GzDecoder;
        use std::io::Read;
        if !built::BUILT {
            return;
        }
        let script = built::FILES
            .iter()
            .filter(|f| f.path.ends_with(".js"))
            .max_by_key(|f| f.bytes.len())
            .unwrap();
        let gz = script.gzip.expect("the script has a gzip copy");
        assert!(
            gz.len() * 2 < script.bytes.len(),
            "{} vs {}",
            gz.len(),
            script.bytes.len()
        );
        let mut back = Vec::new();
        GzDecoder::new(gz).read_to_end(&mut back).unwrap();
        assert_eq!(back, script.bytes);

        let mut h = HeaderMap::new();
        assert!(!takes_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(takes_gzip(&h));
        let r = file_response(script, "no-cache", true);
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0"),
        );
        assert!(!takes_gzip(&h));
        let r = file_response(script, "no-cache", false);
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(r.headers()[header::VARY], "Accept-Encoding");
    }
}
