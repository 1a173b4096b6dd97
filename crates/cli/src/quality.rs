//! `nw quality [CONFIG_URL]`: the responsiveness test (draft-ietf-ippm-responsiveness) —
//! goodput down and up with the link loaded, idle latency, and responsiveness in round trips
//! per minute (RPM) — against a server's configuration URL, or with none against the embedded
//! server on loopback (which works offline and measures this machine, not a network).
//! `--serve ADDR` runs that server for clients elsewhere.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nw_quality::rpm::{self, Direction, Outcome as Rpm};
use nw_serve::{self as server, Embedded};
use nw_transfer::{Configuration, Http3, Session};

use crate::trust::CtArgs;
use crate::{Outcome, UsageError};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Responsiveness: Low under 300 RPM (a loaded round trip over 200 ms), Medium under 1000, High from 1000 (under 60 ms).\n--json keys are networkQuality's: dl_throughput and ul_throughput (bit/s), responsiveness (RPM), base_rtt (ms), dl_flows, ul_flows, ...\nExit status: 0 measured; 1 the test could not measure (the reason on stderr); 2 usage."
)]
pub(crate) struct Args {
    /// The server's configuration URL (networkQuality's format, e.g. https://HOST/.well-known/nq).
    /// Without one, nw measures against its embedded server on loopback.
    #[arg(value_name = "CONFIG_URL", conflicts_with_all = ["serve", "ca_out", "root"])]
    config: Option<String>,
    /// Print one JSON object (networkQuality's keys) instead of the summary.
    #[arg(long, conflicts_with = "serve")]
    json: bool,
    /// End the test within this many seconds.
    #[arg(long, value_name = "S", default_value_t = 20, value_parser = clap::value_parser!(u64).range(2..=600))]
    max_time: u64,
    /// Load one direction only.
    #[arg(long, value_enum, default_value_t = Directions::Both)]
    direction: Directions,
    /// Extra trust anchors (PEM) for the server (a server started with --serve --ca-out FILE
    /// is trusted with --anchor FILE), and for an https:// proxy.
    #[arg(long, value_name = "FILE")]
    anchor: Vec<PathBuf>,
    #[command(flatten)]
    ct: CtArgs,
    /// Allow plain HTTP to any host.
    #[arg(long)]
    allow_http: bool,
    /// Serve instead: run the embedded server (HTTP/1.1 and HTTP/2 over TLS, HTTP/3) on ADDR
    /// until interrupted; its configuration URL goes to stdout.
    #[arg(long, value_name = "ADDR")]
    serve: Option<SocketAddr>,
    /// With --serve: write the server's CA certificate (PEM) here once it listens.
    #[arg(long, value_name = "FILE", requires = "serve")]
    ca_out: Option<PathBuf>,
    /// With --serve: also serve the files under DIR (validators, byte ranges), for `nw get`.
    #[arg(long, value_name = "DIR", requires = "serve")]
    root: Option<PathBuf>,
    #[command(flatten)]
    proxies: crate::get::ProxyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Directions {
    Both,
    Download,
    Upload,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    if args.serve.is_some() && args.proxies != crate::get::ProxyArgs::default() {
        return Err(UsageError(
            "--serve serves; --proxy, --noproxy and --proxy-pac are for measuring".into(),
        )
        .into());
    }
    // A bad --proxy or PAC file is a usage error before the embedded server starts.
    let proxies = args.proxies.proxies()?;
    if let Some(addr) = args.serve {
        return serve(addr, args.ca_out.as_deref(), args.root.as_deref()).await;
    }
    let mut embedded = None;
    let (config_url, trust) = match &args.config {
        Some(url) => (url.clone(), crate::trust::options(&args.anchor, &args.ct, true)?),
        None => {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            let server = Embedded::start(loopback, None, &server::Options::default())
                .await
                .map_err(|e| anyhow::anyhow!("could not start the embedded server: {e}"))?;
            let mut found = (server.url("/config"), server.trust());
            // --anchor still counts: for an https:// proxy on the way to the embedded server.
            if !args.anchor.is_empty() {
                let extra = crate::trust::options(&args.anchor, &args.ct, false)?;
                found.1.anchors.extend(extra.anchors);
            }
            embedded = Some(server);
            found
        }
    };
    let config = Configuration {
        trust,
        proxies,
        allow_http: args.allow_http,
        http3: Http3::Off,
        request_timeout: Duration::from_secs(10),
        ..Configuration::default()
    };
    let session = Session::ephemeral(config)?;
    let endpoints = match session.rpm_config(&config_url).await {
        Ok(e) => e,
        // Named once: most of its errors start with the URL already.
        Err(e) => return negative(&args, &crate::get::with_url(&config_url, &e.to_string())),
    };
    let params = rpm::Params {
        max_time: Duration::from_secs(args.max_time),
        directions: match args.direction {
            Directions::Both => vec![Direction::Download, Direction::Upload],
            Directions::Download => vec![Direction::Download],
            Directions::Upload => vec![Direction::Upload],
        },
        ..rpm::Params::default()
    };
    let tty = !args.json && std::io::stderr().is_terminal();
    let started = crate::output::timestamp();
    let result = session
        .responsiveness(&endpoints, params, |p| {
            if tty {
                eprint_progress(p);
            }
        })
        .await;
    if tty {
        crate::output::error_line("");
    }
    drop(embedded);
    let outcome = match result {
        Ok(o) => o,
        Err(e) => return negative(&args, &e.to_string()),
    };
    if args.json {
        let mut value = serde_json::to_value(&outcome)?;
        value["start_date"] = started.into();
        value["end_date"] = crate::output::timestamp().into();
        value["config_url"] = config_url.into();
        value["test_endpoint"] = host_of(&endpoints.large).into();
        crate::output::line(&value.to_string())?;
    } else {
        crate::output::line(&summary(&outcome, &args.direction))?;
    }
    Ok(Outcome::Success)
}

/// The test could not measure: say why (as JSON with `--json`), exit 1.
fn negative(args: &Args, why: &str) -> anyhow::Result<Outcome> {
    if args.json {
        crate::output::line(&serde_json::json!({ "error": why }).to_string())?;
    }
    crate::output::error_line(&format!("nw quality: {why}"));
    Ok(Outcome::Negative)
}

fn host_of(url: &str) -> String {
    url.split("://").nth(1).and_then(|rest| rest.split('/').next()).unwrap_or_default().to_owned()
}

/// The coarse reading of an RPM figure (ours; see the help text).
fn level(rpm: f64) -> &'static str {
    match rpm {
        r if r < 300.0 => "Low",
        r if r < 1000.0 => "Medium",
        _ => "High",
    }
}

fn rate(bits: f64) -> String {
    match bits {
        b if b >= 1e9 => format!("{:.2} Gbit/s", b / 1e9),
        b if b >= 1e6 => format!("{:.1} Mbit/s", b / 1e6),
        b => format!("{:.0} kbit/s", b / 1e3),
    }
}

fn summary(o: &Rpm, directions: &Directions) -> String {
    let saturated = |s: bool| if s { "" } else { ", not saturated" };
    let mut lines = Vec::new();
    if *directions != Directions::Upload {
        lines.push(format!(
            "Downlink: {} ({} flows{})",
            rate(o.dl_throughput),
            o.dl_flows,
            saturated(o.dl_saturated)
        ));
    }
    if *directions != Directions::Download {
        lines.push(format!(
            "Uplink:   {} ({} flows{})",
            rate(o.ul_throughput),
            o.ul_flows,
            saturated(o.ul_saturated)
        ));
    }
    lines.push(format!(
        "Responsiveness: {} ({:.0} RPM: a loaded round trip takes {:.0} ms)",
        level(o.responsiveness),
        o.responsiveness,
        60_000.0 / o.responsiveness.max(1e-9)
    ));
    lines.push(format!("Idle latency: {:.1} ms ({} probes)", o.base_rtt, o.probes));
    lines.join("\n")
}

fn eprint_progress(p: &nw_transfer::responsiveness::Progress) {
    use std::io::Write as _;
    let o = &p.outcome;
    let what = match p.direction {
        Some(Direction::Download) => {
            format!("download {} over {} flows", rate(o.dl_throughput), o.dl_flows)
        }
        Some(Direction::Upload) => {
            format!("upload {} over {} flows", rate(o.ul_throughput), o.ul_flows)
        }
        None => "idle latency".to_owned(),
    };
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{:>4.1}s  {what}", p.elapsed.as_secs_f64());
    let _ = err.flush();
}

/// `--serve`: the embedded server on `addr` until SIGINT or SIGTERM.
async fn serve(
    addr: SocketAddr,
    ca_out: Option<&std::path::Path>,
    root: Option<&std::path::Path>,
) -> anyhow::Result<Outcome> {
    let server = Embedded::start(addr, root, &server::Options::default())
        .await
        .map_err(|e| UsageError(format!("--serve {addr}: {e}")))?;
    if let Some(path) = ca_out {
        // Whole or not at all: a client waiting for the file never reads half of it.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, server.ca_pem())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| UsageError(format!("--ca-out {}: {e}", path.display())))?;
    }
    crate::output::line(&server.url("/config"))?;
    crate::output::error_line(&format!(
        "serving the responsiveness endpoints at {} (HTTP/1.1, HTTP/2; HTTP/3 on UDP {}); stop with Ctrl-C",
        server.url("/config"),
        server.h3.local_addr().port()
    ));
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    server.http.shutdown(Duration::from_millis(200)).await;
    Ok(Outcome::Success)
}
