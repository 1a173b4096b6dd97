//! Split DNS without systemd-resolved: a small forwarder of ours on loopback that the system's
//! resolv.conf points at while a tunnel has DNS settings. A name under one of the match
//! domains (or any name, when there are none) goes to the tunnel's servers from a socket bound
//! to the tunnel's interface, so it cannot leave any other way; every other name goes to the
//! servers resolv.conf named before, by the ordinary routes.
//!
//! resolv.conf is rewritten in place (it may be a bind mount, as `ip netns exec` makes it), its
//! original kept beside the host's state, and written back when the DNS settings go away, at
//! teardown, or — after a killed host — by [`restore_leftover`] (`nw tunnel down`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// Where the forwarder listens (UDP and TCP): a loopback address of its own, clear of
/// systemd-resolved's 127.0.0.53 and 127.0.0.54.
pub(crate) const LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 78, 53)), 53);
/// How long one server has to answer before the next is asked.
const SERVER_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries in flight at once; more are dropped (the client asks again).
const MAX_IN_FLIGHT: usize = 512;
/// The system's resolv.conf: the one file every resolver on the host reads.
pub(crate) const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The first line of a resolv.conf we wrote.
const MARK: &str = "# written by nw tunnel";

/// Where one query goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Routes {
    /// The tunnel's servers.
    pub(crate) tunnel: Vec<SocketAddr>,
    /// Names under these go to the tunnel (lower case, no trailing dot); empty: every name.
    pub(crate) matches: Vec<String>,
    /// The servers resolv.conf named before.
    pub(crate) upstream: Vec<SocketAddr>,
    /// The tunnel's interface, which tunnel queries are bound to.
    pub(crate) device: String,
}

impl Routes {
    /// Whether `name` goes to the tunnel's servers.
    pub(crate) fn to_tunnel(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.matches.is_empty()
            || self.matches.iter().any(|m| {
                m.is_empty()
                    || name == *m
                    || (name.len() > m.len()
                        && name.ends_with(m.as_str())
                        && name.as_bytes()[name.len() - m.len() - 1] == b'.')
            })
    }
}

/// The question's name of a DNS message (RFC 1035 §4.1.2), as dotted text; `None` when the
/// message is not a query with one well-formed question.
pub(crate) fn question_name(message: &[u8]) -> Option<String> {
    question(message).map(|(name, _)| name)
}

/// The question's name and where the question ends.
fn question(message: &[u8]) -> Option<(String, usize)> {
    let header = message.get(..12)?;
    let is_query = header[2] & 0x80 == 0;
    let questions = u16::from_be_bytes([header[4], header[5]]);
    if !is_query || questions != 1 {
        return None;
    }
    let mut at = 12;
    let mut labels = Vec::new();
    let mut length = 0;
    loop {
        let len = usize::from(*message.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // A pointer or a reserved label type has no place in a query's question.
        if len > 63 {
            return None;
        }
        let label = message.get(at..at + len)?;
        length += len + 1;
        if length > 255 {
            return None;
        }
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += len;
    }
    // The type and class follow.
    message.get(at..at + 4)?;
    Some((if labels.is_empty() { ".".into() } else { labels.join(".") }, at + 4))
}

/// A SERVFAIL answer to `query` (a well-formed one): no server could be asked or none
/// answered, said at once instead of leaving the client to time out.
pub(crate) fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let (_, end) = question(query)?;
    let mut answer = query.get(..end)?.to_vec();
    answer[2] = 0x80 | (query[2] & 0x01); // QR, and the client's RD
    answer[3] = 0x82; // RA, RCODE 2 (server failure)
    answer[6..12].fill(0); // no answer, authority or additional records
    Some(answer)
}

/// The forwarder; dropping it stops it.
pub(crate) struct Forwarder {
    routes: watch::Sender<Arc<Routes>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Forwarder {
    /// Listens on [`LISTEN`] (UDP and TCP) and forwards by `routes`.
    pub(crate) async fn start(routes: Routes) -> io::Result<Self> {
        let context = |e: io::Error| {
            io::Error::new(e.kind(), format!("the DNS forwarder cannot listen on {LISTEN}: {e}"))
        };
        let udp = Arc::new(UdpSocket::bind(LISTEN).await.map_err(context)?);
        let tcp = TcpListener::bind(LISTEN).await.map_err(context)?;
        let (tx, rx) = watch::channel(Arc::new(routes));
        let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let tasks = vec![
            tokio::spawn(serve_udp(udp, rx.clone(), limit.clone())),
            tokio::spawn(serve_tcp(tcp, rx, limit)),
        ];
        Ok(Self { routes: tx, tasks })
    }

    /// Forwards by new routes from now on.
    pub(crate) fn update(&self, routes: Routes) {
        self.routes.send_replace(Arc::new(routes));
    }
}

async fn serve_udp(
    socket: Arc<UdpSocket>,
    routes: watch::Receiver<Arc<Routes>>,
    limit: Arc<Semaphore>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(_) => {
                pause().await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else { continue };
        let query = buf[..n].to_vec();
        let routes = routes.borrow().clone();
        let socket = socket.clone();
        tokio::spawn(async move {
            if let Some(answer) = forward_udp(&query, &routes).await {
                let _ = socket.send_to(&answer, client).await;
            }
            drop(permit);
        });
    }
}

/// A short wait after a failed receive or accept.
#[allow(clippy::disallowed_methods, reason = "backs off a failing socket on the wall clock")]
async fn pause() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The servers a query goes to, and the device to bind to.
fn servers<'a>(query: &[u8], routes: &'a Routes) -> Option<(&'a [SocketAddr], Option<&'a str>)> {
    let name = question_name(query)?;
    Some(if routes.to_tunnel(&name) {
        (&routes.tunnel, Some(routes.device.as_str()))
    } else {
        (&routes.upstream, None)
    })
}

async fn forward_udp(query: &[u8], routes: &Routes) -> Option<Vec<u8>> {
    let (servers, device) = servers(query, routes)?;
    for server in servers {
        let bind: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(socket) = UdpSocket::bind(bind).await else { continue };
        if let Some(d) = device
            && socket.bind_device(Some(d.as_bytes())).is_err()
        {
            continue;
        }
        if socket.connect(server).await.is_err() || socket.send(query).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65_535];
        // Replies that do not answer this query (another ID) are skipped.
        let answer = tokio::time::timeout(SERVER_TIMEOUT, async {
            loop {
                let n = socket.recv(&mut buf).await.ok()?;
                if n >= 2 && buf[..2] == query[..2] {
                    return Some(buf[..n].to_vec());
                }
            }
        })
        .await;
        if let Ok(Some(answer)) = answer {
            return Some(answer);
        }
    }
    servfail(query)
}

async fn serve_tcp(
    listener: TcpListener,
    routes: watch::Receiver<Arc<Routes>>,
    limit: Arc<Semaphore>,
) {
    loop {
        // Out of descriptors (EMFILE) and the like fail at once until something closes:
        // a pause keeps that from spinning.
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                pause().await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else { continue };
        let routes = routes.borrow().clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(SERVER_TIMEOUT * 5, relay_tcp(client, &routes)).await;
            drop(permit);
        });
    }
}

/// Reads one length-prefixed message (RFC 1035 §4.2.2).
async fn read_message(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let len = usize::from(stream.read_u16().await?);
    let mut message = vec![0u8; len];
    stream.read_exact(&mut message).await?;
    Ok(message)
}

async fn write_message(stream: &mut TcpStream, message: &[u8]) -> io::Result<()> {
    let len = u16::try_from(message.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    stream.write_all(&framed).await
}

async fn relay_tcp(mut client: TcpStream, routes: &Routes) -> io::Result<()> {
    loop {
        let query = read_message(&mut client).await?;
        let (servers, device) =
            servers(&query, routes).ok_or_else(|| io::Error::other("not a query"))?;
        let mut answered = false;
        for server in servers {
            let socket = if server.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            if let Some(d) = device {
                socket.bind_device(Some(d.as_bytes()))?;
            }
            let Ok(Ok(mut upstream)) =
                tokio::time::timeout(SERVER_TIMEOUT, socket.connect(*server)).await
            else {
                continue;
            };
            write_message(&mut upstream, &query).await?;
            if let Ok(Ok(answer)) =
                tokio::time::timeout(SERVER_TIMEOUT, read_message(&mut upstream)).await
            {
                write_message(&mut client, &answer).await?;
                answered = true;
                break;
            }
        }
        if !answered {
            if let Some(failed) = servfail(&query) {
                write_message(&mut client, &failed).await?;
            }
            return Ok(());
        }
    }
}

/// The name servers and search domains of a resolv.conf.
pub(crate) fn parse_resolv_conf(text: &str) -> (Vec<SocketAddr>, Vec<String>) {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // A scoped IPv6 address (fe80::1%eth0) is kept without its scope.
                let addr = words.next().and_then(|a| a.split('%').next()?.parse::<IpAddr>().ok());
                servers.extend(addr.map(|a| SocketAddr::new(a, 53)));
            }
            Some("search" | "domain") => search = words.map(String::from).collect(),
            _ => {}
        }
    }
    (servers, search)
}

/// The resolv.conf we write while the forwarder runs.
pub(crate) fn our_resolv_conf(
    interface: &str,
    pid: u32,
    backup: &Path,
    search: &[String],
) -> String {
    let mut s = format!(
        "{MARK} for {interface} (pid {pid}); the original is kept in {}\nnameserver {}\n",
        backup.display(),
        LISTEN.ip()
    );
    if !search.is_empty() {
        s += &format!("search {}\n", search.join(" "));
    }
    s += "options edns0 trust-ad\n";
    s
}

/// Writes `text` over `path` in place (it may be a bind mount, which a rename cannot
/// replace), and syncs it.
fn write_in_place(path: &Path, text: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    io::Write::write_all(&mut f, text.as_bytes())?;
    f.sync_all()
}

/// resolv.conf taken over: the original is written back on [`ResolvConf::restore`].
#[derive(Debug)]
pub(crate) struct ResolvConf {
    backup: PathBuf,
    original: String,
    /// The servers and search domains it named.
    pub(crate) upstream: Vec<SocketAddr>,
    search: Vec<String>,
}

impl ResolvConf {
    /// Keeps the original of [`RESOLV_CONF`] in `backup` and points it at the forwarder.
    pub(crate) fn take(backup: &Path, interface: &str, search: &[String]) -> io::Result<Self> {
        let path = Path::new(RESOLV_CONF);
        let original = std::fs::read_to_string(path).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
        })?;
        if original.starts_with(MARK) {
            return Err(io::Error::other(format!(
                "{} points at a tunnel's DNS forwarder already (another tunnel with DNS, or one that was killed: `nw tunnel down` puts the original back)",
                path.display()
            )));
        }
        if let Some(dir) = backup.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(backup, &original).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot keep {}: {e}", backup.display()))
        })?;
        let (upstream, search_before) = parse_resolv_conf(&original);
        let this = Self { backup: backup.to_owned(), original, upstream, search: search_before };
        this.point(interface, search)?;
        Ok(this)
    }

    /// Rewrites ours with these search domains (the tunnel's first, then the original's).
    pub(crate) fn point(&self, interface: &str, search: &[String]) -> io::Result<()> {
        let mut all: Vec<String> = search.to_vec();
        all.extend(self.search.iter().filter(|s| !search.contains(s)).cloned());
        let text = our_resolv_conf(interface, std::process::id(), &self.backup, &all);
        write_in_place(Path::new(RESOLV_CONF), &text)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot write {RESOLV_CONF}: {e}")))
    }

    /// Writes the original back and forgets the backup.
    pub(crate) fn restore(self) -> io::Result<()> {
        write_in_place(Path::new(RESOLV_CONF), &self.original)?;
        let _ = std::fs::remove_file(&self.backup);
        Ok(())
    }
}

/// A resolv.conf a killed host left pointing at its forwarder: writes `backup` back over
/// [`RESOLV_CONF`] (only if it is still ours) and removes it.
pub(crate) fn restore_leftover(backup: &Path) -> io::Result<()> {
    let path = Path::new(RESOLV_CONF);
    let original = std::fs::read_to_string(backup)?;
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current.starts_with(MARK) {
        write_in_place(path, &original)?;
    }
    std::fs::remove_file(backup)
}

/// The pid named in a resolv.conf we wrote.
pub(crate) fn writer_pid(text: &str) -> Option<u32> {
    let first = text.lines().next()?.strip_prefix(MARK)?;
    let at = first.find("(pid ")? + 5;
    first[at..].split(')').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[&str]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name {
            m.push(u8::try_from(label.len()).unwrap_or(0));
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }

    #[test]
    fn the_question_name_is_read_and_malformed_queries_are_not() {
        assert_eq!(
            question_name(&query(&["www", "corp", "example"])).as_deref(),
            Some("www.corp.example")
        );
        assert_eq!(question_name(&query(&[])).as_deref(), Some("."));
        let q = query(&["www", "corp"]);
        for cut in 0..q.len() {
            assert_eq!(question_name(&q[..cut]), None, "cut at {cut}");
        }
        let mut answer = q.clone();
        answer[2] |= 0x80;
        assert_eq!(question_name(&answer), None, "a response is not a query");
        let mut pointer = q;
        pointer[12] = 0xc0;
        assert_eq!(question_name(&pointer), None);
        let long = query(&["a"; 200]);
        assert_eq!(question_name(&long), None, "longer than 255");
    }

    #[test]
    fn a_servfail_answers_the_question_asked() {
        let q = query(&["www", "corp"]);
        let a = servfail(&q).unwrap_or_default();
        assert_eq!(a[..2], q[..2], "the same ID");
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(a[3] & 0x0f, 2, "SERVFAIL");
        assert_eq!(a[12..], q[12..], "the question");
        assert_eq!(servfail(&q[..14]), None);
    }

    #[test]
    fn names_under_a_match_domain_go_to_the_tunnel() {
        let mut r = Routes {
            tunnel: vec![],
            matches: vec!["corp.example".into()],
            upstream: vec![],
            device: "nwtun0".into(),
        };
        for (name, tunnel) in [
            ("corp.example", true),
            ("WWW.Corp.Example.", true),
            ("a.b.corp.example", true),
            ("notcorp.example", false),
            ("example", false),
            ("corp.example.org", false),
        ] {
            assert_eq!(r.to_tunnel(name), tunnel, "{name}");
        }
        r.matches = vec![String::new()];
        assert!(r.to_tunnel("anything.org"), "\"\" matches every name");
        r.matches.clear();
        assert!(r.to_tunnel("anything.org"), "no match domains: every name");
    }

    #[test]
    fn resolv_conf_is_read_and_ours_names_its_writer() {
        let (servers, search) = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nnameserver bogus\nsearch a.example b.example\n",
        );
        assert_eq!(
            servers,
            [
                "10.0.0.1:53".parse().unwrap_or_else(|_| unreachable!()),
                "[fe80::1]:53".parse().unwrap_or_else(|_| unreachable!())
            ]
        );
        assert_eq!(search, ["a.example", "b.example"]);
        let ours = our_resolv_conf("nwtun0", 42, Path::new("/run/x"), &["corp.example".into()]);
        assert!(ours.contains("nameserver 127.0.78.53\n"), "{ours}");
        assert!(ours.contains("search corp.example\n"), "{ours}");
        assert_eq!(writer_pid(&ours), Some(42));
        assert_eq!(writer_pid("nameserver 1.1.1.1\n"), None);
    }
}
