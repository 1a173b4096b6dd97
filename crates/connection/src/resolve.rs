//! The resolver front: explicit A, AAAA and HTTPS queries, sent separately so the race can
//! start on whichever answers first — never `getaddrinfo`, which waits for both.
//!
//! Pure parts live here (hosts and resolv.conf parsing, reply extraction, the TTL cache); the
//! UDP exchange is in [`crate::driver`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};

use crate::happy_eyeballs::{Query, QueryError, Service};

/// What the system's resolver configuration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConfig {
    /// Name servers, in order (port 53).
    pub servers: Vec<SocketAddr>,
    /// Per-try timeout (`options timeout:N`, default 5 s as glibc).
    pub timeout: Duration,
    /// Tries per server (`options attempts:N`, default 2 as glibc).
    pub attempts: u32,
    /// `/etc/hosts` entries: lower-case name → addresses in file order.
    pub hosts: HashMap<String, Vec<IpAddr>>,
}

impl SystemConfig {
    /// Parses resolv.conf and hosts text. Unknown lines are ignored, as the C library does.
    pub fn parse(resolv_conf: &str, hosts: &str) -> Self {
        let mut config = Self {
            servers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
            hosts: parse_hosts(hosts),
        };
        for line in resolv_conf.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) =
                        words.next().and_then(|a| a.split('%').next()?.parse::<IpAddr>().ok())
                    {
                        config.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("options") => {
                    for opt in words {
                        if let Some(n) =
                            opt.strip_prefix("timeout:").and_then(|n| n.parse::<u64>().ok())
                        {
                            config.timeout = Duration::from_secs(n.clamp(1, 30));
                        } else if let Some(n) =
                            opt.strip_prefix("attempts:").and_then(|n| n.parse::<u32>().ok())
                        {
                            config.attempts = n.clamp(1, 5);
                        }
                    }
                }
                _ => {}
            }
        }
        if config.servers.is_empty() {
            // resolv.conf(5): with no nameserver line, the local machine is asked.
            config.servers.push(SocketAddr::from(([127, 0, 0, 1], 53)));
        }
        config
    }

    /// Reads `/etc/resolv.conf` and `/etc/hosts` now (inside `ip netns exec`, the
    /// namespace's own).
    pub fn from_system() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        Self::parse(&read("/etc/resolv.conf"), &read("/etc/hosts"))
    }

    /// The hosts-file answer for an address query, if the name is listed there. A listed name
    /// with no address of the asked family answers empty: the file is authoritative for it (and
    /// so has no HTTPS record either).
    pub fn from_hosts(&self, name: &str, query: Query) -> Option<Vec<IpAddr>> {
        let addrs = self.hosts.get(&normalise(name))?;
        let family = |ip: &&IpAddr| match query {
            Query::Aaaa => ip.is_ipv6(),
            Query::A => ip.is_ipv4(),
            Query::Https => false,
        };
        Some(addrs.iter().filter(family).copied().collect())
    }
}

fn parse_hosts(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else { continue };
        for name in words {
            let entry = map.entry(normalise(name)).or_default();
            if !entry.contains(&ip) {
                entry.push(ip);
            }
        }
    }
    map
}

/// Lower case, without the trailing dot.
pub(crate) fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The record type of a query.
pub(crate) fn record_type(query: Query) -> RecordType {
    match query {
        Query::A => RecordType::A,
        Query::Aaaa => RecordType::AAAA,
        Query::Https => RecordType::HTTPS,
    }
}

/// The addresses and the smallest TTL in a reply, or why there are none to be had.
pub(crate) fn extract(
    reply: &Message,
    query: Query,
) -> Result<(Vec<IpAddr>, Duration), QueryError> {
    collect(reply, |data| match (data, query) {
        (RData::A(a), Query::A) => Some(IpAddr::V4(a.0)),
        (RData::AAAA(a), Query::Aaaa) => Some(IpAddr::V6(a.0)),
        _ => None,
    })
}

/// The HTTPS records in a reply (RFC 9460), as the race reads them, and the smallest TTL.
/// Parameters the race does not use (hints, ECH, mandatory) are left out.
pub(crate) fn extract_services(reply: &Message) -> Result<(Vec<Service>, Duration), QueryError> {
    use hickory_proto::rr::rdata::svcb::SvcParamValue;
    collect(reply, |data| {
        let RData::HTTPS(https) = data else { return None };
        let mut service = Service {
            priority: https.svc_priority,
            target: (!https.target_name.is_root())
                .then(|| normalise(&https.target_name.to_ascii())),
            ..Service::default()
        };
        for (_, value) in &https.svc_params {
            match value {
                SvcParamValue::Alpn(alpn) => service.alpn.clone_from(&alpn.0),
                SvcParamValue::NoDefaultAlpn => service.no_default_alpn = true,
                SvcParamValue::Port(port) => service.port = Some(*port),
                _ => {}
            }
        }
        Some(service)
    })
}

/// The records a reply's answers give, with the smallest TTL; NXDOMAIN and server failures
/// are errors. An empty answer (NODATA) is cached briefly; RFC 2308 would use the SOA minimum.
fn collect<T>(
    reply: &Message,
    mut pick: impl FnMut(&RData) -> Option<T>,
) -> Result<(Vec<T>, Duration), QueryError> {
    match reply.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err(QueryError::NoSuchName),
        code => return Err(QueryError::ServerFailure(code.to_string())),
    }
    let mut ttl = u32::MAX;
    let found: Vec<T> = reply
        .answers
        .iter()
        .filter_map(|r| {
            let item = pick(&r.data)?;
            ttl = ttl.min(r.ttl);
            Some(item)
        })
        .collect();
    let ttl = if found.is_empty() { 30 } else { ttl };
    Ok((found, Duration::from_secs(u64::from(ttl))))
}

/// RFC 7050 §3: the NAT64 prefix from the AAAA answer for `ipv4only.arpa`: an address whose
/// last 32 bits are one of the well-known 192.0.0.170 / 192.0.0.171 gives a /96 prefix (RFC
/// 6052 §2.2). Other prefix lengths are not recognised yet.
pub(crate) fn nat64_prefix(answer: &[IpAddr]) -> Option<std::net::Ipv6Addr> {
    const WELL_KNOWN: [[u8; 4]; 2] = [[192, 0, 0, 170], [192, 0, 0, 171]];
    answer.iter().find_map(|ip| {
        let IpAddr::V6(v6) = ip else { return None };
        let o = v6.octets();
        WELL_KNOWN.iter().any(|w| o[12..] == w[..]).then(|| {
            let mut p = o;
            p[12..].fill(0);
            std::net::Ipv6Addr::from(p)
        })
    })
}

/// An IPv4 address inside a /96 NAT64 prefix (RFC 6052 §2.2).
pub(crate) fn synthesize(prefix: std::net::Ipv6Addr, v4: std::net::Ipv4Addr) -> std::net::Ipv6Addr {
    let mut o = prefix.octets();
    o[12..].copy_from_slice(&v4.octets());
    std::net::Ipv6Addr::from(o)
}

/// Answers by name and query, until their TTL runs out: addresses, or HTTPS records.
#[derive(Debug)]
pub(crate) struct Cache<T = Vec<IpAddr>> {
    entries: HashMap<(String, Query), (Instant, T)>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Self { entries: HashMap::new() }
    }
}

impl<T: Clone> Cache<T> {
    pub(crate) fn get(&self, name: &str, query: Query, now: Instant) -> Option<T> {
        let (expires, found) = self.entries.get(&(normalise(name), query))?;
        (now < *expires).then(|| found.clone())
    }

    pub(crate) fn put(&mut self, name: &str, query: Query, found: T, ttl: Duration, now: Instant) {
        // Bound the cache: drop what has expired before growing past a few thousand names.
        if self.entries.len() > 4096 {
            self.entries.retain(|_, (expires, _)| *expires > now);
        }
        self.entries.insert((normalise(name), query), (now + ttl, found));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::OpCode;
    use hickory_proto::rr::rdata::{A, AAAA};
    use hickory_proto::rr::{Name, Record};

    #[test]
    fn resolv_conf_and_hosts() {
        let c = SystemConfig::parse(
            "# x\nnameserver 198.51.100.2\nnameserver fe80::1%eth0\noptions timeout:1 attempts:3 ndots:2\n",
            "127.0.0.1 localhost\n203.0.113.7 Pinned.Test pin # comment\n2001:db8::7 pinned.test\nbogus line\n",
        );
        assert_eq!(
            c.servers,
            ["198.51.100.2:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]
        );
        assert_eq!((c.timeout, c.attempts), (Duration::from_secs(1), 3));
        assert_eq!(
            c.from_hosts("pinned.test.", Query::A),
            Some(vec!["203.0.113.7".parse().unwrap()])
        );
        assert_eq!(c.from_hosts("PIN", Query::Aaaa), Some(vec![]));
        assert_eq!(
            c.from_hosts("pinned.test", Query::Aaaa),
            Some(vec!["2001:db8::7".parse().unwrap()])
        );
        assert_eq!(c.from_hosts("other.test", Query::A), None);
        let empty = SystemConfig::parse("", "");
        assert_eq!(empty.servers, ["127.0.0.1:53".parse().unwrap()]);
    }

    #[test]
    fn extract_takes_the_asked_type_and_the_smallest_ttl() {
        let name = Name::from_ascii("www.test.").unwrap();
        let mut m = Message::response(1, OpCode::Query);
        m.add_answer(Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, 1))));
        m.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A::new(192, 0, 2, 2))));
        m.add_answer(Record::from_rdata(
            name,
            10,
            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        ));
        let (addrs, ttl) = extract(&m, Query::A).unwrap();
        assert_eq!((addrs.len(), ttl), (2, Duration::from_secs(60)));
        m.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(extract(&m, Query::A), Err(QueryError::NoSuchName));
        m.metadata.response_code = ResponseCode::ServFail;
        assert!(matches!(extract(&m, Query::A), Err(QueryError::ServerFailure(_))));
    }

    #[test]
    fn extract_services_reads_alpn_port_and_target() {
        use hickory_proto::rr::rdata::HTTPS;
        use hickory_proto::rr::rdata::svcb::{Alpn, SVCB, SvcParamKey, SvcParamValue};
        let name = Name::from_ascii("svc.test.").unwrap();
        let mut m = Message::response(1, OpCode::Query);
        let params = vec![
            (SvcParamKey::Alpn, SvcParamValue::Alpn(Alpn(vec!["h3".into(), "h2".into()]))),
            (SvcParamKey::Port, SvcParamValue::Port(8443)),
            (SvcParamKey::NoDefaultAlpn, SvcParamValue::NoDefaultAlpn),
        ];
        let own = SVCB::new(1, Name::root(), params);
        let other = SVCB::new(2, Name::from_ascii("Pool.Test.").unwrap(), vec![]);
        m.add_answer(Record::from_rdata(name.clone(), 120, RData::HTTPS(HTTPS(own))));
        m.add_answer(Record::from_rdata(name.clone(), 60, RData::HTTPS(HTTPS(other))));
        m.add_answer(Record::from_rdata(name, 5, RData::A(A::new(192, 0, 2, 1))));
        let (services, ttl) = extract_services(&m).unwrap();
        assert_eq!(ttl, Duration::from_secs(60), "the A record's TTL is not the services'");
        assert_eq!(
            services,
            [
                Service {
                    priority: 1,
                    target: None,
                    alpn: vec!["h3".into(), "h2".into()],
                    no_default_alpn: true,
                    port: Some(8443),
                },
                Service { priority: 2, target: Some("pool.test".into()), ..Service::default() },
            ]
        );
        assert_eq!(Service::quic_port(&services, 443), Some(8443));
    }

    #[test]
    fn nat64_prefix_discovery_and_synthesis() {
        let answer: Vec<IpAddr> =
            vec!["64:ff9b::c000:aa".parse().unwrap(), "64:ff9b::c000:ab".parse().unwrap()];
        let prefix = nat64_prefix(&answer).unwrap();
        assert_eq!(prefix, "64:ff9b::".parse::<std::net::Ipv6Addr>().unwrap());
        assert_eq!(
            synthesize(prefix, "198.51.100.2".parse().unwrap()),
            "64:ff9b::c633:6402".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(
            nat64_prefix(&["2001:db8::1".parse().unwrap(), "192.0.0.170".parse().unwrap()]),
            None
        );
        let local: Vec<IpAddr> = vec!["2001:db8:64::c000:ab".parse().unwrap()];
        assert_eq!(nat64_prefix(&local), Some("2001:db8:64::".parse().unwrap()));
    }

    #[test]
    #[allow(clippy::disallowed_methods, reason = "a virtual-time origin")]
    fn cache_expires_by_ttl() {
        let t0 = Instant::now();
        let mut c: Cache = Cache::default();
        c.put(
            "WWW.test.",
            Query::A,
            vec!["192.0.2.1".parse().unwrap()],
            Duration::from_secs(5),
            t0,
        );
        assert!(c.get("www.test", Query::A, t0 + Duration::from_secs(4)).is_some());
        assert!(c.get("www.test", Query::Aaaa, t0).is_none());
        assert!(c.get("www.test", Query::A, t0 + Duration::from_secs(5)).is_none());
    }
}
