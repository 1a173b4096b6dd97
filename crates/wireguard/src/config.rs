//! wg-quick's configuration format (wg(8) and wg-quick(8)): `[Interface]` and `[Peer]`
//! sections of `Key = value` lines, read into a [`Config`], and the tunnel [`Settings`] it asks
//! for.
//!
//! What wg-quick would do by running commands (`PreUp`, `PostUp`, …) nw does not do: those
//! keys are read, and reported as ignored.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use nw_tunnel::{Dns, Prefix, Settings};
use serde::{Deserialize, Serialize};

/// At most this many peers, and this many allowed-IP prefixes in all: far beyond any
/// client configuration, and a bound on what a file can make us hold.
pub const MAX_PEERS: usize = 1_000;
/// At most this many bytes of configuration text.
pub const MAX_TEXT: usize = 1 << 20;

/// A Curve25519 public key (base64 in text).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

/// A secret 32-byte key (a private or preshared key). `Debug` never shows it; `Display`
/// writes it as wg does, for a key file.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; 32]);

/// Base64 of 32 bytes, as wg writes keys.
pub fn encode_key(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

fn decode_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| "is not base64 (a key is 44 characters, as `wg genkey` prints)".to_string())?;
    bytes.try_into().map_err(|b: Vec<u8>| format!("decodes to {} bytes; a key is 32", b.len()))
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(&self.0))
    }
}

/// The key in base64, as `wg genkey` prints it: for writing a configuration or key file.
impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(&self.0))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A new random key (as `wg genkey` makes one).
    pub fn generate() -> Self {
        Self(crate::crypto::random())
    }

    /// The public key of this private key.
    pub fn public_key(&self) -> Option<PublicKey> {
        crate::crypto::public_key(&self.0).ok().map(PublicKey)
    }
}

macro_rules! key_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&encode_key(&self.0))
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                decode_key(&text)
                    .map(Self)
                    .map_err(|e| serde::de::Error::custom(format!("key {e}")))
            }
        }
        impl FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                decode_key(s).map(Self)
            }
        }
    };
}
key_serde!(PublicKey);
key_serde!(SecretKey);

/// A whole configuration: this interface and its peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The `[Interface]` section.
    pub interface: Interface,
    /// The `[Peer]` sections, in order.
    pub peers: Vec<Peer>,
}

/// The `[Interface]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// `PrivateKey`.
    pub private_key: SecretKey,
    /// `Address`: the tunnel interface's addresses (a bare address is a /32 or /128).
    #[serde(default)]
    pub addresses: Vec<Prefix>,
    /// `DNS` entries that are addresses: the tunnel's name servers.
    #[serde(default)]
    pub dns_servers: Vec<IpAddr>,
    /// `DNS` entries that are names: search domains.
    #[serde(default)]
    pub search_domains: Vec<String>,
    /// `MTU`.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// `ListenPort`: the UDP port to listen on (none: any).
    #[serde(default)]
    pub listen_port: Option<u16>,
    /// `Table = off`: add no routes for the peers' allowed IPs.
    #[serde(default)]
    pub no_routes: bool,
}

impl Interface {
    /// An interface with this key and nothing else set.
    pub fn new(private_key: SecretKey) -> Self {
        Self {
            private_key,
            addresses: Vec::new(),
            dns_servers: Vec::new(),
            search_domains: Vec::new(),
            mtu: None,
            listen_port: None,
            no_routes: false,
        }
    }
}

/// A `[Peer]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// `PublicKey`.
    pub public_key: PublicKey,
    /// `PresharedKey`.
    #[serde(default)]
    pub preshared_key: Option<SecretKey>,
    /// `AllowedIPs`: what this peer may send from, and what is routed to it.
    #[serde(default)]
    pub allowed_ips: Vec<Prefix>,
    /// `Endpoint` as written (`host:port`, `[v6]:port`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The endpoint's address once resolved ([`Config::resolve`]).
    #[serde(default)]
    pub endpoint_addr: Option<SocketAddr>,
    /// `PersistentKeepalive`, in seconds (none: off).
    #[serde(default)]
    pub persistent_keepalive: Option<u16>,
}

/// A configuration that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A line that is wrong.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based.
        line: usize,
        /// What is wrong, and what to write instead.
        message: String,
    },
    /// Something wrong with the whole file.
    #[error("{0}")]
    File(String),
}

/// A parsed configuration and what in it nw reads but does not do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The configuration.
    pub config: Config,
    /// Lines read but not acted on (`PostUp`, `FwMark`, …), one sentence each.
    pub ignored: Vec<String>,
}

enum Section {
    None,
    Interface,
    Peer,
}

/// Reads wg-quick's format.
pub fn parse(text: &str) -> Result<Parsed, ConfigError> {
    if text.len() > MAX_TEXT {
        return Err(ConfigError::File(format!(
            "{} bytes is more than a configuration ({MAX_TEXT} at most)",
            text.len()
        )));
    }
    let mut section = Section::None;
    let mut private_key = None;
    let mut interface = Interface::new(SecretKey([0; 32]));
    let mut seen_interface = false;
    let mut peers: Vec<(usize, Option<PublicKey>, Peer)> = Vec::new();
    let mut ignored = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| ConfigError::Line { line, message };
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        if content.starts_with('[') {
            section = match content.to_ascii_lowercase().as_str() {
                "[interface]" if seen_interface => {
                    return Err(err("a second [Interface] section; a file has one".into()));
                }
                "[interface]" => {
                    seen_interface = true;
                    Section::Interface
                }
                "[peer]" => {
                    if peers.len() == MAX_PEERS {
                        return Err(err(format!("more than {MAX_PEERS} peers")));
                    }
                    peers.push((line, None, empty_peer()));
                    Section::Peer
                }
                _ => {
                    return Err(err(format!(
                        "unknown section {content}; expected [Interface] or [Peer]"
                    )));
                }
            };
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(err(format!("{content:?} is not `Key = value`")));
        };
        let (key, value) = (key.trim(), value.trim());
        let lower = key.to_ascii_lowercase();
        match section {
            Section::None => {
                return Err(err(format!("{key} comes before any [Interface] or [Peer] section")));
            }
            Section::Interface => match lower.as_str() {
                "privatekey" => {
                    private_key = Some(
                        value.parse::<SecretKey>().map_err(|e| err(format!("PrivateKey {e}")))?,
                    );
                }
                "address" => {
                    for a in list(value) {
                        interface.addresses.push(address(a).map_err(err)?);
                    }
                }
                "dns" => {
                    for d in list(value) {
                        match d.parse::<IpAddr>() {
                            Ok(ip) => interface.dns_servers.push(ip),
                            Err(_) if nw_tunnel::settings::is_domain(d) => {
                                interface.search_domains.push(d.trim_end_matches('.').into());
                            }
                            Err(_) => {
                                return Err(err(format!(
                                    "DNS {d:?} is neither an address nor a domain"
                                )));
                            }
                        }
                    }
                }
                "mtu" => {
                    interface.mtu = Some(value.parse().map_err(|_| {
                        err(format!("MTU {value:?} is not a number (1280 to 65535)"))
                    })?);
                }
                "listenport" => {
                    interface.listen_port = Some(value.parse().map_err(|_| {
                        err(format!("ListenPort {value:?} is not a port (0 to 65535)"))
                    })?);
                }
                "table" => match value.to_ascii_lowercase().as_str() {
                    "off" => interface.no_routes = true,
                    "auto" => {}
                    _ => ignored.push(format!(
                        "line {line}: Table = {value} is ignored; routes go into the tunnel's own table"
                    )),
                },
                "fwmark" => ignored.push(format!(
                    "line {line}: FwMark is ignored; the host marks the provider's sockets itself"
                )),
                "preup" | "postup" | "predown" | "postdown" => ignored.push(format!(
                    "line {line}: {key} is not run; nw runs no commands from a configuration"
                )),
                "saveconfig" => {
                    ignored.push(format!("line {line}: SaveConfig is ignored; nw never writes the file"));
                }
                _ => {
                    return Err(err(format!(
                        "unknown key {key} in [Interface] (PrivateKey, Address, DNS, MTU, ListenPort, Table, FwMark, PreUp, PostUp, PreDown, PostDown, SaveConfig)"
                    )));
                }
            },
            Section::Peer => {
                let Some((_, public, peer)) = peers.last_mut() else {
                    return Err(err("a key outside a section".into()));
                };
                match lower.as_str() {
                    "publickey" => {
                        *public = Some(
                            value.parse::<PublicKey>().map_err(|e| err(format!("PublicKey {e}")))?,
                        );
                    }
                    "presharedkey" => {
                        peer.preshared_key = Some(
                            value
                                .parse::<SecretKey>()
                                .map_err(|e| err(format!("PresharedKey {e}")))?,
                        );
                    }
                    "allowedips" => {
                        for a in list(value) {
                            let p = address(a).map_err(err)?;
                            let masked = Prefix::new(p.network(), p.len()).unwrap_or(p);
                            if masked != p {
                                ignored.push(format!(
                                    "line {line}: AllowedIPs {p} has host bits set; used as {masked}, as wg does"
                                ));
                            }
                            peer.allowed_ips.push(masked);
                        }
                    }
                    "endpoint" => {
                        endpoint_port(value).map_err(err)?;
                        peer.endpoint = Some(value.to_string());
                        peer.endpoint_addr = value.parse().ok();
                    }
                    "persistentkeepalive" => {
                        peer.persistent_keepalive = match value.to_ascii_lowercase().as_str() {
                            "off" | "0" => None,
                            _ => Some(value.parse().map_err(|_| {
                                err(format!(
                                    "PersistentKeepalive {value:?} is not seconds (1 to 65535, or off)"
                                ))
                            })?),
                        };
                    }
                    _ => {
                        return Err(err(format!(
                            "unknown key {key} in [Peer] (PublicKey, PresharedKey, AllowedIPs, Endpoint, PersistentKeepalive)"
                        )));
                    }
                }
            }
        }
    }
    interface.private_key = private_key.ok_or_else(|| {
        ConfigError::File(if seen_interface {
            "[Interface] has no PrivateKey (make one with `wg genkey`)".into()
        } else {
            "no [Interface] section: this is not a wg-quick configuration".into()
        })
    })?;
    let own = interface.private_key.public_key();
    let mut out: Vec<Peer> = Vec::with_capacity(peers.len());
    let mut prefixes = 0;
    for (line, public, mut peer) in peers {
        let public = public.ok_or_else(|| ConfigError::Line {
            line,
            message: "this [Peer] has no PublicKey".into(),
        })?;
        if Some(public) == own {
            return Err(ConfigError::Line {
                line,
                message: "this [Peer]'s PublicKey is the interface's own".into(),
            });
        }
        if out.iter().any(|p| p.public_key == public) {
            return Err(ConfigError::Line {
                line,
                message: format!("a second [Peer] with PublicKey {public}"),
            });
        }
        prefixes += peer.allowed_ips.len();
        if prefixes > nw_tunnel::settings::MAX_ROUTES {
            return Err(ConfigError::File(format!(
                "more than {} AllowedIPs in all",
                nw_tunnel::settings::MAX_ROUTES
            )));
        }
        peer.public_key = public;
        out.push(peer);
    }
    Ok(Parsed { config: Config { interface, peers: out }, ignored })
}

fn empty_peer() -> Peer {
    Peer {
        public_key: PublicKey([0; 32]),
        preshared_key: None,
        allowed_ips: Vec::new(),
        endpoint: None,
        endpoint_addr: None,
        persistent_keepalive: None,
    }
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn address(text: &str) -> Result<Prefix, String> {
    if text.contains('/') {
        // The prefix's own error names the text already.
        text.parse::<Prefix>().map_err(|e| e.to_string())
    } else {
        text.parse::<IpAddr>()
            .map(Prefix::host)
            .map_err(|_| format!("{text:?} is not an address or a prefix such as 10.0.0.2/24"))
    }
}

/// The host and port of an `Endpoint`.
fn endpoint_port(text: &str) -> Result<(&str, u16), String> {
    let bad = || format!("Endpoint {text:?} is not host:port ([address]:port for IPv6)");
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() || (host.contains(':') && !text.starts_with('[')) {
        return Err(bad());
    }
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 {
        return Err(format!("Endpoint {text:?} has port 0"));
    }
    Ok((host, port))
}

impl Config {
    /// Resolves every peer's `Endpoint` that is a name (once, as wg-quick does at `up`).
    pub async fn resolve(&mut self) -> Result<(), String> {
        for peer in &mut self.peers {
            let Some(text) = &peer.endpoint else { continue };
            if peer.endpoint_addr.is_some() {
                continue;
            }
            let (host, port) = endpoint_port(text)?;
            let found = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("Endpoint {text}: {host} does not resolve: {e}"))?;
            let mut found: Vec<SocketAddr> = found.collect();
            // IPv4 first, as wg(8) does when a name has both.
            found.sort_by_key(|a| !a.is_ipv4());
            peer.endpoint_addr =
                Some(*found.first().ok_or_else(|| format!("Endpoint {text}: no address"))?);
        }
        Ok(())
    }

    /// The settings this configuration asks the host for: its addresses, a route for every
    /// peer's allowed IPs (none with `Table = off`), the first peer's endpoint kept outside
    /// the tunnel, its DNS for every name (as wg-quick sets it), and its MTU.
    pub fn settings(&self) -> Settings {
        let mut routes: Vec<Prefix> = Vec::new();
        if !self.interface.no_routes {
            for p in self.peers.iter().flat_map(|p| &p.allowed_ips) {
                if !routes.contains(p) {
                    routes.push(*p);
                }
            }
        }
        let i = &self.interface;
        let dns = (!i.dns_servers.is_empty()).then(|| Dns {
            servers: i.dns_servers.clone(),
            match_domains: Vec::new(),
            search_domains: i.search_domains.clone(),
        });
        Settings {
            tunnel_remote_address: self.peers.iter().find_map(|p| p.endpoint_addr).map(|a| a.ip()),
            addresses: i.addresses.clone(),
            included_routes: routes,
            excluded_routes: Vec::new(),
            dns,
            mtu: Some(i.mtu.unwrap_or(nw_tunnel::settings::DEFAULT_MTU)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const KEY_B: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn sample() -> String {
        format!(
            "# a client\n[Interface]\nPrivateKey = {KEY_A}\nAddress = 10.0.0.2/24, fd00::2\nDNS = 10.0.0.1, corp.example\nMTU = 1380\nPostUp = iptables -A FORWARD\n\n[Peer]\nPublicKey = {KEY_B}\nPresharedKey = {KEY_A}\nAllowedIPs = 0.0.0.0/0, ::/0 # everything\nAllowedIPs = 10.9.0.1/16\nEndpoint = 192.0.2.1:51820\nPersistentKeepalive = 25\n"
        )
    }

    #[test]
    fn a_client_configuration_reads_as_wg_quick_reads_it() {
        let parsed = parse(&sample()).unwrap();
        let c = &parsed.config;
        assert_eq!(
            c.interface.addresses,
            ["10.0.0.2/24".parse().unwrap(), "fd00::2/128".parse().unwrap()]
        );
        assert_eq!(c.interface.dns_servers, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.interface.search_domains, ["corp.example"]);
        assert_eq!(c.interface.mtu, Some(1380));
        let p = &c.peers[0];
        assert_eq!(p.public_key.to_string(), KEY_B);
        assert_eq!(p.allowed_ips.len(), 3);
        assert_eq!(p.allowed_ips[2], "10.9.0.0/16".parse().unwrap());
        assert_eq!(p.endpoint_addr, Some("192.0.2.1:51820".parse().unwrap()));
        assert_eq!(p.persistent_keepalive, Some(25));
        assert_eq!(parsed.ignored.len(), 2, "{:?}", parsed.ignored);
        assert!(parsed.ignored[0].contains("PostUp is not run"));
        assert!(parsed.ignored[1].contains("host bits"));
        let s = c.settings();
        assert_eq!(s.included_routes.len(), 3);
        assert_eq!(s.tunnel_remote_address, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(s.mtu, Some(1380));
        assert!(s.validate().is_ok());
        // Private keys survive a trip through the provider's options but never print.
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(serde_json::from_value::<Config>(json).unwrap(), *c);
        assert!(!format!("{c:?}").contains(KEY_A));
    }

    #[test]
    fn mistakes_name_their_line_and_what_to_write() {
        let cases = [
            ("[Interface]\nPrivateKey = abc\n", "line 2: PrivateKey is not base64"),
            ("[Interface]\nPrivateKey = AAAA\n", "line 2: PrivateKey decodes to 3 bytes"),
            ("[Interfaces]\n", "line 1: unknown section"),
            ("PrivateKey = x\n", "line 1: PrivateKey comes before any"),
            ("[Interface]\nListenPort = 70000\n", "line 2: ListenPort \"70000\" is not a port"),
            ("[Interface]\nAddres = 10.0.0.1\n", "line 2: unknown key Addres"),
            ("[Interface]\nAddress = 10.0.0.300\n", "line 2: \"10.0.0.300\" is not an address"),
            (
                "[Interface]\nAddress = 10.0.0.2/40\n",
                "line 2: \"10.0.0.2/40\" is not an address prefix (write",
            ),
            ("[Interface]\n", "[Interface] has no PrivateKey"),
            ("", "no [Interface] section"),
            ("[Interface]\njust words\n", "line 2: \"just words\" is not `Key = value`"),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err().to_string();
            assert!(got.starts_with(want), "{text:?}: {got}");
        }
        let peer = |body: &str| format!("[Interface]\nPrivateKey = {KEY_A}\n[Peer]\n{body}");
        let cases = [
            ("AllowedIPs = 10.0.0.0/8\n", "line 3: this [Peer] has no PublicKey"),
            (&format!("PublicKey = {KEY_B}\nEndpoint = example.com\n") as &str, "line 5: Endpoint"),
            (&format!("PublicKey = {KEY_B}\nEndpoint = ::1:51820\n"), "line 5: Endpoint"),
            (
                &format!("PublicKey = {KEY_B}\nEndpoint = h:0\n"),
                "line 5: Endpoint \"h:0\" has port 0",
            ),
            (&format!("PublicKey = {KEY_B}\nPersistentKeepalive = often\n"), "line 5: Persist"),
            (
                &format!("PublicKey = {KEY_B}\n[Peer]\nPublicKey = {KEY_B}\n"),
                "line 5: a second [Peer]",
            ),
        ];
        for (body, want) in cases {
            let got = parse(&peer(body)).unwrap_err().to_string();
            assert!(got.starts_with(want), "{body:?}: {got}");
        }
        let own = SecretKey(decode_key(KEY_A).unwrap()).public_key().unwrap();
        let got = parse(&peer(&format!("PublicKey = {own}\n"))).unwrap_err().to_string();
        assert!(got.contains("the interface's own"), "{got}");
        let huge = "#".repeat(MAX_TEXT + 1);
        assert!(parse(&huge).unwrap_err().to_string().contains("more than a configuration"));
    }

    #[test]
    fn table_off_routes_nothing_and_ipv6_endpoints_parse() {
        let text = format!(
            "[Interface]\nPrivateKey = {KEY_A}\nTable = off\n[Peer]\nPublicKey = {KEY_B}\nAllowedIPs = 10.0.0.0/8\nEndpoint = [2001:db8::1]:51820\n"
        );
        let c = parse(&text).unwrap().config;
        assert!(c.settings().included_routes.is_empty());
        assert_eq!(c.peers[0].endpoint_addr, Some("[2001:db8::1]:51820".parse().unwrap()));
        assert_eq!(c.settings().dns, None);
    }
}
