//! Which proxy a load goes through: one given for every load, or the ones the environment
//! names, read as curl reads them (its manual, "ENVIRONMENT"):
//!
//! - `http_proxy` for `http://` URLs — lower case only: a CGI program gets a request's `Proxy:`
//!   field as `HTTP_PROXY` ("httpoxy"), so the upper-case name is not trusted;
//! - `https_proxy` or `HTTPS_PROXY` for `https://` URLs;
//! - `all_proxy` or `ALL_PROXY` for either, when the scheme's own is not set;
//! - `no_proxy` or `NO_PROXY`: hosts reached directly — a comma-separated list of names (each
//!   also covering its subdomains; a leading dot is ignored), IP addresses, CIDR ranges
//!   (`10.0.0.0/8`), or `*` for every host.
//!
//! The lower-case name is read first; an empty value counts as unset. Loopback destinations
//! (`localhost`, `*.localhost`, `127.0.0.0/8`, `::1`) never go through a proxy the environment
//! names: the proxy would reach its own loopback, not ours. Chrome has the same rule since
//! version 72 and lets a bypass list undo it with `<-loopback>`; so does `no_proxy` here. A
//! proxy given explicitly ([`Proxies::every`]) is used for every host, loopback too, as curl's
//! `--proxy` is.
//!
//! Or a PAC file chooses ([`Proxies::pac`], or [`Proxies::pac_url`] for one a server holds,
//! fetched directly at the first load; the [`pac`](crate::pac) module): its `FindProxyForURL`
//! is asked about every load, and neither `no_proxy` nor the loopback rule applies; the script
//! decides.
//!
//! Plain-HTTP loads through an HTTP proxy are sent to it in the absolute form (`GET
//! http://host/path`); everything else goes through a tunnel (`CONNECT`, or SOCKS5), with TLS
//! end to end. HTTP/3 is UDP and goes through neither: a proxied load uses TCP.

use std::net::IpAddr;
use std::sync::Arc;

pub use nw_connection::proxy::{Credentials, Kind, ParseError, Proxy};
use nw_connection::{Resolve, Url};

use crate::Error;
use crate::pac::{Pac, Route};

/// The proxies a session's loads go through.
#[derive(Debug, Clone, Default)]
pub struct Proxies {
    http: Option<Entry>,
    https: Option<Entry>,
    bypass: Bypass,
    /// A PAC file, which then decides for every load.
    pac: Option<PacSource>,
}

/// A PAC file given, or the URL of one, fetched once (again after a failure).
#[derive(Debug, Clone)]
enum PacSource {
    Given(Pac),
    At { url: String, fetched: Arc<tokio::sync::OnceCell<Pac>> },
}

/// A proxy setting: the proxy, or why its text is not one, with the variable it came from.
#[derive(Debug, Clone)]
struct Entry {
    from: &'static str,
    proxy: Result<Proxy, ParseError>,
}

/// Who is reached directly.
#[derive(Debug, Clone, Default)]
struct Bypass {
    every: bool,
    names: Vec<String>,
    nets: Vec<(IpAddr, u8)>,
    /// Loopback destinations go direct (undone by `<-loopback>`).
    loopback: bool,
}

impl Proxies {
    /// No proxy: every load goes direct.
    pub fn none() -> Self {
        Self::default()
    }

    /// Every load through `proxy` (`--proxy`), except the hosts `no_proxy` lists (its syntax
    /// as the variable's).
    pub fn every(proxy: Proxy, no_proxy: Option<&str>) -> Self {
        let entry = |from| Some(Entry { from, proxy: Ok(proxy.clone()) });
        Self {
            http: entry("--proxy"),
            https: entry("--proxy"),
            bypass: Bypass::parse(no_proxy.unwrap_or(""), false),
            pac: None,
        }
    }

    /// Every load through the route a PAC file's `FindProxyForURL` names first (the next
    /// when a proxy cannot be reached).
    pub fn pac(pac: Pac) -> Self {
        Self { pac: Some(PacSource::Given(pac)), ..Self::default() }
    }

    /// Every load through the route the PAC file at `url` (`http://` or `https://`) names,
    /// as [`Proxies::pac`]. The session fetches it at the first load, directly and under its own trust
    /// settings and timeout; a load finding it unfetchable fails, and the next tries again.
    pub fn pac_url(url: &str) -> Self {
        let source = PacSource::At { url: url.to_owned(), fetched: Arc::default() };
        Self { pac: Some(source), ..Self::default() }
    }

    /// The proxies this process's environment names.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// The proxies the variables `var` gives name (`var("https_proxy")` …): [`Proxies::from_env`]
    /// over any source.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let first = |names: &[&'static str]| {
            names
                .iter()
                .find_map(|&name| var(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v)))
        };
        let entry = |found: Option<(&'static str, String)>| {
            found.map(|(from, text)| Entry { from, proxy: Proxy::parse(&text) })
        };
        let all = first(&["all_proxy", "ALL_PROXY"]);
        let http = first(&["http_proxy"]).or_else(|| all.clone());
        let https = first(&["https_proxy", "HTTPS_PROXY"]).or(all);
        let no_proxy = first(&["no_proxy", "NO_PROXY"]).map(|(_, v)| v).unwrap_or_default();
        Self {
            http: entry(http),
            https: entry(https),
            bypass: Bypass::parse(&no_proxy, true),
            pac: None,
        }
    }

    /// Whether any load may go through a proxy.
    pub fn any(&self) -> bool {
        self.http.is_some() || self.https.is_some() || self.pac.is_some()
    }

    /// The proxies a load of `url` may go through, in order (`None`: direct), at least one:
    /// the settings' one, or what the PAC file names (its name lookups made with `resolver`;
    /// `fetch` gets one a URL names).
    pub async fn choices<F, Fetched, E>(
        &self,
        url: &Url,
        resolver: &Arc<dyn Resolve>,
        fetch: F,
    ) -> Result<Vec<Option<Proxy>>, E>
    where
        F: FnOnce(String) -> Fetched,
        Fetched: Future<Output = Result<Pac, E>>,
        E: From<Error>,
    {
        let pac = match &self.pac {
            None => return Ok(vec![self.for_url(url)?.cloned()]),
            Some(PacSource::Given(pac)) => pac,
            Some(PacSource::At { url, fetched }) => {
                fetched.get_or_try_init(|| fetch(url.clone())).await?
            }
        };
        let routes = pac.routes(url, resolver.clone()).await.map_err(Error::from)?;
        Ok(routes
            .into_iter()
            .map(|route| match route {
                Route::Proxy(proxy) => Some(proxy),
                Route::Direct => None,
            })
            .collect())
    }

    /// The proxy a load of `url` goes through by the settings alone (a PAC file not asked),
    /// `None` for direct; a variable whose text is not a proxy fails the loads it would serve,
    /// naming it.
    pub fn for_url(&self, url: &Url) -> Result<Option<&Proxy>, Error> {
        let entry = match url.scheme.as_str() {
            "http" => &self.http,
            "https" => &self.https,
            _ => &None,
        };
        let Some(entry) = entry else { return Ok(None) };
        if self.bypass.covers(&url.host) {
            return Ok(None);
        }
        match &entry.proxy {
            Ok(proxy) => Ok(Some(proxy)),
            Err(e) => Err(Error::Setting(format!("{}: {e}; correct or unset it", entry.from))),
        }
    }
}

impl Bypass {
    /// A `no_proxy` list; `loopback`: loopback destinations go direct unless it says
    /// `<-loopback>`.
    fn parse(list: &str, loopback: bool) -> Self {
        let mut bypass = Self { loopback, ..Self::default() };
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let entry = entry.to_ascii_lowercase();
            if entry == "*" {
                bypass.every = true;
            } else if entry == "<-loopback>" {
                bypass.loopback = false;
            } else if let Some(net) = cidr(&entry) {
                bypass.nets.push(net);
            } else {
                let name = entry.trim_start_matches('.').trim_start_matches("*.");
                let name = name.trim_start_matches('[').trim_end_matches(']');
                bypass.names.push(name.trim_end_matches('.').to_owned());
            }
        }
        bypass
    }

    /// Whether `host` (a lower-case name, or an IP literal without brackets) goes direct.
    fn covers(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        if self.every {
            return true;
        }
        if self.loopback
            && (host == "localhost"
                || host.ends_with(".localhost")
                || ip.is_some_and(|ip| ip.is_loopback()))
        {
            return true;
        }
        if let Some(ip) = ip {
            let literal = |n: &String| n.parse::<IpAddr>().is_ok_and(|n| n == ip);
            return self.names.iter().any(literal)
                || self.nets.iter().any(|&(net, bits)| within(ip, net, bits));
        }
        self.names
            .iter()
            .any(|n| host == *n || host.strip_suffix(n.as_str()).is_some_and(|h| h.ends_with('.')))
    }
}

/// `a.b.c.d/n` or `v6/n`.
pub(crate) fn cidr(entry: &str) -> Option<(IpAddr, u8)> {
    let (net, bits) = entry.split_once('/')?;
    let net = net.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok()?;
    let bits = bits.parse::<u8>().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((net, bits))
}

/// Whether `ip` is in `net`/`bits` (of the same family).
pub(crate) fn within(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    if shift >= 128 {
        return true;
    }
    ip >> shift == net >> shift
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        match nw_connection::Endpoint::parse(text).unwrap() {
            nw_connection::Endpoint::Url(u) => u,
            other => panic!("{other:?}"),
        }
    }

    fn env(vars: &[(&str, &str)]) -> Proxies {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Proxies::from_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    fn via(proxies: &Proxies, target: &str) -> Option<String> {
        proxies.for_url(&url(target)).unwrap().map(Proxy::shown)
    }

    #[test]
    fn reads_the_variables_as_curl_does() {
        let p = env(&[
            ("HTTP_PROXY", "http://cgi-injected:1"),
            ("HTTPS_PROXY", "http://upper:2"),
            ("https_proxy", "http://lower:3"),
        ]);
        assert_eq!(via(&p, "http://example.org/"), None, "HTTP_PROXY is not trusted");
        assert_eq!(via(&p, "https://example.org/").as_deref(), Some("http://lower:3"));

        let p = env(&[("ALL_PROXY", "socks5h://all"), ("http_proxy", "  ")]);
        assert_eq!(via(&p, "http://example.org/").as_deref(), Some("socks5h://all:1080"));
        assert_eq!(via(&p, "https://example.org/").as_deref(), Some("socks5h://all:1080"));
        assert!(!env(&[]).any());

        let p = env(&[("https_proxy", "gopher://x")]);
        let e = p.for_url(&url("https://example.org/")).unwrap_err().to_string();
        assert!(e.starts_with("https_proxy: ") && e.contains("correct or unset it"), "{e}");
        assert_eq!(via(&p, "http://example.org/"), None, "a bad https_proxy spares http loads");
    }

    #[test]
    fn no_proxy_takes_names_suffixes_addresses_and_ranges() {
        let p = env(&[
            ("all_proxy", "http://proxy:3128"),
            (
                "NO_PROXY",
                "Example.COM, .internal.test,10.0.0.0/8, 192.0.2.7,[2001:db8::1],fd00::/8",
            ),
        ]);
        for direct in [
            "https://example.com/",
            "https://www.example.com/",
            "https://internal.test/",
            "https://a.b.internal.test/",
            "http://10.1.2.3/",
            "http://192.0.2.7/",
            "https://[2001:db8::1]/",
            "https://[fd12::5]:8443/",
            "http://localhost:8080/",
            "http://app.localhost/",
            "http://127.0.0.2/",
            "https://[::1]/",
        ] {
            assert_eq!(via(&p, direct), None, "{direct} goes direct");
        }
        for proxied in [
            "https://notexample.com/",
            "https://example.com.evil.test/",
            "http://11.0.0.1/",
            "http://192.0.2.8/",
            "https://[2001:db8::2]/",
        ] {
            assert!(via(&p, proxied).is_some(), "{proxied} goes through the proxy");
        }
        let every = env(&[("all_proxy", "http://proxy:3128"), ("no_proxy", "*")]);
        assert_eq!(via(&every, "https://example.org/"), None);
    }

    #[test]
    fn loopback_is_direct_unless_undone_or_the_proxy_was_given() {
        let p = env(&[("all_proxy", "http://proxy:3128"), ("no_proxy", "<-loopback>")]);
        assert!(via(&p, "http://localhost/").is_some());
        assert!(via(&p, "http://127.0.0.1/").is_some());
        let given = Proxies::every(Proxy::parse("http://proxy:3128").unwrap(), None);
        assert!(via(&given, "http://localhost/").is_some(), "--proxy means every host");
        let given = Proxies::every(Proxy::parse("http://proxy:3128").unwrap(), Some("localhost"));
        assert_eq!(via(&given, "http://localhost/"), None);
        assert_eq!(via(&Proxies::none(), "https://example.org/"), None);
    }
}
