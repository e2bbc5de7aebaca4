//! A minimal HTTP/1.1 keep-alive client: one hyper connection per worker, reconnected when the
//! server closes it. Plain `http://` only: the load generators talk to loopback servers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use super::LoadError;

/// A parsed `http://host:port/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port (80 if the URL names none).
    pub port: u16,
    /// Path with leading `/` (and any query string), `/` if the URL has none.
    pub path: String,
}

impl Endpoint {
    /// Parses `url`; anything but plain `http://` is rejected.
    pub fn parse(url: &str) -> Result<Endpoint, LoadError> {
        let bad = || LoadError::BadUrl(url.to_string());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (hostport, 80),
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    /// `host:port`, for the `Host` header and for connecting.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The URL of `path` (which starts with `/`) on this endpoint's host, ignoring its path.
    pub fn with_path(&self, path: &str) -> Endpoint {
        Endpoint {
            path: path.to_string(),
            ..self.clone()
        }
    }
}

/// An answer: status and the whole body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection to an endpoint, re-established on demand.
#[derive(Debug)]
pub struct Conn {
    ep: Endpoint,
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    timeout: Duration,
}

impl Conn {
    /// A connection to `ep` (opened on first use); each request fails after `timeout`.
    pub fn new(ep: &Endpoint, timeout: Duration) -> Conn {
        Conn {
            authority: ep.authority(),
            ep: ep.clone(),
            sender: None,
            timeout,
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, LoadError> {
        let usable = self.sender.as_ref().is_some_and(|s| !s.is_closed());
        if !usable {
            let addr = tokio::net::lookup_host(&self.authority)
                .await?
                .next()
                .ok_or_else(|| LoadError::BadUrl(self.authority.clone()))?;
            let sock = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            // A send buffer that holds a whole request lets it go out in one write instead of
            // many wake-ups while a busy server drains the socket.
            let _ = sock.set_send_buffer_size(4 << 20);
            let tcp = sock.connect(addr).await?;
            tcp.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(async move {
                // Errors show up on the request side; the task just drives the connection.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        let s = self
            .sender
            .as_mut()
            .ok_or_else(|| LoadError::Invalid("no connection".into()))?;
        s.ready().await.map_err(std::io::Error::other)?;
        Ok(s)
    }

    /// Sends a request with `method`, `path_and_query` (or the endpoint's own path when
    /// `None`), extra headers and body; returns the answer once its body is read.
    pub async fn send(
        &mut self,
        method: hyper::Method,
        path_and_query: Option<&str>,
        headers: &[(&'static str, &'static str)],
        body: Bytes,
    ) -> Result<Answer, LoadError> {
        let uri = path_and_query.unwrap_or(&self.ep.path).to_string();
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, self.authority.as_str());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b
            .body(Full::new(body))
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        let timeout = self.timeout;
        let fut = async {
            let s = self.sender().await?;
            let resp = s.send_request(req).await.map_err(std::io::Error::other)?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            Ok::<_, LoadError>(Answer { status, body })
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(LoadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer in {timeout:?}"),
                )))
            }
        }
    }
}

/// A single-threaded tokio runtime: the load generators use one thread so their own CPU stays
/// small and easy to measure.
pub fn runtime() -> Result<tokio::runtime::Runtime, LoadError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("http://127.0.0.1:9090/api/v1/write").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.path.as_str()),
            ("127.0.0.1", 9090, "/api/v1/write")
        );
        let e = Endpoint::parse("http://localhost").unwrap();
        assert_eq!((e.port, e.path.as_str()), (80, "/"));
        assert!(Endpoint::parse("https://x/").is_err());
        assert!(Endpoint::parse("http://:80/").is_err());
        assert!(Endpoint::parse("http://x:notaport/").is_err());
    }
}
