//! `nw-connection`: the pure core of nwkit's connections.
//!
//! - [`id`]: `C7` / `C7.2` identifiers, sequential per process.
//! - [`connection`]: the connection object (states, viability, better path) over [`driver`].
//! - [`viability`]: judging a ready connection's path.
//! - [`endpoint`]: what to connect to — host and port, address and port, or a URL.
//! - [`addrsel`]: RFC 6724 destination sorting.
//! - [`happy_eyeballs`]: the RFC 8305 race as a machine in virtual time.
//! - [`framer`]: length-prefixed and delimited message codecs for stream connections, and
//!   [`framed`]: the same on a live stream.
//!
//! Sockets, the resolver front, TLS and QUIC will drive these machines from a tokio driver.
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
pub mod qlog;
pub mod quic;
pub mod resolve;
pub mod resolver;
pub mod socket;
pub mod testserver;
pub mod tls;
pub mod viability;
