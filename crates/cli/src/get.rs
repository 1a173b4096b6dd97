//! `nw get`: downloads that resume where they stopped and never leave a half-written file.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nw_http::redirect::Refusal;
use nw_transfer::download::{self, Download};
use nw_transfer::{Configuration, Event, Http3, Session, TransferError};

use crate::output::unless_stopped;
use crate::trust::CtArgs;
use crate::{Outcome, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// What to download (http:// or https://).
    #[arg(required = true, value_name = "URL")]
    urls: Vec<String>,
    /// Where to save it (one URL only); by default the URL's last path segment, here. `-`:
    /// to stdout, as it comes (nothing kept to resume).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Continue an interrupted download of the same file from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Replace an existing file, or discard an interrupted download of it and start over.
    #[arg(long)]
    force: bool,
    /// The expected SHA-256 (64 hex digits; one URL only): the file is put in place only if
    /// it matches.
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Fetch each file as N ranges side by side, on N connections, when the server accepts
    /// ranges and the file has at least 4 MiB per range (1-16).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=16))]
    segments: u8,
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
    #[command(flatten)]
    disk: DiskArgs,
    /// Progress and results as JSON lines on stdout.
    #[arg(long)]
    json: bool,
}

/// Which transfer store: shared by `nw get`, `nw put` and `nw transfers` (not `nw send`, which
/// records nothing).
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArg {
    /// The transfer store (SQLite).
    #[arg(long, value_name = "FILE", env = "NW_STORE")]
    store: Option<PathBuf>,
}

impl StoreArg {
    /// `--store`, `NW_STORE`, or the default place.
    pub(crate) fn path(&self) -> PathBuf {
        self.store.clone().unwrap_or_else(nw_transfer::store::Store::default_path)
    }

    /// The store when its file exists; `None` when it does not, so that a command that only
    /// reads or tidies it (`nw transfers`, `clear`, `run`) creates neither it nor its
    /// directory.
    pub(crate) fn open_existing(&self) -> anyhow::Result<Option<nw_transfer::store::Store>> {
        let path = self.path();
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => Ok(Some(nw_transfer::store::Store::open(&path)?)),
        }
    }
}

/// Trying again after a failure that may pass: shared by `nw get` and `nw put`.
#[derive(Debug, clap::Args)]
pub(crate) struct RetryArgs {
    /// Try up to N more times after a failure that may pass: a download's connection dropped
    /// mid-body resumes from the checkpoint; a timeout, a lost connection, an unreachable host
    /// or proxy, or a 408, 429 or 5xx answer sends the request again (a POST only when it
    /// could not connect). Waits 1, 2, 4 … 16 s between tries, or what the server's
    /// Retry-After asks (up to 120 s). 0: fail at once.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub(crate) retry: u32,
    /// With --retry, also try again when the connection is refused (a server being restarted);
    /// by default a refusal, like a name that does not exist, fails at once.
    #[arg(long)]
    pub(crate) retry_connrefused: bool,
}

/// Queueing instead of transferring now: shared by `nw get` and `nw put`.
#[derive(Debug, clap::Args)]
pub(crate) struct QueueArgs {
    /// Record the transfer in the store instead, for `nw transfers run` to do.
    #[arg(long)]
    pub(crate) queue: bool,
    /// With --queue: wait for an unmetered path and mains power before starting.
    #[arg(long, requires = "queue")]
    pub(crate) discretionary: bool,
}

/// How transfers are made: the session's settings, shared by `nw get`, `nw put`, `nw send` and
/// `nw transfers run`.
#[derive(Debug, clap::Args)]
pub(crate) struct SessionArgs {
    /// Allow plain HTTP to any host (local names and IP literals are always allowed).
    #[arg(long)]
    allow_http: bool,
    /// Extra trust anchors (PEM) for HTTPS. Under the transport-security policy a public name
    /// must also pass the default trust; local names and IP literals need only these.
    #[arg(long, value_name = "FILE")]
    anchor: Vec<PathBuf>,
    #[command(flatten)]
    ct: CtArgs,
    /// Offer only HTTP/1.1 over TLS (no HTTP/2, no HTTP/3).
    #[arg(long, conflicts_with_all = ["http3", "http3_only"])]
    http1: bool,
    /// Try HTTP/3 from the first connection, racing TCP (which joins after 300 ms) and
    /// falling back to it. Without this flag HTTP/3 is used once a server advertises it
    /// (Alt-Svc).
    #[arg(long, conflicts_with = "http3_only")]
    http3: bool,
    /// HTTP/3 alone, no fallback: a QUIC failure fails the download.
    #[arg(long)]
    http3_only: bool,
    /// Follow at most N redirects (0: follow none, and a redirect fails the transfer).
    #[arg(long, value_name = "N", default_value_t = nw_transfer::DEFAULT_MAX_REDIRECTS)]
    max_redirs: usize,
    /// Give up when no data arrives for this long (seconds).
    #[arg(long, value_name = "S", default_value_t = 60)]
    timeout: u64,
    /// Give up on a try that takes longer than this in all (seconds): connecting, redirects
    /// and the whole body, so a server that trickles a byte now and then is cut off, which
    /// --timeout never does. Not tried again; a download keeps what arrived for --resume.
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..))]
    max_time: Option<u64>,
    #[command(flatten)]
    proxies: ProxyArgs,
    /// Keep cookies in this file (JSON, owner-only) between runs: read first, written as
    /// responses set them. Without it, cookies live for this run only (a redirect that sets
    /// one gets it back, as in a browser).
    #[arg(long, value_name = "FILE", conflicts_with = "no_cookies")]
    cookie_jar: Option<PathBuf>,
    /// Neither keep nor send cookies.
    #[arg(long)]
    no_cookies: bool,
}

/// How downloads are written to disk: `nw get` and `nw transfers run` (not `nw put`).
#[derive(Debug, Default, clap::Args)]
pub(crate) struct DiskArgs {
    /// Checkpoint without fsync: survives the process being killed, not a power loss.
    #[arg(long)]
    no_fsync: bool,
    /// Write through the page cache even for large files (from 64 MiB they are written around
    /// it with O_DIRECT, which saves a copy of every byte).
    #[arg(long)]
    buffered: bool,
}

impl SessionArgs {
    /// What these flags say, with file names made absolute; `https`: some URL is HTTPS, so
    /// the trust settings must be made.
    pub(crate) fn settings(&self, https: bool) -> Settings {
        let absolute = |p: &PathBuf| std::path::absolute(p).unwrap_or_else(|_| p.clone());
        Settings {
            allow_http: self.allow_http,
            anchor: self.anchor.iter().map(absolute).collect(),
            ct_log_list: self.ct.ct_log_list.as_ref().map(absolute),
            no_ct: self.ct.no_ct,
            http1: self.http1,
            http3: self.http3,
            http3_only: self.http3_only,
            timeout: self.timeout,
            max_time: self.max_time,
            max_redirs: self.max_redirs,
            proxies: self.proxies.absolute(),
            cookie_jar: self.cookie_jar.as_ref().map(absolute),
            no_cookies: self.no_cookies,
            https,
        }
    }

    /// Refuses to queue a transfer whose `--proxy` carries a password: the settings are
    /// kept in the store, and credentials stay out of it.
    pub(crate) fn check_queueable(&self) -> anyhow::Result<()> {
        if self.proxies.has_credentials() {
            return Err(UsageError(
                "--proxy with USER:PASSWORD is not kept for queued transfers (credentials stay out of the store); set https_proxy or http_proxy for `nw transfers run` instead, or transfer without --queue"
                    .into(),
            )
            .into());
        }
        Ok(())
    }

    /// The session these flags describe with no transfer store (one in memory: `nw send`
    /// records nothing).
    pub(crate) fn ephemeral_session(
        &self,
        https: bool,
        credentials: Option<std::sync::Arc<dyn nw_http::auth::CredentialProvider>>,
    ) -> anyhow::Result<Session> {
        let store = Path::new(nw_transfer::store::IN_MEMORY);
        self.settings(https).session_asking(&DiskArgs::default(), store, credentials)
    }

    /// The session these flags describe, writing downloads as `disk` says and asking
    /// `credentials` for each origin's `Authorization`; `https`: some URL is HTTPS, so the
    /// trust settings must be made.
    pub(crate) fn session_with(
        &self,
        https: bool,
        disk: &DiskArgs,
        store: &StoreArg,
        credentials: Option<std::sync::Arc<dyn nw_http::auth::CredentialProvider>>,
    ) -> anyhow::Result<Session> {
        self.settings(https).session_asking(disk, &store.path(), credentials)
    }
}

/// A session's settings as a queued transfer keeps them: serialized, they are the session's
/// identifier in the store, so `nw transfers run` makes each transfer the way it was asked for
/// (its anchors, `--allow-http`, protocol, timeout).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Settings {
    allow_http: bool,
    anchor: Vec<PathBuf>,
    ct_log_list: Option<PathBuf>,
    no_ct: bool,
    http1: bool,
    http3: bool,
    http3_only: bool,
    timeout: u64,
    /// Absent when not given (so the identifiers of transfers queued before it existed are
    /// unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_time: Option<u64>,
    /// Absent in transfers queued before it existed: the default then.
    #[serde(default = "default_max_redirs")]
    max_redirs: usize,
    /// `--proxy`, `--noproxy`, `--proxy-pac` (absent: the environment's when the transfer
    /// runs; a PAC file read again then).
    #[serde(flatten)]
    proxies: ProxyArgs,
    #[serde(default)]
    cookie_jar: Option<PathBuf>,
    #[serde(default)]
    no_cookies: bool,
    /// Some URL is HTTPS: failing to make the trust settings ends the run.
    https: bool,
}

/// Which proxies loads go through: `nw get`, `nw put`, `nw transfers run` and `nw quality`.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, clap::Args, serde::Serialize, serde::Deserialize,
)]
pub(crate) struct ProxyArgs {
    /// Go through this proxy for every load: http://[USER:PASSWORD@]HOST[:PORT] (CONNECT for
    /// HTTPS, the absolute form for plain HTTP), https://… (the same over TLS with the proxy,
    /// checked with the system's anchors and --anchor's), socks5://… or socks4://… (names
    /// resolved here), socks5h://… or socks4a://… (by the proxy); port 1080 when absent (443
    /// for https://). Without it, the proxies of the
    /// environment are used as curl uses them (http_proxy, https_proxy, all_proxy, no_proxy),
    /// loopback excepted. HTTP/3 does not go through a proxy.
    #[arg(short = 'x', long, value_name = "URL")]
    #[serde(default)]
    pub(crate) proxy: Option<String>,
    /// Hosts reached directly, not through a proxy (instead of no_proxy): names (with their
    /// subdomains), addresses, CIDR ranges, comma-separated; '*' for all.
    #[arg(long, value_name = "LIST")]
    #[serde(default)]
    pub(crate) noproxy: Option<String>,
    /// Let this PAC file (a path, or an http:// or https:// URL fetched directly at the first
    /// load) choose each URL's proxy: its FindProxyForURL(url, host), run sandboxed for
    /// at most 2 s, answers DIRECT, PROXY, HTTPS, SOCKS5 or SOCKS4 host:port (the next entry is
    /// tried when a proxy cannot be reached). https:// URLs are shown to it without their
    /// path.
    #[arg(long, value_name = "FILE|URL", conflicts_with_all = ["proxy", "noproxy"])]
    #[serde(default)]
    pub(crate) proxy_pac: Option<String>,
}

impl ProxyArgs {
    /// The same, a `--proxy-pac` path made absolute (a queued transfer reads it again later,
    /// from wherever `nw transfers run` runs).
    fn absolute(&self) -> Self {
        let pac = self.proxy_pac.as_ref().map(|pac| match pac_url(pac) {
            Some(_) => pac.clone(),
            None => {
                std::path::absolute(pac).map_or_else(|_| pac.clone(), |p| p.display().to_string())
            }
        });
        Self { proxy_pac: pac, ..self.clone() }
    }

    /// The proxies `--proxy` and `--noproxy` say, or a PAC file's, or the environment's.
    pub(crate) fn proxies(&self) -> anyhow::Result<nw_http::proxy::Proxies> {
        use nw_http::proxy::{Proxies, Proxy};
        let env_no_proxy = || ["no_proxy", "NO_PROXY"].iter().find_map(|n| std::env::var(n).ok());
        if let Some(pac) = &self.proxy_pac {
            if let Some(url) = pac_url(pac) {
                return Ok(Proxies::pac_url(url));
            }
            let path = pac.strip_prefix("file://").unwrap_or(pac);
            let pac = nw_http::pac::Pac::read(Path::new(path))
                .map_err(|e| UsageError(format!("--proxy-pac: {e}")))?;
            return Ok(Proxies::pac(pac));
        }
        Ok(match &self.proxy {
            Some(text) => {
                let proxy = Proxy::parse(text).map_err(|e| UsageError(format!("--proxy: {e}")))?;
                Proxies::every(proxy, self.noproxy.clone().or_else(env_no_proxy).as_deref())
            }
            None => Proxies::from_vars(|name| match name {
                "no_proxy" | "NO_PROXY" if self.noproxy.is_some() => self.noproxy.clone(),
                _ => std::env::var(name).ok(),
            }),
        })
    }

    /// Whether `--proxy` carries credentials (which stay out of the store).
    pub(crate) fn has_credentials(&self) -> bool {
        self.proxy
            .as_deref()
            .and_then(|t| nw_http::proxy::Proxy::parse(t).ok())
            .is_some_and(|p| p.credentials.is_some())
    }
}

/// `--proxy-pac`'s text when it is an http:// or https:// URL (not a path).
fn pac_url(text: &str) -> Option<&str> {
    let scheme = text.split_once("://")?.0.to_ascii_lowercase();
    matches!(scheme.as_str(), "http" | "https").then_some(text)
}

fn default_max_redirs() -> usize {
    nw_transfer::DEFAULT_MAX_REDIRECTS
}

impl Settings {
    /// A queued transfer's settings with what `nw transfers run` was given added: its
    /// anchors, its `--allow-http` and `--no-ct`, and its `--ct-log-list` where the transfer
    /// has none. Protocol and timeout stay the transfer's own.
    pub(crate) fn with(mut self, run: &Self) -> Self {
        for anchor in &run.anchor {
            if !self.anchor.contains(anchor) {
                self.anchor.push(anchor.clone());
            }
        }
        self.allow_http |= run.allow_http;
        if run.no_ct {
            (self.no_ct, self.ct_log_list) = (true, None);
        } else if !self.no_ct && self.ct_log_list.is_none() {
            self.ct_log_list.clone_from(&run.ct_log_list);
        }
        self
    }

    /// The session these settings describe, writing downloads as `disk` says, with its
    /// transfers in the store at `store`.
    pub(crate) fn session(&self, disk: &DiskArgs, store: &Path) -> anyhow::Result<Session> {
        self.session_asking(disk, store, None)
    }

    fn session_asking(
        &self,
        disk: &DiskArgs,
        store: &Path,
        credentials: Option<std::sync::Arc<dyn nw_http::auth::CredentialProvider>>,
    ) -> anyhow::Result<Session> {
        let mut config = Configuration {
            credentials,
            allow_http: self.allow_http,
            http2: !self.http1,
            http3: match (self.http1, self.http3, self.http3_only) {
                (true, _, _) => Http3::Off,
                (_, _, true) => Http3::Only,
                (_, true, _) => Http3::Assume,
                _ => Http3::Discover,
            },
            durable: !disk.no_fsync,
            direct_from: if disk.buffered { None } else { Configuration::default().direct_from },
            request_timeout: Duration::from_secs(self.timeout.max(1)),
            resource_timeout: self.max_time.map(Duration::from_secs),
            max_redirects: self.max_redirs,
            identifier: Some(serde_json::to_string(self)?),
            proxies: self.proxies.proxies()?,
            cookies: match (&self.cookie_jar, self.no_cookies) {
                (_, true) => nw_http::cookies::Cookies::Off,
                (Some(file), _) => nw_http::cookies::Cookies::File(file.clone()),
                (None, _) => nw_http::cookies::Cookies::Memory,
            },
            ..Configuration::default()
        };
        // Trust settings for every session, whatever its URLs say: a plain-HTTP URL may
        // redirect to HTTPS or go through an https:// proxy. Failing to make them ends the run
        // when some URL is HTTPS or a trust flag was given; otherwise (no system anchors, and
        // nothing asked) it is left to the load that needs them, which then says so.
        let ct = CtArgs { ct_log_list: self.ct_log_list.clone(), no_ct: self.no_ct };
        let made = crate::trust::options(&self.anchor, &ct, true)
            .and_then(|trust| Ok((trust, crate::trust::options(&[], &ct, true)?)));
        match made {
            Ok((trust, default)) => (config.trust, config.default_trust) = (trust, default),
            Err(e) if !self.https && self.anchor.is_empty() && self.ct_log_list.is_none() => {
                tracing::debug!("no trust settings for this session: {e}");
            }
            Err(e) => return Err(e),
        }
        // A cookie jar that is no jar is the command line's mistake (2), a store that cannot
        // be opened the machine's (3).
        match Session::new(config, store) {
            Ok(session) => Ok(session),
            Err(e) if not_as_asked(&e) => Err(usage(&e)),
            Err(e) => Err(e.into()),
        }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    if args.urls.len() > 1 && (args.output.is_some() || args.sha256.is_some()) {
        return Err(UsageError(
            "-o and --sha256 apply to one URL; give them once per nw get".into(),
        )
        .into());
    }
    let sha256 = match &args.sha256 {
        Some(text) => {
            Some(download::parse_sha256(text).map_err(|e| UsageError(format!("--sha256: {e}")))?)
        }
        None => None,
    };
    let credentials = args.credentials.resolve(&args.urls)?;
    credentials.refuse_queued(args.queue.queue, "download without --queue")?;
    let mut jobs = Vec::new();
    for url in &args.urls {
        let dest = match &args.output {
            Some(p) => p.clone(),
            None => PathBuf::from(file_name(url).map_err(UsageError)?),
        };
        let headers = credentials.for_url(url);
        jobs.push(Download {
            url: url.clone(),
            dest,
            sha256,
            resume: args.resume,
            force: args.force,
            segments: usize::from(args.segments),
            headers,
        });
    }
    let https = needs_trust(&args.urls);
    let session =
        args.session.session_with(https, &args.disk, &args.store, credentials.provider())?;
    if args.output.as_deref() == Some(Path::new("-")) {
        let headers = args.urls.first().map(|u| credentials.for_url(u)).unwrap_or_default();
        return to_stdout(&args, &session, &headers).await;
    }
    if args.queue.queue {
        args.session.check_queueable()?;
        return queue(&session, &jobs, args.queue.discretionary, args.json);
    }
    let mut tally = Tally::new();
    // Installed once: from here a signal stops the download in hand, cleanly.
    let mut stop = std::pin::pin!(crate::output::interrupted());
    for job in &jobs {
        let name = job.dest.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut report = Report::new(args.json, &job.url, name.as_deref().unwrap_or(""));
        let mut job = job.clone();
        let mut retries = Retries::new(&args.retry);
        let result = loop {
            let mut on = |event| report.event(&event);
            let ended = unless_stopped(session.download(&job, &mut on), &mut stop).await;
            let result = match ended {
                Ok(result) => result,
                Err(code) => {
                    report.finish();
                    interrupted(&session, &job.dest).await;
                    return Ok(Outcome::Exit(code));
                }
            };
            // A connection dropped mid-body left checkpointed bytes: resume them, as wget does;
            // a failure before the body that may pass sends the request again, as curl does.
            let (e, next) = match &result {
                Err(e) => match retries.after(e) {
                    Some(next) => (e, next),
                    None => break result,
                },
                Ok(_) => break result,
            };
            report.finish();
            report.retrying(e, &next, "trying again")?;
            if next.resume {
                job.resume = true;
                job.force = false;
            }
            if let Err(code) = unless_stopped(backoff(next.wait), &mut stop).await {
                interrupted(&session, &job.dest).await;
                return Ok(Outcome::Exit(code));
            }
        };
        report.finish();
        match result {
            Ok(done) => {
                tally.saved += 1;
                tally.bytes += done.bytes;
                if args.json {
                    report.done(&done)?;
                } else {
                    let rate =
                        done.metrics.received as f64 / (done.metrics.transfer_ms / 1e3).max(1e-3);
                    let resumed = match done.resumed_from {
                        0 => String::new(),
                        n => format!(", resumed after {}", size(n)),
                    };
                    let segments = match done.segments {
                        1 => String::new(),
                        n => format!(" in {n} segments"),
                    };
                    crate::output::error_line(&format!(
                        "saved {} ({}, {}/s over {}{segments}{resumed})",
                        done.dest.display(),
                        size(done.bytes),
                        size(rate),
                        carried(&done.metrics),
                    ));
                    if let Some(reason) = &done.restarted {
                        crate::output::error_line(&format!(
                            "  restarted from zero: {}",
                            reason.explain()
                        ));
                    }
                    if let Some(why) = &done.metrics.h3_fallback {
                        crate::output::error_line(&format!("  not over HTTP/3: {why}"));
                    }
                }
            }
            Err(e) if not_as_asked(&e) && jobs.len() == 1 => return Err(usage(&e)),
            Err(TransferError::Store(e)) => return Err(e.into()),
            Err(e) => {
                // One URL that cannot be fetched as asked does not stop the others; the run
                // still ends as a usage error.
                tally.usage |= not_as_asked(&e);
                report.failed(&e, hint(&e))?;
                tally.failed.push(job.url.clone());
            }
        }
    }
    if jobs.len() > 1 {
        tally.summary(args.json)?;
    }
    Ok(tally.outcome())
}

/// What a run over several URLs came to.
struct Tally {
    saved: usize,
    bytes: u64,
    /// The URLs that failed, in order.
    failed: Vec<String>,
    /// Some failed as a usage error would (a file in the way, an insecure load).
    usage: bool,
    began: std::time::Instant,
}

impl Tally {
    fn new() -> Self {
        #[allow(clippy::disallowed_methods, reason = "the run's duration, for its summary")]
        let began = std::time::Instant::now();
        Self { saved: 0, bytes: 0, failed: Vec::new(), usage: false, began }
    }

    /// The closing line: how many were saved and failed, which failed, and the bytes.
    fn summary(&self, json: bool) -> anyhow::Result<()> {
        let ms = self.began.elapsed().as_millis();
        if json {
            let line = serde_json::json!({
                "event": "summary", "saved": self.saved, "failed": self.failed.len(),
                "failed_urls": self.failed, "bytes": self.bytes, "ms": ms,
            });
            crate::output::line(&line.to_string())?;
            return Ok(());
        }
        let total = self.saved + self.failed.len();
        let mut line = format!(
            "{} of {total} saved ({} in {:.1} s)",
            self.saved,
            size(self.bytes),
            ms as f64 / 1e3
        );
        if !self.failed.is_empty() {
            line.push_str(&format!("; failed: {}", self.failed.join(", ")));
        }
        crate::output::error_line(&line);
        Ok(())
    }

    fn outcome(&self) -> Outcome {
        match () {
            () if self.usage => Outcome::Exit(2),
            () if !self.failed.is_empty() => Outcome::Negative,
            () => Outcome::Success,
        }
    }
}

/// `-o -`: the one URL's body to stdout as it comes; no `.part`, no record, nothing to resume.
async fn to_stdout(
    args: &Args,
    session: &Session,
    headers: &[(String, String)],
) -> anyhow::Result<Outcome> {
    let refused = match () {
        () if args.urls.len() > 1 => Some("one URL"),
        () if args.queue.queue => Some("no --queue"),
        () if args.resume || args.force => Some("no --resume or --force"),
        () if args.sha256.is_some() => Some("no --sha256 (pipe it to sha256sum)"),
        () if args.segments > 1 => Some("no --segments"),
        () => None,
    };
    if let Some(what) = refused {
        return Err(UsageError(format!("-o - (to stdout) takes {what}")).into());
    }
    let url = &args.urls[0];
    let mut out = Counted { inner: tokio::io::stdout(), written: 0 };
    let mut stop = std::pin::pin!(crate::output::interrupted());
    let mut retries = Retries::new(&args.retry);
    let result = loop {
        let result = match unless_stopped(session.data_to(url, headers, &mut out), &mut stop).await
        {
            Ok(result) => result,
            Err(code) => return Ok(Outcome::Exit(code)),
        };
        // Asked again only while nothing of a body was written: what went out cannot be
        // taken back, and there is no checkpoint to resume from.
        let next = match &result {
            Err(e) if out.written == 0 => retries.after(e).filter(|n| !n.resume),
            _ => None,
        };
        let Some(next) = next else { break result };
        say_retry(url, &next, "trying again");
        if let Err(code) = unless_stopped(backoff(next.wait), &mut stop).await {
            return Ok(Outcome::Exit(code));
        }
    };
    match result {
        Ok(_) => Ok(Outcome::Success),
        // The reader went away (`nw get -o - URL | head`): stop quietly, as `cat` does, with the
        // status a SIGPIPE gives (128 + 13).
        Err(TransferError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(Outcome::Exit(141))
        }
        Err(e) if not_as_asked(&e) => Err(usage(&e)),
        Err(e) => {
            error_line(url, &format!("{e}{}", hint(&e)));
            Ok(Outcome::Negative)
        }
    }
}

/// A writer that counts what went through it.
struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.written += n as u64;
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The longest `Retry-After` that `--retry` waits out; a server asking more is left to the user.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// `--retry` over one transfer: the tries left, and what a failure leads to.
pub(crate) struct Retries {
    left: u32,
    given: u32,
    connrefused: bool,
}

/// The try that comes after a failure.
pub(crate) struct Next {
    /// Whether it resumes from the checkpoint a dropped body left (else it starts over).
    pub(crate) resume: bool,
    /// The failure, in words.
    pub(crate) cause: String,
    /// How long to wait first.
    pub(crate) wait: Duration,
    /// The tries that were left before this one.
    pub(crate) left: u32,
}

impl Retries {
    pub(crate) fn new(args: &RetryArgs) -> Self {
        Self { left: args.retry, given: args.retry, connrefused: args.retry_connrefused }
    }

    /// The next try after `e`, counted, or `None` to fail now (see [`Retries::decide`]; a
    /// `Retry-After` longer than nw waits is said on stderr).
    pub(crate) fn after(&mut self, e: &TransferError) -> Option<Next> {
        #[allow(clippy::disallowed_methods, reason = "the front end waits between tries")]
        let now = std::time::SystemTime::now();
        match self.decide(e, now) {
            Ok(next) => next,
            Err(asked) => {
                crate::output::error_line(&format!(
                    "nw: note: the server asks to be tried again in {} s (Retry-After), longer than --retry waits ({} s): run it again then",
                    asked.as_secs(),
                    MAX_RETRY_AFTER.as_secs()
                ));
                None
            }
        }
    }

    /// The next try after `e` at wall time `now`, counted, or `Ok(None)` to fail now: no tries
    /// left, or the failure is an answer rather than an accident — a certificate not trusted,
    /// a 4xx, a name that does not exist, (without `--retry-connrefused`) a refused
    /// connection. The wait is the backoff (1, 2, 4 … 16 s) or what the server's
    /// `Retry-After` asks; `Err` with what it asks when that is longer than nw waits.
    fn decide(
        &mut self,
        e: &TransferError,
        now: std::time::SystemTime,
    ) -> Result<Option<Next>, Duration> {
        if self.left == 0 {
            return Ok(None);
        }
        let (resume, cause) = match e {
            // Not after a resource timeout (--max-time): the next try would take as long.
            TransferError::Saved { source, .. } if source.transient() => (true, source.to_string()),
            TransferError::Incomplete { got, expected, .. } => {
                (true, format!("the body ended after {got} of {expected} bytes"))
            }
            TransferError::Connect(c) if c.no_such_name() || (c.refused() && !self.connrefused) => {
                return Ok(None);
            }
            // Its text names the URL, which the retry's line starts with.
            TransferError::Status { status, .. } if e.transient() => {
                (false, format!("the server answered {status}"))
            }
            e if e.transient() => (false, e.to_string()),
            _ => return Ok(None),
        };
        let wait = match e.retry_after().map(|a| a.wait(now)) {
            None => Duration::from_secs(1 << (self.given - self.left).min(4)),
            Some(asked) if asked <= MAX_RETRY_AFTER => asked,
            Some(asked) => return Err(asked),
        };
        let left = self.left;
        self.left -= 1;
        Ok(Some(Next { resume, cause, wait, left }))
    }
}

/// `URL: TEXT`, or `TEXT` alone when it names the URL first already (a failing status, a
/// redirect not followed): a URL is named once.
pub(crate) fn with_url(url: &str, text: &str) -> String {
    if text.starts_with(url) { text.to_owned() } else { format!("{url}: {text}") }
}

/// `nw: URL: TEXT` on stderr, the URL named once ([`with_url`]).
pub(crate) fn error_line(url: &str, text: &str) {
    crate::output::error_line(&format!("nw: {}", with_url(url, text)));
}

/// The line saying `next` is coming (`again`: how a try from the start is said).
pub(crate) fn say_retry(url: &str, next: &Next, again: &str) {
    let what = if next.resume { "resuming from the checkpoint" } else { again };
    crate::output::error_line(&format!(
        "nw: {url}: {}; {what} in {} s ({} {} left)",
        next.cause,
        next.wait.as_secs(),
        next.left,
        if next.left == 1 { "retry" } else { "retries" }
    ));
}

/// Waits out a retry's backoff (the front end is where waiting between tries belongs).
#[allow(clippy::disallowed_methods, reason = "the front end waits between tries")]
pub(crate) async fn backoff(wait: Duration) {
    tokio::time::sleep(wait).await;
}

/// After a signal stopped the download to `dest`: its record says interrupted (not running),
/// so `nw transfers` and the next `nw get --resume` see it for what it is.
async fn interrupted(session: &Session, dest: &Path) {
    let why = "stopped by a signal; run again with --resume to continue";
    match session.stopped(dest, why).await {
        Ok(Some(part)) => crate::output::error_line(&format!(
            "nw: stopped; {} keeps what was checkpointed; run again with --resume to continue",
            part.display()
        )),
        Ok(None) => {}
        Err(e) => crate::output::error_line(&format!("nw: stopped; {e}")),
    }
}

/// How one transfer is shown, for `nw get` and `nw put` alike: with `--json`, its events and
/// its end as JSON lines (each with the URL) on stdout; otherwise the progress bar, and a
/// failure as one line on stderr.
pub(crate) struct Report {
    json: bool,
    url: String,
    bar: Bar,
}

impl Report {
    /// `name`: the file's, shown on the progress line.
    pub(crate) fn new(json: bool, url: &str, name: &str) -> Self {
        let tty = !json && std::io::stderr().is_terminal();
        Self { json, url: url.to_owned(), bar: Bar::new(tty, name) }
    }

    pub(crate) fn event(&mut self, event: &Event) {
        if self.json {
            let mut value = serde_json::to_value(event).unwrap_or_default();
            value["url"] = self.url.clone().into();
            let _ = crate::output::line(&value.to_string());
        } else {
            self.bar.event(event);
        }
    }

    /// Ends the bar's line, when one was drawn.
    pub(crate) fn finish(&mut self) {
        self.bar.finish();
    }

    /// The `done` line (JSON only): `what` with the event's name and the URL.
    pub(crate) fn done(&self, what: &impl serde::Serialize) -> anyhow::Result<()> {
        let mut value = serde_json::to_value(what)?;
        value["event"] = "done".into();
        value["url"] = self.url.clone().into();
        crate::output::line(&value.to_string())?;
        Ok(())
    }

    /// The `failed` line; on stderr `nw: URL: ERROR` (the URL once, though a status error
    /// names it too) followed by `hint`.
    /// A try failed with `e` and `next` comes: a `retrying` line with `--json`, else a line on
    /// stderr (`again`: how a try from the start is said).
    pub(crate) fn retrying(
        &self,
        e: &TransferError,
        next: &Next,
        again: &str,
    ) -> anyhow::Result<()> {
        if self.json {
            let line = serde_json::json!({
                "event": "retrying", "url": self.url, "error": e.to_string(), "code": e.code(),
                "status": e.status(), "wait_ms": next.wait.as_millis(), "retries_left": next.left,
            });
            crate::output::line(&line.to_string())?;
        } else {
            say_retry(&self.url, next, again);
        }
        Ok(())
    }

    pub(crate) fn failed(&self, e: &TransferError, hint: &str) -> anyhow::Result<()> {
        if self.json {
            let line = serde_json::json!({"event": "failed", "url": self.url, "error": e.to_string(), "code": e.code(), "transient": e.transient()});
            crate::output::line(&line.to_string())?;
        } else {
            error_line(&self.url, &format!("{e}{hint}"));
        }
        Ok(())
    }
}

/// `nw get --queue`: records each job in the store, or refuses it with the reason.
fn queue(
    session: &Session,
    jobs: &[Download],
    discretionary: bool,
    json: bool,
) -> anyhow::Result<Outcome> {
    for job in jobs {
        match session.enqueue(job, discretionary) {
            Ok(record) if json => {
                let line = serde_json::json!({"event": "queued", "id": record.id, "url": record.url, "dest": record.dest, "from": record.offset});
                crate::output::line(&line.to_string())?;
            }
            Ok(record) => {
                crate::output::error_line(&format!(
                    "queued #{} {} -> {}; `nw transfers run` downloads it",
                    record.id,
                    record.url,
                    record.dest.display()
                ));
            }
            Err(e) if not_as_asked(&e) => {
                return Err(UsageError(format!("{}: {e}{}", job.url, hint(&e))).into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Outcome::Success)
}

/// Whether some of `urls` is HTTPS, so the session's trust settings must be made (every
/// session makes them; without an HTTPS URL, a failure is left to a load that needs them).
pub(crate) fn needs_trust(urls: &[impl AsRef<str>]) -> bool {
    urls.iter().any(|u| u.as_ref().get(..6).is_some_and(|s| s.eq_ignore_ascii_case("https:")))
}

/// A failure [`not_as_asked`] as the usage error it is (exit 2), with its hint.
pub(crate) fn usage(e: &TransferError) -> anyhow::Error {
    UsageError(format!("{e}{}", hint(e))).into()
}

/// A transfer that cannot be made as asked, which nw reports as a usage error (exit 2): a
/// usage mistake, a load the transport-security policy refuses, a file another nw holds.
pub(crate) fn not_as_asked(e: &TransferError) -> bool {
    matches!(
        e,
        TransferError::Usage(_)
            | TransferError::Refused(_)
            | TransferError::Busy(_)
            | TransferError::NotAFile { .. }
            | TransferError::InTheWay { .. }
    )
}

/// What carried a transfer, for its summary: the protocol, and the proxy when there was one.
pub(crate) fn carried(m: &nw_transfer::metrics::Metrics) -> String {
    match &m.proxy {
        Some(p) => format!("{} through {p}", m.protocol.as_str()),
        None => m.protocol.as_str().to_owned(),
    }
}

/// The library says what happened; the flag that changes it is the CLI's to name.
pub(crate) fn hint(e: &TransferError) -> &'static str {
    use nw_transfer::InTheWay;
    match e {
        TransferError::Redirect { kind: Refusal::TooMany, .. } => " (--max-redirs N raises it)",
        TransferError::Redirect { kind: Refusal::Downgrade, .. } => " (--allow-http follows it)",
        TransferError::Timeout(_) => " (--timeout S waits longer)",
        e if e.code() == nw_transfer::Code::DataLengthExceedsMaximum => {
            " (--max-size BYTES reads more; nw get -o FILE saves it)"
        }
        TransferError::BodyExhausted { .. } => {
            " (save standard input to a file and send -d @FILE, which is read again)"
        }
        TransferError::Refused(nw_http::policy::Refused::InsecureLoad { .. }) => {
            " (--allow-http loads it)"
        }
        TransferError::InTheWay { kind: InTheWay::Exists, .. } => "; pass --force to replace it",
        TransferError::InTheWay { kind: InTheWay::OtherDownload { .. }, .. } => {
            "; pass --force to discard it, or choose another -o"
        }
        TransferError::InTheWay { kind: InTheWay::Interrupted { .. }, .. } => {
            "; add --resume to continue it, or --force to start over"
        }
        TransferError::InTheWay { kind: InTheWay::Unrecorded, .. } => {
            "; pass --force to discard it"
        }
        TransferError::Incomplete { .. } | TransferError::Saved { .. } => {
            " (nw get --resume, or nw transfers run)"
        }
        _ if e.code() == nw_transfer::Code::LocalNetworkProhibited => {
            " (`nw lnp allow` with the identity named lets it; `nw lnp status` shows the settings)"
        }
        _ => "",
    }
}

/// The file name a URL saves to: its last path segment, percent-decoded.
fn file_name(url: &str) -> Result<String, String> {
    let path = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let segment =
        path.split_once('/').map_or("", |(_, p)| p).rsplit('/').next().unwrap_or_default();
    let name = nw_connection::percent_decode(segment);
    match name.as_deref() {
        Some(n) if !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0']) => {
            Ok(n.to_owned())
        }
        // A URL that cannot be loaded or does not parse says so first: no -o would help it.
        _ => Err(match nw_transfer::url(url) {
            Err(e) => e.to_string(),
            Ok(_) => format!("{url}: the URL names no file to save to; give -o FILE"),
        }),
    }
}

/// A byte count for people (binary units).
pub(crate) fn size(n: impl Into<Size>) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let Size(mut value) = n.into();
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A byte count or rate, for [`size`].
pub(crate) struct Size(f64);

impl From<u64> for Size {
    fn from(n: u64) -> Self {
        Self(n as f64)
    }
}

impl From<f64> for Size {
    fn from(n: f64) -> Self {
        Self(n)
    }
}

/// The progress line on a terminal: the file's name, a bar, percentage, bytes, rate and
/// ETA, redrawn in place and never wider than the terminal (a line that wraps cannot be
/// redrawn).
struct Bar {
    tty: bool,
    drawn: bool,
    name: String,
    /// Since when a request body's bytes have been going, how many had gone then, and how
    /// many at the last event (for their rate, which `Event::Sent` does not carry): from the
    /// bar's making, or from a send that started again.
    sending: (std::time::Instant, u64, u64),
}

impl Bar {
    pub(crate) fn new(tty: bool, name: &str) -> Self {
        #[allow(clippy::disallowed_methods, reason = "the front end's rate of a body sent")]
        let now = std::time::Instant::now();
        Self { tty, drawn: false, name: name.to_owned(), sending: (now, 0, 0) }
    }

    pub(crate) fn event(&mut self, event: &Event) {
        match event {
            Event::Started { restarted, not_resumable, not_segmented, .. } => {
                if let Some(reason) = restarted {
                    crate::output::error_line(&format!(
                        "nw: restarting from zero: {}",
                        reason.explain()
                    ));
                }
                if let Some(why) = not_resumable {
                    crate::output::error_line(&format!(
                        "nw: this download cannot be resumed if interrupted: {why}"
                    ));
                }
                if let Some(why) = not_segmented {
                    crate::output::error_line(&format!("nw: one connection, not segments: {why}"));
                }
            }
            Event::Progress { received, total, rate, .. } if self.tty => {
                self.draw(*received, *total, *rate);
            }
            Event::Sent { sent, total } if self.tty => {
                #[allow(clippy::disallowed_methods, reason = "the front end's rate of a body sent")]
                let now = std::time::Instant::now();
                // Sent again from 0 (a redirect that keeps the body): the rate starts over.
                if *sent < self.sending.2 {
                    self.sending = (now, *sent, *sent);
                }
                self.sending.2 = *sent;
                let (since, from, _) = self.sending;
                let seconds = now.duration_since(since).as_secs_f64();
                let rate = if seconds > 0.0 { (sent - from) as f64 / seconds } else { 0.0 };
                self.draw(*sent, *total, rate);
            }
            Event::Progress { .. } | Event::Sent { .. } => {}
        }
    }

    /// The progress line for `received` of `total` bytes at `rate`, over the last one drawn.
    #[allow(clippy::cast_precision_loss, reason = "a display value")]
    fn draw(&mut self, received: u64, total: Option<u64>, rate: f64) {
        let (percent, eta) = match total {
            Some(t) if t > 0 => {
                let left = t.saturating_sub(received) as f64 / rate.max(1.0);
                (
                    format!("{:3.0}%", received as f64 * 100.0 / t as f64),
                    format!("  ETA {}", eta(left)),
                )
            }
            _ => ("   ?".to_owned(), String::new()),
        };
        let of = total.map_or_else(String::new, |t| format!(" of {}", size(t)));
        let stats = format!("{percent} {}{of}  {}/s{eta}", size(received), size(rate));
        let fraction = total.filter(|t| *t > 0).map(|t| received as f64 / t as f64);
        let line = progress_line(&self.name, &stats, fraction, terminal_width());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    pub(crate) fn finish(&mut self) {
        if self.drawn {
            crate::output::error_line("");
            self.drawn = false;
        }
    }
}

/// The progress line in `width` columns (the last one left free, so it never wraps): `name`
/// (cut with an ellipsis when long), a bar of `fraction` when there is room, then `stats`
/// (cut last).
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a display value: the cast saturates"
)]
fn progress_line(name: &str, stats: &str, fraction: Option<f64>, width: usize) -> String {
    let width = width.saturating_sub(1);
    let stats_len = stats.chars().count();
    if stats_len >= width {
        return stats.chars().take(width).collect();
    }
    let mut room = width - stats_len;
    let mut line = String::new();
    let fitted = fit(name, room.saturating_sub(2).min(40));
    if !fitted.is_empty() {
        room -= fitted.chars().count() + 2;
        line += &fitted;
        line += "  ";
    }
    if let Some(f) = fraction
        && room >= 12
    {
        let n = (room - 4).min(30);
        let done = ((f.clamp(0.0, 1.0) * n as f64) as usize).min(n);
        line += &format!("[{}{}]  ", "=".repeat(done), " ".repeat(n - done));
    }
    line + stats
}

/// `name` in at most `max` characters: cut with an ellipsis when longer.
fn fit(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_owned();
    }
    if max < 2 {
        return String::new();
    }
    name.chars().take(max - 1).chain(std::iter::once('…')).collect()
}

/// The terminal's width in columns (stderr's), 80 when it cannot be told.
fn terminal_width() -> usize {
    // SAFETY: winsize is plain data; zeroed, it is a valid value for TIOCGWINSZ to fill.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ on stderr's descriptor, writing into a live winsize.
    let r = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &raw mut size) };
    if r == 0 && size.ws_col > 0 { usize::from(size.ws_col) } else { 80 }
}

#[allow(clippy::cast_possible_truncation, reason = "a display value: the cast saturates")]
fn eta(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{}:{:02}", s / 60, s % 60),
        _ => format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::{file_name, progress_line};

    #[test]
    fn the_progress_line_fits_its_width_and_keeps_the_figures() {
        let stats = " 42% 1.2 MiB of 2.9 MiB  500.0 KiB/s  ETA 4 s";
        let wide = progress_line("debian-13.iso", stats, Some(0.42), 100);
        assert!(wide.starts_with("debian-13.iso  [") && wide.ends_with(stats), "{wide}");
        assert!(wide.chars().count() <= 99, "{wide}");
        assert_eq!(wide.matches('=').count(), 12, "42% of a 30-column bar: {wide}");
        // Narrow: no bar, the name cut; narrower still, the figures alone, cut.
        let narrow = progress_line("a-very-long-file-name-indeed.tar.gz", stats, Some(0.42), 60);
        assert!(narrow.contains('…') && !narrow.contains('['), "{narrow}");
        assert!(narrow.chars().count() <= 59 && narrow.ends_with(stats), "{narrow}");
        assert_eq!(progress_line("x", stats, None, 20).chars().count(), 19);
        // No total: no bar.
        assert!(!progress_line("f", stats, None, 100).contains('['));
        for width in 0..120 {
            assert!(
                progress_line("name.bin", stats, Some(1.5), width).chars().count() < width.max(1)
            );
        }
    }

    #[test]
    fn the_file_name_is_the_last_path_segment_decoded() {
        assert_eq!(file_name("http://h/a/b/big%20file.iso?x=1#f").unwrap(), "big file.iso");
        assert!(file_name("http://h/").unwrap_err().contains("give -o FILE"));
        assert!(file_name("http://h").is_err());
        assert!(file_name("http://h/a/%2e%2e").is_err());
        assert!(file_name("http://h/a%2fb").is_err());
        assert!(file_name("http://h/%zz").is_err());
        // A URL that does not parse is named as such, not as one without a file name.
        let broken = file_name("http://[::1").unwrap_err();
        assert!(broken.contains("unclosed '['") && !broken.contains("-o FILE"), "{broken}");
    }

    /// `--retry` in virtual time: the backoff doubles to 16 s, `Retry-After` replaces it (a
    /// date counted from `now`), too long a one is handed back, 4xx and no tries left end it,
    /// and a dropped body resumes.
    #[test]
    fn retries_back_off_follow_retry_after_and_stop_on_answers() {
        use std::time::{Duration, SystemTime};

        use nw_transfer::{RetryAfter, TransferError};

        use super::{Retries, RetryArgs};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        let status = |status, retry_after| TransferError::Status {
            url: "http://h/f".into(),
            status,
            retry_after,
        };
        let mut r = Retries::new(&RetryArgs { retry: 6, retry_connrefused: false });
        let waits: Vec<u64> = (0..6)
            .map(|_| r.decide(&status(503, None), now).unwrap().unwrap().wait.as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 16]);
        assert!(r.decide(&status(503, None), now).unwrap().is_none(), "no tries left");

        let mut r = Retries::new(&RetryArgs { retry: 3, retry_connrefused: false });
        let at = RetryAfter::At(now + Duration::from_secs(30));
        let next = r.decide(&status(429, Some(at)), now).unwrap().unwrap();
        assert_eq!((next.wait, next.left, next.resume), (Duration::from_secs(30), 3, false));
        assert_eq!(next.cause, "the server answered 429");
        let long = Some(RetryAfter::Seconds(3600));
        assert_eq!(r.decide(&status(503, long), now).err(), Some(Duration::from_secs(3600)));
        assert!(r.decide(&status(404, None), now).unwrap().is_none(), "a 4xx is an answer");
        let lost = TransferError::Saved {
            part: "f.part".into(),
            source: Box::new(TransferError::Lost("reset".into())),
        };
        let next = r.decide(&lost, now).unwrap().unwrap();
        assert!(next.resume && next.cause.contains("reset"), "{}", next.cause);
        assert_eq!(next.left, 2, "the 429 counted a try; the too-long wait and the 404 none");
    }
}
