//! Idle connections kept for the next request to the same origin, as logic over an injected
//! clock and path fingerprint.
//!
//! A connection that carries requests side by side (HTTP/2, HTTP/3) is shared: it goes into
//! the pool as soon as it is made, and every request to its origin gets a handle on it while
//! it stays in the pool, so a burst of requests makes one connection, not one each. Until an
//! origin's first connection says whether it multiplexes, a request that finds no connection
//! waits for one being made ([`Pool::turn`]), as browsers and hyper's pool do.
//!
//! An HTTP/1.1 connection goes back to the pool only after its response was read to the end.
//! Taking one skips connections the peer has closed and ones idle too long, and the whole pool
//! is flushed when the network path changed since they were made: a connection bound to an
//! address the host no longer has, or routed over an interface that went away, would only time
//! out. A request on a reused connection that fails before any response is retried once on a
//! fresh connection (see `Session::get`): the peer may have closed it while it sat idle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::altsvc::Origin;

/// How long a connection may sit idle before it is not offered again. Servers commonly close
/// idle connections after 5 s (Apache) to 75 s (nginx's default keepalive_timeout); a
/// connection past that is likely gone.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);
/// Idle connections kept per origin: what a burst of HTTP/1.1 requests leaves behind for the
/// next one (reqwest keeps any number; 64 bounds the descriptors a burst can hold).
const PER_ORIGIN: usize = 64;

/// What the pool needs of a connection.
pub trait Pooled {
    /// The peer closed it (or it failed).
    fn is_closed(&self) -> bool;
    /// It is handed out again.
    fn reuse(&mut self);
    /// Another handle on the same connection, when it carries requests side by side.
    fn share(&self) -> Option<Self>
    where
        Self: Sized;
    /// Which connection it is: handles from [`share`](Self::share) have their original's.
    fn id(&self) -> u64;
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
    /// What the last connection made to an origin said, and the turn to make one.
    made: HashMap<Origin, Made>,
}

/// What the pool learned of an origin's connections.
#[derive(Default)]
struct Made {
    /// The last connection made to it multiplexed (`Some(true)`), or did not, or could not be
    /// made (`Some(false)`: requests then connect side by side); `None` before the first.
    multiplexes: Option<bool>,
    /// Held by the request making a connection that may multiplex.
    turn: Arc<tokio::sync::Mutex<()>>,
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
        Self { inner: Mutex::new(Inner { path: None, idle: HashMap::new(), made: HashMap::new() }) }
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

    /// An open connection to `origin` that `fits`, if the pool has one (the most recently
    /// used first): an idle one, or a handle on a shared one, which stays; `path` is the
    /// network path's fingerprint now. Flushes everything when the path is not the one the
    /// pool was filled on; closed and stale connections are dropped, ones that do not fit stay.
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
        let mut conn = match idle[at].conn.share() {
            Some(handle) => {
                idle[at].since = now;
                handle
            }
            None => idle.remove(at).conn,
        };
        conn.reuse();
        Some(conn)
    }

    /// Keeps `conn` (its last response read to the end) for the next request to `origin`. A
    /// handle on a shared connection the pool holds only marks it used now.
    pub fn put(&self, origin: Origin, conn: C, path: Option<u64>, now: Instant) {
        let mut inner = self.lock();
        inner.on_path(path);
        let idle = inner.idle.entry(origin).or_default();
        if let Some(held) = idle.iter_mut().find(|i| i.conn.id() == conn.id()) {
            held.since = held.since.max(now);
        } else if idle.len() < PER_ORIGIN {
            idle.push(Idle { conn, since: now });
        }
    }

    /// Drops the connection `id` to `origin` from the pool: it failed.
    pub fn forget(&self, origin: &Origin, id: u64) {
        if let Some(idle) = self.lock().idle.get_mut(origin) {
            idle.retain(|i| i.conn.id() != id);
        }
    }

    /// The turn to make a connection to `origin`, for a request that found none in the pool:
    /// when the origin's connections may multiplex (the last one did, or none was made yet),
    /// the returned guard is held while connecting, and whoever waited for it should look in
    /// the pool again ([`take`](Self::take)) before connecting. `None`: connect at once
    /// (HTTP/1.1 origins, and after a failure, so that requests waiting for a connection that
    /// could not be made each try their own instead of queueing one behind another).
    pub async fn turn(&self, origin: &Origin) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        let turn = {
            let mut inner = self.lock();
            let made = inner.made.entry(origin.clone()).or_default();
            if made.multiplexes == Some(false) {
                return None;
            }
            made.turn.clone()
        };
        let held = turn.lock_owned().await;
        // What the connection made meanwhile said: requests queued behind one that found
        // HTTP/1.1, or failed, connect side by side rather than each in turn.
        let multiplexes = self.lock().made.get(origin).and_then(|m| m.multiplexes);
        (multiplexes != Some(false)).then_some(held)
    }

    /// A connection was made to `origin` (`None`: it could not be): what it says of the
    /// origin is learned, and a multiplexed one is shared from now on.
    pub fn made(&self, origin: &Origin, conn: Option<&C>, path: Option<u64>, now: Instant) {
        let shared = conn.and_then(C::share);
        self.lock().made.entry(origin.clone()).or_default().multiplexes = Some(shared.is_some());
        if let Some(handle) = shared {
            self.put(origin.clone(), handle, path, now);
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
pub async fn path_fingerprint() -> Option<u64> {
    let service = nw_path::PathService::shared().ok()?;
    Some(service.reading().await.ok()?.fingerprint())
}
