//! One direction of a conditioned link: see [`Link`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How one direction behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Bits per second through the serializer; `None`: unlimited.
    pub rate_bps: Option<u64>,
    /// One-way delay after serialization.
    pub delay: Duration,
    /// Each packet's delay varies uniformly within ± this (never below zero, never reordering).
    pub jitter: Duration,
    /// Added to DNS packets only (UDP or TCP port 53), on top of `delay`.
    pub dns_delay: Duration,
    /// Random loss.
    pub loss: Loss,
    /// How much may wait in the queue.
    pub queue: QueueLimit,
}

impl Default for Profile {
    fn default() -> Self {
        Self {
            rate_bps: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            dns_delay: Duration::ZERO,
            loss: Loss::None,
            queue: QueueLimit::Packets(1000),
        }
    }
}

/// Random loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// No random loss.
    None,
    /// Each packet is lost with probability `p` (0–1).
    Uniform {
        /// The probability.
        p: f64,
    },
    /// Two states: from good to bad with probability `p`, back with `r`, per packet; a packet
    /// is lost with `loss_good` or `loss_bad` depending on the state (E. N. Gilbert, "Capacity
    /// of a burst-noise channel", 1960; E. O. Elliott, 1963). Mean loss:
    /// `(r·loss_good + p·loss_bad) / (p + r)`; mean bad run: `1/r` packets.
    GilbertElliott {
        /// From good to bad, per packet.
        p: f64,
        /// From bad back to good, per packet.
        r: f64,
        /// Loss in the good state.
        loss_good: f64,
        /// Loss in the bad state.
        loss_bad: f64,
    },
}

/// The queue in front of the serializer: at most this many packets or bytes wait (the packet
/// being serialized does not count); what would exceed it is dropped (drop-tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueLimit {
    /// At most this many packets.
    Packets(usize),
    /// At most this many bytes.
    Bytes(usize),
}

/// What happened in this direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets that entered the queue.
    pub enqueued: u64,
    /// Packets dropped because the queue was full.
    pub dropped_queue: u64,
    /// Packets dropped by random loss.
    pub dropped_loss: u64,
    /// Packets delivered.
    pub delivered: u64,
    /// The longest the queue got, in packets.
    pub max_queue_packets: usize,
    /// The longest the queue got, in bytes.
    pub max_queue_bytes: usize,
}

/// Both directions' counters: a TUN link's, or a proxy's summed over its connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkCounters {
    /// Client to server (near to far).
    pub up: Counters,
    /// Server to client (far to near).
    pub down: Counters,
}

#[derive(Debug)]
struct Packet {
    data: Vec<u8>,
    dns: bool,
}

/// One direction.
///
/// One direction of a conditioned link, as a machine in virtual time: packets go through a
/// drop-tail queue, a rate serializer, a delay with jitter (and an extra delay for DNS), then
/// random loss — uniform or Gilbert–Elliott — drawn from a seeded generator, so a run is
/// reproducible. Packets leave in the order they entered: jitter never reorders.
///
/// Driving it: hand each packet to [`Link::handle_packet`], sleep until
/// [`Link::poll_timeout`], call [`Link::handle_timeout`], and send what
/// [`Link::poll_packet`] returns.
#[derive(Debug)]
pub struct Link {
    profile: Profile,
    rng: SplitMix64,
    bad: bool,
    queue: VecDeque<Packet>,
    queued_bytes: usize,
    /// The packet in the serializer and when it is through.
    serializing: Option<(Instant, Packet)>,
    /// Serialized, kept, waiting out their delay: (release time, packet), in release order.
    delayed: VecDeque<(Instant, Packet)>,
    ready: VecDeque<Vec<u8>>,
    /// Bytes accepted and not yet handed out or lost.
    held_bytes: usize,
    counters: Counters,
}

impl Link {
    /// A link behaving as `profile`, its randomness from `seed`.
    pub fn new(profile: Profile, seed: u64) -> Self {
        Self {
            profile,
            rng: SplitMix64(seed),
            bad: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
            serializing: None,
            delayed: VecDeque::new(),
            ready: VecDeque::new(),
            held_bytes: 0,
            counters: Counters::default(),
        }
    }

    /// A packet arrives at `now`.
    pub fn handle_packet(&mut self, now: Instant, data: Vec<u8>) {
        self.advance(now);
        let full = match self.profile.queue {
            QueueLimit::Packets(n) => self.queue.len() >= n,
            QueueLimit::Bytes(n) => self.queued_bytes.saturating_add(data.len()) > n,
        };
        // An idle serializer takes the packet at once; it never waits in the queue.
        if full && self.serializing.is_some() {
            self.counters.dropped_queue += 1;
            return;
        }
        self.counters.enqueued += 1;
        self.held_bytes += data.len();
        let dns = crate::classify::is_dns(&data);
        self.queued_bytes += data.len();
        self.queue.push_back(Packet { data, dns });
        self.advance(now);
        self.counters.max_queue_packets = self.counters.max_queue_packets.max(self.queue.len());
        self.counters.max_queue_bytes = self.counters.max_queue_bytes.max(self.queued_bytes);
    }

    /// Time has come to `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
    }

    /// When the machine next needs the clock.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let serialized = self.serializing.as_ref().map(|(t, _)| *t);
        let released = self.delayed.front().map(|(t, _)| *t);
        match (serialized, released) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next packet to deliver, if one is due.
    pub fn poll_packet(&mut self) -> Option<Vec<u8>> {
        let packet = self.ready.pop_front()?;
        self.held_bytes -= packet.len();
        Some(packet)
    }

    /// Bytes inside the link: queued, serializing, waiting out their delay or due; what a
    /// stream proxy counts to push back on its sender instead of dropping.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// New conditions, from `now` on: they apply to every packet that enters the serializer
    /// or its delay after this call (so within one packet), and the queue limit at once.
    pub fn set_profile(&mut self, now: Instant, profile: Profile) {
        self.advance(now);
        self.profile = profile;
        self.advance(now);
    }

    /// The conditions now.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// What it did so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Runs the pipeline up to `now`.
    fn advance(&mut self, now: Instant) {
        loop {
            match self.serializing.take() {
                Some((done, packet)) if done <= now => {
                    self.after_serializer(done, packet);
                    self.start_next(done);
                }
                Some(busy) => {
                    self.serializing = Some(busy);
                    break;
                }
                None => {
                    if self.queue.is_empty() {
                        break;
                    }
                    self.start_next(now);
                }
            }
        }
        while let Some((at, _)) = self.delayed.front() {
            if *at > now {
                break;
            }
            if let Some((_, packet)) = self.delayed.pop_front() {
                self.counters.delivered += 1;
                self.ready.push_back(packet.data);
            }
        }
    }

    /// Puts the next queued packet into the serializer, starting at `at`.
    fn start_next(&mut self, at: Instant) {
        let Some(packet) = self.queue.pop_front() else { return };
        self.queued_bytes -= packet.data.len();
        let took = match self.profile.rate_bps {
            Some(bps) if bps > 0 => {
                let bits = u64::try_from(packet.data.len()).unwrap_or(u64::MAX).saturating_mul(8);
                Duration::from_nanos(bits.saturating_mul(1_000_000_000) / bps)
            }
            _ => Duration::ZERO,
        };
        self.serializing = Some((at + took, packet));
    }

    /// A packet leaves the serializer at `at`: lost, or delayed.
    fn after_serializer(&mut self, at: Instant, packet: Packet) {
        if self.lost() {
            self.counters.dropped_loss += 1;
            self.held_bytes -= packet.data.len();
            return;
        }
        let mut delay = self.profile.delay;
        if packet.dns {
            delay += self.profile.dns_delay;
        }
        let jitter = self.profile.jitter;
        if !jitter.is_zero() {
            // Uniform in [-jitter, +jitter], in nanoseconds.
            let span = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX).saturating_mul(2);
            let pick = Duration::from_nanos(self.rng.below(span.saturating_add(1)));
            delay = (delay + pick).saturating_sub(jitter);
        }
        let mut release = at + delay;
        // FIFO: never before the packet ahead of it.
        if let Some((last, _)) = self.delayed.back() {
            release = release.max(*last);
        }
        self.delayed.push_back((release, packet));
    }

    fn lost(&mut self) -> bool {
        match self.profile.loss {
            Loss::None => false,
            Loss::Uniform { p } => self.rng.chance(p),
            Loss::GilbertElliott { p, r, loss_good, loss_bad } => {
                self.bad = if self.bad { !self.rng.chance(r) } else { self.rng.chance(p) };
                self.rng.chance(if self.bad { loss_bad } else { loss_good })
            }
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", 2014):
/// small, fast, and the same sequence for the same seed everywhere.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        // The top 53 bits make an exact double in [0, 1).
        #[allow(clippy::cast_precision_loss, reason = "53 bits fit a double's mantissa")]
        let x = (self.next() >> 11) as f64;
        x / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in [0, n) (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

#[cfg(test)]
mod tests;
