//! `nw send`: one request of any method, with a body — given, a file's, or standard input's as
//! it comes — and the answer's body on stdout: for talking to APIs, as `curl -X … -d …` does.
//! Redirects, proxies, cookies, credentials and trust as for `nw get`; nothing is recorded.

use std::io::Write as _;

use nw_transfer::body::{Body, Streamed};
use nw_transfer::tasks::{Data, Request, idempotent};
use nw_transfer::{Method, Protocol, RetryAfter, TransferError};

use crate::get::{
    Report, Retries, RetryArgs, SessionArgs, backoff, hint, needs_trust, not_as_asked, usage,
};
use crate::output::unless_stopped;
use crate::{Outcome, UsageError};

/// What standard input is read, and sent, at a time.
const STDIN_PIECE: usize = 256 << 10;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where to send it (http:// or https://).
    #[arg(value_name = "URL")]
    url: String,
    /// The method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, or another token, sent as
    /// written). By default POST when a body is given, else GET.
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// The body: TEXT as it is (no newline added or removed); @FILE a file's bytes, read as
    /// they are sent; @- standard input, sent as it comes (in chunks over HTTP/1.1; such a
    /// body cannot be sent twice, so a redirect that keeps the method fails and --retry does
    /// not apply).
    #[arg(short = 'd', long, value_name = "TEXT|@FILE|@-", conflicts_with = "data_raw")]
    data: Option<String>,
    /// The body, TEXT as it is even when it starts with @.
    #[arg(long, value_name = "TEXT")]
    data_raw: Option<String>,
    /// The body's Content-Type, when there is a body (a -H 'Content-Type: …' wins).
    #[arg(long, value_name = "TYPE", default_value = "application/octet-stream")]
    content_type: String,
    /// Print the answer's status line and header fields, then a blank line, before its body.
    #[arg(short = 'i', long)]
    include: bool,
    /// The longest answer read, in bytes; a longer one fails (download it with `nw get`).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    max_size: usize,
    #[command(flatten)]
    credentials: crate::credentials::CredentialArgs,
    #[command(flatten)]
    retry: RetryArgs,
    #[command(flatten)]
    session: SessionArgs,
    /// The answer as one JSON object on stdout (`status`, `headers`, `body` as text or
    /// `body_base64`, `metrics`), and a failure as a `failed` object.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    let body = body(&args)?;
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| {
            UsageError(format!("-X {m:?}: not a method (a token such as GET, POST or PATCH)"))
        })?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let credentials = args.credentials.resolve(std::slice::from_ref(&args.url))?;
    let session =
        args.session.ephemeral_session(needs_trust(&[&args.url]), credentials.provider())?;
    let mut headers = credentials.for_url(&args.url);
    if body.is_some() && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
        headers.push(("Content-Type".to_owned(), args.content_type.clone()));
    }
    let request = Request {
        method,
        headers,
        body: body.unwrap_or_default(),
        ..Request::get(args.url.clone())
    };
    let mut retries = Retries::new(&args.retry);
    let mut stop = std::pin::pin!(crate::output::interrupted());
    // On a terminal, progress lines while the body goes and the answer comes (as `nw put`
    // draws them) — unless the answer is printed on the terminal too, as curl leaves its meter
    // out then; `--json` keeps its one object.
    let quiet = args.json || std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut bar = (!quiet).then(|| Bars::new(&args));
    let result = loop {
        let sent = {
            let mut on = |event: nw_transfer::Event| {
                if let Some(bar) = bar.as_mut() {
                    bar.event(&event);
                }
            };
            unless_stopped(session.send_observed(&request, args.max_size, &mut on), &mut stop).await
        };
        if let Some(bar) = bar.as_mut() {
            bar.finish();
        }
        let result = match sent {
            Ok(result) => result,
            Err(code) => return Ok(Outcome::Exit(code)),
        };
        let Some(next) = again(&args, &request, &result, &mut retries)? else { break result };
        if let Err(code) = unless_stopped(backoff(next.wait), &mut stop).await {
            return Ok(Outcome::Exit(code));
        }
    };
    match result {
        Ok(data) => answered(&args, &data),
        Err(e) if not_as_asked(&e) => Err(usage(&e)),
        Err(e) => {
            if args.json {
                let line = serde_json::json!({"event": "failed", "url": args.url, "error": e.to_string(), "code": e.code(), "transient": e.transient()});
                crate::output::line(&line.to_string())?;
            } else {
                crate::get::error_line(&args.url, &format!("{e}{}", hint(&e)));
            }
            Ok(Outcome::Negative)
        }
    }
}

/// The progress lines of one request on a terminal: its body's as it goes (named by the file
/// `-d @FILE` sends, `stdin` for `-d @-`), then the answer's, when it does not come whole at
/// once (a short answer draws nothing).
struct Bars {
    body: Report,
    answer: Report,
    answering: bool,
}

impl Bars {
    fn new(args: &Args) -> Self {
        let name = match args.data.as_deref().and_then(|d| d.strip_prefix('@')) {
            Some("-") => "stdin".to_owned(),
            Some(path) => std::path::Path::new(path)
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            None => String::new(),
        };
        Self {
            body: Report::new(false, &args.url, &name),
            answer: Report::new(false, &args.url, "answer"),
            answering: false,
        }
    }

    fn event(&mut self, event: &nw_transfer::Event) {
        match event {
            nw_transfer::Event::Sent { .. } => self.body.event(event),
            nw_transfer::Event::Progress { received, total, .. } => {
                if !self.answering {
                    if total.is_some_and(|t| *received >= t) {
                        return;
                    }
                    self.body.finish();
                    self.answering = true;
                }
                self.answer.event(event);
            }
            _ => {}
        }
    }

    /// Ends the lines drawn, for the next try or the end.
    fn finish(&mut self) {
        self.body.finish();
        self.answer.finish();
        self.answering = false;
    }
}

/// The body `-d` or `--data-raw` gives, if any; a file named with `@` must be a regular file.
fn body(args: &Args) -> anyhow::Result<Option<Body>> {
    if let Some(text) = &args.data_raw {
        return Ok(Some(text.clone().into()));
    }
    let Some(data) = &args.data else { return Ok(None) };
    Ok(Some(match data.strip_prefix('@') {
        None => data.clone().into(),
        Some("-") => Body::Stream(Streamed::once(None, stdin())),
        Some(file) => {
            match std::fs::metadata(file) {
                Ok(m) if m.is_file() => {}
                Ok(_) => return Err(UsageError(format!("-d @{file}: not a regular file")).into()),
                Err(e) => {
                    return Err(UsageError(format!(
                        "-d @{file}: {e} (--data-raw sends text that starts with @ as it is)"
                    ))
                    .into());
                }
            }
            Body::File(file.into())
        }
    }))
}

/// Standard input as a body's pieces, as they come: read on a thread of its own, up to
/// [`STDIN_PIECE`] a read and a few pieces ahead. (Through tokio's stdin, each 64 KiB read was
/// a trip to a blocking thread: 500 MB piped to nginx went at 0.73× curl's `-T -`.)
fn stdin() -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let reader = std::thread::Builder::new().name("nw-stdin".into()).spawn(move || {
        use std::io::Read as _;
        let mut input = std::io::stdin().lock();
        // One buffer, zeroed once; each read's bytes copied out (a pipe gives 64 KiB a read:
        // a fresh zeroed buffer per read cost four times the bytes in memset).
        let mut buf = vec![0u8; STDIN_PIECE];
        loop {
            let read = loop {
                match input.read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    r => break r,
                }
            };
            let sent = match read {
                Ok(0) => return,
                Ok(n) => tx.blocking_send(Ok(bytes::Bytes::copy_from_slice(&buf[..n]))),
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if sent.is_err() {
                return; // the request ended without the rest
            }
        }
    });
    let failed = reader.err().map(|e| std::io::Error::other(format!("cannot read stdin: {e}")));
    let first = futures_util::stream::iter(failed.map(Err));
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    futures_util::StreamExt::chain(first, rest)
}

/// Whether `result` of `request` is tried again, under `--retry`: a failure that may pass,
/// or a 408, 429 or 5xx answer, when the request may be sent twice (an idempotent method) or
/// never left (it could not connect), and its body can be sent again. The retry is said.
fn again(
    args: &Args,
    request: &Request,
    result: &Result<Data, TransferError>,
    retries: &mut Retries,
) -> anyhow::Result<Option<crate::get::Next>> {
    let answer;
    let e = match result {
        Err(e) => e,
        // An answer is tried again when its status is one `TransferError::transient` says
        // may pass (408, 429, 5xx): the same rule as every other failure.
        Ok(data) => {
            let retry_after = data
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
                .map(|(_, v)| v.as_str());
            answer = TransferError::Status {
                url: data.url.clone(),
                status: data.status,
                retry_after: RetryAfter::parse(retry_after),
            };
            if !answer.transient() {
                return Ok(None);
            }
            &answer
        }
    };
    let may = idempotent(&request.method) || !e.may_have_reached_the_server();
    if !may || !request.body.repeatable() {
        return Ok(None);
    }
    let Some(next) = retries.after(e).filter(|n| !n.resume) else { return Ok(None) };
    Report::new(args.json, &args.url, "").retrying(e, &next, "sending it again")?;
    Ok(Some(next))
}

/// Prints the answer: with `-i` its head first; a status of 400 or more is exit 1, with a
/// line on stderr (the body, often the reason, is printed all the same).
fn answered(args: &Args, data: &Data) -> anyhow::Result<Outcome> {
    if args.json {
        let mut line = serde_json::to_value(data)?;
        line["event"] = "done".into();
        match std::str::from_utf8(&data.body) {
            Ok(text) => line["body"] = text.into(),
            Err(_) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(&data.body);
                line["body_base64"] = encoded.into();
            }
        }
        crate::output::line(&line.to_string())?;
    } else {
        let mut out = std::io::stdout().lock();
        if args.include {
            let version = match data.metrics.protocol {
                Protocol::Http11 => "HTTP/1.1",
                Protocol::H2 => "HTTP/2",
                Protocol::H3 => "HTTP/3",
            };
            write!(out, "{version} {}\r\n", data.status)?;
            for (name, value) in &data.headers {
                write!(out, "{name}: {value}\r\n")?;
            }
            write!(out, "\r\n")?;
        }
        match out.write_all(&data.body).and_then(|()| out.flush()) {
            // The reader went away (`nw send … | head`): quietly, with SIGPIPE's status.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(Outcome::Exit(141)),
            r => r?,
        }
    }
    if data.status >= 400 {
        if !args.json {
            crate::output::error_line(&format!(
                "nw: {}: the server answered {}",
                data.url, data.status
            ));
        }
        return Ok(Outcome::Negative);
    }
    Ok(Outcome::Success)
}
