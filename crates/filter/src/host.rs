//! The privileged host: it binds an NFQUEUE, installs the rules that send each new flow's
//! first packets there, finds the process behind each flow, decides by the rules, asks the
//! provider (its own unprivileged process, supervised and restarted) when a rule says so, and
//! gives the waiting packets their verdict. A reader thread reads the queue and finds the
//! processes a batch at a time; the event loop decides and sends the verdicts together.
//! Whenever no provider answers — not running, crashed, stopping, or past the flow's deadline
//! — the failure policy decides. On any stop the rules are removed before the queue is
//! released.
//!
//! A flow whose provider asked to see its data: its SYN goes out with the PEEK mark saved to
//! the connection, so its later packets are queued too; their bytes are held and put in order
//! (in bounded buffers) and shown to the provider, and each packet goes out once all its bytes
//! are passed ("pass": NF_REPEAT with the PEEK mark, which the rules let through), or with
//! the flow's final verdict. A dropped peeked flow's process gets a reset, and so does its peer
//! (from a raw socket, with the sequence number of the next byte it expects).
//!
//! A flow is a conntrack entry. A new UDP socket that took an allowed flow's 5-tuple while
//! conntrack still remembered it (30 s unreplied, 120 s replied) would pass under the earlier
//! verdict, whichever process it belongs to; so when a UDP socket is destroyed (sock_diag's
//! destroy notifications) the host forgets its allowed flows and deletes their conntrack
//! entries, and the new socket's first datagram is a new flow. What remains is the moment
//! the notification takes: measured, 0 to 2 of 200 datagrams sent by another user's process
//! the instant the allowed one exited passed, none 50 ms later (200 of 200 without this). TCP
//! has no such gap: a new SYN on an old entry starts a new one.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::process::Child;
use tokio::sync::{mpsc, watch};

/// Whether a process exists.
pub use nw_provider::alive;
use nw_provider::blocking;

use crate::engine::{Decision, Engine, FailPolicy, Seen, Stats};
use crate::flow::{DataVerdict, Direction, Flow, FlowKey, FlowVerdict, Process, Transport};
use crate::packet::{flow_key, tcp_segment};
use crate::peek::{Answer, Give, PeekSizes, Peeks, Segment};
use crate::protocol::{FD_ENV, HostMessage, ProviderMessage, StopReason, VERSION};
use crate::recent::Recent;
use crate::rules::{Action, Rules};
use crate::sys::diag::Diag;
use crate::sys::nfqueue::{self, Given, Queue, Verdict};
use crate::sys::procfs::Procfs;
use crate::sys::tables::{
    self, MARK_ALLOW, MARK_DNS, MARK_DROP, MARK_MASK, MARK_PEEK, MARK_PEEK_BOTH,
};

/// At most this many `new_flow` messages wait to be written to a provider that does not read;
/// flows beyond that get the failure policy at once.
const MAX_BACKLOG: usize = 65_536;

/// How much of each queued packet is copied to the host: all of it (an IPv4 packet, GSO
/// included, is at most 65,535 bytes), since a peeked flow's bytes are read from its packets.
/// A flow's first packet is short (a SYN), or a datagram.
const COPY: u32 = 0xffff;

/// A provider to ask.
#[derive(Debug, Clone)]
pub struct ProviderOptions {
    /// Its executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Options passed in `start`.
    pub options: Value,
    /// The user and group it runs as (`nobody` when the host is root).
    pub user: Option<(u32, u32)>,
}

impl ProviderOptions {
    /// `program` with no arguments or options, run as `nobody` when the host is root.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            options: Value::Object(serde_json::Map::new()),
            user: nw_provider::default_user(),
        }
    }
}

/// Rules a filter host that is no longer running left behind. They still send new flows to a
/// queue nobody reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftover {
    /// The pid the rules name, when they name one.
    pub pid: Option<u32>,
    /// Only flows to the local network are queued (the host enforced local network privacy
    /// alone); otherwise every new TCP and UDP flow is.
    pub local_only: bool,
}

/// The rules of this network namespace that a filter host which is no longer running left
/// behind, or `None` when there are none or their host runs.
pub fn leftover_rules() -> Option<Leftover> {
    let pid = tables::existing().filter(|pid| !pid.is_some_and(alive))?;
    Some(Leftover { pid, local_only: tables::local_only() })
}

/// Where filter hosts keep their state files, one set per network namespace (named by its
/// number): /run/nwkit/filter, or `NW_FILTER_STATE_DIR`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("NW_FILTER_STATE_DIR")
        .map_or_else(|| PathBuf::from("/run/nwkit/filter"), Into::into)
}

/// The pid of a filter host that is no longer running and left conntrack counting each
/// entry's bytes (`nf_conntrack_acct`), which was off before it turned it on; `None` when no
/// such host left it so. Blocking.
pub fn leftover_counting() -> Option<u32> {
    crate::sys::conntrack::leftover_acct()
}

/// Turns conntrack's counting off again where a filter host that turned it on was killed;
/// returns that host's pid, or `None` when there was nothing to do. Blocking.
pub fn restore_counting() -> std::io::Result<Option<u32>> {
    crate::sys::conntrack::restore_leftover_acct()
}

/// Removes the filter rules of this network namespace that a host which is no longer running
/// left behind. `Ok(None)`: there were none; `Ok(Some(pid))`: removed (the pid they name).
pub fn remove_rules() -> Result<Option<Option<u32>>, String> {
    match tables::existing() {
        None => Ok(None),
        Some(Some(pid)) if alive(pid) => Err(format!(
            "a filter host runs (pid {pid}); stop it (Ctrl-C, or kill {pid}) and it removes its rules"
        )),
        Some(pid) => {
            let left = tables::remove();
            if left.is_empty() { Ok(Some(pid)) } else { Err(left.join("; ")) }
        }
    }
}

/// How to host filtering.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The NFQUEUE number.
    pub queue: u16,
    /// What happens when no provider answers.
    pub policy: FailPolicy,
    /// How long a flow waits for the provider.
    pub deadline: Duration,
    /// The rules; flows no rule decides go by their `default`.
    pub rules: Rules,
    /// The provider that `ask` rules ask.
    pub provider: Option<ProviderOptions>,
    /// Enforce local network privacy (nw-lnp) with this store and policy: a new flow to the
    /// local network is decided by the app's permission before the rules see it. With no rules
    /// and no provider, only flows to the local network are queued at all.
    pub local_network: Option<nw_lnp::Paths>,
    /// At most this many queued packets are read, attributed and given their verdicts
    /// together (1 to [`MAX_BATCH`]; 1 handles each packet on its own).
    pub batch: usize,
}

/// The NFQUEUE number used unless another is given (28279, "nw" in ASCII).
pub const DEFAULT_QUEUE: u16 = 0x6e77;
/// How long a flow waits for the provider unless told otherwise, in milliseconds.
pub const DEFAULT_DEADLINE_MS: u64 = 2_000;
/// How many queued packets are handled together unless told otherwise.
pub const DEFAULT_BATCH: usize = 256;
/// The most queued packets handled together.
pub const MAX_BATCH: usize = 4_096;

impl HostOptions {
    /// Defaults: [`DEFAULT_QUEUE`], fail open, [`DEFAULT_DEADLINE_MS`], no rules (allow), no
    /// provider.
    pub fn new() -> Self {
        Self {
            queue: DEFAULT_QUEUE,
            policy: FailPolicy::Open,
            deadline: Duration::from_millis(DEFAULT_DEADLINE_MS),
            rules: Rules::default(),
            provider: None,
            local_network: None,
            batch: DEFAULT_BATCH,
        }
    }

    /// Only local network privacy is enforced (no rules, no provider): only new flows to the
    /// local network are queued, and the rest never leave the kernel.
    pub fn local_network_only(&self) -> bool {
        self.local_network.is_some() && self.provider.is_none() && self.rules == Rules::default()
    }
}

impl Default for HostOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// Who decided a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum By {
    /// A rule, by its number from 1.
    Rule {
        /// Its number.
        rule: usize,
    },
    /// The rules' default.
    Default,
    /// The provider.
    Provider,
    /// The failure policy.
    Policy {
        /// Why no provider answered.
        why: String,
    },
    /// The provider's own flows are always allowed (asking it about them would wait on
    /// itself).
    ProviderItself,
    /// Local network privacy: the app may not reach this local destination.
    LocalNetwork {
        /// Why the destination is local.
        locality: String,
        /// What decided: the policy, the store, the prompt or the default (headless).
        source: nw_lnp::store::Source,
    },
}

/// What happens, as it happens.
#[derive(Debug, Clone)]
pub enum Event {
    /// The rules are installed and the queue is bound.
    Ready {
        /// The queue's number.
        queue: u16,
        /// The pid named in rules a killed host left, which were removed first.
        removed_stale: Option<Option<u32>>,
    },
    /// A flow was decided.
    Decided {
        /// The flow, with its process.
        flow: Box<Flow>,
        /// Allowed or dropped.
        decision: Decision,
        /// By whom.
        by: By,
    },
    /// The provider runs and said `started`.
    ProviderStarted {
        /// Its pid.
        pid: Option<u32>,
    },
    /// The provider stopped running; `restart_in` says when it is started again.
    ProviderDown {
        /// What happened.
        message: String,
        /// The wait before the restart.
        restart_in: Duration,
    },
    /// A flow the provider allowed, or filtered the data of, has closed.
    Closed(crate::flow::Report),
    /// The counters, about once a second.
    Stats(Stats),
}

/// How hosting ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// The counters at the end.
    pub stats: Stats,
    /// Rules that could not be removed (empty when the removal was complete).
    pub leftovers: Vec<String>,
}

/// Hosting could not start; nothing is left behind.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Another host runs in this network namespace.
    #[error("a filter host runs already in this network namespace (pid {0}); stop it first")]
    Running(u32),
    /// The queue could not be bound.
    #[error(
        "cannot bind NFQUEUE {queue}: {error} (filtering needs root; is another program bound to that queue? --queue picks another; is nfnetlink_queue available?)"
    )]
    Queue {
        /// The queue's number.
        queue: u16,
        /// The system's error.
        error: std::io::Error,
    },
    /// sock_diag could not be opened.
    #[error("cannot open sock_diag: {0}")]
    Diag(std::io::Error),
    /// The rules could not be installed.
    #[error("cannot install the filter's rules: {0}")]
    Rules(std::io::Error),
    /// The provider could not be started at all (its program is missing or not executable):
    /// nothing was installed.
    #[error("{0}")]
    Provider(String),
    /// A rule names what this host does not learn, so it could never match.
    #[error(
        "rule {rule} matches on {what}, which this host does not learn yet, so it could never match; remove that condition"
    )]
    Unseen {
        /// The rule's number, from 1.
        rule: usize,
        /// What it names.
        what: &'static str,
    },
}

/// The first rule that names something this host does not see, which would silently never
/// match: the host name of an inbound flow (names are learned from an outbound TCP flow's
/// first bytes, and from the DNS answers to this host's queries).
pub fn unseen(rules: &Rules) -> Option<(usize, &'static str)> {
    rules.rules.iter().enumerate().find_map(|(i, r)| {
        if r.host.is_some() && r.direction == Some(Direction::Inbound) {
            Some((i + 1, "the host name of an inbound flow"))
        } else {
            None
        }
    })
}

/// How many bytes of a flow the host holds back to learn its host name: a TLS record's
/// largest fragment (RFC 8446 §5.1), room for a ClientHello with post-quantum key shares
/// before its server name. A client pushes its ClientHello or request and waits, so the name
/// is read as soon as they are sent, whatever their size.
const NAME_PEEK: u32 = 16 * 1024;
/// How long a name a DNS answer gave an address names flows to it (past most answers' TTLs:
/// a program may connect long after it looked the name up, from its own cache).
const DNS_NAMES_KEPT: Duration = Duration::from_secs(3600);
/// The most addresses named at once; past it the oldest are forgotten.
const MAX_DNS_NAMES: usize = 65_536;
/// What the host peeks at to learn a flow's host name: this host's first bytes only.
const NAMING: PeekSizes = PeekSizes { outbound: NAME_PEEK, inbound: 0 };

#[derive(Debug)]
struct Held {
    id: u32,
    mark: u32,
    /// A TCP SYN's sequence number (a peeked flow's bytes are counted from it).
    seq: u32,
    /// A TCP SYN that carries data (TCP Fast Open).
    data: bool,
    /// Such a SYN as it goes on without its data, when its bytes are peeked at.
    bare: Option<Vec<u8>>,
}

/// Messages from a provider's reader task.
enum FromProvider {
    Message(ProviderMessage),
    Gone(String),
}

struct Running {
    /// The restart delays so far.
    backoff: nw_provider::Backoff,
    child: Child,
    pid: Option<u32>,
    started: bool,
    since: Instant,
    to: mpsc::Sender<Vec<u8>>,
    from: mpsc::UnboundedReceiver<FromProvider>,
}

enum Slot {
    None,
    Running(Box<Running>),
    Down { until: Instant, backoff: nw_provider::Backoff },
}

/// Hosts filtering until `stop` turns true; returns the counters after the rules are gone.
#[allow(clippy::disallowed_methods, reason = "deadlines and backoff run on the wall clock")]
pub async fn run(
    options: HostOptions,
    events: mpsc::UnboundedSender<Event>,
    mut stop: watch::Receiver<bool>,
) -> Result<Ended, HostError> {
    if let Some((rule, what)) = unseen(&options.rules) {
        return Err(HostError::Unseen { rule, what });
    }
    // iptables, netlink configuration and sock_diag are blocking calls: off the event loop.
    let removed_stale = match blocking(tables::existing).await {
        Some(Some(pid)) if alive(pid) && pid != std::process::id() => {
            return Err(HostError::Running(pid));
        }
        Some(pid) => {
            let left = blocking(tables::remove).await;
            if !left.is_empty() {
                return Err(HostError::Rules(std::io::Error::other(format!(
                    "rules a killed host left could not be removed: {}",
                    left.join("; ")
                ))));
            }
            Some(pid)
        }
        None => None,
    };
    let flags = nfqueue::FLAG_GSO
        | nfqueue::FLAG_UID_GID
        | if options.policy == FailPolicy::Open { nfqueue::FLAG_FAIL_OPEN } else { 0 };
    let number = options.queue;
    let queue =
        blocking(move || Queue::bind(number, nfqueue::Copy::Packet(COPY), 65_536, flags, true))
            .await
            .map_err(|error| HostError::Queue { queue: options.queue, error })?;
    let queue = Arc::new(queue);
    let diag = Diag::open().map_err(HostError::Diag)?;
    let bypass = options.policy == FailPolicy::Open;
    // Local network privacy classifies against the path service's readings.
    let mut readings = match &options.local_network {
        Some(_) => Some(
            nw_path::PathService::shared()
                .map_err(|e| HostError::Rules(std::io::Error::other(e.to_string())))?
                .subscribe(),
        ),
        None => None,
    };
    let mut latest = match &mut readings {
        Some(r) => Some(
            r.next().await.map_err(|e| HostError::Rules(std::io::Error::other(e.to_string())))?,
        ),
        None => None,
    };
    let lnp_only = options.local_network_only();
    let scope_of = |reading: Option<&Arc<nw_path::Reading>>| match (lnp_only, reading) {
        (true, Some(r)) => tables::Scope::Local(nw_lnp::on_link_prefixes(&r.snapshot)),
        _ => tables::Scope::All,
    };
    // A provider that cannot start at all (a missing program, one its user may not run) is
    // the command line's mistake: said before anything is installed, not retried for ever.
    let first = match &options.provider {
        Some(p) => {
            Some(spawn_provider(p, nw_provider::Backoff::new()).map_err(HostError::Provider)?)
        }
        None => None,
    };
    let mut scope = scope_of(latest.as_ref());
    let installed = scope.clone();
    blocking(move || tables::install(number, bypass, std::process::id(), &installed))
        .await
        .map_err(HostError::Rules)?;
    let (lnp_tx, mut lnp_rx) = mpsc::unbounded_channel::<(u64, Result<nw_lnp::Verdict, String>)>();
    let _ = events.send(Event::Ready { queue: options.queue, removed_stale });
    // Reading the queue and finding each new flow's process are blocking calls (netlink,
    // procfs): a thread of their own does them, a batch at a time, while this loop decides and
    // gives the verdicts. A loop that falls behind holds the thread back (the channel is
    // bounded), and the kernel's queue, then its failure policy, take the rest.
    let (batch_tx, mut batches) = mpsc::channel::<Batch>(64);
    let reading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // UDP flows whose socket closed, for the reader to look up afresh.
    let closed_udp: Arc<std::sync::Mutex<Vec<FlowKey>>> = Arc::default();
    let reader = {
        let (queue, reading, batch) = (queue.clone(), reading.clone(), options.batch);
        let closed = closed_udp.clone();
        std::thread::Builder::new()
            .name("nw-filter-queue".into())
            .spawn(move || read_queue(&queue, diag, batch, &batch_tx, &reading, &closed))
            .map_err(|e| HostError::Queue { queue: options.queue, error: e })?
    };

    let mut engine: Engine<Held> = Engine::new(options.policy, options.deadline);
    let mut flows = Flows {
        rules: options.rules.clone(),
        asked: HashMap::new(),
        peeks: Peeks::new(options.deadline),
        peeking: HashMap::new(),
        naming: HashSet::new(),
        asking: HashSet::new(),
        raw: crate::sys::raw::Raw::default(),
        reports: Reports::default(),
    };
    // Sockets as they close: the provider hears of the TCP flows it let through, and a
    // closed UDP socket's allowed flows are forgotten with their conntrack entries, so a new
    // socket on the same ports is asked about afresh.
    let mut closes = match crate::sys::closes::Closes::open() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(
                "sock_diag's destroy notifications: {e}; closed flows are not reported, and a new UDP socket on a closed one's ports passes under its verdict while conntrack remembers it"
            );
            None
        }
    };
    let conntrack = crate::sys::conntrack::Conntrack::open()
        .inspect_err(|e| {
            tracing::warn!(
                "ctnetlink: {e}; closed UDP sockets' flows are left to conntrack's timeout"
            )
        })
        .ok();
    // UDP flows have no socket counters: their closes are conntrack's (an entry deleted as
    // its socket closed, or timed out), with what conntrack counted, which it does only when
    // told to (on while the host runs, when it was off) — when a provider is there to hear.
    let acct = (options.provider.is_some())
        .then(crate::sys::conntrack::Acct::on)
        .transpose()
        .inspect_err(|e| {
            tracing::warn!(
                "conntrack's counters ({}): {e}; closed UDP flows are not reported",
                crate::sys::conntrack::ACCT
            )
        })
        .ok()
        .flatten();
    let mut ends = match acct.as_ref().map(|_| crate::sys::conntrack::Ends::open()) {
        Some(Ok(e)) => Some(e),
        None => None,
        Some(Err(e)) => {
            tracing::warn!("conntrack's destroy events: {e}; closed UDP flows are not reported");
            None
        }
    };
    let mut slot = match first {
        Some(running) => Slot::Running(Box::new(running)),
        None => Slot::None,
    };
    let mut out: Vec<Given> = Vec::new();
    let mut dns_names: Recent<std::net::IpAddr, String> = Recent::new(DNS_NAMES_KEPT);
    let mut dns_answers = 0u64;
    let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
    let far = Duration::from_secs(3600);
    loop {
        let now = Instant::now();
        let due = match (engine.next_due(), flows.peeks.next_due()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(now + far),
        };
        let restart_at = match &slot {
            Slot::Down { until, .. } => *until,
            _ => now + far,
        };
        tokio::select! {
            Some(Batch { packets, answers, mut processes }) = batches.recv() => {
                let now = Instant::now();
                // The names of the addresses this host's programs just looked up (the reader
                // let the answers go on).
                dns_names.expire(now);
                dns_answers += answers.len() as u64;
                for (ip, name) in answers.into_iter().flat_map(|(_, named)| named) {
                    dns_names.insert_bounded(now, ip, name, MAX_DNS_NAMES);
                }
                let mut new: Vec<(u64, FlowKey, Direction)> = Vec::new();
                for (held, key, seg) in packets {
                    let Some((key, direction)) = key else {
                        give(&mut out, held.id, held.mark, Decision::Allow);
                        continue;
                    };
                    if let Some(seg) = seg {
                        let mut given = Vec::new();
                        let both = flows.peeks.peeked(&key, Direction::Inbound);
                        match flows.peeks.packet(now, key, direction, seg, held, &mut given) {
                            Ok(data) => {
                                give_peeked(&mut out, given, both);
                                let mut cx = Cx { slot: &slot, engine: &mut engine, events: &events, out: &mut out };
                                flows.show(now, data, &mut cx);
                            }
                            // A packet of a peeked flow this host does not know: it was idle
                            // for long, or a host before this one peeked at it.
                            Err(held) => give(&mut out, held.id, held.mark, options.policy.decision()),
                        }
                        continue;
                    }
                    match engine.packet(now, key, held) {
                        (Seen::Decided(d), Some(h)) => give(&mut out, h.id, h.mark, d),
                        (Seen::New(id), _) => new.push((id, key, direction)),
                        _ => {}
                    }
                }
                for (id, key, direction) in new {
                    // Found by the reader, which looks up every key the engine could take as new
                    // (each once a batch: the engine takes a key as new once, the packets after
                    // wait with it).
                    let process = processes.remove(&key).flatten();
                    // An outbound flow to an address a DNS answer named has that name until its
                    // first bytes say otherwise.
                    let host = match direction {
                        Direction::Outbound => dns_names.get(&key.remote.ip()).cloned(),
                        Direction::Inbound => None,
                    };
                    let flow = Flow {
                        id,
                        transport: key.transport,
                        direction,
                        local: key.local,
                        remote: key.remote,
                        process,
                        host,
                    };
                    let local = match (&options.local_network, &latest) {
                        (Some(paths), Some(reading)) => {
                            let locality = nw_lnp::classify(key.remote.ip(), &reading.snapshot);
                            locality.is_local().then(|| (paths.clone(), locality))
                        }
                        _ => None,
                    };
                    let decided = match (local, &flow.process) {
                        (Some((paths, locality)), Some(p)) => {
                            // The files (and a prompt) are read off the loop; the flow waits
                            // like one the provider is asked about.
                            let who = nw_lnp::Identified {
                                identity: p.identity.clone(),
                                pid: Some(p.pid),
                                executable: p.executable.clone(),
                                command_line: p.command_line.clone(),
                                cgroup: p.cgroup.clone(),
                                cwd: None,
                            };
                            let (tx, to) = (lnp_tx.clone(), key.remote.ip().to_string());
                            tokio::task::spawn_blocking(move || {
                                let way = match direction {
                                    Direction::Outbound => nw_lnp::Direction::Outbound,
                                    Direction::Inbound => nw_lnp::Direction::Inbound,
                                };
                                let verdict = nw_lnp::permit(&paths, &who, &to, &locality, way);
                                let _ = tx.send((id, verdict.map_err(|e| e.to_string())));
                            });
                            flows.asked.insert(id, flow);
                            continue;
                        }
                        (Some(_), None) => Some((options.policy.decision(), By::Policy {
                            why: "a flow to the local network whose process was not found".into(),
                        })),
                        (None, _) => None,
                    };
                    if decided.is_none() && name_first(&options.rules, &flow, &slot) {
                        flows.start(now, id, flow, NAMING, true, &mut engine, &mut out);
                        continue;
                    }
                    let (decision, by) = match decided {
                        Some(d) => d,
                        None => match rules_or_provider(&options, &flow, &slot) {
                            Some(d) => d,
                            None => {
                                flows.asked.insert(id, flow);
                                continue;
                            }
                        },
                    };
                    settle(&mut engine, &mut out, now, id, decision, &by);
                    let _ = events.send(Event::Decided { flow: Box::new(flow), decision, by });
                }
                flush(&queue, &mut out, &mut flows);
            }
            Some((id, answer)) = lnp_rx.recv() => {
                let now = Instant::now();
                // Gone: the deadline passed first and the failure policy decided it.
                let Some(flow) = flows.asked.remove(&id) else { continue };
                if answer.as_ref().is_ok_and(|v| v.allowed) && name_first(&options.rules, &flow, &slot) {
                    flows.start(now, id, flow, NAMING, true, &mut engine, &mut out);
                    flush(&queue, &mut out, &mut flows);
                    continue;
                }
                let decided = match answer {
                    Ok(v) if !v.allowed => Some((Decision::Drop, By::LocalNetwork {
                        locality: v.locality.to_string(),
                        source: v.by,
                    })),
                    Ok(_) => rules_or_provider(&options, &flow, &slot),
                    // A store that does not parse never means "allow all".
                    Err(why) => Some((Decision::Drop, By::Policy { why })),
                };
                match decided {
                    Some((decision, by)) => {
                        settle(&mut engine, &mut out, now, id, decision, &by);
                        flush(&queue, &mut out, &mut flows);
                        let _ = events.send(Event::Decided { flow: Box::new(flow), decision, by });
                    }
                    None => {
                        flows.asked.insert(id, flow);
                    }
                }
            }
            reading = next_reading(&mut readings) => {
                match reading {
                    Ok(r) => {
                        let next = scope_of(Some(&r));
                        latest = Some(r);
                        if next != scope {
                            scope = next;
                            let rescoped = scope.clone();
                            if let Err(e) = blocking(move || tables::rescope(number, bypass, &rescoped)).await {
                                tracing::warn!("the local network's prefixes changed and the rules could not follow: {e}");
                            }
                        }
                    }
                    Err(e) => tracing::warn!("the path could not be read: {e}"),
                }
            }
            message = from_provider(&mut slot) => {
                let now = Instant::now();
                match message {
                    FromProvider::Message(ProviderMessage::Started) => {
                        if let Slot::Running(r) = &mut slot {
                            r.started = true;
                            let _ = events.send(Event::ProviderStarted { pid: r.pid });
                        }
                    }
                    FromProvider::Message(ProviderMessage::Verdict { id, verdict }) if flows.asking.contains(&id) => {
                        let mut cx = Cx { slot: &slot, engine: &mut engine, events: &events, out: &mut out };
                        flows.provider_verdict(now, id, verdict, &mut cx);
                        flush(&queue, &mut out, &mut flows);
                    }
                    FromProvider::Message(ProviderMessage::Verdict { id, verdict }) => {
                        let peek = match (verdict, flows.asked.get(&id)) {
                            (FlowVerdict::FilterData { peek_outbound, peek_inbound }, Some(flow)) => Some(
                                if flow.transport == Transport::Tcp {
                                    Ok(PeekSizes { outbound: peek_outbound, inbound: peek_inbound })
                                } else {
                                    Err("the provider asked to filter a UDP flow's data; only TCP data is peeked at")
                                },
                            ),
                            _ => None,
                        };
                        if let Some(Ok(size)) = peek
                            && let Some(flow) = flows.asked.remove(&id)
                        {
                            flows.start(now, id, flow, size, false, &mut engine, &mut out);
                            flush(&queue, &mut out, &mut flows);
                            continue;
                        }
                        let (decision, by) = match (verdict, peek) {
                            (FlowVerdict::Allow, _) => (Decision::Allow, By::Provider),
                            (FlowVerdict::Drop, _) => (Decision::Drop, By::Provider),
                            (FlowVerdict::FilterData { .. }, why) => (options.policy.decision(), By::Policy {
                                why: match why {
                                    Some(Err(why)) => why.into(),
                                    _ => "a late verdict".into(),
                                },
                            }),
                        };
                        settle(&mut engine, &mut out, now, id, decision, &by);
                        flush(&queue, &mut out, &mut flows);
                        if let Some(flow) = flows.asked.remove(&id) {
                            if (decision, &by) == (Decision::Allow, &By::Provider) {
                                flows.reports.watch(flow.key(), id);
                            }
                            let _ = events.send(Event::Decided { flow: Box::new(flow), decision, by });
                        }
                    }
                    FromProvider::Message(ProviderMessage::DataVerdict { id, verdict }) => {
                        let mut cx = Cx { slot: &slot, engine: &mut engine, events: &events, out: &mut out };
                        flows.answer(now, id, verdict, By::Provider, &mut cx);
                        flush(&queue, &mut out, &mut flows);
                    }
                    FromProvider::Message(ProviderMessage::Cancel { message }) => {
                        let m = format!("cancelled: {}", message.unwrap_or_default());
                        provider_down(&mut slot, m, &events, &mut engine, &mut flows, &mut out, now).await;
                        flush(&queue, &mut out, &mut flows);
                    }
                    FromProvider::Message(ProviderMessage::Stopped) => {
                        provider_down(&mut slot, "stopped unasked".into(), &events, &mut engine, &mut flows, &mut out, now).await;
                        flush(&queue, &mut out, &mut flows);
                    }
                    FromProvider::Gone(m) => {
                        provider_down(&mut slot, m, &events, &mut engine, &mut flows, &mut out, now).await;
                        flush(&queue, &mut out, &mut flows);
                    }
                }
            }
            () = tokio::time::sleep_until(due.into()) => {
                let now = Instant::now();
                for (id, held) in engine.expire(now) {
                    for h in held {
                        give(&mut out, h.id, h.mark, options.policy.decision());
                    }
                    if let Some(flow) = flows.asked.remove(&id) {
                        let why = format!("no answer within {:?}", options.deadline);
                        let _ = events.send(Event::Decided { flow: Box::new(flow), decision: options.policy.decision(), by: By::Policy { why } });
                    }
                }
                let mut given = Vec::new();
                let policy = options.policy.decision();
                for id in flows.peeks.expire(now, policy, &mut given) {
                    let why = format!("no answer about its data within {:?}", options.deadline);
                    flows.decided(id, policy, By::Policy { why }, &mut engine, &events);
                }
                give_peeked(&mut out, given, false);
                flush(&queue, &mut out, &mut flows);
            }
            () = tokio::time::sleep_until(restart_at.into()) => {
                if let (Slot::Down { backoff, .. }, Some(p)) = (&slot, &options.provider) {
                    slot = start_provider(p, &events, *backoff);
                }
            }
            closed = next_closes(&mut closes) => match closed {
                Ok(Some(closed)) => {
                    flows.reports.closed(&closed, &slot, &events);
                    for c in closed.iter().filter(|c| c.key.transport == Transport::Udp) {
                        let keys = engine.udp_closed(c.key.local);
                        if let Ok(mut relook) = closed_udp.lock() {
                            relook.extend(keys.iter().copied());
                        }
                        for key in keys {
                            if let Some(ct) = &conntrack
                                && let Err(e) = ct.delete(key)
                            {
                                tracing::debug!("deleting the conntrack entry of {key}: {e}");
                            }
                        }
                    }
                }
                Ok(None) => flows.reports.lost += 1,
                Err(e) => {
                    tracing::warn!("closed flows are no longer reported: {e}");
                    closes = None;
                }
            },
            ended = next_ends(&mut ends) => match ended {
                Ok(Some(ended)) => flows.reports.ended(&ended, &slot, &events),
                Ok(None) => flows.reports.lost += 1,
                Err(e) => {
                    tracing::warn!("closed UDP flows are no longer reported: {e}");
                    ends = None;
                }
            },
            _ = stats_tick.tick() => {
                flows.forget(Instant::now());
                engine.set_counts(flows.peeks.bytes_peeked, flows.reports.sent, flows.reports.lost);
                dns_names.expire(Instant::now());
                engine.set_names(dns_answers, dns_names.len() as u64);
                let _ = events.send(Event::Stats(engine.stats()));
            }
            _ = stop.changed() => break,
        }
    }
    // Rules first, so nothing new is queued; then the reader stops, and every packet it read
    // or that waits gets the policy.
    let leftovers = blocking(tables::remove).await;
    reading.store(false, std::sync::atomic::Ordering::Relaxed);
    batches.close();
    while let Some(batch) = batches.recv().await {
        for (h, _, _) in batch.packets {
            give(&mut out, h.id, h.mark, options.policy.decision());
        }
    }
    let _ = blocking(move || reader.join()).await;
    let now = Instant::now();
    for (_, held) in engine.fail_all(now) {
        for h in held {
            give(&mut out, h.id, h.mark, options.policy.decision());
        }
    }
    let mut given = Vec::new();
    let policy = options.policy.decision();
    for id in flows.peeks.fail_all(now, policy, &mut given) {
        let why = "the host stopped".to_owned();
        flows.decided(id, policy, By::Policy { why }, &mut engine, &events);
    }
    give_peeked(&mut out, given, false);
    engine.set_counts(flows.peeks.bytes_peeked, flows.reports.sent, flows.reports.lost);
    engine.set_names(dns_answers, dns_names.len() as u64);
    flush(&queue, &mut out, &mut flows);
    if let Slot::Running(r) = slot {
        stop_provider(*r).await;
    }
    Ok(Ended { stats: engine.stats(), leftovers })
}

/// Packets read from the queue together, with the processes of their flows.
struct Batch {
    /// Each packet, its flow and which way it goes, and for an outbound TCP packet other than
    /// a SYN (which only a peeked flow queues) its segment.
    packets: Vec<QueuedPacket>,
    /// DNS answers to this host's queries: each packet's id, and the addresses it names.
    answers: Vec<(u32, Vec<(std::net::IpAddr, String)>)>,
    /// The process of each flow key the reader had not looked up within [`LOOKED_UP`].
    processes: HashMap<FlowKey, Option<Process>>,
}

/// A queued packet: what its verdict needs, its flow and which way it goes (`None`: not TCP
/// or UDP), and the segment of an outbound TCP packet other than a SYN.
type QueuedPacket = (Held, Option<(FlowKey, Direction)>, Option<Segment>);

/// How long the reader remembers that it looked a UDP flow key up: the flow's later datagrams
/// are not looked up again. Shorter than the
/// engine's memory of decided flows ([`crate::engine::REMEMBER`]), so a packet the engine
/// takes as a new flow's was looked up.
const LOOKED_UP: Duration = Duration::from_secs(1);

/// The reader thread: reads up to `batch` packets at a time, finds the processes of the flows
/// it has not seen lately (one sock_diag exchange and one read of each candidate process's
/// descriptors per batch), and hands both to the loop, until `reading` turns false or the loop
/// is gone.
#[allow(clippy::disallowed_methods, reason = "the lookups' memory runs on the wall clock")]
fn read_queue(
    queue: &Queue,
    mut diag: Diag,
    batch: usize,
    to_loop: &mpsc::Sender<Batch>,
    reading: &std::sync::atomic::AtomicBool,
    closed: &std::sync::Mutex<Vec<FlowKey>>,
) {
    let mut procfs = Procfs::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut looked_up = LookedUp::default();
    let mut dns_streams = crate::packet::DnsOverTcp::default();
    while reading.load(std::sync::atomic::Ordering::Relaxed) {
        let mut packets: Vec<QueuedPacket> = Vec::new();
        let mut answers = Vec::new();
        while packets.len() + answers.len() < batch {
            match queue.recv(&mut buf) {
                Ok(n) => packets.extend(nfqueue::packets(&buf[..n]).into_iter().filter_map(|q| {
                    // A DNS answer, marked so by the rule that queued it: its names are read,
                    // and it goes on.
                    if q.hook == nfqueue::LOCAL_IN && q.mark & MARK_DNS != 0 {
                        let names: Vec<_> = dns_streams
                            .messages(q.payload)
                            .iter()
                            .flat_map(|m| crate::names::dns_answers(m))
                            .collect();
                        answers.push((q.id, names));
                        return None;
                    }
                    let seg = tcp_segment(q.payload);
                    let data = seg.is_some_and(|s| s.syn && s.len > 0);
                    let held = Held {
                        id: q.id,
                        mark: q.mark,
                        seq: seg.map_or(0, |s| s.seq),
                        data,
                        bare: if data { crate::packet::without_payload(q.payload) } else { None },
                    };
                    // A SYN starts a flow (or is one's resent SYN); every other TCP packet
                    // queued, a SYN-ACK included, is a peeked flow's.
                    let seg = seg.filter(|s| !s.syn || s.ack).map(|s| Segment {
                        seq: s.seq,
                        len: s.len,
                        fin: s.fin,
                        rst: s.rst,
                        psh: s.psh,
                        syn: s.syn,
                        payload: s.payload.to_vec(),
                    });
                    // Which way it goes: a packet queued on its way in came from the peer.
                    let direction = if q.hook == nfqueue::LOCAL_IN {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    };
                    Some((held, flow_key(q.payload, direction).map(|k| (k, direction)), seg))
                })),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("reading the queue: {e}");
                    break;
                }
            }
        }
        if packets.is_empty() && answers.is_empty() {
            // Nothing queued: wait for more, looking at `reading` every 100 ms.
            let _ = nfqueue::wait(queue, Duration::from_millis(100));
            continue;
        }
        // DNS answers go on at once, from here: the loop learns their names from this batch
        // before it sees any later packet, the first of a flow to an address named included.
        if !answers.is_empty() {
            let given: Vec<Given> =
                answers.iter().map(|(id, _)| Given::new(*id, Verdict::Repeat, None)).collect();
            if let Err(e) = queue.verdicts(&given) {
                tracing::warn!("verdicts for {} DNS answers: {e}", given.len());
            }
        }
        let now = Instant::now();
        looked_up.begin(now);
        // A new socket on a closed one's ports is a new flow, with a process of its own.
        for key in closed.lock().map(|mut c| std::mem::take(&mut *c)).unwrap_or_default() {
            looked_up.forget(&key);
        }
        let mut keys: Vec<FlowKey> = Vec::new();
        // A TCP packet other than a SYN belongs to a flow decided already (peeked at).
        for k in
            packets.iter().filter(|(_, _, seg)| seg.is_none()).filter_map(|(_, k, _)| k.as_ref())
        {
            if looked_up.due(now, k.0) {
                keys.push(k.0);
            }
        }
        let sockets = diag.find(&keys).unwrap_or_else(|e| {
            tracing::warn!("sock_diag: {e}");
            vec![None; keys.len()]
        });
        let owned: Vec<(u64, u32)> = sockets.iter().flatten().map(|s| (s.inode, s.uid)).collect();
        let mut found = procfs.processes(&owned).into_iter();
        let processes = keys
            .into_iter()
            .zip(sockets)
            .map(|(k, socket)| (k, socket.and_then(|_| found.next().flatten())))
            .collect();
        if to_loop.blocking_send(Batch { packets, answers, processes }).is_err() {
            return;
        }
    }
}

/// Which flow keys the reader looks up. Every queued TCP SYN (other TCP packets are a peeked
/// flow's, and not looked up) may start a flow: a new SYN on a 5-tuple just decided is a new
/// connection (the engine forgets TCP flows once decided), so
/// TCP keys always are; a UDP key looked up within [`LOOKED_UP`] is not looked up again.
#[derive(Debug)]
struct LookedUp {
    at: Recent<FlowKey, ()>,
    /// The keys of the batch being gathered: each is looked up once.
    batch: HashSet<FlowKey>,
}

impl Default for LookedUp {
    fn default() -> Self {
        Self { at: Recent::new(LOOKED_UP), batch: HashSet::new() }
    }
}

impl LookedUp {
    /// A new batch, read at `now`: UDP keys looked up [`LOOKED_UP`] ago are forgotten.
    fn begin(&mut self, now: Instant) {
        self.batch.clear();
        self.at.expire(now);
    }

    /// `key`'s socket closed: the next packet on it is looked up again.
    fn forget(&mut self, key: &FlowKey) {
        self.at.remove(key);
    }

    /// Whether `key`, seen in the batch begun at `now`, is to be looked up (and is now
    /// remembered as looked up).
    fn due(&mut self, now: Instant, key: FlowKey) -> bool {
        let udp = key.transport == Transport::Udp;
        if (udp && self.at.contains(&key)) || !self.batch.insert(key) {
            return false;
        }
        if udp {
            self.at.insert(now, key, ());
        }
        true
    }
}

/// The rules' decision, or `None` when the provider is to be asked.
fn decide(rules: &Rules, flow: &Flow, slot: &Slot) -> Option<(Decision, By)> {
    if own_flow(slot, flow) {
        return Some((Decision::Allow, By::ProviderItself));
    }
    let (action, rule) = rules.decide(flow);
    let by = if rule == 0 { By::Default } else { By::Rule { rule } };
    match action {
        Action::Allow => Some((Decision::Allow, by)),
        Action::Drop => Some((Decision::Drop, by)),
        Action::Ask => None,
    }
}

/// The rules' decision, or the provider is asked (`None`: the flow waits for its verdict; the
/// caller keeps it in `asked`).
fn rules_or_provider(options: &HostOptions, flow: &Flow, slot: &Slot) -> Option<(Decision, By)> {
    if let Some(d) = decide(&options.rules, flow, slot) {
        return Some(d);
    }
    let why = match slot {
        Slot::Running(r) if r.started => {
            let line = nw_provider::encode(&HostMessage::NewFlow { flow: flow.clone() });
            if r.to.try_send(line).is_ok() {
                return None;
            }
            "the provider is not reading"
        }
        Slot::Running(_) => "the provider has not started yet",
        _ => "no provider is running",
    };
    Some((options.policy.decision(), By::Policy { why: why.into() }))
}

/// The next path reading, or never when local network privacy is not enforced.
async fn next_reading(
    readings: &mut Option<nw_path::Readings>,
) -> Result<Arc<nw_path::Reading>, nw_path::PathError> {
    match readings {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// Decides flow `id` and gives the packets that waited for it their verdict; a decision `by`
/// the failure policy is counted as one.
fn settle(
    engine: &mut Engine<Held>,
    out: &mut Vec<Given>,
    now: Instant,
    id: u64,
    decision: Decision,
    by: &By,
) {
    let held = match by {
        By::Policy { .. } => engine.fail(now, id),
        _ => engine.decide(now, id, decision),
    };
    for h in held {
        give(out, h.id, h.mark, decision);
    }
}

/// A packet's verdict, to be sent with the others of its turn: through the chain again with
/// the decision's mark.
fn give(out: &mut Vec<Given>, id: u32, mark: u32, decision: Decision) {
    let bits = match decision {
        Decision::Allow => MARK_ALLOW,
        Decision::Drop => MARK_DROP,
    };
    out.push(Given::new(id, Verdict::Repeat, Some((mark & !MARK_MASK) | bits)));
}

/// The new flows waiting for the provider, and the flows whose data is peeked at.
struct Flows {
    /// The rules, which decide flows peeked at for their host name.
    rules: Rules,
    /// Flows asked about (of the provider, or local network privacy), by id.
    asked: HashMap<u64, Flow>,
    /// The bytes of peeked flows.
    peeks: Peeks<Held>,
    /// Peeked flows, by id, until their data verdict is final.
    peeking: HashMap<u64, Flow>,
    /// Peeked flows whose first bytes the host reads for their host name, for the rules.
    naming: HashSet<u64>,
    /// Flows named so, then asked of the provider: its flow verdict is their data verdict.
    asking: HashSet<u64>,
    /// Where the resets for dropped flows' peers are sent from.
    raw: crate::sys::raw::Raw,
    /// The flows whose close the provider hears of.
    reports: Reports,
}

/// At most this many flows wait for their close to be reported; the oldest are forgotten.
const MAX_REPORTED: usize = 65_536;

/// The flows the provider allowed or filtered the data of, until they close.
#[derive(Default)]
struct Reports {
    ids: HashMap<FlowKey, u64>,
    order: std::collections::VecDeque<FlowKey>,
    /// Closes reported.
    sent: u64,
    /// Times close notifications were lost.
    lost: u64,
}

impl Reports {
    /// Flow `id` is one whose close the provider hears of.
    fn watch(&mut self, key: FlowKey, id: u64) {
        if self.order.len() >= MAX_REPORTED
            && let Some(old) = self.order.pop_front()
        {
            self.ids.remove(&old);
        }
        self.ids.insert(key, id);
        self.order.push_back(key);
    }

    /// The sockets destroyed: the provider is told of the TCP flows it decided. (A UDP
    /// socket's flows end with their conntrack entries: [`Reports::ended`].)
    fn closed(
        &mut self,
        closed: &[crate::sys::closes::Closed],
        slot: &Slot,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        for c in closed.iter().filter(|c| c.key.transport == Transport::Tcp) {
            let Some(id) = self.ids.remove(&c.key) else { continue };
            let n = c.counters.unwrap_or_default();
            let report = crate::flow::Report {
                id,
                bytes_out: n.bytes_out,
                bytes_in: n.bytes_in,
                segments_out: n.segments_out,
                segments_in: n.segments_in,
            };
            self.send(report, slot, events);
        }
    }

    /// The conntrack entries that ended: the provider is told of the UDP flows it decided,
    /// whichever end started them, with the datagrams and payload bytes each way (conntrack
    /// counts whole packets: less 28 bytes of headers each over IPv4, 48 over IPv6). One that
    /// conntrack did not count (it began before counting was on) is forgotten unreported.
    fn ended(
        &mut self,
        ended: &[crate::sys::conntrack::Ended],
        slot: &Slot,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        for e in ended.iter().filter(|e| e.transport == Transport::Udp) {
            let key = |local, remote| FlowKey { transport: Transport::Udp, local, remote };
            let (id, (out, into)) = if let Some(id) = self.ids.remove(&key(e.from, e.to)) {
                (id, e.counters.unzip())
            } else if let Some(id) = self.ids.remove(&key(e.to, e.from)) {
                let (a, b) = e.counters.unzip();
                (id, (b, a))
            } else {
                continue;
            };
            let (Some(out), Some(into)) = (out, into) else { continue };
            let header = if e.from.is_ipv4() { 28 } else { 48 };
            let payload = |c: crate::sys::conntrack::Carried| {
                c.bytes.saturating_sub(c.packets.saturating_mul(header))
            };
            let report = crate::flow::Report {
                id,
                bytes_out: payload(out),
                bytes_in: payload(into),
                segments_out: out.packets,
                segments_in: into.packets,
            };
            self.send(report, slot, events);
        }
    }

    /// Tells the provider, and the log, of a closed flow.
    fn send(
        &mut self,
        report: crate::flow::Report,
        slot: &Slot,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        let _ = asked(slot, nw_provider::encode(&HostMessage::FlowClosed(report)));
        let _ = events.send(Event::Closed(report));
        self.sent += 1;
        if self.order.len() > 2 * self.ids.len() + 1024 {
            let ids = &self.ids;
            self.order.retain(|k| ids.contains_key(k));
        }
    }
}

/// The next conntrack entries that ended, or never when they are not watched.
async fn next_ends(
    ends: &mut Option<crate::sys::conntrack::Ends>,
) -> std::io::Result<Option<Vec<crate::sys::conntrack::Ended>>> {
    match ends {
        Some(e) => e.next().await,
        None => std::future::pending().await,
    }
}

/// The next sockets destroyed, or never when closes are not watched.
async fn next_closes(
    closes: &mut Option<crate::sys::closes::Closes>,
) -> std::io::Result<Option<Vec<crate::sys::closes::Closed>>> {
    match closes {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

/// What deciding a peeked flow touches.
struct Cx<'a> {
    slot: &'a Slot,
    engine: &'a mut Engine<Held>,
    events: &'a mpsc::UnboundedSender<Event>,
    out: &'a mut Vec<Given>,
}

impl Flows {
    /// Flow `id`, waiting in the engine, is to be peeked at: `peek` of its bytes, for the
    /// provider or (`naming`) for its host name. Its SYN goes on; its bytes are held, and
    /// with the peer's bytes peeked at, the peer's packets come here too (the SYN's mark,
    /// kept by the connection, says so).
    #[allow(clippy::too_many_arguments, reason = "the loop's state, borrowed apart")]
    fn start(
        &mut self,
        now: Instant,
        id: u64,
        flow: Flow,
        peek: PeekSizes,
        naming: bool,
        engine: &mut Engine<Held>,
        out: &mut Vec<Given>,
    ) {
        let held = engine.peek(id);
        let seq = held.first().map_or(0, |h| h.seq);
        self.peeks.start(now, id, flow.key(), (flow.direction, seq), peek);
        let mark = if peek.both_ways() { MARK_PEEK_BOTH } else { MARK_PEEK };
        // Data in the SYN (TCP Fast Open) is sent again after the handshake, and held then.
        let bare = self.peeks.peeked(&flow.key(), flow.direction);
        for h in held {
            let mut given = Given::new(h.id, Verdict::Repeat, Some((h.mark & !MARK_MASK) | mark));
            if bare && h.data {
                match h.bare {
                    Some(packet) => given.packet = Some(packet),
                    None => given = Given::new(h.id, Verdict::Drop, None),
                }
            }
            out.push(given);
        }
        self.peeking.insert(id, flow);
        if naming {
            self.naming.insert(id);
        }
    }

    /// Shows `data` to whoever decides the flow: the rules, once its host name is read, or the
    /// provider; when the provider cannot be asked, the failure policy decides.
    fn show(&mut self, now: Instant, data: Option<crate::flow::Data>, cx: &mut Cx<'_>) {
        let Some(data) = data else { return };
        let id = data.id;
        if self.naming.remove(&id) {
            let Some(flow) = self.peeking.get_mut(&id) else { return };
            // The name the flow's bytes give; else the one a DNS answer gave its address.
            if let Some(name) = crate::names::host_name(&data.bytes) {
                flow.host = Some(name);
            }
            let (action, rule) = self.rules.decide(flow);
            let by = if rule == 0 { By::Default } else { By::Rule { rule } };
            match action {
                Action::Allow => self.answer(now, id, DataVerdict::Allow, by, cx),
                Action::Drop => self.answer(now, id, DataVerdict::Drop, by, cx),
                Action::Ask => {
                    let line = nw_provider::encode(&HostMessage::NewFlow { flow: flow.clone() });
                    match asked(cx.slot, line) {
                        Ok(()) => {
                            self.asking.insert(id);
                        }
                        Err(why) => self.fail(now, id, why, cx),
                    }
                }
            }
            return;
        }
        // The flow's name, once the first bytes of the end that opened it are seen (the
        // name it asked for, over the one a DNS answer gave its address): for the log,
        // whoever decides.
        if let Some(flow) = self.peeking.get_mut(&id)
            && data.offset == 0
            && data.direction == flow.direction
            && let Some(name) = crate::names::host_name(&data.bytes)
        {
            flow.host = Some(name);
        }
        if let Err(why) = asked(cx.slot, nw_provider::encode(&HostMessage::Data(data))) {
            self.fail(now, id, why, cx);
        }
    }

    /// The provider's flow verdict about a flow named and then asked of it.
    fn provider_verdict(&mut self, now: Instant, id: u64, verdict: FlowVerdict, cx: &mut Cx<'_>) {
        self.asking.remove(&id);
        match verdict {
            FlowVerdict::Allow => self.answer(now, id, DataVerdict::Allow, By::Provider, cx),
            FlowVerdict::Drop => self.answer(now, id, DataVerdict::Drop, By::Provider, cx),
            FlowVerdict::FilterData { peek_outbound, peek_inbound } => {
                // The peer's packets come here too from the pass below (this host's bytes the
                // name was read from, held until now, carry the mark that says so).
                self.peeks.peek_inbound(id, peek_inbound);
                // The provider sees the bytes the host read the name from, and more; or, when
                // it wants the peer's bytes alone, they all go.
                self.peeks.reshow(id);
                let peek = match (peek_outbound, peek_inbound) {
                    (0, 1..) => DataVerdict::Pass { pass: u64::MAX, peek: 0 },
                    _ => DataVerdict::Pass { pass: 0, peek: peek_outbound },
                };
                self.answer(now, id, peek, By::Provider, cx);
            }
        }
    }

    /// The failure policy decides peeked flow `id`: nobody could be asked.
    fn fail(&mut self, now: Instant, id: u64, why: &str, cx: &mut Cx<'_>) {
        let verdict = match cx.engine.policy() {
            FailPolicy::Open => DataVerdict::Allow,
            FailPolicy::Closed => DataVerdict::Drop,
        };
        self.answer(now, id, verdict, By::Policy { why: why.into() }, cx);
    }

    /// A data verdict about flow `id`, `by` whoever gave it.
    fn answer(&mut self, now: Instant, id: u64, verdict: DataVerdict, by: By, cx: &mut Cx<'_>) {
        let mut given = Vec::new();
        let both = self.peeks.both_ways(id);
        let answer = self.peeks.verdict(now, id, verdict, &mut given);
        give_peeked(cx.out, given, both);
        match answer {
            Answer::Late => cx.engine.count(None, false),
            Answer::Next(data) => self.show(now, data, cx),
            Answer::Final(d) => self.decided(id, d, by, cx.engine, cx.events),
        }
    }

    /// Peeked flow `id` is decided.
    fn decided(
        &mut self,
        id: u64,
        decision: Decision,
        by: By,
        engine: &mut Engine<Held>,
        events: &mpsc::UnboundedSender<Event>,
    ) {
        engine.count(Some(decision), matches!(by, By::Policy { .. }));
        self.naming.remove(&id);
        self.asking.remove(&id);
        if let (Decision::Allow, By::Provider, Some(flow)) = (decision, &by, self.peeking.get(&id))
        {
            self.reports.watch(flow.key(), id);
        }

        if let Some(flow) = self.peeking.remove(&id) {
            let _ = events.send(Event::Decided { flow: Box::new(flow), decision, by });
        }
    }

    /// Tells the peers of the flows dropped since the last call that they are gone, rather
    /// than leave them a connection nobody uses ([`flush`] calls it after the verdicts).
    fn reset_peers(&mut self) {
        for (key, seq) in self.peeks.take_resets() {
            let packet = crate::packet::reset(key, seq);
            if let Err(e) = self.raw.send(&packet, key.remote.ip(), MARK_PEEK) {
                tracing::warn!("resetting {key} for its peer: {e}");
            }
        }
    }

    /// Forgets the flows that ended without a verdict.
    fn forget(&mut self, now: Instant) {
        self.peeks.sweep(now);
        for id in self.peeks.take_gone() {
            self.peeking.remove(&id);
            self.naming.remove(&id);
            self.asking.remove(&id);
        }
    }
}

/// Sends `line` to the provider, or says why it cannot be asked.
fn asked(slot: &Slot, line: Vec<u8>) -> Result<(), &'static str> {
    match slot {
        Slot::Running(r) if r.started => {
            r.to.try_send(line).map_err(|_| "the provider is not reading")
        }
        Slot::Running(_) => Err("the provider has not started yet"),
        _ => Err("no provider is running"),
    }
}

/// Whether the host reads `flow`'s host name from its first bytes before deciding it: a rule
/// naming a host could decide it (never the provider's own flow, which is always allowed).
fn name_first(rules: &Rules, flow: &Flow, slot: &Slot) -> bool {
    flow.direction == Direction::Outbound && !own_flow(slot, flow) && rules.host_may_decide(flow)
}

/// Whether `flow` is the provider's own.
fn own_flow(slot: &Slot, flow: &Flow) -> bool {
    matches!((slot, &flow.process), (Slot::Running(r), Some(p)) if r.pid == Some(p.pid))
}

/// The verdicts of peeked flows' packets, to be sent with the others of their turn; a packet
/// that passes carries the mark of a flow peeked at `both` ways when it is one.
fn give_peeked(out: &mut Vec<Given>, given: Vec<(Held, Give)>, both: bool) {
    let pass = if both { MARK_PEEK_BOTH } else { MARK_PEEK };
    for (h, g) in given {
        let peeked = Some((h.mark & !MARK_MASK) | pass);
        match (g, h.bare) {
            (Give::Pass, _) => out.push(Given::new(h.id, Verdict::Repeat, peeked)),
            (Give::Bare, Some(packet)) => out
                .push(Given { packet: Some(packet), ..Given::new(h.id, Verdict::Repeat, peeked) }),
            (Give::Allow, _) => give(out, h.id, h.mark, Decision::Allow),
            (Give::Drop, _) => give(out, h.id, h.mark, Decision::Drop),
            // Not a packet that could go on without its data: its sender sends it again.
            (Give::Discard | Give::Bare, _) => out.push(Given::new(h.id, Verdict::Drop, None)),
        }
    }
}

/// Sends the verdicts given so far, together; then the resets for the peers of the flows
/// dropped meanwhile (after the verdicts: a reset that overtook the acknowledgement completing
/// a handshake would meet no connection).
fn flush(queue: &Queue, out: &mut Vec<Given>, flows: &mut Flows) {
    if !out.is_empty() {
        if let Err(e) = queue.verdicts(out) {
            tracing::warn!("verdicts for {} packets: {e}", out.len());
        }
        out.clear();
    }
    flows.reset_peers();
}

async fn from_provider(slot: &mut Slot) -> FromProvider {
    match slot {
        Slot::Running(r) => tokio::select! {
            m = r.from.recv() => m.unwrap_or_else(|| FromProvider::Gone("closed the contract socket".into())),
            status = r.child.wait() => FromProvider::Gone(match status {
                Ok(s) => format!("exited ({s})"),
                Err(e) => format!("exited ({e})"),
            }),
        },
        _ => std::future::pending().await,
    }
}

#[allow(clippy::disallowed_methods, reason = "backoff runs on the wall clock")]
fn start_provider(
    p: &ProviderOptions,
    events: &mpsc::UnboundedSender<Event>,
    backoff: nw_provider::Backoff,
) -> Slot {
    match spawn_provider(p, backoff) {
        Ok(running) => Slot::Running(Box::new(running)),
        Err(message) => {
            let mut backoff = backoff;
            let next = backoff.after_failure(Duration::ZERO);
            let _ = events.send(Event::ProviderDown { message, restart_in: next });
            Slot::Down { until: Instant::now() + next, backoff }
        }
    }
}

/// Starts the provider and the tasks that carry its messages, or says why it could not.
#[allow(clippy::disallowed_methods, reason = "a provider's start is stamped on the wall clock")]
fn spawn_provider(p: &ProviderOptions, backoff: nw_provider::Backoff) -> Result<Running, String> {
    let spawn = nw_provider::Spawn {
        program: p.program.clone(),
        args: p.args.clone(),
        user: p.user,
        fd_env: FD_ENV,
    };
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| format!("cannot make the contract socket: {e}"))?;
    let child = spawn
        .start(theirs)
        .map_err(|e| format!("cannot start {}: {e}{}", p.program.display(), spawn.hint(&e)))?;
    let stream = ours
        .set_nonblocking(true)
        .and_then(|()| UnixStream::from_std(ours))
        .map_err(|e| format!("the contract socket: {e}"))?;
    let pid = child.id();
    let (read, mut write) = stream.into_split();
    let (to, mut lines) = mpsc::channel::<Vec<u8>>(MAX_BACKLOG);
    let (from_tx, from) = mpsc::unbounded_channel();
    let start =
        nw_provider::encode(&HostMessage::Start { version: VERSION, options: p.options.clone() });
    let _ = to.try_send(start);
    tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            if write.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    tokio::spawn(async move {
        let mut reader = nw_provider::Reader::new(read);
        let gone = loop {
            match reader.next::<ProviderMessage>().await {
                Ok(Some(m)) => {
                    if from_tx.send(FromProvider::Message(m)).is_err() {
                        return;
                    }
                }
                Ok(None) => break "closed the contract socket".to_owned(),
                Err(nw_provider::ProtocolError::Io(e)) => {
                    break format!("broke the contract socket: {e}");
                }
                Err(e) => break format!("broke the contract: {e}"),
            }
        };
        let _ = from_tx.send(FromProvider::Gone(gone));
    });
    Ok(Running { backoff, child, pid, started: false, since: Instant::now(), to, from })
}

/// The provider is gone: every flow asked of it gets the policy, it is killed with what it
/// started, and a restart is due after the backoff.
#[allow(clippy::disallowed_methods, reason = "backoff runs on the wall clock")]
async fn provider_down(
    slot: &mut Slot,
    message: String,
    events: &mpsc::UnboundedSender<Event>,
    engine: &mut Engine<Held>,
    flows: &mut Flows,
    out: &mut Vec<Given>,
    now: Instant,
) {
    let Slot::Running(r) = std::mem::replace(slot, Slot::None) else { return };
    let mut backoff = r.backoff;
    let delay = backoff.after_failure(r.since.elapsed());
    let policy = engine.policy().decision();
    let why = || By::Policy { why: format!("the provider went away ({message})") };
    for (id, flow) in flows.asked.drain() {
        let by = why();
        settle(engine, out, now, id, policy, &by);
        let _ = events.send(Event::Decided { flow: Box::new(flow), decision: policy, by });
    }
    let mut given = Vec::new();
    for id in flows.peeks.fail_all(now, policy, &mut given) {
        flows.decided(id, policy, why(), engine, events);
    }
    give_peeked(out, given, false);
    let mut r = *r;
    if let Some(pid) = r.pid {
        nw_provider::kill_group(pid);
    }
    let _ = r.child.start_kill();
    let _ = r.child.wait().await;
    let _ = events.send(Event::ProviderDown { message, restart_in: delay });
    *slot = Slot::Down { until: Instant::now() + delay, backoff };
}

/// Asks the provider to stop, gives it a moment, then ends its group.
async fn stop_provider(mut r: Running) {
    let line = nw_provider::encode(&HostMessage::Stop { reason: StopReason::UserInitiated });
    let _ = r.to.try_send(line);
    let _ = tokio::time::timeout(Duration::from_secs(2), r.child.wait()).await;
    if let Some(pid) = r.pid {
        nw_provider::kill_group(pid);
    }
    let _ = r.child.start_kill();
    let _ = r.child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods, reason = "a starting instant for virtual time")]
    fn udp_keys_are_looked_up_once_a_second_and_tcp_syns_every_time() {
        let t0 = Instant::now();
        let key = |t: Transport| FlowKey {
            transport: t,
            local: "10.0.0.1:4000".parse().unwrap_or_else(|e| panic!("{e}")),
            remote: "10.0.0.2:53".parse().unwrap_or_else(|e| panic!("{e}")),
        };
        let (udp, tcp) = (key(Transport::Udp), key(Transport::Tcp));
        let mut l = LookedUp::default();
        l.begin(t0);
        assert!(l.due(t0, udp));
        assert!(!l.due(t0, udp), "twice in one batch");
        assert!(l.due(t0, tcp));
        assert!(!l.due(t0, tcp), "twice in one batch");
        let t1 = t0 + Duration::from_millis(999);
        l.begin(t1);
        assert!(!l.due(t1, udp), "a later datagram within the second");
        assert!(l.due(t1, tcp), "a new SYN on the same 5-tuple");
        l.begin(t0 + LOOKED_UP);
        assert!(l.due(t0 + LOOKED_UP, udp), "looked up again after a second");
    }

    #[test]
    fn rules_that_could_never_match_here_are_named() {
        let rules = |t: &str| Rules::parse(t, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(unseen(&rules("[[rule]]\naction = \"drop\"\nports = 23\n")), None);
        assert_eq!(unseen(&rules("[[rule]]\naction = \"drop\"\nhost = \"*.example.com\"\n")), None);
        // A UDP flow is named by the DNS answer that gave its address.
        assert_eq!(
            unseen(&rules(
                "[[rule]]\naction = \"drop\"\nports = 23\n[[rule]]\naction = \"drop\"\nhost = \"*.example.com\"\ntransport = \"udp\"\n"
            )),
            None
        );
        assert_eq!(unseen(&rules("[[rule]]\naction = \"allow\"\ndirection = \"inbound\"\n")), None);
        assert_eq!(
            unseen(&rules(
                "[[rule]]\naction = \"allow\"\ndirection = \"inbound\"\nhost = \"a.example\"\n"
            )),
            Some((1, "the host name of an inbound flow"))
        );
    }
}
