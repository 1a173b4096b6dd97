//! The `Resolve` seam: what a connection asks about a name — addresses (A, AAAA) and HTTPS
//! service records — and two answers to it: [`SystemResolver`], explicit queries to the
//! system's name servers with the hosts file first and a TTL cache (never getaddrinfo), and
//! [`MemoryResolver`], fixed answers for tests and for applications that know their peers.
//! Service discovery (DNS-SD) and encrypted DNS plug in as further implementations.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query as DnsQuery};
use hickory_proto::rr::Name;
use tokio::net::UdpSocket;

use crate::happy_eyeballs::{Query, QueryError, Service};
use crate::resolve::{self, Cache, SystemConfig};

/// A boxed future, as the seam's methods return them (the trait is object-safe: connections
/// hold an `Arc<dyn Resolve>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Answers a connection's questions about a name. Implementations must be cheap to call
/// repeatedly (the race asks A, AAAA and HTTPS for every connection) and cancel-safe (a race
/// drops the queries it no longer needs).
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// The name's addresses of one family (`Query::A` or `Query::Aaaa`).
    fn query<'a>(
        &'a self,
        name: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Vec<IpAddr>, QueryError>>;

    /// The name's HTTPS (SVCB) records: ALPN ids and ports that let a race try QUIC first.
    fn services<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Service>, QueryError>>;

    /// The network's NAT64 prefix (RFC 7050: the AAAA answer for `ipv4only.arpa`), if any.
    fn nat64_prefix(&self) -> BoxFuture<'_, Option<Ipv6Addr>> {
        Box::pin(async {
            let answer = self.query("ipv4only.arpa", Query::Aaaa).await.ok()?;
            resolve::nat64_prefix(&answer)
        })
    }
}

impl Resolve for SystemResolver {
    fn query<'a>(
        &'a self,
        name: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Vec<IpAddr>, QueryError>> {
        Box::pin(SystemResolver::query(self, name, query))
    }

    fn services<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Service>, QueryError>> {
        Box::pin(SystemResolver::services(self, name))
    }
}

/// Fixed answers held in memory: names with their addresses and HTTPS records. A name it does
/// not hold does not exist (`QueryError::NoSuchName`); an address or service list left empty
/// is an answer with no records. For tests, and for applications that know their peers.
#[derive(Debug, Default, Clone)]
pub struct MemoryResolver {
    names: HashMap<String, Entry>,
}

#[derive(Debug, Default, Clone)]
struct Entry {
    addresses: Vec<IpAddr>,
    services: Vec<Service>,
}

impl MemoryResolver {
    /// One that knows no name.
    pub fn new() -> Self {
        Self::default()
    }

    /// `name` answers with `addresses` (A and AAAA each take their family's).
    #[must_use]
    pub fn with(mut self, name: &str, addresses: &[IpAddr]) -> Self {
        self.names.entry(normalise(name)).or_default().addresses.extend_from_slice(addresses);
        self
    }

    /// `name` has these HTTPS records.
    #[must_use]
    pub fn with_services(mut self, name: &str, services: &[Service]) -> Self {
        self.names.entry(normalise(name)).or_default().services.extend_from_slice(services);
        self
    }

    fn entry(&self, name: &str) -> Result<&Entry, QueryError> {
        self.names.get(&normalise(name)).ok_or(QueryError::NoSuchName)
    }
}

impl Resolve for MemoryResolver {
    fn query<'a>(
        &'a self,
        name: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<Vec<IpAddr>, QueryError>> {
        let found = self.entry(name).map(|e| {
            let want_v4 = query == Query::A;
            e.addresses.iter().copied().filter(|a| a.is_ipv4() == want_v4).collect()
        });
        Box::pin(std::future::ready(found))
    }

    fn services<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<Service>, QueryError>> {
        Box::pin(std::future::ready(self.entry(name).map(|e| e.services.clone())))
    }

    fn nat64_prefix(&self) -> BoxFuture<'_, Option<Ipv6Addr>> {
        Box::pin(std::future::ready(None))
    }
}

/// Names compare without case and without a final dot.
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Explicit A, AAAA and HTTPS queries over UDP to the configured name servers, with the hosts
/// file first and a TTL cache.
#[derive(Debug)]
pub struct SystemResolver {
    config: SystemConfig,
    cache: Mutex<Cache>,
    services: Mutex<Cache<Vec<Service>>>,
}

impl SystemResolver {
    /// A resolver over this configuration (name servers, hosts file, timeouts).
    pub fn new(config: SystemConfig) -> Self {
        Self { config, cache: Mutex::default(), services: Mutex::default() }
    }

    /// The system's configuration, read now.
    pub fn from_system() -> Self {
        Self::new(SystemConfig::from_system())
    }

    /// One address query (A or AAAA): hosts file, cache, then each server in turn, `attempts`
    /// rounds.
    #[allow(clippy::disallowed_methods, reason = "driver: stamps cache entries")]
    pub async fn query(&self, name: &str, query: Query) -> Result<Vec<IpAddr>, QueryError> {
        if let Some(addrs) = self.config.from_hosts(name, query) {
            return Ok(addrs);
        }
        if let Some(addrs) = lock(&self.cache).get(name, query, Instant::now()) {
            return Ok(addrs);
        }
        let (addrs, ttl) = self.ask(name, query, |m| resolve::extract(m, query)).await?;
        lock(&self.cache).put(name, query, addrs.clone(), ttl, Instant::now());
        Ok(addrs)
    }

    /// The name's HTTPS records: none for a name the hosts file lists (it is authoritative).
    #[allow(clippy::disallowed_methods, reason = "driver: stamps cache entries")]
    pub async fn services(&self, name: &str) -> Result<Vec<Service>, QueryError> {
        if self.config.from_hosts(name, Query::Https).is_some() {
            return Ok(Vec::new());
        }
        if let Some(found) = lock(&self.services).get(name, Query::Https, Instant::now()) {
            return Ok(found);
        }
        let (found, ttl) = self.ask(name, Query::Https, resolve::extract_services).await?;
        lock(&self.services).put(name, Query::Https, found.clone(), ttl, Instant::now());
        Ok(found)
    }

    /// Each server in turn, `attempts` rounds, until one gives an answer `extract` accepts.
    async fn ask<T>(
        &self,
        name: &str,
        query: Query,
        extract: impl Fn(&Message) -> Result<(T, Duration), QueryError>,
    ) -> Result<(T, Duration), QueryError> {
        let mut last = QueryError::TimedOut;
        for _ in 0..self.config.attempts {
            for server in &self.config.servers {
                match exchange(*server, name, query, self.config.timeout).await {
                    Ok(reply) => match extract(&reply) {
                        Ok(found) => return Ok(found),
                        Err(QueryError::NoSuchName) => return Err(QueryError::NoSuchName),
                        Err(e) => last = e,
                    },
                    Err(e) => {
                        tracing::debug!(%server, ?query, "query failed: {e}");
                        last = if e.kind() == io::ErrorKind::TimedOut {
                            QueryError::TimedOut
                        } else {
                            QueryError::ServerFailure(e.to_string())
                        };
                    }
                }
            }
        }
        Err(last)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends one query and waits for the matching reply (same id and question).
async fn exchange(
    server: SocketAddr,
    name: &str,
    query: Query,
    limit: Duration,
) -> io::Result<Message> {
    let fqdn = if name.ends_with('.') { name.to_owned() } else { format!("{name}.") };
    let qname = Name::from_ascii(&fqdn)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut msg = Message::query();
    msg.add_query(DnsQuery::query(qname.clone(), resolve::record_type(query)));
    msg.metadata.recursion_desired = true;
    let bytes = msg.to_vec().map_err(|e| io::Error::other(e.to_string()))?;
    let bind: SocketAddr =
        if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(server).await?;
    socket.send(&bytes).await?;
    let id = msg.metadata.id;
    let wait = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = socket.recv(&mut buf).await?;
            // Anything that is not our reply (wrong id, wrong question, garbage) is ignored.
            let Ok(reply) = Message::from_vec(&buf[..n]) else { continue };
            let same_question = reply.queries.first().is_some_and(|q| q.name() == &qname);
            if reply.metadata.id == id && same_question {
                return Ok(reply);
            }
        }
    };
    tokio::time::timeout(limit, wait).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}
