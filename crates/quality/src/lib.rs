//! `nw-quality`: how good the network is, measured, never guessed.
//!
//! Everything here is fed by observed transfers only (A34: "the only good way to determine
//! whether connectivity is good is to run a network request and see how it performs") and runs
//! on an injected clock (a [`Duration`](std::time::Duration) since any origin), so every rule is
//! tested in virtual time.
//!
//! - [`estimate`]: throughput estimators behind one trait: the dual EWMA (the default), a
//!   sliding weighted percentile and a time-decayed weighted median.
//! - [`rtt`]: the smoothed RTT (RFC 6298) and the windowed minimum.
//! - [`level`]: coarse link-quality levels from throughput, RTT and failures, with hysteresis,
//!   meant to tune initial values (a first bitrate, a segment count), never to gate a
//!   connection.
//! - [`rpm`]: the responsiveness test (draft-ietf-ippm-responsiveness) as a machine: when to
//!   add load and send probes, saturation detection, and the RPM figure.
#![warn(missing_docs)]

pub mod estimate;
pub mod level;
pub mod rpm;
pub mod rtt;

pub use estimate::{DecayedMedian, DualEwma, Estimator, Sample, SlidingPercentile};
pub use level::{LinkQuality, Monitor, Snapshot};
pub use rtt::Rtt;
