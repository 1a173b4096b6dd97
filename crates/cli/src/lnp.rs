//! `nw lnp`: local network privacy — which apps may reach the local network, the identity an
//! app gets, the host's on/off switch, and the denials.

use std::path::Path;

use nw_lnp::identity::{self, Identified};
use nw_lnp::store::{self, Access, Check, Source};
use nw_lnp::{Paths, Policy, StoreError};
use serde_json::{Value, json};

use crate::{EXIT_ENVIRONMENT, Outcome, UsageError};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Files: the permission store (NW_LNP_STORE, default /var/lib/nwkit/lnp.toml) and the administrator's policy (NW_LNP_POLICY, default /etc/nwkit/lnp.toml); see nw_lnp::store for their keys.\nIdentities: flatpak:ID, snap:NAME.APP, unit:NAME.service, script:PATH or exe:PATH (see nw_lnp::identity); `nw lnp identify` gives the one an app gets.\nExit status: 0 done; 1 a file does not parse (nothing is decided until it is fixed); 2 usage; 3 a file could not be written (root?)."
)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Whether the check is on, what an undecided app gets, the prompt hook, the files.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Every app with a decision, from the store and the policy.
    List {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The identity a running process (PID) or an executable (PATH) gets, as `allow` and
    /// `deny` take it, and what is decided for it. With neither: this `nw` process's.
    Identify {
        /// A process id or an executable's path.
        target: Option<String>,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Let an app reach the local network.
    Allow {
        /// The app's identity (from `nw lnp identify`).
        identity: String,
    },
    /// Keep an app off the local network.
    Deny {
        /// The app's identity (from `nw lnp identify`).
        identity: String,
    },
    /// Forget the decision for an app: it is asked again (or gets the headless answer).
    Reset {
        /// The app's identity.
        identity: String,
    },
    /// Turn the check on for this host: apps need permission to reach the local network.
    On,
    /// Turn the check off for this host: everything reaches the local network at once.
    Off,
    /// The denials, newest last.
    Log {
        /// How many.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    let paths = Paths::from_env();
    // Files and dpkg: off the runtime.
    tokio::task::spawn_blocking(move || run_blocking(args.action, &paths)).await?
}

fn run_blocking(action: Action, paths: &Paths) -> anyhow::Result<Outcome> {
    match action {
        Action::Status { json } => with_policy(paths, |p| status(p, json)),
        Action::List { json } => with_policy(paths, |p| list(p, json)),
        Action::Identify { target, json } => identify(paths, target.as_deref(), json),
        Action::Allow { identity } => decide(paths, &identity, Some(Access::Allow)),
        Action::Deny { identity } => decide(paths, &identity, Some(Access::Deny)),
        Action::Reset { identity } => decide(paths, &identity, None),
        Action::On => switch(paths, Check::On),
        Action::Off => switch(paths, Check::Off),
        Action::Log { lines, json } => log(paths, lines, json),
    }
}

/// Runs `f` with both files read; a file that does not parse is a negative result that says so.
fn with_policy(
    paths: &Paths,
    f: impl FnOnce(&Policy) -> anyhow::Result<Outcome>,
) -> anyhow::Result<Outcome> {
    match Policy::load(paths) {
        Ok(p) => f(&p),
        Err(e) => {
            crate::output::error_line(&format!("nw lnp: {e}"));
            Ok(Outcome::Negative)
        }
    }
}

/// Who decided, in words.
pub(crate) fn source(s: Source) -> &'static str {
    match s {
        Source::Policy => "the administrator's policy",
        Source::Store => "the permission store",
        Source::Default => "the default",
        Source::Prompt => "the prompt",
        Source::System => "the exemption of the host's own services",
    }
}

fn print_json(v: &Value) -> anyhow::Result<()> {
    crate::output::line(&v.to_string())?;
    Ok(())
}

fn status(p: &Policy, json: bool) -> anyhow::Result<Outcome> {
    let (on, check_by) = p.check();
    let (headless, headless_by) = p.headless();
    let (system, system_by) = p.system_services();
    let count = |a: Access| p.store.apps.values().filter(|x| **x == a).count();
    if json {
        print_json(&json!({
            "check": if on { "on" } else { "off" },
            "check_by": check_by,
            "headless": headless,
            "headless_by": headless_by,
            "system_services": system,
            "system_services_by": system_by,
            "prompt": p.prompt(),
            "store": p.paths.store,
            "policy": p.paths.policy,
            "apps": { "allow": count(Access::Allow), "deny": count(Access::Deny), "ask": count(Access::Ask) },
            "policy_allow": p.admin.allow.len(),
            "policy_deny": p.admin.deny.len(),
        }))?;
        return Ok(Outcome::Success);
    }
    let mut out = Vec::new();
    if on {
        out.push(format!(
            "local network privacy is on ({}): apps need permission to reach the local network",
            source(check_by)
        ));
        let asked = match p.prompt() {
            Some(hook) => format!("the prompt hook {} is asked", hook.join(" ")),
            None => "there is no prompt hook".into(),
        };
        out.push(format!(
            "an app nobody decided on: {asked}; unanswered, it is {} ({})",
            if headless == store::Answer::Allow { "allowed" } else { "denied" },
            source(headless_by)
        ));
        out.push(match system {
            store::SystemServices::Exempt => format!(
                "the host's own services (systemd system units) are exempt, as macOS's daemons are ({}); `system_services = \"check\"` in the policy holds them to the check",
                source(system_by)
            ),
            store::SystemServices::Check => format!(
                "the host's own services (systemd system units) are held to the check like any app ({})",
                source(system_by)
            ),
        });
    } else {
        let why = match check_by {
            Source::Default => "nobody turned it on here",
            _ => "it is turned off",
        };
        out.push(format!(
            "local network privacy is off ({why}, {}): every app reaches the local network; `nw lnp on` turns it on",
            source(check_by)
        ));
    }
    out.push(format!(
        "decisions: {} allowed, {} denied, {} to ask in {}; the policy allows {} and denies {} ({})",
        count(Access::Allow),
        count(Access::Deny),
        count(Access::Ask),
        p.paths.store.display(),
        p.admin.allow.len(),
        p.admin.deny.len(),
        p.paths.policy.display()
    ));
    for line in out {
        crate::output::line(&line)?;
    }
    Ok(Outcome::Success)
}

fn list(p: &Policy, json: bool) -> anyhow::Result<Outcome> {
    let mut rows: Vec<(String, &'static str, Source)> = Vec::new();
    for id in &p.admin.deny {
        rows.push((id.clone(), "deny", Source::Policy));
    }
    for id in &p.admin.allow {
        rows.push((id.clone(), "allow", Source::Policy));
    }
    for (id, access) in &p.store.apps {
        // What the policy lists, it decides: show the store's entry only when it counts.
        if !p.admin.allow.contains(id) && !p.admin.deny.contains(id) {
            rows.push((id.clone(), access.as_str(), Source::Store));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    if json {
        let apps: Vec<Value> = rows
            .iter()
            .map(|(id, a, by)| json!({ "identity": id, "access": a, "by": by }))
            .collect();
        print_json(&json!({ "check": p.check().0, "apps": apps }))?;
        return Ok(Outcome::Success);
    }
    if rows.is_empty() {
        crate::output::line("no app has a decision yet")?;
    }
    for (id, a, by) in rows {
        let by = if by == Source::Policy { "  (policy)" } else { "" };
        crate::output::line(&format!("{a:5}  {id}{by}"))?;
    }
    if !p.check().0 {
        crate::output::line("(the check is off: these apply once `nw lnp on`)")?;
    }
    Ok(Outcome::Success)
}

fn identify(paths: &Paths, target: Option<&str>, json: bool) -> anyhow::Result<Outcome> {
    let found: Identified = match target {
        None => identity::of_self().clone(),
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            let pid: u32 = t.parse().map_err(|_| UsageError(format!("{t} is not a process id")))?;
            identity::of_process(pid).ok_or_else(|| {
                UsageError(format!(
                    "no process {pid} (it may have exited, or be in another PID namespace)"
                ))
            })?
        }
        Some(t) => identity::of_executable(Path::new(t)).map_err(|e| {
            UsageError(format!("{t}: {e}; give an executable's path or a process id"))
        })?,
    };
    let executable = found.executable.trim_end_matches(" (deleted)").to_owned();
    let package = identity::package_of(&executable);
    let decided = Policy::load(paths).map(|p| p.decide_for(&found));
    if json {
        let mut v = serde_json::to_value(&found)?;
        v["package"] = json!(package);
        match &decided {
            Ok(d) => v["decision"] = serde_json::to_value(d)?,
            Err(e) => v["decision_error"] = json!(e.to_string()),
        }
        print_json(&v)?;
        return Ok(Outcome::Success);
    }
    crate::output::line(&found.identity)?;
    let mut about = vec![format!("executable {executable}")];
    if let Some(p) = package {
        about.push(format!("from the package {p}"));
    }
    if !found.cgroup.is_empty() {
        about.push(format!("cgroup {}", found.cgroup));
    }
    crate::output::error_line(&format!("nw lnp: {}", about.join(", ")));
    let said = match decided {
        Ok(d) if !d.check => "the check is off, so it reaches the local network".to_owned(),
        Ok(d) => match d.access {
            Access::Ask => "nothing is decided for it: it will be asked".to_owned(),
            a => format!(
                "{} by {}",
                if a == Access::Allow { "allowed" } else { "denied" },
                source(d.by)
            ),
        },
        Err(e) => e.to_string(),
    };
    crate::output::error_line(&format!("nw lnp: {said}"));
    Ok(Outcome::Success)
}

/// Refuses what is not an identity, saying how to get one.
fn check_identity(id: &str, deciding: bool) -> Result<(), UsageError> {
    use nw_lnp::identity::Malformed;
    match identity::malformed(id) {
        None => return Ok(()),
        // An executable or a script is named by its absolute path, as `identify` gives it: a
        // relative one would match nothing, and the decision would be kept for no app
        // (`reset` still takes one, to remove what was kept before this was checked).
        Some(Malformed::Relative { .. }) if !deciding => return Ok(()),
        Some(Malformed::Relative { kind, path }) => {
            return Err(UsageError(format!(
                "{id:?}: {kind} takes an absolute path, as `nw lnp identify` gives it; did you mean {kind}{}?",
                std::path::absolute(&path)
                    .map_or_else(|_| format!("/…/{path}"), |p| p.display().to_string())
            )));
        }
        Some(Malformed::NoKind) => {}
    }
    let hint = if !id.is_empty() && (id.starts_with('/') || id.bytes().all(|b| b.is_ascii_digit()))
    {
        format!("`nw lnp identify {id}` gives its identity")
    } else {
        "`nw lnp identify PATH|PID` gives one".into()
    };
    Err(UsageError(format!(
        "{id:?} is not an identity (flatpak:, snap:, unit:, script: or exe: followed by a name); {hint}"
    )))
}

/// What is wrong with the program an `exe:` or `script:` identity names, if anything: nothing
/// is at its path, or (for `exe:`) what is there is no executable file.
fn missing_program(identity: &str) -> Option<String> {
    let (exe, path) = match identity.split_once(':')? {
        ("exe", path) => (true, path),
        ("script", path) => (false, path),
        _ => return None,
    };
    match std::fs::metadata(path) {
        Err(_) => Some(format!(
            "nothing is at {path} (yet): the decision applies to a program there once there is one"
        )),
        Ok(_) if exe && !crate::condition::executable(Path::new(path)) => {
            Some(format!("{path} is not an executable file, so no app runs as {identity}"))
        }
        Ok(_) => None,
    }
}

/// A store error as an outcome: a file that does not parse is negative (1); one that cannot be
/// written is the environment (3).
fn store_failed(e: &StoreError) -> anyhow::Result<Outcome> {
    let hint = match e {
        StoreError::Io { error, .. } if error.kind() == std::io::ErrorKind::PermissionDenied => {
            "; run it as root, or point NW_LNP_STORE at a store you may write"
        }
        _ => "",
    };
    crate::output::error_line(&format!("nw lnp: {e}{hint}"));
    Ok(match e {
        StoreError::Io { .. } => Outcome::Exit(EXIT_ENVIRONMENT),
        _ => Outcome::Negative,
    })
}

fn decide(paths: &Paths, identity: &str, access: Option<Access>) -> anyhow::Result<Outcome> {
    check_identity(identity, access.is_some())?;
    let changed = store::update(paths, |f| match access {
        Some(a) => f.apps.insert(identity.to_owned(), a) != Some(a),
        None => f.apps.remove(identity).is_some(),
    });
    let changed = match changed {
        Ok(c) => c,
        Err(e) => return store_failed(&e),
    };
    let what = match access {
        Some(Access::Allow) => "may reach the local network",
        Some(_) => "may not reach the local network",
        None if changed => "has no decision now",
        None => "had no decision",
    };
    crate::output::error_line(&format!(
        "nw lnp: {identity} {what}{}",
        if changed || access.is_none() { "" } else { " (unchanged)" }
    ));
    // A path nothing is at yet (a typo, or a program not installed yet) is kept all the same,
    // and said.
    if access.is_some()
        && let Some(note) = missing_program(identity)
    {
        crate::output::error_line(&format!("nw lnp: {note}"));
    }
    // Say what still overrides it.
    if let Ok(p) = Policy::load(paths) {
        if p.admin.allow.iter().chain(&p.admin.deny).any(|i| i == identity) {
            crate::output::error_line(&format!(
                "nw lnp: but the administrator's policy ({}) lists it, and that decides",
                p.paths.policy.display()
            ));
        } else if !p.check().0 {
            crate::output::error_line(
                "nw lnp: the check is off on this host, so this applies once `nw lnp on`",
            );
        }
    }
    Ok(Outcome::Success)
}

fn switch(paths: &Paths, check: Check) -> anyhow::Result<Outcome> {
    if let Err(e) = store::update(paths, |f| f.check = Some(check)) {
        return store_failed(&e);
    }
    let said = match check {
        Check::On => "on: apps need permission to reach the local network",
        Check::Off => "off: every app reaches the local network",
    };
    crate::output::error_line(&format!("nw lnp: local network privacy is {said}"));
    if let Ok(p) = Policy::load(paths)
        && p.admin.check.is_some_and(|c| c != check)
    {
        crate::output::error_line(&format!(
            "nw lnp: but the administrator's policy ({}) sets check = {:?}, and that decides",
            p.paths.policy.display(),
            if check == Check::On { "off" } else { "on" }
        ));
        return Ok(Outcome::Negative);
    }
    Ok(Outcome::Success)
}

fn log(paths: &Paths, lines: usize, json: bool) -> anyhow::Result<Outcome> {
    let all = match nw_lnp::log::read(paths) {
        Ok(all) => all,
        Err(e) => {
            crate::output::error_line(&format!("nw lnp: {}: {e}", paths.log().display()));
            return Ok(Outcome::Exit(EXIT_ENVIRONMENT));
        }
    };
    let shown = &all[all.len().saturating_sub(lines)..];
    for d in shown {
        if json {
            print_json(&serde_json::to_value(d)?)?;
        } else {
            let at =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(d.at_ms) * 1_000_000)
                    .map(|t| {
                        let f = time::macros::format_description!(
                            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
                        );
                        t.format(&f).unwrap_or_default()
                    })
                    .unwrap_or_default();
            let pid = d.pid.map(|p| format!(" pid {p}")).unwrap_or_default();
            // Outbound: the app reaching the destination; inbound: a peer it would have served.
            let way = match d.direction {
                nw_lnp::Direction::Outbound => "->",
                nw_lnp::Direction::Inbound => "<-",
            };
            crate::output::line(&format!(
                "{at}  denied {}{pid} {way} {} ({}; by {}; {})",
                d.identity,
                d.destination,
                d.locality,
                d.by,
                d.direction.as_str()
            ))?;
        }
    }
    if shown.is_empty() && !json {
        crate::output::error_line("nw lnp: no denials logged");
    }
    Ok(Outcome::Success)
}
