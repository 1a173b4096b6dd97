//! Where anchors and chains come from: the system store (ca-certificates on Linux, through
//! rustls-native-certs) and PEM files.

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{Anchor, AnchorClass, TrustError};

/// The operating system's anchors, as [`AnchorClass::System`]. Unreadable entries are
/// skipped; a store with none at all is an error.
pub fn system() -> Result<Vec<Anchor>, TrustError> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        let why = found
            .errors
            .first()
            .map_or_else(|| "the store is empty".to_owned(), ToString::to_string);
        return Err(TrustError::SystemAnchors(format!(
            "{why}; install ca-certificates, or give anchors explicitly"
        )));
    }
    Ok(found.certs.into_iter().map(|der| Anchor { der, class: AnchorClass::System }).collect())
}

/// Every certificate in a PEM file, in file order.
pub fn load_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let file = |why: String| TrustError::File { path: path.display().to_string(), why };
    let bytes = std::fs::read(path).map_err(|e| file(format!("cannot read it: {e}")))?;
    let certs = parse_pem_certs(&bytes).map_err(|e| file(e.to_string()))?;
    if certs.is_empty() {
        return Err(file("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

/// Every certificate in PEM text.
pub fn parse_pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::BadCertificate { index: 0, why: format!("bad PEM: {e}") })
}
