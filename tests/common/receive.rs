//! A `gauntlet receive` process and remote-write requests to send it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet_proto::prometheus as pb;
use prost::Message;

use super::{free_ports, gauntlet, http_get};

/// A `gauntlet receive` process on loopback, killed on drop.
pub struct Receiver {
    child: Child,
    /// Its `--http-address` port.
    pub http: u16,
    /// Its `--grpc-address` port.
    pub grpc: u16,
    /// Its `--remote-write.address` port.
    pub rw: u16,
}

impl Receiver {
    /// Starts a receiver over `dir` on free ports, labelled `replica="r1"`.
    pub fn start(dir: &Path, extra: &[&str]) -> Receiver {
        Self::start_on(dir, extra, free_ports())
    }

    /// Starts a receiver over `dir` on the ports `[http, grpc, rw]`, labelled `replica="r1"`.
    pub fn start_on(dir: &Path, extra: &[&str], ports: [u16; 3]) -> Receiver {
        let mut args = vec!["--label=replica=\"r1\""];
        args.extend_from_slice(extra);
        Self::start_bare(dir, &args, ports)
    }

    /// As [`Receiver::start_on`] without the `replica` label: `args` give the labels.
    pub fn start_bare(dir: &Path, args: &[&str], [http, grpc, rw]: [u16; 3]) -> Receiver {
        let child = gauntlet()
            .arg("receive")
            .arg(format!("--tsdb.path={}", dir.display()))
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .arg(format!("--remote-write.address=127.0.0.1:{rw}"))
            .arg("--engine.cores=2")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting gauntlet receive");
        let mut r = Receiver {
            child,
            http,
            grpc,
            rw,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http_get(http, "/-/ready") {
                return r;
            }
            if let Ok(Some(status)) = r.child.try_wait() {
                panic!("gauntlet receive exited early with {status}");
            }
            assert!(Instant::now() < deadline, "receive not ready in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it with SIGKILL and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it with SIGTERM; panics unless it exits cleanly within 30 s.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                assert!(s.success(), "receive exited with {s} on SIGTERM");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("receive did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// POSTs `body` to `path` on loopback; returns (status, response headers, body).
pub fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // A server may answer a body it refuses (413) before reading all of it and close: the
    // rest of the body then meets a closed socket, and the answer is still there to read.
    let sent = s.write_all(body);
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    if buf.is_empty() {
        sent?;
        read?;
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// The Content-Type header of remote write 1.0.
pub const V1: (&str, &str) = ("Content-Type", "application/x-protobuf");

/// A remote-write series.
pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> pb::TimeSeries {
    pb::TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| pb::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| pb::Sample {
                value: v,
                timestamp: t,
            })
            .collect(),
        ..Default::default()
    }
}

/// `raw` compressed with snappy's block format.
pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// A remote write 1.0 body holding `ts`.
pub fn write_body(ts: Vec<pb::TimeSeries>) -> Vec<u8> {
    snappy(
        &pb::WriteRequest {
            timeseries: ts,
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

/// The wall clock, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
