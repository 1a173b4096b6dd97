//! Proxy auto-config: a PAC file's `FindProxyForURL(url, host)` chooses each load's proxy, as
//! in every browser since Netscape Navigator 2.0 and in Apple's `kCFProxyTypeAutoConfigurationURL`.
//!
//! The script runs in QuickJS, sandboxed: it sees the standard PAC helpers and nothing else
//! (no files, no network but the name lookups the helpers make, no timers), with a memory
//! limit, a stack limit, and a time limit per answer that covers its name lookups too. A
//! script that fails, runs over, or answers with nothing usable fails the load and says why;
//! it never falls back to a direct connection on its own, which would send a load around
//! the proxy its network requires.
//!
//! What the script is given, as Chrome gives it (since Chrome 52, so that a script fetched
//! from the network learns no more than the proxy would): for `https://` loads only the
//! scheme, host and port (`https://example.test/`); for `http://` loads the whole URL but
//! its fragment. The host is the URL's, without brackets for IPv6.
//!
//! Its answer is read as the Netscape specification and browsers read it: entries separated
//! by `;`, each `DIRECT`, `PROXY host[:port]` (or `HTTP`), `SOCKS5 host[:port]` or `SOCKS
//! host[:port]`, with the default ports 80 and 1080; the next entry is for when a proxy cannot
//! be reached. A bare `SOCKS` is SOCKS5 here, as in Firefox (Chrome reads it as SOCKS4, which
//! Netscape meant): the SOCKS servers in use speak version 5, `ssh -D` and Dante both
//! versions. `HTTPS` and `SOCKS4` proxies are not spoken here; such entries are passed over,
//! and an answer with nothing else fails the load, naming them.
//!
//! The helpers are the specification's (`isPlainHostName`, `dnsDomainIs`,
//! `localHostOrDomainIs`, `isResolvable`, `isInNet`, `dnsResolve`, `myIpAddress`,
//! `dnsDomainLevels`, `shExpMatch`, `weekdayRange`, `dateRange`, `timeRange`) and Microsoft's
//! IPv6 ones (`dnsResolveEx`, `myIpAddressEx`, `isResolvableEx`, `isInNetEx`,
//! `sortIpAddressList`); `alert` goes to the log. Names are looked up with the session's
//! resolver.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nw_connection::Resolve;
use nw_connection::Url;
use nw_connection::happy_eyeballs::Query;
use nw_connection::proxy::Proxy;

/// How long one answer may take, its name lookups included (and loading the script).
pub const TIME_LIMIT: Duration = Duration::from_secs(2);

/// The largest PAC file read or fetched from a URL.
pub const SIZE_LIMIT: usize = 1 << 20;

/// The most memory a script may hold.
const MEMORY_LIMIT: usize = 32 << 20;

/// The most stack a script may use (deep recursion fails instead of crashing the thread).
const STACK_LIMIT: usize = 512 << 10;

/// A loaded PAC file, ready to answer. Cloning shares the script (one thread runs it).
#[derive(Clone)]
pub struct Pac {
    jobs: mpsc::Sender<Job>,
    /// Where the script came from, to name it in errors.
    from: Arc<str>,
}

impl fmt::Debug for Pac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pac").field("from", &self.from).finish_non_exhaustive()
    }
}

/// One way to reach a destination a script's answer names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Straight to the destination.
    Direct,
    /// Through this proxy.
    Proxy(Proxy),
}

/// Why a PAC file gave no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacError {
    /// The file could not be read.
    #[error("{from}: cannot read the PAC file: {why}")]
    Read {
        /// Where it is.
        from: String,
        /// Why not.
        why: String,
    },
    /// The file could not be fetched from its URL.
    #[error("{from}: cannot fetch the PAC file: {why}")]
    Fetch {
        /// Its URL.
        from: String,
        /// Why not.
        why: String,
    },
    /// The script threw, does not parse, or defines no `FindProxyForURL`.
    #[error("{from}: the PAC script failed: {why}; correct the script")]
    Script {
        /// Where it came from.
        from: String,
        /// The exception, with its line.
        why: String,
    },
    /// The script ran past [`TIME_LIMIT`] (its name lookups included).
    #[error(
        "{from}: the PAC script did not answer within {:?} for {url}; a loop, or name lookups that do not answer",
        TIME_LIMIT
    )]
    TimedOut {
        /// Where it came from.
        from: String,
        /// What it was asked about.
        url: String,
    },
    /// The answer names no route that can be used.
    #[error("{from}: the PAC script answered {answer:?} for {url}: {why}")]
    Answer {
        /// Where it came from.
        from: String,
        /// What it was asked about.
        url: String,
        /// What it answered.
        answer: String,
        /// What is wrong with it.
        why: String,
    },
}

/// A question for the script's thread.
struct Job {
    url: String,
    host: String,
    lookups: Lookups,
    reply: tokio::sync::oneshot::Sender<Result<String, Failure>>,
}

/// How the script's name lookups are made: the session's resolver, on its runtime.
#[derive(Clone)]
struct Lookups {
    resolver: Arc<dyn Resolve>,
    runtime: tokio::runtime::Handle,
}

/// What went wrong on the script's thread, before it is named.
enum Failure {
    Script(String),
    TimedOut,
}

impl Pac {
    /// Reads a PAC file.
    pub fn read(path: &Path) -> Result<Self, PacError> {
        let from = path.display().to_string();
        let failed = |why: String| PacError::Read { from: from.clone(), why };
        // Bounded (a device or a pipe that never ends is not read for ever), and a named pipe
        // nothing writes to does not hold the load.
        let text =
            nw_trust::read_limited(path, SIZE_LIMIT as u64, "PAC file").map_err(|why| match why
                .strip_prefix("cannot read it: ")
            {
                Some(why) => failed(format!("{why}; give the path of a PAC file")),
                None => failed(why),
            })?;
        let text = String::from_utf8(text).map_err(|_| failed("it is not UTF-8 text".into()))?;
        Self::new(&text, &from)
    }

    /// Loads the script `text`, named `from` in errors: runs it once (under the time limit)
    /// and checks it defines `FindProxyForURL`.
    pub fn new(text: &str, from: &str) -> Result<Self, PacError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (loaded, load) = mpsc::sync_channel(1);
        let text = text.to_owned();
        let name = from.to_owned();
        let spawned = std::thread::Builder::new().name("nw-pac".into()).stack_size(4 << 20).spawn(
            move || match Engine::load(&text, &name) {
                Ok(engine) => {
                    let _ = loaded.send(Ok(()));
                    for job in queue {
                        let answer = engine.answer(&job);
                        let _ = job.reply.send(answer);
                    }
                }
                Err(e) => {
                    let _ = loaded.send(Err(e));
                }
            },
        );
        let script = |why: String| PacError::Script { from: from.to_owned(), why };
        spawned.map_err(|e| script(format!("cannot start its thread: {e}")))?;
        match load.recv() {
            Ok(Ok(())) => Ok(Self { jobs, from: from.into() }),
            Ok(Err(Failure::Script(why))) => Err(script(why)),
            Ok(Err(Failure::TimedOut)) => Err(PacError::TimedOut {
                from: from.to_owned(),
                url: "its first run (loading it)".into(),
            }),
            Err(_) => Err(script("its thread ended while loading it".into())),
        }
    }

    /// The routes the script names for `url`, in its order (at least one), looking names up
    /// with `resolver`.
    pub async fn routes(
        &self,
        url: &Url,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Vec<Route>, PacError> {
        let answer = self.answer(url, resolver).await?;
        parse(&answer).map_err(|why| PacError::Answer {
            from: self.from.to_string(),
            url: shown(url),
            answer,
            why,
        })
    }

    /// What the script answers for `url`, as it answers it (`pactester` prints the same).
    pub async fn answer(&self, url: &Url, resolver: Arc<dyn Resolve>) -> Result<String, PacError> {
        let asked = shown(url);
        let (reply, answer) = tokio::sync::oneshot::channel();
        let lookups = Lookups { resolver, runtime: tokio::runtime::Handle::current() };
        let job = Job { url: asked.clone(), host: url.host.clone(), lookups, reply };
        let from = || self.from.to_string();
        let gone = || PacError::Script { from: from(), why: "its thread has ended".into() };
        self.jobs.send(job).map_err(|_| gone())?;
        match answer.await.map_err(|_| gone())? {
            Ok(answer) => Ok(answer),
            Err(Failure::Script(why)) => Err(PacError::Script { from: from(), why }),
            Err(Failure::TimedOut) => Err(PacError::TimedOut { from: from(), url: asked }),
        }
    }
}

/// The URL as a script sees it: the whole of an `http://` URL, only the origin of others.
fn shown(url: &Url) -> String {
    let path = if url.scheme == "http" { url.path.as_str() } else { "/" };
    format!("{}://{}{path}", url.scheme, url.authority())
}

/// Reads an answer: its routes in order, passing over the kinds not spoken here; an error
/// when none remains.
pub fn parse(answer: &str) -> Result<Vec<Route>, String> {
    let mut routes = Vec::new();
    let mut passed = Vec::new();
    for entry in answer.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let mut words = entry.split_whitespace();
        let kind = words.next().unwrap_or_default().to_ascii_uppercase();
        let target = words.next();
        if words.next().is_some() {
            return Err(format!("{entry:?} has more than a kind and a host:port"));
        }
        let (scheme, default_port) = match (kind.as_str(), target) {
            ("DIRECT", None) => {
                routes.push(Route::Direct);
                continue;
            }
            ("DIRECT", Some(_)) => return Err(format!("{entry:?}: DIRECT takes no host")),
            ("PROXY" | "HTTP", _) => ("http", 80),
            // An HTTPS proxy: an HTTP proxy over TLS, port 443 unless named.
            ("HTTPS", _) => ("https", 443),
            ("SOCKS5" | "SOCKS", _) => ("socks5h", 1080),
            // SOCKS4 resolves here, as browsers do with it (4A is an extension a server may
            // lack).
            ("SOCKS4", _) => ("socks4", 1080),
            ("QUIC", _) => {
                passed.push(entry.to_owned());
                continue;
            }
            _ => {
                return Err(format!(
                    "{entry:?} is not DIRECT, PROXY, HTTPS, SOCKS5 or SOCKS4 host:port"
                ));
            }
        };
        let Some(target) = target else {
            return Err(format!("{entry:?} names no host"));
        };
        // Read as a proxy URL is, but only host[:port]: no user, path or query.
        let proxy = Some(target)
            .filter(|t| !t.contains(['@', '/', '?', '#']))
            .and_then(|t| Proxy::parse_with_port(&format!("{scheme}://{t}"), default_port).ok())
            .ok_or_else(|| format!("{entry:?}: {target:?} is not host[:port]"))?;
        routes.push(Route::Proxy(proxy));
    }
    if !routes.is_empty() {
        return Ok(routes);
    }
    if passed.is_empty() {
        return Err(
            "it names no route; answer \"DIRECT\", \"PROXY host:port\", \"SOCKS5 host:port\" or another kind of entry"
                .into(),
        );
    }
    Err(format!(
        "nw speaks none of {} (QUIC proxies are not supported); add a PROXY, HTTPS, SOCKS5, SOCKS4 or DIRECT entry",
        passed.join(", ")
    ))
}

/// The script's runtime, on its own thread.
struct Engine {
    // Dropped in this order: the context before its runtime.
    context: rquickjs::Context,
    _runtime: rquickjs::Runtime,
    /// When the current answer must be done.
    deadline: Rc<RefCell<Instant>>,
    /// The current answer's name lookups.
    lookups: Rc<RefCell<Option<Lookups>>>,
}

impl Engine {
    #[allow(clippy::disallowed_methods, reason = "the script's time limit is wall time")]
    fn load(text: &str, from: &str) -> Result<Self, Failure> {
        let internal = |e: rquickjs::Error| Failure::Script(format!("the engine failed: {e}"));
        let runtime = rquickjs::Runtime::new().map_err(internal)?;
        runtime.set_memory_limit(MEMORY_LIMIT);
        runtime.set_max_stack_size(STACK_LIMIT);
        let deadline = Rc::new(RefCell::new(Instant::now() + TIME_LIMIT));
        let late = deadline.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || Instant::now() > *late.borrow())));
        let context = rquickjs::Context::full(&runtime).map_err(internal)?;
        let lookups: Rc<RefCell<Option<Lookups>>> = Rc::default();
        let engine = Self { context, _runtime: runtime, deadline, lookups };
        engine.context.with(|ctx| -> Result<(), Failure> {
            engine.natives(&ctx).map_err(internal)?;
            let run = |source: &str, file: &str| {
                let mut options = rquickjs::context::EvalOptions::default();
                options.strict = false;
                options.filename = Some(file.to_owned());
                ctx.eval_with_options::<(), _>(source, options)
            };
            run(HELPERS, "pac-helpers.js").map_err(|e| engine.failure(&ctx, e))?;
            run(text, from).map_err(|e| engine.failure(&ctx, e))?;
            let find: rquickjs::Value<'_> =
                ctx.globals().get("FindProxyForURL").map_err(internal)?;
            if !find.is_function() {
                return Err(Failure::Script("it defines no function FindProxyForURL".into()));
            }
            Ok(())
        })?;
        Ok(engine)
    }

    /// The functions written here: name lookups, this machine's addresses, the log.
    fn natives<'js>(&self, ctx: &rquickjs::Ctx<'js>) -> rquickjs::Result<()> {
        use rquickjs::Function;
        let globals = ctx.globals();
        let (lookups, deadline) = (self.lookups.clone(), self.deadline.clone());
        let resolve = move |host: String, v6: bool| -> Vec<IpAddr> {
            let Some(lookups) = lookups.borrow().clone() else { return Vec::new() };
            resolve(&lookups, &host, v6, *deadline.borrow())
        };
        let first = resolve.clone();
        globals.set(
            "__nwResolve",
            Function::new(ctx.clone(), move |host: String| {
                first(host, false).into_iter().find(IpAddr::is_ipv4).map(|a| a.to_string())
            })?,
        )?;
        globals.set(
            "__nwResolveEx",
            Function::new(ctx.clone(), move |host: String| joined(&resolve(host, true)))?,
        )?;
        globals.set(
            "__nwMyIp",
            Function::new(ctx.clone(), || {
                own_address(false).unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string()
            })?,
        )?;
        globals.set(
            "__nwMyIpEx",
            Function::new(ctx.clone(), || {
                joined(
                    &[own_address(true), own_address(false)]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>(),
                )
            })?,
        )?;
        globals.set(
            "__nwInNetEx",
            Function::new(ctx.clone(), |ip: String, prefix: String| in_prefix(&ip, &prefix))?,
        )?;
        globals.set(
            "alert",
            Function::new(ctx.clone(), |message: rquickjs::Coerced<String>| {
                tracing::info!(target: "nw_http::pac", "PAC alert: {}", message.0);
            })?,
        )?;
        Ok(())
    }

    /// Asks `FindProxyForURL` (or `FindProxyForURLEx`, when the script defines it) about a job.
    #[allow(clippy::disallowed_methods, reason = "the script's time limit is wall time")]
    fn answer(&self, job: &Job) -> Result<String, Failure> {
        *self.deadline.borrow_mut() = Instant::now() + TIME_LIMIT;
        *self.lookups.borrow_mut() = Some(job.lookups.clone());
        let answer = self.context.with(|ctx| {
            let globals = ctx.globals();
            let ex: Option<rquickjs::Value<'_>> = globals.get("FindProxyForURLEx").ok();
            let name = if ex.is_some_and(|f| f.is_function()) {
                "FindProxyForURLEx"
            } else {
                "FindProxyForURL"
            };
            let find: rquickjs::Function<'_> = globals
                .get(name)
                .map_err(|_| Failure::Script(format!("{name} is no longer a function")))?;
            let value: rquickjs::Value<'_> = find
                .call((job.url.as_str(), job.host.as_str()))
                .map_err(|e| self.failure(&ctx, e))?;
            match value.as_string().map(rquickjs::String::to_string) {
                Some(Ok(text)) => Ok(text),
                _ => {
                    Err(Failure::Script(format!("{name} returned {}, not a string", what(&value))))
                }
            }
        });
        *self.lookups.borrow_mut() = None;
        answer
    }

    /// The exception behind `e`, with the line it came from; a time-out as such.
    #[allow(clippy::disallowed_methods, reason = "the script's time limit is wall time")]
    fn failure(&self, ctx: &rquickjs::Ctx<'_>, e: rquickjs::Error) -> Failure {
        if Instant::now() > *self.deadline.borrow() {
            return Failure::TimedOut;
        }
        let caught = rquickjs::CaughtError::from_error(ctx, e);
        let why = match &caught {
            rquickjs::CaughtError::Exception(ex) => {
                let message = ex.message().unwrap_or_else(|| "an exception".into());
                let at = ex.stack().and_then(|s| {
                    s.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned)
                });
                match at {
                    Some(at) => format!("{message} ({at})"),
                    None => message,
                }
            }
            rquickjs::CaughtError::Value(v) if v.is_null() => format!(
                "it ran out of memory (the limit is {} MiB), or threw null",
                MEMORY_LIMIT >> 20
            ),
            rquickjs::CaughtError::Value(v) => match v.as_string().map(|s| s.to_string()) {
                Some(Ok(text)) => format!("it threw {text:?}"),
                _ => format!("it threw {}", what(v)),
            },
            rquickjs::CaughtError::Error(e) => e.to_string(),
        };
        Failure::Script(why)
    }
}

/// What kind of value a script gave, in its own words.
fn what(value: &rquickjs::Value<'_>) -> &'static str {
    if value.is_undefined() {
        "undefined (nothing)"
    } else if value.is_null() {
        "null"
    } else if value.is_number() {
        "a number"
    } else if value.is_bool() {
        "a boolean"
    } else if value.is_function() {
        "a function"
    } else if value.is_array() {
        "an array"
    } else {
        "an object"
    }
}

/// `host`'s addresses (IPv4 only unless `v6`) from the session's resolver, given what is left
/// of the time limit; none when it fails or runs out.
#[allow(clippy::disallowed_methods, reason = "the script's time limit is wall time")]
fn resolve(lookups: &Lookups, host: &str, v6: bool, deadline: Instant) -> Vec<IpAddr> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return vec![ip];
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let resolver = lookups.resolver.clone();
    let host = host.to_owned();
    lookups.runtime.block_on(async move {
        let ask = |query| {
            let (resolver, host) = (resolver.clone(), host.clone());
            async move {
                match tokio::time::timeout(left, resolver.query(&host, query)).await {
                    Ok(Ok(found)) => found,
                    _ => Vec::new(),
                }
            }
        };
        if v6 {
            let (aaaa, a) = tokio::join!(ask(Query::Aaaa), ask(Query::A));
            aaaa.into_iter().chain(a).collect()
        } else {
            ask(Query::A).await
        }
    })
}

/// Addresses as Microsoft's `…Ex` helpers give them: joined by `;`.
fn joined(addresses: &[IpAddr]) -> String {
    addresses.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(";")
}

/// The address this machine's traffic to the internet leaves from: the source the kernel
/// picks for a route to a public address (a UDP socket connected, nothing sent), as Chrome
/// does; `None` without such a route.
fn own_address(v6: bool) -> Option<IpAddr> {
    // A root name server's public addresses (f.root-servers.net): only routed to, never sent to.
    let (bind, to): (IpAddr, IpAddr) = if v6 {
        (Ipv6Addr::UNSPECIFIED.into(), "2001:500:2f::f".parse().ok()?)
    } else {
        (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::new(192, 5, 5, 241).into())
    };
    let socket = UdpSocket::bind((bind, 0)).ok()?;
    socket.connect((to, 53)).ok()?;
    Some(socket.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

/// Whether the address `ip` lies in `prefix` (`net/bits`), as `isInNetEx` asks: read and
/// compared as a `no_proxy` range is.
fn in_prefix(ip: &str, prefix: &str) -> bool {
    let (Ok(ip), Some((net, bits))) = (ip.parse::<IpAddr>(), crate::proxy::cidr(prefix)) else {
        return false;
    };
    crate::proxy::within(ip, net, bits)
}

/// The helpers a PAC script may call, written over the natives above. Their meanings are the
/// Netscape specification's (1996) as browsers implement them; the time ones read the local
/// time unless their last argument is "GMT", and every range includes both ends.
const HELPERS: &str = include_str!("pac_helpers.js");

#[cfg(test)]
mod tests {
    use nw_connection::proxy::Kind;

    use super::*;

    #[test]
    fn answers_are_read_as_browsers_read_them() {
        let proxy = |kind, host: &str, port| {
            Route::Proxy(Proxy { kind, host: host.into(), port, credentials: None })
        };
        let socks = Kind::Socks5 { remote_names: true };
        assert_eq!(
            parse("PROXY p.test:3128; socks5 [2001:db8::1]; DIRECT").unwrap(),
            vec![
                proxy(Kind::Http, "p.test", 3128),
                proxy(socks, "2001:db8::1", 1080),
                Route::Direct
            ]
        );
        assert_eq!(parse(" HTTP 10.0.0.1 ;;").unwrap(), vec![proxy(Kind::Http, "10.0.0.1", 80)]);
        assert_eq!(
            parse("HTTPS s.test; SOCKS4 s.test:1081").unwrap(),
            vec![
                proxy(Kind::Https, "s.test", 443),
                proxy(Kind::Socks4 { remote_names: false }, "s.test", 1081)
            ]
        );
        // Kinds not spoken are passed over, and named when nothing else is left.
        assert_eq!(parse("QUIC s.test:443; DIRECT").unwrap(), vec![Route::Direct]);
        assert_eq!(parse("SOCKS s.test").unwrap(), vec![proxy(socks, "s.test", 1080)]);
        let e = parse("QUIC s.test:443; QUIC t.test").unwrap_err();
        assert!(e.contains("QUIC s.test:443, QUIC t.test"), "{e}");
        for bad in
            ["", " ; ", "PROXY", "PROXY a:b", "PROXY a:0", "DIRECT x", "FTP a:1", "PROXY a b"]
        {
            assert!(parse(bad).is_err(), "{bad:?} was read as a route");
        }
    }

    #[test]
    fn a_script_sees_the_origin_of_https_loads_and_the_whole_of_http_ones() {
        let url = |scheme: &str, host: &str, port, path: &str| Url {
            scheme: scheme.into(),
            host: host.into(),
            port,
            path: path.into(),
        };
        assert_eq!(shown(&url("https", "a.test", 443, "/secret?q=1")), "https://a.test/");
        assert_eq!(shown(&url("https", "::1", 8443, "/x")), "https://[::1]:8443/");
        assert_eq!(shown(&url("http", "a.test", 80, "/p?q=1")), "http://a.test/p?q=1");
        assert_eq!(shown(&url("http", "a.test", 8080, "/")), "http://a.test:8080/");
    }

    #[test]
    fn prefixes_compare_as_isinnetex_asks() {
        assert!(in_prefix("198.51.100.7", "198.51.100.0/24"));
        assert!(!in_prefix("198.51.101.7", "198.51.100.0/24"));
        assert!(in_prefix("2001:db8::5", "2001:db8::/32"));
        assert!(in_prefix("10.1.2.3", "0.0.0.0/0"));
        assert!(!in_prefix("10.1.2.3", "2001:db8::/32"));
        assert!(!in_prefix("10.1.2.3", "10.0.0.0/33"));
        assert!(!in_prefix("nonsense", "10.0.0.0/8"));
    }

    /// Asks `script` about `url`, names resolving as `names` say.
    fn ask(script: &str, url: Url, names: &[(&str, &str)]) -> Result<Vec<Route>, PacError> {
        let mut resolver = nw_connection::MemoryResolver::new();
        for (name, ip) in names {
            resolver = resolver.with(name, &[ip.parse().unwrap()]);
        }
        let resolver: Arc<dyn Resolve> = Arc::new(resolver);
        let pac = Pac::new(script, "test.pac")?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(pac.routes(&url, resolver))
    }

    fn https(host: &str) -> Url {
        Url { scheme: "https".into(), host: host.into(), port: 443, path: "/a?b".into() }
    }

    fn http_proxy(host: &str, port: u16) -> Vec<Route> {
        vec![Route::Proxy(Proxy { kind: Kind::Http, host: host.into(), port, credentials: None })]
    }

    #[test]
    fn the_standard_helpers_answer_as_the_specification_says() {
        let script = r#"
            function FindProxyForURL(url, host) {
                var checks = [
                    isPlainHostName("intranet"), !isPlainHostName("a.test"),
                    dnsDomainIs("www.corp.test", ".corp.test"), !dnsDomainIs("corp.test.x", ".corp.test"),
                    localHostOrDomainIs("www", "www.corp.test"),
                    localHostOrDomainIs("www.corp.test", "www.corp.test"),
                    !localHostOrDomainIs("www.other.test", "www.corp.test"),
                    dnsDomainLevels("a.b.c") === 2, dnsDomainLevels("a") === 0,
                    shExpMatch("http://a.corp.test/x.html", "*.corp.test/*"),
                    shExpMatch("ab.c", "a?.c"), !shExpMatch("abc", "a?.c"), !shExpMatch("a(b", "a.b"),
                    dnsResolve("inside.test") === "10.1.2.3", dnsResolve("nowhere.test") === null,
                    isResolvable("inside.test"), !isResolvable("nowhere.test"),
                    isInNet("inside.test", "10.0.0.0", "255.0.0.0"),
                    isInNet("192.168.4.5", "192.168.0.0", "255.255.0.0"),
                    !isInNet("192.169.4.5", "192.168.0.0", "255.255.0.0"),
                    !isInNet("nowhere.test", "0.0.0.0", "0.0.0.0"),
                    convert_addr("1.2.3.4") === 16909060, convert_addr("255.0.0.1") === -16777215,
                    dnsResolveEx("six.test") === "2001:db8::6",
                    isInNetEx("2001:db8::6", "2001:db8::/32"),
                    sortIpAddressList("10.0.0.1;2001:db8::1") === "2001:db8::1;10.0.0.1",
                    typeof myIpAddress() === "string" && myIpAddress().split(".").length === 4,
                    weekdayRange("SUN", "SAT"), timeRange(0, 0, 0, 23, 59, 59),
                    dateRange("JAN", "DEC"), dateRange(1, 31, "GMT"),
                    !timeRange(25), !weekdayRange("XYZ"), !dateRange("JAN", 1),
                ];
                for (var i = 0; i < checks.length; i++) {
                    if (checks[i] !== true) throw new Error("check " + i + " failed");
                }
                return "PROXY ok.test:1";
            }"#;
        let names = [("inside.test", "10.1.2.3"), ("six.test", "2001:db8::6")];
        assert_eq!(ask(script, https("a.test"), &names).unwrap(), http_proxy("ok.test", 1));
    }

    #[test]
    fn the_script_is_asked_with_the_url_and_host_and_its_ex_form_preferred() {
        let script = r#"
            function FindProxyForURL(url, host) { return "PROXY old.test:1"; }
            function FindProxyForURLEx(url, host) { return "PROXY " + host + ":" + url.length; }
        "#;
        // "https://b.test/" is 15 characters: the path is not shown.
        assert_eq!(ask(script, https("b.test"), &[]).unwrap(), http_proxy("b.test", 15));
    }

    #[test]
    fn failures_say_what_the_script_did() {
        let failed = |script: &str| ask(script, https("a.test"), &[]).unwrap_err().to_string();
        let e = failed("function FindProxyForURL(u, h) {\n  return nope(); }");
        assert!(e.contains("test.pac") && e.contains("nope") && e.contains(":2"), "{e}");
        let e = failed("function FindProxyForURL(u, h) { return 7; }");
        assert!(e.contains("returned a number, not a string"), "{e}");
        let e = failed("function FindProxyForURL(u, h) { return 'QUIC s.test:443'; }");
        assert!(e.contains("QUIC s.test:443") && e.contains("add a PROXY"), "{e}");
        let e = failed("var x = ;");
        assert!(e.contains("the PAC script failed") && e.contains("test.pac"), "{e}");
        let e = failed("function f() {}");
        assert!(e.contains("defines no function FindProxyForURL"), "{e}");
    }

    #[test]
    fn a_script_that_never_answers_is_stopped_and_the_next_answer_is_given() {
        let script = r#"
            function FindProxyForURL(url, host) {
                if (host === "loop.test") { while (true) {} }
                if (host === "deep.test") { return (function f(n) { return f(n + 1); })(0); }
                if (host === "big.test") { var a = []; while (true) { a.push(new Array(1e5)); } }
                return "DIRECT";
            }"#;
        let pac = Pac::new(script, "test.pac").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let resolver: Arc<dyn Resolve> = Arc::new(nw_connection::MemoryResolver::new());
        let ask = |host| runtime.block_on(pac.routes(&https(host), resolver.clone()));
        #[allow(clippy::disallowed_methods, reason = "the limit is wall time")]
        let started = Instant::now();
        assert!(matches!(ask("loop.test"), Err(PacError::TimedOut { .. })));
        let took = started.elapsed();
        assert!(took >= TIME_LIMIT && took < TIME_LIMIT * 3, "{took:?}");
        let e = ask("deep.test").unwrap_err().to_string();
        assert!(e.contains("stack size exceeded"), "{e}");
        let e = ask("big.test").unwrap_err().to_string();
        assert!(e.contains("ran out of memory"), "{e}");
        // The script still answers afterwards.
        assert_eq!(ask("fine.test").unwrap(), vec![Route::Direct]);
        // A script that never finishes loading is stopped too.
        let e = Pac::new("while (true) {}", "slow.pac").unwrap_err();
        assert!(matches!(e, PacError::TimedOut { .. }), "{e}");
    }
}
