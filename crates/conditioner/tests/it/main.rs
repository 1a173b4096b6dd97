//! The conditioner for real: two lab namespaces joined by a conditioned TUN link. Needs root
//! (it fails, saying so, without); runs serialized with the other namespace tests.

#![allow(clippy::disallowed_methods, reason = "tests time real packets")]
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report, stderr the figures"
)]

mod netns;
