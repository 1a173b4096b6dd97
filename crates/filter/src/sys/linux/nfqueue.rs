//! nfnetlink_queue: binding a queue, reading queued packets, and giving verdicts
//! (`include/uapi/linux/netfilter/nfnetlink_queue.h`). A NETLINK_NETFILTER socket sends
//! CONFIG (BIND, copy parameters, flags) and then reads PACKET messages, each with the packet's
//! id, and answers each with a VERDICT. Parsing is pure and fuzzed: a kernel message that does
//! not parse is skipped, never trusted.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_MARK: u16 = 3;
const NFQA_PAYLOAD: u16 = 10;
const NFQA_UID: u16 = 16;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQA_CFG_MASK: u16 = 4;
const NFQA_CFG_FLAGS: u16 = 5;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_META: u8 = 1;
const NFQNL_COPY_PACKET: u8 = 2;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;

/// At most this many verdicts share one datagram (36 bytes each with a mark: about 36 KiB).
pub const VERDICTS_PER_SEND: usize = 1_024;

/// Accept a packet when the queue is full instead of dropping it.
pub const FLAG_FAIL_OPEN: u32 = 1;
/// Hand GSO packets over whole.
pub const FLAG_GSO: u32 = 4;
/// Report the socket owner's uid and gid.
pub const FLAG_UID_GID: u32 = 8;

/// A packet's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// On to the next hook.
    Accept,
    /// Gone.
    Drop,
    /// Through the same hook again from its start (with a new mark, to match other rules).
    Repeat,
}

impl Verdict {
    fn code(self) -> u32 {
        match self {
            Self::Drop => 0,
            Self::Accept => 1,
            Self::Repeat => 4,
        }
    }
}

/// A queued packet's verdict, to be sent with others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The packet's id.
    pub id: u32,
    /// What becomes of it.
    pub verdict: Verdict,
    /// Its new mark, when it gets one.
    pub mark: Option<u32>,
    /// The bytes it goes on as, from the IP header on, when they are not those queued (the
    /// kernel takes its checksums as they are).
    pub packet: Option<Vec<u8>>,
}

impl Given {
    /// Packet `id` gets `verdict` (and `mark`, when given), as it is.
    pub fn new(id: u32, verdict: Verdict, mark: Option<u32>) -> Self {
        Self { id, verdict, mark, packet: None }
    }
}

/// How much of each packet the kernel copies to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// Metadata only.
    Meta,
    /// At most this many bytes of each packet.
    Packet(u32),
}

/// One queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queued<'a> {
    /// The id its verdict names.
    pub id: u32,
    /// Its firewall mark (0 when it had none).
    pub mark: u32,
    /// The socket owner's uid, when asked for and known.
    pub uid: Option<u32>,
    /// The netfilter hook it was queued at ([`LOCAL_IN`] for a packet arriving at this host,
    /// 3 for one it sends).
    pub hook: u8,
    /// The copied bytes, from the IP header on.
    pub payload: &'a [u8],
}

/// The hook of packets arriving for this host (`NF_INET_LOCAL_IN`).
pub const LOCAL_IN: u8 = 1;

/// A bound queue.
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
    queue: u16,
}

impl Queue {
    /// Binds queue number `queue` in the calling thread's network namespace, with `copy`, a
    /// kernel-side queue of at most `max_len` packets, and `flags` (`FLAG_*`). The socket is
    /// non-blocking when `nonblocking`.
    pub fn bind(
        queue: u16,
        copy: Copy,
        max_len: u32,
        flags: u32,
        nonblocking: bool,
    ) -> io::Result<Self> {
        let fd = super::netlink(NETLINK_NETFILTER, nonblocking)?;
        // A failure only leaves the default buffer, which the counters then show as drops.
        let big: libc::c_int = 8 << 20;
        let _ = super::setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, big);
        // NETLINK_NO_ENOBUFS keeps an overflow from failing reads.
        let _ =
            super::setsockopt(&fd, libc::SOL_NETLINK, libc::NETLINK_NO_ENOBUFS, 1 as libc::c_int);
        let me = Self { fd, queue };
        me.config(&[(NFQA_CFG_CMD, command(NFQNL_CFG_CMD_BIND))])?;
        let params = match copy {
            Copy::Meta => [&0u32.to_be_bytes()[..], &[NFQNL_COPY_META]].concat(),
            Copy::Packet(n) => [&n.to_be_bytes()[..], &[NFQNL_COPY_PACKET]].concat(),
        };
        me.config(&[
            (NFQA_CFG_PARAMS, params),
            (NFQA_CFG_QUEUE_MAXLEN, max_len.to_be_bytes().to_vec()),
            (NFQA_CFG_MASK, flags.to_be_bytes().to_vec()),
            (NFQA_CFG_FLAGS, flags.to_be_bytes().to_vec()),
        ])?;
        Ok(me)
    }

    /// The queue's number.
    pub fn number(&self) -> u16 {
        self.queue
    }

    /// Reads one datagram of queued packets into `buf`; parse it with [`packets`].
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: recv(2) into a live buffer of the given length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Gives packet `id` its verdict, and a new mark when `mark` is given.
    pub fn verdict(&self, id: u32, verdict: Verdict, mark: Option<u32>) -> io::Result<()> {
        self.verdicts(&[Given::new(id, verdict, mark)])
    }

    /// Gives each packet its verdict (and its new mark, when given), many to a datagram: one
    /// `send` for up to [`VERDICTS_PER_SEND`] of them.
    pub fn verdicts(&self, verdicts: &[Given]) -> io::Result<()> {
        for chunk in verdicts.chunks(VERDICTS_PER_SEND) {
            let mut out = Vec::with_capacity(40 * chunk.len());
            for given in chunk {
                let mut hdr = given.verdict.code().to_be_bytes().to_vec();
                hdr.extend_from_slice(&given.id.to_be_bytes());
                let mut attrs = vec![(NFQA_VERDICT_HDR, hdr)];
                if let Some(m) = given.mark {
                    attrs.push((NFQA_MARK, m.to_be_bytes().to_vec()));
                }
                if let Some(packet) = &given.packet {
                    attrs.push((NFQA_PAYLOAD, packet.clone()));
                }
                out.extend(message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, self.queue, &attrs)?);
            }
            self.send_raw(&out)?;
        }
        Ok(())
    }

    fn config(&self, attrs: &[(u16, Vec<u8>)]) -> io::Result<()> {
        self.send(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, attrs)?;
        let mut buf = [0u8; 8192];
        loop {
            let n = match self.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_readable(self.fd.as_fd())?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
                let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
                if code != 0 {
                    let e = io::Error::from_raw_os_error(-code);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("NFQUEUE {} refused its configuration: {e}", self.queue),
                    ));
                }
                return Ok(());
            }
        }
    }

    fn send(&self, msg: u16, flags: u16, attrs: &[(u16, Vec<u8>)]) -> io::Result<()> {
        self.send_raw(&message(msg, flags, self.queue, attrs)?)
    }

    fn send_raw(&self, out: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: send(2) from a live buffer of the given length.
            let n = unsafe { libc::send(self.fd.as_raw_fd(), out.as_ptr().cast(), out.len(), 0) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => wait_writable(self.fd.as_fd())?,
                _ => return Err(e),
            }
        }
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let _ = self.send(
            NFQNL_MSG_CONFIG,
            NLM_F_REQUEST,
            &[(NFQA_CFG_CMD, command(NFQNL_CFG_CMD_UNBIND))],
        );
    }
}

fn command(cmd: u8) -> Vec<u8> {
    // cmd, padding, pf (unused since Linux 3.8)
    vec![cmd, 0, 0, 0]
}

fn poll(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<()> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events, revents: 0 };
    // SAFETY: poll(2) on one live pollfd; a bounded wait.
    let r = unsafe { libc::poll(&raw mut p, 1, 5_000) };
    match r {
        r if r > 0 => Ok(()),
        0 => Err(io::Error::new(io::ErrorKind::TimedOut, "the kernel did not answer within 5 s")),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Waits until packets are queued or `timeout` passes; whether packets are queued.
pub fn wait(queue: &Queue, timeout: std::time::Duration) -> io::Result<bool> {
    let mut p = libc::pollfd { fd: queue.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: poll(2) on one live pollfd; a bounded wait.
    match unsafe { libc::poll(&raw mut p, 1, ms) } {
        r if r > 0 => Ok(true),
        0 => Ok(false),
        _ => Err(io::Error::last_os_error()),
    }
}

fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    poll(fd, libc::POLLIN)
}

fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    poll(fd, libc::POLLOUT)
}

fn message(msg: u16, flags: u16, queue: u16, attrs: &[(u16, Vec<u8>)]) -> io::Result<Vec<u8>> {
    let mut body = vec![0u8 /* AF_UNSPEC */, 0];
    body.extend_from_slice(&queue.to_be_bytes()); // nfgenmsg: family, version 0, res_id
    for (kind, value) in attrs {
        super::push_attribute(&mut body, *kind, value)?;
    }
    let mut out = Vec::with_capacity(16 + body.len());
    super::push_message(&mut out, (NFNL_SUBSYS_QUEUE << 8) | msg, flags, 0, &body)?;
    Ok(out)
}

/// The queued packets in one datagram read from the queue. A message that does not parse
/// ends the walk; a packet message without a header is skipped.
pub fn packets(buf: &[u8]) -> Vec<Queued<'_>> {
    let mut out = Vec::new();
    for (kind, _, body) in super::messages(buf) {
        // After the header, `nfgenmsg`'s 4 bytes.
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET
            && let Some(attrs) = body.get(4..)
        {
            let mut q = Queued { id: 0, mark: 0, uid: None, hook: 0, payload: &[] };
            let mut has_id = false;
            for (akind, value) in super::attributes(attrs) {
                let be32 = || value.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                match akind {
                    // struct nfqnl_msg_packet_hdr: the id, hw_protocol (2 bytes), the hook.
                    NFQA_PACKET_HDR => {
                        if let Some(id) = be32() {
                            q.id = id;
                            has_id = true;
                        }
                        q.hook = value.get(6).copied().unwrap_or(0);
                    }
                    NFQA_MARK => q.mark = be32().unwrap_or(0),
                    NFQA_UID => q.uid = be32(),
                    NFQA_PAYLOAD => q.payload = value,
                    _ => {}
                }
            }
            if has_id {
                out.push(q);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_read_from_a_datagram_and_garbage_is_harmless() {
        let attrs = vec![
            (NFQA_PACKET_HDR, [&42u32.to_be_bytes()[..], &[8, 0, 3]].concat()),
            (NFQA_MARK, 0x8000_0001u32.to_be_bytes().to_vec()),
            (NFQA_UID, 1000u32.to_be_bytes().to_vec()),
            (NFQA_PAYLOAD, vec![0x45, 0, 0, 20, 1]),
        ];
        let one = message(NFQNL_MSG_PACKET, 0, 7, &attrs).unwrap_or_else(|e| panic!("{e}"));
        let two = [one.clone(), one].concat();
        let got = packets(&two);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            Queued {
                id: 42,
                mark: 0x8000_0001,
                uid: Some(1000),
                hook: 3,
                payload: &[0x45, 0, 0, 20, 1]
            }
        );
        for junk in [&[][..], &[1, 2, 3], &[0xff; 64], &[0; 40]] {
            assert!(packets(junk).is_empty());
        }
        let whole = message(NFQNL_MSG_PACKET, 0, 7, &attrs).unwrap_or_default();
        for n in 0..whole.len() {
            let _ = packets(&whole[..n]);
        }
    }
}
