//! The interface snapshot: what the kernel says about every interface, taken fresh each time.
//!
//! A [`Snapshot`] is plain data. The Linux `sys` layer fills it from one rtnetlink dump of
//! links, addresses and routes; tests build it by hand. Nothing here caches or reads the OS.

use std::net::IpAddr;

use serde::Serialize;

/// What an interface does, decided from what the kernel says it is, never from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceType {
    /// Ethernet hardware (a device behind a bus, speaking Ethernet).
    Wired,
    /// 802.11: the kernel shows a wireless extension or a `wlan` device type.
    Wifi,
    /// A WWAN modem (`wwan` device type or link kind).
    Cellular,
    /// Everything virtual or unrecognised: tun, veth, bridge, wireguard, dummy, …
    Other,
    /// The loopback interface.
    Loopback,
}

impl InterfaceType {
    /// Every type, in the order paths prefer them.
    pub const ALL: [Self; 5] =
        [Self::Wired, Self::Wifi, Self::Cellular, Self::Other, Self::Loopback];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wired => "wired",
            Self::Wifi => "wifi",
            Self::Cellular => "cellular",
            Self::Other => "other",
            Self::Loopback => "loopback",
        }
    }
}

impl std::str::FromStr for InterfaceType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            format!("unknown interface type {s:?}; expected one of wired, wifi, cellular, other, loopback")
        })
    }
}

impl std::fmt::Display for InterfaceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The legacy link-layer type (ARPHRD), kept apart from the functional type: many interfaces
/// "look like" Ethernet at this layer (veth, bridge, tap) without being wired hardware.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    /// Ethernet and what looks like it (veth, bridge, tap).
    Ethernet,
    /// Loopback.
    Loopback,
    /// No link-layer header (tun, wireguard, raw-IP modems).
    None,
    /// A point-to-point link (PPP).
    PointToPoint,
    /// 802.11 (a wireless monitor interface; managed Wi-Fi reports Ethernet).
    Ieee80211,
    /// Any other ARPHRD value, by number.
    Other(u16),
}

/// Administrative and operational flags we expose (a subset of `IFF_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Flags {
    /// `IFF_UP`: administratively up.
    pub up: bool,
    /// `IFF_RUNNING`: operationally up.
    pub running: bool,
    /// `IFF_LOWER_UP`: the link has a carrier.
    pub lower_up: bool,
    /// `IFF_DORMANT`: waiting for something (authentication) before it passes traffic.
    pub dormant: bool,
    /// `IFF_LOOPBACK`.
    pub loopback: bool,
    /// `IFF_POINTOPOINT`.
    pub point_to_point: bool,
    /// `IFF_BROADCAST`.
    pub broadcast: bool,
    /// `IFF_MULTICAST`.
    pub multicast: bool,
    /// `IFF_NOARP`.
    pub no_arp: bool,
}

/// Address scope as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Reachable anywhere.
    Global,
    /// Site-local (deprecated IPv6 scope).
    Site,
    /// Valid on this link only.
    Link,
    /// Valid on this host only.
    Host,
    /// Anything else.
    Other,
}

/// One address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Address {
    /// The address.
    pub ip: IpAddr,
    /// The prefix length of its subnet.
    pub prefix_len: u8,
    /// Its scope.
    pub scope: Scope,
    /// The broadcast address (IPv4, broadcast-capable links).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broadcast: Option<IpAddr>,
    /// The peer address of a point-to-point link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    /// IPv6 duplicate address detection has not finished (or failed): not usable yet.
    pub tentative: bool,
}

impl Address {
    /// Whether the address can carry traffic beyond this host and link.
    pub fn is_routable(&self) -> bool {
        matches!(self.scope, Scope::Global | Scope::Site) && !self.tentative
    }
}

/// Facts about an interface's link that classification uses, straight from the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct LinkFacts {
    /// `IFLA_INFO_KIND` of a virtual link (`veth`, `tun`, `bridge`, `wireguard`, …).
    pub kind: Option<String>,
    /// The ARPHRD link-layer type number.
    pub arphrd: u16,
    /// `/sys/class/net/X/wireless` or `phy80211` exists.
    pub wireless: bool,
    /// `DEVTYPE=` from `/sys/class/net/X/uevent` (`wlan`, `wwan`, `bridge`, …).
    pub devtype: Option<String>,
    /// The interface sits on a bus device (`/sys/class/net/X/device` exists): hardware.
    pub has_device: bool,
}

/// One interface with all of its addresses, IPv4 and IPv6 under the one name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Interface {
    /// Its name (`eth0`).
    pub name: String,
    /// The kernel's interface index; always greater than 0.
    pub index: u32,
    /// What it is, judged from kernel facts.
    #[serde(rename = "type")]
    pub kind: InterfaceType,
    /// Its link layer.
    pub link_type: LinkType,
    /// Its flags.
    pub flags: Flags,
    /// The link has a carrier (`IFF_LOWER_UP`): a cable, an association, a peer.
    pub carrier: bool,
    /// Its MTU.
    pub mtu: u32,
    /// Its hardware address, when it has one (`aa:bb:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_address: Option<String>,
    /// Every address on it, IPv4 and IPv6.
    pub addresses: Vec<Address>,
    /// What the kernel said that the classification used.
    #[serde(skip)]
    pub facts: LinkFacts,
}

/// A route the path cares about (main table, unicast).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Route {
    /// The destination prefix's address (`0.0.0.0` for a default route).
    pub destination: IpAddr,
    /// Its length.
    pub prefix_len: u8,
    /// The next hop, when the route goes through one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Output interface index (0 when the route has none, e.g. a multipath route).
    pub interface: u32,
    /// Its metric; lower wins.
    pub metric: u32,
}

impl Interface {
    /// An interface that is up and running with a carrier, MTU 1500 and no addresses yet: the
    /// start of a hand-made [`Snapshot`] (tests, simulations, a path evaluated for an
    /// imagined network). A loopback one when `kind` is [`InterfaceType::Loopback`].
    pub fn up(index: u32, name: &str, kind: InterfaceType) -> Self {
        let loopback = kind == InterfaceType::Loopback;
        Self {
            name: name.into(),
            index,
            kind,
            link_type: if loopback { LinkType::Loopback } else { LinkType::Ethernet },
            flags: Flags { up: true, running: true, lower_up: true, loopback, ..Flags::default() },
            carrier: true,
            mtu: 1500,
            hardware_address: None,
            addresses: Vec::new(),
            facts: LinkFacts::default(),
        }
    }

    /// The same interface with one more address: host scope for a loopback address, global
    /// otherwise.
    #[must_use]
    pub fn with_address(mut self, ip: IpAddr, prefix_len: u8) -> Self {
        let scope = if ip.is_loopback() { Scope::Host } else { Scope::Global };
        self.addresses.push(Address {
            ip,
            prefix_len,
            scope,
            broadcast: None,
            peer: None,
            tentative: false,
        });
        self
    }
}

impl Route {
    /// A default route (`0.0.0.0/0`, or `::/0` for an IPv6 gateway) via `gateway` out of the
    /// interface with index `interface`.
    pub fn default_via(gateway: IpAddr, interface: u32, metric: u32) -> Self {
        let destination =
            if gateway.is_ipv4() { IpAddr::from([0u8; 4]) } else { IpAddr::from([0u16; 8]) };
        Self { destination, prefix_len: 0, gateway: Some(gateway), interface, metric }
    }

    /// A default route (`0.0.0.0/0` or `::/0`).
    pub fn is_default(&self) -> bool {
        self.prefix_len == 0
    }
}

/// Everything the path is computed from, as one consistent reading.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Every interface.
    pub interfaces: Vec<Interface>,
    /// The main table's unicast routes.
    pub routes: Vec<Route>,
    /// Name servers from the resolver configuration.
    pub dns_servers: Vec<IpAddr>,
}

impl Snapshot {
    /// The interface with this index.
    pub fn interface(&self, index: u32) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.index == index)
    }

    /// The interface with this name.
    pub fn interface_named(&self, name: &str) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.name == name)
    }

    /// The main table's route to `destination`, as the kernel would pick it with no other
    /// constraint: the longest prefix of the destination's family that covers it, then the
    /// lowest metric.
    pub fn route_for(&self, destination: IpAddr) -> Option<&Route> {
        let destination = destination.to_canonical();
        self.routes
            .iter()
            .filter(|r| {
                crate::prefix::Prefix::new(r.destination, r.prefix_len)
                    .is_some_and(|p| p.contains(destination))
            })
            .min_by_key(|r| (std::cmp::Reverse(r.prefix_len), r.metric))
    }
}

/// Formats a hardware address as `aa:bb:cc:dd:ee:ff`.
pub(crate) fn format_mac(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}
