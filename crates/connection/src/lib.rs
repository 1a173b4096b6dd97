//! `nw-connection`: connections in the shape of Network framework — an [`Endpoint`] and
//! [`Parameters`] in, a connection that waits for a usable path, races every address with Happy
//! Eyeballs over TCP, TLS, QUIC or UDP, and reports what happened.
//!
//! # The face
//!
//! - Connect: [`Connection`] (its [`State`]s — setup, preparing, waiting with a reason, ready,
//!   failed, cancelled — and, once ready, [`Viability`] and better-path [`Update`]s), or the
//!   one-shot [`connect`], [`connect_quic`] (a QUIC connection for many streams),
//!   [`connect_udp`] and [`connect_proxy`]. Each takes the [`Parameters`] (transport, TLS, path
//!   conditions, local address, proxy, [`LocalNetwork`] privacy) and a resolver, and gives
//!   what it connected — a [`Connected`] stream, a [`QuicConnected`] connection, a
//!   [`UdpConnected`] socket — with its [`Report`], or a [`ConnectError`] with the report.
//! - Resolve: the [`Resolve`] seam; [`SystemResolver`] (explicit A/AAAA/HTTPS queries, the hosts
//!   file, a cache) and [`MemoryResolver`] for tests.
//! - Listen: [`Listener`] over TCP, TLS or QUIC, bounded so floods cannot starve it.
//! - Take part in a multicast group: [`MulticastGroup`] joins `GROUP:PORT` on the path's
//!   interfaces ([`GroupOptions`]) once local network privacy allows it, hears every member
//!   and sends to them all; [`GroupError`] says why not.
//! - Frame: [`Framed`] messages over any stream, with [`Framing`] (length-prefixed or
//!   delimited) and the [`Framer`] codec underneath.
//! - Modules for the specialists: [`tls`] (client and server configurations, PEM files),
//!   [`proxy`] (HTTP `CONNECT` and SOCKS5), [`crypto`] (the one crypto provider), and
//!   [`happy_eyeballs`], the pure race machine the driver runs, with its events and errors.
//!
//! The `examples/` directory shows the common jobs end to end: `nwcat` (connect and listen,
//! TLS) and `framed_echo`.
//!
//! # Connecting
//!
//! ```no_run
//! use std::sync::Arc;
//! use nw_connection::{Connection, Endpoint, Parameters, State, SystemResolver, Update};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = Endpoint::parse("example.test:443")?;
//! let params = Parameters { path: Some(Default::default()), ..Parameters::default() };
//! let mut conn = Connection::new(endpoint, params, Arc::new(SystemResolver::from_system()));
//! while let Some(Update::State(state)) = conn.next_update().await {
//!     match state {
//!         State::Waiting { reason } => eprintln!("waiting: {reason:?}"),
//!         State::Ready | State::Failed { .. } => break,
//!         _ => {}
//!     }
//! }
//! let mut connected = conn.ready().await?;
//! connected.stream.write_all(b"hello").await?;
//! # Ok(()) }
//! ```
//!
//! # Listening
//!
//! ```no_run
//! use std::sync::Arc;
//! use nw_connection::{Handler, Listener, ListenerConfig};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn demo() -> std::io::Result<()> {
//! let hello: Handler = Arc::new(|mut stream, peer| {
//!     Box::pin(async move {
//!         let _ = stream.write_all(format!("hello, {peer}\n").as_bytes()).await;
//!     })
//! });
//! let listener = Listener::bind("[::]:0".parse().unwrap(), ListenerConfig::default(), hello).await?;
//! println!("listening on {}", listener.local_addr());
//! # Ok(()) }
//! ```
//!
//! # Driving the race
//!
//! Underneath, [`happy_eyeballs::Race`] is a pure machine: a driver does what it asks and tells
//! it what happened. Here the "network" is a closure that says which address answers; a real
//! driver opens sockets and sleeps until `poll_timeout()`.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use nw_connection::happy_eyeballs::{Action, Config, Outcome, Race};
//! use nw_connection::ConnectionId;
//!
//! let addrs: Vec<IpAddr> = vec!["2001:db8::1".parse().unwrap(), "192.0.2.1".parse().unwrap()];
//! let reachable = |ip: IpAddr| ip.is_ipv4(); // IPv6 is blackholed
//! let mut now = Instant::now();
//! let mut race = Race::with_addresses(ConnectionId::next(), 443, &addrs, Config::default(), now);
//! while race.outcome().is_none() {
//!     while let Some(action) = race.poll_action() {
//!         if let Action::StartAttempt { id, addr, .. } = action {
//!             if reachable(addr.ip()) {
//!                 race.handle_attempt_ready(id, now + Duration::from_millis(10));
//!             }
//!         }
//!     }
//!     if let Some(deadline) = race.poll_timeout() {
//!         now = deadline; // a real driver sleeps until the deadline or an I/O event
//!         race.handle_timeout(now);
//!     }
//! }
//! let Some(Outcome::Won { addr, .. }) = race.outcome() else { panic!("lost") };
//! assert!(addr.is_ipv4());
//! ```

#![warn(missing_docs)]

mod addrsel;
mod connection;
pub mod crypto;
mod driver;
mod endpoint;
mod establish;
mod framed;
mod framer;
pub mod happy_eyeballs;
mod id;
mod listener;
mod local_network;
mod multicast;
pub mod proxy;
mod qlog;
mod quic;
mod resolve;
mod resolver;
mod socket;
mod state;
mod stream;
pub mod tls;
mod viability;

pub use connection::{Connection, Update};
pub use driver::{
    ConnectError, Connected, Parameters, ProxyFailure, QuicConnected, Report, Transport,
    UdpConnected, connect, connect_proxy, connect_quic, connect_udp, connect_udp_observed,
};
pub use endpoint::{Endpoint, EndpointError, Url, percent_decode};
pub use establish::PathStep;
pub use framed::{Framed, FramedError};
pub use framer::{FrameError, Framer, Framing, Width};
pub use id::{AttemptId, ConnectionId};
pub use listener::{Config as ListenerConfig, Counts as ListenerCounts, Handler, Listener};
pub use local_network::{LocalNetwork, PeerRefused};
pub use multicast::{GroupError, GroupOptions, Joined, MulticastGroup};
pub use nw_lnp::{Paths as LocalNetworkPaths, Verdict as LocalNetworkVerdict};
pub use proxy::Proxy;
pub use qlog::Qlog;
pub use quic::QuicConnection;
pub use resolve::SystemConfig;
pub use resolver::{BoxFuture, MemoryResolver, Resolve, SystemResolver};
pub use socket::{Keepalive, Mptcp, TcpOptions};
pub use state::State;
pub use stream::Io;
pub use viability::{NotViable, Viability};

/// Entry points for the fuzzers and their corpus replays; not part of the API.
#[doc(hidden)]
pub mod fuzz {
    pub use crate::endpoint::fuzz as endpoint;
}
