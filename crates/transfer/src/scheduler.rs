//! The background scheduler as a machine in virtual time: when each queued transfer may start,
//! and why each waiting one waits.
//!
//! The resume-rate limiter follows the rules the field describes for background sessions
//! (FIELD-NOTES A01–A06):
//! - every time the client is resumed (woken) in the background, the delay doubles (from the
//!   configured base when it was zero);
//! - it resets to zero when the client comes to the foreground, or when a delay period
//!   elapses unused — with no resume and no task held back by it;
//! - a task created while the client is in the background starts no earlier than its creation
//!   time plus the delay; one created in the foreground starts at once.
//!
//! Our additions, each with the reason it reports: the delay is capped (an hour by default) so
//! a long chain slows down without ever stopping; tasks added as one batch share one wait and
//! wake the client once when all of them are done, which is what keeps thousands of tasks from
//! compounding the delay (A05); discretionary tasks wait for an unmetered path on external
//! power (A06); transient failures are retried with exponential backoff up to a limit; at most
//! `max_running` tasks run at once.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// The scheduler's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The first resume delay after zero.
    pub resume_base: Duration,
    /// The most the delay grows to.
    pub resume_max: Duration,
    /// Tasks running at once.
    pub max_running: usize,
    /// The wait before the first retry; doubled for each further one.
    pub retry_base: Duration,
    /// The longest wait between retries.
    pub retry_max: Duration,
    /// Attempts before a transiently failing task is given up.
    pub max_attempts: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resume_base: Duration::from_secs(10),
            resume_max: Duration::from_secs(3600),
            max_running: 4,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            max_attempts: 8,
        }
    }
}

/// A task, numbered from 1 in the order added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TaskId(pub u64);

/// What the path and the machine offer, for discretionary tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Conditions {
    /// The path is neither expensive nor constrained (nw-path's flags).
    pub unmetered: bool,
    /// On external power.
    pub on_power: bool,
}

/// Why a task is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Wait {
    /// The resume-rate limiter holds it until `until`.
    ResumeDelay {
        /// When it may start, on the scheduler's clock.
        until: Duration,
    },
    /// Discretionary: waiting for an unmetered path.
    Unmetered,
    /// Discretionary: waiting for external power.
    Power,
    /// Retrying after a transient failure, at `until`.
    Backoff {
        /// When it is tried again, on the scheduler's clock.
        until: Duration,
        /// Attempts so far.
        attempt: u32,
    },
    /// `max_running` tasks are running.
    Concurrency,
}

impl Wait {
    /// A sentence for the user (`now` for the times left).
    pub fn explain(&self, now: Duration) -> String {
        let left = |until: Duration| until.saturating_sub(now).as_secs_f64();
        match self {
            Self::ResumeDelay { until } => format!(
                "held by the background resume-rate limiter for {:.1} s more (the delay doubles each time the client is woken in the background; bringing it to the foreground resets it)",
                left(*until)
            ),
            Self::Unmetered => {
                "discretionary: waiting for a path that is neither expensive nor constrained".into()
            }
            Self::Power => "discretionary: waiting for external power".into(),
            Self::Backoff { until, attempt } => {
                format!("retrying in {:.1} s after {attempt} failed attempt(s)", left(*until))
            }
            Self::Concurrency => "waiting for a running task to finish".into(),
        }
    }
}

/// What the scheduler asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or retry) this task now.
    Start(TaskId),
    /// Wake the client in the background to hand it these finished tasks (one resume).
    Wake(Vec<TaskId>),
}

/// How a run of a task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished.
    Done,
    /// Worth retrying (a lost connection, a 5xx, a timeout).
    Transient(String),
    /// Not worth retrying (a 404, a digest mismatch).
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Running,
    Finished,
}

#[derive(Debug, Clone)]
struct Task {
    not_before: Duration,
    held_by_delay: bool,
    discretionary: bool,
    batch: Option<u64>,
    attempts: u32,
    phase: Phase,
    backoff: bool,
}

/// The machine. Times are `Duration`s since an origin the driver picks.
#[derive(Debug)]
pub struct Scheduler {
    config: Config,
    foreground: bool,
    conditions: Conditions,
    delay: Duration,
    /// When the current delay period ends (for the unused-reset rule).
    period_end: Duration,
    /// Whether a task was held by the delay in the current period.
    used: bool,
    tasks: BTreeMap<TaskId, Task>,
    next_id: u64,
    next_batch: u64,
    /// Finished tasks not yet handed to the client.
    to_deliver: Vec<TaskId>,
}

impl Scheduler {
    /// A scheduler whose client starts in the foreground.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            foreground: true,
            conditions: Conditions::default(),
            delay: Duration::ZERO,
            period_end: Duration::ZERO,
            used: false,
            tasks: BTreeMap::new(),
            next_id: 1,
            next_batch: 1,
            to_deliver: Vec::new(),
        }
    }

    /// The resume delay in force at `now`.
    pub fn resume_delay(&mut self, now: Duration) -> Duration {
        self.expire(now);
        self.delay
    }

    /// Applies the unused-period reset up to `now`.
    fn expire(&mut self, now: Duration) {
        while !self.delay.is_zero() && now >= self.period_end {
            if self.used {
                self.used = false;
                self.period_end += self.delay;
            } else {
                self.delay = Duration::ZERO;
            }
        }
    }

    /// The client came to the foreground: the delay resets, and tasks it held start.
    pub fn foreground(&mut self, now: Duration) {
        self.expire(now);
        self.foreground = true;
        self.delay = Duration::ZERO;
        self.used = false;
        for task in self.tasks.values_mut() {
            if task.held_by_delay && task.phase == Phase::Queued {
                task.not_before = task.not_before.min(now);
                task.held_by_delay = false;
            }
        }
    }

    /// The client went to the background.
    pub fn background(&mut self, now: Duration) {
        self.expire(now);
        self.foreground = false;
    }

    /// The client was resumed (or relaunched) in the background: the delay doubles. [`poll`]
    /// calls this itself when it wakes the client.
    ///
    /// [`poll`]: Self::poll
    pub fn resumed(&mut self, now: Duration) {
        self.expire(now);
        self.foreground = false;
        self.delay = if self.delay.is_zero() {
            self.config.resume_base
        } else {
            (self.delay * 2).min(self.config.resume_max)
        };
        self.period_end = now + self.delay;
        self.used = false;
    }

    /// The path and power changed.
    pub fn set_conditions(&mut self, conditions: Conditions) {
        self.conditions = conditions;
    }

    /// Queues one task.
    pub fn add(&mut self, now: Duration, discretionary: bool) -> TaskId {
        self.add_with(now, discretionary, None)
    }

    /// Queues `count` tasks as one batch: one wait, one wake when all are done.
    pub fn add_batch(&mut self, now: Duration, count: usize, discretionary: bool) -> Vec<TaskId> {
        let batch = self.next_batch;
        self.next_batch += 1;
        (0..count).map(|_| self.add_with(now, discretionary, Some(batch))).collect()
    }

    fn add_with(&mut self, now: Duration, discretionary: bool, batch: Option<u64>) -> TaskId {
        self.expire(now);
        let id = TaskId(self.next_id);
        self.next_id += 1;
        let held = !self.foreground && !self.delay.is_zero();
        if held {
            self.used = true;
        }
        let not_before = if held { now + self.delay } else { now };
        let task = Task {
            not_before,
            held_by_delay: held,
            discretionary,
            batch,
            attempts: 0,
            phase: Phase::Queued,
            backoff: false,
        };
        self.tasks.insert(id, task);
        id
    }

    /// A running task ended.
    pub fn finished(&mut self, now: Duration, id: TaskId, outcome: Outcome) {
        self.expire(now);
        let config = self.config;
        let Some(task) = self.tasks.get_mut(&id) else { return };
        task.attempts += 1;
        match outcome {
            Outcome::Transient(_) if task.attempts < config.max_attempts => {
                let factor = 1u32.checked_shl(task.attempts - 1).unwrap_or(u32::MAX);
                let wait = config.retry_base.saturating_mul(factor).min(config.retry_max);
                task.phase = Phase::Queued;
                task.not_before = now + wait;
                task.held_by_delay = false;
                task.backoff = true;
            }
            Outcome::Done | Outcome::Transient(_) | Outcome::Failed(_) => {
                task.phase = Phase::Finished;
                self.to_deliver.push(id);
            }
        }
    }

    /// Why `id` is not running at `now` (`None` when it is running, finished or unknown).
    pub fn wait(&self, id: TaskId, now: Duration) -> Option<Wait> {
        let task = self.tasks.get(&id)?;
        if task.phase != Phase::Queued {
            return None;
        }
        if task.not_before > now {
            return Some(if task.backoff {
                Wait::Backoff { until: task.not_before, attempt: task.attempts }
            } else {
                Wait::ResumeDelay { until: task.not_before }
            });
        }
        if task.discretionary && !self.conditions.unmetered {
            return Some(Wait::Unmetered);
        }
        if task.discretionary && !self.conditions.on_power {
            return Some(Wait::Power);
        }
        Some(Wait::Concurrency)
    }

    /// What to do at `now`: tasks to start (oldest first, up to `max_running` running), and a
    /// wake of the client when it is in the background and finished work awaits it (a batch
    /// wakes it once, when its last task is done).
    pub fn poll(&mut self, now: Duration) -> Vec<Action> {
        self.expire(now);
        let mut actions = Vec::new();
        let mut running = self.tasks.values().filter(|t| t.phase == Phase::Running).count();
        let conditions = self.conditions;
        let mut ready: Vec<(Duration, TaskId)> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                t.phase == Phase::Queued
                    && t.not_before <= now
                    && (!t.discretionary || (conditions.unmetered && conditions.on_power))
            })
            .map(|(id, t)| (t.not_before, *id))
            .collect();
        ready.sort();
        for (_, id) in ready {
            if running >= self.config.max_running {
                break;
            }
            if let Some(task) = self.tasks.get_mut(&id) {
                task.phase = Phase::Running;
                task.held_by_delay = false;
                running += 1;
                actions.push(Action::Start(id));
            }
        }
        if !self.foreground {
            let deliverable: Vec<TaskId> =
                self.to_deliver.iter().copied().filter(|id| self.batch_done(*id)).collect();
            if !deliverable.is_empty() {
                self.to_deliver.retain(|id| !deliverable.contains(id));
                self.resumed(now);
                actions.push(Action::Wake(deliverable));
            }
        } else {
            self.to_deliver.clear();
        }
        actions
    }

    /// Whether every task of `id`'s batch has finished.
    fn batch_done(&self, id: TaskId) -> bool {
        let Some(batch) = self.tasks.get(&id).and_then(|t| t.batch) else { return true };
        self.tasks.values().filter(|t| t.batch == Some(batch)).all(|t| t.phase == Phase::Finished)
    }

    /// When [`poll`](Self::poll) next has something to do without any other input: the
    /// earliest not-before of a queued task in the future.
    pub fn next_wake(&self, now: Duration) -> Option<Duration> {
        self.tasks
            .values()
            .filter(|t| t.phase == Phase::Queued && t.not_before > now)
            .map(|t| t.not_before)
            .min()
    }

    /// Tasks not yet finished.
    pub fn pending(&self) -> usize {
        self.tasks.values().filter(|t| t.phase != Phase::Finished).count()
    }
}
