//! The handshake (Noise_IKpsk2, the whitepaper's §5.4.2–§5.4.7) and cookie replies (§5.4.7),
//! as pure functions over bytes: no clock, no sockets.

use crate::crypto::{self, BadKey, KeyPair, TAG_LEN};

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";

/// Message types (the first byte; three reserved zero bytes follow).
pub(crate) const INITIATION: u8 = 1;
pub(crate) const RESPONSE: u8 = 2;
pub(crate) const COOKIE_REPLY: u8 = 3;
pub(crate) const TRANSPORT: u8 = 4;

/// Message lengths: 4 + 4 + 32 + (32 + 16) + (12 + 16) + 16 + 16.
pub(crate) const INITIATION_LEN: usize = 148;
/// 4 + 4 + 4 + 32 + (0 + 16) + 16 + 16.
pub(crate) const RESPONSE_LEN: usize = 92;
/// 4 + 4 + 24 + (16 + 16).
pub(crate) const COOKIE_REPLY_LEN: usize = 64;
/// A transport message's header: type, receiver index, counter.
pub(crate) const TRANSPORT_HEADER: usize = 16;

/// What a handshake message can be refused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// Wrong length or type.
    #[error("not a well-formed handshake message")]
    Malformed,
    /// The first MAC does not match our public key: not meant for us.
    #[error("mac1 does not match this interface's public key")]
    Mac1,
    /// Decryption failed: wrong keys, a different preshared key, or tampering.
    #[error("the handshake does not decrypt (a wrong key or preshared key)")]
    Decrypt,
    /// A key of small order, or a failing key generator.
    #[error("a peer's key is not usable")]
    Key,
}

impl From<BadKey> for HandshakeError {
    fn from(_: BadKey) -> Self {
        HandshakeError::Key
    }
}

/// This interface's identity: its static key pair and the keys derived from its public key.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) pair: KeyPair,
    /// HASH(LABEL_MAC1 || our public): checks mac1 of what peers send us.
    mac1_key: [u8; 32],
}

impl Identity {
    pub(crate) fn new(pair: KeyPair) -> Self {
        let mac1_key = crypto::hash(&[LABEL_MAC1, pair.public()]);
        Self { pair, mac1_key }
    }

    /// Whether a handshake message's mac1 (the 16 bytes 32 from its end) is ours.
    pub(crate) fn mac1_ok(&self, msg: &[u8]) -> bool {
        let Some(at) = msg.len().checked_sub(32) else { return false };
        crypto::same(&crypto::mac(&self.mac1_key, &[&msg[..at]]), &msg[at..at + 16])
    }
}

/// What we know of a peer for handshakes.
#[derive(Debug)]
pub(crate) struct PeerKeys {
    pub(crate) public: [u8; 32],
    psk: [u8; 32],
    /// HASH(LABEL_MAC1 || peer public): mac1 of what we send.
    mac1_key: [u8; 32],
    /// HASH(LABEL_COOKIE || peer public): opens the peer's cookie replies.
    cookie_key: [u8; 32],
    /// DH(our static, peer static), the same for every handshake.
    static_static: [u8; 32],
}

impl PeerKeys {
    pub(crate) fn new(
        identity: &Identity,
        public: [u8; 32],
        psk: Option<[u8; 32]>,
    ) -> Result<Self, BadKey> {
        Ok(Self {
            public,
            psk: psk.unwrap_or([0; 32]),
            mac1_key: crypto::hash(&[LABEL_MAC1, &public]),
            cookie_key: crypto::hash(&[LABEL_COOKIE, &public]),
            static_static: identity.pair.dh(&public)?,
        })
    }
}

/// The keys of a finished handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) send: [u8; 32],
    pub(crate) receive: [u8; 32],
}

/// An initiation we sent, waiting for its response.
#[derive(Debug)]
pub(crate) struct Initiated {
    pub(crate) sender: u32,
    ephemeral: KeyPair,
    chaining: [u8; 32],
    hash: [u8; 32],
    /// The mac1 we sent: the additional data of a cookie reply to this message.
    pub(crate) mac1: [u8; 16],
}

/// An initiation we received, decrypted, before we decide to answer it.
#[derive(Debug)]
pub(crate) struct Received {
    /// The initiator's static public key: which peer it is.
    pub(crate) peer: [u8; 32],
    /// The initiator's sender index.
    pub(crate) sender: u32,
    /// TAI64N: must be later than the peer's last one (replay protection).
    pub(crate) timestamp: [u8; 12],
    ephemeral: [u8; 32],
    chaining: [u8; 32],
    hash: [u8; 32],
}

fn initial() -> ([u8; 32], [u8; 32]) {
    let chaining = crypto::hash(&[CONSTRUCTION]);
    let hash = crypto::hash(&[&chaining, IDENTIFIER]);
    (chaining, hash)
}

fn header(kind: u8) -> [u8; 4] {
    [kind, 0, 0, 0]
}

fn u32_at(msg: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(msg[at..at + 4].try_into().unwrap_or([0; 4]))
}

fn array<const N: usize>(msg: &[u8], at: usize) -> [u8; N] {
    msg[at..at + N].try_into().unwrap_or([0; N])
}

/// Fills in mac1 and, with a cookie, mac2 (the last 32 bytes of `msg`).
fn macs(msg: &mut [u8], mac1_key: &[u8; 32], cookie: Option<&[u8; 16]>) -> [u8; 16] {
    let n = msg.len();
    let mac1 = crypto::mac(mac1_key, &[&msg[..n - 32]]);
    msg[n - 32..n - 16].copy_from_slice(&mac1);
    let mac2 = cookie.map_or([0; 16], |c| crypto::mac(c, &[&msg[..n - 16]]));
    msg[n - 16..].copy_from_slice(&mac2);
    mac1
}

/// The first handshake message, from us to `peer`.
pub(crate) fn initiate(
    identity: &Identity,
    peer: &PeerKeys,
    sender: u32,
    timestamp: [u8; 12],
    cookie: Option<&[u8; 16]>,
) -> Result<([u8; INITIATION_LEN], Initiated), HandshakeError> {
    let (mut c, mut h) = initial();
    h = crypto::hash(&[&h, &peer.public]);
    let ephemeral = KeyPair::generate()?;
    let mut msg = [0u8; INITIATION_LEN];
    msg[..4].copy_from_slice(&header(INITIATION));
    msg[4..8].copy_from_slice(&sender.to_le_bytes());
    msg[8..40].copy_from_slice(ephemeral.public());
    [c] = crypto::kdf(&c, ephemeral.public());
    h = crypto::hash(&[&h, ephemeral.public()]);
    let k;
    [c, k] = crypto::kdf(&c, &ephemeral.dh(&peer.public)?);
    let sealed_static = crypto::seal(&k, 0, identity.pair.public(), &h);
    msg[40..88].copy_from_slice(&sealed_static);
    h = crypto::hash(&[&h, &sealed_static]);
    let k;
    [c, k] = crypto::kdf(&c, &peer.static_static);
    let sealed_time = crypto::seal(&k, 0, &timestamp, &h);
    msg[88..116].copy_from_slice(&sealed_time);
    h = crypto::hash(&[&h, &sealed_time]);
    let mac1 = macs(&mut msg, &peer.mac1_key, cookie);
    Ok((msg, Initiated { sender, ephemeral, chaining: c, hash: h, mac1 }))
}

/// Opens an initiation sent to us (its mac1 already checked).
pub(crate) fn receive_initiation(
    identity: &Identity,
    msg: &[u8],
) -> Result<Received, HandshakeError> {
    if msg.len() != INITIATION_LEN || msg[..4] != header(INITIATION) {
        return Err(HandshakeError::Malformed);
    }
    let (mut c, mut h) = initial();
    h = crypto::hash(&[&h, identity.pair.public()]);
    let ephemeral: [u8; 32] = array(msg, 8);
    [c] = crypto::kdf(&c, &ephemeral);
    h = crypto::hash(&[&h, &ephemeral]);
    let k;
    [c, k] = crypto::kdf(&c, &identity.pair.dh(&ephemeral)?);
    let peer = crypto::open(&k, 0, &msg[40..88], &h).ok_or(HandshakeError::Decrypt)?;
    let peer: [u8; 32] = peer.try_into().map_err(|_| HandshakeError::Decrypt)?;
    h = crypto::hash(&[&h, &msg[40..88]]);
    let k;
    [c, k] = crypto::kdf(&c, &identity.pair.dh(&peer)?);
    let timestamp = crypto::open(&k, 0, &msg[88..116], &h).ok_or(HandshakeError::Decrypt)?;
    let timestamp: [u8; 12] = timestamp.try_into().map_err(|_| HandshakeError::Decrypt)?;
    h = crypto::hash(&[&h, &msg[88..116]]);
    Ok(Received { peer, sender: u32_at(msg, 4), timestamp, ephemeral, chaining: c, hash: h })
}

/// Our answer to a received initiation, and the session's keys (we are the responder).
pub(crate) fn respond(
    peer: &PeerKeys,
    received: &Received,
    sender: u32,
    cookie: Option<&[u8; 16]>,
) -> Result<([u8; RESPONSE_LEN], Keys), HandshakeError> {
    let (mut c, mut h) = (received.chaining, received.hash);
    let ephemeral = KeyPair::generate()?;
    let mut msg = [0u8; RESPONSE_LEN];
    msg[..4].copy_from_slice(&header(RESPONSE));
    msg[4..8].copy_from_slice(&sender.to_le_bytes());
    msg[8..12].copy_from_slice(&received.sender.to_le_bytes());
    msg[12..44].copy_from_slice(ephemeral.public());
    [c] = crypto::kdf(&c, ephemeral.public());
    h = crypto::hash(&[&h, ephemeral.public()]);
    [c] = crypto::kdf(&c, &ephemeral.dh(&received.ephemeral)?);
    [c] = crypto::kdf(&c, &ephemeral.dh(&peer.public)?);
    let (tau, k);
    [c, tau, k] = crypto::kdf(&c, &peer.psk);
    h = crypto::hash(&[&h, &tau]);
    let sealed = crypto::seal(&k, 0, &[], &h);
    msg[44..60].copy_from_slice(&sealed);
    macs(&mut msg, &peer.mac1_key, cookie);
    let [receive, send] = crypto::kdf(&c, &[]);
    Ok((msg, Keys { send, receive }))
}

/// The receiver index of a response, cookie reply or transport message.
pub(crate) fn receiver(msg: &[u8]) -> Option<u32> {
    let at = match msg.first()? {
        &RESPONSE => 8,
        &COOKIE_REPLY | &TRANSPORT => 4,
        _ => return None,
    };
    (msg.len() >= at + 4).then(|| u32_at(msg, at))
}

/// The responder's sender index in a response.
pub(crate) fn response_sender(msg: &[u8]) -> u32 {
    u32_at(msg, 4)
}

/// Opens the response to our initiation (its mac1 already checked): the session's keys.
pub(crate) fn receive_response(
    identity: &Identity,
    peer: &PeerKeys,
    initiated: &Initiated,
    msg: &[u8],
) -> Result<Keys, HandshakeError> {
    if msg.len() != RESPONSE_LEN || msg[..4] != header(RESPONSE) {
        return Err(HandshakeError::Malformed);
    }
    let (mut c, mut h) = (initiated.chaining, initiated.hash);
    let ephemeral: [u8; 32] = array(msg, 12);
    [c] = crypto::kdf(&c, &ephemeral);
    h = crypto::hash(&[&h, &ephemeral]);
    [c] = crypto::kdf(&c, &initiated.ephemeral.dh(&ephemeral)?);
    [c] = crypto::kdf(&c, &identity.pair.dh(&ephemeral)?);
    let (tau, k);
    [c, tau, k] = crypto::kdf(&c, &peer.psk);
    h = crypto::hash(&[&h, &tau]);
    crypto::open(&k, 0, &msg[44..60], &h).ok_or(HandshakeError::Decrypt)?;
    let [send, receive] = crypto::kdf(&c, &[]);
    Ok(Keys { send, receive })
}

/// Opens a cookie reply to the initiation whose mac1 we sent: the cookie for mac2.
pub(crate) fn open_cookie(
    peer: &PeerKeys,
    mac1_sent: &[u8; 16],
    msg: &[u8],
) -> Result<[u8; 16], HandshakeError> {
    if msg.len() != COOKIE_REPLY_LEN || msg[..4] != header(COOKIE_REPLY) {
        return Err(HandshakeError::Malformed);
    }
    let nonce: [u8; 24] = array(msg, 8);
    let cookie = crypto::xopen(&peer.cookie_key, &nonce, &msg[32..64], mac1_sent)
        .ok_or(HandshakeError::Decrypt)?;
    cookie.try_into().map_err(|_| HandshakeError::Decrypt)
}

/// A cookie reply, as a responder under load sends it (our tests play that responder).
#[cfg(test)]
pub(crate) fn cookie_reply(
    our_public: &[u8; 32],
    receiver: u32,
    cookie: &[u8; 16],
    mac1: &[u8; 16],
) -> Vec<u8> {
    let key = crypto::hash(&[LABEL_COOKIE, our_public]);
    let nonce: [u8; 24] = crypto::random();
    let mut msg = header(COOKIE_REPLY).to_vec();
    msg.extend_from_slice(&receiver.to_le_bytes());
    msg.extend_from_slice(&nonce);
    msg.extend_from_slice(&crypto::xseal(&key, &nonce, cookie, mac1));
    msg
}

/// TAI64N of a time since the Unix epoch: seconds + 2^62 + 10 (TAI's offset in 1972, as
/// WireGuard implementations write it), then nanoseconds, both big-endian.
pub(crate) fn tai64n(since_epoch: std::time::Duration) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&(0x4000_0000_0000_000a_u64 + since_epoch.as_secs()).to_be_bytes());
    t[8..].copy_from_slice(&since_epoch.subsec_nanos().to_be_bytes());
    t
}

const _: () = assert!(RESPONSE_LEN == 60 + 2 * TAG_LEN);

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Identity, Identity) {
        (Identity::new(KeyPair::generate().unwrap()), Identity::new(KeyPair::generate().unwrap()))
    }

    #[test]
    fn both_ends_derive_the_same_keys() {
        let (a, b) = pair();
        let psk = Some([3u8; 32]);
        let b_at_a = PeerKeys::new(&a, *b.pair.public(), psk).unwrap();
        let a_at_b = PeerKeys::new(&b, *a.pair.public(), psk).unwrap();
        let time = tai64n(std::time::Duration::from_secs(1_700_000_000));
        let (init, initiated) = initiate(&a, &b_at_a, 7, time, None).unwrap();
        assert!(b.mac1_ok(&init));
        assert!(!a.mac1_ok(&init), "mac1 is keyed by the responder's public key");
        let received = receive_initiation(&b, &init).unwrap();
        assert_eq!(
            (received.peer, received.sender, received.timestamp),
            (*a.pair.public(), 7, time)
        );
        let (resp, b_keys) = respond(&a_at_b, &received, 9, None).unwrap();
        assert!(a.mac1_ok(&resp));
        assert_eq!((receiver(&resp), response_sender(&resp)), (Some(7), 9));
        let a_keys = receive_response(&a, &b_at_a, &initiated, &resp).unwrap();
        assert_eq!(a_keys.send, b_keys.receive);
        assert_eq!(a_keys.receive, b_keys.send);
        assert_ne!(a_keys.send, a_keys.receive);
    }

    #[test]
    fn a_different_preshared_key_fails_at_the_response() {
        let (a, b) = pair();
        let b_at_a = PeerKeys::new(&a, *b.pair.public(), Some([1; 32])).unwrap();
        let a_at_b = PeerKeys::new(&b, *a.pair.public(), Some([2; 32])).unwrap();
        let (init, initiated) = initiate(&a, &b_at_a, 1, [0; 12], None).unwrap();
        let received = receive_initiation(&b, &init).unwrap();
        let (resp, _) = respond(&a_at_b, &received, 2, None).unwrap();
        assert_eq!(receive_response(&a, &b_at_a, &initiated, &resp), Err(HandshakeError::Decrypt));
    }

    #[test]
    fn tampering_anywhere_in_an_initiation_is_refused() {
        let (a, b) = pair();
        let b_at_a = PeerKeys::new(&a, *b.pair.public(), None).unwrap();
        let (init, _) = initiate(&a, &b_at_a, 1, [0; 12], None).unwrap();
        for i in 8..116 {
            let mut bad = init;
            bad[i] ^= 1;
            assert!(receive_initiation(&b, &bad).is_err(), "byte {i} flipped was accepted");
        }
        assert_eq!(receive_initiation(&b, &init[..100]).err(), Some(HandshakeError::Malformed));
    }

    #[test]
    fn cookies_open_with_the_mac1_they_answer_and_go_into_mac2() {
        let (a, b) = pair();
        let b_at_a = PeerKeys::new(&a, *b.pair.public(), None).unwrap();
        let (_, initiated) = initiate(&a, &b_at_a, 1, [0; 12], None).unwrap();
        let reply = cookie_reply(b.pair.public(), 1, &[5; 16], &initiated.mac1);
        assert_eq!(open_cookie(&b_at_a, &initiated.mac1, &reply), Ok([5; 16]));
        assert_eq!(open_cookie(&b_at_a, &[0; 16], &reply), Err(HandshakeError::Decrypt));
        let (with_cookie, _) = initiate(&a, &b_at_a, 2, [0; 12], Some(&[5; 16])).unwrap();
        let mac2 = crypto::mac(&[5; 16], &[&with_cookie[..INITIATION_LEN - 16]]);
        assert_eq!(with_cookie[INITIATION_LEN - 16..], mac2);
    }

    #[test]
    fn tai64n_counts_from_the_label() {
        let t = tai64n(std::time::Duration::new(1, 5));
        assert_eq!(t[..8], 0x4000_0000_0000_000b_u64.to_be_bytes());
        assert_eq!(t[8..], 5u32.to_be_bytes());
    }
}
