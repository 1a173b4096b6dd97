//! Data peeks, without I/O: the TCP bytes of flows a provider asked to filter the data of, each
//! direction (this host's bytes to the peer, and the peer's to this host, when it asked for
//! those too) put in order from the packets that carry them, held back until the provider's
//! verdict, and let through exactly as far as it passed. One question is out per flow at a
//! time; a pass is about the direction asked, an allow or a drop decides the whole flow.
//! Driven by the host with the time passed in, so it is tested in virtual time.
//!
//! A packet is let through only when all its bytes are passed: the peer receives the passed
//! bytes rounded down to a packet boundary, and not one byte of a dropped flow. Packets without
//! bytes (acknowledgements) always pass; a copy of a packet already held (the sender
//! retransmitted it) is discarded, since the held one goes out. The provider is asked as soon
//! as the bytes it asked for are held, or the sender pushed what it has (PSH: it waits for an
//! answer, as a TLS client after its ClientHello does) or closed: the sender is never held back
//! beyond the bytes asked for.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::engine::Decision;
use crate::flow::{Data, DataVerdict, Direction, FlowKey, MAX_PEEK};
use crate::recent::Recent;

/// The most payload bytes one flow holds back; a packet beyond them is discarded (the sender
/// sends it again later). A flow's sender has at most its window in flight, far less than this
/// while nothing is acknowledged.
pub(crate) const MAX_HELD: usize = 256 * 1024;
/// The most payload bytes all flows together hold back (256 flows at their most): past it, a
/// packet to hold is discarded as one past [`MAX_HELD`] is, and sent again later, so that many
/// flows waiting on a slow provider cannot take the host's memory.
pub(crate) const MAX_HELD_TOTAL: usize = 64 << 20;
/// A peeked flow with nothing held and no question out is forgotten after this long without a
/// packet; a later packet of it gets the failure policy.
pub(crate) const IDLE: Duration = Duration::from_secs(600);
/// How long the final verdict of a peeked flow answers its later packets (packets already
/// queued when it came, retransmissions, the resets of a dropped flow's process).
pub(crate) const REMEMBER: Duration = Duration::from_secs(30);

/// What a packet of a peeked flow gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Give {
    /// Out, and the flow stays peeked: its next packets come back to the host.
    Pass,
    /// Out without its payload, and the flow stays peeked: a SYN carrying data (TCP Fast
    /// Open), whose sender sends the data again after the handshake, to be peeked at then.
    Bare,
    /// Out, and the rest of the flow never leaves the kernel.
    Allow,
    /// Refused: not sent, and the process's socket is reset.
    Drop,
    /// Dropped without a word: a copy of a packet already held, or one more than the flow may
    /// hold. The sender sends it again.
    Discard,
}

/// A TCP segment of a peeked flow, with its payload copied out of the queue's buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Its first byte's sequence number.
    pub seq: u32,
    /// Its payload's length (from the IP header).
    pub len: usize,
    /// FIN: the sender's stream ends after this segment.
    pub fin: bool,
    /// RST: the sender's socket is gone.
    pub rst: bool,
    /// PSH: the sender has nothing more to send for now.
    pub psh: bool,
    /// SYN: the sender's first segment (a SYN-ACK; a flow's own SYN never comes here). Its
    /// sequence number places the stream's bytes.
    pub syn: bool,
    /// The payload bytes the queue copied (all of them unless the packet was cut short).
    pub payload: Vec<u8>,
}

/// What the host does after a data verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The flow is not waiting for a verdict (its deadline passed, or it is unknown).
    Late,
    /// Some bytes passed; the flow waits for more, or asks at once.
    Next(Option<Data>),
    /// The flow is decided.
    Final(Decision),
}

#[derive(Debug)]
struct Held<P> {
    start: u64,
    end: u64,
    fin: bool,
    payload: Vec<u8>,
    packet: P,
}

/// How much of each direction of a flow the provider wants to see first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct PeekSizes {
    /// Bytes from this host to the peer; 0 with `inbound` 0 is taken as 1.
    pub outbound: u32,
    /// Bytes from the peer to this host; 0: the peer's packets are not held (nor queued).
    pub inbound: u32,
}

impl PeekSizes {
    /// Whether the peer's packets are held and followed too (its bytes are peeked at).
    pub(crate) fn both_ways(self) -> bool {
        self.inbound > 0
    }
}

/// One direction of a peeked flow: its bytes put in order, held, and let through as far as
/// the provider passed them.
#[derive(Debug)]
struct Stream<P> {
    /// Whether the provider looks at these bytes. A stream not peeked at is still followed
    /// (when its packets come here) so that a dropped flow's ends can be reset: its packets
    /// pass as they come.
    peeked: bool,
    /// Whether the sequence number of its first byte is known (its sender's SYN was seen, or
    /// its first segment).
    synced: bool,
    /// A sequence number and its offset in the stream: offsets of nearby sequence numbers are
    /// reckoned from it (moved forward as packets come, so streams longer than 4 GiB work).
    ref_seq: u32,
    ref_off: u64,
    /// Packets whose bytes all lie before this offset go through.
    passed_to: u64,
    /// The bytes before this offset went out: the receiver's next expected byte.
    out_to: u64,
    /// The provider wants to see the bytes up to this offset.
    peek_to: u64,
    /// Where the bytes last shown started and ended, and whether the close was shown.
    shown_from: u64,
    shown_to: u64,
    shown_closed: bool,
    /// The end of the last segment the sender pushed: it sent what it had up to there, and
    /// may wait for an answer before it sends more.
    push_end: u64,
    /// The stream ends here (a FIN was seen).
    fin_at: Option<u64>,
    /// Held packets, by start.
    held: Vec<Held<P>>,
    held_bytes: usize,
}

impl<P> Stream<P> {
    /// A stream whose provider wants its first `peek` bytes (0: not peeked at), and whose SYN
    /// had sequence number `syn`, when it was seen.
    fn new(peek: u32, syn: Option<u32>) -> Self {
        let peeked = peek > 0;
        Self {
            peeked,
            synced: syn.is_some(),
            ref_seq: syn.map_or(0, |s| s.wrapping_add(1)),
            ref_off: 0,
            passed_to: if peeked { 0 } else { u64::MAX },
            out_to: 0,
            peek_to: u64::from(peek.min(MAX_PEEK)),
            shown_from: 0,
            shown_to: 0,
            shown_closed: false,
            push_end: 0,
            fin_at: None,
            held: Vec::new(),
            held_bytes: 0,
        }
    }

    fn offset(&self, seq: u32) -> u64 {
        // Bytes in flight lie within 2^31 of the last seen ones (RFC 9293 §3.4's sequence
        // space): the signed difference places them.
        let diff = i64::from(seq.wrapping_sub(self.ref_seq).cast_signed());
        self.ref_off.saturating_add_signed(diff)
    }

    /// The sequence number of the byte at `offset` (offsets differ from `ref_off` by less than
    /// 2^32 in the sequence space, so the low 32 bits of the difference are exact).
    fn seq_at(&self, offset: u64) -> u32 {
        let diff = offset.wrapping_sub(self.ref_off) & u64::from(u32::MAX);
        self.ref_seq.wrapping_add(u32::try_from(diff).unwrap_or(0))
    }

    /// The end of the bytes held without a gap from `passed_to`.
    fn frontier(&self) -> u64 {
        let mut f = self.passed_to;
        for h in &self.held {
            if h.start > f {
                break;
            }
            f = f.max(h.start + h.payload.len() as u64);
        }
        f
    }

    /// The held bytes from `passed_to` to `to`.
    fn bytes(&self, to: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = self.passed_to;
        for h in &self.held {
            if at >= to || h.start > at {
                break;
            }
            let have = h.start + h.payload.len() as u64;
            if have > at {
                let from = usize::try_from(at - h.start).unwrap_or(usize::MAX);
                let until = usize::try_from(have.min(to) - h.start).unwrap_or(usize::MAX);
                out.extend_from_slice(&h.payload[from..until]);
                at = have.min(to);
            }
        }
        out
    }

    /// The data to show now, if the provider is to be asked about this stream.
    fn ready(&mut self, id: u64, direction: Direction) -> Option<Data> {
        if !self.peeked {
            return None;
        }
        let frontier = self.frontier();
        let to = frontier.min(self.peek_to);
        let closed = self.fin_at.is_some_and(|f| frontier >= f && f <= self.peek_to);
        // Something the provider has not seen: held bytes that are new, or shown from a new
        // offset (it passed part of them); or the close. Never a question about no bytes
        // but the close, however far a pass reached.
        let held = to > self.passed_to;
        let new = (held && (to > self.shown_to || self.passed_to > self.shown_from))
            || (closed && !self.shown_closed);
        // And a reason not to wait for more: the bytes asked for are here, or the sender
        // pushed bytes still held (it may wait for an answer), or closed.
        let wait_over =
            to >= self.peek_to || closed || (self.push_end > self.passed_to && to > self.passed_to);
        if !new || !wait_over {
            return None;
        }
        self.shown_from = self.passed_to;
        self.shown_to = to;
        self.shown_closed = closed;
        Some(Data { id, direction, offset: self.passed_to, bytes: self.bytes(to), closed })
    }

    /// The provider passed `pass` bytes from the offset last shown and wants `peek` more: the
    /// packets now wholly passed go out. Returns the bytes no longer held.
    fn pass(&mut self, pass: u64, peek: u32, out: &mut Vec<(P, Give)>) -> usize {
        let shown_from = self.passed_to;
        self.passed_to = self.passed_to.max(shown_from.saturating_add(pass));
        // The next question shows at least one byte more than this one, so a provider that
        // asks for what it saw already cannot hold the flow in a loop.
        self.peek_to = self
            .passed_to
            .saturating_add(u64::from(peek.clamp(1, MAX_PEEK)))
            .max(self.shown_to.saturating_add(1));
        let passed = self.passed_to;
        let (gone, kept): (Vec<Held<P>>, Vec<Held<P>>) =
            self.held.drain(..).partition(|h| h.end <= passed);
        self.held = kept;
        let mut freed = 0;
        for h in gone {
            freed += h.payload.len();
            if h.start <= self.out_to {
                self.out_to = self.out_to.max(h.end);
            }
            out.push((h.packet, Give::Pass));
        }
        self.held_bytes -= freed;
        freed
    }

    /// Every held packet, to be given `give`. Returns the bytes no longer held.
    fn release_all(&mut self, give: Give, out: &mut Vec<(P, Give)>) -> usize {
        out.extend(self.held.drain(..).map(|h| (h.packet, give)));
        std::mem::take(&mut self.held_bytes)
    }
}

/// Index of a direction's stream.
fn way(direction: Direction) -> usize {
    match direction {
        Direction::Outbound => 0,
        Direction::Inbound => 1,
    }
}

#[derive(Debug)]
struct Peeked<P> {
    id: u64,
    /// This host's bytes to the peer, then the peer's to this host.
    streams: [Stream<P>; 2],
    /// The question out: its deadline, and whose bytes it is about. One at a time per flow.
    asked: Option<(Instant, Direction)>,
    last: Instant,
}

impl<P> Peeked<P> {
    /// Whether the peer's packets come here: its bytes are peeked at.
    fn both_ways(&self) -> bool {
        self.streams[way(Direction::Inbound)].peeked
    }

    /// The data to show now, if the provider is to be asked (this host's bytes first).
    fn ready(&mut self, now: Instant, deadline: Duration) -> Option<Data> {
        if self.asked.is_some() {
            return None;
        }
        for direction in [Direction::Outbound, Direction::Inbound] {
            if let Some(data) = self.streams[way(direction)].ready(self.id, direction) {
                self.asked = Some((now + deadline, direction));
                return Some(data);
            }
        }
        None
    }

    fn release_all(&mut self, give: Give, out: &mut Vec<(P, Give)>) -> usize {
        self.streams.iter_mut().map(|s| s.release_all(give, out)).sum()
    }

    fn due(&self) -> Option<Instant> {
        self.asked.map(|(due, _)| due)
    }
}

/// The peeked flows.
#[derive(Debug)]
pub(crate) struct Peeks<P> {
    deadline: Duration,
    flows: HashMap<FlowKey, Peeked<P>>,
    ids: HashMap<u64, FlowKey>,
    /// The questions out, by deadline.
    dues: BTreeSet<(Instant, u64)>,
    ended: Recent<FlowKey, Decision>,
    /// Flows that ended without a verdict (a reset, or idle), for the host to forget.
    gone: Vec<u64>,
    /// The resets telling the ends of dropped flows they are gone: each from `key.local` to
    /// `key.remote`, with the sequence number of the next byte the receiver expects.
    resets: Vec<(FlowKey, u32)>,
    /// Bytes shown to the provider.
    pub bytes_peeked: u64,
    /// Payload bytes held, all flows together.
    held_total: usize,
}

impl<P> Peeks<P> {
    /// No flows; each question waits at most `deadline` for its verdict.
    pub(crate) fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            flows: HashMap::new(),
            ids: HashMap::new(),
            dues: BTreeSet::new(),
            ended: Recent::new(REMEMBER),
            gone: Vec::new(),
            resets: Vec::new(),
            bytes_peeked: 0,
            held_total: 0,
        }
    }

    /// The payload bytes held, all flows together.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held_total
    }

    /// Whether no flow is peeked at.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The flows that ended without a verdict since the last call (the sender reset them, or
    /// they were idle).
    pub(crate) fn take_gone(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.gone)
    }

    /// The resets to send for the flows dropped since the last call: each from `key.local` to
    /// `key.remote` (the peer, or this host's own socket when the key is turned around) with
    /// the sequence number of the next byte its receiver expects (a reset with it is taken at
    /// once, RFC 5961 §3.2).
    pub(crate) fn take_resets(&mut self) -> Vec<(FlowKey, u32)> {
        std::mem::take(&mut self.resets)
    }

    /// Whether packets of `key` belong here (a peeked flow, or one decided a moment ago).
    #[cfg(test)]
    pub(crate) fn knows(&self, key: &FlowKey) -> bool {
        self.flows.contains_key(key) || self.ended.contains(key)
    }

    /// Flow `id` is to be peeked at: its SYN came from `syn.0`'s side with sequence number
    /// `syn.1`, and the provider wants to see `peek` of its bytes. The peer's packets come
    /// here only when `peek.inbound` is not 0.
    pub(crate) fn start(
        &mut self,
        now: Instant,
        id: u64,
        key: FlowKey,
        syn: (Direction, u32),
        peek: PeekSizes,
    ) {
        let both_ways = peek.both_ways();
        let outbound = if both_ways { peek.outbound } else { peek.outbound.max(1) };
        let isn = |d: Direction| (syn.0 == d).then_some(syn.1);
        // A new connection on the 5-tuple of one still peeked at (it was never seen to end):
        // that one is gone, and what it held no longer counts.
        if let Some(old) = self.flows.get(&key) {
            let (old_id, held) = (old.id, old.streams.iter().map(|s| s.held_bytes).sum::<usize>());
            self.held_total -= held;
            self.end(now, old_id, None);
        }
        // A new connection on the 5-tuple of one decided a moment ago.
        self.ended.remove(&key);
        self.ids.insert(id, key);
        self.flows.insert(
            key,
            Peeked {
                id,
                streams: [
                    Stream::new(outbound, isn(Direction::Outbound)),
                    Stream::new(peek.inbound, isn(Direction::Inbound)),
                ],
                asked: None,
                last: now,
            },
        );
    }

    /// Whether flow `id`'s bytes are peeked at both ways (the peer's packets come here too).
    pub(crate) fn both_ways(&self, id: u64) -> bool {
        self.ids.get(&id).and_then(|k| self.flows.get(k)).is_some_and(Peeked::both_ways)
    }

    /// Whether the bytes flow `key` sends `direction` are peeked at (held until passed).
    pub(crate) fn peeked(&self, key: &FlowKey, direction: Direction) -> bool {
        self.flows.get(key).is_some_and(|f| f.streams[way(direction)].peeked)
    }

    /// A queued packet of flow `key`, going `direction` (from this host, or from the peer).
    /// Its verdict, or the verdicts of packets it releases, go to `out`; the bytes to show the
    /// provider are returned. `Err` hands back the packet of a flow this does not know.
    pub(crate) fn packet(
        &mut self,
        now: Instant,
        key: FlowKey,
        direction: Direction,
        seg: Segment,
        packet: P,
        out: &mut Vec<(P, Give)>,
    ) -> Result<Option<Data>, P> {
        self.ended.expire(now);
        let Some(f) = self.flows.get_mut(&key) else {
            return match self.ended.get(&key) {
                // The resets a dropped flow's ends send each other go out, so each learns the
                // connection is gone.
                Some(Decision::Drop) if seg.rst => {
                    out.push((packet, Give::Pass));
                    Ok(None)
                }
                Some(Decision::Drop) => {
                    out.push((packet, Give::Drop));
                    Ok(None)
                }
                Some(Decision::Allow) => {
                    out.push((packet, Give::Allow));
                    Ok(None)
                }
                None => Err(packet),
            };
        };
        f.last = now;
        let id = f.id;
        if seg.rst {
            // One end is gone: what either held back no longer matters.
            out.push((packet, Give::Pass));
            self.held_total -= f.release_all(Give::Discard, out);
            self.end(now, id, None);
            return Ok(None);
        }
        let s = &mut f.streams[way(direction)];
        if seg.syn {
            // The sender's SYN (the SYN-ACK answering the flow's SYN): its bytes start after
            // it. Data it carries goes again after the handshake, where it is held.
            if !s.synced {
                (s.synced, s.ref_seq, s.ref_off) = (true, seg.seq.wrapping_add(1), 0);
            }
            out.push((packet, if s.peeked && seg.len > 0 { Give::Bare } else { Give::Pass }));
            return Ok(None);
        }
        if !s.synced {
            // Its SYN was not seen: the stream starts at the first segment seen.
            (s.synced, s.ref_seq, s.ref_off) = (true, seg.seq, 0);
        }
        let start = s.offset(seg.seq);
        let end = start + seg.len as u64;
        if seg.len > 0 && start >= s.ref_off {
            (s.ref_seq, s.ref_off) = (seg.seq, start);
        }
        if seg.fin {
            s.fin_at = Some(end);
        }
        if (seg.len == 0 && !seg.fin) || end <= s.passed_to {
            // An acknowledgement, or bytes already passed (or a close after them, which the
            // provider is told about).
            if seg.len > 0 && start <= s.out_to {
                s.out_to = s.out_to.max(end);
            }
            out.push((packet, Give::Pass));
            return Ok(if seg.fin { self.show(now, id) } else { None });
        }
        let copy = s.held.iter().any(|h| h.start == start && h.end >= end && (h.fin || !seg.fin));
        let len = seg.payload.len();
        if copy || s.held_bytes + len > MAX_HELD || self.held_total + len > MAX_HELD_TOTAL {
            out.push((packet, Give::Discard));
            return Ok(None);
        }
        let at = s.held.partition_point(|h| h.start <= start);
        s.held_bytes += len;
        self.held_total += len;
        s.held.insert(at, Held { start, end, fin: seg.fin, payload: seg.payload, packet });
        if seg.psh {
            s.push_end = s.push_end.max(end);
        }
        Ok(self.show(now, id))
    }

    /// The bytes to show the provider about flow `id` now, if it is to be asked; its deadline
    /// starts.
    fn show(&mut self, now: Instant, id: u64) -> Option<Data> {
        let f = self.ids.get(&id).and_then(|k| self.flows.get_mut(k))?;
        let data = f.ready(now, self.deadline)?;
        self.bytes_peeked += data.bytes.len() as u64;
        if let Some(due) = f.due() {
            self.dues.insert((due, id));
        }
        Some(data)
    }

    /// Flow `id`'s held outbound bytes are to be shown again, to a provider that has not seen
    /// them (the host read them for the flow's host name).
    pub(crate) fn reshow(&mut self, id: u64) {
        if let Some(f) = self.ids.get(&id).and_then(|k| self.flows.get_mut(k)) {
            let s = &mut f.streams[way(Direction::Outbound)];
            s.shown_from = s.passed_to;
            s.shown_to = s.passed_to;
            s.shown_closed = false;
        }
    }

    /// Flow `id`, peeked at for this host's bytes alone (to read its host name), is to have
    /// the peer's first `peek` bytes peeked at too: its provider asked so once it knew the
    /// name. The peer's packets come here once the next of this host's packets passes (with
    /// the mark that says so), before the peer has this host's first bytes to answer; the
    /// stream starts at the first of them seen (its SYN-ACK went by). False when the flow is
    /// not known.
    pub(crate) fn peek_inbound(&mut self, id: u64, peek: u32) -> bool {
        let Some(f) = self.ids.get(&id).and_then(|k| self.flows.get_mut(k)) else { return false };
        if peek > 0 && !f.both_ways() {
            f.streams[way(Direction::Inbound)] = Stream::new(peek, None);
        }
        true
    }

    /// The provider's verdict about flow `id`'s bytes last shown: `pass` and `peek` are about
    /// the direction they went; `allow` and `drop` decide the whole flow.
    pub(crate) fn verdict(
        &mut self,
        now: Instant,
        id: u64,
        verdict: DataVerdict,
        out: &mut Vec<(P, Give)>,
    ) -> Answer {
        let Some(f) = self.ids.get(&id).and_then(|k| self.flows.get_mut(k)) else {
            return Answer::Late;
        };
        let Some((due, direction)) = f.asked.take() else { return Answer::Late };
        self.dues.remove(&(due, id));
        f.last = now;
        match verdict {
            DataVerdict::Allow | DataVerdict::Drop => {
                let decision =
                    if verdict == DataVerdict::Allow { Decision::Allow } else { Decision::Drop };
                let give = if decision == Decision::Allow { Give::Allow } else { Give::Drop };
                self.held_total -= f.release_all(give, out);
                self.end(now, id, Some(decision));
                Answer::Final(decision)
            }
            DataVerdict::Pass { pass, peek } => {
                self.held_total -= f.streams[way(direction)].pass(pass, peek, out);
                Answer::Next(self.show(now, id))
            }
        }
    }

    /// Flows whose question's deadline passed, decided `decision` (the failure policy): their
    /// ids.
    pub(crate) fn expire(
        &mut self,
        now: Instant,
        decision: Decision,
        out: &mut Vec<(P, Give)>,
    ) -> Vec<u64> {
        let due: Vec<u64> =
            self.dues.iter().take_while(|(due, _)| *due <= now).map(|(_, id)| *id).collect();
        self.decide_all(now, &due, decision, out)
    }

    /// Every flow decided `decision` (the provider is gone, or the host stops): their ids. A
    /// provider that starts again knows nothing of the flows its predecessor peeked at.
    pub(crate) fn fail_all(
        &mut self,
        now: Instant,
        decision: Decision,
        out: &mut Vec<(P, Give)>,
    ) -> Vec<u64> {
        let all: Vec<u64> = self.ids.keys().copied().collect();
        self.decide_all(now, &all, decision, out)
    }

    fn decide_all(
        &mut self,
        now: Instant,
        ids: &[u64],
        decision: Decision,
        out: &mut Vec<(P, Give)>,
    ) -> Vec<u64> {
        let give = if decision == Decision::Allow { Give::Allow } else { Give::Drop };
        for id in ids {
            if let Some(f) = self.ids.get(id).and_then(|k| self.flows.get_mut(k)) {
                if let Some((due, _)) = f.asked.take() {
                    self.dues.remove(&(due, *id));
                }
                self.held_total -= f.release_all(give, out);
            }
            self.end(now, *id, Some(decision));
        }
        ids.to_vec()
    }

    /// When the next question's deadline falls.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.dues.first().map(|(due, _)| *due)
    }

    fn end(&mut self, now: Instant, id: u64, decision: Option<Decision>) {
        let Some(key) = self.ids.remove(&id) else { return };
        if let Some(f) = self.flows.remove(&key) {
            if let Some(due) = f.due() {
                self.dues.remove(&(due, id));
            }
            if decision == Some(Decision::Drop) {
                // The peer, at the next byte of this host's it expects; and, when the peer's
                // packets were followed, this host's socket at the next byte of the peer's
                // (its packets held here may all have been refused at the peer's end, and the
                // socket would wait for an answer that never comes).
                let [outbound, inbound] = &f.streams;
                if outbound.synced {
                    self.resets.push((key, outbound.seq_at(outbound.out_to)));
                }
                if inbound.peeked && inbound.synced {
                    let turned = FlowKey { local: key.remote, remote: key.local, ..key };
                    self.resets.push((turned, inbound.seq_at(inbound.out_to)));
                }
            }
        }
        match decision {
            Some(d) => {
                self.ended.insert(now, key, d);
            }
            None => self.gone.push(id),
        }
    }

    /// Forgets flows idle for [`IDLE`] with nothing held and no question out (called now and
    /// then: it walks every flow).
    pub(crate) fn sweep(&mut self, now: Instant) {
        let idle: Vec<u64> = self
            .flows
            .values()
            .filter(|f| {
                f.streams.iter().all(|s| s.held.is_empty())
                    && f.asked.is_none()
                    && now.duration_since(f.last) >= IDLE
            })
            .map(|f| f.id)
            .collect();
        for id in idle {
            self.end(now, id, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;

    const O: Direction = Direction::Outbound;
    const I: Direction = Direction::Inbound;

    /// A flow whose provider peeks at this host's first `n` bytes only.
    fn outbound(n: u32) -> PeekSizes {
        PeekSizes { outbound: n, inbound: 0 }
    }

    fn key() -> FlowKey {
        FlowKey {
            transport: Transport::Tcp,
            local: "10.0.0.1:40000".parse().unwrap_or_else(|e| panic!("{e}")),
            remote: "10.0.0.2:443".parse().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn seg(seq: u32, payload: &[u8], psh: bool) -> Segment {
        Segment { seq, len: payload.len(), psh, payload: payload.to_vec(), ..Segment::default() }
    }

    #[allow(clippy::disallowed_methods, reason = "a starting instant for virtual time")]
    fn t0() -> Instant {
        Instant::now()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_pushed_hello_is_shown_and_a_drop_lets_no_byte_out() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 7, k, (O, 999), outbound(1024));
        let mut out = Vec::new();
        let hello = vec![0x16; 517];
        let data = p.packet(now, k, O, seg(1000, &hello, true), 1, &mut out);
        let data = data.ok().flatten().unwrap_or_else(|| panic!("a pushed hello is shown"));
        assert_eq!((data.id, data.offset, data.bytes.len(), data.closed), (7, 0, 517, false));
        assert!(out.is_empty(), "nothing goes out before the verdict: {out:?}");
        // An acknowledgement goes out; a retransmission of the held packet is discarded.
        assert_eq!(p.packet(now, k, O, seg(1517, b"", false), 2, &mut out).ok(), Some(None));
        assert_eq!(p.packet(now, k, O, seg(1000, &hello, true), 3, &mut out).ok(), Some(None));
        assert_eq!(out, vec![(2, Give::Pass), (3, Give::Discard)]);
        out.clear();
        assert_eq!(p.verdict(now, 7, DataVerdict::Drop, &mut out), Answer::Final(Decision::Drop));
        assert_eq!(out, vec![(1, Give::Drop)]);
        assert_eq!(p.take_resets(), vec![(k, 1000)], "the peer expects the first byte");
        assert_eq!(p.verdict(now, 7, DataVerdict::Allow, &mut out), Answer::Late);
        // Later packets of the dropped flow: refused, except the resets that tell the peer.
        out.clear();
        let _ = p.packet(now, k, O, seg(1000, &hello, true), 4, &mut out);
        let _ = p.packet(
            now,
            k,
            O,
            Segment { seq: 1517, rst: true, ..Segment::default() },
            5,
            &mut out,
        );
        assert_eq!(out, vec![(4, Give::Drop), (5, Give::Pass)]);
        assert!(p.knows(&k));
        let _ = p.packet(now + REMEMBER, k, O, seg(1, b"x", false), 6, &mut out);
        assert!(!p.knows(&k), "forgotten after a while");
        assert_eq!(p.packet(now + REMEMBER, k, O, seg(1, b"x", false), 6, &mut out).err(), Some(6));
    }

    #[test]
    fn the_peers_bytes_are_placed_by_its_syn_ack_and_a_drop_resets_both_ends() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        // Only the answer is peeked at: this host's request goes out as it comes.
        p.start(now, 1, k, (O, 99), PeekSizes { outbound: 0, inbound: 1024 });
        let mut out = Vec::new();
        assert_eq!(p.packet(now, k, O, seg(100, b"GET /", true), 1, &mut out).ok(), Some(None));
        // A SYN-ACK carrying data goes on without it: the peer sends it again, to be held.
        let syn_ack =
            Segment { seq: 4999, syn: true, len: 2, payload: b"hi".to_vec(), ..Default::default() };
        assert_eq!(p.packet(now, k, I, syn_ack, 2, &mut out).ok(), Some(None));
        assert_eq!(out, vec![(1, Give::Pass), (2, Give::Bare)]);
        assert!(p.peeked(&k, I) && !p.peeked(&k, O));
        out.clear();
        let answer = b"HTTP/1.1 200 OK\r\n\r\nforbidden";
        let data = p.packet(now, k, I, seg(5000, answer, true), 3, &mut out).ok().flatten();
        let data = data.unwrap_or_else(|| panic!("the pushed answer is shown"));
        assert_eq!((data.direction, data.offset, data.bytes.as_slice()), (I, 0, &answer[..]));
        assert!(out.is_empty(), "the answer is held: {out:?}");
        assert_eq!(p.verdict(now, 1, DataVerdict::Drop, &mut out), Answer::Final(Decision::Drop));
        assert_eq!(out, vec![(3, Give::Drop)]);
        let turned = FlowKey { local: k.remote, remote: k.local, ..k };
        assert_eq!(
            p.take_resets(),
            vec![(k, 105), (turned, 5000)],
            "the peer after the request, this host's socket before the answer"
        );
    }

    #[test]
    fn a_flow_peeked_for_its_name_can_have_the_peers_bytes_peeked_at_after() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 99), PeekSizes { outbound: 16, inbound: 0 });
        let mut out = Vec::new();
        let named = p.packet(now, k, O, seg(100, b"GET / Host: a", true), 1, &mut out);
        assert!(named.ok().flatten().is_some(), "the request is shown (to read its name)");
        assert!(!p.both_ways(1) && !p.peeked(&k, I));
        assert!(p.peek_inbound(1, 8) && p.both_ways(1) && p.peeked(&k, I));
        assert!(!p.peek_inbound(2, 8), "an unknown flow");
        // Only the answer matters now: the request goes, and the answer (its SYN-ACK unseen)
        // is held from its first segment.
        let next = p.verdict(now, 1, DataVerdict::Pass { pass: u64::MAX, peek: 0 }, &mut out);
        assert_eq!(next, Answer::Next(None));
        assert_eq!(out, vec![(1, Give::Pass)]);
        out.clear();
        let answer = p.packet(now, k, I, seg(7000, b"HTTP/1.1 403", true), 2, &mut out);
        let data = answer.ok().flatten().unwrap_or_else(|| panic!("the answer is shown"));
        assert_eq!((data.direction, data.offset, data.bytes.as_slice()), (I, 0, &b"HTTP/1.1"[..]));
        assert!(out.is_empty(), "the answer is held: {out:?}");
        assert_eq!(p.verdict(now, 1, DataVerdict::Drop, &mut out), Answer::Final(Decision::Drop));
        assert_eq!(out, vec![(2, Give::Drop)]);
    }

    #[test]
    fn each_direction_is_asked_about_in_turn_and_a_pass_moves_only_its_own() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 0), PeekSizes { outbound: 4, inbound: 4 });
        let mut out = Vec::new();
        let asked = p.packet(now, k, O, seg(1, b"abcd", false), 1, &mut out).ok().flatten();
        assert_eq!(asked.map(|d| (d.direction, d.bytes)), Some((O, b"abcd".to_vec())));
        let _ =
            p.packet(now, k, I, Segment { seq: 99, syn: true, ..Segment::default() }, 2, &mut out);
        // The peer's bytes wait while the question about this host's is out.
        assert_eq!(p.packet(now, k, I, seg(100, b"wxyz", false), 3, &mut out).ok(), Some(None));
        let next = p.verdict(now, 1, DataVerdict::Pass { pass: 4, peek: 4 }, &mut out);
        let Answer::Next(Some(data)) = next else { panic!("the peer's bytes next: {next:?}") };
        assert_eq!((data.direction, data.offset, data.bytes.as_slice()), (I, 0, &b"wxyz"[..]));
        assert_eq!(out, vec![(2, Give::Pass), (1, Give::Pass)], "the pass was about ours");
        out.clear();
        // This host's next bytes wait for the answer about the peer's.
        assert_eq!(p.packet(now, k, O, seg(5, b"efgh", false), 4, &mut out).ok(), Some(None));
        let next = p.verdict(now, 1, DataVerdict::Pass { pass: 2, peek: 4 }, &mut out);
        let Answer::Next(Some(data)) = next else { panic!("ours next: {next:?}") };
        assert_eq!((data.direction, data.offset, data.bytes.as_slice()), (O, 4, &b"efgh"[..]));
        assert!(out.is_empty(), "2 of the peer's 4 bytes passed: its packet is held");
        assert_eq!(p.verdict(now, 1, DataVerdict::Allow, &mut out), Answer::Final(Decision::Allow));
        out.sort_unstable_by_key(|(packet, _)| *packet);
        assert_eq!(out, vec![(3, Give::Allow), (4, Give::Allow)]);
    }

    #[test]
    fn an_inbound_flows_request_is_shown_and_its_answer_goes_out_as_it_comes() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        // The peer opened the flow: its SYN places its bytes; this host's SYN-ACK places ours.
        p.start(now, 1, k, (I, 776), PeekSizes { outbound: 0, inbound: 16 });
        let mut out = Vec::new();
        let syn_ack = Segment { seq: 2999, syn: true, ..Segment::default() };
        assert_eq!(p.packet(now, k, O, syn_ack, 1, &mut out).ok(), Some(None));
        let request = b"GET / HTTP/1.1\r\n";
        let data = p.packet(now, k, I, seg(777, request, true), 2, &mut out).ok().flatten();
        assert_eq!(data.map(|d| (d.direction, d.bytes)), Some((I, request.to_vec())));
        assert_eq!(p.packet(now, k, O, seg(3000, b"HTTP", false), 3, &mut out).ok(), Some(None));
        assert_eq!(out, vec![(1, Give::Pass), (3, Give::Pass)]);
        out.clear();
        assert_eq!(p.verdict(now, 1, DataVerdict::Drop, &mut out), Answer::Final(Decision::Drop));
        assert_eq!(out, vec![(2, Give::Drop)]);
        let turned = FlowKey { local: k.remote, remote: k.local, ..k };
        assert_eq!(p.take_resets(), vec![(k, 3004), (turned, 777)]);
    }

    #[test]
    fn passed_bytes_go_out_at_packet_boundaries_and_the_next_peek_follows() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 0), outbound(1024));
        let stream: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        let part = |from: usize, to: usize| &stream[from..to];
        assert_eq!(p.packet(now, k, O, seg(1, part(0, 500), false), 1, &mut out).ok(), Some(None));
        assert_eq!(
            p.packet(now, k, O, seg(501, part(500, 1000), false), 2, &mut out).ok(),
            Some(None)
        );
        let data = p.packet(now, k, O, seg(1001, part(1000, 1500), false), 3, &mut out);
        let data = data.ok().flatten().unwrap_or_else(|| panic!("1,024 bytes are held"));
        assert_eq!((data.offset, data.bytes.as_slice()), (0, part(0, 1024)));
        // Pass 600: only the first packet (bytes 0..500) is wholly passed.
        let next = p.verdict(now, 1, DataVerdict::Pass { pass: 600, peek: 1024 }, &mut out);
        assert_eq!(next, Answer::Next(None), "bytes up to 1,624 are not all held yet");
        assert_eq!(out, vec![(1, Give::Pass)]);
        out.clear();
        let data = p.packet(now, k, O, seg(1501, part(1500, 2000), true), 4, &mut out);
        let data = data.ok().flatten().unwrap_or_else(|| panic!("shown again"));
        assert_eq!((data.offset, data.bytes.as_slice()), (600, part(600, 1624)));
        assert!(out.is_empty());
        assert_eq!(p.verdict(now, 1, DataVerdict::Allow, &mut out), Answer::Final(Decision::Allow));
        assert_eq!(out, vec![(2, Give::Allow), (3, Give::Allow), (4, Give::Allow)]);
        assert!(p.take_resets().is_empty(), "an allowed flow's peer is not reset");
        assert_eq!(p.bytes_peeked, 2048);
        assert!(p.is_empty());
    }

    #[test]
    fn pushed_bytes_passed_in_part_are_shown_again_at_once() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 0), outbound(1024));
        let mut out = Vec::new();
        let request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
        let data = p.packet(now, k, O, seg(1, request, true), 1, &mut out).ok().flatten();
        assert_eq!(data.map(|d| d.bytes.len()), Some(request.len()));
        // The sender pushed its request and waits: passing part of it shows the rest at once.
        let next = p.verdict(now, 1, DataVerdict::Pass { pass: 10, peek: 1024 }, &mut out);
        let Answer::Next(Some(data)) = next else { panic!("shown again: {next:?}") };
        assert_eq!((data.offset, data.bytes.as_slice()), (10, &request[10..]));
        assert!(out.is_empty(), "the packet straddles the passed bytes: held");
        // Passing nothing more shows nothing more, until new bytes come.
        let next = p.verdict(now, 1, DataVerdict::Pass { pass: 0, peek: 1 }, &mut out);
        assert_eq!(next, Answer::Next(None));
        let data = p.packet(now, k, O, seg(1 + 35, b"x", false), 2, &mut out).ok().flatten();
        assert_eq!(data.map(|d| (d.offset, d.bytes.len())), Some((10, request.len() - 10 + 1)));
    }

    #[test]
    fn a_provider_passing_everything_there_could_be_crashes_nothing() {
        // A hostile provider's numbers: the largest pass, no peek, again and again.
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 0), outbound(u32::MAX));
        let mut out = Vec::new();
        let all = DataVerdict::Pass { pass: u64::MAX, peek: 0 };
        assert!(p.packet(now, k, O, seg(1, b"abc", true), 1, &mut out).ok().flatten().is_some());
        assert_eq!(p.verdict(now, 1, all, &mut out), Answer::Next(None));
        let fin = Segment { fin: true, ..seg(4, b"def", true) };
        let data = p.packet(now, k, O, fin, 2, &mut out).ok().flatten();
        assert!(data.as_ref().is_some_and(|d| d.closed), "the close is shown: {data:?}");
        assert_eq!(p.verdict(now, 1, all, &mut out), Answer::Next(None));
        assert_eq!(out, vec![(1, Give::Pass), (2, Give::Pass)]);
    }

    #[test]
    fn a_close_mid_peek_is_shown_and_a_reset_ends_the_flow() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 10), outbound(1024));
        let mut out = Vec::new();
        let fin = Segment { fin: true, ..seg(11, b"GET / HTTP/1.0\r\n", false) };
        let data = p.packet(now, k, O, fin, 1, &mut out).ok().flatten();
        let data = data.unwrap_or_else(|| panic!("a close is shown"));
        assert!(data.closed && data.bytes.len() == 16);
        assert_eq!(
            p.verdict(now, 1, DataVerdict::Pass { pass: 16, peek: 1 }, &mut out),
            Answer::Next(None)
        );
        assert_eq!(out, vec![(1, Give::Pass)], "the FIN went with its bytes");

        p.start(now, 2, k, (O, 10), outbound(1024));
        out.clear();
        assert_eq!(p.packet(now, k, O, seg(11, b"abc", false), 1, &mut out).ok(), Some(None));
        let rst = Segment { seq: 14, rst: true, ..Segment::default() };
        assert_eq!(p.packet(now, k, O, rst, 2, &mut out).ok(), Some(None));
        assert_eq!(out, vec![(2, Give::Pass), (1, Give::Discard)]);
        assert!(p.is_empty());
        // The first, replaced by the second on its 5-tuple, and the second, reset: both ended
        // without a verdict (the host forgets both).
        assert_eq!(p.take_gone(), vec![1, 2], "ended without a verdict");
    }

    #[test]
    fn a_question_past_its_deadline_gets_the_policy_and_so_does_every_flow_when_the_provider_goes()
    {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 0), outbound(4));
        let mut out = Vec::new();
        assert!(p.packet(now, k, O, seg(1, b"abcd", false), 1, &mut out).ok().flatten().is_some());
        assert_eq!(p.next_due(), Some(now + SECOND));
        assert!(p.expire(now + SECOND / 2, Decision::Drop, &mut out).is_empty());
        assert_eq!(p.expire(now + SECOND, Decision::Drop, &mut out), vec![1]);
        assert_eq!(out, vec![(1, Give::Drop)]);
        assert_eq!(p.take_resets(), vec![(k, 1)]);
        assert_eq!(p.verdict(now, 1, DataVerdict::Allow, &mut out), Answer::Late);

        let k2 = FlowKey { local: "10.0.0.1:40001".parse().unwrap_or_else(|e| panic!("{e}")), ..k };
        p.start(now, 2, k2, (O, 0), outbound(4));
        p.start(now, 3, k, (O, 0), outbound(4));
        out.clear();
        assert!(p.packet(now, k2, O, seg(1, b"abcd", false), 1, &mut out).ok().flatten().is_some());
        assert!(p.packet(now, k, O, seg(1, b"ab", false), 2, &mut out).ok().flatten().is_none());
        let mut failed = p.fail_all(now, Decision::Allow, &mut out);
        failed.sort_unstable();
        assert_eq!(failed, vec![2, 3]);
        out.sort_unstable_by_key(|(packet, _)| *packet);
        assert_eq!(out, vec![(1, Give::Allow), (2, Give::Allow)]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_provider_that_asks_for_what_it_saw_cannot_loop_and_held_bytes_are_bounded() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 0), outbound(8));
        let mut out = Vec::new();
        assert!(
            p.packet(now, k, O, seg(1, b"12345678", false), 1, &mut out).ok().flatten().is_some()
        );
        // "Pass nothing, peek 4": it saw 8; the next question waits for a ninth byte.
        assert_eq!(
            p.verdict(now, 1, DataVerdict::Pass { pass: 0, peek: 4 }, &mut out),
            Answer::Next(None)
        );
        let data = p.packet(now, k, O, seg(9, b"9", false), 2, &mut out).ok().flatten();
        assert_eq!(data.map(|d| d.bytes), Some(b"123456789".to_vec()));
        // Packets beyond what a flow may hold are discarded; the sender sends them again.
        let big = vec![0; 60_000];
        let mut discarded = 0;
        for i in 0..8u32 {
            out.clear();
            let _ = p.packet(now, k, O, seg(10 + i * 60_000, &big, false), 10 + i, &mut out);
            discarded += out.iter().filter(|(_, g)| *g == Give::Discard).count();
        }
        assert_eq!(discarded, 4, "{MAX_HELD} bytes held at most");
        assert_eq!(p.held(), 9 + 4 * 60_000);
    }

    #[test]
    fn a_new_flow_on_a_peeked_ones_5_tuple_replaces_it_whole() {
        let (now, k) = (t0(), key());
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        p.start(now, 1, k, (O, 0), outbound(1024));
        let mut out = Vec::new();
        let _ = p.packet(now, k, O, seg(1, b"held", false), 1, &mut out);
        assert_eq!(p.held(), 4);
        p.start(now, 2, k, (O, 100), outbound(1024));
        assert_eq!((p.held(), p.take_gone()), (0, vec![1]), "the first is gone, its bytes too");
        assert_eq!(p.verdict(now, 1, DataVerdict::Drop, &mut out), Answer::Late);
        assert!(p.knows(&k) && p.peeked(&k, O), "the second is untouched");
    }

    #[test]
    fn all_flows_together_hold_a_bounded_amount_and_releasing_frees_it() {
        let now = t0();
        let mut p: Peeks<u32> = Peeks::new(SECOND);
        let flows = MAX_HELD_TOTAL / MAX_HELD + 8;
        let chunk = vec![0; 64 * 1024];
        let mut out = Vec::new();
        let (mut held, mut discarded) = (0, 0);
        for i in 0..flows {
            let mut k = key();
            k.local.set_port(u16::try_from(10_000 + i).unwrap_or(0));
            p.start(now, i as u64, k, (O, 0), outbound(MAX_PEEK));
            for j in 0..4u32 {
                out.clear();
                let _ = p.packet(now, k, O, seg(1 + j * 65_536, &chunk, false), j, &mut out);
                match out.as_slice() {
                    [] => held += chunk.len(),
                    [(_, Give::Discard)] => discarded += 1,
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!((held, p.held()), (MAX_HELD_TOTAL, MAX_HELD_TOTAL));
        assert_eq!(discarded, 8 * 4, "the flows past the bound hold nothing");
        // A flow decided lets its bytes go, and the room is there for others.
        out.clear();
        let _ = p.verdict(now, 0, DataVerdict::Allow, &mut out);
        assert_eq!(p.held(), MAX_HELD_TOTAL - 4 * chunk.len());
        let failed = p.fail_all(now, Decision::Drop, &mut out);
        assert_eq!((failed.len(), p.held()), (flows - 1, 0));
    }

    #[test]
    fn shuffled_retransmitted_and_wrapping_segments_are_shown_in_order() {
        // A seeded run: a stream cut into segments of every size, some sent twice, some out of
        // order, with sequence numbers that wrap; a provider that passes half of what it sees.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for round in 0..200u32 {
            let (now, k) = (t0(), key());
            let mut p: Peeks<usize> = Peeks::new(SECOND);
            let isn = u32::MAX - 3000 + round * 7;
            p.start(now, 1, k, (O, isn), outbound(700));
            let len = 3000 + usize::try_from(next(3000)).unwrap_or(0);
            let stream: Vec<u8> = (0..len).map(|_| u8::try_from(next(256)).unwrap_or(0)).collect();
            let mut segs: Vec<(usize, usize)> = Vec::new();
            let mut at = 0;
            while at < len {
                let n = (1 + usize::try_from(next(900)).unwrap_or(0)).min(len - at);
                segs.push((at, at + n));
                at += n;
            }
            let mut order: Vec<usize> = (0..segs.len()).collect();
            for i in 0..order.len() {
                if next(4) == 0 {
                    order.push(i);
                }
                if i + 1 < order.len() && next(5) == 0 {
                    order.swap(i, i + 1);
                }
            }
            let mut out = Vec::new();
            let passed_to = std::cell::Cell::new(0u64);
            let allowed = std::cell::Cell::new(false);
            let shown = std::cell::Cell::new(0);
            let answer = |p: &mut Peeks<usize>, d: Data, out: &mut Vec<(usize, Give)>| {
                let start = usize::try_from(d.offset).unwrap_or(0);
                assert_eq!(d.bytes, stream[start..start + d.bytes.len()], "round {round}");
                shown.set(shown.get() + 1);
                let v = if shown.get() > 6 {
                    allowed.set(true);
                    DataVerdict::Allow
                } else {
                    DataVerdict::Pass { pass: d.bytes.len() as u64 / 2, peek: 700 }
                };
                passed_to.set(d.offset + d.bytes.len() as u64 / 2);
                p.verdict(now, 1, v, out)
            };
            for (n, &i) in order.iter().enumerate() {
                let (from, to) = segs[i];
                let seq = isn.wrapping_add(1).wrapping_add(u32::try_from(from).unwrap_or(0));
                let s = seg(seq, &stream[from..to], n + 1 == order.len() || next(3) == 0);
                let mut data = p.packet(now, k, O, s, i, &mut out).ok().flatten();
                while let Some(d) = data.take() {
                    if let Answer::Next(d) = answer(&mut p, d, &mut out) {
                        data = d;
                    }
                }
                for (i, give) in &out {
                    if *give == Give::Pass {
                        assert!(
                            segs[*i].1 as u64 <= passed_to.get() || allowed.get(),
                            "round {round}: {i} passed early"
                        );
                    }
                }
                out.clear();
            }
            assert!(shown.get() >= 3, "round {round}: shown {} times", shown.get());
        }
    }
}
