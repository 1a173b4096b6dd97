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
    let mut previous: Option<Path> = None;
    loop {
        let update = tokio::select! {
            u = monitor.next() => u,
            _ = tokio::signal::ctrl_c() => return Ok(last),
        };
        let Some(update) = update else { return Ok(last) };
        let update = update.context("watching the path")?;
        let written = if args.json {
            print(&update.path, update.cause, true, true)
        } else {
            let mut text = format!("{} {}", output::timestamp(), summary(&update.path));
            if let Some(before) = &previous {
                text.push_str(" — ");
                text.push_str(&changes(before, &update.path).join("; "));
            }
            output::line(&text)
        };
        if written.is_err() {
            return Ok(last); // stdout closed
        }
        previous = Some(update.path.clone());
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

/// What changed from one path to the next, in words: interfaces that appeared, went or
/// changed state, addresses added (+) and removed (−), gateways, the primary, the cost.
pub(crate) fn changes(old: &Path, new: &Path) -> Vec<String> {
    use std::collections::BTreeMap;
    let state = |p: &Path| -> BTreeMap<String, String> {
        let usable = p.interfaces.iter().map(|i| (i.interface.name.clone(), "usable".to_owned()));
        let not = p.unavailable.iter().map(|u| (u.name.clone(), unusable(u)));
        usable.chain(not).collect()
    };
    let addresses = |p: &Path| -> BTreeMap<String, Vec<String>> {
        let list = |i: &nw_path::Interface| {
            i.addresses.iter().map(|a| format!("{}/{}", a.ip, a.prefix_len)).collect()
        };
        p.interfaces.iter().map(|i| (i.interface.name.clone(), list(&i.interface))).collect()
    };
    let mut out = Vec::new();
    let (was, now) = (state(old), state(new));
    for (name, s) in &now {
        match was.get(name) {
            None => out.push(format!("{name} appeared ({s})")),
            Some(before) if before != s => out.push(format!("{name}: {before} → {s}")),
            Some(_) => {}
        }
    }
    out.extend(was.keys().filter(|n| !now.contains_key(*n)).map(|n| format!("{n} gone")));
    let (was, now) = (addresses(old), addresses(new));
    for (name, list) in &now {
        let before = was.get(name).cloned().unwrap_or_default();
        let added = list.iter().filter(|a| !before.contains(a)).map(|a| format!("+{a}"));
        let removed = before.iter().filter(|a| !list.contains(a)).map(|a| format!("−{a}"));
        let moved: Vec<String> = added.chain(removed).collect();
        if !moved.is_empty() && was.contains_key(name) {
            out.push(format!("{name} {}", moved.join(" ")));
        }
    }
    if old.gateways != new.gateways {
        let list = |g: &[std::net::IpAddr]| {
            if g.is_empty() {
                "none".to_owned()
            } else {
                g.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            }
        };
        out.push(format!("gateways {} → {}", list(&old.gateways), list(&new.gateways)));
    }
    let primary = |p: &Path| p.primary().map(|i| i.interface.name.clone());
    if primary(old) != primary(new) && old.status == new.status {
        let name = |n: Option<String>| n.unwrap_or_else(|| "none".into());
        out.push(format!("primary {} → {}", name(primary(old)), name(primary(new))));
    }
    for (what, before, after) in [
        ("expensive", old.expensive, new.expensive),
        ("constrained", old.constrained, new.constrained),
    ] {
        if before != after {
            out.push(format!("{what} {} → {}", tri(before), tri(after)));
        }
    }
    if out.is_empty() {
        out.push("interface details changed (flags, MTU or hardware address)".into());
    }
    out
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
        let why = unusable(u);
        out.push(format!("{} ({}): not used — {why}", u.name, u.kind));
    }
    out
}

/// Why an interface is not used, in words.
fn unusable(u: &nw_path::UnavailableInterface) -> String {
    match u.why {
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
    }
}

fn tri(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use nw_path::cost::CostReadings;

    use nw_path::{Conditions, Interface, InterfaceType, Route, Snapshot};

    use super::changes;

    fn eth(name: &str, index: u32, ips: &[&str]) -> Interface {
        ips.iter().fold(Interface::up(index, name, InterfaceType::Wired), |i, ip| {
            i.with_address(ip.parse().unwrap(), 24)
        })
    }

    fn path(interfaces: Vec<Interface>, gateway: &str) -> nw_path::Path {
        let routes = vec![Route {
            destination: "0.0.0.0".parse().unwrap(),
            prefix_len: 0,
            gateway: Some(gateway.parse().unwrap()),
            interface: 2,
            metric: 100,
        }];
        let snapshot = Snapshot { interfaces, routes, dns_servers: Vec::new() };
        nw_path::evaluate(&snapshot, &Conditions::default(), &CostReadings::default())
    }

    #[test]
    fn a_watch_line_says_what_changed() {
        let before = path(vec![eth("eth0", 2, &["192.0.2.10"])], "192.0.2.1");
        let mut eth1 = eth("eth1", 3, &[]);
        eth1.carrier = false;
        let after = path(vec![eth("eth0", 2, &["192.0.2.11"]), eth1.clone()], "192.0.2.254");
        assert_eq!(
            changes(&before, &after),
            [
                "eth1 appeared (no carrier)",
                "eth0 +192.0.2.11/24 −192.0.2.10/24",
                "gateways 192.0.2.1 → 192.0.2.254"
            ]
        );
        let mut down = eth("eth0", 2, &["192.0.2.11"]);
        down.carrier = false;
        let gone = path(vec![down], "192.0.2.254");
        assert_eq!(
            changes(&after, &gone),
            ["eth0: usable → no carrier", "eth1 gone", "gateways 192.0.2.254 → none"]
        );
        let mut mtu = eth("eth0", 2, &["192.0.2.10"]);
        mtu.mtu = 1400;
        assert_eq!(changes(&before, &path(vec![mtu], "192.0.2.1")).len(), 1);
    }
}
