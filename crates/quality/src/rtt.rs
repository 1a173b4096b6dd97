//! Round-trip time: the smoothed RTT and its variation as RFC 6298 §2 computes them
//! (α = 1/8, β = 1/4), and the minimum over a sliding window (10 s, as BBR's min_rtt filter
//! uses, RFC 9002 §5.2 keeps one too) — the base RTT that queueing adds to.

use std::collections::VecDeque;
use std::time::Duration;

/// A running RTT estimate.
#[derive(Debug, Clone)]
pub struct Rtt {
    smoothed: Option<f64>,
    variation: f64,
    /// (at, rtt) in increasing rtt order from the front: a monotonic queue for the window min.
    window: VecDeque<(Duration, Duration)>,
    span: Duration,
    latest: Option<Duration>,
}

impl Default for Rtt {
    fn default() -> Self {
        Self::new(Duration::from_secs(10))
    }
}

impl Rtt {
    /// The minimum is taken over the last `span`.
    pub fn new(span: Duration) -> Self {
        Self { smoothed: None, variation: 0.0, window: VecDeque::new(), span, latest: None }
    }

    /// One RTT measured at `at` (a handshake, a request's time to first byte on a warm
    /// connection, a probe).
    pub fn add(&mut self, at: Duration, rtt: Duration) {
        let r = rtt.as_secs_f64();
        match self.smoothed {
            None => {
                self.smoothed = Some(r);
                self.variation = r / 2.0;
            }
            Some(s) => {
                self.variation = 0.75 * self.variation + 0.25 * (s - r).abs();
                self.smoothed = Some(0.875 * s + 0.125 * r);
            }
        }
        while self.window.back().is_some_and(|&(_, v)| v >= rtt) {
            self.window.pop_back();
        }
        self.window.push_back((at, rtt));
        self.latest = Some(at);
    }

    /// The smoothed RTT.
    pub fn smoothed(&self) -> Option<Duration> {
        self.smoothed.map(Duration::from_secs_f64)
    }

    /// The RTT variation.
    pub fn variation(&self) -> Option<Duration> {
        self.smoothed.map(|_| Duration::from_secs_f64(self.variation))
    }

    /// The lowest RTT seen within the window ending at `now`; when nothing is that recent, the
    /// most recent minimum still known.
    pub fn min(&mut self, now: Duration) -> Option<Duration> {
        while self.window.len() > 1
            && self.window.front().is_some_and(|&(at, _)| now.saturating_sub(at) > self.span)
        {
            self.window.pop_front();
        }
        self.window.front().map(|&(_, v)| v)
    }

    /// When the last sample came.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }
}
