//! `nw cat HOST PORT`: the netcat of this system. Connects by racing every address (Happy
//! Eyeballs), then copies stdin to the connection and the connection to stdout as bytes
//! arrive; half-closes on stdin EOF; exits when the peer closes. Reports go to stderr, never
//! mixed with the payload.

use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use anyhow::Context as _;
use nw_connection::Endpoint;
use nw_connection::happy_eyeballs::{Config, Event, FamilyPreference, Protocol};
use nw_connection::tls;
use nw_connection::{
    ConnectError, Parameters, Report, SystemResolver, Transport, connect_udp_observed,
};
use nw_connection::{Connection, State, Update};
use nw_connection::{Keepalive, Mptcp, TcpOptions};
use nw_trust::Identities;
use nw_trust::TrustVerifier;
use tokio::io::AsyncWriteExt;

use crate::Outcome;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 connected (and the peer closed), 1 could not connect, 2 usage, 3 environment."
)]
pub(crate) struct Args {
    /// HOST PORT to connect to; with -l, [ADDR] PORT to listen on (ADDR defaults to [::],
    /// which accepts IPv4 too; PORT 0 picks a free one).
    #[arg(num_args = 1..=2, value_names = ["HOST", "PORT"], required = true)]
    target: Vec<String>,
    /// Listen for one client instead of connecting.
    #[arg(short = 'l', long)]
    listen: bool,
    /// Connect, report, and close without sending or reading data (netcat's -z).
    #[arg(short = 'z', long)]
    zero: bool,
    /// Print the establishment report (queries, every attempt, the winner) on stderr.
    #[arg(long)]
    report: bool,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Use IPv4 only.
    #[arg(short = '4', conflicts_with = "ipv6")]
    ipv4: bool,
    /// Use IPv6 only.
    #[arg(short = '6')]
    ipv6: bool,
    /// Delay between staggered attempts in milliseconds (RFC 8305; clamped to 100–2000).
    #[arg(long, value_name = "MS", default_value_t = 250)]
    attempt_delay_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    timeout: u64,
    /// Connect from this local address (only destinations of its family are tried).
    #[arg(short = 's', long = "source", value_name = "ADDR", conflicts_with = "listen")]
    source: Option<std::net::IpAddr>,
    /// TCP keepalive: probe after this many idle seconds, then every third of it; the
    /// connection fails after 3 unanswered probes.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=32767))]
    keepalive: Option<u32>,
    /// Multipath TCP when the kernel has it (plain TCP when it or the peer does not; --report
    /// says which).
    #[arg(long, conflicts_with_all = ["udp", "quic"])]
    mptcp: bool,
    /// Coalesce small writes (Nagle's algorithm); by default each write goes out at once.
    #[arg(long, conflicts_with_all = ["udp", "quic"])]
    nagle: bool,
    /// Speak TLS over the connection (the system's anchors plus any --anchor).
    #[arg(long, group = "secure")]
    tls: bool,
    /// QUIC (TLS 1.3 built in; needs --alpn): one bidirectional stream carries the bytes.
    /// With -l, listens on UDP and serves the first stream a client opens (a QUIC client's
    /// stream appears when it first sends).
    #[arg(long, group = "secure", requires = "alpn")]
    quic: bool,
    /// UDP instead of TCP: each read from stdin goes out as one datagram, each datagram
    /// received goes to stdout. To a multicast group, it goes out of every usable interface (or
    /// --require-interface's) and every answer to our port is printed. With -l, the first
    /// datagram's sender becomes the peer; with -l and a multicast group as ADDR, the group is
    /// joined and stdin goes to the group, every member's datagrams to stdout.
    #[arg(short = 'u', long, conflicts_with_all = ["tls", "quic"])]
    udp: bool,
    /// With -l -u GROUP PORT: hear only this member of the group (source-specific multicast,
    /// RFC 4607: the network is asked for its datagrams alone).
    #[arg(long, value_name = "ADDR", requires_all = ["listen", "udp"])]
    only_from: Option<std::net::IpAddr>,
    /// With --udp: after stdin ends, exit once nothing has arrived for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, requires = "udp")]
    idle: f64,
    /// ALPN protocols to offer, most preferred first (e.g. h2,http/1.1). With --tls, listing
    /// h3 also asks for the name's HTTPS record and, when it advertises h3, races QUIC (offering
    /// the h3 ids) ahead of TCP (offering the rest).
    #[arg(long, value_name = "LIST", value_delimiter = ',', requires = "secure")]
    alpn: Vec<String>,
    /// Also trust the certificates in this PEM file (repeatable), for the destination with
    /// --tls or --quic, and for an https:// proxy.
    #[arg(long, value_name = "FILE")]
    anchor: Vec<PathBuf>,
    /// The name to send (SNI) and check the certificate for; the host by default.
    #[arg(long, value_name = "NAME", requires = "secure")]
    sni: Option<String>,
    /// A certificate chain (PEM): the client's identity, or with -l the server's.
    #[arg(long, value_name = "FILE", requires_all = ["secure", "key"])]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// With -l: require a client certificate issued under this CA (PEM; mutual TLS). Clients
    /// are told its name as an acceptable CA.
    #[arg(long, value_name = "FILE", requires_all = ["listen", "secure"])]
    client_ca: Vec<PathBuf>,
    #[command(flatten)]
    ct: crate::trust::CtArgs,
    /// Race at once even when the path is not satisfied (by default nw cat waits for a usable
    /// path, within --timeout, and says why it waits).
    #[arg(long)]
    no_wait: bool,
    /// Connect through this proxy: http://[USER:PASSWORD@]HOST[:PORT] (a CONNECT tunnel),
    /// https://… (the same, over TLS with the proxy, checked with the system's anchors and
    /// --anchor's), socks5://… or socks4://… (the destination resolved here), socks5h://… or
    /// socks4a://… (resolved by the proxy); the port is 1080 when absent (443 for https://),
    /// as in curl. TLS runs end to end through the tunnel.
    #[arg(short = 'x', long, value_name = "URL", conflicts_with_all = ["listen", "udp", "quic"])]
    proxy: Option<String>,
    #[command(flatten)]
    conditions: crate::path::ConditionArgs,
}

pub(crate) async fn run(args: Args) -> anyhow::Result<Outcome> {
    let usage = |why: String| anyhow::Error::new(crate::UsageError(why));
    let port = |text: &str| {
        let range = if args.listen { "0–65535, 0 for any free one" } else { "1–65535" };
        text.parse::<u16>().map_err(|_| usage(format!("{text:?} is not a port ({range})")))
    };
    if args.listen {
        let (addr, port) = match args.target.as_slice() {
            [p] => ("::".to_owned(), port(p)?),
            [a, p] => (a.trim_start_matches('[').trim_end_matches(']').to_owned(), port(p)?),
            _ => return Err(usage("give [ADDR] PORT to listen on".into())),
        };
        let ip = match addr.parse::<std::net::IpAddr>() {
            Ok(ip) => ip,
            Err(_) => listen_address(&addr).await.map_err(usage)?,
        };
        let at = std::net::SocketAddr::new(ip, port);
        if ip.is_multicast() {
            return if args.udp {
                group(&args, at, true).await
            } else {
                Err(usage(format!("{ip} is a multicast group, and groups are UDP: add -u")))
            };
        }
        if let Some(member) = args.only_from {
            return Err(usage(format!(
                "--only-from {member} picks a member of a multicast group to hear, and {ip} is \
                 not a group"
            )));
        }
        return if args.udp { listen_udp(&args, at).await } else { listen(&args, at).await };
    }
    let [host, p] = args.target.as_slice() else {
        return Err(usage("give HOST PORT to connect to (or -l [ADDR] PORT to listen)".into()));
    };
    let (host, port) = (host.clone(), port(p)?);
    if args.udp
        && let Ok(ip) =
            host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>()
        && ip.is_multicast()
    {
        if port == 0 {
            return Err(usage(format!("{ip} port 0: a datagram cannot be sent to port 0")));
        }
        return group(&args, std::net::SocketAddr::new(ip, port), false).await;
    }
    let endpoint = Endpoint::new(&host, port).map_err(|e| usage(e.to_string()))?;
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => FamilyPreference::Ipv4Only,
        (_, true) => FamilyPreference::Ipv6Only,
        _ => FamilyPreference::Ipv6,
    };
    let config = Config {
        family,
        attempt_delay: Duration::from_millis(args.attempt_delay_ms),
        timeout: Duration::from_secs(args.timeout.max(1)),
        ..Config::default()
    };
    let resolver = Arc::new(SystemResolver::from_system());
    let (tls, identities) =
        tls_config(&args).map_err(|e| crate::UsageError(crate::output::error_text(&e)))?;
    let conditions = args.conditions.conditions();
    let waiting = |reason: Option<nw_path::Reason>| {
        let why = reason.map_or("the path is not satisfied", |r| r.explain());
        crate::output::error_line(&format!(
            "nw cat: waiting for a usable path (up to {} s): {why}",
            args.timeout
        ));
    };
    let path = (!args.no_wait).then_some(conditions);
    let transport = if args.quic {
        Transport::Quic
    } else if args.tls && args.alpn.iter().any(|a| a.starts_with("h3")) {
        Transport::Auto
    } else {
        Transport::Tcp
    };
    let tcp = TcpOptions {
        nodelay: !args.nagle,
        keepalive: args.keepalive.map(|s| Keepalive::after(Duration::from_secs(s.into()))),
        mptcp: args.mptcp,
    };
    let proxy = match &args.proxy {
        Some(text) => {
            Some(nw_connection::proxy::Proxy::parse(text).map_err(|e| usage(e.to_string()))?)
        }
        None => None,
    };
    let https_proxy = proxy.as_ref().is_some_and(|p| p.kind == nw_connection::proxy::Kind::Https);
    if !args.anchor.is_empty() && !args.tls && !args.quic && !https_proxy {
        return Err(usage(
            "--anchor is for TLS: add --tls (or --quic), or give an https:// --proxy".into(),
        ));
    }
    let params = Parameters {
        race: config,
        transport,
        tls,
        server_name: args.sni.clone(),
        path,
        tcp,
        local: args.source,
        proxy: proxy.clone(),
        proxy_tls: if https_proxy { Some(proxy_tls(&args)?) } else { None },
        local_network: Default::default(),
    };
    if args.udp {
        let idle = idle(&args)?; // a bad --idle is a usage error before any traffic
        // The same establishment as a connection's: its waiting states say why, once each.
        let observe = |state: State| {
            if let State::Waiting { reason } = state {
                waiting(reason);
            }
        };
        return match connect_udp_observed(&host, port, &params, resolver, &observe).await {
            Ok(c) => {
                if args.report || args.json {
                    print_report(&c.report, args.json);
                }
                if args.zero {
                    say_connected(&args, &c.report);
                    return Ok(Outcome::Success);
                }
                Ok(relay_udp(c.socket, idle).await)
            }
            Err(e) => Ok(not_connected(&args, e)),
        };
    }
    let mut conn = Connection::new(endpoint, params, resolver);
    conn.start();
    while let Some(Update::State(state)) = conn.next_update().await {
        match state {
            State::Waiting { reason } => waiting(reason),
            State::Ready | State::Failed { .. } => break,
            _ => {}
        }
    }
    let connected = match conn.ready().await {
        Ok(c) => c,
        Err(e) => return Ok(not_connected(&args, e)),
    };
    if args.report || args.json {
        print_report(&connected.report, args.json);
        print_client_auth(identities.as_ref(), args.json);
    }
    if args.zero {
        say_connected(&args, &connected.report);
        return Ok(Outcome::Success);
    }
    if !(args.report || args.json) {
        return Ok(relay(connected.stream).await);
    }
    tokio::select! {
        outcome = relay(connected.stream) => Ok(outcome),
        () = print_viability(&mut conn, args.json) => unreachable!("it never returns"),
    }
}

/// With --report or --json, while the connection is up: each change of its viability and of
/// a better path, as it happens (a JSON line each with --json).
#[allow(clippy::disallowed_methods, reason = "stamps what it prints")]
async fn print_viability(conn: &mut Connection, json: bool) {
    let since = std::time::Instant::now();
    while let Some(update) = conn.next_update().await {
        let Update::Viability(v) = update else { continue };
        if json {
            let line = serde_json::json!({
                "update": "viability",
                "connection": conn.id(),
                "at": since.elapsed().as_secs_f64() * 1e3,
                "viable": v.viable,
                "why_not": v.why_not,
                "better_path": v.better_path,
            });
            crate::output::error_line(&line.to_string());
            continue;
        }
        let mut text = match v.why_not {
            Some(why) => format!("nw cat: {} is not viable: {}", conn.id(), why.explain()),
            None => format!("nw cat: {} is viable", conn.id()),
        };
        if let Some(better) = &v.better_path {
            text.push_str(&format!("; a better path is available via {better}"));
        }
        crate::output::error_line(&text);
    }
    std::future::pending::<()>().await;
}

/// The address a name to listen on stands for (`localhost`, a name in the hosts file or DNS):
/// its first IPv4 address, else its first IPv6 one.
async fn listen_address(name: &str) -> Result<std::net::IpAddr, String> {
    use nw_connection::happy_eyeballs::Query;
    let resolver = SystemResolver::from_system();
    let (v4, v6) = tokio::join!(resolver.query(name, Query::A), resolver.query(name, Query::Aaaa));
    let found = v4.iter().chain(v6.iter()).flatten().next().copied();
    found.ok_or_else(|| {
        let why = v4.err().or(v6.err()).map_or_else(|| "no address".into(), |e| e.to_string());
        format!(
            "{name:?} is not an address to listen on ({why}); give an IP address or a name with one"
        )
    })
}

/// `-z` without a report: one line on stderr saying what was reached, the way `nc -zv` does
/// ("nw cat: connected to www.test (198.51.100.2) port 8080 over TCP+TLS in 3.1 ms").
fn say_connected(args: &Args, report: &Report) {
    if args.report || args.json {
        return; // the report already says it
    }
    let Some(addr) = report.connected else { return };
    let over = match (report.protocol, &report.tls) {
        (Some(Protocol::Quic), _) => "QUIC",
        (Some(Protocol::Udp), _) => "UDP",
        (_, Some(_)) => "TCP+TLS",
        _ => "TCP",
    };
    let name = if report.host.trim_matches(['[', ']']) == addr.ip().to_string() {
        addr.ip().to_string()
    } else {
        format!("{} ({})", report.host, addr.ip())
    };
    let took = report.ready_after().map(|d| format!(" in {:.1} ms", d.as_secs_f64() * 1e3));
    let line = match &report.proxy {
        Some(proxy) => format!(
            "nw cat: connected to {} port {} through the proxy {proxy} ({addr}) over {over}{}",
            report.host,
            report.port,
            took.unwrap_or_default()
        ),
        None => format!(
            "nw cat: connected to {name} port {} over {over}{}",
            addr.port(),
            took.unwrap_or_default()
        ),
    };
    crate::output::error_line(&line);
}

/// Says why the connection could not be made (with the report when asked for).
fn not_connected(args: &Args, error: ConnectError) -> Outcome {
    match error {
        ConnectError::Race { error, report } => {
            if args.report || args.json {
                print_report(&report, args.json);
            }
            crate::output::error_line(&format!("nw cat: {error}"));
        }
        ConnectError::NoPath { report, .. } if args.report || args.json => {
            print_report(&report, args.json);
            crate::output::error_line("nw cat: no usable path before --timeout");
        }
        ConnectError::LocalNetworkProhibited { ref refused, ref report, .. } => {
            if args.report || args.json {
                print_report(report, args.json);
            }
            crate::output::error_line(&format!("nw cat: {error}"));
            if let Some(first) = refused.first() {
                crate::output::error_line(&format!(
                    "nw cat: `nw lnp allow {}` lets it reach the local network (`nw lnp status` shows the settings)",
                    first.identity
                ));
            }
        }
        other => crate::output::error_line(&format!("nw cat: {other}")),
    }
    Outcome::Negative
}

fn idle(args: &Args) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(args.idle).map_err(|_| {
        anyhow::Error::new(crate::UsageError(format!(
            "--idle {} is not a duration in seconds",
            args.idle
        )))
    })
}

/// What the UDP relay sends with and receives from: a socket connected to its peer, or a
/// multicast group's membership.
trait Datagrams: Send + Sync + 'static {
    fn send(&self, datagram: &[u8]) -> impl Future<Output = std::io::Result<usize>> + Send;
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = std::io::Result<usize>> + Send;
}

impl Datagrams for tokio::net::UdpSocket {
    fn send(&self, datagram: &[u8]) -> impl Future<Output = std::io::Result<usize>> + Send {
        tokio::net::UdpSocket::send(self, datagram)
    }
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = std::io::Result<usize>> + Send {
        tokio::net::UdpSocket::recv(self, buf)
    }
}

impl Datagrams for nw_connection::MulticastGroup {
    fn send(&self, datagram: &[u8]) -> impl Future<Output = std::io::Result<usize>> + Send {
        nw_connection::MulticastGroup::send(self, datagram)
    }
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(self.recv_from(buf).await?.0)
    }
}

/// UDP's relay: each stdin read is one datagram, each datagram received goes to stdout. There
/// is no EOF in UDP: after stdin ends, it exits once nothing has arrived for `idle`. An ICMP
/// port unreachable from the peer ends it with status 1, saying so.
async fn relay_udp(socket: impl Datagrams, idle: Duration) -> Outcome {
    use tokio::io::AsyncReadExt;
    let socket = Arc::new(socket);
    let sender = socket.clone();
    let (done, mut stdin_done) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
    let upload = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 65_507]; // the largest UDP payload over IPv4
        let result = async {
            loop {
                let n = stdin.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                sender.send(&buf[..n]).await?;
            }
        }
        .await;
        let _ = done.send(result);
    });
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 65_535];
    let mut ended = false;
    let outcome = loop {
        let received = if ended {
            match tokio::time::timeout(idle, socket.recv(&mut buf)).await {
                Ok(r) => r,
                Err(_) => break Outcome::Success,
            }
        } else {
            tokio::select! {
                r = socket.recv(&mut buf) => r,
                sent = &mut stdin_done => {
                    ended = true;
                    match sent {
                        Ok(Err(e)) => break udp_failed(&e),
                        _ => continue,
                    }
                }
            }
        };
        match received {
            Ok(n) => {
                if stdout.write_all(&buf[..n]).await.and(stdout.flush().await).is_err() {
                    break Outcome::Negative;
                }
            }
            Err(e) => break udp_failed(&e),
        }
    };
    upload.abort();
    outcome
}

fn udp_failed(e: &std::io::Error) -> Outcome {
    let why = if e.kind() == std::io::ErrorKind::ConnectionRefused {
        "nothing listens on the peer's port (ICMP port unreachable)".to_owned()
    } else {
        format!("the UDP socket failed: {e}")
    };
    crate::output::error_line(&format!("nw cat: {why}"));
    Outcome::Negative
}

/// How many refused UDP senders `-l -u` remembers.
const REFUSED_KEPT: usize = 4096;

/// `-l --udp`: binds, takes the first datagram's sender the app may serve as the peer (local
/// network privacy judges each new sender as the TCP listener judges a peer: a refused one's
/// datagrams are dropped, said once, and the next sender is waited for), then relays as a
/// client.
async fn listen_udp(args: &Args, at: std::net::SocketAddr) -> anyhow::Result<Outcome> {
    let idle = idle(args)?;
    let socket = tokio::net::UdpSocket::bind(at).await.with_context(|| {
        format!("cannot listen on {at} (UDP); is the port free, and the address this host's?")
    })?;
    if args.report || args.json || at.port() == 0 {
        let local = socket.local_addr()?;
        crate::output::error_line(&format!("nw cat: listening on {local} (UDP)"));
    }
    let mut buf = vec![0u8; 65_535];
    let local_network = nw_connection::LocalNetwork::default();
    let mut refused = std::collections::HashSet::new();
    let (n, peer) = loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        if refused.contains(&peer.ip()) {
            continue;
        }
        // The listener's handshake limit bounds the answer (a prompt hook that hangs).
        match local_network.check_peer(peer.ip(), Duration::from_secs(10)).await {
            Ok(()) => break (n, peer),
            Err(e) => {
                crate::output::error_line(&format!(
                    "nw cat: {e}; its datagrams are dropped, waiting for another sender"
                ));
                // Bounded: senders that are spoofed by the thousand cannot grow it for ever
                // (forgotten ones are judged again, and said again).
                if refused.len() >= REFUSED_KEPT {
                    refused.clear();
                }
                refused.insert(peer.ip());
            }
        }
    };
    if args.report || args.json {
        // An IPv4 sender of the dual-stack socket as the IPv4 address it is.
        let shown = std::net::SocketAddr::new(peer.ip().to_canonical(), peer.port());
        crate::output::error_line(&format!("nw cat: datagrams from {shown}"));
    }
    socket.connect(peer).await?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(&buf[..n]).await?;
    stdout.flush().await?;
    Ok(relay_udp(socket, idle).await)
}

/// A multicast group as the address, over UDP, once local network privacy allows it, on every
/// usable interface or the one --require-interface names. With -l (`join`): joins it, then each
/// stdin read goes to the group and every member's datagrams to stdout (members are not judged
/// one by one: the app was allowed the local network to join at all). Without: sends each
/// stdin read to the group from a port of its own, and writes what anyone answers to that
/// port (members answer a query unicast) to stdout.
async fn group(args: &Args, at: std::net::SocketAddr, join: bool) -> anyhow::Result<Outcome> {
    use nw_connection::{GroupError, MulticastGroup};
    let idle = idle(args)?;
    let options = nw_connection::GroupOptions {
        interface: args.conditions.conditions().required_interface,
        source: args.only_from,
        ..Default::default()
    };
    let opened = if join {
        MulticastGroup::join(at, &options).await
    } else {
        MulticastGroup::sender(at, &options).await
    };
    let group = match opened {
        Ok(group) => group,
        Err(e @ GroupError::LocalNetworkProhibited { .. }) => {
            crate::output::error_line(&format!("nw cat: {e}"));
            return Ok(Outcome::Negative);
        }
        Err(e @ GroupError::BadSource { .. }) => {
            return Err(anyhow::Error::new(crate::UsageError(e.to_string())));
        }
        Err(e @ GroupError::NoInterface { .. }) => {
            let hint = match options.interface {
                None => " (name one with --require-interface NAME; `nw path` lists them)",
                Some(_) => " (`nw path` lists the interfaces)",
            };
            crate::output::error_line(&format!("nw cat: {e}{hint}"));
            return Ok(Outcome::Negative);
        }
        Err(e) => return Err(e.into()),
    };
    let port = group.local_addr()?.port();
    let on: Vec<&str> = group.interfaces().iter().map(|j| j.name.as_str()).collect();
    let on = on.join(", ");
    let (ip, group_port) = (at.ip(), at.port());
    if join && (args.report || args.json || group_port == 0) {
        let only = args.only_from.map(|m| format!(" to hear {m} alone")).unwrap_or_default();
        crate::output::error_line(&format!("nw cat: joined {ip}{only} on {on} (UDP port {port})"));
    }
    if !join && (args.report || args.json || args.zero) {
        crate::output::error_line(&format!(
            "nw cat: sending to {ip} port {group_port} on {on} from port {port} (UDP)"
        ));
    }
    if args.zero && !join {
        return Ok(Outcome::Success);
    }
    Ok(relay_udp(group, idle).await)
}

/// Copies stdin to the peer and the peer to stdout; half-closes on stdin EOF; ends when the
/// peer closes, after sending what stdin still holds (up to 500 ms) and closing our side
/// cleanly (TLS close_notify) rather than just vanishing.
async fn relay(stream: Box<dyn nw_connection::Io>) -> Outcome {
    let (mut from_peer, mut to_peer) = tokio::io::split(stream);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let upload = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let sent = tokio::select! {
            sent = tokio::io::copy(&mut stdin, &mut to_peer) => sent,
            _ = &mut stopped => Ok(0),
        };
        let _ = to_peer.shutdown().await; // half-close: the peer sees EOF, can still answer
        sent.err()
    });
    let mut stdout = tokio::io::stdout();
    let copied = tokio::io::copy(&mut from_peer, &mut stdout).await;
    let _ = stdout.flush().await;
    // The peer's EOF may be only a half-close: what stdin already holds still goes out, for at
    // most half a second (an idle terminal must not keep us after the peer is gone); then our
    // side closes cleanly.
    let mut upload = upload;
    let sending = match tokio::time::timeout(Duration::from_millis(500), &mut upload).await {
        Ok(Ok(sending)) => sending,
        _ => {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(1), upload).await;
            None
        }
    };
    // A reset is reported once, to whichever call meets it first: when sending met it, the
    // receiving side then reads an end as if the peer had closed, so it is said from here.
    let reset = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        )
    };
    let failure = match copied {
        Ok(_) => sending.filter(reset),
        // A peer that closes without TLS close_notify (curl, browsers) has still closed.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => sending.filter(reset),
        Err(e) => Some(e),
    };
    match failure {
        None => Outcome::Success,
        Some(e) => {
            crate::output::error_line(&format!("nw cat: the connection failed: {e}"));
            Outcome::Negative
        }
    }
}

/// Listens, serves the first client whose connection (and TLS handshake) completes, and exits
/// when it closes. Clients that open and close, or fail the handshake, are skipped quietly.
async fn listen(args: &Args, at: std::net::SocketAddr) -> anyhow::Result<Outcome> {
    use nw_connection::{Handler, Listener, ListenerConfig};
    // Before anything is written to disk, so a signal at any point still cleans up.
    let interrupted = crate::output::interrupted();
    let mut throwaway = None;
    let secure = args.tls || args.quic;
    let tls = match (secure, &args.cert, &args.key) {
        (false, ..) => None,
        (true, Some(cert), Some(key)) => {
            let chain =
                tls::load_certs(cert).map_err(|e| crate::UsageError(format!("--cert: {e}")))?;
            let key = tls::load_key(key).map_err(|e| crate::UsageError(format!("--key: {e}")))?;
            Some(tls::server_config_verifying(chain, key, &alpn(args), client_verifier(args)?)?)
        }
        (true, ..) => {
            let (config, dir) = throwaway_identity(args, at)?;
            throwaway = Some(dir);
            Some(config)
        }
    };
    // Handshakes run side by side (up to `HANDSHAKES`), so clients that connect and say
    // nothing cannot hold up a real one; the first to complete is served and any other is
    // closed.
    const HANDSHAKES: usize = 16;
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let handler: Handler = Arc::new(move |stream, peer| {
        let _ = tx.try_send((stream, peer));
        Box::pin(async {})
    });
    let config = ListenerConfig { tls, max_connections: HANDSHAKES, ..ListenerConfig::default() };
    let bound = if args.quic {
        Listener::bind_quic(at, config, handler).await
    } else {
        Listener::bind(at, config, handler).await
    };
    let listener = bound.with_context(|| {
        format!("cannot listen on {at}; is the port free, and the address this host's?")
    })?;
    // With port 0 the caller cannot know the port unless we say it.
    if args.report || args.json || at.port() == 0 {
        crate::output::error_line(&format!("nw cat: listening on {}", listener.local_addr()));
    }
    let serve = async {
        let Some((stream, peer)) = rx.recv().await else { return Outcome::Negative };
        if args.report || args.json {
            crate::output::error_line(&format!("nw cat: connection from {peer}"));
        }
        listener.shutdown(Duration::ZERO).await;
        drop(rx); // any other client that completed a handshake is closed
        relay(stream).await
    };
    // A signal ends it too, and the throwaway CA's directory still goes.
    let outcome = tokio::select! {
        outcome = serve => outcome,
        signal = interrupted => Outcome::Exit(signal),
    };
    drop(throwaway);
    Ok(outcome)
}

/// A server identity from a throwaway test CA, for `-l --tls` without --cert: names
/// localhost, the loopback addresses and the listening address. Its root goes to a file whose
/// path is printed, for clients' --anchor.
fn throwaway_identity(
    args: &Args,
    at: std::net::SocketAddr,
) -> anyhow::Result<(Arc<rustls::ServerConfig>, nw_lab::Scratch)> {
    let ca = nw_trust::ca::TestCa::new("nw cat throwaway test CA")?;
    let listen_ip = at.ip().to_string();
    let mut names = vec!["localhost", "127.0.0.1", "::1"];
    if !at.ip().is_unspecified() {
        names.push(&listen_ip);
    }
    let issued = ca.server(&names)?;
    let key = {
        use rustls::pki_types::pem::PemObject as _;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("the throwaway key: {e}"))?
    };
    // The throwaway CA's root is useless once this process is gone: its directory goes with it.
    let dir = nw_lab::Scratch::new("cat")?;
    let root = dir.path().join("root.pem");
    std::fs::write(&root, ca.cert_pem()).with_context(|| format!("writing {}", root.display()))?;
    crate::output::error_line(&format!(
        "nw cat: TLS with a throwaway test CA; clients can trust it with --anchor {}",
        root.display()
    ));
    let config =
        tls::server_config_verifying(issued.chain, key, &alpn(args), client_verifier(args)?)?;
    Ok((config, dir))
}

fn alpn(args: &Args) -> Vec<Vec<u8>> {
    args.alpn.iter().map(|a| a.as_bytes().to_vec()).collect()
}

/// The TLS client configuration the flags ask for. Bad files are usage errors that name them.
/// The identities nw cat offers, when --cert/--key gave one.
type ClientIdentities = Option<Arc<Identities>>;

/// The client's TLS settings: nw-trust as the verifier, and the identity (if any) offered
/// through nw-trust's resolver, which also records what the server asked for.
fn tls_config(
    args: &Args,
) -> anyhow::Result<(Option<Arc<rustls::ClientConfig>>, ClientIdentities)> {
    if !args.tls && !args.quic {
        return Ok((None, None));
    }
    let identities = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = tls::load_certs(cert).context("--cert")?;
            let key = tls::load_key(key).context("--key")?;
            let mut ids = Identities::new();
            ids.add(chain, key, &nw_connection::crypto::provider()).context("--cert/--key")?;
            Some(Arc::new(ids))
        }
        _ => None,
    };
    let trust = crate::trust::options(&args.anchor, &args.ct, true)?;
    let verifier = TrustVerifier::new(trust, nw_connection::crypto::provider());
    let options = tls::ClientOptions {
        verifier: Some(Arc::new(verifier)),
        alpn: alpn(args),
        identities: identities.clone().map(|i| i as Arc<dyn rustls::client::ResolvesClientCert>),
        ..tls::ClientOptions::default()
    };
    Ok((Some(options.config()?), identities))
}

/// TLS with an `https://` proxy: the same anchors (the system's and --anchor's) and CT settings
/// as for the destination, offering http/1.1.
fn proxy_tls(args: &Args) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let trust = crate::trust::options(&args.anchor, &args.ct, true)?;
    let verifier = TrustVerifier::new(trust, nw_connection::crypto::provider());
    let options = tls::ClientOptions {
        verifier: Some(Arc::new(verifier)),
        alpn: vec![b"http/1.1".to_vec()],
        ..tls::ClientOptions::default()
    };
    Ok(options.config()?)
}

/// With --report: whether the server asked for a client certificate, which CAs it accepts,
/// and what was sent.
fn print_client_auth(identities: Option<&Arc<Identities>>, json: bool) {
    let Some(request) = identities.and_then(|i| i.last_request()) else { return };
    if json {
        let line = serde_json::json!({ "client_certificate": request });
        crate::output::error_line(&line.to_string());
        return;
    }
    let cas = if request.acceptable_cas.is_empty() {
        "any CA".to_owned()
    } else {
        request.acceptable_cas.join("; ")
    };
    let sent = request
        .sent
        .map_or_else(|| "none of ours fits, none sent".to_owned(), |n| format!("sent “{n}”"));
    crate::output::error_line(&format!(
        "  the server asked for a client certificate (accepts {cas}): {sent}"
    ));
}

/// With --client-ca: nw-trust judges each client's certificate under the TLS client policy.
fn client_verifier(
    args: &Args,
) -> anyhow::Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>> {
    if args.client_ca.is_empty() {
        return Ok(None);
    }
    let options = nw_trust::Options {
        policy: nw_trust::Policy::Client,
        anchors: crate::trust::custom_anchors(&args.client_ca, "--client-ca")?,
        ct: nw_trust::CtRequirement::Off,
        ..nw_trust::Options::default()
    };
    Ok(Some(Arc::new(TrustVerifier::new(options, nw_connection::crypto::provider()))))
}

fn print_report(report: &Report, json: bool) {
    if json {
        if let Ok(text) = serde_json::to_string(report) {
            crate::output::error_line(&text);
        }
        return;
    }
    let outcome = match (report.winner, report.connected) {
        (Some(w), Some(addr)) => format!("connected to {addr}{} by {w}", over(report.protocol)),
        _ => "not connected".to_owned(),
    };
    crate::output::error_line(&format!(
        "{} {}:{} — {outcome}",
        report.connection, report.host, report.port
    ));
    if let Some(proxy) = &report.proxy {
        let tls = report.proxy_tls.as_ref().map_or_else(String::new, |t| {
            format!(
                ", TLS {} {} with it, certificate valid for {}",
                t.version, t.cipher, t.server_name
            )
        });
        let tunnel = report.tunnel.map_or_else(String::new, |d| {
            format!(", tunnel open after {:.1} ms", d.as_secs_f64() * 1e3)
        });
        crate::output::error_line(&format!("  through the proxy {proxy}{tls}{tunnel}"));
    }
    match report.mptcp {
        Some(Mptcp::Negotiated) => crate::output::error_line("  Multipath TCP in use"),
        Some(Mptcp::FellBack) => {
            crate::output::error_line(
                "  Multipath TCP asked for; the peer answered with plain TCP",
            );
        }
        Some(Mptcp::Unavailable) => {
            crate::output::error_line("  Multipath TCP asked for; this kernel has none: plain TCP");
        }
        None => {}
    }
    if let Some(t) = &report.tls {
        let alpn = t.alpn.as_deref().unwrap_or("none");
        crate::output::error_line(&format!(
            "  TLS {} {}, ALPN {alpn}, certificate valid for {}",
            t.version, t.cipher, t.server_name
        ));
    }
    for step in &report.path {
        let what = match step.reason {
            Some(r) => format!("waiting: {}", r.explain()),
            None => format!("path {:?}", step.status).to_lowercase(),
        };
        crate::output::error_line(&format!("{:>9.1} ms  {what}", step.at.as_secs_f64() * 1e3));
    }
    if !report.path.is_empty() {
        crate::output::error_line(&format!(
            "  (race times below count from the end of the wait, {:.1} ms)",
            report.waited.as_secs_f64() * 1e3
        ));
    }
    // An attempt closed unfinished is an also-ran when another won, else the race's time ran
    // out on it.
    let closed = if report.winner.is_some() {
        "closed (also-ran)"
    } else {
        "closed (the race's time ran out)"
    };
    for e in &report.events {
        let (at, text) = match e {
            Event::Answer { query, at, addresses } => {
                let list: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                (
                    at,
                    format!(
                        "{query:?} answer: {}",
                        if list.is_empty() { "none".into() } else { list.join(" ") }
                    ),
                )
            }
            Event::AnswerFailed { query, at, error } => (at, format!("{query:?} failed: {error}")),
            Event::Services { at, records, quic_port } => {
                let alpn: Vec<&str> =
                    records.iter().flat_map(|r| r.alpn.iter().map(String::as_str)).collect();
                let quic =
                    quic_port.map_or_else(|| "no QUIC".to_owned(), |p| format!("QUIC on port {p}"));
                let what = if records.is_empty() {
                    "no records".to_owned()
                } else {
                    format!("{} record(s), ALPN {}", records.len(), alpn.join(","))
                };
                (at, format!("HTTPS answer: {what}; {quic}"))
            }
            Event::AttemptStarted { id, addr, protocol, at } => {
                (at, format!("{id} connecting to {addr}{}", over(Some(*protocol))))
            }
            Event::AttemptFailed { id, at, error } => (at, format!("{id} failed: {error}")),
            Event::AttemptCancelled { id, at } => (at, format!("{id} {closed}")),
            Event::Won { id, addr, protocol, at } => {
                (at, format!("{id} ready: {addr}{}", over(Some(*protocol))))
            }
            Event::Failed { at, error } => (at, format!("failed: {error}")),
        };
        crate::output::error_line(&format!("{:>9.1} ms  {text}", at.as_secs_f64() * 1e3));
    }
}

/// " over QUIC" / " over UDP"; TCP is the default and goes unsaid.
fn over(protocol: Option<Protocol>) -> &'static str {
    match protocol {
        Some(Protocol::Quic) => " over QUIC",
        Some(Protocol::Udp) => " over UDP",
        _ => "",
    }
}
