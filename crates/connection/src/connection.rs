//! The connection object: an endpoint and parameters in, states out — setup, preparing,
//! waiting (with the reason), ready, failed (with the error) or cancelled — and, once ready,
//! viability and better-path updates from the path monitor.
//!
//! ```no_run
//! use std::sync::Arc;
//! use nw_connection::{Connection, Endpoint, Parameters, State, SystemResolver, Update};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = Endpoint::parse("example.test:443")?;
//! let params = Parameters { path: Some(Default::default()), ..Parameters::default() };
//! let mut conn = Connection::new(endpoint, params, Arc::new(SystemResolver::from_system()));
//! conn.start();
//! while let Some(Update::State(state)) = conn.next_update().await {
//!     match state {
//!         State::Waiting { reason } => println!("waiting: {reason:?}"),
//!         State::Ready | State::Failed { .. } => break,
//!         _ => {}
//!     }
//! }
//! let connected = conn.ready().await?; // the stream, or the error with its report
//! // `connected.stream` carries the bytes; meanwhile:
//! while let Some(update) = conn.next_update().await {
//!     if let Update::Viability(v) = update {
//!         println!("viable: {}, better path: {:?}", v.viable, v.better_path);
//!     }
//! }
//! # drop(connected); Ok(()) }
//! ```
//!
//! Dropping the connection cancels it: attempts in flight close their sockets, and updates
//! stop. A stream already handed over by [`Connection::ready`] belongs to the caller and stays
//! open.

use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::driver::{ConnectError, Connected, Parameters, Report, Resolve, connect_observed};
use crate::endpoint::Endpoint;
use crate::id::ConnectionId;
use crate::socket::{Bind, kernel_source};
use crate::state::State;
use crate::viability::{Via, Viability, assess};

/// What the connection reports, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum Update {
    /// The connection moved to this state.
    State(State),
    /// After ready: the connection's path changed (see [`Viability`](crate::Viability)).
    Viability(Viability),
}

/// A connection to an endpoint. See the module documentation.
#[derive(Debug)]
pub struct Connection {
    id: ConnectionId,
    endpoint: Endpoint,
    params: Option<Parameters>,
    resolver: Arc<dyn Resolve>,
    state: Arc<Mutex<State>>,
    updates: Option<mpsc::UnboundedReceiver<Update>>,
    ready: Option<oneshot::Receiver<Result<Connected, ConnectError>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// `cancel()` was called and the Cancelled update is not yet delivered.
    cancelled: bool,
}

impl Connection {
    /// A connection in the setup state; nothing happens until [`Connection::start`].
    pub fn new(endpoint: Endpoint, params: Parameters, resolver: Arc<dyn Resolve>) -> Self {
        Self {
            id: ConnectionId::next(),
            endpoint,
            params: Some(params),
            resolver,
            state: Arc::new(Mutex::new(State::Setup)),
            updates: None,
            ready: None,
            task: None,
            cancelled: false,
        }
    }

    /// Its id (`C7`): the same in logs, events and the report.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// What it connects to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Starts connecting (on the current tokio runtime). Starting twice does nothing.
    pub fn start(&mut self) {
        let Some(params) = self.params.take() else { return };
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        self.updates = Some(rx);
        self.ready = Some(ready_rx);
        let (id, host, port) = (self.id, self.endpoint.host(), self.endpoint.port());
        let (resolver, shared) = (self.resolver.clone(), self.state.clone());
        self.task = Some(tokio::spawn(async move {
            let publish = |state: State| {
                *shared.lock().unwrap_or_else(PoisonError::into_inner) = state.clone();
                let _ = tx.send(Update::State(state));
            };
            let result = connect_observed(&host, port, &params, resolver, id, &publish).await;
            let via = match &result {
                Ok(connected) => {
                    publish(State::Ready);
                    via_of(&connected.report, params.local).await
                }
                Err(e) => {
                    publish(State::Failed { error: e.to_string() });
                    None
                }
            };
            let _ = ready_tx.send(result);
            if let Some(via) = via {
                watch(via, params.path.unwrap_or_default(), &tx).await;
            }
        }));
    }

    /// Waits until the connection is ready and hands over the stream and report, or the error
    /// (and report) if it failed. Starts the connection if it was not started. Safe to use in
    /// `tokio::select!`: nothing is lost when the future is dropped unfinished.
    pub async fn ready(&mut self) -> Result<Connected, ConnectError> {
        self.start();
        let Some(rx) = self.ready.as_mut() else {
            return Err(if self.cancelled || self.task.is_none() {
                ConnectError::Cancelled
            } else {
                ConnectError::Taken
            });
        };
        let result = rx.await.unwrap_or(Err(ConnectError::Cancelled));
        self.ready = None;
        result
    }

    /// The next update, in order; `None` once the connection has ended (failed, cancelled, or
    /// the path can no longer be watched). Starts the connection if it was not started.
    /// Cancel-safe.
    pub async fn next_update(&mut self) -> Option<Update> {
        self.start();
        if self.cancelled {
            self.cancelled = false;
            self.updates = None;
            return Some(Update::State(State::Cancelled));
        }
        let rx = self.updates.as_mut()?;
        let update = rx.recv().await;
        if update.is_none() {
            self.updates = None;
        }
        update
    }

    /// Cancels it: attempts in flight close, a waiting connection stops waiting, updates end
    /// with [`State::Cancelled`]. A stream already handed over stays open.
    pub fn cancel(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.params = None;
        self.ready = None;
        if !matches!(self.state(), State::Failed { .. } | State::Cancelled) {
            *self.state.lock().unwrap_or_else(PoisonError::into_inner) = State::Cancelled;
            self.cancelled = true;
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Where the winner runs: its local address (given, or the kernel's choice for the peer) and
/// the interface that holds it (from the path service's reading: nothing blocks here).
async fn via_of(report: &Report, local: Option<std::net::IpAddr>) -> Option<Via> {
    let remote = report.connected?.ip();
    let bind = Bind { device: report.interface.clone(), local };
    let local = local.or_else(|| kernel_source(remote, &bind))?;
    let interface = match report.interface.clone() {
        Some(name) => Some(name),
        None => {
            let reading = nw_path::PathService::shared().ok()?.reading().await.ok()?;
            let snapshot = &reading.snapshot;
            let holder =
                snapshot.interfaces.iter().find(|i| i.addresses.iter().any(|a| a.ip == local));
            holder.map(|i| i.name.clone())
        }
    };
    Some(Via { interface, local })
}

/// Follows the path and sends each change of the verdict, until the receiver is gone.
async fn watch(via: Via, conditions: nw_path::Conditions, tx: &mpsc::UnboundedSender<Update>) {
    let mut monitor = match nw_path::PathService::shared() {
        Ok(service) => nw_path::PathMonitor::on(&service, conditions),
        Err(e) => {
            tracing::debug!("cannot watch the path ({e}); no viability updates");
            return;
        }
    };
    let mut last = Viability::ready();
    loop {
        tokio::select! {
            update = monitor.next() => match update {
                Some(Ok(update)) => {
                    let now = assess(&update.path, &via);
                    if now != last {
                        tracing::info!(viable = now.viable, better = ?now.better_path, "path changed");
                        last = now.clone();
                        if tx.send(Update::Viability(now)).is_err() {
                            return;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!("path monitor failed ({e}); no more viability updates");
                    return;
                }
                None => return,
            },
            () = tx.closed() => return,
        }
    }
}
