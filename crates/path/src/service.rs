//! The path service: one netlink subscription per process, read on a thread of its own, that
//! every user of the path subscribes to.
//!
//! The service thread owns the rtnetlink subscription and the [`Sampler`] machine (the
//! debounce, turned into snapshot requests with their causes); on each request it takes a
//! snapshot and the cost readings (a netlink dump, sysfs, the environment and config file)
//! and publishes them as a [`Reading`] when they differ from the last one. NetworkManager's
//! metered values (`nmcli`, bounded to a second) are read on a thread beside it, asked after
//! each kernel change and each change `nmcli monitor` reports: the first reading waits for
//! them, later ones use the last answer, and an answer that differs is published as a change.
//! None of that runs on a caller's async runtime: a reading is a cheap clone of an `Arc`, and
//! evaluating it ([`Reading::path`], [`Reading::path_for`]) is pure.
//!
//! [`PathService::shared`] is the process's service, started on first use and kept for the
//! life of the process (an idle thread blocked on one socket). Its namespace is the one of the
//! thread that first asked for it. [`PathService::start`] makes a separate one with its own
//! debounce and receive buffer (a `nw path --watch --debounce-ms` of its own, tests).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::watch;

use crate::cost::CostReadings;
use crate::debounce;
use crate::evaluate::{Conditions, Path, evaluate, evaluate_for};
use crate::interface::Snapshot;
use crate::monitor::{Action, Cause, Sampler};
use crate::{PathError, sys};

/// How a service watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceOptions {
    /// How kernel notifications are merged before a new reading is taken.
    pub debounce: debounce::Config,
    /// The netlink socket's receive buffer in bytes (default 1 MiB). Past it the kernel drops
    /// notifications and the service resynchronises from a full dump.
    pub receive_buffer: Option<usize>,
}

/// One reading of the kernel's network configuration and of the cost sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// Interfaces, main-table routes, name servers.
    pub snapshot: Snapshot,
    /// Expensive and constrained, from every source.
    pub costs: CostReadings,
    /// Counts readings from 1: a larger one is newer.
    pub generation: u64,
    /// What led to it: the first reading, the first change after quiet, or a settled burst.
    pub cause: Cause,
    /// How many times kernel notifications overflowed (ENOBUFS) and were resynchronised.
    pub overflows: u64,
    /// [`fingerprint`](Self::fingerprint), worked out the first time it is asked for: every
    /// request of a session asks.
    fingerprint: OnceLock<u64>,
}

impl Reading {
    /// The path under `conditions` (Network framework's path monitor's view).
    pub fn path(&self, conditions: &Conditions) -> Path {
        evaluate(&self.snapshot, conditions, &self.costs)
    }

    /// The path to `destination` under `conditions` (see [`evaluate_for`]).
    pub fn path_for(&self, destination: std::net::IpAddr, conditions: &Conditions) -> Path {
        evaluate_for(&self.snapshot, conditions, &self.costs, destination)
    }

    /// A fingerprint of what connections depend on — the usable interfaces, their addresses
    /// and the gateways: when it changes, pooled connections may be on a path that is gone.
    pub fn fingerprint(&self) -> u64 {
        *self.fingerprint.get_or_init(|| self.work_out_fingerprint())
    }

    fn work_out_fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let path = self.path(&Conditions::default());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.status.hash(&mut h);
        for i in &path.interfaces {
            (i.interface.index, &i.interface.name, &i.interface.addresses).hash(&mut h);
        }
        path.gateways.hash(&mut h);
        h.finish()
    }
}

/// What the service publishes.
#[derive(Debug, Clone)]
enum State {
    Starting,
    Read(Arc<Reading>),
    /// The last attempt to read failed; the service goes on watching (a fixed configuration
    /// file is read at the next change) unless the subscription itself broke.
    Failed {
        error: Arc<PathError>,
        generation: u64,
    },
}

impl State {
    fn generation(&self) -> u64 {
        match self {
            Self::Starting => 0,
            Self::Read(r) => r.generation,
            Self::Failed { generation, .. } => *generation,
        }
    }
}

/// A handle on a path service; clones share it. Subscribe to its [`Reading`]s with
/// [`PathService::subscribe`], or read the current one with [`PathService::reading`].
#[derive(Debug, Clone)]
pub struct PathService {
    rx: watch::Receiver<State>,
}

static SHARED: OnceLock<Result<PathService, String>> = OnceLock::new();

impl PathService {
    /// The process's path service, started on first use. Callable from anywhere, with or
    /// without a tokio runtime; never blocks.
    pub fn shared() -> Result<Self, PathError> {
        SHARED
            .get_or_init(|| Self::start(ServiceOptions::default()).map_err(|e| e.to_string()))
            .clone()
            .map_err(|why| PathError::Netlink(std::io::Error::other(why)))
    }

    /// Starts a service of its own on a new thread. It stops when the last handle is dropped
    /// and the kernel next reports a change. Its socket is opened here, so an error is known at
    /// once, and nothing here waits for the thread.
    pub fn start(options: ServiceOptions) -> Result<Self, PathError> {
        // Subscribe before the first snapshot, so nothing between the two is missed.
        let bound = sys::Subscription::bind(options.receive_buffer)?;
        let (tx, rx) = watch::channel(State::Starting);
        std::thread::Builder::new()
            .name("nw-path".into())
            .spawn(move || serve(options.debounce, bound, tx))
            .map_err(PathError::Netlink)?;
        Ok(Self { rx })
    }

    /// The latest reading, waiting for the first one.
    pub async fn reading(&self) -> Result<Arc<Reading>, PathError> {
        self.subscribe().next().await
    }

    /// The path under `conditions`, now.
    pub async fn path(&self, conditions: &Conditions) -> Result<Path, PathError> {
        Ok(self.reading().await?.path(conditions))
    }

    /// The path to `destination` under `conditions`, now.
    pub async fn path_for(
        &self,
        destination: std::net::IpAddr,
        conditions: &Conditions,
    ) -> Result<Path, PathError> {
        Ok(self.reading().await?.path_for(destination, conditions))
    }

    /// Readings from now on: the current one first, then each newer one. A subscriber that
    /// falls behind skips to the newest (readings are whole states, not deltas).
    pub fn subscribe(&self) -> Readings {
        Readings { rx: self.rx.clone(), seen: 0 }
    }
}

/// A subscription to a [`PathService`]'s readings.
#[derive(Debug)]
pub struct Readings {
    rx: watch::Receiver<State>,
    seen: u64,
}

impl Readings {
    /// The next reading newer than the last one returned (the current one, the first time).
    /// Cancel-safe. An error is a reading that failed; the next call waits for a newer one.
    pub async fn next(&mut self) -> Result<Arc<Reading>, PathError> {
        loop {
            let state = self.rx.borrow_and_update().clone();
            if state.generation() > self.seen {
                self.seen = state.generation();
                match state {
                    State::Read(r) => return Ok(r),
                    State::Failed { error, .. } => return Err(duplicate(&error)),
                    State::Starting => {}
                }
            }
            if self.rx.changed().await.is_err() {
                return Err(PathError::Netlink(std::io::Error::other("the path service stopped")));
            }
        }
    }
}

/// A copy of a published error for one more caller (`io::Error` is not `Clone`).
fn duplicate(e: &PathError) -> PathError {
    match e {
        PathError::Netlink(io) => {
            PathError::Netlink(std::io::Error::new(io.kind(), io.to_string()))
        }
        PathError::Unstable { attempts } => PathError::Unstable { attempts: *attempts },
        PathError::Config { path, why } => {
            PathError::Config { path: path.clone(), why: why.clone() }
        }
        PathError::Unsupported => PathError::Unsupported,
    }
}

/// The service thread: its own single-threaded runtime, so the blocking readings stall no one
/// else's. A runtime or registration that fails is published as the service's error.
fn serve(debounce: debounce::Config, bound: sys::Bound, tx: watch::Sender<State>) {
    let failed = |tx: &watch::Sender<State>, e: PathError| {
        tx.send_replace(State::Failed { error: Arc::new(e), generation: 1 });
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return failed(&tx, PathError::Netlink(e)),
    };
    runtime.block_on(async move {
        match bound.register() {
            Ok(subscription) => run(debounce, subscription, tx).await,
            Err(e) => failed(&tx, e),
        }
    });
}

/// Runs the [`Sampler`] machine: reads the kernel when it asks, publishes each reading that
/// differs from the last, and feeds it notifications and timeouts. Nothing is decided here.
/// NetworkManager's metered values are read beside it ([`NetworkManager`]): the first reading
/// waits for them, later ones use the last answer, and an answer that differs is read again.
#[allow(clippy::disallowed_methods, reason = "the driver is where the clock is read")]
async fn run(debounce: debounce::Config, mut sub: sys::Subscription, tx: watch::Sender<State>) {
    let mut sampler = Sampler::new(debounce);
    let mut generation = 0;
    let mut last: Option<Arc<Reading>> = None;
    let mut networkmanager = NetworkManager::start();
    let mut changes = networkmanager.as_mut().and_then(|nm| nm.changes.take());
    let mut metered =
        if networkmanager.is_some() { sys::networkmanager_metered() } else { BTreeMap::new() };
    loop {
        while let Some(Action::TakeSnapshot) = sampler.poll_action() {
            match sys::snapshot().and_then(|s| Ok((sys::cost_readings_with(&s, &metered)?, s))) {
                Ok((costs, snapshot)) => {
                    let Some(cause) = sampler.handle_snapshot() else { continue };
                    let overflows = sampler.overflows();
                    let same = last.as_ref().is_some_and(|l| {
                        l.snapshot == snapshot && l.costs == costs && l.overflows == overflows
                    });
                    if !same {
                        generation += 1;
                        let reading = Arc::new(Reading {
                            snapshot,
                            costs,
                            generation,
                            cause,
                            overflows,
                            fingerprint: OnceLock::new(),
                        });
                        tracing::debug!(generation, ?cause, "path reading");
                        last = Some(reading.clone());
                        tx.send_replace(State::Read(reading));
                    }
                }
                Err(PathError::Unstable { attempts }) => {
                    tracing::debug!(
                        attempts,
                        "dumps kept being interrupted; retrying after the burst"
                    );
                    sampler.handle_snapshot_failed(Instant::now());
                }
                Err(e) => {
                    // Published; the next change is read again (a configuration file fixed).
                    tracing::debug!("path reading failed: {e}");
                    sampler.handle_snapshot();
                    generation += 1;
                    last = None;
                    tx.send_replace(State::Failed { error: Arc::new(e), generation });
                }
            }
        }
        tokio::select! {
            drained = sub.next() => match drained {
                Ok(d) => {
                    if tx.is_closed() {
                        return; // every handle is gone
                    }
                    if let Some(nm) = &networkmanager {
                        nm.ask(); // a kernel change may be one NetworkManager reacts to
                    }
                    if d.overflowed {
                        tracing::warn!("netlink notifications overflowed (ENOBUFS); resynchronising from a full dump");
                        sampler.handle_overflow(Instant::now());
                    } else {
                        sampler.handle_change(Instant::now());
                    }
                }
                Err(e) => {
                    generation += 1;
                    tx.send_replace(State::Failed { error: Arc::new(e), generation });
                    return;
                }
            },
            () = NetworkManager::changed(&mut changes) => {
                if let Some(nm) = &networkmanager {
                    nm.ask();
                }
            }
            answer = NetworkManager::answer(&mut networkmanager) => match answer {
                Some(answer) if answer != metered => {
                    tracing::debug!(?answer, "NetworkManager's metered values changed");
                    metered = answer;
                    sampler.handle_change(Instant::now());
                }
                Some(_) => {}
                None => networkmanager = None, // its thread is gone; keep the last answer
            },
            () = sleep_until(sampler.poll_timeout()) => sampler.handle_timeout(Instant::now()),
        }
    }
}

/// `nmcli` on a thread of its own: it takes tens of milliseconds (bounded to a second), and a
/// carrier loss must not wait for it (S8: the first change after quiet is never delayed). The
/// service asks after each kernel change, and after each change `nmcli monitor` (on a second
/// thread) reports — a metered value can change with nothing for the kernel to tell — and
/// reads again when the answer differs.
struct NetworkManager {
    ask: std::sync::mpsc::SyncSender<()>,
    answers: tokio::sync::mpsc::UnboundedReceiver<BTreeMap<String, bool>>,
    /// One message per line of `nmcli monitor`; closed when it ends. Taken by the service
    /// loop, which waits on it beside the answers.
    changes: Option<tokio::sync::mpsc::UnboundedReceiver<()>>,
}

impl NetworkManager {
    /// `None` when no `nmcli` is installed, or its thread cannot start.
    fn start() -> Option<Self> {
        if !sys::networkmanager_present() {
            return None;
        }
        // One question queued at most: asks during a read merge into the next one.
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let (tell, answers) = tokio::sync::mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("nw-path-nmcli".into())
            .spawn(move || {
                while asked.recv().is_ok() {
                    if tell.send(sys::networkmanager_metered()).is_err() {
                        return;
                    }
                }
            })
            .ok()?;
        let (told, changes) = tokio::sync::mpsc::unbounded_channel();
        // Without it (it cannot start), kernel changes still ask.
        let _ = std::thread::Builder::new()
            .name("nw-path-nmcli-monitor".into())
            .spawn(move || sys::networkmanager_monitor(|| told.send(()).is_ok()));
        Some(Self { ask, answers, changes: Some(changes) })
    }

    fn ask(&self) {
        let _ = self.ask.try_send(()); // full: a question is already waiting
    }

    /// The next change `nmcli monitor` reports; never, without it or once it has ended.
    async fn changed(changes: &mut Option<tokio::sync::mpsc::UnboundedReceiver<()>>) {
        if let Some(c) = changes
            && c.recv().await.is_some()
        {
            return;
        }
        *changes = None;
        std::future::pending().await
    }

    /// The next answer; never, without NetworkManager; `None` once its thread has gone.
    async fn answer(this: &mut Option<Self>) -> Option<BTreeMap<String, bool>> {
        match this {
            Some(nm) => nm.answers.recv().await,
            None => std::future::pending().await,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
