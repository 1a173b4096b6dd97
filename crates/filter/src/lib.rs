//! `nw-filter`: content filters, the way Network Extension hosts them.
//!
//! - A **provider** is its own unprivileged process, in any language, that is told about each
//!   new flow — the 5-tuple, the direction, the process behind it (pid, executable, command
//!   line, uid, cgroup and a stable identity, [`nw_lnp::identity`]) — and answers allow, drop,
//!   or "show me its first bytes" ([`FlowVerdict::FilterData`]), then decides on them
//!   ([`DataVerdict`]). [`protocol`] is the contract; [`provider`] is the Rust SDK.
//! - The **host** ([`host::run`]) is privileged: an NFQUEUE gets each new flow's first packets
//!   only (a conntrack mark carries the final verdict, so the rest of an allowed flow never
//!   leaves the kernel); the [`rules`] decide, or ask the provider; whenever no provider
//!   answers, the [`FailPolicy`] does. A peeked flow's later packets are queued too, their bytes
//!   held and put in order until the provider's data verdict; [`host_name`] reads the name a
//!   flow's first bytes give (a TLS server name, an HTTP Host), as the host and the SDK do.
//! - [`list`] names every packet filter on the host, ours or not.
#![warn(missing_docs)]

mod engine;
pub mod flow;
pub mod host;
pub mod list;
mod names;
mod packet;
mod peek;
pub mod protocol;
pub mod provider;
mod recent;
pub mod rules;
mod sys;

pub use engine::{Decision, FailPolicy, Stats};
pub use flow::{
    Data, DataVerdict, Direction, Flow, FlowKey, FlowVerdict, MAX_PEEK, Process, Report, Transport,
};
pub use host::{By, Ended, Event, HostError, HostOptions, ProviderOptions};
pub use names::{host_name, http_host, server_name};
pub use rules::{Action, Rule, Rules, RulesError};

/// The kernel's NFQUEUE interface, for other programs that queue packets (the lab's delayer).
#[cfg(target_os = "linux")]
pub use sys::nfqueue;
