//! `nw-connection`: the pure core of nwkit's connections.
//!
//! - [`id`]: `C7` / `C7.2` identifiers.
//! - [`addrsel`]: RFC 6724 destination sorting.
//! - [`happy_eyeballs`]: the RFC 8305 race as a machine in virtual time.
//! - [`framer`]: length-prefixed and delimited message codecs for stream connections.
//!
//! Sockets, the resolver front, TLS and QUIC drive these machines from a tokio driver; they
//! arrive in later steps.

pub mod addrsel;
pub mod happy_eyeballs;
pub mod id;
