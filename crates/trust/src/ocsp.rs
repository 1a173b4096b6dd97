//! Stapled OCSP responses (RFC 6960), checked when a server sends one: a successful basic
//! response, signed by the leaf's issuer or by a responder the issuer delegated to
//! (id-kp-OCSPSigning), current at the verify time, about the leaf's serial number.
//!
//! The CertID's issuer hashes are compared when they are SHA-256; responses hashed with
//! SHA-1 (openssl's default) are matched by serial number under the issuer's signature alone,
//! since SHA-1 is not available from the one crypto provider.

use rustls_pki_types::{SignatureVerificationAlgorithm, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::cert::sha256;
use crate::der::tlv;

/// id-pkix-ocsp-basic, 1.3.6.1.5.5.7.48.1.1 (RFC 6960 §4.2.1), DER.
const BASIC: &[u8] = &[0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
/// id-kp-OCSPSigning, 1.3.6.1.5.5.7.3.9, OID content.
const OCSP_SIGNING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];
/// id-sha256, 2.16.840.1.101.3.4.2.1, DER.
const SHA256: &[u8] = &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
/// A response without nextUpdate is taken as current for this long after thisUpdate.
const NO_NEXT_UPDATE_GRACE: i64 = 7 * 86_400;
/// Clock skew allowed for thisUpdate in the future.
const SKEW: i64 = 300;

/// What the response says about the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not revoked.
    Good,
    /// Revoked.
    Revoked {
        /// When (Unix seconds).
        at: i64,
    },
    /// The responder does not know the certificate.
    Unknown,
}

/// Why a response cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OcspError {
    /// The response cannot be parsed.
    #[error("the OCSP response is malformed: {0}")]
    Malformed(&'static str),
    /// The responder did not answer successfully (the status, RFC 6960 §4.2.1).
    #[error("the OCSP responder answered with status {0}, not successful")]
    NotSuccessful(u8),
    /// Not a basic response.
    #[error("the OCSP response is not a basic response")]
    NotBasic,
    /// Signed by neither the issuer nor a responder it delegated to.
    #[error("the OCSP response is signed by neither the issuer nor a responder it delegated to")]
    Signature,
    /// Says nothing about this certificate.
    #[error("the OCSP response says nothing about this certificate")]
    NoMatch,
    /// Not current at the verify time.
    #[error("the OCSP response is not current at the verify time")]
    Stale,
}

/// A successful basic response taken apart: what it signs, how, and its single responses.
struct Basic<'a> {
    /// tbsResponseData, whole (the signed bytes).
    tbs: &'a [u8],
    /// The SEQUENCE OF SingleResponse, content.
    responses: &'a [u8],
    /// signatureAlgorithm, content.
    alg: &'a [u8],
    signature: &'a [u8],
    /// The certificates that came with it (a delegated responder's), concatenated.
    certs: &'a [u8],
}

/// Walks an OCSPResponse down to its BasicOCSPResponse (RFC 6960 §4.2.1).
fn basic(response: &[u8]) -> Result<Basic<'_>, OcspError> {
    let malformed = OcspError::Malformed;
    let (_, outer, _) = tlv(response).ok_or(malformed("no OCSPResponse"))?;
    let (tag, status, rest) = tlv(outer).ok_or(malformed("no responseStatus"))?;
    if tag != 0x0a || status.len() != 1 {
        return Err(malformed("responseStatus is not an ENUMERATED"));
    }
    if status[0] != 0 {
        return Err(OcspError::NotSuccessful(status[0]));
    }
    let (_, bytes, _) = tlv(rest).ok_or(malformed("no responseBytes"))?;
    let (_, bytes, _) = tlv(bytes).ok_or(malformed("responseBytes is not a SEQUENCE"))?;
    if !bytes.starts_with(BASIC) {
        return Err(OcspError::NotBasic);
    }
    let (_, basic, _) = tlv(&bytes[BASIC.len()..]).ok_or(malformed("no response OCTET STRING"))?;
    let (_, basic, _) = tlv(basic).ok_or(malformed("no BasicOCSPResponse"))?;
    let (_, tbs_content, after_tbs) = tlv(basic).ok_or(malformed("no tbsResponseData"))?;
    let tbs = &basic[..basic.len() - after_tbs.len()];
    let (_, alg, after_alg) = tlv(after_tbs).ok_or(malformed("no signatureAlgorithm"))?;
    let (_, signature, after_sig) = tlv(after_alg).ok_or(malformed("no signature"))?;
    let signature = signature.split_first().map(|(_, s)| s).ok_or(malformed("empty signature"))?;
    let certs = match tlv(after_sig) {
        Some((0xa0, certs, _)) => tlv(certs).map(|(_, c, _)| c).unwrap_or_default(),
        _ => &[],
    };
    // ResponseData: [0] version?, responderID, producedAt, responses, [1] extensions?
    let mut fields = tbs_content;
    let mut responses = None;
    while let Some((tag, content, rest)) = tlv(fields) {
        if tag == 0x30 {
            responses = Some(content);
        }
        fields = rest;
    }
    let responses = responses.ok_or(malformed("no responses"))?;
    Ok(Basic { tbs, responses, alg, signature, certs })
}

/// Checks a stapled response about `leaf` (DER), issued by `issuer` (DER), at `at`.
pub fn check(response: &[u8], leaf: &[u8], issuer: &[u8], at: i64) -> Result<Status, OcspError> {
    let malformed = OcspError::Malformed;
    let Basic { tbs, mut responses, alg, signature, certs } = basic(response)?;

    let (_, issuer_cert) =
        X509Certificate::from_der(issuer).map_err(|_| malformed("the issuer"))?;
    let signed_by = |spki: &[u8]| verify(alg, spki, tbs, signature);
    if !signed_by(issuer_cert.public_key().raw) && !delegated(certs, issuer, at, &signed_by) {
        return Err(OcspError::Signature);
    }

    let (_, leaf_cert) = X509Certificate::from_der(leaf).map_err(|_| malformed("the leaf"))?;
    let serial = strip_zeros(leaf_cert.raw_serial());
    let issuer_key_hash = sha256(&issuer_cert.public_key().subject_public_key.data);
    while let Some((_, single, rest)) = tlv(responses) {
        responses = rest;
        let (_, cert_id, after_id) = tlv(single).ok_or(malformed("no CertID"))?;
        let (_, hash_alg, r) = tlv(cert_id).ok_or(malformed("CertID hashAlgorithm"))?;
        let (_, _name_hash, r) = tlv(r).ok_or(malformed("CertID issuerNameHash"))?;
        let (_, key_hash, r) = tlv(r).ok_or(malformed("CertID issuerKeyHash"))?;
        let (_, their_serial, _) = tlv(r).ok_or(malformed("CertID serialNumber"))?;
        if strip_zeros(their_serial) != serial {
            continue;
        }
        if hash_alg.starts_with(SHA256) && key_hash != issuer_key_hash.as_slice() {
            continue;
        }
        let (status_tag, status_content, r) = tlv(after_id).ok_or(malformed("certStatus"))?;
        let (_, this_update, r) = tlv(r).ok_or(malformed("thisUpdate"))?;
        let this_update = generalized(this_update).ok_or(malformed("thisUpdate is not a time"))?;
        let next_update = match tlv(r) {
            Some((0xa0, next, _)) => {
                let (_, t, _) = tlv(next).ok_or(malformed("nextUpdate"))?;
                Some(generalized(t).ok_or(malformed("nextUpdate is not a time"))?)
            }
            _ => None,
        };
        let until = next_update.unwrap_or(this_update + NO_NEXT_UPDATE_GRACE);
        if this_update > at + SKEW || until < at {
            return Err(OcspError::Stale);
        }
        return Ok(match status_tag {
            0x80 => Status::Good,
            0xa1 => {
                let (_, when, _) = tlv(status_content).ok_or(malformed("revocationTime"))?;
                Status::Revoked { at: generalized(when).ok_or(malformed("revocationTime"))? }
            }
            _ => Status::Unknown,
        });
    }
    Err(OcspError::NoMatch)
}

/// A responder certificate among `certs`, issued by `issuer` for OCSP signing and current at
/// `at`, whose key signed the response.
fn delegated(certs: &[u8], issuer: &[u8], at: i64, signed_by: &dyn Fn(&[u8]) -> bool) -> bool {
    let issuer: rustls_pki_types::CertificateDer<'_> = issuer.to_vec().into();
    let Ok(anchor) = webpki::anchor_from_trusted_cert(&issuer) else {
        return false;
    };
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at.max(0).unsigned_abs()));
    let mut rest = certs;
    while let Some((_, _, after)) = tlv(rest) {
        let der: rustls_pki_types::CertificateDer<'_> =
            rest[..rest.len() - after.len()].to_vec().into();
        rest = after;
        let Ok(responder) = webpki::EndEntityCert::try_from(&der) else { continue };
        let authorised = responder
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                std::slice::from_ref(&anchor),
                &[],
                time,
                webpki::KeyUsage::required(OCSP_SIGNING),
                None,
                None,
            )
            .is_ok();
        let key = X509Certificate::from_der(&der).map(|(_, c)| c.public_key().raw.to_vec());
        if authorised && key.is_ok_and(|k| signed_by(&k)) {
            return true;
        }
    }
    false
}

/// Verifies `signature` over `message` with the key in `spki`, by the algorithm the response
/// names (`alg`: AlgorithmIdentifier content) — among webpki's, matched by signature and key
/// algorithm.
fn verify(alg: &[u8], spki: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Some((_, spki_content, _)) = tlv(spki) else { return false };
    let Some((_, key_alg, rest)) = tlv(spki_content) else { return false };
    let Some((0x03, key_bits, _)) = tlv(rest) else { return false };
    let Some((_, key)) = key_bits.split_first() else { return false };
    let candidates: &[&dyn SignatureVerificationAlgorithm] = webpki::ALL_VERIFICATION_ALGS;
    candidates.iter().any(|a| {
        a.signature_alg_id().as_ref() == alg
            && a.public_key_alg_id().as_ref() == key_alg
            && a.verify_signature(key, message, signature).is_ok()
    })
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

/// GeneralizedTime `YYYYMMDDHHMMSSZ` (RFC 5280 §4.1.2.5.2) to Unix seconds.
fn generalized(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    // All ASCII digits then 'Z': slicing by byte offsets below cannot split a character.
    if s.len() != 15 || !s.ends_with('Z') || !s.bytes().take(14).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let text = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    );
    crate::time::parse_rfc3339(&text).ok()
}

/// The SCT list (RFC 6962 §3.3: extension 1.3.6.1.4.1.11129.2.4.5) in any single response of a
/// stapled response. Not verified here: each SCT is a log's signature over the leaf, checked
/// against the log list like any other.
pub fn scts(response: &[u8]) -> Vec<crate::ct::Sct> {
    const SCT_OID: &[u8] =
        &[0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x05];
    let walk = || -> Option<Vec<crate::ct::Sct>> {
        let mut responses = basic(response).ok()?.responses;
        let mut found = Vec::new();
        while let Some((_, single, rest)) = tlv(responses) {
            responses = rest;
            // certID, certStatus, thisUpdate, [0] nextUpdate?, [1] singleExtensions?
            let mut items = single;
            while let Some((tag, content, rest)) = tlv(items) {
                items = rest;
                if tag != 0xa1 {
                    continue;
                }
                let (_, mut exts, _) = tlv(content)?;
                while let Some((_, ext, rest)) = tlv(exts) {
                    exts = rest;
                    if let Some(after_oid) = ext.strip_prefix(SCT_OID) {
                        // [critical BOOLEAN] then extnValue OCTET STRING { OCTET STRING { list } }
                        let mut v = after_oid;
                        while let Some((tag, content, rest)) = tlv(v) {
                            v = rest;
                            if tag == 0x04 {
                                let (_, list, _) = tlv(content)?;
                                found.extend(crate::ct::parse_sct_list(list).ok()?);
                            }
                        }
                    }
                }
            }
        }
        Some(found)
    };
    walk().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::der::der;

    /// A response shaped like a responder's, with SCTs in a single response's extensions.
    #[test]
    fn generalized_times_parse_and_odd_bytes_do_not_panic() {
        assert_eq!(super::generalized(b"20260101000000Z"), Some(1_767_225_600));
        assert_eq!(super::generalized("2026010100000éZ".as_bytes()), None);
        // 15 bytes with a two-byte character straddling the year's end: must not be sliced.
        assert_eq!("202é010000000Z".len(), 15);
        assert_eq!(super::generalized("202é010000000Z".as_bytes()), None);
        assert_eq!(super::generalized(b"2026010100000Z"), None);
    }

    #[test]
    fn scts_are_read_from_single_response_extensions() {
        let sct = crate::ct::Sct {
            log_id: [7; 32],
            timestamp: 1_000,
            extensions: Vec::new(),
            hash: 4,
            signature_alg: 3,
            signature: vec![1, 2, 3],
        };
        let list = crate::ct::encode_sct_list(std::slice::from_ref(&sct));
        let oid = [0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x05];
        let ext = der(0x30, &[&oid[..], &der(0x04, &der(0x04, &list))].concat());
        let single = der(
            0x30,
            &[
                der(0x30, b"certid").as_slice(),
                &[0x80, 0x00],
                &der(0x18, b"20260101000000Z"),
                &der(0xa1, &der(0x30, &ext)),
            ]
            .concat(),
        );
        let tbs = der(
            0x30,
            &[der(0xa2, b"id").as_slice(), &der(0x18, b"20260101000000Z"), &der(0x30, &single)]
                .concat(),
        );
        let basic = der(0x30, &[tbs.as_slice(), &der(0x30, b"alg"), &der(0x03, &[0, 1])].concat());
        let bytes = der(0x30, &[super::BASIC, &der(0x04, &basic)].concat());
        let response = der(0x30, &[der(0x0a, &[0]).as_slice(), &der(0xa0, &bytes)].concat());
        assert_eq!(super::scts(&response), [sct]);
        assert!(super::scts(&response[..response.len() / 2]).is_empty());
    }
}
