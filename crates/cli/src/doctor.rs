//! `nw doctor [TARGET]`: the end-to-end self-check. Each capability adds a section; the JSON
//! shape stays `{"sections": [{"name", "status", "details"}]}`.
//!
//! Findings about the host (no default route, cost unknown) are warnings. The exit status is 1
//! only when one of doctor's own checks fails, or the TARGET the caller named cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use nw_connection::Endpoint;
use nw_connection::happy_eyeballs::{Config as RaceConfig, RaceError};
use nw_connection::tls::ClientOptions;
use nw_connection::{ConnectError, Parameters, SystemResolver, Transport, connect};

mod echo;
use echo::EchoServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use nw_path::{Path, PathMonitor, Snapshot, Status};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Outcome;
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Also check this destination: a URL (https://host[:port]/…) or HOST:PORT.
    target: Option<String>,
    /// For an https:// TARGET: a custom anchor (PEM, repeatable), trusted beside the system's;
    /// the chain is judged by nw-trust, as `nw trust` and `nw cat --tls` judge it.
    #[arg(long, value_name = "FILE", requires = "target")]
    anchor: Vec<std::path::PathBuf>,
    #[command(flatten)]
    ct: crate::trust::CtArgs,
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
    let reading = match nw_path::PathService::shared() {
        Ok(service) => service.reading().await,
        Err(e) => Err(e),
    };
    match reading {
        Ok(reading) => {
            let path = reading.path(&nw_path::Conditions::default());
            sections.push(interfaces(&reading.snapshot));
            sections.push(path_section(&path));
            sections.push(cost(&path));
            sections.push(monitor(&path).await);
        }
        // The snapshot, or a cost source such as a configuration file that does not parse.
        Err(e) => sections.push(Section::new(
            "path",
            Level::Fail,
            format!("{e}"),
            json!({"error": e.to_string()}),
        )),
    }
    sections.push(local_network().await);
    sections.push(tunnel().await);
    sections.push(connectivity().await);
    sections.push(trust().await);
    sections.push(transfer().await);
    if let Some(target) = &args.target {
        let trust = crate::trust::options(&args.anchor, &args.ct, true)?;
        sections.push(target_section(target, trust).await);
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
    // A service of its own: a fresh subscription and dump, checked against the shared one's.
    let first = async {
        let service = nw_path::PathService::start(nw_path::ServiceOptions::default())?;
        PathMonitor::on(&service, nw_path::Conditions::default()).next().await.transpose()
    };
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

/// Local network privacy as it stands: off or on and who said so, what an app nobody decided
/// on gets, and what nw's own connections get. Read only: doctor never writes the store. A
/// file that does not parse, or a prompt hook that is not there, is a host finding (a
/// warning): until it is fixed, nwkit's apps are refused local destinations.
async fn local_network() -> Section {
    use nw_lnp::store::{Access, Answer};
    let paths = nw_lnp::Paths::from_env();
    let read = tokio::task::spawn_blocking(move || {
        let policy = nw_lnp::Policy::load(&paths);
        (policy, nw_lnp::identity::of_self().clone())
    })
    .await;
    let Ok((policy, me)) = read else {
        return Section::new("lnp", Level::Fail, "reading the files failed", Value::Null);
    };
    let policy = match policy {
        Ok(p) => p,
        Err(e) => {
            let why =
                format!("{e}; until it is fixed, nwkit's apps are refused local destinations");
            return Section::new("lnp", Level::Warn, why, json!({ "error": e.to_string() }));
        }
    };
    let by = crate::lnp::source;
    let (on, check_by) = policy.check();
    let (headless, headless_by) = policy.headless();
    let prompt = policy.prompt().map(<[String]>::to_vec);
    // nw as the process it is (a system service's exemption needs its cgroup).
    let mine = policy.decide_for(&me);
    let me = me.identity;
    let mut details = json!({
        "check": if on { "on" } else { "off" },
        "check_by": check_by,
        "store": policy.paths.store,
        "policy": policy.paths.policy,
        "headless": headless,
        "prompt": prompt,
        "self": { "identity": me, "access": mine.access, "by": mine.by },
    });
    if !on {
        let why = format!(
            "off ({}): every app reaches the local network; `nw lnp on` turns it on",
            by(check_by)
        );
        return Section::new("lnp", Level::Ok, why, details);
    }
    let undecided = match &prompt {
        Some(hook) => format!("undecided apps are asked through {}", hook.join(" ")),
        None => format!(
            "undecided apps are {} ({}; no prompt hook)",
            if headless == Answer::Allow { "allowed" } else { "denied" },
            by(headless_by)
        ),
    };
    let nw = match mine.access {
        Access::Allow => "allowed".to_owned(),
        Access::Deny => "denied".to_owned(),
        Access::Ask => "undecided".to_owned(),
    };
    let summary =
        format!("on ({}); {undecided}; nw ({me}) is {nw} ({})", by(check_by), by(mine.by));
    match prompt.as_deref().and_then(nw_lnp::gate::missing_hook) {
        Some(program) => {
            details["prompt_missing"] = json!(program);
            let why =
                format!("{summary}; the prompt hook {program} does not exist, so nobody is asked");
            Section::new("lnp", Level::Warn, why, details)
        }
        None => Section::new("lnp", Level::Ok, summary, details),
    }
}

/// The packet tunnels hosted here, and what hosts that are gone left behind: a kill switch
/// kept after a failure rejects everything that does not go into its (gone) tunnel, which is
/// the first thing to know when nothing reaches the network. Read only.
async fn tunnel() -> Section {
    let running = crate::tunnel::running().await;
    let names: Vec<String> = running
        .iter()
        .map(|h| {
            format!(
                "{} {}{}",
                h["interface"].as_str().unwrap_or("?"),
                h["state"].as_str().unwrap_or("?"),
                if h["kill_switch"] == true { " (kill switch on)" } else { "" }
            )
        })
        .collect();
    let mut details = json!({ "running": running });
    let left = tokio::task::spawn_blocking(nw_tunnel::host::leftovers).await;
    let left = match left {
        Ok(Ok(left)) => left,
        Ok(Err(e)) => {
            details["leftovers_unknown"] = json!(e.to_string());
            let why = if names.is_empty() { "no tunnel".to_owned() } else { names.join(", ") };
            let why = format!("{why}; what killed hosts left could not be looked for ({e})");
            return Section::new("tunnel", Level::Ok, why, details);
        }
        Err(_) => return Section::new("tunnel", Level::Fail, "looking failed", details),
    };
    details["leftovers"] = json!(left.iter().map(ToString::to_string).collect::<Vec<_>>());
    let switches: Vec<String> = left
        .iter()
        .filter(|l| matches!(l, nw_tunnel::Leftover::KillSwitch { .. }))
        .map(ToString::to_string)
        .collect();
    let mut summary = if names.is_empty() { "no tunnel".to_owned() } else { names.join(", ") };
    if !switches.is_empty() {
        summary += &format!(
            "; {} of a host that is gone rejects everything that does not go into its tunnel, so nothing but loopback gets out: `nw tunnel down` removes it",
            switches.join(" and ")
        );
        return Section::new("tunnel", Level::Warn, summary, details);
    }
    if left.iter().any(|l| matches!(l, nw_tunnel::Leftover::ResolvConf { .. })) {
        summary += "; resolv.conf points at the DNS forwarder of a tunnel host that is gone, so names do not resolve: `nw tunnel down` puts the original back";
        return Section::new("tunnel", Level::Warn, summary, details);
    }
    if !left.is_empty() {
        summary += "; a killed host's routing rules are left: `nw tunnel down` removes them";
        return Section::new("tunnel", Level::Warn, summary, details);
    }
    Section::new("tunnel", Level::Ok, summary, details)
}

/// Doctor's own check: a TLS race to `localhost` against the embedded test server on loopback
/// (the resolver, the race, TLS and trust, end to end), echoing a line back.
async fn connectivity() -> Section {
    let server = match EchoServer::start(([127, 0, 0, 1], 0).into()).await {
        Ok(s) => s,
        Err(e) => {
            return Section::new(
                "connectivity",
                Level::Fail,
                format!("cannot start the embedded server: {e}"),
                Value::Null,
            );
        }
    };
    let port = server.local_addr().port();
    let options = ClientOptions {
        extra_anchors: vec![server.root()],
        alpn: vec![b"nwkit-echo".to_vec()],
        ..ClientOptions::default()
    };
    let config = match options.config() {
        Ok(c) => c,
        Err(e) => return Section::new("connectivity", Level::Fail, e.to_string(), Value::Null),
    };
    let params = Parameters {
        race: RaceConfig { timeout: Duration::from_secs(5), ..RaceConfig::default() },
        tls: Some(config),
        server_name: Some("localhost".into()),
        ..Parameters::default()
    };
    let resolver = Arc::new(SystemResolver::from_system());
    let mut level = Level::Ok;
    let mut note = String::new();
    let mut result = connect("localhost", port, &params, resolver.clone()).await;
    if let Err(ConnectError::Race { error: RaceError::NoAddresses { .. }, .. }) = &result {
        level = Level::Warn;
        note = " (localhost does not resolve: check /etc/hosts)".into();
        result = connect("127.0.0.1", port, &params, resolver).await;
    }
    // The same server over QUIC (it listens on the same port over UDP).
    let quic_params = Parameters { transport: Transport::Quic, ..params.clone() };
    let quic =
        match connect("127.0.0.1", port, &quic_params, Arc::new(SystemResolver::from_system()))
            .await
        {
            Ok(mut c) => match echo(&mut c.stream).await {
                true => Ok(c.report),
                false => Err("connected, but the echo did not come back".to_owned()),
            },
            Err(e) => Err(e.to_string()),
        };
    let section = match result {
        Ok(mut c) => {
            let echoed = echo(&mut c.stream).await;
            let mut details = serde_json::to_value(&c.report).unwrap_or(Value::Null);
            let won = c.report.ready_after().map(|d| d.as_secs_f64() * 1e3);
            let version = c.report.tls.as_ref().map_or("no TLS", |t| t.version.as_str());
            let quic_note = match &quic {
                Ok(r) => format!(
                    "; QUIC ready in {:.1} ms, echo ok",
                    r.ready_after().unwrap_or_default().as_secs_f64() * 1e3
                ),
                Err(e) => {
                    level = Level::Warn;
                    format!("; QUIC failed: {e} (is UDP on loopback filtered?)")
                }
            };
            if let Value::Object(map) = &mut details {
                let quic = match &quic {
                    Ok(r) => serde_json::to_value(r).unwrap_or(Value::Null),
                    Err(e) => serde_json::json!({ "error": e }),
                };
                map.insert("quic".into(), quic);
            }
            match echoed {
                true => Section::new(
                    "connectivity",
                    level,
                    format!(
                        "race to the embedded server: {} by {} in {:.1} ms, {version}, echo ok{quic_note}{note}",
                        c.report.connected.map_or_else(String::new, |a| a.to_string()),
                        c.report.winner.map_or_else(String::new, |w| w.to_string()),
                        won.unwrap_or_default()
                    ),
                    details,
                ),
                _ => Section::new(
                    "connectivity",
                    Level::Fail,
                    "connected, but the embedded server's echo did not come back",
                    details,
                ),
            }
        }
        Err(e) => Section::new(
            "connectivity",
            Level::Fail,
            format!("cannot reach the embedded server: {e}"),
            Value::Null,
        ),
    };
    server.shutdown().await;
    section
}

/// Sends a line through the embedded echo server and checks it comes back (3 s at most).
async fn echo(stream: &mut Box<dyn nw_connection::Io>) -> bool {
    let echoed = async {
        stream.write_all(b"nw doctor\n").await?;
        stream.shutdown().await?;
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await?;
        Ok::<_, std::io::Error>(back)
    };
    matches!(tokio::time::timeout(Duration::from_secs(3), echoed).await, Ok(Ok(b)) if b == b"nw doctor\n")
}

/// Doctor's TLS trust check: nw-trust judges the embedded server's chain (its throwaway CA
/// as a custom anchor) — it must proceed — and the same chain for a name it lacks, which must
/// fail with the per-certificate report. Also says whether the system store has anchors.
async fn trust() -> Section {
    use nw_trust::TrustVerifier;
    let server = match EchoServer::start(([127, 0, 0, 1], 0).into()).await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("cannot start the embedded server: {e}");
            return Section::new("trust", Level::Fail, why, Value::Null);
        }
    };
    let anchors =
        vec![nw_trust::Anchor { der: server.root(), class: nw_trust::AnchorClass::Custom }];
    let judge = |name: &'static str| {
        let options =
            nw_trust::Options { anchors: anchors.clone(), ..nw_trust::Options::default() };
        let verifier = Arc::new(TrustVerifier::new(options, nw_connection::crypto::provider()));
        let port = server.local_addr().port();
        async move {
            let tls = ClientOptions {
                verifier: Some(verifier.clone()),
                alpn: vec![b"nwkit-echo".to_vec()],
                ..ClientOptions::default()
            }
            .config()
            .ok()?;
            let params = Parameters {
                race: RaceConfig { timeout: Duration::from_secs(5), ..RaceConfig::default() },
                tls: Some(tls),
                server_name: Some(name.into()),
                ..Parameters::default()
            };
            let _ =
                connect("127.0.0.1", port, &params, Arc::new(SystemResolver::from_system())).await;
            verifier.last()
        }
    };
    let (good, wrong) = (judge("localhost").await, judge("wrong-name.nwkit.invalid").await);
    server.shutdown().await;
    let system = nw_trust::system_anchors().map(|a| a.len());
    let details = json!({
        "embedded": good,
        "wrong_name": wrong.as_ref().map(nw_trust::Evaluation::failure_lines),
        "system_anchors": system.as_ref().ok(),
    });
    let refused = wrong.as_ref().map(nw_trust::Evaluation::failure_lines).unwrap_or_default();
    let expected = "Certificate 0 “localhost” has errors: Hostname mismatch;";
    match (&good, refused.first()) {
        (Some(g), Some(line)) if g.trusted() && line == expected => {
            let chain: Vec<&str> = g.certificates.iter().map(|c| c.facts.name.as_str()).collect();
            let (level, store) = match system {
                Ok(n) => (Level::Ok, format!("{n} system anchors")),
                Err(e) => (Level::Warn, e.to_string()),
            };
            let summary = format!(
                "embedded server's chain ({}) proceeds; a wrong name is refused: {line} · {store}",
                chain.join(" ← ")
            );
            Section::new("trust", level, summary, details)
        }
        _ => Section::new(
            "trust",
            Level::Fail,
            "the trust engine did not judge the embedded server's chain as expected",
            details,
        ),
    }
}

/// Doctor's transfer check: the same 4 MiB file downloaded from the embedded server over
/// HTTP/2, HTTP/1.1 and HTTP/3 (its throwaway CA the only anchor), each byte-exact. HTTP/3
/// failing is a warning (UDP may be filtered); the others failing is a failure.
async fn transfer() -> Section {
    const SIZE: usize = 4 << 20;
    let dir = match nw_lab::Scratch::new("doctor") {
        Ok(dir) => dir,
        Err(e) => return Section::new("transfer", Level::Fail, format!("{e:#}"), Value::Null),
    };
    let www = dir.path().join("www");
    let mut data = vec![0u8; SIZE];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for chunk in data.chunks_mut(8) {
        // xorshift64: bytes that no layer can compress away.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    if let Err(e) =
        std::fs::create_dir_all(&www).and_then(|()| std::fs::write(www.join("doctor.bin"), &data))
    {
        let why = format!("cannot write a test file under {}: {e}", dir.path().display());
        return Section::new("transfer", Level::Fail, why, Value::Null);
    }
    let options = nw_serve::Options::default();
    let server =
        match nw_serve::Embedded::start(([127, 0, 0, 1], 0).into(), Some(&www), &options).await {
            Ok(s) => s,
            Err(e) => {
                let why = format!("cannot start the embedded server: {e}");
                return Section::new("transfer", Level::Fail, why, Value::Null);
            }
        };
    let url = server.url("/doctor.bin");
    let mut results = Vec::new();
    let mut level = Level::Ok;
    let mut notes = Vec::new();
    for (name, http2, http3) in [
        ("h2", true, nw_transfer::Http3::Off),
        ("http/1.1", false, nw_transfer::Http3::Off),
        ("h3", true, nw_transfer::Http3::Only),
    ] {
        let config = nw_transfer::Configuration {
            trust: server.trust(),
            http2,
            http3,
            durable: false,
            request_timeout: Duration::from_secs(5),
            ..nw_transfer::Configuration::default()
        };
        let dest = dir.path().join(format!("{}.bin", name.replace('/', "")));
        let job = nw_transfer::Download {
            url: url.clone(),
            dest: dest.clone(),
            sha256: None,
            resume: false,
            force: true,
            segments: 1,
            headers: Vec::new(),
        };
        let outcome = match nw_transfer::Session::ephemeral(config) {
            Ok(session) => session.download(&job, &mut |_| {}).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let exact = outcome.is_ok() && std::fs::read(&dest).is_ok_and(|d| d == data);
        match (&outcome, exact) {
            (Ok(done), true) => {
                let rate = done.bytes as f64 / (done.metrics.transfer_ms / 1e3).max(1e-3) / 1e6;
                notes.push(format!("{name} {rate:.0} MB/s"));
                results.push(json!({ "protocol": name, "ok": true, "metrics": done.metrics }));
            }
            (Ok(_), false) => {
                level = Level::Fail;
                notes.push(format!("{name} NOT byte-exact"));
                results.push(json!({ "protocol": name, "ok": false, "error": "not byte-exact" }));
            }
            (Err(e), _) => {
                level = level.max(if name == "h3" { Level::Warn } else { Level::Fail });
                notes.push(format!("{name} failed: {e}"));
                results.push(json!({ "protocol": name, "ok": false, "error": e }));
            }
        }
    }
    drop(server);
    let summary = format!("4 MiB from the embedded server, byte-exact: {}", notes.join(", "));
    Section::new("transfer", level, summary, json!({ "url": url, "downloads": results }))
}

/// Races to the target the caller named (TCP; for https:// and wss://, TLS whose chain
/// nw-trust judges under `trust`: the system's anchors plus any --anchor), and reports how.
async fn target_section(text: &str, trust: nw_trust::Options) -> Section {
    let target = match Endpoint::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let why = e.to_string();
            return Section::new(
                "target",
                Level::Fail,
                why.clone(),
                json!({"target": text, "error": why}),
            );
        }
    };
    let tls = if target.wants_tls() {
        let verifier = nw_trust::TrustVerifier::new(trust, nw_connection::crypto::provider());
        let options =
            ClientOptions { verifier: Some(Arc::new(verifier)), ..ClientOptions::default() };
        match options.config() {
            Ok(c) => Some(c),
            Err(e) => {
                return Section::new("target", Level::Fail, e.to_string(), json!({"target": text}));
            }
        }
    } else {
        None
    };
    let params = Parameters {
        race: RaceConfig { timeout: Duration::from_secs(10), ..RaceConfig::default() },
        tls,
        ..Parameters::default()
    };
    match connect(&target.host(), target.port(), &params, Arc::new(SystemResolver::from_system()))
        .await
    {
        Ok(c) => {
            let won = c.report.ready_after().map(|d| d.as_secs_f64() * 1e3);
            let how = c
                .report
                .tls
                .as_ref()
                .map_or_else(|| "TCP".to_owned(), |t| format!("TLS {}", t.version));
            let summary = format!(
                "{how} connected to {} in {:.1} ms ({} attempt(s))",
                c.report.connected.map_or_else(String::new, |a| a.to_string()),
                won.unwrap_or_default(),
                c.report.attempts()
            );
            Section::new(
                "target",
                Level::Ok,
                summary,
                serde_json::to_value(&c.report).unwrap_or(Value::Null),
            )
        }
        Err(e) => {
            let details = match &e {
                ConnectError::Race { report, .. } => {
                    serde_json::to_value(report).unwrap_or(Value::Null)
                }
                _ => json!({"target": text}),
            };
            Section::new("target", Level::Fail, e.to_string(), details)
        }
    }
}
