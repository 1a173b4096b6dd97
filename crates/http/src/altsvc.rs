//! HTTP/3 discovery through `Alt-Svc` (RFC 7838), as pure logic over an injected clock.
//!
//! A response over HTTP/1.1 or HTTP/2 may advertise `h3=":PORT"`; later connections to that
//! origin then try HTTP/3 on that UDP port first (racing TCP, see `http::connect`). An
//! alternative that fails is marked broken for the rest of the session (RFC 7838 §2.4 lets a
//! client stop using an alternative it cannot reach). Only alternatives on the origin's own
//! host are taken: an alternative host would need its certificate checked for the origin's name,
//! which the race does not do yet.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// RFC 7838 §3.1: an alternative without `ma` is fresh for 24 hours.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(86_400);

/// What one `Alt-Svc` header value says about HTTP/3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertised {
    /// `clear`: forget every alternative of this origin.
    Clear,
    /// HTTP/3 on this UDP port of the same host, fresh for `max_age`.
    H3 {
        /// The UDP port.
        port: u16,
        /// How long the advertisement holds.
        max_age: Duration,
    },
    /// Nothing this client uses (other protocols, other hosts, or a value it cannot read).
    Nothing,
}

/// Reads an `Alt-Svc` value (`h3=":443"; ma=3600, h2=":443"`, or `clear`). `host` is the
/// origin's host: an alternative naming it explicitly counts as the same host.
pub fn parse(value: &str, host: &str) -> Advertised {
    if value.trim() == "clear" {
        return Advertised::Clear;
    }
    for entry in split_outside_quotes(value, ',') {
        let mut parts = split_outside_quotes(entry, ';').into_iter();
        let Some((protocol, authority)) = parts.next().and_then(|p| p.split_once('=')) else {
            continue;
        };
        if protocol.trim() != "h3" {
            continue;
        }
        let authority = authority.trim().trim_matches('"');
        let Some((alt_host, port)) = authority.rsplit_once(':') else { continue };
        let alt_host = alt_host.trim_start_matches('[').trim_end_matches(']');
        let same_host = alt_host.is_empty()
            || alt_host.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'));
        let Ok(port) = port.parse::<u16>() else { continue };
        if !same_host || port == 0 {
            continue;
        }
        let mut max_age = DEFAULT_MAX_AGE;
        for param in parts {
            if let Some((name, v)) = param.split_once('=')
                && name.trim() == "ma"
                && let Ok(secs) = v.trim().trim_matches('"').parse::<u64>()
            {
                max_age = Duration::from_secs(secs);
            }
        }
        return Advertised::H3 { port, max_age };
    }
    Advertised::Nothing
}

/// Splits at `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// An origin: scheme, host, port.
pub type Origin = (String, String, u16);

/// `url`'s origin, its host in lower case.
pub fn origin(url: &nw_connection::Url) -> Origin {
    (url.scheme.clone(), url.host.to_ascii_lowercase(), url.port)
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: u16,
    expires: Instant,
    broken: bool,
}

/// A session's HTTP/3 alternatives, learned from responses.
#[derive(Debug, Default)]
pub struct Cache {
    entries: Mutex<HashMap<Origin, Entry>>,
}

impl Cache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Origin, Entry>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The UDP port to try HTTP/3 on for `origin` at `now`, if one is known, fresh and not
    /// broken.
    pub fn h3_port(&self, origin: &Origin, now: Instant) -> Option<u16> {
        let entries = self.entries();
        let e = entries.get(origin)?;
        (!e.broken && now < e.expires).then_some(e.port)
    }

    /// Takes in a response's `Alt-Svc` value for `origin`, received at `now`. An alternative
    /// already marked broken stays broken.
    pub fn learn(&self, origin: &Origin, value: &str, now: Instant) {
        let mut entries = self.entries();
        match parse(value, &origin.1) {
            Advertised::Clear => {
                entries.remove(origin);
            }
            Advertised::H3 { port, max_age } => {
                let broken = entries.get(origin).is_some_and(|e| e.broken && e.port == port);
                let expires = now.checked_add(max_age).unwrap_or(now + DEFAULT_MAX_AGE);
                entries.insert(origin.clone(), Entry { port, expires, broken });
            }
            Advertised::Nothing => {}
        }
    }

    /// HTTP/3 to `origin` failed: stop trying it in this session.
    pub fn broken(&self, origin: &Origin) {
        if let Some(e) = self.entries().get_mut(origin) {
            e.broken = true;
        }
    }
}
