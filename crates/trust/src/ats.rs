//! An App Transport Security–like profile for HTTP loads (nw-transfer applies it; nothing
//! else does): TLS 1.2 or later, forward-secret cipher suites only, and default trust must pass
//! whatever the caller's customisations loosen — extra anchors, exceptions or a relaxed CT
//! requirement may tighten what is accepted, never widen it.
//!
//! The protocol half is rustls's by construction: it speaks only TLS 1.2 and 1.3, and only
//! ECDHE key exchange (every suite is forward secret); [`check_provider`] asserts that of the
//! provider in use so a future change cannot slip through. The trust half is [`AtsVerifier`].

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, DigitallySignedStruct, SignatureScheme, SupportedCipherSuite};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::evaluate::Options;
use crate::verifier::TrustVerifier;

/// Whether every suite of `provider` is TLS 1.2+ and forward secret; the offenders otherwise.
pub fn check_provider(provider: &CryptoProvider) -> Result<(), Vec<CipherSuite>> {
    let offenders: Vec<CipherSuite> = provider
        .cipher_suites
        .iter()
        .filter(|s| match s {
            SupportedCipherSuite::Tls13(_) => false, // TLS 1.3: (EC)DHE always
            SupportedCipherSuite::Tls12(suite) => {
                !format!("{:?}", suite.common.suite).contains("ECDHE")
            }
        })
        .map(SupportedCipherSuite::suite)
        .collect();
    if offenders.is_empty() { Ok(()) } else { Err(offenders) }
}

/// Trust under ATS: the chain must pass the caller's evaluation *and* the default one
/// (system anchors, CT as by default, no exceptions, no extra anchors). The error is the
/// first failing evaluation's report.
#[derive(Debug)]
pub struct AtsVerifier {
    custom: TrustVerifier,
    default: TrustVerifier,
}

impl AtsVerifier {
    /// `custom` is what the caller configured; `default` is the unloosened baseline (normally
    /// `Options { anchors: anchors::system()?, ..Options::default() }`).
    pub fn new(custom: Options, default: Options, provider: Arc<CryptoProvider>) -> Self {
        Self {
            custom: TrustVerifier::new(custom, provider.clone()),
            default: TrustVerifier::new(default, provider),
        }
    }

    /// The verifier that decided last: the default one's evaluation when it refused.
    pub fn last(&self) -> Option<crate::Evaluation> {
        match self.default.last() {
            Some(e) if !e.trusted() => Some(e),
            _ => self.custom.last(),
        }
    }
}

impl ServerCertVerifier for AtsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.custom.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        self.default.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.default.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.default.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(&self.default)
    }
}
