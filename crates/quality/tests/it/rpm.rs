//! The responsiveness machine against a simulated link in virtual time: flows are added until
//! the goodput saturates, a bloated queue scores far fewer round trips per minute than a small
//! one, and a link that never settles ends on time.

use std::time::Duration;

use nw_quality::rpm::{Action, Direction, Params, ProbeKind, Rpm, Timing, trimmed_mean};

/// A link: capacity, the share of it one flow can use, the idle RTT, the delay its queue adds
/// when saturated, and how much the goodput wobbles (a share, deterministic).
struct Link {
    capacity: f64,
    per_flow: f64,
    base_ms: f64,
    bloat_ms: f64,
    wobble: f64,
}

struct Run {
    outcome: nw_quality::rpm::Outcome,
    ended: Duration,
    opened: Vec<Direction>,
}

fn simulate(link: &Link, params: Params) -> Run {
    let step = Duration::from_millis(10);
    let mut rpm = Rpm::new(params);
    let mut now = Duration::ZERO;
    let mut flows = [0usize; 2];
    let mut opened = Vec::new();
    let mut pending: Vec<(Duration, u64, Timing)> = Vec::new();
    let mut seed: u64 = 7;
    let mut noise = || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    loop {
        let mut actions = rpm.poll(now);
        // Answers due now.
        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(at, _, _)| *at <= now);
        pending = later;
        for (_, id, timing) in due {
            rpm.probe(id, Some(timing));
        }
        actions.extend(rpm.poll(now));
        let load = |flows: usize| (flows as f64 * link.per_flow).min(link.capacity);
        for action in actions {
            match action {
                Action::OpenFlow(d) => {
                    flows[d as usize] += 1;
                    opened.push(d);
                }
                Action::StopFlows(d) => flows[d as usize] = 0,
                Action::Probe { id, kind } => {
                    let loaded = flows.iter().map(|f| load(*f)).fold(0.0, f64::max);
                    let queue = if loaded >= link.capacity { link.bloat_ms } else { 0.0 };
                    let rtt = Duration::from_secs_f64((link.base_ms + queue) / 1e3);
                    let timing = match kind {
                        ProbeKind::OnLoad => Timing::OnLoad { http: rtt },
                        ProbeKind::Idle | ProbeKind::Foreign => {
                            Timing::Foreign { tcp: rtt, tls: Some(rtt), http: rtt }
                        }
                    };
                    // Answered after the round trips it takes.
                    pending.push((now + rtt * 3, id, timing));
                }
                Action::Finish => {
                    return Run { outcome: rpm.outcome(), ended: now, opened };
                }
            }
        }
        for d in [Direction::Download, Direction::Upload] {
            let rate = load(flows[d as usize]) * (1.0 + link.wobble * noise());
            #[allow(clippy::cast_possible_truncation, reason = "a simulated byte count")]
            rpm.bytes(d, (rate * step.as_secs_f64() / 8.0) as u64);
        }
        now += step;
        assert!(now < Duration::from_secs(60), "the test never finished");
    }
}

const SMALL_QUEUE: Link =
    Link { capacity: 100e6, per_flow: 30e6, base_ms: 20.0, bloat_ms: 10.0, wobble: 0.01 };
const BLOATED: Link = Link { bloat_ms: 400.0, ..SMALL_QUEUE };

#[test]
fn rpm_flows_are_added_until_the_goodput_saturates_and_the_test_ends_early() {
    let run = simulate(&SMALL_QUEUE, Params::default());
    let o = &run.outcome;
    eprintln!("small queue: {o:?}, ended at {:?}", run.ended);
    assert!(o.dl_saturated && o.ul_saturated, "{o:?}");
    assert!(run.ended < Duration::from_secs(20), "stable before the time ran out");
    // 30 Mbit/s a flow: four flows fill 100 Mbit/s.
    assert!(o.dl_flows >= 4 && o.ul_flows >= 4, "{o:?}");
    assert!((o.dl_throughput - 100e6).abs() < 5e6, "{o:?}");
    assert!((o.ul_throughput - 100e6).abs() < 5e6, "{o:?}");
    assert!((o.base_rtt - 20.0).abs() < 0.5, "the idle RTT: {o:?}");
    // Every probe saw 30 ms under load: 2000 round trips a minute.
    assert!((o.responsiveness - 2000.0).abs() < 20.0, "{o:?}");
    let first_upload = run.opened.iter().position(|d| *d == Direction::Upload).unwrap();
    assert!(
        run.opened[..first_upload].iter().all(|d| *d == Direction::Download),
        "one direction after the other"
    );
}

#[test]
fn rpm_a_bloated_queue_scores_at_most_half_of_a_small_one() {
    let small = simulate(&SMALL_QUEUE, Params::default()).outcome;
    let bloated = simulate(&BLOATED, Params::default()).outcome;
    eprintln!(
        "RPM: small queue {:.0}, bloated {:.0}",
        small.responsiveness, bloated.responsiveness
    );
    assert!(bloated.responsiveness > 0.0);
    assert!(bloated.responsiveness <= small.responsiveness / 2.0, "{small:?} vs {bloated:?}");
    // The same capacity either way: the queue costs responsiveness, not throughput.
    assert!((bloated.dl_throughput - small.dl_throughput).abs() < 5e6);
}

#[test]
fn rpm_a_link_that_never_settles_ends_within_the_time_with_what_it_measured() {
    let wild = Link { wobble: 0.6, ..SMALL_QUEUE };
    let run = simulate(&wild, Params { max_time: Duration::from_secs(10), ..Params::default() });
    let o = &run.outcome;
    assert!(!o.dl_saturated && !o.ul_saturated, "{o:?}");
    assert!(run.ended <= Duration::from_millis(10_100), "ended at {:?}", run.ended);
    assert!(o.dl_flows <= 16 && o.dl_throughput > 0.0 && o.responsiveness > 0.0, "{o:?}");
}

#[test]
fn rpm_formula_and_trimmed_mean_are_the_drafts() {
    // The lowest 95% of 1..=20 is 1..=19.
    let values: Vec<f64> = (1..=20).map(f64::from).collect();
    assert_eq!(trimmed_mean(&values, 0.95), Some(10.0));
    assert_eq!(trimmed_mean(&[], 0.95), None);
    // Foreign probes of 30 ms in each part and self probes of 60 ms:
    // 60000 / (1/6 · (30 + 30 + 30) + 1/2 · 60) = 60000 / 45.
    let link = Link { capacity: 1e6, per_flow: 1e6, base_ms: 10.0, bloat_ms: 0.0, wobble: 0.0 };
    let run =
        simulate(&link, Params { directions: vec![Direction::Download], ..Params::default() });
    // Every part took 10 ms here: 60000 / 10.
    assert!((run.outcome.responsiveness - 6000.0).abs() < 1.0, "{:?}", run.outcome);
    assert_eq!(run.outcome.ul_flows, 0, "no upload asked for");
}

#[test]
fn rpm_goodput_is_bytes_over_the_time_that_really_passed() {
    // A driver that wakes every 1.5 s instead of every 1 s: each interval holds 1.5 s of bytes,
    // which must read as the link's 10 Mbit/s, not as 15.
    let params = Params {
        directions: vec![Direction::Download],
        idle_probes: 0,
        max_time: Duration::from_secs(12),
        ..Params::default()
    };
    let mut rpm = Rpm::new(params);
    let step = Duration::from_millis(1500);
    let mut now = Duration::ZERO;
    rpm.poll(now);
    while now < Duration::from_secs(9) {
        now += step;
        #[allow(clippy::cast_possible_truncation, reason = "a simulated byte count")]
        rpm.bytes(Direction::Download, (10e6 * step.as_secs_f64() / 8.0) as u64);
        rpm.poll(now);
    }
    let goodput = rpm.outcome().dl_throughput;
    assert!((goodput - 10e6).abs() < 1e5, "10 Mbit/s, read {goodput}");
}

#[test]
fn rpm_without_self_probes_comes_from_the_foreign_ones() {
    // Loaded connections that cannot carry a probe (HTTP/1.1): every self probe fails, and the
    // foreign probes' 20 + 30 + 50 ms (a mean component of 33.3 ms) give the figure alone.
    let params = Params {
        directions: vec![Direction::Download],
        idle_probes: 0,
        max_time: Duration::from_secs(6),
        ..Params::default()
    };
    let mut rpm = Rpm::new(params);
    let ms = Duration::from_millis;
    let mut now = Duration::ZERO;
    while !rpm.done() {
        for action in rpm.poll(now) {
            if let Action::Probe { id, kind } = action {
                let timing = match kind {
                    ProbeKind::OnLoad => None,
                    _ => Some(Timing::Foreign { tcp: ms(20), tls: Some(ms(30)), http: ms(50) }),
                };
                rpm.probe(id, timing);
            }
        }
        rpm.bytes(Direction::Download, 125_000);
        now += ms(100);
        assert!(now < Duration::from_secs(10), "the test never finished");
    }
    let outcome = rpm.outcome();
    assert!((outcome.responsiveness - 1800.0).abs() < 1.0, "60000 / 33.3 ms: {outcome:?}");
    assert!(outcome.self_http_ms == 0.0, "{outcome:?}");
}
