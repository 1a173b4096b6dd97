//! The denial log: one JSON line per denial, beside the store (`lnp.log`), kept to about a
//! MiB (the older half moves to `lnp.log.1`).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::gate::{Direction, Verdict};
use crate::identity::Identified;
use crate::store::Paths;

/// Past this size the log moves to `.1` before the next line.
const ROTATE_AT: u64 = 1 << 20;

/// One denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denial {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The app's identity.
    pub identity: String,
    /// The destination.
    pub destination: String,
    /// Why it is local.
    pub locality: String,
    /// The process, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Its executable.
    pub executable: String,
    /// What decided (policy, store, prompt, default).
    pub by: String,
    /// Outbound (the app reaching the destination) or inbound (the destination, a peer,
    /// reaching one of the app's listeners); lines written before it was kept read outbound.
    #[serde(default)]
    pub direction: Direction,
}

impl Denial {
    /// The denial a verdict records, stamped now.
    #[allow(clippy::disallowed_methods, reason = "the log's wall-clock stamp")]
    pub fn of(verdict: &Verdict, who: &Identified, direction: Direction) -> Self {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            at_ms,
            identity: verdict.identity.clone(),
            destination: verdict.destination.clone(),
            locality: verdict.locality.to_string(),
            pid: who.pid,
            executable: who.executable.clone(),
            by: serde_json::to_value(verdict.by)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            direction,
        }
    }
}

/// Appends a denial. A log this process may not write (an app running as a user, the log
/// root's) is skipped with a debug message: the denial itself still stands.
pub fn append(paths: &Paths, denial: &Denial) {
    tracing::info!(
        identity = %denial.identity,
        destination = %denial.destination,
        direction = denial.direction.as_str(),
        "local network prohibited ({})",
        denial.locality
    );
    let path = paths.log();
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > ROTATE_AT) {
        let mut old = path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&path, old);
    }
    let line = match serde_json::to_string(denial) {
        Ok(l) => l + "\n",
        Err(_) => return,
    };
    let written = crate::store::no_follow()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::debug!("{}: the denial was not logged: {e}", path.display());
    }
}

/// The log's denials, oldest first (the rotated half, then the current one); lines that do
/// not parse are skipped.
pub fn read(paths: &Paths) -> std::io::Result<Vec<Denial>> {
    let path = paths.log();
    let mut old = path.clone().into_os_string();
    old.push(".1");
    let mut out = Vec::new();
    for p in [std::path::PathBuf::from(old), path] {
        let file = match std::fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in std::io::BufReader::new(file).lines() {
            if let Ok(d) = serde_json::from_str(&line?) {
                out.push(d);
            }
        }
    }
    Ok(out)
}
