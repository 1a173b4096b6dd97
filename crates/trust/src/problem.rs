//! What can be wrong with a certificate, with a stable code, the sentence the field expects,
//! and how bad it is — and the verdict and report that collect them.

use std::fmt;

use serde::Serialize;

use crate::cert::Facts;

/// One failed check on one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Problem {
    /// The host name is in no dNSName (or, for an IP, no iPAddress) SAN entry. The Common
    /// Name is never consulted.
    HostnameMismatch {
        /// The host name asked for.
        host: String,
    },
    /// The verify time is past its notAfter.
    Expired {
        /// Its notAfter (Unix seconds).
        not_after: i64,
    },
    /// The verify time is before its notBefore.
    NotYetValid {
        /// Its notBefore (Unix seconds).
        not_before: i64,
    },
    /// A leaf valid for longer than its anchor class allows.
    ValidityTooLong {
        /// Its validity in days.
        days: i64,
        /// The longest its anchor class allows.
        max: i64,
    },
    /// The leaf lacks the usage the policy needs (serverAuth or clientAuth), or an
    /// intermediate's EKU excludes it.
    ExtendedKeyUsage {
        /// The usage needed (`serverAuth`, `clientAuth`).
        needed: &'static str,
    },
    /// RSA below 2048 bits or EC below 256.
    WeakKey {
        /// The key type.
        kind: &'static str,
        /// Its size.
        bits: usize,
    },
    /// Signed with SHA-1 or MD5 (below the anchor).
    BrokenSignatureAlgorithm,
    /// The chain ends in a self-signed certificate that is not an anchor.
    UntrustedRoot,
    /// No presented certificate or anchor issued this one.
    MissingIssuer {
        /// The issuer's name, as the certificate gives it.
        issuer: String,
    },
    /// A signature does not verify, or a structure is invalid: no exception can accept it.
    Invalid {
        /// What is wrong.
        why: String,
    },
    /// A system-anchored chain needs Certificate Transparency and there is no log list.
    LogListUnavailable,
    /// None of the chain's keys matches a pin configured for the host.
    PinMismatch,
    /// A field or extension breaks RFC 5280 (or, for system-anchored chains, the CA/Browser
    /// Forum's Baseline Requirements).
    NotCompliant {
        /// The rule broken, in words.
        rule: String,
    },
    /// The chain has more intermediates than allowed.
    ChainTooLong {
        /// How many there are.
        intermediates: usize,
        /// How many are allowed.
        max: usize,
    },
    /// Its issuer's CRL, or a stapled OCSP response, says it is revoked (`by` says which).
    Revoked {
        /// What said so (`crl`, `ocsp`).
        by: &'static str,
    },
    /// Too few valid SCTs (or from too few operators) for the certificate's lifetime.
    CtRequired {
        /// Valid SCTs.
        valid: usize,
        /// Needed for the certificate's lifetime.
        required: usize,
        /// Distinct operators among the valid ones (two are needed).
        operators: usize,
    },
    /// The log list is older than the staleness limit.
    LogListStale {
        /// How old it is.
        age_days: i64,
    },
    /// With hard-fail revocation: a CRL could not be had.
    RevocationUnknown {
        /// Why the CRL could not be had.
        why: String,
    },
}

/// How bad a failed evaluation is (SecTrustResultType's three outcomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Trusted.
    Proceed,
    /// Failed, for a reason a user or an exception may accept (a name, a date, an anchor).
    RecoverableFailure,
    /// Failed in a way nothing should accept (a bad signature, a broken pin).
    FatalFailure,
}

impl Problem {
    /// The stable code (`hostname_mismatch`), as in JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Self::HostnameMismatch { .. } => "hostname_mismatch",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::ValidityTooLong { .. } => "validity_too_long",
            Self::ExtendedKeyUsage { .. } => "extended_key_usage",
            Self::WeakKey { .. } => "weak_key",
            Self::BrokenSignatureAlgorithm => "broken_signature_algorithm",
            Self::UntrustedRoot => "untrusted_root",
            Self::MissingIssuer { .. } => "missing_issuer",
            Self::Invalid { .. } => "invalid",
            Self::LogListUnavailable => "log_list_unavailable",
            Self::PinMismatch => "pin_mismatch",
            Self::NotCompliant { .. } => "not_compliant",
            Self::ChainTooLong { .. } => "chain_too_long",
            Self::Revoked { .. } => "revoked",
            Self::CtRequired { .. } => "ct_required",
            Self::LogListStale { .. } => "log_list_stale",
            Self::RevocationUnknown { .. } => "revocation_unknown",
        }
    }

    /// The sentence a trust report uses, worded as Apple's trust failure descriptions are
    /// where one exists (`Hostname mismatch`, `Root is not trusted`, …).
    pub fn sentence(&self) -> &'static str {
        match self {
            Self::HostnameMismatch { .. } => "Hostname mismatch",
            Self::Expired { .. } => "Certificate has expired",
            Self::NotYetValid { .. } => "Certificate is not yet valid",
            Self::ValidityTooLong { .. } => "Certificate is not standards compliant",
            Self::ExtendedKeyUsage { .. } => "Extended key usage does not match certificate usage",
            Self::WeakKey { .. } => "Key size is not permitted for this use",
            Self::BrokenSignatureAlgorithm => "Certificate is using a broken signature algorithm",
            Self::UntrustedRoot => "Root is not trusted",
            Self::MissingIssuer { .. } => "Missing issuer",
            Self::Invalid { .. } => "Certificate is invalid",
            Self::LogListUnavailable => "Certificate Transparency log list unavailable",
            Self::PinMismatch => "Public key pin mismatch",
            Self::NotCompliant { .. } => "Certificate is not standards compliant",
            Self::ChainTooLong { .. } => "Certificate chain is too long",
            Self::Revoked { .. } => "Certificate is revoked",
            Self::CtRequired { .. } => "Certificate Transparency validation required for this use",
            Self::LogListStale { .. } => "Certificate Transparency log list is stale",
            Self::RevocationUnknown { .. } => "Revocation status unknown",
        }
    }

    /// What exactly, and what to try.
    pub fn detail(&self) -> String {
        match self {
            Self::HostnameMismatch { host } => format!(
                "{host:?} is not among the certificate's Subject Alternative Names (the Common Name does not count)"
            ),
            Self::Expired { not_after } => format!("valid until {}", crate::time::rfc3339(*not_after)),
            Self::NotYetValid { not_before } => {
                format!("valid from {}", crate::time::rfc3339(*not_before))
            }
            Self::ValidityTooLong { days, max } => {
                format!("valid for {days} days; this anchor class allows at most {max}")
            }
            Self::ExtendedKeyUsage { needed } => format!("needs the {needed} extended key usage"),
            Self::WeakKey { kind, bits } => format!(
                "{kind} {bits}-bit key; at least {} bits are needed",
                if *kind == "RSA" { 2048 } else { 256 }
            ),
            Self::BrokenSignatureAlgorithm => "signed with SHA-1 or MD5; reissue it with SHA-256".into(),
            Self::UntrustedRoot => {
                "its root is not an anchor; add it with --anchor if you trust it".into()
            }
            Self::MissingIssuer { issuer } => format!(
                "no presented certificate or anchor is {issuer:?}: the peer must send its intermediates, and its root must be an anchor"
            ),
            Self::Invalid { why } => why.clone(),
            Self::LogListUnavailable => "a system-anchored chain needs Certificate Transparency, and no log list is configured".into(),
            Self::PinMismatch => "no key in the chain matches the host's pins".into(),
            Self::NotCompliant { rule } => rule.clone(),
            Self::ChainTooLong { intermediates, max } => {
                format!("{intermediates} intermediates; at most {max} are allowed")
            }
            Self::Revoked { by } => format!("{by} says its serial number is revoked"),
            Self::CtRequired { valid, required, operators } => format!(
                "{valid} valid SCTs from {operators} operators; {required} from at least 2 operators are needed"
            ),
            Self::RevocationUnknown { why } => why.clone(),
            Self::LogListStale { age_days } => format!(
                "the log list is {age_days} days old (more than {}); supply a newer one",
                crate::ct::STALE_AFTER_DAYS
            ),
        }
    }

    /// Whether an exception or a user may accept it.
    pub fn recoverable(&self) -> bool {
        !matches!(self, Self::Invalid { .. } | Self::PinMismatch | Self::Revoked { .. })
    }
}

/// Something an evaluation did not check, and why: it does not fail the chain, and a report
/// shows it so nobody mistakes "not checked" for "checked".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Note {
    /// Certificate Transparency was not enforced: no log list is configured.
    CtNotEnforcedNoLogList,
    /// Certificate Transparency was not enforced: the log list is older than
    /// [`crate::ct::STALE_AFTER_DAYS`] (Chrome stops enforcing then too, rather than refusing
    /// every logged certificate issued after its list was made).
    CtNotEnforcedStaleLogList {
        /// How old the list is.
        age_days: i64,
    },
}

impl Note {
    /// The stable code (`ct_not_enforced_no_log_list`), as in JSON.
    pub fn code(&self) -> &'static str {
        match self {
            Self::CtNotEnforcedNoLogList => "ct_not_enforced_no_log_list",
            Self::CtNotEnforcedStaleLogList { .. } => "ct_not_enforced_stale_log_list",
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CtNotEnforcedNoLogList => {
                f.write_str("Certificate Transparency not checked: no log list is configured")
            }
            Self::CtNotEnforcedStaleLogList { age_days } => write!(
                f,
                "Certificate Transparency not checked: the log list is {age_days} days old (more than {})",
                crate::ct::STALE_AFTER_DAYS
            ),
        }
    }
}

/// One certificate of the evaluated chain, with what failed on it.
#[derive(Debug, Clone, Serialize)]
pub struct CertificateReport {
    /// Its position in the chain: 0 is the leaf.
    pub index: usize,
    /// What it says.
    pub facts: Facts,
    /// Presented by the peer, or taken from the anchors.
    pub presented: bool,
    /// It is the anchor the chain ends in.
    pub anchor: bool,
    /// Every check that failed on it.
    pub problems: Vec<Problem>,
}

impl fmt::Display for CertificateReport {
    /// `Certificate 0 “api.example” has errors: Hostname mismatch;`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Certificate {} “{}”", self.index, self.facts.name)?;
        if self.problems.is_empty() {
            return f.write_str(" has no errors");
        }
        f.write_str(" has errors:")?;
        for p in &self.problems {
            write!(f, " {};", p.sentence())?;
        }
        Ok(())
    }
}
