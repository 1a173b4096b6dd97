//! rtnetlink requests for the host: the tunnel interface's MTU and addresses, the routes of the
//! tunnel's own table, its policy rules — each acknowledged by the kernel — and the dumps that
//! read them back. Blocking: called on a blocking thread, never on the async runtime.

use std::collections::BTreeSet;
use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

use crate::settings::{Prefix, TableRoute};

/// The main routing table.
const MAIN_TABLE: u32 = 254;
const RECV_BUF: usize = 64 * 1024;

/// One policy rule of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Rule {
    /// IPv6 (`true`) or IPv4.
    pub(crate) v6: bool,
    pub(crate) priority: u32,
    pub(crate) table: u32,
    /// Matches packets with this firewall mark.
    pub(crate) fwmark: Option<u32>,
}

impl Rule {
    /// Sockets marked `mark` look up the main table (they bypass the tunnel).
    pub(crate) fn bypass(v6: bool, priority: u32, mark: u32) -> Self {
        Self { v6, priority, table: MAIN_TABLE, fwmark: Some(mark) }
    }
    /// Everything else looks up the tunnel's table first.
    pub(crate) fn lookup(v6: bool, priority: u32, table: u32) -> Self {
        Self { v6, priority, table, fwmark: None }
    }
}

/// A route-netlink socket that sends one request at a time.
pub(crate) struct Rtnl {
    socket: Socket,
    seq: u32,
}

impl Rtnl {
    pub(crate) fn new() -> io::Result<Self> {
        let socket = Socket::new(NETLINK_ROUTE)?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self { socket, seq: 0 })
    }

    /// Sends a request and waits for the kernel's acknowledgement (or its error).
    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(msg, NLM_F_REQUEST | NLM_F_ACK | flags).map(drop)
    }

    fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(msg, NLM_F_REQUEST | NLM_F_DUMP)
    }

    fn exchange(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let mut replies = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let n = self.socket.recv(&mut &mut buf[..], 0)?;
            let mut rest = buf.get(..n).unwrap_or(&[]);
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if len < 16 || len > rest.len() {
                    return Err(io::Error::other("malformed rtnetlink reply"));
                }
                let (this, next) = rest.split_at(len);
                rest = next.get(len.next_multiple_of(4) - len..).unwrap_or(&[]);
                let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(this) else {
                    continue;
                };
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    // A plain GET is answered by one message, with no DONE after it.
                    NetlinkPayload::InnerMessage(m)
                        if flags & NLM_F_DUMP == 0 && flags & NLM_F_ACK == 0 =>
                    {
                        replies.push(m);
                        return Ok(replies);
                    }
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(c) => Err(io::Error::from_raw_os_error(-c.get())),
                        };
                    }
                    _ => {}
                }
            }
        }
    }

    /// Sets the link's MTU and brings it up.
    pub(crate) fn set_link(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        m.attributes.push(LinkAttribute::Mtu(mtu));
        self.ack(RouteNetlinkMessage::SetLink(m), 0)
    }

    /// The link's MTU and whether it is up.
    pub(crate) fn link(&mut self, index: u32) -> io::Result<(u32, bool)> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        for reply in self.exchange(RouteNetlinkMessage::GetLink(m), NLM_F_REQUEST)? {
            if let RouteNetlinkMessage::NewLink(l) = reply
                && l.header.index == index
            {
                let mtu = l
                    .attributes
                    .iter()
                    .find_map(|a| if let LinkAttribute::Mtu(m) = a { Some(*m) } else { None })
                    .unwrap_or(0);
                return Ok((mtu, l.header.flags.contains(LinkFlags::Up)));
            }
        }
        Err(io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// Deletes the link.
    pub(crate) fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        self.ack(RouteNetlinkMessage::DelLink(m), 0)
    }

    /// The link's addresses, without the IPv6 link-local one the kernel adds by itself.
    pub(crate) fn addresses(&mut self, index: u32) -> io::Result<BTreeSet<Prefix>> {
        let mut out = BTreeSet::new();
        for reply in self.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))? {
            let RouteNetlinkMessage::NewAddress(a) = reply else { continue };
            if a.header.index != index {
                continue;
            }
            // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
            // otherwise.
            let mut addr = None;
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Local(ip) => addr = Some(*ip),
                    AddressAttribute::Address(ip) if addr.is_none() => addr = Some(*ip),
                    _ => {}
                }
            }
            let Some(ip) = addr else { continue };
            if let IpAddr::V6(v6) = ip
                && v6.is_unicast_link_local()
            {
                continue;
            }
            out.extend(Prefix::new(ip, a.header.prefix_len));
        }
        Ok(out)
    }

    fn address_message(index: u32, p: Prefix) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = family(p.addr());
        m.header.prefix_len = p.len();
        m.header.index = index;
        if p.addr().is_ipv6() {
            // No duplicate address detection: the address is usable at once, not after ~1 s.
            m.header.flags = AddressHeaderFlags::Nodad;
        }
        m.attributes.push(AddressAttribute::Local(p.addr()));
        m.attributes.push(AddressAttribute::Address(p.addr()));
        m
    }

    pub(crate) fn add_address(&mut self, index: u32, p: Prefix) -> io::Result<()> {
        let m = Self::address_message(index, p);
        self.ack(RouteNetlinkMessage::NewAddress(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    pub(crate) fn delete_address(&mut self, index: u32, p: Prefix) -> io::Result<()> {
        let m = Self::address_message(index, p);
        self.ack(RouteNetlinkMessage::DelAddress(m), 0)
    }

    /// The routes in `table` (both families): unicast routes out of `index` and throw routes.
    pub(crate) fn table(&mut self, table: u32, index: u32) -> io::Result<BTreeSet<TableRoute>> {
        let mut out = BTreeSet::new();
        for reply in self.dump(RouteNetlinkMessage::GetRoute(RouteMessage::default()))? {
            let RouteNetlinkMessage::NewRoute(r) = reply else { continue };
            let mut in_table = u32::from(r.header.table);
            let mut dest = None;
            let mut oif = None;
            for attr in &r.attributes {
                match attr {
                    RouteAttribute::Table(t) => in_table = *t,
                    RouteAttribute::Destination(d) => dest = ip(d),
                    RouteAttribute::Oif(o) => oif = Some(*o),
                    _ => {}
                }
            }
            if in_table != table {
                continue;
            }
            let addr = dest.unwrap_or(match r.header.address_family {
                AddressFamily::Inet6 => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
                _ => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            });
            let Some(prefix) = Prefix::new(addr, r.header.destination_prefix_length) else {
                continue;
            };
            match r.header.kind {
                RouteType::Throw => {
                    out.insert(TableRoute { prefix, tunnel: false });
                }
                RouteType::Unicast if oif == Some(index) => {
                    out.insert(TableRoute { prefix, tunnel: true });
                }
                // Anything else in our table (someone else's route) shows as a difference.
                _ => {
                    out.insert(TableRoute { prefix, tunnel: false });
                }
            }
        }
        Ok(out)
    }

    fn route_message(table: u32, index: u32, r: TableRoute) -> RouteMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family(r.prefix.addr());
        m.header.destination_prefix_length = r.prefix.len();
        m.header.table = u8::try_from(table).unwrap_or(0);
        m.header.protocol = RouteProtocol::Static;
        if r.tunnel {
            m.header.kind = RouteType::Unicast;
            m.header.scope = RouteScope::Link;
            m.attributes.push(RouteAttribute::Oif(index));
        } else {
            m.header.kind = RouteType::Throw;
            m.header.scope = RouteScope::Universe;
        }
        m.attributes.push(RouteAttribute::Table(table));
        if r.prefix.len() > 0 {
            m.attributes.push(RouteAttribute::Destination(match r.prefix.addr() {
                IpAddr::V4(a) => RouteAddress::Inet(a),
                IpAddr::V6(a) => RouteAddress::Inet6(a),
            }));
        }
        m
    }

    pub(crate) fn add_route(&mut self, table: u32, index: u32, r: TableRoute) -> io::Result<()> {
        let m = Self::route_message(table, index, r);
        self.ack(RouteNetlinkMessage::NewRoute(m), NLM_F_CREATE | NLM_F_EXCL)
    }

    pub(crate) fn delete_route(&mut self, table: u32, index: u32, r: TableRoute) -> io::Result<()> {
        let m = Self::route_message(table, index, r);
        self.ack(RouteNetlinkMessage::DelRoute(m), 0)
    }

    /// The rules that send lookups to `table`, or bypass rules with `mark`.
    pub(crate) fn rules(&mut self, table: u32, mark: u32) -> io::Result<BTreeSet<Rule>> {
        let all = self.all_rules()?;
        Ok(all.into_iter().filter(|r| r.table == table || r.fwmark == Some(mark)).collect())
    }

    /// Every policy rule, both families.
    pub(crate) fn all_rules(&mut self) -> io::Result<BTreeSet<Rule>> {
        let mut out = BTreeSet::new();
        for reply in self.dump(RouteNetlinkMessage::GetRule(RuleMessage::default()))? {
            let RouteNetlinkMessage::NewRule(r) = reply else { continue };
            let mut rule = Rule {
                v6: r.header.family == AddressFamily::Inet6,
                priority: 0,
                table: u32::from(r.header.table),
                fwmark: None,
            };
            for attr in &r.attributes {
                match attr {
                    RuleAttribute::Priority(p) => rule.priority = *p,
                    RuleAttribute::Table(t) => rule.table = *t,
                    RuleAttribute::FwMark(m) => rule.fwmark = Some(*m),
                    _ => {}
                }
            }
            out.insert(rule);
        }
        Ok(out)
    }

    fn rule_message(rule: Rule) -> RuleMessage {
        let mut m = RuleMessage::default();
        m.header.family = if rule.v6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        m.header.action = RuleAction::ToTable;
        m.header.table = u8::try_from(rule.table).unwrap_or(0);
        m.header.flags = RuleFlags::empty();
        m.attributes.push(RuleAttribute::Priority(rule.priority));
        m.attributes.push(RuleAttribute::Table(rule.table));
        if let Some(mark) = rule.fwmark {
            m.attributes.push(RuleAttribute::FwMark(mark));
            m.attributes.push(RuleAttribute::FwMask(u32::MAX));
        }
        m
    }

    pub(crate) fn add_rule(&mut self, rule: Rule) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::NewRule(Self::rule_message(rule)), NLM_F_CREATE | NLM_F_EXCL)
    }

    pub(crate) fn delete_rule(&mut self, rule: Rule) -> io::Result<()> {
        self.ack(RouteNetlinkMessage::DelRule(Self::rule_message(rule)), 0)
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 }
}

fn ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
