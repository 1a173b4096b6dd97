//! A test certificate authority (rcgen): a private root, optional intermediates, and server
//! and client certificates issued from them — so tests and test servers never need
//! self-signed certificates. Keys are ECDSA P-256 unless a profile says RSA.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::TrustError;

/// A CA that can issue: a root, or an intermediate under one.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    key_pem: String,
    /// The certificates above this CA, up to and including the root.
    above: Vec<CertificateDer<'static>>,
    above_pem: String,
    /// When this CA's validity starts (Unix seconds).
    not_before: i64,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// The key a certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    /// ECDSA P-256 (the default).
    #[default]
    EcP256,
    /// ECDSA P-384.
    EcP384,
    /// RSA, 2048 bits.
    Rsa2048,
    /// Ed25519.
    Ed25519,
}

/// How to issue a leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Valid from (Unix seconds); an hour ago by default, for clocks that lag.
    pub not_before: Option<i64>,
    /// Days of validity (90 by default: within every anchor class's limit).
    pub days: i64,
    /// Marked for TLS servers (extended key usage serverAuth).
    pub server_auth: bool,
    /// Marked for TLS clients (clientAuth).
    pub client_auth: bool,
    /// The key it gets.
    pub key: KeyKind,
    /// The subject's common name; the first name by default.
    pub common_name: Option<String>,
    /// A CRL distribution point (an http:// URL).
    pub crl_url: Option<String>,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            not_before: None,
            days: 90,
            server_auth: true,
            client_auth: false,
            key: KeyKind::EcP256,
            common_name: None,
            crl_url: None,
        }
    }
}

/// An issued certificate: the chain to present (leaf first, then intermediates and the root),
/// PEM forms and the key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The chain, DER: leaf first, then intermediates and the root.
    pub chain: Vec<CertificateDer<'static>>,
    /// The chain, PEM.
    pub chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Valid from (Unix seconds).
    pub not_before: i64,
    /// Valid until (Unix seconds).
    pub not_after: i64,
}

impl Issued {
    /// The private key, DER, for a TLS server or client configuration.
    pub fn key(&self) -> Result<rustls_pki_types::PrivateKeyDer<'static>, TrustError> {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| TrustError::Issue(format!("its key: {e}")))
    }
}

impl TestCa {
    /// A new root valid for ten years from an hour ago.
    pub fn new(name: &str) -> Result<Self, TrustError> {
        Self::root(name, now() - 3600, 3650)
    }

    /// A new root valid for `days` from `not_before`.
    pub fn root(name: &str, not_before: i64, days: i64) -> Result<Self, TrustError> {
        let params = ca_params(name, not_before, days)?;
        let key = KeyPair::generate().map_err(issue)?;
        let cert = params.self_signed(&key).map_err(issue)?;
        let key_pem = key.serialize_pem();
        let issuer = Issuer::new(params, key);
        Ok(Self {
            issuer,
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem,
            above: Vec::new(),
            above_pem: String::new(),
            not_before,
        })
    }

    /// Loads a CA written earlier (`nw cert ca`): its certificate and key, PEM.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, TrustError> {
        let key = KeyPair::from_pem(key_pem).map_err(issue)?;
        let der = crate::anchors::parse_pem_certs(cert_pem.as_bytes())?
            .into_iter()
            .next()
            .ok_or_else(|| TrustError::Issue("the CA file holds no certificate".into()))?;
        let facts = crate::cert::Facts::parse(0, &der)?;
        if !facts.is_ca {
            return Err(TrustError::Issue(
                "that certificate is not a CA (no basicConstraints CA:TRUE)".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(issue)?;
        Ok(Self {
            issuer,
            cert_der: der,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            above: Vec::new(),
            above_pem: String::new(),
            not_before: facts.not_before,
        })
    }

    /// An intermediate CA under this one, valid from this one's start for five years.
    pub fn intermediate(&self, name: &str) -> Result<Self, TrustError> {
        self.intermediate_for(name, &[])
    }

    /// An intermediate whose EKU extension lists only `usages` (`ServerAuth`, `ClientAuth`);
    /// none means no EKU extension.
    pub fn intermediate_for(
        &self,
        name: &str,
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Result<Self, TrustError> {
        let mut params = ca_params(name, self.not_before, 1825)?;
        params.extended_key_usages = usages.to_vec();
        let key = KeyPair::generate().map_err(issue)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue)?;
        let key_pem = key.serialize_pem();
        let mut above = vec![self.cert_der()];
        above.extend(self.above.iter().cloned());
        let above_pem = format!("{}{}", self.cert_pem, self.above_pem);
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem,
            above,
            above_pem,
            not_before: self.not_before,
        })
    }

    /// This CA's certificate.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The root at the top (this CA, for a root): what relying parties add as an anchor.
    pub fn root_der(&self) -> CertificateDer<'static> {
        self.above.last().cloned().unwrap_or_else(|| self.cert_der())
    }

    /// The CA's certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A TLS server certificate for `names` (DNS names or IP literals, all in the SAN).
    pub fn server(&self, names: &[&str]) -> Result<Issued, TrustError> {
        self.issue(names, &Profile::default())
    }

    /// A TLS client certificate (mutual TLS) for `name`.
    pub fn client(&self, name: &str) -> Result<Issued, TrustError> {
        self.issue(
            &[name],
            &Profile { server_auth: false, client_auth: true, ..Profile::default() },
        )
    }

    /// A leaf for `names` as `profile` says. The chain holds the leaf and every CA above it,
    /// the root included.
    pub fn issue(&self, names: &[&str], profile: &Profile) -> Result<Issued, TrustError> {
        let (params, not_before, not_after) = leaf_params(names, profile)?;
        let key = key_for(profile.key)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue)?;
        Ok(self.issued(&cert, &key, not_before, not_after))
    }

    /// A leaf with SCTs embedded from `logs`, issued at `sct_at` (Unix seconds): signed once
    /// as the precertificate the logs sign (RFC 6962 §3.1), then again with the SCT list.
    pub fn issue_logged(
        &self,
        names: &[&str],
        profile: &Profile,
        logs: &[&TestLog],
        sct_at: i64,
    ) -> Result<Issued, TrustError> {
        let (mut params, not_before, not_after) = leaf_params(names, profile)?;
        // The same serial in both signings: the precertificate's TBS must be the final one's.
        let mut serial = crate::cert::sha256(format!("{names:?}{not_before}").as_bytes());
        serial.truncate(16);
        serial[0] &= 0x7f;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let key = key_for(profile.key)?;
        let pre = params.signed_by(&key, &self.issuer).map_err(issue)?;
        let tbs =
            crate::ct::precert_tbs(pre.der()).map_err(|e| TrustError::Issue(e.to_string()))?;
        let issuer_spki = crate::cert::spki(&self.cert_der)?;
        let issuer_key_hash: [u8; 32] = crate::cert::sha256(&issuer_spki)
            .try_into()
            .map_err(|_| TrustError::Issue("hash".into()))?;
        let entry = crate::ct::Entry::Precert { issuer_key_hash, tbs: &tbs };
        let timestamp = u64::try_from(sct_at).unwrap_or(0) * 1000;
        let scts = logs.iter().map(|l| l.sign(entry, timestamp)).collect::<Result<Vec<_>, _>>()?;
        let list = crate::ct::encode_sct_list(&scts);
        params.custom_extensions.push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
            crate::der::der(0x04, &list),
        ));
        let cert = params.signed_by(&key, &self.issuer).map_err(issue)?;
        Ok(self.issued(&cert, &key, not_before, not_after))
    }

    /// A CRL from this CA listing `revoked`, current from `this_update` for `days`, with CRL
    /// number `number`.
    pub fn crl(
        &self,
        revoked: &[&Issued],
        this_update: i64,
        days: i64,
        number: u64,
    ) -> Result<Vec<u8>, TrustError> {
        let revoked_certs = revoked
            .iter()
            .map(|r| {
                let facts = crate::cert::Facts::parse(0, &r.chain[0])?;
                Ok(rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(&facts.serial),
                    revocation_time: at(this_update)?,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, TrustError>>()?;
        let params = rcgen::CertificateRevocationListParams {
            this_update: at(this_update)?,
            next_update: at(this_update + days * 86_400)?,
            crl_number: rcgen::SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer).map_err(issue)?.der().to_vec())
    }

    fn issued(
        &self,
        cert: &rcgen::Certificate,
        key: &KeyPair,
        not_before: i64,
        not_after: i64,
    ) -> Issued {
        let mut chain = vec![cert.der().clone(), self.cert_der()];
        chain.extend(self.above.iter().cloned());
        Issued {
            chain,
            chain_pem: format!("{}{}{}", cert.pem(), self.cert_pem, self.above_pem),
            key_pem: key.serialize_pem(),
            not_before,
            not_after,
        }
    }
}

/// A Certificate Transparency log for tests: an operator, a name and an ECDSA P-256 key.
pub struct TestLog {
    /// The operator's name, as a log list gives it.
    pub operator: String,
    /// The log's description.
    pub description: String,
    key: KeyPair,
}

impl std::fmt::Debug for TestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestLog").field("description", &self.description).finish_non_exhaustive()
    }
}

impl TestLog {
    /// A log with a fresh key.
    pub fn new(operator: &str, description: &str) -> Result<Self, TrustError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(issue)?;
        Ok(Self { operator: operator.into(), description: description.into(), key })
    }

    /// Its SubjectPublicKeyInfo, DER.
    pub fn spki(&self) -> Vec<u8> {
        use rcgen::PublicKeyData as _;
        self.key.subject_public_key_info()
    }

    /// An SCT for `entry` at `timestamp` (milliseconds since the epoch).
    pub fn sign(
        &self,
        entry: crate::ct::Entry<'_>,
        timestamp: u64,
    ) -> Result<crate::ct::Sct, TrustError> {
        use rcgen::SigningKey as _;
        let signature =
            self.key.sign(&crate::ct::signed_data(entry, timestamp, &[])).map_err(issue)?;
        let log_id: [u8; 32] = crate::cert::sha256(&self.spki())
            .try_into()
            .map_err(|_| TrustError::Issue("hash".into()))?;
        Ok(crate::ct::Sct {
            log_id,
            timestamp,
            extensions: Vec::new(),
            hash: 4,
            signature_alg: 3,
            signature,
        })
    }
}

/// A v3 log list (JSON) naming `logs`, each in `state` (`usable`, `retired`, …) since `since`,
/// made at `timestamp` (Unix seconds).
pub fn log_list_json(logs: &[&TestLog], timestamp: i64, state: &str, since: i64) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let operators: Vec<serde_json::Value> = logs
        .iter()
        .map(|l| {
            serde_json::json!({
                "name": l.operator,
                "email": [],
                "logs": [{
                    "description": l.description,
                    "log_id": b64(&crate::cert::sha256(&l.spki())),
                    "key": b64(&l.spki()),
                    "url": "https://ct.invalid/",
                    "mmd": 86400,
                    "state": { state: { "timestamp": crate::time::rfc3339(since) } },
                }],
            })
        })
        .collect();
    serde_json::json!({
        "version": "3.0",
        "log_list_timestamp": crate::time::rfc3339(timestamp),
        "operators": operators,
    })
    .to_string()
}

fn leaf_params(
    names: &[&str],
    profile: &Profile,
) -> Result<(CertificateParams, i64, i64), TrustError> {
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(sans).map_err(issue)?;
    if let Some(cn) = profile.common_name.as_deref().or(names.first().copied()) {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    let not_before = profile.not_before.unwrap_or_else(|| now() - 3600);
    let not_after = not_before + profile.days * 86_400;
    params.not_before = at(not_before)?;
    params.not_after = at(not_after)?;
    params.extended_key_usages = [
        (profile.server_auth, ExtendedKeyUsagePurpose::ServerAuth),
        (profile.client_auth, ExtendedKeyUsagePurpose::ClientAuth),
    ]
    .into_iter()
    .filter_map(|(on, eku)| on.then_some(eku))
    .collect();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true; // RFC 5280 §4.2.1.1
    if let Some(url) = &profile.crl_url {
        params.crl_distribution_points =
            vec![rcgen::CrlDistributionPoint { uris: vec![url.clone()] }];
    }
    Ok((params, not_before, not_after))
}

fn key_for(kind: KeyKind) -> Result<KeyPair, TrustError> {
    match kind {
        KeyKind::EcP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyKind::EcP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
        KeyKind::Rsa2048 => {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        }
    }
    .map_err(issue)
}

fn ca_params(name: &str, not_before: i64, days: i64) -> Result<CertificateParams, TrustError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(issue)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = at(not_before)?;
    params.not_after = at(not_before + days * 86_400)?;
    // An intermediate names its issuer's key (RFC 5280 §4.2.1.1); a root's is its own.
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn at(secs: i64) -> Result<OffsetDateTime, TrustError> {
    OffsetDateTime::from_unix_timestamp(secs).map_err(|e| TrustError::Issue(format!("date: {e}")))
}

fn issue(e: rcgen::Error) -> TrustError {
    TrustError::Issue(e.to_string())
}

#[allow(clippy::disallowed_methods, reason = "issuing reads the clock, as openssl does")]
fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}
