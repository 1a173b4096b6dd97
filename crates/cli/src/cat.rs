//! `nw cat HOST PORT`: the netcat of this system. Connects by racing every address (Happy
//! Eyeballs), then copies stdin to the connection and the connection to stdout as bytes
//! arrive; half-closes on stdin EOF; exits when the peer closes. Reports go to stderr, never
//! mixed with the payload.

use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use anyhow::Context as _;
use nw_connection::driver::{ConnectError, Params, Report, Resolver, connect};
use nw_connection::happy_eyeballs::{Config, Event, FamilyPreference};
use nw_connection::tls;
use tokio::io::AsyncWriteExt;

use crate::Outcome;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 connected (and the peer closed), 1 could not connect, 2 usage, 3 environment."
)]
pub(crate) struct Args {
    /// A name, or an IPv4/IPv6 literal.
    host: String,
    /// TCP port.
    port: u16,
    /// Connect, report, and close without sending or reading data (netcat's -z).
    #[arg(short = 'z', long)]
    zero: bool,
    /// Print the establishment report (queries, every attempt, the winner) on stderr.
    #[arg(long)]
    report: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
    /// Delay between staggered attempts in milliseconds (RFC 8305; clamped to 100–2000).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    attempt_delay_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
    /// Speak TLS over the connection (the system's anchors plus any --anchor).
    #[arg(long)]
    tls: bool,
    /// ALPN protocols to offer, most preferred first (e.g. h2,http/1.1).
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "tls")]
    alpn: Vec<String>,
    /// Also trust the certificates in this PEM file (repeatable).
    #[arg(long, value_name = "FILE", requires = "tls")]
    anchor: Vec<PathBuf>,
    /// The name to send (SNI) and check the certificate for; the host by default.
    #[arg(long, value_name = "NAME", requires = "tls")]
    sni: Option<String>,
    /// A client certificate chain (PEM) to present when the server asks.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => FamilyPreference::Ipv4Only,
        (_, true) => FamilyPreference::Ipv6Only,
        _ => FamilyPreference::Ipv6,
    };
    let config = Config {
        family,
        attempt_delay: Duration::from_millis(args.attempt_delay_ms),
        timeout: Duration::from_secs(args.timeout.max(1)),
        ..Config::default()
    };
    let resolver = Arc::new(Resolver::from_system());
    let tls = tls_config(&args).map_err(|e| crate::UsageError(format!("{e:#}")))?;
    let params = Params { race: config, tls, server_name: args.sni.clone() };
    let connected = match connect(&args.host, args.port, &params, resolver).await {
        Ok(c) => c,
        Err(ConnectError::Race { error, report }) => {
            if args.report || args.json {
                print_report(&report, args.json);
            }
            crate::output::error_line(&format!("nw cat: {error}"));
            return Ok(Outcome::Negative);
        }
        Err(other) => {
            crate::output::error_line(&format!("nw cat: {other}"));
            return Ok(Outcome::Negative);
        }
    };
    if args.report || args.json {
        print_report(&connected.report, args.json);
    }
    if args.zero {
        return Ok(Outcome::Success);
    }
    let (mut from_peer, mut to_peer) = tokio::io::split(connected.stream);
    let upload = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let _ = tokio::io::copy(&mut stdin, &mut to_peer).await;
        let _ = to_peer.shutdown().await; // half-close: the peer sees EOF, can still answer
    });
    let mut stdout = tokio::io::stdout();
    let copied = tokio::io::copy(&mut from_peer, &mut stdout).await;
    let _ = stdout.flush().await;
    upload.abort();
    match copied {
        Ok(_) => Ok(Outcome::Success),
        Err(e) => {
            crate::output::error_line(&format!("nw cat: the connection failed: {e}"));
            Ok(Outcome::Negative)
        }
    }
}

/// The TLS client configuration the flags ask for. Bad files are usage errors that name them.
fn tls_config(args: &Args) -> anyhow::Result<Option<Arc<rustls::ClientConfig>>> {
    if !args.tls {
        return Ok(None);
    }
    let mut extra_anchors = Vec::new();
    for path in &args.anchor {
        extra_anchors.extend(tls::load_certs(path).context("--anchor")?);
    }
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = tls::load_certs(cert).context("--cert")?;
            Some((chain, Arc::new(tls::load_key(key).context("--key")?)))
        }
        _ => None,
    };
    let options = tls::ClientOptions {
        system_anchors: true,
        extra_anchors,
        alpn: args.alpn.iter().map(|a| a.as_bytes().to_vec()).collect(),
        identity,
        ..tls::ClientOptions::default()
    };
    Ok(Some(options.config()?))
}

fn print_report(report: &Report, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(report) {
            crate::output::error_line(&text);
        }
        return;
    }
    let outcome = match (report.winner, report.connected) {
        (Some(w), Some(addr)) => format!("connected to {addr} by {w}"),
        _ => "not connected".to_owned(),
    };
    crate::output::error_line(&format!(
        "{} {}:{} — {outcome}",
        report.connection, report.host, report.port
    ));
    if let Some(t) = &report.tls {
        let alpn = t.alpn.as_deref().unwrap_or("none");
        crate::output::error_line(&format!(
            "  TLS {} {}, ALPN {alpn}, certificate valid for {}",
            t.version, t.cipher, t.server_name
        ));
    }
    for e in &report.events {
        let (at, text) = match e {
            Event::Answer { query, at, addresses } => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                (
                    at,
                    format!(
                        "{query:?} answer: {}",
                        if list.is_empty() { "none".into() } else { list.join(" ") }
                    ),
                )
            }
            Event::AnswerFailed { query, at, error } => (at, format!("{query:?} failed: {error}")),
            Event::AttemptStarted { id, addr, at } => (at, format!("{id} connecting to {addr}")),
            Event::AttemptFailed { id, at, error } => (at, format!("{id} failed: {error}")),
            Event::AttemptCancelled { id, at } => (at, format!("{id} closed (also-ran)")),
            Event::Won { id, addr, at } => (at, format!("{id} ready: {addr}")),
            Event::Failed { at, error } => (at, format!("failed: {error}")),
        };
        crate::output::error_line(&format!("{:>9.1} ms  {text}", at.as_secs_f64() * 1e3));
    }
}
