//! Debouncing change notifications without delaying the first one.
//!
//! Rules (tested in virtual time below):
//! - The first change after a quiet period is emitted at once ([`Emit::Leading`]): a carrier
//!   loss after minutes of calm is news now, not in 250 ms.
//! - Changes that follow within the window merge into one [`Emit::Trailing`], emitted when the
//!   window has passed since the *last* change (each change restarts it), or at the latest
//!   `max_hold` after the first merged change, so an endless stream cannot starve updates.
//! - The window after a trailing emit is also not quiet: a change inside it merges again.
//!
//! The emit means "something changed": the caller takes a fresh snapshot, so the trailing
//! emit always carries the final state.
//!
//! Call order: `handle_change` for each change and `handle_timeout` once `poll_timeout`'s
//! deadline has passed, then drain `poll_emit`.

use std::time::{Duration, Instant};

/// Debounce settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Quiet time that ends a burst; restarted by each change.
    pub window: Duration,
    /// The longest a merged change may wait.
    pub max_hold: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self { window: Duration::from_millis(250), max_hold: Duration::from_secs(1) }
    }
}

/// What to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// The first change after a quiet period.
    Leading,
    /// The merged changes of a burst.
    Trailing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Quiet,
    /// Inside a window: `pending_since` is the first change not yet emitted.
    Holding {
        deadline: Instant,
        pending_since: Option<Instant>,
    },
}

/// The debounce machine.
#[derive(Debug)]
pub struct Debounce {
    config: Config,
    state: State,
    emit: Option<Emit>,
}

impl Debounce {
    /// A quiet machine with these windows.
    pub fn new(config: Config) -> Self {
        Self { config, state: State::Quiet, emit: None }
    }

    /// Something changed at `now`.
    pub fn handle_change(&mut self, now: Instant) {
        self.state = match self.state {
            State::Quiet => {
                self.emit = Some(Emit::Leading);
                State::Holding { deadline: now + self.config.window, pending_since: None }
            }
            State::Holding { pending_since, .. } => {
                let first = pending_since.unwrap_or(now);
                let deadline = (now + self.config.window).min(first + self.config.max_hold);
                State::Holding { deadline, pending_since: Some(first) }
            }
        };
    }

    /// The deadline passed (call any time; it does nothing early).
    pub fn handle_timeout(&mut self, now: Instant) {
        let State::Holding { deadline, pending_since } = self.state else { return };
        if now < deadline {
            return;
        }
        self.state = if pending_since.is_some() {
            self.emit = Some(Emit::Trailing);
            State::Holding { deadline: now + self.config.window, pending_since: None }
        } else {
            State::Quiet
        };
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Quiet => None,
            State::Holding { deadline, .. } => Some(deadline),
        }
    }

    /// The emit due, if any.
    pub fn poll_emit(&mut self) -> Option<Emit> {
        self.emit.take()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests read the clock once for a virtual-time origin")]
mod tests {
    use super::*;

    /// Runs a list of change times (ms) through the machine, jumping virtual time from deadline
    /// to deadline, and returns (ms, emit) pairs.
    fn run(config: Config, changes: &[u64]) -> Vec<(u64, Emit)> {
        let t0 = Instant::now();
        let ms = |t: Instant| u64::try_from((t - t0).as_millis()).unwrap();
        let mut d = Debounce::new(config);
        let mut out = Vec::new();
        let mut changes = changes.iter().map(|c| t0 + Duration::from_millis(*c)).peekable();
        loop {
            let next_change = changes.peek().copied();
            let now = match (next_change, d.poll_timeout()) {
                (Some(c), Some(t)) if t < c => t,
                (Some(c), _) => {
                    changes.next();
                    d.handle_timeout(c);
                    if let Some(e) = d.poll_emit() {
                        out.push((ms(c), e));
                    }
                    d.handle_change(c);
                    c
                }
                (None, Some(t)) => t,
                (None, None) => break,
            };
            d.handle_timeout(now);
            if let Some(e) = d.poll_emit() {
                out.push((ms(now), e));
            }
        }
        out
    }

    #[test]
    fn first_change_after_quiet_is_immediate() {
        assert_eq!(run(Config::default(), &[5_000]), [(5_000, Emit::Leading)]);
    }

    #[test]
    fn twenty_flaps_in_400ms_give_leading_and_one_trailing() {
        let flaps: Vec<u64> = (0..20).map(|i| i * 20).collect();
        assert_eq!(run(Config::default(), &flaps), [(0, Emit::Leading), (630, Emit::Trailing)]);
    }

    #[test]
    fn burst_of_fifty_then_quiet_then_one_more() {
        let mut changes: Vec<u64> = (0..50).collect();
        changes.push(2_000);
        assert_eq!(
            run(Config::default(), &changes),
            [(0, Emit::Leading), (299, Emit::Trailing), (2_000, Emit::Leading)]
        );
    }

    #[test]
    fn a_change_just_after_a_trailing_emit_is_merged_again() {
        let got = run(Config::default(), &[0, 100, 400]);
        assert_eq!(got, [(0, Emit::Leading), (350, Emit::Trailing), (650, Emit::Trailing)]);
    }

    #[test]
    fn endless_stream_still_emits_every_max_hold() {
        let stream: Vec<u64> = (0..300).map(|i| i * 10).collect(); // 3 s, every 10 ms
        let got = run(Config::default(), &stream);
        let trailing: Vec<u64> =
            got.iter().filter(|e| e.1 == Emit::Trailing).map(|e| e.0).collect();
        assert_eq!(got[0], (0, Emit::Leading));
        assert!(trailing.len() >= 2, "{got:?}");
        for w in trailing.windows(2) {
            assert!(w[1] - w[0] <= 1_010, "updates starved: {got:?}");
        }
    }

    #[test]
    fn timeouts_before_the_deadline_do_nothing() {
        let t0 = Instant::now();
        let mut d = Debounce::new(Config::default());
        d.handle_change(t0);
        assert_eq!(d.poll_emit(), Some(Emit::Leading));
        d.handle_change(t0 + Duration::from_millis(10));
        d.handle_timeout(t0 + Duration::from_millis(100));
        assert_eq!(d.poll_emit(), None);
        assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_millis(260)));
    }
}
