//! The host's Linux side: the TUN device, the kernel state it applies (see [`Kernel`]), sockets
//! that bypass the tunnel, and descriptors sent over the contract socket. Everything here
//! blocks; the host calls it on a blocking thread.

pub(crate) mod killswitch;
mod netlink;

use std::collections::BTreeSet;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use netlink::{Rtnl, Rule};

use crate::host::KernelState;
use crate::protocol::{SocketFamily, SocketProtocol};
use crate::settings::{self, Prefix, Settings, TableRoute};

/// Our tables and marks are `TABLE_BASE + interface index`: "nw" in the top half.
const TABLE_BASE: u32 = 0x6e77_0000;
/// The bypass rule's priority; the tunnel table's rule comes right after it. Both run before
/// the main table's rule (32766), as wg-quick's do.
const RULE_PRIORITY: u32 = 5270;

/// A TUN device (IFF_TUN | IFF_NO_PI) named `name` (a `%d` in it is numbered by the kernel).
///
/// A name without `%d` that an interface already has is refused (`AlreadyExists`): opening it
/// would attach to someone else's persistent TUN device, and the teardown would delete it.
pub(crate) fn open_tun(name: &str) -> io::Result<(OwnedFd, String, u32)> {
    if !name.contains('%') && index_of(name).is_ok() {
        return Err(io::ErrorKind::AlreadyExists.into());
    }
    let device = tun_rs::DeviceBuilder::new().name(name).build_sync()?;
    let name = device.name()?;
    let index = index_of(&name)?;
    // SAFETY: `into_raw_fd` hands over the device's only descriptor, which we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(device.into_raw_fd()) };
    Ok((fd, name, index))
}

fn index_of(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 { Err(io::Error::last_os_error()) } else { Ok(index) }
}

/// One tunnel's kernel objects: the interface (by index), its routing table, the firewall mark
/// of sockets that bypass it, and the four policy rules (bypass and lookup, v4 and v6).
pub(crate) struct Kernel {
    rtnl: Rtnl,
    index: u32,
    table: u32,
}

impl Kernel {
    pub(crate) fn new(index: u32) -> io::Result<Self> {
        Ok(Self { rtnl: Rtnl::new()?, index, table: TABLE_BASE + (index & 0xffff) })
    }

    /// The routing table (and firewall mark) of this tunnel.
    pub(crate) fn table(&self) -> u32 {
        self.table
    }

    fn our_rules(&self) -> BTreeSet<Rule> {
        [false, true]
            .into_iter()
            .flat_map(|v6| {
                [
                    Rule::bypass(v6, RULE_PRIORITY, self.table),
                    Rule::lookup(v6, RULE_PRIORITY + 1, self.table),
                ]
            })
            .collect()
    }

    /// Installs the policy rules (before any route exists, so nothing is routed by halves).
    pub(crate) fn install_rules(&mut self) -> io::Result<()> {
        let present = self.rtnl.rules(self.table, self.table)?;
        for rule in self.our_rules() {
            if !present.contains(&rule) {
                self.rtnl.add_rule(rule)?;
            }
        }
        Ok(())
    }

    /// Moves the kernel from `current` to `wanted`: MTU and link state, then addresses and
    /// routes added before stale ones are removed, so no moment has less routed than both.
    pub(crate) fn apply(&mut self, wanted: &Settings) -> io::Result<()> {
        self.rtnl.set_link(self.index, wanted.mtu())?;
        let have = self.rtnl.addresses(self.index)?;
        let want: BTreeSet<Prefix> = wanted.addresses.iter().copied().collect();
        let d = settings::diff(&have, &want);
        for a in &d.add {
            self.rtnl.add_address(self.index, *a).map_err(|e| context(e, "add address", a))?;
        }
        let have_routes = self.rtnl.table(self.table, self.index)?;
        let want_routes = wanted.table();
        let r = settings::diff(&have_routes, &want_routes);
        for route in &r.add {
            // A route for the same prefix of the other kind goes first: the kernel keys routes
            // by prefix, so the new kind replaces the old one in one step afterwards.
            let other = TableRoute { prefix: route.prefix, tunnel: !route.tunnel };
            if r.remove.contains(&other) {
                self.rtnl.delete_route(self.table, self.index, other)?;
            }
            self.rtnl
                .add_route(self.table, self.index, *route)
                .map_err(|e| context(e, "add route", route))?;
        }
        for route in &r.remove {
            let replaced = r.add.iter().any(|a| a.prefix == route.prefix);
            if !replaced {
                self.rtnl
                    .delete_route(self.table, self.index, *route)
                    .map_err(|e| context(e, "remove route", route))?;
            }
        }
        for a in &d.remove {
            self.rtnl
                .delete_address(self.index, *a)
                .map_err(|e| context(e, "remove address", a))?;
        }
        Ok(())
    }

    /// What the kernel holds now.
    pub(crate) fn read(&mut self) -> io::Result<KernelState> {
        let (mtu, up) = self.rtnl.link(self.index)?;
        let rules = self.rtnl.rules(self.table, self.table)?;
        let ours = self.our_rules();
        Ok(KernelState {
            mtu,
            up,
            addresses: self.rtnl.addresses(self.index)?,
            routes: self.rtnl.table(self.table, self.index)?,
            rules: rules.intersection(&ours).count(),
            // resolv.conf is not the kernel's; the host reads it beside.
            name_servers: Vec::new(),
            resolved: None,
        })
    }

    /// Removes the rules, the table's routes and the interface; then reads back what is left
    /// (a list of leftovers, empty when the teardown was complete).
    pub(crate) fn teardown(&mut self) -> Vec<String> {
        let mut left = Vec::new();
        let rules = self.rtnl.rules(self.table, self.table).unwrap_or_default();
        for rule in rules {
            if let Err(e) = self.rtnl.delete_rule(rule) {
                left.push(format!("rule priority {} table {}: {e}", rule.priority, rule.table));
            }
        }
        for route in self.rtnl.table(self.table, self.index).unwrap_or_default() {
            if let Err(e) = self.rtnl.delete_route(self.table, self.index, route)
                && e.raw_os_error() != Some(libc::ESRCH)
            {
                left.push(format!("route {route}: {e}"));
            }
        }
        if let Err(e) = self.rtnl.delete_link(self.index)
            && e.raw_os_error() != Some(libc::ENODEV)
        {
            left.push(format!("interface {}: {e}", self.index));
        }
        if let Ok(rules) = self.rtnl.rules(self.table, self.table) {
            left.extend(rules.iter().map(|r| format!("rule priority {} remains", r.priority)));
        }
        if let Ok(routes) = self.rtnl.table(self.table, self.index) {
            left.extend(routes.iter().map(|r| format!("route {r} remains")));
        }
        if self.rtnl.link(self.index).is_ok() {
            left.push(format!("interface {} remains", self.index));
        }
        left
    }
}

/// The tables of tunnels whose interface is gone while their policy rules remain: a host
/// that was killed (its device went with it, its rules and throw routes did not).
pub(crate) fn orphaned_tables() -> io::Result<Vec<u32>> {
    let mut rtnl = Rtnl::new()?;
    let ours: BTreeSet<u32> = rtnl
        .all_rules()?
        .iter()
        .filter(|r| r.priority == RULE_PRIORITY || r.priority == RULE_PRIORITY + 1)
        .flat_map(|r| [Some(r.table), r.fwmark])
        .flatten()
        .filter(|t| t & 0xffff_0000 == TABLE_BASE)
        .collect();
    Ok(ours.into_iter().filter(|t| rtnl.link(t - TABLE_BASE).is_err()).collect())
}

/// Removes an orphaned table's rules and routes; returns what could not be removed.
pub(crate) fn remove_orphaned(table: u32) -> Vec<String> {
    match Kernel::new(table.wrapping_sub(TABLE_BASE)) {
        Ok(mut k) => k.teardown(),
        Err(e) => vec![format!("table {table:#x}: {e}")],
    }
}

fn context(e: io::Error, what: &str, item: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {item}: {e}"))
}

/// A socket whose traffic bypasses the tunnel: it carries the tunnel's firewall mark, which the
/// bypass rule sends to the main table.
pub(crate) fn bypass_socket(
    protocol: SocketProtocol,
    family: SocketFamily,
    mark: u32,
) -> io::Result<OwnedFd> {
    let domain = match family {
        SocketFamily::Ipv4 => libc::AF_INET,
        SocketFamily::Ipv6 => libc::AF_INET6,
    };
    let kind = match protocol {
        SocketProtocol::Udp => libc::SOCK_DGRAM,
        SocketProtocol::Tcp => libc::SOCK_STREAM,
    };
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is not owned elsewhere.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let value: libc::c_int = mark as libc::c_int;
    // SAFETY: SO_MARK takes an int; `value` lives for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            (&raw const value).cast(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
