//! The TLS side of the gRPC clients a querier opens to its StoreAPI endpoints
//! (`--grpc-client-tls-*`) and a receiver opens to the other receivers of its hashring
//! (`--remote-write.client-tls-*`, as Thanos Receive names them).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use clap::Args;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use super::{TlsError, given, load_certs, load_key, load_roots, provider, verify};

/// The querier's gRPC client flags, Thanos Query's names.
#[derive(Debug, Clone, Default, Args)]
pub struct GrpcClientTlsArgs {
    /// Use TLS when talking to StoreAPI endpoints.
    #[arg(long = "grpc-client-tls-secure")]
    pub grpc_client_secure: bool,
    /// Do not verify the endpoints' certificates (self-signed, or signed by an unknown CA).
    #[arg(long = "grpc-client-tls-skip-verify")]
    pub grpc_client_skip_verify: bool,
    /// Client certificate (PEM) presented to the endpoints.
    #[arg(long = "grpc-client-tls-cert", value_name = "FILE")]
    pub grpc_client_cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(long = "grpc-client-tls-key", value_name = "FILE")]
    pub grpc_client_key: Option<PathBuf>,
    /// CA certificates (PEM) that verify the endpoints; without it the system's trust store.
    #[arg(long = "grpc-client-tls-ca", value_name = "FILE")]
    pub grpc_client_ca: Option<PathBuf>,
    /// Name the endpoints' certificates must be valid for; without it the host of each
    /// endpoint's address.
    #[arg(long = "grpc-client-server-name")]
    pub grpc_client_server_name: Option<String>,
}

impl GrpcClientTlsArgs {
    /// The client TLS these flags give.
    pub fn load(&self) -> Result<ClientTls, TlsError> {
        ClientTls::load(&ClientSettings {
            prefix: "--grpc-client",
            secure: self.grpc_client_secure,
            skip_verify: self.grpc_client_skip_verify,
            cert: given(&self.grpc_client_cert),
            key: given(&self.grpc_client_key),
            ca: given(&self.grpc_client_ca),
            server_name: self.grpc_client_server_name.as_deref(),
        })
    }
}

/// The receiver's flags for forwarding to the other receivers of its hashring, Thanos
/// Receive's names (the querier's `--grpc-client-*` names are taken too).
#[derive(Debug, Clone, Default, Args)]
pub struct ForwardClientTlsArgs {
    /// Use TLS when forwarding to other receivers.
    #[arg(
        long = "remote-write.client-tls-secure",
        visible_alias = "grpc-client-tls-secure"
    )]
    pub forward_secure: bool,
    /// Do not verify the other receivers' certificates.
    #[arg(
        long = "remote-write.client-tls-skip-verify",
        visible_alias = "grpc-client-tls-skip-verify"
    )]
    pub forward_skip_verify: bool,
    /// Client certificate (PEM) presented to the other receivers.
    #[arg(
        long = "remote-write.client-tls-cert",
        visible_alias = "grpc-client-tls-cert",
        value_name = "FILE"
    )]
    pub forward_cert: Option<PathBuf>,
    /// Private key (PEM) of the client certificate.
    #[arg(
        long = "remote-write.client-tls-key",
        visible_alias = "grpc-client-tls-key",
        value_name = "FILE"
    )]
    pub forward_key: Option<PathBuf>,
    /// CA certificates (PEM) that verify the other receivers; without it the system's trust
    /// store.
    #[arg(
        long = "remote-write.client-tls-ca",
        visible_alias = "grpc-client-tls-ca",
        value_name = "FILE"
    )]
    pub forward_ca: Option<PathBuf>,
    /// Name the other receivers' certificates must be valid for; without it the host of each
    /// receiver's address in the hashring.
    #[arg(
        long = "remote-write.client-server-name",
        visible_alias = "grpc-client-server-name"
    )]
    pub forward_server_name: Option<String>,
}

impl ForwardClientTlsArgs {
    /// The client TLS these flags give.
    pub fn load(&self) -> Result<ClientTls, TlsError> {
        ClientTls::load(&ClientSettings {
            prefix: "--remote-write.client",
            secure: self.forward_secure,
            skip_verify: self.forward_skip_verify,
            cert: given(&self.forward_cert),
            key: given(&self.forward_key),
            ca: given(&self.forward_ca),
            server_name: self.forward_server_name.as_deref(),
        })
    }
}

/// One client flag group's values, whichever names it has.
struct ClientSettings<'a> {
    /// `--grpc-client` or `--remote-write.client`, for error messages.
    prefix: &'static str,
    secure: bool,
    skip_verify: bool,
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
    ca: Option<&'a Path>,
    server_name: Option<&'a str>,
}

/// How a gRPC client reaches its servers: plain text, or TLS with this configuration.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    config: Option<Arc<ClientConfig>>,
    /// The name certificates are checked against instead of each address's host.
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// Plain text.
    pub fn plain() -> ClientTls {
        ClientTls::default()
    }

    fn load(s: &ClientSettings<'_>) -> Result<ClientTls, TlsError> {
        let p = s.prefix;
        if !s.secure {
            if s.cert.is_some() || s.key.is_some() || s.ca.is_some() || s.skip_verify {
                tracing::warn!(
                    "{p}-tls-cert, -key, -ca and -skip-verify are ignored without {p}-tls-secure"
                );
            }
            return Ok(ClientTls::plain());
        }
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                what: format!("{p}-tls-secure"),
                source,
            })?;
        let builder = if s.skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verify::AnyServerCert::new(provider)))
        } else {
            let roots = match s.ca {
                Some(ca) => load_roots(&format!("{p}-tls-ca"), ca)?,
                None => system_roots(p)?,
            };
            builder.with_root_certificates(roots)
        };
        let mut config = match (s.cert, s.key) {
            (Some(cert), Some(key)) => {
                let what_cert = format!("{p}-tls-cert");
                let what_key = format!("{p}-tls-key");
                builder
                    .with_client_auth_cert(load_certs(&what_cert, cert)?, load_key(&what_key, key)?)
                    .map_err(|source| TlsError::Rustls {
                        what: format!(
                            "{what_cert} {} with {what_key} {}",
                            cert.display(),
                            key.display()
                        ),
                        source,
                    })?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(TlsError::Settings(format!(
                    "{p}-tls-cert needs {p}-tls-key"
                )));
            }
            (None, Some(_)) => {
                return Err(TlsError::Settings(format!(
                    "{p}-tls-key needs {p}-tls-cert"
                )));
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = match s.server_name.filter(|n| !n.is_empty()) {
            Some(n) => Some(
                ServerName::try_from(n.to_string())
                    .map_err(|e| TlsError::Settings(format!("{p}-server-name {n:?}: {e}")))?,
            ),
            None => None,
        };
        Ok(ClientTls {
            config: Some(Arc::new(config)),
            server_name,
        })
    }

    /// Whether connections use TLS.
    pub fn is_secure(&self) -> bool {
        self.config.is_some()
    }

    /// A channel to `endpoint` (an `http://host:port` endpoint with its timeouts set),
    /// connected on first use, over TLS when configured.
    pub fn connect_lazy(&self, endpoint: Endpoint) -> Channel {
        match &self.config {
            None => endpoint.connect_lazy(),
            Some(config) => endpoint.connect_with_connector_lazy(TlsConnector {
                config: config.clone(),
                server_name: self.server_name.clone(),
            }),
        }
    }
}

/// The system's trust store, for a client given no CA file.
fn system_roots(prefix: &str) -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::Settings(format!(
            "{prefix}-tls-secure without {prefix}-tls-ca: no CA certificates found in the system trust store{}",
            found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )));
    }
    Ok(roots)
}

/// Opens TCP, then TLS, for tonic's channel.
#[derive(Debug, Clone)]
struct TlsConnector {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

type Connecting = Pin<
    Box<
        dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send,
    >,
>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Connecting {
        let config = self.config.clone();
        let name = self.server_name.clone();
        Box::pin(async move {
            let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidInput, m);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid(format!("{uri}: no port")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = match name {
                Some(n) => n,
                None => ServerName::try_from(host.clone())
                    .map_err(|e| invalid(format!("{host:?} is not a server name: {e}")))?,
            };
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        })
    }
}
