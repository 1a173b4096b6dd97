//! Idle connections kept for the next request to the same origin, as logic over an injected
//! clock and path fingerprint.
//!
//! A connection goes back to the pool only after its response was read to the end. Taking one
//! skips connections the peer has closed and ones idle too long, and the whole pool is flushed
//! when the network path changed since they were made: a connection bound to an address the
//! host no longer has, or routed over an interface that went away, would only time out. A
//! request on a reused connection that fails before any response is retried once on a fresh
//! connection (see `download::fetch`): the peer may have closed it while it sat idle.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::altsvc::Origin;

/// How long a connection may sit idle before it is not offered again. Servers commonly close
/// idle connections after 5 s (Apache) to 75 s (nginx's default keepalive_timeout); a
/// connection past that is likely gone.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Idle connections kept per origin.
const PER_ORIGIN: usize = 6;

/// What the pool needs of a connection.
pub trait Pooled {
    /// The peer closed it (or it failed).
    fn is_closed(&self) -> bool;
    /// It is handed out again.
    fn reuse(&mut self);
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

/// The pool.
pub struct Pool<C> {
    inner: Mutex<Inner<C>>,
}

struct Inner<C> {
    /// The path the idle connections were made on.
    path: Option<u64>,
    idle: HashMap<Origin, Vec<Idle<C>>>,
}

impl<C> Inner<C> {
    /// The path is now `path`: if it is not the one the idle connections were made on, they
    /// are all dropped.
    fn on_path(&mut self, path: Option<u64>) {
        if self.path != path {
            if !self.idle.is_empty() {
                tracing::debug!("the network path changed: idle connections dropped");
            }
            self.idle.clear();
            self.path = path;
        }
    }
}

impl<C> Default for Pool<C> {
    fn default() -> Self {
        Self { inner: Mutex::new(Inner { path: None, idle: HashMap::new() }) }
    }
}

impl<C> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_struct("Pool")
            .field("idle", &inner.idle.values().map(Vec::len).sum::<usize>())
            .finish_non_exhaustive()
    }
}

impl<C: Pooled> Pool<C> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<C>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An idle, open connection to `origin` that `fits`, if there is one (the most recently
    /// used first); `path` is the network path's fingerprint now. Flushes everything when the
    /// path is not the one the pool was filled on; closed and stale connections are dropped,
    /// ones that do not fit stay.
    pub fn take(
        &self,
        origin: &Origin,
        path: Option<u64>,
        now: Instant,
        fits: impl Fn(&C) -> bool,
    ) -> Option<C> {
        let mut inner = self.lock();
        inner.on_path(path);
        let idle = inner.idle.get_mut(origin)?;
        idle.retain(|i| now.saturating_duration_since(i.since) < IDLE_LIMIT && !i.conn.is_closed());
        let at = idle.iter().rposition(|i| fits(&i.conn))?;
        let mut conn = idle.remove(at).conn;
        conn.reuse();
        Some(conn)
    }

    /// Keeps `conn` (its last response read to the end) for the next request to `origin`.
    pub fn put(&self, origin: Origin, conn: C, path: Option<u64>, now: Instant) {
        let mut inner = self.lock();
        inner.on_path(path);
        let idle = inner.idle.entry(origin).or_default();
        if idle.len() < PER_ORIGIN {
            idle.push(Idle { conn, since: now });
        }
    }

    /// Idle connections held.
    pub fn idle(&self) -> usize {
        self.lock().idle.values().map(Vec::len).sum()
    }
}

/// A fingerprint of the network path (usable interfaces, their addresses, gateways): when it
/// changes, pooled connections are dropped. `None` when the path cannot be read. It reads the
/// process's path service (no kernel dump per request).
pub(crate) async fn path_fingerprint() -> Option<u64> {
    let service = nw_path::PathService::shared().ok()?;
    Some(service.reading().await.ok()?.fingerprint())
}
