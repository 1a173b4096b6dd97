//! Throughput estimators: each keeps a running estimate from observed transfers.
//!
//! - [`DualEwma`] (the default): two exponentially weighted moving averages of throughput whose
//!   weights are the samples' transfer times, with half-lives of 3 s and 9 s of transfer, and the
//!   lower of the two as the estimate. The fast one follows a drop within a few samples; the
//!   slow one holds a rise back until it has lasted. (The same shape as Shaka Player's
//!   bandwidth estimator, which uses 2 s and 5 s.)
//! - [`SlidingPercentile`]: a weighted percentile of the latest samples, each weighted by the
//!   square root of its bytes, the window bounded by total weight (ExoPlayer's sliding
//!   percentile statistic works this way).
//! - [`DecayedMedian`]: a median of the latest samples weighted by bytes and by age (halved every
//!   10 s), so that old evidence fades even when no new samples come.

use std::collections::VecDeque;
use std::time::Duration;

/// One observed transfer: `bytes` moved in `duration` of active transfer, ending at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it ended, on the monitor's clock.
    pub at: Duration,
    /// Bytes moved.
    pub bytes: u64,
    /// Time spent actively moving them.
    pub duration: Duration,
}

impl Sample {
    /// Its throughput in bits per second (0 for an instantaneous sample).
    pub fn bits_per_second(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs <= 0.0 { 0.0 } else { self.bytes as f64 * 8.0 / secs }
    }
}

/// A running throughput estimate.
pub trait Estimator: std::fmt::Debug + Send {
    /// Takes in one sample. Samples too small to measure bandwidth (under
    /// [`MIN_SAMPLE_BYTES`], or of no duration) are ignored: they measure latency.
    fn add(&mut self, sample: Sample);
    /// The estimate at `now`, in bits per second; `None` before any sample counted.
    fn estimate(&self, now: Duration) -> Option<f64>;
    /// A short name, for reports.
    fn name(&self) -> &'static str;
}

/// Samples under this many bytes say more about latency than bandwidth (16 kB, as in Shaka
/// Player's estimator).
pub const MIN_SAMPLE_BYTES: u64 = 16_000;

fn usable(sample: &Sample) -> bool {
    sample.bytes >= MIN_SAMPLE_BYTES && !sample.duration.is_zero()
}

/// An EWMA whose weights are seconds of transfer, with start-up bias correction.
#[derive(Debug, Clone, Copy)]
struct Ewma {
    half_life: f64,
    value: f64,
    total_weight: f64,
}

impl Ewma {
    fn new(half_life: Duration) -> Self {
        Self { half_life: half_life.as_secs_f64(), value: 0.0, total_weight: 0.0 }
    }

    fn add(&mut self, weight: f64, value: f64) {
        let keep = 0.5f64.powf(weight / self.half_life);
        self.value = value * (1.0 - keep) + keep * self.value;
        self.total_weight += weight;
    }

    /// The average, corrected for having started at zero.
    fn get(&self) -> Option<f64> {
        let zero_factor = 1.0 - 0.5f64.powf(self.total_weight / self.half_life);
        (zero_factor > 0.0).then(|| self.value / zero_factor)
    }
}

/// Two EWMAs, fast and slow; the estimate is the lower.
#[derive(Debug, Clone)]
pub struct DualEwma {
    fast: Ewma,
    slow: Ewma,
}

impl DualEwma {
    /// Half-lives of 3 s and 9 s of transfer time.
    pub fn new() -> Self {
        Self::with_half_lives(Duration::from_secs(3), Duration::from_secs(9))
    }

    /// An estimator with these half-lives for its fast and slow averages.
    pub fn with_half_lives(fast: Duration, slow: Duration) -> Self {
        Self { fast: Ewma::new(fast), slow: Ewma::new(slow) }
    }
}

impl Default for DualEwma {
    fn default() -> Self {
        Self::new()
    }
}

impl Estimator for DualEwma {
    fn add(&mut self, sample: Sample) {
        if !usable(&sample) {
            return;
        }
        let (weight, value) = (sample.duration.as_secs_f64(), sample.bits_per_second());
        self.fast.add(weight, value);
        self.slow.add(weight, value);
    }

    fn estimate(&self, _now: Duration) -> Option<f64> {
        Some(self.fast.get()?.min(self.slow.get()?))
    }

    fn name(&self) -> &'static str {
        "dual-ewma"
    }
}

/// A weighted percentile of a window of the latest samples.
#[derive(Debug, Clone)]
pub struct SlidingPercentile {
    /// (weight, bits per second), oldest first.
    window: VecDeque<(f64, f64)>,
    max_weight: f64,
    percentile: f64,
}

impl SlidingPercentile {
    /// The median of a window of total weight 2000 (about four 1 MB samples), weights being
    /// the square roots of the samples' bytes.
    pub fn new() -> Self {
        Self::with(2000.0, 0.5)
    }

    /// `percentile` in 0..=1.
    pub fn with(max_weight: f64, percentile: f64) -> Self {
        Self { window: VecDeque::new(), max_weight, percentile: percentile.clamp(0.0, 1.0) }
    }
}

impl Default for SlidingPercentile {
    fn default() -> Self {
        Self::new()
    }
}

impl Estimator for SlidingPercentile {
    fn add(&mut self, sample: Sample) {
        if !usable(&sample) {
            return;
        }
        self.window.push_back(((sample.bytes as f64).sqrt(), sample.bits_per_second()));
        let mut total: f64 = self.window.iter().map(|(w, _)| w).sum();
        // Drop (or shave) the oldest until the window fits.
        while total > self.max_weight {
            let Some(oldest) = self.window.front_mut() else { break };
            let excess = total - self.max_weight;
            if oldest.0 <= excess {
                total -= oldest.0;
                self.window.pop_front();
            } else {
                oldest.0 -= excess;
                total -= excess;
            }
        }
    }

    fn estimate(&self, _now: Duration) -> Option<f64> {
        weighted_percentile(self.window.iter().copied(), self.percentile)
    }

    fn name(&self) -> &'static str {
        "sliding-percentile"
    }
}

/// A median weighted by bytes and halved in weight every `half_life` of age.
#[derive(Debug, Clone)]
pub struct DecayedMedian {
    /// (at, bytes, bits per second), oldest first.
    samples: VecDeque<(Duration, f64, f64)>,
    half_life: Duration,
    max_samples: usize,
}

impl DecayedMedian {
    /// A half-life of 10 s, over the latest 32 samples.
    pub fn new() -> Self {
        Self::with(Duration::from_secs(10), 32)
    }

    /// A median whose samples lose weight with `half_life`, over at most `max_samples`.
    pub fn with(half_life: Duration, max_samples: usize) -> Self {
        Self { samples: VecDeque::new(), half_life, max_samples: max_samples.max(1) }
    }
}

impl Default for DecayedMedian {
    fn default() -> Self {
        Self::new()
    }
}

impl Estimator for DecayedMedian {
    fn add(&mut self, sample: Sample) {
        if !usable(&sample) {
            return;
        }
        self.samples.push_back((sample.at, sample.bytes as f64, sample.bits_per_second()));
        while self.samples.len() > self.max_samples {
            self.samples.pop_front();
        }
    }

    fn estimate(&self, now: Duration) -> Option<f64> {
        let half_life = self.half_life.as_secs_f64().max(1e-9);
        let weighted = self.samples.iter().map(|&(at, bytes, value)| {
            let age = now.saturating_sub(at).as_secs_f64();
            (bytes * 0.5f64.powf(age / half_life), value)
        });
        weighted_percentile(weighted, 0.5)
    }

    fn name(&self) -> &'static str {
        "decayed-median"
    }
}

/// The value at `percentile` of the total weight, values taken in increasing order.
fn weighted_percentile(items: impl Iterator<Item = (f64, f64)>, percentile: f64) -> Option<f64> {
    let mut items: Vec<(f64, f64)> = items.filter(|(w, _)| *w > 0.0).collect();
    if items.is_empty() {
        return None;
    }
    items.sort_by(|a, b| a.1.total_cmp(&b.1));
    let total: f64 = items.iter().map(|(w, _)| w).sum();
    let target = total * percentile;
    let mut acc = 0.0;
    for (w, v) in &items {
        acc += w;
        if acc >= target {
            return Some(*v);
        }
    }
    items.last().map(|(_, v)| *v)
}
