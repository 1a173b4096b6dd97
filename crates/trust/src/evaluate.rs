//! The evaluator: webpki builds and verifies the path (signatures, basic constraints, name
//! constraints); the policy layer then applies the rules of the chain's anchor class to every
//! certificate and says, per certificate, what failed.

use std::net::IpAddr;

use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use serde::Serialize;
use webpki::{EndEntityCert, KeyPurposeIdIter};
use x509_parser::certificate::X509Certificate;

use crate::TrustError;
use crate::anchors::{Anchor, AnchorClass};
use crate::cert::{Facts, Key, Signature, hex, sha256};
use crate::problem::{CertificateReport, Note, Problem, Verdict};
use crate::profile::{self, Role};
use crate::revocation::Mode;

/// Which certificate is being judged: a TLS server's or a TLS client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// A TLS server's certificate.
    #[default]
    Server,
    /// A TLS client's certificate.
    Client,
}

/// When Certificate Transparency is required. A required check needs a log list no older than
/// [`crate::ct::STALE_AFTER_DAYS`]: under `SystemAnchored` a missing or stale list means CT is
/// not enforced and the evaluation carries a [`Note`] saying so (Chrome's rule; Apple ships
/// its list with the OS); under `Always`, the caller's explicit demand, it is a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CtRequirement {
    /// Never.
    Off,
    /// For chains that end in a system anchor (the default, as on Apple platforms).
    #[default]
    SystemAnchored,
    /// For every chain.
    Always,
}

/// SPKI pins for a host: one of the chain's keys must be among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// The host name (a DNS name).
    pub host: String,
    /// The pins hold for its subdomains too.
    pub include_subdomains: bool,
    /// SHA-256 of SubjectPublicKeyInfo, hex.
    pub spki_sha256: Vec<String>,
}

/// What to evaluate against.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Whose certificate: a server's or a client's.
    pub policy: Policy,
    /// Anchors: system, custom and user-added together (see [`AnchorClass`](crate::AnchorClass)).
    pub anchors: Vec<Anchor>,
    /// When Certificate Transparency is required.
    pub ct: CtRequirement,
    /// Key pins per host.
    pub pins: Vec<Pin>,
    /// Leaves (SHA-256 of the DER, hex) whose recoverable failures are accepted.
    pub exceptions: Vec<String>,
    /// At most this many intermediates between the leaf and the anchor.
    pub max_intermediates: Option<usize>,
    /// Certificate revocation lists (DER) to check every certificate of the chain against
    /// (signature and issuer checked by webpki). A certificate no list covers passes: soft fail.
    pub crls: Vec<Vec<u8>>,
    /// The CT log list (see [`crate::ct`]); without a fresh one, see [`CtRequirement`].
    pub log_list: Option<std::sync::Arc<crate::ct::LogList>>,
    /// SCTs that came with the connection (TLS extension, stapled OCSP), beside the embedded ones.
    pub extra_scts: Vec<crate::ct::Sct>,
    /// CRLs the chain names that could not be had, each with why ([`crate::revocation`]
    /// fetches them before an evaluation: the evaluation itself does no I/O).
    pub crls_unavailable: Vec<String>,
    /// What an unknown revocation status means: it passes (soft fail, the default) or fails.
    pub revocation: Mode,
    /// The OCSP response the server stapled, if any (see [`crate::ocsp`]).
    pub stapled_ocsp: Option<Vec<u8>>,
}

/// The outcome: the verdict, then every certificate with what failed on it.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Proceed, or how bad the failure is.
    pub verdict: Verdict,
    /// The class of the anchor the chain ends in, when it ends in one.
    pub anchor_class: Option<AnchorClass>,
    /// Leaf first, then the issuers in chain order (anchor last, when found).
    pub certificates: Vec<CertificateReport>,
    /// The verify time (Unix seconds).
    pub at: i64,
    /// An exception for this exact leaf accepted recoverable failures.
    pub excepted: bool,
    /// What was not checked, and why (a missing or stale CT log list).
    pub notes: Vec<Note>,
}

impl Evaluation {
    /// One line per certificate with problems (`Certificate 0 “api.example” has errors: …;`).
    pub fn failure_lines(&self) -> Vec<String> {
        self.certificates
            .iter()
            .filter(|c| !c.problems.is_empty())
            .map(ToString::to_string)
            .collect()
    }

    /// The verdict is proceed.
    pub fn trusted(&self) -> bool {
        self.verdict == Verdict::Proceed
    }
}

/// Evaluates `chain` (leaf first, then what the peer presented) for `host` at `at` (Unix
/// seconds). `host` is a DNS name or an IP literal; `None` skips the name check (client
/// certificates).
pub fn evaluate(
    chain: &[CertificateDer<'_>],
    host: Option<&str>,
    at: i64,
    options: &Options,
) -> Result<Evaluation, TrustError> {
    let Some(leaf_der) = chain.first() else { return Err(TrustError::EmptyChain) };
    // Each certificate is parsed once here, for its facts and for the structure rules.
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .enumerate()
        .map(|(i, c)| crate::cert::parse_x509(i, c.as_ref()))
        .collect::<Result<_, _>>()?;
    let presented: Vec<Facts> =
        parsed.iter().enumerate().map(|(i, c)| Facts::from_cert(i, c)).collect::<Result<_, _>>()?;
    let anchors: Vec<(TrustAnchor<'_>, &Anchor)> = options
        .anchors
        .iter()
        .filter_map(|a| webpki::anchor_from_trusted_cert(&a.der).ok().map(|t| (t, a)))
        .collect();
    let trust_anchors: Vec<TrustAnchor<'_>> = anchors.iter().map(|(t, _)| t.clone()).collect();
    let leaf = EndEntityCert::try_from(leaf_der)
        .map_err(|e| TrustError::BadCertificate { index: 0, why: format!("{e:?}") })?;
    let intermediates = &chain[1..];
    // The CRLs given (fetched ones included, see `revocation::Revocation::prepare`).
    let hard = options.revocation == Mode::HardFail;
    let mut unknown = options.crls_unavailable.clone();
    let crls: Vec<webpki::CertRevocationList<'_>> = options
        .crls
        .iter()
        .enumerate()
        .map(|(i, der)| {
            webpki::BorrowedCertRevocationList::from_der(der).map(Into::into).map_err(|e| {
                TrustError::BadCertificate {
                    index: i,
                    why: format!("CRL {i} cannot be parsed: {e:?}"),
                }
            })
        })
        .collect::<Result<_, _>>()?;
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    if hard && crl_refs.is_empty() && unknown.is_empty() {
        unknown.push("the chain names no CRL distribution point and no CRL was given".into());
    }
    let status =
        if hard { webpki::UnknownStatusPolicy::Deny } else { webpki::UnknownStatusPolicy::Allow };
    let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
        b.with_depth(webpki::RevocationCheckDepth::Chain).with_status_policy(status).build()
    });
    let verify = |t: i64| {
        leaf.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trust_anchors,
            intermediates,
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.max(0).unsigned_abs())),
            AnyUsage,
            revocation,
            None,
        )
        .map(|path| {
            let via: Vec<usize> = path
                .intermediate_certificates()
                .filter_map(|c| chain.iter().position(|p| p.as_ref() == c.der().as_ref()))
                .collect();
            let anchor = anchors.iter().position(|(t, _)| same_anchor(t, path.anchor()));
            (via, anchor)
        })
    };
    // A date problem is ours to report, certificate by certificate: if webpki refuses only on
    // time, build the path again at an instant inside every presented certificate's validity.
    let mut structural: Option<webpki::Error> = None;
    let built = match verify(at) {
        Ok(p) => Some(p),
        Err(e) if is_temporal(&e) => {
            let inside = presented.iter().map(|f| f.not_before).max().unwrap_or(at);
            match verify(inside) {
                Ok(p) => Some(p),
                Err(e) => {
                    structural = Some(e);
                    None
                }
            }
        }
        Err(e) => {
            structural = Some(e);
            None
        }
    };
    // The chain as reported: the verified path, or the presented certificates in issuer order.
    let (order, anchor_idx) = match &built {
        Some((via, anchor)) => {
            let mut order = vec![0];
            order.extend(via.iter().copied());
            (order, *anchor)
        }
        None => issuer_order(&presented, &options.anchors),
    };
    let mut certificates: Vec<CertificateReport> = order
        .iter()
        .map(|&i| CertificateReport {
            index: 0,
            facts: presented[i].clone(),
            presented: true,
            anchor: false,
            problems: Vec::new(),
        })
        .collect();
    let anchor = anchor_idx.map(|i| &options.anchors[i]);
    let anchor_parsed =
        anchor.map(|a| crate::cert::parse_x509(certificates.len(), a.der.as_ref())).transpose()?;
    if let Some(parsed_anchor) = &anchor_parsed {
        let facts = Facts::from_cert(certificates.len(), parsed_anchor)?;
        // A presented root that is the anchor itself is shown once, as the anchor.
        if certificates.last().is_some_and(|c| {
            c.facts.spki_sha256 == facts.spki_sha256 && c.facts.subject_der == facts.subject_der
        }) && certificates.len() > 1
        {
            certificates.pop();
        }
        certificates.push(CertificateReport {
            index: 0,
            facts,
            presented: false,
            anchor: true,
            problems: Vec::new(),
        });
    }
    for (i, c) in certificates.iter_mut().enumerate() {
        c.index = i;
    }
    let class = anchor.map(|a| a.class);
    apply_policy(&mut certificates, class, at, options);
    // The structure rules, on the same certificates (the anchor's DER from the anchors).
    let ders: Vec<&[u8]> =
        order.iter().map(|&i| chain[i].as_ref()).chain(anchor.map(|a| a.der.as_ref())).collect();
    for c in &mut certificates {
        let role = if c.anchor {
            Role::Anchor
        } else if c.index == 0 {
            Role::Leaf
        } else {
            Role::Intermediate
        };
        let cert =
            if c.anchor { anchor_parsed.as_ref() } else { order.get(c.index).map(|&i| &parsed[i]) };
        if let Some(cert) = cert {
            c.problems.extend(profile::check(cert, role, class));
        }
    }
    // Certificate Transparency, with a log list: the leaf's SCTs, its issuer's key.
    let mut notes = Vec::new();
    if ct_required(options.ct, class) {
        let explicit = options.ct == CtRequirement::Always;
        match &options.log_list {
            None if explicit => certificates[0].problems.push(Problem::LogListUnavailable),
            None => notes.push(Note::CtNotEnforcedNoLogList),
            Some(list) if list.age_days(at) > crate::ct::STALE_AFTER_DAYS => {
                let age_days = list.age_days(at);
                if explicit {
                    certificates[0].problems.push(Problem::LogListStale { age_days });
                } else {
                    notes.push(Note::CtNotEnforcedStaleLogList { age_days });
                }
            }
            Some(list) => {
                let issuer_spki =
                    ders.get(1).and_then(|d| crate::cert::spki(d).ok()).unwrap_or_default();
                let lifetime = certificates[0].facts.validity_days();
                // SCTs: embedded (read by `ct::check`), given, and stapled in the OCSP response.
                let mut extra = options.extra_scts.clone();
                if let Some(staple) = &options.stapled_ocsp {
                    extra.extend(crate::ocsp::scts(staple));
                }
                let outcome = crate::ct::check(ders[0], &issuer_spki, &extra, list, at, lifetime);
                if !outcome.satisfied() {
                    certificates[0].problems.push(Problem::CtRequired {
                        valid: outcome.valid,
                        required: outcome.required,
                        operators: outcome.operators,
                    });
                }
            }
        }
    }
    // CRLs that break the rules make the certificates they would cover fail.
    // A stapled OCSP response: a revocation is fatal; one that cannot be used only matters
    // under hard fail.
    if let (Some(response), [leaf, issuer, ..]) = (&options.stapled_ocsp, ders.as_slice()) {
        match crate::ocsp::check(response, leaf, issuer, at) {
            Ok(crate::ocsp::Status::Revoked { .. }) => {
                certificates[0].problems.push(Problem::Revoked { by: "the stapled OCSP response" })
            }
            Ok(_) => {}
            Err(e) => unknown.push(format!("the stapled OCSP response: {e}")),
        }
    }
    if hard && !unknown.is_empty() {
        certificates[0].problems.push(Problem::RevocationUnknown { why: unknown.join("; ") });
    }
    for (issuer, why) in profile::check_crls(&options.crls, &ders) {
        for c in certificates.iter_mut().filter(|c| c.facts.issuer_der == issuer && !c.anchor) {
            c.problems.push(Problem::Invalid { why: why.clone() });
        }
    }
    // RFC 5280 §6.1.4 (l): self-issued intermediates do not count toward the path length.
    let intermediates =
        certificates.iter().filter(|c| c.index > 0 && !c.anchor && !c.facts.self_issued).count();
    if let Some(max) = options.max_intermediates
        && intermediates > max
    {
        certificates[0].problems.push(Problem::ChainTooLong { intermediates, max });
    }
    if let Some(e) = structural {
        if matches!(e, webpki::Error::CertRevoked) {
            // Which one: the certificate whose issuer's CRL lists its serial.
            let revoked = certificates.iter().position(|c| {
                crls.iter().any(|crl| {
                    crl.issuer() == strip_sequence(&c.facts.issuer_der)
                        && crl.find_serial(&c.facts.serial).ok().flatten().is_some()
                })
            });
            certificates[revoked.unwrap_or(0)]
                .problems
                .push(Problem::Revoked { by: "its issuer's certificate revocation list" });
        } else {
            attribute(&mut certificates, &e);
        }
    }
    if let Some(host) = host {
        check_name(&leaf, &presented[0], host, &mut certificates[0].problems);
    }
    if let Some(host) = host
        && let Some(problem) = check_pins(host, &certificates, &options.pins)
    {
        certificates[0].problems.push(problem);
    }
    let problems = || certificates.iter().flat_map(|c| c.problems.iter());
    let excepted =
        options.exceptions.iter().any(|e| e.eq_ignore_ascii_case(&hex(&sha256(leaf_der.as_ref()))))
            && problems().all(Problem::recoverable)
            && problems().next().is_some();
    let verdict = if excepted || problems().next().is_none() {
        Verdict::Proceed
    } else if problems().all(Problem::recoverable) {
        Verdict::RecoverableFailure
    } else {
        Verdict::FatalFailure
    };
    Ok(Evaluation { verdict, anchor_class: class, certificates, at, excepted, notes })
}

/// The rules every certificate is held to, by the anchor class of the chain.
fn apply_policy(
    certs: &mut [CertificateReport],
    class: Option<AnchorClass>,
    at: i64,
    options: &Options,
) {
    for (i, c) in certs.iter_mut().enumerate() {
        let f = &c.facts;
        let p = &mut c.problems;
        if at < f.not_before {
            p.push(Problem::NotYetValid { not_before: f.not_before });
        } else if at > f.not_after {
            p.push(Problem::Expired { not_after: f.not_after });
        }
        match f.key {
            Key::Rsa { bits } if bits < 2048 => p.push(Problem::WeakKey { kind: "RSA", bits }),
            Key::Ec { bits } if bits < 256 => p.push(Problem::WeakKey { kind: "EC", bits }),
            _ => {}
        }
        // The anchor's own signature proves nothing; everything below it must be SHA-2 or better.
        if !c.anchor && f.signature == Signature::Broken {
            p.push(Problem::BrokenSignatureAlgorithm);
        }
        let needed = match options.policy {
            Policy::Server => "serverAuth",
            Policy::Client => "clientAuth",
        };
        let allows = |e: &crate::cert::Eku| {
            e.any
                || (options.policy == Policy::Server && e.server_auth)
                || (options.policy == Policy::Client && e.client_auth)
        };
        if i == 0 {
            // Apple's rule for TLS server leaves: the EKU must be present and list serverAuth.
            let ok = match (options.policy, f.eku) {
                (Policy::Server, Some(e)) => e.server_auth,
                (Policy::Server, None) => false,
                (Policy::Client, e) => e.is_none_or(|e| allows(&e)),
            };
            if !ok {
                p.push(Problem::ExtendedKeyUsage { needed });
            }
            if options.policy == Policy::Server
                && let Some(max) = max_validity(class, f.not_before)
                && f.validity_days() > max
            {
                p.push(Problem::ValidityTooLong { days: f.validity_days(), max });
            }
        } else if !c.anchor && f.eku.is_some_and(|e| !allows(&e)) {
            // Intermediates: an EKU, when present, must not exclude the usage (the CA/Browser
            // Forum's reading; webpki's "required if present").
            p.push(Problem::ExtendedKeyUsage { needed });
        }
    }
}

/// Whether a chain ending in an anchor of `class` needs Certificate Transparency.
fn ct_required(requirement: CtRequirement, class: Option<AnchorClass>) -> bool {
    match requirement {
        CtRequirement::Off => false,
        CtRequirement::SystemAnchored => class == Some(AnchorClass::System),
        CtRequirement::Always => true,
    }
}

/// Maximum leaf validity by anchor class: 398 days under system anchors for leaves issued
/// from 2020-09-01 (Apple, "About upcoming limits on trusted certificates", 2020); 825 days
/// under custom and user-added anchors for leaves issued from 2019-07-01 (Apple, "Requirements
/// for trusted certificates in iOS 13 and macOS 10.15", HT210176).
fn max_validity(class: Option<AnchorClass>, not_before: i64) -> Option<i64> {
    const SEPT_2020: i64 = 1_598_918_400; // 2020-09-01T00:00:00Z
    const JULY_2019: i64 = 1_561_939_200; // 2019-07-01T00:00:00Z
    match class? {
        AnchorClass::System if not_before >= SEPT_2020 => Some(398),
        AnchorClass::Custom | AnchorClass::UserAdded if not_before >= JULY_2019 => Some(825),
        _ => None,
    }
}

/// The host against the leaf's SAN only (webpki never reads the Common Name), plus the
/// wildcard rule webpki leaves to us: `*.` directly above a public suffix (`*.com`,
/// `*.co.uk`) or a single label (`*.test`) matches nothing.
fn check_name(leaf: &EndEntityCert<'_>, facts: &Facts, host: &str, problems: &mut Vec<Problem>) {
    let mismatch = || Problem::HostnameMismatch { host: host.to_owned() };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = match bare.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => match ServerName::try_from(bare.to_owned()) {
            Ok(n) => n,
            Err(_) => return problems.push(mismatch()),
        },
    };
    if leaf.verify_is_valid_for_subject_name(&name).is_err() {
        return problems.push(mismatch());
    }
    if let ServerName::DnsName(dns) = &name {
        let wanted = dns.as_ref().trim_end_matches('.').to_ascii_lowercase();
        let exact =
            facts.dns_names.iter().any(|n| n.trim_end_matches('.').eq_ignore_ascii_case(&wanted));
        let wildcard_ok = facts.dns_names.iter().any(|n| {
            n.strip_prefix("*.").is_some_and(|base| {
                base.contains('.')
                    && !public_suffix(base)
                    && wanted.split_once('.').is_some_and(|(_, rest)| {
                        rest.eq_ignore_ascii_case(base.trim_end_matches('.'))
                    })
            })
        });
        if !exact && !wildcard_ok {
            problems.push(mismatch());
        }
    }
}

/// Whether `name` is itself a public suffix (`com`, `co.uk`, `github.io`: the ICANN and
/// private sections of the Public Suffix List as the `psl` crate's version carries it).
fn public_suffix(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    psl::suffix(name.as_bytes()).is_some_and(|s| s.is_known() && s.as_bytes().len() == name.len())
}

fn check_pins(host: &str, certs: &[CertificateReport], pins: &[Pin]) -> Option<Problem> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let applies = |p: &Pin| {
        let pinned = p.host.trim_end_matches('.').to_ascii_lowercase();
        host == pinned || (p.include_subdomains && host.ends_with(&format!(".{pinned}")))
    };
    for pin in pins.iter().filter(|p| applies(p)) {
        let any = certs
            .iter()
            .any(|c| pin.spki_sha256.iter().any(|s| s.eq_ignore_ascii_case(&c.facts.spki_sha256)));
        if !any {
            return Some(Problem::PinMismatch);
        }
    }
    None
}

/// Puts webpki's refusal on the certificate it concerns.
fn attribute(certs: &mut [CertificateReport], e: &webpki::Error) {
    use webpki::Error as E;
    let last = certs.len() - 1;
    match e {
        E::UnknownIssuer => {
            let top = &certs[last].facts;
            let problem = if top.self_issued {
                Problem::UntrustedRoot
            } else {
                Problem::MissingIssuer { issuer: top.issuer.clone() }
            };
            certs[last].problems.push(problem);
        }
        E::CertExpired { .. } | E::CertNotValidYet { .. } => {} // ours, per certificate
        E::UnknownRevocationStatus => certs[0].problems.push(Problem::RevocationUnknown {
            why: "no CRL covers a certificate of the chain, and revocation is hard-fail".into(),
        }),
        E::RequiredEkuNotFoundContext(_) => {} // ours
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_)
            if certs.iter().any(|c| !c.problems.is_empty()) => {} // a broken algorithm or weak key, said already
        other => {
            let why = format!("{other:?}");
            let at = if matches!(other, E::CaUsedAsEndEntity | E::BadDer | E::BadDerTime) {
                0
            } else {
                last.min(1)
            };
            certs[at].problems.push(Problem::Invalid { why });
        }
    }
}

/// Leaf first, then each certificate's issuer among the presented ones (by name), then the
/// matching anchor, if any.
fn issuer_order(presented: &[Facts], anchors: &[Anchor]) -> (Vec<usize>, Option<usize>) {
    let mut order = vec![0];
    loop {
        let current = &presented[*order.last().unwrap_or(&0)];
        if current.self_issued {
            break;
        }
        match presented
            .iter()
            .enumerate()
            .position(|(i, f)| !order.contains(&i) && f.subject_der == current.issuer_der)
        {
            Some(next) => order.push(next),
            None => break,
        }
    }
    let top = &presented[*order.last().unwrap_or(&0)];
    let anchor = anchors.iter().position(|a| {
        Facts::parse(0, &a.der).is_ok_and(|f| {
            f.subject_der == top.issuer_der
                && !(top.self_issued && f.spki_sha256 != top.spki_sha256)
        })
    });
    (order, anchor)
}

/// A Name's content without its SEQUENCE header (webpki compares names that way).
fn strip_sequence(der: &[u8]) -> &[u8] {
    match der {
        [0x30, len, rest @ ..] if *len < 0x80 => rest,
        [0x30, 0x81, _, rest @ ..] => rest,
        [0x30, 0x82, _, _, rest @ ..] => rest,
        other => other,
    }
}

fn same_anchor(a: &TrustAnchor<'_>, b: &TrustAnchor<'_>) -> bool {
    a.subject.as_ref() == b.subject.as_ref()
        && a.subject_public_key_info.as_ref() == b.subject_public_key_info.as_ref()
}

fn is_temporal(e: &webpki::Error) -> bool {
    matches!(e, webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. })
}

/// EKU is the policy layer's to judge (per certificate, by policy), so webpki accepts any.
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, _: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}
