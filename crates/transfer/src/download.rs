//! Downloads to a file that lose nothing: `FILE.part` is written with large writes by a thread
//! of its own, checkpointed into the store from the first byte (data made durable before the
//! offset that claims it), resumed with `If-Range`, and renamed to `FILE` only once its length
//! (and digest, when given) checks out.
//!
//! Memory is constant whatever the size: the body moves in 1 MiB chunks through bounded
//! channels. The optional SHA-256 runs on a thread of its own, off the receive path.

#![allow(
    clippy::disallowed_methods,
    reason = "the download driver reads the clock for its timings and progress"
)]

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use nw_connection::Url;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::resume::{self, Decision, Partial, Plan, RestartReason, Segment};
use crate::sink::{Gather, Pool, Sink};
use crate::store::{Record, State};
use crate::{Session, TransferError, http};

/// Body bytes are written in chunks of this size.
const CHUNK: usize = 1 << 20;
/// Chunks in flight to the writer and to the hasher.
const WRITE_QUEUE: usize = 8;
const HASH_QUEUE: usize = 16;
/// The least a throughput sample for the quality monitor covers.
const SAMPLE_BYTES: u64 = 256 << 10;
/// How often progress is reported.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// One download.
#[derive(Debug, Clone)]
pub struct Download {
    /// The URL to fetch.
    pub url: String,
    /// Where the file goes.
    pub dest: PathBuf,
    /// The expected SHA-256 of the whole file.
    pub sha256: Option<[u8; 32]>,
    /// Continue an interrupted download of `dest` from its checkpoint.
    pub resume: bool,
    /// Replace an existing `dest`, or discard an interrupted download of it.
    pub force: bool,
    /// Fetch the file as this many ranges side by side, each on a connection of its own, when
    /// the server allows ranges and the file is large enough (1: front to back). A download
    /// that was interrupted in segments resumes in them whatever this says.
    pub segments: usize,
    /// Request header fields to send besides the ones the download sets itself (`Range`,
    /// `If-Range`, `Host`, …, which cannot be given). `Authorization`, `Cookie` and
    /// `Proxy-Authorization` go only to the URL's own origin, never to one a redirect leads to.
    pub headers: Vec<(String, String)>,
}

impl Download {
    /// `url` to `dest`: front to back, no digest to check, no fields of the caller's; an
    /// existing `dest`, or an interrupted download of it, is left alone (a
    /// [`TransferError::InTheWay`] says which) unless `resume` or `force` is set.
    pub fn new(url: impl Into<String>, dest: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            dest: dest.into(),
            sha256: None,
            resume: false,
            force: false,
            segments: 1,
            headers: Vec::new(),
        }
    }
}

/// Fields a download or an upload sets itself, or that frame the message: never taken from the
/// caller.
const OWN_FIELDS: [&str; 8] = [
    "host",
    "range",
    "if-range",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
];

/// Fields that carry credentials: sent only to the origin they were given for.
const CREDENTIALS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Refuses request fields a load sets itself, and names that are not tokens or values with
/// line breaks (which would smuggle a field or a request).
pub fn check_fields(fields: &[(String, String)]) -> Result<(), TransferError> {
    for (name, value) in fields {
        let lower = name.to_ascii_lowercase();
        if OWN_FIELDS.contains(&lower.as_str()) {
            return Err(TransferError::Usage(format!(
                "the {name} field is the session's own to set (it frames or ranges the request); leave it out"
            )));
        }
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err()
            || hyper::header::HeaderValue::from_str(value).is_err()
            || value.contains(['\r', '\n'])
        {
            return Err(TransferError::Usage(format!(
                "{name:?}: {value:?} is not a header field (a name, and a value on one line)"
            )));
        }
    }
    Ok(())
}

/// The caller's `fields` for a request to `url` in a load that began at `first`: all of them
/// at that origin, and none that carry credentials anywhere else.
pub(crate) fn fields_for<'a>(
    fields: &'a [(String, String)],
    first: &crate::altsvc::Origin,
    url: &Url,
) -> Vec<(&'a str, String)> {
    let same = crate::origin(url) == *first;
    fields
        .iter()
        .filter(|(n, _)| same || !CREDENTIALS.contains(&n.to_ascii_lowercase().as_str()))
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect()
}

/// What a download reports while it runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// The response arrived: the body is written from `from`; `total` is the file's length.
    Started {
        /// Where this run starts writing (0 unless resumed).
        from: u64,
        /// The file's length, when known.
        total: Option<u64>,
        /// The HTTP version that answered.
        protocol: http::Protocol,
        /// Ranges fetched side by side (1: front to back).
        segments: usize,
        /// Why bytes already on disk were given up, when they were.
        #[serde(skip_serializing_if = "Option::is_none")]
        restarted: Option<RestartReason>,
        /// Why this download could not be resumed later, when the server gave no usable
        /// validator.
        #[serde(skip_serializing_if = "Option::is_none")]
        not_resumable: Option<String>,
        /// Why more than one segment was asked for and not used.
        #[serde(skip_serializing_if = "Option::is_none")]
        not_segmented: Option<String>,
    },
    /// Bytes of the file received and written so far (including those resumed from).
    Progress {
        /// Bytes of the file on disk.
        written: u64,
        /// Bytes of the file received: `written` and what waits in memory to be written (up to
        /// a chunk, 1 MiB, per connection) — what a progress bar shows, moving as the bytes
        /// arrive however slowly. An upload's bytes sent, as `written`.
        received: u64,
        /// The file's length, when known.
        total: Option<u64>,
        /// Bytes per second since this run started writing.
        rate: f64,
    },
    /// Bytes of a request's body handed to the connection so far (a data task's, as
    /// [`Session::send_observed`](crate::Session::send_observed) tells them; an upload's go
    /// as `Progress`). Sent again from 0 when the request is (a redirect that keeps the body).
    Sent {
        /// Bytes sent.
        sent: u64,
        /// The body's length, when known.
        total: Option<u64>,
    },
}

/// A finished download.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    /// The URL asked for.
    pub url: String,
    /// Where the file is.
    pub dest: PathBuf,
    /// The file's length.
    pub bytes: u64,
    /// Where this run started writing (0 unless resumed).
    pub resumed_from: u64,
    /// Why bytes already on disk were given up, when they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarted: Option<RestartReason>,
    /// Ranges fetched side by side.
    pub segments: usize,
    /// The file's SHA-256, when one was expected (and matched).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// How it went: timings, protocol, bytes, connection.
    pub metrics: Metrics,
    /// What the session's transfers, this one included, have shown of the link.
    pub link: nw_quality::Snapshot,
}

/// Checkpoint bookkeeping shared by the writer and the syncer.
#[derive(Debug, Default)]
struct Ledger {
    /// Per stream: where it writes, and how much is written and checkpointed.
    segs: Vec<Progress>,
    /// Written in segments: checkpoints record each segment.
    segmented: bool,
    /// Segmented: the bytes on disk outside the segments.
    already: u64,
    total: Option<u64>,
    done: bool,
    /// The writer thread is running: after `done`, the last checkpoint waits for it, so that
    /// what a stopped download had in flight is checkpointed too.
    writing: bool,
    failed: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    start: u64,
    end: Option<u64>,
    written: u64,
    committed: u64,
}

impl Ledger {
    /// Written and not yet checkpointed.
    fn uncommitted(&self) -> u64 {
        self.segs.iter().map(|s| s.written - s.committed).sum()
    }

    /// Bytes of the file on disk, kept and written.
    fn written(&self) -> u64 {
        if self.segmented {
            self.already + self.segs.iter().map(|s| s.written).sum::<u64>()
        } else {
            self.segs.first().map_or(0, |s| s.start + s.written)
        }
    }

    /// What a checkpoint of `written` (per stream) records: the durable prefix, and the
    /// segments when segmented.
    fn record(&self, written: &[u64]) -> (u64, Option<Vec<Segment>>) {
        if !self.segmented {
            return (
                self.segs.first().map_or(0, |s| s.start) + written.first().unwrap_or(&0),
                None,
            );
        }
        let segments: Vec<Segment> = self
            .segs
            .iter()
            .zip(written)
            .map(|(s, &done)| Segment { start: s.start, end: s.end.unwrap_or(s.start), done })
            .collect();
        (resume::durable_prefix(&segments, self.total.unwrap_or(0)), Some(segments))
    }
}

#[derive(Debug, Default)]
struct Shared {
    ledger: Mutex<Ledger>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The writer, before writing `len` bytes of stream `i`: waits until they keep the file
    /// within one `interval` of the store's checkpoint (that bounds what a kill -9 can cost),
    /// and returns the file offset where they go.
    fn admit(&self, i: usize, len: u64, interval: u64) -> u64 {
        let mut l = self.lock();
        while l.uncommitted() > 0 && l.uncommitted() + len > interval && l.failed.is_none() {
            l = self.changed.wait(l).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        l.segs[i].start + l.segs[i].written
    }

    /// The writer, after writing `len` bytes of stream `i`. Wakes the checkpoint thread only
    /// when a checkpoint is due: waking it for every chunk cost a context switch per MiB.
    fn wrote(&self, i: usize, len: u64, interval: u64) {
        let mut l = self.lock();
        l.segs[i].written += len;
        if l.uncommitted() >= interval / 2 {
            self.changed.notify_all();
        }
    }
}

/// What a download starts from, once admitted.
pub(crate) struct Admission {
    /// The destination, absolute: the store's key.
    pub(crate) dest: PathBuf,
    pub(crate) part: PathBuf,
    pub(crate) record: Option<Record>,
    pub(crate) partial: Partial,
    pub(crate) restart: Option<RestartReason>,
}

impl Session {
    /// Downloads `job.url` to `job.dest`, telling `on` each event.
    pub async fn download(
        &self,
        job: &Download,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Finished, TransferError> {
        let started = Instant::now();
        check_fields(&job.headers)?;
        let (url, security) = self.allowed(&job.url)?;
        let Admission { dest, part, record, partial, restart } = self.admitted(job).await?;
        let dest = &dest;
        let file = lock_part(&part).await?;
        let resuming = partial.offset > 0;
        let id = if resuming {
            record.as_ref().map_or(0, |r| r.id)
        } else {
            let hex = job.sha256.map(|d| hex(&d));
            let (url, at) = (job.url.clone(), dest.clone());
            self.stored(move |s| s.begin(&url, &at, hex.as_deref())).await?
        };
        if resuming {
            self.stored(move |s| s.set_state(id, State::Running, None, false)).await?;
        }

        let fetch =
            self.fetch(job, &url, security, id, partial, restart, (&part, file), started, on);
        let result = match self.config.resource_timeout {
            None => fetch.await,
            Some(limit) => {
                let left = limit.saturating_sub(started.elapsed());
                match tokio::time::timeout(left, fetch).await {
                    Ok(result) => result,
                    Err(_) => {
                        // Its writer and checkpoint threads let go of the `.part` first, so
                        // that what they had in flight is written and checkpointed.
                        drop(released(&part).await);
                        Err(TransferError::ResourceTimeout(limit).with_saved(&part))
                    }
                }
            }
        };
        match result {
            Ok(done) => {
                self.stored(move |s| s.set_state(id, State::Done, None, true)).await?;
                Ok(done)
            }
            Err(e) => {
                // A `.part` that holds nothing (a 404, a refused connection, a TLS failure,
                // a body that broke before its first byte) is not left behind, and the error
                // no longer says it keeps anything; one whose bytes failed the digest goes
                // too, so the next run starts clean instead of being refused.
                // Bytes no validator vouches for go as well: a resume would start from zero.
                // (A store that cannot be read here does not replace the failure's own error.)
                let at = dest.clone();
                let record = self.stored(move |s| s.find(&at)).await.ok().flatten();
                let unresumable = record.is_some_and(|r| r.validator.is_none());
                let bad = unresumable || matches!(e, TransferError::Digest { .. });
                let discarded = discard_part(&part, bad);
                let e = match e {
                    TransferError::Saved { source, .. } if discarded && unresumable => {
                        TransferError::Unresumable(source)
                    }
                    TransferError::Incomplete { got, expected, .. } if discarded && unresumable => {
                        TransferError::Unresumable(Box::new(TransferError::Lost(format!(
                            "the body ended after {got} of {expected} bytes"
                        ))))
                    }
                    TransferError::Saved { source, .. } if discarded => *source,
                    e => e,
                };
                let state = if e.transient() { State::Interrupted } else { State::Failed };
                let said = e.to_string();
                self.stored(move |s| {
                    s.set_state(id, state, Some(&said), true)?;
                    if discarded { s.checkpoint(id, 0, None, None) } else { Ok(()) }
                })
                .await?;
                Err(e)
            }
        }
    }

    /// After the download to `dest` was stopped from outside — its future dropped by a signal
    /// or a cancel, which leaves its record `running` — waits (up to 5 s) for its writer and
    /// checkpoint threads to let go of the `.part`, so that what it had in flight is written
    /// and checkpointed, then records it interrupted with `why`, and removes its `.part` when
    /// that holds nothing, or nothing could resume it (the server named no validator), under
    /// its lock, as after a failure. The `.part` left to resume, if any.
    pub async fn stopped(&self, dest: &Path, why: &str) -> Result<Option<PathBuf>, TransferError> {
        let dest = std::path::absolute(dest)
            .map_err(|e| TransferError::io(dest, "cannot make the path absolute", e))?;
        let part = part_path(&dest);
        drop(released(&part).await);
        let at = dest.clone();
        let Some(record) = self.stored(move |s| s.find(&at)).await? else { return Ok(None) };
        // What no validator vouches for cannot be resumed: it goes.
        let discarded = discard_part(&part, record.validator.is_none());
        let why = why.to_owned();
        self.stored(move |s| {
            s.set_state_if(record.id, State::Running, State::Interrupted, Some(&why))?;
            if discarded { s.checkpoint(record.id, 0, None, None) } else { Ok(()) }
        })
        .await?;
        Ok(part.exists().then_some(part))
    }

    /// After the download to `dest` was suspended (its future dropped): [`Session::stopped`],
    /// and the bytes checkpointed.
    pub(crate) async fn suspended(&self, dest: &Path) -> Result<u64, TransferError> {
        let dest = std::path::absolute(dest)
            .map_err(|e| TransferError::io(dest, "cannot make the path absolute", e))?;
        self.stopped(&dest, "suspended").await?;
        Ok(self.stored(move |s| s.find(&dest)).await?.map_or(0, |r| r.offset))
    }

    /// After the download to `dest` was cancelled (its future dropped): its `.part` removed
    /// and its record failed, as a cancelled URLSession task keeps nothing — once its
    /// threads have let go of the `.part`, so that their last checkpoint does not land after
    /// this.
    pub(crate) async fn cancelled(&self, dest: &Path) -> Result<(), TransferError> {
        let dest = std::path::absolute(dest)
            .map_err(|e| TransferError::io(dest, "cannot make the path absolute", e))?;
        let part = part_path(&dest);
        let held = released(&part).await;
        let Some(record) = self.stored(move |s| s.find(&dest)).await? else { return Ok(()) };
        if record.state != State::Done {
            let removed = held.is_some_and(|f| f.metadata().is_ok_and(|m| m.is_file()));
            if removed {
                let _ = std::fs::remove_file(&part);
            }
            self.stored(move |s| {
                s.set_state(record.id, State::Failed, Some("cancelled"), false)?;
                if removed { s.checkpoint(record.id, 0, None, None) } else { Ok(()) }
            })
            .await?;
        }
        Ok(())
    }

    /// A connection for `url`: one from the pool when one fits (with an HTTP/3 alternative on
    /// offer, only an HTTP/3 one does: a pooled TCP one gives way to it and stays pooled),
    /// else a new one, which, when it multiplexes, is shared with the requests that waited
    /// for it and the ones after.
    pub(crate) async fn connection_for(
        &self,
        url: &Url,
        routes: &crate::Routes,
        path: Option<u64>,
        share: usize,
    ) -> Result<http::Connection, TransferError> {
        // A pooled connection serves only a load routed the same way: one a PAC file sends
        // directly never goes out on a connection to a proxy, nor the other way round.
        let proxy = routes.tcp.proxy.as_ref().map(nw_connection::proxy::Proxy::shown);
        let fits = |c: &http::Connection| {
            (routes.h3.is_none() || c.protocol == http::Protocol::H3) && c.report.proxy == proxy
        };
        let origin = crate::origin(url);
        if let Some(conn) = self.pool.take(&origin, path, Instant::now(), fits) {
            return Ok(conn);
        }
        // Only HTTPS can multiplex (HTTP/2 is offered in ALPN, HTTP/3 is QUIC); a connection
        // that is one of several carrying a download is made for it alone.
        let may_multiplex =
            url.scheme == "https" && (self.config.http2 || routes.h3.is_some()) && share <= 1;
        let asked = Instant::now();
        let turn = if may_multiplex { self.pool.turn(&origin).await } else { None };
        if turn.is_some()
            && let Some(conn) = self.pool.take(&origin, path, Instant::now(), fits)
        {
            return Ok(conn);
        }
        // The time waited for the turn is taken from this request's time to connect: after a
        // connection that could not be made, the requests that waited for it fail within one
        // timeout, not two.
        let waited = asked.elapsed();
        let shortened;
        let routes = if waited.is_zero() {
            routes
        } else {
            let mut r = routes.clone();
            r.tcp.race.timeout = r.tcp.race.timeout.saturating_sub(waited);
            if let Some(h3) = &mut r.h3 {
                h3.params.race.timeout = h3.params.race.timeout.saturating_sub(waited);
            }
            shortened = r;
            &shortened
        };
        let conn = self.connect(url, routes, share).await;
        if may_multiplex {
            self.pool.made(&origin, conn.as_ref().ok(), path, Instant::now());
        }
        drop(turn);
        conn
    }

    /// Reads `check` bytes of `body`, which start at `from` in the file, and says whether
    /// they are the bytes `file` holds there.
    async fn overlap_matches(
        &self,
        body: &mut http::Body,
        file: &File,
        part: &Path,
        from: u64,
        check: u64,
    ) -> Result<bool, TransferError> {
        use std::os::unix::fs::FileExt as _;
        let len = usize::try_from(check).unwrap_or(usize::MAX);
        let mut theirs = vec![0; len];
        let mut got = 0;
        while got < len {
            let n = body
                .read_within(self.config.request_timeout, got as u64, &mut theirs[got..])
                .await?;
            if n == 0 {
                return Err(TransferError::Lost(format!(
                    "the answer ended after {got} of the {len} bytes asked again to compare"
                )));
            }
            got += n;
        }
        let mut ours = vec![0; len];
        file.read_exact_at(&mut ours, from).map_err(|e| {
            TransferError::io(part, "cannot read back the bytes before the checkpoint", e)
        })?;
        Ok(ours == theirs)
    }

    /// The URL `text` names, and how the transport-security policy lets it load.
    pub(crate) fn allowed(
        &self,
        text: &str,
    ) -> Result<(Url, crate::policy::Security), TransferError> {
        let url = crate::url(text)?;
        let security = crate::policy::check(&url, text, self.config.ats, self.config.allow_http)?;
        Ok((url, security))
    }

    /// Whether `job` may run given what is on disk and in the store, and what it starts from.
    /// Refuses (with the way out) to replace a file, to mix two downloads in one `.part`, or to
    /// throw away checkpointed bytes, unless the job says `force`.
    pub(crate) fn admit(&self, job: &Download) -> Result<Admission, TransferError> {
        // The store knows a download by its absolute destination: `-o big.bin` in two
        // directories are two downloads.
        let dest = std::path::absolute(&job.dest)
            .map_err(|e| TransferError::io(&job.dest, "cannot make the path absolute", e))?;
        let record = self.store.find(&dest)?;
        self.admit_with(job, dest, record)
    }

    /// [`Session::admit`] from a runtime: the store read on a blocking thread.
    async fn admitted(&self, job: &Download) -> Result<Admission, TransferError> {
        let dest = std::path::absolute(&job.dest)
            .map_err(|e| TransferError::io(&job.dest, "cannot make the path absolute", e))?;
        let at = dest.clone();
        let record = self.stored(move |s| s.find(&at)).await?;
        self.admit_with(job, dest, record)
    }

    /// What [`Session::admit`] decides, given the destination's absolute path and its record.
    fn admit_with(
        &self,
        job: &Download,
        dest: PathBuf,
        record: Option<Record>,
    ) -> Result<Admission, TransferError> {
        let part = part_path(&dest);
        refuse_unless_regular(&dest, "the destination")?;
        refuse_unless_regular(&part, "the .part file")?;
        if dest.exists()
            && !job.force
            && !(job.resume && self.unrecorded_finish(&dest, &part, record.as_ref(), &job.url)?)
        {
            return Err(TransferError::InTheWay { path: dest, kind: crate::InTheWay::Exists });
        }
        let part_len = std::fs::metadata(&part).map(|m| m.len()).ok();
        let mut partial = Partial::default();
        let mut restart: Option<RestartReason> = None;
        match (&record, part_len) {
            (Some(r), Some(_)) if r.url != job.url && !job.force => {
                return Err(TransferError::InTheWay {
                    path: part,
                    kind: crate::InTheWay::OtherDownload { url: r.url.clone() },
                });
            }
            (Some(r), Some(len))
                if r.state != State::Done && r.offset > 0 && !job.resume && !job.force =>
            {
                return Err(TransferError::InTheWay {
                    path: part,
                    kind: crate::InTheWay::Interrupted {
                        bytes: r.offset.min(len),
                        url: r.url.clone(),
                    },
                });
            }
            (Some(r), Some(len)) if job.resume && r.url == job.url && r.state != State::Done => {
                if len >= r.offset {
                    partial = r.partial();
                } else {
                    restart = Some(RestartReason::NoRecord);
                }
            }
            (None, Some(len)) if len > 0 && job.resume => restart = Some(RestartReason::NoRecord),
            (None, Some(len)) if len > 0 && !job.force => {
                return Err(TransferError::InTheWay {
                    path: part,
                    kind: crate::InTheWay::Unrecorded,
                });
            }
            _ => {}
        }
        Ok(Admission { dest, part, record, partial, restart })
    }

    /// A run stopped between renaming `FILE.part` to `FILE` and recording the download done
    /// leaves `FILE` complete, no `.part`, and a record that is not done. Then `FILE` goes
    /// back to being the `.part` (and `true` is returned), so that the resume checks it with
    /// the server (If-Range: still the same file?) and records it — instead of refusing to
    /// touch `FILE` and leaving `--force`, a download from zero, as the only way on.
    fn unrecorded_finish(
        &self,
        dest: &Path,
        part: &Path,
        record: Option<&Record>,
        url: &str,
    ) -> Result<bool, TransferError> {
        let Some(r) = record.filter(|r| r.url == url && r.state != State::Done) else {
            return Ok(false);
        };
        let len = std::fs::metadata(dest).map(|m| m.len()).ok();
        if part.exists() || r.total.is_none() || len != r.total {
            return Ok(false);
        }
        std::fs::rename(dest, part).map_err(|e| {
            TransferError::io(dest, "cannot take the finished file back to check it", e)
        })?;
        sync_dir(dest);
        tracing::info!(dest = %dest.display(), "finished before it was recorded; checking it again");
        Ok(true)
    }

    #[allow(clippy::too_many_arguments, reason = "one call site; the pieces of one download")]
    async fn fetch(
        &self,
        job: &Download,
        url: &Url,
        security: crate::policy::Security,
        id: i64,
        mut partial: Partial,
        restart: Option<RestartReason>,
        (part, file): (&Path, File),
        started: Instant,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Finished, TransferError> {
        // The URL asked, which redirects change; its routes and connection with it.
        let mut current = url.clone();
        let mut routes = self.routes(url, security).await?;
        let path = crate::pool::path_fingerprint().await;
        let mut conn = self.connection_for(&current, &routes, path, job.segments.max(1)).await?;
        let mut chain = crate::redirect::Chain::new(&job.url, self.config.max_redirects);
        let mut connected_at = started.elapsed();
        // The redirects answered on the way, for the metrics.
        let mut hops = Vec::new();
        let mut plan = match restart {
            Some(reason) => Plan::Restart(reason),
            None => resume::plan(&partial).overlapped(&partial, self.config.resource_timeout),
        };
        let mut want = job.segments.max(1);
        let mut not_segmented = None;
        let mut request_at;
        // The planned request, and a clean restart if its answer (or a segment's) says so.
        let (response, decision, ranges, extra) = 'attempt: loop {
            let (response, decision) = loop {
                let mut headers = plan.headers();
                headers.extend(fields_for(&job.headers, &crate::origin(url), &current));
                request_at = started.elapsed();
                let response = self.get(&mut conn, &current, &headers, &routes, want).await?;
                self.learn(&current, conn.protocol, response.header(hyper::header::ALT_SVC));
                let times = (connected_at, request_at, started.elapsed());
                let hop =
                    crate::metrics::Hop::new(current.to_string(), response.status, &conn, times);
                let step = self
                    .follow(&mut chain, response, conn, &mut current, &mut routes, path, want)
                    .await?;
                let mut response = match step {
                    crate::Followed::Hop(next) => {
                        hops.push(hop);
                        conn = next;
                        connected_at = started.elapsed();
                        continue;
                    }
                    crate::Followed::Answer(response, same) => {
                        conn = same;
                        response
                    }
                };
                let decision = match resume::decide(&plan, &partial, &view(&response)) {
                    // The bytes asked again before the checkpoint must be the ones on disk.
                    Decision::Append { from, total } if plan.check() > 0 => {
                        let check = plan.check();
                        if self
                            .overlap_matches(&mut response.body, &file, part, from, check)
                            .await?
                        {
                            Decision::Append { from: from + check, total }
                        } else {
                            Decision::Retry(RestartReason::ContentChanged)
                        }
                    }
                    d => d,
                };
                match decision {
                    Decision::Retry(reason) if !matches!(plan, Plan::Restart(_)) => {
                        tracing::debug!("{}: {}", job.url, reason.explain());
                        drop(response);
                        plan = Plan::Restart(reason);
                        partial.segments.clear();
                        // The unread body makes an HTTP/1.1 connection unusable; start afresh.
                        // (HTTP/2 and HTTP/3 reset the stream and go on.)
                        if conn.protocol == http::Protocol::Http11 {
                            conn = self.connect(&current, &routes, want).await?;
                        }
                    }
                    d => break (response, d),
                }
            };
            if let Decision::Fresh { total, validator, .. } = &decision {
                partial = Partial {
                    offset: 0,
                    validator: validator.as_ref().ok().cloned(),
                    total: *total,
                    segments: Vec::new(),
                    rate: None,
                };
            }
            // The ranges still to fetch when the file is fetched in segments, the first carried
            // by this response; none when it is written front to back.
            let ranges = match (&decision, partial.total, &partial.validator) {
                (Decision::Append { .. }, _, _) if !partial.segments.is_empty() => {
                    resume::remaining(&partial.segments)
                }
                (Decision::Append { .. }, Some(total), Some(_))
                | (Decision::Fresh { .. }, Some(total), Some(_))
                    if want > 1 =>
                {
                    let from = match decision {
                        Decision::Append { from, .. } => from,
                        _ => 0,
                    };
                    let accepts = response.status == 206
                        || response
                            .header(hyper::header::ACCEPT_RANGES)
                            .is_some_and(|v| v.trim().eq_ignore_ascii_case("bytes"));
                    let ranges = resume::split(from, total, want);
                    if !accepts {
                        not_segmented = Some("the server does not accept ranges".to_owned());
                        Vec::new()
                    } else if ranges.len() < 2 {
                        not_segmented = Some(format!(
                            "{} MiB left is too little to split (segments are at least {} MiB)",
                            (total - from) >> 20,
                            resume::MIN_SEGMENT >> 20
                        ));
                        Vec::new()
                    } else {
                        ranges
                    }
                }
                (Decision::Fresh { validator: Err(why), .. }, _, _) if want > 1 => {
                    not_segmented = Some(format!("{} to request ranges with", why.explain()));
                    Vec::new()
                }
                (Decision::Fresh { total: None, .. }, _, _) if want > 1 => {
                    not_segmented = Some("the server did not give the length".to_owned());
                    Vec::new()
                }
                _ => Vec::new(),
            };
            let (Some(total), Some(validator)) = (partial.total, &partial.validator) else {
                break (response, decision, Vec::new(), Vec::new());
            };
            if ranges.len() < 2 {
                break (response, decision, ranges, Vec::new());
            }
            let rest = &ranges[1..];
            // The first answer holds everything from `from` on unless it was asked for its
            // range alone (a segmented download resuming).
            let whole_rest = !matches!(plan, Plan::From { to: Some(_), .. });
            let extra = fields_for(&job.headers, &crate::origin(url), &current);
            match self
                .open_segments((&current, &job.url, &extra), &routes, rest, validator, total)
                .await
            {
                Ok(extra) => break 'attempt (response, decision, ranges, extra),
                Err(Opened::Failed(e)) if whole_rest => {
                    // The first connection works: it fetches the rest alone rather than the
                    // download failing for want of a second.
                    tracing::debug!("{}: a segment could not start: {e}", job.url);
                    not_segmented = Some(format!("another connection failed ({e})"));
                    break 'attempt (response, decision, Vec::new(), Vec::new());
                }
                Err(Opened::Failed(e)) => return Err(e),
                Err(Opened::Restart(reason)) => {
                    tracing::debug!("{}: a segment: {}", job.url, reason.explain());
                    drop(response);
                    plan = Plan::Restart(reason.clone());
                    partial.segments.clear();
                    want = 1;
                    not_segmented = Some(format!("a segment's answer: {}", reason.explain()));
                    if conn.protocol == http::Protocol::Http11 {
                        conn = self.connect(&current, &routes, want).await?;
                    }
                }
            }
        };
        let first_byte_at = started.elapsed();
        let complete = matches!(decision, Decision::Complete);
        let (from, restarted, not_resumable) = match decision {
            Decision::Fresh { validator, restarted, .. } => {
                (0, restarted, validator.err().map(|why| why.explain()))
            }
            Decision::Append { from, total } => {
                partial.total = total.or(partial.total);
                (from, None, None)
            }
            Decision::Complete => (partial.offset, None, None),
            Decision::Retry(reason) => {
                return Err(TransferError::Http(format!(
                    "{}: {} even when asked for the whole file",
                    job.url,
                    reason.explain()
                )));
            }
            Decision::Status(_) => return Err(TransferError::status_of(&job.url, &response)),
        };
        let total = partial.total;
        // Bytes on disk this run keeps: everything outside the ranges still to fetch.
        let already = match (ranges.is_empty(), total) {
            (false, Some(t)) => t - ranges.iter().map(|s| s.end - s.start).sum::<u64>(),
            _ => from,
        };
        {
            let (validator, segments) = (partial.validator.clone(), ranges.clone());
            self.stored(move |s| {
                s.response(id, validator.as_ref(), total, from)?;
                // Recorded before the first byte, so a kill from here on resumes segment by
                // segment.
                if segments.is_empty() {
                    Ok(())
                } else {
                    s.checkpoint(id, from, Some(&segments), None)
                }
            })
            .await?;
        }
        on(Event::Started {
            from: already,
            total,
            protocol: conn.protocol,
            segments: ranges.len().max(1),
            restarted: restarted.clone(),
            not_resumable,
            not_segmented: not_segmented.clone(),
        });

        // A resumed segmented download has durable bytes past `from`; otherwise everything
        // past it is stale.
        if partial.segments.is_empty() {
            file.set_len(from).map_err(|e| TransferError::io(part, "cannot truncate it", e))?;
        }
        let body_start = Instant::now();
        let mut conns = vec![conn];
        let mut streams = Vec::new();
        if !complete {
            let first = match ranges.first() {
                Some(s) => Stream {
                    start: s.start,
                    end: Some(s.end),
                    // A 206 carries exactly its range; a 200 (the whole file) is cut short.
                    exact: response.status == 206 && matches!(plan, Plan::From { to: Some(_), .. }),
                    body: response.body,
                },
                None => Stream { start: from, end: None, exact: false, body: response.body },
            };
            streams.push(first);
            for ((c, body), s) in extra.into_iter().zip(ranges.iter().skip(1)) {
                conns.push(c);
                streams.push(Stream { start: s.start, end: Some(s.end), exact: true, body });
            }
        }
        let hash = job.sha256.is_some() && ranges.is_empty();
        let received = if complete {
            Ok(Received::default())
        } else {
            self.receive(streams, file, part, id, (already, total), hash, on).await
        };
        let received = received.map_err(|e| e.with_saved(part))?;
        let transfer_time = body_start.elapsed();
        let bytes = if complete { partial.offset } else { received.written };
        if let Some(t) = total
            && !complete
            && (bytes != t || received.short)
        {
            return Err(TransferError::Incomplete {
                part: part.to_owned(),
                got: bytes,
                expected: t,
            });
        }
        let digest = match job.sha256 {
            Some(expected) => {
                // Nothing hashed on the way (already complete, or written in segments): read the
                // file back.
                let got = match received.digest {
                    Some(got) => got,
                    // Read back on a blocking thread: gigabytes, at disk speed.
                    None => {
                        let back = part.to_owned();
                        off_runtime(part, move || hash_file(&back, u64::MAX)).await??
                    }
                };
                if got != expected {
                    return Err(TransferError::Digest {
                        part: part.to_owned(),
                        expected: hex(&expected),
                        got: hex(&got),
                    });
                }
                Some(hex(&got))
            }
            None => None,
        };
        // Checked again: something may have been put where the file goes since admission.
        refuse_unless_regular(&job.dest, "the destination")?;
        let (from, to) = (part.to_owned(), job.dest.clone());
        off_runtime(part, move || {
            std::fs::rename(&from, &to)
                .map_err(|e| TransferError::io(&to, "cannot rename the finished .part to it", e))?;
            // The directory synced, so the new name survives a power loss.
            sync_dir(&to);
            Ok::<_, TransferError>(())
        })
        .await??;
        let mut metrics = Metrics::new(
            &conns[0],
            connected_at,
            request_at,
            first_byte_at,
            transfer_time,
            received.received,
            already,
        );
        metrics.redirects = hops;
        // A connection whose response was read to the end can carry the next request.
        for (i, conn) in conns.into_iter().enumerate() {
            if complete || received.ended.get(i).copied().unwrap_or(false) {
                self.pool.put(crate::origin(&current), conn, path, Instant::now());
            }
        }
        Ok(Finished {
            url: job.url.clone(),
            dest: job.dest.clone(),
            bytes,
            resumed_from: already,
            restarted,
            segments: ranges.len().max(1),
            sha256: digest,
            metrics,
            link: self.link(),
        })
    }

    /// Asks for each of `ranges` on a connection of its own, all at once. Every answer must be
    /// that exact range of the same version (`If-Range` with `validator`).
    async fn open_segments(
        &self,
        (url, text, extra): (&Url, &str, &[(&str, String)]),
        routes: &crate::Routes,
        ranges: &[Segment],
        validator: &resume::Validator,
        total: u64,
    ) -> Result<Vec<(http::Connection, http::Body)>, Opened> {
        let open = |s: Segment| async move {
            let plan = Plan::From {
                from: s.start,
                to: Some(s.end),
                if_range: validator.clone(),
                check: 0,
            };
            let share = ranges.len() + 1;
            let mut conn = self.connect(url, routes, share).await.map_err(Opened::Failed)?;
            // Through the session's GET, as the first request: the credential provider's
            // `Authorization` and the jar's cookies go with every range.
            let fields = [plan.headers(), extra.to_vec()].concat();
            let response =
                self.get(&mut conn, url, &fields, routes, share).await.map_err(Opened::Failed)?;
            match resume::decide(&plan, &Partial::default(), &view(&response)) {
                Decision::Append { total: Some(t), .. } if t == total => Ok((conn, response.body)),
                Decision::Append { .. } | Decision::Complete => {
                    Err(Opened::Restart(RestartReason::WrongRange))
                }
                Decision::Fresh { restarted, .. } => {
                    Err(Opened::Restart(restarted.unwrap_or(RestartReason::RangeIgnored)))
                }
                Decision::Retry(reason) => Err(Opened::Restart(reason)),
                Decision::Status(_) => {
                    Err(Opened::Failed(TransferError::status_of(text, &response)))
                }
            }
        };
        let opened = futures_util::future::join_all(ranges.iter().map(|s| open(*s))).await;
        opened.into_iter().collect()
    }

    /// Streams each body into `file` at its range; returns what was written. `already`: the
    /// bytes of the file on disk outside the streams' ranges; `hash`: compute the SHA-256 of
    /// the whole file on the way (one stream only).
    #[allow(clippy::too_many_arguments, reason = "one call site; the pieces of one body")]
    async fn receive(
        &self,
        streams: Vec<Stream>,
        file: File,
        part: &Path,
        id: i64,
        (already, total): (u64, Option<u64>),
        hash: bool,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Received, TransferError> {
        let segmented = streams.iter().all(|s| s.end.is_some());
        let shared = Arc::new(Shared::default());
        {
            let mut l = shared.lock();
            l.already = if segmented { already } else { 0 };
            l.total = total;
            l.segmented = segmented;
            l.segs = streams
                .iter()
                .map(|s| Progress { start: s.start, end: s.end, written: 0, committed: 0 })
                .collect();
        }
        // At least a few chunks, so the writer never waits on a checkpoint of nothing.
        let interval = self.config.checkpoint_bytes.max(4 * CHUNK as u64);
        let durable = self.config.durable;
        let sync_file = file
            .try_clone()
            .map_err(|e| TransferError::io(part, "cannot duplicate its descriptor", e))?;
        let store = self.store.clone();
        let began = Instant::now();
        // Side by side, the connections share the link: a resume asks one of them.
        let connections = u64::try_from(streams.len().max(1)).unwrap_or(1);
        let syncer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("nw-checkpoint".into())
                .spawn(move || {
                    checkpoints(&shared, interval, |offset, segments, received| {
                        if durable {
                            sync_file.sync_data().map_err(|e| format!("fsync: {e}"))?;
                        }
                        // What one connection carries, for the next resume's overlap.
                        let rate = rate(received / connections, began.elapsed());
                        store.checkpoint(id, offset, segments, rate).map_err(|e| e.to_string())
                    })
                })
                .map_err(|e| TransferError::io(part, "cannot start the checkpoint thread", e))?
        };
        // However receiving ends (dropped mid-way included), the checkpoint thread is told, and
        // makes a last checkpoint of what the writer wrote.
        let _finish = Finish(shared.clone());
        let (tx, mut rx) = mpsc::channel::<(usize, Bytes)>(WRITE_QUEUE);
        let direct = self.config.direct_from.zip(total).is_some_and(|(from, t)| t >= from);
        let mut sink = Sink::new(file, direct);
        let writer = {
            let shared = shared.clone();
            shared.lock().writing = true;
            let spawned = std::thread::Builder::new().name("nw-write".into()).spawn({
                let shared = shared.clone();
                move || -> std::io::Result<()> {
                    let _ending = Wrote(shared.clone());
                    while let Some((i, chunk)) = rx.blocking_recv() {
                        let len = chunk.len() as u64;
                        let at = shared.admit(i, len, interval);
                        sink.write_at(&chunk, at)?;
                        shared.wrote(i, len, interval);
                    }
                    Ok(())
                }
            });
            spawned.map_err(|e| {
                shared.lock().writing = false;
                TransferError::io(part, "cannot start the writer thread", e)
            })?
        };
        let first_start = streams.first().map_or(0, |s| s.start);
        let (hash_tx, hasher) = if hash && streams.len() == 1 {
            let (htx, mut hrx) = mpsc::channel::<Bytes>(HASH_QUEUE);
            let prefix = part.to_owned();
            let handle = std::thread::Builder::new()
                .name("nw-sha256".into())
                .spawn(move || -> std::io::Result<Option<[u8; 32]>> {
                    let Some(mut ctx) = nw_connection::crypto::sha256() else { return Ok(None) };
                    if first_start > 0 {
                        feed_file(&prefix, first_start, &mut *ctx)?;
                    }
                    while let Some(chunk) = hrx.blocking_recv() {
                        ctx.update(&chunk);
                    }
                    Ok(ctx.finish().as_ref().try_into().ok())
                })
                .map_err(|e| TransferError::io(part, "cannot start the hashing thread", e))?;
            (Some(htx), Some(handle))
        } else {
            (None, None)
        };

        let started = Instant::now();
        let idle = self.config.request_timeout;
        let count = streams.len();
        let pool = Pool::new(CHUNK);
        // Bytes received by this run's readers, written or not.
        let arrived = AtomicU64::new(0);
        let mut readers: FuturesUnordered<_> = streams
            .into_iter()
            .enumerate()
            .map(|(i, s)| read(i, s, &pool, tx.clone(), hash_tx.clone(), idle, &arrived))
            .collect();
        drop(tx);
        drop(hash_tx);
        let progress = |shared: &Shared| {
            let l = shared.lock();
            let written = l.written();
            let this_run: u64 = l.segs.iter().map(|s| s.written).sum();
            let received = written + arrived.load(Ordering::Relaxed).saturating_sub(this_run);
            let base = l.already + if l.segmented { 0 } else { first_start };
            let rate = (received - base) as f64 / started.elapsed().as_secs_f64().max(1e-3);
            Event::Progress { written, received, total, rate }
        };
        // The quality monitor gets a sample per 256 KiB or more moved, and what is left at the
        // end.
        let mut sampled = (shared.lock().written(), Instant::now());
        let mut sample = |shared: &Shared, last: bool| {
            let written = shared.lock().written();
            let bytes = written.saturating_sub(sampled.0);
            if bytes >= SAMPLE_BYTES || (last && bytes >= nw_quality::estimate::MIN_SAMPLE_BYTES) {
                let duration = sampled.1.elapsed();
                self.observe(|m, at| m.transfer(nw_quality::Sample { at, bytes, duration }));
                sampled = (written, Instant::now());
            }
        };
        let mut received: u64 = 0;
        let mut ended = vec![false; count];
        let outcome: Result<(), TransferError> = async {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            tick.tick().await;
            loop {
                tokio::select! {
                    next = readers.next() => match next {
                        None => return Ok(()),
                        Some(Err(e)) => return Err(e),
                        Some(Ok((i, got, end))) => {
                            received += got;
                            ended[i] = end;
                        }
                    },
                    _ = tick.tick() => {
                        on(progress(&shared));
                        sample(&shared, false);
                    }
                }
            }
        }
        .await;
        // Stops the other streams (after an error); their senders go with them.
        drop(readers);
        // The threads' last writes, checkpoint and hashing are waited for on a blocking
        // thread: the writer may still hold a queue of chunks, and the checkpoint syncs.
        let (wrote, synced, hashed) = off_runtime(part, move || {
            let wrote = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the writer thread panicked")));
            drop(_finish);
            let synced =
                syncer.join().unwrap_or_else(|_| Err("the checkpoint thread panicked".into()));
            (wrote, synced, hasher.map(std::thread::JoinHandle::join))
        })
        .await?;
        let digest = match hashed {
            Some(Ok(Ok(d))) => d,
            Some(Ok(Err(e))) => {
                return Err(TransferError::io(part, "cannot read it back to hash it", e));
            }
            Some(Err(_)) => return Err(TransferError::Http("the hashing thread panicked".into())),
            None => None,
        };
        wrote.map_err(|e| TransferError::io(part, "cannot write it", e))?;
        synced.map_err(TransferError::Checkpoint)?;
        outcome?;
        on(progress(&shared));
        sample(&shared, true);
        let l = shared.lock();
        let short = l.segs.iter().any(|s| s.end.is_some_and(|end| s.start + s.written < end));
        Ok(Received { written: l.written(), received, digest, ended, short })
    }
}

/// What the receiving of a download's bodies came to.
#[derive(Debug, Default)]
struct Received {
    /// Bytes of the file on disk now, as far as this run knows (kept and written).
    written: u64,
    /// Body bytes received.
    received: u64,
    digest: Option<[u8; 32]>,
    /// Per stream: whether its response was read to the end (its connection can be reused).
    ended: Vec<bool>,
    /// Some range ended before its end.
    short: bool,
}

/// One body and the range of the file it fills: from `start`, up to `end` when given. `exact`:
/// the body is exactly that range (a 206), so anything past it is an error; otherwise it is
/// cut at `end`.
struct Stream {
    body: http::Body,
    start: u64,
    end: Option<u64>,
    exact: bool,
}

/// Why a segment could not be opened.
enum Opened {
    /// Its answer says the segments cannot go on (the file changed, ranges ignored): start over.
    Restart(RestartReason),
    Failed(TransferError),
}

/// What a decision needs of `response`.
fn view(response: &http::Response) -> resume::Response<'_> {
    let h = |name: hyper::header::HeaderName| response.header(name);
    resume::Response {
        status: response.status,
        etag: h(hyper::header::ETAG),
        last_modified: h(hyper::header::LAST_MODIFIED),
        date: h(hyper::header::DATE),
        content_length: h(hyper::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        content_range: h(hyper::header::CONTENT_RANGE),
    }
}

/// Reads stream `i` to its end (or to the end of its range), sending chunks of up to 1 MiB
/// (gathered at their file alignment, see [`sink`]) to the writer and, when hashing, to the
/// hasher. Returns the bytes received and whether the body ended.
async fn read(
    i: usize,
    mut stream: Stream,
    pool: &Pool,
    tx: mpsc::Sender<(usize, Bytes)>,
    hash: Option<mpsc::Sender<Bytes>>,
    idle: Duration,
    arrived: &AtomicU64,
) -> Result<(usize, u64, bool), TransferError> {
    let limit = stream.end.map(|end| end - stream.start);
    let mut got: u64 = 0;
    let mut held = Gathered { i, gather: Gather::new(pool.clone(), stream.start), tx: tx.clone() };
    let gather = &mut held.gather;
    let ended = loop {
        if limit == Some(got) && !stream.exact {
            break false;
        }
        let room = gather.room();
        // Up to the end of the range; for an exact range past it, one byte: anything there is
        // an error.
        let want = match limit {
            Some(limit) => usize::try_from(limit - got).unwrap_or(usize::MAX).max(1),
            None => usize::MAX,
        };
        let take = want.min(room.len());
        let n = match stream.body.read_within(idle, got, &mut room[..take]).await {
            Ok(n) => n,
            Err(e) => {
                // What arrived before the connection dropped is written and checkpointed, not
                // thrown away with the unfilled chunk: a resume starts after it.
                if let Some(chunk) = gather.close() {
                    send(i, &tx, hash.as_ref(), chunk).await?;
                }
                return Err(e);
            }
        };
        if n == 0 {
            break true;
        }
        got += n as u64;
        arrived.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(limit) = limit
            && got > limit
        {
            return Err(TransferError::Http(format!(
                "the server sent more than the {limit} bytes of the range asked for"
            )));
        }
        if let Some(chunk) = gather.filled(n) {
            send(i, &tx, hash.as_ref(), chunk).await?;
        }
    };
    if let Some(chunk) = gather.close() {
        send(i, &tx, hash.as_ref(), chunk).await?;
    }
    Ok((i, got, ended))
}

/// Tells the checkpoint thread that the writer is done, however it ends.
struct Wrote(Arc<Shared>);

impl Drop for Wrote {
    fn drop(&mut self) {
        self.0.lock().writing = false;
        self.0.changed.notify_all();
    }
}

/// What a reader gathered and has not yet sent to the writer: when the download is dropped
/// mid-way (a cancel, a suspension, a signal), it still goes to the writer — at once when the
/// queue has room, else from a task of the runtime's that waits for room (the writer, which
/// ends only once every sender is gone, waits for it) — so what arrived is written and
/// checkpointed rather than lost with the unfilled chunk.
struct Gathered {
    i: usize,
    gather: Gather,
    tx: mpsc::Sender<(usize, Bytes)>,
}

impl Drop for Gathered {
    fn drop(&mut self) {
        let Some(chunk) = self.gather.close() else { return };
        if let Err(mpsc::error::TrySendError::Full(piece)) = self.tx.try_send((self.i, chunk))
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let tx = self.tx.clone();
            runtime.spawn(async move {
                let _ = tx.send(piece).await;
            });
        }
    }
}

/// Tells the checkpoint thread that no more data is coming.
struct Finish(Arc<Shared>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.lock().done = true;
        self.0.changed.notify_all();
    }
}

/// Removes `part` when it holds nothing, or always when `bad`, but only while holding its
/// lock: a `.part` another process has just taken up is never pulled from under it. Whether
/// it was removed.
fn discard_part(part: &Path, bad: bool) -> bool {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(part) else {
        return false;
    };
    // SAFETY: flock(2) on a descriptor we own; no memory involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return false;
    }
    let empty = file.metadata().is_ok_and(|m| m.is_file() && m.len() == 0);
    (empty || bad) && std::fs::remove_file(part).is_ok()
}

/// Refuses `path` when something other than a regular file is there (a symbolic link, a
/// device, a directory, a FIFO): a download replaces or writes only regular files.
fn refuse_unless_regular(path: &Path, what: &str) -> Result<(), TransferError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    let kind = meta.file_type();
    let (why, hint) = if kind.is_symlink() {
        ("a symbolic link", "remove it or choose another -o")
    } else if kind.is_dir() {
        ("a directory", "remove it or choose another -o")
    } else if kind.is_file() {
        return Ok(());
    } else {
        // `-o /dev/null`, as with curl: the body goes there as it comes with -o -, and
        // a redirect (never "remove it": that is the system's /dev/null).
        (
            "a device, FIFO or socket",
            "to send the body there, give -o - and redirect stdout (-o - > FILE)",
        )
    };
    Err(TransferError::NotAFile {
        path: path.to_owned(),
        why: format!("{what} is {why}, not a regular file; {hint}"),
    })
}

/// `part` with its lock taken, once no download of this process holds it: one just stopped
/// lets go when its writer and checkpoint threads are done. Waits up to 5 s; `None` when
/// there is no such file or the lock stayed held.
async fn released(part: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(part).ok()?;
    locked_within(&file, Duration::from_secs(5)).await.then_some(file)
}

/// Takes an exclusive lock on `file`, trying every 20 ms for up to `limit` (a sleep of the
/// runtime's, so other transfers go on meanwhile); whether it was taken.
#[allow(clippy::disallowed_methods, reason = "a bounded wait for the lock")]
async fn locked_within(file: &File, limit: Duration) -> bool {
    use std::os::fd::AsRawFd as _;
    let deadline = Instant::now() + limit;
    loop {
        // SAFETY: flock(2) on a descriptor we own; no memory involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens `FILE.part` (creating it) without following a symbolic link, checks that it is a
/// regular file of this user's, and takes an exclusive lock on it, so two processes never
/// write one download.
async fn lock_part(part: &Path) -> Result<File, TransferError> {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(part)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => TransferError::NotAFile {
                path: part.to_owned(),
                why: "the .part file is a symbolic link, not a regular file; remove it".into(),
            },
            _ => TransferError::io(part, "cannot open it for writing", e),
        })?;
    let meta = file.metadata().map_err(|e| TransferError::io(part, "cannot inspect it", e))?;
    if !meta.file_type().is_file() {
        return Err(TransferError::NotAFile {
            path: part.to_owned(),
            why: "the .part file is not a regular file; remove it".into(),
        });
    }
    // SAFETY: geteuid(2) has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(TransferError::NotAFile {
            path: part.to_owned(),
            why: format!(
                "the .part file belongs to user {}, not to this one ({me}); remove it or choose another -o",
                meta.uid()
            ),
        });
    }
    // A download just cancelled in this process may hold the lock until its checkpoint thread
    // has made its last checkpoint: give that a moment before calling the file busy.
    if !locked_within(&file, Duration::from_secs(2)).await {
        return Err(TransferError::Busy(part.to_owned()));
    }
    Ok(file)
}

async fn send(
    i: usize,
    tx: &mpsc::Sender<(usize, Bytes)>,
    hash: Option<&mpsc::Sender<Bytes>>,
    chunk: Bytes,
) -> Result<(), TransferError> {
    if let Some(h) = hash {
        h.send(chunk.clone())
            .await
            .map_err(|_| TransferError::Http("the hashing thread stopped".into()))?;
    }
    tx.send((i, chunk))
        .await
        .map_err(|_| TransferError::Http("the writer thread stopped (see the write error)".into()))
}

/// The checkpoint thread: every half interval written (or every second), `commit`s what is
/// written (makes it durable, then records its offset and segments); once more at the end.
fn checkpoints(
    shared: &Shared,
    interval: u64,
    mut commit: impl FnMut(u64, Option<&[Segment]>, u64) -> Result<(), String>,
) -> Result<(), String> {
    let mut l = shared.lock();
    loop {
        // Until half an interval is written, or the end, or a second has passed. (This used to
        // wake on every chunk written and checkpoint whatever was there: about 340 checkpoints,
        // each an fdatasync and a SQLite commit, per GiB instead of 32.)
        (l, _) = shared
            .changed
            .wait_timeout_while(l, Duration::from_secs(1), |l| {
                l.uncommitted() < interval / 2 && !(l.done && (!l.writing || l.uncommitted() > 0))
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let target: Vec<u64> = l.segs.iter().map(|s| s.written).collect();
        let done = l.done;
        if l.uncommitted() > 0 {
            let (offset, segments) = l.record(&target);
            drop(l);
            let result = commit(offset, segments.as_deref(), target.iter().sum());
            l = shared.lock();
            match result {
                Ok(()) => {
                    for (s, t) in l.segs.iter_mut().zip(&target) {
                        s.committed = *t;
                    }
                }
                Err(e) => {
                    l.failed = Some(e.clone());
                    shared.changed.notify_all();
                    return Err(e);
                }
            }
            shared.changed.notify_all();
        }
        if done && !l.writing && l.uncommitted() == 0 {
            return Ok(());
        }
    }
}

/// Bytes per second, having received `bytes` in `over`; none over less than a fifth of a
/// second, too short to say.
fn rate(bytes: u64, over: Duration) -> Option<u64> {
    let ms = over.as_millis();
    (ms >= 200).then(|| u64::try_from(u128::from(bytes) * 1000 / ms).unwrap_or(u64::MAX))
}

fn feed_file(
    path: &Path,
    len: u64,
    ctx: &mut dyn rustls::crypto::hash::Context,
) -> std::io::Result<()> {
    let mut file = File::open(path)?.take(len);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        ctx.update(&buf[..n]);
    }
}

fn hash_file(path: &Path, len: u64) -> Result<[u8; 32], TransferError> {
    let mut ctx = nw_connection::crypto::sha256()
        .ok_or_else(|| TransferError::Http("SHA-256 is unavailable".into()))?;
    feed_file(path, len, &mut *ctx)
        .map_err(|e| TransferError::io(path, "cannot read it to hash it", e))?;
    ctx.finish()
        .as_ref()
        .try_into()
        .map_err(|_| TransferError::Http("SHA-256 gave the wrong length".into()))
}

/// Runs `work` on a blocking thread (reading a file back, syncing, waiting for the writer's
/// threads): the runtime goes on meanwhile. `part` names the download in the error a panic
/// there becomes.
async fn off_runtime<T: Send + 'static>(
    part: &Path,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        TransferError::io(part, "finishing it on a blocking thread", std::io::Error::other(e))
    })
}

/// `FILE.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Makes a rename durable.
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a 64-digit hex SHA-256.
pub fn parse_sha256(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not a SHA-256: give 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_was_gathered_reaches_a_full_writer_queue_after_a_stop() {
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send((0, Bytes::from_static(b"queued"))).unwrap();
        let mut gather = Gather::new(Pool::new(1 << 16), 0);
        gather.room()[..5].copy_from_slice(b"tail!");
        assert!(gather.filled(5).is_none(), "a chunk is not full after 5 bytes");
        drop(Gathered { i: 3, gather, tx });
        let first = rx.recv().await.unwrap();
        assert_eq!(&first.1[..], b"queued");
        let late = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        let late = late.expect("the gathered bytes came").expect("a chunk");
        assert_eq!((late.0, &late.1[..]), (3, &b"tail!"[..]));
    }

    /// A writer as fast as a disk (a millisecond a chunk): checkpoints come every half
    /// interval (not after every chunk), it never runs more than one interval ahead of the
    /// checkpoint, and the last checkpoint covers everything.
    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the writer takes a moment per chunk, as a disk does"
    )]
    fn a_fast_writer_is_checkpointed_every_half_interval_and_never_runs_an_interval_ahead() {
        const MIB: u64 = 1 << 20;
        let (interval, chunks) = (8 * MIB, 64);
        let shared = Arc::new(Shared::default());
        shared.lock().segs =
            vec![Progress { start: 0, end: Some(chunks * MIB), written: 0, committed: 0 }];
        let syncer = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut offsets = Vec::new();
                checkpoints(&shared, interval, |offset, segments, received| {
                    assert!(segments.is_none());
                    assert_eq!(received, offset, "one stream from zero receives its offset");
                    offsets.push(offset);
                    Ok(())
                })
                .map(|()| offsets)
            })
        };
        let mut ahead = 0;
        for _ in 0..chunks {
            let at = shared.admit(0, MIB, interval);
            ahead = ahead.max(at + MIB - shared.lock().segs[0].committed);
            std::thread::sleep(Duration::from_millis(1));
            shared.wrote(0, MIB, interval);
        }
        drop(Finish(shared.clone()));
        let offsets = syncer.join().unwrap().unwrap();
        assert!(ahead <= interval, "the writer ran {ahead} bytes past the checkpoint");
        assert_eq!(offsets.last(), Some(&(chunks * MIB)), "checkpoints: {offsets:?}");
        assert!(offsets.windows(2).all(|w| w[0] < w[1]), "checkpoints: {offsets:?}");
        // 64 MiB in halves of an 8 MiB interval is 16 checkpoints (a few more if a loaded
        // machine stalls the writer past the one-second timer); one after every chunk is 64.
        assert!(offsets.len() <= 24, "{} checkpoints: {offsets:?}", offsets.len());
    }
}
