//! Tasks as URLSession has them: a download, a data task or an upload started on its own,
//! with one lifecycle — running, suspended, canceling, completed — its progress to read or
//! watch, and for a download a cancel that leaves resume data behind.
//!
//! A task runs on the Tokio runtime it was made on. Suspending one stops it at once (its
//! connection is closed; a download's bytes stay checkpointed) and resuming it starts it
//! again: a download from its checkpoint, a data task or a PUT upload from the start. A
//! request that must not be sent twice (a POST, a body that can be sent once) cannot be
//! suspended. Cancelling ends a task with [`TransferError::Cancelled`]; a cancelled
//! download's `.part` is removed, unless it was cancelled with
//! [`Task::cancel_producing_resume_data`], whose [`ResumeData`] (JSON, to keep anywhere)
//! continues it later, in this session or another. Dropping a task's handle lets it run to
//! its end unobserved, as a URLSession task does (one dropped while suspended, which nothing
//! can resume, ends there: a download keeps its `.part` and its record, interrupted).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

use crate::download::{Download, Event, Finished};
use crate::tasks::{Data, Request, Upload, Uploaded, idempotent};
use crate::{Session, TransferError};

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Transferring.
    #[default]
    Running,
    /// Stopped for now; [`Task::resume`] goes on.
    Suspended,
    /// Asked to cancel, and stopping.
    Canceling,
    /// Done: [`Task::wait`] has its result.
    Completed,
}

/// A task's state and progress, as URLSessionTask counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Status {
    /// Where it is in its life.
    pub state: State,
    /// Bytes of the request's body sent: an upload's file, a data task's body (a file or a
    /// stream as it goes, bytes in memory once answered).
    pub sent: u64,
    /// How many the request's body has, when known.
    pub expected_to_send: Option<u64>,
    /// Bytes of the answer received: a download's file (those it resumed from included; on
    /// a suspension, what was checkpointed), a data task's body (before its content coding
    /// is undone).
    pub received: u64,
    /// How many the answer has, when known.
    pub expected_to_receive: Option<u64>,
}

/// What a download's cancel leaves to continue it from: its URL and destination (the
/// `.part` beside it, checkpointed in the store). Serializable, so it can be kept anywhere;
/// the request's header fields are not in it (credentials stay out).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResumeData {
    /// The URL asked for.
    pub url: String,
    /// Where the file goes (absolute).
    pub dest: PathBuf,
    /// The expected SHA-256, hex, when one was given.
    pub sha256: Option<String>,
    /// Ranges fetched side by side.
    pub segments: usize,
    /// Bytes of the file done when it was cancelled.
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Run,
    Suspend,
    /// End it, keeping nothing.
    Cancel,
    /// End it, keeping what a download checkpointed.
    Keep,
}

type Attempt<T> = Pin<Box<dyn Future<Output = Result<T, TransferError>> + Send>>;

/// Where an attempt tells its progress.
#[derive(Clone)]
struct Progress(Arc<watch::Sender<Status>>);

impl Progress {
    fn set(&self, sending: bool, bytes: u64, expected: Option<u64>) {
        self.0.send_modify(|s| match sending {
            true => (s.sent, s.expected_to_send) = (bytes, expected),
            false => (s.received, s.expected_to_receive) = (bytes, expected),
        });
    }

    /// A transfer's events, told as the bytes received (`sending`: sent).
    fn events(&self, sending: bool) -> impl FnMut(Event) + Send + 'static {
        let progress = self.clone();
        move |event| match event {
            Event::Started { from, total, .. } => progress.set(sending, from, total),
            Event::Progress { received, total, .. } => progress.set(sending, received, total),
            Event::Sent { sent, total } => progress.set(true, sent, total),
        }
    }
}

/// A transfer running on its own: see the [module](self).
pub struct Task<T> {
    control: watch::Sender<Control>,
    status: Arc<watch::Sender<Status>>,
    result: oneshot::Receiver<Result<T, TransferError>>,
    suspendable: bool,
    resume: Option<ResumeData>,
}

impl<T> std::fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("status", &*self.status.borrow()).finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Task<T> {
    /// Runs `attempt` (told whether it is a later one, after a suspension, and where its
    /// progress goes) until it ends or is cancelled; `after_stop` runs each time an attempt
    /// is stopped from outside, told whether it was cancelled.
    fn spawn(
        mut attempt: impl FnMut(bool, Progress) -> Attempt<T> + Send + 'static,
        suspendable: bool,
        after_stop: impl Fn(bool, Progress) -> Attempt<()> + Send + 'static,
    ) -> Self {
        let (control, mut told) = watch::channel(Control::Run);
        let empty = Status::default();
        let status = Arc::new(watch::channel(empty).0);
        let (done, result) = oneshot::channel();
        let progress = Progress(status.clone());
        let set = status.clone();
        let state = move |state| set.send_modify(|s| s.state = state);
        tokio::spawn(async move {
            let mut again = false;
            let result = 'life: loop {
                // Suspended: until resumed or cancelled (a dropped handle can do neither).
                loop {
                    let now = *told.borrow_and_update();
                    match now {
                        Control::Run => break,
                        Control::Cancel if again => {
                            // Stopped already: what it left goes now.
                            if let Err(e) = after_stop(true, progress.clone()).await {
                                tracing::warn!("after a task was cancelled: {e}");
                            }
                            break 'life Err(TransferError::Cancelled);
                        }
                        Control::Cancel | Control::Keep => {
                            break 'life Err(TransferError::Cancelled);
                        }
                        Control::Suspend => state(State::Suspended),
                    }
                    if told.changed().await.is_err() {
                        break 'life Err(TransferError::Cancelled);
                    }
                }
                state(State::Running);
                let mut running = attempt(again, progress.clone());
                again = true;
                let stop = loop {
                    tokio::select! {
                        r = &mut running => break 'life r,
                        changed = told.changed() => match changed.map(|()| *told.borrow_and_update()) {
                            Ok(Control::Run) => {}
                            Ok(stop) => break stop,
                            // Nobody can stop it any more: it runs to its end.
                            Err(_) => break 'life running.await,
                        },
                    }
                };
                drop(running);
                if let Err(e) = after_stop(stop == Control::Cancel, progress.clone()).await {
                    tracing::warn!("after a task stopped: {e}");
                }
                if stop != Control::Suspend {
                    break Err(TransferError::Cancelled);
                }
            };
            state(State::Completed);
            let _ = done.send(result);
        });
        Self { control, status, result, suspendable, resume: None }
    }

    /// Its state and progress now.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// Its state and progress as they change.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Stops it for now, when it may be stopped and started again: `false` for a request
    /// that must not be sent twice (a POST, a body that can be sent once), which goes on.
    pub fn suspend(&self) -> bool {
        if self.suspendable {
            self.control.send_if_modified(|c| change(c, Control::Run, Control::Suspend));
        }
        self.suspendable
    }

    /// Goes on after [`suspend`](Self::suspend).
    pub fn resume(&self) {
        self.control.send_if_modified(|c| change(c, Control::Suspend, Control::Run));
    }

    /// Ends it: [`wait`](Self::wait) then gives [`TransferError::Cancelled`] (unless it had
    /// already ended), and a download's `.part` is removed.
    pub fn cancel(&self) {
        if self.status().state != State::Completed {
            self.status.send_modify(|s| s.state = State::Canceling);
        }
        self.control.send_replace(Control::Cancel);
    }

    /// Its result, once it ends.
    pub async fn wait(self) -> Result<T, TransferError> {
        self.result.await.unwrap_or(Err(TransferError::Cancelled))
    }
}

impl Task<Finished> {
    /// Cancels the download, keeping what it checkpointed (what it had in flight included),
    /// and gives what continues it ([`Session::download_task_resuming`]); `None` when it
    /// finished before the cancel took (its result is then lost, as URLSession's is) or left
    /// nothing to resume from.
    pub async fn cancel_producing_resume_data(self) -> Option<ResumeData> {
        let mut data = self.resume.clone()?;
        if self.status().state != State::Completed {
            self.status.send_modify(|s| s.state = State::Canceling);
        }
        self.control.send_replace(Control::Keep);
        let status = self.status.clone();
        if self.wait().await.is_ok() {
            return None;
        }
        // On a stop the bytes are what was checkpointed.
        data.bytes = status.borrow().received;
        let part = crate::download::part_path(&data.dest);
        part.exists().then_some(data)
    }
}

/// Moves `control` from `from` to `to`; whether it did.
fn change(control: &mut Control, from: Control, to: Control) -> bool {
    let moved = *control == from;
    if moved {
        *control = to;
    }
    moved
}

impl Session {
    /// Starts downloading `job` as a task (on the current Tokio runtime).
    pub fn download_task(self: &Arc<Self>, job: Download) -> Task<Finished> {
        let resume = ResumeData {
            url: job.url.clone(),
            // Absolute, so that it goes on where it began from any working directory.
            dest: std::path::absolute(&job.dest).unwrap_or_else(|_| job.dest.clone()),
            sha256: job.sha256.map(|d| d.iter().map(|b| format!("{b:02x}")).collect()),
            segments: job.segments,
            bytes: 0,
        };
        let (session, dest) = (self.clone(), job.dest.clone());
        let attempt = move |again: bool, progress: Progress| -> Attempt<Finished> {
            let session = session.clone();
            // Later attempts go on from the checkpoint, and never discard it.
            let job =
                Download { resume: job.resume || again, force: job.force && !again, ..job.clone() };
            Box::pin(async move { session.download(&job, &mut progress.events(false)).await })
        };
        let session = self.clone();
        let after_stop = move |cancelled: bool, progress: Progress| -> Attempt<()> {
            let (session, dest) = (session.clone(), dest.clone());
            Box::pin(async move {
                if cancelled {
                    session.cancelled(&dest).await
                } else {
                    // What it had in flight is written and checkpointed by now: the bytes
                    // it goes on from.
                    let kept = session.suspended(&dest).await?;
                    progress.0.send_modify(|s| s.received = kept);
                    Ok(())
                }
            })
        };
        let mut task = Task::spawn(attempt, true, after_stop);
        task.resume = Some(resume);
        task
    }

    /// Starts the download `data` describes again (on the current Tokio runtime): from its
    /// checkpoint, when its `.part` is still as the store recorded it.
    pub fn download_task_resuming(self: &Arc<Self>, data: &ResumeData) -> Task<Finished> {
        let sha256 = data.sha256.as_deref().and_then(|hex| {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .filter_map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            bytes.try_into().ok()
        });
        let job = Download {
            sha256,
            resume: true,
            segments: data.segments,
            ..Download::new(data.url.clone(), data.dest.clone())
        };
        self.download_task(job)
    }

    /// Starts sending `request` as a data task (on the current Tokio runtime), its answer
    /// read into memory under `limit` as [`Session::send`] does.
    pub fn data_task(self: &Arc<Self>, request: Request, limit: usize) -> Task<Data> {
        let suspendable = idempotent(&request.method) && request.body.repeatable();
        let session = self.clone();
        let attempt = move |_again: bool, progress: Progress| -> Attempt<Data> {
            let (session, request) = (session.clone(), request.clone());
            Box::pin(async move {
                session.send_observed(&request, limit, &mut progress.events(false)).await
            })
        };
        Task::spawn(attempt, suspendable, nothing)
    }

    /// Starts an upload as a task (on the current Tokio runtime), as
    /// [`Session::upload_observed`] does; a PUT may be suspended (and is sent again whole
    /// when resumed), a POST not.
    pub fn upload_task(self: &Arc<Self>, job: Upload) -> Task<Uploaded> {
        let suspendable = job.method == hyper::Method::PUT;
        let session = self.clone();
        let attempt = move |_again: bool, progress: Progress| -> Attempt<Uploaded> {
            let (session, job) = (session.clone(), job.clone());
            Box::pin(async move { session.upload_observed(&job, &mut progress.events(true)).await })
        };
        Task::spawn(attempt, suspendable, nothing)
    }
}

/// What a task that keeps nothing does after it stops.
fn nothing(_cancelled: bool, _progress: Progress) -> Attempt<()> {
    Box::pin(async { Ok(()) })
}
