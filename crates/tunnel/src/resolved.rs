//! Split DNS through systemd-resolved, where it is the system's resolver: the tunnel's
//! servers and domains become its interface's per-link DNS (`org.freedesktop.resolve1`'s
//! `SetLinkDNS`, `SetLinkDomains`, `SetLinkDefaultRoute`, as described in
//! org.freedesktop.resolve1(5)), which resolved then uses for the names it routes there, from
//! sockets bound to that interface. Nothing on disk changes; when the settings go away the
//! link is reverted (`RevertLink`), and when the device goes away — a killed host's does —
//! resolved forgets the link by itself, so there is nothing to repair.
//!
//! Apple's settings map onto resolved's like this: each match domain is a routing-only domain
//! (`~corp.example`) and the link is not a default route; no match domains (or `""`) means
//! every name, the routing domain `~.` with the link a default route. Search domains are
//! domains that are also searched — in resolved a search domain routes its names to the link
//! too, which Apple's do not.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use crate::dbus::{Bus, Call, CallError, Value};

const SERVICE: &str = "org.freedesktop.resolve1";
const MANAGER_PATH: &str = "/org/freedesktop/resolve1";
const MANAGER: &str = "org.freedesktop.resolve1.Manager";
const LINK: &str = "org.freedesktop.resolve1.Link";
/// The address resolved's stub listens on, which resolv.conf names when resolved is in charge.
pub(crate) const STUB: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 53));
/// How long a device just made may take to appear in resolved's list of links.
const LINK_APPEARS: Duration = Duration::from_secs(2);

/// What one link holds, as resolved reads it back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkDns {
    /// The link's name servers.
    pub servers: Vec<IpAddr>,
    /// Its domains: `~name` for routing-only ones, `name` for search domains.
    pub domains: Vec<String>,
    /// Whether names no link's domain claims may go to this link.
    pub default_route: bool,
}

impl LinkDns {
    /// What resolved should hold for these DNS settings.
    pub(crate) fn wanted(dns: &crate::settings::Dns) -> Self {
        let every_name =
            dns.match_domains.is_empty() || dns.match_domains.iter().any(|m| m.is_empty());
        let name = |d: &str| d.trim_end_matches('.').to_ascii_lowercase();
        let search: Vec<String> = dns.search_domains.iter().map(|d| name(d)).collect();
        let mut domains = search.clone();
        if every_name {
            domains.push("~.".into());
        } else {
            for m in &dns.match_domains {
                let m = name(m);
                if !search.contains(&m) && !domains.contains(&format!("~{m}")) {
                    domains.push(format!("~{m}"));
                }
            }
        }
        Self { servers: dns.servers.clone(), domains, default_route: every_name }
    }

    /// Whether resolved holds the same (order aside).
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        let mut a = self.servers.clone();
        let mut b = other.servers.clone();
        a.sort();
        b.sort();
        a == b
            && sorted(&self.domains) == sorted(&other.domains)
            && self.default_route == other.default_route
    }
}

fn manager(member: &str, args: Vec<Value>) -> Call<'_> {
    Call { destination: SERVICE, path: MANAGER_PATH, interface: MANAGER, member, args }
}

fn error(what: &str, e: CallError) -> io::Error {
    io::Error::other(format!("systemd-resolved: {what}: {e}"))
}

/// Whether systemd-resolved should take the tunnel's DNS: resolv.conf names its stub and
/// nothing else, and it is on the system bus. Blocking.
pub(crate) fn in_charge(resolv_conf: &str) -> bool {
    let (servers, _) = crate::dns::parse_resolv_conf(resolv_conf);
    if servers.is_empty() || servers.iter().any(|s| s.ip() != STUB) {
        return false;
    }
    let owned = Bus::system().map_err(CallError::from).and_then(|mut bus| {
        bus.call(&Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "NameHasOwner",
            args: vec![Value::Str(SERVICE.into())],
        })
    });
    match owned {
        Ok(reply) => reply.first() == Some(&Value::Bool(true)),
        Err(e) => {
            tracing::warn!(
                "resolv.conf names systemd-resolved's stub, but the system bus did not say it runs ({e}); using our own DNS forwarder"
            );
            false
        }
    }
}

/// Hands `link` (an interface index) the DNS settings. Blocking.
pub(crate) fn set(link: u32, want: &LinkDns) -> io::Result<()> {
    let index = Value::I32(i32::try_from(link).map_err(io::Error::other)?);
    let servers = want
        .servers
        .iter()
        .map(|ip| {
            let (family, bytes) = match ip {
                IpAddr::V4(v4) => (libc::AF_INET, v4.octets().to_vec()),
                IpAddr::V6(v6) => (libc::AF_INET6, v6.octets().to_vec()),
            };
            Value::Struct(vec![
                Value::I32(family),
                Value::Array {
                    element: "y".into(),
                    items: bytes.into_iter().map(Value::Byte).collect(),
                },
            ])
        })
        .collect();
    let domains = want
        .domains
        .iter()
        .map(|d| match d.strip_prefix('~') {
            Some(routing) => Value::Struct(vec![Value::Str(routing.into()), Value::Bool(true)]),
            None => Value::Struct(vec![Value::Str(d.clone()), Value::Bool(false)]),
        })
        .collect();
    let mut bus =
        Bus::system().map_err(|e| io::Error::new(e.kind(), format!("systemd-resolved: {e}")))?;
    let calls = [
        ("SetLinkDNS", Value::Array { element: "(iay)".into(), items: servers }),
        ("SetLinkDomains", Value::Array { element: "(sb)".into(), items: domains }),
        ("SetLinkDefaultRoute", Value::Bool(want.default_route)),
    ];
    for (member, arg) in calls {
        let call = manager(member, vec![index.clone(), arg]);
        // A device made a moment ago may not be in resolved's list yet.
        #[allow(clippy::disallowed_methods, reason = "a bounded wait for resolved to see the link")]
        let began = std::time::Instant::now();
        loop {
            match bus.call(&call) {
                Ok(_) => break,
                Err(CallError::Remote { name, .. })
                    if name.ends_with(".NoSuchLink") && began.elapsed() < LINK_APPEARS =>
                {
                    #[allow(
                        clippy::disallowed_methods,
                        reason = "a pause between bounded retries"
                    )]
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(error(&format!("{member} on link {link}"), e)),
            }
        }
    }
    Ok(())
}

/// Takes back what the host gave `link`. A link that is already gone is not an error.
/// Blocking.
pub(crate) fn revert(link: u32) -> io::Result<()> {
    let index = Value::I32(i32::try_from(link).map_err(io::Error::other)?);
    let mut bus =
        Bus::system().map_err(|e| io::Error::new(e.kind(), format!("systemd-resolved: {e}")))?;
    match bus.call(&manager("RevertLink", vec![index])) {
        Ok(_) => Ok(()),
        Err(CallError::Remote { name, .. }) if name.ends_with(".NoSuchLink") => Ok(()),
        Err(e) => Err(error(&format!("RevertLink on link {link}"), e)),
    }
}

/// What resolved holds for `link`. Blocking.
pub(crate) fn read(link: u32) -> io::Result<LinkDns> {
    let index = Value::I32(i32::try_from(link).map_err(io::Error::other)?);
    let mut bus =
        Bus::system().map_err(|e| io::Error::new(e.kind(), format!("systemd-resolved: {e}")))?;
    let reply = bus.call(&manager("GetLink", vec![index])).map_err(|e| error("GetLink", e))?;
    let path = reply
        .first()
        .and_then(Value::as_str)
        .ok_or_else(|| io::Error::other("GetLink: no path"))?
        .to_owned();
    let mut property = |name: &str| -> io::Result<Value> {
        let reply = bus
            .call(&Call {
                destination: SERVICE,
                path: &path,
                interface: "org.freedesktop.DBus.Properties",
                member: "Get",
                args: vec![Value::Str(LINK.into()), Value::Str(name.into())],
            })
            .map_err(|e| error(&format!("the link's {name}"), e))?;
        match reply.into_iter().next() {
            Some(Value::Variant(v)) => Ok(*v),
            _ => {
                Err(io::Error::other(format!("systemd-resolved: the link's {name} is no variant")))
            }
        }
    };
    let items = |v: Value| match v {
        Value::Array { items, .. } => items,
        _ => Vec::new(),
    };
    let mut out = LinkDns::default();
    for server in items(property("DNS")?) {
        let Value::Struct(fields) = server else { continue };
        let bytes: Vec<u8> = match fields.get(1) {
            Some(Value::Array { items, .. }) => items
                .iter()
                .filter_map(|b| if let Value::Byte(b) = b { Some(*b) } else { None })
                .collect(),
            _ => continue,
        };
        if let Ok(v4) = <[u8; 4]>::try_from(bytes.as_slice()) {
            out.servers.push(IpAddr::from(v4));
        } else if let Ok(v6) = <[u8; 16]>::try_from(bytes.as_slice()) {
            out.servers.push(IpAddr::from(v6));
        }
    }
    for domain in items(property("Domains")?) {
        if let Value::Struct(fields) = domain
            && let (Some(Value::Str(name)), Some(Value::Bool(routing))) =
                (fields.first(), fields.get(1))
        {
            out.domains.push(if *routing { format!("~{name}") } else { name.clone() });
        }
    }
    out.default_route = property("DefaultRoute")? == Value::Bool(true);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Dns;

    #[test]
    fn apples_dns_settings_become_resolveds_link_domains() {
        let dns = |matches: &[&str], search: &[&str]| Dns {
            servers: vec!["10.99.53.53".parse().unwrap()],
            match_domains: matches.iter().map(|s| (*s).into()).collect(),
            search_domains: search.iter().map(|s| (*s).into()).collect(),
        };
        let split = LinkDns::wanted(&dns(&["Corp.Example.", "lab.test"], &["corp.example"]));
        assert_eq!(split.domains, ["corp.example", "~lab.test"]);
        assert!(!split.default_route);
        let full = LinkDns::wanted(&dns(&[], &[]));
        assert_eq!(full.domains, ["~."]);
        assert!(full.default_route);
        assert!(LinkDns::wanted(&dns(&["", "x.test"], &[])).default_route);
        let mut reordered = split.clone();
        reordered.domains.reverse();
        assert!(split.same_as(&reordered));
        assert!(!split.same_as(&full));
    }

    #[test]
    fn resolved_is_in_charge_only_when_resolv_conf_names_its_stub_alone() {
        // Neither of these asks the bus.
        assert!(!in_charge("nameserver 10.0.0.1\n"));
        assert!(!in_charge("nameserver 127.0.0.53\nnameserver 10.0.0.1\n"));
        assert!(!in_charge(""));
    }
}
