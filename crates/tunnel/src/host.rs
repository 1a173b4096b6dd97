//! The privileged host: it makes the TUN device and the tunnel's policy rules, starts the
//! provider as its own unprivileged process with the contract socket on descriptor 3, applies
//! the settings the provider asks for (checked first, read back after, rolled back on
//! failure), and on any stop — asked for, provider failure, contract breach — stops the
//! provider and removes every route, rule and the device, then reads back what is left.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::Child;
use tokio::sync::{mpsc, watch};

use crate::fdpass;
use crate::protocol::{
    self, FD_ENV, HostMessage, LineBuffer, ProviderMessage, StopReason, VERSION,
};
use crate::settings::Settings;
use crate::settings::{Prefix, TableRoute};
use crate::sys::{self, Kernel, killswitch};
use crate::{dns, resolved};
use nw_provider::blocking;

pub use nw_provider::alive;

/// How long a provider that closed its socket has to be seen exiting.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How to host one tunnel.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The TUN interface's name; `%d` is numbered by the kernel.
    pub interface: String,
    /// The provider's executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The configuration's options, passed in `start`.
    pub options: Value,
    /// The user and group the provider runs as; `None` keeps the host's own (only sensible
    /// when the host itself is unprivileged, as in a test).
    pub user: Option<(u32, u32)>,
    /// How long the provider has to say `started` (or `cancel`).
    pub start_timeout: Duration,
    /// How long the provider has to answer `stop` before it is killed.
    pub stop_timeout: Duration,
    /// The kill switch (Apple's `includeAllNetworks`): from before the provider starts until
    /// an orderly stop, everything that does not go into the tunnel is rejected — except
    /// loopback, the provider's bypass sockets, the tunnel's remote address, IPv6 neighbour
    /// discovery and, with `exclude_local`, the local network. A stop nobody asked for (the
    /// provider failed, the host was killed) leaves it in force.
    pub kill_switch: bool,
    /// Keeps the local network out of the tunnel (Apple's `excludeLocalNetworks`): link-local,
    /// multicast and broadcast addresses and the on-link prefixes, followed as they change.
    pub exclude_local: bool,
    /// How many times in a row a provider that exits or dies unasked is restarted, with a
    /// backoff, before the tunnel stops (0: never). A run of a minute starts the count over.
    pub max_restarts: u32,
}

impl HostOptions {
    /// Options for `program` with the defaults: interface `nwtun%d`, no options, the provider
    /// run as `nobody` when the host is root, 30 s to start, 3 s to stop, no kill switch, up to
    /// 5 restarts in a row.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            interface: "nwtun%d".into(),
            program: program.into(),
            args: Vec::new(),
            options: Value::Object(Default::default()),
            user: nw_provider::default_user(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(3),
            kill_switch: false,
            exclude_local: false,
            max_restarts: 5,
        }
    }
}

/// What happened, as it happens.
#[derive(Debug, Clone)]
pub enum Event {
    /// The device and the policy rules exist; the provider is being started.
    Created {
        /// The interface's name.
        interface: String,
        /// Its routing table (also the firewall mark of bypassing sockets).
        table: u32,
        /// The provider's process id.
        pid: Option<u32>,
    },
    /// Settings are in force; `state` is the kernel's, read back.
    Applied {
        /// The request's id.
        id: u64,
        /// What was asked (`None`: cleared).
        settings: Option<Settings>,
        /// What the kernel holds now.
        state: Box<KernelState>,
        /// From the request's arrival to the read-back.
        took: Duration,
    },
    /// Settings were refused; what was in force before still is.
    Refused {
        /// The request's id.
        id: u64,
        /// Why.
        message: String,
    },
    /// The provider says the tunnel is up.
    Started,
    /// The provider is reconnecting (`true`) or back.
    Reasserting(bool),
    /// A message from the provider for the app.
    AppMessage(Value),
    /// The provider exited or died unasked; it is started again after `delay`. The settings,
    /// routes and kill switch in force stay: traffic into the tunnel waits or is dropped.
    Restarting {
        /// Which restart in a row this is (from 1).
        attempt: u32,
        /// The backoff before it.
        delay: Duration,
        /// How the provider ended.
        message: String,
    },
    /// The provider's program was replaced on disk (an update): the running one was stopped
    /// with [`StopReason::AppUpdate`] and the new one started, the settings, routes and kill
    /// switch staying in force meanwhile.
    Updated {
        /// The new provider's process id.
        pid: Option<u32>,
    },
    /// The provider was started again.
    Restarted {
        /// Which restart in a row this was.
        attempt: u32,
        /// Its process id.
        pid: Option<u32>,
    },
    /// The local network changed (with `exclude_local`): what is kept out of the tunnel now.
    LocalNetwork {
        /// The prefixes.
        local: Vec<Prefix>,
        /// What the kernel holds after the tunnel's table followed (`None` before the
        /// provider's first settings, or when re-applying failed).
        state: Option<Box<KernelState>>,
    },
}

/// How a hosted tunnel ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Why it stopped.
    pub reason: StopReason,
    /// What the provider or the host said about it.
    pub message: Option<String>,
    /// The provider's exit status, if it exited.
    pub exit: Option<ExitStatus>,
    /// Kernel objects the teardown could not remove (empty when it was complete).
    pub leftovers: Vec<String>,
    /// The kill switch is still in force: the stop was not asked for, so nothing may leak
    /// until someone removes it (`nw tunnel down`, or a new tunnel with a kill switch).
    pub kill_switch_kept: bool,
}

/// Setting up the tunnel failed; nothing is left behind.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The TUN device could not be made.
    #[error(
        "cannot create the TUN device {name:?}: {error} (is /dev/net/tun there, and are we root?)"
    )]
    Tun {
        /// The name asked for.
        name: String,
        /// The system's error.
        error: std::io::Error,
    },
    /// An interface of that name exists already.
    #[error(
        "an interface named {0:?} exists already; the host neither takes over nor deletes another's device (name a free one, or a pattern such as nwtun%d)"
    )]
    InterfaceExists(String),
    /// The policy rules could not be installed.
    #[error("cannot install the tunnel's routing rules: {0}")]
    Rules(std::io::Error),
    /// The kill switch could not be installed.
    #[error("cannot install the kill switch: {0}")]
    KillSwitch(std::io::Error),
    /// The local network could not be read (to keep it out of the tunnel).
    #[error("cannot read the local network to keep it out of the tunnel: {0}")]
    LocalNetwork(String),
    /// The provider could not be started.
    #[error("cannot start the provider {program}: {error}{hint}")]
    Spawn {
        /// The executable.
        program: String,
        /// The system's error.
        error: std::io::Error,
        /// What to check, when something can be said.
        hint: String,
    },
}

/// Hosts one tunnel until it stops: `stop` asks for an orderly stop with a reason; `events`
/// hears what happens. Returns how it ended, after the teardown.
pub async fn run(
    options: HostOptions,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<Option<StopReason>>,
) -> Result<Ended, HostError> {
    let name = options.interface.clone();
    let (tun, interface, index) =
        blocking(move || sys::open_tun(&name)).await.map_err(|error| {
            let name = options.interface.clone();
            if error.kind() == std::io::ErrorKind::AlreadyExists {
                HostError::InterfaceExists(name)
            } else {
                HostError::Tun { name, error }
            }
        })?;
    let mut kernel = match blocking(move || Kernel::new(index)).await {
        Ok(k) => k,
        Err(e) => {
            drop(tun);
            return Err(HostError::Rules(e));
        }
    };
    let (result, kernel) = blocking(move || {
        let r = kernel.install_rules();
        (r, kernel)
    })
    .await;
    let table = kernel.table();
    let mut session = Session {
        kernel: Some(kernel),
        tun,
        interface: interface.clone(),
        index,
        events,
        table,
        pid: None,
        program: None,
        applied: None,
        local: None,
        readings: None,
        kill_switch: None,
        dns: None,
    };
    if let Err(e) = result {
        session.teardown(true).await;
        return Err(HostError::Rules(e));
    }
    // The local network is read, and the kill switch installed, before the provider runs and
    // before anything is routed into the tunnel.
    if options.exclude_local
        && let Err(e) = session.watch_local_network().await
    {
        session.teardown(true).await;
        return Err(HostError::LocalNetwork(e));
    }
    if options.kill_switch {
        let spec = killswitch::Spec {
            interface: interface.clone(),
            mark: table,
            pid: std::process::id(),
            remotes: Vec::new(),
            local: session.local.clone(),
        };
        let installed = spec.clone();
        if let Err(e) = blocking(move || killswitch::install(&installed)).await {
            session.teardown(true).await;
            return Err(HostError::KillSwitch(e));
        }
        session.kill_switch = Some(spec);
    }
    let (mut ours, mut child) = match session.spawn(&options) {
        Ok(started) => started,
        Err(e) => {
            session.teardown(true).await;
            return Err(e);
        }
    };
    let _ = session.events.send(Event::Created {
        interface: interface.clone(),
        table,
        pid: session.pid,
    });

    let mut backoff = nw_provider::Backoff::new();
    let mut attempt = 0u32;
    let (reason, message, exit, asked) = loop {
        #[allow(clippy::disallowed_methods, reason = "how long the provider ran, for the backoff")]
        let since = Instant::now();
        let (end, stream) = session.serve(ours, &mut child, &options, &mut stop).await;
        #[allow(clippy::disallowed_methods, reason = "how long the provider ran, for the backoff")]
        let ran = since.elapsed();
        if ran >= backoff.healthy {
            attempt = 0;
        }
        if matches!(end, End::Updated(_)) {
            // An update: the old provider stopped in order, the new one started at once.
            let (_, _, exit) = session.finish(stream, &mut child, end, &options).await;
            match session.spawn(&options) {
                Ok((o, c)) => {
                    (ours, child) = (o, c);
                    let _ = session.events.send(Event::Updated { pid: session.pid });
                    continue;
                }
                Err(e) => {
                    let m =
                        format!("its program was replaced, and starting the new one failed: {e}");
                    break (StopReason::ProviderFailed, Some(m), exit, false);
                }
            }
        }
        let crashed = matches!(end, End::Exited(_) | End::Gone(_));
        if !crashed || attempt >= options.max_restarts {
            let asked = matches!(end, End::Asked(_));
            let (reason, message, exit) = session.finish(stream, &mut child, end, &options).await;
            break (reason, message, exit, asked);
        }
        // The provider crashed: settings, routes and the kill switch stay as they are (traffic
        // into the tunnel waits in the device or is dropped, never leaked) while it restarts.
        let (_, message, exit) = session.finish(None, &mut child, end, &options).await;
        attempt += 1;
        let delay = backoff.after_failure(ran);
        let message = message.unwrap_or_else(|| "exited".into());
        let _ = session.events.send(Event::Restarting { attempt, delay, message: message.clone() });
        #[allow(clippy::disallowed_methods, reason = "the restart's backoff")]
        let wait = tokio::time::sleep(delay);
        tokio::select! {
            () = wait => {}
            changed = stop.changed() => {
                let reason = match changed {
                    Ok(()) => (*stop.borrow()).unwrap_or(StopReason::UserInitiated),
                    Err(_) => StopReason::UserInitiated,
                };
                break (reason, None, exit, true);
            }
        }
        match session.spawn(&options) {
            Ok((o, c)) => {
                (ours, child) = (o, c);
                let _ = session.events.send(Event::Restarted { attempt, pid: session.pid });
            }
            Err(e) => {
                let m = format!("{message}; restarting it failed: {e}");
                break (StopReason::ProviderFailed, Some(m), exit, false);
            }
        }
    };
    // The kill switch stays after a stop nobody asked for: a failed tunnel leaks nothing.
    let kill_switch_kept = session.kill_switch.is_some() && !asked;
    let leftovers = session.teardown(!kill_switch_kept).await;
    Ok(Ended { reason, message, exit, leftovers, kill_switch_kept })
}

struct Session {
    /// `None` only while a blocking thread holds it.
    kernel: Option<Kernel>,
    /// The host's own descriptor of the device: the device, its routes and so the tunnel's
    /// claim on traffic outlive a provider that dies (traffic is dropped, not leaked).
    tun: OwnedFd,
    interface: String,
    /// The interface's index.
    index: u32,
    events: mpsc::UnboundedSender<Event>,
    table: u32,
    /// The provider's process id, which is also its process group's.
    pid: Option<u32>,
    /// The file an update replaces ([`updated_by`]) and what it was when the provider was
    /// started (`None`: missing then).
    program: Option<(PathBuf, Option<ProgramFile>)>,
    /// The settings the provider asked for and got.
    applied: Option<Settings>,
    /// The local network kept out of the tunnel (`exclude_local`), as last read.
    local: Option<Vec<Prefix>>,
    /// The path service's readings, while the local network is watched.
    readings: Option<nw_path::Readings>,
    /// The kill switch in force.
    kill_switch: Option<killswitch::Spec>,
    /// Split DNS, while the settings have DNS servers.
    dns: Option<SplitDns>,
}

/// Split DNS in force.
enum SplitDns {
    /// Our forwarder, and resolv.conf taken over.
    Forwarder { forwarder: dns::Forwarder, resolv: dns::ResolvConf },
    /// systemd-resolved holds the settings as the interface's per-link DNS.
    Resolved,
}

impl SplitDns {
    /// Puts resolv.conf back and stops the forwarder, or reverts the link in resolved.
    async fn stop(self, index: u32) -> Result<(), String> {
        match self {
            Self::Forwarder { forwarder, resolv } => {
                let restored = blocking(move || resolv.restore()).await;
                drop(forwarder);
                restored.map_err(|e| format!("{} not put back: {e}", dns::RESOLV_CONF))
            }
            Self::Resolved => {
                blocking(move || resolved::revert(index)).await.map_err(|e| e.to_string())
            }
        }
    }
}

type Outcome = (StopReason, Option<String>, Option<ExitStatus>);

/// The file whose replacement is the provider's update: the script an interpreter runs
/// (`--provider /usr/bin/python3 -- /opt/vpn/provider.py`: the package replaces the script,
/// not the interpreter), else the program; a relative script as the provider, started in the
/// host's directory, finds it.
fn updated_by(options: &HostOptions) -> PathBuf {
    let program = options.program.to_string_lossy().into_owned();
    let command_line: Vec<String> = std::iter::once(program.clone())
        .chain(options.args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    let cwd = std::env::current_dir().ok();
    let cwd = cwd.as_deref().and_then(std::path::Path::to_str);
    nw_lnp::identity::script(&program, &command_line, cwd)
        .unwrap_or_else(|| options.program.clone())
}

/// How often the provider's program is looked at for an update.
const UPDATE_CHECK: Duration = Duration::from_secs(1);

/// A program file as a path names it now: replaced (renamed over, or written anew), it is
/// another. A file that is missing is no update (a package manager between removing the old
/// one and placing the new one): the check waits for the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProgramFile {
    device: u64,
    inode: u64,
    modified: Option<std::time::SystemTime>,
    size: u64,
}

impl ProgramFile {
    /// Blocking (a `stat`).
    fn of(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
            modified: meta.modified().ok(),
            size: meta.len(),
        })
    }
}

/// Why a session ends, before the provider is stopped.
enum End {
    /// The host's caller asked for a stop.
    Asked(StopReason),
    /// A stop with a reason: cancelled, a breach of the contract, a deadline.
    Stop(StopReason, Option<String>),
    /// The provider exited.
    Exited(Option<ExitStatus>),
    /// Talking to the provider failed (a closed or reset socket, a refused write): it is
    /// probably exiting, and [`Session::finish`] waits a moment to say so.
    Gone(String),
    /// The provider's program (this file) was replaced on disk.
    Updated(PathBuf),
}

impl Session {
    /// Starts the provider with the contract socket as its descriptor 3; returns our end.
    fn spawn(
        &mut self,
        options: &HostOptions,
    ) -> Result<(std::os::unix::net::UnixStream, Child), HostError> {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| spawn_error(options, e))?;
        let watched = updated_by(options);
        self.program = Some((watched.clone(), ProgramFile::of(&watched)));
        let child = spawner(options).start(theirs).map_err(|e| spawn_error(options, e))?;
        self.pid = child.id();
        Ok((ours, child))
    }

    /// Subscribes to the path service and reads the local network once.
    async fn watch_local_network(&mut self) -> Result<(), String> {
        let mut readings = nw_path::PathService::shared().map_err(|e| e.to_string())?.subscribe();
        let reading = readings.next().await.map_err(|e| e.to_string())?;
        self.local = Some(local_network_of(&reading));
        self.readings = Some(readings);
        Ok(())
    }

    /// The settings as applied: what was asked, with the local network kept out.
    fn effective(&self, asked: &Settings) -> Settings {
        match &self.local {
            Some(local) => asked.excluding(local),
            None => asked.clone(),
        }
    }

    /// The local network changed: the kill switch and the tunnel's table follow it.
    async fn local_network_changed(&mut self, reading: &nw_path::Reading) {
        let local = local_network_of(reading);
        if self.local.as_ref() == Some(&local) {
            return;
        }
        self.local = Some(local.clone());
        if let Some(spec) = &mut self.kill_switch {
            spec.local = Some(local.clone());
            let spec = spec.clone();
            if let Err(e) = blocking(move || killswitch::install(&spec)).await {
                tracing::warn!("the kill switch did not follow the local network: {e}");
            }
        }
        let mut state = None;
        if let Some(applied) = self.applied.clone()
            && let Some(mut kernel) = self.kernel.take()
        {
            let wanted = self.effective(&applied);
            let (result, kernel) =
                blocking(move || (kernel.apply(&wanted).and_then(|()| kernel.read()), kernel))
                    .await;
            self.kernel = Some(kernel);
            match result {
                Ok(s) => state = Some(Box::new(s)),
                Err(e) => {
                    tracing::warn!("the tunnel's routes did not follow the local network: {e}")
                }
            }
        }
        let _ = self.events.send(Event::LocalNetwork { local, state });
    }

    async fn serve(
        &mut self,
        socket: std::os::unix::net::UnixStream,
        child: &mut Child,
        options: &HostOptions,
        stop: &mut watch::Receiver<Option<StopReason>>,
    ) -> (End, Option<UnixStream>) {
        let failed = |m: String| End::Stop(StopReason::ProviderFailed, Some(m));
        if let Err(e) = socket.set_nonblocking(true) {
            return (failed(e.to_string()), None);
        }
        let mut stream = match UnixStream::from_std(socket) {
            Ok(s) => s,
            Err(e) => return (failed(e.to_string()), None),
        };
        let start = HostMessage::Start {
            version: VERSION,
            interface: self.interface.clone(),
            options: options.options.clone(),
        };
        if let Err(e) = send_fd(&mut stream, &protocol::encode(&start), self.tun.as_fd()).await {
            return (End::Gone(format!("did not take the TUN device: {e}")), Some(stream));
        }

        let mut lines = LineBuffer::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut started = false;
        #[allow(clippy::disallowed_methods, reason = "the provider's start deadline")]
        let start_deadline = tokio::time::sleep(options.start_timeout);
        tokio::pin!(start_deadline);
        // The program is looked at once a second: replaced, the provider is updated.
        let mut update_check = tokio::time::interval(UPDATE_CHECK);
        update_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        update_check.tick().await;
        let end: End = 'session: loop {
            loop {
                match lines.next_line() {
                    Ok(Some(line)) => match protocol::decode::<ProviderMessage>(&line) {
                        Ok(message) => {
                            if let Some(end) = self.handle(message, &mut stream, &mut started).await
                            {
                                break 'session end;
                            }
                        }
                        Err(e) => break 'session failed(format!("broke the contract: {e}")),
                    },
                    Ok(None) => break,
                    Err(e) => break 'session failed(format!("broke the contract: {e}")),
                }
            }
            let changed = tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) => break End::Gone("closed the contract socket".into()),
                    Ok(n) => {
                        lines.extend(&buf[..n]);
                        None
                    }
                    Err(e) => break End::Gone(format!("broke the contract socket: {e}")),
                },
                status = child.wait() => break End::Exited(status.ok()),
                () = &mut start_deadline, if !started => {
                    let m = format!("did not start within {:?}", options.start_timeout);
                    break End::Stop(StopReason::IdleTimeout, Some(m));
                }
                changed = stop.changed() => {
                    let reason = match changed {
                        Ok(()) => (*stop.borrow()).unwrap_or(StopReason::UserInitiated),
                        Err(_) => StopReason::UserInitiated,
                    };
                    break End::Asked(reason);
                }
                reading = next_reading(&mut self.readings) => reading,
                _ = update_check.tick() => {
                    if let Some((path, Some(then))) = self.program.clone() {
                        let looked = path.clone();
                        let now = blocking(move || ProgramFile::of(&looked)).await;
                        if now.is_some_and(|now| now != then) {
                            break End::Updated(path);
                        }
                    }
                    None
                }
            };
            match changed {
                Some(Ok(reading)) => self.local_network_changed(&reading).await,
                Some(Err(e)) => {
                    tracing::warn!(
                        "the path service stopped ({e}); the local network is no longer followed"
                    );
                    self.readings = None;
                }
                None => {}
            }
        };
        (end, Some(stream))
    }

    /// Handles one message; `Some` ends the session.
    async fn handle(
        &mut self,
        message: ProviderMessage,
        stream: &mut UnixStream,
        started: &mut bool,
    ) -> Option<End> {
        let reply = match message {
            ProviderMessage::Settings { id, settings } => Some(self.settings(id, settings).await),
            ProviderMessage::Started => {
                *started = true;
                let _ = self.events.send(Event::Started);
                None
            }
            ProviderMessage::Reasserting { reasserting } => {
                let _ = self.events.send(Event::Reasserting(reasserting));
                None
            }
            ProviderMessage::AppMessage { data } => {
                let _ = self.events.send(Event::AppMessage(data));
                None
            }
            ProviderMessage::Cancel { reason, message } => return Some(End::Stop(reason, message)),
            ProviderMessage::Stopped => {
                return Some(End::Stop(StopReason::ProviderFailed, Some("stopped unasked".into())));
            }
            ProviderMessage::OpenSocket { id, protocol: p, family } => {
                let mark = self.table;
                match blocking(move || sys::bypass_socket(p, family, mark)).await {
                    Ok(fd) => {
                        let line = protocol::encode(&HostMessage::Socket { id });
                        if let Err(e) = send_fd(stream, &line, fd.as_fd()).await {
                            return Some(End::Gone(format!("did not take a socket: {e}")));
                        }
                        None
                    }
                    Err(e) => Some(HostMessage::Error { id, message: e.to_string() }),
                }
            }
        };
        if let Some(reply) = reply
            && let Err(e) = stream.write_all(&protocol::encode(&reply)).await
        {
            return Some(End::Gone(format!("did not take a reply: {e}")));
        }
        None
    }

    /// Checks, applies and reads back settings; on any failure puts back what was in force.
    async fn settings(&mut self, id: u64, wanted: Option<Settings>) -> HostMessage {
        #[allow(clippy::disallowed_methods, reason = "apply latency, reported in events")]
        let began = Instant::now();
        let asked = wanted.clone().unwrap_or_default();
        if let Err(e) = asked.validate() {
            return self.refuse(id, e.to_string());
        }
        if let Err(e) = self.apply_dns(asked.dns.as_ref()).await {
            return self.refuse(id, e);
        }
        let Some(mut kernel) = self.kernel.take() else {
            return self.refuse(id, "the host lost its kernel state".into());
        };
        let previous_dns = self.applied.as_ref().and_then(|a| a.dns.clone());
        let previous = self.effective(&self.applied.clone().unwrap_or_default());

        let target = self.effective(&asked);
        let via_resolved = matches!(self.dns, Some(SplitDns::Resolved)).then_some(self.index);
        // The kill switch lets the new remote address out before routes send traffic to it,
        // and goes back to the old one if the settings fail.
        let switches = self.kill_switch.clone().map(|old| {
            let new = killswitch::Spec {
                remotes: asked.tunnel_remote_address.into_iter().collect(),
                ..old.clone()
            };
            (old, new)
        });
        let (result, kernel) = blocking(move || {
            let switched = match &switches {
                Some((old, new)) if old != new => {
                    killswitch::install(new).map_err(|e| e.to_string())
                }
                _ => Ok(()),
            };
            let r = switched.and_then(|()| {
                let mut state = kernel
                    .apply(&target)
                    .and_then(|()| kernel.read())
                    .map_err(|e| e.to_string())?;
                state.name_servers = std::fs::read_to_string(dns::RESOLV_CONF)
                    .map(|t| dns::parse_resolv_conf(&t).0)
                    .unwrap_or_default();
                state.resolved =
                    via_resolved.map(resolved::read).transpose().map_err(|e| e.to_string())?;
                match differences(&target, &state) {
                    d if d.is_empty() => Ok(state),
                    d => Err(format!("the kernel reads back differently: {}", d.join("; "))),
                }
            });
            if r.is_err() {
                if let Err(e) = kernel.apply(&previous) {
                    tracing::warn!("putting back the earlier settings failed too: {e}");
                }
                if let Some((old, new)) = &switches
                    && old != new
                    && let Err(e) = killswitch::install(old)
                {
                    tracing::warn!("putting back the earlier kill switch failed too: {e}");
                }
            }
            (r, kernel)
        })
        .await;
        self.kernel = Some(kernel);
        if result.is_err()
            && let Err(e) = self.apply_dns(previous_dns.as_ref()).await
        {
            tracing::warn!("putting back the earlier DNS settings failed too: {e}");
        }
        match result {
            Ok(state) => {
                if let Some(spec) = &mut self.kill_switch {
                    spec.remotes = asked.tunnel_remote_address.into_iter().collect();
                }
                self.applied = Some(asked);
                #[allow(clippy::disallowed_methods, reason = "apply latency, reported in events")]
                let took = began.elapsed();
                let _ = self.events.send(Event::Applied {
                    id,
                    settings: wanted,
                    state: Box::new(state),
                    took,
                });
                HostMessage::Applied { id }
            }
            Err(message) => self.refuse(id, message),
        }
    }

    /// Starts, changes or stops split DNS: the forwarder, and resolv.conf pointed at it (the
    /// file work on a blocking thread).
    async fn apply_dns(&mut self, wanted: Option<&crate::settings::Dns>) -> Result<(), String> {
        let Some(d) = wanted.filter(|d| !d.servers.is_empty()).cloned() else {
            return match self.dns.take() {
                Some(running) => running.stop(self.index).await,
                None => Ok(()),
            };
        };
        let interface = self.interface.clone();
        let routes = |upstream: Vec<std::net::SocketAddr>| dns::Routes {
            tunnel: d.servers.iter().map(|ip| std::net::SocketAddr::new(*ip, 53)).collect(),
            matches: d
                .match_domains
                .iter()
                .map(|m| m.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            upstream: upstream.into_iter().filter(|u| *u != dns::LISTEN).collect(),
            device: interface.clone(),
        };
        let search = d.search_domains.clone();
        let index = self.index;
        let link = resolved::LinkDns::wanted(&d);
        match self.dns.take() {
            Some(SplitDns::Forwarder { forwarder, resolv }) => {
                forwarder.update(routes(resolv.upstream.clone()));
                let i = interface.clone();
                let (pointed, resolv) = blocking(move || (resolv.point(&i, &search), resolv)).await;
                self.dns = Some(SplitDns::Forwarder { forwarder, resolv });
                return pointed.map_err(|e| e.to_string());
            }
            Some(SplitDns::Resolved) => {
                self.dns = Some(SplitDns::Resolved);
                return blocking(move || resolved::set(index, &link))
                    .await
                    .map_err(|e| e.to_string());
            }
            None => {}
        }
        let text = blocking(|| std::fs::read_to_string(dns::RESOLV_CONF)).await.unwrap_or_default();
        let in_charge = text.clone();
        if blocking(move || resolved::in_charge(&in_charge)).await {
            let set = blocking(move || resolved::set(index, &link)).await;
            if set.is_err() {
                // Whatever part of it was taken goes back.
                let _ = blocking(move || resolved::revert(index)).await;
            }
            set.map_err(|e| e.to_string())?;
            self.dns = Some(SplitDns::Resolved);
            return Ok(());
        }
        // The forwarder listens before resolv.conf points at it.
        let forwarder = dns::Forwarder::start(routes(dns::parse_resolv_conf(&text).0))
            .await
            .map_err(|e| e.to_string())?;
        let backup = state_dir().join(format!("{interface}.resolv.conf"));
        let i = interface.clone();
        let resolv = blocking(move || dns::ResolvConf::take(&backup, &i, &search))
            .await
            .map_err(|e| e.to_string())?;
        forwarder.update(routes(resolv.upstream.clone()));
        self.dns = Some(SplitDns::Forwarder { forwarder, resolv });
        Ok(())
    }

    fn refuse(&self, id: u64, message: String) -> HostMessage {
        let _ = self.events.send(Event::Refused { id, message: message.clone() });
        HostMessage::Error { id, message }
    }

    /// Sends `stop` (when the provider still listens), waits for it to exit within the stop
    /// timeout, and kills it otherwise.
    async fn finish(
        &mut self,
        stream: Option<UnixStream>,
        child: &mut Child,
        end: End,
        options: &HostOptions,
    ) -> Outcome {
        let (reason, message, mut exit) = match end {
            End::Asked(reason) => (reason, None, None),
            End::Stop(reason, message) => (reason, message, None),
            End::Exited(status) => (StopReason::ProviderFailed, Some(exited(status)), status),
            End::Updated(path) => {
                let why = format!("its program {} was replaced", path.display());
                (StopReason::AppUpdate, Some(why), None)
            }
            // A provider that dies closes its socket (or resets it) just before its exit is
            // seen: give the exit a moment, so the stop says what happened.
            End::Gone(what) => match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                Ok(Ok(status)) => {
                    (StopReason::ProviderFailed, Some(exited(Some(status))), Some(status))
                }
                _ => (StopReason::ProviderFailed, Some(what), None),
            },
        };
        if exit.is_none()
            && let Some(mut stream) = stream
        {
            let line = protocol::encode(&HostMessage::Stop { reason });
            let _ = tokio::time::timeout(options.stop_timeout, stream.write_all(&line)).await;
            // The provider answers `stopped` and exits; either way we wait for the exit.
            exit = tokio::time::timeout(options.stop_timeout, child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        }
        // The whole group, also when its leader has exited: what the provider started goes too.
        if let Some(pid) = self.pid {
            nw_provider::kill_group(pid);
        }
        if exit.is_none() {
            let _ = child.start_kill();
            exit = child.wait().await.ok();
        }
        (reason, message, exit)
    }

    /// Removes the rules, routes and device (and the kill switch, when `kill_switch`); returns
    /// what could not be removed.
    async fn teardown(&mut self, kill_switch: bool) -> Vec<String> {
        let mut left = match self.kernel.take() {
            Some(mut k) => blocking(move || k.teardown()).await,
            None => vec!["the kernel state was lost while applying settings".into()],
        };
        if let Some(running) = self.dns.take()
            && let Err(e) = running.stop(self.index).await
        {
            left.push(e);
        }
        if kill_switch && self.kill_switch.take().is_some() {
            let interface = self.interface.clone();
            if let Err(e) = blocking(move || killswitch::remove(&interface)).await {
                left.push(format!("the kill switch: {e}"));
            }
        }
        left
    }
}

/// The next reading of the path service, or never when the local network is not watched.
async fn next_reading(
    readings: &mut Option<nw_path::Readings>,
) -> Option<Result<std::sync::Arc<nw_path::Reading>, nw_path::PathError>> {
    match readings {
        Some(r) => Some(r.next().await),
        None => std::future::pending().await,
    }
}

/// The local network of a reading, as local network privacy judges it.
fn local_network_of(reading: &nw_path::Reading) -> Vec<Prefix> {
    let on_link: Vec<Prefix> =
        nw_lnp::on_link_prefixes(&reading.snapshot).iter().filter_map(|p| p.parse().ok()).collect();
    crate::settings::local_network(&on_link)
}

/// Something a tunnel host that is gone left in this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// Its kill switch, kept after a stop nobody asked for (or a killed host): everything
    /// but loopback that does not go into its tunnel is rejected.
    KillSwitch {
        /// Its nftables table (`inet`).
        table: String,
        /// The tunnel's interface (gone, unless a host of the same name runs again).
        interface: String,
        /// The host that installed it.
        pid: Option<u32>,
    },
    /// resolv.conf pointing at the DNS forwarder of a host that was killed (names do not
    /// resolve); the original is kept in `backup`.
    ResolvConf {
        /// The original's copy.
        backup: PathBuf,
        /// The host that wrote it.
        pid: Option<u32>,
    },
    /// The policy rules and throw routes of a tunnel whose host was killed.
    Routing {
        /// The tunnel's table.
        table: u32,
    },
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KillSwitch { interface, pid, .. } => {
                write!(f, "the kill switch of {interface}")?;
                if let Some(pid) = pid {
                    write!(f, " (host pid {pid})")?;
                }
                Ok(())
            }
            Self::ResolvConf { pid, .. } => {
                write!(
                    f,
                    "{} pointing at the DNS forwarder of a host that is gone",
                    dns::RESOLV_CONF
                )?;
                if let Some(pid) = pid {
                    write!(f, " (pid {pid})")?;
                }
                Ok(())
            }
            Self::Routing { table } => {
                write!(f, "the routing rules and routes of table {table:#x}")
            }
        }
    }
}

/// Where tunnel hosts keep their state: a directory per network namespace, named by the
/// namespace (`INODE-COOKIE`: [`nw_provider::Namespace`], so a host inside a namespace and
/// `nw tunnel status` there agree, and never take one of a namespace that had the inode
/// before), under `$NW_TUNNEL_STATE_DIR` or `/run/nwkit/tunnel`.
pub fn state_dir() -> PathBuf {
    states().join(nw_provider::Namespace::current().key())
}

fn states() -> PathBuf {
    std::env::var_os("NW_TUNNEL_STATE_DIR")
        .map_or_else(|| PathBuf::from("/run/nwkit/tunnel"), PathBuf::from)
}

/// Removes the state directories of network namespaces that are gone
/// ([`nw_provider::Namespace::gone`]): what their hosts held went with them. Returns how many.
/// Nothing when /proc cannot be read (nothing can be judged gone). Blocking.
pub fn sweep_states() -> usize {
    let live = nw_provider::live_namespaces();
    if live.is_empty() {
        return 0;
    }
    let here = nw_provider::Namespace::current();
    let Ok(entries) = std::fs::read_dir(states()) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            nw_provider::Namespace::of_name(&name).is_some_and(|ns| ns.gone(&live, &here))
        })
        .filter(|e| std::fs::remove_dir_all(e.path()).is_ok())
        .count()
}

/// What tunnel hosts that are gone left in this network namespace. Blocking (nft, netlink).
pub fn leftovers() -> std::io::Result<Vec<Leftover>> {
    let mut out: Vec<Leftover> = killswitch::installed()?
        .into_iter()
        .filter(|k| !k.pid.is_some_and(alive))
        .map(|k| Leftover::KillSwitch { table: k.table, interface: k.interface, pid: k.pid })
        .collect();
    out.extend(sys::orphaned_tables()?.into_iter().map(|table| Leftover::Routing { table }));
    let current = std::fs::read_to_string(dns::RESOLV_CONF).unwrap_or_default();
    let writer = dns::writer_pid(&current);
    if let Ok(dir) = std::fs::read_dir(state_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".resolv.conf") && !writer.is_some_and(alive) {
                out.push(Leftover::ResolvConf { backup: e.path(), pid: writer });
            }
        }
    }
    Ok(out)
}

/// Removes one leftover. Blocking (nft, netlink).
pub fn remove_leftover(leftover: &Leftover) -> Result<(), String> {
    match leftover {
        Leftover::KillSwitch { table, .. } => {
            killswitch::remove_table(table).map_err(|e| e.to_string())
        }
        Leftover::ResolvConf { backup, .. } => {
            dns::restore_leftover(backup).map_err(|e| e.to_string())
        }
        Leftover::Routing { table } => match sys::remove_orphaned(*table) {
            left if left.is_empty() => Ok(()),
            left => Err(left.join("; ")),
        },
    }
}

fn exited(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "exited".into(), |s| format!("exited ({s})"))
}

/// What the kernel holds for one tunnel, read back after each change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KernelState {
    /// The interface's MTU.
    pub mtu: u32,
    /// Whether the interface is up.
    pub up: bool,
    /// Its addresses (not the IPv6 link-local one the kernel adds).
    pub addresses: std::collections::BTreeSet<Prefix>,
    /// The tunnel table's routes.
    pub routes: std::collections::BTreeSet<TableRoute>,
    /// How many of our policy rules are installed (4 when all are).
    pub rules: usize,
    /// The name servers resolv.conf names (the host's forwarder, with DNS settings).
    pub name_servers: Vec<std::net::SocketAddr>,
    /// What systemd-resolved holds for the interface, when it took the DNS settings.
    pub resolved: Option<crate::LinkDns>,
}

/// The differences between what was asked and what the kernel holds (empty when none).
pub fn differences(wanted: &Settings, state: &KernelState) -> Vec<String> {
    let mut out = Vec::new();
    if state.mtu != wanted.mtu() {
        out.push(format!("MTU {} instead of {}", state.mtu, wanted.mtu()));
    }
    if !state.up {
        out.push("the interface is down".into());
    }
    let want: std::collections::BTreeSet<_> = wanted.addresses.iter().copied().collect();
    for a in want.difference(&state.addresses) {
        out.push(format!("address {a} missing"));
    }
    for a in state.addresses.difference(&want) {
        out.push(format!("address {a} not asked for"));
    }
    let table = wanted.table();
    for r in table.difference(&state.routes) {
        out.push(format!("route {r} missing"));
    }
    for r in state.routes.difference(&table) {
        out.push(format!("route {r} not asked for"));
    }
    if state.rules != 4 {
        out.push(format!("{} of the 4 routing rules installed", state.rules));
    }
    let dns = wanted.dns.as_ref().filter(|d| !d.servers.is_empty());
    if let (Some(d), Some(held)) = (dns, &state.resolved) {
        let want = crate::LinkDns::wanted(d);
        if !want.same_as(held) {
            out.push(format!("systemd-resolved holds {held:?} for the link instead of {want:?}"));
        }
    } else if dns.is_some() && state.name_servers != [dns::LISTEN] {
        out.push(format!(
            "resolv.conf names {:?} instead of the DNS forwarder {}",
            state.name_servers,
            dns::LISTEN
        ));
    }
    out
}

fn spawner(options: &HostOptions) -> nw_provider::Spawn {
    nw_provider::Spawn {
        program: options.program.clone(),
        args: options.args.clone(),
        user: options.user,
        fd_env: FD_ENV,
    }
}

impl HostError {
    /// Whether the provider could not be run at all: its program is missing, or not
    /// executable by its user (the command line's mistake, not the host's).
    pub fn provider_not_runnable(&self) -> bool {
        matches!(self, Self::Spawn { error, .. }
            if matches!(error.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied))
    }
}

fn spawn_error(options: &HostOptions, error: std::io::Error) -> HostError {
    let hint = spawner(options).hint(&error);
    HostError::Spawn { program: options.program.display().to_string(), error, hint }
}

async fn send_fd(
    stream: &mut UnixStream,
    line: &[u8],
    fd: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<()> {
    let sent = loop {
        stream.writable().await?;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            fdpass::send_with_fd(stream.as_raw_fd(), line, fd)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    };
    stream.write_all(line.get(sent..).unwrap_or(&[])).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_mismatch() {
        let wanted: Settings = serde_json::from_str(
            r#"{"addresses":["10.8.0.2/24"],"included_routes":["10.9.0.0/16"],"mtu":1380}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut state = KernelState {
            mtu: 1380,
            up: true,
            addresses: wanted.addresses.iter().copied().collect(),
            routes: wanted.table(),
            rules: 4,
            name_servers: Vec::new(),
            resolved: None,
        };
        assert!(differences(&wanted, &state).is_empty());
        state.mtu = 1500;
        state.addresses.clear();
        state.rules = 2;
        assert_eq!(
            differences(&wanted, &state),
            [
                "MTU 1500 instead of 1380",
                "address 10.8.0.2/24 missing",
                "2 of the 4 routing rules installed"
            ]
        );
    }
}
