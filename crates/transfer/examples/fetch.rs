//! Loads a URL the way an application embeds nw-transfer: a session with a credential provider,
//! a data task into memory (redirects followed, the body decoded, the transaction's metrics),
//! and, given a file name, a download task whose progress is watched and that survives being
//! stopped — Ctrl-C keeps its resume data beside the file, and running it again goes on from
//! there instead of from zero.
//!
//! ```sh
//! cargo run -p nw-transfer --example fetch -- https://deb.debian.org/debian/
//! cargo run -p nw-transfer --example fetch -- https://deb.debian.org/debian/ls-lR.gz ls-lR.gz
//! NW_TOKEN=secret cargo run -p nw-transfer --example fetch -- https://api.example/v1/me
//! cargo run -p nw-transfer --example fetch -- -X POST -d '{"q":1}' https://api.example/v1/q
//! ```
//!
//! `-X METHOD` and `-d BODY` send another method, with a body (as JSON), through
//! `Session::send`: redirects keep or drop them as RFC 9110 says.
//!
//! With `NW_TOKEN` set, its value goes as a bearer token to the first URL's origin only, never
//! to one a redirect leads to, and never over plain HTTP to a public host.

#![allow(clippy::print_stderr, reason = "an example says what it does")]

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use nw_connection::BoxFuture;
use nw_transfer::task::{ResumeData, State};
use nw_transfer::{Configuration, CredentialProvider, Download, Refused, Session, TransferError};

/// Gives one token, to one origin: what an application's account store would do.
#[derive(Debug)]
struct Token {
    origin: String,
    token: String,
}

impl CredentialProvider for Token {
    fn authorization<'a>(
        &'a self,
        url: &'a str,
        refused: Option<Refused<'a>>,
    ) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            // After a 401 a real store would refresh the token; this one has no other.
            if refused.is_some() || !url.starts_with(&self.origin) {
                return None;
            }
            Some(format!("Bearer {}", self.token))
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let usage = || {
        eprintln!("usage: fetch [-X METHOD] [-d BODY] URL [FILE]");
        std::process::ExitCode::from(2)
    };
    let (mut method, mut body) = (None, None);
    while let Some(flag) = args.next_if(|a| a == "-X" || a == "-d") {
        let Some(value) = args.next() else { return usage() };
        if flag == "-X" {
            match value.parse::<hyper::Method>() {
                Ok(m) => method = Some(m),
                Err(_) => return usage(),
            }
        } else {
            body = Some(value);
        }
    }
    let Some(url) = args.next() else { return usage() };
    let file = args.next().map(PathBuf::from);
    let result = match (method, body) {
        (None, None) => run(&url, file).await,
        (method, body) => send(&url, method, body.unwrap_or_default()).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Each error says what happened and what to try; its code is URLError's kind.
            eprintln!("fetch: {e} ({:?})", e.code());
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sends `method` (POST when only a body is given) with `body` as JSON, and prints the answer.
async fn send(url: &str, method: Option<hyper::Method>, body: String) -> Result<(), TransferError> {
    let method = method.unwrap_or(hyper::Method::POST);
    let mut headers = Vec::new();
    if !body.is_empty() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    let request = nw_transfer::tasks::Request {
        method,
        headers,
        body: body.into(),
        ..nw_transfer::tasks::Request::get(url)
    };
    let session = Session::ephemeral(Configuration::default())?;
    let answer = session.send(&request, 1 << 20).await?;
    let mut out = String::new();
    for hop in &answer.metrics.redirects {
        let _ =
            writeln!(out, "{} {} (reused connection: {})", hop.status, hop.url, hop.metrics.reused);
    }
    let (status, url, reused) = (answer.status, &answer.url, answer.metrics.reused);
    let _ = writeln!(out, "{status} {url} (reused connection: {reused})");
    // The body as it came: bytes, not text.
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&answer.body);
    emit(&bytes)
}

async fn run(url: &str, file: Option<PathBuf>) -> Result<(), TransferError> {
    let mut config = Configuration::default();
    if let Ok(token) = std::env::var("NW_TOKEN") {
        let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        config.credentials = Some(Arc::new(Token { origin: format!("{origin}/"), token }));
    }

    let Some(dest) = file else {
        // Into memory: at most 1 MiB of decoded body.
        let session = Session::ephemeral(config)?;
        let data = session.data(url, 1 << 20).await?;
        let m = &data.metrics;
        let mut out =
            format!("{} {} ({:?}, {} bytes)\n", data.status, data.url, m.protocol, data.body.len());
        if let Some(coding) = &data.decoded_from {
            let _ = writeln!(out, "decoded from {coding}");
        }
        let _ = writeln!(
            out,
            "connected in {:.1} ms, first byte at {:.1} ms, reused connection: {}",
            m.connected_ms, m.first_byte_ms, m.reused
        );
        for (name, value) in data.headers.iter().take(8) {
            let _ = writeln!(out, "{name}: {value}");
        }
        return emit(out.as_bytes());
    };

    // To a file, as a task whose progress is watched. Ctrl-C cancels it producing resume
    // data, kept beside the file, and the next run goes on from there (a run killed outright
    // resumes too: the store keeps the checkpoint).
    let store = std::env::temp_dir().join("nw-fetch-example.db");
    let session = Arc::new(Session::new(config, &store)?);
    let kept = PathBuf::from(format!("{}.resume.json", dest.display()));
    let resume_data = std::fs::read_to_string(&kept).ok();
    let task = match resume_data.and_then(|t| serde_json::from_str::<ResumeData>(&t).ok()) {
        Some(data) => {
            eprintln!("going on from byte {}", data.bytes);
            session.download_task_resuming(&data)
        }
        None => session.download_task(Download { resume: true, ..Download::new(url, dest) }),
    };
    let shown = |total: Option<u64>| total.map_or_else(|| "?".to_owned(), |t| t.to_string());
    let mut status = task.watch();
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            changed = status.changed() => {
                let now = *status.borrow_and_update();
                let (got, of) = (now.received, shown(now.expected_to_receive));
                eprint!("\r{:?}: {got} of {of} bytes   ", now.state);
                if changed.is_err() || now.state == State::Completed {
                    break;
                }
            }
            _ = &mut interrupted => {
                eprintln!();
                match task.cancel_producing_resume_data().await {
                    Some(data) => {
                        let text = serde_json::to_string(&data).unwrap_or_default();
                        if let Err(e) = std::fs::write(&kept, text) {
                            eprintln!("fetch: {}: {e}", kept.display());
                        }
                        let said = format!("stopped at byte {}; run it again to go on\n", data.bytes);
                        return emit(said.as_bytes());
                    }
                    None => return emit(b"stopped; nothing to go on from\n"),
                }
            }
        }
    }
    eprintln!();
    let done = task.wait().await?;
    let _ = std::fs::remove_file(&kept);
    let said = format!(
        "{} bytes in {} (resumed from {}, {} segment(s), over {:?})\n",
        done.bytes,
        done.dest.display(),
        done.resumed_from,
        done.segments,
        done.metrics.protocol
    );
    emit(said.as_bytes())
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) ends the example quietly, where
/// `println!` would panic.
fn emit(bytes: &[u8]) -> Result<(), TransferError> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.map_err(TransferError::Output),
    }
}
