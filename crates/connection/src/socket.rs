//! The sockets attempts are made with: TCP options (nodelay, keepalive, Multipath TCP), the
//! local address, and the interface an attempt is held to.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Socket options of every TCP attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOptions {
    /// Send small writes at once instead of coalescing them (Nagle off). On by default: a
    /// connection's first bytes are usually a request or a handshake that waits for an answer.
    pub nodelay: bool,
    /// Probe an idle connection so a dead peer or a NAT that forgot the flow is noticed.
    pub keepalive: Option<Keepalive>,
    /// Multipath TCP (RFC 8684) when the kernel has it; plain TCP when it does not or the peer
    /// does not answer in kind. The report says which ([`Mptcp`]).
    pub mptcp: bool,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self { nodelay: true, keepalive: None, mptcp: false }
    }
}

/// TCP keepalive: the first probe after `idle` without traffic, then one every `interval`; the
/// connection fails after `count` unanswered probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe.
    pub idle: Duration,
    /// Time between probes.
    pub interval: Duration,
    /// Unanswered probes before the connection fails.
    pub count: u32,
}

impl Keepalive {
    /// Probes every `idle / 3` after `idle` (at least 1 s apart), 3 of them: a dead peer is
    /// noticed within about twice `idle`.
    pub fn after(idle: Duration) -> Self {
        Self { idle, interval: (idle / 3).max(Duration::from_secs(1)), count: 3 }
    }
}

/// What became of a Multipath TCP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mptcp {
    /// The connection uses MPTCP.
    Negotiated,
    /// The peer answered with plain TCP; the connection fell back to it.
    FellBack,
    /// The kernel has no MPTCP (or has it switched off): the attempt used plain TCP.
    Unavailable,
}

/// Where an attempt's socket is bound: a device (`SO_BINDTODEVICE`) and a local address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bind {
    pub(crate) device: Option<String>,
    pub(crate) local: Option<IpAddr>,
}

impl Bind {
    fn apply(&self, socket: &Socket) -> io::Result<()> {
        if let Some(device) = &self.device {
            socket.bind_device(Some(device.as_bytes()))?;
        }
        if let Some(local) = self.local {
            socket.bind(&SocketAddr::new(local, 0).into()).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot use local address {local}: {e}"))
            })?;
        }
        Ok(())
    }
}

/// `TCP_IS_MPTCP` from linux/include/uapi/linux/tcp.h: 1 while MPTCP is in use, 0 on a plain
/// TCP socket or one that fell back.
const TCP_IS_MPTCP: libc::c_int = 43;

/// Connects a TCP socket with `options`, bound as `bind` says.
pub(crate) async fn tcp_connect(
    addr: SocketAddr,
    bind: &Bind,
    options: &TcpOptions,
) -> io::Result<(TcpStream, Option<Mptcp>)> {
    let domain = Domain::for_address(addr);
    let (socket, mut mptcp) = if options.mptcp {
        match Socket::new(domain, Type::STREAM, Some(Protocol::MPTCP)) {
            Ok(s) => (s, Some(Mptcp::Negotiated)),
            // No MPTCP in this kernel, or net.mptcp.enabled=0.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EPROTONOSUPPORT | libc::ENOPROTOOPT | libc::EINVAL)
                ) =>
            {
                (Socket::new(domain, Type::STREAM, None)?, Some(Mptcp::Unavailable))
            }
            Err(e) => return Err(e),
        }
    } else {
        (Socket::new(domain, Type::STREAM, None)?, None)
    };
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(options.nodelay)?;
    if let Some(k) = options.keepalive {
        let params =
            TcpKeepalive::new().with_time(k.idle).with_interval(k.interval).with_retries(k.count);
        socket.set_tcp_keepalive(&params)?;
    }
    bind.apply(&socket)?;
    let socket = TcpSocket::from_std_stream(std::net::TcpStream::from(OwnedFd::from(socket)));
    let stream = socket.connect(addr).await?;
    if mptcp == Some(Mptcp::Negotiated) && !is_mptcp(&stream) {
        mptcp = Some(Mptcp::FellBack);
    }
    Ok((stream, mptcp))
}

fn is_mptcp(stream: &TcpStream) -> bool {
    let mut value: libc::c_int = 0;
    #[allow(clippy::cast_possible_truncation, reason = "the size of an int fits a socklen_t")]
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the fd is open for the duration of the call (borrowed from `stream`), and `value`
    // and `len` are valid for writes of an int and a socklen_t.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_TCP,
            TCP_IS_MPTCP,
            (&raw mut value).cast(),
            &raw mut len,
        )
    };
    rc == 0 && value == 1
}

/// A UDP socket of `addr`'s family, bound as `bind` says (port 0 otherwise).
pub(crate) fn udp_socket(addr: SocketAddr, bind: &Bind) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, None)?;
    socket.set_nonblocking(true)?;
    bind.apply(&socket)?;
    if bind.local.is_none() {
        let any: SocketAddr =
            if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        socket.bind(&any.into())?;
    }
    UdpSocket::from_std(std::net::UdpSocket::from(OwnedFd::from(socket)))
}

/// The source address the kernel would use to reach `dest` from a socket bound as `bind` says:
/// a connected UDP socket's local address (a route lookup; no packet is sent).
pub(crate) fn kernel_source(dest: IpAddr, bind: &Bind) -> Option<IpAddr> {
    let socket =
        Socket::new(Domain::for_address(SocketAddr::new(dest, 9)), Type::DGRAM, None).ok()?;
    bind.apply(&socket).ok()?;
    socket.connect(&SocketAddr::new(dest, 9).into()).ok()?;
    socket.local_addr().ok()?.as_socket().map(|a| a.ip())
}
