//! TLS and authentication on every listener, with certificates made at test time: the gRPC
//! StoreAPI with mutual TLS (`--grpc-server-tls-*`) against the Python grpcio client and a
//! querier (`--grpc-client-tls-*`), a receiver forwarding to a TLS peer
//! (`--remote-write.client-tls-*`), the HTTP API and remote write under a web configuration file
//! (`--http.config`: TLS, client certificates, bcrypt basic auth) or, for remote write, its own
//! flags (`--remote-write.server-tls-*`), with reqwest and with
//! Prometheus 2.42 remote-writing. Every wrong client is refused: no certificate, a certificate
//! of another CA, a client trusting another CA, a wrong password, plain text on a TLS port.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::receive::{Receiver, V1, post, series, write_body};
use crate::common::{GauntletServer, free_ports, gauntlet, repo_root, require};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

/// Two CAs, each with a server certificate (`localhost`, `127.0.0.1`) and a client certificate,
/// as PEM files in a temporary directory: `ca.pem`, `server.pem`, `server-key.pem`,
/// `client.pem`, `client-key.pem`, and the same prefixed `other-` for the second CA.
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        for prefix in ["", "other-"] {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, format!("gauntlet test {prefix}CA"));
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.path().join(format!("{prefix}ca.pem")), cert.pem()).unwrap();
            let issuer = Issuer::new(params, key);
            for (name, sans, usage) in [
                (
                    "server",
                    vec!["localhost".to_string(), "127.0.0.1".to_string()],
                    ExtendedKeyUsagePurpose::ServerAuth,
                ),
                (
                    "client",
                    vec!["client.gauntlet.test".to_string()],
                    ExtendedKeyUsagePurpose::ClientAuth,
                ),
            ] {
                let mut p = CertificateParams::new(sans).unwrap();
                p.distinguished_name
                    .push(DnType::CommonName, format!("{prefix}{name}"));
                p.extended_key_usages = vec![usage];
                let k = KeyPair::generate().unwrap();
                let c = p.signed_by(&k, &issuer).unwrap();
                std::fs::write(dir.path().join(format!("{prefix}{name}.pem")), c.pem()).unwrap();
                std::fs::write(
                    dir.path().join(format!("{prefix}{name}-key.pem")),
                    k.serialize_pem(),
                )
                .unwrap();
            }
        }
        Pki { dir }
    }

    pub(crate) fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `--flag=<path of file>`.
    fn flag(&self, flag: &str, file: &str) -> String {
        format!("{flag}={}", self.path(file).display())
    }

    /// The gRPC server flags of mutual TLS with this PKI's first CA.
    fn grpc_server_mtls(&self) -> Vec<String> {
        vec![
            self.flag("--grpc-server-tls-cert", "server.pem"),
            self.flag("--grpc-server-tls-key", "server-key.pem"),
            self.flag("--grpc-server-tls-client-ca", "ca.pem"),
        ]
    }
}

/// How the Python grpcio client connects: `None` for plain text, else (CA, client certificate
/// and key).
type PyTls<'a> = Option<(&'a str, Option<(&'a str, &'a str)>)>;

/// Runs `calls` through the Python grpcio StoreAPI client against `127.0.0.1:port`.
fn python_calls(pki: &Pki, port: u16, tls: PyTls<'_>, calls: &Value) -> Vec<Value> {
    let mut cmd = Command::new(require("python3"));
    cmd.arg(repo_root().join("tests/python/store_client.py"))
        .arg(repo_root().join("proto/proto"))
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some((ca, cert)) = tls {
        cmd.env("GAUNTLET_TLS_CA", pki.path(ca));
        if let Some((c, k)) = cert {
            cmd.env("GAUNTLET_TLS_CERT", pki.path(c))
                .env("GAUNTLET_TLS_KEY", pki.path(k));
        }
    }
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(calls.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python client failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The fixture block in a filesystem bucket, labelled `site="tls"`; returns the objstore file.
fn bucket(tmp: &Path) -> PathBuf {
    let bucket = tmp.join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    crate::common::bucket::upload(
        &crate::common::fixtures().join("promtool-200series-2h"),
        &bucket,
        &[("site", "tls")],
    );
    crate::common::filesystem_objstore(tmp.join("objstore.yml"), &bucket)
}

const MINT: i64 = 1_735_689_600_000;
const MAXT: i64 = 1_735_696_800_000;

fn all_series() -> Value {
    json!({"method": "Series", "min_time": MINT, "max_time": MAXT,
           "matchers": [[2, "__name__", ".+"]], "skip_chunks": true})
}

/// A `gauntlet store` over the fixture bucket with mutual TLS on its StoreAPI.
fn tls_store(pki: &Pki, tmp: &Path) -> GauntletServer {
    let objstore = bucket(tmp);
    let mut args = vec![
        "store".to_string(),
        format!("--objstore.config-file={}", objstore.display()),
        format!("--data-dir={}", tmp.join("store").display()),
    ];
    args.extend(pki.grpc_server_mtls());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    GauntletServer::start(&args, "/-/ready")
}

#[test]
fn grpc_mtls_refuses_wrong_clients_and_serves_python_and_the_querier() {
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let store = tls_store(&pki, tmp.path());
    let calls = json!([{"method": "Info"}, all_series()]);

    // The right client: the CA that signed the server, a certificate the server's CA signed.
    let good = python_calls(
        &pki,
        store.grpc_port,
        Some(("ca.pem", Some(("client.pem", "client-key.pem")))),
        &calls,
    );
    assert_eq!(good[0]["ok"], true, "{good:?}");
    assert_eq!(good[0]["component_type"], "store");
    assert_eq!(good[0]["label_sets"], json!([{"site": "tls"}]));
    assert_eq!(good[1]["ok"], true, "{good:?}");
    let n = good[1]["series"].as_array().unwrap().len();
    assert_eq!(n, 200, "every fixture series over mutual TLS");

    // Each wrong client is refused before any call is answered.
    for (what, tls) in [
        ("plain text on the TLS port", None),
        ("no client certificate", Some(("ca.pem", None))),
        (
            "a client certificate of another CA",
            Some(("ca.pem", Some(("other-client.pem", "other-client-key.pem")))),
        ),
        (
            "a client trusting another CA",
            Some(("other-ca.pem", Some(("client.pem", "client-key.pem")))),
        ),
    ] {
        let res = python_calls(&pki, store.grpc_port, tls, &calls);
        for r in &res {
            assert_eq!(r["ok"], false, "{what}: {r}");
            assert_eq!(r["code"], "UNAVAILABLE", "{what}: {r}");
        }
    }

    // The querier over the TLS store, and the querier with each wrong client setting.
    let addr = format!("--endpoint=127.0.0.1:{}", store.grpc_port);
    let base = |extra: &[String]| -> GauntletServer {
        let mut args = vec!["query".to_string(), addr.clone()];
        args.extend_from_slice(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        GauntletServer::start(&args, "/-/ready")
    };
    let secure = "--grpc-client-tls-secure".to_string();
    let ca = pki.flag("--grpc-client-tls-ca", "ca.pem");
    let cert = pki.flag("--grpc-client-tls-cert", "client.pem");
    let key = pki.flag("--grpc-client-tls-key", "client-key.pem");
    let series_path = format!(
        "/api/v1/series?match[]={}&start={}&end={}",
        crate::common::urlencode("{__name__=~\".+\"}"),
        MINT / 1000,
        MAXT / 1000
    );
    for (what, flags, healthy) in [
        (
            "CA and client certificate",
            vec![secure.clone(), ca.clone(), cert.clone(), key.clone()],
            true,
        ),
        (
            "the server name the certificate holds",
            vec![
                secure.clone(),
                ca.clone(),
                cert.clone(),
                key.clone(),
                "--grpc-client-server-name=localhost".into(),
            ],
            true,
        ),
        (
            "skip-verify, no CA",
            vec![
                secure.clone(),
                "--grpc-client-tls-skip-verify".into(),
                cert.clone(),
                key.clone(),
            ],
            true,
        ),
        ("plain text", vec![], false),
        (
            "no client certificate",
            vec![secure.clone(), ca.clone()],
            false,
        ),
        (
            "another CA",
            vec![
                secure.clone(),
                pki.flag("--grpc-client-tls-ca", "other-ca.pem"),
                cert.clone(),
                key.clone(),
            ],
            false,
        ),
        (
            "a server name the certificate does not hold",
            vec![
                secure.clone(),
                ca.clone(),
                cert.clone(),
                key.clone(),
                "--grpc-client-server-name=wrong.gauntlet.test".into(),
            ],
            false,
        ),
    ] {
        let q = base(&flags);
        let (code, metrics) = q.get("/metrics");
        assert_eq!(code, 200);
        let metrics = String::from_utf8_lossy(&metrics);
        let want = format!("gauntlet_query_endpoints_healthy {}", u8::from(healthy));
        assert!(metrics.contains(&want), "{what}: want {want}:\n{metrics}");
        let (code, body) = q.get(&series_path);
        assert_eq!(code, 200, "{what}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        let got = body["data"].as_array().unwrap().len();
        assert_eq!(got, if healthy { n } else { 0 }, "{what}: {body}");
    }
}

#[test]
fn receiver_forwards_to_a_tls_peer_and_a_client_without_certificate_is_refused() {
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let [h, g, r] = free_ports();
    let peer_addr = format!("127.0.0.1:{g}");
    let ring = format!(r#"[{{"hashring": "default", "endpoints": ["{peer_addr}"]}}]"#);
    let ring_flag = format!("--receive.hashrings={ring}");
    // The ingester: mutual TLS on its gRPC server, where forwarded writes arrive.
    let mut args = vec![
        ring_flag.clone(),
        format!("--receive.local-endpoint={peer_addr}"),
    ];
    args.extend(pki.grpc_server_mtls());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let peer = Receiver::start_on(&tmp.path().join("peer"), &args, [h, g, r]);

    let now = crate::common::receive::now_ms();
    let write = |router: &Receiver, name: &str| {
        post(
            router.rw,
            "/api/v1/receive",
            &[V1],
            &write_body(vec![series(&[("__name__", name)], &[(now, 1.0)])]),
        )
        .unwrap()
    };
    let router_flags = |extra: &[String]| -> Vec<String> {
        let mut v = vec![ring_flag.clone()];
        v.extend_from_slice(extra);
        v
    };
    let secure = "--remote-write.client-tls-secure".to_string();
    let ca = pki.flag("--remote-write.client-tls-ca", "ca.pem");

    // A router with the client certificate: the write reaches the peer.
    let good = router_flags(&[
        secure.clone(),
        ca.clone(),
        pki.flag("--remote-write.client-tls-cert", "client.pem"),
        pki.flag("--remote-write.client-tls-key", "client-key.pem"),
    ]);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    let router = Receiver::start(&tmp.path().join("good"), &good);
    let (code, _, body) = write(&router, "forwarded_over_tls");
    assert_eq!(code, 200, "{body}");

    // Routers without a client certificate, or speaking plain text: refused by the peer.
    // (The querier's flag names are taken for the receiver's too.)
    for (what, extra) in [
        (
            "no client certificate",
            vec![
                "--grpc-client-tls-secure".to_string(),
                pki.flag("--grpc-client-tls-ca", "ca.pem"),
            ],
        ),
        ("plain text", vec![]),
    ] {
        let flags = router_flags(&extra);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let bad = Receiver::start(&tmp.path().join(what.replace(' ', "-")), &flags);
        let (code, _, body) = write(&bad, "refused_without_certificate");
        assert!(
            code >= 500,
            "{what}: a write the peer refused answered {code}: {body}"
        );
    }

    // What the peer holds, read over its StoreAPI with mutual TLS.
    let res = python_calls(
        &pki,
        peer.grpc,
        Some(("ca.pem", Some(("client.pem", "client-key.pem")))),
        &json!([{"method": "Series", "min_time": now - 60_000, "max_time": now + 60_000,
                 "matchers": [[2, "__name__", ".+"]], "skip_chunks": true}]),
    );
    assert_eq!(res[0]["ok"], true, "{res:?}");
    let names: Vec<&str> = res[0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["labels"]["__name__"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["forwarded_over_tls"]);
}

#[test]
fn remote_write_listener_takes_its_own_tls_flags() {
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let ports = free_ports();
    let rw = ports[2];
    // Mutual TLS on the remote-write listener only; the HTTP API stays plain.
    let args = [
        pki.flag("--remote-write.server-tls-cert", "server.pem"),
        pki.flag("--remote-write.server-tls-key", "server-key.pem"),
        pki.flag("--remote-write.server-tls-client-ca", "ca.pem"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let receiver = Receiver::start_on(&tmp.path().join("r"), &args, ports);

    let rt = runtime();
    let _in_runtime = rt.enter();
    let now = crate::common::receive::now_ms();
    let body = write_body(vec![series(&[("__name__", "rw_tls")], &[(now, 3.0)])]);
    let send = |client: &reqwest::Client, scheme: &str| {
        rt.block_on(
            client
                .post(format!("{scheme}://127.0.0.1:{rw}/api/v1/receive"))
                .header(V1.0, V1.1)
                .body(body.clone())
                .send(),
        )
        .map(|r| r.status().as_u16())
    };
    let good = https_client(&pki, "ca.pem", Some(("client.pem", "client-key.pem")));
    let no_cert = https_client(&pki, "ca.pem", None);
    let other_cert = https_client(
        &pki,
        "ca.pem",
        Some(("other-client.pem", "other-client-key.pem")),
    );
    let wrong_ca = https_client(&pki, "other-ca.pem", Some(("client.pem", "client-key.pem")));
    // reqwest is built without a default crypto provider; this client speaks plain HTTP but
    // its builder wants one all the same.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(send(&good, "https").unwrap(), 200);
    for (what, client, scheme) in [
        ("no client certificate", &no_cert, "https"),
        ("a certificate of another CA", &other_cert, "https"),
        ("a client trusting another CA", &wrong_ca, "https"),
        ("plain text", &plain, "http"),
    ] {
        let res = send(client, scheme);
        assert!(res.is_err(), "{what}: the TLS listener answered {res:?}");
    }

    // The HTTP port stays plain, and the StoreAPI holds only the write made with a certificate.
    let (code, _) = crate::common::http_get(receiver.http, "/-/ready").unwrap();
    assert_eq!(code, 200);
    let res = python_calls(
        &pki,
        receiver.grpc,
        None,
        &json!([{"method": "Series", "min_time": now - 60_000, "max_time": now + 60_000,
                 "matchers": [[2, "__name__", ".+"]], "skip_chunks": true}]),
    );
    assert_eq!(res[0]["ok"], true, "{res:?}");
    assert_eq!(
        res[0]["series"].as_array().map(Vec::len),
        Some(1),
        "{res:?}"
    );
}

/// A web configuration file: TLS with client certificates required and verified, and the
/// user `alice` (password `s3cret`) as htpasswd writes bcrypt hashes (`$2y$`).
fn web_config(pki: &Pki, tmp: &Path) -> PathBuf {
    let hash = bcrypt::hash("s3cret", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    let path = tmp.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  alice: '{hash}'\n",
            pki.path("server.pem").display(),
            pki.path("server-key.pem").display(),
            pki.path("ca.pem").display(),
        ),
    )
    .unwrap();
    path
}

/// A reqwest client trusting `ca`, presenting `cert` (certificate, key) if given.
fn https_client(pki: &Pki, ca: &str, cert: Option<(&str, &str)>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path(ca)).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match cert {
        Some((c, k)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(pki.path(c))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(pki.path(k)).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A `gauntlet` process whose HTTP is behind TLS, killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `gauntlet args` and waits (at most 60 s) until `url` answers 200 to `client` as
/// `alice`.
fn start_https(args: &[String], client: &reqwest::Client, url: &str) -> Process {
    let mut p = Process(
        gauntlet()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = rt.block_on(async {
            client
                .get(url)
                .basic_auth("alice", Some("s3cret"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        });
        if ok {
            return p;
        }
        if let Ok(Some(status)) = p.0.try_wait() {
            panic!("gauntlet {args:?} exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "gauntlet {args:?} not ready in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn http_api_takes_tls_client_certificates_and_basic_auth_from_the_web_config() {
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let web = web_config(&pki, tmp.path());
    let [http, grpc, nowhere] = free_ports();
    let good = https_client(&pki, "ca.pem", Some(("client.pem", "client-key.pem")));
    let base = format!("https://127.0.0.1:{http}");
    let _q = start_https(
        &[
            "query".into(),
            format!("--endpoint=127.0.0.1:{nowhere}"),
            format!("--http-address=127.0.0.1:{http}"),
            format!("--grpc-address=127.0.0.1:{grpc}"),
            format!("--http.config={}", web.display()),
        ],
        &good,
        &format!("{base}/-/ready"),
    );
    let rt = runtime();
    // reqwest's request futures are made (with their timeouts) outside `block_on`.
    let _in_runtime = rt.enter();
    let query = format!("{base}/api/v1/query?query=1%2B1&time=1000");

    // The right client: 200 over HTTP/2, with the configured header.
    let resp = rt
        .block_on(good.get(&query).basic_auth("alice", Some("s3cret")).send())
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.headers()["x-frame-options"], "deny");
    let body: Value = serde_json::from_slice(&rt.block_on(resp.bytes()).unwrap()).unwrap();
    assert_eq!(body["data"]["result"][1], "2", "{body}");

    // Wrong or missing credentials: 401 with a Basic challenge, on every path.
    for (what, auth, path) in [
        ("wrong password", Some(("alice", "s3cre")), query.clone()),
        ("unknown user", Some(("bob", "s3cret")), query.clone()),
        ("no credentials", None, query.clone()),
        (
            "no credentials on /metrics",
            None,
            format!("{base}/metrics"),
        ),
        ("no credentials on the UI", None, format!("{base}/graph")),
    ] {
        let mut req = good.get(&path);
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = rt.block_on(req.send()).unwrap();
        assert_eq!(resp.status(), 401, "{what}");
        assert_eq!(resp.headers()["www-authenticate"], "Basic", "{what}");
    }

    // Wrong TLS clients do not get an answer at all, whatever their password.
    for (what, client, url) in [
        (
            "no client certificate",
            https_client(&pki, "ca.pem", None),
            query.clone(),
        ),
        (
            "a client certificate of another CA",
            https_client(
                &pki,
                "ca.pem",
                Some(("other-client.pem", "other-client-key.pem")),
            ),
            query.clone(),
        ),
        (
            "a client trusting another CA",
            https_client(&pki, "other-ca.pem", Some(("client.pem", "client-key.pem"))),
            query.clone(),
        ),
        (
            "plain HTTP on the TLS port",
            {
                // reqwest without a preconfigured TLS setup takes the process's provider.
                let _ = rustls::crypto::ring::default_provider().install_default();
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap()
            },
            query.replacen("https://", "http://", 1),
        ),
    ] {
        let res = rt.block_on(client.get(&url).basic_auth("alice", Some("s3cret")).send());
        match res {
            Ok(r) => panic!("{what}: answered {}", r.status()),
            Err(e) => assert!(e.is_connect() || e.is_request(), "{what}: {e:?}"),
        }
    }
}

#[test]
fn all_in_one_serves_its_api_remote_write_and_store_api_under_tls() {
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let web = web_config(&pki, tmp.path());
    let [http, grpc, rw] = free_ports();
    let client = https_client(&pki, "ca.pem", Some(("client.pem", "client-key.pem")));
    let mut args = vec![
        "all".to_string(),
        format!("--data-dir={}", tmp.path().join("data").display()),
        format!("--http-address=127.0.0.1:{http}"),
        format!("--grpc-address=127.0.0.1:{grpc}"),
        format!("--remote-write.address=127.0.0.1:{rw}"),
        "--engine.cores=2".into(),
        "--compact.interval=0s".into(),
        format!("--http.config={}", web.display()),
    ];
    args.extend(pki.grpc_server_mtls());
    let _all = start_https(&args, &client, &format!("https://127.0.0.1:{http}/-/ready"));
    let rt = runtime();
    let _in_runtime = rt.enter();

    // Remote write on its own address takes the same web configuration.
    let now = crate::common::receive::now_ms();
    let body = write_body(vec![series(&[("__name__", "over_tls")], &[(now, 7.0)])]);
    let send = |auth: Option<(&str, &str)>| {
        let mut req = client
            .post(format!("https://127.0.0.1:{rw}/api/v1/receive"))
            .header(V1.0, V1.1)
            .body(body.clone());
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        rt.block_on(req.send()).unwrap().status()
    };
    assert_eq!(send(Some(("alice", "guess"))), 401);
    assert_eq!(send(None), 401);
    assert_eq!(send(Some(("alice", "s3cret"))), 200);

    // The API answers it over TLS; the StoreAPI serves it over mutual TLS only.
    let url = format!(
        "https://127.0.0.1:{http}/api/v1/query?query=over_tls&time={}",
        now / 1000 + 1
    );
    let resp = rt
        .block_on(client.get(&url).basic_auth("alice", Some("s3cret")).send())
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_slice(&rt.block_on(resp.bytes()).unwrap()).unwrap();
    assert_eq!(body["data"]["result"][0]["value"][1], "7", "{body}");
    let call = json!([{"method": "Series", "min_time": now - 60_000, "max_time": now + 60_000,
                       "matchers": [[0, "__name__", "over_tls"]], "skip_chunks": true}]);
    let good = python_calls(
        &pki,
        grpc,
        Some(("ca.pem", Some(("client.pem", "client-key.pem")))),
        &call,
    );
    assert_eq!(
        good[0]["series"].as_array().map(Vec::len),
        Some(1),
        "{good:?}"
    );
    let bad = python_calls(&pki, grpc, Some(("ca.pem", None)), &call);
    assert_eq!(bad[0]["code"], "UNAVAILABLE", "{bad:?}");
}

#[test]
fn configuration_errors_name_the_flag_the_file_and_the_line_and_exit_non_zero() {
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let bad_yaml = tmp.path().join("web.yml");
    std::fs::write(
        &bad_yaml,
        "basic_auth_users:\n  alice: '$2y$04$abc'\ntls_server_config:\n  cert_fil: x\n",
    )
    .unwrap();
    let missing = tmp.path().join("missing.pem");
    let [http, grpc, nowhere] = free_ports();
    for (what, flags, want) in [
        (
            "an unknown web configuration field",
            vec![format!("--http.config={}", bad_yaml.display())],
            vec!["--http.config", "web.yml", "cert_fil", "line 4"],
        ),
        (
            "a missing gRPC certificate",
            vec![
                format!("--grpc-server-tls-cert={}", missing.display()),
                pki.flag("--grpc-server-tls-key", "server-key.pem"),
            ],
            vec!["--grpc-server-tls-cert", "missing.pem"],
        ),
        (
            "a key that is not a key",
            vec![
                pki.flag("--grpc-server-tls-cert", "server.pem"),
                pki.flag("--grpc-server-tls-key", "server.pem"),
            ],
            vec!["--grpc-server-tls-key", "server.pem", "private key"],
        ),
        (
            "a key that belongs to another certificate",
            vec![
                pki.flag("--grpc-server-tls-cert", "server.pem"),
                pki.flag("--grpc-server-tls-key", "client-key.pem"),
            ],
            vec!["--grpc-server-tls-cert", "server.pem", "client-key.pem"],
        ),
        (
            "a client CA without a certificate",
            vec![pki.flag("--grpc-server-tls-client-ca", "ca.pem")],
            vec!["--grpc-server-tls-client-ca", "--grpc-server-tls-cert"],
        ),
        (
            "a client certificate without its key",
            vec![
                "--grpc-client-tls-secure".into(),
                pki.flag("--grpc-client-tls-cert", "client.pem"),
            ],
            vec!["--grpc-client-tls-cert", "--grpc-client-tls-key"],
        ),
    ] {
        let out = gauntlet()
            .arg("query")
            .arg(format!("--endpoint=127.0.0.1:{nowhere}"))
            .arg(format!("--http-address=127.0.0.1:{http}"))
            .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
            .args(&flags)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}: exited 0");
        let err = String::from_utf8_lossy(&out.stderr);
        for w in want {
            assert!(err.contains(w), "{what}: {w:?} missing from:\n{err}");
        }
    }
    // The compactor reads the same file for its HTTP server.
    let objstore = crate::common::filesystem_objstore(tmp.path().join("objstore.yml"), tmp.path());
    let out = gauntlet()
        .arg("compact")
        .arg(format!("--objstore.config-file={}", objstore.display()))
        .arg(format!(
            "--data-dir={}",
            tmp.path().join("compact").display()
        ))
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--http.config={}", bad_yaml.display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "compact: exited 0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http.config") && err.contains("line 4"),
        "{err}"
    );
    // The receiver's remote-write listener flags are checked the same way.
    let out = gauntlet()
        .arg("receive")
        .arg(format!(
            "--tsdb.path={}",
            tmp.path().join("receive").display()
        ))
        .arg(format!("--http-address=127.0.0.1:{http}"))
        .arg(format!("--grpc-address=127.0.0.1:{grpc}"))
        .arg(format!("--remote-write.address=127.0.0.1:{nowhere}"))
        .arg(pki.flag("--remote-write.server-tls-cert", "server.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "receive: exited 0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--remote-write.server-tls-cert needs --remote-write.server-tls-key"),
        "{err}"
    );
}

#[test]
fn prometheus_remote_writes_into_a_receiver_over_tls_with_basic_auth() {
    let Some(prometheus) =
        crate::common::require_or_skip("prometheus", "prometheus remote write over TLS")
    else {
        return;
    };
    let pki = Pki::new();
    let tmp = tempfile::tempdir().unwrap();
    let web = web_config(&pki, tmp.path());
    let [http, grpc, rw] = free_ports();
    let metrics_client = https_client(&pki, "ca.pem", Some(("client.pem", "client-key.pem")));
    let metrics_url = format!("https://127.0.0.1:{http}/metrics");
    let _receiver = start_https(
        &[
            "receive".into(),
            format!("--tsdb.path={}", tmp.path().join("receive").display()),
            format!("--http-address=127.0.0.1:{http}"),
            format!("--grpc-address=127.0.0.1:{grpc}"),
            format!("--remote-write.address=127.0.0.1:{rw}"),
            "--engine.cores=2".into(),
            "--label=replica=\"r1\"".into(),
            format!("--http.config={}", web.display()),
        ],
        &metrics_client,
        &metrics_url,
    );
    let tls = format!(
        "    tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        pki.path("ca.pem").display(),
        pki.path("client.pem").display(),
        pki.path("client-key.pem").display()
    );
    let prom = crate::common::Prometheus::start_with_config(
        &prometheus,
        |port| {
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: prom\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\nremote_write:\n  - url: https://127.0.0.1:{rw}/api/v1/receive\n    name: good\n    basic_auth:\n      username: alice\n      password: s3cret\n{tls}    queue_config:\n      batch_send_deadline: 1s\n  - url: https://127.0.0.1:{rw}/api/v1/receive\n    name: wrong-password\n    basic_auth:\n      username: alice\n      password: guess\n{tls}    queue_config:\n      batch_send_deadline: 1s\n"
            )
        },
        &[],
    );

    // The good queue's writes arrive; the other's are refused (401, which Prometheus does not
    // retry: its samples are counted as failed).
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(90);
    let accepted = loop {
        let page = rt.block_on(async {
            metrics_client
                .get(&metrics_url)
                .basic_auth("alice", Some("s3cret"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        let ok = metric(&page, "thanos_receive_write_requests_total{code=\"200\"}");
        let (_, prom_metrics) = crate::common::http_get(prom.port, "/metrics").unwrap();
        let prom_metrics = String::from_utf8_lossy(&prom_metrics);
        let failed = prom_metrics
            .lines()
            .filter(|l| {
                l.starts_with("prometheus_remote_storage_samples_failed_total")
                    && l.contains("remote_name=\"wrong-password\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        if ok > 0.0 && failed > 0.0 {
            break ok;
        }
        assert!(
            Instant::now() < deadline,
            "in 90 s: {ok} writes accepted, {failed} samples refused"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(accepted >= 1.0);

    // What arrived, read back over the receiver's StoreAPI: Prometheus's own `up`.
    let now = crate::common::receive::now_ms();
    let res = python_calls(
        &pki,
        grpc,
        None,
        &json!([{"method": "Series", "min_time": now - 600_000, "max_time": now + 60_000,
                 "matchers": [[0, "__name__", "up"]], "skip_chunks": true}]),
    );
    assert_eq!(res[0]["ok"], true, "{res:?}");
    let series = res[0]["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{res:?}");
    assert_eq!(series[0]["labels"]["job"], "prom");
}

/// The value of the sample line `name` on a metrics page (0 when absent).
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
