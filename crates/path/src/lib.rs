//! `nw-path`: knowing the network path, the way Network framework's path monitor does.
//!
//! # The model
//!
//! - A [`Snapshot`] is one fresh reading of every interface (with all of its IPv4 and IPv6
//!   addresses under its one name), the main routing table and the resolver's name servers.
//!   Nothing is cached: each call reads the kernel again.
//! - [`classify`](classify::classify) decides what an interface *is* (wired, wifi, cellular,
//!   loopback, other) from kernel facts, never from its name.
//! - [`evaluate`](evaluate()) turns a snapshot and the caller's [`Conditions`] into a [`Path`]: satisfied,
//!   unsatisfied with a typed [`Reason`], or requiring a connection; the usable interfaces in
//!   preference order; gateways; IPv4/IPv6/DNS support; expensive and constrained, from the
//!   sources in [`cost`], or "unknown" when nothing says.
//! - The [`Monitor`](monitor::Monitor) machine debounces kernel notifications
//!   ([`debounce`]): the first change after a quiet period is reported at once, a burst merges
//!   into one trailing update that carries the final state, and an overflow resynchronises.
//! - [`evaluate_for`] is the path to one destination: the route the main table picks for it
//!   among the allowed interfaces, so an on-link destination is reachable with no default
//!   route, and one nothing routes to is unsatisfied with [`Reason::NoRouteToDestination`].
//! - [`PathService`] is the process's one rtnetlink subscription, read on a thread of its own
//!   (dumps, sysfs and `nmcli` never run on an async runtime): a cloneable handle whose
//!   [`Reading`]s everyone subscribes to and evaluates for their own conditions and
//!   destinations. [`PathMonitor`] is a subscription that reports path updates.
//!
//! The machines are pure (`now` is an argument) and tested in virtual time; the driver and
//! the `sys` layer are tested in network namespaces.
//!
//! # Driving it
//!
//! ```no_run
//! use nw_path::{MonitorOptions, PathMonitor, Status};
//!
//! # async fn demo() -> Result<(), nw_path::PathError> {
//! let mut monitor = PathMonitor::start(MonitorOptions::default())?;
//! while let Some(update) = monitor.next().await {
//!     let path = update?.path;
//!     match path.status {
//!         Status::Satisfied => println!("ready via {:?}", path.primary().map(|p| &p.interface.name)),
//!         _ => println!("waiting: {:?}", path.reason.map(|r| r.explain())),
//!     }
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod classify;
pub mod cost;
pub mod debounce;
mod driver;
pub mod evaluate;
pub mod interface;
pub mod monitor;
pub mod prefix;
mod service;
mod sys;

pub use driver::{MonitorOptions, PathMonitor, current, snapshot};
pub use evaluate::{
    Conditions, Path, PathInterface, Reason, Status, UnavailableInterface, Unusable, evaluate,
    evaluate_for,
};
pub use interface::{Address, Interface, InterfaceType, LinkType, Route, Snapshot};
pub use prefix::{Prefix, PrefixError};
pub use service::{PathService, Reading, Readings, ServiceOptions};

/// Why the path could not be read or watched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The kernel's rtnetlink interface failed.
    #[error(
        "could not read the network configuration over rtnetlink: {0}; is this a Linux host or container with netlink available?"
    )]
    Netlink(#[source] std::io::Error),
    /// Every attempt at a dump was interrupted by changes.
    #[error(
        "the network configuration kept changing while it was read ({attempts} attempts); try again when it settles"
    )]
    Unstable {
        /// How many dumps were tried.
        attempts: u32,
    },
    /// The cost configuration could not be used.
    #[error(
        "{path}: {why}; fix the file (keys: expensive, constrained — lists of interface names) or remove it"
    )]
    Config {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// No backend for this platform yet.
    #[error("path monitoring is not supported on this platform yet (Linux only for now)")]
    Unsupported,
}
