//! `nw-conditioner`: nwkit's link conditioner, because this kernel has no netem.
//!
//! - [`link::Link`]: one direction as a machine in virtual time — drop-tail queue (packets or
//!   bytes), rate serializer, delay with jitter (and extra delay for DNS only), random loss
//!   (uniform or Gilbert–Elliott) from a seeded generator, counters, conditions changed
//!   mid-run.
//! - [`classify`]: tells DNS packets from the rest.
//!
//! - [`tun::ConditionedLink`]: two namespaces joined by a TUN device in each, one thread moving
//!   packets through a `Link` per direction, woken by the devices, a timerfd and an eventfd.
//!
//! - [`control`]: a Unix socket through which another process changes a running link's
//!   conditions and reads its counters.
//! - [`presets`]: named conditions as data, with their sources.
//! - [`proxy::Proxy`]: the mode without root — a TCP or UDP proxy on loopback with the same
//!   link in each direction, and TCP faults (reset, stall, slow close).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use nw_conditioner::link::{Link, Profile};
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

pub mod classify;
pub mod control;
pub mod link;
pub mod presets;
pub mod proxy;
pub mod tun;
