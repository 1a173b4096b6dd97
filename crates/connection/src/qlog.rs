//! Streaming qlog for QUIC connections: with `QLOGDIR` set, each QUIC connection this process
//! opens writes `QLOGDIR/<ODCID>_client.sqlog` (and each one a server built on
//! [`Qlog::from_env`] accepts, `…_server.sqlog`), a JSON-SEQ file (RFC 7464: every record an
//! RS byte, one JSON text, a line feed) in the qlog schema (draft-ietf-quic-qlog-main-schema)
//! named by the connection's original destination connection ID, as qvis and other qlog tools
//! expect. quinn writes the transport's events (packets sent, received and lost, recovery
//! metrics); the layers above add their own through [`Qlog::event`] (nw-transfer: HTTP/3
//! frames, which quinn does not see).
//!
//! The file is named once the first event says which connection it is (quinn's first event
//! carries the ODCID as its `group_id`; later ones carry it too, rewritten where quinn names
//! the connection by another ID); records written before that wait in memory. quinn
//! writes a record in several pieces, so pieces are gathered until the record's line feed and
//! each record reaches the file whole, never interleaved with another layer's.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// The variable that turns qlog on: the directory the files go to.
pub(crate) const ENV: &str = "QLOGDIR";

/// A connection's qlog, shared by quinn's writer and the layers above.
#[derive(Clone)]
pub struct Qlog(Arc<Mutex<Sink>>);

impl std::fmt::Debug for Qlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sink = lock(&self.0);
        f.debug_struct("Qlog").field("group", &sink.group).finish_non_exhaustive()
    }
}

struct Sink {
    dir: PathBuf,
    role: &'static str,
    start: Instant,
    file: Option<File>,
    /// The connection's ODCID, once an event has named it.
    group: Option<String>,
    /// Whole records written before the file could be named.
    waiting: Vec<u8>,
    /// The record quinn is writing, until its line feed.
    partial: Vec<u8>,
    /// Writing failed once (said at warn); the rest is dropped.
    failed: bool,
}

fn lock(sink: &Mutex<Sink>) -> std::sync::MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Qlog {
    /// A qlog for a new connection (`role`: `client` or `server`) and the stream quinn writes
    /// to, when `QLOGDIR` is set (and not empty). Give quinn the stream through the
    /// connection's `TransportConfig::qlog_stream`.
    #[allow(clippy::disallowed_methods, reason = "a driver: qlog times are from here")]
    pub fn from_env(role: &'static str, title: &str) -> Option<(Self, quinn::QlogStream)> {
        let dir = std::env::var_os(ENV).filter(|d| !d.is_empty())?;
        let start = Instant::now();
        let qlog = Self(Arc::new(Mutex::new(Sink {
            dir: PathBuf::from(dir),
            role,
            start,
            file: None,
            group: None,
            waiting: Vec::new(),
            partial: Vec::new(),
            failed: false,
        })));
        let mut config = quinn::QlogConfig::default();
        config
            .writer(Box::new(Writer(qlog.clone())))
            .title(Some(title.to_owned()))
            .description(Some(concat!("nwkit ", env!("CARGO_PKG_VERSION")).to_owned()))
            .start_time(start);
        let stream = config.into_stream()?;
        Some((qlog, stream))
    }

    /// Adds an event named `name` (`category:event`, e.g. `http3:frame_created`) with `data`,
    /// timed now, to this connection's file.
    #[allow(clippy::disallowed_methods, reason = "a driver: the event's time")]
    pub fn event(&self, name: &str, data: serde_json::Value) {
        let mut sink = lock(&self.0);
        let mut event = serde_json::json!({
            "time": sink.start.elapsed().as_secs_f64() * 1e3,
            "name": name,
            "data": data,
        });
        if let Some(group) = &sink.group {
            event["group_id"] = group.clone().into();
        }
        let mut record = vec![0x1e];
        record.extend_from_slice(event.to_string().as_bytes());
        record.push(b'\n');
        sink.commit(record);
    }

    /// The file, once it is named.
    pub fn path(&self) -> Option<PathBuf> {
        let sink = lock(&self.0);
        sink.group.as_ref().map(|g| sink.name(g))
    }
}

impl Sink {
    fn name(&self, group: &str) -> PathBuf {
        self.dir.join(format!("{group}_{}.sqlog", self.role))
    }

    /// One whole record: to the file, or to wait for the file's name.
    fn commit(&mut self, mut record: Vec<u8>) {
        if self.failed {
            return;
        }
        match (&self.group, group_id(&record)) {
            (None, found) => self.group = found,
            // quinn labels a client's later events with the server's connection ID; one file
            // is one connection, so every event carries the ODCID it is named by.
            (Some(group), Some(other)) if *group != other => {
                record = String::from_utf8_lossy(&record)
                    .replacen(
                        &format!("\"group_id\":\"{other}\""),
                        &format!("\"group_id\":\"{group}\""),
                        1,
                    )
                    .into_bytes();
            }
            _ => {}
        }
        if self.file.is_none() {
            let Some(group) = self.group.clone() else {
                self.waiting.extend_from_slice(&record);
                return;
            };
            let path = self.name(&group);
            match std::fs::create_dir_all(&self.dir).and_then(|()| File::create(&path)) {
                Ok(f) => self.file = Some(f),
                Err(e) => return self.fail(&path, &e),
            }
        }
        let waiting = std::mem::take(&mut self.waiting);
        if let Some(file) = &mut self.file
            && let Err(e) = file.write_all(&waiting).and_then(|()| file.write_all(&record))
        {
            let path = self.name(self.group.as_deref().unwrap_or_default());
            self.fail(&path, &e);
        }
    }

    fn fail(&mut self, path: &std::path::Path, e: &io::Error) {
        tracing::warn!("qlog: {}: {e}; no more qlog for this connection", path.display());
        self.failed = true;
        self.waiting.clear();
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // A connection that never sent a packet has no ODCID to be named by; what it wrote
        // still goes somewhere.
        if self.file.is_none() && !self.waiting.is_empty() && !self.failed {
            let name = format!("unnamed-{}-{:p}", std::process::id(), self);
            self.group = Some(name);
            let waiting = std::mem::take(&mut self.waiting);
            self.commit(waiting);
        }
    }
}

/// The `group_id` a record names, if any.
fn group_id(record: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(record).ok()?;
    let at = text.find("\"group_id\":\"")? + "\"group_id\":\"".len();
    let id: String = text[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    (!id.is_empty()).then_some(id)
}

/// What quinn writes through: pieces gathered into whole records.
struct Writer(Qlog);

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sink = lock(&self.0.0);
        sink.partial.extend_from_slice(buf);
        while let Some(end) = sink.partial.iter().position(|b| *b == b'\n') {
            let record: Vec<u8> = sink.partial.drain(..=end).collect();
            sink.commit(record);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
