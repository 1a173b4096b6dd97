//! The one place nwkit chooses its crypto provider: aws-lc-rs (rustls's default; post-quantum
//! key exchange preferred). Everything that needs a provider asks here, so ring never enters
//! the tree (`scripts/test` checks).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The provider every TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
