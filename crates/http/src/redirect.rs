//! Redirects (RFC 9110 §15.4): which answers redirect, where to (`Location` resolved against
//! the URL asked, RFC 3986 §5), what the next request's method is, and when to stop — at a
//! limit, or on coming back to a URL already asked in this chain with the same method (an
//! upload answered 303 with its own URL, to be read with a GET, is no loop).

use hyper::Method;

use crate::Error;

/// How many redirects a load follows by default: Chrome and Firefox both stop at 20.
pub const DEFAULT_LIMIT: usize = 20;

/// Why a redirect was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// More than the limit.
    TooMany,
    /// Back to a URL already asked in the chain, with the same method.
    Loop,
    /// From HTTPS to plain HTTP, with HTTP loads not allowed.
    Downgrade,
    /// To a URL the transport-security policy refuses (a scheme, a plain-HTTP public host).
    Policy,
    /// A `Location` that is no URL.
    BadLocation,
}

fn refused(kind: Refusal, why: String) -> Error {
    Error::Redirect { kind, why }
}

/// A `Location` field's bytes as text for [`Chain::next`]: bytes past ASCII — a UTF-8 path a
/// server did not percent-encode, as many do — percent-encoded one by one, which is what a
/// URL parser makes of them in a path or query (WHATWG URL's UTF-8 percent-encode), and what
/// curl and browsers follow. Such a field is no `&str` to an HTTP library (RFC 9110 §5.5
/// allows only visible ASCII), so without this the redirect would look as if it named no
/// `Location` at all.
pub fn location(value: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(value.len());
    for &b in value {
        if b.is_ascii() {
            text.push(char::from(b));
        } else {
            let _ = write!(text, "%{b:02X}");
        }
    }
    text
}

/// A redirect to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The absolute URL to ask next.
    pub to: String,
    /// The method of the next request.
    pub method: Method,
}

/// One load's chain of redirects.
#[derive(Debug)]
pub struct Chain {
    limit: usize,
    /// Every URL asked so far, the first included.
    asked: Vec<String>,
    /// The method each of them was asked with, as far as known: the last one's is learned
    /// when its answer comes to [`Chain::next`].
    methods: Vec<Method>,
}

impl Chain {
    /// A chain that starts at `first` and follows at most `limit` redirects.
    pub fn new(first: &str, limit: usize) -> Self {
        Self { limit, asked: vec![first.to_owned()], methods: Vec::new() }
    }

    /// The URLs asked so far, in order.
    pub fn asked(&self) -> &[String] {
        &self.asked
    }

    /// What an answer with `status` and `location` to `method` on the last URL asked means:
    /// `None` when it is not a redirect to follow (any other status, or a 3xx without a
    /// usable `Location`, which the caller reports as the answer it is).
    pub fn next(
        &mut self,
        method: &Method,
        status: u16,
        location: Option<&str>,
    ) -> Result<Option<Hop>, Error> {
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(None);
        }
        let Some(location) = location.map(str::trim).filter(|l| !l.is_empty()) else {
            return Ok(None);
        };
        if self.methods.len() < self.asked.len() {
            self.methods.push(method.clone());
        }
        let from = self.asked.last().cloned().unwrap_or_default();
        let base = url::Url::parse(&from).map_err(|e| {
            refused(
                Refusal::BadLocation,
                format!("{from}: cannot resolve a redirect against it: {e}"),
            )
        })?;
        let mut to = base.join(location).map_err(|e| {
            refused(
                Refusal::BadLocation,
                format!("{from} redirects to {location:?}, which is not a URL: {e}"),
            )
        })?;
        // The fragment is the client's (RFC 9110 §10.2.2: the original one carries over when
        // the new one has none); it is never sent, so it plays no part here.
        to.set_fragment(None);
        // A redirect elsewhere than the web (file:, ftp:, a custom scheme) is never followed:
        // a server must not make the client read a local file or speak another protocol.
        if !matches!(to.scheme(), "http" | "https") {
            return Err(refused(
                Refusal::BadLocation,
                format!(
                    "{from} redirects to {}, which is not an http:// or https:// URL: not followed",
                    shown(to.as_str())
                ),
            ));
        }
        let to = to.to_string();
        if self.limit == 0 {
            return Ok(None);
        }
        if self.asked.len() > self.limit {
            return Err(refused(
                Refusal::TooMany,
                format!(
                    "more than {} redirect{} ({} → … → {})",
                    self.limit,
                    if self.limit == 1 { "" } else { "s" },
                    shown(&self.asked[0]),
                    shown(&to)
                ),
            ));
        }
        // 303 makes anything but HEAD a GET; 301 and 302 turn POST into GET, as every browser
        // does (RFC 9110 §15.4.2, §15.4.3); 307 and 308 keep the method and body.
        let method = match status {
            303 if *method != Method::HEAD => Method::GET,
            301 | 302 if *method == Method::POST => Method::GET,
            _ => method.clone(),
        };
        if self.asked.iter().zip(&self.methods).any(|(u, m)| *u == to && *m == method) {
            let urls: Vec<_> = self.asked.iter().chain([&to]).map(|u| shown(u)).collect();
            let chain = urls.join(" → ");
            return Err(refused(Refusal::Loop, format!("a redirect loop: {chain}")));
        }
        self.asked.push(to.clone());
        Ok(Some(Hop { to, method }))
    }
}

/// A URL as a message shows it: whole, or its first 200 characters and an ellipsis (a server
/// may redirect to a URL of tens of kilobytes).
fn shown(url: &str) -> std::borrow::Cow<'_, str> {
    const MOST: usize = 200;
    match url.char_indices().nth(MOST) {
        None => url.into(),
        Some((at, _)) => format!("{}…", &url[..at]).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_in_raw_utf8_is_followed_percent_encoded() {
        let raw = "/d\u{e9}j\u{e0} vu?q=\u{fc}".as_bytes();
        assert_eq!(location(raw), "/d%C3%A9j%C3%A0 vu?q=%C3%BC");
        let mut c = Chain::new("http://a.example/f", 20);
        let hop = c.next(&Method::GET, 302, Some(&location(raw))).unwrap().unwrap();
        assert_eq!(hop.to, "http://a.example/d%C3%A9j%C3%A0%20vu?q=%C3%BC");
        // Bytes that are not UTF-8 at all go as they came.
        assert_eq!(location(b"/\xff\xfe"), "/%FF%FE");
        // A host in raw UTF-8 is an internationalized name.
        let hop =
            c.next(&Method::GET, 302, Some(&location("http://b\u{fc}cher.example/".as_bytes())));
        assert_eq!(hop.unwrap().unwrap().to, "http://xn--bcher-kva.example/");
    }

    #[test]
    fn locations_resolve_against_the_url_asked_and_methods_follow_rfc_9110() {
        let mut c = Chain::new("http://a.example/dir/file?x=1", 20);
        let hop = c.next(&Method::GET, 302, Some("other")).unwrap().unwrap();
        assert_eq!(hop.to, "http://a.example/dir/other");
        let hop = c.next(&Method::GET, 301, Some("/top#frag")).unwrap().unwrap();
        assert_eq!(hop.to, "http://a.example/top");
        let hop = c.next(&Method::GET, 308, Some("//b.example:8080/x")).unwrap().unwrap();
        assert_eq!(hop.to, "http://b.example:8080/x");
        let hop = c.next(&Method::POST, 303, Some("https://c.example/")).unwrap().unwrap();
        assert_eq!((hop.to.as_str(), hop.method), ("https://c.example/", Method::GET));
        for elsewhere in ["file:///etc/passwd", "ftp://a.example/x", "javascript:alert(1)"] {
            let e = Chain::new("http://a.example/", 20).next(&Method::GET, 302, Some(elsewhere));
            let Err(Error::Redirect { kind: Refusal::BadLocation, why }) = e else {
                panic!("{elsewhere}: {e:?}");
            };
            assert!(
                why.ends_with("which is not an http:// or https:// URL: not followed"),
                "{why}"
            );
        }
        let mut c = Chain::new("http://a.example/", 20);
        assert_eq!(c.next(&Method::POST, 302, Some("/b")).unwrap().unwrap().method, Method::GET);
        assert_eq!(c.next(&Method::POST, 307, Some("/c")).unwrap().unwrap().method, Method::POST);
        assert_eq!(c.next(&Method::PUT, 301, Some("/d")).unwrap().unwrap().method, Method::PUT);
        assert_eq!(c.next(&Method::HEAD, 303, Some("/e")).unwrap().unwrap().method, Method::HEAD);
    }

    #[test]
    fn non_redirects_and_missing_locations_are_answers() {
        let mut c = Chain::new("http://a.example/", 20);
        for status in [200, 206, 300, 304, 305, 404] {
            assert_eq!(c.next(&Method::GET, status, Some("/x")).unwrap(), None, "{status}");
        }
        assert_eq!(c.next(&Method::GET, 302, None).unwrap(), None);
        assert_eq!(c.next(&Method::GET, 302, Some("  ")).unwrap(), None);
        assert!(c.next(&Method::GET, 302, Some("http://[::1")).is_err());
        let mut off = Chain::new("http://a.example/", 0);
        assert_eq!(off.next(&Method::GET, 302, Some("/x")).unwrap(), None);
    }

    #[test]
    fn loops_and_long_chains_stop() {
        let mut c = Chain::new("http://a.example/1", 20);
        c.next(&Method::GET, 302, Some("/2")).unwrap().unwrap();
        let e = c.next(&Method::GET, 302, Some("/1")).unwrap_err().to_string();
        assert_eq!(
            e,
            "a redirect loop: http://a.example/1 → http://a.example/2 → http://a.example/1"
        );
        // An upload answered 303 with its own URL is read with a GET: no loop; the GET sent
        // back to it again is one.
        let mut c = Chain::new("http://a.example/up", 20);
        let hop = c.next(&Method::PUT, 303, Some("/up")).unwrap().unwrap();
        assert_eq!((hop.to.as_str(), hop.method), ("http://a.example/up", Method::GET));
        assert!(c.next(&Method::GET, 302, Some("/up")).is_err());
        let mut c = Chain::new("http://a.example/0", 3);
        for i in 1..=3 {
            c.next(&Method::GET, 302, Some(&format!("/{i}"))).unwrap().unwrap();
        }
        let e = c.next(&Method::GET, 302, Some("/4")).unwrap_err().to_string();
        assert!(e.starts_with("more than 3 redirects (http://a.example/0 → … → "), "{e}");
        assert_eq!(c.asked().len(), 4);
        // A URL of 60,000 characters is shown cut short.
        let long = format!("/{}", "é".repeat(30_000));
        let mut c = Chain::new("http://a.example/", 20);
        c.next(&Method::GET, 302, Some(&long)).unwrap().unwrap();
        let e = c.next(&Method::GET, 302, Some(&long)).unwrap_err().to_string();
        assert!(
            e.starts_with("a redirect loop: http://a.example/ → http://a.example/%C3%A9"),
            "{e}"
        );
        assert!(e.len() < 600 && e.ends_with("%C3…"), "{e}");
    }
}
