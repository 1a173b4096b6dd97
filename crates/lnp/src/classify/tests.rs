use std::net::IpAddr;

use nw_path::{Interface, InterfaceType, LinkType, Route, Snapshot};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn on_link(prefix: &str, len: u8, interface: u32) -> Route {
    Route { destination: ip(prefix), prefix_len: len, gateway: None, interface, metric: 100 }
}

fn via(prefix: &str, len: u8, gateway: &str, interface: u32) -> Route {
    Route {
        destination: ip(prefix),
        prefix_len: len,
        gateway: Some(ip(gateway)),
        interface,
        metric: 100,
    }
}

/// A laptop: Ethernet on 192.168.1.0/24 and 2001:db8:1::/64 with a default route, a second
/// wired LAN on 172.16.5.0/24, a router to 10/8, and a VPN on tun0.
fn laptop() -> Snapshot {
    let mut eth0 = Interface::up(2, "eth0", InterfaceType::Wired)
        .with_address(ip("192.168.1.10"), 24)
        .with_address(ip("2001:db8:1::10"), 64);
    eth0.addresses[0].broadcast = Some(ip("192.168.1.255"));
    let eth1 = Interface::up(4, "eth1", InterfaceType::Wired).with_address(ip("172.16.5.1"), 24);
    let mut tun0 = Interface::up(3, "tun0", InterfaceType::Other).with_address(ip("10.8.0.2"), 24);
    tun0.link_type = LinkType::None;
    tun0.flags.point_to_point = true;
    Snapshot {
        interfaces: vec![
            Interface::up(1, "lo", InterfaceType::Loopback).with_address(ip("127.0.0.1"), 8),
            eth0,
            tun0,
            eth1,
        ],
        routes: vec![
            on_link("192.168.1.0", 24, 2),
            via("192.168.1.128", 25, "192.168.1.1", 2),
            Route::default_via(ip("192.168.1.1"), 2, 100),
            via("10.0.0.0", 8, "192.168.1.254", 2),
            on_link("10.8.0.0", 24, 3),
            on_link("172.16.5.0", 24, 4),
            on_link("2001:db8:1::", 64, 2),
            via("fd00:1::", 48, "fe80::1", 2),
            Route::default_via(ip("fe80::1"), 2, 100),
        ],
        dns_servers: vec![],
    }
}

fn local(why: LocalWhy) -> Locality {
    Locality::Local { why }
}

fn not(why: NotLocalWhy) -> Locality {
    Locality::NotLocal { why }
}

fn on(interface: &str, prefix: &str) -> Locality {
    local(LocalWhy::OnLink { interface: interface.into(), prefix: prefix.into() })
}

#[test]
fn the_rule_for_each_kind_of_destination() {
    let s = laptop();
    let routed = |g: &str| not(NotLocalWhy::Routed { gateway: ip(g) });
    let cases = [
        // On the link: the permission applies.
        ("192.168.1.20", on("eth0", "192.168.1.0/24")),
        ("::ffff:192.168.1.20", on("eth0", "192.168.1.0/24")),
        ("2001:db8:1::20", on("eth0", "2001:db8:1::/64")),
        // RFC 1918 on-link is local; RFC 1918 and ULA through a router are not.
        ("172.16.5.9", on("eth1", "172.16.5.0/24")),
        ("10.1.2.3", routed("192.168.1.254")),
        ("fd00:1::5", routed("fe80::1")),
        // A more specific route through a router wins over the on-link /24.
        ("192.168.1.200", routed("192.168.1.1")),
        ("8.8.8.8", routed("192.168.1.1")),
        ("2606:4700::1111", routed("fe80::1")),
        // Many hosts at once.
        ("224.0.0.251", local(LocalWhy::Multicast)),
        ("239.1.2.3", local(LocalWhy::Multicast)),
        ("ff02::fb", local(LocalWhy::Multicast)),
        ("255.255.255.255", local(LocalWhy::Broadcast)),
        ("192.168.1.255", local(LocalWhy::Broadcast)),
        // Link-local, whatever the routes say.
        ("169.254.3.4", local(LocalWhy::LinkLocal)),
        ("fe80::5", local(LocalWhy::LinkLocal)),
        // This machine is never the local network.
        ("127.0.0.1", not(NotLocalWhy::Loopback)),
        ("127.1.2.3", not(NotLocalWhy::Loopback)),
        ("::1", not(NotLocalWhy::Loopback)),
        ("0.0.0.0", not(NotLocalWhy::ThisHost)),
        ("192.168.1.10", not(NotLocalWhy::ThisHost)),
        ("2001:db8:1::10", not(NotLocalWhy::ThisHost)),
        // A VPN's subnet is the remote network the tunnel carries.
        ("10.8.0.7", not(NotLocalWhy::Tunnel { interface: "tun0".into() })),
    ];
    for (dest, want) in cases {
        assert_eq!(classify(ip(dest), &s), want, "{dest}");
    }
}

#[test]
fn with_no_default_route_an_off_link_address_is_unrouted_and_a_device_default_is_a_tunnel() {
    let mut s = laptop();
    s.routes.retain(|r| !r.is_default());
    assert_eq!(classify(ip("8.8.8.8"), &s), not(NotLocalWhy::Unrouted));
    assert_eq!(classify(ip("192.168.1.20"), &s), on("eth0", "192.168.1.0/24"));
    // A VPN that takes everything: `default dev tun0`, no gateway.
    s.routes.push(on_link("0.0.0.0", 0, 3));
    assert_eq!(classify(ip("8.8.8.8"), &s), not(NotLocalWhy::Tunnel { interface: "tun0".into() }));
    // The LAN's own route is more specific, so it stays local.
    assert_eq!(classify(ip("192.168.1.20"), &s), on("eth0", "192.168.1.0/24"));
}

#[test]
fn names_are_local_only_under_dot_local() {
    let cases = [
        ("printer.local", true),
        ("printer.local.", true),
        ("Printer.LOCAL", true),
        ("_ipp._tcp.local", true),
        ("local", false),
        (".local", false),
        ("example.com", false),
        ("notlocal", false),
        ("x.localhost", false),
        ("local.example.com", false),
    ];
    for (name, want) in cases {
        assert_eq!(classify_name(name).is_local(), want, "{name}");
    }
}

#[test]
fn reasons_read_as_sentences() {
    let s = laptop();
    assert_eq!(
        classify(ip("192.168.1.20"), &s).to_string(),
        "on the local network 192.168.1.0/24 on eth0"
    );
    assert_eq!(classify(ip("8.8.8.8"), &s).to_string(), "routed through 192.168.1.1");
    assert_eq!(
        serde_json::to_string(&classify(ip("224.0.0.251"), &s)).ok().as_deref(),
        Some(r#"{"locality":"local","reason":"multicast"}"#)
    );
}

#[test]
fn the_on_link_prefixes_are_what_classify_calls_local() {
    let s = laptop();
    assert_eq!(
        on_link_prefixes(&s),
        ["172.16.5.0/24", "192.168.1.0/24", "2001:db8:1::/64"].map(String::from)
    );
}
