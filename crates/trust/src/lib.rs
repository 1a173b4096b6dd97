//! `nw-trust`: X.509 trust evaluation whose failures explain themselves, certificate by
//! certificate, and a test certificate authority.
//!
//! # The model
//!
//! - [`evaluate()`] takes the chain a peer presented (leaf first), the host
//!   it should be for, a verify time and [`Options`]: the policy (TLS server or client
//!   certificate), the anchors with their [`AnchorClass`], the CT requirement, pins and
//!   exceptions.
//! - rustls-webpki builds and verifies the path: signatures, basic constraints, name
//!   constraints. Then the policy layer applies the rules of the chain's anchor class to each
//!   certificate — dates (anchors included), key sizes, SHA-1, EKU, maximum validity — and
//!   checks the host against the Subject Alternative Name only.
//! - The [`Evaluation`] has a [`Verdict`] (proceed, recoverable or fatal failure) and, per
//!   certificate, every failed check as a [`Problem`] with a stable code, the sentence the
//!   field reads, and a detail that says what to try.
//! - [`TrustVerifier`] plugs the evaluator into rustls on both sides ([`AtsVerifier`] adds
//!   the transport-security policy); [`ca`] issues test
//!   certificates.
//!
//! ```
//! use nw_trust::{Anchor, AnchorClass, Options, ca::TestCa, evaluate};
//!
//! let ca = TestCa::new("Test Root").unwrap();
//! let leaf = ca.server(&["api.example"]).unwrap();
//! let options = Options {
//!     anchors: vec![Anchor { der: ca.root_der(), class: AnchorClass::Custom }],
//!     ..Options::default()
//! };
//! let now = leaf.not_before + 60;
//! let ok = evaluate(&leaf.chain, Some("api.example"), now, &options).unwrap();
//! assert!(ok.trusted());
//! let wrong = evaluate(&leaf.chain, Some("www.example"), now, &options).unwrap();
//! assert_eq!(wrong.failure_lines(), ["Certificate 0 “api.example” has errors: Hostname mismatch;"]);
//! ```
#![warn(missing_docs)]

// The face: evaluation, its options and report, anchors and the rustls verifiers at the root;
// sub-APIs with a vocabulary of their own as modules (the test CA, CT log lists, OCSP,
// revocation and its fetcher seam); files and time are helpers the other crates share.
mod anchors;
mod ats;
pub mod ca;
mod cert;
pub mod ct;
mod der;
mod evaluate;
pub mod files;
#[doc(hidden)]
pub mod fuzz;
mod identity;
pub mod ocsp;
mod problem;
mod profile;
pub mod revocation;
pub mod time;
mod verifier;

pub use anchors::{
    Anchor, AnchorClass, PEM_FILE_LIMIT, USER_ADDED_DIR, classify, load_pem, parse_pem_certs,
    read_limited, system as system_anchors, system_shared as system_anchors_shared,
};
pub use ats::{AtsVerifier, check_provider};
pub use cert::{Eku, Facts, Key, Signature};
pub use evaluate::{CtRequirement, Evaluation, Options, Pin, Policy, evaluate};
pub use identity::{Identities, Request as IdentityRequest};
pub use problem::{CertificateReport, Note, Problem, Verdict};
/// The EKU purposes test CAs are restricted with.
pub use rcgen::ExtendedKeyUsagePurpose;
pub use verifier::{TrustVerifier, Untrusted};

/// Why an evaluation could not even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// No certificates were presented.
    #[error("no certificates were presented")]
    EmptyChain,
    /// A certificate could not be parsed.
    #[error("certificate {index} cannot be parsed: {why}")]
    BadCertificate {
        /// Its position in the chain.
        index: usize,
        /// What the parser said.
        why: String,
    },
    /// A file could not be used.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// The system's anchors could not be loaded.
    #[error("the system's anchors could not be loaded: {0}")]
    SystemAnchors(String),
    /// A test certificate could not be made.
    #[error("cannot make the certificate: {0}")]
    Issue(String),
}
