//! Link-quality levels from throughput, RTT and failures, with hysteresis and staleness.

use std::time::Duration;

use nw_quality::{LinkQuality, Monitor, Sample};

const MB: u64 = 1_000_000;

/// Feeds `count` 1 MB samples at `bps` and an RTT with each, from `*clock`.
fn traffic(m: &mut Monitor, clock: &mut Duration, count: usize, bps: f64, rtt_ms: u64) {
    for _ in 0..count {
        let duration = Duration::from_secs_f64(8e6 / bps);
        *clock += duration;
        m.transfer(Sample { at: *clock, bytes: MB, duration });
        m.rtt(*clock, Duration::from_millis(rtt_ms));
        m.attempt(*clock, true);
    }
}

#[test]
fn levels_follow_throughput_and_rtt_and_nothing_is_known_before_a_transfer() {
    let mut m = Monitor::default();
    assert_eq!(m.estimator(), "dual-ewma");
    let mut clock = Duration::ZERO;
    assert_eq!(m.snapshot(clock).level, LinkQuality::Unknown);
    traffic(&mut m, &mut clock, 50, 50e6, 20);
    let s = m.snapshot(clock);
    assert_eq!(s.level, LinkQuality::Good, "{s:?}");
    assert!(s.throughput.is_some_and(|t| (t - 50e6).abs() < 1e6) && s.rtt_ms == Some(20.0));
    traffic(&mut m, &mut clock, 50, 4e6, 60);
    assert_eq!(m.update(clock), (LinkQuality::Moderate, true));
    assert_eq!(m.update(clock), (LinkQuality::Moderate, false), "a change is reported once");
    traffic(&mut m, &mut clock, 30, 0.5e6, 60);
    assert_eq!(m.snapshot(clock).level, LinkQuality::Minimal);
    // Fast but far: a satellite-like RTT is minimal whatever the throughput.
    let mut far = Monitor::default();
    let mut clock = Duration::ZERO;
    traffic(&mut far, &mut clock, 50, 50e6, 900);
    assert_eq!(far.snapshot(clock).level, LinkQuality::Minimal);
    // Five minutes with no transfer: unknown again.
    assert_eq!(far.snapshot(clock + Duration::from_secs(301)).level, LinkQuality::Unknown);
}

#[test]
fn a_level_is_left_only_20_percent_past_its_threshold() {
    let mut m = Monitor::default();
    let mut clock = Duration::ZERO;
    traffic(&mut m, &mut clock, 60, 12e6, 20);
    assert_eq!(m.snapshot(clock).level, LinkQuality::Good);
    // 9 Mbit/s is under the 10 Mbit/s threshold, but not 20% under: still good.
    traffic(&mut m, &mut clock, 60, 9e6, 20);
    assert_eq!(m.snapshot(clock).level, LinkQuality::Good);
    traffic(&mut m, &mut clock, 60, 7e6, 20);
    assert_eq!(m.snapshot(clock).level, LinkQuality::Moderate);
    // Back at 9: not good again until 10.
    traffic(&mut m, &mut clock, 200, 9e6, 20);
    assert_eq!(m.snapshot(clock).level, LinkQuality::Moderate);
    traffic(&mut m, &mut clock, 400, 10.5e6, 20);
    assert_eq!(m.snapshot(clock).level, LinkQuality::Good);
}

#[test]
fn failures_make_a_link_minimal_and_fade_with_time() {
    let mut m = Monitor::default();
    let mut clock = Duration::ZERO;
    traffic(&mut m, &mut clock, 50, 50e6, 20);
    for _ in 0..60 {
        clock += Duration::from_millis(100);
        m.attempt(clock, false);
    }
    let s = m.snapshot(clock);
    assert_eq!(s.level, LinkQuality::Minimal, "{s:?}");
    assert!(s.failure_ratio >= 0.5);
    // Three minutes of good transfers later, the failures weigh 1/64 as much.
    for _ in 0..180 {
        clock += Duration::from_secs(1);
        traffic(&mut m, &mut clock, 1, 50e6, 20);
    }
    let s = m.snapshot(clock);
    assert_eq!(s.level, LinkQuality::Good, "{s:?}");
    assert!(s.failure_ratio < 0.05, "{s:?}");
}
