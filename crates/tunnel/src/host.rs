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
use crate::sys::{self, Kernel};
use nw_provider::blocking;

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
}

impl HostOptions {
    /// Options for `program` with the defaults: interface `nwtun%d`, no options, the provider
    /// run as `nobody` when the host is root, 30 s to start, 3 s to stop.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            interface: "nwtun%d".into(),
            program: program.into(),
            args: Vec::new(),
            options: Value::Object(Default::default()),
            user: nw_provider::default_user(),
            start_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(3),
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
    let mut kernel = kernel;
    if let Err(e) = result {
        blocking(move || kernel.teardown()).await;
        return Err(HostError::Rules(e));
    }
    let table = kernel.table();

    let (ours, theirs) = match std::os::unix::net::UnixStream::pair() {
        Ok(pair) => pair,
        Err(error) => {
            blocking(move || kernel.teardown()).await;
            return Err(spawn_error(&options, error));
        }
    };
    let child = match spawner(&options).start(theirs) {
        Ok(c) => c,
        Err(error) => {
            blocking(move || kernel.teardown()).await;
            return Err(spawn_error(&options, error));
        }
    };
    let pid = child.id();
    let _ = events.send(Event::Created { interface: interface.clone(), table, pid });
    let mut session = Session { kernel: Some(kernel), tun, events, table, pid, applied: None };
    let (reason, message, exit) = session.serve(ours, child, &interface, &options, &mut stop).await;
    let mut kernel = session.kernel.take();
    let leftovers = match kernel.take() {
        Some(mut k) => blocking(move || k.teardown()).await,
        None => vec!["the kernel state was lost while applying settings".into()],
    };
    drop(session);
    Ok(Ended { reason, message, exit, leftovers })
}

struct Session {
    /// `None` only while a blocking thread holds it.
    kernel: Option<Kernel>,
    /// The host's own descriptor of the device: the device, its routes and so the tunnel's
    /// claim on traffic outlive a provider that dies (traffic is dropped, not leaked).
    tun: OwnedFd,
    events: mpsc::UnboundedSender<Event>,
    table: u32,
    /// The provider's process id, which is also its process group's.
    pid: Option<u32>,
    applied: Option<Settings>,
}

type Outcome = (StopReason, Option<String>, Option<ExitStatus>);

/// Why a session ends, before the provider is stopped.
enum End {
    /// A stop with a reason: asked for, cancelled, a breach of the contract, a deadline.
    Stop(StopReason, Option<String>),
    /// The provider exited.
    Exited(Option<ExitStatus>),
    /// Talking to the provider failed (a closed or reset socket, a refused write): it is
    /// probably exiting, and [`Session::finish`] waits a moment to say so.
    Gone(String),
}

impl Session {
    async fn serve(
        &mut self,
        socket: std::os::unix::net::UnixStream,
        mut child: Child,
        interface: &str,
        options: &HostOptions,
        stop: &mut watch::Receiver<Option<StopReason>>,
    ) -> Outcome {
        let failed = |m: String| End::Stop(StopReason::ProviderFailed, Some(m));
        if let Err(e) = socket.set_nonblocking(true) {
            return self.finish(None, &mut child, failed(e.to_string()), options).await;
        }
        let mut stream = match UnixStream::from_std(socket) {
            Ok(s) => s,
            Err(e) => return self.finish(None, &mut child, failed(e.to_string()), options).await,
        };
        let start = HostMessage::Start {
            version: VERSION,
            interface: interface.to_owned(),
            options: options.options.clone(),
        };
        if let Err(e) = send_fd(&mut stream, &protocol::encode(&start), self.tun.as_fd()).await {
            let end = End::Gone(format!("did not take the TUN device: {e}"));
            return self.finish(Some(stream), &mut child, end, options).await;
        }

        let mut lines = LineBuffer::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut started = false;
        #[allow(clippy::disallowed_methods, reason = "the provider's start deadline")]
        let start_deadline = tokio::time::sleep(options.start_timeout);
        tokio::pin!(start_deadline);
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
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) => break End::Gone("closed the contract socket".into()),
                    Ok(n) => lines.extend(&buf[..n]),
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
                    break End::Stop(reason, None);
                }
            }
        };
        self.finish(Some(stream), &mut child, end, options).await
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
        let target = wanted.clone().unwrap_or_default();
        if let Err(e) = target.validate() {
            return self.refuse(id, e.to_string());
        }
        if target.dns.as_ref().is_some_and(|d| !d.servers.is_empty()) {
            return self.refuse(
                id,
                "DNS settings are not applied by this host yet; send settings without \"dns\""
                    .into(),
            );
        }
        let Some(mut kernel) = self.kernel.take() else {
            return self.refuse(id, "the host lost its kernel state".into());
        };
        let previous = self.applied.clone().unwrap_or_default();
        let t = target.clone();
        let (result, kernel) = blocking(move || {
            let r = kernel.apply(&t).and_then(|()| kernel.read());
            let r = match r {
                Ok(state) => match differences(&t, &state) {
                    d if d.is_empty() => Ok(state),
                    d => Err(format!("the kernel reads back differently: {}", d.join("; "))),
                },
                Err(e) => Err(e.to_string()),
            };
            if r.is_err()
                && let Err(e) = kernel.apply(&previous)
            {
                tracing::warn!("putting back the earlier settings failed too: {e}");
            }
            (r, kernel)
        })
        .await;
        self.kernel = Some(kernel);
        match result {
            Ok(state) => {
                self.applied = Some(target);
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
            End::Stop(reason, message) => (reason, message, None),
            End::Exited(status) => (StopReason::ProviderFailed, Some(exited(status)), status),
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
