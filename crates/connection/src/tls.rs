//! TLS options for connections: trust (any rustls `ServerCertVerifier`, by default rustls's
//! WebPKI verifier over the system's anchors plus extra ones), SNI, ALPN, a client identity;
//! PEM loading; a throwaway test CA for test servers and `nw cat -l --tls`.
//!
//! The minimal test CA here serves the embedded test server; nw-trust (which this crate does
//! not depend on) has the full one and the real verifier, which front ends plug in.

use std::path::Path;
use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use serde::Serialize;

use crate::crypto;

/// What went wrong setting TLS up (not a handshake failure: those are attempt errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error("{0:?} is not a valid TLS server name; give a DNS name or an IP address")]
    ServerName(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// How a client connection does TLS.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Checks the server's certificate. `None`: rustls's WebPKI verifier over the anchors below.
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
        let builder = match &self.verifier {
            Some(v) => builder.dangerous().with_custom_certificate_verifier(v.clone()),
            None => builder.with_root_certificates(self.anchors()),
        };
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

    fn anchors(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        if self.system_anchors {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!("system anchors: {e}");
            }
            roots.add_parsable_certificates(found.certs);
        }
        roots.add_parsable_certificates(self.extra_anchors.iter().cloned());
        roots
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
    pub version: String,
    pub cipher: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    pub server_name: String,
}

/// The most a PEM file of certificates or a key may hold: a long chain is a few dozen KiB.
pub const PEM_FILE_LIMIT: u64 = 1 << 20;

/// A PEM file's bytes, refusing one larger than [`PEM_FILE_LIMIT`] (`/dev/zero` included)
/// rather than reading it without bound.
pub fn read_pem_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(PEM_FILE_LIMIT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > PEM_FILE_LIMIT {
        return Err(std::io::Error::other(format!(
            "it is larger than {} KiB, which no PEM certificate or key file is; is it the right file?",
            PEM_FILE_LIMIT / 1024
        )));
    }
    Ok(bytes)
}

/// Certificates from a PEM file (leaf first).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |why: String| TlsError::File { path: path.display().to_string(), why };
    let bytes = read_pem_file(path).map_err(|e| file(format!("cannot read certificates: {e}")))?;
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
    let bytes = read_pem_file(path).map_err(|e| file(format!("cannot read the key: {e}")))?;
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

/// A throwaway certificate authority for test servers. Never trusted by anything but the
/// clients that are handed its root explicitly.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    root: rcgen::Certificate,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate chain and its key, as issued by a [`TestCa`].
#[derive(Debug)]
pub struct Issued {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    pub fn new(common_name: &str) -> Result<Self, TlsError> {
        let err = |e: rcgen::Error| TlsError::Config(format!("test CA: {e}"));
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages =
            vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let root = params.self_signed(&key).map_err(err)?;
        let issuer = rcgen::Issuer::new(params, key);
        Ok(Self { issuer, root })
    }

    /// The root certificate, to hand to clients as an anchor.
    pub fn root(&self) -> CertificateDer<'static> {
        self.root.der().clone()
    }

    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// A server certificate for these names (DNS names or IP literals go in the SAN). Client
    /// identities and anything more come from nw-trust's `ca`.
    pub fn issue_server(&self, names: &[&str]) -> Result<Issued, TlsError> {
        let err = |e: rcgen::Error| TlsError::Config(format!("test certificate: {e}"));
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(sans).map_err(err)?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(rcgen::DnType::CommonName, *first);
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true; // RFC 5280 §4.2.1.1
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| TlsError::Config(e.to_owned()))?;
        Ok(Issued {
            chain: vec![cert.der().clone(), self.root()],
            key: key_der,
            cert_pem: format!("{}{}", cert.pem(), self.root.pem()),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests;
