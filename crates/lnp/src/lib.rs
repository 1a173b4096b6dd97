//! `nw-lnp`: local network privacy — an app needs permission to reach the local network (the
//! on-link subnets, link-local addresses, multicast, broadcast, `.local` names).
//!
//! - [`classify`](classify::classify) says whether a destination is the local network, from
//!   one path reading, with the rule written down for the cases people argue about.
//! - [`identity`] names an app by what survives its updates (Flatpak or snap id, systemd unit,
//!   script, executable path), judging each process as what it runs, never as its parent.
//! - [`store`] holds the decisions (a TOML file, safe under concurrent writers) and the
//!   administrator's policy, including one setting that turns the check off for the host.
//! - [`gate::permit`] is what nw-connection and the filter host ask before a local
//!   destination; [`log`] keeps the denials.
//!
//! ```
//! use nw_lnp::classify::classify_name;
//! assert!(classify_name("printer.local").is_local());
//! ```
#![warn(missing_docs)]

pub mod classify;
pub mod gate;
pub mod identity;
pub mod log;
#[cfg(test)]
mod scratch;
pub mod store;

pub use classify::{Locality, classify, classify_name, on_link_prefixes};
pub use gate::{Direction, Verdict, permit};
pub use identity::Identified;
pub use store::{Access, Paths, Policy, StoreError};
