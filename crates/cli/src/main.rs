//! `nw`: one binary, one subcommand per capability, `--json` on each.
//!
//! Exit statuses (the same for every subcommand; README "Exit status"):
//! 0 success, 1 a negative result, 2 a usage error, 3 the environment lacks something.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cat;
mod cert;
mod condition;
mod credentials;
mod doctor;
mod filter;
mod get;
mod lnp;
mod output;
mod path;
mod put;
mod quality;
mod send;
mod transfers;
mod trust;
mod tunnel;

/// nwkit's networking tool: check, watch and debug the network from the command line.
#[derive(Debug, Parser)]
#[command(name = "nw", version, about, propagate_version = true)]
struct Cli {
    /// Print logs on stderr (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Connect and copy bytes both ways (netcat): Happy Eyeballs over every address.
    Cat(cat::Args),
    /// Make a test CA and the server and client certificates it issues.
    Cert(cert::Args),
    /// Run a command across a conditioned link (delay, jitter, rate, loss, queue) to a server.
    Condition(Box<condition::Args>),
    /// End-to-end self-check: the path and interfaces now, more with each capability.
    Doctor(doctor::Args),
    /// Download files: resumable, checkpointed, never half-written.
    Get(Box<get::Args>),
    /// The network path: satisfied or not, why, over which interfaces.
    Path(path::Args),
    /// Upload a file (PUT, or POST), streamed, with progress; the answer goes to stdout. Queued
    /// (`--queue`), a PUT that fails transiently is sent again by `nw transfers run`; a POST
    /// only when it could not connect.
    Put(Box<put::Args>),
    /// Send one request of any method, with a body (text, a file, or stdin as it comes); the
    /// answer's body goes to stdout. For APIs, as `curl -X … -d …`; nothing is recorded.
    Send(Box<send::Args>),
    /// Measure the link under load: goodput down and up, idle latency, responsiveness (RPM).
    Quality(Box<quality::Args>),
    /// The transfer queue (`nw get --queue`): list it, run it, clear finished transfers.
    Transfers(transfers::Args),
    /// Evaluate a certificate chain (a server's, or one in a file) and say what fails.
    Trust(trust::Args),
    /// Host a packet tunnel provider: the TUN device, its addresses, routes and rules.
    Tunnel(tunnel::Args),
    /// Content filtering: decide each new flow by rules or a provider, with the process behind
    /// it; list every packet filter on the host.
    Filter(filter::Args),
    /// Local network privacy: which apps may reach the local network (on-link hosts,
    /// link-local, multicast, broadcast, .local), their identities, and the host's switch.
    Lnp(lnp::Args),
}

/// How a subcommand ended, mapped to the one exit-status table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 0: success (path satisfied, checks passed).
    Success,
    /// 1: a negative result (path unsatisfied, a check failed).
    Negative,
    /// Another command's status, passed through (`nw condition`).
    Exit(u8),
}

/// 3: the environment is missing something (netlink, root, a tool, a free port).
pub(crate) const EXIT_ENVIRONMENT: u8 = 3;

/// A usage error found after parsing (a file named on the command line that cannot be used):
/// exit status 2, like clap's own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(pub(crate) String);

/// A provider's `--options`: a JSON object (`nw tunnel up`, `nw filter up`).
pub(crate) fn provider_options(text: &str) -> Result<serde_json::Value, UsageError> {
    let options: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        UsageError(format!(
            "--options is not JSON: {e} (write an object such as '{{\"peer\":\"x\"}}')"
        ))
    })?;
    if !options.is_object() {
        return Err(UsageError("--options must be a JSON object, such as '{}'".into()));
    }
    Ok(options)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging(cli.verbose);
    // The WireGuard provider moves packets both ways at once: a thread per core for it.
    let threads = matches!(&cli.command, Command::Tunnel(t) if t.is_provider());
    let builder = if threads {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match { builder }.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            return output::fail_environment(&anyhow::anyhow!(
                "could not start the async runtime: {e}"
            ));
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Cat(args) => cat::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Get(args) => get::run(*args).await,
            Command::Put(args) => put::run(*args).await,
            Command::Send(args) => send::run(*args).await,
            Command::Path(args) => path::run(args).await,
            Command::Quality(args) => quality::run(*args).await,
            Command::Cert(args) => cert::run(args),
            Command::Condition(args) => condition::run(*args).await,
            Command::Transfers(args) => transfers::run(args).await,
            Command::Trust(args) => trust::run(args).await,
            Command::Tunnel(args) => tunnel::run(args).await,
            Command::Filter(args) => filter::run(args).await,
            Command::Lnp(args) => lnp::run(args).await,
        }
    });
    // stdin is read on a blocking thread that may never return; do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Negative) => ExitCode::from(1),
        Ok(Outcome::Exit(code)) => ExitCode::from(code),
        // The reader of stdout went away (`nw lnp list | head -0`): quietly, with the status
        // a shell gives a process SIGPIPE ended (128 + 13), as other tools end then.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(141)
        }
        Err(e) if e.downcast_ref::<UsageError>().is_some() => {
            output::error_line(&format!("nw: {}", output::error_text(&e)));
            ExitCode::from(2)
        }
        Err(e) => output::fail_environment(&e),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// clap checks a command's definition only when it is built: do it here, not in front of
    /// a user.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }

    /// Every argument of every subcommand says what it is for in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if arg.get_help().is_none() && !matches!(id, "help" | "version") {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "nw", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:?}");
    }
}
