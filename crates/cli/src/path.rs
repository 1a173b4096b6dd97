//! `nw path`: the current path, or `--watch` for one line per update.

use anyhow::Context as _;
use nw_path::monitor::Cause;
use nw_path::{Conditions, InterfaceType, MonitorOptions, Path, PathMonitor, Reason, Status};
use serde::Serialize;

use crate::Outcome;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 satisfied, 1 unsatisfied or requires a connection, 2 usage, 3 no netlink.\n\
Expensive/constrained come from NetworkManager, else NW_EXPENSIVE / NW_CONSTRAINED (comma-separated\n\
interface names), else /etc/nwkit/path.toml (expensive = [..], constrained = [..]), else unknown."
)]
pub(crate) struct Args {
    /// Print the path now and then one line per update, until interrupted.
    #[arg(long)]
    watch: bool,
    /// With --watch: stop after this many lines.
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
    /// Print JSON objects (one per line with --watch).
    #[arg(long)]
    json: bool,
    /// Debounce window for --watch, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    debounce_ms: u64,
    /// With --watch: the netlink receive buffer in bytes (default 1 MiB).
    #[arg(long, value_name = "BYTES", requires = "watch")]
    netlink_rcvbuf: Option<usize>,
    #[command(flatten)]
    conditions: ConditionArgs,
}

/// Network-framework-style path conditions.
#[derive(Debug, clap::Args)]
pub(crate) struct ConditionArgs {
    /// Only this interface.
    #[arg(long, value_name = "NAME")]
    require_interface: Option<String>,
    /// Only interfaces of this type (wired, wifi, cellular, other).
    #[arg(long, value_name = "TYPE")]
    require_type: Option<InterfaceType>,
    /// Never interfaces of this type (repeatable).
    #[arg(long, value_name = "TYPE")]
    prohibit_type: Vec<InterfaceType>,
    /// Never expensive interfaces.
    #[arg(long)]
    prohibit_expensive: bool,
    /// Never constrained interfaces.
    #[arg(long)]
    prohibit_constrained: bool,
}

impl ConditionArgs {
    pub(crate) fn conditions(&self) -> Conditions {
        Conditions {
            required_interface: self.require_interface.clone(),
            required_type: self.require_type,
            prohibited_types: self.prohibit_type.clone(),
            prohibit_expensive: self.prohibit_expensive,
            prohibit_constrained: self.prohibit_constrained,
        }
    }
}

/// The JSON shape of `nw path --json` and of every `--watch --json` line.
#[derive(Debug, Serialize)]
pub(crate) struct Report<'a> {
    ts: String,
    cause: Cause,
    #[serde(flatten)]
    path: &'a Path,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    let conditions = args.conditions.conditions();
    if !args.watch {
        let service = nw_path::PathService::shared().context("reading the path")?;
        let path = service.path(&conditions).await.context("reading the path")?;
        print(&path, Cause::Initial, args.json, false)?;
        return Ok(outcome(&path));
    }
    let debounce = nw_path::debounce::Config {
        window: std::time::Duration::from_millis(args.debounce_ms),
        ..Default::default()
    };
    let mut monitor = PathMonitor::start(MonitorOptions {
        conditions,
        debounce,
        receive_buffer: args.netlink_rcvbuf,
    })
    .context("starting the path monitor")?;
    let mut printed = 0;
    let mut last = Outcome::Negative;
    loop {
        let update = tokio::select! {
            u = monitor.next() => u,
            _ = tokio::signal::ctrl_c() => return Ok(last),
        };
        let Some(update) = update else { return Ok(last) };
        let update = update.context("watching the path")?;
        if print(&update.path, update.cause, args.json, true).is_err() {
            return Ok(last); // stdout closed
        }
        last = outcome(&update.path);
        printed += 1;
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(last);
        }
    }
}

fn outcome(path: &Path) -> Outcome {
    if path.status == Status::Satisfied { Outcome::Success } else { Outcome::Negative }
}

fn print(path: &Path, cause: Cause, json: bool, watching: bool) -> std::io::Result<()> {
    if json {
        let report = Report { ts: output::timestamp(), cause, path };
        let text = serde_json::to_string(&report).map_err(std::io::Error::other)?;
        return output::line(&text);
    }
    if watching {
        return output::line(&format!("{} {}", output::timestamp(), summary(path)));
    }
    output::line(&summary(path))?;
    for line in details(path) {
        output::line(&format!("  {line}"))?;
    }
    Ok(())
}

/// One line: status, why or via what, and the families.
pub(crate) fn summary(path: &Path) -> String {
    match (path.status, path.reason, path.primary()) {
        (Status::Satisfied, _, Some(p)) => {
            let mut s = format!("satisfied via {} ({})", p.interface.name, p.interface.kind);
            for (on, name) in [
                (path.supports_ipv4, "IPv4"),
                (path.supports_ipv6, "IPv6"),
                (path.supports_dns, "DNS"),
            ] {
                if on {
                    s.push_str(" · ");
                    s.push_str(name);
                }
            }
            s.push_str(&format!(" · expensive: {}", tri(path.expensive)));
            if path.better_path_available {
                s.push_str(" · better path available");
            }
            s
        }
        (status, reason, _) => {
            let status = if status == Status::RequiresConnection {
                "requires connection"
            } else {
                "unsatisfied"
            };
            match reason {
                Some(r) => format!("{status}: {}", r.explain()),
                None => status.to_owned(),
            }
        }
    }
}

fn details(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if path.status == Status::Satisfied {
        out.push(format!(
            "expensive: {}   constrained: {}",
            tri(path.expensive),
            tri(path.constrained)
        ));
        if path.expensive.is_none() || path.constrained.is_none() {
            out.push("(unknown: no NetworkManager reading; set NW_EXPENSIVE / NW_CONSTRAINED or /etc/nwkit/path.toml)".into());
        }
    }
    if !path.gateways.is_empty() {
        let g: Vec<String> = path.gateways.iter().map(ToString::to_string).collect();
        out.push(format!("gateways: {}", g.join(", ")));
    }
    for p in &path.interfaces {
        let addrs: Vec<String> =
            p.interface.addresses.iter().map(|a| format!("{}/{}", a.ip, a.prefix_len)).collect();
        out.push(format!("{} ({}): {}", p.interface.name, p.interface.kind, addrs.join(" ")));
    }
    for u in &path.unavailable {
        let why = match u.why {
            nw_path::Unusable::Down => "down".to_owned(),
            nw_path::Unusable::NoCarrier => "no carrier".to_owned(),
            nw_path::Unusable::Dormant => "dormant".to_owned(),
            nw_path::Unusable::Excluded => match u.excluded_by {
                Some(Reason::RequiredInterfaceUnavailable) => {
                    "not the required interface or type".to_owned()
                }
                Some(Reason::InterfaceTypeProhibited) => {
                    format!("{} interfaces are prohibited", u.kind)
                }
                Some(Reason::ExpensiveProhibited) => {
                    "expensive, and expensive interfaces are prohibited".to_owned()
                }
                Some(Reason::ConstrainedProhibited) => {
                    "constrained, and constrained interfaces are prohibited".to_owned()
                }
                _ => "excluded by the conditions".to_owned(),
            },
        };
        out.push(format!("{} ({}): not used — {why}", u.name, u.kind));
    }
    out
}

fn tri(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}
