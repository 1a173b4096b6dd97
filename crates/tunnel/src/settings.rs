//! A provider's network settings (the `NEPacketTunnelNetworkSettings` analogue): what it asks
//! for, checked before anything is applied, and the difference between two sets of routes.
//!
//! Pure: parsing, validation and diffing are tested with tables; the Linux host applies the
//! result (`crate::host`).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// At most this many routes (included plus excluded) in one set of settings: more than any
/// real split tunnel uses, and few enough that applying them stays quick.
pub const MAX_ROUTES: usize = 10_000;
/// At most this many addresses on the tunnel interface.
pub const MAX_ADDRESSES: usize = 64;
/// At most this many DNS servers, match domains or search domains.
pub const MAX_DNS_ENTRIES: usize = 64;
/// The smallest MTU accepted: IPv6's minimum link MTU (RFC 8200 §5), since a tunnel without
/// IPv6 today may carry it tomorrow.
pub const MIN_MTU: u32 = 1280;
/// The largest MTU accepted (a TUN device's limit is 65535).
pub const MAX_MTU: u32 = 65_535;

pub use nw_path::{Prefix, PrefixError};

/// DNS for the tunnel: servers, and the domains they answer for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// The tunnel's name servers.
    #[serde(default)]
    pub servers: Vec<IpAddr>,
    /// Only names under these domains go to `servers`; empty means every name (a full-DNS
    /// tunnel). `""` also means every name, as Apple's `matchDomains = [""]` does.
    #[serde(default)]
    pub match_domains: Vec<String>,
    /// Search domains appended to single-label names.
    #[serde(default)]
    pub search_domains: Vec<String>,
}

/// What a provider asks the host to apply. Sending new settings replaces the old ones as a
/// whole; the host changes only what differs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The tunnel server's address: always routed outside the tunnel.
    #[serde(default)]
    pub tunnel_remote_address: Option<IpAddr>,
    /// Addresses of the tunnel interface, with their prefix length (`10.8.0.2/24`).
    #[serde(default)]
    pub addresses: Vec<Prefix>,
    /// Destinations sent into the tunnel (`0.0.0.0/0` and `::/0` for everything).
    #[serde(default)]
    pub included_routes: Vec<Prefix>,
    /// Destinations kept outside the tunnel even when an included route covers them.
    #[serde(default)]
    pub excluded_routes: Vec<Prefix>,
    /// DNS servers and match domains.
    #[serde(default)]
    pub dns: Option<Dns>,
    /// The tunnel interface's MTU; [`DEFAULT_MTU`] when absent.
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// The MTU used when settings do not name one: room for WireGuard's 80 bytes of overhead over
/// IPv6 on a 1500-byte link.
pub const DEFAULT_MTU: u32 = 1420;

/// Settings that cannot be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A prefix with bits set past its length, such as `10.0.0.1/8`.
    #[error("route {given} has bits set past its prefix length; did you mean {meant}?")]
    HostBits {
        /// The route as given.
        given: Prefix,
        /// The network it probably meant.
        meant: Prefix,
    },
    /// A list longer than its limit.
    #[error("{what}: {count} given, at most {limit} accepted")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// An MTU outside 1280..=65535.
    #[error("MTU {0} is outside {MIN_MTU}..={MAX_MTU}")]
    Mtu(u32),
    /// An interface address that cannot be one (unspecified, multicast, or a /0).
    #[error("{0} cannot be the tunnel interface's address")]
    Address(Prefix),
    /// A domain that is not a DNS name.
    #[error("{0:?} is not a domain name")]
    Domain(String),
    /// The same route both included and excluded.
    #[error("route {0} is both included and excluded")]
    Conflict(Prefix),
}

impl Settings {
    /// Checks the settings; the host applies nothing it has not checked.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let at_most = |what: &'static str, count: usize, limit: usize| {
            if count > limit { Err(SettingsError::TooMany { what, count, limit }) } else { Ok(()) }
        };
        at_most("routes", self.included_routes.len() + self.excluded_routes.len(), MAX_ROUTES)?;
        at_most("addresses", self.addresses.len(), MAX_ADDRESSES)?;
        for route in self.included_routes.iter().chain(&self.excluded_routes) {
            if route.has_host_bits() {
                let Some(meant) = Prefix::new(route.network(), route.len()) else { continue };
                return Err(SettingsError::HostBits { given: *route, meant });
            }
        }
        let included: BTreeSet<_> = self.included_routes.iter().collect();
        if let Some(both) = self.excluded_routes.iter().find(|r| included.contains(r)) {
            return Err(SettingsError::Conflict(*both));
        }
        for a in &self.addresses {
            if a.addr().is_unspecified() || a.addr().is_multicast() || a.len() == 0 {
                return Err(SettingsError::Address(*a));
            }
        }
        if let Some(mtu) = self.mtu
            && !(MIN_MTU..=MAX_MTU).contains(&mtu)
        {
            return Err(SettingsError::Mtu(mtu));
        }
        if let Some(dns) = &self.dns {
            at_most("DNS servers", dns.servers.len(), MAX_DNS_ENTRIES)?;
            at_most("match domains", dns.match_domains.len(), MAX_DNS_ENTRIES)?;
            at_most("search domains", dns.search_domains.len(), MAX_DNS_ENTRIES)?;
            for d in dns.match_domains.iter().chain(&dns.search_domains) {
                if !d.is_empty() && !is_domain(d) {
                    return Err(SettingsError::Domain(d.chars().take(80).collect()));
                }
            }
        }
        Ok(())
    }

    /// The MTU to apply.
    pub fn mtu(&self) -> u32 {
        self.mtu.unwrap_or(DEFAULT_MTU)
    }

    /// The routes of the tunnel's own table: included routes to the tunnel, and "throw" routes
    /// (back to the main table) for excluded routes and the tunnel's remote address.
    pub fn table(&self) -> BTreeSet<TableRoute> {
        let mut table: BTreeSet<TableRoute> =
            self.included_routes.iter().map(|&p| TableRoute { prefix: p, tunnel: true }).collect();
        let throws = self
            .excluded_routes
            .iter()
            .copied()
            .chain(self.tunnel_remote_address.map(Prefix::host))
            .map(|p| TableRoute { prefix: p, tunnel: false });
        for t in throws {
            // An excluded route beats an included one for the same prefix.
            table.remove(&TableRoute { prefix: t.prefix, tunnel: true });
            table.insert(t);
        }
        table
    }
}

/// The addresses every local network has, whatever its prefixes: IPv4 link-local (RFC 3927),
/// multicast (RFC 5771) and limited broadcast; IPv6 link-local and multicast (RFC 4291 §2.4).
const ALWAYS_LOCAL: [&str; 5] =
    ["169.254.0.0/16", "224.0.0.0/4", "255.255.255.255/32", "fe80::/10", "ff00::/8"];

/// The local network as `excludeLocalNetworks` keeps it out of the tunnel: the addresses every
/// local network has, and `on_link`, the prefixes of the links we are attached to (as local
/// network privacy judges them, `nw_lnp::on_link_prefixes`).
pub fn local_network(on_link: &[Prefix]) -> Vec<Prefix> {
    let mut out: Vec<Prefix> = ALWAYS_LOCAL.iter().filter_map(|p| p.parse().ok()).collect();
    for p in on_link {
        if !out.contains(p) {
            out.push(*p);
        }
    }
    out
}

impl Settings {
    /// These settings with `local` kept out of the tunnel as excluded routes (what the host
    /// applies under `excludeLocalNetworks`); an included route for the same prefix gives way.
    pub fn excluding(&self, local: &[Prefix]) -> Settings {
        let mut out = self.clone();
        for p in local {
            if !out.excluded_routes.contains(p) {
                out.excluded_routes.push(*p);
            }
        }
        out
    }
}

/// One route in the tunnel's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableRoute {
    /// The destination.
    pub prefix: Prefix,
    /// `true`: into the tunnel; `false`: a throw route, looked up in the main table instead.
    pub tunnel: bool,
}

impl fmt::Display for TableRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tunnel { write!(f, "{}", self.prefix) } else { write!(f, "throw {}", self.prefix) }
    }
}

/// What to change to go from one set to another: add first, then remove, so that nothing
/// routed before is unrouted in between.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff<T> {
    /// In the wanted set, not in the current one.
    pub add: Vec<T>,
    /// In the current set, not in the wanted one.
    pub remove: Vec<T>,
}

impl<T> Diff<T> {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// The difference between the current and the wanted set.
pub fn diff<T: Ord + Clone>(current: &BTreeSet<T>, wanted: &BTreeSet<T>) -> Diff<T> {
    Diff {
        add: wanted.difference(current).cloned().collect(),
        remove: current.difference(wanted).cloned().collect(),
    }
}

/// A DNS name as match and search domains use it: labels of letters, digits, `-` and `_`,
/// at most 63 bytes each and 253 in all; a trailing dot is allowed.
pub fn is_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let mut s = Settings { included_routes: vec![p("10.0.0.1/8")], ..Settings::default() };
        let e = s.validate().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");

        s.included_routes = vec![p("10.0.0.0/8")];
        s.excluded_routes = vec![p("10.0.0.0/8")];
        assert_eq!(s.validate(), Err(SettingsError::Conflict(p("10.0.0.0/8"))));

        s.excluded_routes.clear();
        s.mtu = Some(1279);
        assert_eq!(s.validate(), Err(SettingsError::Mtu(1279)));
        s.mtu = Some(1380);
        assert_eq!(s.validate(), Ok(()));

        s.addresses = vec![p("0.0.0.0/24")];
        assert!(matches!(s.validate(), Err(SettingsError::Address(_))));
        s.addresses = vec![p("10.8.0.2/24"), p("fd00::2/64")];
        assert_eq!(s.validate(), Ok(()));

        s.dns = Some(Dns {
            match_domains: vec!["corp.example".into(), "bad domain".into()],
            ..Dns::default()
        });
        assert!(matches!(s.validate(), Err(SettingsError::Domain(_))));
        s.dns = Some(Dns {
            match_domains: vec![String::new(), "corp.example.".into()],
            ..Dns::default()
        });
        assert_eq!(s.validate(), Ok(()));

        s.included_routes = (0..=u32::try_from(MAX_ROUTES).unwrap_or(u32::MAX))
            .map(|i| Prefix::host(IpAddr::V4(i.into())))
            .collect();
        assert!(matches!(s.validate(), Err(SettingsError::TooMany { what: "routes", .. })));
    }

    #[test]
    fn the_table_throws_excluded_routes_and_the_remote_address() {
        let s = Settings {
            tunnel_remote_address: Some("203.0.113.1".parse().unwrap_or_else(|_| unreachable!())),
            included_routes: vec![p("0.0.0.0/0"), p("::/0"), p("10.1.0.0/16")],
            excluded_routes: vec![p("10.1.2.0/24")],
            ..Settings::default()
        };
        let shown: Vec<String> = s.table().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["0.0.0.0/0", "10.1.0.0/16", "throw 10.1.2.0/24", "throw 203.0.113.1/32", "::/0"]
        );
    }

    #[test]
    fn excluding_the_local_network_throws_it_even_under_a_default_route() {
        let s = Settings {
            included_routes: vec![p("0.0.0.0/0"), p("::/0"), p("192.168.1.0/24")],
            ..Settings::default()
        };
        let local = local_network(&[p("192.168.1.0/24"), p("fe80::/10")]);
        assert_eq!(local.len(), 6, "fe80::/10 is listed once: {local:?}");
        let table: Vec<String> =
            s.excluding(&local).table().iter().map(ToString::to_string).collect();
        assert!(table.contains(&"throw 192.168.1.0/24".to_owned()), "{table:?}");
        assert!(!table.contains(&"192.168.1.0/24".to_owned()), "{table:?}");
        assert!(table.contains(&"throw fe80::/10".to_owned()), "{table:?}");
        assert!(table.contains(&"0.0.0.0/0".to_owned()), "{table:?}");
    }

    #[test]
    fn a_diff_adds_and_removes_only_what_differs() {
        let a: BTreeSet<_> = [1, 2, 3].into();
        let b: BTreeSet<_> = [2, 3, 4].into();
        assert_eq!(diff(&a, &b), Diff { add: vec![4], remove: vec![1] });
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn settings_read_from_json_and_refuse_unknown_fields() {
        let s: Settings = serde_json::from_str(
            r#"{"addresses":["10.8.0.2/24"],"included_routes":["0.0.0.0/0"],"mtu":1380,
                "dns":{"servers":["10.8.0.1"],"match_domains":["corp.example"]}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.mtu(), 1380);
        assert_eq!(s.addresses, vec![p("10.8.0.2/24")]);
        let e = serde_json::from_str::<Settings>(r#"{"routes":[]}"#).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("unknown field `routes`")));
        let e = serde_json::from_str::<Settings>(r#"{"addresses":["10.8.0.2/33"]}"#).err();
        assert!(e.is_some_and(|e| e.to_string().contains("not an address prefix")));
    }
}
