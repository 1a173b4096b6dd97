//! The evaluator as rustls verifiers: [`TrustVerifier`] judges a server's chain (for clients,
//! through nw-connection's `Arc<dyn ServerCertVerifier>` seam) and a client's chain (for
//! servers asking for mutual TLS). The last evaluation is kept, so a caller can show the chain
//! and the verdict whether or not the handshake went on.

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::anchors::AnchorClass;
use crate::cert::Facts;
use crate::evaluate::{Evaluation, Options, Policy, evaluate};
use crate::revocation::Revocation;

/// A rustls verifier backed by [`evaluate`].
pub struct TrustVerifier {
    options: Options,
    provider: Arc<CryptoProvider>,
    /// Evaluate at this time instead of the handshake's (Unix seconds).
    at: Option<i64>,
    /// Servers only: refuse clients without a certificate.
    mandatory: bool,
    /// The subjects of the custom and user-added anchors, sent to clients as acceptable CAs.
    hints: Vec<DistinguishedName>,
    /// Fetches the CRLs a chain names before each evaluation, when set.
    revocation: Option<Revocation>,
    last: Mutex<Option<Evaluation>>,
}

impl fmt::Debug for TrustVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustVerifier")
            .field("policy", &self.options.policy)
            .finish_non_exhaustive()
    }
}

/// The handshake failed because the chain is not trusted; carries the evaluation. Its debug
/// form is its report too: rustls and quinn show a verifier's error with `{:?}`.
#[derive(Clone)]
pub struct Untrusted(pub Evaluation);

impl fmt::Debug for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Untrusted {
    /// The per-certificate lines, then what exactly failed and what to try, as `nw trust`
    /// says it: `Certificate 1 “CA” has errors: Root is not trusted; — its root is not an
    /// anchor; …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.failure_lines().join(" "))?;
        let details: Vec<String> = self
            .0
            .certificates
            .iter()
            .flat_map(|c| c.problems.iter().map(crate::Problem::detail))
            .collect();
        if !details.is_empty() {
            write!(f, " — {}", details.join("; "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Untrusted {}

impl TrustVerifier {
    /// Signatures in the handshake are checked with `provider`'s algorithms.
    pub fn new(options: Options, provider: Arc<CryptoProvider>) -> Self {
        let hints = options
            .anchors
            .iter()
            .filter(|a| a.class != AnchorClass::System)
            .filter_map(|a| Facts::parse(0, &a.der).ok())
            .map(|f| DistinguishedName::from(f.subject_der))
            .collect();
        Self {
            options,
            provider,
            at: None,
            mandatory: true,
            hints,
            revocation: None,
            last: Mutex::new(None),
        }
    }

    /// Evaluates at `at` (Unix seconds) instead of the handshake's time.
    pub fn at(mut self, at: Option<i64>) -> Self {
        self.at = at;
        self
    }

    /// Fetches (and caches) the CRLs each chain names before judging it, with `revocation`'s
    /// mode.
    pub fn with_revocation(mut self, revocation: Revocation) -> Self {
        self.revocation = Some(revocation);
        self
    }

    /// For servers: whether a client must present a certificate (default yes).
    pub fn client_certificate_mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// The most recent evaluation, trusted or not.
    pub fn last(&self) -> Option<Evaluation> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A handshake signature (TLS 1.2 or 1.3), by the provider's algorithms.
    fn signature(
        &self,
        version: u8,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        if version == 12 {
            verify_tls12_signature(message, cert, dss, algorithms)
        } else {
            verify_tls13_signature(message, cert, dss, algorithms)
        }
    }

    fn judge(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        host: Option<&str>,
        now: UnixTime,
        options: &Options,
    ) -> Result<(), rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let at = self.at.unwrap_or_else(|| i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
        let prepared = self.revocation.as_ref().map(|r| r.prepare(&chain, at, options));
        let evaluation = evaluate(&chain, host, at, prepared.as_ref().unwrap_or(options))
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(evaluation.clone());
        if evaluation.trusted() {
            return Ok(());
        }
        let failure = OtherError(Arc::new(Untrusted(evaluation)));
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(failure)))
    }
}

impl ServerCertVerifier for TrustVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let host = match server_name {
            ServerName::DnsName(d) => d.as_ref().to_owned(),
            ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
            _ => return Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName)),
        };
        let stapled_ocsp = (!ocsp_response.is_empty()).then(|| ocsp_response.to_vec());
        let options = Options { policy: Policy::Server, stapled_ocsp, ..self.options.clone() };
        self.judge(end_entity, intermediates, Some(&host), now, &options)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(12, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(13, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for TrustVerifier {
    /// The subjects of the custom and user-added anchors: the acceptable CAs a client selects
    /// its identity by.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let options = Options { policy: Policy::Client, ..self.options.clone() };
        self.judge(end_entity, intermediates, None, now, &options)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(12, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(13, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
