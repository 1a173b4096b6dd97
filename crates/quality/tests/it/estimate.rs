//! The estimators after step changes in throughput, fed 1 MB samples back to back.

use std::time::Duration;

use nw_quality::{DecayedMedian, DualEwma, Estimator, Rtt, Sample, SlidingPercentile};

const MB: u64 = 1_000_000;

/// Feeds `count` samples of `bytes` at `bps`, back to back from `*clock`; returns the estimate
/// after each.
fn feed(
    e: &mut dyn Estimator,
    clock: &mut Duration,
    count: usize,
    bytes: u64,
    bps: f64,
) -> Vec<f64> {
    (0..count)
        .map(|_| {
            let duration = Duration::from_secs_f64(bytes as f64 * 8.0 / bps);
            *clock += duration;
            e.add(Sample { at: *clock, bytes, duration });
            e.estimate(*clock).unwrap()
        })
        .collect()
}

/// Samples until `ok` holds (1-based), if it ever does.
fn until(estimates: &[f64], ok: impl Fn(f64) -> bool) -> Option<usize> {
    estimates.iter().position(|&e| ok(e)).map(|i| i + 1)
}

#[test]
fn the_default_falls_to_20_mbit_within_12_samples_of_a_drop_to_10_and_climbs_back_slower() {
    let mut e = DualEwma::new();
    let mut clock = Duration::ZERO;
    assert_eq!(e.estimate(clock), None, "nothing known before a sample");
    let steady = feed(&mut e, &mut clock, 100, MB, 100e6);
    let settled = *steady.last().unwrap();
    assert!((settled - 100e6).abs() < 1e6, "settles at the rate: {settled}");
    let fall = feed(&mut e, &mut clock, 400, MB, 10e6);
    let fell = until(&fall, |v| v <= 20e6).expect("the estimate falls");
    eprintln!("100 -> 10 Mbit/s: at or below 20 Mbit/s after {fell} samples");
    assert!(fell <= 12, "after {fell} samples");
    let rise = feed(&mut e, &mut clock, 2000, MB, 100e6);
    // The same share of the gap, the other way: within 10 Mbit/s of the new rate.
    let rose = until(&rise, |v| v >= 90e6).expect("the estimate climbs back");
    let fell_to_gap = until(&fall, |v| v <= 19e6).unwrap();
    eprintln!("10 -> 100 Mbit/s: 90% of the way after {rose} samples (the fall: {fell_to_gap})");
    assert!(rose > fell_to_gap, "climbs back more slowly than it fell: {rose} vs {fell_to_gap}");
    // A sample too small to measure bandwidth changes nothing.
    let before = e.estimate(clock);
    e.add(Sample { at: clock, bytes: 1000, duration: Duration::from_secs(1) });
    e.add(Sample { at: clock, bytes: MB, duration: Duration::ZERO });
    assert_eq!(e.estimate(clock), before);
}

#[test]
fn every_estimator_follows_a_drop_and_reports_its_name() {
    let estimators: Vec<Box<dyn Estimator>> = vec![
        Box::new(DualEwma::new()),
        Box::new(SlidingPercentile::new()),
        Box::new(DecayedMedian::new()),
    ];
    for mut e in estimators {
        let mut clock = Duration::ZERO;
        let steady = feed(e.as_mut(), &mut clock, 40, MB, 100e6);
        assert!((steady.last().unwrap() - 100e6).abs() < 1e6, "{}: {steady:?}", e.name());
        let fall = feed(e.as_mut(), &mut clock, 40, MB, 10e6);
        let fell = until(&fall, |v| v <= 20e6);
        eprintln!("{}: at or below 20 Mbit/s after {fell:?} samples", e.name());
        assert!(fell.is_some_and(|n| n <= 32), "{}: {fell:?}", e.name());
        assert!((fall.last().unwrap() - 10e6).abs() < 1e6, "{}: settles at 10", e.name());
    }
}

#[test]
fn the_decayed_median_forgets_with_time_and_the_percentile_with_weight() {
    // One large old sample against small recent ones: age wins.
    let mut m = DecayedMedian::new();
    m.add(Sample { at: Duration::ZERO, bytes: 8 * MB, duration: Duration::from_secs(1) });
    let at = Duration::from_secs(60);
    m.add(Sample { at, bytes: MB, duration: Duration::from_secs(1) });
    assert_eq!(m.estimate(Duration::from_secs(1)), Some(64e6), "fresh, the big sample weighs more");
    assert_eq!(m.estimate(at), Some(8e6), "a minute later, six half-lives have passed");
    // The window holds weight 2000: the oldest of three 1 MB samples is shaved off.
    let mut p = SlidingPercentile::with(2000.0, 0.9);
    for (i, bps) in [10e6, 20e6, 30e6].into_iter().enumerate() {
        let duration = Duration::from_secs_f64(8e6 / bps);
        p.add(Sample { at: Duration::from_secs(i as u64), bytes: MB, duration });
    }
    let high = p.estimate(Duration::ZERO).unwrap();
    assert!((high - 30e6).abs() < 1.0, "the 90th percentile of 20 and 30 Mbit/s: {high}");
    let mut low = SlidingPercentile::with(2000.0, 0.0);
    low.add(Sample { at: Duration::ZERO, bytes: MB, duration: Duration::from_secs(1) });
    assert_eq!(low.estimate(Duration::ZERO), Some(8e6));
}

#[test]
fn the_rtt_is_smoothed_as_rfc_6298_says_and_its_minimum_is_windowed() {
    let ms = Duration::from_millis;
    let mut rtt = Rtt::new(Duration::from_secs(10));
    assert_eq!(rtt.smoothed(), None);
    rtt.add(Duration::ZERO, ms(100));
    // First measurement R: SRTT = R, RTTVAR = R/2 (RFC 6298 §2.2).
    assert_eq!((rtt.smoothed(), rtt.variation()), (Some(ms(100)), Some(ms(50))));
    rtt.add(Duration::from_secs(1), ms(200));
    // RTTVAR = 3/4 · 50 + 1/4 · |100 - 200| = 62.5; SRTT = 7/8 · 100 + 1/8 · 200 = 112.5.
    assert_eq!(rtt.variation(), Some(Duration::from_micros(62_500)));
    assert_eq!(rtt.smoothed(), Some(Duration::from_micros(112_500)));
    assert_eq!(rtt.min(Duration::from_secs(1)), Some(ms(100)));
    rtt.add(Duration::from_secs(5), ms(150));
    // At 10.5 s the 100 ms sample (at 0 s) has left the window; 150 ms is the lowest since.
    assert_eq!(rtt.min(Duration::from_millis(10_500)), Some(ms(150)));
    // Long after, the last minimum known is kept rather than nothing.
    assert_eq!(rtt.min(Duration::from_secs(100)), Some(ms(150)));
    assert_eq!(rtt.latest(), Some(Duration::from_secs(5)));
}
