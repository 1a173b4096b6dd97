//! `nw-serve`: the embedded HTTP server, kept out of the client library (nw-transfer) that it
//! serves in tests: [`HttpServer`] (HTTP/1.1 and HTTP/2 over TLS or
//! plain TCP, on nw-connection's listener; the version is read from the connection's first
//! bytes) and [`H3Server`] (HTTP/3 over quinn and h3) serve the same site, and [`Embedded`]
//! runs both on one loopback port with a throwaway CA, for `nw doctor` and `nw quality`.
//!
//! The site:
//! - Files under a root, with the validators and byte ranges resumable downloads need — a
//!   strong `ETag`, `Last-Modified`, `Accept-Ranges`, single ranges (`bytes=A-`, `A-B`, `-N`)
//!   honouring `If-Range`, and 416 for a range past the end. Multiple ranges get the whole
//!   file (a 200), which RFC 9110 §14.2 allows.
//! - The responsiveness test's endpoints (draft-ietf-ippm-responsiveness, "Responsiveness under
//!   Working Conditions"): `/config` and `/.well-known/nq` (the configuration, naming the three
//!   others with the scheme and host the client used), `/small` (one byte), `/large` (8 GiB of
//!   zeros, generated, never read from disk), `/slurp` (POST or PUT: the body is read and
//!   discarded, and the answer says how many bytes came). These paths are reserved: a file of
//!   the same name under the root is not served.
//!
//! Over TCP it keeps at most 256 connections, closes one with no request in flight after 10 s
//! (before its first request, while its head trickles in, or between requests), and when a
//! new client needs a place closes the connection idle the longest: idle or trickling clients
//! cannot lock a real one out.
//!
//! It is for tests, benchmarks and offline measurements on loopback: it serves any readable file
//! under its root to anyone who connects.
#![warn(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nw_connection::{Handler, Listener, ListenerConfig};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// A response body as hyper sends it.
type ResponseBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// HTTP/2 flow-control windows, as nw-transfer's client sets them (16 MiB a stream, 32 MiB the
/// connection; hyper's default stream window is 64 KiB): large enough that neither side holds
/// a loopback or long fat path to its window.
const H2_STREAM_WINDOW: u32 = 16 << 20;
const H2_CONNECTION_WINDOW: u32 = 32 << 20;

/// What each read of a served file (or each piece of `/large`) holds.
const CHUNK: usize = 256 << 10;
/// Unsent bytes the kernel may hold per connection (`TCP_NOTSENT_LOWAT`): enough to keep a
/// fast link busy between wake-ups, little enough that an answer on a loaded connection is
/// not queued behind seconds of a slow link's data. The responsiveness draft's server
/// guidance asks for this; 128 KiB is our choice.
const NOTSENT_LOWAT: u32 = 16 << 10;
/// `/large`'s length: the draft asks for a download that outlasts the test.
pub const LARGE: u64 = 8 << 30;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Pace every response body to at most this many bytes per second (for tests that need a
    /// transfer still running when they act).
    pub rate: Option<u64>,
    /// Advertise HTTP/3 on this UDP port (`Alt-Svc: h3=":PORT"`) in answers over TCP.
    pub alt_svc: Option<u16>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The certificate or key cannot be used.
    #[error("the certificate or key cannot serve HTTP: {0}")]
    Tls(String),
    /// The UDP socket for HTTP/3 could not be bound.
    #[error("cannot listen on {addr} (UDP): {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The TCP listener could not be bound.
    #[error("cannot listen on {addr} (TCP): {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The directory of files to serve cannot be used.
    #[error("{}: cannot serve it: {source}", root.display())]
    Root {
        /// The directory.
        root: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Connections the TCP server holds at most; past it, the connection idle the longest is
/// closed to make room, so idle or trickling clients cannot lock a real one out.
const MAX_CONNECTIONS: usize = 256;
/// A connection with no request in flight (before its first one, while its head trickles
/// in, or between requests) is closed after this long.
const IDLE: Duration = Duration::from_secs(10);

/// The server's TCP connections and whether each is idle: what lets it close idle ones.
#[derive(Debug, Default)]
struct Connections {
    next: u64,
    /// Per connection: idle since (`None` while a request is in flight), and how to close it.
    open: std::collections::HashMap<u64, Tracked>,
}

#[derive(Debug)]
struct Tracked {
    idle_since: Option<tokio::time::Instant>,
    in_flight: usize,
    close: Arc<tokio::sync::Notify>,
}

type Registry = Arc<std::sync::Mutex<Connections>>;

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, Connections> {
    registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One connection's place in the registry; leaving it on drop.
struct Slot {
    registry: Registry,
    id: u64,
    close: Arc<tokio::sync::Notify>,
}

impl Slot {
    /// Registers a new connection, idle until its first request, and when the server is full
    /// asks the connection idle the longest to close.
    #[allow(clippy::disallowed_methods, reason = "the server times its connections as they run")]
    fn join(registry: &Registry) -> Self {
        let close = Arc::new(tokio::sync::Notify::new());
        let mut c = lock(registry);
        let id = c.next;
        c.next += 1;
        let now = tokio::time::Instant::now();
        c.open.insert(id, Tracked { idle_since: Some(now), in_flight: 0, close: close.clone() });
        if c.open.len() > MAX_CONNECTIONS
            && let Some(oldest) = c
                .open
                .iter()
                .filter(|(other, _)| **other != id)
                .filter_map(|(_, t)| t.idle_since.map(|since| (since, t)))
                .min_by_key(|(since, _)| *since)
        {
            oldest.1.close.notify_one();
        }
        Self { registry: registry.clone(), id, close }
    }

    /// A request starts: the connection is busy until the guard it returns is dropped (when
    /// the response's body ends).
    fn busy(registry: &Registry, id: u64) -> Busy {
        if let Some(t) = lock(registry).open.get_mut(&id) {
            t.in_flight += 1;
            t.idle_since = None;
        }
        Busy { registry: registry.clone(), id }
    }

    /// How long it has been idle (zero while busy).
    fn idle_for(&self) -> Duration {
        lock(&self.registry)
            .open
            .get(&self.id)
            .and_then(|t| t.idle_since)
            .map_or(Duration::ZERO, |since| since.elapsed())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.registry).open.remove(&self.id);
    }
}

/// A request in flight on a connection.
struct Busy {
    registry: Registry,
    id: u64,
}

impl Drop for Busy {
    #[allow(clippy::disallowed_methods, reason = "the server times its connections as they run")]
    fn drop(&mut self) {
        if let Some(t) = lock(&self.registry).open.get_mut(&self.id) {
            t.in_flight = t.in_flight.saturating_sub(1);
            if t.in_flight == 0 {
                t.idle_since = Some(tokio::time::Instant::now());
            }
        }
    }
}

/// What the server serves, whichever HTTP version asks.
#[derive(Debug)]
struct Site {
    root: Option<PathBuf>,
    options: Options,
    scheme: &'static str,
}

impl Site {
    fn new(
        root: Option<&Path>,
        options: &Options,
        scheme: &'static str,
    ) -> Result<Self, ServerError> {
        let root = root
            .map(|r| {
                r.canonicalize().map_err(|source| ServerError::Root { root: r.to_owned(), source })
            })
            .transpose()?;
        Ok(Self { root, options: options.clone(), scheme })
    }
}

/// Waits as long as `n` bytes take at `rate` bytes a second (not at all without a rate).
#[allow(clippy::disallowed_methods, reason = "a server is a driver: pacing")]
async fn pace(rate: Option<u64>, n: usize) {
    if let Some(r) = rate {
        tokio::time::sleep(Duration::from_secs_f64(n as f64 / r.max(1) as f64)).await;
    }
}

/// A response body's source.
#[derive(Debug)]
enum Source {
    Empty,
    Bytes(Bytes),
    File { file: tokio::fs::File, left: u64 },
    Zeros { left: u64 },
}

impl Source {
    /// The next piece; `None` at the end.
    async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        let take = |left: u64| usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK);
        match self {
            Self::Empty => Ok(None),
            Self::Bytes(b) => Ok((!b.is_empty()).then(|| std::mem::take(b))),
            Self::Zeros { left } => {
                let n = take(*left);
                *left -= n as u64;
                Ok((n > 0).then(|| Bytes::from_static(&ZEROS[..n])))
            }
            Self::File { file, left } => {
                if *left == 0 {
                    return Ok(None);
                }
                let mut buf = BytesMut::with_capacity(CHUNK);
                if file.read_buf(&mut buf).await? == 0 {
                    let eof = std::io::ErrorKind::UnexpectedEof;
                    return Err(std::io::Error::new(eof, "the file is shorter than it was"));
                }
                buf.truncate(take(*left));
                *left -= buf.len() as u64;
                Ok(Some(buf.freeze()))
            }
        }
    }
}

/// What a request gets.
#[allow(clippy::large_enum_variant, reason = "one per request, moved once, never stored")]
enum Answer {
    Reply(hyper::Response<Source>),
    /// Read the request body, then answer with [`slurped`].
    Slurp,
}

/// A response from `builder`, or a bare 500 should the builder hold something invalid.
fn finish(builder: hyper::http::response::Builder, body: Source) -> hyper::Response<Source> {
    #[allow(clippy::disallowed_methods, reason = "a server is a driver: the Date header")]
    let now = std::time::SystemTime::now();
    let builder = builder
        .header(header::SERVER, concat!("nw-testserver/", env!("CARGO_PKG_VERSION")))
        .header(header::DATE, httpdate::fmt_http_date(now));
    builder.body(body).unwrap_or_else(|_| {
        let mut r = hyper::Response::new(Source::Empty);
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

fn status(code: StatusCode) -> hyper::http::response::Builder {
    hyper::Response::builder().status(code)
}

/// The answer to a slurped upload of `n` bytes.
fn slurped(n: u64) -> hyper::Response<Source> {
    let body = Bytes::from(format!("{{\"received\":{n}}}\n"));
    finish(
        status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len()),
        Source::Bytes(body),
    )
}

/// Answers a request's head.
async fn answer(site: &Site, method: &Method, uri: &Uri, headers: &HeaderMap) -> Answer {
    let path = uri.path();
    let reply = |builder, body| Answer::Reply(finish(builder, body));
    let alt_svc = |b: hyper::http::response::Builder| match site.options.alt_svc {
        Some(port) => b.header(header::ALT_SVC, format!("h3=\":{port}\"; ma=3600")),
        None => b,
    };
    let get_or_head = *method == Method::GET || *method == Method::HEAD;
    match path {
        "/slurp" if *method == Method::POST || *method == Method::PUT => return Answer::Slurp,
        "/slurp" => {
            let b = status(StatusCode::METHOD_NOT_ALLOWED).header(header::ALLOW, "POST, PUT");
            return reply(b, Source::Empty);
        }
        "/config" | "/.well-known/nq" | "/small" | "/large" | "/" if !get_or_head => {
            let b = status(StatusCode::METHOD_NOT_ALLOWED).header(header::ALLOW, "GET, HEAD");
            return reply(b, Source::Empty);
        }
        "/config" | "/.well-known/nq" => {
            let authority = uri.authority().map(|a| a.as_str().to_owned()).or_else(|| {
                headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned)
            });
            let Some(authority) = authority else {
                let body = Bytes::from_static(b"the request names no host (Host or :authority)\n");
                return reply(status(StatusCode::BAD_REQUEST), Source::Bytes(body));
            };
            let base = format!("{}://{authority}", site.scheme);
            let config = serde_json::json!({
                "version": 1,
                "urls": {
                    "small_https_download_url": format!("{base}/small"),
                    "large_https_download_url": format!("{base}/large"),
                    "https_upload_url": format!("{base}/slurp"),
                },
            });
            let body = Bytes::from(config.to_string());
            let b = alt_svc(status(StatusCode::OK))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, "no-store")
                .header(header::CONTENT_LENGTH, body.len());
            return reply(
                b,
                if *method == Method::GET { Source::Bytes(body) } else { Source::Empty },
            );
        }
        "/small" | "/large" => {
            let len = if path == "/small" { 1 } else { LARGE };
            let b = alt_svc(status(StatusCode::OK))
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CACHE_CONTROL, "no-store")
                .header(header::CONTENT_LENGTH, len);
            let body =
                if *method == Method::GET { Source::Zeros { left: len } } else { Source::Empty };
            return reply(b, body);
        }
        _ => {}
    }
    if !get_or_head {
        let b = status(StatusCode::METHOD_NOT_ALLOWED).header(header::ALLOW, "GET, HEAD");
        return reply(b, Source::Empty);
    }
    let Some(file) = site.root.as_deref().and_then(|root| resolve(root, path)) else {
        return reply(status(StatusCode::NOT_FOUND), Source::Empty);
    };
    match file_answer(&file, method, headers).await {
        Ok((b, body)) => reply(alt_svc(b), body),
        Err(e) => {
            tracing::debug!("test server: {}: {e}", file.display());
            reply(status(StatusCode::INTERNAL_SERVER_ERROR), Source::Empty)
        }
    }
}

/// A file's answer: the whole of it, or the range asked for while the validator holds.
async fn file_answer(
    path: &Path,
    method: &Method,
    headers: &HeaderMap,
) -> std::io::Result<(hyper::http::response::Builder, Source)> {
    let mut file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    let len = meta.len();
    let modified = meta.modified().ok();
    let since_epoch = modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
    let tag = etag(len, since_epoch);
    let header = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    // If-Range (RFC 9110 §13.1.5): the range holds only while the validator still matches.
    let range_asked = match header(header::IF_RANGE) {
        Some(v) if v != tag => None,
        _ => header(header::RANGE),
    };
    let mut b = status(StatusCode::OK)
        .header(header::ETAG, tag.as_str())
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(m) = modified {
        b = b.header(header::LAST_MODIFIED, httpdate::fmt_http_date(m));
    }
    let (start, end) = match range(range_asked, len) {
        Err(()) => {
            let b = b
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"));
            return Ok((b, Source::Empty));
        }
        Ok(Some((start, end))) => {
            b = b
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (start, end + 1)
        }
        Ok(None) => (0, len),
    };
    let b = b.header(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if *method != Method::GET || end == start {
        return Ok((b, Source::Empty));
    }
    file.seek(std::io::SeekFrom::Start(start)).await?;
    Ok((b, Source::File { file, left: end - start }))
}

/// The file under `root` that `path` names (percent-decoded), refusing anything that climbs
/// out of it.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded = nw_connection::percent_decode(path.split('?').next()?)?;
    let relative = Path::new(decoded.trim_start_matches('/'));
    if decoded.contains('\0') || relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let file = root.join(relative);
    file.is_file().then_some(file)
}

/// A strong validator from the file's length and modification time (nanoseconds).
fn etag(len: u64, modified: Duration) -> String {
    format!("\"{len:x}-{:x}\"", modified.as_nanos())
}

/// The range a `Range` header asks of a `len`-byte file: `Ok(None)` for the whole file
/// (absent, several ranges, or a form this server does not read), `Err(())` when it cannot be
/// satisfied.
#[allow(clippy::result_unit_err, reason = "one meaning: 416")]
pub fn range(value: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Ok(None) };
    let (first, last) = (first.trim(), last.trim());
    let (start, end) = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(a), Ok(b)) if a <= b => (a, b.min(len.saturating_sub(1))),
        (Ok(a), Err(_)) if last.is_empty() => (a, len.saturating_sub(1)),
        (Err(_), Ok(n)) if first.is_empty() && n > 0 => {
            (len.saturating_sub(n), len.saturating_sub(1))
        }
        _ => return Ok(None),
    };
    if start >= len { Err(()) } else { Ok(Some((start, end))) }
}

/// A running HTTP/1.1 and HTTP/2 server; dropping it stops it.
#[derive(Debug)]
pub struct HttpServer {
    listener: Listener,
    scheme: &'static str,
}

impl HttpServer {
    /// Serves the site (files under `root`, when given, and the responsiveness endpoints) on
    /// `addr` (TCP): over TLS with ALPN `h2` and `http/1.1` when `tls` holds a chain and key,
    /// plain HTTP/1.1 (or HTTP/2 with prior knowledge) otherwise.
    pub async fn start(
        addr: SocketAddr,
        root: Option<&Path>,
        tls: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
        options: &Options,
    ) -> Result<Self, ServerError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let site = Arc::new(Site::new(root, options, scheme)?);
        let alpn = [b"h2".to_vec(), b"http/1.1".to_vec()];
        let tls = tls
            .map(|(chain, key)| nw_connection::tls::server_config(chain, key, &alpn))
            .transpose()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let registry = Registry::default();
        let handler: Handler = Arc::new(move |stream, peer| {
            let site = site.clone();
            let registry = registry.clone();
            Box::pin(async move {
                let slot = Slot::join(&registry);
                let id = slot.id;
                let service = hyper::service::service_fn(move |request| {
                    let site = site.clone();
                    let busy = Slot::busy(&registry, id);
                    async move { Ok::<_, Infallible>(serve_hyper(&site, request, busy).await) }
                });
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http1().max_buf_size(1 << 20);
                builder
                    .http2()
                    .initial_stream_window_size(H2_STREAM_WINDOW)
                    .initial_connection_window_size(H2_CONNECTION_WINDOW)
                    .max_frame_size(1 << 20);
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                // Closed when idle too long, or when a new client needs its place.
                let mut check = tokio::time::interval(Duration::from_secs(1));
                let result = loop {
                    tokio::select! {
                        result = conn.as_mut() => break result,
                        () = slot.close.notified() => {
                            tracing::debug!("test server: closing idle {peer} to make room");
                            conn.as_mut().graceful_shutdown();
                            break closing(conn).await;
                        }
                        _ = check.tick() => if slot.idle_for() >= IDLE {
                            tracing::debug!("test server: closing {peer}, idle for {IDLE:?}");
                            conn.as_mut().graceful_shutdown();
                            break closing(conn).await;
                        }
                    }
                };
                if let Err(e) = result {
                    tracing::debug!("test server: connection from {peer}: {e}");
                }
            })
        });
        let config = ListenerConfig {
            tls,
            // Above the server's own limit: the listener does not make new clients wait
            // while idle ones hold every place; the server closes those instead.
            max_connections: MAX_CONNECTIONS * 2,
            handshake_timeout: Duration::from_secs(10),
            notsent_lowat: Some(NOTSENT_LOWAT),
            ..ListenerConfig::default()
        };
        let listener = Listener::bind(addr, config, handler)
            .await
            .map_err(|source| ServerError::Listen { addr, source })?;
        Ok(Self { listener, scheme })
    }

    /// The TCP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }

    /// `SCHEME://ADDR:PORT/path` for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.local_addr())
    }

    /// Stops accepting, lets running requests finish for up to `grace`, then stops them.
    pub async fn shutdown(self, grace: Duration) {
        self.listener.shutdown(grace).await;
    }
}

/// A connection asked to shut down gracefully, given [`IDLE`] to finish (then dropped).
async fn closing<F: Future<Output = Result<(), E>>, E>(conn: F) -> Result<(), E> {
    tokio::time::timeout(IDLE, conn).await.unwrap_or(Ok(()))
}

/// One request over HTTP/1.1 or HTTP/2.
async fn serve_hyper(
    site: &Site,
    request: hyper::Request<hyper::body::Incoming>,
    busy: Busy,
) -> hyper::Response<ResponseBody> {
    let (head, mut incoming) = request.into_parts();
    let response = match answer(site, &head.method, &head.uri, &head.headers).await {
        Answer::Reply(r) => r,
        Answer::Slurp => {
            let mut n = 0u64;
            while let Some(Ok(frame)) = incoming.frame().await {
                n += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            slurped(n)
        }
    };
    let rate = site.options.rate;
    response.map(|source| {
        // The connection stays busy until the body has gone (or is dropped).
        let pieces = futures_util::stream::unfold(Some((source, busy)), move |source| async move {
            let (mut source, busy) = source?;
            match source.next().await {
                Ok(Some(piece)) => {
                    pace(rate, piece.len()).await;
                    Some((Ok(Frame::data(piece)), Some((source, busy))))
                }
                Ok(None) => None,
                // Once: hyper then resets the stream (or closes the connection).
                Err(e) => Some((Err(e), None)),
            }
        });
        StreamBody::new(pieces).boxed()
    })
}

/// A running HTTP/3 server; dropping it closes its endpoint.
#[derive(Debug)]
pub struct H3Server {
    endpoint: quinn::Endpoint,
    addr: SocketAddr,
}

impl H3Server {
    /// Serves the site (files under `root`, when given, and the responsiveness endpoints) over
    /// HTTP/3 on `addr` (UDP) with `chain` and `key`.
    pub fn start(
        addr: SocketAddr,
        root: Option<&Path>,
        (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        options: &Options,
    ) -> Result<Self, ServerError> {
        let site =
            Arc::new(Site::new(root, &Options { alt_svc: None, ..options.clone() }, "https")?);
        let tls = nw_connection::tls::server_config(chain, key, &[b"h3".to_vec()])
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint = quinn::Endpoint::server(server.clone(), addr)
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = endpoint.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
        let accepting = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let site = site.clone();
                // With QLOGDIR set, each connection gets a configuration of its own that
                // streams its qlog.
                let title = format!("nw test server: HTTP/3 from {}", incoming.remote_address());
                let config = nw_connection::Qlog::from_env("server", &title).map(|(_, q)| {
                    let mut transport = quinn::TransportConfig::default();
                    transport.qlog_stream(Some(q));
                    let mut config = server.clone();
                    config.transport_config(Arc::new(transport));
                    Arc::new(config)
                });
                tokio::spawn(async move {
                    if let Err(e) = connection(incoming, config, site).await {
                        tracing::debug!("HTTP/3 test server connection: {e}");
                    }
                });
            }
        });
        Ok(Self { endpoint, addr })
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT/path` for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }
}

impl Drop for H3Server {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"server stopped");
    }
}

type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

async fn connection(
    incoming: quinn::Incoming,
    config: Option<Arc<quinn::ServerConfig>>,
    site: Arc<Site>,
) -> Result<(), String> {
    let conn = match config {
        Some(config) => incoming.accept_with(config).map_err(|e| e.to_string())?.await,
        None => incoming.await,
    };
    let conn = conn.map_err(|e| e.to_string())?;
    let mut h3 = h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(resolver) = h3.accept().await.map_err(|e| e.to_string())? {
        let site = site.clone();
        tokio::spawn(async move {
            let Ok((request, mut stream)) = resolver.resolve_request().await else { return };
            if let Err(e) = serve_h3(&site, &request, &mut stream).await {
                tracing::debug!("HTTP/3 test server: {} {}: {e}", request.method(), request.uri());
            }
        });
    }
    Ok(())
}

/// One request over HTTP/3.
async fn serve_h3(
    site: &Site,
    request: &hyper::Request<()>,
    stream: &mut Stream,
) -> Result<(), String> {
    let response = match answer(site, request.method(), request.uri(), request.headers()).await {
        Answer::Reply(r) => r,
        Answer::Slurp => {
            let mut n = 0u64;
            while let Some(piece) = stream.recv_data().await.map_err(|e| e.to_string())? {
                n += piece.remaining() as u64;
            }
            slurped(n)
        }
    };
    let (head, mut source) = response.into_parts();
    stream.send_response(hyper::Response::from_parts(head, ())).await.map_err(|e| e.to_string())?;
    while let Some(piece) = source.next().await.map_err(|e| e.to_string())? {
        let n = piece.len();
        stream.send_data(piece).await.map_err(|e| e.to_string())?;
        pace(site.options.rate, n).await;
    }
    stream.finish().await.map_err(|e| e.to_string())
}

/// The embedded test server as `nw doctor` and `nw quality` run it: HTTP/1.1 and HTTP/2 over
/// TLS and HTTP/3 on the same port (TCP and UDP), the TCP side advertising the UDP one in
/// `Alt-Svc`, with a certificate from a CA made for this server alone (nw-trust's test CA).
#[derive(Debug)]
pub struct Embedded {
    /// HTTP/1.1 and HTTP/2 over TLS (TCP).
    pub http: HttpServer,
    /// HTTP/3 (UDP, the same port).
    pub h3: H3Server,
    ca: nw_trust::ca::TestCa,
}

impl Embedded {
    /// Starts it on `addr`; the certificate names `localhost`, 127.0.0.1, ::1 and `addr`'s
    /// address. Port 0 picks a free UDP port and takes the same number for TCP (another pair
    /// when that one is taken).
    pub async fn start(
        addr: SocketAddr,
        root: Option<&Path>,
        options: &Options,
    ) -> Result<Self, ServerError> {
        use rustls::pki_types::pem::PemObject as _;
        let tls = |e: &dyn std::fmt::Display| ServerError::Tls(e.to_string());
        let ca = nw_trust::ca::TestCa::new("nwkit embedded test server CA").map_err(|e| tls(&e))?;
        let ip = addr.ip().to_string();
        let mut names = vec!["localhost", "127.0.0.1", "::1"];
        if !addr.ip().is_unspecified() && !names.contains(&ip.as_str()) {
            names.push(&ip);
        }
        let issued = ca.server(&names).map_err(|e| tls(&e))?;
        let key = || PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).map_err(|e| tls(&e));
        let mut tries = 0;
        loop {
            // UDP first: its port then names the TCP one.
            let h3 = H3Server::start(addr, root, (issued.chain.clone(), key()?), options)?;
            let port = h3.local_addr().port();
            let tcp = SocketAddr::new(addr.ip(), port);
            let options = Options { alt_svc: Some(port), ..options.clone() };
            match HttpServer::start(tcp, root, Some((issued.chain.clone(), key()?)), &options).await
            {
                Ok(http) => return Ok(Self { http, h3, ca }),
                Err(ServerError::Listen { .. }) if addr.port() == 0 && tries < 8 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Trust settings whose only anchor is this server's CA.
    pub fn trust(&self) -> nw_trust::Options {
        nw_trust::Options {
            anchors: vec![nw_trust::Anchor {
                der: self.ca.cert_der(),
                class: nw_trust::AnchorClass::Custom,
            }],
            ..nw_trust::Options::default()
        }
    }

    /// The CA's certificate (PEM), for clients in other processes (`--anchor FILE`).
    pub fn ca_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// `https://ADDR:PORT/path` for `path`.
    pub fn url(&self, path: &str) -> String {
        self.http.url(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_decoded_and_never_climb_out_of_the_root() {
        let root = std::env::temp_dir().join(format!("nw-resolve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("my file.bin"), b"x").unwrap();
        std::fs::write(root.join("sub/ü.bin"), b"x").unwrap();
        assert_eq!(resolve(&root, "/my%20file.bin?x=1"), Some(root.join("my file.bin")));
        assert_eq!(resolve(&root, "/sub/%C3%BC.bin"), Some(root.join("sub/ü.bin")));
        assert_eq!(resolve(&root, "/sub%2F%C3%BC.bin"), Some(root.join("sub/ü.bin")));
        for bad in [
            "/%2e%2e/etc/passwd",
            "/../etc/passwd",
            "/sub/..%2F..%2Fetc",
            "/a%ZZ",
            "/%",
            "/x%00",
            "/%FF",
        ] {
            assert_eq!(resolve(&root, bad), None, "{bad}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
