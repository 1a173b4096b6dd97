//! Client identities for mutual TLS: several certificate chains with their keys, one chosen per
//! handshake from the certificate authorities the server says it accepts (its
//! `certificate_authorities` list), and that list kept for the caller to see.
//!
//! The client's own trust store plays no part: the server judges the client's chain. With no
//! identity the server accepts, none is sent and the handshake goes on to the server's decision.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Name};

use crate::TrustError;
use crate::cert::Facts;

/// Identities to choose from, and what the last server asked for.
pub struct Identities {
    keys: Vec<(Arc<CertifiedKey>, Vec<Vec<u8>>, String)>,
    asked: Mutex<Option<Request>>,
}

/// What a server asked of the client, and what was sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Request {
    /// The acceptable CAs the server named (RFC 4514 strings), possibly none.
    pub acceptable_cas: Vec<String>,
    /// The name of the identity sent, if any.
    pub sent: Option<String>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|(_, _, n)| n.as_str()).collect();
        f.debug_struct("Identities").field("names", &names).finish_non_exhaustive()
    }
}

impl Identities {
    /// None yet: add them with `add`.
    pub fn new() -> Self {
        Self { keys: Vec::new(), asked: Mutex::new(None) }
    }

    /// Adds an identity: its chain (leaf first, then intermediates) and key, loaded with
    /// `provider`. The key must match the leaf.
    pub fn add(
        &mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        provider: &CryptoProvider,
    ) -> Result<(), TrustError> {
        let facts: Vec<Facts> =
            chain.iter().enumerate().map(|(i, c)| Facts::parse(i, c)).collect::<Result<_, _>>()?;
        let name = facts.first().map(|f| f.name.clone()).ok_or(TrustError::EmptyChain)?;
        let certified = CertifiedKey::from_der(chain, key, provider)
            .map_err(|e| TrustError::Issue(format!("the key does not fit the certificate: {e}")))?;
        // The names an acceptable-CA list may use for this chain: every issuer along it.
        let issuers = facts.iter().map(|f| f.issuer_der.clone()).collect();
        self.keys.push((Arc::new(certified), issuers, name));
        Ok(())
    }

    /// What the most recent server asked for, if it asked.
    pub fn last_request(&self) -> Option<Request> {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Default for Identities {
    fn default() -> Self {
        Self::new()
    }
}

impl ResolvesClientCert for Identities {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let usable = |k: &CertifiedKey| k.key.choose_scheme(sigschemes).is_some();
        let accepted = |issuers: &[Vec<u8>]| {
            root_hint_subjects.is_empty()
                || issuers.iter().any(|i| root_hint_subjects.contains(&i.as_slice()))
        };
        let chosen = self.keys.iter().find(|(k, issuers, _)| usable(k) && accepted(issuers));
        let acceptable_cas = root_hint_subjects
            .iter()
            .map(|dn| {
                X509Name::from_der(dn)
                    .map_or_else(|_| "(unreadable name)".to_owned(), |(_, n)| n.to_string())
            })
            .collect();
        *self.asked.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Request { acceptable_cas, sent: chosen.map(|(_, _, n)| n.clone()) });
        chosen.map(|(k, _, _)| k.clone())
    }

    fn has_certs(&self) -> bool {
        !self.keys.is_empty()
    }
}
