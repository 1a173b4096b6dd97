//! The host name a flow's first bytes name: a TLS ClientHello's server name (RFC 8446 §4.1.2,
//! RFC 6066 §3) or an HTTP/1 request's `Host` header (RFC 9112 §3.2). Input from the network,
//! often cut short by the peek: every length is checked, what does not parse is `None`, and
//! only a plausible DNS name (at most 253 bytes of labels of letters, digits, `-` and `_`) is
//! returned, in lower case.

/// The name in a TLS ClientHello or an HTTP request at the start of `data`, if any.
pub fn host_name(data: &[u8]) -> Option<String> {
    match data.first()? {
        0x16 => server_name(data),
        b'A'..=b'Z' => http_host(data),
        _ => None,
    }
}

/// The most addresses one DNS answer names (a name with more is a load balancer's list).
const MAX_ADDRESSES: usize = 64;

/// The addresses a DNS answer (a UDP payload from port 53) gives for the name asked, with that
/// name: the name the program asked for, not the end of a CNAME chain, since that is the name
/// it will connect to (and send as its server name). Nothing when it is not a successful
/// answer with one question.
pub(crate) fn dns_answers(payload: &[u8]) -> Vec<(std::net::IpAddr, String)> {
    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::RData;
    let Ok(message) = Message::from_vec(payload) else { return Vec::new() };
    if message.metadata.message_type != MessageType::Response
        || message.metadata.response_code != ResponseCode::NoError
    {
        return Vec::new();
    }
    let [question] = message.queries.as_slice() else { return Vec::new() };
    let Some(name) = dns_name(question.name().to_ascii().as_bytes()) else { return Vec::new() };
    message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(std::net::IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(std::net::IpAddr::V6(a.0)),
            _ => None,
        })
        .take(MAX_ADDRESSES)
        .map(|ip| (ip, name.clone()))
        .collect()
}

/// The server name of a ClientHello carried in TLS handshake records, as far as `data` goes.
pub fn server_name(data: &[u8]) -> Option<String> {
    // The handshake message may be split over several records: join their fragments.
    let mut hello = Vec::new();
    let mut rest = data;
    while rest.len() >= 5 && rest[0] == 0x16 {
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        let end = (5 + len).min(rest.len());
        hello.extend_from_slice(&rest[5..end]);
        rest = &rest[end..];
        if end < 5 + len {
            break;
        }
    }
    // Handshake header: type 1 (client_hello), a 3-byte length.
    let mut r = Reader(hello.get(..)?);
    if r.u8()? != 1 {
        return None;
    }
    r.skip(3)?;
    r.skip(2 + 32)?; // legacy_version, random
    let n = usize::from(r.u8()?);
    r.skip(n)?; // legacy_session_id
    let n = usize::from(r.u16()?);
    r.skip(n)?; // cipher_suites
    let n = usize::from(r.u8()?);
    r.skip(n)?; // legacy_compression_methods
    let _extensions_len = r.u16()?;
    // The extensions as far as they arrived; a cut-off one ends the walk.
    loop {
        let kind = r.u16()?;
        let len = usize::from(r.u16()?);
        let body = r.take(len)?;
        if kind == 0 {
            // server_name: a list of (type, name); type 0 is host_name.
            let mut list = Reader(body);
            let list_len = usize::from(list.u16()?);
            let mut entries = Reader(list.take(list_len)?);
            while let Some(t) = entries.u8() {
                let n = usize::from(entries.u16()?);
                let name = entries.take(n)?;
                if t == 0 {
                    return dns_name(name);
                }
            }
            return None;
        }
    }
}

/// The `Host` of an HTTP/1 request, without its port, as far as `data` goes.
pub fn http_host(data: &[u8]) -> Option<String> {
    let head = data.split(|b| *b == b'\n');
    let mut lines = head.map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request = lines.next()?;
    // "METHOD target HTTP/1.x": a method of capitals, then a space.
    let method_len = request.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if method_len == 0 || request.get(method_len) != Some(&b' ') {
        return None;
    }
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        if !line[..colon].eq_ignore_ascii_case(b"host") {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let without_port = match value.first() {
            // An IPv6 literal is no name.
            Some(b'[') => return None,
            _ => value.split(|b| *b == b':').next()?,
        };
        return dns_name(without_port);
    }
    None
}

/// `name` when it is a plausible DNS name, in lower case.
fn dns_name(name: &[u8]) -> Option<String> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.split(|b| *b == b'.').all(|label| {
            // A label: 1 to 63 bytes, not starting or ending with a hyphen (RFC 1123 §2.1).
            (1..=63).contains(&label.len())
                && label.first() != Some(&b'-')
                && label.last() != Some(&b'-')
        });
    ok.then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// Reads big-endian fields, `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_dns_answer_names_its_addresses_by_the_name_asked() {
        use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
        use hickory_proto::rr::rdata::{A, AAAA, CNAME};
        use hickory_proto::rr::{Name, RData, Record, RecordType};
        let asked = Name::from_ascii("WWW.Example.COM.").unwrap_or_else(|e| panic!("{e}"));
        let edge = Name::from_ascii("edge.cdn.example.").unwrap_or_else(|e| panic!("{e}"));
        let mut m = Message::response(7, OpCode::Query);
        m.add_query(Query::query(asked.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(asked, 60, RData::CNAME(CNAME(edge.clone()))));
        m.add_answer(Record::from_rdata(edge.clone(), 60, RData::A(A::new(192, 0, 2, 7))));
        m.add_answer(Record::from_rdata(
            edge,
            60,
            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
        ));
        let bytes = m.to_vec().unwrap_or_else(|e| panic!("{e}"));
        let named = dns_answers(&bytes);
        let shown: Vec<(String, &str)> =
            named.iter().map(|(ip, n)| (ip.to_string(), n.as_str())).collect();
        assert_eq!(
            shown,
            [
                ("192.0.2.7".to_owned(), "www.example.com"),
                ("2001:db8::7".to_owned(), "www.example.com")
            ]
        );
        // A failure, a query, garbage and every cut of the answer: nothing, never a panic.
        m.metadata.response_code = ResponseCode::NXDomain;
        assert!(dns_answers(&m.to_vec().unwrap_or_default()).is_empty());
        let mut q = Message::query();
        q.add_query(Query::query(Name::root(), RecordType::A));
        assert!(dns_answers(&q.to_vec().unwrap_or_default()).is_empty());
        assert!(dns_answers(b"\xff\x00garbage").is_empty());
        for n in 0..bytes.len() {
            let _ = dns_answers(&bytes[..n]);
        }
    }

    /// A ClientHello record naming `name` (its bytes as given), with an extension before the
    /// server name as real clients send.
    pub(crate) fn client_hello(name: &[u8]) -> Vec<u8> {
        let mut sni = Vec::new();
        let entry_len = 3 + name.len();
        sni.extend_from_slice(&u16::try_from(entry_len).unwrap_or(u16::MAX).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes());
        sni.extend_from_slice(name);
        let mut ext = vec![0x00, 0x17, 0x00, 0x00]; // extended_master_secret, empty
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&u16::try_from(sni.len()).unwrap_or(u16::MAX).to_be_bytes());
        ext.extend_from_slice(&sni);
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // no session id
        body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // one cipher suite
        body.extend_from_slice(&[0x01, 0x00]); // null compression
        body.extend_from_slice(&u16::try_from(ext.len()).unwrap_or(u16::MAX).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![0x01];
        hs.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
        hs.extend_from_slice(&body);
        // Records carry at most 2^14 bytes each.
        let mut out = Vec::new();
        for chunk in hs.chunks(1 << 14) {
            out.extend_from_slice(&[0x16, 0x03, 0x01]);
            out.extend_from_slice(&u16::try_from(chunk.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(chunk);
        }
        out
    }

    #[test]
    fn names_come_from_client_hellos_and_http_requests() {
        assert_eq!(host_name(&client_hello(b"Example.COM")).as_deref(), Some("example.com"));
        assert_eq!(
            host_name(b"GET / HTTP/1.1\r\nUser-Agent: x\r\nhost: www.example.org:8080\r\n\r\n")
                .as_deref(),
            Some("www.example.org")
        );
        assert_eq!(host_name(b"POST /a HTTP/1.1\nHost:  a.b \n\n").as_deref(), Some("a.b"));
        // Real ClientHellos, as Debian's curl and openssl s_client sent them to a listener.
        let curl = include_bytes!("testdata/curl-client-hello.bin");
        assert_eq!(host_name(curl).as_deref(), Some("www.example.org"));
        let openssl = include_bytes!("testdata/openssl-client-hello.bin");
        assert_eq!(host_name(openssl).as_deref(), Some("mixed.case.example.net"));
        // Cut short before the name: nothing, and no guess.
        let hello = client_hello(b"example.com");
        assert_eq!(host_name(&hello[..hello.len() - 4]), None);
        assert_eq!(host_name(b"GET / HTTP/1.1\r\nHo"), None);
    }

    #[test]
    #[allow(clippy::cast_possible_truncation, reason = "random bytes and offsets")]
    fn hostile_input_gets_no_name_and_no_panic() {
        // A 64 KiB server name, spread over records: too long to be a DNS name.
        assert_eq!(host_name(&client_hello(&[b'a'; 65_000])), None);
        for bad in [&b"exa mple.com"[..], b"a..b", b"\xffab", b"", b"-"] {
            assert_eq!(host_name(&client_hello(bad)), None, "{bad:?}");
        }
        assert_eq!(host_name(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), None);
        assert_eq!(host_name(b"get / HTTP/1.1\r\nHost: a\r\n\r\n"), None, "not a method");
        // Garbage in place of a ClientHello, and every cut of a good one.
        for junk in [&[0x16][..], &[0x16, 3, 1, 0xff, 0xff, 1], &[0x16; 300], &[0xff; 64]] {
            assert_eq!(host_name(junk), None);
        }
        for n in 0..hello_len() {
            let _ = host_name(&client_hello(b"example.com")[..n]);
        }
        // Seeded random mutations of a good ClientHello and request (a small fuzzer; the
        // seeds are fixed, so a failure replays).
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for base in [client_hello(b"example.com"), b"GET / HTTP/1.1\r\nHost: a.b\r\n\r\n".to_vec()]
        {
            for _ in 0..20_000 {
                let mut m = base.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % m.len();
                    m[at] = next() as u8;
                }
                m.truncate((next() as usize) % (m.len() + 1));
                let _ = host_name(&m);
            }
        }
    }

    fn hello_len() -> usize {
        client_hello(b"example.com").len()
    }
}
