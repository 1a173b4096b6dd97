//! Connection and attempt identifiers, named the way logs are read: `C7` is the seventh
//! connection of this process, `C7.2` its second attempt.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A connection's identifier, sequential per process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u32);

impl ConnectionId {
    /// The next identifier of this process.
    pub fn next() -> Self {
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The `n`th attempt (from 1) of this connection.
    pub fn attempt(self, n: u32) -> AttemptId {
        AttemptId { connection: self, n }
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}", self.0)
    }
}

/// An attempt's identifier: its connection and its ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptId {
    /// The connection it belongs to.
    pub connection: ConnectionId,
    /// Its ordinal within the connection, from 1.
    pub n: u32,
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.connection, self.n)
    }
}

impl Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for AttemptId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sequential_and_hierarchical() {
        let a = ConnectionId::next();
        let b = ConnectionId::next();
        assert!(b.0 > a.0);
        assert_eq!(ConnectionId(8).to_string(), "C8");
        assert_eq!(ConnectionId(8).attempt(2).to_string(), "C8.2");
    }
}
