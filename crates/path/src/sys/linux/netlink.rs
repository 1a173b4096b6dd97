//! rtnetlink: full dumps for snapshots, and a multicast subscription for change notifications.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::PathError;
use crate::classify::link_type;
use crate::interface::{
    Address, Flags, Interface, InterfaceType, LinkFacts, Route, Scope, Snapshot, format_mac,
};

/// A dump whose reply was interrupted by a change (`NLM_F_DUMP_INTR`) is retried this often.
const DUMP_ATTEMPTS: u32 = 5;
/// Dump replies are at most 32 KiB per datagram (the kernel's `netlink_dump` cap).
const RECV_BUF: usize = 64 * 1024;
/// Receive buffer for notifications: big enough for ordinary bursts; beyond it the kernel
/// drops notifications, says ENOBUFS, and we resynchronise from a fresh dump.
const SUBSCRIPTION_RCVBUF: usize = 1 << 20;

/// Reads links, addresses and routes, retrying a dump the kernel marks as interrupted.
pub(crate) fn dump() -> Result<Snapshot, PathError> {
    let socket = Socket::new(NETLINK_ROUTE).map_err(PathError::Netlink)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(PathError::Netlink)?;
    for _ in 0..DUMP_ATTEMPTS {
        match dump_once(&socket) {
            Ok(snapshot) => return Ok(snapshot),
            Err(DumpError::Interrupted) => {
                tracing::debug!("rtnetlink dump interrupted by a change; retrying");
            }
            Err(DumpError::Io(e)) => return Err(PathError::Netlink(e)),
        }
    }
    Err(PathError::Unstable { attempts: DUMP_ATTEMPTS })
}

enum DumpError {
    Interrupted,
    Io(io::Error),
}

impl From<io::Error> for DumpError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn dump_once(socket: &Socket) -> Result<Snapshot, DumpError> {
    let mut snap = Snapshot::default();
    for m in request(socket, 1, RouteNetlinkMessage::GetLink(LinkMessage::default()))? {
        if let RouteNetlinkMessage::NewLink(l) = m {
            snap.interfaces.extend(interface(l));
        }
    }
    for m in request(socket, 2, RouteNetlinkMessage::GetAddress(AddressMessage::default()))? {
        if let RouteNetlinkMessage::NewAddress(a) = m {
            let index = a.header.index;
            if let (Some(addr), Some(iface)) =
                (address(a), snap.interfaces.iter_mut().find(|i| i.index == index))
            {
                iface.addresses.push(addr);
            }
        }
    }
    for m in request(socket, 3, RouteNetlinkMessage::GetRoute(RouteMessage::default()))? {
        if let RouteNetlinkMessage::NewRoute(r) = m {
            snap.routes.extend(route(r));
        }
    }
    Ok(snap)
}

/// Sends one dump request and collects the replies up to `NLMSG_DONE`.
fn request(
    socket: &Socket,
    seq: u32,
    msg: RouteNetlinkMessage,
) -> Result<Vec<RouteNetlinkMessage>, DumpError> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    req.finalize();
    let mut out = vec![0; req.buffer_len()];
    req.serialize(&mut out);
    socket.send(&out, 0)?;

    let mut replies = Vec::new();
    let mut interrupted = false;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        if n > buf.len() {
            return Err(io::Error::other("rtnetlink reply larger than the receive buffer").into());
        }
        for msg in messages(&buf[..n]) {
            let msg = msg?;
            if msg.header.sequence_number != seq {
                continue;
            }
            interrupted |= msg.header.flags & NLM_F_DUMP_INTR != 0;
            match msg.payload {
                NetlinkPayload::InnerMessage(m) => replies.push(m),
                NetlinkPayload::Done(_) => {
                    return if interrupted { Err(DumpError::Interrupted) } else { Ok(replies) };
                }
                NetlinkPayload::Error(e) => {
                    let code = e.code.map_or(libc::EIO, |c| -c.get());
                    return Err(io::Error::from_raw_os_error(code).into());
                }
                _ => {}
            }
        }
    }
}

/// Splits a datagram into netlink messages, undecoded. A broken length ends the walk with an
/// error.
fn frames(mut buf: &[u8]) -> impl Iterator<Item = io::Result<&[u8]>> {
    std::iter::from_fn(move || {
        if buf.len() < 16 {
            return None;
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            buf = &[];
            return Some(Err(io::Error::other(format!(
                "malformed rtnetlink message length {len}"
            ))));
        }
        let (this, rest) = buf.split_at(len);
        buf = rest.get(len.next_multiple_of(4) - len..).unwrap_or(&[]);
        Some(Ok(this))
    })
}

/// Splits a datagram into decoded netlink messages. A message that does not decode is skipped
/// with a warning (a newer kernel may send attributes we do not know); a broken length ends
/// the walk.
fn messages(buf: &[u8]) -> impl Iterator<Item = io::Result<NetlinkMessage<RouteNetlinkMessage>>> {
    frames(buf).filter_map(|frame| match frame {
        Ok(this) => match NetlinkMessage::<RouteNetlinkMessage>::deserialize(this) {
            Ok(m) => Some(Ok(m)),
            Err(e) => {
                tracing::warn!("skipping an rtnetlink message that did not decode: {e}");
                None
            }
        },
        Err(e) => Some(Err(e)),
    })
}

fn interface(m: LinkMessage) -> Option<Interface> {
    let index = m.header.index;
    if index == 0 {
        return None;
    }
    let f = m.header.flags;
    let flags = Flags {
        up: f.contains(LinkFlags::Up),
        running: f.contains(LinkFlags::Running),
        lower_up: f.contains(LinkFlags::LowerUp),
        dormant: f.contains(LinkFlags::Dormant),
        loopback: f.contains(LinkFlags::Loopback),
        point_to_point: f.contains(LinkFlags::Pointopoint),
        broadcast: f.contains(LinkFlags::Broadcast),
        multicast: f.contains(LinkFlags::Multicast),
        no_arp: f.contains(LinkFlags::Noarp),
    };
    let arphrd = u16::from(m.header.link_layer_type);
    let mut iface = Interface {
        name: String::new(),
        index,
        kind: InterfaceType::Other,
        link_type: link_type(arphrd),
        carrier: flags.lower_up,
        flags,
        mtu: 0,
        hardware_address: None,
        addresses: Vec::new(),
        facts: LinkFacts { arphrd, ..LinkFacts::default() },
    };
    for attr in m.attributes {
        match attr {
            LinkAttribute::IfName(n) => iface.name = n,
            LinkAttribute::Mtu(mtu) => iface.mtu = mtu,
            LinkAttribute::Address(a) if !a.is_empty() && a.iter().any(|b| *b != 0) => {
                iface.hardware_address = Some(format_mac(&a));
            }
            LinkAttribute::LinkInfo(infos) => {
                iface.facts.kind = infos.into_iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    Some(iface)
}

fn address(m: AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut addr = None;
    let mut broadcast = None;
    let mut tentative =
        m.header.flags.intersects(AddressHeaderFlags::Tentative | AddressHeaderFlags::Dadfailed);
    for attr in m.attributes {
        match attr {
            AddressAttribute::Local(ip) => local = Some(ip),
            AddressAttribute::Address(ip) => addr = Some(ip),
            AddressAttribute::Broadcast(ip) => broadcast = Some(IpAddr::V4(ip)),
            AddressAttribute::Flags(f) => {
                tentative |= f.intersects(AddressFlags::Tentative | AddressFlags::Dadfailed);
            }
            _ => {}
        }
    }
    // IPv4 puts the local address in IFA_LOCAL and the peer of a point-to-point link in
    // IFA_ADDRESS; IPv6 sends IFA_ADDRESS alone (rtnetlink(7)).
    let ip = local.or(addr)?;
    let peer = addr.filter(|a| local.is_some() && *a != ip);
    let scope = match m.header.scope {
        AddressScope::Universe => Scope::Global,
        AddressScope::Site => Scope::Site,
        AddressScope::Link => Scope::Link,
        AddressScope::Host => Scope::Host,
        _ => Scope::Other,
    };
    Some(Address { ip, prefix_len: m.header.prefix_len, scope, broadcast, peer, tentative })
}

fn route(m: RouteMessage) -> Option<Route> {
    let unspecified: IpAddr = match m.header.address_family {
        AddressFamily::Inet => Ipv4Addr::UNSPECIFIED.into(),
        AddressFamily::Inet6 => Ipv6Addr::UNSPECIFIED.into(),
        _ => return None,
    };
    if m.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(m.header.table);
    let mut r = Route {
        destination: unspecified,
        prefix_len: m.header.destination_prefix_length,
        gateway: None,
        interface: 0,
        metric: 0,
    };
    for attr in m.attributes {
        match attr {
            RouteAttribute::Table(t) => table = t,
            RouteAttribute::Destination(a) => r.destination = ip(a)?,
            RouteAttribute::Gateway(a) => r.gateway = ip(a),
            RouteAttribute::Oif(i) => r.interface = i,
            RouteAttribute::Priority(p) => r.metric = p,
            _ => {}
        }
    }
    (table == u32::from(RouteHeader::RT_TABLE_MAIN)).then_some(r)
}

fn ip(a: RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(v4.into()),
        RouteAddress::Inet6(v6) => Some(v6.into()),
        _ => None,
    }
}

/// What one wake-up of the subscription found.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// Notifications read.
    pub(crate) changes: usize,
    /// The kernel dropped notifications (ENOBUFS): resynchronise.
    pub(crate) overflowed: bool,
}

/// Notifications for links, IPv4/IPv6 addresses and IPv4/IPv6 routes, on one socket so their
/// order is the kernel's.
#[derive(Debug)]
pub(crate) struct Subscription {
    fd: AsyncFd<Socket>,
    buf: Vec<u8>,
}

/// A subscription socket bound to its groups, not yet registered with a runtime: made (and
/// its errors known) on the caller's thread, then registered on the thread that reads it.
#[derive(Debug)]
pub(crate) struct Bound(Socket);

impl Subscription {
    /// Opens and binds the socket; no runtime needed, nothing waited for.
    pub(crate) fn bind(receive_buffer: Option<usize>) -> Result<Bound, PathError> {
        let groups: u32 = (libc::RTMGRP_LINK
            | libc::RTMGRP_IPV4_IFADDR
            | libc::RTMGRP_IPV6_IFADDR
            | libc::RTMGRP_IPV4_ROUTE
            | libc::RTMGRP_IPV6_ROUTE)
            .try_into()
            .unwrap_or(0);
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(PathError::Netlink)?;
        socket.bind(&SocketAddr::new(0, groups)).map_err(PathError::Netlink)?;
        socket.set_non_blocking(true).map_err(PathError::Netlink)?;
        if let Err(e) = socket.set_rx_buf_sz(receive_buffer.unwrap_or(SUBSCRIPTION_RCVBUF)) {
            tracing::debug!("could not enlarge the rtnetlink receive buffer: {e}");
        }
        Ok(Bound(socket))
    }
}

impl Bound {
    /// Registers the socket with the current tokio runtime. Must be called inside one.
    pub(crate) fn register(self) -> Result<Subscription, PathError> {
        // SAFETY: the Socket owns its descriptor, keeps it open until it is dropped with the
        // AsyncFd, and always returns the same one from as_raw_fd.
        let fd = unsafe { AsyncFd::register_with_interest(self.0, Interest::READABLE) }
            .map_err(|e| PathError::Netlink(e.into()))?;
        Ok(Subscription { fd, buf: vec![0; RECV_BUF] })
    }
}

impl Subscription {
    /// Waits for notifications and reads every one that is queued.
    pub(crate) async fn next(&mut self) -> Result<Drained, PathError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(PathError::Netlink)?;
            let mut drained = Drained::default();
            loop {
                match guard.try_io(|fd| fd.get_ref().recv(&mut &mut self.buf[..], 0)) {
                    Ok(Ok(n)) => {
                        // A notification only says "read again": counted, never decoded (a
                        // link message's dozens of attributes cost milliseconds in a debug
                        // build, on the way to a carrier loss that must not wait).
                        drained.changes += frames(&self.buf[..n.min(self.buf.len())]).count()
                    }
                    Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        drained.overflowed = true
                    }
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(Err(e)) => return Err(PathError::Netlink(e)),
                    Err(_would_block) => break,
                }
            }
            if drained.changes > 0 || drained.overflowed {
                return Ok(drained);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator, so failures reproduce.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn real_dump_message() -> Vec<u8> {
        let mut m = LinkMessage::default();
        m.header.index = 3;
        m.attributes.push(LinkAttribute::IfName("eth0".into()));
        m.attributes.push(LinkAttribute::Mtu(1500));
        let mut msg = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::NewLink(m)),
        );
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    #[test]
    fn a_real_message_round_trips_into_an_interface() {
        let buf = real_dump_message();
        let msgs: Vec<_> = messages(&buf).collect::<Result<_, _>>().unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) = msgs[0].payload.clone()
        else {
            panic!("{msgs:?}")
        };
        let iface = interface(l).unwrap();
        assert_eq!((iface.name.as_str(), iface.index, iface.mtu), ("eth0", 3, 1500));
    }

    #[test]
    fn random_and_truncated_input_never_panics() {
        let good = real_dump_message();
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for round in 0..20_000 {
            let mut buf = good.clone();
            buf.extend_from_slice(&good);
            match round % 3 {
                0 => buf.truncate(usize::try_from(xorshift(&mut state)).unwrap_or(0) % buf.len()),
                1 => {
                    for _ in 0..4 {
                        let i = usize::try_from(xorshift(&mut state)).unwrap_or(0) % buf.len();
                        buf[i] = xorshift(&mut state).to_le_bytes()[0];
                    }
                }
                _ => {
                    buf = (0..(xorshift(&mut state) % 200))
                        .map(|_| xorshift(&mut state).to_le_bytes()[0])
                        .collect()
                }
            }
            for m in messages(&buf).flatten() {
                if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) = m.payload {
                    let _ = interface(l);
                }
            }
        }
    }
}
