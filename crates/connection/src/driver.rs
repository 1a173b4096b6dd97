//! The tokio driver: runs the [`Race`] with real DNS queries, TCP sockets and TLS.
//!
//! It owns one future per query and per attempt (polled in place: no spawned tasks, no
//! cross-thread wake-ups) and one timer, and does what the machine asks. Cancelling an attempt
//! drops its future, which closes the socket: no also-ran stays half-open. With TLS, an attempt is ready only when the handshake
//! (and so the certificate check) is done: a path that accepts TCP but never speaks TLS loses.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use serde::Serialize;
use tokio::net::UdpSocket;

use crate::addrsel;
use crate::establish::{self, Establish, PathStep};
use crate::happy_eyeballs::{
    Action, AttemptError, Config, Event, Outcome, Protocol, Query, QueryError, Race, RaceError,
    Service,
};
use crate::id::{AttemptId, ConnectionId};
use crate::resolve;
pub(crate) use crate::resolver::Resolve;
use crate::socket::{Bind, Mptcp, TcpOptions, kernel_source, tcp_connect, udp_socket};
use crate::state::State;
use crate::stream::Io;
use crate::stream::Stack;
use crate::tls::{self, Negotiated, TlsError};

/// The transport each attempt uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// TCP, with TLS on top when `Parameters::tls` is set.
    #[default]
    Tcp,
    /// QUIC (which always carries TLS 1.3: `Parameters::tls` is required, with ALPN).
    Quic,
    /// TLS over TCP, raced against QUIC when the name's HTTPS record advertises `h3`
    /// (`Parameters::tls` is required). QUIC offers the `h3` entries of the ALPN list (`h3` when it
    /// has none); TCP offers the rest.
    Auto,
}

/// What to connect with.
#[derive(Debug, Clone, Default)]
pub struct Parameters {
    /// How the race runs: attempt delay, timeouts, families, concurrency.
    pub race: Config,
    /// TCP (with TLS when `tls` is set), QUIC, or TLS raced against QUIC.
    pub transport: Transport,
    /// Consult the network path first: while it is not satisfied under these conditions, the
    /// connection waits (with the reason) instead of failing, and starts when it is. `None`
    /// races at once whatever the path says.
    pub path: Option<nw_path::Conditions>,
    /// TLS over the TCP connection, when set.
    pub tls: Option<Arc<ClientConfig>>,
    /// The name for SNI and the certificate check; the host by default.
    pub server_name: Option<String>,
    /// Socket options of every TCP attempt.
    pub tcp: TcpOptions,
    /// Bind every attempt to this local address; only destinations of its family are raced.
    pub local: Option<IpAddr>,
    /// Go through this proxy: the race reaches the proxy, which opens a tunnel to the
    /// destination (TCP only; TLS, when set, runs end to end through the tunnel).
    pub proxy: Option<crate::proxy::Proxy>,
    /// TLS with an `https://` proxy itself: what checks its certificate (against the proxy's
    /// name), offering `http/1.1`. `None`: the system's anchors under nw-trust's evaluation.
    pub proxy_tls: Option<Arc<ClientConfig>>,
    /// How local network privacy judges the connection (the app, the store).
    pub local_network: crate::local_network::LocalNetwork,
}

/// What happened while connecting: the race's trace, as reports and logs show it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The connection's id (`C7`), as logs show it.
    pub connection: ConnectionId,
    /// The host asked for: a name or an IP literal.
    pub host: String,
    /// The port asked for.
    pub port: u16,
    /// Every query, answer and attempt, in order.
    pub events: Vec<Event>,
    /// The winning attempt, if any.
    pub winner: Option<AttemptId>,
    /// The address the winner reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<SocketAddr>,
    /// The winner's transport.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// What TLS negotiated, for a TLS connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Negotiated>,
    /// What became of Multipath TCP, when it was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mptcp: Option<Mptcp>,
    /// The path as the connection saw it before racing: each status while waiting.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<PathStep>,
    /// The interface every attempt was bound to (`SO_BINDTODEVICE`): the path's preferred
    /// one, when the conditions excluded others the kernel might otherwise have routed over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The NAT64 prefix used to reach IPv4 destinations from an IPv6-only path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat64: Option<std::net::Ipv6Addr>,
    /// Time spent waiting for a usable path before the race started (ms).
    #[serde(serialize_with = "crate::happy_eyeballs::millis")]
    pub waited: Duration,
    /// How long the winner's TLS handshake took, over TCP (ms); the rest of its time from
    /// start to ready was the TCP handshake.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::happy_eyeballs::millis_opt"
    )]
    pub tls_handshake: Option<Duration>,
    /// The proxy the connection went through (its URL without credentials); `connected` is
    /// then the proxy's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// How long the proxy took to open the tunnel, after the race to it (ms); TLS with the
    /// destination (`tls_handshake`) came after that.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::happy_eyeballs::millis_opt"
    )]
    pub tunnel: Option<Duration>,
    /// What TLS with an `https://` proxy itself negotiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_tls: Option<Negotiated>,
    /// How long TLS with an `https://` proxy took, after the race to it and before the
    /// tunnel (ms).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::happy_eyeballs::millis_opt"
    )]
    pub proxy_tls_handshake: Option<Duration>,
    /// Destinations local network privacy refused: never attempted (the others raced).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub local_network_refused: Vec<crate::local_network::Verdict>,
}

impl Report {
    /// An empty report for connection `id`.
    fn new(id: ConnectionId, host: &str, port: u16) -> Self {
        Self {
            connection: id,
            host: host.to_owned(),
            port,
            events: Vec::new(),
            winner: None,
            connected: None,
            protocol: None,
            tls: None,
            mptcp: None,
            path: Vec::new(),
            interface: None,
            nat64: None,
            waited: Duration::ZERO,
            tls_handshake: None,
            proxy: None,
            tunnel: None,
            proxy_tls: None,
            proxy_tls_handshake: None,
            local_network_refused: Vec::new(),
        }
    }

    /// How long after the race started the connection was ready: the winner's time, and
    /// through a proxy also the tunnel's and TLS's through it, which come after the race.
    pub fn ready_after(&self) -> Option<Duration> {
        let won = self.events.iter().find_map(|e| match e {
            Event::Won { at, .. } => Some(*at),
            _ => None,
        })?;
        let after = match self.proxy {
            Some(_) => {
                self.proxy_tls_handshake.unwrap_or_default()
                    + self.tunnel.unwrap_or_default()
                    + self.tls_handshake.unwrap_or_default()
            }
            None => Duration::ZERO,
        };
        Some(won + after)
    }

    /// One round trip, as the winning attempt's handshake measured it: its time from start to
    /// ready divided by the round trips that handshake takes (TCP 1, TLS 1.3 on top 1 more,
    /// TLS 1.2 2 more; QUIC 1). An estimate for link-quality monitors, not a precise RTT: it
    /// includes the server's handshake work.
    pub fn round_trip(&self) -> Option<Duration> {
        let (protocol, took) = self.winning_attempt()?;
        let trips = match (protocol, self.tls.as_ref().map(|t| t.version.as_str())) {
            // Through a proxy the winner was TCP to the proxy alone; TLS came later.
            _ if self.proxy.is_some() => 1,
            (Protocol::Tcp, Some("TLSv1_3")) => 2,
            (Protocol::Tcp, Some(_)) => 3,
            _ => 1,
        };
        Some(took / trips)
    }

    /// The winning attempt's transport and its time from start to ready.
    fn winning_attempt(&self) -> Option<(Protocol, Duration)> {
        let (id, won, protocol) = self.events.iter().find_map(|e| match e {
            Event::Won { id, at, protocol, .. } => Some((*id, *at, *protocol)),
            _ => None,
        })?;
        let started = self.events.iter().find_map(|e| match e {
            Event::AttemptStarted { id: a, at, .. } if *a == id => Some(*at),
            _ => None,
        })?;
        Some((protocol, won.saturating_sub(started)))
    }

    /// The winner's handshakes: the transport's (TCP; QUIC with its TLS inside) and, over
    /// TCP, TLS's on top of it.
    pub fn handshakes(&self) -> Option<(Duration, Option<Duration>)> {
        let (_, total) = self.winning_attempt()?;
        if self.proxy.is_some() {
            return Some((total, self.tls_handshake)); // TLS was not part of the attempt
        }
        Some((total.saturating_sub(self.tls_handshake.unwrap_or_default()), self.tls_handshake))
    }

    /// How many attempts the race started.
    pub fn attempts(&self) -> usize {
        self.events.iter().filter(|e| matches!(e, Event::AttemptStarted { .. })).count()
    }
}

/// A connected stream and how it was reached.
#[derive(Debug)]
pub struct Connected {
    /// The bytes: TCP, TLS over TCP, or a QUIC stream.
    pub stream: Box<dyn Io>,
    /// How it was reached.
    pub report: Report,
}

/// Why a connection could not be established.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Every address was tried and none connected (or no address was found).
    #[error("could not connect to {}:{}: {error}", crate::endpoint::bracketed(&.report.host), .report.port)]
    Race {
        /// How the race ended.
        error: RaceError,
        /// The race's trace.
        report: Box<Report>,
    },
    /// TLS could not be set up (a bad server name or configuration).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// QUIC was asked for without TLS settings that name an ALPN protocol.
    #[error("QUIC needs TLS settings with at least one ALPN protocol (e.g. --alpn h3)")]
    QuicNeedsTls,
    /// [`Transport::Auto`] was asked for without TLS settings.
    #[error("racing QUIC against TCP needs TLS settings")]
    AutoNeedsTls,
    /// The connection was cancelled before it was ready.
    #[error("the connection was cancelled")]
    Cancelled,
    /// The stream was handed over already.
    #[error("the connection's stream was already handed over by an earlier ready()")]
    Taken,
    /// The proxy could not be reached, TLS with an `https://` proxy failed, it did not open the
    /// tunnel, or TLS through the tunnel failed (`report`: the race to the proxy).
    #[error("could not connect to {}:{port} through the proxy {proxy}: {error}", crate::endpoint::bracketed(.host))]
    Proxy {
        /// The destination's host.
        host: String,
        /// The destination's port.
        port: u16,
        /// The proxy, its URL without credentials.
        proxy: String,
        /// What failed.
        error: ProxyFailure,
        /// The race to the proxy.
        report: Box<Report>,
    },
    /// The path stayed unusable until the race's time limit ran out.
    #[error("could not connect to {}:{}: still waiting for a usable path after {:?} ({})", crate::endpoint::bracketed(&.report.host), .report.port, .waited, .reason.map_or("no reason given", |r| r.explain()))]
    NoPath {
        /// Why the path was unusable, when it said.
        reason: Option<nw_path::Reason>,
        /// How long it waited.
        waited: Duration,
        /// The path as the connection saw it (no attempts).
        report: Box<Report>,
    },
    /// Local network privacy refused every destination (see [`LocalNetwork`](crate::LocalNetwork)): the
    /// path to them is unsatisfied with [`nw_path::Reason::LocalNetworkProhibited`].
    #[error("could not connect to {}:{}: local network prohibited: {}", crate::endpoint::bracketed(&.report.host), .report.port, crate::local_network::explain(.refused, .error.as_deref()))]
    LocalNetworkProhibited {
        /// Each destination refused, with the app, why it is local and what decided.
        refused: Vec<crate::local_network::Verdict>,
        /// Why the permission store could not be read, when that is what refused.
        error: Option<String>,
        /// The race's trace (empty when nothing was attempted).
        report: Box<Report>,
    },
}

impl ConnectError {
    /// Some attempt failed on trust (the server's certificate, or ours refused): trying again
    /// will not help until that changes.
    pub fn untrusted(&self) -> bool {
        match self {
            Self::Race { error: RaceError::AllAttemptsFailed { attempts }, .. } => {
                attempts.iter().any(|t| matches!(t.error, AttemptError::Untrusted(_)))
            }
            Self::Proxy {
                error:
                    ProxyFailure::Tls(AttemptError::Untrusted(_))
                    | ProxyFailure::ProxyTls(AttemptError::Untrusted(_)),
                ..
            } => true,
            _ => false,
        }
    }

    /// Trying again will fail the same way until something changes: the certificate is not
    /// trusted, or the proxy wants other credentials or refuses this destination.
    pub fn lasting(&self) -> bool {
        self.untrusted()
            || matches!(self, Self::LocalNetworkProhibited { .. })
            || matches!(self, Self::Proxy { error: ProxyFailure::Tunnel(t), .. } if t.lasting())
    }

    /// Every address answered with a reset: nothing listens there (the proxy's addresses,
    /// when the proxy could not be reached). A definite answer, unlike a timeout: trying
    /// again at once meets the same one unless a server is being restarted.
    pub fn refused(&self) -> bool {
        matches!(self.race(), Some(RaceError::AllAttemptsFailed { attempts })
            if !attempts.is_empty()
                && attempts.iter().all(|t| matches!(t.error, AttemptError::Refused)))
    }

    /// The name servers answered that the name does not exist or has no addresses (the
    /// proxy's name, when the proxy could not be reached) — a definite answer, unlike a
    /// query that timed out or a server that failed.
    pub fn no_such_name(&self) -> bool {
        let definite = |e: &Option<QueryError>| matches!(e, None | Some(QueryError::NoSuchName));
        matches!(self.race(), Some(RaceError::NoAddresses { a, aaaa }) if definite(a) && definite(aaaa))
    }

    /// How the race ended, the race to the proxy's when the proxy could not be reached.
    fn race(&self) -> Option<&RaceError> {
        match self {
            Self::Race { error, .. } => Some(error),
            Self::Proxy { error: ProxyFailure::Unreachable(inner), .. } => inner.race(),
            _ => None,
        }
    }

    /// The report of what happened, when there is one.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Self::Race { report, .. }
            | Self::NoPath { report, .. }
            | Self::LocalNetworkProhibited { report, .. }
            | Self::Proxy { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// What went wrong with a proxy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyFailure {
    /// The proxy itself could not be reached.
    #[error("the proxy could not be reached: {0}")]
    Unreachable(Box<ConnectError>),
    /// TLS with an `https://` proxy itself failed (its certificate, or the handshake).
    #[error("with the proxy itself, {0}")]
    ProxyTls(AttemptError),
    /// It did not open the tunnel.
    #[error(transparent)]
    Tunnel(#[from] crate::proxy::TunnelError),
    /// TLS with the destination, through the tunnel, failed.
    #[error("{0}")]
    Tls(AttemptError),
    /// QUIC and UDP cannot go through an HTTP or SOCKS tunnel.
    #[error("only TCP goes through a proxy, not QUIC")]
    NotTcp,
}

/// Told each state a connection passes through while it is being established.
pub(crate) type Observer<'a> = dyn Fn(State) + Send + Sync + 'a;

/// What an in-flight future is for, so it can be cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Query(Query),
    Attempt(AttemptId),
}

type InFlight<T> = Vec<(Key, Pin<Box<dyn Future<Output = Input<T>> + Send>>)>;

/// The next finished future, polling each (there are only a handful at a time).
fn next_done<T>(in_flight: &mut InFlight<T>) -> impl Future<Output = Input<T>> + '_ {
    std::future::poll_fn(move |cx| {
        for i in 0..in_flight.len() {
            if let Poll::Ready(out) = in_flight[i].1.as_mut().poll(cx) {
                drop(in_flight.swap_remove(i));
                return Poll::Ready(out);
            }
        }
        Poll::Pending
    })
}

/// What finished: `T` is what a successful attempt yields (a stream, a UDP socket).
enum Input<T> {
    Answer(Query, Result<Vec<IpAddr>, QueryError>),
    Services(Result<Vec<Service>, QueryError>),
    Connected(AttemptId, T, Stack),
    Failed(AttemptId, AttemptError),
}

/// One attempt to an address over a protocol, its socket bound as `Bind` says.
type AttemptFuture<T> = Pin<Box<dyn Future<Output = Result<(T, Stack), AttemptError>> + Send>>;

/// What an attempt tells the race while it runs: that its transport (its TCP connection) is
/// made and a handshake on top of it (TLS) is under way, so that a timeout from then on says
/// the handshake is what did not finish.
#[derive(Debug, Clone)]
struct Progress {
    id: AttemptId,
    tx: tokio::sync::mpsc::UnboundedSender<(AttemptId, Instant)>,
}

impl Progress {
    /// Stamped here, not when the driver gets to it.
    #[allow(clippy::disallowed_methods, reason = "the driver is where the clock is read")]
    fn transport_made(&self) {
        let _ = self.tx.send((self.id, Instant::now()));
    }
}

/// Connects to `host` (a name or an IP literal) and `port`, racing every address; over TLS when
/// `params.tls` is set.
pub async fn connect(
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
) -> Result<Connected, ConnectError> {
    connect_observed(host, port, params, resolver, ConnectionId::next(), &|_| {}).await
}

/// [`connect`] as connection `id`, telling `observe` each state before ready (preparing,
/// waiting with the reason).
pub(crate) async fn connect_observed(
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
    id: ConnectionId,
    observe: &Observer<'_>,
) -> Result<Connected, ConnectError> {
    match &params.proxy {
        Some(proxy) => connect_through(proxy, host, port, params, resolver, (id, observe)).await,
        None => connect_direct(host, port, params, resolver, id, observe).await,
    }
}

/// [`connect_observed`] without a proxy.
async fn connect_direct(
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
    id: ConnectionId,
    observe: &Observer<'_>,
) -> Result<Connected, ConnectError> {
    let mut config = params.race;
    match params.transport {
        Transport::Tcp => config.protocol = Protocol::Tcp,
        Transport::Quic => {
            if params.tls.as_ref().is_none_or(|t| t.alpn_protocols.is_empty()) {
                return Err(ConnectError::QuicNeedsTls);
            }
            config.protocol = Protocol::Quic;
        }
        Transport::Auto => {
            if params.tls.is_none() {
                return Err(ConnectError::AutoNeedsTls);
            }
            config.protocol = Protocol::Tcp;
            config.discover_quic = true;
        }
    }
    let name = match &params.tls {
        Some(_) => Some(tls::server_name(params.server_name.as_deref().unwrap_or(host))?),
        None => None,
    };
    // Each transport's TLS settings: with Auto, QUIC takes the h3 ALPN ids, TCP the others.
    let (tcp_tls, quic_tls) = match (&params.tls, params.transport) {
        (Some(c), Transport::Auto) => split_alpn(c),
        (Some(c), _) => (Some(c.clone()), Some(c.clone())),
        (None, _) => (None, None),
    };
    let tcp_tls = tcp_tls.zip(name.clone());
    let quic_tls = quic_tls.zip(name);
    let options = params.tcp;
    let start_attempt = move |addr: SocketAddr, protocol: Protocol, bind: Bind, progress| {
        let (tcp_tls, quic_tls) = (tcp_tls.clone(), quic_tls.clone());
        let fut: AttemptFuture<Box<dyn Io>> = Box::pin(async move {
            match (protocol, quic_tls) {
                (Protocol::Quic, Some((config, name))) => {
                    let name = name.to_str().into_owned();
                    crate::quic::attempt(addr, config, name, &bind).await
                }
                (Protocol::Quic, None) => {
                    Err(AttemptError::Other("QUIC needs TLS settings".into()))
                }
                // The race asks for the configured protocol (TCP here) or QUIC, never UDP.
                (Protocol::Tcp | Protocol::Udp, _) => {
                    attempt(addr, tcp_tls, &bind, &options, &progress).await
                }
            }
        });
        fut
    };
    let (stream, report) =
        establish(host, port, params, config, resolver, (id, observe), start_attempt).await?;
    Ok(Connected { stream, report })
}

/// Waits for the path (when asked), then runs the race: queries, attempts made by
/// `start_attempt`, the timer; returns what the winning attempt yielded.
#[allow(clippy::disallowed_methods, reason = "the driver is where the clock is read")]
async fn establish<T: Send + 'static>(
    host: &str,
    port: u16,
    params: &Parameters,
    config: Config,
    resolver: Arc<dyn Resolve>,
    (id, observe): (ConnectionId, &Observer<'_>),
    start_attempt: impl Fn(SocketAddr, Protocol, Bind, Progress) -> AttemptFuture<T>,
) -> Result<(T, Report), ConnectError> {
    let mut report = Report::new(id, host, port);
    observe(State::Preparing);
    let options = establish::Options {
        wait: params.path.is_some(),
        limit: config.timeout,
        local: params.local,
    };
    let mut machine = Establish::new(options, Instant::now());
    let conditions = params.path.clone().unwrap_or_default();
    let plan = match prepare(&mut machine, host, &conditions, &*resolver, observe).await {
        Ok(plan) => plan,
        Err((reason, waited, steps)) => {
            report.path = steps;
            report.waited = waited;
            return Err(ConnectError::NoPath { reason, waited, report: Box::new(report) });
        }
    };
    if !plan.steps.is_empty() {
        observe(State::Preparing); // the wait is over
    }
    report.path = plan.steps;
    report.waited = plan.waited;
    report.interface = plan.interface;
    report.nat64 = plan.nat64;
    let bind = Bind { device: report.interface.clone(), local: params.local };
    let nat64 = report.nat64;
    let via_nat64 = |ip: IpAddr| match (ip, nat64) {
        (IpAddr::V4(v4), Some(prefix)) => IpAddr::V6(resolve::synthesize(prefix, v4)),
        _ => ip,
    };
    let mut config = Config { timeout: config.timeout.saturating_sub(report.waited), ..config };
    if let Some(family) = plan.family {
        config.family = family;
    }
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    let limit = tokio::time::Instant::now() + config.timeout.saturating_sub(report.waited);
    let mut gate =
        crate::local_network::Gate::new(&params.local_network, limit, nw_lnp::Direction::Outbound)
            .await;
    let allowed = match literal {
        Some(ip) => gate.address(ip).await,
        None => gate.name(host).await,
    };
    if !allowed {
        return Err(prohibited(gate, report));
    }
    let start = Instant::now();
    let mut race = match literal {
        Some(ip) => Race::with_addresses(id, port, &[via_nat64(ip)], config, start),
        None => Race::new(id, port, config, start),
    };
    let mut in_flight: InFlight<T> = Vec::new();
    let (progress, mut progressed) = tokio::sync::mpsc::unbounded_channel();
    // Only the `Connected` input that has just arrived can win the race, so its stream is kept
    // then; every other connected stream drops (closes) where it arrives.
    let mut won: Option<(T, Stack)> = None;

    let span = tracing::info_span!("connect", id = %id, host, port);
    let _guard = span.enter();

    let result = loop {
        while let Some(action) = race.poll_action() {
            match action {
                Action::Resolve(Query::Https) => {
                    let (resolver, name) = (resolver.clone(), host.to_owned());
                    let fut = async move { Input::Services(resolver.services(&name).await) };
                    in_flight.push((Key::Query(Query::Https), Box::pin(fut)));
                }
                Action::Resolve(query) => {
                    let (resolver, name) = (resolver.clone(), host.to_owned());
                    let fut =
                        async move { Input::Answer(query, resolver.query(&name, query).await) };
                    in_flight.push((Key::Query(query), Box::pin(fut)));
                }
                Action::StartAttempt { id, addr, protocol } => {
                    tracing::debug!(attempt = %id, %addr, ?protocol, "attempt started");
                    let told = Progress { id, tx: progress.clone() };
                    let attempt = start_attempt(addr, protocol, bind.clone(), told);
                    let fut = async move {
                        match attempt.await {
                            Ok((stream, stack)) => Input::Connected(id, stream, stack),
                            Err(e) => Input::Failed(id, e),
                        }
                    };
                    in_flight.push((Key::Attempt(id), Box::pin(fut)));
                }
                Action::CancelAttempt { id } => {
                    tracing::debug!(attempt = %id, "attempt cancelled");
                    in_flight.retain(|(key, _)| *key != Key::Attempt(id));
                }
            }
        }
        while let Some(event) = race.poll_event() {
            report.events.push(event);
        }
        if let (Some((stream, stack)), Some(Outcome::Won { id, addr, protocol })) =
            (won.take(), race.outcome())
        {
            report.winner = Some(*id);
            report.connected = Some(*addr);
            report.protocol = Some(*protocol);
            report.tls = stack.tls;
            report.mptcp = stack.mptcp;
            report.tls_handshake = stack.tls_handshake;
            tracing::info!(attempt = %id, %addr, ?protocol, "connected");
            break Ok(stream);
        }
        if let Some(Outcome::Failed(e)) = race.outcome() {
            break Err(e.clone());
        }
        let deadline = race.poll_timeout();
        tokio::select! {
            input = next_done(&mut in_flight) => match input {
                Input::Answer(q, r) => {
                    let r = match r {
                        Ok(addrs) => Ok(gate.filter(addrs).await),
                        Err(e) => Err(e),
                    };
                    let r = r.map(|addrs| rfc6724_order(addrs.into_iter().map(via_nat64), &bind));
                    race.handle_answer(q, r, Instant::now());
                }
                Input::Services(r) => race.handle_services(r, Instant::now()),
                Input::Connected(id, stream, stack) => {
                    race.handle_attempt_ready(id, Instant::now());
                    if matches!(race.outcome(), Some(Outcome::Won { id: w, .. }) if *w == id) {
                        won = Some((stream, stack));
                    }
                }
                Input::Failed(id, e) => race.handle_attempt_failed(id, e, Instant::now()),
            },
            Some((id, at)) = progressed.recv() => race.handle_attempt_progress(id, at),
            () = sleep_until(deadline) => race.handle_timeout(Instant::now()),
        }
    };
    // Whatever is still in flight (late queries, attempts) is dropped; their sockets close.
    drop(in_flight);
    report.local_network_refused = gate.refused.clone();
    match result {
        Ok(won) => Ok((won, report)),
        // Nothing was attempted because every address was refused: say that, not "no address".
        Err(_) if !gate.refused.is_empty() && report.attempts() == 0 => {
            Err(prohibited(gate, report))
        }
        Err(error) => Err(ConnectError::Race { error, report: Box::new(report) }),
    }
}

/// The error for a connection local network privacy refused; the report's path ends with the
/// reason.
fn prohibited(gate: crate::local_network::Gate, mut report: Report) -> ConnectError {
    report.path.push(PathStep {
        at: report.waited,
        status: nw_path::Status::Unsatisfied,
        reason: Some(nw_path::Reason::LocalNetworkProhibited),
    });
    ConnectError::LocalNetworkProhibited {
        refused: gate.refused,
        error: gate.error,
        report: Box::new(report),
    }
}

/// A QUIC connection (no stream opened yet) and how it was reached.
#[derive(Debug)]
pub struct QuicConnected {
    /// The connection, with no stream opened.
    pub quic: crate::quic::QuicConnection,
    /// How it was reached.
    pub report: Report,
}

/// Connects over QUIC alone to `host` and `port`: the same race as [`connect`] (path wait,
/// NAT64, RFC 6724 order, Happy Eyeballs between addresses), each attempt a QUIC handshake with
/// `params.tls` (which needs ALPN). The connection is handed over with no stream opened, for a
/// protocol that runs many streams (HTTP/3).
pub async fn connect_quic(
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
) -> Result<QuicConnected, ConnectError> {
    let Some(tls) = params.tls.clone().filter(|t| !t.alpn_protocols.is_empty()) else {
        return Err(ConnectError::QuicNeedsTls);
    };
    let name = tls::server_name(params.server_name.as_deref().unwrap_or(host))?;
    let name = name.to_str().into_owned();
    let config = Config { protocol: Protocol::Quic, discover_quic: false, ..params.race };
    let start_attempt = move |addr: SocketAddr, _: Protocol, bind: Bind, _: Progress| {
        let (tls, name) = (tls.clone(), name.clone());
        let fut: AttemptFuture<crate::quic::QuicConnection> =
            Box::pin(async move { crate::quic::handshake(addr, tls, name, &bind).await });
        fut
    };
    let observed: (ConnectionId, &Observer<'_>) = (ConnectionId::next(), &|_| {});
    let (quic, report) =
        establish(host, port, params, config, resolver, observed, start_attempt).await?;
    Ok(QuicConnected { quic, report })
}

/// A UDP socket connected to the chosen address, and how it was chosen.
#[derive(Debug)]
pub struct UdpConnected {
    /// The socket, connected to the chosen address.
    pub socket: UdpSocket,
    /// How the address was chosen.
    pub report: Report,
}

/// "Connects" UDP to `host` and `port`: the same race as [`connect`] (path wait, NAT64,
/// interface binding, RFC 6724 order, the resolution delay), but an attempt is ready as soon as
/// its socket is connected — there is no handshake — so the first address that takes a socket
/// wins, and one without a route fails over at once.
pub async fn connect_udp(
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
) -> Result<UdpConnected, ConnectError> {
    connect_udp_observed(host, port, params, resolver, &|_| {}).await
}

/// [`connect_udp`], telling `observe` each state before ready (preparing, waiting with the
/// reason), as a [`Connection`](crate::connection::Connection) publishes them.
pub async fn connect_udp_observed(
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
    observe: &(dyn Fn(State) + Send + Sync),
) -> Result<UdpConnected, ConnectError> {
    let config = Config { protocol: Protocol::Udp, discover_quic: false, ..params.race };
    let start_attempt = |addr: SocketAddr, _: Protocol, bind: Bind, _: Progress| {
        let fut: AttemptFuture<UdpSocket> = Box::pin(async move {
            udp_attempt(addr, &bind)
                .await
                .map(|s| (s, Stack::default()))
                .map_err(|e| attempt_error(&e))
        });
        fut
    };
    let observed: (ConnectionId, &Observer<'_>) = (ConnectionId::next(), observe);
    let (socket, report) =
        establish(host, port, params, config, resolver, observed, start_attempt).await?;
    Ok(UdpConnected { socket, report })
}

async fn udp_attempt(addr: SocketAddr, bind: &Bind) -> io::Result<UdpSocket> {
    let socket = udp_socket(addr, bind)?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// Carries out the establishment machine: reads the path to `host` from the process's
/// [`PathService`](nw_path::PathService) (no polling) — an IP literal's own route; a name's
/// general path or, when only local networks are reachable, the route of the first of its
/// addresses that has one — feeds it in on every reading, looks up the NAT64 prefix when asked,
/// and returns the plan, or why no path came (reason, time waited, the steps seen).
#[allow(clippy::disallowed_methods, reason = "the driver is where the clock is read")]
async fn prepare(
    machine: &mut Establish,
    host: &str,
    conditions: &nw_path::Conditions,
    resolver: &dyn Resolve,
    observe: &Observer<'_>,
) -> Result<establish::Plan, (Option<nw_path::Reason>, Duration, Vec<PathStep>)> {
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    let mut readings = None;
    loop {
        while let Some(action) = machine.poll_action() {
            match action {
                establish::Action::Wait { reason } => {
                    tracing::info!(?reason, "waiting for a usable path");
                    observe(State::Waiting { reason });
                }
                establish::Action::DiscoverNat64 => {
                    let prefix = resolver.nat64_prefix().await;
                    machine.handle_nat64(prefix, Instant::now());
                }
                establish::Action::Race(plan) => return Ok(plan),
                establish::Action::Fail { reason, waited, steps } => {
                    return Err((reason, waited, steps));
                }
            }
        }
        let subscription = match &mut readings {
            Some(r) => r,
            None => match nw_path::PathService::shared() {
                Ok(service) => readings.insert(service.subscribe()),
                Err(e) => {
                    tracing::debug!("path unknown ({e}); connecting anyway");
                    machine.handle_path(None, Instant::now());
                    continue;
                }
            },
        };
        let deadline = machine.poll_timeout();
        tokio::select! {
            reading = subscription.next() => match reading {
                Ok(reading) => {
                    let path = match literal {
                        Some(ip) => path_for_literal(ip, &reading, conditions),
                        None => {
                            let by = deadline.map_or_else(
                                || tokio::time::Instant::now() + crate::happy_eyeballs::LONGEST,
                                tokio::time::Instant::from_std,
                            );
                            path_for_name(host, &reading, conditions, resolver, by).await
                        }
                    };
                    machine.handle_path(Some(&path), Instant::now());
                }
                Err(e) => {
                    tracing::debug!("path unknown ({e}); connecting anyway");
                    machine.handle_path(None, Instant::now());
                }
            },
            () = sleep_until(deadline) => machine.handle_timeout(Instant::now()),
        }
    }
}

/// The path for an IP literal: its own route; or, for an IPv4 address on an IPv6-only path,
/// the general path, since NAT64 (RFC 8305 §7) may reach it through a synthesized address.
fn path_for_literal(
    ip: IpAddr,
    reading: &nw_path::Reading,
    conditions: &nw_path::Conditions,
) -> nw_path::Path {
    let own = reading.path_for(ip, conditions);
    if own.status == nw_path::Status::Satisfied || !ip.to_canonical().is_ipv4() {
        return own;
    }
    let general = reading.path(conditions);
    let ipv6_only = general.supports_ipv6 && !general.supports_ipv4;
    if general.status == nw_path::Status::Satisfied && ipv6_only { general } else { own }
}

/// The path for a name: the general one when it is satisfied or something other than a missing
/// default route stands in the way; otherwise the path to the first of the name's addresses
/// that has a route (an accessory's own network: no default route, the host on-link).
async fn path_for_name(
    host: &str,
    reading: &nw_path::Reading,
    conditions: &nw_path::Conditions,
    resolver: &dyn Resolve,
    deadline: tokio::time::Instant,
) -> nw_path::Path {
    let general = reading.path(conditions);
    if general.status == nw_path::Status::Satisfied
        || !matches!(general.reason, Some(nw_path::Reason::LocalNetworkOnly))
    {
        return general;
    }
    // The answers land in the resolver's cache, so the race asks nothing twice.
    let lookup = async {
        let (v6, v4) =
            tokio::join!(resolver.query(host, Query::Aaaa), resolver.query(host, Query::A));
        v6.unwrap_or_default().into_iter().chain(v4.unwrap_or_default()).collect::<Vec<_>>()
    };
    let addresses = tokio::time::timeout_at(deadline, lookup).await.unwrap_or_default();
    addresses
        .into_iter()
        .map(|ip| reading.path_for(ip, conditions))
        .find(|p| p.status == nw_path::Status::Satisfied)
        .unwrap_or(general)
}

/// The addresses in RFC 6724 §6 order, each judged with the source address the kernel would
/// pick for it (a connected UDP socket's local address: a route lookup, no packet sent).
/// Destinations without a route go last rather than vanish: their attempts fail fast and say
/// why.
fn rfc6724_order(addrs: impl IntoIterator<Item = IpAddr>, bind: &Bind) -> Vec<IpAddr> {
    let mut candidates: Vec<addrsel::Candidate> =
        addrs.into_iter().map(|ip| addrsel::Candidate::new(ip, kernel_source(ip, bind))).collect();
    addrsel::sort(&mut candidates);
    candidates.into_iter().map(|c| c.destination).collect()
}

type ClientTls = Option<Arc<ClientConfig>>;

/// For a TCP-or-QUIC race: QUIC offers the list's h3 ids (or `h3`), TCP the rest.
fn split_alpn(config: &Arc<ClientConfig>) -> (ClientTls, ClientTls) {
    let (h3, other): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
        config.alpn_protocols.iter().cloned().partition(|p| p.starts_with(b"h3"));
    let with = |alpn: Vec<Vec<u8>>| {
        let mut c = ClientConfig::clone(config);
        c.alpn_protocols = alpn;
        Some(Arc::new(c))
    };
    let h3 = if h3.is_empty() { vec![b"h3".to_vec()] } else { h3 };
    (with(other), with(h3))
}

/// One attempt: TCP, then TLS when asked. Ready means the whole stack is up.
#[allow(clippy::disallowed_methods, reason = "the driver times the TLS handshake")]
async fn attempt(
    addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    bind: &Bind,
    options: &TcpOptions,
    progress: &Progress,
) -> Result<(Box<dyn Io>, Stack), AttemptError> {
    let (tcp, mptcp) = tcp_connect(addr, bind, options).await.map_err(|e| attempt_error(&e))?;
    let Some((config, name)) = tls else {
        return Ok((Box::new(tcp), Stack { mptcp, ..Stack::default() }));
    };
    progress.transport_made();
    let (stream, negotiated, took) = tls_client(tcp, config, name).await?;
    Ok((stream, Stack { tls: Some(negotiated), mptcp, tls_handshake: Some(took) }))
}

/// A TLS client handshake over `stream`: the TLS stream, what was negotiated, how long it took.
#[allow(clippy::disallowed_methods, reason = "the driver times the handshake")]
async fn tls_client<S: Io + 'static>(
    stream: S,
    config: Arc<ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
) -> Result<(Box<dyn Io>, Negotiated, Duration), AttemptError> {
    let shown = name.to_str().into_owned();
    let started = Instant::now();
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| tls_failure(&e))?;
    let (_, conn) = stream.get_ref();
    let negotiated = Negotiated {
        version: conn.protocol_version().map_or_else(|| "unknown".into(), |v| format!("{v:?}")),
        cipher: conn
            .negotiated_cipher_suite()
            .map_or_else(|| "unknown".into(), |c| format!("{:?}", c.suite())),
        alpn: conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
        server_name: shown,
        resumed: Some(conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)),
    };
    Ok((Box::new(stream), negotiated, started.elapsed()))
}

/// [`connect_observed`] through `proxy`: the race to the proxy (under the same path
/// conditions, binding and timeout), the tunnel to `host:port`, then TLS with `host` through
/// it when `params.tls` is set — all within the race's timeout.
#[allow(clippy::disallowed_methods, reason = "the driver keeps the connection's time limit")]
async fn connect_through(
    proxy: &crate::proxy::Proxy,
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
    (id, observe): (ConnectionId, &Observer<'_>),
) -> Result<Connected, ConnectError> {
    use crate::proxy::{Kind, SocksTarget, TunnelError};
    let started = Instant::now();
    let failed = |error: ProxyFailure, report: Report| ConnectError::Proxy {
        host: host.to_owned(),
        port,
        proxy: proxy.shown(),
        error,
        report: Box::new(report),
    };
    let tls = match (&params.tls, params.transport) {
        (_, Transport::Quic) => {
            return Err(failed(ProxyFailure::NotTcp, Report::new(id, host, port)));
        }
        (Some(c), Transport::Auto) => split_alpn(c).0,
        (tls, _) => tls.clone(),
    };
    let name = match &tls {
        Some(_) => Some(tls::server_name(params.server_name.as_deref().unwrap_or(host))?),
        None => None,
    };
    let Connected { mut stream, mut report } =
        reach_proxy(proxy, host, port, params, resolver.clone(), (id, observe)).await?;
    let opening = Instant::now();
    let limit = params.race.timeout.saturating_sub(started.elapsed());
    let credentials = proxy.credentials.as_ref();
    let tunnel = async {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let target = |remote_names, v4_only| async move {
            Ok::<_, TunnelError>(match bare.parse::<IpAddr>() {
                Ok(ip) => SocksTarget::Address(ip),
                Err(_) if remote_names => SocksTarget::Name(host.to_owned()),
                Err(_) => SocksTarget::Address(resolve_one(host, &*resolver, v4_only).await?),
            })
        };
        match proxy.kind {
            Kind::Http | Kind::Https => {
                crate::proxy::http_connect(&mut stream, host, port, credentials).await
            }
            Kind::Socks4 { remote_names } => {
                let target = target(remote_names, true).await?;
                let user = credentials.map(|c| c.user.as_str());
                crate::proxy::socks4_connect(&mut stream, &target, port, user).await?;
                Ok(Vec::new())
            }
            Kind::Socks5 { remote_names } => {
                let target = target(remote_names, false).await?;
                crate::proxy::socks5_connect(&mut stream, &target, port, credentials).await?;
                Ok(Vec::new())
            }
        }
    };
    let opened = match tokio::time::timeout(limit, tunnel).await {
        Ok(opened) => opened,
        Err(_) => Err(TunnelError::TimedOut(params.race.timeout)),
    };
    report.tunnel = Some(opening.elapsed());
    let early = match opened {
        Ok(early) => early,
        Err(e) => return Err(failed(ProxyFailure::Tunnel(e), report)),
    };
    // The destination's first words, when it spoke first, stay in front of the stream.
    let stream: Box<dyn Io> = if early.is_empty() {
        stream
    } else {
        Box::new(crate::proxy::Prefixed::new(early, stream))
    };
    tracing::info!(proxy = %proxy, host, port, "tunnel open");
    let (Some(config), Some(name)) = (tls, name) else {
        return Ok(Connected { stream, report });
    };
    let limit = params.race.timeout.saturating_sub(started.elapsed());
    let secured = match tokio::time::timeout(limit, tls_client(stream, config, name)).await {
        Ok(secured) => secured,
        Err(_) => Err(AttemptError::Tls(format!(
            "the TLS handshake through the tunnel did not finish within {:?}",
            params.race.timeout
        ))),
    };
    match secured {
        Ok((stream, negotiated, took)) => {
            report.tls = Some(negotiated);
            report.tls_handshake = Some(took);
            Ok(Connected { stream, report })
        }
        Err(e) => Err(failed(ProxyFailure::Tls(e), report)),
    }
}

/// Reaches `proxy` for a connection to `host:port` and goes no further: the race to the proxy
/// under `params`' path conditions, binding and timeout, without TLS. The stream is to the
/// proxy; the report names the destination and the proxy. For an HTTP layer that sends
/// plain-HTTP requests to the proxy itself (the absolute form) instead of through a tunnel;
/// [`connect`] with `Parameters::proxy` set goes on to open the tunnel.
pub async fn connect_proxy(
    proxy: &crate::proxy::Proxy,
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
) -> Result<Connected, ConnectError> {
    reach_proxy(proxy, host, port, params, resolver, (ConnectionId::next(), &|_| {})).await
}

/// [`connect_proxy`] as connection `id`, telling `observe` its states.
#[allow(clippy::disallowed_methods, reason = "TLS with the proxy keeps the race's time limit")]
async fn reach_proxy(
    proxy: &crate::proxy::Proxy,
    host: &str,
    port: u16,
    params: &Parameters,
    resolver: Arc<dyn Resolve>,
    (id, observe): (ConnectionId, &Observer<'_>),
) -> Result<Connected, ConnectError> {
    let to_proxy = Parameters {
        transport: Transport::Tcp,
        tls: None,
        server_name: None,
        proxy: None,
        ..params.clone()
    };
    let started = Instant::now();
    let mut connected =
        match connect_direct(&proxy.host, proxy.port, &to_proxy, resolver, id, observe).await {
            Ok(mut c) => {
                c.report.proxy = Some(proxy.shown());
                c.report.host = host.to_owned();
                c.report.port = port;
                c
            }
            Err(e) => {
                return Err(ConnectError::Proxy {
                    host: host.to_owned(),
                    port,
                    proxy: proxy.shown(),
                    report: Box::new(
                        e.report().cloned().unwrap_or_else(|| Report::new(id, host, port)),
                    ),
                    error: ProxyFailure::Unreachable(Box::new(e)),
                });
            }
        };
    if proxy.kind != crate::proxy::Kind::Https {
        return Ok(connected);
    }
    // TLS with the proxy itself, checked against the proxy's name, within the same time limit.
    let failed = |error: AttemptError, report: Report| ConnectError::Proxy {
        host: host.to_owned(),
        port,
        proxy: proxy.shown(),
        error: ProxyFailure::ProxyTls(error),
        report: Box::new(report),
    };
    let config = match &params.proxy_tls {
        Some(config) => config.clone(),
        None => match default_proxy_tls() {
            Ok(config) => config,
            Err(e) => return Err(failed(AttemptError::Tls(e.to_string()), connected.report)),
        },
    };
    let name = tls::server_name(&proxy.host)?;
    let limit = params.race.timeout.saturating_sub(started.elapsed());
    let secured =
        match tokio::time::timeout(limit, tls_client(connected.stream, config, name)).await {
            Ok(secured) => secured,
            Err(_) => Err(AttemptError::Tls(format!(
                "the handshake did not finish within {:.1?} (is it an https:// proxy?)",
                params.race.timeout
            ))),
        };
    match secured {
        Ok((stream, negotiated, took)) => {
            connected.stream = stream;
            connected.report.proxy_tls = Some(negotiated);
            connected.report.proxy_tls_handshake = Some(took);
            Ok(connected)
        }
        Err(AttemptError::Tls(e)) if e.ends_with(PLAIN_TEXT) => Err(failed(
            AttemptError::Tls(format!("{e} (is it an https:// proxy?)")),
            connected.report,
        )),
        Err(e) => Err(failed(e, connected.report)),
    }
}

/// TLS with an `https://` proxy when the parameters give none: the system's anchors under
/// nw-trust's evaluation, offering `http/1.1` (a CONNECT tunnel is HTTP/1.1 here). Made once,
/// so that handshakes with the proxy can resume.
fn default_proxy_tls() -> Result<Arc<ClientConfig>, TlsError> {
    static CONFIG: std::sync::OnceLock<Arc<ClientConfig>> = std::sync::OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let config = tls::ClientOptions {
        system_anchors: true,
        alpn: vec![b"http/1.1".to_vec()],
        ..tls::ClientOptions::default()
    }
    .config()?;
    Ok(CONFIG.get_or_init(|| config).clone())
}

/// One address for `host` (IPv6 first, as RFC 6724 prefers it by default; IPv4 only for
/// SOCKS4), for a SOCKS proxy that is sent addresses, not names (`socks5://`, `socks4://`):
/// there is one tunnel, so no race.
async fn resolve_one(
    host: &str,
    resolver: &dyn Resolve,
    v4_only: bool,
) -> Result<IpAddr, crate::proxy::TunnelError> {
    let mut why = Vec::new();
    let queries: &[Query] = if v4_only { &[Query::A] } else { &[Query::Aaaa, Query::A] };
    for &query in queries {
        match resolver.query(host, query).await {
            Ok(addrs) if !addrs.is_empty() => return Ok(addrs[0]),
            Ok(_) => {}
            Err(e) => why.push(e.to_string()),
        }
    }
    let why = if why.is_empty() {
        if v4_only { "no IPv4 addresses" } else { "no addresses" }.to_owned()
    } else {
        why.join("; ")
    };
    let (version, remote) =
        if v4_only { ("SOCKS4", "socks4a://") } else { ("SOCKS5", "socks5h://") };
    Err(crate::proxy::TunnelError::Resolve(format!(
        "{host} could not be resolved here to send its address to the {version} proxy ({why}); use {remote} to let the proxy resolve it"
    )))
}

/// A TLS handshake failure in words. A verifier's own error (nw-trust's per-certificate
/// report) is shown as it renders itself, not as rustls's debug form.
fn tls_failure(e: &io::Error) -> AttemptError {
    use rustls::{AlertDescription as Alert, CertificateError, Error};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(CertificateError::Other(other))) => {
            AttemptError::Untrusted(format!("the certificate is not trusted: {}", other.0))
        }
        Some(Error::InvalidCertificate(_)) => {
            AttemptError::Untrusted(format!("the certificate is not trusted: {e}"))
        }
        // The server's word on our certificate (RFC 8446 §6.2): refused, or required and absent.
        Some(Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::CertificateRequired,
        )) => AttemptError::Untrusted(format!("the server refused our certificate: {e}")),
        // A peer that speaks plain HTTP answers the ClientHello with an HTTP error: rustls
        // reads its first byte ('H') as a record type it does not know.
        Some(Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            AttemptError::Tls(format!("{e}: {PLAIN_TEXT}"))
        }
        _ => AttemptError::Tls(e.to_string()),
    }
}

/// What a TLS failure says when the peer answered in plain text.
const PLAIN_TEXT: &str = "it answered in plain text, not TLS";

fn attempt_error(e: &io::Error) -> AttemptError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => AttemptError::Refused,
        io::ErrorKind::ConnectionReset => AttemptError::Reset,
        io::ErrorKind::HostUnreachable => AttemptError::HostUnreachable,
        io::ErrorKind::NetworkUnreachable => AttemptError::NetworkUnreachable,
        io::ErrorKind::TimedOut => AttemptError::TimedOut,
        _ => AttemptError::Other(e.to_string()),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refused and no-such-name are told from a timeout, directly and through a proxy that
    /// could not be reached.
    #[test]
    fn a_refusal_and_a_missing_name_are_told_from_failures_that_may_pass() {
        let id = ConnectionId(1);
        let race =
            |error| ConnectError::Race { error, report: Box::new(Report::new(id, "h.test", 80)) };
        let through_proxy = |inner| ConnectError::Proxy {
            host: "h.test".into(),
            port: 80,
            proxy: "http://p.test:3128".into(),
            error: ProxyFailure::Unreachable(Box::new(inner)),
            report: Box::new(Report::new(id, "p.test", 3128)),
        };
        let tried = |n, error| crate::happy_eyeballs::Tried {
            id: id.attempt(n),
            addr: "192.0.2.1:80".parse().unwrap(),
            protocol: Protocol::Tcp,
            error,
        };
        let refused = || RaceError::AllAttemptsFailed {
            attempts: vec![tried(1, AttemptError::Refused), tried(2, AttemptError::Refused)],
        };
        assert!(race(refused()).refused() && through_proxy(race(refused())).refused());
        let mixed = RaceError::AllAttemptsFailed {
            attempts: vec![tried(1, AttemptError::Refused), tried(2, AttemptError::TimedOut)],
        };
        assert!(!race(mixed).refused(), "one address may answer later");
        assert!(!race(RaceError::AllAttemptsFailed { attempts: vec![] }).refused());

        let missing = || RaceError::NoAddresses { a: Some(QueryError::NoSuchName), aaaa: None };
        assert!(race(missing()).no_such_name() && through_proxy(race(missing())).no_such_name());
        let unanswered = RaceError::NoAddresses {
            a: Some(QueryError::NoSuchName),
            aaaa: Some(QueryError::TimedOut),
        };
        assert!(!race(unanswered).no_such_name(), "a query that timed out may be answered");
        let timed_out = RaceError::TimedOut { limit: Duration::from_secs(1), running: Vec::new() };
        assert!(!race(timed_out).refused());
    }

    #[test]
    fn answers_are_sorted_by_rfc6724_with_the_kernels_source_addresses() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        // Rule 6: ::1 (precedence 50) before IPv4 (::ffff:0:0/96, precedence 35).
        assert_eq!(rfc6724_order([v4, v6], &Bind::default()), [v6, v4]);
        assert_eq!(rfc6724_order([v6, v4], &Bind::default()), [v6, v4]);
    }

    #[test]
    fn handshakes_that_fail_on_trust_are_told_apart_from_other_tls_failures() {
        use rustls::{AlertDescription as Alert, CertificateError, Error};
        let failed = |e: Error| tls_failure(&io::Error::new(io::ErrorKind::InvalidData, e));
        let unknown = failed(Error::InvalidCertificate(CertificateError::UnknownIssuer));
        assert!(matches!(&unknown, AttemptError::Untrusted(m) if m.contains("UnknownIssuer")));
        assert!(unknown.to_string().starts_with("TLS: the certificate is not trusted"));
        let refused = failed(Error::AlertReceived(Alert::CertificateRequired));
        assert!(matches!(refused, AttemptError::Untrusted(_)), "{refused}");
        let other = failed(Error::AlertReceived(Alert::HandshakeFailure));
        assert!(matches!(other, AttemptError::Tls(_)), "{other}");
        let reset = tls_failure(&io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(reset, AttemptError::Tls(_)), "{reset}");
    }
}
