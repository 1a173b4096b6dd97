//! Structure rules webpki leaves to its callers: the RFC 5280 requirements on a certificate's
//! fields and extensions (for every chain), and the CA/Browser Forum's Baseline Requirements
//! for publicly-trusted certificates (for system-anchored chains only: private PKIs are not
//! bound by them, and routinely put a display name in the Common Name). Anchors are checked
//! here too — webpki takes them on faith.

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::anchors::AnchorClass;
use crate::problem::Problem;

/// Where a certificate sits in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Leaf,
    Intermediate,
    Anchor,
}

/// Extensions this layer or webpki understands; an anchor with any other critical extension
/// cannot be used (RFC 5280 §4.2).
const KNOWN: &[&str] = &[
    "2.5.29.14", // subjectKeyIdentifier
    "2.5.29.15", // keyUsage
    "2.5.29.17", // subjectAltName
    "2.5.29.19", // basicConstraints
    "2.5.29.30", // nameConstraints
    "2.5.29.32", // certificatePolicies
    "2.5.29.35", // authorityKeyIdentifier
    "2.5.29.36", // policyConstraints
    "2.5.29.37", // extKeyUsage
    "2.5.29.54", // inhibitAnyPolicy
];

/// Every structure rule that `der` breaks in `role`, under an anchor of `class`.
pub(crate) fn check(
    cert: &X509Certificate<'_>,
    role: Role,
    class: Option<AnchorClass>,
) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut bad = |rule: &str| out.push(Problem::NotCompliant { rule: rule.to_owned() });
    let public = class == Some(AnchorClass::System);
    let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
    let subject_empty = cert.subject().iter().next().is_none();

    // RFC 5280 §4.1.2.2: a positive serial of at most 20 octets. Anchors are trusted as
    // configured: a long-trusted root may predate the rule (Starfield G2's serial is 0).
    let serial = cert.raw_serial();
    if role != Role::Anchor && serial.iter().all(|b| *b == 0) {
        bad("the serial number is zero (RFC 5280 §4.1.2.2: it must be positive)");
    }
    let significant = serial.iter().skip_while(|b| **b == 0).count().max(1);
    if role != Role::Anchor && (serial.len() > 20 && significant > 20 || serial.len() > 21) {
        bad("the serial number is longer than 20 octets (RFC 5280 §4.1.2.2)");
    }

    let (mut aki, mut ski, mut bc, mut ku, mut eku_critical, mut has_eku) =
        (None, false, None, None, false, false);
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        match ext.parsed_extension() {
            ParsedExtension::ParseError { .. } => {
                bad(&format!("extension {oid} is malformed"));
            }
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                if ext.critical {
                    bad(
                        "the authorityKeyIdentifier is critical (RFC 5280 §4.2.1.1: it must not be)",
                    );
                }
                aki = Some(a);
            }
            ParsedExtension::SubjectKeyIdentifier(_) => {
                if ext.critical {
                    bad("the subjectKeyIdentifier is critical (RFC 5280 §4.2.1.2: it must not be)");
                }
                ski = true;
            }
            ParsedExtension::BasicConstraints(b) => bc = Some((b.ca, ext.critical)),
            ParsedExtension::KeyUsage(k) => ku = Some(k.key_cert_sign()),
            ParsedExtension::ExtendedKeyUsage(_) => {
                has_eku = true;
                eku_critical = ext.critical;
            }
            ParsedExtension::NameConstraints(nc) => {
                if role == Role::Leaf {
                    bad(
                        "an end-entity certificate has nameConstraints (RFC 5280 §4.2.1.10: CA certificates only)",
                    );
                }
                if !ext.critical {
                    bad("nameConstraints is not critical (RFC 5280 §4.2.1.10: it must be)");
                }
                let empty = |s: &Option<Vec<_>>| s.as_ref().is_none_or(Vec::is_empty);
                if empty(&nc.permitted_subtrees) && empty(&nc.excluded_subtrees) {
                    bad(
                        "nameConstraints has neither permitted nor excluded subtrees (RFC 5280 §4.2.1.10)",
                    );
                }
                let subtrees =
                    nc.permitted_subtrees.iter().chain(nc.excluded_subtrees.iter()).flatten();
                for s in subtrees {
                    if let GeneralName::DNSName(d) = s.base
                        && d.starts_with('.')
                    {
                        bad(
                            "a dNSName constraint starts with a period (RFC 5280 §4.2.1.10: a host name, not a domain suffix)",
                        );
                    }
                }
            }
            ParsedExtension::PolicyConstraints(_) if !ext.critical => {
                bad("policyConstraints is not critical (RFC 5280 §4.2.1.11: it must be)");
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                if subject_empty && !ext.critical {
                    bad(
                        "the subject is empty and the subjectAltName is not critical (RFC 5280 §4.2.1.6)",
                    );
                }
                if public && !subject_empty && ext.critical {
                    bad(
                        "the subjectAltName is critical while the subject is not empty (CA/B Forum BR §7.1.2.7.12)",
                    );
                }
                for name in &san.general_names {
                    if let GeneralName::DNSName(d) = name
                        && !preferred_name_syntax(d)
                    {
                        bad(&format!(
                            "the dNSName {d:?} is not in the preferred name syntax (RFC 5280 §4.2.1.6)"
                        ));
                    }
                }
            }
            ParsedExtension::AuthorityInfoAccess(aia) if aia.accessdescs.is_empty() => {
                bad("the authorityInfoAccess has no access descriptions (RFC 5280 §4.2.2.1)");
            }
            _ if role == Role::Anchor && ext.critical && !KNOWN.contains(&oid.as_str()) => {
                bad(&format!("the anchor has an unknown critical extension {oid} (RFC 5280 §4.2)"));
            }
            _ => {}
        }
    }

    let is_ca = bc.is_some_and(|(ca, _)| ca);
    // RFC 5280 §4.2.1.1: every certificate but a self-signed one names its issuer's key.
    if aki.is_none() && !self_signed && role != Role::Anchor {
        bad("the authorityKeyIdentifier is missing (RFC 5280 §4.2.1.1)");
    }
    if role != Role::Leaf {
        if !ski {
            bad("a CA certificate lacks a subjectKeyIdentifier (RFC 5280 §4.2.1.2)");
        }
        if subject_empty {
            bad("a CA certificate has an empty subject (RFC 5280 §4.1.2.6)");
        }
        match bc {
            None => bad("a CA certificate lacks basicConstraints (RFC 5280 §4.2.1.9)"),
            Some((_, false)) => {
                bad("basicConstraints is not critical in a CA certificate (RFC 5280 §4.2.1.9)")
            }
            Some((false, _)) => {
                bad("basicConstraints says this issuer is not a CA (RFC 5280 §4.2.1.9)")
            }
            Some((true, true)) => {}
        }
        if is_ca && ku == Some(false) {
            bad("a CA certificate's keyUsage lacks keyCertSign (RFC 5280 §4.2.1.3)");
        }
    }
    if ku == Some(true) && !is_ca {
        bad("keyCertSign is asserted without basicConstraints cA (RFC 5280 §4.2.1.3)");
    }
    // A self-signed anchor's AKI, when present, is its own key id and nothing else (CA/B
    // Forum BR §7.1.2.1.3; webpki's reading).
    if role == Role::Anchor
        && self_signed
        && let Some(a) = &aki
    {
        let own = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        });
        if a.key_identifier.as_ref().map(|k| k.0) != own
            || a.authority_cert_issuer.is_some()
            || a.authority_cert_serial.is_some()
        {
            bad(
                "the root's authorityKeyIdentifier is not just its own key identifier (CA/B Forum BR §7.1.2.1.3)",
            );
        }
    }
    // Keys: no DSA; RSA moduli a whole number of bytes (CA/B Forum BR §6.1.5).
    let key_alg = cert.public_key().algorithm.algorithm.to_id_string();
    if key_alg == "1.2.840.10040.4.1" {
        bad("the key is DSA (CA/B Forum BR §6.1.5: RSA or ECDSA)");
    }
    if let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = cert.public_key().parsed() {
        let bits = crate::cert::modulus_bits(rsa.modulus);
        if !bits.is_multiple_of(8) {
            bad(&format!(
                "the RSA modulus is {bits} bits, not a multiple of 8 (CA/B Forum BR §6.1.5)"
            ));
        }
    }
    if public {
        cabf(cert, role, has_eku, eku_critical, &mut bad);
    }
    out
}

/// The Baseline Requirements' rules for publicly-trusted certificates.
fn cabf(
    cert: &X509Certificate<'_>,
    role: Role,
    has_eku: bool,
    eku_critical: bool,
    bad: &mut impl FnMut(&str),
) {
    match role {
        Role::Leaf => {
            if eku_critical {
                bad("the extKeyUsage is critical (CA/B Forum BR §7.1.2.7.10)");
            }
            if cert.extended_key_usage().ok().flatten().is_some_and(|e| e.value.any) {
                bad("the extKeyUsage lists anyExtendedKeyUsage (CA/B Forum BR §7.1.2.7.10)");
            }
            // §7.1.4.3: the CN, if any, is a character-for-character copy of a SAN entry.
            let sans: Vec<String> = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|s| {
                    s.value
                        .general_names
                        .iter()
                        .filter_map(|n| match n {
                            GeneralName::DNSName(d) => Some((*d).to_owned()),
                            GeneralName::IPAddress(b) => ip_text(b),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            for cn in cert.subject().iter_common_name() {
                if !cn.as_str().is_ok_and(|cn| sans.iter().any(|s| s == cn)) {
                    bad(
                        "the Common Name is not a copy of a subjectAltName entry (CA/B Forum BR §7.1.4.3)",
                    );
                }
            }
        }
        Role::Anchor if has_eku => bad("the root has an extKeyUsage (CA/B Forum BR §7.1.2.1.2)"),
        _ => {}
    }
}

fn ip_text(b: &[u8]) -> Option<String> {
    if let Ok(a) = <[u8; 4]>::try_from(b) {
        return Some(std::net::Ipv4Addr::from(a).to_string());
    }
    <[u8; 16]>::try_from(b).ok().map(|a| std::net::Ipv6Addr::from(a).to_string())
}

/// RFC 1034 §3.5's preferred name syntax (letters, digits, hyphens; labels not starting or
/// ending with a hyphen), with a leading `*.` wildcard label allowed.
fn preferred_name_syntax(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The RFC 5280 §5 rules for a CRL webpki would otherwise take or skip quietly: its issuer must
/// be allowed to sign CRLs (keyUsage cRLSign, §4.2.1.3) and it must carry a non-critical CRL
/// number (§5.2.3). Returns, for each broken CRL, its issuer's name (DER) and what is wrong.
pub(crate) fn check_crls(crls: &[Vec<u8>], issuers: &[&[u8]]) -> Vec<(Vec<u8>, String)> {
    use x509_parser::revocation_list::CertificateRevocationList;
    let mut out = Vec::new();
    for der in crls {
        let Ok((_, crl)) = CertificateRevocationList::from_der(der) else { continue };
        let issuer = crl.issuer().as_raw().to_vec();
        let number = crl.extensions().iter().find(|e| e.oid.to_id_string() == "2.5.29.20");
        match number {
            None => out.push((
                issuer.clone(),
                "its issuer's CRL has no CRL number (RFC 5280 §5.2.3)".to_owned(),
            )),
            Some(e) if e.critical => out.push((
                issuer.clone(),
                "its issuer's CRL marks the CRL number critical (RFC 5280 §5.2.3)".to_owned(),
            )),
            Some(_) => {}
        }
        for cert in issuers {
            let Ok((_, ca)) = X509Certificate::from_der(cert) else { continue };
            if ca.subject().as_raw() == issuer.as_slice()
                && ca.key_usage().ok().flatten().is_some_and(|ku| !ku.value.crl_sign())
            {
                out.push((
                    issuer.clone(),
                    "its issuer signs CRLs without keyUsage cRLSign (RFC 5280 §4.2.1.3)".to_owned(),
                ));
            }
        }
    }
    out
}
