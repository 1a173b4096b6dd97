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
