//! The establishment policy as a machine: what a connection does before its race, decided
//! from the path to its destination and its parameters, with `now` an argument.
//!
//! - While the path is not satisfied it waits, saying why once per change of reason, and gives
//!   up at its deadline with the last reason ([`Action::Fail`]).
//! - A path that cannot be read is no reason to refuse: the race goes ahead unbound.
//! - An IPv6-only path that leads beyond the link asks for the network's NAT64 prefix first
//!   (RFC 8305 §7), so IPv4 literals and A-only names are reached through it.
//! - When the conditions ruled an interface out, every attempt is bound to the path's
//!   preferred interface: the kernel routes by destination alone and could pick the excluded
//!   one.
//! - A local address decides the family: the other family cannot be reached from it.
//!
//! Call order for a driver: after [`Establish::new`], drain [`Establish::poll_action`] and carry
//! each action out; feed every path read for the destination to [`Establish::handle_path`]
//! (`None` when it could not be read), the NAT64 answer to [`Establish::handle_nat64`], and call
//! [`Establish::handle_timeout`] once [`Establish::poll_timeout`] has passed; drain again after
//! each. The machine ends with exactly one [`Action::Race`] or [`Action::Fail`].

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use nw_path::{Path, Reason, Status};

use serde::Serialize;

use crate::happy_eyeballs::FamilyPreference;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Say that the connection waits, and why (once per change of reason).
    Wait {
        /// Why the path is not usable, as nw-path reads it.
        reason: Option<Reason>,
    },
    /// Ask the resolver for the NAT64 prefix and hand the answer to
    /// [`Establish::handle_nat64`].
    DiscoverNat64,
    /// Start the race as planned.
    Race(Plan),
    /// Give up: no usable path came before the deadline.
    Fail {
        /// The last reason the path gave.
        reason: Option<Reason>,
        /// How long it waited.
        waited: Duration,
        /// Each path status it saw while waiting.
        steps: Vec<PathStep>,
    },
}

/// How the race is to run, as the path and the parameters decide.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Plan {
    /// Bind every attempt to this interface (`SO_BINDTODEVICE`).
    pub interface: Option<String>,
    /// Reach IPv4 destinations through this NAT64 prefix.
    pub nat64: Option<Ipv6Addr>,
    /// The family the local address allows, overriding the race's preference.
    pub family: Option<FamilyPreference>,
    /// How long it waited for a path.
    pub waited: Duration,
    /// Each path status it saw while waiting (empty when it did not wait).
    pub steps: Vec<PathStep>,
}

/// What the connection's parameters ask of its establishment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Options {
    /// Consult the path and wait for it; `false` races at once.
    pub wait: bool,
    /// The longest it may wait (the connection's whole timeout).
    pub limit: Duration,
    /// The local address the attempts are bound to, if any.
    pub local: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first path, or for a usable one.
    Waiting,
    /// Waiting for the NAT64 answer; the path's plan so far.
    Discovering(Plan),
    Done,
}

/// The establishment machine. See the [module docs](self) for the rules and call order.
#[derive(Debug)]
pub(crate) struct Establish {
    options: Options,
    start: Instant,
    deadline: Instant,
    phase: Phase,
    steps: Vec<PathStep>,
    actions: VecDeque<Action>,
}

impl Establish {
    /// A connection starting to establish at `now`.
    pub(crate) fn new(options: Options, now: Instant) -> Self {
        let limit = options.limit.min(crate::happy_eyeballs::LONGEST);
        let mut machine = Self {
            options,
            start: now,
            deadline: now + limit,
            phase: Phase::Waiting,
            steps: Vec::new(),
            actions: VecDeque::new(),
        };
        if !options.wait {
            machine.race(Plan::default(), now);
        }
        machine
    }

    /// A path read for the destination, or `None` when it could not be read.
    pub(crate) fn handle_path(&mut self, path: Option<&Path>, now: Instant) {
        if self.phase != Phase::Waiting {
            return;
        }
        let Some(path) = path else {
            // Unknown: the race finds out what works.
            self.race(Plan::default(), now);
            return;
        };
        let at = now.saturating_duration_since(self.start);
        let step = PathStep { at, status: path.status, reason: path.reason };
        if path.status == Status::Satisfied {
            if !self.steps.is_empty() {
                self.steps.push(step);
            }
            let plan = Plan { interface: binding(path), ..Plan::default() };
            if wants_nat64(path) {
                self.phase = Phase::Discovering(plan);
                self.actions.push_back(Action::DiscoverNat64);
            } else {
                self.race(plan, now);
            }
            return;
        }
        let last = self.steps.last().map(|s| (s.status, s.reason));
        if last != Some((path.status, path.reason)) {
            self.steps.push(step);
            self.actions.push_back(Action::Wait { reason: path.reason });
        }
    }

    /// The NAT64 prefix the resolver found, if any.
    pub(crate) fn handle_nat64(&mut self, prefix: Option<Ipv6Addr>, now: Instant) {
        if let Phase::Discovering(plan) = &self.phase {
            let plan = Plan { nat64: prefix, ..plan.clone() };
            self.race(plan, now);
        }
    }

    /// Time has reached [`poll_timeout`](Self::poll_timeout).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.phase == Phase::Waiting && now >= self.deadline {
            self.phase = Phase::Done;
            let reason = self.steps.last().and_then(|s| s.reason);
            let steps = std::mem::take(&mut self.steps);
            let waited = now.saturating_duration_since(self.start);
            self.actions.push_back(Action::Fail { reason, waited, steps });
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout): the deadline, while waiting.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        (self.phase == Phase::Waiting).then_some(self.deadline)
    }

    /// The next thing to do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn race(&mut self, mut plan: Plan, now: Instant) {
        self.phase = Phase::Done;
        plan.family = family_for(self.options.local);
        if !self.steps.is_empty() {
            plan.waited = now.saturating_duration_since(self.start);
        }
        plan.steps = std::mem::take(&mut self.steps);
        self.actions.push_back(Action::Race(plan));
    }
}

/// The interface every attempt is bound to: the path's preferred one, when the conditions
/// excluded another that the kernel might otherwise route over.
pub(crate) fn binding(path: &Path) -> Option<String> {
    let excluded = path.unavailable.iter().any(|u| u.excluded_by.is_some());
    excluded.then(|| path.primary().map(|i| i.interface.name.clone())).flatten()
}

/// Whether to look for a NAT64 prefix: an IPv6-only path that leads beyond the link (an
/// on-link host needs no translator).
pub(crate) fn wants_nat64(path: &Path) -> bool {
    path.supports_ipv6 && !path.supports_ipv4 && !path.gateways.is_empty()
}

/// The family a local address allows.
pub(crate) fn family_for(local: Option<IpAddr>) -> Option<FamilyPreference> {
    match local {
        Some(IpAddr::V4(_)) => Some(FamilyPreference::Ipv4Only),
        Some(IpAddr::V6(_)) => Some(FamilyPreference::Ipv6Only),
        None => None,
    }
}

/// The connection's view of the path at one moment: `waiting` with a reason, or `satisfied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStep {
    /// Time since the connection started.
    #[serde(serialize_with = "crate::happy_eyeballs::millis")]
    pub at: Duration,
    /// The path's status then.
    pub status: Status,
    /// Why it was not satisfied, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

#[cfg(test)]
mod tests;
