//! Proxies a connection can go through, as Network framework's proxy configurations: an HTTP
//! proxy's `CONNECT` tunnel (RFC 9110 §9.3.6), over TCP or over TLS with the proxy (an HTTPS
//! proxy, as curl's `https://`), SOCKS5 (RFC 1928, with RFC 1929's username and password), and
//! SOCKS4 with its 4A extension for names. Set [`driver::Parameters::proxy`](crate::driver::Parameters::proxy) and
//! [`driver::connect`](crate::driver::connect) reaches the proxy with the usual race, opens
//! the tunnel to the destination, and runs TLS (when asked) through it, end to end with the
//! destination.
//!
//! The tunnel handshakes are written over any byte stream, so they are tested against
//! in-memory peers as well as the real proxies Debian ships (tinyproxy, microsocks, tinyproxy
//! behind stunnel, OpenSSH's `ssh -D`).

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::endpoint::{bracketed, percent_decode};

/// What kind of proxy, and how it is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An HTTP proxy: `CONNECT host:port` opens a tunnel (and plain-HTTP loads may instead be
    /// forwarded to it in the absolute form: that is the HTTP layer's choice).
    Http,
    /// An HTTP proxy spoken to over TLS (`https://`): its certificate is checked against its
    /// name (see `Parameters::proxy_tls`), then it is used as [`Http`](Self::Http) is, inside
    /// that TLS; TLS with the destination runs inside the tunnel, end to end.
    Https,
    /// A SOCKS4 proxy: IPv4 destinations only. `remote_names`: the destination's name is sent
    /// for the proxy to resolve by SOCKS 4A's extension (`socks4a://`); otherwise it is
    /// resolved here to an IPv4 address (`socks4://`). The URL's user, if any, is sent as the
    /// user id; SOCKS4 has no password.
    Socks4 {
        /// Send the name for the proxy to resolve (`socks4a://`).
        remote_names: bool,
    },
    /// A SOCKS5 proxy. `remote_names`: the destination's name is sent for the proxy to resolve
    /// (`socks5h://`); otherwise it is resolved here and its address sent (`socks5://`).
    Socks5 {
        /// Send the name for the proxy to resolve (`socks5h://`).
        remote_names: bool,
    },
}

impl Kind {
    /// An HTTP proxy, over TCP or TLS: plain-HTTP requests may be sent to it in the absolute
    /// form instead of through a tunnel.
    pub fn is_http(self) -> bool {
        matches!(self, Self::Http | Self::Https)
    }
}

/// A username and password for a proxy. Its `Debug` form hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Credentials {
    /// The `Proxy-Authorization` value for Basic authentication (RFC 7617).
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// A proxy: its kind, where it listens, and the credentials it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// HTTP or SOCKS5.
    pub kind: Kind,
    /// A name, or an IP literal without brackets.
    pub host: String,
    /// Its port ([`DEFAULT_PORT`] when the URL names none, [`DEFAULT_HTTPS_PORT`] for
    /// `https://`).
    pub port: u16,
    /// What to authenticate with, when the URL gives it.
    pub credentials: Option<Credentials>,
}

/// The port of a proxy URL that names none. curl assumes 1080 for every kind of proxy (its
/// manual, `--proxy`); so do we, so that the same variables mean the same proxy.
pub const DEFAULT_PORT: u16 = 1080;

/// The port of an `https://` proxy URL that names none: 443, as curl (`CURLOPT_PROXYPORT`'s
/// manual: "443 for https proxies and 1080 for all others").
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// Why a text is not a proxy this library can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a usable proxy: {why}; give http://[USER:PASSWORD@]HOST[:PORT], https://…, socks4://…, socks4a://…, socks5://… or socks5h://…"
)]
pub struct ParseError {
    /// The text, its password replaced by `***`.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl Proxy {
    /// Parses a proxy as curl's `--proxy` and proxy variables take it: `[SCHEME://][USER[:
    /// PASSWORD]@]HOST[:PORT]`, where SCHEME is `http` (the default), `https`, `socks4`,
    /// `socks4a`, `socks5` or `socks5h`, the user and password percent-encoded, and PORT 1080
    /// when absent (443 for `https`).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        Self::parse_with_port(text, DEFAULT_PORT)
    }

    /// [`parse`](Self::parse), with `default_port` when the text names none (a PAC file's
    /// `PROXY host` means port 80); an `https://` proxy's is 443 whatever `default_port` says.
    pub fn parse_with_port(text: &str, default_port: u16) -> Result<Self, ParseError> {
        let fail = |why: &str| ParseError { text: redacted(text), why: why.to_owned() };
        let trimmed = text.trim();
        let (scheme, rest) = match trimmed.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
            None => ("http".to_owned(), trimmed),
        };
        let kind = match scheme.as_str() {
            "http" => Kind::Http,
            "socks5" => Kind::Socks5 { remote_names: false },
            "socks5h" => Kind::Socks5 { remote_names: true },
            "https" => Kind::Https,
            "socks4" => Kind::Socks4 { remote_names: false },
            "socks4a" => Kind::Socks4 { remote_names: true },
            _ => return Err(fail(&format!("unknown scheme {scheme:?}"))),
        };
        // Whatever follows the authority (a path "/", as in "http://proxy:3128/") is ignored.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let credentials = match userinfo {
            None => None,
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                let user = percent_decode(user).ok_or_else(|| fail("bad %-escape in the user"))?;
                let password =
                    percent_decode(password).ok_or_else(|| fail("bad %-escape in the password"))?;
                Some(Credentials { user, password })
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| fail("unclosed '['"))?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| fail("junk after ']'"))?),
            };
            (host, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(fail("no host"));
        }
        let port = match port {
            None | Some("") if kind == Kind::Https => DEFAULT_HTTPS_PORT,
            None | Some("") => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(fail(&format!("bad port {p:?}"))),
                Ok(port) => port,
            },
        };
        if let Some(user) = credentials.as_ref().map(|c| &c.user)
            && matches!(kind, Kind::Socks4 { .. })
            && user.contains('\0')
        {
            return Err(fail("a SOCKS4 user id cannot hold a NUL byte"));
        }
        Ok(Self { kind, host: host.to_ascii_lowercase(), port, credentials })
    }

    /// The proxy as shown in reports and errors: its URL without the credentials.
    pub fn shown(&self) -> String {
        let scheme = match self.kind {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Socks4 { remote_names: false } => "socks4",
            Kind::Socks4 { remote_names: true } => "socks4a",
            Kind::Socks5 { remote_names: false } => "socks5",
            Kind::Socks5 { remote_names: true } => "socks5h",
        };
        let host =
            if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{host}:{}", self.port)
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown())
    }
}

/// `text` with a password in its user part replaced by `***`, for messages.
fn redacted(text: &str) -> String {
    let (prefix, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{prefix}{user}:***{}", &rest[at..])
        }
        None => text.to_owned(),
    }
}

/// Why a tunnel through a proxy could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The proxy refused the tunnel with an HTTP status.
    #[error("the proxy answered CONNECT with {status} {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The proxy wants credentials (407), or refused the ones given.
    #[error("{}", if *.sent {
        format!("the proxy refused the credentials given ({status}); check the user and password in the proxy URL")
    } else {
        format!("the proxy requires authentication ({status}); put USER:PASSWORD@ in the proxy URL")
    })]
    AuthenticationRequired {
        /// The HTTP status (407, or 401 from some proxies).
        status: u16,
        /// Whether credentials were sent.
        sent: bool,
    },
    /// A SOCKS5 proxy refused the request (RFC 1928 §6's reply codes).
    #[error("the SOCKS5 proxy refused the connection: {}", socks_reply(*.0))]
    Socks(u8),
    /// A SOCKS4 proxy refused the request (the SOCKS4 protocol's reply codes 91 to 93).
    #[error("the SOCKS4 proxy refused the connection: {}{}", socks4_reply(*.code), if *.named && *.code == 91 {
        "; a proxy without SOCKS 4A refuses every name: try socks4://, which sends an address"
    } else { "" })]
    Socks4 {
        /// The reply code.
        code: u8,
        /// The destination was sent as a name (SOCKS 4A).
        named: bool,
    },
    /// The proxy's protocol cannot carry this destination (SOCKS4 and an IPv6 address).
    #[error("{0}")]
    Unsupported(String),
    /// A SOCKS5 proxy accepts none of the methods offered (no authentication, and username and
    /// password only when credentials were given).
    #[error("{}", if *.offered_password {
        "the SOCKS5 proxy accepts none of the authentication methods offered (none, username and password)"
    } else {
        "the SOCKS5 proxy requires authentication; put USER:PASSWORD@ in the proxy URL"
    })]
    NoMethod {
        /// Whether username-and-password authentication was offered.
        offered_password: bool,
    },
    /// A SOCKS5 proxy refused the username and password.
    #[error("the SOCKS5 proxy refused the username and password")]
    AuthenticationFailed,
    /// The destination's name is not sent (`socks5://`) and could not be resolved here.
    #[error("{0}")]
    Resolve(String),
    /// The proxy's answer is not what the protocol allows.
    #[error("the proxy's answer is malformed: {0}")]
    Protocol(String),
    /// The connection to the proxy failed during the handshake.
    #[error("the connection to the proxy failed during the handshake: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not finish in time.
    #[error(
        "the proxy did not open the tunnel within {0:.1?} (is it the kind of proxy its URL says?)"
    )]
    TimedOut(Duration),
}

impl TunnelError {
    /// Whether trying again will fail the same way until something changes: credentials, or
    /// the proxy's rules. A proxy's 5xx, a timeout or a lost connection may pass.
    pub fn lasting(&self) -> bool {
        match self {
            Self::AuthenticationRequired { .. }
            | Self::NoMethod { .. }
            | Self::AuthenticationFailed
            | Self::Unsupported(_) => true,
            // Rejected, or its identd check of the user id failed.
            Self::Socks4 { code, .. } => matches!(code, 93),
            // Not allowed by ruleset; command or address type not supported.
            Self::Socks(code) => matches!(code, 2 | 7 | 8),
            Self::Refused { status, .. } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            _ => false,
        }
    }
}

/// RFC 1928 §6's reply field in words.
fn socks_reply(code: u8) -> String {
    let what = match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "an unassigned reply code",
    };
    format!("{what} (reply {code})")
}

/// The SOCKS4 protocol's reply code in words (its document, "SOCKS: A protocol for TCP proxy
/// across firewalls", as OpenSSH keeps it: `socks4.protocol`).
fn socks4_reply(code: u8) -> String {
    let what = match code {
        91 => "rejected or failed",
        92 => "it could not reach identd on this machine to check the user id",
        93 => "identd reported a different user id than the one sent",
        _ => "an unassigned reply code",
    };
    format!("{what} (reply {code})")
}

/// The largest answer head to `CONNECT` read (a real one is a few hundred bytes).
const MAX_HEAD: usize = 16 << 10;

/// `host:port` as a request target: IPv6 literals in brackets.
fn authority(host: &str, port: u16) -> String {
    format!("{}:{port}", bracketed(host))
}

/// Asks an HTTP proxy, over `stream`, for a tunnel to `host:port`, and reads its answer: a
/// 2xx opens it. Returns the bytes read past the answer's head: the destination's first words
/// when it speaks first (SSH, SMTP), which belong in front of the tunnel (see [`Prefixed`]).
pub async fn http_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    port: u16,
    credentials: Option<&Credentials>,
) -> Result<Vec<u8>, TunnelError> {
    let target = authority(host, port);
    let mut request = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: nw/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(c) = credentials {
        request.push_str(&format!("Proxy-Authorization: {}\r\n", c.basic()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(TunnelError::Protocol(if head.is_empty() {
                "it closed the connection without answering CONNECT".into()
            } else {
                "it closed the connection in the middle of its answer".into()
            }));
        }
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            break from + i + 4;
        }
        if head.len() > MAX_HEAD {
            return Err(TunnelError::Protocol(format!(
                "its answer's head is longer than {MAX_HEAD} bytes"
            )));
        }
    };
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line).trim_end().to_owned();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code, reason) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
    let status = match (version, code.and_then(|c| c.parse::<u16>().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") && (100..600).contains(&code) => code,
        _ => return Err(TunnelError::Protocol(format!("status line {status_line:?}"))),
    };
    // 407 is the status for this (RFC 9110 §15.5.8); tinyproxy 1.11 answers a CONNECT with
    // wrong credentials with 401, and only the proxy can answer a CONNECT, so 401 means the same.
    if status == 407 || status == 401 {
        return Err(TunnelError::AuthenticationRequired { status, sent: credentials.is_some() });
    }
    if !(200..300).contains(&status) {
        return Err(TunnelError::Refused { status, reason: reason.to_owned() });
    }
    Ok(head.split_off(end))
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, whose reads give `prefix` first.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self { prefix, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a SOCKS5 request names: the destination's name for the proxy to resolve, or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksTarget {
    /// A name, for the proxy to resolve.
    Name(String),
    /// An address.
    Address(std::net::IpAddr),
}

/// Opens a SOCKS5 tunnel (RFC 1928) over `stream` to `target` and `port`, authenticating with
/// username and password (RFC 1929) when `credentials` are given and the proxy asks.
pub async fn socks5_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &SocksTarget,
    port: u16,
    credentials: Option<&Credentials>,
) -> Result<(), TunnelError> {
    // Greeting: version 5, the methods offered: 0 (none), and 2 (username/password).
    let greeting: &[u8] = if credentials.is_some() { &[5, 2, 0, 2] } else { &[5, 1, 0] };
    stream.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != 5 {
        return Err(TunnelError::Protocol(format!(
            "version {} in its method choice, not SOCKS5 (is it a SOCKS proxy?)",
            choice[0]
        )));
    }
    match (choice[1], credentials) {
        (0, _) => {}
        (2, Some(c)) => {
            let (user, password) = (c.user.as_bytes(), c.password.as_bytes());
            let (Ok(ulen), Ok(plen)) = (u8::try_from(user.len()), u8::try_from(password.len()))
            else {
                return Err(TunnelError::Protocol(
                    "SOCKS5 takes a user and password of at most 255 bytes each".into(),
                ));
            };
            let mut auth = vec![1, ulen];
            auth.extend_from_slice(user);
            auth.push(plen);
            auth.extend_from_slice(password);
            stream.write_all(&auth).await?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await?;
            if status[1] != 0 {
                return Err(TunnelError::AuthenticationFailed);
            }
        }
        (0xff, _) => {
            return Err(TunnelError::NoMethod { offered_password: credentials.is_some() });
        }
        (other, _) => {
            return Err(TunnelError::Protocol(format!("it chose method {other}, not one offered")));
        }
    }
    let mut request = vec![5, 1, 0];
    match target {
        SocksTarget::Address(std::net::IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        SocksTarget::Address(std::net::IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        SocksTarget::Name(name) => {
            let Ok(len) = u8::try_from(name.len()) else {
                return Err(TunnelError::Protocol(format!(
                    "{name:?} is longer than SOCKS5's 255 bytes"
                )));
            };
            request.extend_from_slice(&[3, len]);
            request.extend_from_slice(name.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    if reply[0] != 5 {
        return Err(TunnelError::Protocol(format!("version {} in its reply", reply[0])));
    }
    if reply[1] != 0 {
        return Err(TunnelError::Socks(reply[1]));
    }
    // The bound address, which we do not use, then its port.
    let rest = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
        other => return Err(TunnelError::Protocol(format!("address type {other} in its reply"))),
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).await?;
    Ok(())
}

/// Opens a SOCKS4 tunnel over `stream` to `target` and `port`: an IPv4 address, or a name for
/// the proxy to resolve (SOCKS 4A). `user` is sent as the user id (empty when `None`).
pub async fn socks4_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &SocksTarget,
    port: u16,
    user: Option<&str>,
) -> Result<(), TunnelError> {
    let user = user.unwrap_or_default();
    if user.contains('\0') {
        return Err(TunnelError::Unsupported("a SOCKS4 user id cannot hold a NUL byte".into()));
    }
    // VN 4, CD 1 (CONNECT), DSTPORT, DSTIP, USERID, NUL; for 4A, DSTIP 0.0.0.1 and the name
    // after the user id's NUL, with its own NUL.
    let mut request = vec![4, 1];
    request.extend_from_slice(&port.to_be_bytes());
    let name = match target {
        SocksTarget::Address(std::net::IpAddr::V4(ip)) => {
            request.extend_from_slice(&ip.octets());
            None
        }
        SocksTarget::Address(std::net::IpAddr::V6(ip)) => {
            return Err(TunnelError::Unsupported(format!(
                "SOCKS4 carries only IPv4 destinations, not {ip}; use a socks5:// or socks5h:// proxy"
            )));
        }
        SocksTarget::Name(name) => {
            if name.contains('\0') || name.len() > 255 {
                return Err(TunnelError::Unsupported(format!(
                    "{name:?} cannot be sent to a SOCKS 4A proxy"
                )));
            }
            request.extend_from_slice(&[0, 0, 0, 1]);
            Some(name)
        }
    };
    request.extend_from_slice(user.as_bytes());
    request.push(0);
    if let Some(name) = name {
        request.extend_from_slice(name.as_bytes());
        request.push(0);
    }
    stream.write_all(&request).await?;
    // VN 0, CD, DSTPORT, DSTIP: 8 bytes.
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            TunnelError::Protocol("it closed the connection without a SOCKS4 reply".into())
        }
        _ => TunnelError::Io(e),
    })?;
    // The reply's version is 0; some servers echo 4.
    if reply[0] != 0 && reply[0] != 4 {
        return Err(TunnelError::Protocol(format!(
            "version {} in its reply, not SOCKS4's 0 (is it a SOCKS4 proxy?)",
            reply[0]
        )));
    }
    match reply[1] {
        90 => Ok(()),
        code => Err(TunnelError::Socks4 { code, named: name.is_some() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls_as_curl_does() {
        let p = Proxy::parse("proxy.corp:3128").unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (Kind::Http, "proxy.corp", 3128));
        assert_eq!(Proxy::parse("http://Proxy.Corp").unwrap().port, DEFAULT_PORT);
        assert_eq!(Proxy::parse("http://proxy:8080/").unwrap().port, 8080);
        let p = Proxy::parse("socks5h://u%40x:p%3Ass@[2001:db8::1]:1081").unwrap();
        assert_eq!(p.kind, Kind::Socks5 { remote_names: true });
        assert_eq!((p.host.as_str(), p.port), ("2001:db8::1", 1081));
        let c = p.credentials.as_ref().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("u@x", "p:ss"));
        assert_eq!(p.shown(), "socks5h://[2001:db8::1]:1081");
        assert!(!format!("{p:?}").contains("p:ss"), "Debug hides the password");
        assert_eq!(Proxy::parse("socks5://h").unwrap().kind, Kind::Socks5 { remote_names: false });
        assert_eq!(Proxy::parse("http://user@h:1").unwrap().credentials.unwrap().password, "");
        let p = Proxy::parse("HTTPS://proxy.corp").unwrap();
        assert_eq!((p.kind, p.port), (Kind::Https, DEFAULT_HTTPS_PORT));
        assert_eq!(Proxy::parse_with_port("https://p", 80).unwrap().port, 443);
        assert_eq!(p.shown(), "https://proxy.corp:443");
        assert!(p.kind.is_http() && Kind::Http.is_http());
        let p = Proxy::parse("socks4a://me@p:9050").unwrap();
        assert_eq!((p.kind, p.port), (Kind::Socks4 { remote_names: true }, 9050));
        assert_eq!(p.shown(), "socks4a://p:9050");
        assert_eq!(Proxy::parse("socks4://p").unwrap().shown(), "socks4://p:1080");
        assert!(!Kind::Socks4 { remote_names: false }.is_http());
    }

    #[test]
    fn refuses_what_it_cannot_use_and_hides_the_password() {
        for (text, why) in [
            ("socks4://a%00b@proxy", "NUL"),
            ("ftp://proxy", "unknown scheme"),
            ("http://:3128", "no host"),
            ("http://proxy:0", "bad port"),
            ("http://proxy:99999", "bad port"),
            ("http://[::1", "unclosed"),
            ("http://u:p%zz@proxy", "%-escape"),
        ] {
            let e = Proxy::parse(text).unwrap_err();
            assert!(e.why.contains(why), "{text}: {e}");
        }
        let e = Proxy::parse("gopher://alice:secret@proxy").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(e.to_string().contains("alice:***@proxy"), "{e}");
    }

    /// Runs `client` against a scripted peer: what it must receive, then what it answers.
    async fn scripted<T>(
        script: Vec<(Vec<u8>, Vec<u8>)>,
        client: impl AsyncFnOnce(&mut tokio::io::DuplexStream) -> T,
    ) -> T {
        let (mut ours, mut theirs) = tokio::io::duplex(64 << 10);
        let peer = tokio::spawn(async move {
            for (expect, answer) in script {
                let mut got = vec![0u8; expect.len()];
                theirs.read_exact(&mut got).await.unwrap();
                assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expect));
                theirs.write_all(&answer).await.unwrap();
            }
            // Dropped: the client then reads what was sent, then the end.
        });
        let out = client(&mut ours).await;
        peer.await.unwrap();
        out
    }

    fn connect_request(auth: Option<&str>) -> Vec<u8> {
        let mut r = format!(
            "CONNECT [2001:db8::2]:443 HTTP/1.1\r\nHost: [2001:db8::2]:443\r\nUser-Agent: nw/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(a) = auth {
            r.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        r.push_str("\r\n");
        r.into_bytes()
    }

    #[tokio::test]
    async fn http_connect_opens_on_2xx_and_says_why_not_otherwise() {
        let creds = Credentials { user: "aladdin".into(), password: "opensesame".into() };
        let ok = scripted(
            vec![(
                connect_request(Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l")),
                b"HTTP/1.1 200 Connection established\r\nVia: x\r\n\r\n".to_vec(),
            )],
            async |s| http_connect(s, "2001:db8::2", 443, Some(&creds)).await,
        )
        .await;
        assert_eq!(ok.unwrap(), b"");

        // A destination that speaks first: its words are handed back, not lost or refused.
        let early = scripted(
            vec![(connect_request(None), b"HTTP/1.1 200 OK\r\n\r\nSSH-2.0-x\r\n".to_vec())],
            async |s| {
                let rest = http_connect(s, "2001:db8::2", 443, None).await.unwrap();
                let mut tunnel = Prefixed::new(rest, s);
                let mut got = [0u8; 11];
                tunnel.read_exact(&mut got).await.unwrap();
                got
            },
        )
        .await;
        assert_eq!(&early, b"SSH-2.0-x\r\n");

        let cases: [(&[u8], &str); 5] = [
            (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "requires authentication"),
            (b"HTTP/1.1 401 Unauthorized\r\n\r\n", "requires authentication"),
            (b"HTTP/1.1 403 Forbidden\r\n\r\n", "answered CONNECT with 403 Forbidden"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed"),
            (b"HTTP/1.1 200 OK\r\n", "closed the connection in the middle"),
        ];
        for (answer, says) in cases {
            let e = scripted(vec![(connect_request(None), answer.to_vec())], async |s| {
                http_connect(s, "2001:db8::2", 443, None).await
            })
            .await
            .unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            // Credentials and refusals stay so; a malformed answer may not.
            let lasting = says.contains("authentication") || says.contains("403");
            assert_eq!(e.lasting(), lasting, "{e}");
        }
        let gateway = TunnelError::Refused { status: 502, reason: "Bad Gateway".into() };
        assert!(!gateway.lasting(), "the proxy's upstream may come back");
    }

    #[tokio::test]
    async fn socks5_sends_the_name_and_authenticates_when_asked() {
        let creds = Credentials { user: "u".into(), password: "pw".into() };
        let mut request = vec![5, 1, 0, 3, 9];
        request.extend_from_slice(b"host.test");
        request.extend_from_slice(&443u16.to_be_bytes());
        let ok = scripted(
            vec![
                (vec![5, 2, 0, 2], vec![5, 2]),
                (vec![1, 1, b'u', 2, b'p', b'w'], vec![1, 0]),
                (request.clone(), vec![5, 0, 0, 3, 2, b'h', b'x', 0, 80]),
            ],
            async |s| {
                socks5_connect(s, &SocksTarget::Name("host.test".into()), 443, Some(&creds)).await
            },
        )
        .await;
        assert!(ok.is_ok(), "{ok:?}");

        let target = SocksTarget::Address("192.0.2.7".parse().unwrap());
        let refused = scripted(
            vec![
                (vec![5, 1, 0], vec![5, 0]),
                (vec![5, 1, 0, 1, 192, 0, 2, 7, 0, 80], vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0]),
            ],
            async |s| socks5_connect(s, &target, 80, None).await,
        )
        .await
        .unwrap_err();
        assert!(refused.to_string().contains("connection refused (reply 5)"), "{refused}");

        let wants_auth = scripted(vec![(vec![5, 1, 0], vec![5, 0xff])], async |s| {
            socks5_connect(s, &target, 80, None).await
        })
        .await
        .unwrap_err();
        assert!(wants_auth.to_string().contains("requires authentication"), "{wants_auth}");
    }

    #[tokio::test]
    async fn socks4_sends_an_address_or_a_4a_name_and_says_why_not() {
        let target = SocksTarget::Address("192.0.2.7".parse().unwrap());
        let ok = scripted(
            vec![(vec![4, 1, 0, 80, 192, 0, 2, 7, b'm', b'e', 0], vec![0, 90, 0, 0, 0, 0, 0, 0])],
            async |s| socks4_connect(s, &target, 80, Some("me")).await,
        )
        .await;
        assert!(ok.is_ok(), "{ok:?}");

        let mut request = vec![4, 1, 1, 187, 0, 0, 0, 1, 0];
        request.extend_from_slice(b"host.test\0");
        let named = SocksTarget::Name("host.test".into());
        let refused = scripted(vec![(request, vec![0, 91, 0, 0, 0, 0, 0, 0])], async |s| {
            socks4_connect(s, &named, 443, None).await
        })
        .await
        .unwrap_err();
        let said = refused.to_string();
        assert!(said.contains("rejected or failed (reply 91)") && said.contains("try socks4://"));
        assert!(!refused.lasting(), "a SOCKS4 rejection may be the destination's, for now");

        let v6 = SocksTarget::Address("2001:db8::1".parse().unwrap());
        let e = scripted(vec![], async |s| socks4_connect(s, &v6, 443, None).await).await;
        let e = e.unwrap_err();
        assert!(e.to_string().contains("only IPv4") && e.lasting(), "{e}");

        // A SOCKS5 server's method choice is not a SOCKS4 reply; a closed connection is said.
        let e = scripted(
            vec![(vec![4, 1, 0, 80, 192, 0, 2, 7, 0], vec![5, 0xff, 0, 0, 0, 0, 0, 0])],
            async |s| socks4_connect(s, &target, 80, None).await,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("not SOCKS4"), "{e}");
        let e = scripted(vec![(vec![4, 1, 0, 80, 192, 0, 2, 7, 0], vec![0, 90])], async |s| {
            socks4_connect(s, &target, 80, None).await
        })
        .await
        .unwrap_err();
        assert!(e.to_string().contains("without a SOCKS4 reply"), "{e}");
    }
}
