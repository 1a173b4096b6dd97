//! Multicast groups on loopback: a member that hears one source alone (source-specific
//! multicast) next to one that hears every member, and a unicast answer to a member from the
//! group's port. Loopback carries the group, so no namespace is needed; nothing leaves it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use nw_connection::{GroupError, GroupOptions, LocalNetworkPaths, MulticastGroup};

/// Joined on loopback, with local network privacy read from a directory of its own (no store:
/// the check is off).
fn options(dir: &std::path::Path) -> GroupOptions {
    let mut options = GroupOptions { interface: Some("lo".into()), ..GroupOptions::default() };
    options.local_network.paths =
        LocalNetworkPaths { store: dir.join("lnp.toml"), policy: dir.join("policy.toml") };
    options
}

/// A member elsewhere on this host, sending from `from` to the group through loopback.
fn member(from: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((from, 0)).unwrap();
    socket2::SockRef::from(&s).set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

/// The next datagram `group` hears within `wait`, and its sender.
async fn heard(group: &MulticastGroup, wait: Duration) -> Option<(String, SocketAddr)> {
    let mut buf = [0u8; 256];
    let got = tokio::time::timeout(wait, group.recv_from(&mut buf)).await.ok()?.unwrap();
    Some((String::from_utf8_lossy(&buf[..got.0]).into_owned(), got.1))
}

#[tokio::test]
async fn a_source_specific_member_hears_its_source_alone_and_answers_a_member_unicast() {
    let dir = std::env::temp_dir().join(format!("nw-conn-group-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = UdpSocket::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
    let group = SocketAddr::from((Ipv4Addr::new(232, 7, 7, 7), port));
    let (a_ip, b_ip) = (Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2));
    let everyone = MulticastGroup::join(group, &options(&dir)).await.unwrap();
    let only_b = GroupOptions { source: Some(IpAddr::V4(b_ip)), ..options(&dir) };
    let only_b = MulticastGroup::join(group, &only_b).await.unwrap();
    assert_eq!(only_b.interfaces().iter().map(|j| j.name.as_str()).collect::<Vec<_>>(), ["lo"]);

    let (a, b) = (member(a_ip), member(b_ip));
    a.send_to(b"from a", group).unwrap();
    b.send_to(b"from b", group).unwrap();
    let second = Duration::from_secs(2);
    let first = heard(&everyone, second).await.map(|(t, from)| (t, from.ip()));
    let next = heard(&everyone, second).await.map(|(t, from)| (t, from.ip()));
    assert_eq!(first, Some(("from a".into(), a_ip.into())), "the member of every source");
    assert_eq!(next, Some(("from b".into(), b_ip.into())), "the member of every source");
    let (text, sender) = heard(&only_b, second).await.expect("the source's datagram");
    assert_eq!((text.as_str(), sender.ip()), ("from b", IpAddr::V4(b_ip)));
    let more = heard(&only_b, Duration::from_millis(500)).await;
    assert_eq!(more, None, "the member of one source heard another");

    // The answer goes to the member alone, from the group's port.
    only_b.send_to(b"answer", sender).await.unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from.port()), (&b"answer"[..], port), "{from}");
    let wrong = only_b.send_to(b"x", "239.1.1.1:9".parse().unwrap()).await;
    assert_eq!(wrong.map_err(|e| e.kind()).err(), Some(std::io::ErrorKind::InvalidInput));
    let wrong = only_b.send_to(b"x", "[::1]:9".parse().unwrap()).await;
    assert_eq!(wrong.map_err(|e| e.kind()).err(), Some(std::io::ErrorKind::InvalidInput));

    for bad in ["239.1.1.1", "::1", "0.0.0.0"] {
        let options = GroupOptions { source: Some(bad.parse().unwrap()), ..options(&dir) };
        let refused = MulticastGroup::join(group, &options).await;
        let Err(e @ GroupError::BadSource { .. }) = refused else {
            panic!("{bad} taken as a source: {refused:?}")
        };
        assert!(e.to_string().contains("a source is a unicast address"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
