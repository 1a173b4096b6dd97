//! The Happy Eyeballs race (RFC 8305) as a pure machine.
//!
//! The machine decides; a driver resolves names, opens sockets and runs TLS. An attempt is
//! "ready" only when the driver has the whole stack up (TCP, TLS, the trust decision), so a
//! path that accepts TCP but never speaks TLS loses to one that does.
//!
//! # Call order
//!
//! 1. Create with [`Race::new`]; drain [`Race::poll_action`]: it asks for the HTTPS record
//!    when [`Config::discover_quic`] is on, then AAAA, then A (RFC 8305 §3 and
//!    draft-ietf-happy-happyeyeballs-v3 §4.1 give that order), as the family preference allows.
//! 2. Feed address answers to [`Race::handle_answer`], the HTTPS answer to
//!    [`Race::handle_services`], attempt outcomes to
//!    [`Race::handle_attempt_ready`] / [`Race::handle_attempt_failed`], and call
//!    [`Race::handle_timeout`] once [`Race::poll_timeout`] has passed.
//! 3. After every call drain [`Race::poll_action`] (start or cancel attempts) and
//!    [`Race::poll_event`] (the trace), and check [`Race::outcome`].
//!
//! Inputs for unknown attempts, or after the race ended, are ignored: a late reply can never
//! reopen a decided race.
//!
//! # QUIC beside TCP
//!
//! With [`Config::discover_quic`], a service whose HTTPS record (RFC 9460) advertises `h3` gets
//! a QUIC attempt to each address, followed one attempt delay later by a TCP attempt to the same
//! address, before the race moves on to the next address (families still interleave by
//! address). So a network that drops UDP costs one attempt delay, and one that drops TCP costs
//! nothing. Before the first attempt the race waits for the HTTPS answer as it waits for AAAA:
//! at most the resolution delay after the first address answer (happyeyeballs-v3 §4.2).

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::id::{AttemptId, ConnectionId};

/// Race settings. Defaults follow RFC 8305.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How long an A answer waits for a pending AAAA (RFC 8305 §3: 50 ms recommended).
    pub resolution_delay: Duration,
    /// The stagger between attempts (RFC 8305 §5: 250 ms recommended).
    pub attempt_delay: Duration,
    /// A measured RTT to the destination, if known: the stagger becomes twice it, clamped.
    pub rtt: Option<Duration>,
    /// A single attempt gives up after this long, separately from the stagger.
    pub attempt_timeout: Duration,
    /// The whole race gives up after this long.
    pub timeout: Duration,
    /// At most this many attempts in flight at once.
    pub max_concurrent: usize,
    /// How many addresses of the preferred family go first (RFC 8305 §4 "First Address
    /// Family Count", 1 by default).
    pub first_family_count: usize,
    /// Which families are raced, and which goes first.
    pub family: FamilyPreference,
    /// The protocol of every attempt, unless QUIC is discovered.
    pub protocol: Protocol,
    /// Ask for the HTTPS record and race QUIC ahead of TCP to each address when it advertises
    /// `h3`. Only for TCP races to a name.
    pub discover_quic: bool,
}

/// The longest any of the race's durations counts for: a year is "no limit" in practice, and
/// every deadline `now + duration` stays representable (a caller's `u64::MAX` seconds would
/// overflow an `Instant`).
pub const LONGEST: Duration = Duration::from_secs(365 * 86_400);

impl Config {
    /// This configuration with every duration saturated at [`LONGEST`].
    pub fn bounded(self) -> Self {
        let cap = |d: Duration| d.min(LONGEST);
        Self {
            resolution_delay: cap(self.resolution_delay),
            attempt_delay: cap(self.attempt_delay),
            rtt: self.rtt.map(cap),
            attempt_timeout: cap(self.attempt_timeout),
            timeout: cap(self.timeout),
            ..self
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            resolution_delay: Duration::from_millis(50),
            attempt_delay: Duration::from_millis(250),
            rtt: None,
            attempt_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_concurrent: 4,
            first_family_count: 1,
            family: FamilyPreference::Ipv6,
            protocol: Protocol::Tcp,
            discover_quic: false,
        }
    }
}

/// RFC 8305 §8: the attempt delay should stay within [100 ms, 2 s].
pub const MIN_ATTEMPT_DELAY: Duration = Duration::from_millis(100);
/// RFC 8305 §8: the longest attempt delay.
pub const MAX_ATTEMPT_DELAY: Duration = Duration::from_secs(2);

impl Config {
    /// The stagger actually used: twice the measured RTT when there is one (enough for a
    /// handshake to finish with some margin), else the configured delay; always clamped.
    pub fn effective_attempt_delay(&self) -> Duration {
        self.rtt
            .map_or(self.attempt_delay, |rtt| rtt * 2)
            .clamp(MIN_ATTEMPT_DELAY, MAX_ATTEMPT_DELAY)
    }
}

/// Which address families to use, and which goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyPreference {
    /// Both families, IPv6 first (RFC 8305's default).
    Ipv6,
    /// Both families, IPv4 first.
    Ipv4,
    /// IPv6 addresses only.
    Ipv6Only,
    /// IPv4 addresses only.
    Ipv4Only,
}

impl FamilyPreference {
    /// What it permits, in words.
    pub fn explain(self) -> &'static str {
        match self {
            Self::Ipv6 => "IPv6 first",
            Self::Ipv4 => "IPv4 first",
            Self::Ipv6Only => "IPv6 only: -6, or an IPv6 local address",
            Self::Ipv4Only => "IPv4 only: -4, or an IPv4 local address",
        }
    }

    fn allows(self, ip: IpAddr) -> bool {
        match self {
            Self::Ipv6Only => ip.is_ipv6(),
            Self::Ipv4Only => ip.is_ipv4(),
            _ => true,
        }
    }

    /// Whether IPv6 goes first.
    pub fn prefers_v6(self) -> bool {
        matches!(self, Self::Ipv6 | Self::Ipv6Only)
    }
}

/// A DNS query the race wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Query {
    /// IPv6 addresses.
    Aaaa,
    /// IPv4 addresses.
    A,
    /// The HTTPS record (RFC 9460): which protocols the service speaks.
    Https,
}

/// The transport of one attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP (with TLS on top when the connection asks for it).
    #[default]
    Tcp,
    /// QUIC, with its TLS 1.3 handshake.
    Quic,
    /// UDP: nothing to race (no handshake); reported by `driver::connect_udp`.
    Udp,
}

/// One HTTPS record as the race reads it (RFC 9460 §2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Service {
    /// 0 is AliasMode; ServiceMode records rank by ascending priority (§2.4.1).
    pub priority: u16,
    /// The target name; `None` for "." — in ServiceMode, the queried name itself (§2.5.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The `alpn` SvcParam.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// `no-default-alpn`: the service does not speak the scheme's default (http/1.1).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_default_alpn: bool,
    /// The `port` SvcParam: where this endpoint listens instead of the authority's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Service {
    /// The QUIC port when these records advertise HTTP/3 at the queried name itself: the
    /// best-ranked ServiceMode record whose target is "." and whose ALPN set has `h3`. An
    /// RRset with an AliasMode record has its ServiceMode records ignored (§2.4.1); aliases
    /// and other target names are not followed.
    pub fn quic_port(records: &[Self], authority_port: u16) -> Option<u16> {
        if records.iter().any(|r| r.priority == 0) {
            return None;
        }
        records
            .iter()
            .filter(|r| r.target.is_none() && r.alpn.iter().any(|a| a == "h3"))
            .min_by_key(|r| r.priority)
            .map(|r| r.port.unwrap_or(authority_port))
    }
}

/// Why a query gave no addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum QueryError {
    /// The name does not exist (NXDOMAIN).
    #[error("no such name")]
    NoSuchName,
    /// The name server answered with an error.
    #[error("the name server failed: {0}")]
    ServerFailure(String),
    /// No name server answered in time.
    #[error("no answer from the name servers")]
    TimedOut,
}

/// Why an attempt failed, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum AttemptError {
    /// The peer answered with a reset to the SYN (nothing listens there).
    #[error("connection refused")]
    Refused,
    /// The connection was reset during the handshake.
    #[error("connection reset")]
    Reset,
    /// No route to the host (an ICMP host unreachable, or ARP/ND failed).
    #[error("host unreachable")]
    HostUnreachable,
    /// No route to the network.
    #[error("network unreachable")]
    NetworkUnreachable,
    /// The attempt ran out its own timeout.
    #[error("no answer within the attempt timeout")]
    TimedOut,
    /// The attempt ran out its own timeout after its TCP connection was made, with the TLS
    /// handshake on top of it unfinished: the peer accepts and then does not speak TLS (a
    /// server of another protocol waiting for the client to speak first), or something on the
    /// path drops the ClientHello (a middlebox that chokes on one too large for a packet, as
    /// post-quantum key shares make it).
    #[error(
        "connected in {:.1} ms, then the TLS handshake did not finish within the attempt \
         timeout (a server that does not speak TLS, or a path that drops the ClientHello)",
        *.connected_us as f64 / 1e3
    )]
    HandshakeTimedOut {
        /// When the TCP connection was made, in µs after the attempt started.
        connected_us: u64,
    },
    /// The TLS (or QUIC) handshake failed for a reason other than trust.
    #[error("TLS: {0}")]
    Tls(String),
    /// The handshake failed on trust: the server's certificate was not trusted, or the server
    /// refused ours. Trying again will not change that.
    #[error("TLS: {0}")]
    Untrusted(String),
    /// Anything else the socket said.
    #[error("{0}")]
    Other(String),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this DNS query; answer with `handle_answer` or `handle_query_failed`.
    Resolve(Query),
    /// Start an attempt; answer with `handle_attempt_ready` or `handle_attempt_failed`.
    StartAttempt {
        /// The attempt's id, for the answer.
        id: AttemptId,
        /// Where to connect.
        addr: SocketAddr,
        /// Over what.
        protocol: Protocol,
    },
    /// Close this attempt's socket now (an also-ran or a timed-out attempt).
    CancelAttempt {
        /// The attempt to cancel.
        id: AttemptId,
    },
}

/// The race's trace; reports and logs are views of it. `at` is the time since the start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    /// A query answered with addresses.
    Answer {
        /// Which query.
        query: Query,
        /// When.
        #[serde(serialize_with = "millis")]
        at: Duration,
        /// The addresses, in the answer's order.
        addresses: Vec<IpAddr>,
    },
    /// A query failed.
    AnswerFailed {
        /// Which query.
        query: Query,
        /// When.
        #[serde(serialize_with = "millis")]
        at: Duration,
        /// Why.
        error: QueryError,
    },
    /// The HTTPS answer, and the QUIC port it advertises (if any).
    Services {
        /// When.
        #[serde(serialize_with = "millis")]
        at: Duration,
        /// The service records.
        records: Vec<Service>,
        /// The port QUIC is raced on, when `h3` is advertised.
        #[serde(skip_serializing_if = "Option::is_none")]
        quic_port: Option<u16>,
    },
    /// An attempt started.
    AttemptStarted {
        /// The attempt.
        id: AttemptId,
        /// Where to.
        addr: SocketAddr,
        /// Over what.
        protocol: Protocol,
        /// When.
        #[serde(serialize_with = "millis")]
        at: Duration,
    },
    /// An attempt failed.
    AttemptFailed {
        /// The attempt.
        id: AttemptId,
        /// When.
        #[serde(serialize_with = "millis")]
        at: Duration,
        /// Why.
        error: AttemptError,
    },
    /// An attempt was cancelled (another won, or it ran out its time).
    AttemptCancelled {
        /// The attempt.
        id: AttemptId,
        /// When.
        #[serde(serialize_with = "millis")]
        at: Duration,
    },
    /// An attempt won the race.
    Won {
        /// The attempt.
        id: AttemptId,
        /// Where to.
        addr: SocketAddr,
        /// Over what.
        protocol: Protocol,
        /// When.
        #[serde(serialize_with = "millis")]
        at: Duration,
    },
    /// The race ended without a winner.
    Failed {
        /// When.
        #[serde(serialize_with = "millis")]
        at: Duration,
        /// Why.
        error: RaceError,
    },
}

/// Durations in reports are milliseconds.
pub(crate) fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// [`millis`] for an optional duration (skipped when absent).
#[allow(clippy::ref_option, reason = "serde's serialize_with passes &Option")]
pub(crate) fn millis_opt<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => millis(d, s),
        None => s.serialize_none(),
    }
}

/// How a race ended without a winner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RaceError {
    /// Neither query gave an address; each one's failure, when it failed.
    #[error("the name has no usable addresses (A: {}, AAAA: {})", answer(.a), answer(.aaaa))]
    NoAddresses {
        /// Why the A query failed, when it failed (`None`: it had no records).
        a: Option<QueryError>,
        /// The same for AAAA.
        aaaa: Option<QueryError>,
    },
    /// Addresses were found, but none of a family this race may use.
    #[error(
        "every address found ({}) is of a family this connection may not use ({})",
        list(.found), .family.explain()
    )]
    FamilyExcluded {
        /// The families allowed.
        family: FamilyPreference,
        /// The addresses found.
        found: Vec<IpAddr>,
    },
    /// Every attempt failed; each one with its error.
    #[error("every attempt failed: {}", summary(.attempts))]
    AllAttemptsFailed {
        /// Each attempt, in order, with its error.
        attempts: Vec<Tried>,
    },
    /// The race's time limit ran out; the attempts still under way then, and how far each
    /// had got.
    #[error("no attempt was ready within {}{}", rounded(*.limit), under_way(.running))]
    TimedOut {
        /// The limit.
        #[serde(serialize_with = "millis", rename = "limit_ms")]
        limit: Duration,
        /// The attempts the limit cut short.
        running: Vec<UnderWay>,
    },
}

/// An attempt still under way when the race's time limit ran out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnderWay {
    /// The attempt.
    pub id: AttemptId,
    /// Where to.
    pub addr: SocketAddr,
    /// Over what.
    pub protocol: Protocol,
    /// When its transport was made (its TCP connection), in µs after it started, with the
    /// TLS handshake on top of it unfinished; `None`: not even that.
    pub connected_us: Option<u64>,
}

/// A limit as people write it: `300ms`, `2s`, `2.5s` (one that is what is left of `2s` after a
/// wait, `1.99996s`, is `2s`).
fn rounded(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let text = format!("{:.1}", d.as_secs_f64());
        format!("{}s", text.strip_suffix(".0").unwrap_or(&text))
    }
}

fn under_way(running: &[UnderWay]) -> String {
    let one = |u: &UnderWay| {
        let over = if u.protocol == Protocol::Quic { " over QUIC" } else { "" };
        let got = match u.connected_us {
            Some(us) => {
                format!("connected in {:.1} ms, the TLS handshake unfinished", us as f64 / 1e3)
            }
            None => "no answer yet".to_owned(),
        };
        format!("{} {}{over}: {got}", u.id, u.addr)
    };
    match running {
        [] => String::new(),
        r => format!(" ({})", r.iter().map(one).collect::<Vec<_>>().join("; ")),
    }
}

fn list(found: &[IpAddr]) -> String {
    found.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn answer(e: &Option<QueryError>) -> String {
    e.as_ref().map_or_else(|| "no records".to_owned(), ToString::to_string)
}

/// One failed attempt, in a lost race's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tried {
    /// The attempt.
    pub id: AttemptId,
    /// Where to.
    pub addr: SocketAddr,
    /// Over what.
    pub protocol: Protocol,
    /// Why it failed.
    pub error: AttemptError,
}

fn summary(attempts: &[Tried]) -> String {
    let one = |t: &Tried| {
        let over = if t.protocol == Protocol::Quic { " over QUIC" } else { "" };
        format!("{} {}{over}: {}", t.id, t.addr, t.error)
    };
    attempts.iter().map(one).collect::<Vec<_>>().join("; ")
}

/// How the race ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This attempt connected first.
    Won {
        /// The winning attempt.
        id: AttemptId,
        /// Where it connected.
        addr: SocketAddr,
        /// Over what.
        protocol: Protocol,
    },
    /// No attempt connected.
    Failed(RaceError),
}

/// The machine's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// The A answer has waited long enough for AAAA.
    ResolutionDelay,
    /// Time for the next staggered attempt.
    NextAttempt,
    /// The whole race is out of time.
    Overall,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Pending,
    Got,
    Failed(QueryError),
    NotAsked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptState {
    Running { deadline: Instant },
    Failed,
    Cancelled,
    Won,
}

#[derive(Debug, Clone)]
struct Attempt {
    id: AttemptId,
    addr: SocketAddr,
    protocol: Protocol,
    state: AttemptState,
    error: Option<AttemptError>,
    started: Instant,
    /// When its transport was made, with a handshake on top still to finish.
    transport_at: Option<Instant>,
}

impl Attempt {
    /// When its transport was made, in µs after it started.
    fn connected_us(&self) -> Option<u64> {
        self.transport_at
            .map(|at| u64::try_from((at - self.started).as_micros()).unwrap_or(u64::MAX))
    }
}

/// The race.
#[derive(Debug)]
pub struct Race {
    id: ConnectionId,
    port: u16,
    config: Config,
    start: Instant,
    aaaa: Answer,
    a: Answer,
    https: Answer,
    /// Where QUIC attempts go, once the HTTPS record has advertised h3.
    quic_port: Option<u16>,
    /// Attempts that go before the next address: TCP after QUIC to the same address, QUIC to
    /// addresses already tried over TCP when h3 is discovered late.
    companions: VecDeque<(IpAddr, Protocol)>,
    /// Not yet attempted, per family, in the order they arrived (the driver sorts each answer
    /// by RFC 6724 before handing it over).
    v6: VecDeque<IpAddr>,
    v4: VecDeque<IpAddr>,
    /// Addresses the family preference ruled out, so a race that has nothing else can say so.
    excluded: Vec<IpAddr>,
    attempts: Vec<Attempt>,
    /// When the latest attempt started: the stagger counts from here.
    last_start: Option<Instant>,
    timers: [Option<Instant>; 3],
    outcome: Option<Outcome>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
}

impl Race {
    /// A race to a name: asks for HTTPS (when discovering QUIC), AAAA, then A.
    pub fn new(id: ConnectionId, port: u16, config: Config, now: Instant) -> Self {
        let mut race = Self::empty(id, port, config, now);
        if config.discover_quic && config.protocol == Protocol::Tcp {
            race.https = Answer::Pending;
            race.actions.push_back(Action::Resolve(Query::Https));
        }
        // RFC 8305 §3: the AAAA query goes first — or A, when IPv4 is the preferred family.
        let order = if config.family.prefers_v6() {
            [Query::Aaaa, Query::A]
        } else {
            [Query::A, Query::Aaaa]
        };
        for query in order {
            let allowed = match query {
                Query::Aaaa => config.family != FamilyPreference::Ipv4Only,
                Query::A | Query::Https => config.family != FamilyPreference::Ipv6Only,
            };
            let slot = race.answer_mut(query);
            *slot = if allowed { Answer::Pending } else { Answer::NotAsked };
            if allowed {
                race.actions.push_back(Action::Resolve(query));
            }
        }
        race
    }

    /// A race to known addresses (an IP literal, a cached answer): no queries.
    pub fn with_addresses(
        id: ConnectionId,
        port: u16,
        addrs: &[IpAddr],
        config: Config,
        now: Instant,
    ) -> Self {
        let mut race = Self::empty(id, port, config, now);
        race.add(addrs);
        race.step(now);
        race
    }

    fn empty(id: ConnectionId, port: u16, config: Config, now: Instant) -> Self {
        let config = config.bounded();
        let mut timers = [None; 3];
        timers[Timer::Overall as usize] = Some(now + config.timeout);
        Self {
            id,
            port,
            config,
            start: now,
            aaaa: Answer::NotAsked,
            a: Answer::NotAsked,
            https: Answer::NotAsked,
            quic_port: None,
            companions: VecDeque::new(),
            v6: VecDeque::new(),
            v4: VecDeque::new(),
            excluded: Vec::new(),
            attempts: Vec::new(),
            last_start: None,
            timers,
            outcome: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// An answer (or a failure) for one query.
    pub fn handle_answer(
        &mut self,
        query: Query,
        answer: Result<Vec<IpAddr>, QueryError>,
        now: Instant,
    ) {
        // HTTPS answers carry records, not addresses: see `handle_services`.
        if self.outcome.is_some()
            || query == Query::Https
            || *self.answer_mut(query) != Answer::Pending
        {
            return;
        }
        let at = now - self.start;
        match answer {
            Ok(addrs) => {
                *self.answer_mut(query) = Answer::Got;
                self.events.push_back(Event::Answer { query, at, addresses: addrs.clone() });
                let preferred = self.preferred();
                let had_preferred_attempt =
                    self.attempts.iter().any(|a| a.addr.is_ipv6() == (preferred == Query::Aaaa));
                self.add(&addrs);
                self.candidates_added(now);
                let preferred_pending =
                    query != preferred && *self.answer_mut(preferred) == Answer::Pending;
                if self.attempts.is_empty() && (preferred_pending || self.https == Answer::Pending)
                {
                    // RFC 8305 §3: give the preferred family's answer a short head start;
                    // happyeyeballs-v3 §4.2 gives the HTTPS answer the same.
                    self.timers[Timer::ResolutionDelay as usize]
                        .get_or_insert(now + self.config.resolution_delay);
                }
                if query == preferred
                    && !self.attempts.is_empty()
                    && !had_preferred_attempt
                    && !self.preferred_queue().is_empty()
                {
                    // A late answer for the preferred family while only the other has been
                    // tried: start it now rather than after the stagger (RFC 8305 §3 merges
                    // late answers; waiting another attempt delay would only lose time).
                    self.timers[Timer::NextAttempt as usize] = Some(now);
                }
            }
            Err(error) => {
                self.events.push_back(Event::AnswerFailed { query, at, error: error.clone() });
                *self.answer_mut(query) = Answer::Failed(error);
            }
        }
        self.step(now);
    }

    /// The HTTPS answer (or its failure, which only means no QUIC).
    pub fn handle_services(&mut self, answer: Result<Vec<Service>, QueryError>, now: Instant) {
        if self.outcome.is_some() || self.https != Answer::Pending {
            return;
        }
        let at = now - self.start;
        match answer {
            Ok(records) => {
                self.https = Answer::Got;
                let quic_port = Service::quic_port(&records, self.port);
                self.events.push_back(Event::Services { at, records, quic_port });
                if let Some(port) = quic_port {
                    self.quic_port = Some(port);
                    // Discovered late: the addresses already tried over TCP get their QUIC
                    // attempts next; the ones still queued get QUIC first as usual.
                    let tried = self.tried_addresses();
                    self.companions.extend(tried.into_iter().map(|ip| (ip, Protocol::Quic)));
                    self.candidates_added(now);
                }
            }
            Err(error) => {
                self.https = Answer::Failed(error.clone());
                self.events.push_back(Event::AnswerFailed { query: Query::Https, at, error });
            }
        }
        self.step(now);
    }

    /// New candidates after the queue ran dry join the stagger while an attempt is in flight,
    /// and start at once when every attempt has failed.
    fn candidates_added(&mut self, now: Instant) {
        if let (Some(last), None) = (self.last_start, self.timers[Timer::NextAttempt as usize]) {
            let at = if self.running() == 0 {
                now
            } else {
                (last + self.config.effective_attempt_delay()).max(now)
            };
            self.timers[Timer::NextAttempt as usize] = Some(at);
        }
    }

    /// The attempt has the whole stack up: it wins, unless the race is already decided.
    pub fn handle_attempt_ready(&mut self, id: AttemptId, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        let Some(attempt) = self.running_mut(id) else { return };
        attempt.state = AttemptState::Won;
        let (addr, protocol) = (attempt.addr, attempt.protocol);
        self.events.push_back(Event::Won { id, addr, protocol, at: now - self.start });
        self.outcome = Some(Outcome::Won { id, addr, protocol });
        self.cancel_all_running(now);
        self.timers = [None; 3];
    }

    /// The attempt's transport is made (its TCP connection), and the handshake on top of it
    /// (TLS) is under way: should it time out now, its error says the handshake is what did
    /// not finish ([`AttemptError::HandshakeTimedOut`]).
    pub fn handle_attempt_progress(&mut self, id: AttemptId, now: Instant) {
        if let Some(attempt) = self.running_mut(id) {
            attempt.transport_at.get_or_insert(now);
        }
    }

    /// The attempt failed; the next one starts at once (RFC 8305 §5: no need to wait out the
    /// attempt delay once the current attempt has failed).
    pub fn handle_attempt_failed(&mut self, id: AttemptId, error: AttemptError, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        let Some(attempt) = self.running_mut(id) else { return };
        attempt.state = AttemptState::Failed;
        attempt.error = Some(error.clone());
        self.events.push_back(Event::AttemptFailed { id, at: now - self.start, error });
        self.timers[Timer::NextAttempt as usize] = Some(now);
        self.step(now);
    }

    /// A deadline from [`Race::poll_timeout`] passed: times attempts out, starts the next one.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if self.timers[Timer::Overall as usize].is_some_and(|t| t <= now) {
            let running = self
                .attempts
                .iter()
                .filter(|a| matches!(a.state, AttemptState::Running { .. }))
                .map(|a| UnderWay {
                    id: a.id,
                    addr: a.addr,
                    protocol: a.protocol,
                    connected_us: a.connected_us(),
                })
                .collect();
            self.finish(now, RaceError::TimedOut { limit: self.config.timeout, running });
            return;
        }
        let expired: Vec<(AttemptId, AttemptError)> = self
            .attempts
            .iter()
            .filter(|a| matches!(a.state, AttemptState::Running { deadline } if deadline <= now))
            .map(|a| {
                let error = match a.connected_us() {
                    Some(connected_us) => AttemptError::HandshakeTimedOut { connected_us },
                    None => AttemptError::TimedOut,
                };
                (a.id, error)
            })
            .collect();
        for (id, error) in expired {
            self.actions.push_back(Action::CancelAttempt { id });
            self.handle_attempt_failed(id, error, now);
        }
        self.step(now);
    }

    /// The earliest deadline: a timer or a running attempt's timeout.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let attempts = self.attempts.iter().filter_map(|a| match a.state {
            AttemptState::Running { deadline } => Some(deadline),
            _ => None,
        });
        self.timers.iter().flatten().copied().chain(attempts).min()
    }

    /// The next thing the driver must do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event of the trace, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// How the race ended, once it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The connection this race belongs to.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Attempts started so far.
    pub fn attempts_started(&self) -> usize {
        self.attempts.len()
    }

    // --- internals -------------------------------------------------------------------------

    fn answer_mut(&mut self, query: Query) -> &mut Answer {
        match query {
            Query::Aaaa => &mut self.aaaa,
            Query::A => &mut self.a,
            Query::Https => &mut self.https,
        }
    }

    /// The query of the preferred family.
    fn preferred(&self) -> Query {
        if self.config.family.prefers_v6() { Query::Aaaa } else { Query::A }
    }

    fn preferred_queue(&self) -> &VecDeque<IpAddr> {
        if self.config.family.prefers_v6() { &self.v6 } else { &self.v4 }
    }

    fn running_mut(&mut self, id: AttemptId) -> Option<&mut Attempt> {
        self.attempts
            .iter_mut()
            .find(|a| a.id == id && matches!(a.state, AttemptState::Running { .. }))
    }

    fn running(&self) -> usize {
        self.attempts.iter().filter(|a| matches!(a.state, AttemptState::Running { .. })).count()
    }

    fn add(&mut self, addrs: &[IpAddr]) {
        for ip in addrs.iter().copied() {
            let ip = canonical(ip);
            if !self.config.family.allows(ip) {
                if !self.excluded.contains(&ip) {
                    self.excluded.push(ip);
                }
                continue;
            }
            let seen = self.attempts.iter().any(|a| a.addr.ip() == ip)
                || self.v6.contains(&ip)
                || self.v4.contains(&ip);
            if !seen {
                if ip.is_ipv6() { self.v6.push_back(ip) } else { self.v4.push_back(ip) }
            }
        }
    }

    /// Starts what is due, then checks whether the race is lost.
    fn step(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        let resolution_wait = self.timers[Timer::ResolutionDelay as usize];
        let preferred = self.preferred();
        let preferred_missing =
            *self.answer_mut(preferred) == Answer::Pending && self.preferred_queue().is_empty();
        let waiting = self.attempts.is_empty()
            && (preferred_missing || self.https == Answer::Pending)
            && resolution_wait.is_none_or(|t| t > now);
        if !waiting {
            self.timers[Timer::ResolutionDelay as usize] = None;
            let due = self.attempts.is_empty()
                || self.timers[Timer::NextAttempt as usize].is_some_and(|t| t <= now);
            if due {
                let slot = self.running() < self.config.max_concurrent.max(1);
                let next = if slot { self.next_candidate() } else { None };
                match next {
                    Some((ip, protocol)) => self.start_attempt(ip, protocol, now),
                    // Nothing to start, or no free slot: a failure or a new answer re-arms.
                    None => self.timers[Timer::NextAttempt as usize] = None,
                }
            }
        }
        self.check_lost(now);
    }

    fn start_attempt(&mut self, ip: IpAddr, protocol: Protocol, now: Instant) {
        let n = u32::try_from(self.attempts.len() + 1).unwrap_or(u32::MAX);
        let id = self.id.attempt(n);
        let port = match protocol {
            Protocol::Quic => self.quic_port.unwrap_or(self.port),
            Protocol::Tcp | Protocol::Udp => self.port,
        };
        let addr = SocketAddr::new(ip, port);
        let deadline = now + self.config.attempt_timeout;
        self.attempts.push(Attempt {
            id,
            addr,
            protocol,
            state: AttemptState::Running { deadline },
            error: None,
            started: now,
            transport_at: None,
        });
        self.actions.push_back(Action::StartAttempt { id, addr, protocol });
        self.events.push_back(Event::AttemptStarted { id, addr, protocol, at: now - self.start });
        self.last_start = Some(now);
        self.timers[Timer::NextAttempt as usize] =
            Some(now + self.config.effective_attempt_delay());
    }

    /// Each address attempted so far, once, in the order first tried.
    fn tried_addresses(&self) -> Vec<IpAddr> {
        let mut tried: Vec<IpAddr> = Vec::new();
        for ip in self.attempts.iter().map(|a| a.addr.ip()) {
            if !tried.contains(&ip) {
                tried.push(ip);
            }
        }
        tried
    }

    /// The next attempt: a companion (TCP after QUIC to the same address) first, else the
    /// next address — over QUIC first when the service advertised h3.
    fn next_candidate(&mut self) -> Option<(IpAddr, Protocol)> {
        if let Some(c) = self.companions.pop_front() {
            return Some(c);
        }
        let ip = self.next_address()?;
        if self.quic_port.is_some() && self.config.protocol == Protocol::Tcp {
            self.companions.push_front((ip, Protocol::Tcp));
            return Some((ip, Protocol::Quic));
        }
        Some((ip, self.config.protocol))
    }

    /// RFC 8305 §4: the preferred family first (`first_family_count` addresses of it), then
    /// alternate, falling back to whichever family still has addresses.
    fn next_address(&mut self) -> Option<IpAddr> {
        let prefer_v6 = self.config.family.prefers_v6();
        let tried = self.tried_addresses();
        let want_v6 = match self.attempts.last() {
            None => prefer_v6,
            Some(_) if tried.len() < self.config.first_family_count => prefer_v6,
            Some(last) => !last.addr.is_ipv6(),
        };
        let (first, second) =
            if want_v6 { (&mut self.v6, &mut self.v4) } else { (&mut self.v4, &mut self.v6) };
        first.pop_front().or_else(|| second.pop_front())
    }

    fn check_lost(&mut self, now: Instant) {
        let resolving = self.aaaa == Answer::Pending || self.a == Answer::Pending;
        let queued = !self.v6.is_empty() || !self.v4.is_empty() || !self.companions.is_empty();
        if resolving || self.running() > 0 || queued {
            return;
        }
        let error = if self.attempts.is_empty() && !self.excluded.is_empty() {
            RaceError::FamilyExcluded { family: self.config.family, found: self.excluded.clone() }
        } else if self.attempts.is_empty() {
            let err = |a: &Answer| match a {
                Answer::Failed(e) => Some(e.clone()),
                _ => None,
            };
            RaceError::NoAddresses { a: err(&self.a), aaaa: err(&self.aaaa) }
        } else {
            let attempts = self
                .attempts
                .iter()
                .map(|a| Tried {
                    id: a.id,
                    addr: a.addr,
                    protocol: a.protocol,
                    error: a.error.clone().unwrap_or(AttemptError::Other("cancelled".into())),
                })
                .collect();
            RaceError::AllAttemptsFailed { attempts }
        };
        self.finish(now, error);
    }

    fn finish(&mut self, now: Instant, error: RaceError) {
        self.cancel_all_running(now);
        self.events.push_back(Event::Failed { at: now - self.start, error: error.clone() });
        self.outcome = Some(Outcome::Failed(error));
        self.timers = [None; 3];
    }

    fn cancel_all_running(&mut self, now: Instant) {
        for a in &mut self.attempts {
            if matches!(a.state, AttemptState::Running { .. }) {
                a.state = AttemptState::Cancelled;
                self.actions.push_back(Action::CancelAttempt { id: a.id });
                self.events.push_back(Event::AttemptCancelled { id: a.id, at: now - self.start });
            }
        }
    }
}

/// v4-mapped IPv6 addresses are IPv4 addresses (CONN-6).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
