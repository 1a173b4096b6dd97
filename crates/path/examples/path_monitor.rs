//! A path monitor: prints the path now and again on every change, the way Network framework's
//! `NWPathMonitor` reports it, until Ctrl-C (or until whatever reads its output goes away,
//! as `head` does). With a destination argument it also prints the path to that address (is it
//! reachable from here, and over which interface?).
//!
//! ```sh
//! cargo run -p nw-path --example path_monitor            # the host's path
//! cargo run -p nw-path --example path_monitor 192.0.2.7  # and the path to one address
//! ```

#![allow(clippy::print_stderr, reason = "an example says what went wrong")]

use std::fmt::Write as _;
use std::io::Write as _;

use nw_path::{Conditions, PathService, Status};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("path_monitor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let destination = match std::env::args().nth(1) {
        None => None,
        Some(text) => Some(text.parse::<std::net::IpAddr>().map_err(|_| {
            format!("{text:?} is not an IP address (a path is judged for an address)")
        })?),
    };
    // One service per process: a thread of its own reads the kernel, never this runtime.
    let service = PathService::shared()?;
    let mut readings = service.subscribe();
    loop {
        let reading = tokio::select! {
            reading = readings.next() => reading?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let path = reading.path(&Conditions::default());
        let via = path.primary().map_or("nothing", |p| p.interface.name.as_str());
        let mut lines = String::new();
        match (path.status, path.reason) {
            (Status::Satisfied, _) => writeln!(lines, "satisfied via {via} ({:?})", reading.cause),
            (_, reason) => {
                writeln!(lines, "not satisfied: {}", reason.map_or("unknown", |r| r.explain()))
            }
        }?;
        if let Some(to) = destination {
            let path = reading.path_for(to, &Conditions::default());
            let via = path.primary().map_or("nothing", |p| p.interface.name.as_str());
            match path.reason {
                None => writeln!(lines, "  {to}: reachable via {via}"),
                Some(reason) => writeln!(lines, "  {to}: {}", reason.explain()),
            }?;
        }
        // Written, not printed: a reader that went away ends the monitor quietly, where
        // `println!` would panic.
        let mut stdout = std::io::stdout().lock();
        match stdout.write_all(lines.as_bytes()).and_then(|()| stdout.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            written => written?,
        }
    }
}
