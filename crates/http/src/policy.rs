//! The transport-security policy for HTTP loads (the ATS analogue, HTTP-9), applied here and
//! only here: a raw TCP or TLS connection is unaffected (A19).
//!
//! With the policy on, a load must be HTTPS, and the server's chain must pass both the
//! caller's trust settings and the default ones (A20, through `nw_trust::AtsVerifier`).
//! Exempt, as local networking is: IP literals, `localhost` (and names under it), unqualified
//! names (no dot) and `.local` names. For those, plain HTTP is allowed and the caller's trust
//! settings alone decide. `allow_http` is the per-load exemption for arbitrary HTTP loads.

use nw_connection::Url;

/// How a load is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// HTTPS under the full policy.
    Ats,
    /// A local-networking exemption (the reason), or an allowed HTTP load.
    Exempt(&'static str),
}

/// Why a URL cannot be loaded under the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Plain HTTP to a host that is not local.
    #[error(
        "insecure load blocked: {url} is plain HTTP and {host} is not a local name; use https://, or allow plain-HTTP loads to load it anyway"
    )]
    InsecureLoad {
        /// The URL.
        url: String,
        /// Its host.
        host: String,
    },
    /// An `ftp://` URL.
    #[error(
        "{url}: FTP is not supported; download it another way and check it against a published digest"
    )]
    Ftp {
        /// The URL.
        url: String,
    },
    /// Neither http:// nor https://.
    #[error("{url}: only http:// and https:// URLs can be loaded")]
    Scheme {
        /// The URL.
        url: String,
    },
    /// No scheme at all (`example.com/file`, `host:8080/x`).
    #[error("{url:?} is not a URL: it has no scheme; give http://{url} or https://{url}")]
    NoScheme {
        /// The text given.
        url: String,
    },
}

/// Refuses a text whose scheme is not `http` or `https` (`file:///…`, `ftp://…`, `mailto:…`),
/// before it is read as an address: its error names the scheme's problem rather than a
/// missing host. A text with no scheme (`example.com/file`, `host:8080/x`) is refused too,
/// not taken as http:// the way curl takes it: which of the two was meant decides whether the
/// load is secure, so the caller says. An empty text passes, for the parser to say it is
/// empty.
pub fn scheme(text: &str) -> Result<(), Refused> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    let no_scheme = || Err(Refused::NoScheme { url: text.to_owned() });
    let Some((scheme, rest)) = text.split_once(':') else { return no_scheme() };
    // RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); anything else before the
    // colon (a bracketed IPv6 literal, a path) is no scheme.
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    // `HOST:PORT…`: digits (or nothing) up to the path are a port, not what follows a scheme.
    let port = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let port_like = !rest.starts_with('/') && port.bytes().all(|b| b.is_ascii_digit());
    if !is_scheme || port_like {
        return no_scheme();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => Ok(()),
        "ftp" | "ftps" => Err(Refused::Ftp { url: text.to_owned() }),
        _ => Err(Refused::Scheme { url: text.to_owned() }),
    }
}

/// Whether `url` may be loaded, and how it is secured.
pub fn check(url: &Url, text: &str, ats: bool, allow_http: bool) -> Result<Security, Refused> {
    let exempt = local_exemption(&url.host);
    match url.scheme.as_str() {
        "https" if !ats => Ok(Security::Exempt("the transport-security policy is off")),
        "https" => Ok(exempt.map_or(Security::Ats, Security::Exempt)),
        "http" => match exempt {
            Some(why) => Ok(Security::Exempt(why)),
            None if allow_http || !ats => Ok(Security::Exempt("HTTP loads were allowed")),
            None => Err(Refused::InsecureLoad { url: text.to_owned(), host: url.host.clone() }),
        },
        "ftp" | "ftps" => Err(Refused::Ftp { url: text.to_owned() }),
        _ => Err(Refused::Scheme { url: text.to_owned() }),
    }
}

/// The local-networking exemption that covers `host`, if any.
pub fn local_exemption(host: &str) -> Option<&'static str> {
    let host = host.trim_end_matches('.');
    if host.parse::<std::net::IpAddr>().is_ok() {
        Some("an IP literal")
    } else if host == "localhost" || host.ends_with(".localhost") {
        Some("localhost")
    } else if !host.contains('.') {
        Some("an unqualified name")
    } else if host.ends_with(".local") {
        Some("a .local name")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_webs_schemes_pass_and_a_text_without_one_is_refused() {
        for ok in ["http://a.test/", "HTTPS://a.test/", " https://a.test ", "", "http:x"] {
            assert_eq!(scheme(ok), Ok(()), "{ok}");
        }
        assert!(matches!(scheme("ftp://a.test/x"), Err(Refused::Ftp { .. })));
        for off in ["file:///etc/passwd", "gopher://a.test/", "javascript://x", "file:/etc/passwd"]
        {
            assert!(matches!(scheme(off), Err(Refused::Scheme { .. })), "{off}");
        }
        for off in ["mailto:a@b.test", "data:text/plain,hi"] {
            assert!(matches!(scheme(off), Err(Refused::Scheme { .. })), "{off}");
        }
        for bare in ["a.test", "a.test:443", "a.test:8080/x", "[::1]:80", "a.test/x://y", "x:"] {
            let e = scheme(bare).unwrap_err();
            assert!(matches!(e, Refused::NoScheme { .. }), "{bare}: {e:?}");
        }
        assert_eq!(
            scheme("a.test/f").unwrap_err().to_string(),
            "\"a.test/f\" is not a URL: it has no scheme; give http://a.test/f or https://a.test/f"
        );
    }
}
