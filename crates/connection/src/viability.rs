//! After a connection is ready: can it still carry traffic (viability), and is there a better
//! path than the one it is on? Pure: a path in, a verdict out; the connection object feeds it
//! every path update.
//!
//! A connection that stops being viable is not failed: links come back (a cable replugged, a
//! radio re-associating), and TCP rides out short outages. The application decides — wait,
//! or move to the better path when one is offered.

use std::net::IpAddr;

use nw_path::{Path, Unusable};
use serde::Serialize;

/// Where a ready connection runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Via {
    /// The interface its packets leave by (`None` when no interface held the local address).
    pub interface: Option<String>,
    /// Its local address.
    pub local: IpAddr,
}

/// Why a connection cannot carry traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotViable {
    /// Its interface was taken down.
    Down,
    /// Its interface lost its carrier (cable, association, peer).
    NoCarrier,
    /// Its interface is dormant (waiting for authentication).
    Dormant,
    /// Its local address was removed from the interface.
    AddressRemoved,
    /// Its interface no longer exists.
    InterfaceGone,
}

impl NotViable {
    /// The reason in words, for messages.
    pub fn explain(self) -> &'static str {
        match self {
            Self::Down => "its interface was taken down",
            Self::NoCarrier => "its interface lost its carrier",
            Self::Dormant => "its interface is dormant (waiting for authentication)",
            Self::AddressRemoved => "its local address was removed",
            Self::InterfaceGone => "its interface is gone",
        }
    }
}

/// The verdict on a ready connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Viability {
    /// Whether the connection's path still works.
    pub viable: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why_not: Option<NotViable>,
    /// The interface a new connection would use, when it is a better one than this
    /// connection's: this one is not viable or is ruled out by the conditions, or it is
    /// expensive (constrained) and that one is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub better_path: Option<String>,
}

impl Viability {
    /// What a connection is when it becomes ready.
    pub fn ready() -> Self {
        Self { viable: true, why_not: None, better_path: None }
    }
}

/// Judges the connection at `via` on `path`.
pub(crate) fn assess(path: &Path, via: &Via) -> Viability {
    if via.local.is_loopback() {
        return Viability::ready(); // loopback cannot go away
    }
    let ours = path.interfaces.iter().find(|i| match &via.interface {
        Some(name) => &i.interface.name == name,
        None => i.interface.addresses.iter().any(|a| a.ip == via.local),
    });
    let unusable = via
        .interface
        .as_ref()
        .and_then(|name| path.unavailable.iter().find(|u| &u.name == name))
        .map(|u| u.why);
    let why_not = match (ours, unusable) {
        (Some(i), _) if i.interface.addresses.iter().any(|a| a.ip == via.local) => None,
        (Some(_), _) => Some(NotViable::AddressRemoved),
        // Up and working; only the caller's conditions rule it out.
        (None, Some(Unusable::Excluded)) => None,
        (None, Some(Unusable::Down)) => Some(NotViable::Down),
        (None, Some(Unusable::NoCarrier)) => Some(NotViable::NoCarrier),
        (None, Some(Unusable::Dormant)) => Some(NotViable::Dormant),
        (None, None) if via.interface.is_none() => Some(NotViable::AddressRemoved),
        (None, None) => Some(NotViable::InterfaceGone),
    };
    let excluded = unusable == Some(Unusable::Excluded);
    let better_path = path.primary().and_then(|primary| {
        let name = &primary.interface.name;
        if ours.is_some_and(|o| &o.interface.name == name) {
            return None;
        }
        let pricier =
            |ours: Option<bool>, theirs: Option<bool>| ours == Some(true) && theirs != Some(true);
        let better = why_not.is_some()
            || excluded
            || ours.is_some_and(|o| {
                pricier(o.expensive, primary.expensive)
                    || pricier(o.constrained, primary.constrained)
            });
        better.then(|| name.clone())
    });
    Viability { viable: why_not.is_none(), why_not, better_path }
}

#[cfg(test)]
mod tests {
    use nw_path::{Interface, InterfaceType, PathInterface, Reason, Status, UnavailableInterface};

    use super::*;

    fn iface(name: &str, ip: &str, expensive: Option<bool>) -> PathInterface {
        PathInterface {
            interface: Interface::up(2, name, InterfaceType::Wired)
                .with_address(ip.parse().unwrap(), 24),
            expensive,
            constrained: None,
            default_route_metric: Some(100),
        }
    }

    fn gone(name: &str, why: Unusable) -> UnavailableInterface {
        UnavailableInterface {
            name: name.into(),
            index: 2,
            kind: InterfaceType::Wired,
            why,
            excluded_by: (why == Unusable::Excluded).then_some(Reason::ExpensiveProhibited),
        }
    }

    fn path(interfaces: Vec<PathInterface>, unavailable: Vec<UnavailableInterface>) -> Path {
        Path {
            status: if interfaces.is_empty() { Status::Unsatisfied } else { Status::Satisfied },
            reason: None,
            expensive: None,
            constrained: None,
            interfaces,
            unavailable,
            gateways: vec![],
            supports_ipv4: true,
            supports_ipv6: false,
            supports_dns: true,
            better_path_available: false,
        }
    }

    fn via(name: &str, ip: &str) -> Via {
        Via { interface: Some(name.into()), local: ip.parse().unwrap() }
    }

    const ETH0: &str = "198.51.100.1";

    #[test]
    fn on_its_usable_interface_it_is_viable() {
        let p = path(vec![iface("eth0", ETH0, None)], vec![]);
        assert_eq!(assess(&p, &via("eth0", ETH0)), Viability::ready());
        let unnamed = Via { interface: None, local: ETH0.parse().unwrap() };
        assert_eq!(assess(&p, &unnamed), Viability::ready());
    }

    #[test]
    fn each_way_of_losing_the_interface_is_named_and_offers_the_other() {
        for (why, expect) in [
            (Unusable::Down, NotViable::Down),
            (Unusable::NoCarrier, NotViable::NoCarrier),
            (Unusable::Dormant, NotViable::Dormant),
        ] {
            let p = path(vec![iface("eth1", "203.0.113.1", None)], vec![gone("eth0", why)]);
            let v = assess(&p, &via("eth0", ETH0));
            assert_eq!(
                v,
                Viability {
                    viable: false,
                    why_not: Some(expect),
                    better_path: Some("eth1".into())
                }
            );
        }
        let p = path(vec![], vec![]);
        assert_eq!(assess(&p, &via("eth0", ETH0)).why_not, Some(NotViable::InterfaceGone));
        assert_eq!(assess(&p, &via("eth0", ETH0)).better_path, None, "nothing better to offer");
    }

    #[test]
    fn a_removed_local_address_is_not_viable() {
        let p = path(vec![iface("eth0", "198.51.100.9", None)], vec![]);
        let v = assess(&p, &via("eth0", ETH0));
        assert_eq!(
            (v.viable, v.why_not, v.better_path),
            (false, Some(NotViable::AddressRemoved), None)
        );
        let unnamed = Via { interface: None, local: ETH0.parse().unwrap() };
        assert_eq!(assess(&p, &unnamed).why_not, Some(NotViable::AddressRemoved));
    }

    #[test]
    fn a_cheaper_primary_is_a_better_path_and_a_pricier_one_is_not() {
        let cheap = iface("eth1", "203.0.113.1", Some(false));
        let unknown = iface("eth1", "203.0.113.1", None);
        let costly = iface("eth0", ETH0, Some(true));
        let v = assess(&path(vec![cheap.clone(), costly.clone()], vec![]), &via("eth0", ETH0));
        assert_eq!((v.viable, v.better_path.as_deref()), (true, Some("eth1")));
        let v = assess(&path(vec![unknown, costly.clone()], vec![]), &via("eth0", ETH0));
        assert_eq!(v.better_path.as_deref(), Some("eth1"), "unknown cost is not known to be worse");
        // Ours is the primary: nothing better.
        let v = assess(&path(vec![costly.clone(), cheap.clone()], vec![]), &via("eth0", ETH0));
        assert_eq!(v.better_path, None);
        // Both expensive: not better.
        let also = iface("eth1", "203.0.113.1", Some(true));
        let v = assess(&path(vec![also, costly], vec![]), &via("eth0", ETH0));
        assert_eq!(v.better_path, None);
        // Ours cheap, primary another cheap one (a lower metric): not better for cost alone.
        let ours = iface("eth0", ETH0, Some(false));
        let v = assess(&path(vec![cheap, ours], vec![]), &via("eth0", ETH0));
        assert_eq!(v.better_path, None);
    }

    #[test]
    fn excluded_by_the_conditions_it_still_works_but_another_is_better() {
        let p = path(
            vec![iface("eth1", "203.0.113.1", Some(false))],
            vec![gone("eth0", Unusable::Excluded)],
        );
        let v = assess(&p, &via("eth0", ETH0));
        assert_eq!((v.viable, v.better_path.as_deref()), (true, Some("eth1")));
    }

    #[test]
    fn loopback_is_always_viable() {
        let v =
            assess(&path(vec![], vec![]), &Via { interface: None, local: "::1".parse().unwrap() });
        assert_eq!(v, Viability::ready());
    }
}
