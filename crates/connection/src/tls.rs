//! TLS options for connections: trust (any rustls `ServerCertVerifier`; by default nw-trust's
//! evaluation over the system's anchors plus extra ones, the same trust HTTP loads get: host
//! names from the SAN only, the anchor class's rules, Certificate Transparency with the
//! installed log list), SNI, ALPN, a client identity; PEM loading. Test certificates come
//! from nw-trust's `ca`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, ServerConfig};
use serde::Serialize;

use crate::crypto;

/// What went wrong setting TLS up (not a handshake failure: those are attempt errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate or key file could not be used.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The name is not a valid TLS server name.
    #[error("{0:?} is not a valid TLS server name; give a DNS name or an IP address")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// How a client connection does TLS.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Checks the server's certificate. `None`: nw-trust's evaluation over the anchors below
    /// (system anchors by their class, extra ones as custom), CT as by default.
    pub verifier: Option<Arc<dyn ServerCertVerifier>>,
    /// Trust the operating system's anchors (`/etc/ssl/certs`).
    pub system_anchors: bool,
    /// More anchors (a private CA, a test CA).
    pub extra_anchors: Vec<CertificateDer<'static>>,
    /// ALPN protocol ids, most preferred first.
    pub alpn: Vec<Vec<u8>>,
    /// A client identity: chain (leaf first, intermediates after) and key.
    pub identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    /// Chooses the identity per handshake instead (from the server's acceptable CAs); takes
    /// precedence over `identity`.
    pub identities: Option<Arc<dyn ResolvesClientCert>>,
}

impl ClientOptions {
    /// The rustls configuration.
    pub fn config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let builder = ClientConfig::builder_with_provider(crypto::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let verifier = match &self.verifier {
            Some(v) => v.clone(),
            None => {
                Arc::new(nw_trust::TrustVerifier::new(self.trust_options(), crypto::provider()))
            }
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let mut config = match (&self.identities, &self.identity) {
            (Some(resolver), _) => builder.with_client_cert_resolver(resolver.clone()),
            (None, Some((chain, key))) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| TlsError::Config(format!("client identity: {e}")))?,
            (None, None) => builder.with_no_client_auth(),
        };
        config.alpn_protocols.clone_from(&self.alpn);
        Ok(Arc::new(config))
    }

    /// What the default verifier evaluates against.
    pub fn trust_options(&self) -> nw_trust::Options {
        let mut anchors = Vec::new();
        if self.system_anchors {
            match nw_trust::system_anchors_shared() {
                Ok(system) => anchors = system.to_vec(),
                Err(e) => tracing::debug!("system anchors: {e}"),
            }
        }
        anchors.extend(self.extra_anchors.iter().map(|der| nw_trust::Anchor {
            der: der.clone(),
            class: nw_trust::AnchorClass::Custom,
        }));
        nw_trust::Options {
            anchors,
            log_list: nw_trust::ct::shared(),
            ..nw_trust::Options::default()
        }
    }
}

/// The name to send as SNI and check the certificate against: a DNS name or an IP literal.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

/// What a TLS connection negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Negotiated {
    /// The protocol version (`TLSv1_3`).
    pub version: String,
    /// The cipher suite.
    pub cipher: String,
    /// The application protocol agreed by ALPN, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// The name sent in SNI and checked against the certificate.
    pub server_name: String,
    /// The handshake resumed an earlier session (a ticket from the same client settings):
    /// no certificate was sent or checked this time. `None` where the TLS stack does not
    /// say (QUIC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed: Option<bool>,
}

/// The most a PEM file of certificates or a key may hold: nw-trust's limit, one for both.
pub use nw_trust::PEM_FILE_LIMIT;

/// A PEM file's bytes, refusing one larger than [`PEM_FILE_LIMIT`] (`/dev/zero` included)
/// rather than reading it without bound, and a named pipe nothing writes to rather than waiting
/// (nw-trust's `read_limited`).
pub fn read_pem_file(path: &Path) -> Result<Vec<u8>, String> {
    nw_trust::read_limited(path, PEM_FILE_LIMIT, "PEM certificate or key file")
}

/// Certificates from a PEM file (leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |why: String| TlsError::File { path: path.display().to_string(), why };
    let bytes = read_pem_file(path).map_err(file)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| file(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(file("no CERTIFICATE block found; give a PEM file".into()));
    }
    Ok(certs)
}

/// A private key from a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file = |why: String| TlsError::File { path: path.display().to_string(), why };
    let bytes = read_pem_file(path).map_err(file)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| file(format!("no usable private key ({e}); give a PEM PRIVATE KEY")))
}

/// A server configuration from a chain and key (for listeners and tests).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_verifying(chain, key, alpn, None)
}

/// [`server_config`], asking clients for certificates that `clients` judges (mutual TLS).
pub fn server_config_verifying(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[Vec<u8>],
    clients: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(crypto::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match clients {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("server certificate: {e}")))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
