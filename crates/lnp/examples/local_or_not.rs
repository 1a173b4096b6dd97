//! Whether destinations are the local network on this host now — the question local network
//! privacy asks before any connection — and the identity an app is judged as.
//!
//! ```sh
//! cargo run -p nw-lnp --example local_or_not -- 192.168.1.20 8.8.8.8 printer.local
//! cargo run -p nw-lnp --example local_or_not -- --pid 1234
//! ```
//!
//! Without destinations it asks about a handful that show the rule: loopback, link-local,
//! multicast, a `.local` name, an address on each on-link prefix, and one routed elsewhere.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "an example prints its answers")]

use std::io::Write as _;
use std::net::IpAddr;

use nw_lnp::{classify, classify_name, identity, on_link_prefixes};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`… | head`): quietly, as a pipeline expects.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("local_or_not: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // Written, not printed: a reader that goes away (`… | head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--pid") {
        let pid: u32 = args.get(at + 1).ok_or("--pid needs a process id")?.parse()?;
        let who = identity::of_process(pid).ok_or_else(|| format!("no process {pid}"))?;
        let exe =
            if who.executable.is_empty() { "its executable unreadable" } else { &who.executable };
        writeln!(out, "process {pid} ({exe}) is judged as {}", who.identity)?;
        args.drain(at..at + 2);
    } else {
        writeln!(out, "this process is judged as {}", identity::of_self().identity)?;
    }
    let snapshot = nw_path::snapshot()?;
    let prefixes = on_link_prefixes(&snapshot);
    writeln!(
        out,
        "on-link prefixes: {}",
        if prefixes.is_empty() { "none".into() } else { prefixes.join(", ") }
    )?;
    if args.is_empty() {
        args = ["127.0.0.1", "169.254.10.1", "224.0.0.251", "ff02::fb", "printer.local", "1.1.1.1"]
            .map(String::from)
            .to_vec();
        // The first address of each on-link IPv4 prefix past the network's own.
        for prefix in &prefixes {
            if let Some((network, _)) = prefix.split_once('/')
                && let Ok(IpAddr::V4(v4)) = network.parse::<IpAddr>()
            {
                args.push(std::net::Ipv4Addr::from(u32::from(v4) + 1).to_string());
            }
        }
    }
    for destination in &args {
        let locality = match destination.parse::<IpAddr>() {
            Ok(ip) => classify(ip, &snapshot),
            Err(_) => classify_name(destination),
        };
        let verdict = if locality.is_local() { "local: permission needed" } else { "not local" };
        writeln!(out, "{destination:>16}  {verdict:<26} ({locality})")?;
    }
    Ok(())
}
