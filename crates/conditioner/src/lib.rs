//! `nw-conditioner`: nwkit's link conditioner, because this kernel has no netem.
//!
//! - [`Link`]: one direction as a machine in virtual time — drop-tail queue (packets or
//!   bytes), rate serializer, delay with jitter (and extra delay for DNS only, [`is_dns`]),
//!   random loss (uniform or Gilbert–Elliott) from a seeded generator, counters, conditions
//!   changed mid-run; [`Profile`] says how.
//! - [`Proxy`]: the mode without root — a TCP or UDP proxy on loopback with the same link in
//!   each direction, and TCP faults (reset, stall, slow close): point a client at it instead
//!   of the server.
//! - [`ConditionedLink`]: two namespaces joined by a TUN device in each, one thread moving
//!   packets through a `Link` per direction, woken by the devices, a timerfd and an eventfd.
//! - [`control`]: a Unix socket through which another process changes a running link's
//!   conditions and reads its counters.
//! - [`presets`]: named conditions as data ([`Preset`]), with their sources.
//!
//! `examples/proxy.rs` runs a conditioned proxy in front of a server on loopback.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use nw_conditioner::{Link, Profile};
//!
//! let profile = Profile { delay: Duration::from_millis(50), ..Profile::default() };
//! let mut link = Link::new(profile, 7);
//! let t0 = Instant::now();
//! link.handle_packet(t0, vec![0u8; 100]);
//! assert_eq!(link.poll_packet(), None);
//! let due = link.poll_timeout().unwrap();
//! assert_eq!(due - t0, Duration::from_millis(50));
//! link.handle_timeout(due);
//! assert_eq!(link.poll_packet().map(|p| p.len()), Some(100));
//! ```
#![warn(missing_docs)]

mod classify;
pub mod control;
mod link;
mod presets;
mod proxy;
mod tun;

pub use classify::is_dns;
pub use link::{Counters, Link, LinkCounters, Loss, Profile, QueueLimit};
pub use presets::{Preset, all as presets, named as preset};
pub use proxy::{Faults, Proxy, ProxyConfig};
pub use tun::{ConditionedLink, FAR_V4, FAR_V6, NEAR_V4, NEAR_V6};
