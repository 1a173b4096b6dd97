//! Two devices on a network made of queues, in virtual time.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::{Config, Interface, Peer as PeerConfig, SecretKey};

const A_ADDR: &str = "192.0.2.1:40000";
const B_ADDR: &str = "192.0.2.2:51820";

fn secret() -> SecretKey {
    SecretKey(crypto::random())
}

fn config(key: &SecretKey, peer: &SecretKey, allowed: &str, endpoint: Option<&str>) -> Config {
    Config {
        interface: Interface::new(key.clone()),
        peers: vec![PeerConfig {
            public_key: peer.public_key().unwrap(),
            preshared_key: Some(SecretKey([4; 32])),
            allowed_ips: vec![allowed.parse().unwrap()],
            endpoint: endpoint.map(str::to_string),
            endpoint_addr: endpoint.map(|e| e.parse().unwrap()),
            persistent_keepalive: None,
        }],
    }
}

/// An IPv4 packet from `src` to `dst` with `n` bytes of payload.
fn packet(src: [u8; 4], dst: [u8; 4], n: usize) -> Vec<u8> {
    let mut p = vec![0u8; 20 + n];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&u16::try_from(20 + n).unwrap().to_be_bytes());
    p[9] = 17;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    for (i, b) in p[20..].iter_mut().enumerate() {
        *b = u8::try_from(i % 251).unwrap();
    }
    p
}

const A_IP: [u8; 4] = [10, 0, 0, 2];
const B_IP: [u8; 4] = [10, 0, 0, 1];

/// A (the client, which knows B's endpoint) and B (the server, which learns A's).
struct Net {
    a: Device,
    b: Device,
    now: Instant,
    /// Tunnel packets each side received.
    at_a: Vec<Vec<u8>>,
    at_b: Vec<Vec<u8>>,
    /// Datagrams each side sent, by first byte (message type).
    sent_by_a: Vec<u8>,
    sent_by_b: Vec<u8>,
    /// Whether datagrams to each side get through.
    to_a: bool,
    to_b: bool,
    /// Every datagram A sent B, for replays.
    seen_by_b: Vec<Vec<u8>>,
    dropped_at_b: Vec<Drop>,
}

impl Net {
    fn new() -> Self {
        let (ka, kb) = (secret(), secret());
        #[allow(clippy::disallowed_methods, reason = "the start of virtual time")]
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        Self {
            a: Device::new(&config(&ka, &kb, "10.0.0.0/24", Some(B_ADDR)), now, wall).unwrap(),
            b: Device::new(&config(&kb, &ka, "10.0.0.2/32", None), now, wall).unwrap(),
            now,
            at_a: Vec::new(),
            at_b: Vec::new(),
            sent_by_a: Vec::new(),
            sent_by_b: Vec::new(),
            to_a: true,
            to_b: true,
            seen_by_b: Vec::new(),
            dropped_at_b: Vec::new(),
        }
    }

    fn deliver_to_b(&mut self, mut d: Vec<u8>) {
        self.sent_by_a.push(d[0]);
        self.seen_by_b.push(d.clone());
        if !self.to_b {
            return;
        }
        match self.b.decapsulate(&mut d, A_ADDR.parse().unwrap(), self.now) {
            Received::Packet(r) => self.at_b.push(d[r].to_vec()),
            Received::Handled => {}
            Received::Dropped(why) => self.dropped_at_b.push(why),
        }
    }

    fn deliver_to_a(&mut self, mut d: Vec<u8>) {
        self.sent_by_b.push(d[0]);
        if !self.to_a {
            return;
        }
        if let Received::Packet(r) = self.a.decapsulate(&mut d, B_ADDR.parse().unwrap(), self.now) {
            self.at_a.push(d[r].to_vec());
        }
    }

    fn pump(&mut self) {
        loop {
            if let Some((to, d)) = self.a.take_outgoing() {
                assert_eq!(to, B_ADDR.parse::<SocketAddr>().unwrap());
                self.deliver_to_b(d);
            } else if let Some((to, d)) = self.b.take_outgoing() {
                assert_eq!(to, A_ADDR.parse::<SocketAddr>().unwrap());
                self.deliver_to_a(d);
            } else {
                break;
            }
        }
    }

    fn a_sends(&mut self, p: &[u8]) {
        let mut out = Vec::new();
        if let Ok(Some(_)) = self.a.encapsulate(p, self.now, &mut out) {
            self.deliver_to_b(out);
        }
        self.pump();
    }

    fn b_sends(&mut self, p: &[u8]) {
        let mut out = Vec::new();
        if let Ok(Some(_)) = self.b.encapsulate(p, self.now, &mut out) {
            self.deliver_to_a(out);
        }
        self.pump();
    }

    fn wait(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += TICK;
            self.a.tick(self.now);
            self.b.tick(self.now);
            self.pump();
        }
    }

    fn count(sent: &[u8], kind: u8) -> usize {
        sent.iter().filter(|&&k| k == kind).count()
    }
}

#[test]
fn the_first_packet_waits_for_the_handshake_and_then_flows_both_ways() {
    let mut net = Net::new();
    let p = packet(A_IP, B_IP, 100);
    net.a_sends(&p);
    assert_eq!(net.at_b, [p], "queued, then sent once the handshake completed");
    let reply = packet(B_IP, A_IP, 1300);
    net.b_sends(&reply);
    assert_eq!(net.at_a, [reply]);
    assert_eq!(Net::count(&net.sent_by_a, noise::INITIATION), 1);
    assert_eq!(net.a.peers()[0].handshakes, 1);
    assert_eq!(net.b.peers()[0].handshakes, 1, "confirmed by the first transport message");
    assert_eq!(net.b.peers()[0].endpoint, Some(A_ADDR.parse().unwrap()), "learned from A");
    assert_eq!(net.a.peers()[0].tx_bytes, 120);
    assert_eq!(net.b.peers()[0].rx_bytes, 120);
}

#[test]
fn a_responder_waits_for_the_initiator_before_sending_on_a_new_session() {
    let mut net = Net::new();
    // A's handshake reaches B, but B's response is lost: B has only an unconfirmed session.
    net.to_a = false;
    net.a_sends(&packet(A_IP, B_IP, 10));
    net.to_a = true;
    let mut out = Vec::new();
    assert_eq!(net.b.encapsulate(&packet(B_IP, A_IP, 10), net.now, &mut out), Ok(None));
    assert_eq!(
        Net::count(&net.sent_by_b, noise::INITIATION),
        0,
        "B's own initiation is queued to go out on the next pump"
    );
    net.pump();
    // B initiated itself; A answers; B flushes its queued packet to A.
    assert_eq!(net.at_a.len(), 1);
}

#[test]
fn rekeying_every_two_minutes_loses_nothing() {
    let mut net = Net::new();
    let mut sent = 0;
    for _ in 0..(600 * 4) {
        net.a_sends(&packet(A_IP, B_IP, 50));
        net.b_sends(&packet(B_IP, A_IP, 50));
        sent += 1;
        net.wait(TICK);
    }
    assert_eq!(net.at_b.len(), sent);
    assert_eq!(net.at_a.len(), sent);
    let handshakes = net.a.peers()[0].handshakes;
    assert!((5..=6).contains(&handshakes), "10 minutes at 120 s per session: {handshakes}");
    assert!(net.dropped_at_b.is_empty(), "{:?}", net.dropped_at_b);
}

#[test]
fn an_unanswered_handshake_is_retried_every_5_s_and_given_up_after_90_s() {
    let mut net = Net::new();
    net.to_b = false;
    net.a_sends(&packet(A_IP, B_IP, 10));
    // Each retry comes 5 s plus up to 1/3 s of jitter after the last, on a 250 ms tick: the
    // fourth by 16.5 s at the latest, the fifth not before 20 s.
    net.wait(Duration::from_secs(17));
    assert_eq!(net.a.peers()[0].unanswered, 4, "at 0, 5, 10 and 15 s, plus jitter");
    net.wait(Duration::from_secs(103));
    let tries = Net::count(&net.sent_by_a, noise::INITIATION);
    // One at 0 s, then one every 5 s plus up to 1/3 s of jitter, until 90 s.
    assert!((16..=19).contains(&tries), "{tries} initiations");
    assert_eq!((net.a.peers()[0].unanswered, net.a.peers()[0].abandoned), (0, 1));
    // Given up: the queue is gone, nothing more is sent until there is something to send.
    net.to_b = true;
    net.wait(Duration::from_secs(30));
    assert_eq!(Net::count(&net.sent_by_a, noise::INITIATION), tries);
    assert!(net.at_b.is_empty(), "the queued packet was dropped with the attempt");
    net.a_sends(&packet(A_IP, B_IP, 10));
    assert_eq!(net.at_b.len(), 1);
}

#[test]
fn received_data_with_nothing_to_say_back_is_answered_by_a_keepalive_after_10_s() {
    let mut net = Net::new();
    net.a_sends(&packet(A_IP, B_IP, 10));
    let before = Net::count(&net.sent_by_b, noise::TRANSPORT);
    net.wait(Duration::from_secs(9));
    assert_eq!(Net::count(&net.sent_by_b, noise::TRANSPORT), before);
    net.wait(Duration::from_secs(2));
    assert_eq!(Net::count(&net.sent_by_b, noise::TRANSPORT), before + 1, "one keepalive");
    net.wait(Duration::from_secs(30));
    assert_eq!(Net::count(&net.sent_by_b, noise::TRANSPORT), before + 1, "and only one");
}

#[test]
fn data_sent_without_an_answer_for_15_s_starts_a_new_handshake() {
    let mut net = Net::new();
    net.a_sends(&packet(A_IP, B_IP, 10));
    net.to_a = false; // B's keepalive never arrives
    net.wait(Duration::from_secs(14));
    assert_eq!(Net::count(&net.sent_by_a, noise::INITIATION), 1);
    net.wait(Duration::from_secs(2));
    assert_eq!(Net::count(&net.sent_by_a, noise::INITIATION), 2);
}

#[test]
fn persistent_keepalive_sends_when_the_link_is_otherwise_quiet() {
    let mut net = Net::new();
    net.a.peers[0].keepalive = Some(Duration::from_secs(25));
    net.a_sends(&packet(A_IP, B_IP, 10));
    let before = Net::count(&net.sent_by_a, noise::TRANSPORT);
    net.wait(Duration::from_secs(100));
    let keepalives = Net::count(&net.sent_by_a, noise::TRANSPORT) - before;
    assert!((3..=4).contains(&keepalives), "{keepalives} keepalives in 100 s at 25 s");
}

#[test]
fn packets_from_outside_the_allowed_ips_and_replays_are_dropped() {
    let mut net = Net::new();
    net.a_sends(&packet(A_IP, B_IP, 10));
    net.a_sends(&packet([10, 0, 0, 3], B_IP, 10));
    assert_eq!(net.at_b.len(), 1);
    assert_eq!(net.dropped_at_b, [Drop::SourceNotAllowed]);
    let transport = net.seen_by_b.iter().find(|d| d[0] == noise::TRANSPORT).cloned().unwrap();
    net.deliver_to_b(transport);
    let initiation = net.seen_by_b[0].clone();
    net.now += Duration::from_secs(1);
    net.deliver_to_b(initiation);
    assert_eq!(net.dropped_at_b[1..], [Drop::Transport, Drop::Replayed]);
    let mut garbage = vec![1u8; 148];
    net.deliver_to_b(garbage.clone());
    garbage.truncate(3);
    net.deliver_to_b(garbage);
    net.deliver_to_b(Vec::from([9u8]));
    assert_eq!(net.dropped_at_b[3..], [Drop::Mac1, Drop::Malformed, Drop::Malformed]);
}

#[test]
fn a_packet_for_no_peer_is_refused_and_the_most_specific_peer_wins() {
    let mut net = Net::new();
    let mut out = Vec::new();
    let nowhere = packet(A_IP, [192, 168, 1, 1], 10);
    assert_eq!(net.a.encapsulate(&nowhere, net.now, &mut out), Err(Drop::NoPeer));
    assert_eq!(net.a.encapsulate(&[0x45, 0], net.now, &mut out), Err(Drop::Malformed));
    assert_eq!(net.b.encapsulate(&packet(B_IP, A_IP, 1), net.now, &mut out), Err(Drop::NoEndpoint));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(net.a.route(ip("10.0.0.9")), Some(0));
    assert_eq!(net.a.route(Ipv4Addr::new(10, 0, 1, 1).into()), None);
}

#[test]
fn a_cookie_reply_puts_mac2_on_the_next_initiation() {
    let mut net = Net::new();
    net.to_b = false;
    net.a_sends(&packet(A_IP, B_IP, 10));
    let (sender, mac1) = {
        let h = net.a.peers[0].initiated.as_ref().unwrap();
        (h.sender, h.mac1)
    };
    let b_public = *net.b.identity.pair.public();
    let mut reply = noise::cookie_reply(&b_public, sender, &[6; 16], &mac1);
    assert_eq!(net.a.decapsulate(&mut reply, B_ADDR.parse().unwrap(), net.now), Received::Handled);
    assert_eq!(net.a.peers[0].cookie.map(|c| c.0), Some([6; 16]));
    net.wait(Duration::from_secs(6));
    let retry = net.seen_by_b.iter().rev().find(|d| d[0] == noise::INITIATION).unwrap();
    assert_eq!(retry[132..], crypto::mac(&[6; 16], &[&retry[..132]]), "mac2 from the cookie");
    assert_eq!(net.seen_by_b[0][132..], [0; 16], "no mac2 before the cookie");
    // A cookie for an index nobody uses is refused.
    let mut stray = noise::cookie_reply(&b_public, sender ^ 1, &[6; 16], &mac1);
    assert_eq!(
        net.a.decapsulate(&mut stray, B_ADDR.parse().unwrap(), net.now),
        Received::Dropped(Drop::UnknownIndex)
    );
}

#[test]
fn a_roaming_client_is_followed_to_its_new_address() {
    let mut net = Net::new();
    net.a_sends(&packet(A_IP, B_IP, 10));
    let mut out = Vec::new();
    net.a.encapsulate(&packet(A_IP, B_IP, 10), net.now, &mut out).unwrap();
    let moved: SocketAddr = "198.51.100.7:1234".parse().unwrap();
    assert!(matches!(net.b.decapsulate(&mut out, moved, net.now), Received::Packet(_)));
    assert_eq!(net.b.peers()[0].endpoint, Some(moved));
}
