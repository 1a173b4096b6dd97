//! `nw transfers`: the persistent queue that `nw get --queue` and `nw put --queue` fill — list
//! it, run it, clear what is finished.
use nw_transfer::queue::{Queued, Step, Summary};
use nw_transfer::scheduler;
use nw_transfer::{Event, Session, TransferError};
use serde_json::json;

use crate::Outcome;
use crate::get::{DiskArgs, SessionArgs, Settings, StoreArg, needs_trust, size};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// List every transfer in the store (what `nw transfers` alone does): downloads as #N,
    /// uploads as #uN.
    List(ListArgs),
    /// Run every unfinished transfer (queued, interrupted, or left running by a process that
    /// died), each download from its last checkpoint and each upload whole, under the
    /// scheduler: a few at a time, transient failures retried with backoff (a POST only when it
    /// could not connect), discretionary ones waiting for an unmetered path and power. Ends
    /// when each is done, failed, or out of retries. Each runs with the session flags it was
    /// queued with; the ones given here add to them (anchors, --allow-http, --no-ct, a
    /// --ct-log-list where it had none).
    Run(Box<RunArgs>),
    /// Forget finished transfers (done and failed). Their files are not touched.
    Clear(StoreArg),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// One JSON object per transfer, on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    store: StoreArg,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The most downloads at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    max_running: usize,
    /// How many times a transient failure is tried in all (with backoff from 1 s, doubling).
    #[arg(long, value_name = "N", default_value_t = 8)]
    attempts: u32,
    /// Events as JSON lines on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    session: SessionArgs,
    #[command(flatten)]
    store: StoreArg,
    #[command(flatten)]
    disk: DiskArgs,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.command {
        None => list(&args.list),
        Some(Sub::List(list_args)) => list(&list_args),
        Some(Sub::Clear(store)) => {
            let cleared = match store.open_existing()? {
                Some(store) => store.clear_finished()? + store.clear_finished_uploads()?,
                None => 0,
            };
            crate::output::error_line(&format!("cleared {cleared} finished transfers"));
            Ok(Outcome::Success)
        }
        Some(Sub::Run(run_args)) => run_queue(*run_args).await,
    }
}

fn list(args: &ListArgs) -> anyhow::Result<Outcome> {
    let (records, uploads) = match args.store.open_existing()? {
        Some(store) => (store.list()?, store.uploads()?),
        None => (Vec::new(), Vec::new()),
    };
    if args.json {
        let all = records
            .into_iter()
            .map(Queued::Download)
            .chain(uploads.into_iter().map(Queued::Upload));
        for queued in all {
            crate::output::line(&serde_json::to_string(&queued)?)?;
        }
        return Ok(Outcome::Success);
    }
    if records.is_empty() && uploads.is_empty() {
        crate::output::error_line(
            "no transfers; `nw get --queue URL` or `nw put --queue FILE URL` adds one",
        );
    }
    for r in &records {
        let progress = match r.total {
            Some(t) if t > 0 => format!(
                "{} of {} ({:.0}%)",
                size(r.offset),
                size(t),
                r.offset as f64 * 100.0 / t as f64
            ),
            _ => size(r.offset),
        };
        let error = r.error.as_deref().map(|e| format!("\n      {e}")).unwrap_or_default();
        crate::output::line(&format!(
            "#{:<4} {:<11} {:<28} {} -> {}{error}",
            r.id,
            r.state.as_str(),
            progress,
            r.url,
            r.dest.display()
        ))?;
    }
    for u in &uploads {
        let what = match u.status {
            Some(status) if u.state == nw_transfer::store::State::Done => {
                format!("{} {} sent: {status}", u.method, size(u.sent))
            }
            Some(status) => format!("{} answered {status}", u.method),
            None => u.method.clone(),
        };
        let error = u.error.as_deref().map(|e| format!("\n      {e}")).unwrap_or_default();
        crate::output::line(&format!(
            "#u{:<3} {:<11} {:<28} {} -> {}{error}",
            u.id,
            u.state.as_str(),
            what,
            u.source.display(),
            u.url,
        ))?;
    }
    Ok(Outcome::Success)
}

async fn run_queue(args: RunArgs) -> anyhow::Result<Outcome> {
    let Some(store) = args.store.open_existing()? else {
        return summarize(args.json, Summary::default());
    };
    let downloads = store.unfinished()?.into_iter().map(|r| r.url);
    let uploads = store.unfinished_uploads()?.into_iter().map(|u| u.url);
    let https = needs_trust(&downloads.chain(uploads).collect::<Vec<_>>());
    drop(store);
    let (settings, store) = (args.session.settings(https), args.store.path());
    let session = settings.session(&args.disk, &store)?;
    // Each transfer runs with the settings it was queued with, plus what this run was given.
    let sessions = |id: &str| -> Result<Session, TransferError> {
        let queued: Settings = serde_json::from_str(id).map_err(|e| {
            TransferError::Usage(format!(
                "its settings in the store are not understood ({e}); queue it again"
            ))
        })?;
        queued
            .with(&settings)
            .session(&args.disk, &store)
            .map_err(|e| TransferError::Usage(crate::output::error_text(&e)))
    };
    let config = scheduler::Config {
        max_running: args.max_running.max(1),
        max_attempts: args.attempts.max(1),
        ..scheduler::Config::default()
    };
    let json = args.json;
    let on = |record: &Queued, step: Step<'_>| {
        if json {
            if let Some(line) = json_line(record, &step) {
                let _ = crate::output::line(&line.to_string());
            }
        } else if let Some(text) = human_line(&step) {
            crate::output::error_line(&format!("{} {text}", record.label()));
        }
    };
    let summary = session.run_queue(config, &sessions, &on).await?;
    summarize(json, summary)
}

/// The run's last line, and its outcome.
fn summarize(json: bool, summary: Summary) -> anyhow::Result<Outcome> {
    let Summary { done, failed, interrupted } = summary;
    if json {
        crate::output::line(&json!({"event": "summary", "done": done, "failed": failed, "interrupted": interrupted}).to_string())?;
    } else {
        crate::output::error_line(&format!(
            "{done} done, {failed} failed, {interrupted} interrupted{}",
            if interrupted > 0 { " (a later `nw transfers run` takes them up again)" } else { "" }
        ));
    }
    Ok(if failed + interrupted == 0 { Outcome::Success } else { Outcome::Negative })
}

fn json_line(record: &Queued, step: &Step<'_>) -> Option<serde_json::Value> {
    let mut value = match step {
        Step::Attempt(n) => json!({"event": "attempt", "attempt": n}),
        Step::Event(e) => serde_json::to_value(e).ok()?,
        Step::Waiting(reason) => json!({"event": "waiting", "reason": reason}),
        Step::Done(done) => serde_json::to_value(done).ok()?,
        Step::Uploaded(done) => serde_json::to_value(done).ok()?,
        Step::Failed { error, retry_in } => json!({
            "event": "failed",
            "error": error.to_string(),
            "code": error.code(),
            "transient": error.transient(),
            "retry_in_s": retry_in.map(|d| d.as_secs_f64()),
        }),
    };
    if matches!(step, Step::Done(_) | Step::Uploaded(_)) {
        value["event"] = "done".into();
    }
    let (kind, id) = match record {
        Queued::Download(r) => ("download", r.id),
        Queued::Upload(u) => ("upload", u.id),
    };
    value["kind"] = kind.into();
    value["id"] = id.into();
    value["url"] = record.url().into();
    Some(value)
}

fn human_line(step: &Step<'_>) -> Option<String> {
    match step {
        Step::Attempt(1) => Some("starting".into()),
        Step::Attempt(n) => Some(format!("attempt {n}")),
        Step::Event(Event::Started { from, restarted, .. }) => match (from, restarted) {
            (_, Some(reason)) => Some(format!("restarting from zero: {}", reason.explain())),
            (0, None) => None,
            (from, None) => Some(format!("resuming after {}", size(*from))),
        },
        Step::Event(Event::Progress { .. } | Event::Sent { .. }) => None,
        Step::Waiting(reason) => Some(format!("waiting: {reason}")),
        Step::Done(done) => Some(format!("saved {} ({})", done.dest.display(), size(done.bytes))),
        Step::Uploaded(done) => Some(format!("sent {}: {}", size(done.sent), done.status)),
        Step::Failed { error, retry_in: Some(d) } => {
            Some(format!("{error}; retrying in {:.0} s", d.as_secs_f64()))
        }
        Step::Failed { error, retry_in: None } if error.transient() => {
            Some(format!("{error}; out of retries, left interrupted"))
        }
        Step::Failed { error, retry_in: None } => Some(format!("failed: {error}")),
    }
}
