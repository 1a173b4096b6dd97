//! What the policy layer reads from a certificate, parsed once (x509-parser). Signatures and
//! path building are webpki's; this is the rest: names, dates, keys, algorithms, usages.

use std::net::IpAddr;

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::TrustError;

/// One certificate's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// What reports call it: the subject's common name, else its first SAN, else its subject.
    pub name: String,
    /// The subject name as text (`CN=…, O=…`).
    pub subject: String,
    /// The issuer name as text.
    pub issuer: String,
    /// DER of the subject and issuer names, for chain order.
    #[serde(skip)]
    pub subject_der: Vec<u8>,
    /// DER of the issuer name.
    #[serde(skip)]
    pub issuer_der: Vec<u8>,
    /// The subjectAltName's dNSName entries.
    pub dns_names: Vec<String>,
    /// The subjectAltName's iPAddress entries.
    pub ip_addresses: Vec<IpAddr>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// Its public key.
    pub key: Key,
    /// The algorithm the issuer signed this certificate with.
    pub signature: Signature,
    /// `None` when the certificate has no EKU extension.
    pub eku: Option<Eku>,
    /// basicConstraints says it is a CA.
    pub is_ca: bool,
    /// Its issuer and subject names are the same.
    pub self_issued: bool,
    /// The serial number's content octets.
    #[serde(skip)]
    pub serial: Vec<u8>,
    /// SHA-256 of the SubjectPublicKeyInfo (for pins), hex.
    pub spki_sha256: String,
}

/// The subject public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Key {
    /// RSA.
    Rsa {
        /// The modulus size.
        bits: usize,
    },
    /// Elliptic curve (ECDSA).
    Ec {
        /// The curve's size.
        bits: usize,
    },
    /// Ed25519.
    Ed25519,
    /// Any other key type.
    Other,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rsa { bits } => write!(f, "RSA {bits}-bit"),
            Self::Ec { bits } => write!(f, "EC {bits}-bit"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Other => f.write_str("other key type"),
        }
    }
}

/// The signature's hash, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// SHA-1 or MD5: collisions are practical (SHAttered, 2017).
    Broken,
    /// SHA-256, SHA-384 or SHA-512.
    Sha2,
    /// Ed25519.
    Ed25519,
    /// Anything else.
    Other,
}

/// Extended key usages the policies look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Eku {
    /// serverAuth.
    pub server_auth: bool,
    /// clientAuth.
    pub client_auth: bool,
    /// anyExtendedKeyUsage.
    pub any: bool,
}

impl Facts {
    /// Parses a DER certificate. A certificate x509-parser cannot read is `TrustError::BadCertificate`.
    pub fn parse(index: usize, der: &CertificateDer<'_>) -> Result<Self, TrustError> {
        Self::from_cert(index, &parse_x509(index, der.as_ref())?)
    }

    /// The facts of a certificate parsed already (certificate `index` of a chain).
    pub(crate) fn from_cert(index: usize, cert: &X509Certificate<'_>) -> Result<Self, TrustError> {
        let bad = |why: String| TrustError::BadCertificate { index, why };
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        let san = cert.subject_alternative_name().map_err(|e| bad(format!("SAN: {e}")))?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(n) => dns_names.push((*n).to_owned()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ip_addresses.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
        let cn = cert.subject().iter_common_name().next().and_then(|c| c.as_str().ok());
        let subject = cert.subject().to_string();
        let name = cn
            .map(str::to_owned)
            .or_else(|| dns_names.first().cloned())
            .or_else(|| ip_addresses.first().map(ToString::to_string))
            .unwrap_or_else(|| subject.clone());
        let key = match cert.public_key().parsed() {
            Ok(PublicKey::RSA(rsa)) => Key::Rsa { bits: modulus_bits(rsa.modulus) },
            Ok(PublicKey::EC(point)) => Key::Ec { bits: ec_bits(cert, point.key_size()) },
            _ if cert.public_key().algorithm.algorithm.to_id_string() == "1.3.101.112" => {
                Key::Ed25519
            }
            _ => Key::Other,
        };
        let eku = cert.extended_key_usage().map_err(|e| bad(format!("EKU: {e}")))?.map(|e| Eku {
            server_auth: e.value.server_auth,
            client_auth: e.value.client_auth,
            any: e.value.any,
        });
        let spki = cert.public_key().raw;
        Ok(Self {
            name,
            subject,
            issuer: cert.issuer().to_string(),
            subject_der: cert.subject().as_raw().to_vec(),
            issuer_der: cert.issuer().as_raw().to_vec(),
            dns_names,
            ip_addresses,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            key,
            signature: signature(&cert.signature_algorithm.algorithm.to_id_string()),
            eku,
            is_ca: cert.is_ca(),
            serial: cert.raw_serial().to_vec(),
            self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
            spki_sha256: hex(&sha256(spki)),
        })
    }

    /// Validity period in whole days (rounded up).
    pub fn validity_days(&self) -> i64 {
        (self.not_after - self.not_before + 86_399) / 86_400
    }
}

/// Parses certificate `index` of a chain, refusing trailing bytes.
pub(crate) fn parse_x509(index: usize, der: &[u8]) -> Result<X509Certificate<'_>, TrustError> {
    let bad = |why: String| TrustError::BadCertificate { index, why };
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes follow the certificate", rest.len())));
    }
    Ok(cert)
}

/// A certificate's SubjectPublicKeyInfo, DER.
pub(crate) fn spki(der: &[u8]) -> Result<Vec<u8>, TrustError> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| TrustError::BadCertificate { index: 0, why: e.to_string() })?;
    Ok(cert.public_key().raw.to_vec())
}

/// The exact size of an RSA modulus in bits (leading zero bytes and bits do not count).
pub(crate) fn modulus_bits(modulus: &[u8]) -> usize {
    let significant: Vec<u8> = modulus.iter().copied().skip_while(|b| *b == 0).collect();
    match significant.first() {
        Some(first) => (significant.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

/// The curve's size, from the named-curve OID when there is one (a P-256 point is 520 bits
/// uncompressed, which is not the key size).
fn ec_bits(cert: &X509Certificate<'_>, point_bits: usize) -> usize {
    let curve = cert
        .public_key()
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    match curve.as_deref() {
        Some("1.2.840.10045.3.1.7") => 256, // P-256
        Some("1.3.132.0.34") => 384,        // P-384
        Some("1.3.132.0.35") => 521,        // P-521
        Some("1.3.132.0.33") => 224,        // P-224
        Some("1.2.840.10045.3.1.1") => 192, // P-192
        _ => point_bits.saturating_sub(8) / 2,
    }
}

/// Signature algorithm OIDs (RFC 3279, RFC 4055, RFC 5758, RFC 8410).
fn signature(oid: &str) -> Signature {
    match oid {
        // sha1WithRSAEncryption, md5WithRSAEncryption, md2WithRSA, ecdsa-with-SHA1,
        // dsa-with-sha1, the obsolete OIW sha1WithRSA.
        "1.2.840.113549.1.1.5"
        | "1.2.840.113549.1.1.4"
        | "1.2.840.113549.1.1.2"
        | "1.2.840.10045.4.1"
        | "1.2.840.10040.4.3"
        | "1.3.14.3.2.29" => Signature::Broken,
        // sha256/384/512WithRSA, RSASSA-PSS, ecdsa-with-SHA256/384/512.
        "1.2.840.113549.1.1.11"
        | "1.2.840.113549.1.1.12"
        | "1.2.840.113549.1.1.13"
        | "1.2.840.113549.1.1.10"
        | "1.2.840.10045.4.3.2"
        | "1.2.840.10045.4.3.3"
        | "1.2.840.10045.4.3.4" => Signature::Sha2,
        "1.3.101.112" => Signature::Ed25519,
        _ => Signature::Other,
    }
}

/// SHA-256 from the one crypto provider (aws-lc-rs), by way of a TLS 1.3 suite's hash.
pub(crate) fn sha256(data: &[u8]) -> Vec<u8> {
    use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    match TLS13_AES_128_GCM_SHA256.tls13() {
        Some(suite) => suite.common.hash_provider.hash(data).as_ref().to_vec(),
        None => Vec::new(),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
