//! The WireGuard provider: a [`Device`] between the TUN device the host hands over and UDP
//! sockets the host opens outside the tunnel.
//!
//! Its options are `{"wireguard": <Config as JSON>}` with every endpoint resolved
//! (`nw tunnel up wg0.conf` reads the file and resolves them before it starts the provider,
//! so the provider never needs DNS outside the tunnel). It tells the host how each peer is
//! doing with app messages (each event with a `message` sentence the host prints):
//! `{"event": "handshake", ...}` when a handshake completes, `{"event": "no_handshake", ...}`
//! after three unanswered initiations and on giving up, and
//! `{"status": {"peers": [...]}}` at most every two seconds while the figures change.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use nw_tunnel::StopReason;
use nw_tunnel::protocol::{SocketFamily, SocketProtocol};
use nw_tunnel::provider::{AsyncDevice, Provider, Tunnel};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::device::{Device, PeerStatus, Received, TICK};

/// Bytes asked for each UDP socket's buffers: room for bursts at a few Gbit/s (the kernel
/// caps it at `net.core.rmem_max`/`wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;
/// The largest datagram: a 65535-byte packet plus WireGuard's 32 bytes.
const MAX_DATAGRAM: usize = 65_535 + 32;
/// The figures go to the host at most this often.
const STATUS_EVERY: Duration = Duration::from_secs(2);

/// The WireGuard provider; run it with [`nw_tunnel::provider::run`].
#[derive(Debug, Default)]
pub struct WireGuard {
    tasks: Vec<JoinHandle<()>>,
}

/// The sockets, one per address family in use.
#[derive(Debug)]
struct Sockets {
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
}

impl Sockets {
    fn for_addr(&self, to: &SocketAddr) -> Option<&UdpSocket> {
        if to.is_ipv4() { self.v4.as_deref() } else { self.v6.as_deref() }
    }

    async fn send(&self, to: SocketAddr, datagram: &[u8]) {
        if let Some(s) = self.for_addr(&to)
            && let Err(e) = s.send_to(datagram, to).await
        {
            tracing::debug!(%to, "send failed: {e}");
        }
    }
}

#[allow(clippy::disallowed_methods, reason = "the provider's clock: timers and handshakes")]
fn now() -> Instant {
    Instant::now()
}

impl Provider for WireGuard {
    async fn start(
        &mut self,
        tunnel: Tunnel,
        device: AsyncDevice,
        options: Value,
    ) -> Result<(), String> {
        let config: Config = serde_json::from_value(options.get("wireguard").cloned().ok_or(
            "options have no \"wireguard\" object (start it with `nw tunnel up FILE.conf`)",
        )?)
        .map_err(|e| format!("options.wireguard: {e}"))?;
        if let Some(p) =
            config.peers.iter().find(|p| p.endpoint.is_some() && p.endpoint_addr.is_none())
        {
            return Err(format!("peer {}'s endpoint was not resolved", p.public_key));
        }
        #[allow(clippy::disallowed_methods, reason = "the wall time TAI64N timestamps start from")]
        let wall = SystemTime::now();
        let wg = Device::new(&config, now(), wall).map_err(|e| e.to_string())?;
        let port = config.interface.listen_port.unwrap_or(0);
        let wants_v6 = config.peers.iter().any(|p| p.endpoint_addr.is_some_and(|a| a.is_ipv6()));
        let v4 = socket(&tunnel, SocketFamily::Ipv4, port).await?;
        // An IPv6 socket is opened whenever the system has IPv6, so a peer that roams to IPv6
        // is still heard; it is required only when an endpoint is IPv6.
        let v6 = match socket(&tunnel, SocketFamily::Ipv6, port).await {
            Ok(s) => Some(s),
            Err(e) if wants_v6 => return Err(e),
            Err(e) => {
                tracing::debug!("no IPv6 socket: {e}");
                None
            }
        };
        tunnel.apply(Some(config.settings())).await.map_err(|e| e.to_string())?;
        let sockets = Arc::new(Sockets { v4: Some(v4), v6 });
        let wg = Arc::new(Mutex::new(wg));
        let device = Arc::new(device);
        self.tasks.push(tokio::spawn(tunnel_to_network(
            wg.clone(),
            device.clone(),
            sockets.clone(),
        )));
        for socket in [sockets.v4.clone(), sockets.v6.clone()].into_iter().flatten() {
            self.tasks.push(tokio::spawn(network_to_tunnel(
                wg.clone(),
                device.clone(),
                socket,
                sockets.clone(),
            )));
        }
        self.tasks.push(tokio::spawn(timers(wg.clone(), sockets.clone(), tunnel.clone())));
        // A client starts its handshakes at once, so the tunnel is ready before the first
        // packet and a wrong key shows up in the first seconds.
        {
            let mut wg = lock(&wg);
            wg.initiate_all(now());
        }
        flush(&wg, &sockets).await;
        Ok(())
    }

    async fn stop(&mut self, reason: StopReason) {
        tracing::debug!("stopping: {}", reason.as_str());
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

fn lock(wg: &Mutex<Device>) -> std::sync::MutexGuard<'_, Device> {
    wg.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn socket(
    tunnel: &Tunnel,
    family: SocketFamily,
    port: u16,
) -> Result<Arc<UdpSocket>, String> {
    let fd = tunnel
        .open_socket(SocketProtocol::Udp, family)
        .await
        .map_err(|e| format!("the host gave no UDP socket: {e}"))?;
    let std = StdUdpSocket::from(fd);
    let sock = socket2::SockRef::from(&std);
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    let local: SocketAddr = match family {
        SocketFamily::Ipv4 => (Ipv4Addr::UNSPECIFIED, port).into(),
        SocketFamily::Ipv6 => {
            sock.set_only_v6(true).map_err(|e| format!("IPV6_V6ONLY: {e}"))?;
            (Ipv6Addr::UNSPECIFIED, port).into()
        }
    };
    sock.bind(&local.into()).map_err(|e| format!("cannot listen on UDP {local}: {e}"))?;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    UdpSocket::from_std(std).map(Arc::new).map_err(|e| e.to_string())
}

/// Sends what the device has queued (handshakes, keepalives, packets that waited).
async fn flush(wg: &Mutex<Device>, sockets: &Sockets) {
    loop {
        let next = lock(wg).take_outgoing();
        let Some((to, datagram)) = next else { return };
        sockets.send(to, &datagram).await;
    }
}

async fn tunnel_to_network(
    wg: Arc<Mutex<Device>>,
    device: Arc<AsyncDevice>,
    sockets: Arc<Sockets>,
) {
    let mut packet = vec![0u8; 65_535];
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    loop {
        let n = match device.recv(&mut packet).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("reading the tunnel failed: {e}");
                return;
            }
        };
        let (to, more) = {
            let mut wg = lock(&wg);
            let to = wg.encapsulate(&packet[..n], now(), &mut out);
            (to, wg.has_outgoing())
        };
        if let Ok(Some(to)) = to {
            sockets.send(to, &out).await;
        }
        if more {
            flush(&wg, &sockets).await;
        }
    }
}

async fn network_to_tunnel(
    wg: Arc<Mutex<Device>>,
    device: Arc<AsyncDevice>,
    socket: Arc<UdpSocket>,
    sockets: Arc<Sockets>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here (a peer's port closed); keep listening.
                tracing::debug!("receive: {e}");
                continue;
            }
        };
        let (received, more) = {
            let mut wg = lock(&wg);
            let r = wg.decapsulate(&mut buf[..n], from, now());
            (r, wg.has_outgoing())
        };
        match received {
            Received::Packet(range) => {
                if let Err(e) = device.send(&buf[range]).await {
                    tracing::debug!("writing the tunnel: {e}");
                }
            }
            Received::Handled => {}
            Received::Dropped(why) => tracing::trace!(%from, "dropped: {why:?}"),
        }
        if more {
            flush(&wg, &sockets).await;
        }
    }
}

/// Ticks the device, and reports handshakes and figures to the host.
async fn timers(wg: Arc<Mutex<Device>>, sockets: Arc<Sockets>, tunnel: Tunnel) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Vec<PeerStatus> = Vec::new();
    let mut handshakes: Vec<u64> = Vec::new();
    let mut warned: Vec<(u32, u64)> = Vec::new();
    let mut reported_at = now();
    loop {
        tick.tick().await;
        let at = now();
        let peers = {
            let mut wg = lock(&wg);
            wg.tick(at);
            wg.peers()
        };
        flush(&wg, &sockets).await;
        handshakes.resize(peers.len(), 0);
        warned.resize(peers.len(), (0, 0));
        for (p, (unanswered, abandoned)) in peers.iter().zip(&mut warned) {
            // Said once a round: after three unanswered initiations (about 10 s), and on giving up.
            let news = (p.unanswered >= 3 && *unanswered < 3) || p.abandoned != *abandoned;
            if news {
                let gave_up = p.abandoned != *abandoned;
                let message = format!(
                    "no handshake with peer {} at {}: {} (is its PublicKey right, and does UDP reach that endpoint?)",
                    p.public_key,
                    endpoint_text(p),
                    if gave_up {
                        "gave up after 90 s; trying again when there is something to send"
                            .to_owned()
                    } else {
                        format!("{} attempts unanswered", p.unanswered)
                    }
                );
                let _ = tunnel
                    .app_message(json!({
                        "event": "no_handshake",
                        "message": message,
                        "peer": p.public_key.to_string(),
                        "endpoint": p.endpoint.map(|e| e.to_string()),
                        "attempts": p.unanswered,
                        "gave_up": gave_up,
                    }))
                    .await;
            }
            (*unanswered, *abandoned) = (p.unanswered, p.abandoned);
        }
        for (p, seen) in peers.iter().zip(&mut handshakes) {
            if p.handshakes != *seen {
                *seen = p.handshakes;
                let _ = tunnel
                    .app_message(json!({
                        "event": "handshake",
                        "message": format!("handshake with peer {} at {}", p.public_key, endpoint_text(p)),
                        "peer": p.public_key.to_string(),
                        "endpoint": p.endpoint.map(|e| e.to_string()),
                    }))
                    .await;
            }
        }
        if peers != last && at.duration_since(reported_at) >= STATUS_EVERY {
            #[allow(clippy::disallowed_methods, reason = "last handshakes as wall times")]
            let wall = SystemTime::now();
            let _ = tunnel.app_message(json!({"status": status(&peers, at, wall)})).await;
            reported_at = at;
            last = peers;
        }
    }
}

fn endpoint_text(p: &PeerStatus) -> String {
    p.endpoint.map_or_else(|| "(no endpoint)".to_owned(), |e| e.to_string())
}

/// The peers as `nw tunnel status` shows them.
fn status(peers: &[PeerStatus], now: Instant, wall: SystemTime) -> Value {
    let unix = |at: Instant| {
        wall.checked_sub(now.duration_since(at))
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    json!({
        "peers": peers.iter().map(|p| json!({
            "public_key": p.public_key.to_string(),
            "endpoint": p.endpoint.map(|e| e.to_string()),
            "last_handshake_unix": p.last_handshake.and_then(unix),
            "handshakes": p.handshakes,
            "rx_bytes": p.rx_bytes,
            "tx_bytes": p.tx_bytes,
            "rx_packets": p.rx_packets,
            "tx_packets": p.tx_packets,
        })).collect::<Vec<_>>()
    })
}
