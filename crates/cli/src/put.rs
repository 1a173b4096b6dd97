//! `nw put`: send a file as a request body (PUT, or POST), streamed, with progress; the
//! server's answer goes to stdout.

use std::io::Write as _;
use std::path::PathBuf;

use nw_transfer::Method;
use nw_transfer::tasks::Upload;

use crate::get::{
    DiskArgs, QueueArgs, Report, Retries, RetryArgs, SessionArgs, StoreArg, backoff, carried,
    needs_trust, not_as_asked, size, usage,
};
use crate::output::unless_stopped;
use crate::{Outcome, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The file to send; it is streamed, never read whole.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to send it (http:// or https://).
    #[arg(value_name = "URL")]
    url: String,
    /// POST instead of PUT. A PUT replaces what is at URL and may be sent again; a POST that
    /// may have reached the server is never repeated.
    #[arg(long)]
    post: bool,
    /// The body's Content-Type.
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream")]
    content_type: String,
    #[command(flatten)]
    credentials: crate::credentials::CredentialArgs,
    #[command(flatten)]
    retry: RetryArgs,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    session: SessionArgs,
    #[command(flatten)]
    store: StoreArg,
    /// Progress and the result as JSON lines on stdout (the answer's body is left out).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    match std::fs::metadata(&args.file) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(UsageError(format!("{}: not a regular file", args.file.display())).into());
        }
        Err(e) => return Err(UsageError(format!("{}: {e}", args.file.display())).into()),
    }
    let credentials = args.credentials.resolve(std::slice::from_ref(&args.url))?;
    credentials.refuse_queued(args.queue.queue, "send it without --queue")?;
    let https = needs_trust(&[&args.url]);
    let disk = DiskArgs::default();
    let session = args.session.session_with(https, &disk, &args.store, credentials.provider())?;
    let job = Upload {
        url: args.url.clone(),
        source: args.file.clone(),
        method: if args.post { Method::POST } else { Method::PUT },
        content_type: args.content_type.clone(),
        headers: credentials.for_url(&args.url),
    };
    if args.queue.queue {
        args.session.check_queueable()?;
        return match session.enqueue_upload(&job, args.queue.discretionary) {
            Ok(record) if args.json => {
                let mut line = serde_json::to_value(&record)?;
                line["event"] = "queued".into();
                crate::output::line(&line.to_string())?;
                Ok(Outcome::Success)
            }
            Ok(record) => {
                crate::output::error_line(&format!(
                    "queued #u{} {} {} -> {}; `nw transfers run` sends it",
                    record.id,
                    record.method,
                    record.source.display(),
                    record.url,
                ));
                Ok(Outcome::Success)
            }
            Err(e) if not_as_asked(&e) => Err(usage(&e)),
            Err(e) => Err(e.into()),
        };
    }
    let name = args.file.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut report = Report::new(args.json, &job.url, name.as_deref().unwrap_or(""));
    let mut retries = Retries::new(&args.retry);
    // A signal ends the upload, or the wait before sending it again, and says what that left.
    let mut stop = std::pin::pin!(crate::output::interrupted());
    let stopped = |report: &mut Report, code: u8| {
        report.finish();
        crate::output::error_line(&format!(
            "nw: stopped; {} was not sent whole{}",
            args.file.display(),
            if args.post {
                " (the server may have acted on part of a POST)"
            } else {
                " (a PUT can simply be sent again)"
            }
        ));
        Ok(Outcome::Exit(code))
    };
    let result = loop {
        let mut on = |event| report.event(&event);
        let sent = unless_stopped(session.upload_observed(&job, &mut on), &mut stop).await;
        let result = match sent {
            Ok(result) => result,
            Err(code) => return stopped(&mut report, code),
        };
        // A PUT is sent again whole; a POST only when it never left (it could not connect).
        let next = match &result {
            Err(e) if !args.post || !e.may_have_reached_the_server() => {
                retries.after(e).filter(|n| !n.resume).map(|n| (e, n))
            }
            _ => None,
        };
        let Some((e, next)) = next else { break result };
        report.finish();
        report.retrying(e, &next, "sending it again")?;
        if let Err(code) = unless_stopped(backoff(next.wait), &mut stop).await {
            return stopped(&mut report, code);
        }
    };
    report.finish();
    match result {
        Ok(done) => {
            if args.json {
                report.done(&done)?;
            } else {
                let m = &done.metrics;
                let seconds = (m.first_byte_ms - m.request_ms).max(1.0) / 1e3;
                let answer = match &done.answered_at {
                    Some(at) => format!("the answer is at {at}: {}", done.status),
                    None => done.status.to_string(),
                };
                crate::output::error_line(&format!(
                    "sent {} ({}, {}/s over {}): {answer}",
                    args.file.display(),
                    size(done.sent),
                    size(done.sent as f64 / seconds),
                    carried(m),
                ));
                let mut out = std::io::stdout().lock();
                out.write_all(&done.response)?;
                out.flush()?;
            }
            Ok(Outcome::Success)
        }
        Err(e) if not_as_asked(&e) => Err(usage(&e)),
        Err(e) => {
            let again = e.transient() && !args.post;
            report.failed(&e, if again { " (a PUT can simply be sent again)" } else { "" })?;
            Ok(Outcome::Negative)
        }
    }
}
