//! Listeners for TCP, TLS and QUIC: an accept loop that hands each connection to a handler.
//!
//! Built for the field's advice that a server "must be resilient" to connections that open and
//! close at once — also-rans from clients' Happy Eyeballs races, port scans, crashed clients:
//! - those end as counted, quiet outcomes (a failed or timed-out TLS handshake, an early EOF),
//!   never as errors or log noise above debug;
//! - at most `max_connections` run at once; at the limit the listener stops accepting, so the
//!   kernel's backlog, not this process, absorbs a flood;
//! - running out of descriptors (EMFILE/ENFILE) backs off instead of spinning;
//! - [`Listener::shutdown`] stops accepting, gives running handlers a grace period, then
//!   cancels what is left.
//!
//! Local network privacy holds for listeners as for connections: a peer on the local network
//! (see [`nw_lnp::classify`]) that this app may not reach is not served either. Its TCP
//! connection is reset before any TLS, its QUIC connection refused, the refusal counted
//! ([`Counts::local_network_refused`]), said as a warning and logged with the app and the
//! peer. Loopback peers are never local and cost nothing; with the check off (the default),
//! every peer is served.
//!
//! A QUIC listener ([`Listener::bind_quic`]) hands the handler each connection's first
//! bidirectional stream (the client's side of `nw cat --quic`). At the limit it refuses new
//! connections at once (a QUIC CONNECTION_REFUSED, so a racing client fails over) instead of
//! leaving them to time out; a client that completes the handshake but opens no stream within
//! the handshake timeout counts as a failed handshake.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::ServerConfig;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::LocalNetwork;
use crate::stream::Io;

/// Listener settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections handled at once.
    pub max_connections: usize,
    /// TLS on every accepted connection, when set.
    pub tls: Option<Arc<ServerConfig>>,
    /// A TLS client that has not finished its handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// Keep at most this many not-yet-sent bytes in each connection's kernel send buffer
    /// (`TCP_NOTSENT_LOWAT`). A server streaming bulk data then answers the next request on
    /// the same connection behind this much, not behind megabytes of autotuned buffer: what
    /// a responsiveness test's self probes measure.
    pub notsent_lowat: Option<u32>,
    /// Local network privacy for peers (by default as for connections, see
    /// [`LocalNetwork`]); `None`: every peer is served.
    pub local_network: Option<LocalNetwork>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_connections: 512,
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            notsent_lowat: None,
            local_network: Some(LocalNetwork::default()),
        }
    }
}

/// Counters, readable while the listener runs.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    accepted: AtomicU64,
    handshake_failed: AtomicU64,
    served: AtomicU64,
    accept_errors: AtomicU64,
    refused: AtomicU64,
    local_network_refused: AtomicU64,
}

/// What a listener has done so far ([`Listener::stats`](crate::Listener::stats)): its counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Connections accepted from the kernel.
    pub accepted: u64,
    /// TLS handshakes that failed or timed out (scans, plain-text clients, also-rans).
    pub handshake_failed: u64,
    /// Connections handed to the handler.
    pub served: u64,
    /// Errors `accept` returned (descriptors exhausted and the like).
    pub accept_errors: u64,
    /// QUIC connections refused because `max_connections` were running.
    pub refused: u64,
    /// Peers on the local network not served because this app may not reach them.
    pub local_network_refused: u64,
}

impl Stats {
    pub(crate) fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            accepted: get(&self.accepted),
            handshake_failed: get(&self.handshake_failed),
            served: get(&self.served),
            accept_errors: get(&self.accept_errors),
            refused: get(&self.refused),
            local_network_refused: get(&self.local_network_refused),
        }
    }
}

/// A connection handler: gets the stream (TLS already done) and the peer's address (an IPv4
/// peer of a dual-stack listener as IPv4).
pub type Handler =
    Arc<dyn Fn(Box<dyn Io>, SocketAddr) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A running listener.
#[derive(Debug)]
pub struct Listener {
    local: SocketAddr,
    stats: Arc<Stats>,
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and starts accepting. `[::]:PORT` accepts IPv4 too (dual-stack).
    pub async fn bind(addr: SocketAddr, config: Config, handler: Handler) -> std::io::Result<Self> {
        let socket = TcpListener::bind(addr).await?;
        let local = socket.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = watch::channel(None);
        let task = tokio::spawn(accept_loop(socket, config, handler, stats.clone(), stopped));
        Ok(Self { local, stats, stop, task })
    }

    /// Binds `addr` (UDP) and accepts QUIC connections; `config.tls` is required and must
    /// allow TLS 1.3 with ALPN. `[::]:PORT` accepts IPv4 too.
    pub async fn bind_quic(
        addr: SocketAddr,
        config: Config,
        handler: Handler,
    ) -> std::io::Result<Self> {
        let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        let tls = config.tls.clone().ok_or_else(|| invalid("QUIC needs TLS settings".into()))?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| invalid(format!("this TLS configuration cannot carry QUIC: {e}")))?;
        let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(server, addr)?;
        let local = endpoint.local_addr()?;
        let stats = Arc::new(Stats::default());
        let (stop, stopped) = watch::channel(None);
        let task =
            tokio::spawn(quic_accept_loop(endpoint, config, handler, stats.clone(), stopped));
        Ok(Self { local, stats, stop, task })
    }

    /// The address it listens on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What it has done so far.
    pub fn stats(&self) -> Counts {
        self.stats.counts()
    }

    /// Stops accepting (the socket closes at once), lets running handlers finish for up to
    /// `grace`, then cancels the rest.
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        let _ = (&mut self.task).await;
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    socket: TcpListener,
    config: Config,
    handler: Handler,
    stats: Arc<Stats>,
    mut stopped: watch::Receiver<Option<Duration>>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut running = JoinSet::new();
    let grace = loop {
        // Wait for a free slot before accepting: at the limit, new clients wait in the backlog.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break Duration::ZERO },
            _ = stopped.changed() => break stopped.borrow().unwrap_or_default(),
        };
        let accepted = tokio::select! {
            a = socket.accept() => a,
            _ = stopped.changed() => break stopped.borrow().unwrap_or_default(),
        };
        while running.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                // EMFILE/ENFILE: out of descriptors. Back off rather than spin; other errors
                // (ECONNABORTED: the client left before accept) just move on.
                if matches!(e.raw_os_error(), Some(code) if code == 24 || code == 23) {
                    tracing::warn!("accept: {e}; backing off 100 ms");
                    back_off().await;
                } else {
                    tracing::debug!("accept: {e}");
                }
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let peer = canonical(peer);
        let _ = tcp.set_nodelay(true);
        if let Some(lowat) = config.notsent_lowat
            && let Err(e) = socket2::SockRef::from(&tcp).set_tcp_notsent_lowat(lowat)
        {
            tracing::debug!(%peer, "TCP_NOTSENT_LOWAT: {e}");
        }
        let (handler, stats, tls, limit) =
            (handler.clone(), stats.clone(), config.tls.clone(), config.handshake_timeout);
        let local_network = config.local_network.clone();
        running.spawn(async move {
            let _permit = permit;
            if !served_here(local_network.as_ref(), peer, limit, &stats).await {
                // Reset rather than closed: the peer's next read fails at once.
                let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
                return;
            }
            let stream: Box<dyn Io> = match tls {
                None => Box::new(tcp),
                Some(tls) => {
                    let accept = tokio_rustls::TlsAcceptor::from(tls).accept(tcp);
                    let ready = tokio::time::timeout(limit, accept).await;
                    match settled(ready, &stats, peer, "TLS handshake") {
                        Some(s) => Box::new(s),
                        None => return,
                    }
                }
            };
            stats.served.fetch_add(1, Ordering::Relaxed);
            handler(stream, peer).await;
        });
    };
    drop(socket);
    wind_down(running, grace).await;
}

/// A handshake's result: what it produced, or a failure that is counted and logged quietly
/// (scans, plain-text clients and also-rans are not news).
fn settled<T, E: std::fmt::Display>(
    ready: Result<Result<T, E>, tokio::time::error::Elapsed>,
    stats: &Stats,
    peer: SocketAddr,
    what: &str,
) -> Option<T> {
    let why = match ready {
        Ok(Ok(done)) => return Some(done),
        Ok(Err(e)) => format!("{what} failed: {e}"),
        Err(_) => format!("{what} timed out"),
    };
    stats.handshake_failed.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, "{why}");
    None
}

/// An IPv4 peer of a dual-stack socket as the IPv4 address it is, not `::ffff:a.b.c.d`.
fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// Whether local network privacy lets this app serve `peer` (answered within `limit`); a
/// refusal is counted and said.
async fn served_here(
    settings: Option<&LocalNetwork>,
    peer: SocketAddr,
    limit: Duration,
    stats: &Stats,
) -> bool {
    let Some(settings) = settings else { return true };
    match settings.check_peer(peer.ip(), limit).await {
        Ok(()) => true,
        Err(refused) => {
            stats.local_network_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(port = peer.port(), "{refused}");
            false
        }
    }
}

/// Lets running handlers finish within `grace`, then cancels the rest.
async fn wind_down(mut running: JoinSet<()>, grace: Duration) {
    let drain = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::debug!(left = running.len(), "grace period over; cancelling handlers");
        running.shutdown().await;
    }
}

async fn quic_accept_loop(
    endpoint: quinn::Endpoint,
    config: Config,
    handler: Handler,
    stats: Arc<Stats>,
    mut stopped: watch::Receiver<Option<Duration>>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut running = JoinSet::new();
    let grace = loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break Duration::ZERO },
            _ = stopped.changed() => break stopped.borrow().unwrap_or_default(),
        };
        while running.try_join_next().is_some() {}
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let peer = canonical(incoming.remote_address());
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%peer, "at the connection limit; refusing");
            incoming.refuse();
            continue;
        };
        let (handler, stats, limit, endpoint) =
            (handler.clone(), stats.clone(), config.handshake_timeout, endpoint.clone());
        let local_network = config.local_network.clone();
        running.spawn(async move {
            let _permit = permit;
            if !served_here(local_network.as_ref(), peer, limit, &stats).await {
                incoming.refuse();
                return;
            }
            let ready = tokio::time::timeout(limit, async {
                let conn = incoming.await?;
                let (send, recv) = conn.accept_bi().await?;
                Ok::<_, quinn::ConnectionError>((conn, send, recv))
            })
            .await;
            let Some((conn, send, recv)) =
                settled(ready, &stats, peer, "QUIC handshake and first stream")
            else {
                return;
            };
            stats.served.fetch_add(1, Ordering::Relaxed);
            let stream = crate::quic::QuicStream::new(send, recv, conn, endpoint);
            handler(Box::new(stream), peer).await;
        });
    };
    // Stop accepting: new handshakes are refused from now on.
    endpoint.set_server_config(None);
    wind_down(running, grace).await;
    // No `endpoint.close()`: that would also close connections a handler passed on (nw cat
    // hands its one client out of the handler). Cancelled handlers dropped theirs, which
    // closes them; the socket goes with the last connection.
}

#[allow(clippy::disallowed_methods, reason = "driver: waiting out descriptor exhaustion")]
async fn back_off() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}
