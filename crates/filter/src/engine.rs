//! The host's bookkeeping, without I/O: which flows wait for a verdict and which packets
//! wait with them, their deadlines, the failure policy, and recent final decisions for
//! packets that arrive again (a retransmitted SYN, a second datagram queued before the first
//! was decided). Driven by the host with the time passed in, so it is tested in virtual time.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::flow::FlowKey;
use crate::recent::Recent;

/// How long a final decision answers a UDP flow's next datagrams (a dropped flow's are queued
/// again, since a dropped datagram leaves no conntrack entry). Short, because a new socket may
/// reuse the 5-tuple and must be asked about afresh. TCP needs none: an allowed connection's
/// entry keeps its later SYNs out of the queue, and a refused one is reset at once; measured,
/// keeping TCP drops refused 456 of 10,000 new connections whose port had just been freed by
/// such a reset.
pub(crate) const REMEMBER: Duration = Duration::from_secs(2);

/// What happens to a flow when no provider answers for it: it is not running, it crashed,
/// it is stopping, or it missed the flow's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailPolicy {
    /// The flow is allowed.
    Open,
    /// The flow is dropped.
    Closed,
}

impl FailPolicy {
    /// The decision this policy makes.
    pub fn decision(self) -> Decision {
        match self {
            Self::Open => Decision::Allow,
            Self::Closed => Decision::Drop,
        }
    }
}

/// A flow's final decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Let through; the rest of the flow stays in the kernel.
    Allow,
    /// Refused.
    Drop,
}

/// What the engine says about a queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The flow was decided a moment ago: give the packet this verdict now.
    Decided(Decision),
    /// The flow already waits; the packet waits with it.
    Waiting,
    /// A new flow with this id: find its process and decide or ask.
    New(u64),
}

/// Counters since the host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Flows seen.
    pub flows: u64,
    /// Flows allowed (by anyone).
    pub allowed: u64,
    /// Flows dropped (by anyone).
    pub dropped: u64,
    /// Flows decided by the failure policy.
    pub by_policy: u64,
    /// Of those, because their deadline passed.
    pub deadlines_missed: u64,
    /// Verdicts that came after the deadline, or for unknown flows.
    pub late_verdicts: u64,
    /// Packets given a verdict.
    pub packets: u64,
    /// Flows whose data a provider filtered (each is also counted allowed or dropped once its
    /// data verdict is final).
    pub peeked: u64,
    /// Bytes shown to the provider.
    pub bytes_peeked: u64,
    /// Closed flows reported to the provider.
    pub closes_reported: u64,
    /// Times the kernel's close notifications overflowed and some closes went unreported.
    pub closes_lost: u64,
    /// DNS answers to this host's queries read for the names of the addresses they give.
    pub dns_answers: u64,
    /// Addresses named by those answers now (each kept an hour).
    pub dns_named: u64,
}

#[derive(Debug)]
struct Pending<P> {
    id: u64,
    packets: Vec<P>,
    due: Instant,
}

/// The bookkeeping; `P` is whatever the host needs to give a packet its verdict.
#[derive(Debug)]
pub(crate) struct Engine<P> {
    policy: FailPolicy,
    deadline: Duration,
    next_id: u64,
    pending: HashMap<FlowKey, Pending<P>>,
    /// The waiting flows by deadline: the next one and the passed ones without a walk over
    /// every waiting flow.
    dues: BTreeSet<(Instant, u64)>,
    ids: HashMap<u64, FlowKey>,
    decided: Recent<FlowKey, Decision>,
    /// Allowed UDP flows by local port, until their socket closes (a new socket on the same
    /// ports must be asked afresh, not pass under the old flow's conntrack entry).
    udp_allowed: HashMap<u16, Vec<FlowKey>>,
    udp_order: VecDeque<u16>,
    stats: Stats,
}

/// At most this many local ports' allowed UDP flows are remembered for their socket's close.
const MAX_UDP_PORTS: usize = 65_536;

impl<P> Engine<P> {
    /// An engine whose flows wait at most `deadline` for a verdict.
    pub(crate) fn new(policy: FailPolicy, deadline: Duration) -> Self {
        Self {
            policy,
            deadline,
            next_id: 1,
            pending: HashMap::new(),
            dues: BTreeSet::new(),
            ids: HashMap::new(),
            decided: Recent::new(REMEMBER),
            udp_allowed: HashMap::new(),
            udp_order: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// The failure policy.
    pub(crate) fn policy(&self) -> FailPolicy {
        self.policy
    }

    /// The counters.
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// How many flows wait for a verdict.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// A packet of flow `key` was queued. For [`Seen::Decided`] the packet is handed back to
    /// be given its verdict; otherwise the engine keeps it until the flow is decided.
    pub(crate) fn packet(&mut self, now: Instant, key: FlowKey, packet: P) -> (Seen, Option<P>) {
        self.decided.expire(now);
        if let Some(d) = self.decided.get(&key) {
            self.stats.packets += 1;
            return (Seen::Decided(*d), Some(packet));
        }
        if let Some(p) = self.pending.get_mut(&key) {
            p.packets.push(packet);
            return (Seen::Waiting, None);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.stats.flows += 1;
        let due = now + self.deadline;
        self.pending.insert(key, Pending { id, packets: vec![packet], due });
        self.dues.insert((due, id));
        self.ids.insert(id, key);
        (Seen::New(id), None)
    }

    /// Decides flow `id`; returns the packets that waited for it, to be given `decision`.
    /// A flow that is no longer waiting (decided by its deadline, or unknown) returns nothing
    /// and counts as a late verdict.
    pub(crate) fn decide(&mut self, now: Instant, id: u64, decision: Decision) -> Vec<P> {
        let Some((key, packets)) = self.take(id) else { return Vec::new() };
        match decision {
            Decision::Allow => self.stats.allowed += 1,
            Decision::Drop => self.stats.dropped += 1,
        }
        if key.transport == crate::flow::Transport::Udp {
            self.decided.insert(now, key, decision);
            if decision == Decision::Allow {
                self.allowed_udp(key);
            }
        }
        packets
    }

    /// Flow `id`'s data is to be filtered: returns the packets that waited for it (its SYN),
    /// to go out while its bytes are held. Like [`Engine::decide`] otherwise; the flow's final
    /// decision is counted with [`Engine::count`].
    pub(crate) fn peek(&mut self, id: u64) -> Vec<P> {
        let Some((_, packets)) = self.take(id) else { return Vec::new() };
        self.stats.peeked += 1;
        packets
    }

    /// Waiting flow `id` leaves the engine: its key and packets (counted as given a verdict).
    /// An id that no longer waits is a late verdict.
    fn take(&mut self, id: u64) -> Option<(FlowKey, Vec<P>)> {
        let Some(key) = self.ids.remove(&id) else {
            self.stats.late_verdicts += 1;
            return None;
        };
        let pending = self.pending.remove(&key)?;
        self.dues.remove(&(pending.due, pending.id));
        self.stats.packets += pending.packets.len() as u64;
        Some((key, pending.packets))
    }

    /// Remembers allowed UDP flow `key` by its local port, for its socket's close.
    fn allowed_udp(&mut self, key: FlowKey) {
        let port = key.local.port();
        let flows = self.udp_allowed.entry(port).or_default();
        if flows.is_empty() {
            self.udp_order.push_back(port);
        }
        if !flows.contains(&key) {
            // A socket that talks to many peers: its oldest flows are forgotten.
            if flows.len() >= 1024 {
                flows.remove(0);
            }
            flows.push(key);
        }
        if self.udp_order.len() > MAX_UDP_PORTS
            && let Some(old) = self.udp_order.pop_front()
        {
            self.udp_allowed.remove(&old);
        }
    }

    /// Counts the final decision of a peeked flow, and whether the failure policy made it;
    /// `late` counts a data verdict for a flow no longer waiting.
    pub(crate) fn count(&mut self, decision: Option<Decision>, by_policy: bool) {
        match decision {
            Some(Decision::Allow) => self.stats.allowed += 1,
            Some(Decision::Drop) => self.stats.dropped += 1,
            None => self.stats.late_verdicts += 1,
        }
        if by_policy {
            self.stats.by_policy += 1;
        }
    }

    /// Sets the counters the engine does not keep: bytes shown to the provider, closes
    /// reported and lost.
    pub(crate) fn set_counts(&mut self, bytes_peeked: u64, closes_reported: u64, closes_lost: u64) {
        self.stats.bytes_peeked = bytes_peeked;
        self.stats.closes_reported = closes_reported;
        self.stats.closes_lost = closes_lost;
    }

    /// The DNS answers read so far, and how many addresses they name now.
    pub(crate) fn set_names(&mut self, answers: u64, named: u64) {
        self.stats.dns_answers = answers;
        self.stats.dns_named = named;
    }

    /// The UDP socket at `local` was closed: the allowed flows it made (any address when
    /// `local`'s is unspecified), which are forgotten here and whose conntrack entries are to
    /// be deleted, so that a new socket on the same ports is asked about afresh.
    pub(crate) fn udp_closed(&mut self, local: std::net::SocketAddr) -> Vec<FlowKey> {
        let Some(flows) = self.udp_allowed.get_mut(&local.port()) else { return Vec::new() };
        let (gone, kept): (Vec<FlowKey>, Vec<FlowKey>) = flows
            .drain(..)
            .partition(|k| local.ip().is_unspecified() || k.local.ip() == local.ip());
        *flows = kept;
        if flows.is_empty() {
            self.udp_allowed.remove(&local.port());
        }
        for k in &gone {
            self.decided.remove(k);
        }
        gone
    }

    /// Decides flow `id` by the failure policy.
    pub(crate) fn fail(&mut self, now: Instant, id: u64) -> Vec<P> {
        self.stats.by_policy += 1;
        self.decide(now, id, self.policy.decision())
    }

    /// Flows whose deadline has passed, decided by the failure policy: their ids and packets.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(u64, Vec<P>)> {
        let due: Vec<u64> =
            self.dues.iter().take_while(|(due, _)| *due <= now).map(|(_, id)| *id).collect();
        due.into_iter()
            .map(|id| {
                self.stats.deadlines_missed += 1;
                (id, self.fail(now, id))
            })
            .collect()
    }

    /// Every waiting flow decided by the failure policy (the provider is gone).
    pub(crate) fn fail_all(&mut self, now: Instant) -> Vec<(u64, Vec<P>)> {
        let ids: Vec<u64> = self.pending.values().map(|p| p.id).collect();
        ids.into_iter().map(|id| (id, self.fail(now, id))).collect()
    }

    /// When the next deadline falls.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.dues.first().map(|(due, _)| *due)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "a starting instant for virtual time")]
mod tests {
    use super::*;
    use crate::flow::Transport;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            transport: Transport::Udp,
            local: format!("10.0.0.1:{port}").parse().unwrap_or_else(|e| panic!("{e}")),
            remote: "10.0.0.2:80".parse().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods, reason = "a starting instant for virtual time")]
    fn a_closed_udp_socket_s_allowed_flows_are_handed_back_and_forgotten() {
        let t0 = Instant::now();
        let mut e: Engine<u32> = Engine::new(FailPolicy::Closed, Duration::from_secs(2));
        let other_peer =
            FlowKey { remote: "10.0.0.3:53".parse().unwrap_or_else(|e| panic!("{e}")), ..key(5) };
        for (k, d) in
            [(key(5), Decision::Allow), (other_peer, Decision::Allow), (key(6), Decision::Drop)]
        {
            let Seen::New(id) = e.packet(t0, k, 1).0 else { panic!("new") };
            e.decide(t0, id, d);
        }
        // Not this address's socket.
        assert!(e.udp_closed("10.9.9.9:5".parse().unwrap_or_else(|e| panic!("{e}"))).is_empty());
        // A socket bound to every address, on port 5: both its allowed flows.
        let gone = e.udp_closed("0.0.0.0:5".parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(gone, [key(5), other_peer]);
        assert_eq!(e.packet(t0, key(5), 2).0, Seen::New(4), "asked afresh, not replayed");
        assert!(e.udp_closed(key(6).local).is_empty(), "dropped flows have no entry to delete");
    }

    #[test]
    fn packets_wait_with_their_flow_and_go_with_its_verdict() {
        let t0 = Instant::now();
        let mut e: Engine<u32> = Engine::new(FailPolicy::Closed, Duration::from_secs(2));
        let (seen, back) = e.packet(t0, key(1), 10);
        assert_eq!((seen, back), (Seen::New(1), None));
        assert_eq!(e.packet(t0, key(1), 11), (Seen::Waiting, None), "a second datagram");
        assert_eq!(e.decide(t0, 1, Decision::Allow), [10, 11]);
        assert_eq!(e.packet(t0, key(1), 12), (Seen::Decided(Decision::Allow), Some(12)));
        assert!(e.decide(t0, 1, Decision::Drop).is_empty(), "a second verdict changes nothing");
        assert_eq!(e.stats().late_verdicts, 1);
        // Forgotten after REMEMBER: the next packet is a new flow.
        assert_eq!(e.packet(t0 + REMEMBER, key(1), 13).0, Seen::New(2));
        // A TCP decision is never replayed: the next SYN on that 5-tuple is a new connection.
        let tcp = FlowKey { transport: Transport::Tcp, ..key(2) };
        assert_eq!(e.packet(t0, tcp, 20).0, Seen::New(3));
        assert_eq!(e.decide(t0, 3, Decision::Drop), [20]);
        assert_eq!(e.packet(t0, tcp, 21).0, Seen::New(4));
    }

    #[test]
    fn deadlines_and_a_lost_provider_apply_the_policy() {
        let t0 = Instant::now();
        let mut e: Engine<u32> = Engine::new(FailPolicy::Open, Duration::from_secs(2));
        let _ = e.packet(t0, key(1), 1);
        let _ = e.packet(t0 + Duration::from_secs(1), key(2), 2);
        assert_eq!(e.next_due(), Some(t0 + Duration::from_secs(2)));
        assert!(e.expire(t0 + Duration::from_millis(1999)).is_empty());
        assert_eq!(e.expire(t0 + Duration::from_secs(2)), [(1, vec![1])]);
        assert_eq!(
            e.packet(t0 + Duration::from_secs(2), key(1), 3).0,
            Seen::Decided(Decision::Allow)
        );
        assert!(e.decide(t0 + Duration::from_secs(2), 1, Decision::Drop).is_empty(), "too late");
        assert_eq!(e.fail_all(t0 + Duration::from_secs(2)), [(2, vec![2])]);
        let s = e.stats();
        assert_eq!(
            (s.flows, s.allowed, s.by_policy, s.deadlines_missed, s.late_verdicts),
            (2, 2, 2, 1, 1)
        );
        assert_eq!(e.waiting(), 0);
        assert_eq!(e.next_due(), None);
    }

    #[test]
    fn thousands_of_waiting_flows_expire_in_deadline_order() {
        let t0 = Instant::now();
        let mut e: Engine<u32> = Engine::new(FailPolicy::Closed, Duration::from_secs(2));
        for i in 0..10_000u16 {
            let _ = e.packet(t0 + Duration::from_millis(u64::from(i)), key(i), u32::from(i));
        }
        // Decided ones leave the schedule: flow 1 (port 0) is no longer due first.
        assert_eq!(e.decide(t0, 1, Decision::Allow), [0]);
        assert_eq!(e.next_due(), Some(t0 + Duration::from_millis(2_001)));
        let expired = e.expire(t0 + Duration::from_millis(2_100));
        let ids: Vec<u64> = expired.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, (2..=101).collect::<Vec<u64>>());
        assert_eq!(e.waiting(), 10_000 - 101);
        assert_eq!(e.next_due(), Some(t0 + Duration::from_millis(2_101)));
        assert_eq!(e.fail_all(t0).len(), 10_000 - 101);
        assert_eq!(e.next_due(), None);
    }
}
