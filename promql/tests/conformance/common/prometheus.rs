//! A real Prometheus 3 on loopback, over an empty data directory, killed on drop. The binary
//! is Debian's current build, fetched once into the target directory by
//! `tests/tools/prometheus.sh current` (the same copy the server's tests use).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Prometheus 3 binary, fetched on first use; test binaries take turns through a lock.
pub fn binary() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = Command::new("flock")
        .arg(tmp.join("prometheus3.lock"))
        .arg("bash")
        .arg(super::repo_root().join("tests/tools/prometheus.sh"))
        .arg("current")
        .arg(tmp.join("prometheus3"))
        .output()
        .expect("running tests/tools/prometheus.sh (needs flock and bash)");
    assert!(
        out.status.success(),
        "fetching Prometheus 3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Prometheus {
    /// Starts Prometheus with `features` enabled and waits until it is ready (at most 60 s).
    pub fn start(features: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(&cfg, "global:\n  scrape_interval: 1h\n").unwrap();
        let port = free_port();
        let child = Command::new(binary())
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--enable-feature={features}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        let p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = p.get("/-/ready") {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus did not become ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// GET `path_and_query`: the status and the body.
    pub fn get(&self, path_and_query: &str) -> std::io::Result<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        let head_end = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
        let head = String::from_utf8_lossy(&buf[..head_end]);
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))?;
        Ok((status, buf[head_end + 4..].to_vec()))
    }

    /// How Prometheus's `/api/v1/parse_query` answers `query`: `Ok(())` when it parses, or
    /// the error message (`invalid parameter "query": 1:5: parse error: ...`).
    pub fn parse_query(&self, query: &str) -> Result<(), String> {
        let (_, body) = self
            .get(&format!("/api/v1/parse_query?query={}", urlencode(query)))
            .expect("asking prometheus");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{query:?}: bad JSON {e}: {}",
                String::from_utf8_lossy(&body)
            )
        });
        match v["status"].as_str() {
            Some("success") => Ok(()),
            _ => {
                assert_eq!(v["errorType"], "bad_data", "{query:?}: {v}");
                Err(v["error"].as_str().unwrap_or_default().to_string())
            }
        }
    }
}

impl Prometheus {
    /// How Prometheus's `/api/v1/format_query` answers `query`: the formatted text (its
    /// `data`), or the error message.
    pub fn format_query(&self, query: &str) -> Result<String, String> {
        let (_, body) = self
            .get(&format!("/api/v1/format_query?query={}", urlencode(query)))
            .expect("asking prometheus");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{query:?}: bad JSON {e}: {}",
                String::from_utf8_lossy(&body)
            )
        });
        match (v["status"].as_str(), v["data"].as_str()) {
            (Some("success"), Some(text)) => Ok(text.to_string()),
            _ => Err(v["error"].as_str().unwrap_or_default().to_string()),
        }
    }
}

/// Percent-encodes a query parameter value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
