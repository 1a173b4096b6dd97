//! The `nw` binary, exercised for real: inside lab namespaces (root) and on this host.
//!
//! Tests under `netns::` need root and iproute2; without them they fail with the lab's message
//! rather than pass by skipping. They run serialized (see `.config/nextest.toml`).

#![allow(clippy::disallowed_methods, reason = "integration tests time real kernel events")]
#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "test helpers: a panic is the failure report, stderr the figures"
)]

mod cli;
mod get;
mod netns;
mod netns_condition;
mod netns_connect;
mod netns_filter;
mod netns_lnp;
mod netns_tunnel;
mod netns_wireguard;
mod support;
mod trust;
