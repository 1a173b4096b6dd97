//! `nw-transfer`: sessions and downloads that never lose a completed byte.
//!
//! - [`Session`]: an immutable [`Configuration`] (timeouts, connectivity waits, the
//!   transport-security policy, trust, durability) and the persistent [`store::Store`].
//! - [`download`]: downloads to `FILE.part`, checkpointed, resumed with `If-Range`, renamed to
//!   `FILE` only when complete.
//! - [`resume`]: what to ask for and what a response means, as pure logic.
//! - [`scheduler`]: the background scheduler as a machine in virtual time (the resume-rate
//!   limiter, batches, discretionary waits, retries), each wait with its reason.
//! - [`tasks`]: data tasks (a response into memory, bounded; a [`tasks::Request`] of any
//!   method with a [`body::Body`]: bytes, a file read as it goes, or a stream made as it is
//!   sent) and uploads (a file as the body).
//! - [`task`]: URLSessionTask's lifecycle over those: a download, data or upload task
//!   running on its own, its status and progress to watch, suspended and resumed, cancelled
//!   (a download's with [`task::ResumeData`] to continue it later).
//! - [`queue`]: transfers recorded now and run later under the scheduler, from the store.
//! - [`metrics`]: per-task timings and facts.
//! - [`responsiveness`]: the responsiveness test's HTTP driving (nw-quality's machine decides).
//!
//! HTTP/1.1 (our own client, which reads bodies straight into the file's buffers) and HTTP/2
//! (hyper) run on connections from nw-connection (the Happy Eyeballs race, TLS through
//! nw-trust); HTTP/3 over quinn and h3, discovered through `Alt-Svc` or assumed, raced against
//! TCP and falling back to it. Proxies, PAC files, the pool, Alt-Svc, the ATS-like policy,
//! redirects, cookies, `.netrc` and content decoding are nw-http's ([`nw_http`]); what a
//! configuration takes from it ([`Proxies`], [`Cookies`], [`CredentialProvider`]) is
//! re-exported here.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nw_transfer::TransferError> {
//! use nw_transfer::{Configuration, Download, Session};
//!
//! // No store: nothing is remembered past the session.
//! let session = Session::ephemeral(Configuration::default())?;
//! let page = session.data("https://deb.debian.org/debian/", 1 << 20).await?;
//! println!("{} {} bytes over {:?}", page.status, page.body.len(), page.metrics.protocol);
//!
//! // Any method, with a body: a JSON POST.
//! let request = nw_transfer::tasks::Request {
//!     method: hyper::Method::POST,
//!     headers: vec![("Content-Type".into(), "application/json".into())],
//!     body: r#"{"q":"nwkit"}"#.into(),
//!     ..nw_transfer::tasks::Request::get("https://api.example/search")
//! };
//! let answer = session.send(&request, 1 << 20).await?;
//! println!("{} after {} redirects", answer.status, answer.metrics.redirects.len());
//!
//! // With a store, a download stopped midway resumes from its last checkpoint next time.
//! let session = Session::new(Configuration::default(), "transfers.db".as_ref())?;
//! let job = Download { resume: true, ..Download::new("https://deb.debian.org/debian/ls-lR.gz", "ls-lR.gz") };
//! let done = session.download(&job, &mut |_event| {}).await?;
//! println!("{} bytes, resumed from {}", done.bytes, done.resumed_from);
//!
//! // As a task: it runs on its own; watch it, suspend it, or cancel it keeping resume data.
//! let session = std::sync::Arc::new(session);
//! let task = session.download_task(Download::new("https://deb.debian.org/debian/README", "README"));
//! let mut status = task.watch();
//! while status.changed().await.is_ok() {
//!     let now = *status.borrow_and_update();
//!     println!("{:?}: {} of {:?} bytes", now.state, now.received, now.expected_to_receive);
//!     if now.state == nw_transfer::task::State::Completed {
//!         break;
//!     }
//! }
//! println!("{} bytes in {}", task.wait().await?.bytes, "README");
//! # Ok(()) }
//! ```
//!
//! `examples/fetch.rs` does the same from the command line, with a credential provider.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nw_connection::Url;
use nw_connection::tls;
use nw_connection::{Parameters, Resolve, SystemResolver};

/// HTTP methods, as [`tasks::Upload`] takes them.
pub use hyper::Method;

pub mod body;
pub mod download;
mod h1;
mod http;
// The HTTP layer, from nw-http, under the names the crate's modules use.
use nw_http::{altsvc, cookies, decode, pac, policy, pool, redirect};
pub mod metrics;
pub mod queue;
pub mod responsiveness;
pub mod resume;
pub mod scheduler;
mod sink;
pub mod store;
pub mod task;
pub mod tasks;

pub use download::{Download, Event, Finished};
pub use http::Protocol;
// What a session's configuration takes from the HTTP layer, so that an application needs
// only this crate to make one.
pub use nw_connection::proxy::Proxy;
pub use nw_http::{Cookies, CredentialProvider, Pac, PacError, Proxies, Refused};
/// How many redirects a load follows unless its configuration says otherwise (20, as Chrome
/// and Firefox).
pub use redirect::DEFAULT_LIMIT as DEFAULT_MAX_REDIRECTS;

/// A session's settings, fixed when the session is made.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// The longest wait for the next bytes of a response (and for a connection).
    pub request_timeout: Duration,
    /// The longest one load may take in all — connecting, redirects, the whole body — as
    /// URLSession's `timeoutIntervalForResource`: what bounds a server that trickles a byte
    /// now and then, which the request timeout never catches. A download that runs out keeps
    /// what arrived for a resume ([`TransferError::ResourceTimeout`]). `None` (the default):
    /// no limit.
    pub resource_timeout: Option<Duration>,
    /// While no path satisfies the conditions, wait for one instead of failing.
    pub waits_for_connectivity: bool,
    /// Use paths nw-path marks expensive (cellular, hotspots).
    pub allows_expensive: bool,
    /// Use paths nw-path marks constrained (low-data mode).
    pub allows_constrained: bool,
    /// Follow at most this many redirects in one load (0: follow none; a redirect is then the
    /// answer, and fails a download as any status but 2xx does).
    pub max_redirects: usize,
    /// The transport-security policy (HTTPS required, default trust must pass). On by default.
    pub ats: bool,
    /// The per-load exemption: allow plain HTTP to any host.
    pub allow_http: bool,
    /// Offer HTTP/2 in ALPN.
    pub http2: bool,
    /// When to use HTTP/3.
    pub http3: Http3,
    /// The proxies loads go through: by default the ones the environment names, read as curl
    /// reads them ([`Proxies`]).
    pub proxies: Proxies,
    /// What the session does with cookies: kept in memory by default.
    pub cookies: Cookies,
    /// The caller's trust settings.
    pub trust: nw_trust::Options,
    /// The unloosened default trust ATS also requires (system anchors, CT as by default).
    pub default_trust: nw_trust::Options,
    /// Make data durable (fsync) before a checkpoint claims it. Without, a checkpoint survives
    /// the process being killed but not the machine losing power.
    pub durable: bool,
    /// The most a download runs ahead of its last checkpoint: what a `kill -9` can cost.
    pub checkpoint_bytes: u64,
    /// Write files of this size and more around the page cache (`O_DIRECT`), which saves a
    /// copy of every byte (64 MiB by default; `None`: always through the page cache).
    pub direct_from: Option<u64>,
    /// The session's name in the store, like a background session's identifier: transfers it
    /// queues keep it, and [`Session::run_queue`] asks for a session by it to run them, so a
    /// queued transfer runs with the settings it was queued with. `None`: they run in whatever
    /// session runs the queue.
    pub identifier: Option<String>,
    /// Where the `Authorization` for each origin comes from when a request carries none of its
    /// own: asked once per origin, and again after a 401 (see [`nw_http::auth`]). Never kept in
    /// the store: a queued transfer runs with the provider of the session that runs it.
    pub credentials: Option<Arc<dyn CredentialProvider>>,
}

impl Default for Configuration {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            resource_timeout: None,
            waits_for_connectivity: false,
            max_redirects: redirect::DEFAULT_LIMIT,
            allows_expensive: true,
            allows_constrained: true,
            ats: true,
            allow_http: false,
            http2: true,
            http3: Http3::Discover,
            proxies: Proxies::from_env(),
            cookies: Cookies::Memory,
            trust: nw_trust::Options::default(),
            default_trust: nw_trust::Options::default(),
            durable: true,
            checkpoint_bytes: 64 << 20,
            direct_from: Some(64 << 20),
            identifier: None,
            credentials: None,
        }
    }
}

/// How a load may connect: over TCP (with TLS for HTTPS), racing HTTP/3 when it may, and
/// the proxies to fall back on, in order, when the TCP route's proxy cannot be reached (a PAC
/// file's later entries; `None` is direct).
#[derive(Clone)]
pub(crate) struct Routes {
    pub(crate) tcp: Parameters,
    pub(crate) h3: Option<http::H3Route>,
    pub(crate) fallbacks: Vec<Option<Proxy>>,
}

impl Routes {
    /// Races to connect, over TCP and QUIC alike, give up after `wait`.
    pub(crate) fn timeout(&mut self, wait: Duration) {
        self.tcp.race.timeout = wait;
        if let Some(h3) = &mut self.h3 {
            h3.params.race.timeout = wait;
        }
    }
}

/// When a session uses HTTP/3 (HTTPS only; plain HTTP has no HTTP/3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Http3 {
    /// Never.
    Off,
    /// Once a response has advertised it (`Alt-Svc: h3=":PORT"`), racing TCP.
    #[default]
    Discover,
    /// From the first connection, on the URL's port, racing TCP.
    Assume,
    /// HTTP/3 alone: a QUIC failure is the transfer's failure.
    Only,
}

/// Whether a request that failed goes again on another connection, counting its tries.
#[derive(Debug, Default)]
pub(crate) struct Again {
    tries: usize,
    /// Refusals from connections that answered nothing.
    fruitless: usize,
}

impl Again {
    /// Whether the request that got `response` on `conn` is sent again: when the server
    /// said it did nothing with it (RFC 9113 §8.7: a GOAWAY at its request limit refuses
    /// every request past the last one it took; REFUSED_STREAM), whatever its method, while
    /// the connections refusing it answer others (up to [`UNPROCESSED_MOST`] times) or up to
    /// [`UNPROCESSED_TRIES`] times when they answer nothing; and when a reused `conn` failed
    /// it before any answer (the peer closed it while it idled) and it may be sent twice
    /// (`repeatable`), once.
    pub(crate) fn goes_again<T>(
        &mut self,
        response: &Result<T, TransferError>,
        conn: &http::Connection,
        repeatable: bool,
    ) -> bool {
        self.tries += 1;
        match response {
            Err(TransferError::Unprocessed(_))
                if self.tries <= UNPROCESSED_MOST
                    && (conn.answered() || self.fruitless < UNPROCESSED_TRIES) =>
            {
                self.fruitless += usize::from(!conn.answered());
                true
            }
            Err(_) => repeatable && conn.reused && self.tries == 1,
            Ok(_) => false,
        }
    }
}

/// How many times a request the server says it did not process is sent again after a
/// connection that answered nothing refused it: this bounds a server that takes no request.
const UNPROCESSED_TRIES: usize = 3;
/// How many times such a request is sent again at most, whatever the connections answered
/// (a server that takes one request per connection answers 64 in flight in 64 tries).
const UNPROCESSED_MOST: usize = 100;

/// TLS settings a session made, and what they were made for.
#[derive(Debug)]
struct TlsConfig {
    ats: bool,
    alpn: Vec<Vec<u8>>,
    config: Arc<rustls::ClientConfig>,
}

/// A session: its configuration, a resolver, the store, and the HTTP/3 alternatives learned.
#[derive(Debug)]
pub struct Session {
    config: Configuration,
    resolver: Arc<dyn Resolve>,
    store: Arc<store::Store>,
    alt_svc: altsvc::Cache,
    pool: pool::Pool<http::Connection>,
    jar: cookies::Jar,
    auth: nw_http::auth::Authorizer,
    /// TLS settings by (held to ATS, ALPN), made once: building them per request parsed the
    /// anchors again each time and lost TLS session resumption, whose tickets live in them.
    tls_configs: Mutex<Vec<TlsConfig>>,
    /// What the transfers have shown of the link: throughput, RTT, failures.
    quality: Mutex<nw_quality::Monitor>,
    /// The quality monitor's clock starts here.
    born: Instant,
    /// Proxies found unreachable, and until when they are tried last, so that a dead proxy
    /// first in a PAC file's list costs one load its time, not every load.
    unreachable: Mutex<Vec<(Proxy, Instant)>>,
}

/// How long a proxy found unreachable is tried last: five minutes, as Chrome does
/// (`ProxyResolutionService`'s default retry delay).
const UNREACHABLE_FOR: Duration = Duration::from_secs(300);

impl Session {
    /// A session over the store at `store_path`.
    #[allow(clippy::disallowed_methods, reason = "the quality monitor's clock starts here")]
    pub fn new(config: Configuration, store_path: &Path) -> Result<Self, TransferError> {
        let store = Arc::new(store::Store::open(store_path)?);
        let jar = cookies::Jar::new(&config.cookies)?;
        Ok(Self {
            jar,
            auth: nw_http::auth::Authorizer::new(config.credentials.clone()),
            config,
            resolver: Arc::new(SystemResolver::from_system()),
            store,
            alt_svc: altsvc::Cache::default(),
            pool: pool::Pool::default(),
            tls_configs: Mutex::new(Vec::new()),
            quality: Mutex::new(nw_quality::Monitor::default()),
            born: Instant::now(),
            unreachable: Mutex::default(),
        })
    }

    /// A session that records nothing: its store lives in memory and goes with it (for
    /// measurements such as the responsiveness test).
    pub fn ephemeral(config: Configuration) -> Result<Self, TransferError> {
        Self::new(config, Path::new(store::IN_MEMORY))
    }

    /// The configuration.
    pub fn config(&self) -> &Configuration {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &store::Store {
        &self.store
    }

    /// What this session's transfers have shown of the link so far: the throughput and RTT
    /// estimates, the failure ratio and the coarse level.
    pub fn link(&self) -> nw_quality::Snapshot {
        self.observe(|m, now| m.snapshot(now))
    }

    /// Runs `f` on the quality monitor with the session's clock.
    #[allow(clippy::disallowed_methods, reason = "observations are stamped on the session clock")]
    fn observe<T>(&self, f: impl FnOnce(&mut nw_quality::Monitor, Duration) -> T) -> T {
        let mut monitor = self.quality.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut monitor, self.born.elapsed())
    }

    /// Connection parameters for `url` over TCP, secured as the policy said, the HTTP/3 route
    /// to race them with, when there is one, and the proxies to fall back on.
    #[allow(clippy::disallowed_methods, reason = "Alt-Svc freshness is read at connect time")]
    async fn routes(&self, url: &Url, security: policy::Security) -> Result<Routes, TransferError> {
        let mut params = Parameters::default();
        if self.config.waits_for_connectivity {
            params.path = Some(nw_path::Conditions {
                prohibit_expensive: !self.config.allows_expensive,
                prohibit_constrained: !self.config.allows_constrained,
                ..nw_path::Conditions::default()
            });
        }
        params.race.timeout = self.config.request_timeout;
        let fetch = |at| self.fetch_pac(at);
        let mut fallbacks = self.config.proxies.choices(url, &self.resolver, fetch).await?;
        if fallbacks.len() > 1 {
            let now = Instant::now();
            let unreachable =
                self.unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let recently = |choice: &Option<Proxy>| {
                choice.as_ref().is_some_and(|p| {
                    unreachable.iter().any(|(dead, until)| dead == p && *until > now)
                })
            };
            fallbacks.sort_by_key(recently);
        }
        params.proxy = fallbacks.remove(0);
        // TLS with an https:// proxy: this session's anchors, outside the transport-security
        // policy (which is about destinations), offering http/1.1 for CONNECT.
        let https_proxy = |p: &Option<Proxy>| {
            p.as_ref().is_some_and(|p| p.kind == nw_connection::proxy::Kind::Https)
        };
        if std::iter::once(&params.proxy).chain(&fallbacks).any(https_proxy) {
            params.proxy_tls =
                Some(self.tls(policy::Security::Exempt("proxy"), vec![b"http/1.1".to_vec()])?);
        }
        if url.scheme != "https" {
            return Ok(Routes { tcp: params, h3: None, fallbacks });
        }
        let mut alpn = Vec::new();
        if self.config.http2 {
            alpn.push(b"h2".to_vec());
        }
        alpn.push(b"http/1.1".to_vec());
        let tcp = Parameters { tls: Some(self.tls(security, alpn)?), ..params.clone() };
        let port = match self.config.http3 {
            // HTTP/3 is UDP, which neither a CONNECT tunnel nor SOCKS5 here carries.
            Http3::Only if params.proxy.is_some() => {
                return Err(TransferError::Usage(format!(
                    "{}: HTTP/3 cannot go through the proxy {}; allow TCP, or reach it directly",
                    url.host,
                    params.proxy.as_ref().map(Proxy::shown).unwrap_or_default()
                )));
            }
            _ if params.proxy.is_some() => None,
            Http3::Off => None,
            Http3::Discover => self.alt_svc.h3_port(&origin(url), Instant::now()),
            Http3::Assume | Http3::Only => Some(url.port),
        };
        let h3 = match port {
            Some(port) => Some(http::H3Route {
                params: Parameters {
                    tls: Some(self.tls(security, vec![b"h3".to_vec()])?),
                    ..params
                },
                port,
                only: self.config.http3 == Http3::Only,
            }),
            None => None,
        };
        Ok(Routes { tcp, h3, fallbacks })
    }

    /// The PAC file at `at`, fetched directly (never through a proxy), under this session's
    /// trust settings and timeout, without cookies. Boxed: it loads through a session, whose
    /// loads ask for their routes, which may fetch a PAC file.
    fn fetch_pac(
        &self,
        at: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Pac, TransferError>> + Send + '_>> {
        Box::pin(async move {
            let failed = |why: String| PacError::Fetch { from: at.clone(), why };
            let config = Configuration {
                proxies: Proxies::none(),
                cookies: Cookies::Off,
                identifier: None,
                ..self.config.clone()
            };
            let data = Session::ephemeral(config)?
                .data(&at, pac::SIZE_LIMIT)
                .await
                .map_err(|e| failed(e.to_string()))?;
            if !(200..300).contains(&data.status) {
                return Err(failed(format!("the server answered {}", data.status)).into());
            }
            let text = String::from_utf8(data.body.to_vec())
                .map_err(|_| failed("it is not UTF-8 text".into()))?;
            // Loading runs the script once, for up to its time limit: not on this thread.
            let from = at.clone();
            tokio::task::spawn_blocking(move || Pac::new(&text, &from))
                .await
                .map_err(|e| failed(format!("loading it failed: {e}")))?
                .map_err(TransferError::from)
        })
    }

    /// TLS settings offering `alpn`, with the verifier the policy calls for: the session's
    /// own, made the first time they are asked for.
    fn tls(
        &self,
        security: policy::Security,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Arc<rustls::ClientConfig>, TransferError> {
        let ats = security == policy::Security::Ats;
        let mut made = self.tls_configs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = made.iter().find(|c| c.ats == ats && c.alpn == alpn) {
            return Ok(c.config.clone());
        }
        let config = self.new_tls(security, alpn.clone())?;
        made.push(TlsConfig { ats, alpn, config: config.clone() });
        Ok(config)
    }

    /// New TLS settings offering `alpn`, with the verifier the policy calls for.
    fn new_tls(
        &self,
        security: policy::Security,
        alpn: Vec<Vec<u8>>,
    ) -> Result<Arc<rustls::ClientConfig>, TransferError> {
        let provider = nw_connection::crypto::provider();
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match security {
            policy::Security::Ats => Arc::new(nw_trust::AtsVerifier::new(
                self.config.trust.clone(),
                self.config.default_trust.clone(),
                provider,
            )),
            policy::Security::Exempt(_) => {
                Arc::new(nw_trust::TrustVerifier::new(self.config.trust.clone(), provider))
            }
        };
        let options =
            tls::ClientOptions { verifier: Some(verifier), alpn, ..tls::ClientOptions::default() };
        options.config().map_err(|e| TransferError::Http(e.to_string()))
    }

    /// Connects for `url` over the routes given; an HTTP/3 alternative that was not used is
    /// not tried again in this session. `share`: the connection is one of this many carrying
    /// one download (its HTTP/2 windows are as much smaller). A proxy that cannot be reached
    /// gives way to the next in `routes.fallbacks`, and is tried last for a while.
    #[allow(clippy::disallowed_methods, reason = "an unreachable proxy is set aside for a while")]
    async fn connect(
        &self,
        url: &Url,
        routes: &Routes,
        share: usize,
    ) -> Result<http::Connection, TransferError> {
        let share = u32::try_from(share).unwrap_or(u32::MAX);
        let mut conn =
            http::connect(url, &routes.tcp, routes.h3.as_ref(), self.resolver.clone(), share).await;
        // A proxy that cannot be reached (for an https:// one, also TLS with it that does not
        // complete) gives way to the next one the PAC file named, as in browsers; a proxy that
        // refused, one whose certificate is not trusted, or a destination that failed, does not.
        let mut tried = routes.tcp.proxy.as_ref();
        for next in &routes.fallbacks {
            use nw_connection::happy_eyeballs::AttemptError;
            use nw_connection::{ConnectError, ProxyFailure};
            let Err(TransferError::Connect(e)) = &conn else { break };
            let unreachable = match &**e {
                ConnectError::Proxy { error: ProxyFailure::Unreachable(_), .. } => true,
                ConnectError::Proxy { error: ProxyFailure::ProxyTls(t), .. } => {
                    !matches!(t, AttemptError::Untrusted(_))
                }
                _ => false,
            };
            if !unreachable {
                break;
            }
            let to = next
                .as_ref()
                .map_or_else(|| "directly".to_owned(), |p| format!("through {}", p.shown()));
            tracing::info!("{}: {e}; trying {to}", url.host);
            if let Some(dead) = tried {
                let mut unreachable =
                    self.unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                unreachable.retain(|(p, until)| p != dead && *until > now);
                unreachable.push((dead.clone(), now + UNREACHABLE_FOR));
            }
            tried = next.as_ref();
            let tcp = Parameters { proxy: next.clone(), ..routes.tcp.clone() };
            conn = http::connect(url, &tcp, None, self.resolver.clone(), share).await;
        }
        self.observe(|m, now| {
            m.attempt(now, conn.is_ok());
            if let Some(rtt) = conn.as_ref().ok().and_then(|c| c.report.round_trip()) {
                m.rtt(now, rtt);
            }
        });
        let conn = conn?;
        if conn.h3_fallback.is_some() {
            self.alt_svc.broken(&origin(url));
        }
        Ok(conn)
    }

    /// Adds the jar's cookies for `url` to `headers`, after the caller's own `Cookie` (one
    /// field, RFC 6265 §5.4).
    pub(crate) fn with_cookies(&self, url: &Url, headers: &mut Vec<(&str, String)>) {
        let Some(jar) = self.jar.header_for(url) else { return };
        let caller = headers.iter().position(|(n, _)| n.eq_ignore_ascii_case("cookie"));
        let value = match caller.map(|i| headers.remove(i)) {
            Some((_, c)) => format!("{c}; {jar}"),
            None => jar,
        };
        headers.push(("Cookie", value));
    }

    /// Sends a GET for `url` on `conn`. The peer may have closed a pooled connection while it
    /// sat idle: when a reused `conn` fails before any answer, the GET (idempotent) is sent once
    /// more on a fresh connection over `routes` (one of `share`), which replaces `conn` (a
    /// shared one, when the failed connection was shared). A request the server did not take
    /// is sent again while the connections refusing it answer others (up to
    /// [`UNPROCESSED_MOST`] times), or up to [`UNPROCESSED_TRIES`] times when they do not.
    async fn get(
        &self,
        conn: &mut http::Connection,
        url: &Url,
        headers: &[(&str, String)],
        routes: &Routes,
        share: usize,
    ) -> Result<http::Response, TransferError> {
        let wait = self.config.request_timeout;
        let mut all = headers.to_vec();
        let sent_auth = self.with_authorization(url, &mut all).await;
        self.with_cookies(url, &mut all);
        let headers = all.as_slice();
        let mut response = conn.get_within(url, headers, wait).await;
        let mut again = Again::default();
        while again.goes_again(&response, conn, true) {
            let e = response.as_ref().err().map(ToString::to_string).unwrap_or_default();
            tracing::debug!("{}{}: {e}; once more on another connection", url.host, url.path);
            *conn = self.replacement(url, conn, routes, share, true).await?;
            response = conn.get_within(url, headers, wait).await;
        }
        // A 401 to what the provider gave: its fresh answer, once, on a connection that can
        // carry it (HTTP/1.1's has the refusal's body unread).
        let fresh = match &response {
            Ok(r) => self.fresh_credentials(url, r, sent_auth.as_deref()).await,
            Err(_) => None,
        };
        if let Some(fresh) = fresh {
            drop(response);
            let mut again = headers.to_vec();
            for (name, value) in &mut again {
                if name.eq_ignore_ascii_case("authorization") {
                    *value = fresh.clone();
                }
            }
            if conn.protocol == Protocol::Http11 {
                *conn = self.connect(url, routes, share).await?;
            }
            response = conn.get_within(url, &again, wait).await;
        }

        if let Ok(r) = &response {
            self.jar.learn(url, &r.headers).await;
        }
        response
    }

    /// A connection to send a request again on, in place of `conn`, which failed it before
    /// any answer: a new one over `routes` (one of `share`), or, for a request that may ride
    /// a shared connection (`shared`), the shared one made next — every request that was on a
    /// shared connection the server closed (as nginx does after 1,000 requests) comes here,
    /// and they share that one instead of each making its own.
    pub(crate) async fn replacement(
        &self,
        url: &Url,
        conn: &http::Connection,
        routes: &Routes,
        share: usize,
        shared: bool,
    ) -> Result<http::Connection, TransferError> {
        if conn.protocol == Protocol::Http11 || share > 1 || !shared {
            return self.connect(url, routes, share).await;
        }
        self.set_aside(url, conn);
        let path = pool::path_fingerprint().await;
        self.connection_for(url, routes, path, share).await
    }

    /// Adds the provider's `Authorization` for `url` to `headers` when they carry none, and
    /// returns what was added.
    pub(crate) async fn with_authorization(
        &self,
        url: &Url,
        headers: &mut Vec<(&str, String)>,
    ) -> Option<String> {
        if !self.auth.is_on()
            || headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            return None;
        }
        let value = self.auth.for_request(url).await?;
        headers.push(("Authorization", value.clone()));
        Some(value)
    }

    /// What `response`, to a GET of `current` (the last URL `chain` asked) over `conn`, means
    /// for the load: the answer, or a redirect followed — the connection handed back to the
    /// pool (over HTTP/1.1 once the redirect's little body is read, else closed), `current`
    /// and `routes` moved to the next URL, and a connection for it.
    #[allow(clippy::too_many_arguments, reason = "the pieces of one load that a hop moves on")]
    pub(crate) async fn follow(
        &self,
        chain: &mut redirect::Chain,
        response: http::Response,
        conn: http::Connection,
        current: &mut Url,
        routes: &mut Routes,
        path: Option<u64>,
        share: usize,
    ) -> Result<Followed, TransferError> {
        // A GET stays a GET on every redirect.
        let Some((next, security, _)) = self.redirected(chain, &response, &Method::GET)? else {
            return Ok(Followed::Answer(response, conn));
        };
        self.hand_back(current, conn, response, path).await;
        *routes = self.routes(&next, security).await?;
        *current = next;
        Ok(Followed::Hop(self.connection_for(current, routes, path, share).await?))
    }

    /// After `response` from `url` to a request that carried `sent` (the credential
    /// provider's value, when it gave one): the provider's fresh value when the server
    /// refused that one (401) and it has another to send the request again with.
    pub(crate) fn fresh_credentials<'a>(
        &'a self,
        url: &'a Url,
        response: &http::Response,
        sent: Option<&'a str>,
    ) -> impl Future<Output = Option<String>> + Send + 'a {
        // Read now: the response (not `Sync`) is not held across the provider's answer.
        let refused = sent.filter(|_| response.status == 401);
        let challenge = response.header(hyper::header::WWW_AUTHENTICATE).map(str::to_owned);
        async move { self.auth.after_refusal(url, refused?, challenge.as_deref()).await }
    }

    /// Gives the pool `conn`, which answered `response` (a redirect) from `url`: at once over
    /// HTTP/2 and HTTP/3; over HTTP/1.1 once the redirect's body is read (a line of HTML, if
    /// anything: a little of it, briefly), else it is closed.
    #[allow(clippy::disallowed_methods, reason = "the pool is stamped with the session's clock")]
    pub(crate) async fn hand_back(
        &self,
        url: &Url,
        conn: http::Connection,
        response: http::Response,
        path: Option<u64>,
    ) {
        if conn.protocol != Protocol::Http11 || drained(response).await {
            self.pool.put(origin(url), conn, path, Instant::now());
        }
    }

    /// A connection for a request to `url` that may be sent twice (`pooled`: one the pool
    /// has, or a new one it will keep), or else one of its own.
    pub(crate) async fn connection(
        &self,
        url: &Url,
        routes: &Routes,
        path: Option<u64>,
        pooled: bool,
    ) -> Result<http::Connection, TransferError> {
        if pooled {
            self.connection_for(url, routes, path, 1).await
        } else {
            self.connect(url, routes, 1).await
        }
    }

    /// Takes `conn` out of the pool for good: a request on it failed before any answer (a
    /// connection the server closed while it idled). One the pool does not hold (an HTTP/1.1
    /// one, checked out whole) is not there to take.
    pub(crate) fn set_aside(&self, url: &Url, conn: &http::Connection) {
        self.pool.forget(&origin(url), pool::Pooled::id(conn));
    }

    /// When `response` (to a `method` request of the last URL `chain` asked) redirects: the
    /// next URL, how the policy lets it load — refused like any load the policy refuses (an
    /// https:// page redirecting to http:// included) — and the method to ask it with (a GET
    /// after a 303, and after a 301 or 302 of a POST, RFC 9110 §15.4).
    pub(crate) fn redirected(
        &self,
        chain: &mut redirect::Chain,
        response: &http::Response,
        method: &Method,
    ) -> Result<Option<(Url, policy::Security, Method)>, TransferError> {
        let location = response.headers.get(hyper::header::LOCATION);
        let location = location.map(|l| redirect::location(l.as_bytes()));
        let Some(hop) = chain.next(method, response.status, location.as_deref())? else {
            return Ok(None);
        };
        let from = chain.asked().iter().rev().nth(1).cloned().unwrap_or_default();
        if from.starts_with("https:") && hop.to.starts_with("http:") && !self.config.allow_http {
            return Err(TransferError::Redirect {
                kind: redirect::Refusal::Downgrade,
                why: format!(
                    "{from} redirects to {}: from HTTPS to plain HTTP, a downgrade, which is refused unless HTTP loads are allowed",
                    hop.to
                ),
            });
        }
        let (url, security) = self.allowed(&hop.to).map_err(|e| match e {
            TransferError::Usage(why) => TransferError::Redirect {
                kind: redirect::Refusal::BadLocation,
                why: format!("{from} redirects to {}: {why}", hop.to),
            },
            TransferError::Refused(why) => TransferError::Redirect {
                kind: redirect::Refusal::Policy,
                why: format!("{from} redirects to {}, which is refused: {why}", hop.to),
            },
            e => e,
        })?;
        tracing::debug!(to = %hop.to, status = response.status, "following a redirect");
        Ok(Some((url, security, hop.method)))
    }

    /// Learns what a response over TCP says about HTTP/3.
    #[allow(clippy::disallowed_methods, reason = "Alt-Svc freshness starts at the response")]
    fn learn(&self, url: &Url, protocol: Protocol, alt_svc: Option<&str>) {
        if let (Some(value), true) = (alt_svc, protocol != Protocol::H3 && url.scheme == "https") {
            self.alt_svc.learn(&origin(url), value, Instant::now());
        }
    }
}

/// A response after [`Session::follow`]: the answer on its connection, or the connection for
/// the next URL of a redirect.
pub(crate) enum Followed {
    Answer(http::Response, http::Connection),
    Hop(http::Connection),
}

pub(crate) use altsvc::origin;

impl Session {
    /// Runs `f` on the store from a blocking thread: a write waits for its fsync
    /// (`synchronous = FULL`), and for another process's write lock up to the busy timeout,
    /// neither of which may hold up the runtime — on a current-thread one, every other transfer
    /// and timer of the application would wait with it.
    pub(crate) async fn stored<T: Send + 'static>(
        &self,
        f: impl FnOnce(&store::Store) -> Result<T, store::StoreError> + Send + 'static,
    ) -> Result<T, store::StoreError> {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => result,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Why a transfer failed. Each message says what happened and what to try.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The request cannot be made as given (a bad URL, a header a download sets itself).
    #[error("{0}")]
    Usage(String),
    /// A download's file, or its `.part`, is in the way: replacing or continuing it was not
    /// asked for.
    #[error("{}: {kind}", path.display())]
    InTheWay {
        /// The file in the way.
        path: PathBuf,
        /// What it is.
        kind: InTheWay,
    },
    /// Another process is downloading to this file.
    #[error("{} is locked: another nw is downloading to it; wait for it, or stop it first", .0.display())]
    Busy(PathBuf),
    /// Another process is sending this upload.
    #[error("{0} is being sent by another nw; wait for it, or stop it first")]
    Taken(String),
    /// A transient failure of a request that is not sent twice (a POST that may have reached
    /// the server): not transient itself.
    #[error(
        "{0} (a POST that may have reached the server is not sent again; queue it again if the \
         server did not act on it)"
    )]
    NotResent(Box<TransferError>),
    /// The server took an upload and pointed elsewhere for its answer (303 See Other), which
    /// could not be fetched: the upload is done, and is not sent again.
    #[error("the server took the upload; its answer at {at} could not be fetched: {source}")]
    AnswerElsewhere {
        /// Where the answer is.
        at: String,
        /// What fetching it met.
        #[source]
        source: Box<TransferError>,
    },
    /// The transport-security policy refused the load.
    #[error(transparent)]
    Refused(#[from] policy::Refused),
    /// The transfer store failed.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// No connection could be made (the race's report inside says why).
    #[error(transparent)]
    Connect(Box<nw_connection::ConnectError>),
    /// The PAC file named no route for the load.
    #[error(transparent)]
    Pac(#[from] PacError),
    /// The exchange broke HTTP (a malformed answer, a protocol error).
    #[error("{0}")]
    Http(String),
    /// The server answered with a failing status.
    #[error("{url}: the server answered {status}{}", not_followed(*status))]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// When the server asked to be tried again (its `Retry-After`), if it did.
        retry_after: Option<RetryAfter>,
    },
    /// The connection was lost mid-exchange.
    #[error("the connection was lost: {0}")]
    Lost(String),
    /// The server closed the connection, or refused the stream, without processing the
    /// request (an HTTP/2 GOAWAY past it, or REFUSED_STREAM: RFC 9113 §8.7), and it was not
    /// sent again, or failed again: the server did nothing with it.
    #[error("the server did not take the request: {0}")]
    Unprocessed(String),
    /// The request's body could not be sent: its file could not be opened or read, its
    /// stream failed or yielded another length than it declared.
    #[error("{url}: the request's body {why}")]
    Body {
        /// The URL.
        url: String,
        /// What went wrong, in words.
        why: String,
    },
    /// The request had to be sent again (a redirect that keeps its method, a refreshed
    /// credential, a retry) and its body was a stream that can be sent once.
    #[error(
        "{url}: the request had to be sent again ({why}), and its body was a stream that can be sent once"
    )]
    BodyExhausted {
        /// The URL.
        url: String,
        /// Why it had to go again, in words.
        why: String,
    },
    /// A body longer than a data task's limit.
    #[error("{url}: the response is longer than {limit} bytes; download it to a file instead")]
    TooLong {
        /// The URL.
        url: String,
        /// The task's limit, in bytes.
        limit: usize,
    },
    /// A body whose content coding could not be undone.
    #[error("{url}: {source}")]
    Decode {
        /// The URL.
        url: String,
        /// What was wrong with the body.
        #[source]
        source: decode::DecodeError,
    },
    /// A redirect that cannot be followed, which kind, and in words.
    #[error("{why}")]
    Redirect {
        /// Which kind of refusal.
        kind: redirect::Refusal,
        /// In words.
        why: String,
    },
    /// A time limit ran out (which one, in words).
    #[error("timed out: {0}")]
    Timeout(String),
    /// The load took longer than the session's resource timeout
    /// ([`Configuration::resource_timeout`]). Not transient: trying again would take as long.
    #[error("timed out: the load took longer than its resource timeout ({} s)", .0.as_secs_f64())]
    ResourceTimeout(Duration),
    /// The task was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A file could not be read or written.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// What a body was streamed into ([`Session::data_to`]) refused it: a closed pipe
    /// (`ErrorKind::BrokenPipe`), a full disk.
    #[error("cannot write the body out: {0}")]
    Output(#[source] std::io::Error),
    /// The checkpoint could not be written.
    #[error("checkpointing failed: {0}")]
    Checkpoint(String),
    /// The body ended before the length the server announced.
    #[error("{}: got {got} bytes where the server announced {expected}; resuming the download fetches the rest", part.display())]
    Incomplete {
        /// The `.part` holding what arrived.
        part: PathBuf,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The file's SHA-256 is not the one expected.
    #[error("{}: SHA-256 is {got}, not the expected {expected}; the bytes were discarded and nothing was put in place", part.display())]
    Digest {
        /// The `.part`, already discarded.
        part: PathBuf,
        /// The SHA-256 expected, hex.
        expected: String,
        /// The SHA-256 of the bytes received, hex.
        got: String,
    },
    /// Something other than a regular file is where the download would write (a device, a
    /// directory, a symbolic link), or a `.part` belongs to another user: never written to.
    #[error("{}: {why}; nothing was written", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What is there instead.
        why: String,
    },
    /// A download failed after bytes arrived that nothing could resume: the server named
    /// neither a strong `ETag` nor a `Last-Modified` date, so a resume would have to start
    /// from zero (as URLSession gives no resume data then). The bytes were discarded.
    #[error(
        "{0}; what arrived was discarded, since nothing could resume it (the server named no \
         ETag or Last-Modified date)"
    )]
    Unresumable(Box<TransferError>),
    /// A download failed after bytes were checkpointed: they are kept for a resume.
    #[error("{source}; {} holds what was received and checkpointed; resuming the download continues from there", part.display())]
    Saved {
        /// The `.part` holding them.
        part: PathBuf,
        /// What failed.
        #[source]
        source: Box<TransferError>,
    },
}

/// What is in a download's way (see [`TransferError::InTheWay`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InTheWay {
    /// The destination exists, and replacing it was not asked for.
    #[error("exists, and replacing it was not asked for")]
    Exists,
    /// The `.part` belongs to a download of another URL.
    #[error("holds part of another download ({url})")]
    OtherDownload {
        /// The other download's URL.
        url: String,
    },
    /// The `.part` holds an interrupted download, and neither resuming nor restarting it was
    /// asked for.
    #[error("holds {bytes} checkpointed bytes of an interrupted download of {url}")]
    Interrupted {
        /// Bytes checkpointed.
        bytes: u64,
        /// Its URL.
        url: String,
    },
    /// The `.part` exists and the store has no record of it.
    #[error("exists with no record of what it holds")]
    Unrecorded,
}

/// What kind of failure, in the shape of URLError's codes: for a program to decide what to
/// do (a user-facing text is the error's `Display`). [`Code::apple`] gives the matching
/// `NSURLErrorDomain` number where Foundation has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Code {
    /// The URL is not one a load can take, or the request is malformed.
    BadUrl,
    /// Not an http:// or https:// URL.
    UnsupportedUrl,
    /// The name did not resolve.
    CannotFindHost,
    /// Every address refused or could not be reached.
    CannotConnectToHost,
    /// A time limit ran out.
    TimedOut,
    /// The task was cancelled.
    Cancelled,
    /// The connection dropped during the exchange.
    NetworkConnectionLost,
    /// No usable path: waiting for connectivity ran out.
    NotConnectedToInternet,
    /// Local network privacy: this app may not reach the local destination.
    LocalNetworkProhibited,
    /// TLS failed for a reason other than trust.
    SecureConnectionFailed,
    /// The server's certificate was not trusted (or ours was refused).
    ServerCertificateUntrusted,
    /// Plain HTTP where the transport-security policy wants HTTPS.
    InsecureLoadBlocked,
    /// More redirects than allowed.
    HttpTooManyRedirects,
    /// A redirect loop, a downgrade, or a `Location` that cannot be followed.
    RedirectRefused,
    /// The server's answer is not valid HTTP, or not what was asked.
    BadServerResponse,
    /// The server answered with a failing status (downloads and uploads only).
    HttpStatus,
    /// A body whose content coding could not be undone.
    CannotDecodeContentData,
    /// A body longer than the task's limit.
    DataLengthExceedsMaximum,
    /// The request's body had to be sent again and was a stream that can be sent once.
    RequestBodyStreamExhausted,
    /// The request's body could not be sent: its file or stream failed.
    RequestBodyFailed,
    /// The proxy could not be reached, refused the tunnel, or wanted credentials.
    ProxyFailed,
    /// A file is in the way, or something other than a regular file is.
    CannotCreateFile,
    /// Writing or reading the file, or its checkpoint, failed.
    CannotWriteToFile,
    /// Another process holds the file or the upload.
    ResourceBusy,
    /// The bytes are not what was promised: a digest or a length.
    ChecksumMismatch,
    /// The transfer store failed.
    Store,
}

impl Code {
    /// Foundation's `NSURLErrorDomain` code for the same failure, where it has one.
    pub fn apple(self) -> Option<i32> {
        // Values from NSURLError.h.
        Some(match self {
            Self::Cancelled => -999,
            Self::BadUrl => -1000,
            Self::TimedOut => -1001,
            Self::UnsupportedUrl => -1002,
            Self::CannotFindHost => -1003,
            Self::CannotConnectToHost => -1004,
            Self::NetworkConnectionLost => -1005,
            Self::HttpTooManyRedirects => -1007,
            Self::NotConnectedToInternet => -1009,
            Self::RedirectRefused => -1010,
            Self::BadServerResponse => -1011,
            Self::CannotDecodeContentData => -1016,
            Self::RequestBodyStreamExhausted => -1021,
            Self::InsecureLoadBlocked => -1022,
            Self::DataLengthExceedsMaximum => -1103,
            Self::SecureConnectionFailed => -1200,
            Self::ServerCertificateUntrusted => -1202,
            Self::CannotCreateFile => -3000,
            Self::CannotWriteToFile => -3003,
            _ => return None,
        })
    }
}

/// The code of a failure to connect.
/// The URL `text` names for a load, or why it names none: empty, a scheme that does not load
/// (`ftp:`, `file:`, none at all), no host. Every error says to give `http(s)://HOST/PATH` — a
/// load takes nothing else (`HOST:PORT` is for `nw cat`).
pub fn url(text: &str) -> Result<Url, TransferError> {
    const GIVE: &str = "give http(s)://HOST/PATH";
    if text.trim().is_empty() {
        return Err(TransferError::Usage(format!("{text:?}: no URL; {GIVE}")));
    }
    policy::scheme(text)?;
    match nw_connection::Endpoint::parse(text) {
        Ok(nw_connection::Endpoint::Url(u)) => Ok(u),
        Ok(_) => Err(TransferError::Usage(format!("{text}: not a URL; {GIVE}"))),
        Err(e) => Err(TransferError::Usage(format!("{:?}: {}; {GIVE}", e.text, e.why))),
    }
}

fn connect_code(e: &nw_connection::ConnectError) -> Code {
    use nw_connection::happy_eyeballs::{AttemptError, RaceError};
    use nw_connection::{ConnectError, ProxyFailure};
    match e {
        _ if e.untrusted() => Code::ServerCertificateUntrusted,
        ConnectError::Race { error: RaceError::NoAddresses { .. }, .. } => Code::CannotFindHost,
        ConnectError::Race { error: RaceError::TimedOut { .. }, .. } => Code::TimedOut,
        ConnectError::Race { error: RaceError::AllAttemptsFailed { attempts }, .. } => {
            if attempts.iter().any(|t| matches!(t.error, AttemptError::Tls(_))) {
                Code::SecureConnectionFailed
            } else if attempts.iter().all(|t| {
                matches!(t.error, AttemptError::TimedOut | AttemptError::HandshakeTimedOut { .. })
            }) {
                Code::TimedOut
            } else {
                Code::CannotConnectToHost
            }
        }
        ConnectError::Race { .. } => Code::CannotConnectToHost,
        ConnectError::Proxy { error: ProxyFailure::Tls(_) | ProxyFailure::ProxyTls(_), .. } => {
            Code::SecureConnectionFailed
        }
        ConnectError::Proxy { .. } => Code::ProxyFailed,
        ConnectError::NoPath { .. } => Code::NotConnectedToInternet,
        ConnectError::LocalNetworkProhibited { .. } => Code::LocalNetworkProhibited,
        ConnectError::Tls(_) => Code::BadUrl,
        ConnectError::Cancelled => Code::TimedOut,
        _ => Code::CannotConnectToHost,
    }
}

impl From<nw_http::Error> for TransferError {
    fn from(e: nw_http::Error) -> Self {
        match e {
            nw_http::Error::Setting(why) => Self::Usage(why),
            nw_http::Error::Redirect { kind, why } => Self::Redirect { kind, why },
            nw_http::Error::Io { path, what, source } => Self::Io { path, what, source },
            nw_http::Error::Pac(e) => Self::Pac(e),
            // A kind nw-http adds later is said as it is.
            other => Self::Http(other.to_string()),
        }
    }
}

impl Session {
    /// `load` within the session's resource timeout, if it has one.
    pub(crate) async fn within_resource<T>(
        &self,
        load: impl Future<Output = Result<T, TransferError>>,
    ) -> Result<T, TransferError> {
        match self.config.resource_timeout {
            None => load.await,
            Some(limit) => tokio::time::timeout(limit, load)
                .await
                .unwrap_or(Err(TransferError::ResourceTimeout(limit))),
        }
    }
}

impl TransferError {
    /// What kind of failure this is.
    pub fn code(&self) -> Code {
        match self {
            Self::Usage(_) => Code::BadUrl,
            Self::InTheWay { .. } | Self::NotAFile { .. } => Code::CannotCreateFile,
            Self::Busy(_) | Self::Taken(_) => Code::ResourceBusy,
            Self::NotResent(inner)
            | Self::Unresumable(inner)
            | Self::Saved { source: inner, .. }
            | Self::AnswerElsewhere { source: inner, .. } => inner.code(),
            Self::Refused(policy::Refused::InsecureLoad { .. }) => Code::InsecureLoadBlocked,
            Self::Refused(policy::Refused::NoScheme { .. }) => Code::BadUrl,
            Self::Refused(_) => Code::UnsupportedUrl,
            Self::Store(_) => Code::Store,
            Self::Connect(e) => connect_code(e),
            Self::Pac(_) => Code::ProxyFailed,
            Self::Http(_) => Code::BadServerResponse,
            Self::Status { .. } => Code::HttpStatus,
            Self::Lost(_) | Self::Unprocessed(_) => Code::NetworkConnectionLost,
            Self::TooLong { .. }
            | Self::Decode { source: decode::DecodeError::TooLong { .. }, .. } => {
                Code::DataLengthExceedsMaximum
            }
            Self::Decode { .. } => Code::CannotDecodeContentData,
            Self::Redirect { kind: redirect::Refusal::TooMany, .. } => Code::HttpTooManyRedirects,
            Self::Redirect { .. } => Code::RedirectRefused,
            Self::Timeout(_) | Self::ResourceTimeout(_) => Code::TimedOut,
            Self::Cancelled => Code::Cancelled,
            Self::Io { .. } | Self::Output(_) | Self::Checkpoint(_) => Code::CannotWriteToFile,
            Self::Body { .. } => Code::RequestBodyFailed,
            Self::BodyExhausted { .. } => Code::RequestBodyStreamExhausted,
            Self::Incomplete { .. } | Self::Digest { .. } => Code::ChecksumMismatch,
        }
    }

    fn io(path: &Path, what: &'static str, source: std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), what, source }
    }

    /// Whether trying again later may succeed (the transfer stays resumable).
    pub fn transient(&self) -> bool {
        match self {
            // A certificate that was not trusted stays so, as do a proxy's refusals: not retried.
            Self::Connect(e) => !e.lasting(),
            Self::Lost(_) | Self::Unprocessed(_) | Self::Timeout(_) | Self::Incomplete { .. } => {
                true
            }
            // A server error (5xx), a timeout or too many requests; not a code past 599, which
            // RFC 9110 §15 does not define (it says nothing of whether trying again helps).
            Self::Status { status, .. } => {
                (500..600).contains(status) || *status == 408 || *status == 429
            }
            Self::Saved { source, .. } => source.transient(),
            Self::Unresumable(inner) => inner.transient(),
            _ => false,
        }
    }

    /// Whether the request may have reached the server: anything but a failure to connect,
    /// which sent nothing. A POST that may have is not sent again.
    pub fn may_have_reached_the_server(&self) -> bool {
        !matches!(self, Self::Connect(_))
    }

    /// What the server asked with its failing status's `Retry-After`, through the wrappers.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::NotResent(inner)
            | Self::Unresumable(inner)
            | Self::Saved { source: inner, .. } => inner.retry_after(),
            _ => None,
        }
    }

    /// A failing status from `response` to a request for `url`.
    pub(crate) fn status_of(url: &str, response: &http::Response) -> Self {
        Self::Status {
            url: url.to_owned(),
            status: response.status,
            retry_after: RetryAfter::parse(response.header(hyper::header::RETRY_AFTER)),
        }
    }

    /// The server's status when the server answered with a failure, through the wrappers that
    /// say what became of the transfer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            Self::NotResent(inner)
            | Self::Unresumable(inner)
            | Self::Saved { source: inner, .. } => inner.status(),
            _ => None,
        }
    }

    /// Says that what was received is kept in `part` (when the body had started): after a
    /// lost connection, a timeout, or a body that broke HTTP mid-way (a malformed chunk).
    fn with_saved(self, part: &Path) -> Self {
        match self {
            e @ (Self::Lost(_) | Self::Timeout(_) | Self::ResourceTimeout(_) | Self::Http(_)) => {
                Self::Saved { part: part.to_owned(), source: Box::new(e) }
            }
            e => e,
        }
    }
}

/// What a redirect's status given as the answer means: it was not followed.
fn not_followed(status: u16) -> &'static str {
    match status {
        301 | 302 | 303 | 307 | 308 => {
            " (a redirect that was not followed: it names no Location, or redirects are off)"
        }
        _ => "",
    }
}

/// The most of a redirect's body read so that its HTTP/1.1 connection can carry the next
/// request, and how long it may take.
const REDIRECT_BODY_MOST: u64 = 64 * 1024;
const REDIRECT_BODY_WAIT: Duration = Duration::from_millis(500);

/// Whether `response`'s body was read to its end within [`REDIRECT_BODY_MOST`] bytes and
/// [`REDIRECT_BODY_WAIT`] in all (a server that trickles it holds nothing up), leaving its
/// connection ready for another request.
pub(crate) async fn drained(mut response: http::Response) -> bool {
    let read = async {
        let mut got = 0u64;
        loop {
            match response.body.data_within(REDIRECT_BODY_WAIT, got).await {
                Ok(None) => return true,
                Ok(Some(piece)) => {
                    got += piece.len() as u64;
                    if got > REDIRECT_BODY_MOST {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(REDIRECT_BODY_WAIT, read).await.unwrap_or(false)
}

/// A server's `Retry-After` (RFC 9110 §10.2.3): a number of seconds, or a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Try again after this many seconds.
    Seconds(u64),
    /// Try again at this time.
    At(std::time::SystemTime),
}

impl RetryAfter {
    /// The field's value read, `None` when absent or neither form.
    pub fn parse(value: Option<&str>) -> Option<Self> {
        let value = value?.trim();
        if let Ok(seconds) = value.parse() {
            return Some(Self::Seconds(seconds));
        }
        httpdate::parse_http_date(value).ok().map(Self::At)
    }

    /// How long to wait from `now` (a date already past asks for no wait).
    pub fn wait(self, now: std::time::SystemTime) -> Duration {
        match self {
            Self::Seconds(seconds) => Duration::from_secs(seconds),
            Self::At(at) => at.duration_since(now).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::RetryAfter;

    #[test]
    fn server_errors_are_worth_trying_again_and_codes_past_599_are_not() {
        let status = |status| super::TransferError::Status {
            url: "http://a.test/".into(),
            status,
            retry_after: None,
        };
        for code in [408, 429, 500, 503, 599] {
            assert!(status(code).transient(), "{code}");
        }
        for code in [400, 404, 600, 999] {
            assert!(!status(code).transient(), "{code}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_and_nothing_else() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_784_000_000);
        let seconds = RetryAfter::parse(Some(" 120 ")).unwrap();
        assert_eq!(seconds.wait(now), Duration::from_secs(120));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(RetryAfter::parse(Some(&later)).unwrap().wait(now), Duration::from_secs(30));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(RetryAfter::parse(Some(&past)).unwrap().wait(now), Duration::ZERO);
        for bad in ["-5", "soon", "1.5", ""] {
            assert_eq!(RetryAfter::parse(Some(bad)), None, "{bad:?}");
        }
        assert_eq!(RetryAfter::parse(None), None);
    }
}
