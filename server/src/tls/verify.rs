//! Certificate verifiers for the two policies that accept a peer's certificate without
//! checking who signed it: a server's `RequestClientCert`/`RequireAnyClientCert`, and a
//! client's `--grpc-client-tls-skip-verify`. Both still check the handshake signatures, so the
//! peer holds the key of the certificate it sent.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The handshake-signature checks both verifiers make with their `provider`'s algorithms
/// (the methods of that name in `ClientCertVerifier` and `ServerCertVerifier`).
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// Asks clients for a certificate and takes any, required or not.
#[derive(Debug)]
pub(super) struct AnyClientCert {
    provider: Arc<CryptoProvider>,
    mandatory: bool,
}

impl AnyClientCert {
    pub(super) fn new(provider: Arc<CryptoProvider>, mandatory: bool) -> Self {
        AnyClientCert {
            provider,
            mandatory,
        }
    }
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// Takes any server certificate (`--grpc-client-tls-skip-verify`, an Alertmanager's
/// `tls_config.insecure_skip_verify`).
#[derive(Debug)]
pub(crate) struct AnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl AnyServerCert {
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> Self {
        AnyServerCert { provider }
    }
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// Checks a server's certificate against a configured name instead of the host dialled (an
/// `http_config.tls_config.server_name`), so a client that cannot choose the name it verifies
/// (the ruler's query client dials URLs) still honours it.
#[derive(Debug)]
pub(crate) struct NamedServerCert {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl NamedServerCert {
    pub(crate) fn new(inner: Arc<dyn ServerCertVerifier>, name: ServerName<'static>) -> Self {
        NamedServerCert { inner, name }
    }
}

impl ServerCertVerifier for NamedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
