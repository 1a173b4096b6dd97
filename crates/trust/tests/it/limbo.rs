//! The x509-limbo suite (`tests/data/x509-limbo/limbo.json`, Apache-2.0, see its README) against
//! our evaluator, and against bare rustls-webpki in the same run.
//!
//! Server cases run under the TLS server policy with the expected peer name, client cases
//! under the TLS client policy; `trusted_certs` are custom anchors; CT is off; the verify time
//! is the case's, or 2026-07-01 (just after the vectors were generated) when it has none.
//! Every case where we differ from the expected result needs an entry in
//! `tests/data/limbo-exceptions.txt` with a reason; an entry whose case no longer differs
//! fails the run, so the file stays true.

use std::collections::BTreeMap;

use nw_trust::evaluate;
use nw_trust::time::parse_rfc3339;
use nw_trust::{Anchor, AnchorClass, CtRequirement, Options, Policy};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

const LIMBO: &str = include_str!("../data/x509-limbo/limbo.json");
const EXCEPTIONS: &str = include_str!("../data/limbo-exceptions.txt");

struct Case {
    id: String,
    server: bool,
    expect_success: bool,
    host: Option<String>,
    at: i64,
    peer: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
    trusted: Vec<CertificateDer<'static>>,
    max_depth: Option<usize>,
    crls: Vec<Vec<u8>>,
}

fn pem(text: &str) -> CertificateDer<'static> {
    let mut certs = nw_trust::parse_pem_certs(text.as_bytes()).unwrap();
    assert_eq!(certs.len(), 1, "one certificate per PEM entry");
    certs.remove(0)
}

fn cases() -> Vec<Case> {
    let limbo: Value = serde_json::from_str(LIMBO).unwrap();
    let fallback = parse_rfc3339("2026-07-01T00:00:00Z").unwrap();
    let pems = |v: &Value| -> Vec<CertificateDer<'static>> {
        v.as_array().unwrap().iter().map(|p| pem(p.as_str().unwrap())).collect()
    };
    limbo["testcases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Case {
            id: t["id"].as_str().unwrap().to_owned(),
            server: t["validation_kind"] == "SERVER",
            expect_success: t["expected_result"] == "SUCCESS",
            host: t["expected_peer_name"]["value"].as_str().map(str::to_owned),
            at: t["validation_time"].as_str().map_or(fallback, |s| parse_rfc3339(s).unwrap()),
            peer: pem(t["peer_certificate"].as_str().unwrap()),
            intermediates: pems(&t["untrusted_intermediates"]),
            trusted: pems(&t["trusted_certs"]),
            max_depth: t["max_chain_depth"].as_u64().and_then(|d| usize::try_from(d).ok()),
            crls: t["crls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    use rustls_pki_types::pem::PemObject;
                    rustls_pki_types::CertificateRevocationListDer::from_pem_slice(
                        p.as_str().unwrap().as_bytes(),
                    )
                    .unwrap()
                    .as_ref()
                    .to_vec()
                })
                .collect(),
        })
        .collect()
}

/// What our evaluator said about a case, certificate by certificate.
fn report(case: &Case) -> Vec<String> {
    match evaluation(case) {
        Ok(e) => e
            .certificates
            .iter()
            .flat_map(|c| {
                std::iter::once(c.to_string())
                    .chain(c.problems.iter().map(|p| format!("    {}", p.detail())))
            })
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}

/// Ours: the whole evaluator.
fn ours(case: &Case) -> Result<bool, String> {
    evaluation(case).map(|e| e.trusted()).map_err(|e| e.to_string())
}

fn evaluation(case: &Case) -> Result<nw_trust::Evaluation, nw_trust::TrustError> {
    let options = Options {
        policy: if case.server { Policy::Server } else { Policy::Client },
        anchors: case
            .trusted
            .iter()
            .map(|der| Anchor { der: der.clone(), class: AnchorClass::Custom })
            .collect(),
        ct: CtRequirement::Off,
        max_intermediates: case.max_depth,
        crls: case.crls.clone(),
        ..Options::default()
    };
    let mut chain = vec![case.peer.clone()];
    chain.extend(case.intermediates.iter().cloned());
    let host = if case.server { case.host.as_deref() } else { None };
    evaluate(&chain, host, case.at, &options)
}

/// Bare rustls-webpki, as rustls would call it.
fn bare_webpki(case: &Case) -> bool {
    let Ok(leaf) = webpki::EndEntityCert::try_from(&case.peer) else { return false };
    let anchors: Vec<_> =
        case.trusted.iter().filter_map(|c| webpki::anchor_from_trusted_cert(c).ok()).collect();
    let usage =
        if case.server { webpki::KeyUsage::server_auth() } else { webpki::KeyUsage::client_auth() };
    let time =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(case.at.max(0).unsigned_abs()));
    let path = leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &case.intermediates,
        time,
        usage,
        None,
        None,
    );
    if path.is_err() {
        return false;
    }
    match (case.server, &case.host) {
        (true, Some(host)) => ServerName::try_from(host.as_str())
            .is_ok_and(|name| leaf.verify_is_valid_for_subject_name(&name).is_ok()),
        _ => true,
    }
}

fn exceptions() -> BTreeMap<String, String> {
    EXCEPTIONS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (id, why) =
                l.split_once(": ").unwrap_or_else(|| panic!("`ID: reason` expected: {l}"));
            assert!(!why.trim().is_empty(), "{id}: an exception needs a reason");
            (id.trim().to_owned(), why.trim().to_owned())
        })
        .collect()
}

#[test]
fn x509_limbo_every_divergence_is_documented() {
    let cases = cases();
    assert_eq!(cases.len(), 208, "the whole suite");
    let exceptions = exceptions();
    let (mut ours_diverge, mut webpki_diverge, mut accepted_bad) = (Vec::new(), 0, Vec::new());
    for case in &cases {
        let got = ours(case).unwrap_or(false);
        if got != case.expect_success {
            ours_diverge.push(case.id.clone());
            if got {
                accepted_bad.push(case.id.clone());
            }
        }
        if bare_webpki(case) != case.expect_success {
            webpki_diverge += 1;
        }
    }
    eprintln!(
        "x509-limbo: {} cases; divergences: nw-trust {}, bare rustls-webpki {}; must-reject accepted by nw-trust: {}",
        cases.len(),
        ours_diverge.len(),
        webpki_diverge,
        accepted_bad.len()
    );
    let undocumented: Vec<&String> =
        ours_diverge.iter().filter(|id| !exceptions.contains_key(*id)).collect();
    for case in cases.iter().filter(|c| undocumented.contains(&&c.id)) {
        let expected = if case.expect_success { "success" } else { "failure" };
        eprintln!("{} (expected {expected}):", case.id);
        for line in report(case) {
            eprintln!("    {line}");
        }
    }
    let stale: Vec<&String> = exceptions.keys().filter(|id| !ours_diverge.contains(id)).collect();
    assert!(undocumented.is_empty(), "divergences without an exceptions entry: {undocumented:#?}");
    assert!(stale.is_empty(), "exceptions that no longer diverge (remove them): {stale:#?}");
    assert!(ours_diverge.len() < webpki_diverge, "fewer divergences than bare webpki");
}
