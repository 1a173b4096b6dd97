//! Path evaluation: from one [`Snapshot`] and the caller's [`Conditions`] to a [`Path`].
//!
//! Pure and total: any snapshot, however odd, gives a path and, when it is not satisfied, a
//! typed reason. Loopback alone never satisfies a path.

use std::net::IpAddr;

use serde::Serialize;

use crate::cost::{CostReadings, Judgement};
use crate::interface::{Interface, InterfaceType, Snapshot};

/// What the caller needs from a path — the Linux reading of Network framework's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Only this interface, by name.
    pub required_interface: Option<String>,
    /// Only interfaces of this type.
    pub required_type: Option<InterfaceType>,
    /// Never these types.
    pub prohibited_types: Vec<InterfaceType>,
    /// Never an interface known to be expensive (unknown counts as not expensive).
    pub prohibit_expensive: bool,
    /// Never an interface known to be constrained (unknown counts as not constrained).
    pub prohibit_constrained: bool,
}

/// Whether the path can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Usable: there is an interface and a route the conditions allow.
    Satisfied,
    /// Not usable; `Path::reason` says why.
    Unsatisfied,
    /// Not usable now, but would be once something connects it: an interface with a carrier
    /// is dormant (`IFF_DORMANT`, e.g. waiting for 802.1X or a supplicant).
    RequiresConnection,
}

/// Why a path is not satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// No interface but loopback is up.
    NoInterfaceUp,
    /// Interfaces are up but none has a carrier (cable, association, peer).
    NoCarrier,
    /// Interfaces have carriers but no usable address or route.
    NoRoute,
    /// Addresses and on-link routes, but no default route: only the local network is reachable.
    LocalNetworkOnly,
    /// The required interface (by name or type) is missing or unusable.
    RequiredInterfaceUnavailable,
    /// A usable path exists only over prohibited interface types.
    InterfaceTypeProhibited,
    /// A usable path exists only over expensive interfaces, and expensive ones are prohibited.
    ExpensiveProhibited,
    /// A usable path exists only over constrained interfaces, and constrained ones are prohibited.
    ConstrainedProhibited,
    /// An interface is dormant: it needs a connection step before it carries traffic.
    ConnectionRequired,
    /// The destination is on no attached network and no route (a default one included)
    /// covers it: it cannot be reached from here now.
    NoRouteToDestination,
    /// The destination is the local network and this app may not reach it (local network
    /// privacy, `nw-lnp`).
    LocalNetworkProhibited,
}

impl Reason {
    /// A sentence for people: what is wrong and what to try.
    pub fn explain(self) -> &'static str {
        match self {
            Self::NoInterfaceUp => {
                "no network interface other than loopback is up; bring one up (ip link set DEV up)"
            }
            Self::NoCarrier => {
                "interfaces are up but none has a carrier; check the cable, the Wi-Fi association or the peer"
            }
            Self::NoRoute => {
                "no interface has a usable address or route; check DHCP or the address configuration"
            }
            Self::LocalNetworkOnly => {
                "there is no default route, so only the local network is reachable; check the gateway"
            }
            Self::RequiredInterfaceUnavailable => "the required interface is missing or not usable",
            Self::InterfaceTypeProhibited => {
                "a path exists only over interface types these conditions prohibit"
            }
            Self::ExpensiveProhibited => {
                "a path exists only over expensive interfaces, which these conditions prohibit"
            }
            Self::ConstrainedProhibited => {
                "a path exists only over constrained interfaces, which these conditions prohibit"
            }
            Self::ConnectionRequired => {
                "an interface is dormant and needs a connection step (authentication, a supplicant)"
            }
            Self::NoRouteToDestination => {
                "no route leads to this destination: it is on no attached network and no default route covers it; check the gateway or the address"
            }
            Self::LocalNetworkProhibited => {
                "local network prohibited: this app may not reach the local network; see nw lnp status"
            }
        }
    }
}

/// An interface as the path sees it: the interface and what it costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathInterface {
    /// The interface.
    #[serde(flatten)]
    pub interface: Interface,
    /// Whether it is expensive (`None`: unknown).
    pub expensive: Option<bool>,
    /// Whether it is constrained (`None`: unknown).
    pub constrained: Option<bool>,
    /// The lowest metric of a default route through it, if it has one.
    pub default_route_metric: Option<u32>,
}

/// Why an interface is not part of the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unusable {
    /// Administratively down.
    Down,
    /// Up, without a carrier.
    NoCarrier,
    /// Carrier, but dormant (waiting for authentication or a supplicant).
    Dormant,
    /// The caller's conditions exclude it (see `excluded_by`).
    Excluded,
}

/// An interface the path cannot use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnavailableInterface {
    /// Its name.
    pub name: String,
    /// Its kernel index.
    pub index: u32,
    /// What it is.
    #[serde(rename = "type")]
    pub kind: InterfaceType,
    /// Why it cannot be used.
    pub why: Unusable,
    /// With [`Unusable::Excluded`]: which condition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excluded_by: Option<Reason>,
}

/// The evaluated path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Path {
    /// Satisfied, unsatisfied, or requiring a connection.
    pub status: Status,
    /// Why it is not satisfied, when it is not.
    pub reason: Option<Reason>,
    /// Of the primary interface; `None` when unknown or when there is no usable interface.
    pub expensive: Option<bool>,
    /// Of the primary interface; `None` when unknown or when there is no usable interface.
    pub constrained: Option<bool>,
    /// Usable interfaces, most preferred first.
    pub interfaces: Vec<PathInterface>,
    /// Every other interface but loopback, with the reason it is not usable.
    pub unavailable: Vec<UnavailableInterface>,
    /// Default gateways through usable interfaces, lowest metric first.
    pub gateways: Vec<IpAddr>,
    /// IPv4 destinations are reachable: a usable interface has an IPv4 address and a route.
    pub supports_ipv4: bool,
    /// IPv6 destinations are reachable: a usable interface has a global IPv6 address and a
    /// route.
    pub supports_ipv6: bool,
    /// A configured name server is reachable (on loopback, or of a reachable family) and the
    /// path is satisfied.
    pub supports_dns: bool,
    /// Set by the monitor on the update where a cheaper interface took over from an expensive or
    /// constrained one: connections on the old interface should move.
    pub better_path_available: bool,
}

impl Path {
    /// The preferred interface, if any.
    pub fn primary(&self) -> Option<&PathInterface> {
        self.interfaces.first()
    }
}

/// Evaluates the path.
pub fn evaluate(snapshot: &Snapshot, conditions: &Conditions, costs: &CostReadings) -> Path {
    let up: Vec<&Interface> = snapshot
        .interfaces
        .iter()
        .filter(|i| i.kind != InterfaceType::Loopback && i.flags.up)
        .collect();
    let carried: Vec<&Interface> = up.iter().copied().filter(|i| i.carrier).collect();
    let (ready, dormant): (Vec<&Interface>, Vec<&Interface>) =
        carried.into_iter().partition(|i| !i.flags.dormant);

    let mut allowed = Vec::new();
    let mut exclusions = Vec::new();
    for iface in &ready {
        match exclusion(iface, conditions, costs) {
            None => allowed.push(*iface),
            Some(reason) => exclusions.push((iface.index, reason)),
        }
    }

    let reach = Reachability::of(snapshot, &allowed);
    let (status, reason) = if reach.satisfied() {
        (Status::Satisfied, None)
    } else if up.is_empty() {
        (Status::Unsatisfied, Some(Reason::NoInterfaceUp))
    } else if ready.is_empty() && !dormant.is_empty() {
        (Status::RequiresConnection, Some(Reason::ConnectionRequired))
    } else if ready.is_empty() {
        (Status::Unsatisfied, Some(Reason::NoCarrier))
    } else if let Some(reason) = condition_reason(snapshot, &ready, &exclusions, conditions) {
        (Status::Unsatisfied, Some(reason))
    } else if reach.local {
        (Status::Unsatisfied, Some(Reason::LocalNetworkOnly))
    } else {
        (Status::Unsatisfied, Some(Reason::NoRoute))
    };

    let mut interfaces: Vec<PathInterface> = allowed
        .iter()
        .map(|i| PathInterface {
            interface: (*i).clone(),
            expensive: costs.expensive(i).value,
            constrained: costs.constrained(i).value,
            default_route_metric: default_metric(snapshot, i.index),
        })
        .collect();
    interfaces.sort_by_key(preference);

    let mut defaults: Vec<_> = snapshot
        .routes
        .iter()
        .filter(|r| r.is_default() && allowed.iter().any(|i| i.index == r.interface))
        .filter_map(|r| r.gateway.map(|g| (r.metric, g)))
        .collect();
    defaults.sort();
    let mut gateways: Vec<IpAddr> = Vec::new();
    for (_, g) in defaults {
        if !gateways.contains(&g) {
            gateways.push(g);
        }
    }

    let unavailable = snapshot
        .interfaces
        .iter()
        .filter(|i| i.kind != InterfaceType::Loopback)
        .filter_map(|i| {
            let (why, excluded_by) = if !i.flags.up {
                (Unusable::Down, None)
            } else if !i.carrier {
                (Unusable::NoCarrier, None)
            } else if i.flags.dormant {
                (Unusable::Dormant, None)
            } else {
                let reason = exclusions.iter().find(|(index, _)| *index == i.index)?.1;
                (Unusable::Excluded, Some(reason))
            };
            Some(UnavailableInterface {
                name: i.name.clone(),
                index: i.index,
                kind: i.kind,
                why,
                excluded_by,
            })
        })
        .collect();

    let supports_dns = snapshot
        .dns_servers
        .iter()
        .any(|s| s.is_loopback() || (s.is_ipv4() && reach.ipv4) || (s.is_ipv6() && reach.ipv6));
    let primary = interfaces.first();
    Path {
        status,
        reason,
        expensive: primary.and_then(|p| p.expensive),
        constrained: primary.and_then(|p| p.constrained),
        gateways,
        supports_ipv4: reach.ipv4,
        supports_ipv6: reach.ipv6,
        supports_dns: supports_dns && status == Status::Satisfied,
        better_path_available: false,
        interfaces,
        unavailable,
    }
}

/// Evaluates the path to one destination, as Network framework does for each connection: the
/// route the main table would pick for it among the interfaces the conditions allow (longest
/// prefix, then lowest metric). An on-link or directly routed destination is satisfied with no
/// default route at all; a destination nothing routes to is unsatisfied with
/// [`Reason::NoRouteToDestination`], or with the condition that excluded the interface that
/// would have reached it. The chosen interface comes first in `interfaces`, and `gateways`
/// holds the route's gateway, if any. The host's own addresses and loopback are always
/// reachable.
///
/// Policy routing rules and tables other than main are not read: the answer is the main
/// table's.
pub fn evaluate_for(
    snapshot: &Snapshot,
    conditions: &Conditions,
    costs: &CostReadings,
    destination: IpAddr,
) -> Path {
    let destination = destination.to_canonical();
    let mut path = evaluate(snapshot, conditions, costs);
    // The host itself is reachable whatever the routes say — through the interface that holds
    // the address (loopback for 127/8 and ::1), so a required interface or type still counts.
    let holder = snapshot.interfaces.iter().find(|i| {
        i.addresses.iter().any(|a| a.ip == destination)
            || (destination.is_loopback() && i.kind == InterfaceType::Loopback)
    });
    if let Some(holder) = holder {
        let required = conditions.required_interface.as_ref().is_some_and(|n| *n != holder.name)
            || conditions.required_type.is_some_and(|t| t != holder.kind);
        if required {
            path.status = Status::Unsatisfied;
            path.reason = Some(Reason::RequiredInterfaceUnavailable);
        } else {
            path.status = Status::Satisfied;
            path.reason = None;
        }
        return path;
    }
    let allowed: Vec<u32> = path.interfaces.iter().map(|i| i.interface.index).collect();
    if let Some(route) = best_route(snapshot, destination, &allowed) {
        path.interfaces.sort_by_key(|i| i.interface.index != route.interface);
        let primary = path.interfaces.first();
        path.expensive = primary.and_then(|p| p.expensive);
        path.constrained = primary.and_then(|p| p.constrained);
        path.status = Status::Satisfied;
        path.reason = None;
        path.gateways = route.gateway.into_iter().collect();
        // The families the host reaches beyond the link stay as they are; the destination's
        // own family is reachable, to this destination at least.
        path.supports_ipv4 |= destination.is_ipv4();
        path.supports_ipv6 |= destination.is_ipv6();
        return path;
    }
    // Would an interface the conditions excluded have reached it? Then that condition is why.
    let excluded: Vec<u32> =
        path.unavailable.iter().filter(|u| u.why == Unusable::Excluded).map(|u| u.index).collect();
    let blocked = best_route(snapshot, destination, &excluded).and_then(|r| {
        path.unavailable.iter().find(|u| u.index == r.interface).and_then(|u| u.excluded_by)
    });
    let reason = match (blocked, path.reason) {
        (Some(condition), _) => condition,
        (None, None | Some(Reason::LocalNetworkOnly | Reason::NoRoute)) => {
            Reason::NoRouteToDestination
        }
        (None, Some(other)) => other,
    };
    path.status = if reason == Reason::ConnectionRequired {
        Status::RequiresConnection
    } else {
        Status::Unsatisfied
    };
    path.reason = Some(reason);
    path.gateways.clear();
    path.supports_ipv4 = false;
    path.supports_ipv6 = false;
    path.supports_dns = false;
    path.expensive = None;
    path.constrained = None;
    path
}

/// The main table's route to `destination` through one of `through` (interface indexes) that
/// has an address of the destination's family to send from: the longest prefix, then the
/// lowest metric. A link-local destination needs only a link-local source.
fn best_route<'s>(
    snapshot: &'s Snapshot,
    destination: IpAddr,
    through: &[u32],
) -> Option<&'s crate::interface::Route> {
    let link_local = match destination {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    let can_send = |index: u32| {
        snapshot.interface(index).is_some_and(|i| {
            i.addresses.iter().any(|a| {
                a.ip.is_ipv4() == destination.is_ipv4()
                    && !a.tentative
                    && (link_local || a.is_routable())
            })
        })
    };
    snapshot
        .routes
        .iter()
        .filter(|r| r.destination.is_ipv4() == destination.is_ipv4())
        .filter(|r| through.contains(&r.interface) && can_send(r.interface))
        .filter(|r| covers(r.destination, r.prefix_len, destination))
        .min_by_key(|r| (std::cmp::Reverse(r.prefix_len), r.metric))
}

/// Whether `prefix/len` contains `ip` (both of one family).
fn covers(prefix: IpAddr, len: u8, ip: IpAddr) -> bool {
    let (prefix, ip, bits) = match (prefix, ip) {
        (IpAddr::V4(p), IpAddr::V4(a)) => (u128::from(p.to_bits()), u128::from(a.to_bits()), 32),
        (IpAddr::V6(p), IpAddr::V6(a)) => (p.to_bits(), a.to_bits(), 128),
        _ => return false,
    };
    let len = u32::from(len).min(bits);
    if len == 0 {
        return true;
    }
    let shift = bits - len;
    (prefix >> shift) == (ip >> shift)
}

/// Which families reach beyond the link through a set of interfaces.
struct Reachability {
    ipv4: bool,
    ipv6: bool,
    /// Something is reachable on-link (a routable address).
    local: bool,
}

impl Reachability {
    fn of(snapshot: &Snapshot, through: &[&Interface]) -> Self {
        let has_addr = |i: &Interface, v4: bool| {
            i.addresses.iter().any(|a| a.is_routable() && a.ip.is_ipv4() == v4)
        };
        let default_via = |v4: bool| {
            snapshot.routes.iter().any(|r| {
                r.is_default()
                    && r.destination.is_ipv4() == v4
                    && through.iter().any(|i| i.index == r.interface && has_addr(i, v4))
            })
        };
        let local = through.iter().any(|i| has_addr(i, true) || has_addr(i, false));
        Self { ipv4: default_via(true), ipv6: default_via(false), local }
    }

    fn satisfied(&self) -> bool {
        self.ipv4 || self.ipv6
    }
}

/// Why the conditions exclude an interface, if they do.
fn exclusion(iface: &Interface, c: &Conditions, costs: &CostReadings) -> Option<Reason> {
    if c.required_interface.as_ref().is_some_and(|n| *n != iface.name)
        || c.required_type.is_some_and(|t| t != iface.kind)
    {
        return Some(Reason::RequiredInterfaceUnavailable);
    }
    if c.prohibited_types.contains(&iface.kind) {
        return Some(Reason::InterfaceTypeProhibited);
    }
    let yes = |j: Judgement| j.value == Some(true);
    if c.prohibit_expensive && yes(costs.expensive(iface)) {
        return Some(Reason::ExpensiveProhibited);
    }
    if c.prohibit_constrained && yes(costs.constrained(iface)) {
        return Some(Reason::ConstrainedProhibited);
    }
    None
}

/// When the conditions are what stands between the caller and a usable path, say which one.
fn condition_reason(
    snapshot: &Snapshot,
    ready: &[&Interface],
    exclusions: &[(u32, Reason)],
    conditions: &Conditions,
) -> Option<Reason> {
    let requires = conditions.required_interface.is_some() || conditions.required_type.is_some();
    if !Reachability::of(snapshot, ready).satisfied() {
        // Nothing would work even without conditions, unless a required interface is missing.
        return requires
            .then_some(Reason::RequiredInterfaceUnavailable)
            .filter(|_| exclusions.len() == ready.len());
    }
    // Name the exclusion of the best interface that would have worked without conditions.
    let mut candidates: Vec<_> = exclusions
        .iter()
        .filter_map(|(index, reason)| {
            let iface = ready.iter().copied().find(|i| i.index == *index)?;
            Reachability::of(snapshot, &[iface])
                .satisfied()
                .then(|| (default_metric(snapshot, *index).unwrap_or(u32::MAX), *reason))
        })
        .collect();
    candidates.sort_by_key(|(metric, _)| *metric);
    candidates
        .first()
        .map(|(_, reason)| *reason)
        .or(requires.then_some(Reason::RequiredInterfaceUnavailable))
}

fn default_metric(snapshot: &Snapshot, index: u32) -> Option<u32> {
    snapshot
        .routes
        .iter()
        .filter(|r| r.is_default() && r.interface == index)
        .map(|r| r.metric)
        .min()
}

/// Interfaces with a default route first; among those, cheaper first (not expensive, then not
/// constrained); then the lowest default-route metric (what the kernel itself would use); then
/// the type order, then the index.
fn preference(p: &PathInterface) -> (bool, bool, bool, u32, usize, u32) {
    let rank = InterfaceType::ALL.iter().position(|t| *t == p.interface.kind).unwrap_or(usize::MAX);
    (
        p.default_route_metric.is_none(),
        p.expensive == Some(true),
        p.constrained == Some(true),
        p.default_route_metric.unwrap_or(u32::MAX),
        rank,
        p.interface.index,
    )
}

#[cfg(test)]
pub(crate) mod tests;
