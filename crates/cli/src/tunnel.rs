//! `nw tunnel`: hosts a packet tunnel provider (nw-tunnel) in the foreground.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use nw_tunnel::{Ended, Event, HostOptions, StopReason};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::{EXIT_ENVIRONMENT, Outcome, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Host a provider until it stops or nw is interrupted (Ctrl-C, SIGTERM), then remove
    /// every route, rule and the device. Needs root; the provider runs as `nobody`.
    Up(Box<UpArgs>),
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The provider is started with the contract socket as descriptor 3 (NW_TUNNEL_FD); see nw_tunnel::protocol for the messages.\nExit status: 0 after an orderly stop that left nothing behind; 1 when the provider failed or something was left; 2 for usage; 3 when the host could not be set up (no root, no /dev/net/tun, a provider that cannot be started)."
)]
struct UpArgs {
    /// The provider's executable, followed by its arguments (after `--`).
    #[arg(long, value_name = "PROGRAM")]
    provider: PathBuf,
    /// Arguments for the provider.
    #[arg(last = true, value_name = "ARG")]
    args: Vec<OsString>,
    /// The configuration's options, as a JSON object, passed to the provider in `start`.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    options: String,
    /// The TUN interface's name (`%d` is numbered by the kernel).
    #[arg(long, value_name = "NAME", default_value = "nwtun%d")]
    interface: String,
    /// Seconds the provider has to say it started.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    start_timeout: u64,
    /// One JSON object per event on stdout instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::Up(up) => run_up(*up).await,
    }
}

async fn run_up(args: UpArgs) -> anyhow::Result<Outcome> {
    let options = crate::provider_options(&args.options)?;
    if args.interface.is_empty() || args.interface.len() > 15 || args.interface.contains('/') {
        return Err(UsageError(format!(
            "--interface {:?} is not an interface name (1 to 15 characters, no '/')",
            args.interface
        ))
        .into());
    }
    let mut host = HostOptions::new(&args.provider);
    host.args = args.args;
    host.options = options;
    host.interface = args.interface;
    host.start_timeout = Duration::from_secs(args.start_timeout.clamp(1, 3600));

    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let hosted = nw_tunnel::host::run(host, events_tx, stop_rx);
    tokio::pin!(hosted);
    let json = args.json;
    let ended = loop {
        tokio::select! {
            ended = &mut hosted => break ended,
            Some(event) = events.recv() => show(&event, json),
            _ = interrupt.recv() => { let _ = stop_tx.send(Some(StopReason::UserInitiated)); }
            _ = terminate.recv() => { let _ = stop_tx.send(Some(StopReason::UserInitiated)); }
        }
    };
    while let Ok(event) = events.try_recv() {
        show(&event, json);
    }
    match ended {
        Ok(ended) => {
            show_end(&ended, json);
            let clean = ended.leftovers.is_empty();
            Ok(if clean && ended.reason == StopReason::UserInitiated {
                Outcome::Success
            } else {
                Outcome::Negative
            })
        }
        // The name is the user's choice: a usage error, as clap's own are.
        Err(e @ nw_tunnel::HostError::InterfaceExists(_)) => Err(UsageError(e.to_string()).into()),
        Err(e) => {
            crate::output::error_line(&format!("nw: {e}"));
            Ok(Outcome::Exit(EXIT_ENVIRONMENT))
        }
    }
}

#[allow(clippy::print_stdout, reason = "nw tunnel's event lines are its output")]
fn show(event: &Event, json: bool) {
    let (line, object) = match event {
        Event::Created { interface, table, pid } => (
            format!(
                "{interface}: created (routing table {table:#x}); provider pid {}",
                pid.map_or_else(|| "?".into(), |p| p.to_string())
            ),
            json!({"event": "created", "interface": interface, "table": table, "pid": pid}),
        ),
        Event::Applied { id, settings, state, took } => {
            let ms = took.as_secs_f64() * 1000.0;
            (
                format!(
                    "settings {id} applied in {ms:.1} ms: {} address(es), {} route(s), MTU {}",
                    state.addresses.len(),
                    state.routes.len(),
                    state.mtu
                ),
                json!({
                    "event": "applied", "id": id, "ms": ms, "settings": settings,
                    "kernel": {
                        "mtu": state.mtu,
                        "addresses": state.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "routes": state.routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "rules": state.rules,
                    },
                }),
            )
        }
        Event::Refused { id, message } => (
            format!("settings {id} refused: {message}"),
            json!({"event": "refused", "id": id, "message": message}),
        ),
        Event::Started => ("started".into(), json!({"event": "started"})),
        Event::Reasserting(r) => (
            if *r { "reasserting".into() } else { "reasserted".into() },
            json!({"event": "reasserting", "reasserting": r}),
        ),
        Event::AppMessage(data) => {
            (format!("provider says: {data}"), json!({"event": "app_message", "data": data}))
        }
    };
    if json {
        println!("{object}");
    } else {
        println!("{line}");
    }
}

#[allow(clippy::print_stdout, reason = "nw tunnel's event lines are its output")]
fn show_end(ended: &Ended, json: bool) {
    let exit = ended.exit.map(|s| s.to_string());
    if json {
        println!(
            "{}",
            json!({
                "event": "stopped", "reason": ended.reason.as_str(), "message": ended.message,
                "provider_exit": exit, "leftovers": ended.leftovers,
            })
        );
        return;
    }
    let mut line = format!("stopped: {}", ended.reason.as_str());
    if let Some(m) = &ended.message {
        line.push_str(&format!(" (provider {m})"));
    }
    if ended.leftovers.is_empty() {
        line.push_str("; nothing left behind");
    } else {
        line.push_str(&format!("; left behind: {}", ended.leftovers.join(", ")));
    }
    println!("{line}");
}
