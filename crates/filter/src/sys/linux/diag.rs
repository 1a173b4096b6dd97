//! Finding the socket behind a flow with sock_diag (NETLINK_SOCK_DIAG, one exact lookup per
//! flow, `include/uapi/linux/inet_diag.h`; a batch of flows' lookups share a datagram): its
//! owner's uid and its inode, which procfs turns into a process.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use crate::flow::{FlowKey, Transport};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
/// `inet_diag_msg`: family, state, timer, retrans, the 48-byte socket id, expires, rqueue,
/// wqueue, uid, inode.
const MSG_LEN: usize = 72;

/// A socket found by sock_diag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Socket {
    /// Its owner.
    pub(crate) uid: u32,
    /// Its inode (`socket:[inode]` among a process's descriptors).
    pub(crate) inode: u64,
}

/// A sock_diag socket.
#[derive(Debug)]
pub(crate) struct Diag {
    fd: OwnedFd,
    seq: u32,
}

impl Diag {
    /// Opens one in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        let fd = super::netlink(NETLINK_SOCK_DIAG, false)?;
        // A lookup the kernel never answers fails after a second instead of hanging.
        let tv = libc::timeval { tv_sec: 1, tv_usec: 0 };
        let _ = super::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv);
        Ok(Self { fd, seq: 0 })
    }

    /// The local socket of each outbound flow, in order: `None` where there is none (it was
    /// closed already, or the packet is the kernel's own). The lookups go out in datagrams of
    /// up to [`CHUNK`] requests, and the answers are read back together.
    pub(crate) fn find(&mut self, keys: &[FlowKey]) -> io::Result<Vec<Option<Socket>>> {
        let direct: Vec<(libc::c_int, SocketAddr, SocketAddr)> = keys.iter().map(ids).collect();
        let mut found = self.lookup(&direct)?;
        // A dual-stack IPv6 socket talking IPv4 is found under its mapped addresses.
        let mapped: Vec<(usize, (libc::c_int, SocketAddr, SocketAddr))> = direct
            .iter()
            .enumerate()
            .filter(|(i, _)| found[*i].is_none())
            .filter_map(|(i, (proto, src, dst))| match (src.ip(), dst.ip()) {
                (IpAddr::V4(a), IpAddr::V4(b)) => Some((
                    i,
                    (
                        *proto,
                        SocketAddr::new(IpAddr::V6(a.to_ipv6_mapped()), src.port()),
                        SocketAddr::new(IpAddr::V6(b.to_ipv6_mapped()), dst.port()),
                    ),
                )),
                _ => None,
            })
            .collect();
        if !mapped.is_empty() {
            let ids: Vec<_> = mapped.iter().map(|(_, id)| *id).collect();
            for ((i, _), s) in mapped.iter().zip(self.lookup(&ids)?) {
                found[*i] = s;
            }
        }
        Ok(found)
    }

    fn lookup(
        &mut self,
        ids: &[(libc::c_int, SocketAddr, SocketAddr)],
    ) -> io::Result<Vec<Option<Socket>>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(CHUNK) {
            let first = self.seq.wrapping_add(1);
            let mut req = Vec::with_capacity(72 * chunk.len());
            for (proto, src, dst) in chunk {
                self.seq = self.seq.wrapping_add(1);
                request(&mut req, self.seq, *proto, *src, *dst)?;
            }
            // SAFETY: send(2) from a live buffer of the given length.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut answers: Vec<Option<Option<Socket>>> = vec![None; chunk.len()];
            let mut left = chunk.len();
            let mut buf = vec![0u8; 64 * 1024];
            while left > 0 {
                // SAFETY: recv(2) into a live buffer of the given length.
                let n = unsafe {
                    libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                };
                let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
                for (seq, answer) in answers_in(&buf[..n]) {
                    let at = seq.wrapping_sub(first) as usize;
                    let Some(slot @ None) = answers.get_mut(at) else { continue };
                    *slot = Some(match answer {
                        Answer::Found(s) => Some(s),
                        Answer::Missing => None,
                        Answer::Error(code) => {
                            // One failed lookup leaves that flow unattributed, not the rest.
                            tracing::debug!("sock_diag: {}", io::Error::from_raw_os_error(code));
                            None
                        }
                    });
                    left -= 1;
                }
            }
            out.extend(answers.into_iter().map(Option::flatten));
        }
        Ok(out)
    }
}

/// At most this many lookups go out in one datagram (their answers, about 1 KiB each in the
/// receive buffer, stay well below its size).
const CHUNK: usize = 64;

/// The socket id sock_diag looks an outbound flow up by: protocol, source, destination.
fn ids(key: &FlowKey) -> (libc::c_int, SocketAddr, SocketAddr) {
    match key.transport {
        Transport::Tcp => (libc::IPPROTO_TCP, key.local, key.remote),
        // The kernel's UDP lookup reads the id as a packet arriving at the socket: the
        // peer is the source ("swapped for historical reasons", net/ipv4/udp_diag.c).
        Transport::Udp => (libc::IPPROTO_UDP, key.remote, key.local),
    }
}

/// Appends one exact-match request (`inet_diag_req_v2`) to `req`.
fn request(
    req: &mut Vec<u8>,
    seq: u32,
    proto: libc::c_int,
    src: SocketAddr,
    dst: SocketAddr,
) -> io::Result<()> {
    let family = if src.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let mut body = Vec::with_capacity(56);
    body.push(u8::try_from(family).unwrap_or(0));
    body.push(u8::try_from(proto).unwrap_or(0));
    body.extend_from_slice(&[0, 0]); // ext, pad
    body.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    body.extend_from_slice(&src.port().to_be_bytes());
    body.extend_from_slice(&dst.port().to_be_bytes());
    body.extend_from_slice(&addr16(src.ip()));
    body.extend_from_slice(&addr16(dst.ip()));
    body.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    body.extend_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    super::push_message(req, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, &body)
}

fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&a.octets());
            out
        }
        IpAddr::V6(a) => a.octets(),
    }
}

enum Answer {
    Found(Socket),
    Missing,
    Error(i32),
}

/// The answers in one datagram, each with its sequence number; a message that does not parse
/// ends the walk.
fn answers_in(buf: &[u8]) -> Vec<(u32, Answer)> {
    let mut out = Vec::new();
    for (kind, seq, body) in super::messages(buf) {
        let u32_at =
            |o: usize| u32::from_ne_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
        match kind {
            NLMSG_ERROR if body.len() >= 4 => {
                let code = -i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                let a = if code == libc::ENOENT || code == 0 {
                    Answer::Missing
                } else {
                    Answer::Error(code)
                };
                out.push((seq, a));
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= MSG_LEN => {
                out.push((
                    seq,
                    Answer::Found(Socket { uid: u32_at(64), inode: u64::from(u32_at(68)) }),
                ));
            }
            _ => {}
        }
    }
    out
}
