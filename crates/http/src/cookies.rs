//! The session's cookie jar (RFC 6265's storage model, by the `cookie_store` crate): cookies a
//! response sets are kept and sent back with later requests where their domain, path, secure
//! and expiry rules allow — each hop of a redirect gets its own URL's cookies, never another
//! origin's. In memory for the session's life, or kept in a file between sessions.
//!
//! A cookie whose `Domain=` is a public suffix (`com`, `co.uk`, `github.io`, or a top-level
//! label the Public Suffix List does not know, which its algorithm takes as one) is refused, as
//! RFC 6265bis §5.7 asks of a user agent that knows the list (the `psl` crate carries it):
//! otherwise `evil.co.uk` could set a cookie every `*.co.uk` site would be sent. Set by that very
//! host (`Domain=github.io` from `github.io`), it is kept as a cookie for that host only.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use cookie_store::{CookieStore, RawCookie};
use nw_connection::Url;

use crate::Error;

/// What a session does with cookies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cookies {
    /// Neither kept nor sent.
    Off,
    /// Kept for the session's life.
    #[default]
    Memory,
    /// Kept in this file (JSON), read when the session is made and written when a response
    /// changes the jar; only persistent cookies (with an expiry) are written.
    File(PathBuf),
}

/// The jar.
#[derive(Debug)]
pub struct Jar {
    store: Option<Mutex<CookieStore>>,
    /// The jar's file, and the lock its writers take in turn.
    file: Option<(PathBuf, tokio::sync::Mutex<()>)>,
}

/// The most of a jar file read (cookies are small; a browser's whole jar fits).
const MAX_FILE: u64 = 16 << 20;

/// A cookie whose name and value together are longer is ignored whole (RFC 6265bis §5.6,
/// step 5 of parsing a set-cookie-string): it would make every request to its site too large
/// for many servers.
const MAX_COOKIE: usize = 4096;

/// The most cookies a jar keeps; past it, new ones are ignored. Chrome keeps 3,300 (RFC 6265
/// §6.1 asks for at least 3,000): a server that sets more is hostile or broken, and each kept
/// one is memory and, for its site, header bytes.
const MAX_COOKIES: usize = 3300;

impl Jar {
    /// The jar `cookies` asks for, read from its file when there is one.
    pub fn new(cookies: &Cookies) -> Result<Self, Error> {
        let (store, file) = match cookies {
            Cookies::Off => return Ok(Self { store: None, file: None }),
            Cookies::Memory => (CookieStore::default(), None),
            Cookies::File(path) => (load(path)?, Some((path.clone(), tokio::sync::Mutex::new(())))),
        };
        Ok(Self { store: Some(Mutex::new(store)), file })
    }

    /// The `Cookie` field for a request to `url`, when the jar has any for it.
    pub fn header_for(&self, url: &Url) -> Option<String> {
        let store = self.store.as_ref()?.lock().unwrap_or_else(PoisonError::into_inner);
        // Most sessions hold no cookies: no URL to build for them on every request.
        store.iter_any().next()?;
        let url = web_url(url)?;
        let pairs: Vec<String> =
            store.get_request_values(&url).map(|(name, value)| format!("{name}={value}")).collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    /// Keeps what a response from `url` sets (`Set-Cookie` fields), and writes the file when
    /// there is one — on a blocking thread, one writer at a time, each writing the jar as it is
    /// then, so the last write holds the latest. A file that cannot be written is logged, not
    /// fatal: the load itself succeeded.
    pub async fn learn(&self, url: &Url, headers: &hyper::HeaderMap) {
        let Some(store) = &self.store else { return };
        let set: Vec<RawCookie<'static>> = headers
            .get_all(hyper::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| RawCookie::parse(v.to_owned()).ok())
            .filter(|c| {
                let fits = c.name().len() + c.value().len() <= MAX_COOKIE;
                if !fits {
                    tracing::debug!(
                        "ignored cookie {:?}: longer than {MAX_COOKIE} bytes",
                        c.name()
                    );
                }
                fits
            })
            .collect();
        if set.is_empty() {
            return;
        }
        let Some(web) = web_url(url) else { return };
        let host = web.host_str().unwrap_or_default().to_ascii_lowercase();
        let set = set.into_iter().filter_map(|c| within_a_site(c, &host));
        {
            let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
            let mut held = store.iter_any().count();
            for cookie in set {
                // A full jar still takes a cookie that replaces one it holds (the same name,
                // domain and path — the path as the store works it out, its default included).
                let replaces = || {
                    cookie_store::Cookie::try_from_raw_cookie(&cookie, &web).is_ok_and(|c| {
                        store.contains_any(&String::from(&c.domain), &c.path, c.name())
                    })
                };
                if held >= MAX_COOKIES && !replaces() {
                    tracing::debug!(
                        "ignored cookie {:?}: the jar holds {MAX_COOKIES}",
                        cookie.name()
                    );
                    continue;
                }
                match store.insert_raw(&cookie, &web) {
                    Ok(cookie_store::StoreAction::Inserted) => held += 1,
                    Ok(_) => {}
                    Err(e) => tracing::debug!("cookie {:?} not kept: {e:?}", cookie.name()),
                }
            }
        }
        let Some((path, writing)) = &self.file else { return };
        let _turn = writing.lock().await;
        let mut json = Vec::new();
        let serialized = {
            let store = store.lock().unwrap_or_else(PoisonError::into_inner);
            cookie_store::serde::json::save(&store, &mut json)
        };
        let path = path.clone();
        let written = match serialized {
            Err(e) => Err(std::io::Error::other(e.to_string())),
            Ok(()) => tokio::task::spawn_blocking({
                let path = path.clone();
                move || save(&json, &path)
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e))),
        };
        if let Err(e) = written {
            tracing::warn!("{}: the cookie jar could not be written: {e}", path.display());
        }
    }
}

/// The cookie as kept, when its `Domain=` is a public suffix (RFC 6265bis §5.7 step 9): for
/// the host itself when it set it, else not at all.
fn within_a_site(mut cookie: RawCookie<'static>, host: &str) -> Option<RawCookie<'static>> {
    let Some(domain) = cookie.domain() else { return Some(cookie) };
    let domain = domain.trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
    let public = psl::suffix(domain.as_bytes()).is_some_and(|s| s.as_bytes().len() == domain.len());
    if !public {
        return Some(cookie);
    }
    if domain == host.trim_end_matches('.') {
        cookie.unset_domain();
        return Some(cookie);
    }
    tracing::debug!(
        "refused cookie {:?} from {host}: its domain {domain} is a public suffix",
        cookie.name()
    );
    None
}

/// The URL as `cookie_store` takes it.
fn web_url(url: &Url) -> Option<url::Url> {
    url::Url::parse(&url.to_string()).ok()
}

/// Reads a jar file; an absent one is an empty jar, in a directory that must exist (or the
/// cookies would be lost at the first write, with the load long done).
fn load(path: &Path) -> Result<CookieStore, Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::Setting(format!(
            "{}: the cookie jar's directory {} does not exist; create it or name another file",
            path.display(),
            dir.display()
        )));
    }
    let io = |what, e| Error::io(path, what, e);
    let text = match nw_trust::files::read_regular(path, false, MAX_FILE) {
        Ok((text, _)) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CookieStore::default()),
        // A directory, a pipe or a device named as the jar: the command line's mistake.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Err(Error::Setting(format!(
                "{}: {e}, so no cookie jar; name a file",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return Err(Error::Setting(format!(
                "{}: the cookie jar is larger than {} MiB; is it the right file?",
                path.display(),
                MAX_FILE >> 20
            )));
        }
        Err(e) => return Err(io("cannot read the cookie jar", e)),
    };
    cookie_store::serde::json::load(text.as_slice()).map_err(|e| {
        Error::Setting(format!(
            "{}: not a cookie jar nw wrote ({e}); name another file, or remove it",
            path.display()
        ))
    })
}

/// Writes the jar beside `path` and renames it over: never half a jar, never through a link;
/// readable by its owner only (cookies are credentials).
fn save(json: &[u8], path: &Path) -> std::io::Result<()> {
    nw_trust::files::replace(path, json, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        match nw_connection::Endpoint::parse(text) {
            Ok(nw_connection::Endpoint::Url(u)) => u,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn jar_after(at: &str, set_cookie: &[&str]) -> Jar {
        let jar = Jar::new(&Cookies::Memory).unwrap();
        let mut headers = hyper::HeaderMap::new();
        for v in set_cookie {
            headers.append(hyper::header::SET_COOKIE, v.parse().unwrap());
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(jar.learn(&url(at), &headers));
        jar
    }

    fn sent(jar: &Jar, to: &str) -> Option<String> {
        jar.header_for(&url(to))
    }

    #[test]
    fn a_cookie_too_long_is_ignored_and_the_jar_stops_at_its_limit() {
        let long = format!("big={}", "x".repeat(MAX_COOKIE));
        let jar = jar_after("https://a.example/", &[&long, "small=1"]);
        assert_eq!(sent(&jar, "https://a.example/").as_deref(), Some("small=1"));
        // A response that sets more than the jar holds: the first MAX_COOKIES are kept, and
        // one already kept can still be replaced — also one with no Path, whose path is the
        // page's directory (`/dir`), not `/`.
        let many: Vec<String> = (0..MAX_COOKIES + 50).map(|i| format!("c{i}=v")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let jar = jar_after("https://b.example/dir/page", &many);
        let held = |jar: &Jar| {
            let store = jar.store.as_ref().unwrap().lock().unwrap();
            store.iter_any().count()
        };
        assert_eq!(held(&jar), MAX_COOKIES);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut headers = hyper::HeaderMap::new();
        headers.append(hyper::header::SET_COOKIE, "c0=new".parse().unwrap());
        headers.append(hyper::header::SET_COOKIE, "another=1".parse().unwrap());
        rt.block_on(jar.learn(&url("https://b.example/dir/page"), &headers));
        assert_eq!(held(&jar), MAX_COOKIES);
        let header = sent(&jar, "https://b.example/dir/other").unwrap();
        assert!(header.contains("c0=new") && !header.contains("another="), "{}", &header[..80]);
    }

    #[test]
    fn a_cookie_for_a_public_suffix_is_refused() {
        let jar = jar_after(
            "https://evil.co.uk/",
            &["a=1; Domain=co.uk", "b=2; Domain=.CO.UK", "c=3; Domain=uk", "d=4"],
        );
        assert_eq!(sent(&jar, "https://bank.co.uk/"), None, "another site got the cookies");
        assert_eq!(sent(&jar, "https://evil.co.uk/").as_deref(), Some("d=4"));
        // A private-section suffix, and a label the list does not know.
        let jar = jar_after("https://me.github.io/", &["e=5; Domain=github.io"]);
        assert_eq!(sent(&jar, "https://you.github.io/"), None);
        let jar = jar_after("http://printer.lan/", &["f=6; Domain=lan"]);
        assert_eq!(sent(&jar, "http://router.lan/"), None);
    }

    #[test]
    fn a_registrable_domain_is_kept_and_a_suffix_set_by_itself_is_host_only() {
        let jar = jar_after("https://www.example.co.uk/", &["a=1; Domain=example.co.uk"]);
        assert_eq!(sent(&jar, "https://shop.example.co.uk/").as_deref(), Some("a=1"));
        let jar = jar_after("https://github.io/", &["b=2; Domain=github.io"]);
        assert_eq!(sent(&jar, "https://github.io/").as_deref(), Some("b=2"));
        assert_eq!(sent(&jar, "https://me.github.io/"), None, "host-only, not the suffix's");
        let jar = jar_after("http://printer.lan/", &["c=3; Domain=printer.lan"]);
        assert_eq!(sent(&jar, "http://ink.printer.lan/").as_deref(), Some("c=3"));
    }
}
