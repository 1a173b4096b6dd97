//! The conditioner for real: two lab namespaces joined by a conditioned TUN link (needs root,
//! and fails, saying so, without), and the loopback proxy (no root). Both run serialized with
//! the other timed scenarios.

#![allow(clippy::disallowed_methods, reason = "tests time real packets")]
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report, stderr the figures"
)]

mod netns;
mod proxy;
