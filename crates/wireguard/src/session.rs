//! A session: the transport keys of one handshake, its counters and its replay window
//! (the whitepaper's §5.4.6).

use std::time::Instant;

use crate::crypto::{AeadKey, TAG_LEN};
use crate::noise::{Keys, TRANSPORT, TRANSPORT_HEADER};

/// Counters at or past this are never sent or accepted: 2^64 − 2^13 − 1 (the whitepaper's
/// Reject-After-Messages).
pub(crate) const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);
/// Sending this many messages on one session asks for a new handshake (Rekey-After-Messages).
pub(crate) const REKEY_AFTER_MESSAGES: u64 = 1 << 60;

/// Bits in the replay window, in 64-bit words; one word is the one being filled, so
/// `WINDOW` counters behind the newest are still accepted (RFC 6479's scheme).
const WORDS: usize = 32;
const WINDOW: u64 = ((WORDS - 1) * 64) as u64;

/// Which counters have been seen.
#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    newest: u64,
    any: bool,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self { newest: 0, any: false, bits: [0; WORDS] }
    }
}

impl ReplayWindow {
    /// Whether `counter` could be accepted: not too old, not seen. Asked before decrypting;
    /// only an authenticated message is then [`ReplayWindow::accept`]ed.
    pub(crate) fn fresh(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        if !self.any || counter > self.newest {
            return true;
        }
        if self.newest - counter >= WINDOW {
            return false;
        }
        self.bits[word(counter)] & bit(counter) == 0
    }

    /// Records `counter` as seen; false when it was not fresh.
    pub(crate) fn accept(&mut self, counter: u64) -> bool {
        if !self.fresh(counter) {
            return false;
        }
        if !self.any || counter > self.newest {
            let from = if self.any { self.newest >> 6 } else { 0 };
            let to = counter >> 6;
            // Clear the words the window moves over (all of them after a long jump).
            let moved = usize::try_from((to - from).min(WORDS as u64)).unwrap_or(WORDS);
            for i in 1..=moved {
                let w = usize::try_from((from + i as u64) % WORDS as u64).unwrap_or(0);
                self.bits[w] = 0;
            }
            if !self.any {
                self.bits[word(counter)] = 0;
            }
            self.newest = counter;
            self.any = true;
        }
        self.bits[word(counter)] |= bit(counter);
        true
    }
}

fn word(counter: u64) -> usize {
    usize::try_from((counter >> 6) % WORDS as u64).unwrap_or(0)
}

fn bit(counter: u64) -> u64 {
    1 << (counter & 63)
}

/// One handshake's transport keys and what has been done with them.
#[derive(Debug)]
pub(crate) struct Session {
    /// Our index: transport messages to us carry it.
    pub(crate) local: u32,
    /// The peer's index: ours to it carry it.
    pub(crate) remote: u32,
    send: AeadKey,
    receive: AeadKey,
    next_counter: u64,
    replay: ReplayWindow,
    pub(crate) created: Instant,
    /// Whether we sent the initiation of its handshake (only the initiator rekeys by time).
    pub(crate) initiator: bool,
}

/// Why a transport message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Short,
    Replayed,
    Decrypt,
}

impl Session {
    pub(crate) fn new(local: u32, remote: u32, keys: &Keys, initiator: bool, now: Instant) -> Self {
        Self {
            local,
            remote,
            send: AeadKey::new(&keys.send),
            receive: AeadKey::new(&keys.receive),
            next_counter: 0,
            replay: ReplayWindow::default(),
            created: now,
            initiator,
        }
    }

    /// How many messages were sent.
    pub(crate) fn sent(&self) -> u64 {
        self.next_counter
    }

    /// A transport message carrying `packet` into `out`, padded to a multiple of 16 but never
    /// past `mtu` (§5.4.6); `false` once the counter is exhausted.
    pub(crate) fn seal(&mut self, packet: &[u8], mtu: usize, out: &mut Vec<u8>) -> bool {
        let counter = self.next_counter;
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        self.next_counter += 1;
        let padded = packet.len().next_multiple_of(16).min(mtu.max(packet.len()));
        out.clear();
        out.reserve(TRANSPORT_HEADER + padded + TAG_LEN);
        out.extend_from_slice(&[TRANSPORT, 0, 0, 0]);
        out.extend_from_slice(&self.remote.to_le_bytes());
        out.extend_from_slice(&counter.to_le_bytes());
        out.extend_from_slice(packet);
        out.resize(TRANSPORT_HEADER + padded + TAG_LEN, 0);
        self.send.seal_in(counter, &mut out[TRANSPORT_HEADER..]);
        true
    }

    /// Opens a transport message for this session in place: the plaintext's range in `msg`.
    pub(crate) fn open(&mut self, msg: &mut [u8]) -> Result<std::ops::Range<usize>, Refused> {
        if msg.len() < TRANSPORT_HEADER + TAG_LEN {
            return Err(Refused::Short);
        }
        let counter = u64::from_le_bytes(msg[8..16].try_into().map_err(|_| Refused::Short)?);
        if !self.replay.fresh(counter) {
            return Err(Refused::Replayed);
        }
        let n = self
            .receive
            .open(counter, &[], &mut msg[TRANSPORT_HEADER..])
            .ok_or(Refused::Decrypt)?;
        if !self.replay.accept(counter) {
            return Err(Refused::Replayed);
        }
        Ok(TRANSPORT_HEADER..TRANSPORT_HEADER + n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_accepts_each_counter_once_and_forgets_the_old() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(0));
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(w.accept(3), "late but inside the window");
        assert!(!w.accept(3));
        assert!(w.accept(5000));
        assert!(!w.fresh(5), "too old now");
        assert!(w.fresh(5000 - WINDOW + 1));
        assert!(!w.fresh(5000 - WINDOW));
        assert!(w.accept(4999));
        assert!(!w.accept(4999));
        // A jump past the whole window clears it.
        assert!(w.accept(1_000_000));
        assert!(w.accept(1_000_000 - 64));
        assert!(!w.accept(REJECT_AFTER_MESSAGES));
    }

    #[test]
    fn every_counter_in_a_shuffled_window_is_accepted_once() {
        let mut w = ReplayWindow::default();
        // 0..2000 in an order that jumps back by up to 1,900.
        let order: Vec<u64> = (0..2000u64).map(|i| (i * 1009) % 2000).collect();
        let mut newest = 0;
        for &c in &order {
            newest = newest.max(c);
            let expect = newest - c < WINDOW;
            assert_eq!(w.accept(c), expect, "counter {c} with newest {newest}");
        }
        for &c in &order {
            assert!(!w.accept(c));
        }
    }

    #[test]
    fn sessions_carry_packets_and_refuse_replays_and_tampering() {
        let keys = Keys { send: [1; 32], receive: [2; 32] };
        let back = Keys { send: [2; 32], receive: [1; 32] };
        #[allow(clippy::disallowed_methods, reason = "a timestamp the test never compares")]
        let now = Instant::now();
        let mut a = Session::new(1, 2, &keys, true, now);
        let mut b = Session::new(2, 1, &back, false, now);
        let mut out = Vec::new();
        assert!(a.seal(b"hello", 1420, &mut out));
        assert_eq!(out.len(), TRANSPORT_HEADER + 16 + TAG_LEN, "padded to 16");
        let mut copy = out.clone();
        let r = b.open(&mut out).unwrap();
        assert_eq!(&out[r][..5], b"hello");
        assert_eq!(b.open(&mut copy.clone()), Err(Refused::Replayed));
        copy[20] ^= 1;
        copy[8] = 9; // a fresh counter, but the tag no longer matches
        assert_eq!(b.open(&mut copy), Err(Refused::Decrypt));
        assert!(a.seal(&[0; 1419], 1420, &mut out));
        assert_eq!(out.len(), TRANSPORT_HEADER + 1420 + TAG_LEN, "padding stops at the MTU");
        assert!(a.seal(&[], 1420, &mut out));
        assert_eq!(out.len(), 32, "a keepalive");
    }
}
