//! The lab, exercised for real in namespaces (root). Each test fails with the lab's message
//! when it cannot set up; none passes by skipping. Serialized: see `.config/nextest.toml`.

#![allow(clippy::disallowed_methods, reason = "lab tests time real packets")]
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "tests: a panic is the failure report"
)]

mod netns;
mod nginx;
