//! Deleting conntrack entries through ctnetlink (NETLINK_NETFILTER, `IPCTNL_MSG_CT_DELETE`,
//! include/uapi/linux/netfilter/nfnetlink_conntrack.h), so that a flow's next packet is a new
//! flow's and asked about afresh; and hearing of entries as they end (the destroy group), with
//! what each carried when the kernel counts it (`nf_conntrack_acct`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

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
const CTA_COUNTERS_ORIG: u16 = 9;
const CTA_COUNTERS_REPLY: u16 = 10;
const CTA_COUNTERS_PACKETS: u16 = 1;
const CTA_COUNTERS_BYTES: u16 = 2;
/// `NFNLGRP_CONNTRACK_DESTROY` (include/uapi/linux/netfilter/nfnetlink.h).
const GROUP_DESTROY: u32 = 3;
/// Where the kernel is told to count each entry's packets and bytes (per network namespace;
/// only entries made after it is set are counted).
pub(crate) const ACCT: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";

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

/// Conntrack counting each entry's packets and bytes while the host runs: turned on when it
/// was off, and off again when this is dropped. A host that turned it on says so in a file of
/// its namespace's ([`acct_marker`], naming its pid), so that after a killed host
/// [`restore_leftover_acct`] (`nw filter down`) turns it off again, and a host that starts
/// after a killed one takes the duty over.
pub(crate) struct Acct {
    was_off: bool,
}

/// Where a host that turned counting on says so: one file per network namespace, beside the
/// namespace's other state files (and swept with them when the namespace is gone).
fn acct_marker() -> std::path::PathBuf {
    let ns = nw_provider::Namespace::current().key();
    crate::host::state_dir().join(format!("{ns}.conntrack-acct"))
}

/// The pid of a host that is gone and left counting on that was off before it, if one did.
pub(crate) fn leftover_acct() -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(acct_marker()).ok()?.trim().parse().ok()?;
    (!nw_provider::alive(pid)).then_some(pid)
}

/// Turns counting off again after a host that turned it on was killed; returns that host's
/// pid, or `None` when no host is gone that did.
pub(crate) fn restore_leftover_acct() -> io::Result<Option<u32>> {
    let Some(pid) = leftover_acct() else { return Ok(None) };
    std::fs::write(ACCT, "0")?;
    std::fs::remove_file(acct_marker())?;
    Ok(Some(pid))
}

impl Acct {
    /// Turns counting on in the calling thread's network namespace (procfs is per namespace).
    pub(crate) fn on() -> io::Result<Self> {
        // Counting that a killed host turned on was off before it: ours to turn off now.
        let was_off = std::fs::read_to_string(ACCT)?.trim() == "0" || leftover_acct().is_some();
        if was_off {
            let marker = acct_marker();
            if let Some(dir) = marker.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&marker, std::process::id().to_string())?;
            std::fs::write(ACCT, "1")?;
        }
        Ok(Self { was_off })
    }
}

impl Drop for Acct {
    fn drop(&mut self) {
        if self.was_off {
            let _ = std::fs::write(ACCT, "0");
            let _ = std::fs::remove_file(acct_marker());
        }
    }
}

/// What one direction of an entry carried, as conntrack counts it: whole IP packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Carried {
    pub(crate) packets: u64,
    pub(crate) bytes: u64,
}

/// A conntrack entry that ended: its original direction (who sent the first packet, to whom)
/// and, when the kernel counted them, what each direction carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    pub(crate) transport: Transport,
    pub(crate) from: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) counters: Option<(Carried, Carried)>,
}

/// A ctnetlink socket in the destroy group: entries as they end (a timeout, a deletion).
pub(crate) struct Ends {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl Ends {
    /// Joins the destroy group in the calling thread's network namespace (every entry of
    /// the host ends here, not only ours).
    pub(crate) fn open() -> io::Result<Self> {
        let fd = super::subscribed(NETLINK_NETFILTER, 1 << (GROUP_DESTROY - 1))?;
        Ok(Self { fd, buf: vec![0u8; 256 * 1024] })
    }

    /// The next entries that ended; `Ok(None)` when notifications were lost (the receive
    /// buffer overflowed).
    pub(crate) async fn next(&mut self) -> io::Result<Option<Vec<Ended>>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buf = &mut self.buf;
            let got = guard.try_io(|fd| {
                // SAFETY: recv(2) into a live buffer of the given length.
                let n = unsafe {
                    libc::recv(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                usize::try_from(n).map_err(|_| io::Error::last_os_error())
            });
            match got {
                Ok(Ok(n)) => return Ok(Some(ended_in(&self.buf[..n]))),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

/// The ended TCP and UDP entries in one datagram from the destroy group; what does not parse
/// is skipped, and a message whose length is wrong ends the walk.
pub(crate) fn ended_in(buf: &[u8]) -> Vec<Ended> {
    super::messages(buf)
        .filter(|(kind, _, _)| *kind == CT_DELETE)
        .filter_map(|(_, _, body)| ended(body.get(4..)?))
        .collect()
}

/// One entry's attributes (after its `nfgenmsg`).
fn ended(attributes: &[u8]) -> Option<Ended> {
    let mut tuple = None;
    let (mut orig, mut reply) = (None, None);
    for (kind, value) in super::attributes(attributes) {
        match kind {
            CTA_TUPLE_ORIG => tuple = Some(value),
            CTA_COUNTERS_ORIG => orig = carried(value),
            CTA_COUNTERS_REPLY => reply = carried(value),
            _ => {}
        }
    }
    let (mut from, mut to, mut transport) = (None, None, None);
    let (mut sport, mut dport) = (None, None);
    for (kind, value) in super::attributes(tuple?) {
        match kind {
            CTA_TUPLE_IP => {
                for (kind, a) in super::attributes(value) {
                    let ip = match a.len() {
                        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(a).ok()?)),
                        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a).ok()?)),
                        _ => continue,
                    };
                    match kind {
                        1 | 3 => from = Some(ip), // CTA_IP_V4_SRC, CTA_IP_V6_SRC
                        2 | 4 => to = Some(ip),   // CTA_IP_V4_DST, CTA_IP_V6_DST
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (kind, v) in super::attributes(value) {
                    let port = || Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?));
                    match kind {
                        CTA_PROTO_NUM => {
                            transport = match v.first() {
                                Some(6) => Some(Transport::Tcp),
                                Some(17) => Some(Transport::Udp),
                                _ => None,
                            }
                        }
                        CTA_PROTO_SRC_PORT => sport = port(),
                        CTA_PROTO_DST_PORT => dport = port(),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(Ended {
        transport: transport?,
        from: SocketAddr::new(from?, sport?),
        to: SocketAddr::new(to?, dport?),
        counters: orig.zip(reply),
    })
}

/// A `CTA_COUNTERS_*` nest: packets and bytes, big-endian.
fn carried(nest: &[u8]) -> Option<Carried> {
    let (mut packets, mut bytes) = (None, None);
    for (kind, v) in super::attributes(nest) {
        let n = Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?));
        match kind {
            CTA_COUNTERS_PACKETS => packets = n,
            CTA_COUNTERS_BYTES => bytes = n,
            _ => {}
        }
    }
    Some(Carried { packets: packets?, bytes: bytes? })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destroy event as the kernel sends it: the original tuple, and counters when `acct`.
    fn event(acct: bool) -> Vec<u8> {
        let key = FlowKey {
            transport: Transport::Udp,
            local: "10.0.0.1:5353".parse().unwrap(),
            remote: "10.0.0.2:53".parse().unwrap(),
        };
        // The delete request carries the original tuple as the event does.
        let request = delete_message(key).unwrap();
        let (_, _, body) = super::super::messages(&request).next().unwrap();
        let mut body = body.to_vec();
        if acct {
            for (nest, packets, bytes) in
                [(CTA_COUNTERS_ORIG, 3u64, 300u64), (CTA_COUNTERS_REPLY, 2, 1000)]
            {
                let mut counters = Vec::new();
                push_attribute(&mut counters, CTA_COUNTERS_PACKETS, &packets.to_be_bytes())
                    .unwrap();
                push_attribute(&mut counters, CTA_COUNTERS_BYTES, &bytes.to_be_bytes()).unwrap();
                push_attribute(&mut body, nest | NLA_F_NESTED, &counters).unwrap();
            }
        }
        let mut out = Vec::new();
        push_message(&mut out, CT_DELETE, 0, 0, &body).unwrap();
        out
    }

    #[test]
    fn ended_entries_are_read_with_their_counters_and_garbage_is_harmless() {
        let both = [event(true), event(false)].concat();
        let got = ended_in(&both);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].transport, Transport::Udp);
        assert_eq!(
            (got[0].from.to_string(), got[0].to.to_string()),
            ("10.0.0.1:5353".into(), "10.0.0.2:53".into())
        );
        let orig = Carried { packets: 3, bytes: 300 };
        let reply = Carried { packets: 2, bytes: 1000 };
        assert_eq!(got[0].counters, Some((orig, reply)));
        assert_eq!(got[1].counters, None, "not counted: acct off");
        let one = event(true);
        for n in 0..one.len() {
            let _ = ended_in(&one[..n]);
        }
        assert!(ended_in(&[0xff; 64]).is_empty());
    }
}
