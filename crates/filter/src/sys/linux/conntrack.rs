//! Deleting conntrack entries through ctnetlink (NETLINK_NETFILTER, `IPCTNL_MSG_CT_DELETE`,
//! include/uapi/linux/netfilter/nfnetlink_conntrack.h), so that a flow's next packet is a new
//! flow's and asked about afresh.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{push_attribute, push_message};
use crate::flow::{FlowKey, Transport};

const NETLINK_NETFILTER: libc::c_int = 12;
/// `(NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE`.
const CT_DELETE: u16 = (1 << 8) | 2;
const NLM_F_REQUEST: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

/// A ctnetlink socket; deletions are sent and not waited for.
pub(crate) struct Conntrack {
    fd: OwnedFd,
}

impl Conntrack {
    /// Opens one in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        Ok(Self { fd: super::netlink(NETLINK_NETFILTER, true)? })
    }

    /// Deletes the entry of flow `key`, if there is one, whichever end started it (ctnetlink
    /// finds an entry by either direction's tuple). Errors (no such entry) are not asked for;
    /// the kernel's error replies, if any, are never read.
    pub(crate) fn delete(&self, key: FlowKey) -> io::Result<()> {
        let msg = delete_message(key)?;
        // SAFETY: send(2) from a live buffer of the given length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }
}

/// The delete request for the entry one of whose directions is `key`'s (this host to the
/// peer).
pub(crate) fn delete_message(key: FlowKey) -> io::Result<Vec<u8>> {
    let (family, ip) = match (key.local.ip(), key.remote.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut ip = Vec::new();
            push_attribute(&mut ip, 1, &s.octets())?; // CTA_IP_V4_SRC
            push_attribute(&mut ip, 2, &d.octets())?; // CTA_IP_V4_DST
            (libc::AF_INET, ip)
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a.octets(),
                IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            };
            let mut ip = Vec::new();
            push_attribute(&mut ip, 3, &v6(s))?; // CTA_IP_V6_SRC
            push_attribute(&mut ip, 4, &v6(d))?; // CTA_IP_V6_DST
            (libc::AF_INET6, ip)
        }
    };
    let proto_num: u8 = match key.transport {
        Transport::Tcp => 6,
        Transport::Udp => 17,
    };
    let mut proto = Vec::new();
    push_attribute(&mut proto, CTA_PROTO_NUM, &[proto_num])?;
    push_attribute(&mut proto, CTA_PROTO_SRC_PORT, &key.local.port().to_be_bytes())?;
    push_attribute(&mut proto, CTA_PROTO_DST_PORT, &key.remote.port().to_be_bytes())?;
    let mut tuple = Vec::new();
    push_attribute(&mut tuple, CTA_TUPLE_IP | NLA_F_NESTED, &ip)?;
    push_attribute(&mut tuple, CTA_TUPLE_PROTO | NLA_F_NESTED, &proto)?;
    let mut body = vec![u8::try_from(family).unwrap_or(0), 0, 0, 0]; // nfgenmsg
    push_attribute(&mut body, CTA_TUPLE_ORIG | NLA_F_NESTED, &tuple)?;
    let mut msg = Vec::with_capacity(16 + body.len());
    push_message(&mut msg, CT_DELETE, NLM_F_REQUEST, 0, &body)?;
    Ok(msg)
}
