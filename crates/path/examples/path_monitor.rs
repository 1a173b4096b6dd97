//! A path monitor: prints the path now and again on every change, the way Network framework's
//! `NWPathMonitor` reports it, until Ctrl-C. With a destination argument it also prints the
//! path to that address (is it reachable from here, and over which interface?).
//!
//! ```sh
//! cargo run -p nw-path --example path_monitor            # the host's path
//! cargo run -p nw-path --example path_monitor 192.0.2.7  # and the path to one address
//! ```

#![allow(clippy::print_stdout, reason = "an example prints what it sees")]

use nw_path::{Conditions, PathService, Status};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), nw_path::PathError> {
    let destination: Option<std::net::IpAddr> =
        std::env::args().nth(1).and_then(|a| a.parse().ok());
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
        match (path.status, path.reason) {
            (Status::Satisfied, _) => println!("satisfied via {via} ({:?})", reading.cause),
            (_, reason) => println!("not satisfied: {}", reason.map_or("unknown", |r| r.explain())),
        }
        if let Some(to) = destination {
            let path = reading.path_for(to, &Conditions::default());
            let via = path.primary().map_or("nothing", |p| p.interface.name.as_str());
            match path.reason {
                None => println!("  {to}: reachable via {via}"),
                Some(reason) => println!("  {to}: {}", reason.explain()),
            }
        }
    }
}
