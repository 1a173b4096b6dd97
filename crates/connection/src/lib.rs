//! `nw-connection`: nwkit's connections — what to connect to, how the attempt is made, and the
//! machines that decide.
//!
//! - [`endpoint`]: what to connect to — host and port, address and port, or a URL.
//! - [`connection`]: the connection object (setup, preparing, waiting with a reason, ready,
//!   failed, cancelled; viability and better path once ready) over [`driver`], which runs the
//!   [`establish`] machine (waiting for the path to the destination, NAT64, interface binding)
//!   and then the [`happy_eyeballs`] race over TCP, TLS, QUIC or UDP.
//! - [`resolver`]: the `Resolve` seam — the system resolver (explicit queries, hosts, cache)
//!   and an in-memory one.
//! - [`listener`]: TCP, TLS and QUIC listeners that shrug off floods.
//! - [`local_network`]: local network privacy before the race — a local destination the app
//!   may not reach is never attempted, and the error says "local network prohibited".
//! - [`framer`] and [`framed`]: length-prefixed and delimited messages, as codecs and on live
//!   streams.
//! - [`viability`], [`addrsel`] (RFC 6724), [`resolve`] (parsing and NAT64), [`id`] (`C7`,
//!   `C7.2`): the rest of the pure core.
//!
//! The `examples/` directory shows the common jobs end to end: `nwcat` (connect and listen,
//! TLS) and `framed_echo`.
//!
//! # Driving the race
//!
//! A driver does what the machine asks and tells it what happened. Here the "network" is a
//! closure that says which address answers; a real driver opens sockets and sleeps until
//! `poll_timeout()`.
//!
//! ```
//! use std::net::IpAddr;
//! use std::time::{Duration, Instant};
//! use nw_connection::happy_eyeballs::{Action, Config, Outcome, Race};
//! use nw_connection::id::ConnectionId;
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

pub mod addrsel;
pub mod connection;
pub mod crypto;
pub mod driver;
pub mod endpoint;
pub mod establish;
pub mod framed;
pub mod framer;
pub mod happy_eyeballs;
pub mod id;
pub mod listener;
pub mod local_network;
pub mod proxy;
pub mod qlog;
pub mod quic;
pub mod resolve;
pub mod resolver;
pub mod socket;
pub mod testserver;
pub mod tls;
pub mod viability;
