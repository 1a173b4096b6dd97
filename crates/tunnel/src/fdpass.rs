//! File descriptors over the contract socket (SCM_RIGHTS): the TUN device and bypass sockets
//! travel with the first byte of the line that announces them.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// At most this many descriptors are accepted with one read; more are closed.
const MAX_FDS: usize = 4;

/// One `sendmsg` of `bytes` with `fd` attached on a stream socket: the number of bytes sent,
/// or `WouldBlock`.
pub(crate) fn send_with_fd(socket: RawFd, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<usize> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(socket, &[IoSlice::new(bytes)], &cmsg, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(io::Error::from)
}

/// One `recvmsg`: the bytes read and the descriptors that came with them (owned, close on
/// exec).
pub(crate) fn recv_with_fds(socket: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(socket, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel installed these descriptors in this process for us alone.
            fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        }
    }
    Ok((msg.bytes, fds))
}
