//! `nw filter`: hosts content filtering (nw-filter) in the foreground, says how it goes, and
//! lists every packet filter on the host.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use nw_filter::{
    By, Decision, Ended, Event, FailPolicy, Flow, HostOptions, ProviderOptions, Rules,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::{EXIT_ENVIRONMENT, Outcome, UsageError};

/// A log grows to this size, then becomes `.log.1` and starts over.
const LOG_LIMIT: u64 = 8 << 20;
/// Events that may wait for the output thread; more are counted and not shown.
const DISPLAY_BACKLOG: usize = 4096;
/// How long a stopped host waits for the output thread to write what it holds.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Filter new flows until interrupted (Ctrl-C, SIGTERM): each new TCP or UDP flow from
    /// this host is decided by the rules, or by the provider a rule asks. Needs root.
    Up(Box<UpArgs>),
    /// The filter host of this network namespace: provider, flows, verdicts, queue drops.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The flows the filter host decided, newest last, with their process and verdict.
    Log {
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Every packet filter active in this network namespace and on the host, ours or not:
    /// nftables chains, iptables-legacy rules, NFQUEUE bindings, cgroup BPF programs, tc
    /// filters, with their owner when it can be known.
    List {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Removes the rules a filter host that was killed left behind.
    Down,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Rules (TOML): default = \"allow\" | \"drop\" | \"ask\", then [[rule]] tables with action and any of identity, executable, uid, cgroup, remote, ports (the peer's), local_ports (this host's: an inbound flow's service), transport, direction; the first match decides (see nw_filter::rules). Inbound flows (a peer connecting to a server here, or sending to a bound socket) are decided too, with the process whose socket they reach. A rule naming a host is decided on the name in an outbound TCP flow's first bytes (TLS server name, HTTP Host), read before they reach the peer, or else (and for UDP) on the name a DNS answer to this host gave the peer's address; a rule naming the host of an inbound flow is refused: it has none to read.\nThe provider is started as nobody with the contract socket as descriptor 3 (NW_FILTER_FD); see nw_filter::protocol. It may ask to see a TCP flow's first bytes (up to 64 KiB) before deciding: nothing reaches the peer until it passes or allows them.\nExit status: 0 after an orderly stop that removed every rule; 1 when rules were left; 2 for usage; 3 when filtering could not be set up."
)]
struct UpArgs {
    /// Drop new flows when no provider answers (crashed, hung past the deadline, stopping);
    /// the default lets them through.
    #[arg(long)]
    fail_closed: bool,
    /// A rules file (TOML).
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,
    /// The provider to ask, for flows a rule says "ask" about (with no rules file, every
    /// flow). Its arguments follow `--`.
    #[arg(long, value_name = "PROGRAM")]
    provider: Option<PathBuf>,
    /// Arguments for the provider.
    #[arg(last = true, value_name = "ARG")]
    args: Vec<OsString>,
    /// Options passed to the provider in `start`, as a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    options: String,
    /// How long a flow waits for the provider, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = nw_filter::host::DEFAULT_DEADLINE_MS)]
    deadline: u64,
    /// The NFQUEUE number.
    #[arg(long, value_name = "N", default_value_t = nw_filter::host::DEFAULT_QUEUE)]
    queue: u16,
    /// At most this many queued packets are read, attributed and given verdicts together
    /// (1: one at a time, the unbatched baseline `cargo bench -p nw --bench filter` compares
    /// with).
    #[arg(long, value_name = "N", default_value_t = nw_filter::host::DEFAULT_BATCH)]
    batch: usize,
    /// Enforce local network privacy for every program (`nw lnp`): a new flow to the local
    /// network is dropped when its app may not reach it. Alone (no rules, no provider), only
    /// flows to the local network are queued; the rest never leave the kernel.
    #[arg(long)]
    local_network: bool,
    /// One JSON object per event on stdout instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::Up(up) => run_up(*up).await,
        Action::Status { json } => status(json).await,
        Action::Log { lines, json } => log(lines, json),
        Action::List { json } => list(json).await,
        Action::Down => down().await,
    }
}

async fn run_up(args: UpArgs) -> anyhow::Result<Outcome> {
    let options = crate::provider_options(&args.options)?;
    if !(10..=60_000).contains(&args.deadline) {
        return Err(UsageError(format!(
            "--deadline {} is out of range (10 to 60000 ms)",
            args.deadline
        ))
        .into());
    }
    if !(1..=nw_filter::host::MAX_BATCH).contains(&args.batch) {
        return Err(UsageError(format!(
            "--batch {} is out of range (1 to {})",
            args.batch,
            nw_filter::host::MAX_BATCH
        ))
        .into());
    }
    let has_provider = args.provider.is_some();
    let rules = match &args.rules {
        Some(path) => {
            // A rules file of up to MAX_RULES rules fits in a few MiB; a larger one (or a
            // device) is refused, never truncated into a shorter set of rules.
            let bytes = nw_trust::read_limited(path, 16 << 20, "rules file")
                .map_err(|e| UsageError(format!("the rules {}: {e}", path.display())))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| UsageError(format!("the rules {}: not UTF-8 text", path.display())))?;
            Rules::parse(&text, has_provider)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?
        }
        // A provider and no rules: the provider decides every flow.
        None if has_provider => Rules { default: nw_filter::Action::Ask, rules: Vec::new() },
        None => Rules::default(),
    };
    if let Some(p) = &args.provider
        && !p.is_absolute()
        && !p.exists()
    {
        return Err(UsageError(format!(
            "--provider {}: no such file (give the provider's path)",
            p.display()
        ))
        .into());
    }
    let mut host = HostOptions::new();
    host.queue = args.queue;
    host.batch = args.batch;
    host.policy = if args.fail_closed { FailPolicy::Closed } else { FailPolicy::Open };
    host.deadline = Duration::from_millis(args.deadline);
    host.rules = rules;
    host.local_network = args.local_network.then(nw_lnp::Paths::from_env);
    host.provider = args.provider.map(|program| {
        let mut p = ProviderOptions::new(std::path::absolute(&program).unwrap_or(program));
        p.args = args.args;
        p.options = options;
        p
    });
    let policy = host.policy;
    let queue = host.queue;
    let local_only = host.local_network_only();
    let provider_name = host.provider.as_ref().map(|p| p.program.display().to_string());

    let state = StateFiles::new();
    // Namespaces come and go (containers, tests); their files would stay in /run for ever.
    let sweeping = state.status.parent().map(std::path::Path::to_path_buf);
    if let Some(dir) = sweeping {
        tokio::task::spawn_blocking(move || sweep(&dir));
    }
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let hosted = nw_filter::host::run(host, events_tx, stop_rx);
    tokio::pin!(hosted);
    let status = state.status.clone();
    let view = View {
        json: args.json,
        state,
        policy,
        queue,
        provider: provider_name,
        provider_pid: None,
        out: std::io::BufWriter::new(std::io::stdout()),
        log: None,
        local_only,
    };
    // The event lines, the log and the status file are written on a thread of their own: the
    // host decides flows on this runtime, and a terminal or pipe that stops reading must not
    // hold up a single verdict. Events past the backlog are counted, not waited for.
    let (display, shown) = std::sync::mpsc::sync_channel::<Event>(DISPLAY_BACKLOG);
    let (back, returned) = std::sync::mpsc::channel::<View>();
    std::thread::Builder::new().name("nw-filter-output".into()).spawn(move || {
        let mut view = view;
        // Lines are written in bulk and flushed whenever the backlog runs dry: a busy host's
        // thousands of flows a second cost a few writes, not one (or more) per line.
        loop {
            let event = match shown.try_recv() {
                Ok(e) => e,
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    view.flush();
                    match shown.recv() {
                        Ok(e) => e,
                        Err(_) => break,
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            };
            view.show(&event);
        }
        view.flush();
        let _ = back.send(view);
    })?;
    let mut not_shown = 0u64;
    let ended = loop {
        tokio::select! {
            ended = &mut hosted => break ended,
            Some(event) = events.recv() => {
                if display.try_send(event).is_err() {
                    not_shown += 1;
                }
            }
            _ = interrupt.recv() => { let _ = stop_tx.send(true); }
            _ = terminate.recv() => { let _ = stop_tx.send(true); }
        }
    };
    while let Ok(event) = events.try_recv() {
        if display.try_send(event).is_err() {
            not_shown += 1;
        }
    }
    drop(display);
    // The output thread finishes what it holds; one stuck on its output is left behind.
    let view = tokio::task::spawn_blocking(move || returned.recv_timeout(OUTPUT_GRACE).ok())
        .await
        .ok()
        .flatten();
    let _ = std::fs::remove_file(&status);
    match ended {
        Ok(ended) => {
            match view {
                Some(view) => view.end(&ended, not_shown),
                None => tracing::warn!(
                    "the output did not take the last lines within {OUTPUT_GRACE:?}; stopping without them"
                ),
            }
            Ok(if ended.leftovers.is_empty() { Outcome::Success } else { Outcome::Negative })
        }
        // The rules and the provider are the user's: a usage error, as a rules file that does
        // not parse is.
        Err(e @ (nw_filter::HostError::Unseen { .. } | nw_filter::HostError::Provider(_))) => {
            Err(UsageError(e.to_string()).into())
        }
        Err(e) => {
            crate::output::error_line(&format!("nw: {e}"));
            Ok(Outcome::Exit(EXIT_ENVIRONMENT))
        }
    }
}

/// Where a filter host keeps its status and log: one pair per network namespace, named by the
/// namespace (`INODE-COOKIE`: [`nw_provider::Namespace`]), so `nw filter status` run inside a
/// namespace finds that namespace's host, never one of a namespace that had its inode before.
struct StateFiles {
    status: PathBuf,
    log: PathBuf,
}

impl StateFiles {
    fn new() -> Self {
        let dir = nw_filter::host::state_dir();
        let ns = nw_provider::Namespace::current().key();
        Self { status: dir.join(format!("{ns}.json")), log: dir.join(format!("{ns}.log")) }
    }

    fn write_status(&self, value: &Value) {
        if let Some(dir) = self.status.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        if let Err(e) = nw_trust::files::replace(&self.status, &bytes, 0o644) {
            tracing::warn!("cannot write {}: {e}", self.status.display());
        }
    }
}

/// Removes from `dir` the status files and logs of network namespaces that no longer exist
/// (each file is named by its namespace: [`nw_provider::Namespace::gone`]), and temporary files
/// whose writer (the pid in their name) is gone. A namespace counts as existing while a process
/// is in it or it is named under /run/netns; a running host is in its own.
fn sweep(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let live = nw_provider::live_namespaces();
    if live.is_empty() {
        return; // /proc unreadable: nothing can be judged dead
    }
    let here = nw_provider::Namespace::current();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ns) = nw_provider::Namespace::of_name(&name) else { continue };
        let writer_gone = name.strip_suffix(".tmp").is_some_and(|rest| {
            rest.rsplit('.')
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| !nw_filter::host::alive(p))
        });
        if ns.gone(&live, &here) || writer_gone {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

struct View {
    json: bool,
    state: StateFiles,
    policy: FailPolicy,
    queue: u16,
    provider: Option<String>,
    provider_pid: Option<u32>,
    /// Event lines, flushed when no more events wait (a closed pipe loses lines, nothing else).
    out: std::io::BufWriter<std::io::Stdout>,
    /// The log and how long it is.
    log: Option<(std::io::BufWriter<std::fs::File>, u64)>,
    /// Only flows to the local network are queued.
    local_only: bool,
}

impl View {
    fn show(&mut self, event: &Event) {
        let (line, object) = match event {
            Event::Ready { queue, removed_stale } => {
                let stale = match removed_stale {
                    Some(pid) => format!(
                        "; removed the rules a killed host{} left",
                        pid.map_or_else(String::new, |p| format!(" (pid {p})"))
                    ),
                    None => String::new(),
                };
                let flows =
                    if self.local_only { "new flows to the local network" } else { "new flows" };
                (
                    format!(
                        "filtering {flows} through NFQUEUE {queue}, failing {}{stale}",
                        policy_name(self.policy)
                    ),
                    json!({
                        "event": "ready",
                        "queue": queue,
                        "policy": self.policy,
                        "removed_stale": removed_stale.is_some(),
                        "scope": if self.local_only { "local_network" } else { "all" },
                    }),
                )
            }
            Event::Decided { flow, decision, by } => {
                // The busiest event: serialized once, straight from the flow, for the log and
                // (with --json) the output; the text line only when it is shown.
                let line = serde_json::to_string(&FlowEvent {
                    event: "flow",
                    flow,
                    decision: *decision,
                    by,
                })
                .unwrap_or_default();
                self.append_log_line(&line);
                let _ = if self.json {
                    writeln!(self.out, "{line}")
                } else {
                    writeln!(self.out, "{}", flow_line(flow, *decision, by))
                };
                return;
            }
            Event::ProviderStarted { pid } => {
                self.provider_pid = *pid;
                (
                    format!(
                        "provider started (pid {})",
                        pid.map_or_else(|| "?".into(), |p| p.to_string())
                    ),
                    json!({"event": "provider_started", "pid": pid}),
                )
            }
            Event::ProviderDown { message, restart_in } => {
                self.provider_pid = None;
                (
                    format!(
                        "provider down: {message}; flows get the failure policy ({}); restarting in {:.2} s",
                        policy_name(self.policy),
                        restart_in.as_secs_f64()
                    ),
                    json!({"event": "provider_down", "message": message, "restart_in_ms": restart_in.as_millis()}),
                )
            }
            Event::Closed(report) => (
                format!(
                    "flow {} closed: {} bytes out, {} bytes in",
                    report.id, report.bytes_out, report.bytes_in
                ),
                json!({"event": "closed", "report": report}),
            ),
            Event::Stats(stats) => {
                self.state.write_status(&json!({
                    "pid": std::process::id(),
                    "queue": self.queue,
                    "policy": self.policy,
                    "provider": self.provider,
                    "provider_pid": self.provider_pid,
                    "stats": stats,
                }));
                return;
            }
        };
        let _ =
            if self.json { writeln!(self.out, "{object}") } else { writeln!(self.out, "{line}") };
    }

    fn flush(&mut self) {
        let _ = self.out.flush();
        if let Some((log, _)) = &mut self.log {
            let _ = log.flush();
        }
    }

    fn append_log_line(&mut self, line: &str) {
        if self.log.is_none() {
            if let Some(dir) = self.state.log.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            self.log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.state.log)
                .ok()
                .map(|f| {
                    let len = f.metadata().map_or(0, |m| m.len());
                    (std::io::BufWriter::with_capacity(64 * 1024, f), len)
                });
        }
        let Some((file, len)) = &mut self.log else { return };
        let _ = file.write_all(line.as_bytes());
        let _ = file.write_all(b"\n");
        *len += line.len() as u64 + 1;
        if *len > LOG_LIMIT {
            let _ = file.flush();
            let _ = std::fs::rename(&self.state.log, self.state.log.with_extension("log.1"));
            self.log = None;
        }
    }

    fn end(&self, ended: &Ended, not_shown: u64) {
        let s = ended.stats;
        if self.json {
            crate::output::say(&format!(
                "{}",
                json!({"event": "stopped", "stats": s, "leftovers": ended.leftovers, "not_shown": not_shown})
            ));
            return;
        }
        if not_shown > 0 {
            crate::output::say(&format!(
                "{not_shown} events were not shown: the output did not keep up"
            ));
        }
        let left = if ended.leftovers.is_empty() {
            "every rule removed".to_string()
        } else {
            format!("left behind: {}", ended.leftovers.join("; "))
        };
        crate::output::say(&format!(
            "stopped: {} flows, {} allowed, {} dropped, {} by the failure policy ({} deadlines missed); {left}",
            s.flows, s.allowed, s.dropped, s.by_policy, s.deadlines_missed
        ));
    }
}

/// A decided flow as the log and `--json` have it: `{"event":"flow","flow":…,"decision":…,"by":…}`.
#[derive(serde::Serialize)]
struct FlowEvent<'a> {
    event: &'static str,
    flow: &'a Flow,
    decision: Decision,
    by: &'a By,
}

fn policy_name(p: FailPolicy) -> &'static str {
    match p {
        FailPolicy::Open => "open",
        FailPolicy::Closed => "closed",
    }
}

fn flow_line(flow: &Flow, decision: Decision, by: &By) -> String {
    let verdict = match decision {
        Decision::Allow => "allow",
        Decision::Drop => "drop ",
    };
    let who = flow.process.as_ref().map_or_else(
        || "process unknown".to_string(),
        |p| format!("pid {} uid {} {}", p.pid, p.uid, p.identity),
    );
    let by = match by {
        By::Rule { rule } => format!("rule {rule}"),
        By::Default => "default".into(),
        By::Provider => "provider".into(),
        By::Policy { why } => format!("failure policy: {why}"),
        By::ProviderItself => "the provider's own flow".into(),
        By::LocalNetwork { locality, source } => {
            let source = serde_json::to_value(source)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("local network privacy: {locality}, {source}")
        }
    };
    // The name read from the flow's first bytes, when it was peeked at.
    let host = flow.host.as_deref().map_or_else(String::new, |h| format!(" ({h})"));
    format!(
        "{verdict} {} {} -> {}{host} {who} (by {by})",
        flow.transport.as_str(),
        flow.local,
        flow.remote
    )
}

async fn status(json: bool) -> anyhow::Result<Outcome> {
    let state = StateFiles::new();
    let current: Option<Value> = std::fs::read(&state.status)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|v: &Value| {
            v["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .is_some_and(nw_filter::host::alive)
        });
    let queues = nw_filter::list::queue_bindings();
    let Some(mut v) = current else {
        let left = tokio::task::spawn_blocking(nw_filter::host::leftover_rules).await?;
        let counting = tokio::task::spawn_blocking(nw_filter::host::leftover_counting).await?;
        if json {
            crate::output::say(&format!(
                "{}",
                json!({
                    "running": false,
                    "leftover_rules": left.is_some(),
                    "leftover_pid": left.and_then(|l| l.pid),
                    "leftover_scope": left.map(|l| if l.local_only { "local_network" } else { "all" }),
                    "leftover_counting_pid": counting,
                })
            ));
        } else {
            crate::output::say("no filter host runs in this network namespace");
            if let Some(left) = left {
                let flows = if left.local_only {
                    "new TCP and UDP flows to the local network"
                } else {
                    "new TCP and UDP flows"
                };
                crate::output::say(&format!(
                    "but the rules of a filter host that was killed{} are in place: {flows} go to a queue nobody reads (dropped if it failed closed, let through if it failed open); `nw filter down` removes them",
                    left.pid.map_or_else(String::new, |p| format!(" (pid {p})"))
                ));
            }
            if let Some(pid) = counting {
                crate::output::say(&format!(
                    "conntrack counts each connection's bytes (nf_conntrack_acct), turned on by filter host pid {pid}, which was killed; `nw filter down` turns it off again"
                ));
            }
        }
        return Ok(Outcome::Negative);
    };
    let q = v["queue"].as_u64();
    let binding = queues.iter().find(|b| Some(u64::from(b.queue)) == q);
    v["running"] = json!(true);
    v["queue_dropped"] = json!(binding.map(|b| b.queue_dropped));
    v["user_dropped"] = json!(binding.map(|b| b.user_dropped));
    v["waiting"] = json!(binding.map(|b| b.waiting));
    if json {
        crate::output::say(&v.to_string());
        return Ok(Outcome::Success);
    }
    let s = &v["stats"];
    crate::output::say(&format!(
        "filter host pid {} on NFQUEUE {}, failing {}",
        v["pid"],
        v["queue"],
        v["policy"].as_str().unwrap_or("?")
    ));
    crate::output::say(&format!(
        "provider: {}",
        match (v["provider"].as_str(), v["provider_pid"].as_u64()) {
            (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
            (Some(p), None) => format!("{p} (not running)"),
            _ => "none (rules only)".into(),
        }
    ));
    crate::output::say(&format!(
        "flows: {} seen, {} allowed, {} dropped, {} by the failure policy ({} deadlines missed), {} late verdicts",
        s["flows"],
        s["allowed"],
        s["dropped"],
        s["by_policy"],
        s["deadlines_missed"],
        s["late_verdicts"]
    ));
    crate::output::say(&format!(
        "peeks: {} flows' data filtered, {} bytes shown to the provider; {} closed flows reported ({} times close notifications were lost)",
        s["peeked"], s["bytes_peeked"], s["closes_reported"], s["closes_lost"]
    ));
    crate::output::say(&format!(
        "names: {} DNS answers read, {} addresses named by them now",
        s["dns_answers"].as_u64().unwrap_or(0),
        s["dns_named"].as_u64().unwrap_or(0)
    ));
    crate::output::say(&format!(
        "queue: {} packets given verdicts, {} waiting, {} dropped by the kernel (queue full), {} not delivered to the host",
        s["packets"], v["waiting"], v["queue_dropped"], v["user_dropped"]
    ));
    Ok(Outcome::Success)
}

fn log(lines: usize, json: bool) -> anyhow::Result<Outcome> {
    let state = StateFiles::new();
    let text = match std::fs::read_to_string(&state.log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::output::say(&format!(
                "no flows logged in this network namespace ({} does not exist)",
                state.log.display()
            ));
            return Ok(Outcome::Negative);
        }
        Err(e) => return Err(e.into()),
    };
    let all: Vec<&str> = text.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        if json {
            crate::output::say(line);
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let (Ok(flow), Ok(decision), Ok(by)) = (
            serde_json::from_value::<Flow>(v["flow"].clone()),
            serde_json::from_value::<Decision>(v["decision"].clone()),
            serde_json::from_value::<By>(v["by"].clone()),
        ) else {
            continue;
        };
        crate::output::say(&flow_line(&flow, decision, &by));
    }
    Ok(Outcome::Success)
}

async fn list(json: bool) -> anyhow::Result<Outcome> {
    let listing = tokio::task::spawn_blocking(nw_filter::list::list).await?;
    if json {
        crate::output::say(&serde_json::to_string(&listing)?);
        return Ok(Outcome::Success);
    }
    if listing.filters.is_empty() {
        crate::output::say("no packet filters found");
    }
    for f in &listing.filters {
        let counters =
            f.counters.map(|(p, b)| format!(", {p} packets {b} bytes")).unwrap_or_default();
        let rules = f.rules.map(|r| format!(", {r} rules")).unwrap_or_default();
        crate::output::say(&format!(
            "{:<15} {}  [{}{rules}{counters}]  owner: {}",
            f.kind.as_str(),
            f.name,
            f.hook,
            f.owner.as_deref().unwrap_or("unknown")
        ));
    }
    for p in &listing.problems {
        crate::output::say(&format!("not listed: {p}"));
    }
    Ok(Outcome::Success)
}

async fn down() -> anyhow::Result<Outcome> {
    let left = tokio::task::spawn_blocking(nw_filter::host::remove_rules).await?;
    let counting = tokio::task::spawn_blocking(nw_filter::host::restore_counting).await?;
    let mut failed = false;
    match left {
        Ok(None) => crate::output::say("no filter rules in this network namespace"),
        Ok(Some(pid)) => crate::output::say(&format!(
            "removed the filter rules{}",
            pid.map_or_else(String::new, |p| format!(" of host pid {p}"))
        )),
        Err(e) => {
            crate::output::error_line(&format!("nw: {e}"));
            failed = true;
        }
    }
    match counting {
        Ok(None) => {}
        Ok(Some(pid)) => crate::output::say(&format!(
            "turned conntrack's byte counting (nf_conntrack_acct) off again, as it was before host pid {pid} turned it on"
        )),
        Err(e) => {
            crate::output::error_line(&format!(
                "nw: could not turn conntrack's byte counting (nf_conntrack_acct) off again: {e}"
            ));
            failed = true;
        }
    }
    Ok(if failed { Outcome::Exit(EXIT_ENVIRONMENT) } else { Outcome::Success })
}
