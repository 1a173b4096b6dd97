//! An NFQUEUE packet delayer: packets matched by an iptables rule wait `delay` before the
//! kernel lets them go. This kernel has no netem and no nft `queue` statement, so the rule is
//! `iptables -j NFQUEUE` (the xt target through nft's compat layer).
//!
//! Protocol (nfnetlink_queue, `include/uapi/linux/netfilter/nfnetlink_queue.h`): a
//! NETLINK_NETFILTER socket sends CONFIG with CMD BIND for the queue number and PARAMS
//! copy-mode META, then reads PACKET messages (each with a packet id) and answers each with a
//! VERDICT (NF_ACCEPT, id). Without `--queue-bypass`, an unattended queue drops: fail closed.
//! The guard therefore removes the rule first and releases every held packet before it unbinds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{LabError, Namespace};

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_CFG_CMD_UNBIND: u8 = 2;
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const AF_UNSPEC: u8 = 0;
#[allow(clippy::cast_possible_truncation, reason = "size_of::<c_int>() is 4")]
const SOCKLEN_INT: libc::socklen_t = size_of::<libc::c_int>() as libc::socklen_t;

/// Which packet families a delayer's rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// `iptables` only.
    Ipv4,
    /// `ip6tables` only.
    Ipv6,
    /// Both, feeding the same queue.
    Both,
}

impl Tables {
    fn commands(self) -> &'static [&'static str] {
        match self {
            Self::Ipv4 => &["iptables"],
            Self::Ipv6 => &["ip6tables"],
            Self::Both => &["iptables", "ip6tables"],
        }
    }
}

/// A running delayer; dropping it removes its rule and releases every held packet.
#[derive(Debug)]
pub struct Delayer {
    ns_name: String,
    tables: Tables,
    /// How many of `tables.commands()` have their rule installed.
    installed: usize,
    rule: Vec<String>,
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Delayer {
    /// Binds queue `queue` in `ns`, then installs `iptables -t mangle -A <rule…> -j NFQUEUE
    /// --queue-num <queue>` there (and/or `ip6tables`, per `tables`). `rule` is the chain and
    /// match, e.g. `["OUTPUT", "-p", "tcp", "--dport", "8080"]`.
    pub fn start(
        ns: &Namespace,
        queue: u16,
        delay: Duration,
        tables: Tables,
        rule: &[&str],
    ) -> Result<Self, LabError> {
        for tool in tables.commands() {
            crate::netns::require_tool(tool, "iptables")?;
        }
        let fd = crate::in_namespace(ns, move || bind(queue))??;
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let (st, count) = (stop.clone(), delayed.clone());
        let thread = std::thread::Builder::new()
            .name(format!("lab-nfq-{queue}"))
            .spawn(move || run(&fd, queue, delay, &st, &count))?;
        let mut rule: Vec<String> = rule.iter().map(|s| (*s).to_owned()).collect();
        rule.extend(["-j", "NFQUEUE", "--queue-num"].map(str::to_owned));
        rule.push(queue.to_string());
        let mut me = Self {
            ns_name: ns.name().to_owned(),
            tables,
            installed: 0,
            rule,
            stop,
            delayed,
            thread: Some(thread),
        };
        for tool in tables.commands() {
            me.iptables(tool, "-A")?; // on error, drop removes what was installed
            me.installed += 1;
        }
        Ok(me)
    }

    /// How many packets have been held and released so far.
    pub fn delayed(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }

    fn iptables(&self, tool: &str, op: &str) -> Result<(), LabError> {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.ns_name, tool, "-t", "mangle", op]).args(&self.rule);
        crate::process::output(c).map(drop)
    }
}

impl Drop for Delayer {
    fn drop(&mut self) {
        for tool in &self.tables.commands()[..self.installed] {
            let _ = self.iptables(tool, "-D");
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(queue: u16) -> Result<OwnedFd, LabError> {
    // SAFETY: plain socket(2); the result is checked before use.
    let raw = unsafe {
        libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, NETLINK_NETFILTER)
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: `raw` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let big: libc::c_int = 4 << 20;
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const big).cast(),
            SOCKLEN_INT,
        )
    };
    let mut cmd = vec![NFQNL_CFG_CMD_BIND, 0];
    cmd.extend_from_slice(&0u16.to_be_bytes()); // pf: unused since Linux 3.8
    config(&fd, queue, &[(NFQA_CFG_CMD, cmd)])?;
    let mut params = 0xffffu32.to_be_bytes().to_vec(); // copy_range (unused with META)
    params.push(NFQNL_COPY_META);
    config(
        &fd,
        queue,
        &[(NFQA_CFG_PARAMS, params), (NFQA_CFG_QUEUE_MAXLEN, 4096u32.to_be_bytes().to_vec())],
    )?;
    Ok(fd)
}

/// Sends a CONFIG message and waits for its ACK.
fn config(fd: &OwnedFd, queue: u16, attrs: &[(u16, Vec<u8>)]) -> Result<(), LabError> {
    send(fd, NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, queue, attrs)?;
    let mut buf = [0u8; 8192];
    // SAFETY: recv(2) into a live buffer of the given length.
    let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    let n = usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?;
    if n >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == NLMSG_ERROR {
        let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if code != 0 {
            let e = std::io::Error::from_raw_os_error(-code);
            return Err(LabError::Io(std::io::Error::other(format!(
                "NFQUEUE config for queue {queue} refused: {e} (is nfnetlink_queue available? is the queue bound elsewhere?)"
            ))));
        }
    }
    Ok(())
}

fn send(
    fd: &OwnedFd,
    msg: u16,
    flags: u16,
    queue: u16,
    attrs: &[(u16, Vec<u8>)],
) -> std::io::Result<()> {
    let mut body = vec![AF_UNSPEC, 0];
    body.extend_from_slice(&queue.to_be_bytes()); // nfgenmsg: family, version 0, res_id
    for (kind, value) in attrs {
        let len = u16::try_from(4 + value.len())
            .map_err(|_| std::io::Error::other("attribute too long"))?;
        body.extend_from_slice(&len.to_ne_bytes());
        body.extend_from_slice(&kind.to_ne_bytes());
        body.extend_from_slice(value);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let total =
        u32::try_from(16 + body.len()).map_err(|_| std::io::Error::other("message too long"))?;
    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&total.to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | msg).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port: the kernel
    out.extend_from_slice(&body);
    // SAFETY: send(2) from a live buffer of the given length.
    let n = unsafe { libc::send(fd.as_raw_fd(), out.as_ptr().cast(), out.len(), 0) };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
}

fn verdict(fd: &OwnedFd, queue: u16, id: u32) {
    let mut v = NF_ACCEPT.to_be_bytes().to_vec();
    v.extend_from_slice(&id.to_be_bytes());
    let _ = send(fd, NFQNL_MSG_VERDICT, NLM_F_REQUEST, queue, &[(NFQA_VERDICT_HDR, v)]);
}

#[allow(clippy::disallowed_methods, reason = "lab delayer: holds packets on the wall clock")]
fn run(fd: &OwnedFd, queue: u16, delay: Duration, stop: &AtomicBool, delayed: &AtomicU64) {
    let mut held: std::collections::VecDeque<(Instant, u32)> = std::collections::VecDeque::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, id)) = held.pop_front() {
                verdict(fd, queue, id);
                delayed.fetch_add(1, Ordering::Relaxed);
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let wait = held
            .front()
            .map_or(Duration::from_millis(50), |(due, _)| due.saturating_duration_since(now));
        let wait = wait.clamp(Duration::from_micros(100), Duration::from_millis(50));
        let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(wait.as_millis().max(1)).unwrap_or(50);
        // SAFETY: poll(2) on one live pollfd.
        if unsafe { libc::poll(&raw mut pfd, 1, ms) } <= 0 {
            continue;
        }
        // SAFETY: recv(2) into a live buffer of the given length, without blocking.
        let n = unsafe {
            libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
        };
        let Ok(n) = usize::try_from(n) else { continue };
        let arrived = Instant::now();
        for id in packet_ids(&buf[..n]) {
            held.push_back((arrived + delay, id));
        }
    }
    // Release everything still held, then unbind.
    for (_, id) in held.drain(..) {
        verdict(fd, queue, id);
    }
    let mut cmd = vec![NFQNL_CFG_CMD_UNBIND, 0];
    cmd.extend_from_slice(&0u16.to_be_bytes());
    let _ = send(fd, NFQNL_MSG_CONFIG, NLM_F_REQUEST, queue, &[(NFQA_CFG_CMD, cmd)]);
}

/// Packet ids of the PACKET messages in one datagram. Malformed input ends the walk.
fn packet_ids(mut buf: &[u8]) -> Vec<u32> {
    let mut ids = Vec::new();
    while buf.len() >= 20 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        if len < 20 || len > buf.len() {
            break;
        }
        if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            let mut attrs = &buf[20..len];
            while attrs.len() >= 4 {
                let alen = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
                let akind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
                if alen < 4 || alen > attrs.len() {
                    break;
                }
                if akind == NFQA_PACKET_HDR && alen >= 8 {
                    ids.push(u32::from_be_bytes([attrs[4], attrs[5], attrs[6], attrs[7]]));
                }
                attrs = attrs.get(alen.next_multiple_of(4)..).unwrap_or(&[]);
            }
        }
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_ids_from_a_datagram_and_garbage_is_harmless() {
        let mut m = Vec::new();
        let attr_len: u16 = 4 + 7;
        let total: u32 = 20 + 12;
        m.extend_from_slice(&total.to_ne_bytes());
        m.extend_from_slice(&(NFNL_SUBSYS_QUEUE << 8).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[2, 0, 0, 7]); // nfgenmsg
        m.extend_from_slice(&attr_len.to_ne_bytes());
        m.extend_from_slice(&NFQA_PACKET_HDR.to_ne_bytes());
        m.extend_from_slice(&42u32.to_be_bytes());
        m.extend_from_slice(&[8, 0, 3, 0]); // hw_protocol, hook, padding
        assert_eq!(packet_ids(&m), [42]);
        assert!(packet_ids(&[0xff; 64]).is_empty());
        assert!(packet_ids(&[1, 2, 3]).is_empty());
    }
}
