//! The tokio driver: owns the netlink subscription and one timer, feeds the [`Monitor`]
//! machine, and carries out its snapshot requests. Nothing clever happens here.

use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::evaluate::{Conditions, Path};
use crate::interface::Snapshot;
use crate::monitor::{Action, Monitor, Update};
use crate::{PathError, debounce, sys};

/// How to monitor.
#[derive(Debug, Clone, Default)]
pub struct MonitorOptions {
    pub conditions: Conditions,
    pub debounce: debounce::Config,
    /// The netlink socket's receive buffer in bytes (default 1 MiB). Past it the kernel drops
    /// notifications and the monitor resynchronises from a full dump.
    pub receive_buffer: Option<usize>,
}

/// A running path monitor. The first update is the current path; later ones follow changes.
/// Dropping it stops the monitor.
#[derive(Debug)]
pub struct PathMonitor {
    rx: mpsc::Receiver<Result<Update, PathError>>,
    task: JoinHandle<()>,
}

impl PathMonitor {
    /// Starts monitoring. Must be called inside a tokio runtime.
    pub fn start(options: MonitorOptions) -> Result<Self, PathError> {
        // Subscribe before the first snapshot, so nothing between the two is missed.
        let subscription = sys::Subscription::open(options.receive_buffer)?;
        tracing::debug!(?options, "path monitor subscribed to link, address and route events");
        let (tx, rx) = mpsc::channel(16);
        let machine = Monitor::new(options.conditions, options.debounce);
        let task = tokio::spawn(run(machine, subscription, tx));
        Ok(Self { rx, task })
    }

    /// The next update; `None` once the monitor has stopped after reporting an error.
    pub async fn next(&mut self) -> Option<Result<Update, PathError>> {
        self.rx.recv().await
    }
}

impl Drop for PathMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a snapshot now, with nothing cached.
pub fn snapshot() -> Result<Snapshot, PathError> {
    sys::snapshot()
}

/// Evaluates the path once, now.
pub fn current(conditions: &Conditions) -> Result<Path, PathError> {
    let snap = sys::snapshot()?;
    let costs = sys::cost_readings(&snap)?;
    Ok(crate::evaluate(&snap, conditions, &costs))
}

#[allow(clippy::disallowed_methods, reason = "the driver is where the clock is read")]
async fn run(
    mut m: Monitor,
    mut sub: sys::Subscription,
    tx: mpsc::Sender<Result<Update, PathError>>,
) {
    loop {
        while let Some(Action::TakeSnapshot) = m.poll_action() {
            let reading = sys::snapshot().and_then(|s| Ok((sys::cost_readings(&s)?, s)));
            match reading {
                Ok((costs, snap)) => m.handle_snapshot(&snap, &costs),
                Err(PathError::Unstable { attempts }) => {
                    tracing::debug!(
                        attempts,
                        "dumps kept being interrupted; retrying after the burst"
                    );
                    m.handle_snapshot_failed(Instant::now());
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
        while let Some(update) = m.poll_update() {
            tracing::info!(
                cause = ?update.cause,
                status = ?update.path.status,
                reason = ?update.path.reason,
                primary = update.path.primary().map(|p| p.interface.name.as_str()),
                "path update"
            );
            if tx.send(Ok(update)).await.is_err() {
                return;
            }
        }
        let deadline = m.poll_timeout();
        tokio::select! {
            drained = sub.next() => match drained {
                Ok(d) if d.overflowed => {
                    tracing::warn!("netlink notifications overflowed (ENOBUFS); resynchronising from a full dump");
                    m.handle_overflow(Instant::now());
                }
                Ok(d) => {
                    tracing::trace!(changes = d.changes, "netlink notifications");
                    m.handle_change(Instant::now());
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            },
            () = sleep_until(deadline) => m.handle_timeout(Instant::now()),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
