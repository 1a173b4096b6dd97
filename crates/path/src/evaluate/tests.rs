use std::net::IpAddr;

use super::*;
use crate::cost::NameLists;
use crate::interface::{Address, Route, Scope};

pub(crate) fn iface(index: u32, name: &str, kind: InterfaceType) -> Interface {
    Interface::up(index, name, kind)
}

pub(crate) fn with_addr(i: Interface, ip: &str, prefix_len: u8) -> Interface {
    i.with_address(ip.parse().unwrap(), prefix_len)
}

pub(crate) fn default_route(gateway: &str, interface: u32, metric: u32) -> Route {
    Route::default_via(gateway.parse().unwrap(), interface, metric)
}

/// lo + eth0 (wired, 192.0.2.10/24, default via 192.0.2.1) + wwan0 (cellular, default via
/// 198.51.100.1 at a higher metric).
pub(crate) fn two_paths() -> Snapshot {
    Snapshot {
        interfaces: vec![
            with_addr(iface(1, "lo", InterfaceType::Loopback), "127.0.0.1", 8),
            with_addr(iface(2, "eth0", InterfaceType::Wired), "192.0.2.10", 24),
            with_addr(iface(3, "wwan0", InterfaceType::Cellular), "198.51.100.10", 24),
        ],
        routes: vec![default_route("192.0.2.1", 2, 100), default_route("198.51.100.1", 3, 700)],
        dns_servers: vec!["192.0.2.53".parse().unwrap()],
    }
}

fn eval(s: &Snapshot) -> Path {
    evaluate(s, &Conditions::default(), &CostReadings::default())
}

#[test]
fn satisfied_with_default_route_prefers_cheap_wired() {
    let p = eval(&two_paths());
    assert_eq!((p.status, p.reason), (Status::Satisfied, None));
    let names: Vec<_> = p.interfaces.iter().map(|i| i.interface.name.as_str()).collect();
    assert_eq!(names, ["eth0", "wwan0"]);
    assert_eq!(
        p.gateways,
        ["192.0.2.1".parse::<IpAddr>().unwrap(), "198.51.100.1".parse().unwrap()]
    );
    assert!(p.supports_ipv4 && !p.supports_ipv6 && p.supports_dns);
    assert_eq!(p.expensive, None, "wired with no metered source is unknown, not guessed");
}

#[test]
fn loopback_alone_never_satisfies() {
    let mut s = two_paths();
    s.interfaces.truncate(1);
    s.routes.push(Route {
        destination: "0.0.0.0".parse().unwrap(),
        prefix_len: 0,
        gateway: None,
        interface: 1,
        metric: 0,
    });
    let p = eval(&s);
    assert_eq!((p.status, p.reason), (Status::Unsatisfied, Some(Reason::NoInterfaceUp)));
    assert!(p.interfaces.is_empty() && !p.supports_dns);
}

#[test]
fn reasons_follow_the_first_missing_layer() {
    let mut s = two_paths();
    for i in &mut s.interfaces[1..] {
        i.carrier = false;
    }
    assert_eq!(eval(&s).reason, Some(Reason::NoCarrier));

    let mut s = two_paths();
    s.interfaces[1].flags.dormant = true;
    s.interfaces[2].flags.dormant = true;
    let p = eval(&s);
    assert_eq!(
        (p.status, p.reason),
        (Status::RequiresConnection, Some(Reason::ConnectionRequired))
    );

    let mut s = two_paths();
    s.routes.clear();
    assert_eq!(eval(&s).reason, Some(Reason::LocalNetworkOnly));

    let mut s = two_paths();
    for i in &mut s.interfaces[1..] {
        i.addresses.clear();
    }
    assert_eq!(eval(&s).reason, Some(Reason::NoRoute));

    let mut s = two_paths();
    for i in &mut s.interfaces[1..] {
        i.flags.up = false;
    }
    assert_eq!(eval(&s).reason, Some(Reason::NoInterfaceUp));
}

#[test]
fn a_default_route_needs_an_address_of_its_family() {
    let mut s = two_paths();
    s.routes = vec![default_route("2001:db8::1", 2, 100)];
    let p = eval(&s);
    assert_eq!(p.reason, Some(Reason::LocalNetworkOnly));
    s.interfaces[1] = with_addr(s.interfaces[1].clone(), "2001:db8::10", 64);
    let p = eval(&s);
    assert!(p.status == Status::Satisfied && p.supports_ipv6 && !p.supports_ipv4);
    assert!(!p.supports_dns, "an IPv4-only name server is unreachable over IPv6");
}

#[test]
fn conditions_name_what_they_excluded() {
    let s = two_paths();
    let costs = CostReadings::default();
    let only_wifi =
        Conditions { required_type: Some(InterfaceType::Wifi), ..Conditions::default() };
    assert_eq!(evaluate(&s, &only_wifi, &costs).reason, Some(Reason::RequiredInterfaceUnavailable));

    let no_wired =
        Conditions { prohibited_types: vec![InterfaceType::Wired], ..Conditions::default() };
    let p = evaluate(&s, &no_wired, &costs);
    assert_eq!(p.status, Status::Satisfied, "cellular still carries the path");
    assert_eq!(p.primary().unwrap().interface.name, "wwan0");
    assert_eq!(p.expensive, Some(true));

    let no_expensive = Conditions {
        prohibited_types: vec![InterfaceType::Wired],
        prohibit_expensive: true,
        ..Conditions::default()
    };
    let p = evaluate(&s, &no_expensive, &costs);
    assert_eq!((p.status, p.reason), (Status::Unsatisfied, Some(Reason::InterfaceTypeProhibited)));

    let mut s = two_paths();
    s.interfaces.remove(1);
    let p = evaluate(&s, &Conditions { prohibit_expensive: true, ..Conditions::default() }, &costs);
    assert_eq!(p.reason, Some(Reason::ExpensiveProhibited));

    let costs = CostReadings {
        environment: NameLists { constrained: Some(vec!["wwan0".into()]), expensive: None },
        ..CostReadings::default()
    };
    let p =
        evaluate(&s, &Conditions { prohibit_constrained: true, ..Conditions::default() }, &costs);
    assert_eq!(p.reason, Some(Reason::ConstrainedProhibited));
}

#[test]
fn required_interface_by_name() {
    let s = two_paths();
    let c = Conditions { required_interface: Some("wwan0".into()), ..Conditions::default() };
    let p = evaluate(&s, &c, &CostReadings::default());
    assert_eq!(p.status, Status::Satisfied);
    assert_eq!(p.interfaces.len(), 1);
    let c = Conditions { required_interface: Some("nope0".into()), ..Conditions::default() };
    assert_eq!(
        evaluate(&s, &c, &CostReadings::default()).reason,
        Some(Reason::RequiredInterfaceUnavailable)
    );
}

#[test]
fn expensive_interfaces_sort_after_cheap_ones_whatever_the_metric() {
    let mut s = two_paths();
    s.routes = vec![default_route("192.0.2.1", 2, 900), default_route("198.51.100.1", 3, 10)];
    let p = eval(&s);
    assert_eq!(p.primary().unwrap().interface.name, "eth0");
    let costs = CostReadings {
        environment: NameLists { expensive: Some(vec!["eth0".into()]), constrained: None },
        ..CostReadings::default()
    };
    let p = evaluate(&s, &Conditions::default(), &costs);
    assert_eq!(p.primary().unwrap().interface.name, "wwan0", "both expensive: metric decides");
}

#[test]
fn tentative_and_link_local_addresses_do_not_count() {
    let mut s = two_paths();
    s.interfaces.truncate(2);
    s.routes.truncate(1);
    s.interfaces[1].addresses[0].tentative = true;
    assert_eq!(eval(&s).reason, Some(Reason::NoRoute));
    s.interfaces[1].addresses[0].tentative = false;
    s.interfaces[1].addresses[0].scope = Scope::Link;
    assert_eq!(eval(&s).reason, Some(Reason::NoRoute));
}

#[test]
fn a_cheap_interface_without_default_route_does_not_become_primary() {
    let mut s = two_paths();
    s.routes.remove(0); // eth0 keeps its address but loses its default route
    let p = eval(&s);
    assert_eq!(p.primary().unwrap().interface.name, "wwan0");
    assert_eq!(p.expensive, Some(true));
}

#[test]
fn unavailable_interfaces_say_why() {
    let mut s = two_paths();
    s.interfaces[2].carrier = false;
    s.interfaces.push(iface(9, "wlan0", InterfaceType::Wifi));
    s.interfaces[3].flags.up = false;
    let c = Conditions { prohibited_types: vec![InterfaceType::Wired], ..Conditions::default() };
    let p = evaluate(&s, &c, &CostReadings::default());
    let why: Vec<_> =
        p.unavailable.iter().map(|u| (u.name.as_str(), u.why, u.excluded_by)).collect();
    assert_eq!(
        why,
        [
            ("eth0", Unusable::Excluded, Some(Reason::InterfaceTypeProhibited)),
            ("wwan0", Unusable::NoCarrier, None),
            ("wlan0", Unusable::Down, None)
        ]
    );
    assert_eq!(p.reason, Some(Reason::InterfaceTypeProhibited));
}

fn on_link(prefix: &str, len: u8, interface: u32) -> Route {
    Route {
        destination: prefix.parse().unwrap(),
        prefix_len: len,
        gateway: None,
        interface,
        metric: 0,
    }
}

/// An accessory's own network: eth0 with 198.51.100.1/24 and its on-link route, a second
/// subnet routed through a host on it, and no default route anywhere.
fn isolated_lan() -> Snapshot {
    let mut eth0 = with_addr(iface(2, "eth0", InterfaceType::Wired), "198.51.100.1", 24);
    eth0 = with_addr(eth0, "2001:db8:1::1", 64);
    Snapshot {
        interfaces: vec![with_addr(iface(1, "lo", InterfaceType::Loopback), "127.0.0.1", 8), eth0],
        routes: vec![
            on_link("198.51.100.0", 24, 2),
            on_link("2001:db8:1::", 64, 2),
            Route {
                destination: "203.0.113.0".parse().unwrap(),
                prefix_len: 24,
                gateway: Some("198.51.100.254".parse().unwrap()),
                interface: 2,
                metric: 0,
            },
        ],
        dns_servers: Vec::new(),
    }
}

fn eval_for(s: &Snapshot, c: &Conditions, costs: &CostReadings, to: &str) -> Path {
    evaluate_for(s, c, costs, to.parse().unwrap())
}

#[test]
fn a_destination_on_link_is_satisfied_without_a_default_route() {
    let s = isolated_lan();
    let general = eval(&s);
    assert_eq!(general.reason, Some(Reason::LocalNetworkOnly));
    let none = CostReadings::default();
    for to in ["198.51.100.2", "2001:db8:1::2", "::ffff:198.51.100.2"] {
        let p = eval_for(&s, &Conditions::default(), &none, to);
        assert_eq!((p.status, p.reason), (Status::Satisfied, None), "{to}");
        assert_eq!(p.primary().unwrap().interface.name, "eth0");
        assert!(p.gateways.is_empty(), "on-link: no gateway, {to}");
    }
    let routed = eval_for(&s, &Conditions::default(), &none, "203.0.113.9");
    assert_eq!(routed.status, Status::Satisfied);
    assert_eq!(routed.gateways, ["198.51.100.254".parse::<IpAddr>().unwrap()]);
}

#[test]
fn an_off_link_destination_with_no_route_says_so() {
    let s = isolated_lan();
    let none = CostReadings::default();
    let p = eval_for(&s, &Conditions::default(), &none, "192.0.2.7");
    assert_eq!((p.status, p.reason), (Status::Unsatisfied, Some(Reason::NoRouteToDestination)));
    assert!(p.reason.unwrap().explain().contains("no route"));
    assert!(!p.supports_ipv4 && p.gateways.is_empty());
    // IPv6 with only an IPv4 default route: the family has no route either.
    let v6 = eval_for(&two_paths(), &Conditions::default(), &none, "2001:db8:9::1");
    assert_eq!(v6.reason, Some(Reason::NoRouteToDestination));
}

#[test]
fn the_longest_prefix_wins_then_the_lowest_metric() {
    let s = two_paths();
    let none = CostReadings::default();
    // wwan0's on-link subnet beats eth0's default route, whatever the metrics.
    let mut s2 = s.clone();
    s2.routes.push(on_link("198.51.100.0", 24, 3));
    let p = eval_for(&s2, &Conditions::default(), &none, "198.51.100.77");
    assert_eq!(p.primary().unwrap().interface.name, "wwan0");
    // Two defaults: the lower metric (eth0, 100) wins.
    let p = eval_for(&s, &Conditions::default(), &none, "203.0.113.1");
    assert_eq!(p.primary().unwrap().interface.name, "eth0");
    assert_eq!(p.gateways, ["192.0.2.1".parse::<IpAddr>().unwrap()]);
}

#[test]
fn a_destination_only_an_excluded_interface_reaches_names_the_condition() {
    let mut s = isolated_lan();
    s.interfaces[1].kind = InterfaceType::Cellular;
    let costs = CostReadings::default();
    let c = Conditions { prohibit_expensive: true, ..Conditions::default() };
    let p = eval_for(&s, &c, &costs, "198.51.100.2");
    assert_eq!((p.status, p.reason), (Status::Unsatisfied, Some(Reason::ExpensiveProhibited)));
    // With a cheaper default elsewhere, even an address on the expensive link goes that way.
    let mut s = two_paths();
    s.routes.push(on_link("198.51.100.0", 24, 3));
    let p = eval_for(&s, &c, &costs, "198.51.100.2");
    assert_eq!(p.status, Status::Satisfied);
    assert_eq!(p.primary().unwrap().interface.name, "eth0");
}

#[test]
fn loopback_and_own_addresses_are_always_reachable_and_link_down_is_still_said() {
    let s = isolated_lan();
    let none = CostReadings::default();
    for to in ["127.0.0.1", "::1", "198.51.100.1"] {
        assert_eq!(eval_for(&s, &Conditions::default(), &none, to).status, Status::Satisfied);
    }
    // … unless the conditions require another interface or type.
    let cellular =
        Conditions { required_type: Some(InterfaceType::Cellular), ..Conditions::default() };
    let p = eval_for(&s, &cellular, &none, "127.0.0.1");
    assert_eq!(p.reason, Some(Reason::RequiredInterfaceUnavailable));
    let wired = Conditions { required_type: Some(InterfaceType::Wired), ..Conditions::default() };
    assert_eq!(eval_for(&s, &wired, &none, "198.51.100.1").status, Status::Satisfied);
    let mut down = isolated_lan();
    down.interfaces[1].carrier = false;
    let p = eval_for(&down, &Conditions::default(), &none, "198.51.100.2");
    assert_eq!((p.status, p.reason), (Status::Unsatisfied, Some(Reason::NoCarrier)));
}

#[test]
fn link_local_destinations_need_only_a_link_local_source() {
    let mut s = isolated_lan();
    let eth0 = &mut s.interfaces[1];
    eth0.addresses.retain(|a| a.ip.is_ipv4());
    eth0.addresses.push(Address {
        ip: "fe80::1".parse().unwrap(),
        prefix_len: 64,
        scope: Scope::Link,
        broadcast: None,
        peer: None,
        tentative: false,
    });
    s.routes.push(on_link("fe80::", 64, 2));
    let none = CostReadings::default();
    let p = eval_for(&s, &Conditions::default(), &none, "fe80::2");
    assert_eq!(p.status, Status::Satisfied);
    // … but a global IPv6 destination on that link needs a global source.
    let p = eval_for(&s, &Conditions::default(), &none, "2001:db8:1::2");
    assert_eq!(p.reason, Some(Reason::NoRouteToDestination));
}
