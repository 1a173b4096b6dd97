//! `nw doctor [TARGET]`: the end-to-end self-check. Each capability adds a section; the JSON
//! shape stays `{"sections": [{"name", "status", "details"}]}`.
//!
//! Findings about the host (no default route, cost unknown) are warnings. The exit status is 1
//! only when one of doctor's own checks fails, or the TARGET the caller named cannot be reached.

use std::time::Duration;

use nw_path::{Path, PathMonitor, Snapshot, Status};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Outcome;
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Also check this destination: a URL (https://host[:port]/…) or HOST:PORT.
    target: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Section {
    name: &'static str,
    status: Level,
    #[serde(skip)]
    summary: String,
    details: Value,
}

impl Section {
    fn new(name: &'static str, status: Level, summary: impl Into<String>, details: Value) -> Self {
        Self { name, status, summary: summary.into(), details }
    }
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    let mut sections = Vec::new();
    match nw_path::snapshot() {
        Ok(snap) => {
            sections.push(interfaces(&snap));
            match nw_path::current(&nw_path::Conditions::default()) {
                Ok(path) => {
                    sections.push(path_section(&path));
                    sections.push(cost(&path));
                    sections.push(monitor(&path).await);
                }
                Err(e) => sections.push(Section::new(
                    "path",
                    Level::Fail,
                    format!("{e}"),
                    json!({"error": e.to_string()}),
                )),
            }
        }
        Err(e) => sections.push(Section::new(
            "interfaces",
            Level::Fail,
            format!("{e}"),
            json!({"error": e.to_string()}),
        )),
    }
    if let Some(target) = &args.target {
        sections.push(target_section(target).await);
    }

    if args.json {
        output::line(&serde_json::to_string(&json!({ "sections": sections }))?)?;
    } else {
        let width = sections.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &sections {
            let level = match s.status {
                Level::Ok => "ok",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            output::line(&format!("{level:<5} {:<width$}  {}", s.name, s.summary))?;
        }
    }
    let failed = sections.iter().any(|s| s.status == Level::Fail);
    Ok(if failed { Outcome::Negative } else { Outcome::Success })
}

fn interfaces(snap: &Snapshot) -> Section {
    let mut problems = Vec::new();
    for i in &snap.interfaces {
        if i.index == 0 {
            problems.push(format!("{} has index 0", i.name));
        }
        if snap.interfaces.iter().filter(|j| j.name == i.name).count() > 1 {
            problems.push(format!("{} appears twice", i.name));
        }
    }
    let list: Vec<String> =
        snap.interfaces.iter().map(|i| format!("{} ({})", i.name, i.kind)).collect();
    let details = json!({ "interfaces": snap.interfaces, "problems": problems });
    if problems.is_empty() {
        Section::new("interfaces", Level::Ok, list.join(", "), details)
    } else {
        Section::new("interfaces", Level::Fail, problems.join("; "), details)
    }
}

fn path_section(path: &Path) -> Section {
    let details = serde_json::to_value(path).unwrap_or(Value::Null);
    let level = if path.status == Status::Satisfied { Level::Ok } else { Level::Warn };
    Section::new("path", level, crate::path::summary(path), details)
}

fn cost(path: &Path) -> Section {
    let details = json!({ "expensive": path.expensive, "constrained": path.constrained });
    let Some(primary) = path.primary() else {
        return Section::new("cost", Level::Ok, "no usable interface to judge", details);
    };
    if path.expensive.is_none() || path.constrained.is_none() {
        let summary = format!(
            "{}: expensive {}, constrained {} — no NetworkManager reading; set NW_EXPENSIVE / NW_CONSTRAINED or /etc/nwkit/path.toml",
            primary.interface.name,
            word(path.expensive),
            word(path.constrained)
        );
        return Section::new("cost", Level::Warn, summary, details);
    }
    let summary = format!(
        "{}: expensive {}, constrained {}",
        primary.interface.name,
        word(path.expensive),
        word(path.constrained)
    );
    Section::new("cost", Level::Ok, summary, details)
}

fn word(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

/// Doctor's own check: the netlink subscription starts and its first update agrees with the
/// one-shot evaluation.
#[allow(clippy::disallowed_methods, reason = "front end: times its own check")]
async fn monitor(oneshot: &Path) -> Section {
    let started = std::time::Instant::now();
    let first =
        async { PathMonitor::start(nw_path::MonitorOptions::default())?.next().await.transpose() };
    match tokio::time::timeout(Duration::from_secs(3), first).await {
        Ok(Ok(Some(update))) => {
            let ms = started.elapsed().as_secs_f64() * 1e3;
            let details = json!({ "first_update_ms": ms, "status": update.path.status });
            if update.path.status == oneshot.status {
                Section::new(
                    "monitor",
                    Level::Ok,
                    format!("netlink subscription live; first update in {ms:.1} ms"),
                    details,
                )
            } else {
                Section::new(
                    "monitor",
                    Level::Fail,
                    "the monitor's first update disagrees with a one-shot reading",
                    details,
                )
            }
        }
        Ok(Ok(None)) => Section::new(
            "monitor",
            Level::Fail,
            "the monitor stopped before its first update",
            Value::Null,
        ),
        Ok(Err(e)) => {
            Section::new("monitor", Level::Fail, e.to_string(), json!({"error": e.to_string()}))
        }
        Err(_) => Section::new("monitor", Level::Fail, "no first update within 3 s", Value::Null),
    }
}

/// A host and port from a URL or HOST:PORT.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
}

fn parse_target(text: &str) -> Result<Target, String> {
    let hint =
        "give a URL (https://example.test/) or HOST:PORT (example.test:443, [2001:db8::1]:443)";
    let (scheme, rest) = match text.split_once("://") {
        Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
        None => (None, text),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) =
            v6.split_once(']').ok_or(format!("{text:?}: unclosed '[' in the address; {hint}"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            _ => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?} has no host; {hint}"));
    }
    let port = match (port, scheme.as_deref()) {
        (Some(p), _) => p
            .parse()
            .map_err(|_| format!("{text:?}: port {p:?} is not a number from 1 to 65535; {hint}"))?,
        (None, Some("https" | "wss")) => 443,
        (None, Some("http" | "ws")) => 80,
        (None, Some(s)) => {
            return Err(format!("{text:?}: no default port for scheme {s:?}; add one ({hint})"));
        }
        (None, None) => return Err(format!("{text:?} has no port; {hint}")),
    };
    if port == 0 {
        return Err(format!("{text:?}: port 0 cannot be connected to; {hint}"));
    }
    Ok(Target { host: host.to_owned(), port })
}

/// Resolves the target and opens one TCP connection (each address in turn, 3 s apiece).
/// Connection racing arrives with nw-connection; this is a plain reachability check.
#[allow(clippy::disallowed_methods, reason = "front end: times its own check")]
async fn target_section(text: &str) -> Section {
    let target = match parse_target(text) {
        Ok(t) => t,
        Err(why) => {
            return Section::new(
                "target",
                Level::Fail,
                why.clone(),
                json!({"target": text, "error": why}),
            );
        }
    };
    let started = std::time::Instant::now();
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                let why = format!(
                    "could not resolve {}: {e}; check the name and `nw path` (supports DNS?)",
                    target.host
                );
                return Section::new(
                    "target",
                    Level::Fail,
                    why.clone(),
                    json!({"target": text, "error": why}),
                );
            }
        };
    let mut errors = Vec::new();
    for addr in &addrs {
        match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(_)) => {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                return Section::new(
                    "target",
                    Level::Ok,
                    format!("TCP connected to {addr} in {ms:.1} ms"),
                    json!({"target": text, "addresses": addrs, "connected": addr, "ms": ms}),
                );
            }
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: no answer within 3 s")),
        }
    }
    let why =
        format!("could not connect to {}:{} ({})", target.host, target.port, errors.join("; "));
    Section::new(
        "target",
        Level::Fail,
        why,
        json!({"target": text, "addresses": addrs, "errors": errors}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: u16) -> Target {
        Target { host: host.into(), port }
    }

    #[test]
    fn targets_parse_or_say_what_to_try() {
        assert_eq!(parse_target("https://example.test/x?y").unwrap(), t("example.test", 443));
        assert_eq!(parse_target("http://u:p@example.test:8080").unwrap(), t("example.test", 8080));
        assert_eq!(parse_target("127.0.0.1:22").unwrap(), t("127.0.0.1", 22));
        assert_eq!(parse_target("[2001:db8::1]:443").unwrap(), t("2001:db8::1", 443));
        assert!(parse_target("example.test").unwrap_err().contains("no port"));
        assert!(parse_target("host:99999").unwrap_err().contains("1 to 65535"));
        assert!(parse_target("gopher://x").unwrap_err().contains("no default port"));
        assert!(parse_target("[::1:80").unwrap_err().contains("unclosed"));
        assert!(parse_target("https://").unwrap_err().contains("no host"));
    }
}
