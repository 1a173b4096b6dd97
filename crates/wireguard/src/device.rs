//! One WireGuard interface as a pure machine: packets from the tunnel in, datagrams for the
//! network out, and the reverse; timers run when [`Device::tick`] is called with the time.
//! No clock is read and no socket is touched, so every rule is tested in virtual time.
//!
//! Timers follow the whitepaper's §6: a session is used for 180 s (Reject-After-Time), the
//! initiator rekeys after 120 s, a handshake is retried every 5 s for 90 s, a keepalive answers
//! data after 10 s of silence, and a handshake starts over when data sent gets no answer for
//! 15 s.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use nw_tunnel::Prefix;

use crate::config::{Config, PublicKey};
use crate::crypto::{self, KeyPair};
use crate::noise::{self, Identity, Initiated, PeerKeys};
use crate::session::{REJECT_AFTER_MESSAGES, REKEY_AFTER_MESSAGES, Session};

/// The whitepaper's timer constants (§6.1).
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session older than this is never used.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// A handshake is retried for this long, then the queued packets are dropped.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// Between handshake retries (plus up to a third of a second of jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence after received data before a keepalive answers it.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often [`Device::tick`] should be called: timers are this precise.
pub const TICK: Duration = Duration::from_millis(250);
/// Packets kept per peer while a handshake is under way.
pub const QUEUE_LIMIT: usize = 1024;
/// A cookie from a cookie reply is used for this long (the responder's secret changes every
/// two minutes).
const COOKIE_LIFETIME: Duration = Duration::from_secs(120);
/// At most one initiation from a peer is answered per this interval (wireguard-go answers 50
/// a second per peer).
const INITIATION_INTERVAL: Duration = Duration::from_millis(20);

/// What became of a datagram from the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// An IP packet for the tunnel, at this range of the datagram's buffer.
    Packet(Range<usize>),
    /// Handled (a handshake, a keepalive, a cookie): see [`Device::take_outgoing`].
    Handled,
    /// Dropped, and why.
    Dropped(Drop),
}

/// Why a datagram or a packet was dropped.
///
/// It is an error (`encapsulate`'s `Err`), so it says in words what was dropped and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Drop {
    /// Not a WireGuard message.
    #[error("dropped: not a WireGuard message (nor, from the tunnel, an IP packet)")]
    Malformed,
    /// A handshake message whose mac1 is not for this interface.
    #[error("dropped: a handshake message not meant for this interface's public key")]
    Mac1,
    /// A handshake that does not decrypt, or names a peer we do not know.
    #[error("dropped: a handshake that does not decrypt, or from a peer not configured")]
    Handshake,
    /// An initiation not newer than the peer's last one, or too soon after it.
    #[error("dropped: a handshake initiation replayed, or too soon after the last")]
    Replayed,
    /// A transport message for no session we have.
    #[error("dropped: a data message for no session this interface has")]
    UnknownIndex,
    /// A transport message that does not decrypt, or a counter seen before.
    #[error("dropped: a data message that does not decrypt, or one seen before")]
    Transport,
    /// A packet inside the tunnel from an address outside the peer's allowed IPs.
    #[error("dropped: a packet from an address outside its peer's AllowedIPs")]
    SourceNotAllowed,
    /// A packet to the tunnel for which no peer's allowed IPs match.
    #[error("dropped: a packet to an address no peer's AllowedIPs cover")]
    NoPeer,
    /// The peer has no endpoint to send to.
    #[error("dropped: the peer has no Endpoint yet (it has not reached this side)")]
    NoEndpoint,
}

/// A peer's figures, as `wg show` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Where its datagrams go (the last authenticated source, after roaming).
    pub endpoint: Option<SocketAddr>,
    /// When the last handshake completed, on the device's clock.
    pub last_handshake: Option<Instant>,
    /// Bytes of tunnel packets received from it.
    pub rx_bytes: u64,
    /// Bytes of tunnel packets sent to it.
    pub tx_bytes: u64,
    /// Tunnel packets received from it.
    pub rx_packets: u64,
    /// Tunnel packets sent to it.
    pub tx_packets: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Initiations sent in the current round without an answer (0 when none is under way).
    pub unanswered: u32,
    /// Rounds of handshake attempts given up after Rekey-Attempt-Time.
    pub abandoned: u64,
}

#[derive(Debug)]
struct Peer {
    keys: PeerKeys,
    endpoint: Option<SocketAddr>,
    allowed: Vec<Prefix>,
    keepalive: Option<Duration>,
    initiated: Option<Initiated>,
    /// When this round of attempts began (for Rekey-Attempt-Time).
    attempts_began: Option<Instant>,
    /// When the last initiation went out, and the jitter before its retry.
    last_initiation: Option<(Instant, Duration)>,
    current: Option<Session>,
    previous: Option<Session>,
    /// A session we answered, used once the initiator's first message arrives on it.
    next: Option<Session>,
    queue: VecDeque<Vec<u8>>,
    last_sent: Option<Instant>,
    last_received: Option<Instant>,
    /// Data went out and nothing has come back since: a new handshake after 15 s.
    awaiting_answer: Option<Instant>,
    /// Data came in and nothing has gone out since: a keepalive after 10 s.
    owe_keepalive: Option<Instant>,
    newest_timestamp: [u8; 12],
    last_initiation_received: Option<Instant>,
    cookie: Option<([u8; 16], Instant)>,
    last_handshake: Option<Instant>,
    rx_bytes: u64,
    tx_bytes: u64,
    rx_packets: u64,
    tx_packets: u64,
    handshakes: u64,
    unanswered: u32,
    abandoned: u64,
}

/// A WireGuard interface: its key, its peers and their sessions.
#[derive(Debug)]
pub struct Device {
    identity: Identity,
    peers: Vec<Peer>,
    by_index: HashMap<u32, usize>,
    mtu: usize,
    /// The device's clock at creation, and the wall time then: TAI64N timestamps are derived
    /// from the monotonic clock, so a wall clock stepped back cannot stall handshakes.
    epoch: (Instant, Duration),
    outgoing: VecDeque<(SocketAddr, Vec<u8>)>,
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The interface's private key does not work.
    #[error("the interface's PrivateKey is not a usable Curve25519 key")]
    PrivateKey,
    /// A peer's public key is of small order.
    #[error("peer {0}'s PublicKey is not a usable Curve25519 key")]
    PublicKey(PublicKey),
}

impl Device {
    /// A device for `config`, its clock starting at `now` (wall time `wall`).
    pub fn new(config: &Config, now: Instant, wall: SystemTime) -> Result<Self, DeviceError> {
        let pair = KeyPair::from_private(&config.interface.private_key.0)
            .map_err(|_| DeviceError::PrivateKey)?;
        let identity = Identity::new(pair);
        let mut peers = Vec::with_capacity(config.peers.len());
        for p in &config.peers {
            let keys =
                PeerKeys::new(&identity, p.public_key.0, p.preshared_key.as_ref().map(|k| k.0))
                    .map_err(|_| DeviceError::PublicKey(p.public_key))?;
            peers.push(Peer {
                keys,
                endpoint: p.endpoint_addr,
                allowed: p.allowed_ips.clone(),
                keepalive: p.persistent_keepalive.map(|s| Duration::from_secs(s.into())),
                initiated: None,
                attempts_began: None,
                last_initiation: None,
                current: None,
                previous: None,
                next: None,
                queue: VecDeque::new(),
                last_sent: None,
                last_received: None,
                awaiting_answer: None,
                owe_keepalive: None,
                newest_timestamp: [0; 12],
                last_initiation_received: None,
                cookie: None,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                rx_packets: 0,
                tx_packets: 0,
                handshakes: 0,
                unanswered: 0,
                abandoned: 0,
            });
        }
        let since_epoch = wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let mtu = usize::try_from(config.interface.mtu.unwrap_or(nw_tunnel::settings::DEFAULT_MTU))
            .unwrap_or(1420);
        Ok(Self {
            identity,
            peers,
            by_index: HashMap::new(),
            mtu,
            epoch: (now, since_epoch),
            outgoing: VecDeque::new(),
        })
    }

    /// This interface's public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.identity.pair.public())
    }

    /// Each peer's figures.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|p| PeerStatus {
                public_key: PublicKey(p.keys.public),
                endpoint: p.endpoint,
                last_handshake: p.last_handshake,
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                rx_packets: p.rx_packets,
                tx_packets: p.tx_packets,
                handshakes: p.handshakes,
                unanswered: p.unanswered,
                abandoned: p.abandoned,
            })
            .collect()
    }

    /// Starts a handshake with every peer that has an endpoint.
    pub fn initiate_all(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            self.initiate(i, now, false);
        }
    }

    /// Whether [`Device::take_outgoing`] has something.
    pub fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// The next datagram the device wants sent (handshakes, keepalives, queued packets).
    pub fn take_outgoing(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.outgoing.pop_front()
    }

    /// A packet from the tunnel: its datagram in `out` and where to send it, or `None` when it
    /// was queued for a handshake or dropped (see the `Err`).
    pub fn encapsulate(
        &mut self,
        packet: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Result<Option<SocketAddr>, Drop> {
        let destination = destination(packet).ok_or(Drop::Malformed)?;
        let i = self.route(destination).ok_or(Drop::NoPeer)?;
        let mtu = self.mtu;
        let peer = &mut self.peers[i];
        let endpoint = peer.endpoint.ok_or(Drop::NoEndpoint)?;
        let Some(rekey) = peer.seal_data(packet, mtu, now, out) else {
            if peer.queue.len() == QUEUE_LIMIT {
                peer.queue.pop_front();
            }
            peer.queue.push_back(packet.to_vec());
            self.initiate(i, now, false);
            return Ok(None);
        };
        if rekey {
            self.initiate(i, now, false);
        }
        Ok(Some(endpoint))
    }

    /// A datagram from `from`: decrypted in place when it carries a packet.
    pub fn decapsulate(&mut self, datagram: &mut [u8], from: SocketAddr, now: Instant) -> Received {
        match datagram.first() {
            Some(&noise::INITIATION) => self.on_initiation(datagram, from, now),
            Some(&noise::RESPONSE) => self.on_response(datagram, from, now),
            Some(&noise::COOKIE_REPLY) => self.on_cookie(datagram, now),
            Some(&noise::TRANSPORT) => self.on_transport(datagram, from, now),
            _ => Received::Dropped(Drop::Malformed),
        }
    }

    /// Runs the timers due at `now`; what they send waits in [`Device::take_outgoing`].
    pub fn tick(&mut self, now: Instant) {
        for i in 0..self.peers.len() {
            self.tick_peer(i, now);
        }
    }

    fn tick_peer(&mut self, i: usize, now: Instant) {
        let peer = &mut self.peers[i];
        // Keys are forgotten three Reject-After-Times after they were made.
        for slot in [&mut peer.current, &mut peer.previous, &mut peer.next] {
            if slot.as_ref().is_some_and(|s| now.duration_since(s.created) >= REJECT_AFTER_TIME * 3)
                && let Some(s) = slot.take()
            {
                self.by_index.remove(&s.local);
            }
        }
        if peer.initiated.is_some() {
            let (sent, jitter) = peer.last_initiation.unwrap_or((now, Duration::ZERO));
            if now.duration_since(sent) >= REKEY_TIMEOUT + jitter {
                let began = peer.attempts_began.unwrap_or(now);
                if now.duration_since(began) >= REKEY_ATTEMPT_TIME {
                    // Give up until there is something new to send.
                    if let Some(h) = peer.initiated.take() {
                        self.by_index.remove(&h.sender);
                    }
                    peer.attempts_began = None;
                    peer.queue.clear();
                    peer.unanswered = 0;
                    peer.abandoned += 1;
                } else {
                    self.initiate(i, now, true);
                }
            }
            return;
        }
        if peer
            .awaiting_answer
            .is_some_and(|t| now.duration_since(t) >= KEEPALIVE_TIMEOUT + REKEY_TIMEOUT)
        {
            peer.awaiting_answer = None;
            self.initiate(i, now, false);
            return;
        }
        if !peer.queue.is_empty() && !peer.current.as_ref().is_some_and(|s| usable(s, now)) {
            self.initiate(i, now, false);
            return;
        }
        let owed = peer.owe_keepalive.is_some_and(|t| now.duration_since(t) >= KEEPALIVE_TIMEOUT);
        let persistent = peer.keepalive.is_some_and(|every| {
            let last = peer.last_sent.max(peer.last_received);
            last.is_none_or(|t| now.duration_since(t) >= every)
        });
        if owed || persistent {
            self.keepalive(i, now);
        }
    }

    fn keepalive(&mut self, i: usize, now: Instant) {
        let mtu = self.mtu;
        let peer = &mut self.peers[i];
        peer.owe_keepalive = None;
        let Some(endpoint) = peer.endpoint else { return };
        match peer.current.as_mut().filter(|s| usable(s, now)) {
            Some(session) => {
                let mut out = Vec::with_capacity(32);
                session.seal(&[], mtu, &mut out);
                peer.last_sent = Some(now);
                self.outgoing.push_back((endpoint, out));
            }
            None => self.initiate(i, now, false),
        }
    }

    /// Sends an initiation to peer `i`, unless one is under way (`retry` sends anyway).
    fn initiate(&mut self, i: usize, now: Instant, retry: bool) {
        let peer = &self.peers[i];
        let Some(endpoint) = peer.endpoint else { return };
        if peer.initiated.is_some() && !retry {
            return;
        }
        let index = self.fresh_index();
        let timestamp = noise::tai64n(self.epoch.1 + now.duration_since(self.epoch.0));
        let peer = &mut self.peers[i];
        let cookie =
            peer.cookie.as_ref().filter(|(_, at)| now.duration_since(*at) < COOKIE_LIFETIME);
        let Ok((msg, initiated)) =
            noise::initiate(&self.identity, &peer.keys, index, timestamp, cookie.map(|c| &c.0))
        else {
            return;
        };
        if let Some(old) = peer.initiated.replace(initiated) {
            self.by_index.remove(&old.sender);
        }
        self.by_index.insert(index, i);
        peer.attempts_began.get_or_insert(now);
        peer.unanswered += 1;
        // Up to a third of a second of jitter, so peers do not retry in lockstep (§6.4).
        let jitter = Duration::from_millis(u64::from(u16::from_le_bytes(crypto::random())) % 334);
        peer.last_initiation = Some((now, jitter));
        peer.last_sent = Some(now);
        self.outgoing.push_back((endpoint, msg.to_vec()));
    }

    fn fresh_index(&self) -> u32 {
        loop {
            let i = u32::from_le_bytes(crypto::random());
            if !self.by_index.contains_key(&i) {
                return i;
            }
        }
    }

    fn on_initiation(&mut self, msg: &[u8], from: SocketAddr, now: Instant) -> Received {
        if msg.len() != noise::INITIATION_LEN {
            return Received::Dropped(Drop::Malformed);
        }
        if !self.identity.mac1_ok(msg) {
            return Received::Dropped(Drop::Mac1);
        }
        let Ok(received) = noise::receive_initiation(&self.identity, msg) else {
            return Received::Dropped(Drop::Handshake);
        };
        let Some(i) = self.peers.iter().position(|p| p.keys.public == received.peer) else {
            return Received::Dropped(Drop::Handshake);
        };
        let peer = &self.peers[i];
        // Big-endian TAI64N compares as bytes.
        if received.timestamp <= peer.newest_timestamp
            || peer
                .last_initiation_received
                .is_some_and(|t| now.duration_since(t) < INITIATION_INTERVAL)
        {
            return Received::Dropped(Drop::Replayed);
        }
        let index = self.fresh_index();
        let Ok((response, keys)) = noise::respond(&peer.keys, &received, index, None) else {
            return Received::Dropped(Drop::Handshake);
        };
        let peer = &mut self.peers[i];
        peer.newest_timestamp = received.timestamp;
        peer.last_initiation_received = Some(now);
        peer.endpoint = Some(from);
        let session = Session::new(index, received.sender, &keys, false, now);
        if let Some(old) = peer.next.replace(session) {
            self.by_index.remove(&old.local);
        }
        self.by_index.insert(index, i);
        peer.last_sent = Some(now);
        self.outgoing.push_back((from, response.to_vec()));
        Received::Handled
    }

    fn on_response(&mut self, msg: &[u8], from: SocketAddr, now: Instant) -> Received {
        if msg.len() != noise::RESPONSE_LEN {
            return Received::Dropped(Drop::Malformed);
        }
        if !self.identity.mac1_ok(msg) {
            return Received::Dropped(Drop::Mac1);
        }
        let i = match self.awaiting(msg) {
            Ok(i) => i,
            Err(why) => return Received::Dropped(why),
        };
        let peer = &mut self.peers[i];
        let Some(initiated) = peer.initiated.as_ref() else {
            return Received::Dropped(Drop::UnknownIndex);
        };
        let index = initiated.sender;
        let Ok(keys) = noise::receive_response(&self.identity, &peer.keys, initiated, msg) else {
            return Received::Dropped(Drop::Handshake);
        };
        peer.initiated = None;
        peer.attempts_began = None;
        peer.last_initiation = None;
        peer.unanswered = 0;
        let session = Session::new(index, noise::response_sender(msg), &keys, true, now);
        let old_previous = peer.previous.take();
        peer.previous = peer.current.replace(session);
        let old_next = peer.next.take();
        for s in [old_previous, old_next].into_iter().flatten() {
            self.by_index.remove(&s.local);
        }
        let peer = &mut self.peers[i];
        peer.endpoint = Some(from);
        peer.last_received = Some(now);
        peer.last_handshake = Some(now);
        peer.handshakes += 1;
        // What waited for the handshake goes now; with nothing waiting, a keepalive confirms
        // the session to the responder, who may not send on it before it hears from us.
        if peer.queue.is_empty() {
            self.keepalive(i, now);
        } else {
            let queued: Vec<Vec<u8>> = peer.queue.drain(..).collect();
            for packet in queued {
                let mut out = Vec::new();
                if peer.seal_data(&packet, self.mtu, now, &mut out).is_none() {
                    break;
                }
                self.outgoing.push_back((from, out));
            }
        }
        Received::Handled
    }

    fn on_cookie(&mut self, msg: &[u8], now: Instant) -> Received {
        let i = match self.awaiting(msg) {
            Ok(i) => i,
            Err(why) => return Received::Dropped(why),
        };
        let peer = &mut self.peers[i];
        let Some(initiated) = peer.initiated.as_ref() else {
            return Received::Dropped(Drop::UnknownIndex);
        };
        match noise::open_cookie(&peer.keys, &initiated.mac1, msg) {
            Ok(cookie) => {
                // The next retry carries it (§5.4.7: a responder under load asks for this).
                peer.cookie = Some((cookie, now));
                Received::Handled
            }
            Err(_) => Received::Dropped(Drop::Handshake),
        }
    }

    /// The peer whose initiation a response or cookie reply answers (by its receiver index).
    fn awaiting(&self, msg: &[u8]) -> Result<usize, Drop> {
        let index = noise::receiver(msg).ok_or(Drop::Malformed)?;
        let &i = self.by_index.get(&index).ok_or(Drop::UnknownIndex)?;
        match &self.peers[i].initiated {
            Some(h) if h.sender == index => Ok(i),
            _ => Err(Drop::UnknownIndex),
        }
    }

    fn on_transport(&mut self, msg: &mut [u8], from: SocketAddr, now: Instant) -> Received {
        let Some(index) = noise::receiver(msg) else { return Received::Dropped(Drop::Malformed) };
        let Some(&i) = self.by_index.get(&index) else {
            return Received::Dropped(Drop::UnknownIndex);
        };
        let peer = &mut self.peers[i];
        let (slot, session) = if let Some(s) = peer.current.as_mut().filter(|s| s.local == index) {
            (0, s)
        } else if let Some(s) = peer.next.as_mut().filter(|s| s.local == index) {
            (1, s)
        } else if let Some(s) = peer.previous.as_mut().filter(|s| s.local == index) {
            (2, s)
        } else {
            return Received::Dropped(Drop::UnknownIndex);
        };
        if now.duration_since(session.created) >= REJECT_AFTER_TIME {
            return Received::Dropped(Drop::Transport);
        }
        let Ok(range) = session.open(msg) else { return Received::Dropped(Drop::Transport) };
        if slot == 1 {
            // The initiator used the session we answered: it becomes the one we send on.
            let next = peer.next.take();
            let old_previous = peer.previous.take();
            peer.previous = std::mem::replace(&mut peer.current, next);
            peer.last_handshake = Some(now);
            peer.handshakes += 1;
            if let Some(s) = old_previous {
                self.by_index.remove(&s.local);
            }
        }
        let peer = &mut self.peers[i];
        peer.endpoint = Some(from);
        peer.last_received = Some(now);
        peer.awaiting_answer = None;
        if range.is_empty() {
            return Received::Handled; // a keepalive
        }
        let packet = &msg[range.clone()];
        let Some((source, length)) = source_and_length(packet) else {
            return Received::Dropped(Drop::Malformed);
        };
        if !allowed(&peer.allowed, source) {
            return Received::Dropped(Drop::SourceNotAllowed);
        }
        peer.rx_bytes += length as u64;
        peer.rx_packets += 1;
        peer.owe_keepalive.get_or_insert(now);
        // An initiator's session close to its end is renewed before it fails (§6.2).
        let renew = peer.current.as_ref().is_some_and(|s| {
            s.initiator
                && now.duration_since(s.created)
                    >= REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
        });
        if renew {
            self.initiate(i, now, false);
        }
        Received::Packet(range.start..range.start + length)
    }

    /// The peer whose allowed IPs hold `ip` most specifically.
    fn route(&self, ip: IpAddr) -> Option<usize> {
        let mut best: Option<(u8, usize)> = None;
        for (i, p) in self.peers.iter().enumerate() {
            for prefix in &p.allowed {
                if prefix.contains(ip) && best.is_none_or(|(len, _)| prefix.len() > len) {
                    best = Some((prefix.len(), i));
                }
            }
        }
        best.map(|(_, i)| i)
    }
}

fn usable(s: &Session, now: Instant) -> bool {
    now.duration_since(s.created) < REJECT_AFTER_TIME && s.sent() < REJECT_AFTER_MESSAGES
}

impl Peer {
    /// A data packet sealed on the current session into `out`, counted and timed; `None`
    /// without a usable session, else whether the session wants a rekey (§6.2).
    fn seal_data(
        &mut self,
        packet: &[u8],
        mtu: usize,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Option<bool> {
        let session = self.current.as_mut().filter(|s| usable(s, now))?;
        session.seal(packet, mtu, out);
        let rekey = session.initiator
            && (now.duration_since(session.created) >= REKEY_AFTER_TIME
                || session.sent() >= REKEY_AFTER_MESSAGES);
        self.tx_bytes += packet.len() as u64;
        self.tx_packets += 1;
        self.last_sent = Some(now);
        self.owe_keepalive = None;
        self.awaiting_answer.get_or_insert(now);
        Some(rekey)
    }
}

fn allowed(prefixes: &[Prefix], ip: IpAddr) -> bool {
    prefixes.iter().any(|p| p.contains(ip))
}

/// An IP packet's destination.
fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(packet.get(16..20)?).ok()?)),
        6 => Some(IpAddr::from(<[u8; 16]>::try_from(packet.get(24..40)?).ok()?)),
        _ => None,
    }
}

/// An IP packet's source and its length from its header (the rest is padding).
fn source_and_length(packet: &[u8]) -> Option<(IpAddr, usize)> {
    let (source, length) = match packet.first()? >> 4 {
        4 => (
            IpAddr::from(<[u8; 4]>::try_from(packet.get(12..16)?).ok()?),
            usize::from(u16::from_be_bytes(packet.get(2..4)?.try_into().ok()?)),
        ),
        6 => (
            IpAddr::from(<[u8; 16]>::try_from(packet.get(8..24)?).ok()?),
            40 + usize::from(u16::from_be_bytes(packet.get(4..6)?.try_into().ok()?)),
        ),
        _ => return None,
    };
    (length <= packet.len() && length >= 20).then_some((source, length))
}

#[cfg(test)]
mod tests;
