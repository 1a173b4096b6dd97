//! The race in virtual time: a simulated world answers queries and attempts after given
//! delays; the clock jumps from event to event. Scenario names follow LAB.md.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

const RTT: u64 = 10;

#[derive(Debug, Clone)]
enum Host {
    /// The whole stack is ready after this many ms.
    Ready(u64),
    /// Fails after this many ms.
    Fails(u64, AttemptError),
    /// Never answers.
    Blackhole,
    /// Its transport is made after this many ms, and the handshake on top never finishes.
    Stalls(u64),
}

#[derive(Debug, Clone, Default)]
struct World {
    aaaa: Option<(u64, Result<Vec<IpAddr>, QueryError>)>,
    a: Option<(u64, Result<Vec<IpAddr>, QueryError>)>,
    https: Option<(u64, Result<Vec<Service>, QueryError>)>,
    /// How each address answers TCP; QUIC is blackholed unless listed in `quic`.
    hosts: BTreeMap<IpAddr, Host>,
    quic: BTreeMap<IpAddr, Host>,
}

impl World {
    fn answer(mut self, q: Query, at: u64, addrs: &[&str]) -> Self {
        let v = Some((at, Ok(addrs.iter().map(|a| ip(a)).collect())));
        match q {
            Query::Aaaa => self.aaaa = v,
            Query::A => self.a = v,
            Query::Https => unreachable!("use services()"),
        }
        self
    }

    fn fail(mut self, q: Query, at: u64, e: QueryError) -> Self {
        match q {
            Query::Aaaa => self.aaaa = Some((at, Err(e))),
            Query::A => self.a = Some((at, Err(e))),
            Query::Https => self.https = Some((at, Err(e))),
        }
        self
    }

    fn services(mut self, at: u64, records: Vec<Service>) -> Self {
        self.https = Some((at, Ok(records)));
        self
    }

    fn host(mut self, addr: &str, h: Host) -> Self {
        self.hosts.insert(ip(addr), h);
        self
    }

    fn quic(mut self, addr: &str, h: Host) -> Self {
        self.quic.insert(ip(addr), h);
        self
    }
}

/// An HTTPS record for the queried name with this ALPN set.
fn alpn(ids: &[&str]) -> Service {
    Service {
        priority: 1,
        alpn: ids.iter().map(|s| (*s).to_owned()).collect(),
        ..Service::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[derive(Debug, Clone)]
enum Input {
    Answer(Query, Result<Vec<IpAddr>, QueryError>),
    Services(Result<Vec<Service>, QueryError>),
    Ready(AttemptId),
    Fail(AttemptId, AttemptError),
    Progress(AttemptId),
}

#[derive(Debug)]
struct Sim {
    race: Race,
    t0: Instant,
    now: Instant,
    pending: Vec<(Instant, Input)>,
    queries: Vec<(u64, Query)>,
    started: Vec<(u64, AttemptId, SocketAddr, Protocol)>,
    cancelled: BTreeSet<AttemptId>,
    finished: BTreeSet<AttemptId>,
    max_running: usize,
    events: Vec<Event>,
    steps: usize,
}

impl Sim {
    #[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
    fn run(world: &World, config: Config) -> Self {
        let t0 = Instant::now();
        let race = Race::new(ConnectionId(7), 443, config, t0);
        Self::drive(race, t0, world)
    }

    #[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
    fn literal(addrs: &[&str], world: &World, config: Config) -> Self {
        let t0 = Instant::now();
        let addrs: Vec<IpAddr> = addrs.iter().map(|a| ip(a)).collect();
        let race = Race::with_addresses(ConnectionId(7), 443, &addrs, config, t0);
        Self::drive(race, t0, world)
    }

    fn drive(race: Race, t0: Instant, world: &World) -> Self {
        let mut sim = Self {
            race,
            t0,
            now: t0,
            pending: Vec::new(),
            queries: Vec::new(),
            started: Vec::new(),
            cancelled: BTreeSet::new(),
            finished: BTreeSet::new(),
            max_running: 0,
            events: Vec::new(),
            steps: 0,
        };
        loop {
            sim.drain(world);
            sim.steps += 1;
            assert!(sim.steps < 10_000, "the race does not settle");
            let next_input = sim.pending.iter().map(|p| p.0).min();
            let next = match (next_input, sim.race.poll_timeout()) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            assert!(next >= sim.now, "a deadline in the past would spin the driver");
            sim.now = next;
            if let Some(i) = sim.pending.iter().position(|p| p.0 <= sim.now) {
                let (_, input) = sim.pending.remove(i);
                match input {
                    Input::Answer(q, r) => sim.race.handle_answer(q, r, sim.now),
                    Input::Services(r) => sim.race.handle_services(r, sim.now),
                    Input::Ready(id) => {
                        sim.finished.insert(id);
                        sim.race.handle_attempt_ready(id, sim.now);
                    }
                    Input::Fail(id, e) => {
                        sim.finished.insert(id);
                        sim.race.handle_attempt_failed(id, e, sim.now);
                    }
                    Input::Progress(id) => sim.race.handle_attempt_progress(id, sim.now),
                }
            } else {
                sim.race.handle_timeout(sim.now);
            }
        }
        sim
    }

    fn ms(&self) -> u64 {
        u64::try_from((self.now - self.t0).as_millis()).unwrap()
    }

    fn at(&self, ms: u64) -> Instant {
        self.t0 + Duration::from_millis(ms)
    }

    fn drain(&mut self, world: &World) {
        while let Some(action) = self.race.poll_action() {
            match action {
                Action::Resolve(q) => {
                    self.queries.push((self.ms(), q));
                    let answer = match q {
                        Query::Aaaa => world.aaaa.clone(),
                        Query::A => world.a.clone(),
                        Query::Https => {
                            if let Some((at, r)) = world.https.clone() {
                                self.pending.push((self.at(at), Input::Services(r)));
                            }
                            None
                        }
                    };
                    if let Some((at, r)) = answer {
                        self.pending.push((self.at(at), Input::Answer(q, r)));
                    }
                }
                Action::StartAttempt { id, addr, protocol } => {
                    self.started.push((self.ms(), id, addr, protocol));
                    let hosts = match protocol {
                        Protocol::Tcp | Protocol::Udp => &world.hosts,
                        Protocol::Quic => &world.quic,
                    };
                    let input = match hosts.get(&addr.ip()).cloned().unwrap_or(Host::Blackhole) {
                        Host::Ready(after) => Some((after, Input::Ready(id))),
                        Host::Fails(after, e) => Some((after, Input::Fail(id, e))),
                        Host::Stalls(after) => Some((after, Input::Progress(id))),
                        Host::Blackhole => None,
                    };
                    if let Some((after, input)) = input {
                        self.pending.push((self.now + Duration::from_millis(after), input));
                    }
                }
                Action::CancelAttempt { id } => {
                    assert!(self.cancelled.insert(id), "{id} cancelled twice");
                    self.pending.retain(
                        |p| !matches!(&p.1, Input::Ready(x) | Input::Fail(x, _) | Input::Progress(x) if *x == id),
                    );
                }
            }
        }
        let running = self
            .started
            .iter()
            .filter(|s| !self.cancelled.contains(&s.1) && !self.finished.contains(&s.1))
            .count();
        self.max_running = self.max_running.max(running);
        while let Some(e) = self.race.poll_event() {
            self.events.push(e);
        }
    }

    fn won(&self) -> (u64, IpAddr) {
        match self.events.iter().find_map(|e| match e {
            Event::Won { addr, at, .. } => {
                Some((u64::try_from(at.as_millis()).unwrap(), addr.ip()))
            }
            _ => None,
        }) {
            Some(w) => w,
            None => panic!("no winner: {:#?}", self.events),
        }
    }

    fn failed(&self) -> (u64, RaceError) {
        match self.race.outcome() {
            Some(Outcome::Failed(e)) => (self.ms(), e.clone()),
            other => panic!("expected a failure, got {other:?}: {:#?}", self.events),
        }
    }

    fn start_times(&self) -> Vec<(u64, IpAddr)> {
        self.started.iter().map(|s| (s.0, s.2.ip())).collect()
    }

    /// A08: once ready, no other attempt of the connection stays open.
    fn assert_no_also_rans_left(&self) {
        for (_, id, _, _) in &self.started {
            let winner = matches!(self.race.outcome(), Some(Outcome::Won { id: w, .. }) if w == id);
            assert!(
                winner || self.cancelled.contains(id) || self.finished.contains(id),
                "{id} left open: {:#?}",
                self.events
            );
        }
    }
}

fn dual(v6: Host, v4: Host) -> World {
    World::default()
        .answer(Query::Aaaa, 0, &["2001:db8:1::2"])
        .answer(Query::A, 0, &["198.51.100.2"])
        .host("2001:db8:1::2", v6)
        .host("198.51.100.2", v4)
}

#[test]
fn asks_aaaa_before_a() {
    let sim = Sim::run(&dual(Host::Ready(RTT), Host::Ready(RTT)), Config::default());
    assert_eq!(sim.queries, [(0, Query::Aaaa), (0, Query::A)]);
}

#[test]
fn s1_ipv6_blackholed_wins_over_ipv4_after_the_attempt_delay() {
    let sim = Sim::run(&dual(Host::Blackhole, Host::Ready(RTT)), Config::default());
    assert_eq!(sim.won(), (250 + RTT, ip("198.51.100.2")));
    assert_eq!(sim.start_times(), [(0, ip("2001:db8:1::2")), (250, ip("198.51.100.2"))]);
    sim.assert_no_also_rans_left();
}

#[test]
fn s1b_ipv6_rejected_fails_over_at_once() {
    let sim =
        Sim::run(&dual(Host::Fails(1, AttemptError::Refused), Host::Ready(RTT)), Config::default());
    assert_eq!(sim.won(), (1 + RTT, ip("198.51.100.2")), "failover on the error, not the timer");
}

#[test]
fn s2_late_aaaa_costs_only_the_resolution_delay() {
    let world =
        dual(Host::Ready(RTT), Host::Ready(RTT)).answer(Query::Aaaa, 2_000, &["2001:db8:1::2"]);
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.won(), (50 + RTT, ip("198.51.100.2")));
    assert_eq!(sim.started.len(), 1, "the AAAA answer after the win starts nothing");
}

#[test]
fn s2b_slow_a_does_not_hold_up_ipv6() {
    let world = dual(Host::Ready(RTT), Host::Ready(RTT)).answer(Query::A, 2_000, &["198.51.100.2"]);
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.won(), (RTT, ip("2001:db8:1::2")));
}

#[test]
fn aaaa_within_the_resolution_delay_goes_first() {
    let world =
        dual(Host::Ready(RTT), Host::Ready(RTT)).answer(Query::Aaaa, 30, &["2001:db8:1::2"]);
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.won(), (30 + RTT, ip("2001:db8:1::2")));
}

#[test]
fn s3_both_slow_one_spare_attempt_and_it_is_closed() {
    let sim = Sim::run(&dual(Host::Ready(400), Host::Ready(400)), Config::default());
    assert_eq!(sim.won(), (400, ip("2001:db8:1::2")));
    assert_eq!(sim.started.len(), 2);
    sim.assert_no_also_rans_left();
}

#[test]
fn s4_first_of_two_ipv4_addresses_blackholed() {
    let world = World::default()
        .answer(Query::Aaaa, 0, &[])
        .answer(Query::A, 0, &["198.51.100.2", "198.51.100.3"])
        .host("198.51.100.2", Host::Blackhole)
        .host("198.51.100.3", Host::Ready(RTT));
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.won(), (250 + RTT, ip("198.51.100.3")));
    sim.assert_no_also_rans_left();
}

#[test]
fn s5_four_plus_four_slow_addresses() {
    let v6 = ["2001:db8:1::1", "2001:db8:1::2", "2001:db8:1::3", "2001:db8:1::4"];
    let v4 = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"];
    let mut world = World::default().answer(Query::Aaaa, 0, &v6).answer(Query::A, 0, &v4);
    for a in v6.iter().chain(&v4) {
        world = world.host(a, Host::Ready(600));
    }
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.won(), (600, ip("2001:db8:1::1")));
    // Interleaved families, staggered by 250 ms, and no more than the time allows.
    assert_eq!(
        sim.start_times(),
        [(0, ip("2001:db8:1::1")), (250, ip("198.51.100.1")), (500, ip("2001:db8:1::2"))]
    );
    assert!(sim.started.len() <= 4);
    sim.assert_no_also_rans_left();
}

#[test]
fn s6_late_aaaa_joins_a_slow_ipv4_race_at_once() {
    let world = World::default()
        .answer(Query::A, 0, &["198.51.100.2"])
        .answer(Query::Aaaa, 120, &["2001:db8:1::2"])
        .host("198.51.100.2", Host::Ready(600))
        .host("2001:db8:1::2", Host::Ready(RTT));
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.start_times(), [(50, ip("198.51.100.2")), (120, ip("2001:db8:1::2"))]);
    assert_eq!(sim.won(), (120 + RTT, ip("2001:db8:1::2")));
    sim.assert_no_also_rans_left();
}

#[test]
fn addresses_arriving_after_the_queue_ran_dry_join_the_stagger() {
    let world = World::default()
        .answer(Query::Aaaa, 0, &["2001:db8:1::2"])
        .answer(Query::A, 400, &["198.51.100.2"])
        .host("2001:db8:1::2", Host::Blackhole)
        .host("198.51.100.2", Host::Ready(RTT));
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.start_times(), [(0, ip("2001:db8:1::2")), (400, ip("198.51.100.2"))]);
    assert_eq!(sim.won(), (400 + RTT, ip("198.51.100.2")));
}

#[test]
fn addresses_arriving_after_every_attempt_failed_start_at_once() {
    // Found in the namespace S1b test: AAAA answered first, its address refused at 1 ms, and
    // the A answer (5 ms) must not wait out a stagger with nothing in flight.
    let world = World::default()
        .answer(Query::Aaaa, 0, &["2001:db8:1::2"])
        .answer(Query::A, 5, &["198.51.100.2"])
        .host("2001:db8:1::2", Host::Fails(1, AttemptError::Refused))
        .host("198.51.100.2", Host::Ready(RTT));
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.start_times(), [(0, ip("2001:db8:1::2")), (5, ip("198.51.100.2"))]);
    assert_eq!(sim.won(), (5 + RTT, ip("198.51.100.2")));
}

#[test]
fn attempt_delay_adapts_to_rtt_within_rfc8305_bounds() {
    let with = |rtt: Option<u64>, delay: u64| {
        Config {
            rtt: rtt.map(Duration::from_millis),
            attempt_delay: Duration::from_millis(delay),
            ..Config::default()
        }
        .effective_attempt_delay()
    };
    assert_eq!(with(None, 250), Duration::from_millis(250));
    assert_eq!(with(Some(20), 250), Duration::from_millis(100), "clamped up to 100 ms");
    assert_eq!(with(Some(300), 250), Duration::from_millis(600));
    assert_eq!(with(Some(5_000), 250), Duration::from_secs(2), "clamped down to 2 s");
    assert_eq!(with(None, 10), Duration::from_millis(100));

    let config = Config { rtt: Some(Duration::from_millis(300)), ..Config::default() };
    let sim = Sim::run(&dual(Host::Blackhole, Host::Ready(RTT)), config);
    assert_eq!(sim.won(), (600 + RTT, ip("198.51.100.2")));
}

#[test]
fn concurrency_cap_and_per_attempt_timeout() {
    let addrs = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"];
    let world = World::default().host("192.0.2.5", Host::Ready(RTT));
    let config =
        Config { max_concurrent: 2, attempt_timeout: Duration::from_secs(1), ..Config::default() };
    let sim = Sim::literal(&addrs, &world, config);
    assert!(sim.max_running <= 2, "{} attempts ran at once", sim.max_running);
    let times: Vec<u64> = sim.start_times().iter().map(|s| s.0).collect();
    // Two at 0 and 250; then each waits for a slot freed by a 1 s timeout.
    assert_eq!(times, [0, 250, 1_000, 1_250, 2_000]);
    assert_eq!(sim.won(), (2_000 + RTT, ip("192.0.2.5")));
    let timeouts = sim
        .events
        .iter()
        .filter(|e| matches!(e, Event::AttemptFailed { error: AttemptError::TimedOut, .. }))
        .count();
    assert_eq!(timeouts, 3, "the fourth attempt is cancelled by the win, not timed out");
    sim.assert_no_also_rans_left();
}

/// An attempt whose TCP connection was made and whose TLS handshake then stalls times out
/// saying so, with when it connected; one that never connected says only that it timed out.
#[test]
fn an_attempt_timed_out_mid_handshake_says_it_was_connected() {
    let world = World::default()
        .host("192.0.2.1", Host::Stalls(12))
        .host("192.0.2.2", Host::Blackhole)
        .host("192.0.2.3", Host::Ready(RTT));
    // Each times out before the next would have started (250 ms), so the next starts then.
    let config = Config { attempt_timeout: Duration::from_millis(200), ..Config::default() };
    let sim = Sim::literal(&["192.0.2.1", "192.0.2.2", "192.0.2.3"], &world, config);
    let failed: Vec<&AttemptError> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            Event::AttemptFailed { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(
        failed,
        [&AttemptError::HandshakeTimedOut { connected_us: 12_000 }, &AttemptError::TimedOut]
    );
    assert_eq!(sim.won().1, ip("192.0.2.3"));
    assert!(failed[0].to_string().starts_with("connected in 12.0 ms, then the TLS handshake"));
}

#[test]
fn overall_timeout_ends_the_race_and_closes_everything() {
    let config = Config { timeout: Duration::from_secs(3), ..Config::default() };
    let sim = Sim::literal(&["192.0.2.1", "192.0.2.2"], &World::default(), config);
    let (at, error) = sim.failed();
    assert_eq!(at, 3_000);
    let RaceError::TimedOut { limit, running } = &error else { panic!("{error:?}") };
    assert_eq!(*limit, Duration::from_secs(3));
    // Both were still under way (the attempt timeout is 10 s), neither connected.
    assert_eq!(running.len(), 2, "{running:?}");
    assert!(running.iter().all(|u| u.connected_us.is_none()), "{running:?}");
    assert!(error.to_string().contains("192.0.2.1:443: no answer yet"), "{error}");
    assert!(error.to_string().starts_with("no attempt was ready within 3s ("), "{error}");
    let left = RaceError::TimedOut { limit: Duration::from_micros(1_999_960), running: Vec::new() };
    assert_eq!(left.to_string(), "no attempt was ready within 2s");
    sim.assert_no_also_rans_left();
    assert_eq!(sim.race.poll_timeout(), None);
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn durations_past_any_instant_saturate_instead_of_overflowing() {
    let forever = Duration::from_secs(u64::MAX);
    let config = Config {
        timeout: forever,
        attempt_timeout: forever,
        attempt_delay: forever,
        resolution_delay: forever,
        rtt: Some(forever),
        ..Config::default()
    };
    let t0 = Instant::now();
    let mut race = Race::with_addresses(ConnectionId(7), 443, &[ip("192.0.2.1")], config, t0);
    assert!(matches!(race.poll_action(), Some(Action::StartAttempt { .. })));
    let at = race.poll_timeout().expect("a deadline, a year or less away");
    assert!(at > t0 && at - t0 <= LONGEST, "{:?}", at - t0);
    race.handle_timeout(t0 + LONGEST);
    assert!(matches!(race.outcome(), Some(Outcome::Failed(_))), "{:?}", race.outcome());
}

#[test]
fn every_attempt_failing_reports_each_reason() {
    let world =
        dual(Host::Fails(2, AttemptError::Refused), Host::Fails(3, AttemptError::HostUnreachable));
    let sim = Sim::run(&world, Config::default());
    let (at, err) = sim.failed();
    assert_eq!(at, 5, "both failures are immediate failovers");
    let RaceError::AllAttemptsFailed { attempts } = err else { panic!("{err:?}") };
    let reasons: Vec<String> =
        attempts.iter().map(|a| format!("{} {}", a.id, a.addr.ip())).collect();
    assert_eq!(reasons, ["C7.1 2001:db8:1::2", "C7.2 198.51.100.2"]);
    assert_eq!(attempts[1].error, AttemptError::HostUnreachable);
}

#[test]
fn no_addresses_says_what_each_query_said() {
    let world =
        World::default().fail(Query::Aaaa, 5, QueryError::NoSuchName).answer(Query::A, 7, &[]);
    let sim = Sim::run(&world, Config::default());
    assert_eq!(
        sim.failed(),
        (7, RaceError::NoAddresses { a: None, aaaa: Some(QueryError::NoSuchName) })
    );
}

#[test]
fn family_preferences_limit_queries_and_attempts() {
    let world = dual(Host::Ready(RTT), Host::Ready(RTT));
    let sim = Sim::run(&world, Config { family: FamilyPreference::Ipv4Only, ..Config::default() });
    assert_eq!(sim.queries, [(0, Query::A)]);
    assert_eq!(sim.won(), (RTT, ip("198.51.100.2")));
    let sim = Sim::run(&world, Config { family: FamilyPreference::Ipv4, ..Config::default() });
    assert_eq!(sim.queries, [(0, Query::A), (0, Query::Aaaa)]);
    assert_eq!(sim.start_times()[0].1, ip("198.51.100.2"), "IPv4 first when preferred");
    // …and the resolution delay waits for A, the preferred family, when AAAA comes first.
    let late_a = world.clone().answer(Query::A, 30, &["198.51.100.2"]);
    let sim = Sim::run(&late_a, Config { family: FamilyPreference::Ipv4, ..Config::default() });
    assert_eq!(sim.won(), (30 + RTT, ip("198.51.100.2")));
}

#[test]
fn mapped_and_duplicate_addresses_are_tried_once_as_ipv4() {
    let world = World::default()
        .answer(Query::Aaaa, 0, &["::ffff:198.51.100.2"])
        .answer(Query::A, 0, &["198.51.100.2"])
        .host("198.51.100.2", Host::Fails(1, AttemptError::Reset));
    let sim = Sim::run(&world, Config::default());
    assert_eq!(sim.start_times(), [(0, ip("198.51.100.2"))]);
    assert!(matches!(sim.failed().1, RaceError::AllAttemptsFailed { .. }));
}

#[test]
fn inputs_after_the_decision_change_nothing() {
    let mut sim = Sim::run(&dual(Host::Ready(400), Host::Ready(400)), Config::default());
    let loser = sim.started[1].1;
    let now = sim.now;
    sim.race.handle_attempt_ready(loser, now);
    sim.race.handle_attempt_failed(loser, AttemptError::Reset, now);
    sim.race.handle_answer(Query::A, Ok(vec![ip("192.0.2.9")]), now);
    sim.race.handle_timeout(now + Duration::from_secs(60));
    assert!(
        matches!(sim.race.outcome(), Some(Outcome::Won { addr, .. }) if addr.ip() == ip("2001:db8:1::2"))
    );
    assert_eq!(sim.race.poll_action(), None);
    assert_eq!(sim.race.poll_event(), None);
}

#[test]
fn the_trace_names_attempts_hierarchically_and_serialises() {
    let sim = Sim::run(&dual(Host::Blackhole, Host::Ready(RTT)), Config::default());
    let ids: Vec<String> = sim.started.iter().map(|s| s.1.to_string()).collect();
    assert_eq!(ids, ["C7.1", "C7.2"]);
    let json = serde_json::to_value(&sim.events).unwrap();
    let won = json.as_array().unwrap().iter().find(|e| e["event"] == "won").unwrap();
    assert_eq!((&won["id"], &won["addr"]), (&"C7.2".into(), &"198.51.100.2:443".into()), "{json}");
    assert_eq!(won["at"], 260.0, "times are milliseconds: {json}");
    let failed = serde_json::to_value(AttemptError::Tls("bad".into())).unwrap();
    assert_eq!(failed, serde_json::json!({"kind": "tls", "detail": "bad"}));
}

// --- QUIC beside TCP (HTTPS records, happyeyeballs-v3) -----------------------------------------

fn discover() -> Config {
    Config { discover_quic: true, ..Config::default() }
}

/// Both families answer both protocols, the HTTPS record advertises h3 at once.
fn h3_world(tcp: Host, quic: Host) -> World {
    dual(tcp.clone(), tcp)
        .services(0, vec![alpn(&["h3", "h2"])])
        .quic("2001:db8:1::2", quic.clone())
        .quic("198.51.100.2", quic)
}

impl Sim {
    /// (ms, protocol, address) of every attempt started.
    fn plan(&self) -> Vec<(u64, Protocol, IpAddr)> {
        self.started.iter().map(|s| (s.0, s.3, s.2.ip())).collect()
    }

    fn won_protocol(&self) -> Protocol {
        match self.race.outcome() {
            Some(Outcome::Won { protocol, .. }) => *protocol,
            other => panic!("no winner: {other:?}"),
        }
    }
}

#[test]
fn asks_https_then_aaaa_then_a_only_when_discovering() {
    let sim = Sim::run(&h3_world(Host::Ready(RTT), Host::Ready(RTT)), discover());
    assert_eq!(sim.queries, [(0, Query::Https), (0, Query::Aaaa), (0, Query::A)]);
    let sim = Sim::run(&h3_world(Host::Ready(RTT), Host::Ready(RTT)), Config::default());
    assert_eq!(sim.queries, [(0, Query::Aaaa), (0, Query::A)]);
    assert!(sim.plan().iter().all(|p| p.1 == Protocol::Tcp), "no HTTPS query, no QUIC");
}

#[test]
fn h3_advertised_quic_goes_first_and_wins() {
    let sim = Sim::run(&h3_world(Host::Ready(RTT), Host::Ready(RTT)), discover());
    assert_eq!(sim.won(), (RTT, ip("2001:db8:1::2")));
    assert_eq!(sim.won_protocol(), Protocol::Quic);
    assert_eq!(sim.plan(), [(0, Protocol::Quic, ip("2001:db8:1::2"))]);
}

#[test]
fn tcp_dropped_quic_wins_without_waiting() {
    let sim = Sim::run(&h3_world(Host::Blackhole, Host::Ready(RTT)), discover());
    assert_eq!((sim.won(), sim.won_protocol()), ((RTT, ip("2001:db8:1::2")), Protocol::Quic));
}

#[test]
fn udp_dropped_tcp_to_the_same_address_wins_one_attempt_delay_later() {
    let sim = Sim::run(&h3_world(Host::Ready(RTT), Host::Blackhole), discover());
    assert_eq!(sim.won(), (250 + RTT, ip("2001:db8:1::2")));
    assert_eq!(sim.won_protocol(), Protocol::Tcp);
    assert_eq!(
        sim.plan(),
        [(0, Protocol::Quic, ip("2001:db8:1::2")), (250, Protocol::Tcp, ip("2001:db8:1::2"))]
    );
    sim.assert_no_also_rans_left();
}

#[test]
fn families_still_interleave_by_address_with_quic() {
    // IPv6 dead for both protocols: QUIC and TCP to it, then QUIC to IPv4.
    let world = h3_world(Host::Ready(RTT), Host::Ready(RTT))
        .host("2001:db8:1::2", Host::Blackhole)
        .quic("2001:db8:1::2", Host::Blackhole);
    let sim = Sim::run(&world, discover());
    assert_eq!(
        sim.plan(),
        [
            (0, Protocol::Quic, ip("2001:db8:1::2")),
            (250, Protocol::Tcp, ip("2001:db8:1::2")),
            (500, Protocol::Quic, ip("198.51.100.2")),
        ]
    );
    assert_eq!((sim.won(), sim.won_protocol()), ((500 + RTT, ip("198.51.100.2")), Protocol::Quic));
}

#[test]
fn no_h3_in_the_record_or_no_record_means_tcp_only() {
    for world in [
        dual(Host::Ready(RTT), Host::Ready(RTT)).services(0, vec![alpn(&["h2", "http/1.1"])]),
        dual(Host::Ready(RTT), Host::Ready(RTT)).services(0, vec![]),
        dual(Host::Ready(RTT), Host::Ready(RTT)).fail(Query::Https, 0, QueryError::NoSuchName),
    ] {
        let sim = Sim::run(&world.quic("2001:db8:1::2", Host::Ready(1)), discover());
        assert_eq!(sim.plan(), [(0, Protocol::Tcp, ip("2001:db8:1::2"))]);
    }
}

#[test]
fn the_https_answer_gets_the_resolution_delay_and_no_more() {
    // Within the delay: waited for, so QUIC goes first.
    let world = h3_world(Host::Ready(RTT), Host::Ready(RTT)).services(30, vec![alpn(&["h3"])]);
    let sim = Sim::run(&world, discover());
    assert_eq!(sim.plan(), [(30, Protocol::Quic, ip("2001:db8:1::2"))]);
    // Silent: TCP starts when the resolution delay after the addresses runs out.
    let mut silent = h3_world(Host::Ready(RTT), Host::Ready(RTT));
    silent.https = None;
    let sim = Sim::run(&silent, discover());
    assert_eq!(sim.plan(), [(50, Protocol::Tcp, ip("2001:db8:1::2"))]);
    assert_eq!(sim.won(), (50 + RTT, ip("2001:db8:1::2")));
}

#[test]
fn h3_discovered_late_joins_the_stagger_for_addresses_already_tried() {
    // TCP is dropped; the HTTPS answer comes at 100 ms, after TCP to IPv6 started at 50.
    let world = h3_world(Host::Blackhole, Host::Ready(RTT)).services(100, vec![alpn(&["h3"])]);
    let sim = Sim::run(&world, discover());
    assert_eq!(
        sim.plan(),
        [(50, Protocol::Tcp, ip("2001:db8:1::2")), (300, Protocol::Quic, ip("2001:db8:1::2"))]
    );
    assert_eq!((sim.won(), sim.won_protocol()), ((300 + RTT, ip("2001:db8:1::2")), Protocol::Quic));
}

#[test]
fn quic_goes_to_the_port_the_record_names() {
    let record = Service { port: Some(8443), ..alpn(&["h3"]) };
    let world = h3_world(Host::Blackhole, Host::Ready(RTT)).services(0, vec![record]);
    let sim = Sim::run(&world, discover());
    assert_eq!(sim.started[0].2, "[2001:db8:1::2]:8443".parse().unwrap());
}

#[test]
fn a_quic_race_is_quic_throughout_and_asks_no_https() {
    let config = Config { protocol: Protocol::Quic, discover_quic: true, ..Config::default() };
    let sim = Sim::run(&h3_world(Host::Ready(RTT), Host::Blackhole), config);
    assert_eq!(sim.queries, [(0, Query::Aaaa), (0, Query::A)]);
    assert!(sim.plan().iter().all(|p| p.1 == Protocol::Quic));
    let (_, err) = sim.failed();
    let RaceError::AllAttemptsFailed { attempts } = &err else { panic!("{err:?}") };
    assert_eq!(attempts.len(), 2);
    assert!(err.to_string().contains("over QUIC"), "{err}");
}

#[test]
fn which_records_advertise_quic() {
    let h3 = alpn(&["h2", "h3"]);
    assert_eq!(Service::quic_port(std::slice::from_ref(&h3), 443), Some(443));
    let ported = Service { priority: 2, port: Some(8443), ..h3.clone() };
    let best = Service { priority: 1, ..alpn(&["h3"]) };
    assert_eq!(Service::quic_port(&[ported.clone(), best], 443), Some(443), "lowest priority");
    assert_eq!(Service::quic_port(&[ported], 443), Some(8443));
    let alias = Service { priority: 0, target: Some("cdn.test".into()), ..Service::default() };
    assert_eq!(Service::quic_port(&[alias, h3.clone()], 443), None, "AliasMode wins (RFC 9460)");
    let elsewhere = Service { target: Some("svc.test".into()), ..h3 };
    assert_eq!(Service::quic_port(&[elsewhere], 443), None, "other targets are not followed");
    assert_eq!(Service::quic_port(&[alpn(&["h3-29"])], 443), None, "h3 drafts are not h3");
}

#[test]
fn a_literal_of_an_excluded_family_says_so() {
    let config = Config { family: FamilyPreference::Ipv6Only, ..Config::default() };
    let sim = Sim::literal(&["127.0.0.1"], &World::default(), config);
    let (at, e) = sim.failed();
    assert_eq!(
        (at, &e),
        (
            0,
            &RaceError::FamilyExcluded {
                family: FamilyPreference::Ipv6Only,
                found: vec![ip("127.0.0.1")]
            }
        )
    );
    assert!(e.to_string().contains("127.0.0.1") && e.to_string().contains("IPv6 only"), "{e}");
}
