//! Endpoints: what a caller names to connect to — a host and port, an address and port, or a
//! URL (its host, and its port or the scheme's default).
//!
//! Parsing is strict and every refusal says what to write instead. Host names are ASCII:
//! an internationalised name must be given in its `xn--` form (there is no IDNA mapping here).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A DNS name (lower case, no trailing dot unless given) and a port: resolved and raced.
    /// A DNS name (lower case, no trailing dot unless given) and a port: resolved and raced.
    Host {
        /// The name.
        name: String,
        /// The port.
        port: u16,
    },
    /// An IP address and port: the race has one address (or its NAT64 form).
    Addr(SocketAddr),
    /// A URL's endpoint.
    Url(Url),
}

/// The parts of a URL a connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// Lower case (`https`).
    pub scheme: String,
    /// A DNS name (lower case) or an IP literal without brackets.
    pub host: String,
    /// The explicit port, else the scheme's default.
    pub port: u16,
    /// The path and query (`/` when the URL has none); the fragment is dropped.
    pub path: String,
}

/// Why a text is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?}: {why}; give a URL (https://example.test/) or HOST:PORT (example.test:443, [2001:db8::1]:443)"
)]
pub struct EndpointError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl Endpoint {
    /// A host (a name or an IP literal, IPv6 with or without brackets) and a port.
    pub fn new(host: &str, port: u16) -> Result<Self, EndpointError> {
        let err = |why: String| EndpointError { text: format!("{host} {port}"), why };
        if port == 0 {
            return Err(err("port 0 cannot be connected to".into()));
        }
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self::Addr(SocketAddr::new(ip, port)));
        }
        Ok(Self::Host { name: host_name(host).map_err(err)?, port })
    }

    /// `HOST:PORT`, `[IPV6]:PORT`, or a URL (`scheme://[user@]host[:port][/path][?query]`).
    pub fn parse(text: &str) -> Result<Self, EndpointError> {
        let err = |why: String| EndpointError { text: text.to_owned(), why };
        let (scheme, rest) = match text.split_once("://") {
            Some((s, r)) => (Some(scheme(s).map_err(err)?), r),
            None => (None, text),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) =
                v6.split_once(']').ok_or_else(|| err("unclosed '[' in the address".into()))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| {
                    err(format!("{p:?} after the bracketed address is not :PORT"))
                })?),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => return Err(err("an IPv6 address needs brackets: [2001:db8::1]".into())),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(err("there is no host".into()));
        }
        let port = match (port, scheme.as_deref()) {
            (Some(p), _) => match p.parse::<u16>() {
                Ok(0) => return Err(err("port 0 cannot be connected to".into())),
                Ok(n) => n,
                Err(_) => return Err(err(format!("port {p:?} is not a number from 1 to 65535"))),
            },
            (None, Some(s)) => default_port(s)
                .ok_or_else(|| err(format!("scheme {s:?} has no default port; add one")))?,
            (None, None) => return Err(err("there is no port".into())),
        };
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.is_ipv6()) && !authority.starts_with('[') {
            return Err(err("an IPv6 address needs brackets: [2001:db8::1]".into()));
        }
        let host = match ip {
            Some(ip) => ip.to_string(),
            None => host_name(host).map_err(err)?,
        };
        match scheme {
            Some(scheme) => {
                let tail = tail.split('#').next().unwrap_or_default();
                let path = match tail {
                    "" => "/".to_owned(),
                    t if t.starts_with('?') => format!("/{t}"),
                    t => t.to_owned(),
                };
                Ok(Self::Url(Url { scheme, host, port, path }))
            }
            None if !tail.is_empty() => {
                Err(err(format!("{tail:?} follows HOST:PORT; a path needs a URL (https://…)")))
            }
            None => Ok(match ip {
                Some(ip) => Self::Addr(SocketAddr::new(ip, port)),
                None => Self::Host { name: host, port },
            }),
        }
    }

    /// The name or IP literal (without brackets) to resolve or connect to.
    pub fn host(&self) -> String {
        match self {
            Self::Host { name, .. } => name.clone(),
            Self::Addr(a) => a.ip().to_string(),
            Self::Url(u) => u.host.clone(),
        }
    }

    /// The port: given, or the URL scheme's default.
    pub fn port(&self) -> u16 {
        match self {
            Self::Host { port, .. } | Self::Url(Url { port, .. }) => *port,
            Self::Addr(a) => a.port(),
        }
    }

    /// The scheme asks for TLS (`https`, `wss`).
    pub fn wants_tls(&self) -> bool {
        matches!(self, Self::Url(u) if matches!(u.scheme.as_str(), "https" | "wss"))
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { name, port } => write!(f, "{name}:{port}"),
            Self::Addr(a) => write!(f, "{a}"),
            Self::Url(u) => write!(f, "{u}"),
        }
    }
}

impl Url {
    /// `host[:port]` as a request names it: the port only when it is not the scheme's
    /// default, an IPv6 literal in brackets.
    pub fn authority(&self) -> String {
        let host = bracketed(&self.host);
        if default_port(&self.scheme) == Some(self.port) {
            host.into_owned()
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The absolute URL: `scheme://authority/path?query`.
impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

/// `host` as it stands in a URL or before `:port`: an IPv6 literal in brackets.
pub(crate) fn bracketed(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        std::borrow::Cow::Owned(format!("[{host}]"))
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// `text` with each `%XX` replaced by the byte it stands for (RFC 3986, 2.1), or `None` when
/// an escape is malformed or the result is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The fuzz target's body (`fuzz/`), also replayed over its corpus by the tests: any text
/// either fails to parse or parses to an endpoint that prints and parses back to itself.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(endpoint) = Endpoint::parse(text)
    {
        let again = Endpoint::parse(&endpoint.to_string());
        assert_eq!(again.as_ref(), Ok(&endpoint), "{text:?} printed as {endpoint}");
    }
}

/// Default ports of the schemes a connection is commonly named by (IANA service names).
fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        "ftp" => 21,
        "ssh" => 22,
        "smtp" => 25,
        "imap" => 143,
        "imaps" => 993,
        "mqtt" => 1883,
        "mqtts" => 8883,
        _ => return None,
    })
}

/// RFC 3986 §3.1: a letter, then letters, digits, `+`, `-`, `.`; compared in lower case.
fn scheme(s: &str) -> Result<String, String> {
    let ok = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if ok { Ok(s.to_ascii_lowercase()) } else { Err(format!("{s:?} is not a URL scheme")) }
}

/// A DNS name as connections use it: ASCII letters, digits, `-` and `_` in labels of 1–63
/// bytes, at most 253 bytes in all (RFC 1035 §2.3.4), lower-cased.
fn host_name(host: &str) -> Result<String, String> {
    if !host.is_ascii() {
        return Err(format!(
            "{host:?} is not ASCII; give an internationalised name in its xn-- (punycode) form"
        ));
    }
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    if trimmed.len() > 253 {
        return Err("the host name is longer than 253 bytes".into());
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{host:?} has an empty label or one longer than 63 bytes"));
        }
        if let Some(c) =
            label.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
        {
            return Err(format!("{c:?} cannot appear in a host name ({host:?})"));
        }
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, port: u16) -> Endpoint {
        Endpoint::Host { name: name.into(), port }
    }

    #[test]
    fn urls_give_their_host_and_the_schemes_port() {
        let e = Endpoint::parse("HTTPS://u:p@Example.TEST/x?y#frag").unwrap();
        assert_eq!(
            e,
            Endpoint::Url(Url {
                scheme: "https".into(),
                host: "example.test".into(),
                port: 443,
                path: "/x?y".into()
            })
        );
        assert!(e.wants_tls());
        assert_eq!((e.host(), e.port()), ("example.test".into(), 443));
        assert_eq!(e.to_string(), "https://example.test/x?y");
        let e = Endpoint::parse("http://[2001:db8::1]:8080?q").unwrap();
        assert_eq!((e.host(), e.port(), e.wants_tls()), ("2001:db8::1".into(), 8080, false));
        assert_eq!(e.to_string(), "http://[2001:db8::1]:8080/?q");
        assert_eq!(Endpoint::parse("wss://chat.test").unwrap().port(), 443);
    }

    #[test]
    fn host_port_and_addresses() {
        assert_eq!(Endpoint::parse("Example.test:22").unwrap(), host("example.test", 22));
        assert_eq!(
            Endpoint::parse("127.0.0.1:22").unwrap(),
            Endpoint::Addr("127.0.0.1:22".parse().unwrap())
        );
        assert_eq!(
            Endpoint::parse("[2001:db8::1]:443").unwrap(),
            Endpoint::Addr("[2001:db8::1]:443".parse().unwrap())
        );
        assert_eq!(Endpoint::new("[::1]", 7).unwrap(), Endpoint::Addr("[::1]:7".parse().unwrap()));
        assert_eq!(Endpoint::new("_svc.test", 7).unwrap(), host("_svc.test", 7));
        assert_eq!(Endpoint::parse("[::1]:7").unwrap().to_string(), "[::1]:7");
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let why = |t: &str| Endpoint::parse(t).unwrap_err().why;
        assert!(why("example.test").contains("no port"));
        assert!(why("host:99999").contains("1 to 65535"));
        assert!(why("host:0").contains("port 0"));
        assert!(why("gopher://x").contains("no default port"));
        assert!(why("[::1:80").contains("unclosed"));
        assert!(why("[::1]80").contains("not :PORT"));
        assert!(why("https://").contains("no host"));
        assert!(why("2001:db8::1:443").contains("brackets"));
        assert!(why("http://2001:db8::1/").contains("brackets"));
        assert!(why("bücher.test:443").contains("xn--"));
        assert!(why("a b.test:1").contains("cannot appear"));
        assert!(why("a..b:1").contains("empty label"));
        assert!(why("host:80/x").contains("needs a URL"));
        assert!(why("1http://x").contains("not a URL scheme"));
        let full = Endpoint::parse("example.test").unwrap_err().to_string();
        assert!(full.contains("give a URL"), "{full}");
        assert!(Endpoint::new("x", 0).unwrap_err().why.contains("port 0"));
    }

    #[test]
    fn arbitrary_text_never_panics() {
        for t in ["", ":", "[", "]", "@", "://", "a://[", "[]:1", "x:", "::", "http://@:1/", "é"] {
            let _ = Endpoint::parse(t);
        }
    }
}
