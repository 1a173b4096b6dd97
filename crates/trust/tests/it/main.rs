//! nw-trust against certificates made at test time (rcgen, and openssl for what rcgen will not
//! make: RSA-1024, SHA-1), evaluated at fixed times.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report"
)]

mod ats;
mod ct;
mod fuzz_corpus;
mod limbo;
mod mtls;
mod ocsp;
mod real_world;
mod revocation;
mod rules;
