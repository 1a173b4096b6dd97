//! The establishment rules in virtual time, over paths evaluated from hand-made snapshots.

use std::time::{Duration, Instant};

use nw_path::cost::CostReadings;
use nw_path::{Conditions, Interface, InterfaceType, Path, Reason, Route, Snapshot, Status};

use super::*;

fn iface(index: u32, name: &str, kind: InterfaceType, ips: &[&str]) -> Interface {
    ips.iter()
        .fold(Interface::up(index, name, kind), |i, ip| i.with_address(ip.parse().unwrap(), 64))
}

fn default_via(gateway: &str, interface: u32, metric: u32) -> Route {
    Route::default_via(gateway.parse().unwrap(), interface, metric)
}

fn path(snapshot: &Snapshot, conditions: &Conditions) -> Path {
    nw_path::evaluate(snapshot, conditions, &CostReadings::default())
}

/// eth0, dual-stack, with default routes of both families.
fn dual_stack() -> Snapshot {
    Snapshot {
        interfaces: vec![iface(2, "eth0", InterfaceType::Wired, &["192.0.2.10", "2001:db8::10"])],
        routes: vec![default_via("192.0.2.1", 2, 100), default_via("2001:db8::1", 2, 100)],
        dns_servers: Vec::new(),
    }
}

fn waiting(limit: u64) -> Options {
    Options { wait: true, limit: Duration::from_secs(limit), local: None }
}

fn drain(m: &mut Establish) -> Vec<Action> {
    std::iter::from_fn(|| m.poll_action()).collect()
}

/// The one action the machine has.
fn only(m: &mut Establish) -> Action {
    let mut all = drain(m);
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn a_satisfied_path_races_at_once_unbound() {
    let t0 = Instant::now();
    let mut m = Establish::new(waiting(30), t0);
    assert_eq!(drain(&mut m), [], "nothing to do before the first path");
    assert_eq!(m.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    m.handle_path(Some(&path(&dual_stack(), &Conditions::default())), t0 + ms(1));
    assert_eq!(drain(&mut m), [Action::Race(Plan::default())]);
    assert_eq!(m.poll_timeout(), None);
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn without_waiting_or_with_an_unknown_path_it_races_at_once() {
    let t0 = Instant::now();
    let mut m = Establish::new(Options { wait: false, ..waiting(30) }, t0);
    assert_eq!(drain(&mut m), [Action::Race(Plan::default())]);
    let mut m = Establish::new(waiting(30), t0);
    m.handle_path(None, t0);
    assert_eq!(drain(&mut m), [Action::Race(Plan::default())]);
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn it_waits_saying_each_new_reason_once_then_races_when_the_path_returns() {
    let t0 = Instant::now();
    let mut m = Establish::new(waiting(30), t0);
    let mut down = dual_stack();
    down.interfaces[0].carrier = false;
    let no_carrier = path(&down, &Conditions::default());
    m.handle_path(Some(&no_carrier), t0);
    assert_eq!(drain(&mut m), [Action::Wait { reason: Some(Reason::NoCarrier) }]);
    m.handle_path(Some(&no_carrier), t0 + ms(300));
    assert_eq!(drain(&mut m), [], "the same reason is said once");
    let mut no_route = dual_stack();
    no_route.routes.clear();
    m.handle_path(Some(&path(&no_route, &Conditions::default())), t0 + ms(1_000));
    assert_eq!(drain(&mut m), [Action::Wait { reason: Some(Reason::LocalNetworkOnly) }]);
    m.handle_path(Some(&path(&dual_stack(), &Conditions::default())), t0 + ms(3_000));
    let Action::Race(plan) = only(&mut m) else { panic!("not a race") };
    assert_eq!(plan.waited, ms(3_000));
    let steps: Vec<_> = plan.steps.iter().map(|s| (s.at, s.status, s.reason)).collect();
    assert_eq!(
        steps,
        [
            (ms(0), Status::Unsatisfied, Some(Reason::NoCarrier)),
            (ms(1_000), Status::Unsatisfied, Some(Reason::LocalNetworkOnly)),
            (ms(3_000), Status::Satisfied, None),
        ]
    );
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn no_path_by_the_deadline_fails_with_the_last_reason() {
    let t0 = Instant::now();
    let mut m = Establish::new(waiting(2), t0);
    let mut down = dual_stack();
    down.interfaces[0].carrier = false;
    m.handle_path(Some(&path(&down, &Conditions::default())), t0);
    drain(&mut m);
    m.handle_timeout(t0 + ms(1_999));
    assert_eq!(drain(&mut m), [], "not before the deadline");
    m.handle_timeout(t0 + ms(2_000));
    let Action::Fail { reason, waited, steps } = only(&mut m) else { panic!("not a failure") };
    assert_eq!((reason, waited, steps.len()), (Some(Reason::NoCarrier), ms(2_000), 1));
    // Nothing after the end.
    m.handle_path(Some(&path(&dual_stack(), &Conditions::default())), t0 + ms(2_001));
    assert_eq!(drain(&mut m), []);
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn an_ipv6_only_path_beyond_the_link_asks_for_nat64_and_an_on_link_one_does_not() {
    let t0 = Instant::now();
    let v6_only = Snapshot {
        interfaces: vec![iface(2, "eth0", InterfaceType::Wired, &["2001:db8::10"])],
        routes: vec![default_via("2001:db8::1", 2, 100)],
        dns_servers: Vec::new(),
    };
    let mut m = Establish::new(waiting(30), t0);
    m.handle_path(Some(&path(&v6_only, &Conditions::default())), t0);
    assert_eq!(drain(&mut m), [Action::DiscoverNat64]);
    assert_eq!(m.poll_timeout(), None, "no deadline while the resolver answers");
    let prefix = "64:ff9b::".parse().unwrap();
    m.handle_nat64(Some(prefix), t0 + ms(5));
    let Action::Race(plan) = only(&mut m) else { panic!("not a race") };
    assert_eq!(plan.nat64, Some(prefix));

    // A destination on the link, reached with no gateway: no translator to look for.
    let mut on_link = v6_only.clone();
    on_link.routes = vec![Route {
        destination: "2001:db8::".parse().unwrap(),
        prefix_len: 64,
        gateway: None,
        interface: 2,
        metric: 0,
    }];
    let to = "2001:db8::20".parse().unwrap();
    let p = nw_path::evaluate_for(&on_link, &Conditions::default(), &CostReadings::default(), to);
    assert_eq!(p.status, Status::Satisfied);
    let mut m = Establish::new(waiting(30), t0);
    m.handle_path(Some(&p), t0);
    assert_eq!(drain(&mut m), [Action::Race(Plan::default())]);
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn an_excluded_interface_binds_the_attempts_to_the_preferred_one() {
    let t0 = Instant::now();
    let two = Snapshot {
        interfaces: vec![
            iface(2, "eth0", InterfaceType::Wired, &["192.0.2.10"]),
            iface(3, "wwan0", InterfaceType::Cellular, &["198.51.100.10"]),
        ],
        routes: vec![default_via("192.0.2.1", 2, 600), default_via("198.51.100.1", 3, 100)],
        dns_servers: Vec::new(),
    };
    // Nothing excluded: no binding, whatever the kernel prefers.
    let mut m = Establish::new(waiting(30), t0);
    m.handle_path(Some(&path(&two, &Conditions::default())), t0);
    assert_eq!(drain(&mut m), [Action::Race(Plan::default())]);
    // Expensive prohibited: the cellular default has the lower metric, so bind to eth0.
    let cheap = Conditions { prohibit_expensive: true, ..Conditions::default() };
    let mut m = Establish::new(waiting(30), t0);
    m.handle_path(Some(&path(&two, &cheap)), t0);
    let Action::Race(plan) = only(&mut m) else { panic!("not a race") };
    assert_eq!(plan.interface.as_deref(), Some("eth0"));
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn a_local_address_decides_the_family() {
    let t0 = Instant::now();
    for (local, family) in
        [("192.0.2.10", FamilyPreference::Ipv4Only), ("2001:db8::10", FamilyPreference::Ipv6Only)]
    {
        let options = Options { local: Some(local.parse().unwrap()), ..waiting(30) };
        let mut m = Establish::new(options, t0);
        m.handle_path(Some(&path(&dual_stack(), &Conditions::default())), t0);
        let Action::Race(plan) = only(&mut m) else { panic!("not a race") };
        assert_eq!(plan.family, Some(family), "{local}");
    }
}

#[test]
#[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
fn a_limit_past_any_instant_saturates() {
    let t0 = Instant::now();
    let m = Establish::new(Options { limit: Duration::from_secs(u64::MAX), ..waiting(0) }, t0);
    assert!(m.poll_timeout().is_some_and(|d| d > t0));
}
