//! The Linux host's kernel parts: NFQUEUE, the firewall rules, sock_diag and procfs.

pub(crate) mod bpf;
pub(crate) mod closes;
pub(crate) mod conntrack;
pub(crate) mod diag;
pub mod nfqueue;
pub(crate) mod procfs;
pub(crate) mod raw;
pub(crate) mod tables;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A netlink socket of `protocol` (`NETLINK_*`) in the calling thread's network namespace,
/// close-on-exec, non-blocking when `nonblocking`.
pub(crate) fn netlink(protocol: libc::c_int, nonblocking: bool) -> io::Result<OwnedFd> {
    let extra = if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC | extra, protocol)
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A netlink socket of `protocol` in the multicast `groups` (group n is bit n - 1), bound as
/// ss(8) binds it (measured here: a socket that joined them with NETLINK_ADD_MEMBERSHIP
/// alone got nothing), with room for bursts (what does not fit is lost: ENOBUFS), ready to
/// be awaited.
pub(crate) fn subscribed(
    protocol: libc::c_int,
    groups: u32,
) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    let fd = netlink(protocol, true)?;
    // SAFETY: sockaddr_nl is plain data; zeroed, it is a valid one to fill in.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).unwrap_or(16);
    addr.nl_groups = groups;
    // SAFETY: bind(2) with a live sockaddr_nl and its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            libc::socklen_t::try_from(size_of::<libc::sockaddr_nl>()).unwrap_or(12),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let _ = setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4u32 << 20);
    // SAFETY: `fd` is an open, nonblocking socket that the AsyncFd owns from here on.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// The netlink messages in a datagram from the kernel: each one's type, sequence number and
/// body (after the 16-byte header). A message whose length is wrong ends the walk.
pub(crate) fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::try_from(u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?)).ok()?;
        if len < 16 || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let seq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        let body = &buf[16..len];
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, seq, body))
    })
}

/// The attributes in `buf`: each one's type (without the nested and byte-order flags) and
/// value. An attribute whose length is wrong ends the walk.
pub(crate) fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes(buf.get(..2)?.try_into().ok()?));
        if len < 4 || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        let value = &buf[4..len];
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, value))
    })
}

/// Appends a netlink message to the kernel (type `kind`, `flags`, sequence `seq`) carrying
/// `body`: what [`messages`] reads back.
pub(crate) fn push_message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    body: &[u8],
) -> io::Result<()> {
    let total =
        u32::try_from(16 + body.len()).map_err(|_| io::Error::other("netlink message too long"))?;
    out.extend_from_slice(&total.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
    out.extend_from_slice(body);
    Ok(())
}

/// Appends attribute `kind` holding `value`, padded to 4 bytes: what [`attributes`] reads
/// back.
pub(crate) fn push_attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) -> io::Result<()> {
    let len = u16::try_from(4 + value.len())
        .map_err(|_| io::Error::other("netlink attribute too long"))?;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(out.len().next_multiple_of(4), 0);
    Ok(())
}

/// setsockopt(2) with a value of plain data `T` (an integer, a `timeval`).
pub(crate) fn setsockopt<T: Copy>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX);
    // SAFETY: setsockopt(2) with a pointer to a live `T` and its size.
    let r =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), len) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}
