//! The persistent store of transfers: one SQLite file in WAL mode, embedded (rusqlite with the
//! bundled SQLite).
//!
//! A row per destination file: its URL, state, the recorded validator and length, and the
//! checkpointed offset — the number of bytes of `FILE.part` that were made durable before the
//! row claimed them. A segmented download also records each range and how much of it is durable;
//! its offset is then the durable prefix. `synchronous = FULL`, so a committed checkpoint
//! survives power loss too.
//!
//! Queued uploads have a table of their own: the file, the URL, the method, and how the last
//! attempt went. An upload is not resumable (HTTP has no standard way to continue one), so it
//! is sent whole each time; the process running it is recorded, so that two runs of the queue
//! never send it side by side and a run that was killed leaves it for the next.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::resume::{Partial, Segment, Validator};

/// The schema, versioned through `user_version`: 1 had no `segments` or `want_segments`, 2 no
/// `uploads`, 3 no `session`, 4 no `rate`.
const VERSION: i64 = 5;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    dest TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    validator TEXT,
    total INTEGER,
    offset INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    discretionary INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    segments TEXT,
    want_segments INTEGER NOT NULL DEFAULT 1,
    session TEXT,
    rate INTEGER
);
CREATE TABLE IF NOT EXISTS uploads (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    content_type TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    sent INTEGER NOT NULL DEFAULT 0,
    status INTEGER,
    discretionary INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    session TEXT
);
PRAGMA user_version = 5;
";
/// From version 1 to 2.
const MIGRATE_1: &str = "
ALTER TABLE transfers ADD COLUMN segments TEXT;
ALTER TABLE transfers ADD COLUMN want_segments INTEGER NOT NULL DEFAULT 1;
PRAGMA user_version = 2;
";
/// From versions 1 to 3 (after [`MIGRATE_1`]), the downloads' `session`; [`SCHEMA`] then
/// creates `uploads` for versions before 3.
const MIGRATE_TRANSFERS_SESSION: &str = "ALTER TABLE transfers ADD COLUMN session TEXT;";
/// From version 3, the uploads' `session`.
const MIGRATE_UPLOADS_SESSION: &str = "ALTER TABLE uploads ADD COLUMN session TEXT;";
/// From versions 1 to 4 (after the others), the downloads' measured `rate`.
const MIGRATE_RATE: &str = "ALTER TABLE transfers ADD COLUMN rate INTEGER;";

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting in the queue for `nw transfers run`.
    Queued,
    /// A process is (or was, until it died) downloading it.
    Running,
    /// Stopped with an error; resumable from the checkpoint.
    Interrupted,
    /// Failed in a way a retry will not fix.
    Failed,
    /// Complete: the file is in place.
    Done,
}

impl State {
    /// Its name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Failed => "failed",
            Self::Done => "done",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "failed" => Self::Failed,
            "done" => Self::Done,
            _ => Self::Interrupted,
        }
    }
}

/// One transfer, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Its number (`#3`).
    pub id: i64,
    /// The URL.
    pub url: String,
    /// Where the file goes.
    pub dest: PathBuf,
    /// Where it is in its life.
    pub state: State,
    /// The validator the checkpoint was made under (`ETag` or `Last-Modified`).
    pub validator: Option<Validator>,
    /// The file's length, when known.
    pub total: Option<u64>,
    /// Bytes checkpointed, front to back.
    pub offset: u64,
    /// The SHA-256 the file must have.
    pub sha256: Option<String>,
    /// It waits for an unmetered path and external power.
    pub discretionary: bool,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: Option<String>,
    /// A segmented download's ranges (empty otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
    /// The segments a queued download asks for.
    pub want_segments: usize,
    /// The identifier of the session that queued it ([`crate::Configuration::identifier`]).
    #[serde(skip)]
    pub session: Option<String>,
    /// Bytes per second its last attempt received on a connection (its segments' share, when
    /// several came side by side), as last checkpointed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
}

impl Record {
    /// What is on disk, as far as the checkpoint vouches for it.
    pub fn partial(&self) -> Partial {
        Partial {
            offset: self.offset,
            validator: self.validator.clone(),
            total: self.total,
            segments: self.segments.clone(),
            rate: self.rate,
        }
    }
}

/// The path that names a store in memory (SQLite's `:memory:`), gone with the process.
pub const IN_MEMORY: &str = ":memory:";

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[error("transfer store {path}: {what}: {source}; {hint}")]
pub struct StoreError {
    /// The store's file.
    pub path: PathBuf,
    /// What was being done.
    pub what: &'static str,
    /// What to try.
    pub hint: &'static str,
    /// SQLite's error.
    #[source]
    pub source: rusqlite::Error,
}

/// The store. Cheap to share between threads (one connection behind a mutex).
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

#[allow(clippy::disallowed_methods, reason = "rows are stamped with wall time")]
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64()
}

impl Store {
    /// `$NW_STORE`, else `$XDG_STATE_HOME/nwkit/transfers.db`, else
    /// `~/.local/state/nwkit/transfers.db`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("NW_STORE") {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
            home.join(".local/state")
        });
        base.join("nwkit/transfers.db")
    }

    /// Opens (or creates) the store at `path`; [`IN_MEMORY`] for one that lives in memory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // What is wrong with the file itself, when SQLite's error says: that hint, not the
        // step's.
        let err = |what, hint| {
            move |source: rusqlite::Error| {
                let hint = match source.sqlite_error_code() {
                    Some(rusqlite::ErrorCode::ReadOnly) => {
                        "this user may not write it (or its directory); check their permissions, or set NW_STORE"
                    }
                    Some(rusqlite::ErrorCode::CannotOpen) if path.is_dir() => {
                        "that is a directory; name a file, or set NW_STORE"
                    }
                    // /dev/null, a FIFO: SQLite gets as far as an fsync, which says "disk I/O
                    // error".
                    _ if path.exists() && !path.is_dir() && !path.is_file() => {
                        "that is not a regular file; name a file, or set NW_STORE"
                    }
                    _ => hint,
                };
                StoreError { path: path.to_owned(), what, hint, source }
            }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A failure shows up, with its reason, when SQLite tries to open the file.
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(err(
            "cannot open it",
            "check that its directory is writable, or set NW_STORE",
        ))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(err("cannot configure it", "is it an SQLite file?"))?;
        let mode: String =
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(err(
                "cannot switch it to WAL mode",
                "is it an SQLite file? move it aside to start a new store",
            ))?;
        if !mode.eq_ignore_ascii_case("wal") && path != Path::new(IN_MEMORY) {
            tracing::warn!("{}: journal mode is {mode}, not WAL", path.display());
        }
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(err("cannot configure it", "is it an SQLite file?"))?;
        // Migrating is one transaction, taken before the version is read: a crash mid-way
        // leaves the old version whole, and two processes opening an old store at once
        // migrate it once (the second waits, then reads the new version).
        conn.execute_batch("BEGIN IMMEDIATE;")
            .map_err(err("cannot lock it to check its schema", "is another process stuck?"))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err(
            "cannot read its schema version",
            "is it an SQLite file? move it aside to start a new store",
        ))?;
        if version > VERSION {
            return Err(StoreError {
                path: path.to_owned(),
                what: "it was written by a newer nw",
                hint: "use that nw, or set NW_STORE to another file",
                source: rusqlite::Error::InvalidQuery,
            });
        }
        let migrations = [
            (version == 1, MIGRATE_1),
            ((1..=3).contains(&version), MIGRATE_TRANSFERS_SESSION),
            (version == 3, MIGRATE_UPLOADS_SESSION),
            ((1..=4).contains(&version), MIGRATE_RATE),
        ];
        for (_, migration) in migrations.iter().filter(|(due, _)| *due) {
            conn.execute_batch(migration)
                .map_err(err("cannot migrate its tables", "move it aside to start a new store"))?;
        }
        conn.execute_batch(SCHEMA)
            .map_err(err("cannot create its tables", "move it aside to start a new store"))?;
        conn.execute_batch("COMMIT;")
            .map_err(err("cannot commit its tables", "check the disk and try again"))?;
        Ok(Self { path: path.to_owned(), conn: Mutex::new(conn) })
    }

    fn with<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&conn).map_err(|source| StoreError {
            path: self.path.clone(),
            what,
            hint: "check the disk, or move the store aside (its downloads then restart from zero)",
            source,
        })
    }

    /// The transfer writing `dest`, if any.
    pub fn find(&self, dest: &Path) -> Result<Option<Record>, StoreError> {
        let dest = dest.to_string_lossy().into_owned();
        self.with("cannot read a transfer", |c| {
            c.query_row(&format!("SELECT {COLUMNS} FROM transfers WHERE dest = ?1"), [dest], row)
                .optional()
        })
    }

    /// Starts (or starts over) the transfer of `url` to `dest`, running, nothing recorded yet.
    /// Returns its id.
    pub fn begin(&self, url: &str, dest: &Path, sha256: Option<&str>) -> Result<i64, StoreError> {
        let dest = dest.to_string_lossy().into_owned();
        let t = now();
        self.with("cannot record a transfer", |c| {
            c.query_row(
                "INSERT INTO transfers (url, dest, state, sha256, created, updated)
                 VALUES (?1, ?2, 'running', ?3, ?4, ?4)
                 ON CONFLICT(dest) DO UPDATE SET url = ?1, state = 'running', sha256 = ?3,
                   discretionary = 0, validator = NULL, total = NULL, offset = 0, attempts = 0,
                   error = NULL, segments = NULL, want_segments = 1, updated = ?4
                 RETURNING id",
                params![url, dest, sha256, t],
                |r| r.get(0),
            )
        })
    }

    /// Queues the transfer of `url` to `dest`. A queued transfer of the same URL that was
    /// interrupted keeps its checkpoint (it resumes); another URL starts over.
    pub fn enqueue(
        &self,
        url: &str,
        dest: &Path,
        sha256: Option<&str>,
        discretionary: bool,
        want_segments: usize,
        session: Option<&str>,
    ) -> Result<i64, StoreError> {
        let dest = dest.to_string_lossy().into_owned();
        let t = now();
        // In DO UPDATE, bare column names are the row as it was; `excluded` the new values.
        self.with("cannot queue a transfer", |c| {
            c.query_row(
                "INSERT INTO transfers (url, dest, state, sha256, discretionary, want_segments,
                   created, updated, session)
                 VALUES (?1, ?2, 'queued', ?3, ?4, ?6, ?5, ?5, ?7)
                 ON CONFLICT(dest) DO UPDATE SET
                   validator = CASE WHEN url = excluded.url THEN validator END,
                   total = CASE WHEN url = excluded.url THEN total END,
                   offset = CASE WHEN url = excluded.url THEN offset ELSE 0 END,
                   segments = CASE WHEN url = excluded.url THEN segments END,
                   url = excluded.url, state = 'queued', sha256 = excluded.sha256,
                   discretionary = excluded.discretionary, attempts = 0, error = NULL,
                   want_segments = excluded.want_segments, session = excluded.session,
                   updated = excluded.updated
                 RETURNING id",
                params![
                    url,
                    dest,
                    sha256,
                    discretionary,
                    t,
                    u64_sql(want_segments as u64),
                    session
                ],
                |r| r.get(0),
            )
        })
    }

    /// Every transfer, oldest first.
    pub fn list(&self) -> Result<Vec<Record>, StoreError> {
        self.with("cannot list transfers", |c| {
            let mut stmt = c.prepare(&format!("SELECT {COLUMNS} FROM transfers ORDER BY id"))?;
            stmt.query_map([], row)?.collect()
        })
    }

    /// Transfers `nw transfers run` takes on: queued, interrupted, and running ones whose
    /// process is gone (killed; their `.part` lock tells a live one apart), oldest first.
    pub fn unfinished(&self) -> Result<Vec<Record>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|r| matches!(r.state, State::Queued | State::Interrupted | State::Running))
            .collect())
    }

    /// Forgets the finished transfers (done or failed); returns how many.
    pub fn clear_finished(&self) -> Result<usize, StoreError> {
        self.with("cannot clear transfers", |c| {
            c.execute("DELETE FROM transfers WHERE state IN ('done', 'failed')", [])
        })
    }

    /// Records what the server said the file is: its validator and length, and the offset the
    /// body will be written from (0 on a fresh start), forgetting any segments. Written before
    /// the first byte.
    pub fn response(
        &self,
        id: i64,
        validator: Option<&Validator>,
        total: Option<u64>,
        offset: u64,
    ) -> Result<(), StoreError> {
        let validator = validator.and_then(|v| serde_json::to_string(v).ok());
        self.with("cannot record a response", |c| {
            c.execute(
                "UPDATE transfers SET validator = ?2, total = ?3, offset = ?4, state = 'running',
                   segments = NULL, updated = ?5 WHERE id = ?1",
                params![id, validator, total.map(u64_sql), u64_sql(offset), now()],
            )
            .map(drop)
        })
    }

    /// Claims the first `offset` bytes of the partial file (already durable), and for a
    /// segmented download the durable part of each segment; with the bytes per second the
    /// attempt receives, when measured (otherwise the last measure stays).
    pub fn checkpoint(
        &self,
        id: i64,
        offset: u64,
        segments: Option<&[Segment]>,
        rate: Option<u64>,
    ) -> Result<(), StoreError> {
        let segments = segments.and_then(|s| serde_json::to_string(s).ok());
        self.with("cannot checkpoint", |c| {
            c.execute(
                "UPDATE transfers SET offset = ?2, segments = ?3, updated = ?4, \
                 rate = COALESCE(?5, rate) WHERE id = ?1",
                params![id, u64_sql(offset), segments, now(), rate.map(u64_sql)],
            )
            .map(drop)
        })
    }

    /// Sets the state, with the error that caused it (if any), counting an attempt when asked.
    pub fn set_state(
        &self,
        id: i64,
        state: State,
        error: Option<&str>,
        count_attempt: bool,
    ) -> Result<(), StoreError> {
        self.with("cannot update a transfer", |c| {
            c.execute(
                "UPDATE transfers SET state = ?2, error = ?3, attempts = attempts + ?4,
                   updated = ?5 WHERE id = ?1",
                params![id, state.as_str(), error, i64::from(count_attempt), now()],
            )
            .map(drop)
        })
    }

    /// Sets the state to `to` (with `error`) only if it is `from`, in one statement: a stop
    /// that finds a download running never undoes a `done` written meanwhile. Whether it did.
    pub fn set_state_if(
        &self,
        id: i64,
        from: State,
        to: State,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.with("cannot update a transfer", |c| {
            c.execute(
                "UPDATE transfers SET state = ?3, error = ?4, updated = ?5
                   WHERE id = ?1 AND state = ?2",
                params![id, from.as_str(), to.as_str(), error, now()],
            )
            .map(|n| n > 0)
        })
    }
}

impl Store {
    /// Queues the upload of `source` to `url` with `method`.
    pub fn enqueue_upload(
        &self,
        url: &str,
        source: &Path,
        method: &str,
        content_type: &str,
        discretionary: bool,
        session: Option<&str>,
    ) -> Result<UploadRecord, StoreError> {
        let source = source.to_string_lossy().into_owned();
        self.with("cannot queue an upload", |c| {
            c.query_row(
                &format!(
                    "INSERT INTO uploads (url, source, method, content_type, state, discretionary,
                       created, updated, session)
                     VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?6, ?7)
                     RETURNING {UPLOAD_COLUMNS}"
                ),
                params![url, source, method, content_type, discretionary, now(), session],
                upload_row,
            )
        })
    }

    /// Every queued upload, oldest first.
    pub fn uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        self.with("cannot list uploads", |c| {
            let mut stmt =
                c.prepare(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY id"))?;
            stmt.query_map([], upload_row)?.collect()
        })
    }

    /// Uploads `nw transfers run` takes on: queued, interrupted, and running ones whose
    /// process is gone.
    pub fn unfinished_uploads(&self) -> Result<Vec<UploadRecord>, StoreError> {
        Ok(self.uploads()?.into_iter().filter(|u| takeable(u.state, u.pid, None)).collect())
    }

    /// Marks upload `id` running in this process and counts an attempt, unless another live
    /// process is sending it or it has finished; says whether it did.
    pub fn claim_upload(&self, id: i64) -> Result<bool, StoreError> {
        let me = i64::from(std::process::id());
        self.with("cannot claim an upload", |c| {
            let tx = c.unchecked_transaction()?;
            let (state, pid): (String, Option<i64>) =
                tx.query_row("SELECT state, pid FROM uploads WHERE id = ?1", [id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let free = takeable(State::parse(&state), pid, Some(me));
            if free {
                tx.execute(
                    "UPDATE uploads SET state = 'running', pid = ?2, attempts = attempts + 1,
                       updated = ?3 WHERE id = ?1",
                    params![id, me, now()],
                )?;
            }
            tx.commit()?;
            Ok(free)
        })
    }

    /// Records how an attempt at upload `id` ended: its state, the error (if any), the bytes
    /// sent and the server's status.
    pub fn upload_ended(
        &self,
        id: i64,
        state: State,
        error: Option<&str>,
        sent: u64,
        status: Option<u16>,
    ) -> Result<(), StoreError> {
        self.with("cannot update an upload", |c| {
            c.execute(
                "UPDATE uploads SET state = ?2, error = ?3, sent = ?4, status = ?5, pid = NULL,
                   updated = ?6 WHERE id = ?1",
                params![id, state.as_str(), error, u64_sql(sent), status, now()],
            )
            .map(drop)
        })
    }

    /// Forgets the finished uploads (done or failed); returns how many.
    pub fn clear_finished_uploads(&self) -> Result<usize, StoreError> {
        self.with("cannot clear uploads", |c| {
            c.execute("DELETE FROM uploads WHERE state IN ('done', 'failed')", [])
        })
    }
}

/// An upload in `state`, claimed by process `pid`, may be sent by process `me`: it is waiting,
/// or it was running in a process that is gone (or in `me` itself).
fn takeable(state: State, pid: Option<i64>, me: Option<i64>) -> bool {
    match state {
        State::Queued | State::Interrupted => true,
        State::Running => !pid.is_some_and(|p| Some(p) != me && alive(p)),
        State::Failed | State::Done => false,
    }
}

/// Process `pid` is alive (or exists under another user).
fn alive(pid: i64) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// One queued upload, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadRecord {
    /// Its number (`#u3`).
    pub id: i64,
    /// The URL.
    pub url: String,
    /// The file to send.
    pub source: PathBuf,
    /// PUT or POST.
    pub method: String,
    /// The body's `Content-Type`.
    pub content_type: String,
    /// Where it is in its life.
    pub state: State,
    /// The process sending it, while it runs.
    #[serde(skip)]
    pub pid: Option<i64>,
    /// Body bytes sent by the attempt that succeeded (0 until one does).
    pub sent: u64,
    /// The server's answer to the last attempt.
    pub status: Option<u16>,
    /// It waits for an unmetered path and external power.
    pub discretionary: bool,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last attempt's error.
    pub error: Option<String>,
    /// The identifier of the session that queued it ([`crate::Configuration::identifier`]).
    #[serde(skip)]
    pub session: Option<String>,
}

const UPLOAD_COLUMNS: &str = "id, url, source, method, content_type, state, pid, sent, status, \
     discretionary, attempts, error, session";

fn upload_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRecord> {
    let source: String = r.get(2)?;
    let state: String = r.get(5)?;
    Ok(UploadRecord {
        id: r.get(0)?,
        url: r.get(1)?,
        source: PathBuf::from(source),
        method: r.get(3)?,
        content_type: r.get(4)?,
        state: State::parse(&state),
        pid: r.get(6)?,
        sent: sql_u64(r.get(7)?),
        status: r.get(8)?,
        discretionary: r.get(9)?,
        attempts: u32::try_from(r.get::<_, i64>(10)?).unwrap_or(u32::MAX),
        error: r.get(11)?,
        session: r.get(12)?,
    })
}

const COLUMNS: &str = "id, url, dest, state, validator, total, offset, sha256, discretionary, \
     attempts, error, segments, want_segments, session, rate";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let validator: Option<String> = r.get(4)?;
    let state: String = r.get(3)?;
    let dest: String = r.get(2)?;
    Ok(Record {
        id: r.get(0)?,
        url: r.get(1)?,
        dest: PathBuf::from(dest),
        state: State::parse(&state),
        validator: validator.and_then(|v| serde_json::from_str(&v).ok()),
        total: r.get::<_, Option<i64>>(5)?.map(sql_u64),
        offset: sql_u64(r.get(6)?),
        sha256: r.get(7)?,
        discretionary: r.get(8)?,
        attempts: u32::try_from(r.get::<_, i64>(9)?).unwrap_or(u32::MAX),
        error: r.get(10)?,
        segments: r
            .get::<_, Option<String>>(11)?
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default(),
        want_segments: usize::try_from(r.get::<_, i64>(12)?).unwrap_or(1).max(1),
        session: r.get(13)?,
        rate: r.get::<_, Option<i64>>(14)?.map(sql_u64),
    })
}

/// SQLite integers are i64; lengths beyond 8 EiB do not occur.
fn u64_sql(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn sql_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn an_upload_is_claimed_by_one_live_process_and_left_to_the_next_when_that_one_died() {
        let store = Store::open(Path::new(IN_MEMORY)).unwrap();
        let u =
            store.enqueue_upload("http://h/x", Path::new("/x"), "PUT", "a/b", false, None).unwrap();
        assert_eq!((u.state, u.attempts), (State::Queued, 0));
        assert!(store.claim_upload(u.id).unwrap());
        assert_eq!(store.uploads().unwrap()[0].state, State::Running);
        // Running in this (live) process: not offered to another run.
        assert!(store.unfinished_uploads().unwrap().is_empty());
        // Another process, alive: it keeps its claim.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let set_pid = |pid: i64| {
            store.with("test", |c| c.execute("UPDATE uploads SET pid = ?1", [pid])).unwrap();
        };
        set_pid(i64::from(child.id()));
        assert!(store.unfinished_uploads().unwrap().is_empty());
        assert!(!store.claim_upload(u.id).unwrap(), "a live process's upload is not taken");
        child.kill().unwrap();
        child.wait().unwrap();
        // That process died (killed): the upload is the next run's.
        assert_eq!(store.unfinished_uploads().unwrap().len(), 1);
        assert!(store.claim_upload(u.id).unwrap());
        assert_eq!(store.uploads().unwrap()[0].attempts, 2);
        store.upload_ended(u.id, State::Done, None, 5, Some(201)).unwrap();
        assert!(!store.claim_upload(u.id).unwrap(), "a finished upload is not sent again");
        assert_eq!(store.clear_finished_uploads().unwrap(), 1);
    }
}
