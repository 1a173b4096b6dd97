//! The path monitor on tokio: a subscription to a [`PathService`] whose readings are evaluated
//! under the caller's conditions, deduplicated and flagged for better paths. Nothing clever
//! happens here, and nothing blocks: the readings are taken on the service's own thread.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::evaluate::{Conditions, Path};
use crate::interface::Snapshot;
use crate::monitor::{Cause, Update, follow};
use crate::service::{PathService, ServiceOptions};
use crate::{PathError, debounce, sys};

/// How to monitor.
#[derive(Debug, Clone, Default)]
pub struct MonitorOptions {
    /// What the caller needs from the path.
    pub conditions: Conditions,
    /// How kernel notifications are merged; a value other than the default runs a service of
    /// the monitor's own instead of the process's shared one.
    pub debounce: debounce::Config,
    /// The netlink socket's receive buffer in bytes (default 1 MiB; setting it also runs a
    /// service of the monitor's own). Past it the kernel drops notifications and the monitor
    /// resynchronises from a full dump.
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
    /// Starts monitoring, on the process's shared [`PathService`] unless the options ask for a
    /// debounce or receive buffer of their own. Must be called inside a tokio runtime.
    pub fn start(options: MonitorOptions) -> Result<Self, PathError> {
        let own =
            ServiceOptions { debounce: options.debounce, receive_buffer: options.receive_buffer };
        let service = if own == ServiceOptions::default() {
            PathService::shared()?
        } else {
            PathService::start(own)?
        };
        Ok(Self::on(&service, options.conditions))
    }

    /// Monitors the path under `conditions` as `service` reads it. Must be called inside a
    /// tokio runtime.
    pub fn on(service: &PathService, conditions: Conditions) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(run(service.clone(), conditions, tx));
        Self { rx, task }
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

/// Reads a snapshot now, with nothing cached. It blocks (a netlink dump): call it from a
/// blocking thread, or read [`PathService`] instead.
pub fn snapshot() -> Result<Snapshot, PathError> {
    sys::snapshot()
}

/// Evaluates the path once, now. It blocks (a netlink dump and the cost sources, `nmcli`
/// included): call it from a blocking thread, or ask [`PathService::path`] instead.
pub fn current(conditions: &Conditions) -> Result<Path, PathError> {
    let snap = sys::snapshot()?;
    let costs = sys::cost_readings(&snap)?;
    Ok(crate::evaluate(&snap, conditions, &costs))
}

async fn run(
    service: PathService,
    conditions: Conditions,
    tx: mpsc::Sender<Result<Update, PathError>>,
) {
    let mut readings = service.subscribe();
    let mut last = None;
    loop {
        let reading = match readings.next().await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        // A monitor's first update is its initial one, whatever led to the service's reading.
        let cause = if last.is_none() { Cause::Initial } else { reading.cause };
        if let Some(update) = follow(&mut last, reading.path(&conditions), cause) {
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
    }
}
