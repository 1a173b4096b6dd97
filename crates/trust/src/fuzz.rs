//! Entry points for the fuzz targets (`fuzz/`, cargo-fuzz) and for replaying their corpora
//! as ordinary tests. Each takes arbitrary bytes and must return without panicking: bad input
//! is a typed error inside.

use rustls_pki_types::CertificateDer;

use crate::evaluate::evaluate;
use crate::{Anchor, AnchorClass, Options};

/// Arbitrary bytes as a certificate: parsed, then evaluated as a chain of one (and as the
/// anchor of itself, so the policy layer sees it whole).
pub fn certificate(data: &[u8]) {
    let der = CertificateDer::from(data.to_vec());
    let _ = crate::cert::Facts::parse(0, &der);
    let options = Options {
        anchors: vec![Anchor { der: der.clone(), class: AnchorClass::Custom }],
        ..Options::default()
    };
    let _ = evaluate(std::slice::from_ref(&der), Some("a.example"), 1_700_000_000, &options);
    let _ = evaluate(&[der], Some("192.0.2.1"), 0, &Options::default());
}

/// Arbitrary bytes as a PEM file of certificates.
pub fn pem(data: &[u8]) {
    if let Ok(certs) = crate::anchors::parse_pem_certs(data) {
        for (i, c) in certs.iter().enumerate() {
            let _ = crate::cert::Facts::parse(i, c);
        }
    }
}

/// Arbitrary bytes as an RFC 3339 time (`nw trust --at`).
pub fn time(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(secs) = crate::time::parse_rfc3339(text)
    {
        let _ = crate::time::rfc3339(secs);
    }
}

/// Arbitrary bytes as a CRL given to an evaluation of a fixed, valid chain.
pub fn crl(data: &[u8]) {
    let _ = crate::profile::check_crls(&[data.to_vec()], &[]);
    let Some((chain, anchor)) = fixed_chain() else { return };
    let options = Options {
        anchors: vec![Anchor { der: anchor, class: AnchorClass::Custom }],
        crls: vec![data.to_vec()],
        ..Options::default()
    };
    let _ = evaluate(&chain, Some("a.example"), 1_800_000_000, &options);
}

/// A leaf and its root, made once per process.
fn fixed_chain() -> Option<(Vec<CertificateDer<'static>>, CertificateDer<'static>)> {
    use std::sync::OnceLock;
    static CHAIN: OnceLock<Option<(Vec<CertificateDer<'static>>, CertificateDer<'static>)>> =
        OnceLock::new();
    CHAIN
        .get_or_init(|| {
            let ca = crate::ca::TestCa::root("Fuzz Root", 1_700_000_000, 3650).ok()?;
            let profile =
                crate::ca::Profile { not_before: Some(1_700_000_000), ..Default::default() };
            let issued = ca.issue(&["a.example"], &profile).ok()?;
            Some((issued.chain[..1].to_vec(), ca.root_der()))
        })
        .clone()
}

/// Arbitrary bytes as a TLS-encoded SCT list; what parses re-encodes to the same bytes.
pub fn sct_list(data: &[u8]) {
    if let Ok(scts) = crate::ct::parse_sct_list(data) {
        let again = crate::ct::parse_sct_list(&crate::ct::encode_sct_list(&scts));
        assert_eq!(again.as_ref(), Ok(&scts), "an SCT list that does not round-trip");
    }
    let _ = crate::ct::embedded(data);
    let _ = crate::ct::precert_tbs(data);
}

/// Arbitrary bytes as log-list JSON.
pub fn log_list(data: &[u8]) {
    if let Ok(list) = crate::ct::LogList::from_json(data) {
        let _ = list.age_days(0);
    }
}

/// Arbitrary bytes as a stapled OCSP response about a fixed, valid leaf.
pub fn ocsp(data: &[u8]) {
    let Some((chain, anchor)) = fixed_chain() else { return };
    let _ = crate::ocsp::check(data, chain[0].as_ref(), anchor.as_ref(), 1_800_000_000);
}
