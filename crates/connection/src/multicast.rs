//! Taking part in a multicast group: receiving what its members send to `GROUP:PORT`, and
//! sending to all of them, on the interfaces of the path.
//!
//! A group is the local network by definition (a datagram sent to it reaches every member on
//! the link, and only there unless routers forward it), so joining asks local network privacy
//! first, as a connection to a local destination does: an app that may not use the local
//! network is refused with "local network prohibited", before any membership report leaves the
//! host. Once joined, what members send is delivered without asking again per sender: the app
//! was allowed the local network, and a group has no one peer to judge.
//!
//! By default the group is joined on every interface that is up, has a carrier, can multicast
//! and has an address of the group's family (a host with wired and Wi-Fi hears the group on
//! both); [`GroupOptions::interface`] names one instead. The socket hears only the groups it
//! joined (`IP_MULTICAST_ALL` off: Linux would otherwise deliver every group any socket on the
//! host joined on that port), shares its port with other members on this host
//! (`SO_REUSEADDR`, as multicast DNS responders must), does not hear its own datagrams unless
//! asked, and sends with a hop limit of 1 (the link) unless told otherwise.
//!
//! As Network framework's `NWMulticastGroup(for:from:)` and `NWConnectionGroup.send(content:to:)`
//! do: [`GroupOptions::source`] hears one member alone (source-specific multicast), and
//! [`MulticastGroup::send_to`] answers one member unicast from the group's port.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockRef, Socket, Type};

use crate::local_network::{Gate, LocalNetwork, explain};

/// How to take part in a group.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// Join on this interface only (by name). By default: every interface that is up, has a
    /// carrier, can multicast (`IFF_MULTICAST`) and has an address of the group's family,
    /// loopback aside.
    pub interface: Option<String>,
    /// Hear this socket's own datagrams (`IP_MULTICAST_LOOP`). Off by default.
    pub loopback: bool,
    /// How many hops a datagram sent to the group may make: its TTL or hop limit. 1 by
    /// default: the link, as link-local groups require.
    pub hops: u32,
    /// Hear only this member (source-specific multicast, RFC 4607: IGMPv3 and MLDv2 ask the
    /// network for this sender's datagrams alone; meant for 232.0.0.0/8 and ff3x::/32, taken
    /// for any group). A unicast address of the group's family. For [`MulticastGroup::join`];
    /// a [`sender`](MulticastGroup::sender) hears whoever answers.
    pub source: Option<IpAddr>,
    /// Local network privacy: the permission store and the app judged.
    pub local_network: LocalNetwork,
    /// How long the permission answer may take (a prompt hook that is asking): no answer in
    /// time refuses.
    pub answer_within: Duration,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            interface: None,
            loopback: false,
            hops: 1,
            source: None,
            local_network: LocalNetwork::default(),
            answer_within: Duration::from_secs(10),
        }
    }
}

/// An interface the group is taken part in on: joined on, or for a
/// [`sender`](MulticastGroup::sender), sent to on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// Its name (`eth0`).
    pub name: String,
    /// Its index.
    pub index: u32,
    /// The IPv4 address datagrams to an IPv4 group are sent from.
    from_v4: Option<Ipv4Addr>,
}

/// Why a group could not be joined. Each says what happened and what to try.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The address is not a multicast group.
    #[error(
        "{0} is not a multicast group (IPv4 groups are 224.0.0.0/4, IPv6 ones ff00::/8); to \
         receive unicast datagrams, bind a UDP socket instead"
    )]
    NotMulticast(IpAddr),
    /// The source to hear the group from is not a unicast address of its family.
    #[error(
        "cannot join {group} to hear {from} alone: a source is a unicast address of the \
         group's family (the member whose datagrams to hear)"
    )]
    BadSource {
        /// The group.
        group: IpAddr,
        /// The source asked for.
        from: IpAddr,
    },
    /// Local network privacy refused the app the local network.
    #[error("cannot {doing} {group}: local network prohibited: {}", explain(.refused, .error.as_deref()))]
    LocalNetworkProhibited {
        /// The group.
        group: IpAddr,
        /// "join", or "send to" for a [`MulticastGroup::sender`].
        doing: &'static str,
        /// The app, the group, why it is local and what decided.
        refused: Vec<nw_lnp::Verdict>,
        /// Why the permission store could not be read, when that is what refused.
        error: Option<String>,
    },
    /// No interface to take part on: none is usable, or the one named is not. Naming one in
    /// [`GroupOptions::interface`] uses it even without a carrier.
    #[error("cannot {doing} {group}: {why}")]
    NoInterface {
        /// The group.
        group: IpAddr,
        /// "join", or "send to" for a [`MulticastGroup::sender`].
        doing: &'static str,
        /// What was missing, and what to try.
        why: String,
    },
    /// The socket refused (the port is not free to share, say).
    #[error("cannot {doing} {group}: {what}: {source}")]
    Io {
        /// The group.
        group: IpAddr,
        /// "join", or "send to" for a [`MulticastGroup::sender`].
        doing: &'static str,
        /// What was being done.
        what: String,
        /// What the system said.
        source: io::Error,
    },
}

/// Membership of one multicast group, on a UDP socket bound to its port.
#[derive(Debug)]
pub struct MulticastGroup {
    socket: tokio::net::UdpSocket,
    group: SocketAddr,
    joined: Vec<Joined>,
    /// Choosing the outgoing interface and sending are one step for each interface.
    sending: tokio::sync::Mutex<()>,
}

impl MulticastGroup {
    /// Joins `group` (its address and port) after local network privacy allows it, on the
    /// interfaces [`GroupOptions::interface`] picks. Must be called within a Tokio runtime.
    pub async fn join(group: SocketAddr, options: &GroupOptions) -> Result<Self, GroupError> {
        Self::open(group, options, true).await
    }

    /// Sends to `group` without joining it, from a port of its own (a free one), once local
    /// network privacy allows it: [`send`](Self::send) reaches the members on each interface
    /// [`GroupOptions::interface`] picks, and [`recv_from`](Self::recv_from) hears what they
    /// answer to that port — the one-shot query of SSDP (`M-SEARCH`) or multicast DNS, whose
    /// answers come back unicast, which a socket connected to the group would drop.
    pub async fn sender(group: SocketAddr, options: &GroupOptions) -> Result<Self, GroupError> {
        Self::open(group, options, false).await
    }

    async fn open(
        group: SocketAddr,
        options: &GroupOptions,
        join: bool,
    ) -> Result<Self, GroupError> {
        let doing = if join { "join" } else { "send to" };
        let ip = group.ip().to_canonical();
        let group = SocketAddr::new(ip, group.port());
        if !ip.is_multicast() {
            return Err(GroupError::NotMulticast(ip));
        }
        let source = if join { options.source.map(|s| s.to_canonical()) } else { None };
        if let Some(source) = source
            && (source.is_ipv4() != ip.is_ipv4()
                || source.is_multicast()
                || source.is_unspecified()
                || source == IpAddr::V4(Ipv4Addr::BROADCAST))
        {
            return Err(GroupError::BadSource { group: ip, from: source });
        }
        #[allow(clippy::disallowed_methods, reason = "the permission answer's deadline")]
        let deadline = tokio::time::Instant::now() + options.answer_within;
        let mut gate =
            Gate::new(&options.local_network, deadline, nw_lnp::Direction::Outbound).await;
        if !gate.address(ip).await {
            return Err(GroupError::LocalNetworkProhibited {
                group: ip,
                doing,
                refused: gate.refused,
                error: gate.error,
            });
        }
        let candidates = interfaces(ip, options.interface.as_deref())
            .await
            .map_err(|why| GroupError::NoInterface { group: ip, doing, why })?;
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| GroupError::Io { group: ip, doing, what, source }
        };
        let socket = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))
            .map_err(io("opening a UDP socket"))?;
        socket.set_reuse_address(true).map_err(io("sharing the port"))?;
        let any: IpAddr = match ip {
            IpAddr::V4(_) => {
                socket.set_multicast_all_v4(false).map_err(io("hearing this group only"))?;
                socket.set_multicast_loop_v4(options.loopback).map_err(io("setting loopback"))?;
                socket.set_multicast_ttl_v4(options.hops).map_err(io("setting the TTL"))?;
                Ipv4Addr::UNSPECIFIED.into()
            }
            IpAddr::V6(_) => {
                socket.set_only_v6(true).map_err(io("keeping to IPv6"))?;
                socket.set_multicast_all_v6(false).map_err(io("hearing this group only"))?;
                socket.set_multicast_loop_v6(options.loopback).map_err(io("setting loopback"))?;
                socket.set_multicast_hops_v6(options.hops).map_err(io("setting the hop limit"))?;
                Ipv6Addr::UNSPECIFIED.into()
            }
        };
        // A member listens on the group's port; a sender on a port of its own.
        let port = if join { group.port() } else { 0 };
        socket.bind(&SocketAddr::new(any, port).into()).map_err(|e| GroupError::Io {
            group: ip,
            doing,
            what: format!("binding UDP port {port} (another socket holds it without sharing?)"),
            source: e,
        })?;
        // A sender takes part on every interface chosen; a member on those it could join.
        let joined =
            if join { join_each(&socket, ip, source, candidates, doing)? } else { candidates };
        socket.set_nonblocking(true).map_err(io("making the socket non-blocking"))?;
        let socket = tokio::net::UdpSocket::from_std(socket.into())
            .map_err(io("registering the socket with the runtime"))?;
        Ok(Self { socket, group, joined, sending: tokio::sync::Mutex::new(()) })
    }

    /// The group and its port.
    pub fn group(&self) -> SocketAddr {
        self.group
    }

    /// The interfaces the group was joined on (a sender's: the ones it sends on), in the path's
    /// order.
    pub fn interfaces(&self) -> &[Joined] {
        &self.joined
    }

    /// The socket's local address (the wildcard, and the group's port or a sender's own).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The next datagram a member sent (to the group, or to this port directly), and who sent
    /// it. Cancel-safe.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    /// Sends one datagram to `to`: the group (as [`send`](Self::send) does), or one member,
    /// unicast from this socket's port — the answer a multicast DNS or SSDP responder gives
    /// the sender of a query, which [`recv_from`](Self::recv_from) named. Another group, or
    /// an address of the other family, is an `InvalidInput` error that says so.
    pub async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = SocketAddr::new(to.ip().to_canonical(), to.port());
        if to == self.group {
            return self.send(datagram).await;
        }
        let refused = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        if to.ip().is_multicast() {
            return refused(format!(
                "{to} is another group than {}: join it, or send to it as a sender of its own",
                self.group
            ));
        }
        if to.is_ipv4() != self.group.is_ipv4() {
            return refused(format!("{to} is not of the family of {}", self.group));
        }
        self.socket.send_to(datagram, to).await
    }

    /// Sends one datagram to the group out of each interface it was joined on. Fails only
    /// when it went out on none (the error is the last interface's).
    pub async fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        let _one_at_a_time = self.sending.lock().await;
        let mut last_error = None;
        let mut sent = false;
        for joined in &self.joined {
            let chosen = match (self.group.ip(), joined.from_v4) {
                (IpAddr::V4(_), Some(from)) => {
                    SockRef::from(&self.socket).set_multicast_if_v4(&from)
                }
                (IpAddr::V4(_), None) => continue,
                (IpAddr::V6(_), _) => SockRef::from(&self.socket).set_multicast_if_v6(joined.index),
            };
            match chosen {
                Ok(()) => match self.socket.send_to(datagram, self.group).await {
                    Ok(_) => sent = true,
                    Err(e) => last_error = Some(e),
                },
                Err(e) => last_error = Some(e),
            }
        }
        match (sent, last_error) {
            (true, _) => Ok(datagram.len()),
            (false, Some(e)) => Err(e),
            (false, None) => Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no joined interface has an address of the group's family to send from",
            )),
        }
    }
}

/// Joins `group` (to hear `source` alone, when given) on each candidate; one refusing (gone
/// since the reading, say) leaves the others, and only none joined is an error (the first
/// one's).
fn join_each(
    socket: &Socket,
    group: IpAddr,
    source: Option<IpAddr>,
    candidates: Vec<Joined>,
    doing: &'static str,
) -> Result<Vec<Joined>, GroupError> {
    let mut joined = Vec::new();
    let mut first_error = None;
    for candidate in candidates {
        let result = match (group, source) {
            (_, Some(source)) => join_source(socket, group, source, candidate.index),
            (IpAddr::V4(g), None) => {
                socket.join_multicast_v4_n(&g, &InterfaceIndexOrAddress::Index(candidate.index))
            }
            (IpAddr::V6(g), None) => socket.join_multicast_v6(&g, candidate.index),
        };
        match result {
            Ok(()) => joined.push(candidate),
            Err(e) => {
                tracing::debug!("joining {group} on {} failed: {e}", candidate.name);
                first_error.get_or_insert((candidate.name, e));
            }
        }
    }
    match (joined.is_empty(), first_error) {
        (true, Some((name, source))) => {
            Err(GroupError::Io { group, doing, what: format!("joining on {name}"), source })
        }
        (true, None) => Err(GroupError::NoInterface { group, doing, why: "no interface".into() }),
        (false, _) => Ok(joined),
    }
}

/// Joins `group` on interface `index` to hear `source` alone: `MCAST_JOIN_SOURCE_GROUP`, the
/// protocol-independent join of RFC 3678 §5.1, for either family.
fn join_source(socket: &Socket, group: IpAddr, source: IpAddr, index: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let storage = |ip: IpAddr| {
        let addr = socket2::SockAddr::from(SocketAddr::new(ip, 0));
        // SAFETY: an all-zero sockaddr_storage is a valid value (AF_UNSPEC); the bytes copied
        // are socket2's sockaddr_in or sockaddr_in6, `addr.len()` long, which the storage holds.
        unsafe {
            let mut s: libc::sockaddr_storage = std::mem::zeroed();
            std::ptr::copy_nonoverlapping(
                addr.as_ptr().cast::<u8>(),
                (&raw mut s).cast::<u8>(),
                addr.len() as usize,
            );
            s
        }
    };
    let request = libc::group_source_req {
        gsr_interface: index,
        gsr_group: storage(group),
        gsr_source: storage(source),
    };
    let level = if group.is_ipv4() { libc::IPPROTO_IP } else { libc::IPPROTO_IPV6 };
    #[allow(clippy::cast_possible_truncation, reason = "the struct's 264 bytes fit a socklen_t")]
    let len = size_of::<libc::group_source_req>() as libc::socklen_t;
    // SAFETY: setsockopt(2) on a live socket with a pointer to a whole group_source_req and
    // its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            libc::MCAST_JOIN_SOURCE_GROUP,
            (&raw const request).cast(),
            len,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The interfaces to take part in `group` on: the one named, or every usable one, from the
/// path; or why there are none.
async fn interfaces(group: IpAddr, named: Option<&str>) -> Result<Vec<Joined>, String> {
    let reading = match nw_path::PathService::shared() {
        Ok(service) => service.reading().await,
        Err(e) => Err(e),
    };
    let reading = reading.map_err(|e| {
        format!("the interfaces cannot be read ({e}); `nw doctor` says what is wrong")
    })?;
    choose(group, named, &reading.snapshot.interfaces)
}

/// The choice itself (pure: see the tests).
fn choose(
    group: IpAddr,
    named: Option<&str>,
    interfaces: &[nw_path::Interface],
) -> Result<Vec<Joined>, String> {
    let v4 = group.is_ipv4();
    let family = if v4 { "IPv4" } else { "IPv6" };
    let joined = |i: &nw_path::Interface| Joined {
        name: i.name.clone(),
        index: i.index,
        from_v4: i.addresses.iter().find_map(|a| match a.ip {
            IpAddr::V4(ip) => Some(ip),
            IpAddr::V6(_) => None,
        }),
    };
    let has_family =
        |i: &nw_path::Interface| i.addresses.iter().any(|a| a.ip.is_ipv4() == v4 && !a.tentative);
    if let Some(name) = named {
        let Some(i) = interfaces.iter().find(|i| i.name == name) else {
            return Err(format!("there is no interface {name}"));
        };
        return if !i.flags.up {
            Err(format!("{name} is down"))
        } else if !i.flags.multicast && !i.flags.loopback {
            Err(format!(
                "{name} cannot multicast (no IFF_MULTICAST: `ip link set {name} multicast on`)"
            ))
        } else if !has_family(i) {
            Err(format!("{name} has no {family} address to take part with"))
        } else {
            Ok(vec![joined(i)])
        };
    }
    let usable: Vec<Joined> = interfaces
        .iter()
        .filter(|i| i.flags.up && i.carrier && i.flags.multicast && !i.flags.loopback)
        .filter(|i| has_family(i))
        .map(joined)
        .collect();
    if usable.is_empty() {
        return Err(format!(
            "no interface is up with a carrier, multicast and an {family} address"
        ));
    }
    Ok(usable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, index: u32, addrs: &[&str]) -> nw_path::Interface {
        let flags = nw_path::interface::Flags {
            up: true,
            running: true,
            multicast: true,
            ..Default::default()
        };
        let addresses = addrs
            .iter()
            .map(|a| nw_path::Address {
                ip: a.parse().unwrap(),
                prefix_len: 24,
                scope: nw_path::interface::Scope::Global,
                broadcast: None,
                peer: None,
                tentative: false,
            })
            .collect();
        nw_path::Interface {
            name: name.into(),
            index,
            kind: nw_path::InterfaceType::Wired,
            link_type: nw_path::LinkType::Ethernet,
            flags,
            carrier: true,
            mtu: 1500,
            hardware_address: None,
            addresses,
            facts: nw_path::interface::LinkFacts::default(),
        }
    }

    fn names(r: Result<Vec<Joined>, String>) -> Vec<String> {
        r.unwrap().into_iter().map(|j| j.name).collect()
    }

    #[test]
    fn every_usable_interface_of_the_family_by_default() {
        let mut lo = iface("lo", 1, &["127.0.0.1", "::1"]);
        lo.flags.loopback = true;
        lo.flags.multicast = false;
        let mut down = iface("eth1", 3, &["10.0.0.1"]);
        down.carrier = false;
        let only_v6 = iface("wg0", 4, &["fe80::1"]);
        let mut no_multicast = iface("tun0", 5, &["10.8.0.2"]);
        no_multicast.flags.multicast = false;
        let all = [
            lo,
            iface("eth0", 2, &["192.0.2.1", "fe80::2"]),
            down,
            only_v6,
            no_multicast,
            iface("wlan0", 6, &["198.51.100.7"]),
        ];
        let v4: IpAddr = "239.1.2.3".parse().unwrap();
        let v6: IpAddr = "ff02::fb".parse().unwrap();
        assert_eq!(names(choose(v4, None, &all)), ["eth0", "wlan0"]);
        assert_eq!(names(choose(v6, None, &all)), ["eth0", "wg0"]);
        let sent_from = choose(v4, None, &all).unwrap()[1].from_v4;
        assert_eq!(sent_from, Some(Ipv4Addr::new(198, 51, 100, 7)));
    }

    #[test]
    fn a_named_interface_is_taken_or_refused_saying_why() {
        let mut down = iface("eth1", 3, &["10.0.0.1"]);
        down.flags.up = false;
        let mut dumb = iface("tun0", 5, &["10.8.0.2"]);
        dumb.flags.multicast = false;
        let mut no_carrier = iface("eth2", 7, &["10.0.1.1"]);
        no_carrier.carrier = false;
        let all = [iface("eth0", 2, &["192.0.2.1"]), down, dumb, no_carrier];
        let g: IpAddr = "239.1.2.3".parse().unwrap();
        let err = |name| choose(g, Some(name), &all).unwrap_err();
        assert_eq!(names(choose(g, Some("eth0"), &all)), ["eth0"]);
        // Named, a link without a carrier yet is taken: it may come up.
        assert_eq!(names(choose(g, Some("eth2"), &all)), ["eth2"]);
        assert!(err("eth9").contains("there is no interface eth9"), "{}", err("eth9"));
        assert!(err("eth1").contains("eth1 is down"), "{}", err("eth1"));
        assert!(err("tun0").contains("cannot multicast"), "{}", err("tun0"));
        let v6 = choose("ff02::1".parse().unwrap(), Some("eth0"), &all).unwrap_err();
        assert!(v6.to_string().contains("eth0 has no IPv6 address"), "{v6}");
        let none = choose(g, None, &all[1..3]).unwrap_err();
        assert!(
            none.contains("no interface is up with a carrier, multicast and an IPv4"),
            "{none}"
        );
    }
}
