//! The downstream querier: requests sent to it, and tried again when it fails. A 5xx answer
//! or no answer at all (a refused or broken connection, a timeout) is tried again, up to the
//! request's number of tries; a 4xx is the client's mistake and goes back as it is.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use bytes::Bytes;

/// An answer of the querier: status, headers and body as it sent them.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// A request to the querier.
#[derive(Debug, Clone)]
pub struct Ask {
    /// GET or POST (or any method a passed-through request had).
    pub method: Method,
    /// The path under the downstream URL, with its leading `/`.
    pub path: String,
    /// The URL's query, without `?` (may be empty).
    pub query: String,
    /// Headers sent.
    pub headers: HeaderMap,
    /// The body (a form for POSTed queries).
    pub body: Bytes,
}

/// The querier every request is sent to.
#[derive(Debug)]
pub struct Downstream {
    client: reqwest::Client,
    /// `scheme://host:port/prefix`, without a trailing `/`.
    base: String,
    /// Tries after the first, summed over all requests.
    pub retries: AtomicU64,
}

/// Headers that belong to one connection and are not passed on.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "host",
    "content-length",
    // The client asks for plain bodies; the frontend compresses its own answers.
    "accept-encoding",
];

/// Whether `name` is a header passed on between client and querier.
pub fn passes(name: &HeaderName) -> bool {
    !HOP_BY_HOP.contains(&name.as_str())
}

impl Downstream {
    /// A client of the querier at `url`.
    pub fn new(url: &str) -> anyhow::Result<Downstream> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!(
                "--query-frontend.downstream-url {url:?}: want an http:// or https:// URL"
            );
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("Gauntlet/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .build()
            .map_err(|e| anyhow::anyhow!("building the downstream client: {e}"))?;
        Ok(Downstream {
            client,
            base,
            retries: AtomicU64::new(0),
        })
    }

    /// Sends `ask` once.
    async fn send_once(&self, ask: &Ask) -> Result<Answer, String> {
        let url = if ask.query.is_empty() {
            format!("{}{}", self.base, ask.path)
        } else {
            format!("{}{}?{}", self.base, ask.path, ask.query)
        };
        let mut req = self.client.request(ask.method.clone(), &url);
        for (k, v) in &ask.headers {
            if passes(k) {
                req = req.header(k, v);
            }
        }
        if !ask.body.is_empty() {
            req = req.body(ask.body.clone());
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Sends `ask`, up to `tries` times (at least once) while the querier fails; the last
    /// failure when every try failed (`Err` when the querier never answered).
    pub async fn send(&self, ask: &Ask, tries: usize) -> Result<Answer, String> {
        let tries = tries.max(1);
        let mut last = Err(String::from("not sent"));
        for n in 0..tries {
            if n > 0 {
                self.retries.fetch_add(1, Relaxed);
            }
            let got = self.send_once(ask).await;
            match &got {
                Ok(a) if !a.status.is_server_error() => return got,
                Ok(a) => {
                    tracing::debug!(path = %ask.path, status = %a.status, try_ = n + 1, "the querier failed; trying again")
                }
                Err(e) => {
                    tracing::debug!(path = %ask.path, error = %e, try_ = n + 1, "the querier did not answer; trying again")
                }
            }
            last = got;
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A local server whose first `fail` answers are `status`, then 200 "ok"; the number of
    /// requests it saw.
    async fn flaky(status: u16, fail: usize) -> (String, Arc<AtomicUsize>) {
        let seen = Arc::new(AtomicUsize::new(0));
        let s = seen.clone();
        let app = axum::Router::new().route(
            "/x",
            axum::routing::get(move || {
                let n = s.fetch_add(1, Relaxed);
                async move {
                    if n < fail {
                        (
                            StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
                            "no",
                        )
                    } else {
                        (StatusCode::OK, "ok")
                    }
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        (format!("http://{addr}"), seen)
    }

    /// The querier's client, as the binary's main makes it possible: reqwest's rustls needs
    /// a crypto provider.
    fn downstream(url: &str) -> Downstream {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Downstream::new(url).unwrap()
    }

    fn ask() -> Ask {
        Ask {
            method: Method::GET,
            path: "/x".into(),
            query: String::new(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    #[tokio::test]
    async fn a_5xx_is_tried_again_until_it_passes() {
        let (url, seen) = flaky(500, 2).await;
        let d = downstream(&url);
        let a = d.send(&ask(), 5).await.unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(&a.body[..], b"ok");
        assert_eq!(seen.load(Relaxed), 3);
        assert_eq!(d.retries.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn the_last_5xx_is_returned_when_tries_run_out() {
        let (url, seen) = flaky(503, 10).await;
        let d = downstream(&url);
        let a = d.send(&ask(), 3).await.unwrap();
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(seen.load(Relaxed), 3);
    }

    #[tokio::test]
    async fn a_4xx_is_not_tried_again() {
        let (url, seen) = flaky(400, 10).await;
        let d = downstream(&url);
        let a = d.send(&ask(), 5).await.unwrap();
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(seen.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn no_answer_is_tried_again_then_an_error() {
        // A port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let d = downstream(&format!("http://{addr}"));
        assert!(d.send(&ask(), 2).await.is_err());
        assert_eq!(d.retries.load(Relaxed), 1);
    }
}
