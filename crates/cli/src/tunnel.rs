//! `nw tunnel`: hosts a packet tunnel provider (nw-tunnel) in the foreground.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use nw_provider::blocking;
use nw_tunnel::configuration::{
    self, Configuration, OnDemandAction, OnDemandRule, ProviderSpec, Store,
};
use nw_tunnel::{Ended, Event, HostOptions, Leftover, StopReason};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::{EXIT_ENVIRONMENT, Outcome, UsageError};

mod boot;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Host a provider until it stops or nw is interrupted (Ctrl-C, SIGTERM), then remove
    /// every route, rule and the device. Needs root; the provider runs as `nobody`.
    Up(Box<UpArgs>),
    /// What the tunnel hosts in this network namespace are doing, and what hosts that are
    /// gone left behind (a kill switch in force, rules and routes).
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Stop the tunnel hosts in this network namespace (all, or the one on INTERFACE or
    /// running the saved configuration NAME) in order, and remove what hosts that are gone
    /// left behind, kill switches included.
    Down {
        /// Only the tunnel on this interface, or running this saved configuration (also one
        /// that waits on demand and has no interface yet).
        #[arg(value_name = "INTERFACE|NAME")]
        target: Option<String>,
    },
    /// Save a configuration (a WireGuard file, or a provider with its options, the host's
    /// switches and on-demand rules) for `nw tunnel up NAME`; replaces one of that name.
    Save(Box<SaveArgs>),
    /// The saved configurations, and which are running.
    List {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove a saved configuration; a tunnel running it stops (configuration_removed).
    Remove {
        /// The configuration.
        name: String,
    },
    /// Let a saved configuration be started again; with `--at-boot`, also start it at boot
    /// (a systemd unit, nw-tunnel@NAME.service, that runs `nw tunnel up NAME`).
    Enable {
        /// The configuration.
        name: String,
        /// Start it at boot: writes /etc/systemd/system/nw-tunnel@.service (NW_SYSTEMD_DIR)
        /// naming this nw, and links nw-tunnel@NAME.service into multi-user.target.wants.
        #[arg(long)]
        at_boot: bool,
    },
    /// Keep a saved configuration from starting (at boot too); a tunnel running it stops
    /// (provider_disabled).
    Disable {
        /// The configuration.
        name: String,
    },
    /// The WireGuard provider, as `nw tunnel up FILE.conf` starts it (not for direct use).
    #[command(hide = true)]
    WireguardProvider,
}

impl Args {
    /// Whether this runs the WireGuard provider, which wants a thread per core.
    pub(crate) fn is_provider(&self) -> bool {
        matches!(self.action, Action::WireguardProvider)
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Configurations are kept in /etc/nwkit/tunnels (NW_TUNNEL_CONFIG_DIR), one owner-only JSON file each. A WireGuard file is read again each time the tunnel starts."
)]
struct SaveArgs {
    /// The configuration's name (letters, digits, '-', '_', '.').
    name: String,
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    switches: Switches,
    /// An on-demand rule, first match wins: `connect`, `disconnect`, or either with
    /// `=TYPE,…` (wired, wifi, cellular, other) for the path's primary interface. With rules,
    /// `nw tunnel up NAME` runs the tunnel only while they say connect.
    #[arg(long, value_name = "RULE")]
    on_demand: Vec<String>,
    /// Save it disabled.
    #[arg(long)]
    disabled: bool,
}

/// What runs a tunnel, for `up` and `save`: a WireGuard file (or, for `up`, a saved
/// configuration's name), or a provider with its arguments and options.
#[derive(Debug, clap::Args)]
struct Source {
    /// A WireGuard configuration in wg-quick's format (`wg0.conf`), which nw's WireGuard
    /// provider runs (PostUp and the like are not run); for `up`, also a saved configuration's
    /// name (`nw tunnel list`).
    #[arg(
        value_name = "CONFIG",
        required_unless_present = "provider",
        conflicts_with = "provider"
    )]
    config: Option<PathBuf>,
    /// The provider's executable, followed by its arguments (after `--`).
    #[arg(long, value_name = "PROGRAM")]
    provider: Option<PathBuf>,
    /// Arguments for the provider.
    #[arg(last = true, value_name = "ARG", conflicts_with = "config")]
    args: Vec<OsString>,
    /// The configuration's options, as a JSON object, passed to the provider in `start`
    /// (`{}` when absent).
    #[arg(long, value_name = "JSON", conflicts_with = "config")]
    options: Option<String>,
}

/// The host's switches, for `up` and `save`.
#[derive(Debug, clap::Args)]
struct Switches {
    /// Reject everything that does not go into the tunnel, from before it comes up until an
    /// orderly stop (Apple's includeAllNetworks). A provider that fails, or a host that is
    /// killed, leaves it in force until `nw tunnel down`. Excluded routes are rejected too.
    #[arg(long)]
    kill_switch: bool,
    /// Keep the local network (on-link prefixes, link-local, multicast, broadcast) out of the
    /// tunnel, and let it through the kill switch (Apple's excludeLocalNetworks).
    #[arg(long)]
    exclude_local: bool,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The provider is started with the contract socket as descriptor 3 (NW_TUNNEL_FD); see nw_tunnel::protocol for the messages.\nExit status: 0 after an orderly stop that left nothing behind; 1 when the provider failed or something was left; 2 for usage; 3 when the host could not be set up (no root, no /dev/net/tun, a provider that cannot be started)."
)]
struct UpArgs {
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    switches: Switches,
    /// The TUN interface's name (`%d` is numbered by the kernel); the default is a WireGuard
    /// configuration's file name (`wg0` for `wg0.conf`), otherwise `nwtun%d`.
    #[arg(long, value_name = "NAME")]
    interface: Option<String>,
    /// Seconds the provider has to say it started.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    start_timeout: u64,
    /// Restart a provider that exits or dies unasked up to this many times in a row, with a
    /// backoff from 250 ms doubling to 30 s (0: never; a minute of running starts over).
    #[arg(long, value_name = "N", default_value_t = 5)]
    max_restarts: u32,
    /// One JSON object per event on stdout instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::Up(up) => run_up(*up).await,
        Action::Status { json } => status(json).await,
        Action::Down { target } => down(target).await,
        Action::Save(save) => save_configuration(*save).await,
        Action::List { json } => list(json).await,
        Action::Remove { name } => {
            store_op(move |s| {
                s.remove(&name)?;
                Ok(format!("removed {name}{}", unbooted(&name)))
            })
            .await
        }
        Action::Enable { name, at_boot } => enable(name, at_boot).await,
        Action::Disable { name } => {
            store_op(move |s| {
                s.set_enabled(&name, false)?;
                Ok(format!("disabled {name}{}", unbooted(&name)))
            })
            .await
        }
        Action::WireguardProvider => {
            match nw_tunnel::provider::run(nw_wireguard::provider::WireGuard::default()).await {
                Ok(_) => Ok(Outcome::Success),
                Err(e) => {
                    crate::output::error_line(&format!("nw wireguard provider: {e}"));
                    Ok(Outcome::Exit(EXIT_ENVIRONMENT))
                }
            }
        }
    }
}

/// What runs the tunnel: a provider named on the command line, or ours for a WireGuard file.
struct Chosen {
    program: PathBuf,
    args: Vec<OsString>,
    options: Value,
    interface: String,
    /// What `nw tunnel status` calls the provider.
    name: String,
    /// The saved configuration it comes from.
    saved: Option<String>,
    /// Its on-demand rules.
    on_demand: Vec<OnDemandRule>,
    kill_switch: bool,
    exclude_local: bool,
}

fn valid_interface(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_=+.-%".contains(&b))
}

async fn choose(args: &UpArgs) -> anyhow::Result<Chosen> {
    if let Some(name) = &args.interface
        && !valid_interface(name)
    {
        return Err(UsageError(format!(
            "--interface {name:?} is not an interface name (1 to 15 letters, digits and _=+.-)"
        ))
        .into());
    }
    let source = &args.source;
    let interface = args.interface.clone();
    // A name that is not a file is a saved configuration's.
    let text = source.config.as_ref().map(|p| p.to_string_lossy().into_owned());
    if let Some(name) =
        text.filter(|t| !std::path::Path::new(t).exists() && configuration::valid_name(t))
    {
        let loaded = blocking(move || Store::open().load(&name).map(|c| (name, c))).await;
        let (name, saved) = loaded.map_err(|e| match e {
            configuration::ConfigurationError::NotFound { name, dir } => UsageError(format!(
                "{name} is neither a file nor a configuration saved in {dir} (`nw tunnel list` shows them)"
            )),
            e => UsageError(e.to_string()),
        })?;
        if !saved.enabled {
            return Err(UsageError(format!(
                "configuration {name} is disabled (`nw tunnel enable {name}`)"
            ))
            .into());
        }
        let mut chosen = match saved.provider {
            ProviderSpec::Wireguard { file } => wireguard(file, interface).await?,
            ProviderSpec::Program { program, args: provider_args, options } => program_chosen(
                program,
                provider_args.into_iter().map(OsString::from).collect(),
                options,
                interface,
            ),
        };
        chosen.saved = Some(name);
        chosen.on_demand = saved.on_demand;
        chosen.kill_switch = saved.kill_switch || args.switches.kill_switch;
        chosen.exclude_local = saved.exclude_local || args.switches.exclude_local;
        return Ok(chosen);
    }
    let mut chosen = match &source.config {
        Some(path) => wireguard(path.clone(), interface).await?,
        None => program_chosen(
            source.provider.clone().unwrap_or_default(),
            source.args.clone(),
            crate::provider_options(source.options.as_deref().unwrap_or("{}"))?,
            interface,
        ),
    };
    chosen.kill_switch = args.switches.kill_switch;
    chosen.exclude_local = args.switches.exclude_local;
    Ok(chosen)
}

/// A provider program runs the tunnel.
fn program_chosen(
    program: PathBuf,
    args: Vec<OsString>,
    options: Value,
    interface: Option<String>,
) -> Chosen {
    Chosen {
        name: program.display().to_string(),
        program,
        args,
        options,
        interface: interface.unwrap_or_else(|| "nwtun%d".into()),
        saved: None,
        on_demand: Vec::new(),
        kill_switch: false,
        exclude_local: false,
    }
}

/// nw's WireGuard provider runs the tunnel of a wg-quick file, read and resolved here.
async fn wireguard(path: PathBuf, interface: Option<String>) -> anyhow::Result<Chosen> {
    let read = path.clone();
    let mut config = blocking(move || wireguard_config(&read)).await?;
    if let Err(e) = config.resolve().await {
        return Err(UsageError(format!("{}: {e}", path.display())).into());
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let interface = match interface {
        Some(name) => name,
        None if valid_interface(stem) && !stem.contains('%') => stem.to_owned(),
        None => "wg%d".into(),
    };
    let program = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot find nw's own executable to run WireGuard: {e}"))?;
    let mut chosen = program_chosen(
        program,
        vec!["tunnel".into(), "wireguard-provider".into()],
        json!({ "wireguard": config }),
        Some(interface),
    );
    chosen.name = format!("wireguard ({})", path.display());
    Ok(chosen)
}

/// Stops `name` from starting at boot; what to add to the line saying what was done.
fn unbooted(name: &str) -> String {
    match boot::disable(name) {
        Ok(true) => "; it no longer starts at boot".into(),
        Ok(false) => String::new(),
        Err(e) => format!("; but it still starts at boot: {e}"),
    }
}

/// `nw tunnel enable NAME [--at-boot]`.
async fn enable(name: String, at_boot: bool) -> anyhow::Result<Outcome> {
    let program = std::env::current_exe().ok();
    store_op(move |s| {
        s.set_enabled(&name, true)?;
        if !at_boot {
            return Ok(format!("enabled {name}"));
        }
        let booted = program
            .ok_or_else(|| std::io::Error::other("nw cannot tell where its own program is"))
            .and_then(|program| boot::enable(&name, &program));
        let booted = booted.map_err(|source| configuration::ConfigurationError::Io {
            path: boot::unit_dir().join(boot::TEMPLATE).display().to_string(),
            source,
        })?;
        let now = if boot::systemd_runs() {
            format!("; `systemctl start nw-tunnel@{name}` starts it now")
        } else {
            " (systemd does not run here now)".into()
        };
        Ok(format!(
            "enabled {name}; it starts at boot ({}{}){now}",
            booted.link.display(),
            if booted.wrote_template { ", the unit written" } else { "" }
        ))
    })
    .await
}

async fn store_op(
    f: impl FnOnce(&Store) -> Result<String, configuration::ConfigurationError> + Send + 'static,
) -> anyhow::Result<Outcome> {
    match blocking(move || f(&Store::open())).await {
        Ok(done) => {
            crate::output::error_line(&format!("nw: {done}"));
            Ok(Outcome::Success)
        }
        Err(e @ configuration::ConfigurationError::Io { .. }) => {
            crate::output::error_line(&format!("nw: {e}"));
            Ok(Outcome::Exit(EXIT_ENVIRONMENT))
        }
        Err(e) => Err(UsageError(e.to_string()).into()),
    }
}

async fn save_configuration(args: SaveArgs) -> anyhow::Result<Outcome> {
    let absolute = |p: &std::path::Path| {
        std::path::absolute(p).map_err(|e| UsageError(format!("{}: {e}", p.display())))
    };
    let source = &args.source;
    let provider = match (&source.config, &source.provider) {
        (Some(file), _) => {
            // Checked now, so a mistake shows when it is saved rather than when it starts.
            let read = file.clone();
            blocking(move || wireguard_config(&read)).await?;
            ProviderSpec::Wireguard { file: absolute(file)? }
        }
        (None, Some(program)) => ProviderSpec::Program {
            program: absolute(program)?,
            args: source
                .args
                .iter()
                .map(|a| {
                    a.to_str().map(String::from).ok_or_else(|| {
                        UsageError(format!(
                            "provider argument {a:?} is not UTF-8; it cannot be saved"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            options: crate::provider_options(source.options.as_deref().unwrap_or("{}"))?,
        },
        (None, None) => return Err(UsageError("give a WireGuard file or --provider".into()).into()),
    };
    let mut on_demand = Vec::new();
    for rule in &args.on_demand {
        on_demand.push(OnDemandRule::parse(rule).map_err(UsageError)?);
    }
    let config = Configuration {
        provider,
        enabled: !args.disabled,
        kill_switch: args.switches.kill_switch,
        exclude_local: args.switches.exclude_local,
        on_demand,
    };
    let name = args.name;
    store_op(move |s| {
        s.save(&name, &config).map(|()| format!("saved {name} in {}", s.dir().display()))
    })
    .await
}

async fn list(json: bool) -> anyhow::Result<Outcome> {
    // Which start at boot is read with the list, off the runtime's threads (a stat each).
    let listed = blocking(|| {
        Store::open().list().map(|l| {
            l.into_iter().map(|(name, c)| (boot::at_boot(&name), name, c)).collect::<Vec<_>>()
        })
    })
    .await;
    let listed = match listed {
        Ok(l) => l,
        Err(e) => {
            crate::output::error_line(&format!("nw: {e}"));
            return Ok(Outcome::Exit(EXIT_ENVIRONMENT));
        }
    };
    let hosts = running().await;
    let mut out = Vec::new();
    for (at_boot, name, loaded) in listed {
        let host = hosts.iter().find(|h| h["configuration"] == name.as_str());
        let running = host
            .map(|h| json!({"interface": h["interface"], "pid": h["pid"], "state": h["state"]}));
        out.push(match loaded {
            Ok(c) => json!({
                "name": name, "configuration": c, "running": running,
                "at_boot": at_boot,
            }),
            Err(e) => json!({"name": name, "error": e.to_string(), "running": running}),
        });
    }
    if json {
        crate::output::say(&json!({"configurations": out, "dir": Store::open().dir()}).to_string());
        return Ok(Outcome::Success);
    }
    if out.is_empty() {
        crate::output::say(&format!(
            "no saved tunnel configurations in {}",
            Store::open().dir().display()
        ));
    }
    for c in &out {
        let name = c["name"].as_str().unwrap_or("?");
        let Some(conf) = c.get("configuration") else {
            crate::output::say(&format!(
                "{name}: cannot be used: {}",
                c["error"].as_str().unwrap_or("?")
            ));
            continue;
        };
        let what = match conf["provider"]["kind"].as_str() {
            Some("wireguard") => {
                format!("WireGuard {}", conf["provider"]["file"].as_str().unwrap_or("?"))
            }
            _ => format!("provider {}", conf["provider"]["program"].as_str().unwrap_or("?")),
        };
        let mut extras = Vec::new();
        if conf["kill_switch"] == true {
            extras.push("kill switch".to_owned());
        }
        if conf["exclude_local"] == true {
            extras.push("local network excluded".to_owned());
        }
        if c["at_boot"] == true {
            extras.push("starts at boot".to_owned());
        }
        if let Some(rules) = conf["on_demand"].as_array() {
            let rules: Vec<String> = rules
                .iter()
                .map(|r| {
                    let types: Vec<&str> = r["interface_types"]
                        .as_array()
                        .map(|t| t.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let action = r["action"].as_str().unwrap_or("?");
                    if types.is_empty() {
                        action.to_owned()
                    } else {
                        format!("{action}={}", types.join(","))
                    }
                })
                .collect();
            extras.push(format!("on demand: {}", rules.join(" ")));
        }
        let running = match &c["running"] {
            Value::Null => "not running".to_owned(),
            r => format!(
                "running on {} (host pid {})",
                r["interface"].as_str().unwrap_or("?"),
                r["pid"]
            ),
        };
        crate::output::say(&format!(
            "{name}: {}, {what}{}; {running}",
            if conf["enabled"] == true { "enabled" } else { "disabled" },
            extras.iter().map(|e| format!(", {e}")).collect::<String>()
        ));
    }
    Ok(Outcome::Success)
}

/// Reads a wg-quick file, saying on stderr what in it nw does not do.
fn wireguard_config(path: &std::path::Path) -> anyhow::Result<nw_wireguard::Config> {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;
    let usage = |what: String| UsageError(format!("{}: {what}", path.display()));
    // A named pipe nothing writes to is refused at once instead of holding the open for ever.
    let (file, meta) = nw_trust::files::open_regular(path, true).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidInput => usage(
            "is not a regular file (a directory, a pipe or a device): nw reads it again each time the tunnel starts, so give a file"
                .into(),
        ),
        _ => usage(format!("cannot read it: {e}")),
    })?;
    let mut text = String::new();
    file.take(nw_wireguard::config::MAX_TEXT as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| usage(format!("cannot read it as text: {e}")))?;
    let parsed = nw_wireguard::parse(&text).map_err(|e| usage(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        crate::output::error_line(&format!(
            "nw: note: {} can be read by other users, and holds a private key (chmod 600 it)",
            path.display()
        ));
    }
    for line in &parsed.ignored {
        crate::output::error_line(&format!("nw: note: {}: {line}", path.display()));
    }
    Ok(parsed.config)
}

async fn run_up(args: UpArgs) -> anyhow::Result<Outcome> {
    let chosen = choose(&args).await?;
    let mut host = HostOptions::new(&chosen.program);
    host.args = chosen.args;
    host.options = chosen.options;
    host.interface = chosen.interface;
    host.start_timeout = Duration::from_secs(args.start_timeout.clamp(1, 3600));
    host.kill_switch = chosen.kill_switch;
    host.exclude_local = chosen.exclude_local;
    host.max_restarts = args.max_restarts;
    warn_about_leftovers().await;
    // Namespaces come and go (containers, tests); their state would stay in /run for ever.
    drop(tokio::task::spawn_blocking(nw_tunnel::host::sweep_states));
    let mut view = View {
        json: args.json,
        state: StateFile::new(),
        status: json!({
            "pid": std::process::id(),
            "provider": chosen.name,
            "state": "starting",
            "kill_switch": chosen.kill_switch,
            "exclude_local": chosen.exclude_local,
            "restarts": 0,
            "configuration": chosen.saved,
        }),
    };
    // A tunnel from a saved configuration follows it: removed or disabled, it stops.
    let mut follow = tokio::time::interval(Duration::from_secs(1));
    let saved = chosen.saved.clone();
    let rules = chosen.on_demand;
    // With on-demand rules the path decides when the tunnel runs.
    let mut readings = if rules.is_empty() {
        None
    } else {
        let service = nw_path::PathService::shared()
            .map_err(|e| anyhow::anyhow!("on-demand rules need the path service: {e}"))?;
        Some(service.subscribe())
    };
    if readings.is_some() {
        // Waiting shows in `nw tunnel status` (and `down` stops it) before any interface
        // exists to name the state file by.
        view.state.name(&format!("on-demand-{}", std::process::id()));
    }
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    loop {
        if let Some(readings) = readings.as_mut() {
            // Wait until the rules say connect.
            let mut said = None;
            loop {
                tokio::select! {
                    reading = readings.next() => {
                        let Ok(path) = reading.map(|r| r.path(&nw_path::Conditions::default()))
                        else { continue };
                        if configuration::on_demand_for(&rules, &path) == OnDemandAction::Connect {
                            break;
                        }
                        let satisfied = path.status == nw_path::Status::Satisfied;
                        let primary = path
                            .primary()
                            .map(|p| p.interface.kind.as_str())
                            .filter(|_| satisfied);
                        if said != Some(primary) {
                            said = Some(primary);
                            view.waiting(primary);
                        }
                    }
                    _ = interrupt.recv() => return Ok(view.end_waiting()),
                    _ = terminate.recv() => return Ok(view.end_waiting()),
                    gone = followed(saved.as_deref(), &mut follow) => if gone.is_some() {
                        return Ok(view.end_waiting());
                    },
                }
            }
        }
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = watch::channel(None);
        let hosted = nw_tunnel::host::run(host.clone(), events_tx, stop_rx);
        tokio::pin!(hosted);
        let mut by_path = false;
        let ended = loop {
            tokio::select! {
                ended = &mut hosted => break ended,
                Some(event) = events.recv() => view.show(&event),
                _ = interrupt.recv() => { let _ = stop_tx.send(Some(StopReason::UserInitiated)); }
                _ = terminate.recv() => { let _ = stop_tx.send(Some(StopReason::UserInitiated)); }
                gone = followed(saved.as_deref(), &mut follow), if stop_tx.borrow().is_none() => {
                    if let Some(reason) = gone {
                        let _ = stop_tx.send(Some(reason));
                    }
                }
                reading = next_reading(&mut readings), if stop_tx.borrow().is_none() => {
                    if let Ok(path) = reading.map(|r| r.path(&nw_path::Conditions::default()))
                        && configuration::on_demand_for(&rules, &path) == OnDemandAction::Disconnect
                    {
                        by_path = true;
                        let reason = if path.status == nw_path::Status::Satisfied {
                            StopReason::UnrecoverableNetworkChange
                        } else {
                            StopReason::NoNetworkAvailable
                        };
                        let _ = stop_tx.send(Some(reason));
                    }
                }
            }
        };
        while let Ok(event) = events.try_recv() {
            view.show(&event);
        }
        match ended {
            Ok(ended) => {
                show_end(&ended, view.json);
                let clean = ended.leftovers.is_empty();
                if by_path && clean {
                    continue;
                }
                view.state.remove();
                let asked = matches!(
                    ended.reason,
                    StopReason::UserInitiated
                        | StopReason::ConfigurationRemoved
                        | StopReason::ProviderDisabled
                );
                return Ok(if clean && asked { Outcome::Success } else { Outcome::Negative });
            }
            // The name is the user's choice, and so is a provider that cannot be run at all
            // (missing, or not executable by its user): usage errors, as clap's own are.
            Err(e @ nw_tunnel::HostError::InterfaceExists(_)) => {
                view.state.remove();
                return Err(UsageError(e.to_string()).into());
            }
            Err(e) if e.provider_not_runnable() => {
                view.state.remove();
                return Err(UsageError(e.to_string()).into());
            }
            Err(e) => {
                view.state.remove();
                crate::output::error_line(&format!("nw: {e}"));
                return Ok(Outcome::Exit(EXIT_ENVIRONMENT));
            }
        }
    }
}

/// The next path reading, or never without on-demand rules.
async fn next_reading(
    readings: &mut Option<nw_path::Readings>,
) -> Result<std::sync::Arc<nw_path::Reading>, nw_path::PathError> {
    match readings {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// Each tick, whether the saved configuration was removed or disabled (never without one).
async fn followed(saved: Option<&str>, follow: &mut tokio::time::Interval) -> Option<StopReason> {
    let Some(name) = saved else { return std::future::pending().await };
    follow.tick().await;
    let name = name.to_owned();
    match blocking(move || Store::open().load(&name)).await {
        Err(configuration::ConfigurationError::NotFound { .. }) => {
            Some(StopReason::ConfigurationRemoved)
        }
        Ok(c) if !c.enabled => Some(StopReason::ProviderDisabled),
        _ => None,
    }
}

/// What `nw tunnel up` shows and keeps in its state file.
struct View {
    json: bool,
    state: StateFile,
    /// The state file's contents.
    status: Value,
}

impl View {
    /// On-demand rules say disconnect: the tunnel waits for a path they connect on.
    fn waiting(&mut self, primary: Option<&str>) {
        self.status["state"] = json!("waiting");
        self.state.write(&self.status);
        if self.json {
            crate::output::say(
                &json!({"event": "on_demand", "state": "waiting", "primary": primary}).to_string(),
            );
        } else {
            crate::output::say(&format!(
                "on demand: waiting; {}",
                primary.map_or_else(
                    || "the path is not satisfied".to_owned(),
                    |p| format!("the rules do not connect over the primary interface ({p})")
                )
            ));
        }
    }

    /// Stopped (by a signal, or the configuration) while waiting: nothing runs, nothing is left.
    fn end_waiting(&mut self) -> Outcome {
        self.state.remove();
        if self.json {
            crate::output::say(&format!(
                "{}",
                json!({"event": "stopped", "reason": "user_initiated", "leftovers": []})
            ));
        } else {
            crate::output::say("stopped while waiting on demand; nothing was running");
        }
        Outcome::Success
    }

    fn show(&mut self, event: &Event) {
        self.follow(event);
        let (line, object) = match event {
            Event::Created { interface, table, pid } => (
                format!(
                    "{interface}: created (routing table {table:#x}); provider pid {}",
                    pid.map_or_else(|| "?".into(), |p| p.to_string())
                ),
                json!({"event": "created", "interface": interface, "table": table, "pid": pid}),
            ),
            Event::Applied { id, settings, state, took } => {
                let ms = took.as_secs_f64() * 1000.0;
                (
                    format!(
                        "settings {id} applied in {ms:.1} ms: {} address(es), {} route(s), MTU {}{}",
                        state.addresses.len(),
                        state.routes.len(),
                        state.mtu,
                        dns_line(settings.as_ref(), state)
                    ),
                    json!({
                        "event": "applied", "id": id, "ms": ms, "settings": settings,
                        "kernel": kernel_json(state),
                    }),
                )
            }
            Event::Refused { id, message } => (
                format!("settings {id} refused: {message}"),
                json!({"event": "refused", "id": id, "message": message}),
            ),
            Event::Started => ("started".into(), json!({"event": "started"})),
            Event::Reasserting(r) => (
                if *r { "reasserting".into() } else { "reasserted".into() },
                json!({"event": "reasserting", "reasserting": r}),
            ),
            // Figures for `nw tunnel status`, not news.
            Event::AppMessage(data) if data.get("status").is_some() => return,
            // Any provider's notice with a sentence for people: the sentence.
            Event::AppMessage(data) if data["message"].is_string() => (
                data["message"].as_str().unwrap_or_default().to_owned(),
                json!({"event": "app_message", "data": data}),
            ),
            Event::AppMessage(data) => {
                (format!("provider says: {data}"), json!({"event": "app_message", "data": data}))
            }
            Event::Restarting { attempt, delay, message } => {
                let ms = delay.as_secs_f64() * 1000.0;
                (
                    format!(
                        "provider {message}; restarting it in {ms:.0} ms (restart {attempt} in a row)"
                    ),
                    json!({"event": "restarting", "attempt": attempt, "delay_ms": ms, "message": message}),
                )
            }
            Event::Restarted { attempt, pid } => (
                format!(
                    "provider restarted (pid {})",
                    pid.map_or_else(|| "?".into(), |p| p.to_string())
                ),
                json!({"event": "restarted", "attempt": attempt, "pid": pid}),
            ),
            Event::Updated { pid } => (
                format!(
                    "the provider's program was replaced: the old one stopped (app_update), the new one started (pid {})",
                    pid.map_or_else(|| "?".into(), |p| p.to_string())
                ),
                json!({"event": "updated", "reason": "app_update", "pid": pid}),
            ),
            Event::LocalNetwork { local, .. } => {
                let local: Vec<String> = local.iter().map(ToString::to_string).collect();
                (
                    format!(
                        "the local network is now {}; kept out of the tunnel",
                        local.join(", ")
                    ),
                    json!({"event": "local_network", "local": local}),
                )
            }
        };
        if self.json {
            crate::output::say(&object.to_string());
        } else {
            crate::output::say(&line);
        }
    }

    /// Keeps the state file up to date with what happened.
    fn follow(&mut self, event: &Event) {
        let s = &mut self.status;
        match event {
            Event::Created { interface, table, pid } => {
                s["interface"] = json!(interface);
                s["table"] = json!(table);
                s["provider_pid"] = json!(pid);
                self.state.name(interface);
            }
            Event::Applied { settings, state, .. } => {
                s["settings"] = json!(settings);
                s["kernel"] = kernel_json(state);
            }
            Event::Started => s["state"] = json!("running"),
            Event::AppMessage(data) if data.get("status").is_some() => {
                s["provider_status"] = data["status"].clone();
            }
            Event::Reasserting(r) => s["state"] = json!(if *r { "reasserting" } else { "running" }),
            Event::Restarting { attempt, message, .. } => {
                s["state"] = json!("restarting");
                s["restarts"] = json!(s["restarts"].as_u64().unwrap_or(0) + 1);
                s["last_failure"] = json!(message);
                s["attempt"] = json!(attempt);
            }
            Event::Restarted { pid, .. } | Event::Updated { pid } => {
                s["state"] = json!("starting");
                s["provider_pid"] = json!(pid);
            }
            Event::LocalNetwork { local, state } => {
                s["local_network"] =
                    json!(local.iter().map(ToString::to_string).collect::<Vec<_>>());
                if let Some(state) = state {
                    s["kernel"] = kernel_json(state);
                }
            }
            _ => return,
        }
        self.state.write(&self.status);
    }
}

fn show_end(ended: &Ended, json: bool) {
    let exit = ended.exit.map(|s| s.to_string());
    if json {
        crate::output::say(&format!(
            "{}",
            json!({
                "event": "stopped", "reason": ended.reason.as_str(), "message": ended.message,
                "provider_exit": exit, "leftovers": ended.leftovers,
                "kill_switch_kept": ended.kill_switch_kept,
            })
        ));
        return;
    }
    let mut line = format!("stopped: {}", ended.reason.as_str());
    if let Some(m) = &ended.message {
        line.push_str(&format!(" (provider {m})"));
    }
    if ended.leftovers.is_empty() {
        line.push_str("; nothing left behind");
    } else {
        line.push_str(&format!("; left behind: {}", ended.leftovers.join(", ")));
    }
    crate::output::say(&line);
    if ended.kill_switch_kept {
        crate::output::say(
            "the kill switch stays in force: nothing but loopback leaves this host until `nw tunnel down` removes it (or a tunnel comes up with --kill-switch)",
        );
    }
}

/// How the DNS settings are in force, for `nw tunnel status`: from the state file's settings
/// and kernel reading.
fn status_dns_line(h: &Value) -> Option<String> {
    let servers: Vec<&str> = h["settings"]["dns"]["servers"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if servers.is_empty() {
        return None;
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let resolved = &h["kernel"]["resolved"];
    Some(if resolved.is_object() {
        let domains = strings(&resolved["domains"]);
        format!(
            "DNS: {} by systemd-resolved for the link (domains {})",
            strings(&resolved["servers"]).join(", "),
            if domains.is_empty() { "none".into() } else { domains.join(", ") }
        )
    } else {
        format!(
            "DNS: {} through our forwarder, which resolv.conf names ({})",
            servers.join(", "),
            strings(&h["kernel"]["name_servers"]).join(", ")
        )
    })
}

/// How the DNS settings are in force, for the applied line: the status line's words, from
/// the same JSON the state file keeps.
fn dns_line(settings: Option<&nw_tunnel::Settings>, state: &nw_tunnel::KernelState) -> String {
    let h = json!({"settings": settings, "kernel": kernel_json(state)});
    status_dns_line(&h).map_or_else(String::new, |line| format!("; {line}"))
}

/// What the kernel holds, as the event lines and the state file show it.
fn kernel_json(state: &nw_tunnel::KernelState) -> Value {
    json!({
        "mtu": state.mtu,
        "addresses": state.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "routes": state.routes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "rules": state.rules,
        "name_servers": state.name_servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "resolved": state.resolved.as_ref().map(|link| json!({
            "servers": link.servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "domains": link.domains,
            "default_route": link.default_route,
        })),
    })
}

use nw_tunnel::host::state_dir;

/// One host's state file, written on each event and removed when the host ends — on a thread
/// of its own: a write syncs the file, and the event loop that shows events also drives the
/// host, which must not wait on the disk.
struct StateFile {
    path: Option<PathBuf>,
    writes: Option<std::sync::mpsc::Sender<(PathBuf, Option<Vec<u8>>)>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl StateFile {
    fn new() -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, Option<Vec<u8>>)>();
        let writer = std::thread::Builder::new()
            .name("nw-tunnel-state".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Only the newest state of each file matters; a file left for another
                    // (an on-demand host's, once its interface exists) is still removed.
                    let mut pending = vec![first];
                    while let Ok(newer) = rx.try_recv() {
                        pending.retain(|(path, _)| *path != newer.0);
                        pending.push(newer);
                    }
                    for next in pending {
                        match next {
                            (path, Some(bytes)) => {
                                if let Some(dir) = path.parent() {
                                    let _ = std::fs::create_dir_all(dir);
                                }
                                if let Err(e) = nw_trust::files::replace(&path, &bytes, 0o644) {
                                    tracing::warn!("cannot write {}: {e}", path.display());
                                }
                            }
                            (path, None) => {
                                let _ = std::fs::remove_file(&path);
                                // The namespace's directory goes too once no host uses it.
                                if let Some(dir) = path.parent() {
                                    let _ = std::fs::remove_dir(dir);
                                }
                            }
                        }
                    }
                }
            })
            .ok();
        Self { path: None, writes: writer.as_ref().map(|_| tx), writer }
    }

    /// The file is named by `interface` (or, while none exists, by what stands for it); a
    /// file under another name is removed.
    fn name(&mut self, interface: &str) {
        let path = state_dir().join(format!("{interface}.json"));
        if let (Some(old), Some(writes)) = (&self.path, &self.writes)
            && *old != path
        {
            let _ = writes.send((old.clone(), None));
        }
        self.path = Some(path);
    }

    fn write(&self, value: &Value) {
        let (Some(path), Some(writes)) = (&self.path, &self.writes) else { return };
        let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
        let _ = writes.send((path.clone(), Some(bytes)));
    }

    /// Removes the file, and waits for the writer to be done.
    fn remove(&mut self) {
        if let (Some(path), Some(writes)) = (&self.path, &self.writes) {
            let _ = writes.send((path.clone(), None));
        }
        self.writes = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The hosts running in this network namespace, by their state files (read on a blocking
/// thread).
pub(crate) async fn running() -> Vec<Value> {
    blocking(read_running).await
}

fn read_running() -> Vec<Value> {
    let Ok(dir) = std::fs::read_dir(state_dir()) else { return Vec::new() };
    let mut out: Vec<Value> = dir
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice::<Value>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|v| {
            v["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .is_some_and(nw_tunnel::host::alive)
        })
        .collect();
    out.sort_by(|a, b| a["interface"].as_str().cmp(&b["interface"].as_str()));
    out
}

/// An interface's counters from sysfs: bytes and packets each way.
fn counters(interface: &str) -> Value {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{interface}/statistics/{name}"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    // The TUN device's "tx" is what the kernel hands the provider: into the tunnel.
    json!({
        "bytes_in": read("rx_bytes"), "packets_in": read("rx_packets"),
        "bytes_out": read("tx_bytes"), "packets_out": read("tx_packets"),
    })
}

/// A WireGuard peer in `nw tunnel status`, as `wg show` says it.
fn peer_line(p: &Value) -> String {
    #[allow(clippy::disallowed_methods, reason = "how long ago the last handshake was")]
    let now = std::time::SystemTime::now();
    let ago = p["last_handshake_unix"].as_u64().map(|t| {
        let then = std::time::UNIX_EPOCH + Duration::from_secs(t);
        now.duration_since(then).unwrap_or_default().as_secs()
    });
    format!(
        "peer {} at {}: {}; received {} bytes in {} packets, sent {} bytes in {} packets",
        p["public_key"].as_str().unwrap_or("?"),
        p["endpoint"].as_str().unwrap_or("(no endpoint)"),
        ago.map_or_else(|| "no handshake yet".into(), |s| format!("last handshake {s} s ago")),
        p["rx_bytes"],
        p["rx_packets"],
        p["tx_bytes"],
        p["tx_packets"],
    )
}

/// Says on stderr what hosts that are gone left behind, before a new one starts.
async fn warn_about_leftovers() {
    if let Ok(Ok(left)) = tokio::task::spawn_blocking(nw_tunnel::host::leftovers).await {
        for l in left {
            let what = match &l {
                Leftover::KillSwitch { .. } => {
                    "rejects everything that does not go into its tunnel"
                }
                Leftover::Routing { .. } => "no longer route anything, but are in the way",
                Leftover::ResolvConf { .. } => "so names do not resolve",
            };
            crate::output::error_line(&format!(
                "nw: note: {l}, left by a host that is gone, {what}; `nw tunnel down` removes it"
            ));
        }
    }
}

async fn status(json: bool) -> anyhow::Result<Outcome> {
    // The state files and sysfs counters are read on a blocking thread.
    let hosts = blocking(|| {
        let mut hosts = read_running();
        for h in &mut hosts {
            let interface = h["interface"].as_str().unwrap_or_default().to_owned();
            h["counters"] = counters(&interface);
        }
        hosts
    })
    .await;
    let left = tokio::task::spawn_blocking(nw_tunnel::host::leftovers).await?;
    let (left, unknown) = match &left {
        Ok(l) => (l.iter().map(ToString::to_string).collect::<Vec<_>>(), None),
        Err(e) => (Vec::new(), Some(format!("cannot look for what killed hosts left: {e}"))),
    };
    if json {
        crate::output::say(
            &json!({"tunnels": hosts, "leftovers": left, "leftovers_unknown": unknown}).to_string(),
        );
    } else {
        if hosts.is_empty() {
            crate::output::say("no tunnel host runs in this network namespace");
        }
        for h in &hosts {
            if h["interface"].is_null() && h["state"] == "waiting" {
                crate::output::say(&format!(
                    "{}: waiting on demand, no interface yet (host pid {})",
                    h["configuration"].as_str().or(h["provider"].as_str()).unwrap_or("?"),
                    h["pid"]
                ));
                continue;
            }
            let c = &h["counters"];
            crate::output::say(&format!(
                "{}: {} (host pid {}, provider {} pid {}){}{}",
                h["interface"].as_str().unwrap_or("?"),
                h["state"].as_str().unwrap_or("?"),
                h["pid"],
                h["provider"].as_str().unwrap_or("?"),
                h["provider_pid"],
                if h["kill_switch"] == true { ", kill switch on" } else { "" },
                if h["exclude_local"] == true { ", local network excluded" } else { "" },
            ));
            let routes: Vec<&str> = h["kernel"]["routes"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let addresses: Vec<&str> = h["kernel"]["addresses"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            crate::output::say(&format!(
                "  applied: addresses {}; routes {}; MTU {}",
                if addresses.is_empty() { "none".into() } else { addresses.join(", ") },
                if routes.is_empty() { "none".into() } else { routes.join(", ") },
                h["kernel"]["mtu"]
            ));
            if let Some(dns) = status_dns_line(h) {
                crate::output::say(&format!("  {dns}"));
            }
            crate::output::say(&format!(
                "  into the tunnel {} bytes in {} packets; out of it {} bytes in {} packets",
                c["bytes_out"], c["packets_out"], c["bytes_in"], c["packets_in"]
            ));
            for p in h["provider_status"]["peers"].as_array().into_iter().flatten() {
                crate::output::say(&format!("  {}", peer_line(p)));
            }
            if let Some(n) = h["restarts"].as_u64().filter(|n| *n > 0) {
                crate::output::say(&format!(
                    "  provider restarted {n} time(s); last: {}",
                    h["last_failure"].as_str().unwrap_or("?")
                ));
            }
        }
        for l in &left {
            crate::output::say(&format!(
                "left behind by a host that is gone: {l} (`nw tunnel down` removes it)"
            ));
        }
        if let Some(why) = &unknown {
            crate::output::say(why);
        }
    }
    Ok(if hosts.is_empty() { Outcome::Negative } else { Outcome::Success })
}

/// How long `nw tunnel down` waits for each host to stop in order.
const DOWN_WAIT: Duration = Duration::from_secs(15);

async fn down(target: Option<String>) -> anyhow::Result<Outcome> {
    let hosts: Vec<Value> = running()
        .await
        .into_iter()
        .filter(|h| {
            target.as_deref().is_none_or(|t| h["interface"] == t || h["configuration"] == t)
        })
        .collect();
    if let Some(t) = &target
        && hosts.is_empty()
    {
        return Err(UsageError(format!(
            "no tunnel host runs on an interface or a saved configuration named {t:?} in this network namespace (`nw tunnel status` lists them)"
        ))
        .into());
    }
    let mut failed = false;
    for h in &hosts {
        let Some(pid) = h["pid"].as_u64().and_then(|p| libc::pid_t::try_from(p).ok()) else {
            continue;
        };
        let name = h["interface"].as_str().unwrap_or("no interface, waiting on demand");
        // SAFETY: kill(2) on a host named by its own state file and seen alive just now.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let stopped = wait_for_exit(pid.unsigned_abs(), DOWN_WAIT).await;
        if stopped {
            crate::output::say(&format!("stopped the tunnel on {name} (host pid {pid})"));
        } else {
            failed = true;
            crate::output::say(&format!(
                "the tunnel host on {name} (pid {pid}) did not stop within {DOWN_WAIT:?}"
            ));
        }
    }
    if target.is_none() {
        blocking(remove_dead_state_files).await;
        let swept = blocking(nw_tunnel::host::sweep_states).await;
        if swept > 0 {
            crate::output::say(&format!(
                "removed the state of {swept} network namespace{} that {} gone",
                if swept == 1 { "" } else { "s" },
                if swept == 1 { "is" } else { "are" }
            ));
        }
        let left = tokio::task::spawn_blocking(nw_tunnel::host::leftovers).await?.map_err(|e| {
            anyhow::anyhow!("cannot look for what stopped hosts left behind: {e} (are we root?)")
        })?;
        let nothing = left.is_empty();
        for l in left {
            let removed = tokio::task::spawn_blocking({
                let l = l.clone();
                move || nw_tunnel::host::remove_leftover(&l)
            })
            .await?;
            match removed {
                Ok(()) => crate::output::say(&format!("removed {l}")),
                Err(e) => {
                    failed = true;
                    crate::output::say(&format!("could not remove {l}: {e}"));
                }
            }
        }
        // The namespace's directory, once nothing is in it.
        blocking(|| std::fs::remove_dir(state_dir())).await.ok();
        if hosts.is_empty() && nothing && swept == 0 {
            crate::output::say("no tunnel host runs here, and nothing is left behind");
        }
    }
    Ok(if failed { Outcome::Negative } else { Outcome::Success })
}

/// Removes the state files of hosts that were killed, and the half-written ones a kill can
/// leave.
fn remove_dead_state_files() {
    if let Ok(dir) = std::fs::read_dir(state_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = if let Some(rest) = name.strip_suffix(".tmp") {
                rest.rsplit_once('.').and_then(|(_, pid)| pid.parse::<u32>().ok())
            } else if name.ends_with(".json") {
                std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .and_then(|v| v["pid"].as_u64())
                    .and_then(|p| u32::try_from(p).ok())
            } else {
                continue;
            };
            if !pid.is_some_and(nw_tunnel::host::alive) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Waits for `pid` to be gone (or a zombie), polling.
#[allow(clippy::disallowed_methods, reason = "polls another process's exit on the wall clock")]
async fn wait_for_exit(pid: u32, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if !nw_tunnel::host::alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !nw_tunnel::host::alive(pid)
}
