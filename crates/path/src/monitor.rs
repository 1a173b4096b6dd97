//! The path monitor as a machine: changes in, snapshot requests out, path updates out.
//!
//! Call order for a driver:
//! 1. Drain [`Monitor::poll_action`]; for [`Action::TakeSnapshot`], read a full snapshot and
//!    hand it to [`Monitor::handle_snapshot`]. (A new monitor asks for one at once.)
//! 2. Feed every kernel notification to [`Monitor::handle_change`], and a lost-notification
//!    overflow (ENOBUFS) to [`Monitor::handle_overflow`].
//! 3. Sleep until [`Monitor::poll_timeout`] and then call [`Monitor::handle_timeout`].
//! 4. Drain [`Monitor::poll_update`] after each step.
//!
//! Updates are deduplicated: a burst that ends where it started reports nothing.

use std::collections::VecDeque;
use std::time::Instant;

use crate::cost::CostReadings;
use crate::debounce::{self, Debounce, Emit};
use crate::evaluate::{Conditions, Path, Status, evaluate};
use crate::interface::Snapshot;

/// What the driver must do for the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read a snapshot and hand it to `handle_snapshot` (or `handle_snapshot_failed`).
    TakeSnapshot,
}

/// Why an update was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The first evaluation.
    Initial,
    /// The first change after a quiet period.
    Change,
    /// The merged end of a burst.
    Settled,
}

/// A new path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The path now.
    pub path: Path,
    /// Why this update was emitted.
    pub cause: Cause,
}

/// When to read the kernel: the debounce machine over change notifications, turned into
/// snapshot requests that each carry their cause. This is what the path service's thread
/// runs; [`Monitor`] adds the evaluation under conditions.
///
/// Call order: drain [`Sampler::poll_action`] and read a snapshot for each
/// [`Action::TakeSnapshot`]; hand a successful one to [`Sampler::handle_snapshot`], which says
/// why it was wanted, or report [`Sampler::handle_snapshot_failed`]; feed notifications,
/// overflows and timeouts as for [`Monitor`].
#[derive(Debug)]
pub struct Sampler {
    debounce: Debounce,
    /// Why the next snapshot is wanted (the latest emit's cause).
    pending: Option<Cause>,
    /// A `TakeSnapshot` was issued and not yet answered.
    outstanding: bool,
    actions: VecDeque<Action>,
    overflows: u64,
}

impl Sampler {
    /// A sampler that asks for its initial snapshot at once.
    pub fn new(debounce: debounce::Config) -> Self {
        Self {
            debounce: Debounce::new(debounce),
            pending: Some(Cause::Initial),
            outstanding: true,
            actions: VecDeque::from([Action::TakeSnapshot]),
            overflows: 0,
        }
    }

    /// The kernel said something changed.
    pub fn handle_change(&mut self, now: Instant) {
        self.debounce.handle_change(now);
        self.pump();
    }

    /// Notifications were lost: the next snapshot resynchronises everything.
    pub fn handle_overflow(&mut self, now: Instant) {
        self.overflows += 1;
        self.handle_change(now);
    }

    /// Time has reached [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.debounce.handle_timeout(now);
        self.pump();
    }

    /// A snapshot the sampler asked for was read: why it was wanted (`None` when it no longer
    /// is).
    pub fn handle_snapshot(&mut self) -> Option<Cause> {
        self.outstanding = false;
        self.pending.take()
    }

    /// The snapshot could not be read consistently (the kernel kept changing it). That is
    /// itself a change: the sampler asks again once the burst has settled.
    pub fn handle_snapshot_failed(&mut self, now: Instant) {
        self.outstanding = false;
        self.debounce.handle_change(now);
        self.pump();
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.debounce.poll_timeout()
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// How many times notifications overflowed and were resynchronised.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    fn pump(&mut self) {
        if let Some(emit) = self.debounce.poll_emit() {
            let cause = match emit {
                Emit::Leading => Cause::Change,
                Emit::Trailing => Cause::Settled,
            };
            // The initial report stays "initial" even if it had to be retried.
            if self.pending != Some(Cause::Initial) {
                self.pending = Some(cause);
            }
            if !self.outstanding {
                self.outstanding = true;
                self.actions.push_back(Action::TakeSnapshot);
            }
        }
    }
}

/// The monitor machine: a [`Sampler`] whose snapshots are evaluated under conditions and
/// reported as deduplicated path updates.
#[derive(Debug)]
pub struct Monitor {
    sampler: Sampler,
    conditions: Conditions,
    last: Option<Path>,
    updates: VecDeque<Update>,
}

impl Monitor {
    /// A machine evaluating paths under `conditions`, debounced as `debounce` says.
    pub fn new(conditions: Conditions, debounce: debounce::Config) -> Self {
        Self { sampler: Sampler::new(debounce), conditions, last: None, updates: VecDeque::new() }
    }

    /// The kernel said something changed.
    pub fn handle_change(&mut self, now: Instant) {
        self.sampler.handle_change(now);
    }

    /// Notifications were lost: the next snapshot resynchronises everything.
    pub fn handle_overflow(&mut self, now: Instant) {
        self.sampler.handle_overflow(now);
    }

    /// A deadline from `poll_timeout` passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sampler.handle_timeout(now);
    }

    /// A snapshot the machine asked for.
    pub fn handle_snapshot(&mut self, snapshot: &Snapshot, costs: &CostReadings) {
        let Some(cause) = self.sampler.handle_snapshot() else { return };
        let path = evaluate(snapshot, &self.conditions, costs);
        if let Some(update) = follow(&mut self.last, path, cause) {
            self.updates.push_back(update);
        }
    }

    /// The snapshot could not be read consistently (the kernel kept changing it). That is
    /// itself a change: the machine asks again once the burst has settled.
    pub fn handle_snapshot_failed(&mut self, now: Instant) {
        self.sampler.handle_snapshot_failed(now);
    }

    /// When the machine next needs `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sampler.poll_timeout()
    }

    /// The next thing the driver must do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.sampler.poll_action()
    }

    /// The next update, in order.
    pub fn poll_update(&mut self) -> Option<Update> {
        self.updates.pop_front()
    }

    /// How many times notifications overflowed and were resynchronised.
    pub fn overflows(&self) -> u64 {
        self.sampler.overflows()
    }

    /// The last path reported.
    pub fn path(&self) -> Option<&Path> {
        self.last.as_ref()
    }
}

/// The update `path` makes after `last` (which it becomes), or `None` when nothing changed;
/// flags a cheaper interface taking over as a better path.
pub(crate) fn follow(last: &mut Option<Path>, mut path: Path, cause: Cause) -> Option<Update> {
    if let Some(last) = last.as_ref() {
        let mut same = path.clone();
        same.better_path_available = last.better_path_available;
        if same == *last {
            return None;
        }
        path.better_path_available = cheaper_took_over(last, &path);
    }
    *last = Some(path.clone());
    Some(Update { path, cause })
}

/// A cheaper interface is now primary where an expensive or constrained one was.
fn cheaper_took_over(old: &Path, new: &Path) -> bool {
    let (Some(o), Some(n)) = (old.primary(), new.primary()) else { return false };
    old.status == Status::Satisfied
        && new.status == Status::Satisfied
        && o.interface.index != n.interface.index
        && ((o.expensive == Some(true) && n.expensive != Some(true))
            || (o.constrained == Some(true) && n.constrained != Some(true)))
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests read the clock once for a virtual-time origin")]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cost::NameLists;
    use crate::evaluate::Reason;
    use crate::evaluate::tests::{default_route, iface, two_paths, with_addr};
    use crate::interface::InterfaceType;

    /// Drives the machine the way the driver does, with snapshots from a closure.
    struct Harness {
        m: Monitor,
        t0: Instant,
        now: Instant,
        world: Snapshot,
        costs: CostReadings,
        snapshots: usize,
        log: Vec<(u64, Update)>,
    }

    impl Harness {
        fn new(world: Snapshot, conditions: Conditions) -> Self {
            let t0 = Instant::now();
            let mut h = Self {
                m: Monitor::new(conditions, debounce::Config::default()),
                t0,
                now: t0,
                world,
                costs: CostReadings::default(),
                snapshots: 0,
                log: Vec::new(),
            };
            h.pump();
            h
        }

        fn pump(&mut self) {
            while let Some(Action::TakeSnapshot) = self.m.poll_action() {
                self.snapshots += 1;
                self.m.handle_snapshot(&self.world, &self.costs);
            }
            while let Some(u) = self.m.poll_update() {
                let ms = u64::try_from((self.now - self.t0).as_millis()).unwrap();
                self.log.push((ms, u));
            }
        }

        /// Advances virtual time to `ms`, firing deadlines on the way.
        fn advance(&mut self, ms: u64) {
            let target = self.t0 + Duration::from_millis(ms);
            while let Some(t) = self.m.poll_timeout().filter(|t| *t <= target) {
                self.now = t;
                self.m.handle_timeout(t);
                self.pump();
            }
            self.now = target;
        }

        fn change(&mut self, ms: u64, f: impl FnOnce(&mut Snapshot)) {
            self.advance(ms);
            f(&mut self.world);
            self.m.handle_change(self.now);
            self.pump();
        }
    }

    /// The sampler alone, as the path service's thread runs it: each snapshot it asks for
    /// carries its cause, and a change while nothing is due asks for one snapshot, not two.
    #[test]
    #[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
    fn the_sampler_asks_for_snapshots_with_their_causes() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Sampler::new(debounce::Config::default());
        assert_eq!(s.poll_action(), Some(Action::TakeSnapshot));
        assert_eq!(s.handle_snapshot(), Some(Cause::Initial));
        assert_eq!(s.handle_snapshot(), None, "no snapshot is wanted now");
        s.handle_change(ms(5_000));
        assert_eq!(s.poll_action(), Some(Action::TakeSnapshot));
        assert_eq!(s.handle_snapshot(), Some(Cause::Change));
        s.handle_change(ms(5_050));
        s.handle_overflow(ms(5_100));
        assert_eq!(s.poll_action(), None, "merged into the trailing emit");
        let due = s.poll_timeout().unwrap();
        s.handle_timeout(due);
        assert_eq!(s.poll_action(), Some(Action::TakeSnapshot));
        assert_eq!(s.poll_action(), None);
        assert_eq!((s.handle_snapshot(), s.overflows()), (Some(Cause::Settled), 1));
    }

    #[test]
    fn initial_update_then_carrier_loss_reported_at_once() {
        let mut h = Harness::new(two_paths(), Conditions::default());
        assert_eq!(h.log.len(), 1);
        assert_eq!(h.log[0].1.cause, Cause::Initial);
        h.change(10_000, |w| {
            w.interfaces[1].carrier = false;
            w.interfaces[2].carrier = false;
        });
        let (at, u) = h.log.last().unwrap();
        assert_eq!((*at, u.cause, u.path.reason), (10_000, Cause::Change, Some(Reason::NoCarrier)));
    }

    #[test]
    fn flaps_merge_into_a_trailing_update_with_the_final_state() {
        let mut h = Harness::new(two_paths(), Conditions::default());
        for i in 0..20u64 {
            h.change(1_000 + i * 20, |w| w.interfaces[1].carrier = i % 2 == 1);
        }
        h.advance(5_000);
        // Initial, the leading change, and one settled update with eth0's final carrier (up).
        assert_eq!(
            h.log.len(),
            3,
            "{:?}",
            h.log.iter().map(|l| (l.0, l.1.cause)).collect::<Vec<_>>()
        );
        let last = &h.log[2];
        assert_eq!((last.0, last.1.cause), (1_630, Cause::Settled));
        assert_eq!(last.1.path.primary().unwrap().interface.name, "eth0");
        assert!(h.snapshots <= 3, "took {} snapshots", h.snapshots);
    }

    #[test]
    fn a_burst_that_ends_where_it_began_reports_nothing_more() {
        let mut h = Harness::new(two_paths(), Conditions::default());
        h.change(1_000, |w| w.interfaces[1].carrier = false);
        h.change(1_010, |w| w.interfaces[1].carrier = true);
        h.advance(3_000);
        let causes: Vec<Cause> = h.log.iter().map(|l| l.1.cause).collect();
        assert_eq!(causes, [Cause::Initial, Cause::Change, Cause::Settled]);
        h.change(5_000, |_| {});
        h.advance(6_000);
        assert_eq!(h.log.len(), 3, "an unchanged path is not reported again");
    }

    #[test]
    fn overflow_resynchronises_from_a_fresh_snapshot() {
        let mut h = Harness::new(two_paths(), Conditions::default());
        h.advance(1_000);
        h.world.interfaces[1] = with_addr(h.world.interfaces[1].clone(), "192.0.2.99", 24);
        h.m.handle_overflow(h.now);
        h.pump();
        assert_eq!(h.m.overflows(), 1);
        let addrs = &h.log.last().unwrap().1.path.interfaces[0].interface.addresses;
        assert_eq!(addrs.len(), 2);
    }

    #[test]
    fn expensive_path_then_cheaper_default_signals_better_path() {
        // Only cellular at first; prohibiting expensive leaves the caller waiting.
        let mut world = two_paths();
        world.interfaces.remove(1);
        world.routes.remove(0);
        let mut free = Harness::new(world.clone(), Conditions::default());
        let mut strict =
            Harness::new(world, Conditions { prohibit_expensive: true, ..Conditions::default() });
        assert_eq!(free.log[0].1.path.expensive, Some(true));
        assert_eq!(strict.log[0].1.path.reason, Some(Reason::ExpensiveProhibited));

        for h in [&mut free, &mut strict] {
            h.change(2_000, |w| {
                w.interfaces.push(with_addr(
                    iface(4, "eth1", InterfaceType::Wired),
                    "203.0.113.5",
                    24,
                ));
                w.routes.push(default_route("203.0.113.1", 4, 900));
            });
        }
        let u = &free.log.last().unwrap().1;
        assert!(u.path.better_path_available);
        assert_eq!(
            (u.path.primary().unwrap().interface.name.as_str(), u.path.expensive),
            ("eth1", None)
        );
        let u = &strict.log.last().unwrap().1;
        assert_eq!((u.path.status, u.cause), (Status::Satisfied, Cause::Change));
        assert_eq!(u.path.interfaces.len(), 1);
    }

    #[test]
    fn a_failed_snapshot_is_retried_after_the_burst() {
        let mut h = Harness::new(two_paths(), Conditions::default());
        h.advance(1_000);
        h.m.handle_change(h.now);
        assert_eq!(h.m.poll_action(), Some(Action::TakeSnapshot));
        h.m.handle_snapshot_failed(h.now); // interrupted dump
        assert_eq!(h.m.poll_action(), None, "no retry inside the burst");
        h.world.interfaces[1].carrier = false;
        h.advance(1_300);
        let (at, u) = h.log.last().unwrap();
        assert_eq!(
            (*at, u.cause, u.path.primary().unwrap().interface.name.as_str()),
            (1_250, Cause::Settled, "wwan0")
        );
    }

    #[test]
    fn env_override_marks_expensive_and_others_known_cheap() {
        let mut h = Harness::new(two_paths(), Conditions::default());
        h.costs.environment = NameLists { expensive: Some(vec!["eth0".into()]), constrained: None };
        h.change(1_000, |_| {});
        let p = &h.log.last().unwrap().1.path;
        assert_eq!(p.primary().unwrap().interface.name, "wwan0");
        assert_eq!(p.interfaces[1].expensive, Some(true));
    }
}
