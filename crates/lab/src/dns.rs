//! A scriptable DNS server for the lab: A, AAAA and HTTPS (SVCB) answers for names and
//! wildcards, each record type after its own delay; NXDOMAIN or silence on demand; and
//! `ipv4only.arpa` AAAA answers synthesized from a NAT64 prefix (RFC 7050 §2.2, RFC 6052).
//!
//! It runs on one thread that has entered the namespace (`setns` is per thread), so the socket
//! lives there; the loop wakes at least every 50 ms, and stops when the guard drops.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::svcb::{Alpn, SvcParamKey, SvcParamValue};
use hickory_proto::rr::rdata::{A, AAAA, HTTPS, SVCB};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::{LabError, Namespace};

/// The records for one name (or a `*.zone` wildcard).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// A records.
    pub a: Vec<Ipv4Addr>,
    /// AAAA records.
    pub aaaa: Vec<Ipv6Addr>,
    /// ALPN ids for an HTTPS record (`["h3", "h2"]`); empty means no HTTPS record.
    pub https_alpn: Vec<String>,
}

/// How long the server waits before answering each record type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delays {
    /// Before A answers.
    pub a: Duration,
    /// Before AAAA answers.
    pub aaaa: Duration,
    /// Before HTTPS answers.
    pub https: Duration,
}

/// What the server answers. Change it while the server runs with [`DnsServer::script`].
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Keys are lower-case names without the trailing dot; `*.test` matches every name under
    /// `test` that has no record of its own.
    pub records: BTreeMap<String, Records>,
    /// How long each record type waits.
    pub delays: Delays,
    /// Names answered with NXDOMAIN.
    pub nxdomain: BTreeSet<String>,
    /// Names never answered (the client must time out).
    pub silent: BTreeSet<String>,
    /// A NAT64 /96 prefix: `ipv4only.arpa` AAAA queries get 192.0.0.170 and .171 in it.
    pub nat64_prefix: Option<Ipv6Addr>,
    /// TTL of every answer.
    pub ttl: u32,
}

impl Script {
    /// Answers every `*.test` name with these addresses and no delays.
    pub fn wildcard(a: &[Ipv4Addr], aaaa: &[Ipv6Addr]) -> Self {
        let records = Records { a: a.to_vec(), aaaa: aaaa.to_vec(), https_alpn: Vec::new() };
        Self {
            records: BTreeMap::from([("*.test".to_owned(), records)]),
            ttl: 30,
            ..Self::default()
        }
    }

    fn lookup(&self, name: &str) -> Option<&Records> {
        self.records.get(name).or_else(|| {
            let mut labels = name.splitn(2, '.');
            labels.next();
            labels.next().and_then(|parent| self.records.get(&format!("*.{parent}")))
        })
    }
}

/// One query the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The name asked for.
    pub name: String,
    /// The record type.
    pub kind: RecordType,
}

/// A running server; dropping it stops it.
#[derive(Debug)]
pub struct DnsServer {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Starts a server on `bind` (UDP) inside `ns`. Port 0 picks a free port.
    pub fn start(ns: &Namespace, bind: SocketAddr, script: Script) -> Result<Self, LabError> {
        let socket = crate::in_namespace(ns, move || UdpSocket::bind(bind))??;
        let addr = socket.local_addr()?;
        let script = Arc::new(Mutex::new(script));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, q, st) = (script.clone(), seen.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name(format!("lab-dns-{addr}"))
            .spawn(move || serve(&socket, &s, &q, &st))?;
        Ok(Self { addr, script, seen, stop, thread: Some(thread) })
    }

    /// Where it listens (UDP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The script, to change what the server answers from now on.
    pub fn script(&self) -> MutexGuard<'_, Script> {
        lock(&self.script)
    }

    /// Every query seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.seen).clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[allow(
    clippy::disallowed_methods,
    reason = "lab server: schedules delayed replies on the wall clock"
)]
fn serve(socket: &UdpSocket, script: &Mutex<Script>, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool) {
    let mut pending: Vec<(Instant, Vec<u8>, SocketAddr)> = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        pending.retain(|(due, bytes, to)| {
            if *due > now {
                return true;
            }
            let _ = socket.send_to(bytes, to);
            false
        });
        let next = pending.iter().map(|p| p.0).min();
        let wait = next.map_or(Duration::from_millis(50), |d| d.saturating_duration_since(now));
        let _ = socket.set_read_timeout(Some(
            wait.clamp(Duration::from_micros(200), Duration::from_millis(50)),
        ));
        let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
        let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
        let script = lock(script).clone();
        if let Some(q) = query.queries.first() {
            let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
            lock(seen).push(Seen { name, kind: q.query_type() });
        }
        if let Some((delay, reply)) = answer(&query, &script)
            && let Ok(bytes) = reply.to_vec()
        {
            pending.push((Instant::now() + delay, bytes, from));
        }
    }
}

/// The reply to a query and how long to hold it; `None` to stay silent.
fn answer(query: &Message, script: &Script) -> Option<(Duration, Message)> {
    let id = query.metadata.id;
    let Some(q) = query.queries.first() else {
        return Some((
            Duration::ZERO,
            Message::error_msg(id, OpCode::Query, ResponseCode::FormErr),
        ));
    };
    let qname = q.name().clone();
    let name = qname.to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let mut reply = Message::response(id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.add_query(q.clone());
    if script.silent.contains(&name) {
        return None;
    }
    if script.nxdomain.contains(&name) {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return Some((Duration::ZERO, reply));
    }
    let ttl = script.ttl;
    let kind = q.query_type();
    if name == "ipv4only.arpa" && kind == RecordType::AAAA {
        // RFC 7050 §2.2: the well-known IPv4 addresses 192.0.0.170 and 192.0.0.171,
        // embedded in the /96 prefix (RFC 6052 §2.2).
        if let Some(prefix) = script.nat64_prefix {
            for v4 in [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)] {
                let rdata = RData::AAAA(AAAA(synthesize(prefix, v4)));
                reply.add_answer(Record::from_rdata(qname.clone(), ttl, rdata));
            }
        }
        return Some((script.delays.aaaa, reply));
    }
    let Some(records) = script.lookup(&name) else {
        reply.metadata.response_code = ResponseCode::NXDomain;
        return Some((Duration::ZERO, reply));
    };
    let delay = match kind {
        RecordType::A => {
            for ip in &records.a {
                reply.add_answer(Record::from_rdata(qname.clone(), ttl, RData::A(A(*ip))));
            }
            script.delays.a
        }
        RecordType::AAAA => {
            for ip in &records.aaaa {
                reply.add_answer(Record::from_rdata(qname.clone(), ttl, RData::AAAA(AAAA(*ip))));
            }
            script.delays.aaaa
        }
        RecordType::HTTPS => {
            if !records.https_alpn.is_empty() {
                // RFC 9460 §2.4.3: ServiceMode, priority 1, target "." (the owner name).
                let params = vec![(
                    SvcParamKey::Alpn,
                    SvcParamValue::Alpn(Alpn(records.https_alpn.clone())),
                )];
                let rdata = RData::HTTPS(HTTPS(SVCB::new(1, Name::root(), params)));
                reply.add_answer(Record::from_rdata(qname.clone(), ttl, rdata));
            }
            script.delays.https
        }
        _ => Duration::ZERO,
    };
    Some((delay, reply))
}

/// Embeds an IPv4 address in the last 32 bits of a /96 prefix.
pub fn synthesize(prefix: Ipv6Addr, v4: Ipv4Addr) -> Ipv6Addr {
    let mut o = prefix.octets();
    o[12..].copy_from_slice(&v4.octets());
    Ipv6Addr::from(o)
}

/// Sends one query from inside `ns` and waits for the reply, at most `limit`.
/// Returns the reply, or `None` on timeout.
pub fn query(
    ns: &Namespace,
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    limit: Duration,
) -> Result<Option<Message>, LabError> {
    let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
        .parse()
        .map_err(|_| LabError::Parse { command: "query".into(), why: "bind address".into() })?;
    let socket = crate::in_namespace(ns, move || UdpSocket::bind(bind))??;
    let mut msg = Message::query();
    let qname = Name::from_ascii(name)
        .map_err(|e| LabError::Parse { command: format!("query {name}"), why: e.to_string() })?;
    msg.add_query(hickory_proto::op::Query::query(qname, kind));
    msg.metadata.recursion_desired = true;
    let bytes = msg
        .to_vec()
        .map_err(|e| LabError::Parse { command: format!("query {name}"), why: e.to_string() })?;
    socket.send_to(&bytes, server)?;
    socket.set_read_timeout(Some(limit))?;
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => Message::from_vec(&buf[..n])
            .map(Some)
            .map_err(|e| LabError::Parse { command: format!("query {name}"), why: e.to_string() }),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    fn ask(script: &Script, name: &str, kind: RecordType) -> Option<(Duration, Message)> {
        let mut q = Message::query();
        q.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        answer(&q, script)
    }

    #[test]
    fn wildcard_exact_and_unknown_names() {
        let mut s = Script::wildcard(&[Ipv4Addr::new(198, 51, 100, 2)], &[]);
        s.records.insert(
            "exact.test".into(),
            Records { a: vec![Ipv4Addr::new(203, 0, 113, 9)], ..Records::default() },
        );
        let (_, r) = ask(&s, "Any.Test.", RecordType::A).unwrap();
        assert_eq!(r.answers.len(), 1);
        let (_, r) = ask(&s, "exact.test", RecordType::A).unwrap();
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(203, 0, 113, 9))));
        let (_, r) = ask(&s, "any.test", RecordType::AAAA).unwrap();
        assert!(
            r.answers.is_empty() && r.metadata.response_code == ResponseCode::NoError,
            "NODATA"
        );
        let (_, r) = ask(&s, "elsewhere.example", RecordType::A).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }

    #[test]
    fn delays_nxdomain_silence_https_and_nat64() {
        let mut s = Script::wildcard(&[Ipv4Addr::new(198, 51, 100, 2)], &[]);
        s.delays.aaaa = Duration::from_secs(2);
        s.nxdomain.insert("gone.test".into());
        s.silent.insert("mute.test".into());
        s.records.get_mut("*.test").unwrap().https_alpn = vec!["h3".into(), "h2".into()];
        s.nat64_prefix = Some("64:ff9b::".parse().unwrap());
        assert_eq!(ask(&s, "x.test", RecordType::AAAA).unwrap().0, Duration::from_secs(2));
        assert_eq!(ask(&s, "x.test", RecordType::A).unwrap().0, Duration::ZERO);
        assert_eq!(
            ask(&s, "gone.test", RecordType::A).unwrap().1.metadata.response_code,
            ResponseCode::NXDomain
        );
        assert!(ask(&s, "mute.test", RecordType::A).is_none());
        let (_, r) = ask(&s, "x.test", RecordType::HTTPS).unwrap();
        let RData::HTTPS(h) = &r.answers[0].data else { panic!("{r:?}") };
        assert_eq!(h.0.svc_params[0].1, SvcParamValue::Alpn(Alpn(vec!["h3".into(), "h2".into()])));
        let (_, r) = ask(&s, "ipv4only.arpa", RecordType::AAAA).unwrap();
        let want: Ipv6Addr = "64:ff9b::c000:aa".parse().unwrap();
        assert_eq!(r.answers[0].data, RData::AAAA(AAAA(want)));
    }

    #[test]
    fn a_query_without_a_question_gets_formerr() {
        let q = Message::query();
        let (_, r) = answer(&q, &Script::default()).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    }
}
