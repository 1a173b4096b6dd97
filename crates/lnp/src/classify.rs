//! Is a destination the local network? Pure: a destination and one path reading in, a
//! [`Locality`] with the reason out.
//!
//! # The rule
//!
//! A destination is **local** when reaching it needs no router, or reaches many hosts at once:
//!
//! - a **multicast** address (`224.0.0.0/4`, `ff00::/8`), whatever its scope;
//! - a **broadcast** address: `255.255.255.255`, or the directed broadcast of one of this
//!   host's IPv4 subnets;
//! - a **link-local** address (`169.254.0.0/16`, `fe80::/10`);
//! - an address the main table routes **on-link**: the chosen route (longest prefix, then
//!   lowest metric) has no gateway, is not a default route, and leaves through an interface
//!   with a link layer of its own (Ethernet, Wi-Fi, a bridge, veth);
//! - a **`.local` name** (multicast DNS, RFC 6762), before any address is known.
//!
//! It is **not local** when:
//!
//! - it is **loopback** (`127.0.0.0/8`, `::1`) or one of **this host's own addresses**: that
//!   is this machine, not the network;
//! - the chosen route has a **gateway**: a private (RFC 1918) or unique-local (`fc00::/7`)
//!   address reached through a router is somebody else's network, not this link;
//! - the chosen route leaves through a **point-to-point or tunnel** interface (no link layer:
//!   tun, WireGuard, PPP), or is a device default route (`default dev tun0`): that is a
//!   remote network the tunnel carries;
//! - **nothing routes** to it (the connection fails on its own, for that reason).
//!
//! Reading the routing or neighbour tables is not gated: only traffic is.

use std::net::IpAddr;

use nw_path::{LinkType, Snapshot};
use serde::Serialize;

/// Whether a destination is the local network, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "locality", rename_all = "snake_case")]
pub enum Locality {
    /// The local network: the permission applies.
    Local {
        /// Why.
        #[serde(flatten)]
        why: LocalWhy,
    },
    /// Not the local network: the permission does not apply.
    NotLocal {
        /// Why.
        #[serde(flatten)]
        why: NotLocalWhy,
    },
}

impl Locality {
    /// Whether the permission applies.
    pub fn is_local(&self) -> bool {
        matches!(self, Self::Local { .. })
    }
}

/// Why a destination is local.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum LocalWhy {
    /// A multicast group.
    Multicast,
    /// A broadcast address.
    Broadcast,
    /// A link-local address.
    LinkLocal,
    /// The main table routes it on-link, through this interface.
    OnLink {
        /// The interface's name.
        interface: String,
        /// The on-link prefix that covers it.
        prefix: String,
    },
    /// A multicast DNS name (`.local`).
    MulticastDnsName,
}

/// Why a destination is not local.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum NotLocalWhy {
    /// Loopback.
    Loopback,
    /// One of this host's own addresses (or the unspecified address, which means this host).
    ThisHost,
    /// Reached through a router.
    Routed {
        /// The route's gateway.
        gateway: IpAddr,
    },
    /// Reached through a point-to-point or tunnel interface, or a device default route.
    Tunnel {
        /// The interface's name.
        interface: String,
    },
    /// No route covers it.
    Unrouted,
    /// A name that is not a multicast DNS name: its addresses decide.
    Name,
}

impl std::fmt::Display for Locality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local { why } => match why {
                LocalWhy::Multicast => f.write_str("a multicast group"),
                LocalWhy::Broadcast => f.write_str("a broadcast address"),
                LocalWhy::LinkLocal => f.write_str("a link-local address"),
                LocalWhy::OnLink { interface, prefix } => {
                    write!(f, "on the local network {prefix} on {interface}")
                }
                LocalWhy::MulticastDnsName => f.write_str("a multicast DNS (.local) name"),
            },
            Self::NotLocal { why } => match why {
                NotLocalWhy::Loopback => f.write_str("loopback"),
                NotLocalWhy::ThisHost => f.write_str("this host"),
                NotLocalWhy::Routed { gateway } => write!(f, "routed through {gateway}"),
                NotLocalWhy::Tunnel { interface } => write!(f, "through the tunnel {interface}"),
                NotLocalWhy::Unrouted => f.write_str("not routed"),
                NotLocalWhy::Name => f.write_str("a name (its addresses decide)"),
            },
        }
    }
}

/// Classifies an address against one reading of the host's interfaces and main table. See the
/// [module docs](self) for the rule.
pub fn classify(destination: IpAddr, snapshot: &Snapshot) -> Locality {
    let destination = destination.to_canonical();
    let local = |why| Locality::Local { why };
    let not = |why| Locality::NotLocal { why };
    if destination.is_loopback() {
        return not(NotLocalWhy::Loopback);
    }
    if destination.is_unspecified()
        || snapshot.interfaces.iter().any(|i| i.addresses.iter().any(|a| a.ip == destination))
    {
        return not(NotLocalWhy::ThisHost);
    }
    if destination.is_multicast() {
        return local(LocalWhy::Multicast);
    }
    let broadcast = match destination {
        IpAddr::V4(v4) => {
            v4.is_broadcast()
                || snapshot
                    .interfaces
                    .iter()
                    .any(|i| i.addresses.iter().any(|a| a.broadcast == Some(destination)))
        }
        IpAddr::V6(_) => false,
    };
    if broadcast {
        return local(LocalWhy::Broadcast);
    }
    let link_local = match destination {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    if link_local {
        return local(LocalWhy::LinkLocal);
    }
    let Some(route) = snapshot.route_for(destination) else {
        return not(NotLocalWhy::Unrouted);
    };
    if let Some(gateway) = route.gateway {
        return not(NotLocalWhy::Routed { gateway });
    }
    let interface = snapshot.interface(route.interface);
    let name = interface.map_or_else(|| format!("#{}", route.interface), |i| i.name.clone());
    let link_layer = interface.is_some_and(has_link_layer);
    if route.is_default() || !link_layer {
        return not(NotLocalWhy::Tunnel { interface: name });
    }
    local(LocalWhy::OnLink {
        interface: name,
        prefix: format!("{}/{}", route.destination, route.prefix_len),
    })
}

/// The on-link prefixes of a reading, as [`classify`] judges them local: main-table routes
/// with no gateway, not default, through an interface with a link layer. Each written
/// `ADDR/LEN`. A filter host queues flows to these (and to multicast, broadcast and
/// link-local addresses) and nothing else.
pub fn on_link_prefixes(snapshot: &Snapshot) -> Vec<String> {
    let mut out: Vec<String> = snapshot
        .routes
        .iter()
        .filter(|r| r.gateway.is_none() && !r.is_default())
        .filter(|r| snapshot.interface(r.interface).is_some_and(has_link_layer))
        .map(|r| format!("{}/{}", r.destination, r.prefix_len))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// An interface with a link layer of its own (not a tunnel, point-to-point link or loopback).
fn has_link_layer(i: &nw_path::Interface) -> bool {
    !i.flags.point_to_point
        && !i.flags.loopback
        && !matches!(i.link_type, LinkType::None | LinkType::PointToPoint | LinkType::Loopback)
}

/// Classifies a host name before it is resolved: a multicast DNS name (`.local`, RFC 6762 §3)
/// is local; any other name is decided by its addresses.
pub fn classify_name(name: &str) -> Locality {
    let name = name.trim_end_matches('.');
    let mdns = name.len() > ".local".len()
        && name
            .get(name.len() - ".local".len()..)
            .is_some_and(|t| t.eq_ignore_ascii_case(".local"));
    if mdns {
        Locality::Local { why: LocalWhy::MulticastDnsName }
    } else {
        Locality::NotLocal { why: NotLocalWhy::Name }
    }
}

#[cfg(test)]
mod tests;
