//! The persistent queue: transfers recorded in the store now ([`Session::enqueue`]) and run
//! later ([`Session::run_queue`]) under the [`crate::scheduler`] machine — its
//! concurrency cap, retries with backoff, and discretionary tasks that wait for an unmetered
//! path and power, each wait with its reason. The queue lives in the store, so a run killed
//! at any moment is picked up by the next one, each download from its last checkpoint.
//!
//! Uploads queue too ([`Session::enqueue_upload`]). An upload is sent whole each attempt. A
//! PUT that fails transiently is retried like a download; a POST is retried only when it
//! failed to connect (nothing was sent), since a server may act on a POST it did not answer.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::download::{Download, Event, Finished, hex, parse_sha256};
use crate::scheduler::{self, Action, Conditions, Outcome, Scheduler, TaskId, Wait};
use crate::store::{Record, State, UploadRecord};
use crate::tasks::{Upload, Uploaded};
use crate::{Method, Session, TransferError};

/// A transfer in the queue.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Queued {
    /// A download.
    Download(Record),
    /// An upload.
    Upload(UploadRecord),
}

impl Queued {
    /// How it is named: `#3` for a download, `#u3` for an upload (they are numbered apart).
    pub fn label(&self) -> String {
        match self {
            Self::Download(r) => format!("#{}", r.id),
            Self::Upload(u) => format!("#u{}", u.id),
        }
    }

    /// Its URL.
    pub fn url(&self) -> &str {
        match self {
            Self::Download(r) => &r.url,
            Self::Upload(u) => &u.url,
        }
    }

    fn discretionary(&self) -> bool {
        match self {
            Self::Download(r) => r.discretionary,
            Self::Upload(u) => u.discretionary,
        }
    }

    /// The identifier of the session that queued it.
    pub fn session(&self) -> Option<&str> {
        match self {
            Self::Download(r) => r.session.as_deref(),
            Self::Upload(u) => u.session.as_deref(),
        }
    }
}

/// A session that runs queued transfers, made from the identifier they were queued with
/// ([`crate::Configuration::identifier`]); an error fails those transfers, with its message.
pub type Sessions<'a> = dyn Fn(&str) -> Result<Session, TransferError> + Sync + 'a;

/// `error` from an upload with `method`, as the queue treats it: a POST's transient failure
/// becomes [`TransferError::NotResent`] unless it could not connect (nothing was sent).
fn upload_failure(method: &str, error: TransferError) -> TransferError {
    if method.eq_ignore_ascii_case("POST")
        && error.may_have_reached_the_server()
        && error.transient()
    {
        TransferError::NotResent(Box::new(error))
    } else {
        error
    }
}

/// How a queued transfer ended well.
#[derive(Debug)]
enum Ended {
    Downloaded(Finished),
    Uploaded(Uploaded),
}

/// How often waits on the path and power are looked at again.
const CONDITIONS_EVERY: Duration = Duration::from_secs(2);

/// What happened to one queued transfer, for the caller to show.
#[derive(Debug)]
pub enum Step<'a> {
    /// An attempt starts (1 for the first).
    Attempt(u32),
    /// The running transfer's own events (an upload's are its progress).
    Event(Event),
    /// It is not running, and why.
    Waiting(String),
    /// The download finished.
    Done(&'a Finished),
    /// The upload finished.
    Uploaded(&'a Uploaded),
    /// This attempt failed; `retry_in` when the scheduler will try again.
    Failed {
        /// Why.
        error: &'a TransferError,
        /// When the scheduler tries again, if it will.
        retry_in: Option<Duration>,
    },
}

/// How a run of the queue ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Finished.
    pub done: usize,
    /// Failed for good (a 404, a digest mismatch, a file in the way).
    pub failed: usize,
    /// Still failing after the last retry; resumable by a later run.
    pub interrupted: usize,
}

/// The path's cost (from the process's path service) and the power supply, as the
/// scheduler's conditions.
async fn conditions() -> Conditions {
    let path = match nw_path::PathService::shared() {
        Ok(service) => service.path(&nw_path::Conditions::default()).await.ok(),
        Err(_) => None,
    };
    let unmetered = path.is_some_and(|p| {
        p.status == nw_path::Status::Satisfied
            && p.expensive != Some(true)
            && p.constrained != Some(true)
    });
    Conditions { unmetered, on_power: on_power(Path::new("/sys/class/power_supply")) }
}

/// On mains power: no battery discharging (a machine without a battery is on power).
fn on_power(supplies: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(supplies) else { return true };
    let read = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join(name)).map(|s| s.trim().to_owned()).unwrap_or_default()
    };
    !entries.flatten().any(|e| {
        let dir = e.path();
        read(&dir, "type") == "Battery" && read(&dir, "status") == "Discharging"
    })
}

/// A wait's kind, so a changed reason is reported once and a ticking deadline is not.
fn kind(wait: &Wait) -> (std::mem::Discriminant<Wait>, u32) {
    let attempt = if let Wait::Backoff { attempt, .. } = wait { *attempt } else { 0 };
    (std::mem::discriminant(wait), attempt)
}

impl Session {
    /// Records `job` in the store to run later, after the checks a download makes now (the
    /// URL, the transport-security policy, the file not in the way). A queued download always
    /// resumes what it has. `discretionary`: wait for an unmetered path and power.
    pub fn enqueue(&self, job: &Download, discretionary: bool) -> Result<Record, TransferError> {
        if job.force {
            return Err(TransferError::Usage(
                "--force cannot be queued (it would replace the file when the queue runs); \
                 remove the file first, or download it now"
                    .into(),
            ));
        }
        let job = Download { resume: true, ..job.clone() };
        self.allowed(&job.url)?;
        let admitted = self.admit(&job)?;
        let sha256 = job.sha256.map(|d| hex(&d));
        self.store.enqueue(
            &job.url,
            &admitted.dest,
            sha256.as_deref(),
            discretionary,
            job.segments.max(1),
            self.config.identifier.as_deref(),
        )?;
        self.store.find(&admitted.dest)?.ok_or_else(|| {
            TransferError::Usage(format!("{}: queued, then not found", admitted.dest.display()))
        })
    }

    /// Records `job` in the store to send later, after the checks an upload makes now (the
    /// URL, the transport-security policy, the file there). The file is named by its absolute
    /// path and read when the upload runs. `discretionary`: wait for an unmetered path and
    /// power.
    pub fn enqueue_upload(
        &self,
        job: &Upload,
        discretionary: bool,
    ) -> Result<UploadRecord, TransferError> {
        if !job.headers.is_empty() {
            return Err(TransferError::Usage(
                "header fields are not kept for queued uploads (credentials stay out of the \
                 store); upload without queueing"
                    .into(),
            ));
        }
        self.allowed(&job.url)?;
        let source = std::fs::canonicalize(&job.source)
            .map_err(|e| TransferError::io(&job.source, "cannot find it to upload", e))?;
        if !source.is_file() {
            return Err(TransferError::Usage(format!("{}: not a regular file", source.display())));
        }
        let method = job.method.as_str();
        Ok(self.store.enqueue_upload(
            &job.url,
            &source,
            method,
            &job.content_type,
            discretionary,
            self.config.identifier.as_deref(),
        )?)
    }

    /// One attempt at a queued upload, recorded in the store as it starts and ends.
    async fn run_upload(
        &self,
        record: &UploadRecord,
        on: &mut (dyn FnMut(Event) + Send),
    ) -> Result<Uploaded, TransferError> {
        let id = record.id;
        if !self.stored(move |s| s.claim_upload(id)).await? {
            return Err(TransferError::Taken(format!(
                "upload #u{} of {}",
                record.id,
                record.source.display()
            )));
        }
        let method = Method::from_bytes(record.method.as_bytes()).map_err(|_| {
            TransferError::Usage(format!("{:?} is not an HTTP method", record.method))
        });
        let result = match method {
            Ok(method) => {
                let job = Upload {
                    url: record.url.clone(),
                    source: record.source.clone(),
                    method,
                    content_type: record.content_type.clone(),
                    // Never stored: credentials stay out of the store.
                    headers: Vec::new(),
                };
                self.upload_observed(&job, on).await
            }
            Err(e) => Err(e),
        }
        .map_err(|e| upload_failure(&record.method, e));
        match &result {
            Ok(done) => {
                let (sent, status) = (done.sent, done.status);
                self.stored(move |s| s.upload_ended(id, State::Done, None, sent, Some(status)))
                    .await?;
            }
            Err(e) => {
                // Interrupted: a later run sends it again.
                let state = if e.transient() { State::Interrupted } else { State::Failed };
                let (said, status) = (e.to_string(), e.status());
                self.stored(move |s| s.upload_ended(id, state, Some(&said), 0, status)).await?;
            }
        }
        result
    }

    /// Runs every unfinished transfer in the store until each is done, failed, or out of
    /// retries, telling `on` what happens to each. Transfers run side by side, up to the
    /// scheduler's `max_running`. Each runs in the session `sessions` makes from the identifier
    /// it was queued with (one per identifier), or in this one when it has none or this one's.
    #[allow(clippy::disallowed_methods, reason = "the queue's driver reads the clock and sleeps")]
    pub async fn run_queue(
        &self,
        config: scheduler::Config,
        sessions: &Sessions<'_>,
        on: &(dyn Fn(&Queued, Step<'_>) + Sync),
    ) -> Result<Summary, TransferError> {
        let origin = Instant::now();
        let mut machine = Scheduler::new(config);
        let mut tasks = std::collections::BTreeMap::new();
        let (downloads, uploads) =
            self.stored(|s| Ok((s.unfinished()?, s.unfinished_uploads()?))).await?;
        let downloads = downloads.into_iter().map(Queued::Download);
        let uploads = uploads.into_iter().map(Queued::Upload);
        for queued in downloads.chain(uploads) {
            tasks.insert(machine.add(Duration::ZERO, queued.discretionary()), queued);
        }
        // The other sessions the transfers were queued with, each made once.
        let mut others = std::collections::BTreeMap::new();
        for id in tasks.values().filter_map(Queued::session) {
            if Some(id) != self.config.identifier.as_deref() && !others.contains_key(id) {
                others.insert(id.to_owned(), sessions(id).map_err(|e| e.to_string()));
            }
        }
        let session_for = |queued: &Queued| match queued.session().and_then(|id| others.get(id)) {
            None => Ok(self),
            Some(Ok(session)) => Ok(session),
            Some(Err(e)) => Err(TransferError::Usage(format!(
                "cannot make the session it was queued with: {e}"
            ))),
        };
        let needs_conditions = tasks.values().any(Queued::discretionary);
        if needs_conditions {
            machine.set_conditions(conditions().await);
        }
        let mut attempts = std::collections::BTreeMap::<TaskId, u32>::new();
        let mut reported = std::collections::BTreeMap::new();
        let mut running = FuturesUnordered::new();
        let mut summary = Summary::default();
        loop {
            let now = origin.elapsed();
            for action in machine.poll(now) {
                let Action::Start(task) = action else { continue };
                let Some(record) = tasks.get(&task) else { continue };
                let attempt = attempts.entry(task).or_insert(0);
                *attempt += 1;
                on(record, Step::Attempt(*attempt));
                reported.remove(&task);
                let session = session_for(record);
                running.push(async move {
                    let mut events = |e: Event| on(record, Step::Event(e));
                    let result = match (record, session) {
                        (_, Err(e)) => Err(e),
                        (Queued::Download(r), Ok(session)) => {
                            let sha256 = r.sha256.as_deref().and_then(|h| parse_sha256(h).ok());
                            let job = Download {
                                url: r.url.clone(),
                                dest: r.dest.clone(),
                                sha256,
                                resume: true,
                                force: false,
                                // Interrupted in segments: it resumes in them whatever this says.
                                segments: r.want_segments,
                                // Never stored: credentials stay out of the store.
                                headers: Vec::new(),
                            };
                            session.download(&job, &mut events).await.map(Ended::Downloaded)
                        }
                        (Queued::Upload(u), Ok(session)) => {
                            session.run_upload(u, &mut events).await.map(Ended::Uploaded)
                        }
                    };
                    (task, result)
                });
            }
            let mut conditions_wait = false;
            for (task, record) in &tasks {
                let Some(wait) = machine.wait(*task, now) else { continue };
                conditions_wait |= matches!(wait, Wait::Unmetered | Wait::Power);
                if reported.insert(*task, kind(&wait)) != Some(kind(&wait)) {
                    on(record, Step::Waiting(wait.explain(now)));
                }
            }
            if machine.pending() == 0 && running.is_empty() {
                return Ok(summary);
            }
            let mut sleep = machine.next_wake(now).map(|w| w.saturating_sub(now));
            if conditions_wait {
                sleep = Some(sleep.map_or(CONDITIONS_EVERY, |s| s.min(CONDITIONS_EVERY)));
            }
            let sleep = sleep.unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                Some((task, result)) = running.next(), if !running.is_empty() => {
                    let now = origin.elapsed();
                    let Some(record) = tasks.get(&task) else { continue };
                    let outcome = match &result {
                        Ok(_) => Outcome::Done,
                        Err(e) if e.transient() => Outcome::Transient(e.to_string()),
                        Err(e) => Outcome::Failed(e.to_string()),
                    };
                    machine.finished(now, task, outcome.clone());
                    let retry_in = match machine.wait(task, now) {
                        Some(Wait::Backoff { until, .. }) => Some(until.saturating_sub(now)),
                        _ => None,
                    };
                    match &result {
                        Ok(ended) => {
                            summary.done += 1;
                            on(record, match ended {
                                Ended::Downloaded(done) => Step::Done(done),
                                Ended::Uploaded(done) => Step::Uploaded(done),
                            });
                        }
                        Err(error) => {
                            on(record, Step::Failed { error, retry_in });
                            match (&outcome, retry_in) {
                                (_, Some(_)) => {}
                                (Outcome::Transient(_), None) => summary.interrupted += 1,
                                _ => {
                                    summary.failed += 1;
                                    // Refusals (a session that cannot be made included)
                                    // come before the transfer touches the store: record
                                    // them, so the next run does not try again blindly. (A
                                    // busy one is another live process's to record.)
                                    let refused = matches!(
                                        error,
                                        TransferError::Usage(_) | TransferError::Refused(_)
                                    );
                                    let text = error.to_string();
                                    let failed = State::Failed;
                                    match record {
                                        Queued::Download(r) if refused => {
                                            let id = r.id;
                                            self.stored(move |s| {
                                                s.set_state(id, failed, Some(&text), true)
                                            })
                                            .await?;
                                        }
                                        Queued::Upload(u) if refused => {
                                            let id = u.id;
                                            self.stored(move |s| {
                                                s.upload_ended(id, failed, Some(&text), 0, None)
                                            })
                                            .await?;
                                        }
                                        _ => {}
                                    }
                                }
                            }
                        }
                    }
                }
                () = tokio::time::sleep(sleep) => {
                    if needs_conditions {
                        machine.set_conditions(conditions().await);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TransferError, on_power, upload_failure};

    #[test]
    fn a_post_that_may_have_been_sent_is_not_sent_again_and_says_so() {
        let lost = || TransferError::Lost("reset".into());
        let e = upload_failure("POST", lost());
        assert!(!e.transient(), "{e}");
        assert!(e.to_string().contains("not sent again"), "{e}");
        assert!(upload_failure("PUT", lost()).transient(), "a PUT is sent again");
        let refused = TransferError::Status { url: "u".into(), status: 405, retry_after: None };
        assert!(matches!(upload_failure("POST", refused), TransferError::Status { .. }));
        // The server's answer is still recorded when the POST is not sent again.
        let busy = TransferError::Status { url: "u".into(), status: 503, retry_after: None };
        let e = upload_failure("POST", busy);
        assert!(matches!(e, TransferError::NotResent(_)) && e.status() == Some(503), "{e:?}");
        let unreachable = TransferError::Connect(Box::new(nw_connection::ConnectError::Cancelled));
        assert!(upload_failure("POST", unreachable).transient(), "nothing was sent");
    }

    #[test]
    fn power_is_read_from_the_supplies_batteries() {
        let dir = std::env::temp_dir().join(format!("nw-power-{}", std::process::id()));
        let bat = dir.join("BAT0");
        std::fs::create_dir_all(&bat).unwrap();
        std::fs::write(bat.join("type"), "Battery\n").unwrap();
        std::fs::write(bat.join("status"), "Discharging\n").unwrap();
        assert!(!on_power(&dir));
        std::fs::write(bat.join("status"), "Charging\n").unwrap();
        assert!(on_power(&dir));
        assert!(on_power(&dir.join("absent")), "no supplies: a machine on mains");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
