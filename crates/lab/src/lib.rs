//! `nw-lab`: a network lab on one Linux machine, for tests and for `nw condition`.
//!
//! A [`Lab`] makes network namespaces with unique names, joins them with veth links, gives them
//! dual-stack addresses from the documentation prefixes, runs commands inside them, and injects
//! faults. Every object is a guard: dropping it removes what it made, on every path, panics
//! included. Every wait is bounded.
//!
//! `setns()` is per thread, and sysfs, hosts and resolv.conf are only per-namespace for
//! processes started by `ip netns exec`; so the robust way to run code under test inside a
//! namespace is as a child process ([`Namespace::command`]).
//!
//! Everything here needs root and `iproute2`; [`Lab::new`] says so plainly when either is
//! missing, so a test fails loudly instead of passing by skipping.
//!
//! ```no_run
//! # fn demo() -> Result<(), nw_lab::LabError> {
//! let lab = nw_lab::Lab::new()?;
//! let pair = lab.pair()?; // "cli" and "srv", 198.51.100.1/.2 and 2001:db8:1::1/::2
//! pair.cli.run(["ip", "addr"])?;
//! pair.srv.set_link(&pair.srv_dev, false)?; // the client's link loses its carrier
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod counters;
pub mod dns;
mod error;
pub mod http;
mod netns;
pub mod nfqueue;
pub mod nginx;
pub mod ngtcp2;
pub mod ocsp;
mod process;
pub mod proxies;
pub mod resolved;
mod scratch;
pub mod stats;
mod timing;

pub use counters::TcpCounters;
pub use error::LabError;
pub use netns::{Fault, Lab, Namespace, Pair, Proto, Veth, in_namespace, require_tool};
pub use process::Child;
pub use scratch::Scratch;
pub use timing::one_of_three;

/// Documentation prefixes the lab uses (RFC 5737, RFC 3849). Nothing routes them anywhere.
pub mod addr {
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// The client's IPv4 address.
    pub const CLI_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    /// The server's IPv4 address.
    pub const SRV_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    /// The client's IPv6 address.
    pub const CLI_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    /// The server's IPv6 address.
    pub const SRV_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
}
