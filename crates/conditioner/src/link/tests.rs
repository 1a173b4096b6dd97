//! The link machine in virtual time: delay, rate, queue, jitter, loss, DNS delay, changes
//! mid-run, counters.

use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn t0() -> Instant {
    Instant::now()
}

/// Drives `link` until it is idle; returns each delivered packet's first byte (its id) and the
/// time it left, relative to `start`.
fn drain(link: &mut Link, start: Instant) -> Vec<(u8, Duration)> {
    let mut out = Vec::new();
    while let Some(at) = link.poll_timeout() {
        link.handle_timeout(at);
        while let Some(p) = link.poll_packet() {
            out.push((p[0], at - start));
        }
    }
    out
}

/// Feeds packets at their arrival times (offsets from `start`, in order), running the
/// machine's timers in between, then drains it; returns (id, delivery time) as above.
fn feed(link: &mut Link, start: Instant, arrivals: &[(Duration, Vec<u8>)]) -> Vec<(u8, Duration)> {
    let mut out = Vec::new();
    for (offset, data) in arrivals {
        let arrival = start + *offset;
        while let Some(at) = link.poll_timeout().filter(|at| *at <= arrival) {
            link.handle_timeout(at);
            while let Some(p) = link.poll_packet() {
                out.push((p[0], at - start));
            }
        }
        link.handle_packet(arrival, data.clone());
        while let Some(p) = link.poll_packet() {
            out.push((p[0], *offset));
        }
    }
    out.extend(drain(link, start));
    out
}

fn packet(id: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = id;
    p
}

#[test]
fn delay_alone_shifts_every_packet_by_exactly_the_delay() {
    let t = t0();
    let mut link = Link::new(Profile { delay: 50 * MS, ..Profile::default() }, 1);
    let out = feed(&mut link, t, &[(Duration::ZERO, packet(1, 100)), (10 * MS, packet(2, 100))]);
    assert_eq!(out, [(1, 50 * MS), (2, 60 * MS)]);
    assert_eq!(link.counters().delivered, 2);
}

#[test]
fn the_rate_serializes_back_to_back_packets() {
    // 1,250 bytes at 10 Mbit/s take exactly 1 ms each.
    let t = t0();
    let profile = Profile { rate_bps: Some(10_000_000), delay: 20 * MS, ..Profile::default() };
    let mut link = Link::new(profile, 1);
    for id in 0..10 {
        link.handle_packet(t, packet(id, 1250));
    }
    assert_eq!(link.held_bytes(), 12_500, "everything is inside the link");
    let out = drain(&mut link, t);
    assert_eq!(link.held_bytes(), 0, "and all of it has left");
    let times: Vec<Duration> = out.iter().map(|(_, at)| *at).collect();
    let want: Vec<Duration> = (1..=10).map(|k| 20 * MS + k * MS).collect();
    assert_eq!(times, want);
    // Goodput over the run: 10 × 1,250 bytes in 10 ms of serializing = 10 Mbit/s.
}

#[test]
fn a_drop_tail_queue_in_packets_or_bytes() {
    let t = t0();
    let profile =
        Profile { rate_bps: Some(1_000_000), queue: QueueLimit::Packets(5), ..Profile::default() };
    let mut link = Link::new(profile, 1);
    for id in 0..10 {
        link.handle_packet(t, packet(id, 1000));
    }
    // One in the serializer, five waiting, four dropped — the last four, in arrival order.
    let out = drain(&mut link, t);
    assert_eq!(out.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
    let c = link.counters();
    assert_eq!((c.enqueued, c.dropped_queue, c.delivered, c.max_queue_packets), (6, 4, 6, 5));

    let profile =
        Profile { rate_bps: Some(1_000_000), queue: QueueLimit::Bytes(2500), ..Profile::default() };
    let mut link = Link::new(profile, 1);
    for id in 0..6 {
        link.handle_packet(t, packet(id, 1000));
    }
    let c = link.counters();
    assert_eq!((c.enqueued, c.dropped_queue, c.max_queue_bytes), (3, 3, 2000));
}

#[test]
fn a_large_queue_multiplies_delay_under_load_and_a_small_one_does_not() {
    let t = t0();
    let sojourn = |limit: usize| {
        let profile = Profile {
            rate_bps: Some(1_000_000),
            delay: 10 * MS,
            queue: QueueLimit::Packets(limit),
            ..Profile::default()
        };
        let mut link = Link::new(profile, 1);
        for id in 0..200u16 {
            link.handle_packet(t, packet(u8::try_from(id % 250).unwrap(), 1250));
        }
        drain(&mut link, t).last().map(|(_, at)| *at).unwrap()
    };
    // 1,250 bytes at 1 Mbit/s: 10 ms each. The last packet waits behind the whole queue.
    assert_eq!(sojourn(100), 10 * MS + 101 * 10 * MS);
    assert_eq!(sojourn(4), 10 * MS + 5 * 10 * MS);
}

#[test]
fn jitter_stays_within_bounds_and_never_reorders() {
    let t = t0();
    let profile = Profile { delay: 50 * MS, jitter: 10 * MS, ..Profile::default() };
    let mut link = Link::new(profile, 42);
    let arrivals: Vec<(Duration, Vec<u8>)> =
        (0..200u8).map(|id| (u32::from(id) * MS, packet(id, 64))).collect();
    let out = feed(&mut link, t, &arrivals);
    assert_eq!(out.len(), 200);
    for (i, (id, at)) in out.iter().enumerate() {
        assert_eq!(usize::from(*id), i, "order kept");
        let sent = u32::from(*id) * MS;
        assert!(*at >= sent + 40 * MS, "{id}: {at:?}");
        assert!(*at <= sent + 60 * MS + 10 * MS, "{id}: {at:?} (FIFO can add a little)");
    }
    let spread: Vec<Duration> = out.iter().map(|(id, at)| *at - u32::from(*id) * MS).collect();
    assert!(
        spread.iter().any(|d| *d < 47 * MS) && spread.iter().any(|d| *d > 53 * MS),
        "it varies"
    );
}

#[test]
fn uniform_loss_matches_its_rate_and_a_seed_repeats_it() {
    let t = t0();
    let run = |seed: u64| {
        let mut link =
            Link::new(Profile { loss: Loss::Uniform { p: 0.1 }, ..Profile::default() }, seed);
        let mut kept = Vec::new();
        for i in 0..100_000u32 {
            link.handle_packet(t, i.to_be_bytes().to_vec());
            while let Some(p) = link.poll_packet() {
                kept.push(p);
            }
        }
        (link.counters(), kept)
    };
    let (c, kept) = run(9);
    #[allow(clippy::cast_precision_loss, reason = "test arithmetic")]
    let rate = c.dropped_loss as f64 / 100_000.0;
    assert!((0.095..0.105).contains(&rate), "{rate}");
    assert_eq!(c.dropped_loss + c.delivered, 100_000);
    assert_eq!(run(9).1, kept, "the same seed loses the same packets");
    let mut link = Link::new(Profile { loss: Loss::Uniform { p: 1.0 }, ..Profile::default() }, 1);
    link.handle_packet(t, vec![0; 100]);
    assert_eq!(link.held_bytes(), 0, "a lost packet is no longer held");
    assert_ne!(run(10).1, kept);
}

#[test]
fn gilbert_elliott_loss_comes_in_bursts_at_its_mean_rate() {
    let t = t0();
    // Bad 1/(1+9) of the time, losing everything there: 10 % mean loss, runs of 1/r = 10.
    let loss = Loss::GilbertElliott { p: 0.011_111, r: 0.1, loss_good: 0.0, loss_bad: 1.0 };
    let mut link = Link::new(Profile { loss, ..Profile::default() }, 3);
    let (mut lost_run, mut runs, mut in_run) = (0u64, 0u64, false);
    for i in 0..200_000u32 {
        let before = link.counters().dropped_loss;
        link.handle_packet(t, i.to_be_bytes().to_vec());
        let lost = link.counters().dropped_loss > before;
        if lost && !in_run {
            runs += 1;
        }
        if lost {
            lost_run += 1;
        }
        in_run = lost;
        while link.poll_packet().is_some() {}
    }
    #[allow(clippy::cast_precision_loss, reason = "test arithmetic")]
    let (rate, mean_run) = (lost_run as f64 / 200_000.0, lost_run as f64 / runs as f64);
    assert!((0.085..0.115).contains(&rate), "mean loss {rate}");
    assert!((8.0..12.0).contains(&mean_run), "mean burst {mean_run}");
}

#[test]
fn dns_delay_applies_to_dns_only() {
    let t = t0();
    let profile = Profile { delay: 5 * MS, dns_delay: 3000 * MS, ..Profile::default() };
    let mut link = Link::new(profile, 1);
    // An IPv4 UDP packet to port 53, then one to port 443.
    let udp = |dst: u16| {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&dst.to_be_bytes());
        p.extend_from_slice(&[0, 8, 0, 0]);
        p
    };
    link.handle_packet(t, udp(53));
    let out = drain(&mut link, t);
    assert_eq!(out[0].1, 3005 * MS);
    link.handle_packet(t + 4000 * MS, udp(443));
    let out = drain(&mut link, t);
    assert_eq!(out[0].1, 4005 * MS);
}

#[test]
fn new_conditions_apply_from_the_next_packet() {
    let t = t0();
    let mut link = Link::new(Profile { delay: 100 * MS, ..Profile::default() }, 1);
    link.handle_packet(t, packet(1, 100));
    link.set_profile(t + MS, Profile { delay: 10 * MS, ..Profile::default() });
    link.handle_packet(t + 2 * MS, packet(2, 100));
    // The first keeps its 100 ms; the second gets 10 ms but cannot pass the first.
    assert_eq!(drain(&mut link, t), [(1, 100 * MS), (2, 100 * MS)]);
    link.handle_packet(t + 200 * MS, packet(3, 100));
    assert_eq!(drain(&mut link, t), [(3, 210 * MS)]);
    // 100 % loss from now: nothing more gets through.
    link.set_profile(
        t + 300 * MS,
        Profile { loss: Loss::Uniform { p: 1.0 }, ..Profile::default() },
    );
    link.handle_packet(t + 301 * MS, packet(4, 100));
    assert!(drain(&mut link, t).is_empty());
    assert_eq!(link.counters().dropped_loss, 1);
}
