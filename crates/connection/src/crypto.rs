//! The one place nwkit chooses its crypto provider: aws-lc-rs (rustls's default; post-quantum
//! key exchange preferred). Everything that needs a provider asks here, so ring never enters
//! the tree (`scripts/test` checks).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The provider every TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A streaming SHA-256 from the same provider (through a TLS 1.3 suite's hash, which is how
/// rustls exposes it).
pub fn sha256() -> Option<Box<dyn rustls::crypto::hash::Context>> {
    let suite = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256.tls13()?;
    Some(suite.common.hash_provider.start())
}
