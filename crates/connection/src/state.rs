//! Where a connection is in its life: the states a [`Connection`](crate::Connection) publishes
//! and the driver reports while it prepares.

use serde::Serialize;

/// Where a connection is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// Made, not started.
    Setup,
    /// Resolving and racing.
    Preparing,
    /// No usable path under the parameters' conditions: waiting for one (not failing), with
    /// the reason. Racing starts when the path is satisfied.
    Waiting {
        /// Why the path is not usable, when it says.
        reason: Option<nw_path::Reason>,
    },
    /// Connected; the stream is available from [`Connection::ready`](crate::Connection::ready).
    Ready,
    /// Could not connect; [`Connection::ready`](crate::Connection::ready) has the full error and report.
    Failed {
        /// What went wrong, in a sentence.
        error: String,
    },
    /// Cancelled by [`Connection::cancel`](crate::Connection::cancel) (or dropped).
    Cancelled,
}
