//! `nw put`: send a file as a request body (PUT, or POST), streamed, with progress; the
//! server's answer goes to stdout.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use nw_transfer::tasks::Upload;
use nw_transfer::{Method, TransferError};

use crate::get::{Bar, SessionArgs, size, with_url};
use crate::{Outcome, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The file to send; it is streamed, never read whole.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Where to send it (http:// or https://).
    #[arg(value_name = "URL")]
    url: String,
    /// POST instead of PUT. A PUT replaces what is at URL and may be sent again; a POST is
    /// never repeated.
    #[arg(long)]
    post: bool,
    /// The body's Content-Type.
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream")]
    content_type: String,
    #[command(flatten)]
    session: SessionArgs,
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
    let https = args.url.to_ascii_lowercase().starts_with("https:");
    let session = args.session.session(https)?;
    let job = Upload {
        url: args.url.clone(),
        source: args.file.clone(),
        method: if args.post { Method::POST } else { Method::PUT },
        content_type: args.content_type.clone(),
    };
    let tty = !args.json && std::io::stderr().is_terminal();
    let mut bar = Bar::new(tty);
    let json = args.json;
    let result = session
        .upload_observed(&job, &mut |event| {
            if json {
                let mut value = serde_json::to_value(&event).unwrap_or_default();
                value["url"] = serde_json::Value::String(job.url.clone());
                let _ = crate::output::line(&value.to_string());
            } else {
                bar.event(&event);
            }
        })
        .await;
    bar.finish();
    match result {
        Ok(done) => {
            if json {
                let mut value = serde_json::to_value(&done).unwrap_or_default();
                value["event"] = "done".into();
                value["url"] = job.url.clone().into();
                crate::output::line(&value.to_string())?;
            } else {
                let m = &done.metrics;
                let seconds = (m.first_byte_ms - m.request_ms).max(1.0) / 1e3;
                crate::output::error_line(&format!(
                    "sent {} ({}, {}/s over {}): {}",
                    args.file.display(),
                    size(done.sent),
                    size(done.sent as f64 / seconds),
                    serde_json::to_value(m.protocol).unwrap_or_default().as_str().unwrap_or("?"),
                    done.status,
                ));
                let mut out = std::io::stdout().lock();
                out.write_all(&done.response)?;
                out.flush()?;
            }
            Ok(Outcome::Success)
        }
        Err(e @ (TransferError::Usage(_) | TransferError::Refused(_))) => {
            Err(UsageError(e.to_string()).into())
        }
        Err(e) => {
            if json {
                let line = serde_json::json!({"event": "failed", "url": job.url, "error": e.to_string(), "transient": e.transient()});
                crate::output::line(&line.to_string())?;
            } else {
                let again = if e.transient() && !args.post {
                    " (a PUT can simply be sent again)"
                } else {
                    ""
                };
                crate::output::error_line(&format!("nw: {}{again}", with_url(&job.url, &e)));
            }
            Ok(Outcome::Negative)
        }
    }
}
