//! `nw-tunnel`: packet tunnel providers, the way Network Extension hosts them.
//!
//! - A **provider** is its own unprivileged process, in any language, that moves the tunnel's
//!   packets and asks for network settings; [`protocol`] is the contract it speaks with the
//!   host (one JSON message per line over a Unix socket, descriptors by SCM_RIGHTS), and
//!   [`provider`] is the Rust SDK: implement [`Provider`](provider::Provider), call
//!   [`run`](provider::run).
//! - The **host** ([`host::run`]) is privileged: it makes the TUN device and the policy rules,
//!   starts the provider, applies the [`Settings`] it asks for — checked first, changed by
//!   difference (added before removed), read back from the kernel, rolled back on failure —
//!   and tears everything down on any stop, with a [`StopReason`].
//!
//! # Routing
//!
//! Each tunnel has a routing table of its own (`0x6e770000 + interface index`): included routes
//! point into the TUN device; excluded routes and the tunnel's remote address are "throw"
//! routes, which send the lookup on to the main table. Two rules per family, before the main
//! table's: sockets marked with the table's number (the ones [`provider::Tunnel::open_socket`]
//! hands out) look up the main table; everything else looks up the tunnel's table first. So an
//! included route wins over any main-table route, an excluded one never enters the tunnel, and
//! the provider's own traffic to its server never loops into the tunnel.
//!
//! # The kill switch and the local network
//!
//! With [`HostOptions::kill_switch`] (Apple's `includeAllNetworks`), an nftables table of the
//! tunnel's own rejects every packet that does not go into the tunnel — but loopback, the
//! provider's bypass sockets, the tunnel's remote address and IPv6 neighbour discovery — from
//! before the provider starts until a stop the host's caller asked for. A provider that fails
//! for good, or a host that is killed, leaves it in force: nothing leaks until
//! [`host::remove_leftover`] (`nw tunnel down`) removes it. With
//! [`HostOptions::exclude_local`] (`excludeLocalNetworks`) the local network stays outside the
//! tunnel and passes the kill switch, following the path service as it changes.
//!
//! # DNS
//!
//! Where systemd-resolved is the system's resolver (resolv.conf names its stub, 127.0.0.53,
//! and it is on the system bus), settings with DNS servers become the tunnel interface's
//! per-link DNS there, over D-Bus: each match domain a routing domain (`~corp.example`), or
//! `~.` and the link a default route when every name goes to the tunnel; resolved then asks
//! the tunnel's servers from sockets bound to the interface. Nothing on disk changes, the link
//! is reverted when the settings go away, and a device that disappears takes its settings
//! with it.
//!
//! Otherwise they start a forwarder on 127.0.78.53 that resolv.conf points at while they are
//! in force: names under the match domains go to the tunnel's servers, from sockets bound to
//! the tunnel's interface; the rest to the servers resolv.conf named before. The original
//! resolv.conf is written back when the DNS settings go away or the tunnel stops.
//!
//! # Supervision
//!
//! A provider that exits or dies unasked is started again, after a backoff, up to
//! [`HostOptions::max_restarts`] times in a row; what was applied stays in force meanwhile.
#![warn(missing_docs)]

pub mod configuration;
pub mod host;
pub mod protocol;
pub mod provider;
pub mod settings;

mod dbus;
mod dns;
mod fdpass;
mod resolved;
mod sys;

pub use host::{Ended, Event, HostError, HostOptions, KernelState, Leftover, differences};
pub use protocol::StopReason;
pub use resolved::LinkDns;
pub use settings::{Dns, Prefix, Settings, SettingsError};
