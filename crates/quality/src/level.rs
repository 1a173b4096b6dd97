//! Coarse link-quality levels, in the manner of `linkQuality`: unknown, minimal, moderate, good.
//!
//! A [`Monitor`] keeps a throughput estimator, the RTT, and the recent failures (each weighing
//! half as much every 30 s), and maps them to a level. The thresholds are ours:
//!
//! | level | when |
//! |---|---|
//! | unknown | no transfer observed in the last 5 minutes |
//! | minimal | under 1 Mbit/s, or a smoothed RTT of 800 ms or more, or half the recent attempts failed |
//! | good | 10 Mbit/s or more, a smoothed RTT of 100 ms or less, and under 10% failed |
//! | moderate | anything between |
//!
//! A level is entered at its thresholds and left only once a measure is 20% past them
//! (hysteresis), so a link near a threshold does not flap. The level is meant to tune initial values, never to refuse a
//! connection.

use std::time::Duration;

use serde::Serialize;

use crate::estimate::{DualEwma, Estimator, Sample};
use crate::rtt::Rtt;

/// How good the link is, coarsely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkQuality {
    /// Nothing recent is known.
    Unknown,
    /// Barely usable: under 1 Mbit/s, round trips over 800 ms, or half the attempts failing.
    Minimal,
    /// Between minimal and good.
    Moderate,
    /// At least 10 Mbit/s, round trips under 100 ms and few failures.
    Good,
}

/// With no transfer observed for this long, nothing is known.
pub const STALE_AFTER: Duration = Duration::from_secs(300);
const FAILURE_HALF_LIFE: Duration = Duration::from_secs(30);
const GOOD_BPS: f64 = 10e6;
const MINIMAL_BPS: f64 = 1e6;
const GOOD_RTT: f64 = 0.100;
const MINIMAL_RTT: f64 = 0.800;
const GOOD_FAILURES: f64 = 0.10;
const MINIMAL_FAILURES: f64 = 0.5;
const HYSTERESIS: f64 = 0.2;

/// What the monitor knows at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Snapshot {
    /// The coarse level.
    pub level: LinkQuality,
    /// Bits per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// The smoothed round-trip time, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// The lowest round-trip time seen recently, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_rtt_ms: Option<f64>,
    /// The share of recent attempts that failed (time-decayed), 0..=1.
    pub failure_ratio: f64,
}

/// Throughput, RTT and failures, and the level they make.
#[derive(Debug)]
pub struct Monitor {
    throughput: Box<dyn Estimator>,
    rtt: Rtt,
    /// Time-decayed counts, as of `decayed_at`.
    successes: f64,
    failures: f64,
    decayed_at: Duration,
    last_evidence: Option<Duration>,
    level: LinkQuality,
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new(Box::new(DualEwma::new()))
    }
}

impl Monitor {
    /// A monitor estimating throughput with `throughput`.
    pub fn new(throughput: Box<dyn Estimator>) -> Self {
        Self {
            throughput,
            rtt: Rtt::default(),
            successes: 0.0,
            failures: 0.0,
            decayed_at: Duration::ZERO,
            last_evidence: None,
            level: LinkQuality::Unknown,
        }
    }

    /// A transfer moved `sample.bytes` in `sample.duration`.
    pub fn transfer(&mut self, sample: Sample) {
        self.throughput.add(sample);
        self.evidence(sample.at);
    }

    /// An RTT measured at `at`.
    pub fn rtt(&mut self, at: Duration, rtt: Duration) {
        self.rtt.add(at, rtt);
        self.evidence(at);
    }

    /// An attempt (a connection, a request) ended at `at`, well or not.
    pub fn attempt(&mut self, at: Duration, ok: bool) {
        self.decay(at);
        if ok {
            self.successes += 1.0;
        } else {
            self.failures += 1.0;
        }
        self.evidence(at);
    }

    fn evidence(&mut self, at: Duration) {
        self.last_evidence = Some(self.last_evidence.map_or(at, |l| l.max(at)));
    }

    fn decay(&mut self, now: Duration) {
        let age = now.saturating_sub(self.decayed_at).as_secs_f64();
        let keep = 0.5f64.powf(age / FAILURE_HALF_LIFE.as_secs_f64());
        self.successes *= keep;
        self.failures *= keep;
        self.decayed_at = self.decayed_at.max(now);
    }

    /// What is known at `now`, the level included (which this updates: see [`Self::update`]).
    pub fn snapshot(&mut self, now: Duration) -> Snapshot {
        self.decay(now);
        let attempts = self.successes + self.failures;
        let failure_ratio = if attempts > 0.0 { self.failures / attempts } else { 0.0 };
        let throughput = self.throughput.estimate(now);
        let rtt = self.rtt.smoothed().map(|d| d.as_secs_f64());
        let min_rtt = self.rtt.min(now).map(|d| d.as_secs_f64());
        let stale = self.last_evidence.is_none_or(|l| now.saturating_sub(l) > STALE_AFTER);
        let level = if stale || (throughput.is_none() && rtt.is_none() && attempts == 0.0) {
            LinkQuality::Unknown
        } else {
            classify(self.level, throughput, rtt, failure_ratio)
        };
        self.level = level;
        Snapshot {
            level,
            throughput,
            rtt_ms: rtt.map(|r| r * 1e3),
            min_rtt_ms: min_rtt.map(|r| r * 1e3),
            failure_ratio,
        }
    }

    /// The level at `now`, and whether it changed since the last look.
    pub fn update(&mut self, now: Duration) -> (LinkQuality, bool) {
        let before = self.level;
        let level = self.snapshot(now).level;
        (level, level != before)
    }

    /// The throughput estimator's name.
    pub fn estimator(&self) -> &'static str {
        self.throughput.name()
    }
}

/// The level the measures make, coming from `current`.
fn classify(
    current: LinkQuality,
    throughput: Option<f64>,
    rtt: Option<f64>,
    failures: f64,
) -> LinkQuality {
    // A level is entered at its threshold and left only 20% past it.
    let f = if current == LinkQuality::Minimal { 1.0 + HYSTERESIS } else { 1.0 };
    let minimal = throughput.is_some_and(|t| t < MINIMAL_BPS * f)
        || rtt.is_some_and(|r| r >= MINIMAL_RTT / f)
        || failures >= MINIMAL_FAILURES / f;
    if minimal {
        return LinkQuality::Minimal;
    }
    let f = if current == LinkQuality::Good { 1.0 - HYSTERESIS } else { 1.0 };
    let good = throughput.is_some_and(|t| t >= GOOD_BPS * f)
        && rtt.is_none_or(|r| r <= GOOD_RTT / f)
        && failures < GOOD_FAILURES / f;
    if good { LinkQuality::Good } else { LinkQuality::Moderate }
}
