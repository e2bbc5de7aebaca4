//! TLS for Gauntlet's listeners and gRPC clients, with Thanos's flags: the gRPC server's
//! certificate and client CA (`--grpc-server-tls-*`), the clients a querier and a receiver
//! open to other StoreAPI and WriteableStore servers (`--grpc-client-tls-*`,
//! `--remote-write.client-tls-*`). The HTTP servers take their TLS from the web
//! configuration file instead ([`crate::http::webconfig`]), built by the same functions here.
//!
//! Everything uses rustls with the `ring` provider, passed explicitly so no process-wide
//! default is needed.

pub mod client;
pub mod listener;
pub(crate) mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

pub use self::client::ClientTls;
pub use self::listener::{Conn, Incoming};

/// Why TLS could not be set up from the flags or from a web configuration file. Every variant
/// names the flag (or file field) and the file, so the message alone says what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file could not be read or holds no usable PEM block.
    #[error("{flag} {path}: {reason}")]
    File {
        /// The flag or configuration field that names the file.
        flag: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The settings contradict each other or name something unsupported.
    #[error("{0}")]
    Settings(String),
    /// rustls refused the certificate and key, or the client-certificate policy.
    #[error("{what}: {source}")]
    Rustls {
        /// Which settings were being applied.
        what: String,
        /// What rustls said.
        source: rustls::Error,
    },
}

/// The crypto provider every TLS configuration here is built with.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(flag: &str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::File {
        flag: flag.to_string(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| file_error(flag, path, e.to_string()))
}

/// The PEM certificates in `path` (a chain: leaf first).
pub(crate) fn load_certs(
    flag: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(flag, path, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(flag, path, "no CERTIFICATE block in the file"));
    }
    Ok(certs)
}

/// The PEM private key in `path` (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn load_key(flag: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        file_error(
            flag,
            path,
            format!("no private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })
}

/// The CA certificates in `path`, as trust roots.
pub(crate) fn load_roots(flag: &str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(flag, path)? {
        roots
            .add(cert)
            .map_err(|e| file_error(flag, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A TLS protocol version, as the flags (`1.2`) and the web configuration (`TLS12`) name it.
/// rustls speaks TLS 1.2 and 1.3 only, so 1.0 and 1.1 are refused with a clear message.
pub(crate) fn parse_version(
    what: &str,
    text: &str,
) -> Result<&'static SupportedProtocolVersion, TlsError> {
    match text.trim() {
        "1.2" | "TLS12" => Ok(&rustls::version::TLS12),
        "1.3" | "TLS13" => Ok(&rustls::version::TLS13),
        "1.0" | "1.1" | "TLS10" | "TLS11" => Err(TlsError::Settings(format!(
            "{what} {text:?}: TLS 1.0 and 1.1 are not offered; use 1.2 or 1.3"
        ))),
        other => Err(TlsError::Settings(format!(
            "{what} {other:?}: not a TLS version (1.2 or 1.3)"
        ))),
    }
}

/// The versions from `min` to `max` inclusive.
fn versions(
    min: &'static SupportedProtocolVersion,
    max: &'static SupportedProtocolVersion,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let all = [&rustls::version::TLS12, &rustls::version::TLS13];
    let lo = all.iter().position(|v| *v == min).unwrap_or(0);
    let hi = all.iter().position(|v| *v == max).unwrap_or(1);
    if lo > hi {
        return Err(TlsError::Settings(
            "the minimum TLS version is above the maximum".into(),
        ));
    }
    Ok(all[lo..=hi].to_vec())
}

/// What a server asks of clients' certificates, with the names Go's `crypto/tls` and the web
/// configuration file give the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate is asked for.
    #[default]
    NoClientCert,
    /// A certificate is asked for but neither required nor verified.
    RequestClientCert,
    /// A certificate is required but not verified.
    RequireAnyClientCert,
    /// A certificate is not required; one given must verify against the client CA.
    VerifyClientCertIfGiven,
    /// A certificate is required and must verify against the client CA.
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// The policy a web configuration's `client_auth_type` names (empty: none).
    pub fn parse(text: &str) -> Option<ClientAuth> {
        Some(match text {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            _ => return None,
        })
    }

    fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
        )
    }
}

/// A file a setting names, with the setting's name for error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Named<'a> {
    /// The flag (`--grpc-server-tls-cert`) or field (`tls_server_config.cert_file`).
    pub what: &'a str,
    /// The file.
    pub path: &'a Path,
}

/// What a TLS server is built from.
#[derive(Debug)]
pub(crate) struct ServerSettings<'a> {
    pub cert: Named<'a>,
    pub key: Named<'a>,
    pub client_ca: Option<Named<'a>>,
    pub client_auth: ClientAuth,
    pub min_version: &'static SupportedProtocolVersion,
    pub max_version: &'static SupportedProtocolVersion,
    /// TLS 1.2 cipher suites to offer, by IANA name; empty: all the provider has.
    pub cipher_suites: Vec<String>,
    /// Key-exchange groups by Go's names (`X25519`, `CurveP256`, `CurveP384`); empty: all.
    pub curves: Vec<String>,
    /// Whether the server's cipher-suite order wins over the client's.
    pub prefer_server_order: bool,
    /// ALPN protocols offered, most preferred first.
    pub alpn: Vec<Vec<u8>>,
}

/// A rustls server configuration from `s`.
pub(crate) fn server_config(s: &ServerSettings<'_>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if !s.cipher_suites.is_empty() {
        let mut keep = Vec::new();
        for name in &s.cipher_suites {
            let Some(suite) = provider
                .cipher_suites
                .iter()
                .find(|c| format!("{:?}", c.suite()) == *name)
            else {
                let known: Vec<String> = provider
                    .cipher_suites
                    .iter()
                    .filter(|c| c.version() == &rustls::version::TLS12)
                    .map(|c| format!("{:?}", c.suite()))
                    .collect();
                return Err(TlsError::Settings(format!(
                    "cipher suite {name:?} is not offered; known: {}",
                    known.join(", ")
                )));
            };
            keep.push(*suite);
        }
        // As in Go, the list chooses among TLS 1.2 suites; TLS 1.3's are always offered.
        keep.extend(
            provider
                .cipher_suites
                .iter()
                .filter(|c| c.version() == &rustls::version::TLS13)
                .copied(),
        );
        provider.cipher_suites = keep;
    }
    if !s.curves.is_empty() {
        let mut keep = Vec::new();
        for name in &s.curves {
            let want = match name.as_str() {
                "X25519" => "X25519",
                "CurveP256" => "secp256r1",
                "CurveP384" => "secp384r1",
                other => {
                    return Err(TlsError::Settings(format!(
                        "curve {other:?} is not offered; known: X25519, CurveP256, CurveP384"
                    )));
                }
            };
            if let Some(g) = provider
                .kx_groups
                .iter()
                .find(|g| format!("{:?}", g.name()) == want)
            {
                keep.push(*g);
            }
        }
        provider.kx_groups = keep;
    }
    let provider = Arc::new(provider);
    let versions = versions(s.min_version, s.max_version)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|source| TlsError::Rustls {
            what: "TLS versions and cipher suites".into(),
            source,
        })?;
    let roots = match s.client_ca {
        Some(ca) => Some(Arc::new(load_roots(ca.what, ca.path)?)),
        None => None,
    };
    let builder = match (s.client_auth, roots) {
        (ClientAuth::NoClientCert, _) => builder.with_no_client_auth(),
        (ClientAuth::RequestClientCert, _) => builder.with_client_cert_verifier(Arc::new(
            verify::AnyClientCert::new(provider.clone(), false),
        )),
        (ClientAuth::RequireAnyClientCert, _) => builder.with_client_cert_verifier(Arc::new(
            verify::AnyClientCert::new(provider.clone(), true),
        )),
        (auth, Some(roots)) => {
            let mut v = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            if auth == ClientAuth::VerifyClientCertIfGiven {
                v = v.allow_unauthenticated();
            }
            let v = v.build().map_err(|e| {
                TlsError::Settings(format!("the client CA cannot verify certificates: {e}"))
            })?;
            builder.with_client_cert_verifier(v)
        }
        (auth, None) => {
            debug_assert!(auth.verifies());
            return Err(TlsError::Settings(format!(
                "client_auth_type {auth:?} verifies client certificates, so it needs a client CA"
            )));
        }
    };
    let certs = load_certs(s.cert.what, s.cert.path)?;
    let key = load_key(s.key.what, s.key.path)?;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Rustls {
            what: format!(
                "{} {} with {} {}",
                s.cert.what,
                s.cert.path.display(),
                s.key.what,
                s.key.path.display()
            ),
            source,
        })?;
    config.ignore_client_order = s.prefer_server_order;
    config.alpn_protocols = s.alpn.clone();
    Ok(Arc::new(config))
}

/// Treats an empty path (`--flag=`, as deployment templates write to turn a setting off) as
/// not given.
fn given(p: &Option<PathBuf>) -> Option<&Path> {
    p.as_deref().filter(|p| !p.as_os_str().is_empty())
}

/// TLS of the gRPC server (StoreAPI, Info, WriteableStore), Thanos's flags.
#[derive(Debug, Clone, Default, Args)]
pub struct GrpcServerTlsArgs {
    /// TLS certificate (PEM) of the gRPC server; without it the server speaks plain text.
    #[arg(long = "grpc-server-tls-cert", value_name = "FILE")]
    pub grpc_server_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the gRPC server's certificate.
    #[arg(long = "grpc-server-tls-key", value_name = "FILE")]
    pub grpc_server_key: Option<PathBuf>,
    /// CA (PEM) to verify clients against; when given, every client must present a
    /// certificate it signed (mutual TLS).
    #[arg(long = "grpc-server-tls-client-ca", value_name = "FILE")]
    pub grpc_server_client_ca: Option<PathBuf>,
    /// Lowest TLS version the gRPC server accepts: 1.2 or 1.3.
    #[arg(long = "grpc-server-tls-min-version", default_value = "1.3")]
    pub grpc_server_min_version: String,
}

impl GrpcServerTlsArgs {
    /// The server configuration these flags give; `None` for plain text.
    pub fn load(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        listener_tls(
            "--grpc-server-tls",
            [
                given(&self.grpc_server_cert),
                given(&self.grpc_server_key),
                given(&self.grpc_server_client_ca),
            ],
            &self.grpc_server_min_version,
            // gRPC runs over HTTP/2 only; clients such as grpcio insist on the h2 ALPN answer.
            vec![b"h2".to_vec()],
        )
    }
}

/// TLS of the receiver's remote-write listener (`--remote-write.address`), Thanos Receive's
/// flags. When not given, that listener takes its TLS from `--http.config` as the other HTTP
/// servers do.
#[derive(Debug, Clone, Default, Args)]
pub struct RemoteWriteServerTlsArgs {
    /// TLS certificate (PEM) of the remote-write listener.
    #[arg(long = "remote-write.server-tls-cert", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// TLS private key (PEM) of the remote-write listener's certificate.
    #[arg(long = "remote-write.server-tls-key", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// CA (PEM) to verify remote-write clients against; when given, every client must present
    /// a certificate it signed (mutual TLS).
    #[arg(long = "remote-write.server-tls-client-ca", value_name = "FILE")]
    pub client_ca: Option<PathBuf>,
    /// Lowest TLS version the remote-write listener accepts: 1.2 or 1.3.
    #[arg(long = "remote-write.server-tls-min-version", default_value = "1.3")]
    pub min_version: String,
}

impl RemoteWriteServerTlsArgs {
    /// The listener's configuration these flags give; `None` when none is given.
    pub fn load(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        listener_tls(
            "--remote-write.server-tls",
            [given(&self.cert), given(&self.key), given(&self.client_ca)],
            &self.min_version,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        )
    }
}

/// The server TLS of the flags `{prefix}-cert`, `-key` and `-client-ca` (the files in that
/// order; a client CA turns on mutual TLS) and `{prefix}-min-version`; `None` when no file is
/// given.
fn listener_tls(
    prefix: &'static str,
    [cert, key, ca]: [Option<&Path>; 3],
    min_version: &str,
    alpn: Vec<Vec<u8>>,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let flag = |what: &str| format!("{prefix}-{what}");
    let (cert, key) = match (cert, key) {
        (None, None) if ca.is_some() => {
            return Err(TlsError::Settings(format!(
                "{} needs {} and {}",
                flag("client-ca"),
                flag("cert"),
                flag("key")
            )));
        }
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(TlsError::Settings(format!(
                "{} needs {}",
                flag("cert"),
                flag("key")
            )));
        }
        (None, Some(_)) => {
            return Err(TlsError::Settings(format!(
                "{} needs {}",
                flag("key"),
                flag("cert")
            )));
        }
        (Some(c), Some(k)) => (c, k),
    };
    let (cert_flag, key_flag, ca_flag) = (flag("cert"), flag("key"), flag("client-ca"));
    let config = server_config(&ServerSettings {
        cert: Named {
            what: &cert_flag,
            path: cert,
        },
        key: Named {
            what: &key_flag,
            path: key,
        },
        client_ca: ca.map(|path| Named {
            what: &ca_flag,
            path,
        }),
        client_auth: if ca.is_some() {
            ClientAuth::RequireAndVerifyClientCert
        } else {
            ClientAuth::NoClientCert
        },
        min_version: parse_version(&flag("min-version"), min_version)?,
        max_version: &rustls::version::TLS13,
        cipher_suites: Vec::new(),
        curves: Vec::new(),
        prefer_server_order: false,
        alpn,
    })?;
    Ok(Some(config))
}

/// The security flags of a role that serves gRPC and HTTP: the gRPC server's TLS and the
/// HTTP servers' web configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerSecurityArgs {
    /// The gRPC server's certificate, key, client CA and lowest TLS version.
    #[command(flatten)]
    pub grpc: GrpcServerTlsArgs,
    /// The HTTP servers' web configuration file (TLS and basic auth) and timeouts.
    #[command(flatten)]
    pub http: crate::http::webconfig::HttpConfigArgs,
}

/// What [`ServerSecurityArgs`] give once their files are read.
#[derive(Debug, Clone, Default)]
pub struct ServerSecurity {
    /// The gRPC server's TLS; `None` for plain text.
    pub grpc: Option<Arc<ServerConfig>>,
    /// The HTTP servers' TLS and authentication.
    pub http: crate::http::webconfig::WebConfig,
}

impl ServerSecurityArgs {
    /// Reads every file the flags name; errors name the flag and the file.
    pub fn load(&self) -> anyhow::Result<ServerSecurity> {
        Ok(ServerSecurity {
            grpc: self.grpc.load()?,
            http: self.http.load()?,
        })
    }
}
