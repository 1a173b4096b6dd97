//! TCP and UDP sockets as they are destroyed, from sock_diag's destroy notifications (the
//! `SKNLGRP_INET*_DESTROY` groups; CAP_NET_ADMIN): each with its addresses, and a TCP socket
//! with its `tcp_info` counters. A connection's socket is destroyed when it is
//! closed and done (its TIME_WAIT, if any, is kept by a smaller socket), so the report comes
//! at the close, not minutes later as conntrack's would.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::flow::{FlowKey, Transport};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `enum sknetlink_groups`: the TCP and UDP destroy groups of each family.
const GROUPS: [u32; 4] = [1, 2, 3, 4];
const INET_DIAG_INFO: u16 = 2;
const INET_DIAG_PROTOCOL: u16 = 18;
/// `inet_diag_msg`'s size; attributes follow it.
const MSG_LEN: usize = 72;
/// Where `struct tcp_info` (include/uapi/linux/tcp.h) keeps the counters: `tcpi_bytes_acked`
/// and `tcpi_bytes_received` (u64), then `tcpi_segs_out` and `tcpi_segs_in` (u32).
const BYTES_ACKED: usize = 120;
const BYTES_RECEIVED: usize = 128;
const SEGS_OUT: usize = 136;
const SEGS_IN: usize = 140;

/// What a closed TCP connection carried, from its socket's `tcp_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counters {
    /// Bytes this host sent that the peer acknowledged.
    pub(crate) bytes_out: u64,
    /// Bytes received from the peer.
    pub(crate) bytes_in: u64,
    /// Segments sent.
    pub(crate) segments_out: u64,
    /// Segments received.
    pub(crate) segments_in: u64,
}

/// A socket destroyed: its flow (this host's side first; the peer is unspecified for a UDP
/// socket that was not connected) and, for TCP, its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed {
    pub(crate) key: FlowKey,
    pub(crate) counters: Option<Counters>,
}

/// A sock_diag socket in the destroy groups.
pub(crate) struct Closes {
    fd: AsyncFd<OwnedFd>,
    buf: Vec<u8>,
}

impl Closes {
    /// Joins the destroy groups in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        let groups = GROUPS.iter().fold(0, |mask, g| mask | 1 << (g - 1));
        let fd = super::subscribed(NETLINK_SOCK_DIAG, groups)?;
        Ok(Self { fd, buf: vec![0u8; 256 * 1024] })
    }

    /// The next sockets destroyed; `Ok(None)` when notifications were lost (the receive
    /// buffer overflowed).
    pub(crate) async fn next(&mut self) -> io::Result<Option<Vec<Closed>>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let buf = &mut self.buf;
            let got = guard.try_io(|fd| {
                // The group it was sent to says the protocol: the notification itself may not.
                // SAFETY: sockaddr_nl is plain data; zeroed, it is a valid one to fill in.
                let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
                let mut from_len =
                    libc::socklen_t::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(12);
                // SAFETY: recvfrom(2) into a live buffer and a live sockaddr_nl, with their
                // sizes.
                let n = unsafe {
                    libc::recvfrom(
                        fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&raw mut from).cast(),
                        &raw mut from_len,
                    )
                };
                let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
                // Groups 1 and 3 (bits 0 and 2) are TCP's, 2 and 4 UDP's.
                let udp = from.nl_groups & 0b1010 != 0 && from.nl_groups & 0b0101 == 0;
                Ok((n, if udp { Transport::Udp } else { Transport::Tcp }))
            });
            match got {
                Ok(Ok((n, group))) => return Ok(Some(closed_in(&self.buf[..n], group))),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
    }
}

/// The destroyed sockets in one datagram, sent to `group`'s protocol; what does not parse is
/// skipped, and a message whose length is wrong ends the walk.
pub(crate) fn closed_in(buf: &[u8], group: Transport) -> Vec<Closed> {
    super::messages(buf)
        .filter(|(kind, _, _)| *kind == SOCK_DIAG_BY_FAMILY)
        .filter_map(|(_, _, body)| closed(body, group))
        .collect()
}

/// One `inet_diag_msg` and its attributes.
fn closed(body: &[u8], group: Transport) -> Option<Closed> {
    let msg = body.get(..MSG_LEN)?;
    let family = libc::c_int::from(msg[0]);
    let port = |o: usize| u16::from_be_bytes([msg[o], msg[o + 1]]);
    let addr = |o: usize| -> Option<IpAddr> {
        let a: [u8; 16] = msg.get(o..o + 16)?.try_into().ok()?;
        Some(match family {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            // A dual-stack socket talking IPv4 names it by mapped addresses.
            libc::AF_INET6 => {
                Ipv6Addr::from(a).to_ipv4_mapped().map_or(IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V4)
            }
            _ => return None,
        })
    };
    let (local, remote) = (addr(8)?, addr(24)?);
    let mut transport = Some(group);
    let mut counters = None;
    for (kind, value) in super::attributes(&body[MSG_LEN..]) {
        match kind {
            INET_DIAG_PROTOCOL => {
                transport = match value.first() {
                    Some(6) => Some(Transport::Tcp),
                    Some(17) => Some(Transport::Udp),
                    _ => None,
                }
            }
            INET_DIAG_INFO => {
                let u64_at = |o: usize| -> Option<u64> {
                    Some(u64::from_ne_bytes(value.get(o..o + 8)?.try_into().ok()?))
                };
                let u32_at = |o: usize| -> Option<u64> {
                    Some(u64::from(u32::from_ne_bytes(value.get(o..o + 4)?.try_into().ok()?)))
                };
                counters = (|| {
                    Some(Counters {
                        bytes_out: u64_at(BYTES_ACKED)?,
                        bytes_in: u64_at(BYTES_RECEIVED)?,
                        segments_out: u32_at(SEGS_OUT)?,
                        segments_in: u32_at(SEGS_IN)?,
                    })
                })();
            }
            _ => {}
        }
    }
    let transport = transport?;
    Some(Closed {
        key: FlowKey {
            transport,
            local: SocketAddr::new(local, port(4)),
            remote: SocketAddr::new(remote, port(6)),
        },
        counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destroy notification as the kernel sends it: an IPv4-mapped dual-stack socket with
    /// its protocol and a `tcp_info`.
    fn notification(info: &[u8]) -> Vec<u8> {
        let mut msg = vec![0u8; MSG_LEN];
        msg[0] = u8::try_from(libc::AF_INET6).unwrap_or(0);
        msg[4..6].copy_from_slice(&40000u16.to_be_bytes());
        msg[6..8].copy_from_slice(&443u16.to_be_bytes());
        msg[8..24].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets());
        msg[24..40].copy_from_slice(&Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets());
        for (kind, value) in [(INET_DIAG_PROTOCOL, &[6u8][..]), (INET_DIAG_INFO, info)] {
            crate::sys::linux::push_attribute(&mut msg, kind, value).unwrap();
        }
        let mut out = Vec::new();
        crate::sys::linux::push_message(&mut out, SOCK_DIAG_BY_FAMILY, 0, 0, &msg).unwrap();
        out
    }

    #[test]
    fn destroyed_sockets_are_read_with_their_counters_and_garbage_is_harmless() {
        let mut info = vec![0u8; 232];
        info[BYTES_ACKED..BYTES_ACKED + 8].copy_from_slice(&50_000_000u64.to_ne_bytes());
        info[BYTES_RECEIVED..BYTES_RECEIVED + 8].copy_from_slice(&3u64.to_ne_bytes());
        info[SEGS_OUT..SEGS_OUT + 4].copy_from_slice(&900u32.to_ne_bytes());
        info[SEGS_IN..SEGS_IN + 4].copy_from_slice(&450u32.to_ne_bytes());
        let one = notification(&info);
        let two = [one.clone(), notification(&info[..100])].concat();
        let got = closed_in(&two, Transport::Udp);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].key.to_string(), "tcp 10.0.0.1:40000 -> 10.0.0.2:443");
        assert_eq!(
            got[0].counters,
            Some(Counters {
                bytes_out: 50_000_000,
                bytes_in: 3,
                segments_out: 900,
                segments_in: 450
            })
        );
        assert_eq!(got[1].counters, None, "a tcp_info too short for the counters");
        for n in 0..one.len() {
            let _ = closed_in(&one[..n], Transport::Tcp);
        }
        assert!(closed_in(&[0xff; 64], Transport::Tcp).is_empty());
    }
}
