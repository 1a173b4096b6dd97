//! The persistent queue: transfers recorded in the store now ([`Session::enqueue`]) and run
//! later ([`Session::run_queue`]) under the [`scheduler`](crate::scheduler) machine — its
//! concurrency cap, retries with backoff, and discretionary tasks that wait for an unmetered
//! path and power, each wait with its reason. The queue lives in the store, so a run killed
//! at any moment is picked up by the next one, each download from its last checkpoint.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::download::{Download, Event, Finished, hex, parse_sha256};
use crate::scheduler::{self, Action, Conditions, Outcome, Scheduler, TaskId, Wait};
use crate::store::{Record, State};
use crate::{Session, TransferError};

/// How often waits on the path and power are looked at again.
const CONDITIONS_EVERY: Duration = Duration::from_secs(2);

/// What happened to one queued transfer, for the caller to show.
#[derive(Debug)]
pub enum Step<'a> {
    /// An attempt starts (1 for the first).
    Attempt(u32),
    /// The running download's own events.
    Event(Event),
    /// It is not running, and why.
    Waiting(String),
    Done(&'a Finished),
    /// This attempt failed; `retry_in` when the scheduler will try again.
    Failed {
        error: &'a TransferError,
        retry_in: Option<Duration>,
    },
}

/// How a run of the queue ended.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub done: usize,
    /// Failed for good (a 404, a digest mismatch, a file in the way).
    pub failed: usize,
    /// Still failing after the last retry; resumable by a later run.
    pub interrupted: usize,
}

/// The path's cost and the power supply, as the scheduler's conditions.
fn conditions() -> Conditions {
    let unmetered = nw_path::current(&nw_path::Conditions::default()).is_ok_and(|p| {
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
        )?;
        self.store.find(&admitted.dest)?.ok_or_else(|| {
            TransferError::Usage(format!("{}: queued, then not found", admitted.dest.display()))
        })
    }

    /// Runs every unfinished transfer in the store until each is done, failed, or out of
    /// retries, telling `on` what happens to each. Downloads run side by side, up to the
    /// scheduler's `max_running`.
    #[allow(clippy::disallowed_methods, reason = "the queue's driver reads the clock and sleeps")]
    pub async fn run_queue(
        &self,
        config: scheduler::Config,
        on: &(dyn Fn(&Record, Step<'_>) + Sync),
    ) -> Result<Summary, TransferError> {
        let origin = Instant::now();
        let mut machine = Scheduler::new(config);
        let mut tasks = std::collections::BTreeMap::new();
        for record in self.store.unfinished()? {
            tasks.insert(machine.add(Duration::ZERO, record.discretionary), record);
        }
        let needs_conditions = tasks.values().any(|r| r.discretionary);
        if needs_conditions {
            machine.set_conditions(conditions());
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
                let sha256 = record.sha256.as_deref().and_then(|h| parse_sha256(h).ok());
                let job = Download {
                    url: record.url.clone(),
                    dest: record.dest.clone(),
                    sha256,
                    resume: true,
                    force: false,
                    // A transfer interrupted in segments resumes in them whatever this says.
                    segments: record.want_segments,
                };
                running.push(async move {
                    let mut events = |e: Event| on(record, Step::Event(e));
                    (task, self.download(&job, &mut events).await)
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
                        Ok(done) => {
                            summary.done += 1;
                            on(record, Step::Done(done));
                        }
                        Err(error) => {
                            on(record, Step::Failed { error, retry_in });
                            match (&outcome, retry_in) {
                                (_, Some(_)) => {}
                                (Outcome::Transient(_), None) => summary.interrupted += 1,
                                _ => {
                                    summary.failed += 1;
                                    // Refusals come before the download touches the store:
                                    // record them, so the next run does not try again blindly.
                                    // (A busy one is another live process's to record.)
                                    if matches!(error, TransferError::Usage(_) | TransferError::Refused(_)) {
                                        let text = error.to_string();
                                        self.store.set_state(record.id, State::Failed, Some(&text), true)?;
                                    }
                                }
                            }
                        }
                    }
                }
                () = tokio::time::sleep(sleep) => {
                    if needs_conditions {
                        machine.set_conditions(conditions());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::on_power;

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
